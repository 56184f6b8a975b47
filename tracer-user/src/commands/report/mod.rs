//! `leaktracer report TRACE`: replays a recorded trace through the same process table and
//! detector as a live session, then prints the ranked suspects, the OOM kills and the
//! kernel-side health. Streaming: memory is bounded by the table's limits, not the file.
pub mod plot;
use std::{
    collections::HashMap,
    fs::File,
    io::{BufReader, IsTerminal as _, Write as _},
    path::Path,
};

use anyhow::Context as _;
use serde::Serialize;

use crate::{
    detector::{DetectorConfig, Verdict},
    kernel::sampler::Snapshot,
    model::table::{Process, ProcessTable, TableLimits},
    trace::reader::TraceReader,
    trace::{Header, OomRecord, PodRef, ProcessInfo, Record, Summary},
    util::clock,
    util::error::UsageError,
    util::format,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    Text,
    Json,
}

/// A ranked suspect, also the JSON shape of `report --format json`.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Suspect {
    pub pid: u32,
    pub comm: String,
    pub verdict: Verdict,
    pub confidence: f64,
    pub growth_bytes_per_sec: f64,
    /// Trace time (s) and wall-clock time at which the growth began.
    pub since_secs: Option<f64>,
    pub since: Option<String>,
    pub private_bytes: u64,
    pub peak_private_bytes: u64,
    pub reason: String,
    pub exited: bool,
    /// The memory limit recorded for the process and the time until its private memory
    /// reaches it at the assessed growth (leaking/growing only; offline the cgroup's other
    /// members are not known, so this is an upper bound when a cgroup limit applies).
    pub limit_bytes: Option<u64>,
    pub time_to_limit_secs: Option<f64>,
    /// Percentiles of this process's mmap request sizes (bytes), from its log2 histogram.
    pub mmap_size_p50_bytes: Option<u64>,
    pub mmap_size_p99_bytes: Option<u64>,
    pub cmdline: Option<String>,
    /// Memory cgroup path at first sight (to relate suspects to OOM kills).
    pub cgroup: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
}

#[derive(Serialize)]
pub struct Report {
    pub header: Header,
    pub duration_secs: f64,
    pub processes: usize,
    pub samples: u64,
    pub suspects: Vec<Suspect>,
    /// Processes that ended during the trace (all counted; the largest with their final
    /// counters), short-lived ones included.
    pub ended: crate::model::ended::EndedLog,
    /// Syscall hooks the overhead budget paused (their counts are incomplete while paused).
    pub overhead_budget: Vec<crate::kernel::budget::HookSummary>,
    pub oom_kills: Vec<OomRecord>,
    /// Memory cgroups (and "node") that reported limit events, reclaim or pressure.
    pub memory_cgroups: Vec<crate::host::memcg::CgroupActivity>,
    pub summary: Option<Summary>,
    pub skipped_lines: u64,
    pub warnings: Vec<String>,
}

/// Fold a trace into a table: samples of one round share a `t` and become one snapshot.
struct Replay {
    table: ProcessTable,
    pending: Vec<(u32, crate::model::counters::Counters)>,
    pending_t: f64,
    infos: HashMap<u32, ProcessInfo>,
    /// Kubernetes names recorded at first sight, for pods' processes (bounded by the table).
    names: HashMap<u32, PodRef>,
    samples: u64,
    last_t: f64,
}

impl Replay {
    fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let snap = Snapshot {
            t_mono: self.pending_t,
            procs: std::mem::take(&mut self.pending),
            counters: Default::default(),
            procs_capacity: 0,
        };
        let report = self.table.update(&snap, None);
        for pid in report.new_pids {
            if let (Some(info), Some(p)) = (self.infos.remove(&pid), self.table.find_mut(pid)) {
                p.ppid = info.ppid;
                p.comm = info.comm;
                p.cmdline = info.cmdline;
                p.cgroup_raw = info.cgroup.map(Into::into);
                p.limit_bytes = info.limit_bytes;
                if info.pod.namespace.is_some() || info.pod.pod_uid.is_some() {
                    self.names.insert(pid, info.pod);
                }
            }
        }
        if self.names.len() > 65_536 {
            let table = &self.table;
            self.names.retain(|pid, _| table.find(*pid).is_some());
        }
        // Infos whose process never got a sample (filtered or short-lived): drop, bounded.
        if self.infos.len() > 4096 {
            self.infos.clear();
        }
    }
}

pub struct ReportOptions {
    pub filter: crate::pipeline::session::Filter,
    pub format: ReportFormat,
    pub lenient: bool,
    pub limit: usize,
    pub plot: Option<std::path::PathBuf>,
}

pub fn run(path: &Path, opts: &ReportOptions) -> anyhow::Result<()> {
    // A trace that cannot be opened is the user's input problem (exit 2), like a corrupt one.
    let file = File::open(path)
        .map_err(|e| UsageError::new(format!("cannot open trace {}: {e}", path.display())))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let report = build(
        BufReader::with_capacity(1 << 20, file),
        size,
        opts.lenient,
        opts.limit,
        std::io::stderr().is_terminal(),
        &opts.filter,
    )
    .with_context(|| format!("reading {}", path.display()))?;
    if let Some(plot) = &opts.plot {
        crate::commands::report::plot::write_svg(plot, &report.plot_series)?;
        eprintln!("leaktracer: wrote {}", plot.display());
    }
    let mut out = std::io::stdout().lock();
    match opts.format {
        ReportFormat::Json => {
            serde_json::to_writer_pretty(&mut out, &report.report)?;
            out.write_all(b"\n")?;
        }
        ReportFormat::Text => out.write_all(render_text(&report.report).as_bytes())?,
    }
    Ok(())
}

pub struct Built {
    pub report: Report,
    pub plot_series: Vec<crate::commands::report::plot::Series>,
}

pub fn build(
    input: impl std::io::BufRead,
    size: u64,
    lenient: bool,
    limit: usize,
    progress: bool,
    filter: &crate::pipeline::session::Filter,
) -> anyhow::Result<Built> {
    let mut reader = TraceReader::new(input, lenient);
    let header = match reader.next_record()? {
        Some(Record::Header(h)) => h,
        Some(_) => {
            return Err(UsageError::new(
                "line 1: not a leaktracer trace (the first line must be the header)",
            )
            .into());
        }
        None => return Err(UsageError::new("empty trace: no header line").into()),
    };
    if header.schema > crate::trace::SCHEMA_VERSION {
        return Err(UsageError::new(format!(
            "trace schema {} is newer than this leaktracer understands ({}): upgrade leaktracer",
            header.schema,
            crate::trace::SCHEMA_VERSION
        ))
        .into());
    }
    let bar = (progress && size > 64 << 20).then(|| {
        let b = indicatif::ProgressBar::new(size);
        b.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {eta}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    });
    let mut rp = Replay {
        table: ProcessTable::new(TableLimits::default(), 0.0),
        pending: Vec::new(),
        pending_t: 0.0,
        infos: HashMap::new(),
        names: HashMap::new(),
        samples: 0,
        last_t: 0.0,
    };
    let mut ooms: Vec<OomRecord> = Vec::new();
    let mut cgroups = crate::host::memcg::ActivityFold::new(1000);
    let mut summary = None;
    let mut budget_events = Vec::new();
    while let Some(rec) = reader.next_record()? {
        if let Some(b) = &bar
            && reader.line().is_multiple_of(10_000)
        {
            b.set_position(reader.bytes_read);
        }
        match rec {
            Record::Sample(s) => {
                if s.t != rp.pending_t {
                    rp.flush();
                    rp.pending_t = s.t;
                }
                rp.last_t = rp.last_t.max(s.t);
                rp.samples += 1;
                rp.pending.push((s.pid, s.to_counters()));
            }
            Record::Process(info) => {
                rp.flush();
                rp.infos.insert(info.pid, info);
            }
            Record::OomKill(o) => {
                if ooms.len() < 10_000 {
                    ooms.push(o);
                }
            }
            Record::Summary(s) => summary = Some(s),
            Record::Header(_) => {
                rp.flush();
                let msg = format!(
                    "line {}: a second header (concatenated traces?)",
                    reader.line()
                );
                if !lenient {
                    return Err(UsageError::new(format!(
                        "{msg} (use --lenient to skip bad lines)"
                    ))
                    .into());
                }
                reader.warnings.push(msg);
            }
            Record::Exec {
                pid,
                comm,
                cmdline,
                cgroup,
                ..
            } => {
                rp.flush();
                rp.table.exec(pid, comm, cmdline, cgroup);
            }
            Record::Memcg { t, event } => cgroups.add(t, &event),
            Record::Budget { t, event } => {
                if budget_events.len() < 100_000 {
                    budget_events.push((t, event));
                }
            }
            Record::Exit(_) | Record::Health(_) | Record::Verdict(_) => {}
        }
    }
    rp.flush();
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let mut warnings = std::mem::take(&mut reader.warnings);
    if cgroups.dropped > 0 {
        warnings.push(format!(
            "{} memory-cgroup events of cgroups beyond the first 1000 not summarised",
            cgroups.dropped
        ));
    }
    if summary.is_none() {
        warnings.push("no summary line: the recording did not end cleanly (killed?); the report covers what was written".into());
    }
    let now = summary.as_ref().map_or(rp.last_t, |s| s.t.max(rp.last_t));
    // The one list of suspects (crate::model::suspect): judged at the trace's end, as
    // `record` judged them for its summary, so both list the same processes in one order.
    let cfg = DetectorConfig::default();
    let names = &rp.names;
    let mut suspects: Vec<(Suspect, &Process)> =
        crate::model::suspect::judge(&rp.table, now, &cfg, |p| {
            let n = names.get(&p.pid);
            let ok = |wanted: &[String], have: Option<&Option<String>>| {
                wanted.is_empty()
                    || have
                        .and_then(Option::as_ref)
                        .is_some_and(|h| wanted.contains(h))
            };
            filter.matches(p.pid, &p.comm)
                && ok(&filter.namespaces, n.map(|n| &n.namespace))
                && ok(&filter.pods, n.map(|n| &n.pod))
                && ok(&filter.containers, n.map(|n| &n.container))
        })
        .into_iter()
        .map(|(core, p)| (suspect(core, p, &header, names.get(&p.pid)), p))
        .collect();
    suspects.truncate(limit);
    let plot_series = suspects
        .iter()
        .take(6)
        .map(|(s, p)| crate::commands::report::plot::Series::of(p, &s.comm))
        .collect();
    let report = Report {
        duration_secs: crate::util::clock::round_ms(now),
        processes: rp.table.live.len() + rp.table.graveyard.len(),
        samples: rp.samples,
        suspects: suspects.into_iter().map(|(s, _)| s).collect(),
        ended: crate::model::ended::EndedLog {
            largest: rp
                .table
                .ended
                .largest_matching(limit, |e| filter.matches(e.pid, &e.comm)),
            ..rp.table.ended.clone()
        },
        overhead_budget: crate::kernel::budget::summarize(&budget_events, now),
        oom_kills: ooms,
        memory_cgroups: cgroups.finish(),
        summary,
        skipped_lines: reader.skipped,
        warnings,
        header,
    };
    Ok(Built {
        report,
        plot_series,
    })
}

/// The report's row of a suspect: the one judgement plus what the trace recorded of the
/// process (limit, mmap sizes, command line, cgroup, Kubernetes names).
fn suspect(
    core: crate::model::suspect::Suspect,
    p: &Process,
    header: &Header,
    names: Option<&PodRef>,
) -> Suspect {
    let hist = &p.counters.mmap_size_hist;
    let time_to_limit_secs = p
        .limit_bytes
        .and_then(|l| {
            core.assessment
                .time_to_limit(core.private_bytes as f64, l as f64)
        })
        .map(crate::util::clock::round_ms);
    Suspect {
        since: core
            .since_secs
            .map(|t| clock::rfc3339(header.start_unix_ms + (t.max(0.0) * 1000.0) as u64)),
        pid: core.pid,
        comm: core.comm,
        verdict: core.verdict,
        confidence: core.confidence,
        growth_bytes_per_sec: core.growth_bytes_per_sec,
        since_secs: core.since_secs,
        private_bytes: core.private_bytes,
        peak_private_bytes: core.peak_private_bytes,
        reason: core.reason,
        exited: core.exited,
        limit_bytes: p.limit_bytes,
        time_to_limit_secs,
        mmap_size_p50_bytes: log2_percentile(hist, 0.50),
        mmap_size_p99_bytes: log2_percentile(hist, 0.99),
        cmdline: p.cmdline.clone(),
        cgroup: p.memcg_path(),
        namespace: names.and_then(|n| n.namespace.clone()),
        pod: names.and_then(|n| n.pod.clone()),
        container: names.and_then(|n| n.container.clone()),
    }
}

/// The rest of an OOM line: cgroup and limit, the victim's growth before death, and the
/// suspects that share its cgroup (they are the likely culprits of a cgroup OOM).
fn oom_context(o: &OomRecord, suspects: &[Suspect]) -> String {
    let mut s = String::new();
    if let Some(c) = &o.cgroup {
        s.push_str(&format!("\n             cgroup {c}"));
        if let Some(l) = o.cgroup_limit_bytes {
            s.push_str(&format!(" (limit {})", format::bytes(l as f64)));
        }
    }
    if let (Some(a), Some(b)) = (o.history.first(), o.history.last())
        && b.0 > a.0
    {
        s.push_str(&format!(
            "\n             before death: private {} -> {} in {}",
            format::bytes(a.1 as f64),
            format::bytes(b.1 as f64),
            format::duration(b.0 - a.0)
        ));
    }
    let same: Vec<String> = suspects
        .iter()
        .filter(|x| x.cgroup.is_some() && x.cgroup == o.cgroup && x.pid != o.victim.pid)
        .map(|x| format!("{} ({}, {})", x.pid, x.comm, x.verdict.as_str()))
        .collect();
    if !same.is_empty() {
        s.push_str(&format!(
            "\n             suspects in the same cgroup: {}",
            same.join(", ")
        ));
    }
    s
}

/// Percentile of a log2 size histogram (upper bound of the bucket holding it).
fn log2_percentile(hist: &[u32], q: f64) -> Option<u64> {
    let total: u64 = hist.iter().map(|&c| u64::from(c)).sum();
    if total == 0 {
        return None;
    }
    let mut h = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 1 << 46, 2).ok()?;
    for (i, &c) in hist.iter().enumerate() {
        if c > 0 {
            let _ = h.record_n(
                1u64 << (i as u32 + crate::model::counters::MMAP_SIZE_MIN_SHIFT + 1),
                u64::from(c),
            );
        }
    }
    Some(h.value_at_quantile(q))
}

pub fn render_text(r: &Report) -> String {
    let h = &r.header;
    let mut s = format!(
        "leaktracer report — host {}, kernel {}, started {}, {} observed at {} ms intervals\n{} processes, {} samples, {} OOM kills\n",
        h.host,
        h.kernel,
        h.start,
        format::duration(r.duration_secs),
        h.interval_ms,
        r.processes,
        r.samples,
        r.oom_kills.len()
    );
    for w in &r.warnings {
        s.push_str(&format!("warning: {w}\n"));
    }
    if r.skipped_lines > 0 {
        s.push_str(&format!(
            "warning: {} bad lines skipped (--lenient)\n",
            r.skipped_lines
        ));
    }
    s.push_str("\nSUSPECTS (leaking first, then by growth rate)\n");
    s.push_str(&format!(
        "{:>7} {:<16} {:<9} {:>5} {:>10} {:>11} {:>9} {:>9} {:>9} {:>12}  {}\n",
        "PID",
        "COMMAND",
        "VERDICT",
        "CONF",
        "GROWTH/s",
        "GROWTH/min",
        "SINCE",
        "PRIVATE",
        "TO LIMIT",
        "MMAP p50/p99",
        "WHY"
    ));
    if r.suspects.is_empty() {
        s.push_str("  (none: no process was judged leaking or growing)\n");
    }
    for x in &r.suspects {
        let mmap = match (x.mmap_size_p50_bytes, x.mmap_size_p99_bytes) {
            (Some(a), Some(b)) => {
                format!("{}/{}", format::bytes(a as f64), format::bytes(b as f64))
            }
            _ => "-".into(),
        };
        s.push_str(&format!(
            "{:>7} {:<16} {:<9} {:>5.2} {:>10} {:>11} {:>9} {:>9} {:>9} {:>12}  {}{}\n",
            x.pid,
            x.comm,
            x.verdict.as_str(),
            x.confidence,
            format::bytes(x.growth_bytes_per_sec),
            format::bytes(x.growth_bytes_per_sec * 60.0),
            x.since_secs
                .map_or("-".into(), |t| format!("+{}", format::duration(t))),
            format::bytes(x.private_bytes as f64),
            x.time_to_limit_secs.map_or("-".into(), format::duration),
            mmap,
            x.reason,
            if x.exited { " (exited)" } else { "" }
        ));
    }
    if r.ended.count > 0 {
        s.push('\n');
        s.push_str(&crate::model::ended::render_text(
            &r.ended,
            &r.ended.largest,
        ));
    }
    if !r.oom_kills.is_empty() {
        s.push_str("\nOOM KILLS\n");
        for o in &r.oom_kills {
            let v = &o.victim;
            s.push_str(&format!(
                "  +{:<8} killed {} ({}) anon {} file {} shmem {}, oom_score_adj {}; triggered by {} ({}){}\n",
                format::duration(o.t),
                v.pid,
                v.comm,
                format::bytes(v.anon_rss_bytes as f64),
                format::bytes(v.file_rss_bytes as f64),
                format::bytes(v.shmem_rss_bytes as f64),
                v.oom_score_adj,
                v.trigger_pid,
                v.trigger_comm,
                oom_context(o, &r.suspects)
            ));
        }
    }
    if !r.memory_cgroups.is_empty() {
        s.push_str(&render_cgroups(&r.memory_cgroups));
    }
    if let Some(sum) = &r.summary {
        let losses: Vec<String> = sum
            .counters
            .iter()
            .filter(|(k, v)| **v > 0 && crate::kernel::health::is_lossy(k))
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        s.push_str(&format!(
            "\nKERNEL SIDE: {}\n",
            if losses.is_empty() {
                "no losses".into()
            } else {
                losses.join(", ")
            }
        ));
    }
    if !r.overhead_budget.is_empty() {
        s.push_str(
            "\nOVERHEAD BUDGET: hooks paused to keep the kernel programs within --max-overhead\n  (a syscall hook's call and byte counts are incomplete while paused; with rss paused, RSS was\n  read from /proc each interval: samples stay exact, peaks between samples may be missed)\n",
        );
        for h in &r.overhead_budget {
            s.push_str(&format!(
                "  {:<8} paused {} time(s), {} in all; programs at up to {:.2}% of the node's CPU when it was paused\n",
                h.hook.as_str(),
                h.pauses,
                format::duration(h.paused_secs),
                h.max_bpf_cpu_share * 100.0
            ));
        }
    }
    s
}

/// The MEMORY CGROUPS section: one line per cgroup, busiest first (at most 20 lines).
fn render_cgroups(cgroups: &[crate::host::memcg::CgroupActivity]) -> String {
    let mut s = String::from("\nMEMORY CGROUPS (limit events, direct reclaim, PSI pressure)\n");
    for a in cgroups.iter().take(20) {
        let counts: Vec<String> = a
            .counts
            .iter()
            .filter(|(k, _)| k.as_str() != "reclaim")
            .map(|(k, n)| format!("{k}={n}"))
            .collect();
        let mut parts = Vec::new();
        if !counts.is_empty() {
            parts.push(counts.join(" "));
        }
        if let Some(runs) = a.counts.get("reclaim") {
            parts.push(format!(
                "reclaim {runs} runs, {} freed, {} stalled",
                format::bytes(a.reclaimed_bytes as f64),
                stall(a.reclaim_stall_ms)
            ));
        }
        if let Some(p) = a.peak_pressure_some_avg10 {
            parts.push(format!("pressure up to {p:.1}% (some avg10)"));
        }
        s.push_str(&format!(
            "  {:<40} +{}..+{}  {}\n",
            a.cgroup,
            format::duration(a.first_t),
            format::duration(a.last_t),
            parts.join("; ")
        ));
    }
    if cgroups.len() > 20 {
        s.push_str(&format!(
            "  ... and {} more (see --format json)\n",
            cgroups.len() - 20
        ));
    }
    s
}

/// A stall time: milliseconds below a second (reclaim stalls are usually short).
fn stall(ms: f64) -> String {
    if ms < 1000.0 {
        format!("{ms:.0}ms")
    } else {
        format::duration(ms / 1e3)
    }
}
