//! `cargo xtask bench`: leaktracer's cost and detection latency, measured side by side with
//! no tracer, the closest bpftrace script and bcc's memleak, on the same machine in one run.
//! These machines are noisy, so configurations run several times in alternation and the
//! tables report medians and ratios.
//!
//! 1. workload slowdown (`slowdown`): throughput per CPU-second of stress-ng brk, mmap, malloc
//!    and vm, redis-server under redis-benchmark, a C malloc churn and a Go allocation loop,
//!    untraced and under leaktracer `record`, bpftrace on the same hooks, bcc memleak, and
//!    empty programs on leaktracer's hooks (the floor any tracer of them pays), in 8
//!    alternating rounds pinned with taskset (5 for the cells no verdict rests on);
//! 2. cost per event of every eBPF program (kernel.bpf_stats_enabled, `bpf`), beside the
//!    empty program's on the same hook;
//! 3. leaktracer's own footprint: idle, ~100k events/s, a madvise storm (over 1M events/s),
//!    10,000 live processes, start-up (`footprint`);
//! 4. detection latency of leaks of 10 MiB/s, 1 MiB/s and 1 MiB/min (`latency`).
//!
//! Results go to bench/results/latest.{md,json} (smoke.{md,json} with `--smoke`, which runs
//! every section once, briefly, to check the harness). A partial run (`--only`, `--workload`,
//! `--rounds` or `--secs`) writes target/bench/partial.{md,json} instead: it must never pass
//! for the published results. Every section records the load average at its start and end,
//! and the results open with a warning when the machine was not quiet.
//!
//! A figure that could not be measured is an "n/a" cell with its reason, and the results are
//! written either way. Then (`verdict`): a smoke run fails on any missing figure, a harness
//! error or a peer not installed alike, since `cargo xtask test` installs every peer; a full
//! bench fails on harness errors (a table with holes must not look like a finished run to
//! whoever publishes it) but not on a peer absent from the machine, which is a fact about the
//! machine and is printed. Cells that cannot apply by design (memleak on stress-ng, which
//! forks; memleak on Go, which does not allocate through libc) are neither.
mod bpf;
mod footprint;
mod latency;
mod median_bounds;
mod memleak;
mod report;
mod slowdown;
mod storms;
mod sys;
mod trace_tail;
mod tracers;
mod workloads;

use std::{
    path::{Path, PathBuf},
    time::Instant,
};

use anyhow::Context as _;
use serde::Serialize;

use tracers::{Env, Tracer};

/// A 1-minute load average above this at the start of a section means other work competed
/// for the CPUs: the results say so at the top.
const QUIET_LOAD: f64 = 0.5;

/// A section of the bench, for `--only`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Section {
    Slowdown,
    Footprint,
    Latency,
}

/// What to run: everything (the default), or a part of it.
#[derive(Clone, Debug, Default)]
pub struct Options {
    pub smoke: bool,
    /// Only these sections (empty: all).
    pub only: Vec<Section>,
    /// Only the slowdown workloads whose name contains one of these (empty: all).
    pub workloads: Vec<String>,
    pub rounds: Option<usize>,
    /// Rounds of the cells no verdict rests on (at most `rounds`; 0 leaves them out).
    pub side_rounds: Option<usize>,
    pub secs: Option<u64>,
}

impl Options {
    fn runs(&self, section: Section) -> bool {
        self.only.is_empty() || self.only.contains(&section)
    }

    /// Whether this run leaves something out, so that its results are not the published ones.
    fn partial(&self) -> bool {
        !self.only.is_empty()
            || !self.workloads.is_empty()
            || self.rounds.is_some()
            || self.side_rounds.is_some()
            || self.secs.is_some()
    }
}

/// How long and how often each section runs.
struct Plan {
    /// Rounds of the slowdown section for the cells the verdicts rest on (untraced,
    /// leaktracer `record`, bpftrace): 8 lets the 95% bounds leave out the best and the worst
    /// round (slowdown::verdict).
    rounds: usize,
    /// Rounds of the other cells (memleak, empty programs, `profile`, `record --stacks`),
    /// the first `side_rounds` of `rounds`: they are shown, not judged.
    side_rounds: usize,
    secs: u64,
    /// Rounds of the per-hook storms (section 2) and seconds per storm.
    storm_rounds: usize,
    storm_secs: u64,
    footprint: footprint::Plan,
    rates: Vec<latency::Rate>,
}

impl Plan {
    fn new(smoke: bool) -> Self {
        let rate = |label, kib_per_sec, runs, bound_secs| latency::Rate {
            label,
            kib_per_sec,
            runs,
            bound_secs,
        };
        if smoke {
            return Self {
                // Two rounds: the alternation and the untraced spread are exercised too.
                rounds: 2,
                side_rounds: 2,
                secs: 1,
                storm_rounds: 1,
                storm_secs: 1,
                footprint: footprint::Plan {
                    idle_secs: 3.0,
                    rate_secs: 3.0,
                    calibrate: false,
                    procs: 1_000,
                    hold_secs: 11.0,
                    startup_runs: 1,
                },
                rates: vec![rate("10 MiB/s", 10 * 1024, 1, 40)],
            };
        }
        Self {
            rounds: 8,
            side_rounds: 5,
            secs: 5,
            storm_rounds: 3,
            storm_secs: 5,
            footprint: footprint::Plan {
                idle_secs: 20.0,
                rate_secs: 20.0,
                calibrate: true,
                procs: 10_000,
                hold_secs: 15.0,
                startup_runs: 5,
            },
            rates: vec![
                rate("10 MiB/s", 10 * 1024, 3, 60),
                rate("1 MiB/s", 1024, 3, 60),
                // 1 MiB/min = 17.07 KiB/s; the leaker takes whole KiB/s.
                rate("1 MiB/min", 17, 1, 180),
            ],
        }
    }
}

#[derive(Serialize)]
struct PerEventRow {
    tracer: Tracer,
    program: String,
    runs: u64,
    ns_per_event: f64,
}

/// The load average (1/5/15 min) at the start and the end of a section.
#[derive(Clone, Debug, Serialize)]
struct SectionLoad {
    section: &'static str,
    start: String,
    end: String,
}

/// Longest wait for the machine to settle before a section. The footprint section's 10,000
/// processes leave the 1-minute load average near 340 as they exit, though the CPUs are idle
/// again within seconds; it decays by e every minute, so falling under [`QUIET_LOAD`] takes
/// about 6.5 minutes (180 s was too short: the latency section of the 2026-12-05 bench started
/// at 16.8).
const SETTLE_MAX_SECS: u64 = 480;

/// Wait (at most [`SETTLE_MAX_SECS`]) until the 1-minute load average is back under
/// [`QUIET_LOAD`]: the previous section's own workloads keep it high for a minute or two, and a
/// section started on their tail would measure them too.
fn settle(name: &str) {
    let started = std::time::Instant::now();
    while sys::load1(&sys::loadavg()).is_some_and(|l| l > QUIET_LOAD)
        && started.elapsed().as_secs() < SETTLE_MAX_SECS
    {
        std::thread::sleep(std::time::Duration::from_secs(5));
    }
    if started.elapsed().as_secs() >= 5 {
        eprintln!(
            "bench: {name}: waited {} s for the load average to settle",
            started.elapsed().as_secs()
        );
    }
}

/// Run `f` as a section, recording the load average around it.
/// A full bench first waits for the machine to settle (see [`settle`]); the smoke run in the
/// test suite does not (its figures are not published).
fn section<T>(
    loads: &mut Vec<SectionLoad>,
    wait_for_quiet: bool,
    name: &'static str,
    f: impl FnOnce() -> T,
) -> T {
    if wait_for_quiet {
        settle(name);
    }
    let start = sys::loadavg();
    eprintln!("bench: {name}: load average at start {start}");
    let out = f();
    let end = sys::loadavg();
    eprintln!("bench: {name}: load average at end {end}");
    loads.push(SectionLoad {
        section: name,
        start,
        end,
    });
    out
}

#[derive(Serialize)]
struct Results {
    smoke: bool,
    /// Which command produced these results, when it was not the whole bench.
    partial: Option<String>,
    date_unix: u64,
    kernel: String,
    cpus: usize,
    leaktracer: String,
    load_average_start: String,
    load_average_end: String,
    /// Sections whose 1-minute load average at start was above [`QUIET_LOAD`].
    not_quiet: Vec<String>,
    section_loads: Vec<SectionLoad>,
    duration_secs: u64,
    memleak: Result<String, String>,
    slowdown: Option<slowdown::Slowdown>,
    per_event: Vec<PerEventRow>,
    /// Cost per event under a storm of each hook's own event (run with section 1).
    storms: Option<storms::Storms>,
    footprint: Option<footprint::Footprint>,
    latency: Option<Vec<latency::Outcome>>,
}

/// The sections (and the bench's start) whose 1-minute load average at the start was above
/// [`QUIET_LOAD`].
fn not_quiet(bench_start: &str, loads: &[SectionLoad]) -> Vec<String> {
    std::iter::once(("bench start", bench_start))
        .chain(loads.iter().map(|l| (l.section, l.start.as_str())))
        .filter(|(_, load)| sys::load1(load).is_some_and(|l| l > QUIET_LOAD))
        .map(|(what, load)| format!("{what}: {load}"))
        .collect()
}

pub fn run(root: &Path, bin: &Path, opts: &Options) -> anyhow::Result<()> {
    let smoke = opts.smoke;
    let started = Instant::now();
    // Building the binary just measured raises the load average for a minute: a full bench
    // lets that settle first, as before each section, so its start says what else runs.
    if !smoke {
        settle("bench start");
    }
    let load_start = sys::loadavg();
    eprintln!("bench: load average at start: {load_start}");
    if sys::load1(&load_start).is_some_and(|l| l > QUIET_LOAD) {
        eprintln!(
            "bench: WARNING: the machine is not quiet (1-minute load average {load_start} > {QUIET_LOAD}): the figures will be noisy"
        );
    }
    let mut plan = Plan::new(smoke);
    if let Some(r) = opts.rounds {
        plan.rounds = r.max(1);
        plan.side_rounds = plan.side_rounds.min(plan.rounds);
    }
    if let Some(r) = opts.side_rounds {
        plan.side_rounds = r.min(plan.rounds);
    }
    if let Some(secs) = opts.secs {
        plan.secs = secs.max(1);
    }
    let _stats_on = bpf::enable_stats()?;
    let work = tracers::work_dir(root)?;
    let helpers = workloads::build_helpers(root, &work)?;
    let leaker = latency::build_leaker(root)?;
    let env = Env {
        root: root.to_path_buf(),
        bin: bin.to_path_buf(),
        memleak: memleak::detect(&work),
        bpftrace_missing: tracers::missing("bpftrace"),
        pin: sys::Pinning::detect(),
        work,
    };
    eprintln!("bench: {}", env.pin.describe());
    let bpftrace_installed = sys::installed("bpftrace");
    let mut loads = Vec::new();
    let mut missing = Vec::new();
    let slowdown = opts.runs(Section::Slowdown).then(|| {
        section(&mut loads, !smoke, "1. slowdown", || {
            let (ws, m) =
                workloads::slowdown_set(&helpers, &env.pin, smoke, plan.secs, &opts.workloads);
            let sd = slowdown::run(&env, &ws, &m, plan.rounds, plan.side_rounds, plan.secs);
            missing = m;
            sd
        })
    });
    let storms = opts.runs(Section::Slowdown).then(|| {
        section(&mut loads, !smoke, "2. cost per event under storms", || {
            storms::run(&env, &helpers.c, plan.storm_rounds, plan.storm_secs)
        })
    });
    let footprint = opts.runs(Section::Footprint).then(|| {
        section(&mut loads, !smoke, "3. footprint", || {
            footprint::run(&env, &helpers, &plan.footprint)
        })
    });
    let latency = opts.runs(Section::Latency).then(|| {
        section(&mut loads, !smoke, "4. latency", || {
            latency::run(&env, &leaker, &plan.rates)
        })
    });
    let results = Results {
        smoke,
        partial: opts.partial().then(|| partial_command(opts)),
        not_quiet: not_quiet(&load_start, &loads),
        section_loads: loads,
        date_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        kernel: sys::kernel(),
        cpus: sys::cpus(),
        leaktracer: version(bin),
        load_average_start: load_start,
        load_average_end: sys::loadavg(),
        duration_secs: started.elapsed().as_secs(),
        memleak: env
            .memleak
            .as_ref()
            .map(|m| m.note.clone())
            .map_err(Clone::clone),
        per_event: slowdown
            .as_ref()
            .map(|s| per_event_rows(&s.per_event))
            .unwrap_or_default(),
        slowdown,
        storms,
        footprint,
        latency,
    };
    write(root, &results)?;
    let mut gaps = Vec::new();
    if let Err(why) = &env.memleak {
        gaps.push(if memleak::installed() {
            Gap::Failed(format!("bcc memleak: {why}"))
        } else {
            Gap::Absent(format!("bcc memleak: {why}"))
        });
    }
    if let Some(why) = &env.bpftrace_missing {
        gaps.push(if bpftrace_installed {
            Gap::Failed(format!("bpftrace: {why}"))
        } else {
            Gap::Absent(format!("bpftrace: {why}"))
        });
    }
    for m in &missing {
        let why = format!("{}: {}", m.name, m.why);
        gaps.push(if m.installed {
            Gap::Failed(why)
        } else {
            Gap::Absent(why)
        });
    }
    if let Some(sd) = &results.slowdown {
        gaps.extend(sd.errors.iter().cloned().map(Gap::Failed));
    }
    if let Some(st) = &results.storms {
        gaps.extend(st.errors.iter().cloned().map(Gap::Failed));
    }
    if let Some(f) = &results.footprint {
        for (what, err) in [
            ("idle", f.idle.as_ref().err()),
            ("at 100k events/s", f.at_rate.as_ref().err()),
            ("at 1M events/s", f.at_storm.as_ref().err()),
            ("many processes", f.many_procs.as_ref().err()),
            ("start-up", f.startup.as_ref().err()),
        ] {
            if let Some(why) = err {
                gaps.push(Gap::Failed(format!("footprint {what}: {why}")));
            }
        }
    }
    for o in results.latency.iter().flatten() {
        if let Some(why) = &o.error {
            gaps.push(Gap::Failed(format!("latency at {}: {why}", o.rate.label)));
        }
    }
    verdict(smoke, &gaps)
}

/// Why a figure is missing.
#[derive(Debug)]
enum Gap {
    /// A peer or toolchain not installed on this machine.
    Absent(String),
    /// The harness failed.
    Failed(String),
}

/// See the module's documentation: smoke fails on any gap, a full bench on harness failures.
fn verdict(smoke: bool, gaps: &[Gap]) -> anyhow::Result<()> {
    let mut fatal = Vec::new();
    for g in gaps {
        match g {
            Gap::Absent(why) if !smoke => eprintln!("bench: n/a (not installed here): {why}"),
            Gap::Absent(why) => fatal.push(format!("not installed: {why}")),
            Gap::Failed(why) => fatal.push(why.clone()),
        }
    }
    if !fatal.is_empty() {
        anyhow::bail!(
            "the bench{} could not measure {} figure(s) (results written with n/a cells):\n  {}",
            if smoke { " smoke run" } else { "" },
            fatal.len(),
            fatal.join("\n  ")
        );
    }
    Ok(())
}

fn per_event_rows(per_event: &slowdown::PerEvent) -> Vec<PerEventRow> {
    per_event
        .iter()
        .flat_map(|(&tracer, progs)| {
            progs.iter().map(move |(program, &(ns, cnt))| PerEventRow {
                tracer,
                program: program.clone(),
                runs: cnt,
                ns_per_event: if cnt > 0 {
                    ((ns as f64 / cnt as f64) * 10.0).round() / 10.0
                } else {
                    0.0
                },
            })
        })
        .collect()
}

/// The `cargo xtask bench` options of a partial run, for its results' header.
fn partial_command(opts: &Options) -> String {
    let mut c = String::from("cargo xtask bench");
    for s in &opts.only {
        c += &format!(" --only {}", format!("{s:?}").to_lowercase());
    }
    for w in &opts.workloads {
        c += &format!(" --workload '{w}'");
    }
    if let Some(r) = opts.rounds {
        c += &format!(" --rounds {r}");
    }
    if let Some(r) = opts.side_rounds {
        c += &format!(" --side-rounds {r}");
    }
    if let Some(s) = opts.secs {
        c += &format!(" --secs {s}");
    }
    c
}

fn version(bin: &Path) -> String {
    std::process::Command::new(bin)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// Where the results go: the published files for a whole run, smoke files for a smoke run,
/// and the work dir (outside the repository's results) for a partial run.
fn results_path(root: &Path, smoke: bool, partial: bool) -> (PathBuf, &'static str) {
    if partial {
        (root.join("target/bench"), "partial")
    } else if smoke {
        (root.join("bench/results"), "smoke")
    } else {
        (root.join("bench/results"), "latest")
    }
}

fn write(root: &Path, results: &Results) -> anyhow::Result<()> {
    let md = report::markdown(results);
    println!("{md}");
    let (dir, stem) = results_path(root, results.smoke, results.partial.is_some());
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let md_path = dir.join(format!("{stem}.md"));
    std::fs::write(&md_path, &md).with_context(|| format!("writing {}", md_path.display()))?;
    let json_path = dir.join(format!("{stem}.json"));
    std::fs::write(&json_path, serde_json::to_string_pretty(results)?)
        .with_context(|| format!("writing {}", json_path.display()))?;
    eprintln!(
        "bench: wrote {} and .json in {} s",
        md_path.display(),
        results.duration_secs
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smoke_fails_on_any_gap_a_full_bench_on_harness_failures() {
        let absent = [Gap::Absent("bcc memleak: not installed".into())];
        let failed = [Gap::Failed("footprint idle: record exited".into())];
        assert!(verdict(true, &[]).is_ok());
        assert!(verdict(false, &[]).is_ok());
        assert!(verdict(true, &absent).is_err());
        assert!(verdict(false, &absent).is_ok());
        let e = verdict(false, &failed).unwrap_err().to_string();
        assert!(e.contains("footprint idle: record exited"), "{e}");
        assert!(verdict(true, &failed).is_err());
    }

    #[test]
    fn partial_runs_never_overwrite_the_published_results() {
        let root = Path::new("/r");
        assert_eq!(
            results_path(root, false, false),
            (root.join("bench/results"), "latest")
        );
        assert_eq!(
            results_path(root, true, false),
            (root.join("bench/results"), "smoke")
        );
        assert_eq!(
            results_path(root, false, true),
            (root.join("target/bench"), "partial")
        );
        let opts = Options {
            workloads: vec!["brk".into()],
            ..Options::default()
        };
        assert!(opts.partial());
        assert!(!Options::default().partial());
        assert!(opts.runs(Section::Latency));
    }

    #[test]
    fn a_load_above_half_is_not_quiet() {
        let loads = [SectionLoad {
            section: "1. slowdown",
            start: "0.70 0.40 0.30".into(),
            end: "0.10 0.10 0.10".into(),
        }];
        assert_eq!(
            not_quiet("0.20 0.10 0.05", &loads),
            vec!["1. slowdown: 0.70 0.40 0.30".to_string()]
        );
        assert!(not_quiet("0.50 2.00 2.00", &loads[..0]).is_empty());
        assert_eq!(not_quiet("2.76 2.96 3.91", &[]).len(), 1);
    }
}
