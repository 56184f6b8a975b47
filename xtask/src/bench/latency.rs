//! Section 4: detection latency. `leaktracer record --interval 1s` runs, then the tests
//! crate's `leaker` starts leaking at a fixed rate; the latency is the wall time from the
//! leaker's spawn to its first `leaking` verdict line in the trace (the trace is flushed
//! every round, so this is what a reader of the trace sees).
use std::{
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use serde::Serialize;

use super::{
    sys,
    trace_tail::TraceTail,
    tracers::{self, Env},
};
use crate::check;

#[derive(Clone, Copy, Debug, Serialize)]
pub struct Rate {
    pub label: &'static str,
    pub kib_per_sec: u64,
    pub runs: usize,
    /// Give up after this long.
    pub bound_secs: u64,
}

#[derive(Debug, Serialize)]
pub struct Outcome {
    pub rate: Rate,
    /// Seconds to the first `leaking` verdict, per run (None: not within the bound).
    pub leaking_after: Vec<Option<f64>>,
    /// Seconds to the first `growing` verdict, per run.
    pub growing_after: Vec<Option<f64>>,
    /// Why it could not be measured.
    pub error: Option<String>,
}

/// The leaker, unoptimised: in a release build LLVM removes its never-read allocations and
/// nothing leaks. Built in its own target dir, away from test runs using target/debug.
pub fn build_leaker(root: &Path) -> anyhow::Result<std::path::PathBuf> {
    let target = root.join("target/bench/cargo");
    check(
        crate::cargo(root)
            .args([
                "build",
                "-p",
                "leaktracer-tests",
                "--bin",
                "leaker",
                "--target-dir",
            ])
            .arg(&target),
    )
    .context("building the leaker workload")?;
    Ok(target.join("debug/leaker"))
}

/// Every rate, runs alternating in order round by round.
pub fn run(env: &Env, leaker: &Path, rates: &[Rate]) -> Vec<Outcome> {
    let mut out: Vec<Outcome> = rates
        .iter()
        .map(|&rate| Outcome {
            rate,
            leaking_after: Vec::new(),
            growing_after: Vec::new(),
            error: None,
        })
        .collect();
    let rounds = rates.iter().map(|r| r.runs).max().unwrap_or(0);
    for round in 0..rounds {
        let mut order: Vec<usize> = (0..out.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for i in order {
            let o = &mut out[i];
            if round >= o.rate.runs || o.error.is_some() {
                continue;
            }
            match once(env, leaker, &o.rate) {
                Ok((leaking, growing)) => {
                    eprintln!(
                        "bench: leak at {}: growing after {growing:?} s, leaking after {leaking:?} s",
                        o.rate.label
                    );
                    o.leaking_after.push(leaking);
                    o.growing_after.push(growing);
                }
                Err(e) => {
                    eprintln!("bench: leak at {}: n/a: {e:#}", o.rate.label);
                    o.error = Some(format!("{e:#}"));
                }
            }
        }
    }
    out
}

/// One leaker under a fresh `record`: seconds to its first `leaking` and `growing` verdicts.
fn once(env: &Env, leaker: &Path, rate: &Rate) -> anyhow::Result<(Option<f64>, Option<f64>)> {
    let r = tracers::record(
        env,
        &[
            "--rss-source",
            "tracepoint",
            "--interval",
            "1s",
            "--comm",
            "leaker",
        ],
        "latency",
    )?;
    let mut tail = TraceTail::new(r.trace.clone().context("record has a trace")?);
    let t0 = Instant::now();
    let mut child = Command::new(leaker)
        .args([
            rate.kib_per_sec.to_string(),
            (rate.bound_secs + 10).to_string(),
        ])
        .stdout(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", leaker.display()))?;
    let pid = u64::from(child.id());
    let (mut leaking, mut growing) = (None, None);
    while leaking.is_none() && t0.elapsed() < Duration::from_secs(rate.bound_secs) {
        std::thread::sleep(Duration::from_millis(100));
        for rec in tail.next_records() {
            if rec["type"] != "verdict" || rec["pid"].as_u64() != Some(pid) {
                continue;
            }
            let at = Some((t0.elapsed().as_secs_f64() * 10.0).round() / 10.0);
            match rec["verdict"].as_str() {
                Some("leaking") => leaking = leaking.or(at),
                Some("growing") => growing = growing.or(at),
                _ => {}
            }
        }
    }
    sys::signal(child.id() as i32, sys::SIGKILL);
    let _ = child.wait();
    drop(r);
    Ok((leaking, growing.or(leaking)))
}
