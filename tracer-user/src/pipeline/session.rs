//! A tracing session: load the programs, seed the table from /proc, then every interval
//! sample the kernel maps into the process table and hand the result to a sink; rare
//! kernel events go to the sink as they come. `top`, `record`, `oom` and `daemon` are
//! sinks over this one loop, sharing one [`Context`] of lookups, so they cannot disagree.
use std::time::Duration;

use anyhow::Context as _;
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::mpsc,
};

use crate::{
    host::procfs::Procfs,
    kernel::events::{self, KernelEvent},
    kernel::loader::{LoadOptions, Probes},
    kernel::sampler::{Sampler, Snapshot},
    model::table::{ProcessTable, RoundReport, TableLimits},
    pipeline::context::Context,
    trace::OomRecord,
    util::clock,
};

/// Which processes the user asked to see (tracking is always node-wide: a filter must not
/// hide the context a verdict or an OOM needs).
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub pids: Vec<u32>,
    pub comms: Vec<String>,
    pub namespaces: Vec<String>,
    pub pods: Vec<String>,
    pub containers: Vec<String>,
}

impl Filter {
    /// pid/comm part: any listed pid or comm (no list: everything).
    pub fn matches(&self, pid: u32, comm: &str) -> bool {
        (self.pids.is_empty() && self.comms.is_empty())
            || self.pids.contains(&pid)
            || self.comms.iter().any(|c| c == comm)
    }

    pub fn has_identity_filters(&self) -> bool {
        !(self.namespaces.is_empty() && self.pods.is_empty() && self.containers.is_empty())
    }

    /// Kubernetes part: every given dimension must match (namespace AND pod AND container).
    pub fn matches_identity(&self, id: &crate::host::identity::Identity) -> bool {
        let ok = |wanted: &[String], have: &Option<String>| {
            wanted.is_empty() || have.as_ref().is_some_and(|h| wanted.contains(h))
        };
        ok(&self.namespaces, &id.namespace)
            && ok(&self.pods, &id.pod)
            && ok(&self.containers, &id.container)
    }

    /// Both parts, resolving the identity only when a Kubernetes filter is set.
    pub fn wants(
        &self,
        p: &crate::model::table::Process,
        ids: &mut crate::host::identity::Resolver,
    ) -> bool {
        self.matches(p.pid, &p.comm)
            && (!self.has_identity_filters() || self.matches_identity(&ids.get(p)))
    }
}

#[derive(Clone, Debug)]
pub struct SessionOptions {
    pub load: LoadOptions,
    /// Share of the node's CPU the kernel programs may use (0..1; 0: no budget).
    pub max_overhead: f64,
    pub interval: Duration,
    pub duration: Option<Duration>,
    pub limits: TableLimits,
    pub oom_score_adj: i32,
}

/// Why the loop ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndReason {
    Duration,
    Signal,
    Sink,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Duration => "duration",
            Self::Signal => "signal",
            Self::Sink => "user",
        }
    }
}

/// What happened, as sinks see it.
pub enum Happening<'a> {
    Round {
        snap: &'a Snapshot,
        report: &'a RoundReport,
        /// Verdicts that changed this round.
        verdicts: &'a [crate::detector::VerdictChange],
        /// The kernel programs' cost and the hooks the budget has paused.
        overhead: &'a crate::kernel::budget::OverheadStatus,
    },
    /// The overhead budget paused or resumed a hook.
    Budget(&'a crate::kernel::budget::BudgetEvent),
    /// Exec events, as they come (exits come as `Exit`, OOM kills as `Oom`).
    Kernel(&'a KernelEvent),
    /// An OOM kill, with the post-mortem the session built once for every sink
    /// (pipeline/postmortem.rs).
    Oom(&'a OomRecord),
    /// A process ended: the table has already folded its final counters in (it is in the
    /// graveyard). `ended` is None when the kernel had no counters for it.
    Exit {
        pid: u32,
        comm: &'a str,
        t_mono: f64,
        ended: Option<crate::model::table::Ended>,
    },
    /// A memory-cgroup or pressure event (event-driven watchers, see memcg/watch.rs).
    Memcg(&'a crate::host::memcg::MemcgEvent),
}

pub trait Sink {
    /// Called once after attach, before the first round.
    fn start(&mut self, _s: &SessionInfo) -> anyhow::Result<()> {
        Ok(())
    }
    /// `ctx` holds the lookups every sink shares (limits, identities).
    fn handle(
        &mut self,
        ctx: &mut Context,
        table: &ProcessTable,
        what: Happening<'_>,
    ) -> anyhow::Result<()>;
    /// Whether the sink wants the session to stop (e.g. the user pressed `q`).
    fn wants_stop(&mut self) -> bool {
        false
    }
    fn finish(
        &mut self,
        ctx: &mut Context,
        table: &ProcessTable,
        reason: EndReason,
    ) -> anyhow::Result<()>;
}

/// Facts about the running session, for headers.
#[derive(Clone, Debug)]
pub struct SessionInfo {
    pub start_unix_ms: u64,
    pub t0_mono: f64,
    pub interval: Duration,
    pub rss_source: crate::kernel::loader::RssSource,
    pub attached: Vec<&'static str>,
}

pub struct Session {
    /// Owns the loaded programs: dropping it detaches them all.
    probes: Probes,
    /// The overhead budget: pauses and resumes syscall hooks (see budget.rs).
    budget: crate::kernel::budget::Budget,
    /// The kernel's BPF statistics are on for a measurement window that ends next round.
    stats_window_open: bool,
    sampler: Sampler,
    events: mpsc::Receiver<KernelEvent>,
    /// Drain the kernel ring now (at the end of the session).
    flush_events: mpsc::Sender<events::FlushRequest>,
    _reader: tokio::task::JoinHandle<()>,
    _log_task: Option<tokio::task::JoinHandle<()>>,
    pub table: ProcessTable,
    procfs: Procfs,
    pub info: SessionInfo,
    opts: SessionOptions,
    detector: crate::detector::DetectorConfig,
    memcg_events: mpsc::Receiver<crate::host::memcg::MemcgEvent>,
    watcher: crate::host::memcg::MemcgWatcher,
    /// The lookups the session and its sinks share (built once per command).
    ctx: Context,
}

impl Session {
    pub fn start(opts: SessionOptions, ctx: Context) -> anyhow::Result<Self> {
        let mut probes = Probes::load(&opts.load)?;
        release_load_memory();
        protect_self(opts.oom_score_adj);
        let log_task = crate::kernel::logging::spawn_ebpf_logger(&mut probes.ebpf);
        let mut sampler = Sampler::new(&mut probes.ebpf, opts.load.sizes.procs)?;
        // Events are rare; a deep queue lets a slow sink fall behind briefly without the
        // kernel ring buffer filling.
        let (tx, rx) = mpsc::channel(65536);
        let (flush_tx, flush_rx) = mpsc::channel(1);
        let reader =
            events::spawn_reader(&mut probes.ebpf, tx, flush_rx, sampler.rss_generation())?;
        let t0_mono = clock::monotonic_secs();
        let info = SessionInfo {
            start_unix_ms: clock::unix_millis(),
            t0_mono,
            interval: opts.interval,
            rss_source: probes.rss_source,
            attached: probes.attached.clone(),
        };
        let procfs = Procfs::new(&opts.load.host_root);
        // Processes that predate us: seed the kernel map so they are tracked from now on.
        let now_ns = (t0_mono * 1e9) as u64;
        let mut seeded = 0;
        for pid in procfs.pids() {
            if pid == std::process::id() {
                continue;
            }
            if let (Some(mem), Some(comm)) = (procfs.status(pid), procfs.comm(pid))
                && sampler.seed(pid, &comm, &mem, now_ns)
            {
                seeded += 1;
            }
        }
        log::info!("seeded {seeded} existing processes from /proc");
        let table = ProcessTable::new(opts.limits, t0_mono);
        let (mtx, memcg_events) = mpsc::channel(4096);
        // v2: a PSI trigger on each watched (limited) cgroup's memory.pressure as well as the
        // node's. Each armed cgroup gets a kernel "psimon" thread; max_watched bounds them.
        let mut watcher = crate::host::memcg::MemcgWatcher::with_config(
            ctx.roots.clone(),
            mtx,
            crate::host::memcg::WatchConfig {
                cgroup_psi: Some(crate::host::memcg::PsiTrigger::default()),
                ..crate::host::memcg::WatchConfig::default()
            },
        );
        if let Err(e) = watcher.watch_node_pressure(&crate::host::memcg::PsiTrigger::default()) {
            log::warn!("node memory pressure (PSI) not watched: {e:#}");
        }
        Ok(Self {
            budget: crate::kernel::budget::Budget::new(
                opts.max_overhead,
                std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
                BUDGET_HOLD_SECS,
            ),
            probes,
            stats_window_open: false,
            sampler,
            events: rx,
            flush_events: flush_tx,
            _reader: reader,
            _log_task: log_task,
            table,
            procfs,
            info,
            opts,
            detector: crate::detector::DetectorConfig::default(),
            memcg_events,
            watcher,
            ctx,
        })
    }

    /// Run until the duration elapses, a signal arrives, or the sink asks to stop.
    pub async fn run(&mut self, sink: &mut dyn Sink) -> anyhow::Result<EndReason> {
        sink.start(&self.info)?;
        let mut sigint =
            signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
        let mut sigterm =
            signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
        let mut ticker = tokio::time::interval(self.opts.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let deadline = self.opts.duration.map(|d| tokio::time::Instant::now() + d);
        let sleep_deadline = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(sleep_deadline);
        let mut rounds: u64 = 0;
        let reason = loop {
            tokio::select! {
                biased;
                _ = sigint.recv() => break EndReason::Signal,
                _ = sigterm.recv() => break EndReason::Signal,
                () = &mut sleep_deadline => {
                    // One last round so the end of the window is in the data.
                    self.round(sink, rounds)?;
                    break EndReason::Duration;
                }
                Some(ev) = self.events.recv() => self.kernel_event(sink, ev)?,
                Some(ev) = self.memcg_events.recv() => sink.handle(&mut self.ctx, &self.table, Happening::Memcg(&ev))?,
                _ = ticker.tick() => {
                    self.round(sink, rounds)?;
                    rounds += 1;
                }
            }
            if sink.wants_stop() {
                break EndReason::Sink;
            }
        };
        // Everything the kernel wrote before the end reaches the sink: the reader drains the
        // ring on request (routine events do not wake it), then the queue is emptied. Events
        // are handled while waiting, so a full queue cannot hold the reader up.
        let (ack_tx, mut ack_rx) = tokio::sync::oneshot::channel();
        if self.flush_events.send(ack_tx).await.is_ok() {
            let give_up = tokio::time::sleep(Duration::from_secs(2));
            tokio::pin!(give_up);
            loop {
                tokio::select! {
                    biased;
                    Some(ev) = self.events.recv() => self.kernel_event(sink, ev)?,
                    _ = &mut ack_rx => break,
                    () = &mut give_up => {
                        log::warn!("the kernel event reader did not finish draining within 2 s");
                        break;
                    }
                }
            }
        }
        while let Ok(ev) = self.events.try_recv() {
            self.kernel_event(sink, ev)?;
        }
        sink.finish(&mut self.ctx, &self.table, reason)?;
        Ok(reason)
    }

    fn round(&mut self, sink: &mut dyn Sink, rounds: u64) -> anyhow::Result<()> {
        let mut snap = self.sampler.sample();
        let polled = self.patch_inexact_rss(&mut snap);
        self.budget.set_rss_from_proc(polled);
        self.enforce_budget(sink, snap.t_mono, rounds)?;
        let report = self.table.update(&snap, Some(&self.procfs));
        self.sampler.forget_exited(&snap);
        // Identities of processes that left the table (short-lived ones included) are
        // forgotten: the cache stays bounded by the table.
        self.ctx.ids.prune(&self.table);
        for pid in &report.new_pids {
            self.watch_limiting_cgroup(*pid);
        }
        log::trace!(
            "round {rounds}: {} in kernel map, new {:?}, exited {:?}",
            snap.procs.len(),
            report.new_pids,
            report.exited
        );
        // Every few rounds, retire processes whose exit the kernel never saw (they died
        // between the /proc scan and attach). A process reaped since the snapshot has had its
        // exit program run, which removed its entry (its exit event brings the final counters):
        // only an entry still there after /proc says the process is gone is stale.
        if rounds % 5 == 4 {
            let gone: Vec<u32> = snap
                .procs
                .iter()
                .map(|(pid, _)| *pid)
                .filter(|pid| !self.procfs.alive(*pid) && self.sampler.holds(*pid))
                .collect();
            for pid in gone {
                self.sampler.forget(pid);
                self.table.exit(pid, snap.t_mono);
            }
        }
        // Reclaim is summed per cgroup by the table; each cgroup that stalled is one event.
        for (cgroup, r) in &report.reclaim {
            let ev = crate::host::memcg::MemcgEvent::Reclaim {
                ts_ms: crate::util::clock::unix_millis(),
                cgroup: cgroup.clone(),
                runs: r.runs,
                reclaimed_bytes: r.pages * crate::kernel::loader::page_size(),
                stall_ms: r.stall_ns as f64 / 1e6,
                pids: r.pids.clone(),
            };
            sink.handle(&mut self.ctx, &self.table, Happening::Memcg(&ev))?;
        }
        let now = self.table.session_time(snap.t_mono);
        let verdicts = crate::pipeline::verdicts::refresh(&mut self.table, now, &self.detector);
        sink.handle(
            &mut self.ctx,
            &self.table,
            Happening::Round {
                snap: &snap,
                report: &report,
                verdicts: &verdicts,
                overhead: self.budget.status(),
            },
        )
    }

    /// Read from /proc the RSS of the entries whose kernel figures are not exact (the
    /// rss_stat hook is paused, or was resumed since their last RSS change). Returns how many
    /// were read.
    fn patch_inexact_rss(&self, snap: &mut Snapshot) -> u32 {
        let mut from_proc = 0;
        for (pid, st) in &mut snap.procs {
            if st.rss_exact {
                continue;
            }
            let prev = self.table.live.get(pid).map(|p| &p.counters);
            // An entry flagged exited is a process that is gone: its pid may already be
            // another process's, never read /proc for it.
            let now = if !st.exited {
                self.procfs.status(*pid)
            } else {
                None
            };
            if crate::kernel::rss_fallback::patch(st, now.as_ref(), prev)
                == crate::kernel::rss_fallback::RssOrigin::Proc
            {
                from_proc += 1;
            }
        }
        from_proc
    }

    /// Measure the kernel programs' cost since the last round and pause or resume syscall
    /// hooks to keep it within `--max-overhead`; every decision goes to the sinks.
    ///
    /// The kernel's statistics are on for one interval in every [`STATS_EVERY`] rounds
    /// (they cost every program run two clock reads): a storm is caught within that many
    /// intervals, and the figures in between are the last window's.
    fn enforce_budget(
        &mut self,
        sink: &mut dyn Sink,
        t_mono: f64,
        rounds: u64,
    ) -> anyhow::Result<()> {
        let mut decided = Vec::new();
        if self.stats_window_open {
            let costs = self.probes.costs();
            self.probes.set_stats(false);
            self.stats_window_open = false;
            decided = self.budget.observe(t_mono, &costs);
        }
        if self.opts.max_overhead > 0.0
            && rounds.is_multiple_of(STATS_EVERY)
            && self.probes.set_stats(true)
        {
            self.budget.baseline(t_mono, &self.probes.costs());
            self.stats_window_open = true;
        }
        for ev in decided {
            for prog in ev.hook.programs() {
                let done = match ev.action {
                    crate::kernel::budget::BudgetAction::Pause => self.probes.detach(prog),
                    crate::kernel::budget::BudgetAction::Resume => self.probes.reattach(prog),
                };
                if let Err(e) = done {
                    log::warn!("overhead budget: {e:#}");
                }
            }
            // RSS figures: from /proc while paused, refilled entry by entry after resuming.
            if ev.hook == crate::kernel::budget::Hook::Rss {
                let done = match ev.action {
                    crate::kernel::budget::BudgetAction::Pause => self.sampler.rss_paused(),
                    crate::kernel::budget::BudgetAction::Resume => self.sampler.rss_resumed(),
                };
                if let Err(e) = done {
                    log::warn!("overhead budget: {e:#}");
                }
            }
            log::info!(
                "overhead budget: {:?} {} (BPF {:.2}% of the node's CPU, {} {:.2}%, budget {:.2}%)",
                ev.action,
                ev.hook.as_str(),
                ev.bpf_cpu_share * 100.0,
                ev.hook.as_str(),
                ev.hook_cpu_share * 100.0,
                ev.budget * 100.0
            );
            sink.handle(&mut self.ctx, &self.table, Happening::Budget(&ev))?;
        }
        Ok(())
    }

    /// Watch the memory cgroup that limits a tracked process (idempotent, bounded): at first
    /// sight and again at exec, since a process seen right after fork may not have been moved
    /// into its container's cgroup yet.
    fn watch_limiting_cgroup(&mut self, pid: u32) {
        let Some(c) = self.table.live.get(&pid).and_then(|p| p.memcg_path()) else {
            return;
        };
        if let Some(limiting) = self
            .ctx
            .roots
            .effective_limit(Some(&c))
            .and_then(|l| l.cgroup)
            && let Err(e) = self.watcher.watch(&limiting)
        {
            log::debug!("memory cgroup {limiting} not watched: {e:#}");
        }
    }

    fn kernel_event(&mut self, sink: &mut dyn Sink, ev: KernelEvent) -> anyhow::Result<()> {
        match &ev {
            // A new program: runtimes fork, move the child into the container's cgroup, then
            // exec, so identity is re-read here as well as at first sight.
            KernelEvent::Exec { tgid, comm, .. } => {
                self.table.exec(
                    *tgid,
                    comm.clone(),
                    self.procfs.cmdline(*tgid),
                    self.procfs.cgroup(*tgid),
                );
                self.watch_limiting_cgroup(*tgid);
            }
            // The final counters came with the exit: folded in now, whatever the process's
            // lifetime (one shorter than an interval was never sampled alive).
            KernelEvent::Exit {
                tgid,
                comm,
                t_mono,
                counters,
            } => {
                // Its RSS as last known exactly, when the kernel's is not (rss_stat paused).
                let counters = counters.as_deref().map(|c| {
                    let mut c = *c;
                    if !c.rss_exact {
                        let prev = self.table.live.get(tgid).map(|p| &p.counters);
                        crate::kernel::rss_fallback::patch(&mut c, None, prev);
                    }
                    c
                });
                let ended = self
                    .table
                    .end(*tgid, *t_mono, counters.as_ref(), Some(&self.procfs));
                return sink.handle(
                    &mut self.ctx,
                    &self.table,
                    Happening::Exit {
                        pid: *tgid,
                        comm,
                        t_mono: *t_mono,
                        ended,
                    },
                );
            }
            // The post-mortem is built once, here, for every sink.
            KernelEvent::OomVictim(v) => {
                let rec = crate::pipeline::postmortem::post_mortem(&self.table, v, &mut self.ctx);
                return sink.handle(&mut self.ctx, &self.table, Happening::Oom(&rec));
            }
        }
        sink.handle(&mut self.ctx, &self.table, Happening::Kernel(&ev))
    }
}

/// How long a paused hook stays paused the first time (doubling while the storm goes on).
const BUDGET_HOLD_SECS: f64 = 15.0;

/// The overhead budget measures one interval in this many (see `Session::enforce_budget`).
const STATS_EVERY: u64 = 5;

/// Give the allocator's free memory back to the kernel once the programs are loaded. Loading
/// parses the kernel's BTF (several MiB of small allocations, ours and aya's) and frees it,
/// but glibc keeps freed heap memory below the highest live allocation: without this, an idle
/// leaktracer held 16 MiB of heap it no longer used, for as long as it ran.
fn release_load_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only returns free heap memory to the kernel; it takes no pointers
    // and is safe to call at any time from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Lower our own OOM score: a tracer killed by the storm it should report is useless.
/// Lowering below the current value needs CAP_SYS_RESOURCE; without it this is a warning.
fn protect_self(adj: i32) {
    if let Err(e) = std::fs::write("/proc/self/oom_score_adj", adj.to_string()) {
        log::warn!(
            "could not set oom_score_adj to {adj} ({e}): leaktracer may be OOM-killed with its victims"
        );
    }
}

/// leaktracer's own resident memory (bytes), for health reports.
pub fn own_rss_bytes() -> u64 {
    crate::host::procfs::Procfs::new(std::path::Path::new("/"))
        .status(std::process::id())
        .map_or(0, |s| s.rss_anon + s.rss_file + s.rss_shmem)
}
