//! `leaktracer top`: processes ranked by how fast their private memory grows. A live
//! full-screen view on a terminal, or with `--once` one table/JSON document after the
//! observation period (for scripts and non-TTY use).
pub mod detail_view;
pub mod keys;
pub mod state;
pub mod table_view;
pub mod theme;
pub mod tui;
use std::io::{IsTerminal as _, Write as _};

use serde::Serialize;

use crate::{
    detector::Verdict,
    host::identity::{Identity, Resolver},
    host::memcg::LimitCache,
    model::table::{Process, ProcessTable},
    pipeline::context::Context,
    pipeline::filter::Filter,
    pipeline::sink::{Happening, SessionEnd, SessionInfo, Sink},
    trace::PodRef,
    util::clock,
    util::format,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
}

/// One row of the view, also the JSON shape of `top --once --format json`.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Row {
    pub pid: u32,
    pub ppid: u32,
    pub comm: String,
    pub rss_bytes: u64,
    pub private_bytes: u64,
    pub rss_anon_bytes: u64,
    pub rss_file_bytes: u64,
    pub rss_shmem_bytes: u64,
    pub rss_swap_bytes: u64,
    pub growth_bytes_per_sec: f64,
    pub growth_bytes_per_min: f64,
    pub alloc_bytes_per_sec: f64,
    /// Length of the current rise of private memory: from its last trough to where it
    /// stopped rising (the latest sample for a process still growing). 0 when the growth
    /// rate over the window is not positive (a burst followed by a longer flat stretch).
    pub growing_for_secs: f64,
    /// Seconds this process has been observed.
    pub observed_secs: f64,
    /// Latest leak verdict (see docs/verdicts.md) and its confidence (0..1), as every view
    /// shows them (crate::model::suspect::latest_verdict).
    pub verdict: Option<Verdict>,
    pub confidence: f64,
    /// The memory limit that applies (memory cgroup, else the node) and the time until the
    /// process reaches it at its current growth (only while growing).
    pub limit_bytes: Option<u64>,
    pub time_to_limit_secs: Option<f64>,
    /// Kubernetes / systemd identity from the cgroup path (absent fields are unknown).
    #[serde(flatten)]
    pub kubernetes: PodRef,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qos: Option<crate::host::identity::QosClass>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub systemd_unit: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
    /// Whether its recent peaks meet its memory cgroup's limit (None without one): see
    /// docs/trace-format.md, `risk`.
    pub risk: Option<crate::detector::LimitRisk>,
    /// A Go process's runtime (None for other processes and runtimes that cannot be read):
    /// live heap after the last GC, heap goal, GC cycles, memory limit, goroutines.
    pub go: Option<crate::model::go::GoFigures>,
    /// Private memory over the window at even steps, oldest first (the live view's TREND).
    #[serde(skip)]
    pub spark: Vec<u64>,
}

/// Points of the live view's sparkline.
const SPARK_POINTS: usize = 10;

/// `p`'s private memory at `n` even steps over the `window` before `now` (the value of the
/// latest sample at or before each step; samples are stored on change).
fn spark_of(p: &Process, now: f64, window: f64, n: usize) -> Vec<u64> {
    let mut out = Vec::with_capacity(n);
    let mut samples = p.fine.iter().peekable();
    let mut current = None;
    for i in 1..=n {
        let at = now - window + window * i as f64 / n as f64;
        while let Some(s) = samples.next_if(|s| s.t <= at) {
            current = Some(s.private());
        }
        if let Some(v) = current {
            out.push(v);
        }
    }
    out
}

/// Column titles of the table and the live view, in `Row::cells` order.
pub const COLUMNS: [&str; 11] = [
    "PID",
    "COMMAND",
    "RSS",
    "PRIVATE",
    "GROWTH/s",
    "GROWTH/min",
    "ALLOC/s",
    "GROWING",
    "VERDICT",
    "TO LIMIT",
    "RISK",
];

impl Row {
    /// Go's own figures for humans: the heap the last GC left live, and the goroutines
    /// ("-" for other processes and before the first GC).
    pub fn go_cells(&self) -> [String; 2] {
        let g = self.go.as_ref();
        [
            g.and_then(|g| g.live_heap_bytes)
                .map_or_else(|| "-".into(), |b| format::bytes(b as f64)),
            g.map_or_else(|| "-".into(), |g| g.goroutines.to_string()),
        ]
    }

    /// The row rendered for humans, one string per column of `COLUMNS`.
    pub fn cells(&self) -> [String; 11] {
        let dash = || "-".to_string();
        [
            self.pid.to_string(),
            self.comm.clone(),
            format::bytes(self.rss_bytes as f64),
            format::bytes(self.private_bytes as f64),
            format::bytes(self.growth_bytes_per_sec),
            format::bytes(self.growth_bytes_per_min),
            format::bytes(self.alloc_bytes_per_sec),
            if self.growing_for_secs > 0.0 {
                format::duration(self.growing_for_secs)
            } else {
                dash()
            },
            self.verdict.map_or_else(dash, |v| match v {
                Verdict::Leaking | Verdict::Growing => {
                    format!("{} {:.0}%", v.as_str(), self.confidence * 100.0)
                }
                _ => v.as_str().to_string(),
            }),
            self.time_to_limit_secs.map_or_else(dash, format::duration),
            self.risk.as_ref().map_or_else(dash, risk_cell),
        ]
    }
}

/// "!94%" at risk (the peak's share of the limit), "23%" otherwise.
pub fn risk_cell(r: &crate::detector::LimitRisk) -> String {
    let pct = format!("{:.0}%", r.peak_ratio * 100.0);
    if r.at_risk { format!("!{pct}") } else { pct }
}

/// How many of `rows` are at risk of meeting their limit (the header's count).
pub fn at_risk_count(rows: &[Row]) -> usize {
    rows.iter()
        .filter(|r| r.risk.as_ref().is_some_and(|x| x.at_risk))
        .count()
}

pub fn row(p: &Process, now: f64, window: f64, limits: &mut LimitCache, ids: &mut Resolver) -> Row {
    let Identity {
        cgroup,
        pod_uid,
        container_id,
        qos,
        systemd_unit,
        names,
        ..
    } = ids.get(p);
    let (limit_bytes, time_to_limit_secs) = crate::model::verdicts::limit_and_time(p, limits);
    let last = p.last().copied().unwrap_or_default();
    let growth = p.growth_rate(now, window);
    let growing_for = p.growing_for(now, window);
    let (verdict, confidence) = crate::model::suspect::latest_verdict(p);
    Row {
        pid: p.pid,
        ppid: p.ppid,
        comm: p.comm.clone(),
        rss_bytes: last.total_rss(),
        private_bytes: last.private(),
        rss_anon_bytes: last.rss.anon,
        rss_file_bytes: last.rss.file,
        rss_shmem_bytes: last.rss.shmem,
        rss_swap_bytes: last.rss.swap,
        growth_bytes_per_sec: growth.round(),
        growth_bytes_per_min: (growth * 60.0).round(),
        alloc_bytes_per_sec: p.alloc_rate(now, window).round(),
        growing_for_secs: crate::util::clock::round_ms(growing_for),
        observed_secs: crate::util::clock::round_ms(now - p.first_seen),
        verdict,
        confidence,
        limit_bytes,
        time_to_limit_secs,
        kubernetes: PodRef {
            names,
            pod_uid,
            container_id,
        },
        qos,
        systemd_unit,
        cgroup: (!cgroup.is_empty()).then_some(cgroup),
        risk: p.risk.as_deref().cloned(),
        go: p.go.as_ref().map(|g| g.latest.clone()),
        spark: spark_of(p, now, window, SPARK_POINTS),
    }
}

pub fn rows(
    table: &ProcessTable,
    filter: &Filter,
    now: f64,
    window: f64,
    limit: usize,
    limits: &mut LimitCache,
    ids: &mut Resolver,
) -> Vec<Row> {
    let mut out = Vec::with_capacity(limit.min(256));
    for (p, _) in table.ranked(now, window) {
        if out.len() >= limit {
            break;
        }
        if filter.wants(p, ids) {
            out.push(row(p, now, window, limits, ids));
        }
    }
    out
}

pub fn render_table(rows: &[Row]) -> String {
    // Go's columns only when a Go process is in view, as on the live screen.
    let go = rows.iter().any(|r| r.go.is_some());
    let line = |c: &[String], g: &[String; 2]| {
        let mut l = format!(
            "{:>7} {:<16} {:>8} {:>8} {:>9} {:>10} {:>9} {:>8} {:<12} {:>8} {:>5}",
            c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[8], c[9], c[10]
        );
        if go {
            l.push_str(&format!(" {:>9} {:>10}", g[0], g[1]));
        }
        l.push('\n');
        l
    };
    let mut out = line(
        &COLUMNS.map(String::from),
        &["GO HEAP".into(), "GOROUTINES".into()],
    );
    for r in rows {
        out.push_str(&line(&r.cells(), &r.go_cells()));
    }
    out
}

#[derive(Serialize)]
struct OnceDocument<'a> {
    observed_secs: f64,
    window_secs: f64,
    interval_ms: u64,
    host: String,
    start: String,
    processes: &'a [Row],
    /// The kernel programs' cost and the syscall hooks the budget has paused.
    overhead: &'a crate::kernel::budget::OverheadStatus,
    /// Processes that ended while observed, short-lived ones included (the largest first).
    ended: crate::model::ended::EndedLog,
    kernel_counters: std::collections::BTreeMap<String, u64>,
    /// The node's memory no process owns, and its series judged growing or leaking (absent
    /// before the first reading).
    node: Option<&'a crate::model::node::NodeView>,
}

pub struct TopSink {
    pub filter: Filter,
    pub format: OutputFormat,
    pub once: bool,
    pub window: f64,
    pub limit: usize,
    info: Option<SessionInfo>,
    /// The kernel's health counters at the latest round (None before the first).
    counters: Option<crate::kernel::health::Health>,
    tui: Option<crate::commands::top::tui::Tui>,
    batch: bool,
    /// The most recent OOM kill, one line, for the view's header.
    last_oom: Option<String>,
    /// The kernel programs' cost and the hooks paused, as of the last round.
    overhead: crate::kernel::budget::OverheadStatus,
    /// Recent memory-cgroup events and OOM kills, (cgroup, line), for the detail view.
    events: std::collections::VecDeque<(String, String)>,
    /// The node as of its latest reading.
    node: Option<crate::model::node::NodeView>,
}

/// The NODE block's lines, each with the verdict that colours it (verdict lines only).
fn node_block(v: Option<&crate::model::node::NodeView>) -> Vec<(Option<Verdict>, String)> {
    let Some(v) = v else { return Vec::new() };
    let plain = crate::commands::node_text::lines(v, false);
    plain
        .into_iter()
        .map(|l| (None, l))
        .chain(v.verdicts.iter().map(|x| {
            (
                Some(x.verdict),
                format!("{}: {}", x.verdict.as_str(), x.sentence),
            )
        }))
        .collect()
}

/// Memory-cgroup events and OOM kills the live view remembers for its detail screen.
const EVENTS_KEPT: usize = 256;

/// The header's account of leaktracer's own kernel-side cost, e.g. "BPF 0.42% of CPU
/// (budget 1%)" or "BPF 0.95% of CPU (budget 1%); paused: madvise, munmap", and whether RSS
/// comes from /proc meanwhile (rss_stat paused).
pub fn overhead_line(o: &crate::kernel::budget::OverheadStatus) -> String {
    let mut s = match o.bpf_cpu_share {
        Some(share) => format!("BPF {:.2}% of CPU", share * 100.0),
        None => "BPF cost unknown".to_string(),
    };
    if o.budget > 0.0 {
        s.push_str(&format!(" (budget {}%)", o.budget * 100.0));
    }
    let syscalls: Vec<&str> = o
        .paused
        .iter()
        .filter(|h| **h != crate::kernel::budget::Hook::Rss)
        .map(|h| h.as_str())
        .collect();
    if !syscalls.is_empty() {
        s.push_str(&format!(
            "; paused: {} (counts incomplete)",
            syscalls.join(", ")
        ));
    }
    if o.paused.contains(&crate::kernel::budget::Hook::Rss) {
        s.push_str(&format!(
            "; rss_stat paused: RSS of {} processes read from /proc",
            o.rss_from_proc
        ));
    }
    s
}

impl TopSink {
    pub fn new(
        filter: Filter,
        format: OutputFormat,
        once: bool,
        window: f64,
        limit: usize,
    ) -> anyhow::Result<Self> {
        // Without a terminal the live view becomes batch mode (like `top -b`): one table
        // every interval on stdout, so `leaktracer top | tee` and CI logs work.
        let batch = !once && !std::io::stdout().is_terminal();
        Ok(Self {
            filter,
            format,
            once,
            window,
            limit,
            info: None,
            counters: None,
            tui: None,
            batch,
            last_oom: None,
            overhead: crate::kernel::budget::OverheadStatus::default(),
            events: std::collections::VecDeque::new(),
            node: None,
        })
    }

    fn remember(&mut self, cgroup: String, line: String) {
        if self.events.len() >= EVENTS_KEPT {
            self.events.pop_front();
        }
        self.events.push_back((cgroup, line));
    }

    /// The detail of `pid` for the live view, with the recent events of its cgroup.
    fn detail(&self, table: &ProcessTable, pid: u32, now: f64) -> Option<detail_view::Detail> {
        let p = table.find(pid)?;
        let cgroup = p.memcg_path();
        let events = self
            .events
            .iter()
            .filter(|(c, _)| Some(c) == cgroup.as_ref())
            .map(|(_, line)| line.clone())
            .collect();
        Some(detail_view::Detail::of(p, now, events))
    }

    fn now(&self) -> f64 {
        self.info
            .as_ref()
            .map_or(0.0, |i| clock::monotonic_secs() - i.t0_mono)
    }
}

impl Sink for TopSink {
    fn start(&mut self, info: &SessionInfo) -> anyhow::Result<()> {
        self.info = Some(info.clone());
        if !self.once && !self.batch {
            self.tui = Some(crate::commands::top::tui::Tui::enter()?);
        }
        Ok(())
    }

    fn handle(
        &mut self,
        ctx: &mut Context,
        table: &ProcessTable,
        what: Happening<'_>,
    ) -> anyhow::Result<()> {
        if let Happening::Oom(rec) = &what {
            let v = &rec.victim;
            let cgroup = table
                .find(v.pid)
                .and_then(|p| p.memcg_path())
                .unwrap_or_else(|| "?".into());
            let line = format!(
                "{} {} ({}) in {}, anon {}, triggered by {} ({})",
                clock::rfc3339(clock::unix_millis()),
                v.pid,
                v.comm,
                cgroup,
                format::bytes(v.anon_rss_bytes as f64),
                v.trigger_pid,
                v.trigger_comm
            );
            if self.batch {
                writeln!(std::io::stdout().lock(), "!!! OOM kill: {line}")?;
            }
            self.remember(
                cgroup,
                format!(
                    "+{} OOM kill of {} ({})",
                    format::duration(rec.t),
                    v.pid,
                    v.comm
                ),
            );
            self.last_oom = Some(line);
        }
        if let Happening::Memcg { t, event } = &what {
            let what: Vec<String> = event
                .counts()
                .into_iter()
                .map(|(_, name, n)| format!("{name} +{n}"))
                .collect();
            self.remember(
                event.scope().to_string(),
                format!("+{} {}", format::duration(*t), what.join(", ")),
            );
        }
        if let Happening::Node { view, .. } = &what {
            self.node = Some((*view).clone());
            if self.batch {
                let mut out = std::io::stdout().lock();
                for (_, line) in node_block(self.node.as_ref()) {
                    writeln!(out, "NODE {line}")?;
                }
                out.flush()?;
            }
        }
        if let Happening::Round { snap, overhead, .. } = what {
            self.counters = Some(snap.counters);
            self.overhead = overhead.clone();
            let now = self.now();
            if self.tui.is_some() {
                let rows = rows(
                    table,
                    &self.filter,
                    now,
                    self.window,
                    200,
                    &mut ctx.limits,
                    &mut ctx.ids,
                );
                let counters = self.counters.unwrap_or_default();
                let header = table_view::Header {
                    tracked: table.live.len(),
                    ended: table.ended.count,
                    short_lived: table.ended.brief,
                    uptime_secs: now,
                    overhead: overhead_line(&self.overhead),
                    kernel_losses: counters.losses(),
                    last_oom: self.last_oom.clone(),
                    node: node_block(self.node.as_ref()),
                };
                // The selected process's detail, ready for Enter (the view's selection is
                // the one of the previous round, or the first row).
                let selected = self
                    .tui
                    .as_ref()
                    .and_then(|t| t.selected())
                    .or_else(|| rows.first().map(|r| r.pid));
                let detail = selected.and_then(|pid| self.detail(table, pid, now));
                if let Some(tui) = &mut self.tui {
                    tui.update(rows, header, detail)?;
                }
            } else if self.batch {
                let rows = rows(
                    table,
                    &self.filter,
                    now,
                    self.window,
                    self.limit,
                    &mut ctx.limits,
                    &mut ctx.ids,
                );
                let mut out = std::io::stdout().lock();
                writeln!(
                    out,
                    "--- {} — {} processes tracked, {} at risk of their limit — {}",
                    clock::rfc3339(clock::unix_millis()),
                    table.live.len(),
                    at_risk_count(&rows),
                    overhead_line(&self.overhead)
                )?;
                out.write_all(render_table(&rows).as_bytes())?;
                out.flush()?;
            }
        }
        Ok(())
    }

    fn wants_stop(&mut self) -> bool {
        // Keys are applied (and drawn) by the view's key reader as they come; the session
        // notices a quit after its current step (within one --interval).
        self.tui.as_ref().is_some_and(|t| t.quit_requested())
    }

    fn finish(
        &mut self,
        ctx: &mut Context,
        table: &ProcessTable,
        _end: SessionEnd,
    ) -> anyhow::Result<()> {
        if let Some(tui) = self.tui.take() {
            tui.leave()?;
            return Ok(());
        }
        if self.batch {
            return Ok(());
        }
        let now = self.now();
        let window = self.window.min(now.max(1.0));
        let rows = rows(
            table,
            &self.filter,
            now,
            window,
            self.limit,
            &mut ctx.limits,
            &mut ctx.ids,
        );
        let ended = crate::model::ended::EndedLog {
            largest: table
                .ended
                .largest_matching(self.limit, |e| self.filter.matches(e.pid, &e.comm)),
            ..table.ended.clone()
        };
        let mut stdout = std::io::stdout().lock();
        match self.format {
            OutputFormat::Table => {
                stdout.write_all(render_table(&rows).as_bytes())?;
                if ended.count > 0 {
                    stdout.write_all(b"\n")?;
                    stdout.write_all(
                        crate::model::ended::render_text(&ended, &ended.largest).as_bytes(),
                    )?;
                }
                if let Some(node) = &self.node {
                    stdout.write_all(b"\nNODE (memory no process owns)\n")?;
                    for line in crate::commands::node_text::lines(node, true) {
                        writeln!(stdout, "  {line}")?;
                    }
                }
            }
            OutputFormat::Json => {
                let info = self.info.as_ref();
                let doc = OnceDocument {
                    observed_secs: crate::util::clock::round_ms(now),
                    window_secs: crate::util::clock::round_ms(window),
                    interval_ms: info.map_or(0, |i| i.interval.as_millis() as u64),
                    host: std::fs::read_to_string("/proc/sys/kernel/hostname")
                        .unwrap_or_default()
                        .trim()
                        .to_string(),
                    start: info.map_or_else(String::new, |i| clock::rfc3339(i.start_unix_ms)),
                    processes: &rows,
                    overhead: &self.overhead,
                    ended,
                    kernel_counters: self.counters.map(|h| h.to_map()).unwrap_or_default(),
                    node: self.node.as_ref(),
                };
                serde_json::to_writer_pretty(&mut stdout, &doc)?;
                stdout.write_all(b"\n")?;
            }
        }
        stdout.flush()?;
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A row for view tests: `pid` `comm` with this verdict and private memory.
    pub(crate) fn row(pid: u32, comm: &str, verdict: Option<Verdict>, private: u64) -> Row {
        Row {
            pid,
            ppid: 1,
            comm: comm.into(),
            rss_bytes: private,
            private_bytes: private,
            rss_anon_bytes: private,
            rss_file_bytes: 0,
            rss_shmem_bytes: 0,
            rss_swap_bytes: 0,
            growth_bytes_per_sec: 0.0,
            growth_bytes_per_min: 0.0,
            alloc_bytes_per_sec: 0.0,
            growing_for_secs: 0.0,
            observed_secs: 10.0,
            verdict,
            confidence: 0.9,
            limit_bytes: None,
            time_to_limit_secs: None,
            kubernetes: PodRef::default(),
            qos: None,
            systemd_unit: None,
            cgroup: None,
            risk: None,
            go: None,
            spark: Vec::new(),
        }
    }

    #[test]
    fn the_once_table_has_go_columns_only_with_a_go_process_in_view() {
        let plain = vec![row(1, "app", None, 1 << 20)];
        assert!(!render_table(&plain).contains("GO HEAP"));
        let mut go = row(2, "agent", None, 64 << 20);
        go.go = Some(crate::model::go::GoFigures {
            go_version: "go1.26.6".into(),
            live_heap_bytes: Some(32 << 20),
            heap_goal_bytes: Some(64 << 20),
            gc_cycles: 12,
            memory_limit_bytes: None,
            goroutines: 175,
        });
        let text = render_table(&[plain[0].clone(), go]);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].contains("GO HEAP") && lines[0].contains("GOROUTINES"));
        assert!(lines[1].ends_with("-          -"), "{text}");
        assert!(
            lines[2].contains("32 MiB") && lines[2].ends_with("175"),
            "{text}"
        );
    }

    /// The JSON shape of `top --once --format json`'s rows: field names and order.
    #[test]
    fn row_json_shape() {
        let full = Row {
            pid: 42,
            ppid: 1,
            comm: "web".into(),
            rss_bytes: 5,
            private_bytes: 4,
            rss_anon_bytes: 3,
            rss_file_bytes: 1,
            rss_shmem_bytes: 1,
            rss_swap_bytes: 0,
            growth_bytes_per_sec: 10.0,
            growth_bytes_per_min: 600.0,
            alloc_bytes_per_sec: 20.0,
            growing_for_secs: 1.5,
            observed_secs: 2.5,
            verdict: Some(Verdict::Leaking),
            confidence: 0.93,
            limit_bytes: Some(100),
            time_to_limit_secs: Some(9.6),
            kubernetes: PodRef {
                names: crate::host::identity::PodNames {
                    namespace: Some("shop".into()),
                    pod: Some("web-1".into()),
                    container: Some("app".into()),
                },
                pod_uid: Some("uid".into()),
                container_id: Some("cid".into()),
            },
            qos: Some(crate::host::identity::QosClass::Burstable),
            systemd_unit: Some("x.service".into()),
            cgroup: Some("/kubepods".into()),
            risk: Some(crate::detector::LimitRisk {
                at_risk: true,
                kind: Some(crate::detector::RiskKind::NearLimit),
                peak_ratio: 0.94,
                peak_bytes: 94,
                limit_bytes: 100,
                recent_peaks_bytes: vec![93, 94],
                reason: "why".into(),
            }),
            go: Some(crate::model::go::GoFigures {
                go_version: "go1.26.6".into(),
                live_heap_bytes: Some(32),
                heap_goal_bytes: Some(64),
                gc_cycles: 7,
                memory_limit_bytes: None,
                goroutines: 501,
            }),
            spark: vec![1, 2],
        };
        assert_eq!(
            serde_json::to_string(&full).unwrap(),
            r#"{"pid":42,"ppid":1,"comm":"web","rss_bytes":5,"private_bytes":4,"rss_anon_bytes":3,"rss_file_bytes":1,"rss_shmem_bytes":1,"rss_swap_bytes":0,"growth_bytes_per_sec":10.0,"growth_bytes_per_min":600.0,"alloc_bytes_per_sec":20.0,"growing_for_secs":1.5,"observed_secs":2.5,"verdict":"leaking","confidence":0.93,"limit_bytes":100,"time_to_limit_secs":9.6,"namespace":"shop","pod":"web-1","container":"app","pod_uid":"uid","container_id":"cid","qos":"Burstable","systemd_unit":"x.service","cgroup":"/kubepods","risk":{"at_risk":true,"kind":"near_limit","peak_ratio":0.94,"peak_bytes":94,"limit_bytes":100,"recent_peaks_bytes":[93,94],"reason":"why"},"go":{"go_version":"go1.26.6","live_heap_bytes":32,"heap_goal_bytes":64,"gc_cycles":7,"memory_limit_bytes":null,"goroutines":501}}"#
        );
        let sparse = Row {
            verdict: None,
            confidence: 0.0,
            limit_bytes: None,
            time_to_limit_secs: None,
            kubernetes: PodRef::default(),
            qos: None,
            systemd_unit: None,
            cgroup: None,
            risk: None,
            go: None,
            ..full
        };
        assert_eq!(
            serde_json::to_string(&sparse).unwrap(),
            r#"{"pid":42,"ppid":1,"comm":"web","rss_bytes":5,"private_bytes":4,"rss_anon_bytes":3,"rss_file_bytes":1,"rss_shmem_bytes":1,"rss_swap_bytes":0,"growth_bytes_per_sec":10.0,"growth_bytes_per_min":600.0,"alloc_bytes_per_sec":20.0,"growing_for_secs":1.5,"observed_secs":2.5,"verdict":null,"confidence":0.0,"limit_bytes":null,"time_to_limit_secs":null,"risk":null,"go":null}"#
        );
    }
}
