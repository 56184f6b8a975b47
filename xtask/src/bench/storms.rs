//! Cost per event under a storm of each hook's own event (section 2's second measure).
//!
//! Section 1's per-program figures mix every workload: a hook whose calls are rare there
//! (mmap: a few hundred a second over the section) runs with cold caches, and costs per call
//! up to twice what it costs when its calls are frequent. That matters little at that rate;
//! what decides the overhead is the cost when the hook's events come tens of thousands of
//! times a second. So each round measures, back to back (the order reversed every other
//! round), leaktracer `record --max-overhead 0` (no hook paused) and the empty programs
//! (bench/floor.bt), each pinned to the tracers' CPU while stress-ng storms of page faults,
//! madvise, brk and mmap run one after another on the workload CPU; each program's ns per run
//! is its run time over its runs during the storms (kernel.bpf_stats_enabled=1).
//!
//! The mmap storm is the bench's own (helpers.c `mmap`): one page mapped, written and unmapped
//! as fast as it goes, the page allocated at the write, as allocators map. stress-ng's mmap
//! stressor is not used for it: it maps with MAP_POPULATE unless one of the random flags it
//! adds to a mapping fails, and then drops MAP_POPULATE for the rest of the run (stress-mmap.c),
//! so its runs come in two kinds that cost the mmap exit 75 or 130-230 ns on this VM. Right
//! after the kernel allocated and zeroed a page inside the call, the exit program meets cold
//! caches, and so, less, does an empty one. That case is measured apart, under its own name
//! ([`AFTER_POPULATE`]), with MAP_POPULATE on every call.
use std::{collections::BTreeMap, path::Path};

use anyhow::Context as _;
use serde::Serialize;

use super::{
    bpf::ProgStat,
    sys,
    tracers::{self, Env, Tracer},
};

/// How a storm is made.
#[derive(Clone, Copy, Debug)]
pub enum Maker {
    /// stress-ng with these arguments.
    StressNg(&'static [&'static str]),
    /// helpers.c `mmap SECS MODE` (`lazy` or `populate`).
    MmapHelper(&'static str),
}

/// The storms, in the order they run.
pub const STORMS: [(&str, Maker); 4] = [
    (
        "page faults",
        Maker::StressNg(&["--vm", "1", "--vm-bytes", "128M"]),
    ),
    ("madvise", Maker::StressNg(&["--malloc", "1"])),
    ("brk", Maker::StressNg(&["--brk", "1"])),
    ("mmap", Maker::MmapHelper("lazy")),
];

/// Run after the others and reported apart: every mmap with MAP_POPULATE.
pub const POPULATE_STORM: (&str, Maker) = ("mmap with MAP_POPULATE", Maker::MmapHelper("populate"));

/// What the mmap exit's figure is called when measured under [`POPULATE_STORM`].
pub const AFTER_POPULATE: &str = "sys_exit_mmap after MAP_POPULATE";

/// The program measured under [`POPULATE_STORM`]: the one that runs right after the kernel
/// allocated the page.
const POPULATE_PROGRAM: &str = "sys_exit_mmap";

/// A program with fewer runs in a measurement has no figure for it: a handful of runs say
/// nothing about a per-event cost.
const MIN_RUNS: u64 = 1000;

#[derive(Debug, Default, Serialize)]
pub struct Storms {
    pub rounds: usize,
    pub secs_per_storm: u64,
    /// tracer → program → ns per run in each round it had runs in.
    pub ns_per_run: BTreeMap<Tracer, BTreeMap<String, Vec<f64>>>,
    /// tracer → program → runs over all rounds.
    pub runs: BTreeMap<Tracer, BTreeMap<String, u64>>,
    /// Measurements that failed (the tracer did not start, stress-ng missing).
    pub errors: Vec<String>,
}

impl Storms {
    /// The median over rounds of `program`'s ns per run under `tracer`, with its runs.
    pub fn median(&self, tracer: Tracer, program: &str) -> Option<(f64, u64)> {
        let per_round = self.ns_per_run.get(&tracer)?.get(program)?;
        let runs = self.runs.get(&tracer)?.get(program).copied().unwrap_or(0);
        sys::median(per_round).map(|m| ((m * 10.0).round() / 10.0, runs))
    }
}

/// `helpers`: the bench's C helpers (helpers.c), which make the mmap storms.
pub fn run(env: &Env, helpers: &Path, rounds: usize, secs: u64) -> Storms {
    let mut s = Storms {
        rounds,
        secs_per_storm: secs,
        ..Storms::default()
    };
    for round in 0..rounds {
        let mut order = [Tracer::Leaktracer, Tracer::Floor];
        if round % 2 == 1 {
            order.reverse();
        }
        for tracer in order {
            if tracer == Tracer::Floor && env.bpftrace_missing.is_some() {
                // A gap of the environment, reported once from there.
                continue;
            }
            match measure(env, helpers, tracer, secs) {
                Ok((progs, populate)) => {
                    let populate = populate
                        .into_iter()
                        .filter(|(name, _, _)| name == POPULATE_PROGRAM)
                        .map(|(_, ns, runs)| (AFTER_POPULATE.to_string(), ns, runs));
                    for (name, run_ns, runs) in progs.into_iter().chain(populate) {
                        eprintln!(
                            "bench: storms round {} | {:<26} | {name:<20} {:>7.1} ns/run ({runs} runs)",
                            round + 1,
                            tracer.label(),
                            run_ns as f64 / runs.max(1) as f64
                        );
                        if runs < MIN_RUNS {
                            continue;
                        }
                        s.ns_per_run
                            .entry(tracer)
                            .or_default()
                            .entry(name.clone())
                            .or_default()
                            .push(run_ns as f64 / runs as f64);
                        *s.runs.entry(tracer).or_default().entry(name).or_default() += runs;
                    }
                }
                Err(e) => {
                    eprintln!("bench: storms: {}: {e:#}", tracer.label());
                    s.errors.push(format!("storms: {}: {e:#}", tracer.label()));
                }
            }
        }
    }
    s
}

/// Each program's (name, run time, runs) during a pass of storms.
type Pass = Vec<(String, u64, u64)>;

/// One tracer through every storm, then through [`POPULATE_STORM`]: each program's figures
/// over the first pass and over the second.
fn measure(env: &Env, helpers: &Path, tracer: Tracer, secs: u64) -> anyhow::Result<(Pass, Pass)> {
    let running = match tracer {
        Tracer::Leaktracer => tracers::record(env, &["--max-overhead", "0"], "storms")?,
        other => tracers::start(other, env, "storms")?
            .with_context(|| format!("{} is not a node-wide tracer", other.label()))?,
    };
    let before = running.programs();
    for storm in STORMS {
        run_storm(env, helpers, storm, secs)?;
    }
    let between = running.programs();
    run_storm(env, helpers, POPULATE_STORM, secs)?;
    let after = running.stop();
    Ok((delta(&before, &between), delta(&between, &after)))
}

fn run_storm(
    env: &Env,
    helpers: &Path,
    (what, maker): (&str, Maker),
    secs: u64,
) -> anyhow::Result<()> {
    let secs = secs.to_string();
    let mut cmd = match maker {
        Maker::StressNg(args) => {
            let mut c = env.pin.workload("stress-ng");
            c.args(args).args(["-t", &secs, "-q"]);
            c
        }
        Maker::MmapHelper(mode) => {
            let mut c = env.pin.workload(helpers);
            c.args(["mmap", &secs, mode]);
            c
        }
    };
    let status = cmd
        .stdout(std::process::Stdio::null())
        .status()
        .with_context(|| format!("running the {what} storm"))?;
    anyhow::ensure!(status.success(), "the {what} storm failed: {status}");
    Ok(())
}

/// Each program's run time and runs between two readings of the same tracer's programs.
fn delta(before: &[ProgStat], after: &[ProgStat]) -> Vec<(String, u64, u64)> {
    after
        .iter()
        .map(|a| {
            let b = before.iter().find(|b| b.id == a.id);
            (
                a.name.clone(),
                a.run_time_ns.saturating_sub(b.map_or(0, |b| b.run_time_ns)),
                a.run_cnt.saturating_sub(b.map_or(0, |b| b.run_cnt)),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prog(id: u64, name: &str, run_time_ns: u64, run_cnt: u64) -> ProgStat {
        ProgStat {
            id,
            name: name.into(),
            run_time_ns,
            run_cnt,
        }
    }

    #[test]
    fn delta_is_per_program_and_counts_a_program_that_appeared() {
        let before = [
            prog(1, "rss_stat", 1_000, 10),
            prog(2, "sys_exit_mmap", 500, 5),
        ];
        let after = [
            prog(1, "rss_stat", 81_000, 1_010),
            prog(2, "sys_exit_mmap", 74_500, 1_005),
            prog(3, "sys_exit_brk", 7_000, 100),
        ];
        assert_eq!(
            delta(&before, &after),
            [
                ("rss_stat".to_string(), 80_000, 1_000),
                ("sys_exit_mmap".to_string(), 74_000, 1_000),
                ("sys_exit_brk".to_string(), 7_000, 100),
            ]
        );
    }

    #[test]
    fn the_median_is_over_rounds() {
        let mut s = Storms::default();
        s.ns_per_run
            .entry(Tracer::Leaktracer)
            .or_default()
            .insert("sys_exit_mmap".into(), vec![72.0, 221.0, 74.0]);
        s.runs
            .entry(Tracer::Leaktracer)
            .or_default()
            .insert("sys_exit_mmap".into(), 732_167);
        assert_eq!(
            s.median(Tracer::Leaktracer, "sys_exit_mmap"),
            Some((74.0, 732_167))
        );
        assert_eq!(s.median(Tracer::Floor, "sys_exit_mmap"), None);
    }
}
