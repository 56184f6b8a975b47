//! `leaktracer daemon`: the DaemonSet mode. Serves /metrics, /healthz and /readyz, writes
//! OOM records and verdict changes as JSON Lines on stdout (the same records as a trace),
//! and shuts down cleanly on SIGTERM (programs detached, output flushed).
pub mod auto_profile;
pub mod growth_profile;
pub mod metrics;
use std::{
    collections::HashMap,
    io::Write as _,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
};

use anyhow::Context as _;
use axum::{Router, http::StatusCode, response::IntoResponse, routing::get};

use crate::{
    commands::daemon::metrics::{ContainerLabels, MapLabels, Metrics, ReasonLabels, VerdictLabels},
    host::identity::Identity,
    model::table::ProcessTable,
    pipeline::context::Context,
    pipeline::filter::Filter,
    pipeline::sink::{Happening, SessionEnd, SessionInfo, Sink},
    trace::{NodeVerdictRecord, Record, RiskRecord, VerdictRecord},
    util::clock::round_ms,
    util::error::UsageError,
};

pub struct Shared {
    pub metrics: Metrics,
    pub ready: AtomicBool,
}

/// Growth-profile captures: the one capture slot (on demand or automatic) and the profiles
/// captured automatically.
#[derive(Clone, Default)]
pub struct Captures {
    pub busy: Arc<AtomicBool>,
    pub store: Arc<Mutex<auto_profile::Store>>,
}

/// Bind the listener now, so a busy port is a usage error before any BPF is loaded.
pub async fn bind(listen: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| UsageError::new(format!("--listen {listen}: {e}")).into())
}

pub fn serve(
    listener: tokio::net::TcpListener,
    shared: Arc<Mutex<Shared>>,
    stop: tokio::sync::oneshot::Receiver<()>,
    host_root: std::path::PathBuf,
    captures: Captures,
) -> tokio::task::JoinHandle<()> {
    let m = shared.clone();
    let r = shared;
    let Captures { busy, store } = captures;
    let store_one = store.clone();
    let app = Router::new()
        .route(
            "/debug/pprof/growth",
            get(move |q| growth_profile::serve(host_root.clone(), busy.clone(), q)),
        )
        .route(
            "/debug/pprof/leaks",
            get(move || auto_profile::list(store.clone())),
        )
        .route(
            "/debug/pprof/leaks/{id}",
            get(move |id| auto_profile::one(store_one.clone(), id)),
        )
        .route(
            "/metrics",
            get(move || {
                let m = m.clone();
                async move {
                    let body = m.lock().map(|s| s.metrics.encode()).unwrap_or_default();
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        body,
                    )
                }
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || {
                let r = r.clone();
                async move {
                    let ready = r
                        .lock()
                        .map(|s| s.ready.load(Ordering::Relaxed))
                        .unwrap_or(false);
                    if ready {
                        (StatusCode::OK, "ready\n").into_response()
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "attaching\n").into_response()
                    }
                }
            }),
        );
    tokio::spawn(async move {
        let shutdown = async {
            let _ = stop.await;
        };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            log::error!("metrics server failed: {e}");
        }
    })
}

pub struct DaemonSink {
    shared: Arc<Mutex<Shared>>,
    top: usize,
    t0_mono: f64,
    last_counters: crate::kernel::health::Health,
    last_cpu_secs: f64,
    /// Node-wide syscall totals already added to the metric.
    last_calls: crate::model::counters::Calls,
    /// Exits whose peak private memory reaches this many bytes are written to stdout.
    exit_min_peak: u64,
    /// Each Go process's GC cycles when last counted (the counter adds what it completed).
    gc_cycles: HashMap<u32, u32>,
    /// Growth profiles of processes judged leaking.
    auto: auto_profile::AutoProfiler,
    /// The processes --pid/--comm/--namespace/--pod/--container select: the only ones with
    /// verdict, risk and exit lines, growth profiles and per-container series. Node-wide
    /// figures (totals, node verdicts, memory-cgroup events, OOM kills, budget) stay
    /// node-wide: a filter must not hide what killed a selected process's neighbour.
    only: Filter,
}

impl DaemonSink {
    pub fn new(
        shared: Arc<Mutex<Shared>>,
        top: usize,
        exit_min_peak: u64,
        auto: auto_profile::AutoProfiler,
        only: Filter,
    ) -> Self {
        Self {
            auto,
            only,
            shared,
            top,
            t0_mono: 0.0,
            last_counters: Default::default(),
            last_cpu_secs: 0.0,
            last_calls: Default::default(),
            exit_min_peak,
            gc_cycles: HashMap::new(),
        }
    }

    /// Labels for a cgroup path (a pod slice or container cgroup).
    fn cgroup_labels(&self, cgroup: &str) -> ContainerLabels {
        labels_of(&crate::host::identity::parse_cgroup_path(cgroup))
    }

    fn emit(&self, rec: &Record) {
        let mut out = std::io::stdout().lock();
        if serde_json::to_writer(&mut out, rec).is_ok() {
            let _ = out.write_all(b"\n");
            let _ = out.flush();
        }
    }
}

/// cAdvisor-style labels: containers by namespace/pod/container; node daemons by their
/// systemd unit in `container`; everything else aggregated under empty labels.
pub fn labels_of(id: &Identity) -> ContainerLabels {
    if id.pod_uid.is_some() || id.container_id.is_some() {
        ContainerLabels {
            namespace: id.names.namespace.clone().unwrap_or_default(),
            pod: id
                .names
                .pod
                .clone()
                .or_else(|| id.pod_uid.clone())
                .unwrap_or_default(),
            container: id
                .names
                .container
                .clone()
                .or_else(|| id.short_container_id().map(str::to_string))
                .unwrap_or_default(),
        }
    } else {
        ContainerLabels {
            namespace: String::new(),
            pod: String::new(),
            container: id.systemd_unit.clone().unwrap_or_default(),
        }
    }
}

impl Sink for DaemonSink {
    fn start(&mut self, info: &SessionInfo) -> anyhow::Result<()> {
        self.t0_mono = info.t0_mono;
        if let Ok(s) = self.shared.lock() {
            s.ready.store(true, Ordering::Relaxed);
        }
        log::info!("ready: {} programs attached", info.attached.len());
        Ok(())
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
                verdicts,
                risks,
                overhead,
                ..
            } => {
                let now = table.session_time(snap.t_mono);
                for v in verdicts.iter() {
                    let Some(p) = table.find(v.pid) else { continue };
                    if !self.only.wants(p, &mut ctx.ids) {
                        continue;
                    }
                    let rec = VerdictRecord::from_change(round_ms(now), &p.comm, v);
                    if rec.verdict == crate::detector::Verdict::Leaking {
                        self.auto.leaking(rec.pid, &rec.comm, &rec.reason);
                    }
                    self.emit(&Record::Verdict(rec));
                }
                self.auto.overhead(overhead);
                let outcomes = self
                    .auto
                    .tick(|pid| table.live.contains_key(&pid), self.t0_mono);
                for r in risks.iter() {
                    let Some(p) = table.find(r.pid) else { continue };
                    if !self.only.wants(p, &mut ctx.ids) {
                        continue;
                    }
                    self.emit(&Record::Risk(RiskRecord::from_change(
                        round_ms(now),
                        &p.comm,
                        r,
                    )));
                }
                // The top-N growing processes define which containers get series this round.
                let ranked: Vec<(u32, f64)> = table
                    .ranked(now, 60.0)
                    .into_iter()
                    .filter(|(p, _)| self.only.wants(p, &mut ctx.ids))
                    .take(self.top)
                    .map(|(p, r)| (p.pid, r))
                    .collect();
                let mut per_container: HashMap<ContainerLabels, (f64, f64, f64, Option<f64>)> =
                    HashMap::new();
                let mut verdict_series = Vec::new();
                for (pid, rate) in &ranked {
                    let Some(p) = table.live.get(pid) else {
                        continue;
                    };
                    let id = ctx.ids.get(p);
                    let labels = labels_of(&id);
                    let (_, ttl) = crate::model::verdicts::limit_and_time(p, &mut ctx.limits);
                    let a = p.assessment.as_ref();
                    let e =
                        per_container
                            .entry(labels.clone())
                            .or_insert((0.0, f64::MIN, 0.0, None));
                    e.0 += p.last().map_or(0, |s| s.private()) as f64;
                    e.1 = e.1.max(*rate);
                    if a.is_some_and(|a| a.verdict.is_growth()) {
                        e.2 = e.2.max(a.map_or(0.0, |a| a.confidence));
                        e.3 = match (e.3, ttl) {
                            (Some(x), Some(y)) => Some(x.min(y)),
                            (x, y) => x.or(y),
                        };
                    }
                    if let Some(a) = a {
                        verdict_series.push(VerdictLabels {
                            namespace: labels.namespace.clone(),
                            pod: labels.pod.clone(),
                            container: labels.container.clone(),
                            comm: p.comm.clone(),
                            verdict: a.verdict.as_str().to_string(),
                        });
                    }
                }
                // Headroom: the containers above, and every container with a process at
                // risk (few: their peaks are within the margin of their limit).
                let mut headroom: HashMap<ContainerLabels, f64> = HashMap::new();
                for p in table.live.values() {
                    let Some(risk) = &p.risk else { continue };
                    if !self.only.wants(p, &mut ctx.ids) {
                        continue;
                    }
                    let in_top = ranked.iter().any(|(pid, _)| *pid == p.pid);
                    if !(risk.at_risk || in_top) {
                        continue;
                    }
                    let e = headroom.entry(labels_of(&ctx.ids.get(p))).or_insert(0.0);
                    *e = e.max(risk.peak_ratio);
                }
                // Go runtimes: every Go process whose runtime is read (few per node), summed
                // per container; GC cycles as the cycles each completed since last seen.
                let mut go_per_container: HashMap<ContainerLabels, (i64, i64, u64)> =
                    HashMap::new();
                let mut gc_seen = HashMap::new();
                for p in table.live.values() {
                    let Some(go) = &p.go else { continue };
                    if !self.only.wants(p, &mut ctx.ids) {
                        continue;
                    }
                    let f = &go.latest;
                    let before = self.gc_cycles.get(&p.pid).copied().unwrap_or(f.gc_cycles);
                    gc_seen.insert(p.pid, f.gc_cycles);
                    let e = go_per_container
                        .entry(labels_of(&ctx.ids.get(p)))
                        .or_default();
                    e.0 += f.live_heap_bytes.unwrap_or(0) as i64;
                    e.1 += f.goroutines as i64;
                    e.2 += u64::from(f.gc_cycles.saturating_sub(before));
                }
                self.gc_cycles = gc_seen;
                let counters = snap.counters;
                let cpu = own_cpu_secs();
                let Ok(s) = self.shared.lock() else {
                    return Ok(());
                };
                let m = &s.metrics;
                for o in outcomes {
                    m.growth_profiles
                        .get_or_create(&crate::commands::daemon::metrics::OutcomeLabels {
                            outcome: o.as_str().to_string(),
                        })
                        .inc();
                }
                m.container_private_bytes.clear();
                m.container_growth.clear();
                m.leak_confidence.clear();
                m.time_to_limit.clear();
                m.leak_verdict.clear();
                m.limit_headroom.clear();
                for (l, ratio) in &headroom {
                    m.limit_headroom.get_or_create(l).set(*ratio);
                }
                for (l, (private, growth, conf, ttl)) in &per_container {
                    m.container_private_bytes.get_or_create(l).set(*private);
                    m.container_growth.get_or_create(l).set(growth.max(0.0));
                    if *conf > 0.0 {
                        m.leak_confidence.get_or_create(l).set(*conf);
                    }
                    if let Some(t) = ttl {
                        m.time_to_limit.get_or_create(l).set(*t);
                    }
                }
                for v in verdict_series {
                    m.leak_verdict.get_or_create(&v).set(1);
                }
                m.go_heap_live.clear();
                m.go_goroutines.clear();
                for (l, (heap, goroutines, cycles)) in &go_per_container {
                    m.go_heap_live.get_or_create(l).set(*heap);
                    m.go_goroutines.get_or_create(l).set(*goroutines);
                    m.go_gc_cycles.get_or_create(l).inc_by(*cycles);
                }
                for (name, now) in counters.lossy() {
                    let delta = now.saturating_sub(self.last_counters.get(name));
                    m.events_lost
                        .get_or_create(&ReasonLabels {
                            reason: name.to_string(),
                        })
                        .inc_by(delta);
                }
                m.map_entries
                    .get_or_create(&MapLabels {
                        map: "procs".into(),
                    })
                    .set(snap.procs.len() as i64);
                m.map_capacity
                    .get_or_create(&MapLabels {
                        map: "procs".into(),
                    })
                    .set(i64::from(snap.procs_capacity));
                m.tracked_processes.set(table.live.len() as i64);
                if let Some(share) = overhead.bpf_cpu_share {
                    m.bpf_cpu_ratio.set(share);
                }
                for hook in crate::kernel::budget::Hook::ORDER {
                    m.hook_paused
                        .get_or_create(&crate::commands::daemon::metrics::HookLabels {
                            hook: hook.as_str().to_string(),
                        })
                        .set(i64::from(overhead.paused.contains(&hook)));
                }
                let new_calls = table.calls_total.since(&self.last_calls);
                for (name, delta) in new_calls.named() {
                    m.syscalls
                        .get_or_create(&crate::commands::daemon::metrics::CallLabels {
                            call: name.to_string(),
                        })
                        .inc_by(delta);
                }
                self.last_calls = table.calls_total;
                m.self_rss.set(crate::host::procfs::own_rss_bytes() as i64);
                m.self_cpu.inc_by((cpu - self.last_cpu_secs).max(0.0));
                drop(s);
                self.last_cpu_secs = cpu;
                self.last_counters = counters;
            }
            Happening::Cgroup { .. } | Happening::Stacks { .. } => {}
            Happening::Node {
                t, view, changes, ..
            } => {
                for c in changes {
                    self.emit(&Record::NodeVerdict(NodeVerdictRecord::from_change(
                        round_ms(t),
                        c,
                    )));
                }
                if let Ok(s) = self.shared.lock() {
                    metrics::set_node(&s.metrics, view);
                }
            }
            Happening::Oom(rec) => {
                let labels = table
                    .find(rec.victim.pid)
                    .map(|p| labels_of(&ctx.ids.get(p)))
                    .unwrap_or(ContainerLabels {
                        namespace: String::new(),
                        pod: String::new(),
                        container: String::new(),
                    });
                if let Ok(s) = self.shared.lock() {
                    s.metrics.oom_kills.get_or_create(&labels).inc();
                }
                self.emit(&Record::OomKill(rec.clone()));
            }
            Happening::Memcg { t, event: ev } => {
                if let Ok(s) = self.shared.lock() {
                    for (cgroup, event, n) in ev.counts() {
                        let labels = self.cgroup_labels(&cgroup);
                        s.metrics
                            .memcg_events
                            .get_or_create(
                                &crate::commands::daemon::metrics::ContainerEventLabels {
                                    namespace: labels.namespace,
                                    pod: labels.pod,
                                    container: labels.container,
                                    event,
                                },
                            )
                            .inc_by(n);
                    }
                    if let crate::host::memcg::MemcgEvent::Reclaim {
                        cgroup, stall_ms, ..
                    } = ev
                    {
                        s.metrics
                            .memcg_reclaim_stall
                            .get_or_create(&self.cgroup_labels(cgroup))
                            .inc_by(stall_ms / 1e3);
                    }
                }
                self.emit(&Record::Memcg {
                    t,
                    event: ev.clone(),
                });
            }
            Happening::Exit {
                pid,
                comm,
                t_mono,
                ended,
            } => {
                if let Ok(s) = self.shared.lock() {
                    s.metrics.process_exits.inc();
                }
                // The big ones (a crash-looping init that allocated 2 GiB) are evidence worth
                // a log line each, however short they lived; the rest are counted.
                let peak = table
                    .find(pid)
                    .filter(|_| ended.is_some())
                    .map_or(0, |p| p.counters.peak_private);
                let wanted = match table.find(pid) {
                    Some(p) => self.only.wants(p, &mut ctx.ids),
                    None => self.only.matches(pid, comm),
                };
                if wanted && ended.is_some() && peak >= self.exit_min_peak {
                    let t = round_ms(t_mono - self.t0_mono);
                    let (sample, exit) =
                        crate::commands::record::exit_records(table, pid, comm, t, ended);
                    if let Some(sample) = sample {
                        self.emit(&Record::Sample(sample));
                    }
                    self.emit(&Record::Exit(exit));
                }
            }
            Happening::Budget { t, event: ev } => {
                if ev.action == crate::kernel::budget::BudgetAction::Pause
                    && let Ok(s) = self.shared.lock()
                {
                    s.metrics
                        .hook_pauses
                        .get_or_create(&crate::commands::daemon::metrics::HookLabels {
                            hook: ev.hook.as_str().to_string(),
                        })
                        .inc();
                }
                self.emit(&Record::Budget {
                    t,
                    event: ev.clone(),
                });
            }
            Happening::Exec { .. } => {}
        }
        Ok(())
    }

    fn finish(
        &mut self,
        _ctx: &mut Context,
        _table: &ProcessTable,
        end: SessionEnd,
    ) -> anyhow::Result<()> {
        if let Ok(s) = self.shared.lock() {
            s.ready.store(false, Ordering::Relaxed);
        }
        log::info!("daemon stopping ({})", end.reason.as_str());
        std::io::stdout().flush().context("flushing stdout")
    }
}

/// This process's CPU time (user + system), seconds.
fn own_cpu_secs() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // SAFETY: sysconf has no memory-safety preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    ticks as f64 / hz
}
