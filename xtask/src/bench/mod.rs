//! `cargo xtask bench`: leaktracer's cost and detection latency, measured side by side with
//! no tracer, the closest bpftrace script and bcc's memleak, on the same machine in one run.
//! These machines are noisy, so configurations run several times in alternation and the
//! tables report medians and ratios.
//!
//! 1. workload slowdown (`slowdown`): stress-ng, a C malloc churn and a Go allocation loop;
//! 2. cost per event of every eBPF program (kernel.bpf_stats_enabled, `bpf`);
//! 3. leaktracer's own footprint: idle, ~100k events/s, 10,000 live processes, start-up
//!    (`footprint`);
//! 4. detection latency of leaks of 10 MiB/s, 1 MiB/s and 1 MiB/min (`latency`).
//!
//! Results go to bench/results/latest.{md,json} (smoke.{md,json} with `--smoke`, which runs
//! every section once, briefly, to check the harness).
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
mod memleak;
mod report;
mod slowdown;
mod sys;
mod trace_tail;
mod tracers;
mod workloads;

use std::{path::Path, time::Instant};

use anyhow::Context as _;
use serde::Serialize;

use tracers::{Env, Tracer};

/// How long and how often each section runs.
struct Plan {
    rounds: usize,
    secs: u64,
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
                rounds: 1,
                secs: 1,
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
            rounds: 3,
            secs: 5,
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

#[derive(Serialize)]
struct Results {
    smoke: bool,
    date_unix: u64,
    kernel: String,
    cpus: usize,
    leaktracer: String,
    load_average_start: String,
    load_average_end: String,
    duration_secs: u64,
    memleak: Result<String, String>,
    slowdown: slowdown::Slowdown,
    per_event: Vec<PerEventRow>,
    footprint: footprint::Footprint,
    latency: Vec<latency::Outcome>,
}

pub fn run(root: &Path, bin: &Path, smoke: bool) -> anyhow::Result<()> {
    let started = Instant::now();
    let load_start = sys::loadavg();
    eprintln!("bench: load average at start: {load_start}");
    let plan = Plan::new(smoke);
    bpf::enable_stats()?;
    let work = tracers::work_dir(root)?;
    let helpers = workloads::build_helpers(root, &work)?;
    let leaker = latency::build_leaker(root)?;
    let env = Env {
        root: root.to_path_buf(),
        bin: bin.to_path_buf(),
        memleak: memleak::detect(&work),
        bpftrace_missing: tracers::missing("bpftrace"),
        work,
    };
    let bpftrace_installed = sys::installed("bpftrace");
    let go_installed = sys::installed("go");
    let (ws, missing) = workloads::slowdown_set(&helpers, smoke);
    let slowdown = slowdown::run(&env, &ws, &missing, plan.rounds, plan.secs);
    let footprint = footprint::run(&env, &helpers, &plan.footprint);
    let latency = latency::run(&env, &leaker, &plan.rates);
    let results = Results {
        smoke,
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
        per_event: per_event_rows(&slowdown.per_event),
        slowdown,
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
    for (name, why) in &missing {
        gaps.push(if go_installed {
            Gap::Failed(format!("{name}: {why}"))
        } else {
            Gap::Absent(format!("{name}: {why}"))
        });
    }
    gaps.extend(results.slowdown.errors.iter().cloned().map(Gap::Failed));
    let f = &results.footprint;
    for (what, err) in [
        ("idle", f.idle.as_ref().err()),
        ("at 100k events/s", f.at_rate.as_ref().err()),
        ("many processes", f.many_procs.as_ref().err()),
        ("start-up", f.startup.as_ref().err()),
    ] {
        if let Some(why) = err {
            gaps.push(Gap::Failed(format!("footprint {what}: {why}")));
        }
    }
    for o in &results.latency {
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

fn version(bin: &Path) -> String {
    std::process::Command::new(bin)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn write(root: &Path, results: &Results) -> anyhow::Result<()> {
    let md = report::markdown(results);
    println!("{md}");
    let dir = root.join("bench/results");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let stem = if results.smoke { "smoke" } else { "latest" };
    std::fs::write(dir.join(format!("{stem}.md")), &md).context("writing the markdown")?;
    std::fs::write(
        dir.join(format!("{stem}.json")),
        serde_json::to_string_pretty(results)?,
    )
    .context("writing the JSON")?;
    eprintln!(
        "bench: wrote bench/results/{stem}.md and .json in {} s",
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
}
