//! The overhead budget (`--max-overhead`): leaktracer's kernel programs may use at most that
//! share of the node's CPU, whatever the workload. Two readings decide:
//! - A measurement window, one interval in five: the programs' own run time (they time one
//!   run in 32 of themselves, see run_time.rs). It gives the real share, each hook's cost
//!   per run, and decides resumes.
//! - The guard, every 200 ms in between: each hook's run count (the kernel's `PROG_RUNS`, a
//!   per-CPU add per run) priced at its last measured cost per run. A storm is paused within
//!   a fraction of a second of starting instead of up to five intervals later.
//!
//! When over budget, syscall hooks are paused in a fixed order, from the most frequent and
//! least telling to the least: madvise, munmap, mmap (with mremap), brk, and last rss_stat. A paused hook is resumed after a hold, which doubles
//! each time the hook trips again soon after a resume (so a storm that goes on costs one
//! interval per hold).
//! The lifecycle hooks are never paused. A paused syscall hook leaves only its own call and
//! byte counters incomplete. A paused rss_stat (a page-fault storm) costs no exactness at the
//! samples: each interval the RSS of the processes it would have kept current is read from
//! /proc/PID/status instead (a cost that scales with processes, not faults); only peaks
//! between two samples are missed. That fallback is priced too: each round says how many
//! processes it would read and what a read cost (this thread's CPU clock around the reads),
//! and rss_stat is paused only when the hook costs more than the fallback would (10,000
//! sleeping processes make the fallback the dearer one), and resumed early when the
//! processes multiplied since its pause. Every pause and resume is reported.
use std::collections::{HashMap, VecDeque};

use serde::{Deserialize, Serialize};

/// A group of programs paused and resumed together.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Hook {
    /// Growth-site stacks (`record --stacks`): the page-fault, mmap and brk stack programs.
    Stacks,
    Madvise,
    Munmap,
    Mmap,
    Brk,
    Rss,
}

impl Hook {
    /// Pause order: the first is paused first.
    pub const ORDER: [Hook; 6] = [
        Hook::Stacks,
        Hook::Madvise,
        Hook::Munmap,
        Hook::Mmap,
        Hook::Brk,
        Hook::Rss,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Hook::Stacks => "stacks",
            Hook::Madvise => "madvise",
            Hook::Munmap => "munmap",
            Hook::Mmap => "mmap",
            Hook::Brk => "brk",
            Hook::Rss => "rss",
        }
    }

    /// Its programs, each attached to the syscall tracepoint of the same name. Enter
    /// programs first: detaching in this order never leaves an exit without its enter.
    pub fn programs(self) -> &'static [&'static str] {
        match self {
            Hook::Stacks => &["page_fault_user", "mmap_growth_stack", "brk_growth_stack"],
            Hook::Madvise => &["sys_enter_madvise"],
            Hook::Munmap => &["sys_enter_munmap"],
            Hook::Mmap => &[
                "sys_enter_mmap",
                "sys_enter_mremap",
                "sys_exit_mmap",
                "sys_exit_mremap",
            ],
            Hook::Brk => &["sys_exit_brk"],
            // Whichever of the two is in use (see loader.rs).
            Hook::Rss => &["rss_stat_raw", "rss_stat"],
        }
    }

    /// The hooks paused and resumed with this one. The syscall hooks go together: while any
    /// syscall tracepoint has a program, every syscall on the node takes the kernel's traced
    /// (slower) path, a cost the programs' own run time does not show. A brk storm measured
    /// 15-20% slower with brk and madvise paused but mmap and munmap attached, and at
    /// untraced speed with all four paused. RSS (rss_stat) and the growth-site stacks (page faults) go alone.
    pub fn group(self) -> &'static [Hook] {
        match self {
            Hook::Rss => &[Hook::Rss],
            Hook::Stacks => &[Hook::Stacks],
            Hook::Madvise | Hook::Munmap | Hook::Mmap | Hook::Brk => {
                &[Hook::Madvise, Hook::Munmap, Hook::Mmap, Hook::Brk]
            }
        }
    }

    /// The hook of a cost named by a program or by the hook itself (run_time.rs).
    pub fn of_program(name: &str) -> Option<Hook> {
        Hook::ORDER
            .into_iter()
            .find(|h| h.as_str() == name || h.programs().contains(&name))
    }
}

/// One program's cumulative cost, as the kernel counts it.
#[derive(Clone, Debug, PartialEq)]
pub struct ProgCost {
    pub name: String,
    pub run_ns: u64,
    pub runs: u64,
}

/// A decision of the budget.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BudgetEvent {
    pub hook: Hook,
    /// `pause` or `resume`.
    pub action: BudgetAction,
    /// The programs' share of the node's CPU in the round that decided (0..1).
    pub bpf_cpu_share: f64,
    /// The hook's own share in that round (0 on resume: it was not running).
    pub hook_cpu_share: f64,
    pub budget: f64,
    /// Pause: how long before it is tried again (seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold_secs: Option<f64>,
    /// Decided by the guard: the shares are run counts priced at measured costs per run,
    /// not run times measured in that period.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub estimated: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BudgetAction {
    Pause,
    Resume,
}

/// The budget's view after a round, for health lines, headers and metrics.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct OverheadStatus {
    /// The kernel programs' share of the node's CPU over the last round (0..1; None before
    /// two measurements).
    pub bpf_cpu_share: Option<f64>,
    /// The budget (0..1); 0 when off.
    pub budget: f64,
    /// Hooks paused now, in pause order.
    pub paused: Vec<Hook>,
    /// Processes whose RSS was read from /proc in the last round, because the rss_stat hook
    /// is paused or was resumed since their last RSS change.
    #[serde(default)]
    pub rss_from_proc: u32,
}

#[derive(Clone, Copy, Debug)]
struct Paused {
    resume_at: f64,
    /// The hook's share of the node's CPU when it was paused (what pausing it saved).
    share: f64,
}

/// What the RSS fallback (/proc/PID/status of every tracked process, each round while
/// rss_stat is paused) would cost now.
#[derive(Clone, Copy, Debug)]
struct FallbackPrice {
    /// Processes it would read each round.
    procs: u32,
    /// One read's CPU time (ns), learnt from the reads made; None before any.
    ns_per_read: Option<f64>,
    /// Seconds between rounds.
    interval_secs: f64,
}

pub struct Budget {
    max_share: f64,
    ncpus: f64,
    base_hold: f64,
    /// Each program's cumulative (run time in ns, runs) at the window's start.
    last: HashMap<String, (u64, u64)>,
    last_t: Option<f64>,
    /// What one run of each hook's programs cost in the last measurement window (ns).
    run_cost: HashMap<Hook, f64>,
    /// The other programs' share (lifecycle, OOM, ...) in the last window: never paused,
    /// counted by the guard as they were.
    unpausable_share: f64,
    /// The guard's readings of the hooks' run counts (time, counts), oldest first, covering
    /// the last [`GUARD_SPAN_SECS`] and one before.
    guard_readings: VecDeque<(f64, HashMap<Hook, u64>)>,
    paused: HashMap<Hook, Paused>,
    /// Per hook: the hold its next pause gets, and when it was last resumed.
    hold: HashMap<Hook, f64>,
    resumed_at: HashMap<Hook, f64>,
    /// The price of reading RSS from /proc instead of rss_stat.
    fallback: FallbackPrice,
    status: OverheadStatus,
}

/// A hook is paused only when it costs at least this fraction of the budget.
const MIN_PAUSE_FRACTION: f64 = 0.25;

/// Longest hold: a hook comes back at least this often to see whether the storm is over.
const MAX_HOLD_SECS: f64 = 600.0;

/// The guard judges the run counts of this long a span (the length of a measurement window
/// at the default interval).
const GUARD_SPAN_SECS: f64 = 1.0;

/// A window's cost per run is learnt only from this many runs or more.
const MIN_RUNS_TO_LEARN: u64 = 1000;

/// What the guard assumes one run costs before a measurement window has said (ns): above
/// what any of these programs measured on the bench machine, so a storm at start-up is
/// paused early rather than late.
const UNMEASURED_RUN_NS: f64 = 300.0;

/// What one /proc/PID/status read of the RSS fallback is assumed to cost before one has been
/// measured (ns): a read and parse measured 5-7 µs on the bench machine; erring high keeps
/// rss_stat running rather than trading it for a fallback that may be dearer.
const UNMEASURED_PROC_READ_NS: f64 = 10_000.0;

/// A round's fallback reads teach their cost per read only from this many reads or more
/// (fewer are dominated by the clock reads and the round's fixed costs).
const MIN_READS_TO_LEARN: u32 = 16;

/// Weight of the newest round in the learnt cost per read (an exponential average: one
/// round disturbed by another process's CPU use does not swing the price).
const READ_COST_WEIGHT: f64 = 0.25;

impl Budget {
    /// `max_share` 0 turns the budget off (nothing is ever paused).
    pub fn new(max_share: f64, ncpus: u32, base_hold_secs: f64) -> Self {
        Self {
            max_share,
            ncpus: f64::from(ncpus.max(1)),
            base_hold: base_hold_secs,
            last: HashMap::new(),
            last_t: None,
            run_cost: HashMap::new(),
            unpausable_share: 0.0,
            guard_readings: VecDeque::new(),
            paused: HashMap::new(),
            hold: HashMap::new(),
            resumed_at: HashMap::new(),
            fallback: FallbackPrice {
                procs: 0,
                ns_per_read: None,
                interval_secs: 1.0,
            },
            status: OverheadStatus {
                budget: max_share,
                ..OverheadStatus::default()
            },
        }
    }

    pub fn status(&self) -> &OverheadStatus {
        &self.status
    }

    /// How many processes the last round read RSS for from /proc (see rss_fallback.rs).
    pub fn set_rss_from_proc(&mut self, n: u32) {
        self.status.rss_from_proc = n;
    }

    /// The RSS fallback's price this round: it would read `procs` processes every
    /// `interval_secs` while rss_stat is paused.
    pub fn price_rss_fallback(&mut self, procs: u32, interval_secs: f64) {
        self.fallback.procs = procs;
        if interval_secs > 0.0 {
            self.fallback.interval_secs = interval_secs;
        }
    }

    /// A round's fallback reads: `reads` /proc reads took `cpu_ns` of this thread's CPU.
    pub fn learn_rss_fallback_cost(&mut self, reads: u32, cpu_ns: u64) {
        if reads < MIN_READS_TO_LEARN {
            return;
        }
        let per_read = cpu_ns as f64 / f64::from(reads);
        self.fallback.ns_per_read = Some(match self.fallback.ns_per_read {
            Some(old) => old + READ_COST_WEIGHT * (per_read - old),
            None => per_read,
        });
    }

    /// The fallback's share of the node's CPU, were rss_stat paused now.
    fn rss_fallback_share(&self) -> f64 {
        let per_read = self.fallback.ns_per_read.unwrap_or(UNMEASURED_PROC_READ_NS);
        f64::from(self.fallback.procs) * per_read / (self.fallback.interval_secs * 1e9 * self.ncpus)
    }

    /// Start a measurement window: the programs' cumulative costs at `t`. The next
    /// [`Budget::observe`] measures from here.
    pub fn baseline(&mut self, t: f64, costs: &[ProgCost]) {
        // Programs gone since (a capture's, see priced.rs) must not be a stale base for a
        // later load's counters of the same name, which start again from 0.
        self.last.clear();
        for c in costs {
            self.last.insert(c.name.clone(), (c.run_ns, c.runs));
        }
        self.last_t = Some(t);
    }

    /// Fold in the programs' cumulative costs at time `t` (seconds) and decide. The caller
    /// carries the decisions out (detach, attach) and reports them.
    pub fn observe(&mut self, t: f64, costs: &[ProgCost]) -> Vec<BudgetEvent> {
        let mut per_hook: HashMap<Hook, f64> = HashMap::new();
        // Per hook: nanoseconds and runs in this window, for the guard's cost per run.
        let mut spent: HashMap<Hook, (u64, u64)> = HashMap::new();
        let mut total = 0.0;
        let elapsed = self.last_t.map(|t0| t - t0).filter(|d| *d > 0.0);
        for c in costs {
            let before = self.last.insert(c.name.clone(), (c.run_ns, c.runs));
            let (Some(dt), Some((ns_before, runs_before))) = (elapsed, before) else {
                continue;
            };
            let ns = c.run_ns.saturating_sub(ns_before);
            let share = ns as f64 / (dt * 1e9 * self.ncpus);
            total += share;
            if let Some(h) = Hook::of_program(&c.name) {
                *per_hook.entry(h).or_default() += share;
                let runs = c.runs.saturating_sub(runs_before);
                let e = spent.entry(h).or_default();
                *e = (e.0 + ns, e.1 + runs);
            }
        }
        self.last
            .retain(|name, _| costs.iter().any(|c| &c.name == name));
        self.last_t = Some(t);
        if elapsed.is_some() {
            self.learn_run_costs(total, &per_hook, &spent);
        }
        let mut events = Vec::new();
        if elapsed.is_some() {
            self.status.bpf_cpu_share = Some(total);
            if self.max_share > 0.0 {
                if total > self.max_share {
                    self.pause_until_within(t, total, &per_hook, false, &mut events);
                } else if let Some(due) = self.due_for_resume(t) {
                    for &hook in due.group() {
                        if self.paused.remove(&hook).is_none() {
                            continue;
                        }
                        self.resumed_at.insert(hook, t);
                        events.push(BudgetEvent {
                            hook,
                            action: BudgetAction::Resume,
                            bpf_cpu_share: total,
                            hook_cpu_share: 0.0,
                            budget: self.max_share,
                            hold_secs: None,
                            estimated: false,
                        });
                    }
                }
            }
        }
        self.status.paused = Hook::ORDER
            .into_iter()
            .filter(|h| self.paused.contains_key(h))
            .collect();
        events
    }

    /// Remember what a run of each hook cost in a measurement window (windows with too few
    /// runs to tell keep the previous figure) and what the programs that are never paused
    /// cost.
    fn learn_run_costs(
        &mut self,
        total: f64,
        per_hook: &HashMap<Hook, f64>,
        spent: &HashMap<Hook, (u64, u64)>,
    ) {
        for (hook, (ns, runs)) in spent {
            if *runs >= MIN_RUNS_TO_LEARN {
                self.run_cost.insert(*hook, *ns as f64 / *runs as f64);
            }
        }
        self.unpausable_share = (total - per_hook.values().sum::<f64>()).max(0.0);
    }

    /// The guard, between measurement windows: the hooks' run counts over the last
    /// [`GUARD_SPAN_SECS`] (cumulative counts from the kernel's `PROG_RUNS`, read at time
    /// `t`), priced at each hook's last measured cost per run. A heavy storm is paused within
    /// a reading or two of starting. Judging a whole span, like a measurement window, keeps a
    /// burst of a fraction of a second (a process starting up) from pausing a hook. Resuming
    /// stays with the measurement windows, which see the real cost.
    pub fn guard(&mut self, t: f64, runs: &[(Hook, u64)]) -> Vec<BudgetEvent> {
        let now: HashMap<Hook, u64> = runs.iter().copied().collect();
        // Keep one reading at least a span old as the base, drop the ones before it.
        while self.guard_readings.len() >= 2 && self.guard_readings[1].0 <= t - GUARD_SPAN_SECS {
            self.guard_readings.pop_front();
        }
        let base = self.guard_readings.front().cloned();
        self.guard_readings.push_back((t, now.clone()));
        let Some((t0, before)) = base else {
            return Vec::new();
        };
        // Less history than a span: what came before it counts as idle.
        let span = (t - t0).max(GUARD_SPAN_SECS);
        let mut per_hook: HashMap<Hook, f64> = HashMap::new();
        let mut total = self.unpausable_share;
        for (&hook, &count) in &now {
            // A paused hook costs nothing now, whatever it ran earlier in the span.
            if self.paused.contains_key(&hook) {
                continue;
            }
            let Some(&count_before) = before.get(&hook) else {
                continue;
            };
            let cost = self
                .run_cost
                .get(&hook)
                .copied()
                .unwrap_or(UNMEASURED_RUN_NS);
            let share =
                count.saturating_sub(count_before) as f64 * cost / (span * 1e9 * self.ncpus);
            per_hook.insert(hook, share);
            total += share;
        }
        let mut events = Vec::new();
        if self.max_share > 0.0 && total > self.max_share {
            self.pause_until_within(t, total, &per_hook, true, &mut events);
            self.status.paused = Hook::ORDER
                .into_iter()
                .filter(|h| self.paused.contains_key(h))
                .collect();
        }
        events
    }

    /// Pause hooks in order until the measured cost minus theirs fits the budget, each with
    /// its group (the syscall hooks go together, see `Hook::group`). A hook that cost little
    /// this round does not trip a pause: pausing it would not help.
    fn pause_until_within(
        &mut self,
        t: f64,
        total: f64,
        per_hook: &HashMap<Hook, f64>,
        estimated: bool,
        events: &mut Vec<BudgetEvent>,
    ) {
        let mut excess = total - self.max_share;
        for hook in Hook::ORDER {
            if excess <= 0.0 {
                break;
            }
            let share = per_hook.get(&hook).copied().unwrap_or(0.0);
            // What pausing it saves: for rss_stat, less the /proc reads that stand in for it
            // (with thousands of processes they cost more than the hook).
            let saved = if hook == Hook::Rss {
                share - self.rss_fallback_share()
            } else {
                share
            };
            // A hook saving less than a quarter of the budget is not the storm: pausing it
            // would lose its counts for nothing (madvise under a page-fault storm, say).
            if self.paused.contains_key(&hook) || saved < self.max_share * MIN_PAUSE_FRACTION {
                continue;
            }
            // Tripping again soon after its resume: the storm goes on, wait twice as long.
            let previous = self.hold.get(&hook).copied().unwrap_or(self.base_hold);
            let hold = match self.resumed_at.get(&hook) {
                Some(r) if t - r <= 2.0 * previous => (previous * 2.0).min(MAX_HOLD_SECS),
                _ => self.base_hold,
            };
            // The storming hook and its group (see `Hook::group`), the dearest first: each
            // detach of a syscall tracepoint waits for the kernel's grace periods (80-100 ms
            // apiece measured on the bench VM), so a brk storm would otherwise run on until
            // madvise, munmap and mmap, which cost nothing, had been detached before it.
            let mut members = hook.group().to_vec();
            let share_of = |h: &Hook| per_hook.get(h).copied().unwrap_or(0.0);
            members.sort_by(|a, b| share_of(b).total_cmp(&share_of(a)));
            for member in members {
                if self.paused.contains_key(&member) {
                    continue;
                }
                let member_share = per_hook.get(&member).copied().unwrap_or(0.0);
                self.hold.insert(member, hold);
                self.paused.insert(
                    member,
                    Paused {
                        resume_at: t + hold,
                        share: member_share,
                    },
                );
                excess -= member_share;
                events.push(BudgetEvent {
                    hook: member,
                    action: BudgetAction::Pause,
                    bpf_cpu_share: total,
                    hook_cpu_share: member_share,
                    budget: self.max_share,
                    hold_secs: Some(hold),
                    estimated,
                });
            }
        }
    }

    /// The paused hook to try again now, if any (with its group): one per round, the last
    /// paused first. rss_stat is due before its hold is over when the /proc reads standing
    /// in for it now cost more than it did when paused (processes multiplied since).
    fn due_for_resume(&self, t: f64) -> Option<Hook> {
        let fallback = self.rss_fallback_share();
        Hook::ORDER.into_iter().rev().find(|h| {
            self.paused
                .get(h)
                .is_some_and(|p| p.resume_at <= t || (*h == Hook::Rss && fallback > p.share))
        })
    }
}

/// What the budget did to one hook over a trace, for `report`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HookSummary {
    pub hook: Hook,
    pub pauses: u64,
    /// Seconds it was paused in all (to the end of the trace if never resumed).
    pub paused_secs: f64,
    /// The highest share of the node's CPU the programs used when it was paused.
    pub max_bpf_cpu_share: f64,
}

/// Fold a trace's budget events (time, event), in order, into one summary per hook that was
/// ever paused; `end` closes a pause still open.
pub fn summarize(events: &[(f64, BudgetEvent)], end: f64) -> Vec<HookSummary> {
    let mut out: Vec<HookSummary> = Vec::new();
    let mut open: HashMap<Hook, f64> = HashMap::new();
    for (t, ev) in events {
        let pos = match out.iter().position(|h| h.hook == ev.hook) {
            Some(i) => i,
            None => {
                out.push(HookSummary {
                    hook: ev.hook,
                    pauses: 0,
                    paused_secs: 0.0,
                    max_bpf_cpu_share: 0.0,
                });
                out.len() - 1
            }
        };
        let h = &mut out[pos];
        match ev.action {
            BudgetAction::Pause => {
                h.pauses += 1;
                h.max_bpf_cpu_share = h.max_bpf_cpu_share.max(ev.bpf_cpu_share);
                open.entry(ev.hook).or_insert(*t);
            }
            BudgetAction::Resume => {
                if let Some(since) = open.remove(&ev.hook) {
                    h.paused_secs += (t - since).max(0.0);
                }
            }
        }
    }
    for h in &mut out {
        if let Some(since) = open.get(&h.hook) {
            h.paused_secs += (end - since).max(0.0);
        }
        h.paused_secs = crate::util::clock::round_ms(h.paused_secs);
    }
    out.sort_by_key(|h| h.hook);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Costs at time t for a madvise storm costing `madv` of the node and `other` in rss_stat
    /// (2 CPUs, 1 s rounds): cumulative nanoseconds.
    fn costs(t: f64, madv_ns: &mut u64, rss_ns: &mut u64, madv: f64, rss: f64) -> Vec<ProgCost> {
        *madv_ns += (madv * 2e9) as u64;
        *rss_ns += (rss * 2e9) as u64;
        let _ = t;
        vec![
            ProgCost {
                name: "sys_enter_madvise".into(),
                run_ns: *madv_ns,
                runs: 0,
            },
            ProgCost {
                name: "rss_stat".into(),
                run_ns: *rss_ns,
                runs: 0,
            },
        ]
    }

    /// The hooks of a batch of events, in order.
    fn hooks(ev: &[BudgetEvent]) -> Vec<Hook> {
        ev.iter().map(|e| e.hook).collect()
    }

    #[test]
    fn a_madvise_storm_pauses_the_syscall_hooks_only_and_backs_off() {
        let mut b = Budget::new(0.01, 2, 10.0);
        let (mut m, mut r) = (0, 0);
        assert!(
            b.observe(0.0, &costs(0.0, &mut m, &mut r, 0.0, 0.0))
                .is_empty()
        );
        // 5% in madvise, 0.5% in rss_stat: madvise goes with the other syscall hooks (they
        // share the traced syscall path), rss_stat stays.
        let ev = b.observe(1.0, &costs(1.0, &mut m, &mut r, 0.05, 0.005));
        assert_eq!(
            hooks(&ev),
            [Hook::Madvise, Hook::Munmap, Hook::Mmap, Hook::Brk],
            "{ev:?}"
        );
        assert!(ev.iter().all(|e| e.action == BudgetAction::Pause));
        assert!((ev[0].bpf_cpu_share - 0.055).abs() < 1e-9);
        assert!((ev[0].hook_cpu_share - 0.05).abs() < 1e-9);
        assert_eq!(ev[1].hook_cpu_share, 0.0, "munmap cost nothing itself");
        assert!(ev.iter().all(|e| e.hold_secs == Some(10.0)));
        assert_eq!(
            b.status().paused,
            [Hook::Madvise, Hook::Munmap, Hook::Mmap, Hook::Brk]
        );
        // Paused: within budget, nothing happens until the hold is over.
        for t in 2..11 {
            let ev = b.observe(t as f64, &costs(t as f64, &mut m, &mut r, 0.0, 0.005));
            assert!(ev.is_empty(), "t={t}: {ev:?}");
        }
        let ev = b.observe(11.0, &costs(11.0, &mut m, &mut r, 0.0, 0.005));
        assert_eq!(
            hooks(&ev),
            [Hook::Madvise, Hook::Munmap, Hook::Mmap, Hook::Brk],
            "resumed together: {ev:?}"
        );
        assert!(ev.iter().all(|e| e.action == BudgetAction::Resume));
        assert!(b.status().paused.is_empty());
        // The storm goes on: paused again at once, for twice as long.
        let ev = b.observe(12.0, &costs(12.0, &mut m, &mut r, 0.05, 0.005));
        assert_eq!(ev[0].hold_secs, Some(20.0));
        // Still on after that: 40 s.
        let ev = b.observe(32.0, &costs(32.0, &mut m, &mut r, 0.0, 0.005));
        assert_eq!(ev[0].action, BudgetAction::Resume);
        let ev = b.observe(33.0, &costs(33.0, &mut m, &mut r, 0.05, 0.005));
        assert_eq!(ev[0].hold_secs, Some(40.0));
        assert!(b.status().bpf_cpu_share.is_some_and(|s| s > 0.05));
    }

    #[test]
    fn a_quiet_resume_resets_the_hold_and_an_idle_hook_is_never_paused() {
        let mut b = Budget::new(0.01, 2, 10.0);
        let (mut m, mut r) = (0, 0);
        b.observe(0.0, &costs(0.0, &mut m, &mut r, 0.0, 0.0));
        b.observe(1.0, &costs(1.0, &mut m, &mut r, 0.05, 0.0));
        b.observe(11.0, &costs(11.0, &mut m, &mut r, 0.0, 0.0)); // resumed
        // A minute of calm, then a new storm: the base hold again.
        b.observe(80.0, &costs(80.0, &mut m, &mut r, 0.0, 0.0));
        let ev = b.observe(81.0, &costs(81.0, &mut m, &mut r, 0.05, 0.0));
        assert_eq!(ev[0].hold_secs, Some(10.0));
        // rss_stat alone over budget: no syscall hook cost anything, only rss is paused.
        let mut b = Budget::new(0.01, 2, 10.0);
        b.observe(0.0, &costs(0.0, &mut m, &mut r, 0.0, 0.0));
        let ev = b.observe(1.0, &costs(1.0, &mut m, &mut r, 0.0, 0.2));
        assert_eq!(
            ev.iter().map(|e| e.hook).collect::<Vec<_>>(),
            [Hook::Rss],
            "{ev:?}"
        );
        // Off: never pauses.
        let mut b = Budget::new(0.0, 2, 10.0);
        b.observe(0.0, &costs(0.0, &mut m, &mut r, 0.0, 0.0));
        assert!(
            b.observe(1.0, &costs(1.0, &mut m, &mut r, 0.5, 0.0))
                .is_empty()
        );
    }

    #[test]
    fn pauses_in_order_until_the_rest_fits() {
        let mut b = Budget::new(0.01, 1, 10.0);
        let c = |t: f64, n: u64| {
            [
                "sys_enter_madvise",
                "sys_enter_munmap",
                "sys_enter_mmap",
                "sys_exit_brk",
            ]
            .iter()
            .map(|p| ProgCost {
                name: (*p).into(),
                run_ns: (t * n as f64) as u64,
                runs: 0,
            })
            .collect::<Vec<_>>()
        };
        b.observe(0.0, &c(0.0, 0));
        // Each syscall hook 0.8% of the CPU (8 ms/s), rss_stat 0.9%: 4.1% in all. The syscall
        // hooks go together (3.2%), which leaves rss_stat within the budget.
        let mut costs = c(1.0, 8_000_000);
        costs.push(ProgCost {
            name: "rss_stat".into(),
            run_ns: 9_000_000,
            runs: 0,
        });
        let mut start = c(0.0, 0);
        start.push(ProgCost {
            name: "rss_stat".into(),
            run_ns: 0,
            runs: 0,
        });
        let mut b = Budget::new(0.01, 1, 10.0);
        b.observe(0.0, &start);
        let ev = b.observe(1.0, &costs);
        assert_eq!(
            hooks(&ev),
            [Hook::Madvise, Hook::Munmap, Hook::Mmap, Hook::Brk]
        );
        // rss_stat at 1.5% on its own is over: it goes too, after the syscall hooks.
        let mut b = Budget::new(0.01, 1, 10.0);
        b.observe(0.0, &start);
        costs[4].run_ns = 15_000_000;
        let ev = b.observe(1.0, &costs);
        assert_eq!(hooks(&ev).last(), Some(&Hook::Rss), "{ev:?}");
        assert_eq!(ev.len(), 5);
    }

    #[test]
    fn summarizes_pauses_per_hook() {
        let ev = |hook, action, share| BudgetEvent {
            hook,
            action,
            bpf_cpu_share: share,
            hook_cpu_share: 0.0,
            budget: 0.01,
            hold_secs: None,
            estimated: false,
        };
        let events = vec![
            (1.0, ev(Hook::Madvise, BudgetAction::Pause, 0.05)),
            (16.0, ev(Hook::Madvise, BudgetAction::Resume, 0.004)),
            (17.0, ev(Hook::Madvise, BudgetAction::Pause, 0.06)),
            (20.0, ev(Hook::Munmap, BudgetAction::Pause, 0.02)),
        ];
        let s = summarize(&events, 40.0);
        assert_eq!(s.len(), 2);
        assert_eq!(
            (s[0].hook, s[0].pauses, s[0].paused_secs),
            (Hook::Madvise, 2, 38.0)
        );
        assert!((s[0].max_bpf_cpu_share - 0.06).abs() < 1e-12);
        assert_eq!((s[1].hook, s[1].paused_secs), (Hook::Munmap, 20.0));
    }

    #[test]
    fn a_window_measures_from_its_baseline() {
        // Statistics are on for one window in several: the time between windows, when the
        // kernel does not count, must not dilute the share.
        let mut b = Budget::new(0.01, 2, 10.0);
        let prog = |ns: u64| {
            vec![ProgCost {
                name: "sys_enter_madvise".into(),
                run_ns: ns,
                runs: 0,
            }]
        };
        b.baseline(0.0, &prog(0));
        assert!(b.observe(1.0, &prog(2_000_000)).is_empty(), "0.1%: fine");
        // Four seconds off (nothing counted), then a window with a storm: 5% of 2 CPUs.
        b.baseline(5.0, &prog(2_000_000));
        let ev = b.observe(6.0, &prog(102_000_000));
        assert_eq!(ev.len(), 4, "the syscall hooks: {ev:?}");
        assert!((ev[0].bpf_cpu_share - 0.05).abs() < 1e-9, "{ev:?}");
    }

    #[test]
    fn a_page_fault_storm_pauses_rss_stat_only() {
        let mut b = Budget::new(0.01, 1, 10.0);
        let c = |t: f64| {
            // The syscall hooks (no `record --stacks` here).
            let mut v: Vec<ProgCost> = Hook::ORDER
                .iter()
                .filter(|h| !matches!(h, Hook::Rss | Hook::Stacks))
                .map(|h| ProgCost {
                    name: h.programs()[0].into(),
                    run_ns: (t * 1_000_000.0) as u64, // 0.1% each
                    runs: 0,
                })
                .collect();
            v.push(ProgCost {
                name: "rss_stat".into(),
                run_ns: (t * 10_000_000.0) as u64, // 1%
                runs: 0,
            });
            v
        };
        b.observe(0.0, &c(0.0));
        let ev = b.observe(1.0, &c(1.0));
        assert_eq!(
            ev.iter().map(|e| (e.hook, e.action)).collect::<Vec<_>>(),
            [(Hook::Rss, BudgetAction::Pause)],
            "1.4% in all: rss_stat (1%) is the storm, the syscall hooks (0.1% each) are not"
        );
        assert!((ev[0].hook_cpu_share - 0.01).abs() < 1e-9, "{ev:?}");
        assert_eq!(b.status().paused, [Hook::Rss]);
        assert!(
            b.status()
                .bpf_cpu_share
                .is_some_and(|s| (s - 0.014).abs() < 1e-9)
        );
    }

    #[test]
    fn the_growth_site_hook_is_paused_first_and_alone() {
        // A page-fault storm with `record --stacks`: the page-fault program and rss_stat both
        // storm. Pausing the stacks hook brings it within budget: rss_stat keeps running.
        let mut b = Budget::new(0.01, 1, 10.0);
        let c = |t: f64, stacks: f64, rss: f64| {
            vec![
                ProgCost {
                    name: "page_fault_user".into(),
                    run_ns: (t * stacks * 1e9) as u64,
                    runs: 0,
                },
                ProgCost {
                    name: "rss_stat".into(),
                    run_ns: (t * rss * 1e9) as u64,
                    runs: 0,
                },
            ]
        };
        b.observe(0.0, &c(0.0, 0.012, 0.006));
        let ev = b.observe(1.0, &c(1.0, 0.012, 0.006));
        assert_eq!(
            ev.iter().map(|e| (e.hook, e.action)).collect::<Vec<_>>(),
            [(Hook::Stacks, BudgetAction::Pause)],
            "1.8%: without the stacks hook's 1.2%, 0.6% fits"
        );
        assert_eq!(Hook::Stacks.group(), [Hook::Stacks]);
        // Heavier: both go, stacks first.
        let mut b = Budget::new(0.01, 1, 10.0);
        b.observe(0.0, &c(0.0, 0.012, 0.02));
        let ev = b.observe(1.0, &c(1.0, 0.012, 0.02));
        assert_eq!(hooks(&ev), [Hook::Stacks, Hook::Rss]);
    }

    #[test]
    fn rss_stat_is_not_traded_for_a_dearer_proc_fallback() {
        // rss_stat costs 1.5% of 2 CPUs (a page-fault storm), the budget is 1%.
        let storm = |b: &mut Budget| {
            let (mut m, mut r) = (0, 0);
            b.observe(0.0, &costs(0.0, &mut m, &mut r, 0.0, 0.0));
            b.observe(1.0, &costs(1.0, &mut m, &mut r, 0.0, 0.015))
        };
        // 10,000 processes at 10 µs a read (the prior): 100 ms a second, 5% of the node.
        let mut b = Budget::new(0.01, 2, 10.0);
        b.price_rss_fallback(10_000, 1.0);
        assert!(storm(&mut b).is_empty(), "the fallback would cost more");
        assert!(b.status().paused.is_empty());
        // 50 processes: 0.025%, pausing saves 1.475%.
        let mut b = Budget::new(0.01, 2, 10.0);
        b.price_rss_fallback(50, 1.0);
        assert_eq!(hooks(&storm(&mut b)), [Hook::Rss]);
        // A measured cost replaces the prior: 3,000 processes at the prior (10 µs) cost 1.5%,
        // as much as the hook; read in 3 ms (1 µs each) they cost 0.15%.
        let mut prior = Budget::new(0.01, 2, 10.0);
        prior.price_rss_fallback(3_000, 1.0);
        assert!(storm(&mut prior).is_empty(), "at the prior");
        let mut b = Budget::new(0.01, 2, 10.0);
        b.price_rss_fallback(3_000, 1.0);
        b.learn_rss_fallback_cost(3_000, 3_000_000);
        assert_eq!(hooks(&storm(&mut b)), [Hook::Rss], "at the measured cost");
        // Too few reads teach nothing: 3 reads at 1 ms each leave the prior.
        let mut b = Budget::new(0.01, 2, 10.0);
        b.learn_rss_fallback_cost(3, 3_000_000);
        b.price_rss_fallback(50, 1.0);
        assert_eq!(hooks(&storm(&mut b)), [Hook::Rss]);
        // The syscall hooks are not priced against the fallback: a madvise storm with 10,000
        // processes still pauses them.
        let mut b = Budget::new(0.01, 2, 10.0);
        b.price_rss_fallback(10_000, 1.0);
        let (mut m, mut r) = (0, 0);
        b.observe(0.0, &costs(0.0, &mut m, &mut r, 0.0, 0.0));
        let ev = b.observe(1.0, &costs(1.0, &mut m, &mut r, 0.05, 0.0));
        assert_eq!(
            hooks(&ev),
            [Hook::Madvise, Hook::Munmap, Hook::Mmap, Hook::Brk]
        );
    }

    #[test]
    fn the_learnt_read_cost_follows_the_rounds_smoothly() {
        let mut b = Budget::new(0.01, 2, 10.0);
        b.learn_rss_fallback_cost(100, 400_000);
        assert_eq!(b.fallback.ns_per_read, Some(4_000.0));
        // A round at 8 µs moves it a quarter of the way.
        b.learn_rss_fallback_cost(100, 800_000);
        assert_eq!(b.fallback.ns_per_read, Some(5_000.0));
        b.price_rss_fallback(4_000, 2.0);
        // 4,000 × 5 µs every 2 s on 2 CPUs: 0.5%.
        assert!((b.rss_fallback_share() - 0.005).abs() < 1e-12);
    }

    #[test]
    fn rss_stat_resumes_early_when_the_processes_multiplied() {
        let mut b = Budget::new(0.01, 2, 10.0);
        b.learn_rss_fallback_cost(1_000, 5_000_000);
        b.price_rss_fallback(20, 1.0);
        let (mut m, mut r) = (0, 0);
        b.observe(0.0, &costs(0.0, &mut m, &mut r, 0.0, 0.0));
        let ev = b.observe(1.0, &costs(1.0, &mut m, &mut r, 0.0, 0.015));
        assert_eq!(hooks(&ev), [Hook::Rss], "1.5% against 0.005%");
        // A few processes more: the hold (10 s) stands.
        b.price_rss_fallback(200, 1.0);
        assert!(
            b.observe(2.0, &costs(2.0, &mut m, &mut r, 0.0, 0.0))
                .is_empty()
        );
        // 10,000 sleeping processes forked: reading them all (2.5% of the node) costs more
        // than the hook did when paused (1.5%): resumed before its hold is over.
        b.price_rss_fallback(10_000, 1.0);
        let ev = b.observe(3.0, &costs(3.0, &mut m, &mut r, 0.0, 0.0));
        assert_eq!(
            ev.iter().map(|e| (e.hook, e.action)).collect::<Vec<_>>(),
            [(Hook::Rss, BudgetAction::Resume)]
        );
        assert!(b.status().paused.is_empty());
    }

    #[test]
    fn both_rss_programs_belong_to_the_rss_hook() {
        assert_eq!(Hook::of_program("rss_stat"), Some(Hook::Rss));
        assert_eq!(Hook::of_program("rss_stat_raw"), Some(Hook::Rss));
        assert_eq!(Hook::of_program("sched_process_exit"), None);
    }

    fn brk_cost(run_ns: u64, runs: u64) -> Vec<ProgCost> {
        vec![ProgCost {
            name: "sys_exit_brk".into(),
            run_ns,
            runs,
        }]
    }

    /// Guard readings every 0.2 s from `t0`: `per_tick` more runs of `hook` each time; the
    /// events of each reading.
    fn guard_ticks(
        b: &mut Budget,
        hook: Hook,
        t0: f64,
        per_tick: u64,
        ticks: u32,
    ) -> Vec<Vec<BudgetEvent>> {
        (0..=ticks)
            .map(|i| b.guard(t0 + f64::from(i) * 0.2, &[(hook, u64::from(i) * per_tick)]))
            .collect()
    }

    #[test]
    fn the_guard_pauses_a_storm_within_a_reading_at_the_unmeasured_price() {
        let mut b = Budget::new(0.01, 2, 10.0);
        assert!(
            b.guard(0.0, &[(Hook::Madvise, 0), (Hook::Brk, 0)])
                .is_empty()
        );
        // 0.2 s: 100k madvise runs at 300 ns over a 1 s span: 1.5% of 2 CPUs.
        let ev = b.guard(0.2, &[(Hook::Madvise, 100_000), (Hook::Brk, 1_000)]);
        assert_eq!(
            hooks(&ev),
            [Hook::Madvise, Hook::Brk, Hook::Munmap, Hook::Mmap],
            "madvise with its group, the dearest first: {ev:?}"
        );
        assert_eq!(
            (ev[0].hook, ev[0].action),
            (Hook::Madvise, BudgetAction::Pause)
        );
        assert!((ev[0].hook_cpu_share - 0.015).abs() < 1e-9, "{ev:?}");
        assert!(ev[0].estimated);
        assert_eq!(
            b.status().paused,
            [Hook::Madvise, Hook::Munmap, Hook::Mmap, Hook::Brk]
        );
        // The guard never resumes: the paused hook's count stands still, nothing happens.
        for i in 2..100 {
            let t = f64::from(i) * 0.2;
            assert!(
                b.guard(t, &[(Hook::Madvise, 100_000), (Hook::Brk, 1_000)])
                    .is_empty()
            );
        }
        assert_eq!(
            b.status().paused,
            [Hook::Madvise, Hook::Munmap, Hook::Mmap, Hook::Brk]
        );
    }

    #[test]
    fn a_hook_the_guard_paused_no_longer_counts_in_its_span() {
        let mut b = Budget::new(0.01, 2, 10.0);
        b.guard(0.0, &[(Hook::Madvise, 0), (Hook::Rss, 0)]);
        // 0.2 s: madvise storms (1.5%); rss_stat runs 40k/s, 0.6% of the node over a full
        // span: the syscall hooks go, rss_stat stays.
        let ev = b.guard(0.2, &[(Hook::Madvise, 100_000), (Hook::Rss, 8_000)]);
        assert_eq!(
            hooks(&ev),
            [Hook::Madvise, Hook::Munmap, Hook::Mmap, Hook::Brk],
            "{ev:?}"
        );
        // The next readings still span madvise's runs before its pause (1.5% with rss_stat's):
        // rss_stat's own share fits the budget, so nothing more is paused.
        for i in 2u32..=5 {
            let ev = b.guard(
                f64::from(i) * 0.2,
                &[(Hook::Madvise, 100_000), (Hook::Rss, 8_000 * u64::from(i))],
            );
            assert!(ev.is_empty(), "reading {i}: {ev:?}");
        }
        assert_eq!(
            b.status().paused,
            [Hook::Madvise, Hook::Munmap, Hook::Mmap, Hook::Brk]
        );
    }

    #[test]
    fn the_guard_lets_a_short_burst_pass() {
        let mut b = Budget::new(0.01, 2, 10.0);
        b.guard(0.0, &[(Hook::Rss, 0)]);
        // A process starting up: 50k page faults in 0.2 s (0.75% over the span), then calm.
        assert!(b.guard(0.2, &[(Hook::Rss, 50_000)]).is_empty());
        for i in 2..20 {
            assert!(
                b.guard(f64::from(i) * 0.2, &[(Hook::Rss, 50_000)])
                    .is_empty()
            );
        }
    }

    #[test]
    fn the_guard_prices_runs_at_the_cost_a_window_measured() {
        let mut b = Budget::new(0.01, 2, 10.0);
        // A window measures brk at 100 ns a run (the 300 ns prior no longer applies).
        b.baseline(0.0, &brk_cost(0, 0));
        assert!(b.observe(1.0, &brk_cost(2_000_000, 20_000)).is_empty());
        // 150k runs/s at 100 ns: 0.75% of 2 CPUs, within 1%; at 300 ns it would not be.
        let ev = guard_ticks(&mut b, Hook::Brk, 1.0, 30_000, 20);
        assert!(ev.iter().all(Vec::is_empty), "{ev:?}");
        // 250k runs/s at 100 ns: 1.25%, over once a full span has passed.
        let mut b = Budget::new(0.01, 2, 10.0);
        b.baseline(0.0, &brk_cost(0, 0));
        b.observe(1.0, &brk_cost(2_000_000, 20_000));
        let ev = guard_ticks(&mut b, Hook::Brk, 1.0, 50_000, 20);
        let first = ev.iter().position(|e| !e.is_empty()).expect("a pause");
        assert_eq!(
            first, 5,
            "paused at the reading that completes the span: {ev:?}"
        );
        assert_eq!(
            hooks(&ev[first]),
            [Hook::Brk, Hook::Madvise, Hook::Munmap, Hook::Mmap],
            "the storming hook first, then its group in pause order"
        );
        let pause = &ev[first][0];
        assert_eq!((pause.hook, pause.action), (Hook::Brk, BudgetAction::Pause));
        assert!((pause.hook_cpu_share - 0.0125).abs() < 1e-9, "{pause:?}");
    }

    #[test]
    fn the_guard_counts_the_programs_it_cannot_pause() {
        let mut b = Budget::new(0.01, 2, 10.0);
        // A window: exits cost 0.8% of the node, brk 100 ns a run.
        let mut costs = brk_cost(0, 0);
        costs.push(ProgCost {
            name: "sched_process_exit".into(),
            run_ns: 0,
            runs: 0,
        });
        b.baseline(0.0, &costs);
        costs[0].run_ns = 2_000_000;
        costs[0].runs = 20_000;
        costs[1].run_ns = 16_000_000;
        b.observe(1.0, &costs);
        // brk alone at 0.75% would fit; with the exits' 0.8% it does not.
        let ev = guard_ticks(&mut b, Hook::Brk, 1.0, 30_000, 5);
        let pause = ev
            .iter()
            .flatten()
            .find(|e| e.hook == Hook::Brk)
            .expect("brk paused");
        assert_eq!(pause.action, BudgetAction::Pause);
        assert!(pause.bpf_cpu_share > 0.01, "{pause:?}");
    }

    #[test]
    fn a_window_with_few_runs_keeps_the_cost_it_had() {
        let mut b = Budget::new(0.01, 2, 10.0);
        b.baseline(0.0, &brk_cost(0, 0));
        b.observe(1.0, &brk_cost(2_000_000, 20_000));
        b.baseline(2.0, &brk_cost(2_000_000, 20_000));
        // 10 runs at 5 µs each: too few to tell; the 100 ns figure stays.
        b.observe(3.0, &brk_cost(2_050_000, 20_010));
        let ev = guard_ticks(&mut b, Hook::Brk, 3.0, 30_000, 20);
        assert!(ev.iter().all(Vec::is_empty), "{ev:?}");
    }
}
