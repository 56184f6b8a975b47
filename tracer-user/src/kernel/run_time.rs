//! What the kernel programs cost, from their own timing: each pausable hook's programs time
//! one run in `TIME_EVERY` and the unpausable ones every run (`HOOK_TIME`), next to the run
//! counts (`PROG_RUNS`, one per program). The overhead budget prices the hooks with these figures.
//!
//! Why not the kernel's run-time statistics (`BPF_ENABLE_STATS`, bpf_stats): turning them on
//! and off flips a static key, which patches the kernel's text at every BPF dispatch site
//! while programs run there. A Debian 6.12.117 guest panicked ("Oops: int3" in
//! trace_call_bpf) within seconds of such flips under a page-fault storm, and leaktracer's
//! measurement windows flipped it twice every five intervals for as long as it ran. Leaving
//! them on instead would cost every run of every BPF program on the node two clock reads.
use std::borrow::Borrow;

use aya::maps::{MapData, PerCpuArray};
use tracer_common::{
    HOOK_BRK, HOOK_MADVISE, HOOK_MMAP, HOOK_MUNMAP, HOOK_RSS, HOOK_STACKS, RUN_COUNT, RunTime,
    TIME_EVERY, TIMED_UNPAUSABLE, hook_of_run,
};

use crate::kernel::budget::{Hook, ProgCost};

/// Each pausable hook's index in `HOOK_TIME` (and in `tracer_common::hook_of_run`).
pub const HOOK_INDICES: [(Hook, u32); 6] = [
    (Hook::Madvise, HOOK_MADVISE),
    (Hook::Munmap, HOOK_MUNMAP),
    (Hook::Mmap, HOOK_MMAP),
    (Hook::Brk, HOOK_BRK),
    (Hook::Rss, HOOK_RSS),
    (Hook::Stacks, HOOK_STACKS),
];

/// The name under which the unpausable programs' cost reaches the budget (no hook's name).
pub const UNPAUSABLE: &str = "unpausable";

/// One load's cumulative figures, summed over CPUs, per index of `HOOK_TIME`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reading {
    pub runs: u64,
    pub timed: RunTime,
}

/// A hook's runs so far (`PROG_RUNS`: its programs' counts, summed over CPUs).
pub fn hook_runs<U: Borrow<MapData>>(runs: &PerCpuArray<U, u64>, hook: u32) -> Option<u64> {
    let mut total = 0;
    for run in (0..RUN_COUNT).filter(|r| hook_of_run(*r) == hook) {
        total += runs.get(&run, 0).ok()?.iter().sum::<u64>();
    }
    Some(total)
}

/// Read a load's `HOOK_TIME` (and `PROG_RUNS` for the hooks' run counts) at `index`.
pub fn read<T: Borrow<MapData>, U: Borrow<MapData>>(
    time: &PerCpuArray<T, RunTime>,
    runs: &PerCpuArray<U, u64>,
    index: u32,
) -> Option<Reading> {
    let timed = time
        .get(&index, 0)
        .ok()?
        .iter()
        .fold(RunTime::default(), |a, t| RunTime {
            ns: a.ns + t.ns,
            runs: a.runs + t.runs,
        });
    let runs = if index == TIMED_UNPAUSABLE {
        timed.runs
    } else {
        hook_runs(runs, index)?
    };
    Some(Reading { runs, timed })
}

/// Every load's readings as the budget's costs: one per hook (named by the hook, summed over
/// loads) and one for the unpausable programs. A hook's timed runs are one in `TIME_EVERY` of
/// each CPU's runs, so its run time is their time times `TIME_EVERY`: cumulative and
/// never decreasing, like the counters it comes from.
pub fn costs(readings: &[(u32, Reading)]) -> Vec<ProgCost> {
    let mut out: Vec<ProgCost> = Vec::new();
    for &(index, r) in readings {
        let (name, run_ns) = if index == TIMED_UNPAUSABLE {
            (UNPAUSABLE, r.timed.ns)
        } else {
            let Some((hook, _)) = HOOK_INDICES.iter().find(|(_, i)| *i == index) else {
                continue;
            };
            (hook.as_str(), r.timed.ns.saturating_mul(TIME_EVERY))
        };
        match out.iter_mut().find(|c| c.name == name) {
            Some(c) => {
                c.run_ns += run_ns;
                c.runs += r.runs;
            }
            None => out.push(ProgCost {
                name: name.to_string(),
                run_ns,
                runs: r.runs,
            }),
        }
    }
    out
}

/// Every index a load's readings are taken at.
pub fn indices() -> impl Iterator<Item = u32> {
    HOOK_INDICES
        .into_iter()
        .map(|(_, i)| i)
        .chain([TIMED_UNPAUSABLE])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(runs: u64, ns: u64, timed: u64) -> Reading {
        Reading {
            runs,
            timed: RunTime { ns, runs: timed },
        }
    }

    #[test]
    fn a_hook_is_priced_from_its_sampled_runs() {
        // 3,200 brk runs, 100 of them timed at 150 ns each.
        let c = costs(&[(HOOK_BRK, reading(3_200, 15_000, 100))]);
        assert_eq!(
            c,
            [ProgCost {
                name: "brk".into(),
                run_ns: 15_000 * TIME_EVERY,
                runs: 3_200
            }]
        );
        assert_eq!(Hook::of_program(&c[0].name), Some(Hook::Brk));
    }

    #[test]
    fn unpausable_programs_are_timed_at_every_run_and_belong_to_no_hook() {
        let c = costs(&[(TIMED_UNPAUSABLE, reading(40, 8_000, 40))]);
        assert_eq!(
            c,
            [ProgCost {
                name: UNPAUSABLE.into(),
                run_ns: 8_000,
                runs: 40
            }]
        );
        assert_eq!(Hook::of_program(UNPAUSABLE), None);
    }

    #[test]
    fn loads_of_one_hook_are_summed() {
        // The session's growth-site programs and a daemon capture's.
        let c = costs(&[
            (HOOK_STACKS, reading(64, 1_000, 2)),
            (HOOK_STACKS, reading(32, 600, 1)),
        ]);
        assert_eq!(c.len(), 1);
        assert_eq!((c[0].run_ns, c[0].runs), (1_600 * TIME_EVERY, 96));
    }

    #[test]
    fn every_program_counts_for_one_hook_and_every_hook_has_one() {
        for (hook, index) in HOOK_INDICES {
            assert!(
                (0..RUN_COUNT).any(|r| hook_of_run(r) == index),
                "{hook:?} has no program"
            );
        }
        assert_eq!(hook_of_run(tracer_common::RUN_MREMAP_EXIT), HOOK_MMAP);
        assert_eq!(hook_of_run(tracer_common::RUN_BRK_STACK), HOOK_STACKS);
        assert_eq!(hook_of_run(tracer_common::RUN_BRK), HOOK_BRK);
    }

    #[test]
    fn every_hook_and_the_unpausable_programs_are_read() {
        let all: Vec<u32> = indices().collect();
        assert_eq!(all.len(), 7);
        for h in Hook::ORDER {
            assert!(HOOK_INDICES.iter().any(|(x, _)| *x == h), "{h:?}");
        }
    }
}
