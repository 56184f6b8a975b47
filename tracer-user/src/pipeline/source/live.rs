//! The live source: the kernel and the host. It loads the programs, seeds the kernel map from
//! /proc, then says what happens: a sampling round every interval (RSS the kernel cannot
//! give exactly read from /proc, the overhead budget enforced first), kernel events (exec,
//! exit with final counters, OOM victims) and memory-cgroup events as they come, until a
//! signal, the duration or the sink ends it; then it drains the kernel's ring buffer.
use std::{collections::VecDeque, future::Future, pin::Pin, time::Duration};

use anyhow::Context as _;
use tokio::{
    signal::unix::{Signal, SignalKind, signal},
    sync::{mpsc, oneshot},
};

use crate::{
    host::memcg::{MemcgEvent, MemcgWatcher, PsiTrigger, WatchConfig},
    host::procfs::Procfs,
    kernel::budget::{Budget, BudgetAction, BudgetEvent, Hook},
    kernel::events::{self, KernelEvent},
    kernel::loader::{LoadOptions, Probes},
    kernel::rss_fallback::{self, RssOrigin},
    kernel::sampler::{Sampler, Snapshot},
    model::table::{ProcessTable, RoundReport, TableLimits},
    pipeline::core::Pipeline,
    pipeline::sink::{EndReason, SessionEnd, SessionInfo},
    pipeline::step::Step,
    util::clock,
};

#[derive(Clone, Debug)]
pub struct LiveOptions {
    pub load: LoadOptions,
    /// Share of the node's CPU the kernel programs may use (0..1; 0: no budget).
    pub max_overhead: f64,
    /// The PSI trigger for memory pressure events (None: `PsiTrigger::default()`).
    pub pressure_trigger: Option<PsiTrigger>,
    pub interval: Duration,
    pub duration: Option<Duration>,
    pub limits: TableLimits,
    pub oom_score_adj: i32,
    /// Sample growth-site stacks (`record --stacks`; `load.stacks_mean_bytes` must be set).
    pub stacks: Option<crate::pipeline::source::stacks::StackOptions>,
}

/// How long a paused hook stays paused the first time (doubling while the storm goes on).
const BUDGET_HOLD_SECS: f64 = 15.0;

/// The overhead budget measures one interval in this many (see `LiveSource::enforce_budget`).
const STATS_EVERY: u64 = 5;

/// How often the overhead budget's guard prices the hooks' run counts (see
/// `LiveSource::guard_budget`): a storm costs at most about this long at full rate.
const GUARD_PERIOD: Duration = Duration::from_millis(200);

/// How long the kernel event reader may take to drain the ring at the end.
const DRAIN_SECS: u64 = 2;

/// The next tick of an optional interval; pending forever without one.
async fn tick_if(interval: Option<&mut tokio::time::Interval>) {
    match interval {
        Some(i) => {
            i.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// Where the source is in its life.
enum Phase {
    /// Started; the clocks and signal handlers are armed at the first step asked for.
    Idle,
    Running(Clocks),
    /// Ending: the kernel event reader is to drain the ring.
    Flush(EndReason),
    /// Waiting for the reader to say the ring is drained, handing on events meanwhile.
    Draining {
        reason: EndReason,
        drained: oneshot::Receiver<()>,
        give_up: Pin<Box<tokio::time::Sleep>>,
    },
    /// The ring is drained: what is left in the queue, then the end.
    Emptying(EndReason),
    Done(EndReason),
}

/// What wakes a running session.
struct Clocks {
    sigint: Signal,
    sigterm: Signal,
    ticker: tokio::time::Interval,
    /// The overhead budget's guard (see `LiveSource::guard_budget`); never fires when the
    /// budget is off.
    guard: Option<tokio::time::Interval>,
    /// The end of `--duration` (pending forever without one).
    deadline: Pin<Box<dyn Future<Output = ()> + Send>>,
}

impl Clocks {
    fn arm(interval: Duration, duration: Option<Duration>, budget: bool) -> anyhow::Result<Self> {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let guard = budget.then(|| {
            let mut guard = tokio::time::interval(GUARD_PERIOD.min(interval));
            guard.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            guard
        });
        let deadline = duration.map(|d| tokio::time::Instant::now() + d);
        Ok(Self {
            sigint: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
            sigterm: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
            ticker,
            guard,
            deadline: Box::pin(async move {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            }),
        })
    }
}

/// What woke the running loop.
enum Woke {
    End(EndReason),
    /// The duration is over: one last round so the end of the window is in the data.
    LastRound,
    Tick,
    Guard,
    Kernel(KernelEvent),
    Memcg(MemcgEvent),
}

pub struct LiveSource {
    /// Owns the loaded programs: dropping it detaches them all.
    probes: Probes,
    /// The overhead budget: pauses and resumes syscall hooks (see budget.rs).
    budget: Budget,
    /// A measurement window is open: it ends next round.
    stats_window_open: bool,
    sampler: Sampler,
    events: mpsc::Receiver<KernelEvent>,
    /// Drain the kernel ring now (at the end of the session).
    flush_events: mpsc::Sender<events::FlushRequest>,
    _reader: tokio::task::JoinHandle<()>,
    _log_task: Option<tokio::task::JoinHandle<()>>,
    procfs: Procfs,
    info: SessionInfo,
    opts: LiveOptions,
    memcg_events: mpsc::Receiver<MemcgEvent>,
    watcher: MemcgWatcher,
    phase: Phase,
    /// Rounds taken on the ticker so far, and the number of the round being handed on (the
    /// budget's measurement windows and the stale-entry sweep count them).
    rounds: u64,
    round_no: u64,
    /// Steps decided together (the budget's decisions, then the round they precede).
    queue: VecDeque<Step>,
    /// The node's own memory, read once a round after the processes.
    node: crate::host::node::NodeReader,
    /// The cgroup hierarchy with the memory controller (cgroup events of others are
    /// dropped).
    memory_hierarchy: Option<i32>,
    /// Parents of the memory cgroups seen removed and not freed, with how many (the node
    /// reading says how much page cache they hold).
    zombie_parents: std::collections::HashMap<String, u64>,
    /// Go processes' runtimes, read from their memory every round (one read each; none for
    /// other processes).
    go: crate::host::goruntime::GoRuntimes,
    /// Growth-site stacks (`record --stacks`).
    stacks: Option<crate::pipeline::source::stacks::StackCollector>,
    /// The RSS readings from /proc held after rss_stat resumed (see rss_fallback.rs).
    rereads: rss_fallback::Rereads,
}

impl LiveSource {
    /// Load and attach the programs, seed the kernel map with the processes that predate us
    /// and arm the memory-cgroup watchers. Returns the source and the session's table.
    pub fn start(
        opts: LiveOptions,
        roots: &crate::host::memcg::CgroupRoots,
    ) -> anyhow::Result<(Self, ProcessTable)> {
        let mut probes = Probes::load(&opts.load)?;
        release_free_heap();
        protect_self(opts.oom_score_adj);
        let log_task = crate::kernel::logging::spawn_ebpf_logger(&mut probes.ebpf);
        let mut sampler = Sampler::new(&mut probes.ebpf, opts.load.sizes.procs, probes.hot_slots)?;
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
        let go_proc_root = opts.load.host_root.join("proc");
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
        let psi = opts.pressure_trigger.clone().unwrap_or_default();
        let mut watcher = MemcgWatcher::with_config(
            roots.clone(),
            mtx,
            WatchConfig {
                cgroup_psi: Some(psi.clone()),
                ..WatchConfig::default()
            },
        );
        if let Err(e) = watcher.watch_node_pressure(&psi) {
            if opts.pressure_trigger.is_some() {
                // The user's trigger, refused by this kernel or privilege: theirs to fix.
                return Err(crate::util::error::UsageError::new(format!(
                    "--pressure-trigger: {e:#}"
                ))
                .into());
            }
            log::warn!("node memory pressure (PSI) not watched: {e:#}");
        }
        let stacks = opts
            .stacks
            .clone()
            .map(|o| crate::pipeline::source::stacks::StackCollector::new(o, go_proc_root.clone()));
        let source = Self {
            budget: Budget::new(
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
            procfs,
            info,
            opts,
            memcg_events,
            watcher,
            phase: Phase::Idle,
            rounds: 0,
            round_no: 0,
            queue: VecDeque::new(),
            node: crate::host::node::NodeReader::new(roots.clone()),
            memory_hierarchy: crate::host::node::zombies::memory_hierarchy(roots),
            zombie_parents: std::collections::HashMap::new(),
            stacks,
            go: crate::host::goruntime::GoRuntimes::new(&go_proc_root),
            rereads: rss_fallback::Rereads::default(),
        };
        Ok((source, table))
    }

    pub fn info(&self) -> &SessionInfo {
        &self.info
    }

    pub fn procfs(&self) -> &Procfs {
        &self.procfs
    }

    /// The next thing that happened, or None once the session has ended and the kernel's
    /// ring is drained. `table` is the model as of the last step (for RSS fallbacks).
    pub async fn next_step(&mut self, table: &ProcessTable) -> anyhow::Result<Option<Step>> {
        loop {
            if let Some(step) = self.queue.pop_front() {
                return Ok(Some(step));
            }
            match &mut self.phase {
                Phase::Idle => {
                    self.phase = Phase::Running(Clocks::arm(
                        self.opts.interval,
                        self.opts.duration,
                        self.opts.max_overhead > 0.0,
                    )?);
                }
                Phase::Running(clocks) => {
                    let woke = tokio::select! {
                        biased;
                        _ = clocks.sigint.recv() => Woke::End(EndReason::Signal),
                        _ = clocks.sigterm.recv() => Woke::End(EndReason::Signal),
                        () = &mut clocks.deadline => Woke::LastRound,
                        Some(ev) = self.events.recv() => Woke::Kernel(ev),
                        Some(ev) = self.memcg_events.recv() => Woke::Memcg(ev),
                        _ = clocks.ticker.tick() => Woke::Tick,
                        _ = tick_if(clocks.guard.as_mut()) => Woke::Guard,
                    };
                    match woke {
                        Woke::End(reason) => self.stop(reason),
                        Woke::LastRound => {
                            self.sample(table, self.rounds);
                            self.stop(EndReason::Duration);
                        }
                        Woke::Tick => {
                            self.sample(table, self.rounds);
                            self.rounds += 1;
                        }
                        Woke::Guard => self.guard_budget(),
                        Woke::Kernel(ev) => {
                            if let Some(step) = self.kernel_step(ev, table) {
                                return Ok(Some(step));
                            }
                        }
                        Woke::Memcg(event) => {
                            return Ok(Some(Step::Memcg {
                                t_mono: clock::monotonic_secs(),
                                event,
                            }));
                        }
                    }
                }
                // Everything the kernel wrote before the end reaches the sink: the reader
                // drains the ring on request (routine events do not wake it), then the queue
                // is emptied. Events are handed on while waiting, so a full queue cannot hold
                // the reader up.
                Phase::Flush(reason) => {
                    let reason = *reason;
                    // The last growth sites, however the session ends.
                    self.collect_stacks(table, clock::monotonic_secs());
                    let (ack_tx, ack_rx) = oneshot::channel();
                    self.phase = if self.flush_events.send(ack_tx).await.is_ok() {
                        Phase::Draining {
                            reason,
                            drained: ack_rx,
                            give_up: Box::pin(tokio::time::sleep(Duration::from_secs(DRAIN_SECS))),
                        }
                    } else {
                        Phase::Emptying(reason)
                    };
                }
                Phase::Draining {
                    reason,
                    drained,
                    give_up,
                } => {
                    let reason = *reason;
                    let ev = tokio::select! {
                        biased;
                        Some(ev) = self.events.recv() => Some(ev),
                        _ = drained => None,
                        () = give_up.as_mut() => {
                            log::warn!("the kernel event reader did not finish draining within {DRAIN_SECS} s");
                            None
                        }
                    };
                    match ev {
                        Some(ev) => {
                            if let Some(step) = self.kernel_step(ev, table) {
                                return Ok(Some(step));
                            }
                        }
                        None => self.phase = Phase::Emptying(reason),
                    }
                }
                Phase::Emptying(reason) => {
                    let reason = *reason;
                    match self.events.try_recv() {
                        Ok(ev) => {
                            if let Some(step) = self.kernel_step(ev, table) {
                                return Ok(Some(step));
                            }
                        }
                        Err(_) => self.phase = Phase::Done(reason),
                    }
                }
                Phase::Done(_) => return Ok(None),
            }
        }
    }

    /// End the session (a signal, the duration, or the sink asked): the kernel's ring is
    /// drained, then `next_step` says it is over. Once ending, later calls change nothing.
    pub fn stop(&mut self, reason: EndReason) {
        if matches!(self.phase, Phase::Idle | Phase::Running(_)) {
            self.phase = Phase::Flush(reason);
        }
    }

    /// Why and when it ended (session time now).
    pub fn end(&self, table: &ProcessTable) -> SessionEnd {
        let reason = match self.phase {
            Phase::Flush(r)
            | Phase::Draining { reason: r, .. }
            | Phase::Emptying(r)
            | Phase::Done(r) => r,
            // Not ended by the source: the loop stopped asking.
            Phase::Idle | Phase::Running(_) => EndReason::Sink,
        };
        SessionEnd {
            reason,
            t: table.session_time(clock::monotonic_secs()),
        }
    }

    /// One sampling round: the kernel map read, inexact RSS read from /proc, the budget's
    /// decisions (queued first: they apply before the round is folded), then the round.
    fn sample(&mut self, table: &ProcessTable, round_no: u64) {
        let mut snap = self.sampler.sample();
        let polled = self.patch_inexact_rss(table, &mut snap, round_no);
        snap.go = self.go_runtimes(&snap, round_no);
        self.budget.set_rss_from_proc(polled);
        // What reading every tracked process from /proc would cost, should rss_stat pause.
        let live = snap.procs.iter().filter(|(_, c)| !c.exited).count();
        self.budget.price_rss_fallback(
            u32::try_from(live).unwrap_or(u32::MAX),
            self.opts.interval.as_secs_f64(),
        );
        self.enforce_budget(snap.t_mono, round_no);
        self.round_no = round_no;
        let t_mono = snap.t_mono;
        self.queue.push_back(Step::Round {
            snap,
            overhead: self.budget.status().clone(),
        });
        self.queue.push_back(Step::Node {
            t_mono,
            reading: self.node.read(&self.zombie_parents),
        });
    }

    /// After a round is folded into the table: the kernel map forgets the processes whose
    /// final counters came in it, new processes' limiting cgroups are watched, and every few
    /// rounds stale entries are retired.
    pub fn after_round(&mut self, p: &mut Pipeline, snap: &Snapshot, report: &RoundReport) {
        self.sampler.forget_exited(snap);
        for pid in &report.new_pids {
            self.watch_limiting_cgroup(p, *pid);
        }
        log::trace!(
            "round {}: {} in kernel map, new {:?}, exited {:?}",
            self.round_no,
            snap.procs.len(),
            report.new_pids,
            report.exited
        );
        // Every few rounds, retire processes whose exit the kernel never saw (they died
        // between the /proc scan and attach). A process reaped since the snapshot has had its
        // exit program run, which removed its entry (its exit event brings the final counters):
        // only an entry still there after /proc says the process is gone is stale.
        // One listing of /proc says which are alive (a stat each would be 10,000 lookups with
        // 10,000 processes); a failed listing retires nothing.
        if self.round_no % 5 == 4
            && let Some(alive) = self.procfs.pid_set()
        {
            let gone: Vec<u32> = snap
                .procs
                .iter()
                .map(|(pid, _)| *pid)
                .filter(|pid| !alive.contains(pid) && self.sampler.holds(*pid))
                .collect();
            for pid in gone {
                self.sampler.forget(pid);
                p.table.exit(pid, snap.t_mono);
            }
        }
        // What a burst of processes allocated (table entries, identities, events) is freed
        // when they are gone, but glibc keeps freed heap below its highest live allocation:
        // hand it back now and then, so our own RSS comes back after a churn (the robustness
        // test checks within 2 MiB).
        if self.round_no % RELEASE_HEAP_EVERY == RELEASE_HEAP_EVERY - 1 {
            release_free_heap();
        }
        self.growth_sites(p, snap.t_mono);
    }

    /// Growth-site stacks: new processes the user asked for are sampled from now on, and
    /// every few seconds the stacks are read and named (see source/stacks.rs).
    fn growth_sites(&mut self, p: &mut Pipeline, t_mono: f64) {
        let (Some(collector), Some(only)) = (
            self.stacks.as_mut(),
            self.opts.stacks.as_ref().map(|o| &o.only),
        ) else {
            return;
        };
        let wanted: Vec<u32> = p
            .table
            .live
            .values()
            .filter(|proc| only.wants(proc, &mut p.ctx.ids))
            .map(|proc| proc.pid)
            .collect();
        collector.add_targets(&mut self.probes.ebpf, wanted);
        if collector.due(t_mono) {
            self.collect_stacks(&p.table, t_mono);
        }
    }

    fn collect_stacks(&mut self, table: &ProcessTable, t_mono: f64) {
        let Some(collector) = self.stacks.as_mut() else {
            return;
        };
        let procfs = &self.procfs;
        let collected = collector.collect(
            &mut self.probes.ebpf,
            t_mono,
            |pid| table.live.contains_key(&pid) && procfs.alive(pid),
            |pid| {
                table
                    .live
                    .get(&pid)
                    .map(|p| p.comm.clone())
                    .unwrap_or_default()
            },
        );
        match collected {
            Ok(update) => self.queue.push_back(Step::Stacks { t_mono, update }),
            Err(e) => log::warn!("growth sites not read: {e:#}"),
        }
    }

    /// After an exec: the process may have moved into its container's cgroup.
    pub fn after_exec(&mut self, p: &Pipeline, pid: u32) {
        self.watch_limiting_cgroup(p, pid);
    }

    /// Read from /proc the RSS of the entries whose kernel figures are not exact (the
    /// rss_stat hook is paused, or was resumed since their last RSS change); after a resume,
    /// an entry read since keeps that reading and is read again only now and then (see
    /// `rss_fallback::Rereads`). Returns how many were read; the reads' CPU time teaches the
    /// budget what the fallback costs.
    fn patch_inexact_rss(&mut self, table: &ProcessTable, snap: &mut Snapshot, round: u64) -> u32 {
        let generation = self.sampler.rss_generation_now();
        let cpu0 = clock::thread_cpu_ns();
        let mut from_proc = 0;
        for (pid, st) in &mut snap.procs {
            if st.rss_exact {
                continue;
            }
            let prev = table.live.get(pid).map(|p| &p.counters);
            // An entry flagged exited is a process that is gone: its pid may already be
            // another process's, never read /proc for it.
            if st.exited {
                rss_fallback::patch(st, None, prev);
                continue;
            }
            let fingerprint = rss_fallback::fingerprint(st);
            if prev.is_some() && !self.rereads.due(*pid, generation, round, fingerprint) {
                // Held: the previous sample's figures, read from /proc since the resume.
                rss_fallback::patch(st, None, prev);
                continue;
            }
            let now = self.procfs.status(*pid);
            if rss_fallback::patch(st, now.as_ref(), prev) == RssOrigin::Proc {
                from_proc += 1;
                self.rereads.read(*pid, generation, round, fingerprint);
            }
        }
        self.rereads.end_round(round);
        self.budget
            .learn_rss_fallback_cost(from_proc, clock::thread_cpu_ns().saturating_sub(cpu0));
        from_proc
    }

    /// Measure the kernel programs' cost since the last round and pause or resume syscall
    /// hooks to keep it within `--max-overhead`; every decision is queued for the sinks.
    ///
    /// A measurement window is one interval in every [`STATS_EVERY`] rounds: the figures
    /// in between are the last window's, and the guard catches a storm in the meantime.
    fn enforce_budget(&mut self, t_mono: f64, rounds: u64) {
        let mut decided = Vec::new();
        if self.stats_window_open {
            let costs = self.probes.costs();
            self.stats_window_open = false;
            decided = self.budget.observe(t_mono, &costs);
        }
        if self.opts.max_overhead > 0.0 && rounds.is_multiple_of(STATS_EVERY) {
            self.budget.baseline(t_mono, &self.probes.costs());
            self.stats_window_open = true;
        }
        self.carry_out(decided);
    }

    /// The budget's guard, several times an interval: the hooks' run counts priced at
    /// their measured cost per run, so a storm is paused within [`GUARD_PERIOD`] rather
    /// than at the next measurement window (up to [`STATS_EVERY`] intervals later).
    fn guard_budget(&mut self) {
        let runs = self.probes.hook_runs();
        let decided = self.budget.guard(clock::monotonic_secs(), &runs);
        self.carry_out(decided);
    }

    /// Carry out the budget's decisions (detach, attach, switch RSS to /proc and back) and
    /// queue each for the sinks.
    fn carry_out(&mut self, decided: Vec<BudgetEvent>) {
        for ev in decided {
            for prog in ev.hook.programs() {
                let done = match ev.action {
                    BudgetAction::Pause => self.probes.detach(prog),
                    BudgetAction::Resume => self.probes.reattach(prog),
                };
                if let Err(e) = done {
                    log::warn!("overhead budget: {e:#}");
                }
            }
            // RSS figures: from /proc while paused, refilled entry by entry after resuming.
            if ev.hook == Hook::Rss {
                let done = match ev.action {
                    BudgetAction::Pause => self.sampler.rss_paused(),
                    BudgetAction::Resume => self.sampler.rss_resumed(),
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
            self.queue.push_back(Step::Budget {
                t_mono: clock::monotonic_secs(),
                event: ev,
            });
        }
    }

    /// Watch the memory cgroup that limits a tracked process (idempotent, bounded): at first
    /// sight and again at exec, since a process seen right after fork may not have been moved
    /// into its container's cgroup yet.
    fn watch_limiting_cgroup(&mut self, p: &Pipeline, pid: u32) {
        let Some(c) = p.table.live.get(&pid).and_then(|p| p.memcg_path()) else {
            return;
        };
        if let Some(limiting) = p.ctx.roots.effective_limit(Some(&c)).and_then(|l| l.cgroup)
            && let Err(e) = self.watcher.watch(&limiting)
        {
            log::debug!("memory cgroup {limiting} not watched: {e:#}");
        }
    }

    /// The runtime figures of the round's Go processes. A runtime that cannot be read is
    /// said once per binary (host/goruntime) and left out: its process is judged on RSS.
    /// Processes found not to be Go are looked at again only now and then, or when their
    /// identity (first sight, comm, exec) changes: see `goruntime::NotGo`.
    fn go_runtimes(
        &mut self,
        snap: &Snapshot,
        round: u64,
    ) -> Vec<(u32, crate::model::go::GoFigures)> {
        let figures = snap
            .procs
            .iter()
            .filter(|(_, c)| !c.exited)
            .filter_map(
                |(pid, c)| match self.go.sample_in_round(*pid, go_identity(c), round) {
                    Ok(Some(s)) => Some((*pid, crate::model::go::GoFigures::from(&s))),
                    Ok(None) | Err(_) => None,
                },
            )
            .collect();
        self.go.end_round(round);
        figures
    }

    /// Removals add to their parent's zombies, releases take away (a release of a cgroup
    /// removed before the session began finds nothing to take: counts never go below 0, and
    /// a parent left with none is forgotten, so the map is bounded by the live zombies).
    fn count_zombie_parent(&mut self, c: &crate::model::cgroups::CgroupChange) {
        use crate::model::cgroups::CgroupAction;
        let parent = match c.path.rsplit_once('/') {
            Some(("", _)) | None => "/".to_string(),
            Some((p, _)) => p.to_string(),
        };
        match c.action {
            CgroupAction::Mkdir => {}
            CgroupAction::Rmdir => {
                if self.zombie_parents.len() < 4096 || self.zombie_parents.contains_key(&parent) {
                    *self.zombie_parents.entry(parent).or_default() += 1;
                }
            }
            CgroupAction::Release => {
                if let Some(n) = self.zombie_parents.get_mut(&parent) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        self.zombie_parents.remove(&parent);
                    }
                }
            }
        }
    }

    /// A kernel event as a step (None: not one the session follows, e.g. a cgroup of a
    /// hierarchy without the memory controller).
    fn kernel_step(&mut self, ev: KernelEvent, table: &ProcessTable) -> Option<Step> {
        Some(match ev {
            // A new program: runtimes fork, move the child into the container's cgroup, then
            // exec, so identity is re-read here as well as at first sight.
            KernelEvent::Exec {
                tgid, comm, t_mono, ..
            } => {
                // Its program changed: whether it is Go is looked at afresh.
                self.go.exec(tgid);
                Step::Exec {
                    pid: tgid,
                    comm,
                    t_mono,
                    cmdline: self.procfs.cmdline(tgid),
                    cgroup: self.procfs.cgroup(tgid),
                }
            }
            // The final counters came with the exit: folded in by the pipeline, whatever the
            // process's lifetime (one shorter than an interval was never sampled alive).
            KernelEvent::Exit {
                tgid,
                comm,
                t_mono,
                counters,
            } => Step::Exit {
                pid: tgid,
                comm,
                t_mono,
                // Its RSS as last known exactly, when the kernel's is not (rss_stat paused).
                counters: counters.map(|c| {
                    let mut c = *c;
                    if !c.rss_exact {
                        let prev = table.live.get(&tgid).map(|p| &p.counters);
                        rss_fallback::patch(&mut c, None, prev);
                    }
                    c
                }),
            },
            // The post-mortem is built once, by the pipeline, for every sink.
            KernelEvent::OomVictim(v) => Step::OomVictim(v),
            KernelEvent::Cgroup(c) => {
                if Some(c.hierarchy) != self.memory_hierarchy {
                    return None;
                }
                self.count_zombie_parent(&c);
                Step::Cgroup(c)
            }
        })
    }
}

/// What tells a process, and the program it runs, from another without a look at /proc: when
/// the kernel first saw it (a reused pid is another entry), its comm and whether it exec'ed
/// (an exec usually changes the comm; the exec event also says so, unless the ring lost it).
fn go_identity(c: &crate::model::counters::Counters) -> u64 {
    use std::hash::{Hash as _, Hasher as _};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (c.first_seen_ns, c.comm, c.exec_seen).hash(&mut h);
    h.finish()
}

/// How often (in rounds) free heap memory is handed back to the kernel.
const RELEASE_HEAP_EVERY: u64 = 10;

/// Give the allocator's free memory back to the kernel: once the programs are loaded, and
/// every [`RELEASE_HEAP_EVERY`] rounds. Loading parses the kernel's BTF (several MiB of small
/// allocations, ours and aya's) and frees it, but glibc keeps freed heap memory below the
/// highest live allocation: without this, an idle leaktracer held 16 MiB of heap it no longer
/// used, for as long as it ran.
fn release_free_heap() {
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
