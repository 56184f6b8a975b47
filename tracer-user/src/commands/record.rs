//! `leaktracer record`: the session as a JSON Lines trace. Every line is a complete JSON
//! object; the file is flushed after every round, and SIGINT/SIGTERM end the session
//! through the normal path, so the summary line is always written.
use std::{
    fs::File,
    io::{BufWriter, Write as _},
    path::{Path, PathBuf},
};

use anyhow::Context as _;

use crate::{
    host::procfs::own_rss_bytes,
    model::table::ProcessTable,
    pipeline::context::Context,
    pipeline::filter::Filter,
    pipeline::sink::{Happening, SessionEnd, SessionInfo, Sink},
    trace::{
        self, ExitRecord, Grower, Header, Health, NodeRecord, NodeVerdictRecord, ProcessInfo,
        Record, RiskRecord, SampleRecord, Summary, SuspectBrief, VerdictRecord,
    },
    util::clock,
};

pub struct RecordSink {
    out: BufWriter<Box<dyn std::io::Write + Send>>,
    path: PathBuf,
    filter: Filter,
    summary: Summary,
    /// The kernel's health counters at the last health line (None before the first).
    last_counters: Option<crate::kernel::health::Health>,
    last_health_t: f64,
    /// Hooks paused at the last health line (a change writes one at once).
    last_paused: Vec<crate::kernel::budget::Hook>,
    t0_mono: f64,
    /// Wall clock at session start (dates the summary's suspects).
    start_unix_ms: u64,
    /// Each slab cache as the last node record left it (only changes are written).
    node_slabs: std::collections::HashMap<String, crate::host::node::slabinfo::SlabCache>,
}

impl RecordSink {
    /// `path` "-" writes to stdout.
    pub fn create(path: &Path, filter: Filter) -> anyhow::Result<Self> {
        let w: Box<dyn std::io::Write + Send> = if path == Path::new("-") {
            Box::new(std::io::stdout())
        } else {
            Box::new(
                File::create(path)
                    .with_context(|| format!("creating trace file {}", path.display()))?,
            )
        };
        Ok(Self {
            out: BufWriter::with_capacity(256 * 1024, w),
            path: path.to_path_buf(),
            filter,
            summary: Summary::default(),
            last_counters: None,
            last_health_t: f64::NEG_INFINITY,
            last_paused: Vec::new(),
            t0_mono: 0.0,
            start_unix_ms: 0,
            node_slabs: std::collections::HashMap::new(),
        })
    }

    fn write(&mut self, rec: &Record) -> anyhow::Result<()> {
        serde_json::to_writer(&mut self.out, rec).context("serialising a trace record")?;
        self.out
            .write_all(b"\n")
            .with_context(|| format!("writing {}", self.path.display()))?;
        Ok(())
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        self.out
            .flush()
            .with_context(|| format!("flushing {}", self.path.display()))
    }

    fn t(&self, t_mono: f64) -> f64 {
        crate::util::clock::round_ms(t_mono - self.t0_mono)
    }
}

pub fn header(info: &SessionInfo, filter: &Filter) -> Header {
    Header {
        schema: trace::SCHEMA_VERSION,
        tool: "leaktracer".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        host: hostname(),
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_string(),
        start_unix_ms: info.start_unix_ms,
        start: clock::rfc3339(info.start_unix_ms),
        interval_ms: info.interval.as_millis() as u64,
        rss_source: format!("{:?}", info.rss_source).to_lowercase(),
        page_size: crate::kernel::loader::page_size(),
        filter_pids: filter.pids.clone(),
        filter_comms: filter.comms.clone(),
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// The records of a process's end (session time `t`): its final sample, when the kernel had
/// its counters, and its exit. Shared by `record` and the daemon's stdout.
pub fn exit_records(
    table: &ProcessTable,
    pid: u32,
    comm: &str,
    t: f64,
    ended: Option<crate::model::table::Ended>,
) -> (Option<SampleRecord>, ExitRecord) {
    let p = table.find(pid);
    let final_counters = ended.and(p).map(|p| p.counters);
    let exit = ExitRecord {
        t,
        pid,
        comm: p.map_or_else(|| comm.to_string(), |p| p.comm.clone()),
        last_rss: final_counters.map(|c| c.rss),
        peak_private_bytes: final_counters.map_or(0, |c| c.peak_private),
    };
    (
        final_counters.map(|c| SampleRecord::from_counters(t, pid, &c)),
        exit,
    )
}

impl RecordSink {
    /// The `process` record of a process seen for the first time (alive or at its end).
    fn process_record(
        &mut self,
        ctx: &mut Context,
        table: &ProcessTable,
        pid: u32,
        t: f64,
    ) -> anyhow::Result<()> {
        let Some(p) = table.find(pid) else {
            return Ok(());
        };
        if !self.filter.wants(p, &mut ctx.ids) {
            return Ok(());
        }
        self.summary.processes_seen += 1;
        let limit = ctx.limits.get(p.memcg_path().as_deref());
        let id = ctx.ids.get(p);
        self.write(&Record::Process(ProcessInfo {
            t,
            pid: p.pid,
            ppid: p.ppid,
            comm: p.comm.clone(),
            cmdline: p.cmdline.as_deref().map(str::to_owned),
            cgroup: p.cgroup_raw.as_deref().map(|s| s.trim_end().to_string()),
            limit_bytes: limit.as_ref().map(|l| l.bytes),
            limit_cgroup: limit.and_then(|l| l.cgroup),
            pod: id.into(),
        }))
    }
}

impl Sink for RecordSink {
    fn start(&mut self, info: &SessionInfo) -> anyhow::Result<()> {
        self.t0_mono = info.t0_mono;
        self.start_unix_ms = info.start_unix_ms;
        self.write(&Record::Header(header(info, &self.filter)))?;
        self.flush()
    }

    fn handle(
        &mut self,
        ctx: &mut Context,
        table: &ProcessTable,
        what: Happening<'_>,
    ) -> anyhow::Result<()> {
        match what {
            Happening::Round {
                snap,
                report,
                verdicts,
                risks,
                overhead,
            } => {
                self.summary.rounds += 1;
                let t = self.t(snap.t_mono);
                for pid in &report.new_pids {
                    self.process_record(ctx, table, *pid, t)?;
                }
                let mut pids: Vec<u32> = table
                    .live
                    .values()
                    .filter(|p| p.changed)
                    .map(|p| p.pid)
                    .collect();
                // Exited processes are in the graveyard now, with their final counters.
                pids.extend(&report.exited);
                pids.sort_unstable();
                for pid in pids {
                    let Some(p) = table.find(pid) else { continue };
                    if !self.filter.wants(p, &mut ctx.ids) {
                        continue;
                    }
                    self.summary.samples += 1;
                    self.write(&Record::Sample(SampleRecord {
                        risk: p.risk.as_deref().cloned(),
                        go: p.go.as_ref().map(|g| g.latest.clone()),
                        ..SampleRecord::from_counters(t, pid, &p.counters)
                    }))?;
                }
                for v in verdicts.iter() {
                    let Some(p) = table.find(v.pid) else { continue };
                    if !self.filter.wants(p, &mut ctx.ids) {
                        continue;
                    }
                    self.write(&Record::Verdict(VerdictRecord::from_change(t, &p.comm, v)))?;
                }
                for r in risks.iter() {
                    let Some(p) = table.find(r.pid) else { continue };
                    if !self.filter.wants(p, &mut ctx.ids) {
                        continue;
                    }
                    self.write(&Record::Risk(RiskRecord::from_change(t, &p.comm, r)))?;
                }
                // Health: whenever a kernel counter other than the event tallies moved, and
                // at least every 10 s.
                let counters = snap.counters;
                if Some(counters) != self.last_counters
                    || t - self.last_health_t >= 10.0
                    || overhead.paused != self.last_paused
                {
                    self.write(&Record::Health(Health {
                        t,
                        counters: counters.to_map(),
                        procs_in_map: snap.procs.len(),
                        procs_capacity: snap.procs_capacity,
                        own_rss_bytes: own_rss_bytes(),
                        bpf_cpu_share: overhead.bpf_cpu_share.map(|s| (s * 1e6).round() / 1e6),
                        paused_hooks: overhead.paused.clone(),
                        rss_from_proc: overhead.rss_from_proc,
                    }))?;
                    self.last_paused = overhead.paused.clone();
                    self.last_counters = Some(counters);
                    self.last_health_t = t;
                }
                self.flush()?;
            }
            Happening::Exit {
                pid,
                comm,
                t_mono,
                ended,
            } => {
                let t = self.t(t_mono);
                let p = table.find(pid);
                let wanted = match p {
                    Some(p) => self.filter.wants(p, &mut ctx.ids),
                    None => self.filter.matches(pid, comm),
                };
                if !wanted {
                    return Ok(());
                }
                // A process that lived less than one interval: its first record is its
                // last, with every count it made.
                if ended.is_some_and(|e| e.first_sight) {
                    self.process_record(ctx, table, pid, t)?;
                }
                let (sample, exit) = exit_records(table, pid, comm, t, ended);
                if let Some(sample) = sample {
                    self.summary.samples += 1;
                    self.write(&Record::Sample(sample))?;
                }
                self.summary.exits += 1;
                self.write(&Record::Exit(exit))?;
            }
            Happening::Budget { t, event } => {
                self.summary.budget_pauses +=
                    u64::from(event.action == crate::kernel::budget::BudgetAction::Pause);
                self.write(&Record::Budget {
                    t,
                    event: event.clone(),
                })?;
                self.flush()?;
            }
            Happening::Memcg { t, event } => {
                self.write(&Record::Memcg {
                    t,
                    event: event.clone(),
                })?;
                self.flush()?;
            }
            Happening::Exec { pid, comm, t_mono } => {
                if self.filter.matches(pid, comm) {
                    let t = self.t(t_mono);
                    let p = table.live.get(&pid);
                    self.write(&Record::Exec {
                        t,
                        pid,
                        comm: comm.to_string(),
                        cmdline: p.and_then(|p| p.cmdline.as_deref().map(str::to_owned)),
                        cgroup: p.and_then(|p| {
                            p.cgroup_raw.as_deref().map(|s| s.trim_end().to_string())
                        }),
                    })?;
                }
            }
            Happening::Cgroup { t, change } => {
                self.write(&Record::Cgroup {
                    t,
                    change: change.clone(),
                })?;
            }
            Happening::Stacks { t, update } => {
                self.write(&Record::Stacks {
                    t,
                    update: update.clone(),
                })?;
                self.flush()?;
            }
            Happening::Node {
                t,
                reading,
                changes,
                ..
            } => {
                let slabs = reading
                    .slabs
                    .iter()
                    .filter(|c| self.node_slabs.get(&c.name) != Some(*c))
                    .cloned()
                    .collect::<Vec<_>>();
                for c in &slabs {
                    self.node_slabs.insert(c.name.clone(), c.clone());
                }
                self.write(&Record::Node(NodeRecord {
                    t,
                    memory: reading.memory,
                    slabs,
                    zombies: reading.zombies,
                    held: reading.held.clone(),
                }))?;
                for c in changes {
                    self.write(&Record::NodeVerdict(NodeVerdictRecord::from_change(t, c)))?;
                }
                self.flush()?;
            }
            Happening::Oom(rec) => {
                // OOM kills are always written: the filter must not hide what killed a
                // filtered process's neighbour.
                self.summary.oom_kills += 1;
                self.write(&Record::OomKill(rec.clone()))?;
                self.flush()?;
            }
        }
        Ok(())
    }

    fn finish(
        &mut self,
        ctx: &mut Context,
        table: &ProcessTable,
        end: SessionEnd,
    ) -> anyhow::Result<()> {
        let now = end.t;
        let window = 60.0;
        self.summary.t = now;
        self.summary.end_unix_ms = clock::unix_millis();
        self.summary.ended_by = end.reason.as_str().to_string();
        self.summary.counters = self.last_counters.map(|h| h.to_map()).unwrap_or_default();
        self.summary.top_growers = table
            .ranked(now, window)
            .into_iter()
            .filter(|(p, r)| *r > 0.0 && self.filter.wants(p, &mut ctx.ids))
            .take(10)
            .map(|(p, r)| Grower {
                pid: p.pid,
                comm: p.comm.clone(),
                growth_bytes_per_sec: r.round(),
                private_bytes: p.last().map_or(0, |s| s.private()),
            })
            .collect();
        // Judged now: `report` on this trace judges the same series at the same moment.
        self.summary.suspects = self
            .filter
            .suspects(table, now, self.start_unix_ms, &mut ctx.ids)
            .iter()
            .take(20)
            .map(|(s, _)| SuspectBrief::from(s))
            .collect();
        let summary = Record::Summary(self.summary.clone());
        self.write(&summary)?;
        self.flush()
    }
}
