//! The process table: one entry per live process with its bounded time series, plus a
//! bounded graveyard of recently dead ones so an exit or OOM record can still show the
//! victim's history. Fed by the sampler (counters) and by kernel events (exec/exit).
use std::{
    collections::{BTreeMap, HashMap, HashSet, VecDeque},
    sync::Arc,
};

use hdrhistogram::Histogram;
use tracer_ebpf::{
    CALL_KINDS, MMAP_HIST_BUCKETS, MMAP_HIST_MIN_SHIFT, PROC_FLAG_EXITED, ProcStats,
};

use crate::{
    procfs::{Procfs, comm_from_bytes},
    rates,
    sampler::Snapshot,
    series::{Bucket, Ring, Sample},
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
    pub cmdline: Option<String>,
    /// /proc/<pid>/cgroup content at first sight (identity is resolved from it later).
    /// Interned: most processes of a node share a handful of cgroups, and a v1 file is a few
    /// hundred bytes (10,000 processes: 3 MiB saved).
    pub cgroup_raw: Option<Arc<str>>,
    /// Session time of the first sample.
    pub first_seen: f64,
    pub fine: Ring<Sample>,
    pub coarse: Ring<Bucket>,
    /// Latest kernel counters (for trace output and deltas).
    pub stats: ProcStats,
    /// Whether `stats` changed in the latest sampling round.
    pub changed: bool,
    pub exited_at: Option<f64>,
    /// Latest leak verdict (see verdicts.rs) and when it was computed.
    pub assessment: Option<crate::detector::Assessment>,
    pub assessed_at: f64,
    /// The memory limit recorded for it (offline replay; live views ask the memcg cache).
    pub limit_bytes: Option<u64>,
}

impl Process {
    pub fn last(&self) -> Option<&Sample> {
        self.fine.last()
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
        crate::identity::parse_proc_cgroup(raw)
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
    pub fn rank_key(&self, rate: f64) -> crate::rank::RankKey {
        crate::rank::RankKey {
            verdict: self.assessment.as_ref().map(|a| a.verdict),
            rate,
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

pub fn sample_of(t: f64, st: &ProcStats) -> Sample {
    Sample {
        t,
        rss: st.rss,
        alloc: st.mapped_anon + st.mapped_file + st.brk_grown + st.mremap_grown,
        freed: st.unmapped + st.released + st.brk_shrunk + st.mremap_shrunk,
        calls: st.calls.iter().take(CALL_KINDS).sum(),
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

    fn add(&mut self, pid: u32, prev: &ProcStats, now: &ProcStats) {
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
    pub live: HashMap<u32, Process>,
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

    /// Forget the strings no process holds any more (the table's graveyard included).
    pub fn prune(&mut self) {
        self.set.retain(|s| Arc::strong_count(s) > 1);
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.set.len()
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
        }
    }

    pub fn session_time(&self, t_mono: f64) -> f64 {
        t_mono - self.t0_mono
    }

    /// Fold one kernel snapshot in. `procfs` is used only at first sight of a pid
    /// (cmdline, cgroup), never on every round.
    pub fn update(&mut self, snap: &Snapshot, procfs: Option<&Procfs>) -> RoundReport {
        let t = self.session_time(snap.t_mono);
        let mut report = RoundReport::default();
        for (pid, st) in &snap.procs {
            let limits = self.limits;
            let exited = st.flags & PROC_FLAG_EXITED != 0;
            if exited && !self.live.contains_key(pid) {
                // Born and dead between two samples: not worth a graveyard slot (churn
                // would push out the histories that matter); its exit event is recorded.
                // Its reclaim still counts (a `cat` through a full cgroup's page cache).
                if st.reclaim_runs > 0 {
                    let cgroup = self.cgroup_of_short_lived(*pid, st.ppid);
                    let none = ProcStats::default();
                    report
                        .reclaim
                        .entry(cgroup)
                        .or_default()
                        .add(*pid, &none, st);
                }
                continue;
            }
            if !self.live.contains_key(pid) {
                if self.live.len() >= limits.live {
                    self.dropped += 1;
                    continue;
                }
                self.live.insert(
                    *pid,
                    Process {
                        pid: *pid,
                        ppid: st.ppid,
                        // /proc's comm is current (prctl renames, e.g. stress-ng's workers);
                        // the kernel entry's is the one at fork or exec.
                        comm: procfs
                            .and_then(|p| p.comm(*pid))
                            .unwrap_or_else(|| comm_from_bytes(&st.comm)),
                        cmdline: procfs.and_then(|p| p.cmdline(*pid)),
                        cgroup_raw: procfs
                            .and_then(|p| p.cgroup(*pid))
                            .map(|c| self.strings.intern(c)),
                        first_seen: t,
                        fine: Ring::new(limits.fine),
                        coarse: Ring::new(limits.coarse),
                        stats: ProcStats::default(),
                        changed: true,
                        exited_at: None,
                        assessment: None,
                        assessed_at: f64::NEG_INFINITY,
                        limit_bytes: None,
                    },
                );
                report.new_pids.push(*pid);
            }
            let Some(p) = self.live.get_mut(pid) else {
                continue;
            };
            let prev = p.stats;
            p.changed = prev != *st || p.fine.is_empty();
            if !p.changed {
                if exited {
                    report.exited.push(*pid);
                }
                continue;
            }
            // mmap request sizes: the new counts in each log2 bucket since last round.
            for b in 0..MMAP_HIST_BUCKETS {
                let n = st.mmap_size_hist[b].saturating_sub(prev.mmap_size_hist[b]);
                if n > 0 {
                    let _ = self
                        .dists
                        .mmap_sizes
                        .record_n(1u64 << (b as u32 + MMAP_HIST_MIN_SHIFT), u64::from(n));
                }
            }
            if st.reclaim_runs != prev.reclaim_runs {
                let cgroup = p.memcg_path().unwrap_or_else(|| "/".to_owned());
                report
                    .reclaim
                    .entry(cgroup)
                    .or_default()
                    .add(*pid, &prev, st);
            }
            let s = sample_of(t, st);
            if let Some(last) = p.fine.last() {
                let g = s.private().saturating_sub(last.private());
                if g > 0 {
                    let _ = self.dists.interval_growth.record(g);
                }
            }
            p.stats = *st;
            p.push(s);
            if exited {
                report.exited.push(*pid);
            }
        }
        for pid in &report.exited {
            self.exit(*pid, snap.t_mono);
        }
        self.exec_cgroups.clear();
        self.strings.prune();
        // After a burst (10,000 processes come and gone) give the table's memory back: a
        // hash map keeps its capacity otherwise.
        if self.live.capacity() > 1024 && self.live.capacity() > 4 * self.live.len() {
            self.live.shrink_to(2 * self.live.len());
        }
        report
    }

    /// Memory cgroup of a process that lived and died between two samples: the one read at
    /// its exec, else its parent's (a child starts in its parent's cgroup), else "/".
    fn cgroup_of_short_lived(&self, pid: u32, ppid: u32) -> String {
        let parsed = |raw: &str| {
            crate::identity::parse_proc_cgroup(raw)
                .memory_path()
                .map(str::to_string)
        };
        self.exec_cgroups
            .get(&pid)
            .and_then(|raw| parsed(raw))
            .or_else(|| self.live.get(&ppid).and_then(Process::memcg_path))
            .unwrap_or_else(|| "/".to_owned())
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
            if cmdline.is_some() {
                p.cmdline = cmdline;
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
            self.graveyard.pop_front();
        }
        self.graveyard.push_back(p);
        self.graveyard.back()
    }

    /// A live or recently dead process.
    pub fn find(&self, pid: u32) -> Option<&Process> {
        self.live
            .get(&pid)
            .or_else(|| self.graveyard.iter().rev().find(|p| p.pid == pid))
    }

    /// Live processes in the one ranking order ([`crate::rank`]): by their latest verdict,
    /// then by growth rate over the `window` before `now`, which comes with each.
    pub fn ranked(&self, now: f64, window: f64) -> Vec<(&Process, f64)> {
        let mut v: Vec<_> = self
            .live
            .values()
            .map(|p| (p, p.growth_rate(now, window)))
            .collect();
        crate::rank::sort(&mut v, |(p, rate)| p.rank_key(*rate));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(t: f64, procs: Vec<(u32, u64)>) -> Snapshot {
        Snapshot {
            t_mono: t,
            procs: procs
                .into_iter()
                .map(|(pid, anon)| {
                    let mut st = ProcStats::default();
                    st.rss[tracer_ebpf::RSS_ANON] = anon;
                    st.mapped_anon = anon;
                    (pid, st)
                })
                .collect(),
            counters: [0; tracer_ebpf::CTR_COUNT as usize],
            procs_capacity: 100,
        }
    }

    #[test]
    fn reclaim_is_summed_per_cgroup_as_deltas() {
        let mut t = ProcessTable::new(TableLimits::default(), 0.0);
        let stats = |runs: u64, ns: u64, pages: u64| ProcStats {
            reclaim_runs: runs,
            reclaim_ns: ns,
            reclaimed_pages: pages,
            ..ProcStats::default()
        };
        let round = |t: &mut ProcessTable, time: f64, a: ProcStats, b: ProcStats| {
            t.update(
                &Snapshot {
                    t_mono: time,
                    procs: vec![(1, a), (2, b)],
                    counters: [0; tracer_ebpf::CTR_COUNT as usize],
                    procs_capacity: 100,
                },
                None,
            )
        };
        let r = round(&mut t, 1.0, stats(0, 0, 0), stats(0, 0, 0));
        assert!(r.reclaim.is_empty(), "no reclaim, no entry");
        for (pid, cg) in [(1, "/memory/app"), (2, "/memory/app")] {
            t.live.get_mut(&pid).unwrap().cgroup_raw = Some(format!("4:memory:{cg}\n").into());
        }
        let r = round(&mut t, 2.0, stats(3, 3_000, 10), stats(1, 500, 0));
        let app = r.reclaim.values().next().expect("one cgroup");
        assert_eq!(r.reclaim.len(), 1, "{r:?}");
        assert_eq!((app.runs, app.stall_ns, app.pages), (4, 3_500, 10));
        assert_eq!(app.pids, vec![1, 2]);
        // Only what is new since the previous round.
        let r = round(&mut t, 3.0, stats(5, 4_000, 12), stats(1, 500, 0));
        let app = r.reclaim.values().next().expect("one cgroup");
        assert_eq!(
            (app.runs, app.stall_ns, app.pages, &app.pids[..]),
            (2, 1_000, 2, &[1][..])
        );
    }

    #[test]
    fn reclaim_of_a_short_lived_process_goes_to_its_exec_or_parent_cgroup() {
        let mut t = ProcessTable::new(TableLimits::default(), 0.0);
        let proc_at = |ppid: u32, runs: u64, exited: bool| ProcStats {
            ppid,
            reclaim_runs: runs,
            reclaim_ns: 1_000,
            flags: if exited { PROC_FLAG_EXITED } else { 0 },
            ..ProcStats::default()
        };
        let round = |t: &mut ProcessTable, time: f64, procs: Vec<(u32, ProcStats)>| {
            t.update(
                &Snapshot {
                    t_mono: time,
                    procs,
                    counters: [0; tracer_ebpf::CTR_COUNT as usize],
                    procs_capacity: 100,
                },
                None,
            )
        };
        round(&mut t, 1.0, vec![(10, proc_at(1, 0, false))]);
        t.live.get_mut(&10).unwrap().cgroup_raw = Some("4:memory:/shell\n".into());
        assert_eq!(t.strings.len(), 0, "set directly, not interned");
        // 11: exec seen (in /job); 12: no exec seen, parent 10; 13: nothing known.
        t.exec(11, "cat".into(), None, Some("4:memory:/job\n".into()));
        let r = round(
            &mut t,
            2.0,
            vec![
                (10, proc_at(1, 0, false)),
                (11, proc_at(10, 2, true)),
                (12, proc_at(10, 1, true)),
                (13, proc_at(99, 1, true)),
            ],
        );
        assert_eq!(r.reclaim["/job"].runs, 2, "{r:?}");
        assert_eq!(r.reclaim["/shell"].pids, vec![12]);
        assert_eq!(r.reclaim["/"].pids, vec![13]);
        assert!(
            !t.live.contains_key(&11) && t.graveyard.is_empty(),
            "not tracked"
        );
        assert!(t.exec_cgroups.is_empty(), "forgotten after the round");
    }

    #[test]
    fn interned_strings_are_shared_and_pruned() {
        let mut i = Interner::default();
        let a = i.intern("4:memory:/a\n".to_owned());
        let b = i.intern("4:memory:/a\n".to_owned());
        assert!(Arc::ptr_eq(&a, &b));
        let c = i.intern("4:memory:/c\n".to_owned());
        assert_eq!(i.len(), 2);
        drop(c);
        i.prune();
        assert_eq!(i.len(), 1, "/c is held by nobody");
        drop((a, b));
        i.prune();
        assert_eq!(i.len(), 0);
    }

    #[test]
    fn ranks_the_grower_first_with_its_rate() {
        let mut t = ProcessTable::new(TableLimits::default(), 100.0);
        for i in 0..20u64 {
            t.update(
                &snap(
                    100.0 + i as f64,
                    vec![(1, 50 << 20), (2, (10 << 20) + i * (1 << 20)), (3, 5 << 20)],
                ),
                None,
            );
        }
        let ranked = t.ranked(19.0, 60.0);
        assert_eq!(ranked[0].0.pid, 2);
        assert!(
            (ranked[0].1 - (1 << 20) as f64).abs() < 1.0,
            "rate {}",
            ranked[0].1
        );
        assert_eq!(ranked[1].1, 0.0);
        assert!((t.live[&2].alloc_rate(19.0, 60.0) - (1 << 20) as f64).abs() < 1.0);
        assert_eq!(t.live[&2].growing_for(19.0, 60.0), 19.0);
    }

    /// Issue 10's shape through the real table and detector: a process that filled a cache
    /// at 8 MiB/s for 15 s and then stayed flat for 60 s, next to two steady leakers
    /// (2.2 MB/s and 0.5 MB/s), sampled every 500 ms (the burst's samples stored only on
    /// change). The leakers rank first, the burst last with a rate near 0.
    #[test]
    fn a_burst_then_flat_ranks_below_two_steady_leakers() {
        let mut t = ProcessTable::new(TableLimits::default(), 1000.0);
        let cfg = crate::detector::DetectorConfig::default();
        let (burst, fast, slow) = (10, 20, 30);
        for i in 0..=150u64 {
            let secs = i as f64 * 0.5;
            let burst_bytes = (8 << 20) + (8 << 20) * i.min(30) / 2;
            t.update(
                &snap(
                    1000.0 + secs,
                    vec![
                        (burst, burst_bytes),
                        (fast, (20 << 20) + i * 1_100_000),
                        (slow, (20 << 20) + i * 250_000),
                    ],
                ),
                None,
            );
            crate::verdicts::refresh(&mut t, secs, &cfg);
        }
        assert_eq!(t.live[&burst].fine.len(), 31, "stored only on change");
        let now = 75.0;
        for window in [60.0, 75.0] {
            let ranked = t.ranked(now, window);
            let pids: Vec<u32> = ranked.iter().map(|(p, _)| p.pid).collect();
            assert_eq!(pids, vec![fast, slow, burst], "window {window}");
            let rate = |pid| ranked.iter().find(|(p, _)| p.pid == pid).unwrap().1;
            assert!(rate(burst).abs() < 10_000.0, "{}", rate(burst));
            assert!((rate(fast) - 2.2e6).abs() < 0.01e6, "{}", rate(fast));
            assert!((rate(slow) - 0.5e6).abs() < 0.01e6, "{}", rate(slow));
        }
        let verdict = |pid| t.live[&pid].assessment.as_ref().unwrap().verdict;
        assert_eq!(verdict(fast), crate::detector::Verdict::Leaking);
        assert_eq!(verdict(slow), crate::detector::Verdict::Leaking);
        assert_eq!(verdict(burst), crate::detector::Verdict::Steady);
        // growing_for: 0 for the burst (not growing over the window), the whole 75 s for a
        // leaker still rising.
        assert_eq!(t.live[&burst].growing_for(now, 75.0), 0.0);
        assert_eq!(t.live[&fast].growing_for(now, 75.0), 75.0);
        // Within the burst's own window it grew for 15 s, not 15 s + what came after.
        assert_eq!(t.live[&burst].growing_for(15.0, 15.0), 15.0);
    }

    #[test]
    fn unchanged_processes_add_no_samples() {
        let mut t = ProcessTable::new(TableLimits::default(), 0.0);
        for i in 0..50 {
            t.update(&snap(i as f64, vec![(7, 4096)]), None);
        }
        assert_eq!(t.live[&7].fine.len(), 1, "an idle process costs one sample");
    }

    #[test]
    fn memory_is_bounded() {
        let limits = TableLimits {
            fine: 10,
            coarse: 5,
            graveyard: 3,
            live: 4,
        };
        let mut t = ProcessTable::new(limits, 0.0);
        for i in 0..1000u64 {
            t.update(
                &snap(
                    i as f64 * 30.0,
                    vec![(1, i * 4096), (2, 1), (3, 1), (4, 1), (5, 1)],
                ),
                None,
            );
        }
        assert_eq!(t.live.len(), 4, "live bound");
        assert!(t.dropped > 0, "refusals are counted");
        assert_eq!(t.live[&1].fine.len(), 10);
        assert_eq!(t.live[&1].coarse.len(), 5);
        for pid in 1..=4 {
            t.exit(pid, 0.0);
        }
        assert_eq!(t.graveyard.len(), 3);
        assert!(t.find(1).is_none(), "oldest dead evicted");
        assert!(t.find(4).is_some());
    }
}

#[cfg(test)]
mod exit_tests {
    use super::*;

    #[test]
    fn exited_process_keeps_its_final_sample_in_the_graveyard() {
        let mut t = ProcessTable::new(TableLimits::default(), 0.0);
        let mut st = ProcStats::default();
        st.rss[tracer_ebpf::RSS_ANON] = 100;
        let snap = |t_mono: f64, st: ProcStats| Snapshot {
            t_mono,
            procs: vec![(9, st)],
            counters: [0; tracer_ebpf::CTR_COUNT as usize],
            procs_capacity: 10,
        };
        t.update(&snap(1.0, st), None);
        st.rss[tracer_ebpf::RSS_ANON] = 200;
        st.flags |= PROC_FLAG_EXITED;
        let r = t.update(&snap(2.0, st), None);
        assert_eq!(r.exited, vec![9]);
        assert!(t.live.is_empty());
        let dead = t.find(9).expect("in the graveyard");
        assert_eq!(dead.last().unwrap().private(), 200, "final counters kept");
        assert_eq!(dead.exited_at, Some(2.0));
        // Born and dead between two samples: not tracked.
        let r = t.update(
            &snap(
                3.0,
                ProcStats {
                    flags: PROC_FLAG_EXITED,
                    ..ProcStats::default()
                },
            ),
            None,
        );
        assert!(r.exited.is_empty() && r.new_pids.is_empty());
    }
}
