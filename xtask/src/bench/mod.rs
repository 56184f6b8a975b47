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
    write(root, &results)
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
