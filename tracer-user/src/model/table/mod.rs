//! The process table: one entry per live process with its bounded time series, plus a
//! bounded graveyard of recently dead ones so an exit or OOM record can still show the
//! victim's history. Fed by the sampler (counters) and by kernel events (exec/exit).
use std::{
    collections::{BTreeMap, HashMap, HashSet, VecDeque},
    sync::Arc,
};

use hdrhistogram::Histogram;

use crate::{
    host::procfs::Procfs,
    kernel::sampler::Snapshot,
    model::counters::{Calls, Counters, MMAP_SIZE_CLASSES, MMAP_SIZE_MIN_SHIFT},
    model::rates,
    model::series::{Bucket, Ring, Sample},
};

/// Width of a coarse bucket: one trough/peak pair per minute.
pub const COARSE_SECS: f64 = 60.0;

#[derive(Clone, Copy, Debug)]
pub struct TableLimits {
    /// Fine samples kept per process (at the sampling interval).
    pub fine: usize,
    /// Coarse one-minute buckets kept per process.
    pub coarse: usize,
    /// Dead processes remembered.
    pub graveyard: usize,
    /// Live processes tracked at most (the kernel map's capacity bounds it anyway).
    pub live: usize,
}

impl Default for TableLimits {
    fn default() -> Self {
        Self {
            fine: 300,
            coarse: 360,
            graveyard: 256,
            live: 32768,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Process {
    pub pid: u32,
    pub ppid: u32,
    pub comm: String,
    /// Interned like `cgroup_raw` (in [`ProcessTable::cmdlines`]): replicas and workers of
    /// one program share it.
    pub cmdline: Option<Arc<str>>,
    /// /proc/<pid>/cgroup content at first sight (identity is resolved from it later).
    /// Interned: most processes of a node share a handful of cgroups, and a v1 file is a few
    /// hundred bytes (10,000 processes: 3 MiB saved).
    pub cgroup_raw: Option<Arc<str>>,
    /// Session time of the first sample.
    pub first_seen: f64,
    pub fine: Ring<Sample>,
    pub coarse: Ring<Bucket>,
    /// Latest cumulative counters (for trace output and deltas).
    pub counters: Counters,
    /// Whether `counters` changed in the latest sampling round.
    pub changed: bool,
    pub exited_at: Option<f64>,
    /// It lived and died between two sampling rounds: its exit brought all its counters.
    pub brief: bool,
    /// Latest leak verdict (see verdicts.rs) and when it was computed.
    pub assessment: Option<crate::detector::Assessment>,
    pub assessed_at: f64,
    /// The memory limit recorded for it (offline replay; live views ask the memcg cache).
    pub limit_bytes: Option<u64>,
    /// Whether that recorded limit is a memory cgroup's (else the node's memory).
    pub limit_from_cgroup: bool,
    /// Latest limit-risk judgement (model/risk.rs): None without a memory cgroup limit.
    /// Boxed: most processes have none, and the table holds tens of thousands.
    pub risk: Option<Box<crate::detector::LimitRisk>>,
    /// A Go process's runtime series (live heap after each GC, goroutines); None for other
    /// processes and Go runtimes that cannot be read. Boxed: most processes have none.
    pub go: Option<Box<crate::model::go::GoState>>,
}

impl Process {
    pub fn last(&self) -> Option<&Sample> {
        self.fine.last()
    }

    /// Highest private memory it reached: the kernel's high-water mark (which sees peaks
    /// between samples) or the highest sample.
    pub fn peak_private(&self) -> u64 {
        self.counters
            .peak_private
            .max(self.fine.iter().map(Sample::private).max().unwrap_or(0))
    }

    /// Growth of private memory in bytes/s over the `window` seconds before `now` (before
    /// its exit, for a dead process: time after death is not flat memory).
    pub fn growth_rate(&self, now: f64, window: f64) -> f64 {
        let end = self.exited_at.map_or(now, |e| e.min(now));
        rates::rate(&self.fine, end, window, |s| s.private() as f64).unwrap_or(0.0)
    }

    /// Allocation rate (bytes/s obtained through mmap/brk/mremap) over `window` seconds.
    pub fn alloc_rate(&self, now: f64, window: f64) -> f64 {
        rates::delta_rate(&self.fine, now, window, |s| s.alloc)
    }

    /// The process's memory cgroup path (v1 memory controller, else unified), as seen at
    /// first sight.
    pub fn memcg_path(&self) -> Option<String> {
        let raw = self.cgroup_raw.as_deref()?;
        crate::host::identity::parse_proc_cgroup(raw)
            .memory_path()
            .map(str::to_string)
    }

    /// How long the current growth has lasted, as `top` shows it: the latest rise of private
    /// memory from its last trough to where it stopped rising (its peak), while the growth
    /// rate over the window is positive; 0 otherwise. So a process that rose for 15 s and has
    /// been flat since is not "growing for" the flat stretch too: 0 once the flat stretch
    /// dominates the window, 15 s while the rise still does.
    pub fn growing_for(&self, now: f64, window: f64) -> f64 {
        if self.growth_rate(now, window) <= 0.0 {
            return 0.0;
        }
        rates::latest_rise(&self.fine, |s| s.private()).map_or(0.0, |r| r.secs())
    }

    /// This process's ranking key with the rate a view shows for it.
    pub fn rank_key(&self, rate: f64) -> crate::model::rank::RankKey {
        crate::model::rank::RankKey {
            verdict: self.assessment.as_ref().map(|a| a.verdict),
            rate,
            private: self.last().map_or(0, Sample::private),
            pid: self.pid,
            first_seen: self.first_seen,
        }
    }

    fn push(&mut self, s: Sample) {
        let p = s.private();
        match self.coarse.last_mut() {
            Some(b) if s.t - b.t < COARSE_SECS => {
                b.min_private = b.min_private.min(p);
                b.max_private = b.max_private.max(p);
                b.last_private = p;
            }
            _ => self.coarse.push(Bucket {
                t: s.t,
                min_private: p,
                max_private: p,
                last_private: p,
            }),
        }
        self.fine.push(s);
    }
}

pub fn sample_of(t: f64, st: &Counters) -> Sample {
    Sample {
        t,
        rss: st.rss,
        alloc: st.alloc(),
        freed: st.freed(),
        calls: st.calls.total(),
    }
}

/// Distributions over the whole session (hdrhistogram: bounded memory, fixed precision).
pub struct Distributions {
    /// mmap request sizes in bytes, rebuilt from the kernel's per-process log2 buckets.
    pub mmap_sizes: Histogram<u64>,
    /// Positive per-interval growth of private memory, bytes, across processes.
    pub interval_growth: Histogram<u64>,
}

impl Distributions {
    // Invariant, not an error path: new_with_bounds fails only for low < 1, high < 2 * low
    // or more than 5 significant figures, and these constants are none of those (every
    // ProcessTable built in the unit tests runs this).
    #[expect(
        clippy::expect_used,
        reason = "constant, valid histogram bounds: the call cannot fail"
    )]
    fn new() -> Self {
        let h = || {
            Histogram::new_with_bounds(1, 1 << 46, 2).expect("static histogram bounds are valid")
        };
        Self {
            mmap_sizes: h(),
            interval_growth: h(),
        }
    }
}

/// What one round of updates changed, for the sinks.
#[derive(Default, Debug)]
pub struct RoundReport {
    pub new_pids: Vec<u32>,
    /// Processes whose final counters came in this round; now in the graveyard.
    pub exited: Vec<u32>,
    /// Memory-cgroup reclaim run since the previous round, summed per memory cgroup path
    /// ("/" when unknown). The kernel counts it per process; the cgroup is what hit its limit.
    pub reclaim: BTreeMap<String, ReclaimRound>,
}

/// Reclaim by one cgroup's processes in one round.
#[derive(Default, Debug, Clone, PartialEq)]
pub struct ReclaimRound {
    pub runs: u64,
    pub stall_ns: u64,
    pub pages: u64,
    /// Some of the processes that reclaimed (at most [`ReclaimRound::MAX_PIDS`]).
    pub pids: Vec<u32>,
}

impl ReclaimRound {
    pub const MAX_PIDS: usize = 8;

    fn add(&mut self, pid: u32, prev: &Counters, now: &Counters) {
        let runs = now.reclaim_runs.saturating_sub(prev.reclaim_runs);
        if runs == 0 {
            return;
        }
        self.runs += runs;
        self.stall_ns += now.reclaim_ns.saturating_sub(prev.reclaim_ns);
        self.pages += now.reclaimed_pages.saturating_sub(prev.reclaimed_pages);
        if self.pids.len() < Self::MAX_PIDS {
            self.pids.push(pid);
        }
    }
}

pub struct ProcessTable {
    /// Boxed: a hash map keeps an eighth to a half of its slots empty, and a `Process` is
    /// several hundred bytes; an empty slot of a box is 8 (10,000 processes: 4 MiB saved).
    pub live: HashMap<u32, Box<Process>>,
    pub graveyard: VecDeque<Process>,
    pub limits: TableLimits,
    pub dists: Distributions,
    /// Session start, CLOCK_MONOTONIC seconds: sample times are relative to it.
    pub t0_mono: f64,
    /// Processes refused because the table was full.
    pub dropped: u64,
    /// Raw /proc cgroup read at exec of processes not in the table yet, kept until the end
    /// of the next round (bounded by [`EXEC_CGROUPS_MAX`]).
    exec_cgroups: HashMap<u32, String>,
    /// Shared copies of the cgroup files of tracked processes.
    pub strings: Interner,
    /// Shared copies of their command lines.
    pub cmdlines: Interner,
    /// Reclaim of processes that ended between rounds, for the next round's report.
    ended_reclaim: BTreeMap<String, ReclaimRound>,
    /// Every process end, and the largest ends with their final counters.
    pub ended: crate::model::ended::EndedLog,
    /// Traced syscalls of every process since the session started, short-lived ones
    /// included.
    pub calls_total: Calls,
}

/// A process's end as the table folded it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ended {
    pub pid: u32,
    /// It had not been sampled alive: it lived less than one interval.
    pub first_sight: bool,
}

/// A process at its end (its final counters folded in), as the views list it.
fn ended_process(p: &Process, t: f64, brief: bool) -> crate::model::ended::EndedProcess {
    let last = sample_of(t, &p.counters);
    crate::model::ended::EndedProcess {
        pid: p.pid,
        ppid: p.ppid,
        comm: p.comm.clone(),
        ended_at_secs: crate::util::clock::round_ms(t),
        brief,
        peak_private_bytes: p.peak_private(),
        private_bytes: last.private(),
        alloc_bytes: last.alloc,
        calls: p.counters.calls,
        cgroup: p.memcg_path(),
    }
}

/// What every fold adds to besides the process itself.
struct Totals<'a> {
    dists: &'a mut Distributions,
    calls: &'a mut Calls,
    reclaim: &'a mut BTreeMap<String, ReclaimRound>,
}

/// Fold a counter snapshot into a process: its sample, the session distributions,
/// and its reclaim since the previous one (summed per memory cgroup into `reclaim`).
fn fold(p: &mut Process, t: f64, st: &Counters, totals: &mut Totals<'_>) {
    let prev = p.counters;
    totals.calls.add(&st.calls.since(&prev.calls));
    let (dists, reclaim) = (&mut *totals.dists, &mut *totals.reclaim);
    // mmap request sizes: the new counts in each log2 bucket since last round.
    for b in 0..MMAP_SIZE_CLASSES {
        let n = st.mmap_size_hist[b].saturating_sub(prev.mmap_size_hist[b]);
        if n > 0 {
            let _ = dists
                .mmap_sizes
                .record_n(1u64 << (b as u32 + MMAP_SIZE_MIN_SHIFT), u64::from(n));
        }
    }
    if st.reclaim_runs != prev.reclaim_runs {
        let cgroup = p.memcg_path().unwrap_or_else(|| "/".to_owned());
        reclaim.entry(cgroup).or_default().add(p.pid, &prev, st);
    }
    let s = sample_of(t, st);
    if let Some(last) = p.fine.last() {
        let g = s.private().saturating_sub(last.private());
        if g > 0 {
            let _ = dists.interval_growth.record(g);
        }
    }
    p.counters = *st;
    p.push(s);
}

/// One shared copy of each distinct string (see [`Process::cgroup_raw`]).
#[derive(Default, Debug)]
pub struct Interner {
    set: HashSet<Arc<str>>,
}

impl Interner {
    pub fn intern(&mut self, s: String) -> Arc<str> {
        if let Some(shared) = self.set.get(s.as_str()) {
            return shared.clone();
        }
        let shared: Arc<str> = s.into();
        self.set.insert(shared.clone());
        shared
    }

    /// The distinct strings held.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.set.iter().map(|s| &**s)
    }

    /// Forget the strings no process holds any more (the table's graveyard included).
    pub fn prune(&mut self) {
        self.set.retain(|s| Arc::strong_count(s) > 1);
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.set.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Execs remembered per round; a storm beyond this falls back to the parent's cgroup.
const EXEC_CGROUPS_MAX: usize = 4096;

impl ProcessTable {
    pub fn new(limits: TableLimits, t0_mono: f64) -> Self {
        Self {
            live: HashMap::new(),
            graveyard: VecDeque::new(),
            limits,
            dists: Distributions::new(),
            t0_mono,
            dropped: 0,
            exec_cgroups: HashMap::new(),
            strings: Interner::default(),
            cmdlines: Interner::default(),
            ended_reclaim: BTreeMap::new(),
            calls_total: Calls::default(),
            ended: crate::model::ended::EndedLog::default(),
        }
    }

    pub fn session_time(&self, t_mono: f64) -> f64 {
        // Millisecond precision, as the trace writes it: a replayed trace then rebuilds the
        // very series the live table held, and judges them alike.
        crate::util::clock::round_ms(t_mono - self.t0_mono)
    }

    /// Fold one kernel snapshot in. `procfs` is used only at first sight of a pid
    /// (cmdline, cgroup), never on every round.
    pub fn update(&mut self, snap: &Snapshot, procfs: Option<&Procfs>) -> RoundReport {
        let t = self.session_time(snap.t_mono);
        let mut report = RoundReport {
            // Reclaim by processes that ended since the last round (their exit events).
            reclaim: std::mem::take(&mut self.ended_reclaim),
            ..RoundReport::default()
        };
        // `changed` is about this round: a process whose kernel entry is gone (it exited; its
        // exit event is on its way) is not in the snapshot and did not change.
        for p in self.live.values_mut() {
            p.changed = false;
        }
        for (pid, st) in &snap.procs {
            if st.exited {
                // Final counters left in the kernel map because the exit event found the
                // ring buffer full: the same path as an exit event, minus its timestamp.
                if let Some(ended) =
                    self.end_with(*pid, snap.t_mono, Some(st), procfs, &mut report.reclaim)
                {
                    if ended.first_sight {
                        report.new_pids.push(*pid);
                    }
                    report.exited.push(*pid);
                }
                continue;
            }
            if !self.live.contains_key(pid) {
                if self.live.len() >= self.limits.live {
                    self.dropped += 1;
                    continue;
                }
                let p = self.new_process(*pid, st, t, procfs);
                self.live.insert(*pid, Box::new(p));
                report.new_pids.push(*pid);
            }
            let Some(p) = self.live.get_mut(pid) else {
                continue;
            };
            p.changed = p.counters != *st || p.fine.is_empty();
            if p.changed {
                let mut totals = Totals {
                    dists: &mut self.dists,
                    calls: &mut self.calls_total,
                    reclaim: &mut report.reclaim,
                };
                fold(p, t, st, &mut totals);
            }
        }
        // Go runtimes: a reading that moved makes the process changed (a GC cycle, goroutines
        // started) even when its memory counters did not.
        for (pid, figures) in &snap.go {
            let Some(p) = self.live.get_mut(pid) else {
                continue;
            };
            match &mut p.go {
                Some(g) if g.latest == *figures => {}
                Some(g) => {
                    g.fold(t, figures.clone());
                    p.changed = true;
                }
                None => {
                    p.go = Some(Box::new(crate::model::go::GoState::new(t, figures.clone())));
                    p.changed = true;
                }
            }
        }
        self.exec_cgroups.clear();
        self.strings.prune();
        self.cmdlines.prune();
        // After a burst (10,000 processes come and gone) give the table's memory back: a
        // hash map keeps its capacity otherwise.
        if self.live.capacity() > 1024 && self.live.capacity() > 4 * self.live.len() {
            self.live.shrink_to(2 * self.live.len());
        }
        report
    }

    /// A table entry for a process seen for the first time (alive, or at its end).
    fn new_process(&mut self, pid: u32, st: &Counters, t: f64, procfs: Option<&Procfs>) -> Process {
        let limits = self.limits;
        // /proc's comm is current (prctl renames, e.g. stress-ng's workers); the kernel
        // entry's is the one at fork or exec. A process already gone has only the latter.
        let comm = procfs
            .and_then(|p| p.comm(pid))
            .unwrap_or_else(|| st.comm());
        let cgroup = procfs
            .and_then(|p| p.cgroup(pid))
            // Gone already: where it exec'ed, else where its parent is (a child starts in
            // its parent's cgroup).
            .or_else(|| self.exec_cgroups.get(&pid).cloned())
            .or_else(|| {
                self.live
                    .get(&st.ppid)
                    .and_then(|pp| pp.cgroup_raw.as_deref().map(str::to_owned))
            });
        Process {
            pid,
            ppid: st.ppid,
            comm,
            cmdline: procfs
                .and_then(|p| p.cmdline(pid))
                .map(|c| self.cmdlines.intern(c)),
            cgroup_raw: cgroup.map(|c| self.strings.intern(c)),
            first_seen: t,
            fine: Ring::new(limits.fine),
            coarse: Ring::new(limits.coarse),
            counters: Counters::default(),
            changed: true,
            exited_at: None,
            brief: false,
            assessment: None,
            assessed_at: f64::NEG_INFINITY,
            limit_bytes: None,
            limit_from_cgroup: false,
            risk: None,
            go: None,
        }
    }

    /// A process ended with these final counters (its exit event): they become its last
    /// sample and it moves to the graveyard. A process never sampled alive (it lived less
    /// than one interval) is created from them first, so its counts are exact however
    /// short its life. Reclaim since the last round goes to the next round's report.
    /// `counters` None: the kernel never had its counters (the exit is all there is).
    pub fn end(
        &mut self,
        pid: u32,
        t_mono: f64,
        counters: Option<&Counters>,
        procfs: Option<&Procfs>,
    ) -> Option<Ended> {
        let mut reclaim = std::mem::take(&mut self.ended_reclaim);
        let ended = self.end_with(pid, t_mono, counters, procfs, &mut reclaim);
        self.ended_reclaim = reclaim;
        ended
    }

    fn end_with(
        &mut self,
        pid: u32,
        t_mono: f64,
        counters: Option<&Counters>,
        procfs: Option<&Procfs>,
        reclaim: &mut BTreeMap<String, ReclaimRound>,
    ) -> Option<Ended> {
        let t = self.session_time(t_mono);
        let first_sight = !self.live.contains_key(&pid);
        if first_sight {
            // Not in the table and no counters: nothing to add (its exit is still written).
            let st = counters?;
            if self.live.len() >= self.limits.live {
                self.dropped += 1;
                return None;
            }
            // Never read /proc/<pid> of a process that has ended: the pid may already be
            // another process's. Its name is the one its exit carried; its cgroup the one
            // read at its exec, else its parent's.
            let mut p = self.new_process(pid, st, t, None);
            if p.cgroup_raw.is_none()
                && let Some(c) = procfs.and_then(|fs| fs.cgroup(st.ppid))
            {
                p.cgroup_raw = Some(self.strings.intern(c));
            }
            p.brief = true;
            self.live.insert(pid, Box::new(p));
        }
        let p = self.live.get_mut(&pid)?;
        if let Some(st) = counters {
            // Its name as it ended (its leader's, renamed since first sight by prctl).
            let comm = st.comm();
            if !comm.is_empty() {
                p.comm = comm;
            }
            let mut st = *st;
            st.exited = true;
            // Never before the last sample (a round may have read the entry between the
            // exit event's timestamp and the entry's removal).
            let t = p.last().map_or(t, |l| l.t.max(t));
            p.changed = true;
            let mut totals = Totals {
                dists: &mut self.dists,
                calls: &mut self.calls_total,
                reclaim,
            };
            fold(p, t, &st, &mut totals);
        }
        if counters.is_some() {
            let e = ended_process(p, t, first_sight);
            self.ended.add(e);
        }
        self.exec_cgroups.remove(&pid);
        self.exit(pid, t_mono);
        Some(Ended { pid, first_sight })
    }

    /// A process exec'ed: new program, same pid. Its history restarts.
    pub fn exec(
        &mut self,
        pid: u32,
        comm: String,
        cmdline: Option<String>,
        cgroup_raw: Option<String>,
    ) {
        if let Some(p) = self.live.get_mut(&pid) {
            p.comm = comm;
            if let Some(c) = cmdline {
                p.cmdline = Some(self.cmdlines.intern(c));
            }
            if let Some(c) = cgroup_raw {
                p.cgroup_raw = Some(self.strings.intern(c));
            }
        } else if let Some(raw) = cgroup_raw {
            // Not sampled yet: remember where it ran in case it is gone by the next round.
            if self.exec_cgroups.len() < EXEC_CGROUPS_MAX {
                self.exec_cgroups.insert(pid, raw);
            }
        }
    }

    /// A process exited: move it to the graveyard with its history.
    pub fn exit(&mut self, pid: u32, t_mono: f64) -> Option<&Process> {
        let mut p = self.live.remove(&pid)?;
        p.exited_at = Some(self.session_time(t_mono));
        p.fine.shrink();
        p.coarse.shrink();
        if self.graveyard.len() >= self.limits.graveyard {
            // Histories outlive brief processes: a burst of short-lived ones (a build, a
            // crash loop) must not push out the history of the process that leaked.
            match self.graveyard.iter().position(|d| d.brief) {
                Some(i) => {
                    self.graveyard.remove(i);
                }
                None => {
                    self.graveyard.pop_front();
                }
            }
        }
        self.graveyard.push_back(*p);
        self.graveyard.back()
    }

    /// A live or recently dead process, to amend (offline replay).
    pub fn find_mut(&mut self, pid: u32) -> Option<&mut Process> {
        match self.live.get_mut(&pid) {
            Some(p) => Some(&mut **p),
            None => self.graveyard.iter_mut().rev().find(|p| p.pid == pid),
        }
    }

    /// A live or recently dead process.
    pub fn find(&self, pid: u32) -> Option<&Process> {
        self.live
            .get(&pid)
            .map(|p| &**p)
            .or_else(|| self.graveyard.iter().rev().find(|p| p.pid == pid))
    }

    /// Live processes in the one ranking order ([`crate::model::rank`]): by their latest verdict,
    /// then by growth rate over the `window` before `now`, which comes with each.
    pub fn ranked(&self, now: f64, window: f64) -> Vec<(&Process, f64)> {
        let mut v: Vec<_> = self
            .live
            .values()
            .map(|p| (&**p, p.growth_rate(now, window)))
            .collect();
        crate::model::rank::sort(&mut v, |(p, rate)| p.rank_key(*rate));
        v
    }
}

#[cfg(test)]
mod tests;
