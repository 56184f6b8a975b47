//! The overhead budget on the real kernel: under a madvise storm (stress-ng's malloc worker
//! purges with MADV_DONTNEED about a million times a second) the madvise hook is paused, the
//! kernel programs' measured share of the node's CPU comes back within `--max-overhead`, the
//! pause is in the trace, and a leaker running alongside is still judged leaking: RSS is
//! never paused.
use std::{
    process::{Command, Stdio},
    time::Duration,
};

use leaktracer_tests::*;

const LEAKER: &str = env!("CARGO_BIN_EXE_leaker");

#[test]
fn a_madvise_storm_is_paused_within_budget_and_a_leaker_is_still_found() {
    let Some(_serial) = privileged() else { return };
    let budget = 0.01;
    let rec = Recording::start(
        "budget-madvise",
        &["--interval", "1s", "--max-overhead", "1%"],
    );
    let leaker = Proc::spawn(workload(LEAKER).arg("2048"));
    let _storm = Proc::spawn(
        Command::new("stress-ng")
            .args(["--malloc", "1", "--malloc-bytes", "64K"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    // Until the pause is on record and the leaker has its verdict (bounded wait, no sleep
    // standing in for either).
    let done = wait_until(Duration::from_secs(90), || {
        let t = read_trace_so_far(&rec.path);
        let paused = t
            .iter()
            .any(|r| r["type"] == "budget" && r["hook"] == "madvise" && r["action"] == "pause");
        let leaking = t.iter().any(|r| {
            r["type"] == "verdict"
                && r["pid"].as_u64() == Some(u64::from(leaker.pid()))
                && r["verdict"] == "leaking"
        });
        (paused && leaking).then_some(())
    });
    // Ten more rounds with madvise paused, to measure the cost while paused.
    std::thread::sleep(Duration::from_secs(10));
    let path = rec.path.clone();
    let trace = rec.stop();
    assert!(
        done.is_some(),
        "within 90 s: madvise paused and the leaker judged leaking; budget records: {:?}",
        trace
            .iter()
            .filter(|r| r["type"] == "budget")
            .collect::<Vec<_>>()
    );
    let pause = trace
        .iter()
        .find(|r| r["type"] == "budget" && r["action"] == "pause")
        .expect("a pause");
    assert_eq!(pause["hook"], "madvise", "madvise goes first: {pause}");
    assert!(
        pause["bpf_cpu_share"].as_f64().unwrap_or(0.0) > budget,
        "paused because over budget: {pause}"
    );
    // Health lines while madvise was paused (after the round that paused it): the measured
    // share is within the budget.
    let t_pause = pause["t"].as_f64().unwrap_or(0.0);
    let paused_rounds: Vec<f64> = trace
        .iter()
        .filter(|r| r["type"] == "health" && r["t"].as_f64().unwrap_or(0.0) > t_pause + 1.5)
        .filter(|r| {
            r["paused_hooks"]
                .as_array()
                .is_some_and(|h| h.iter().any(|x| x == "madvise"))
        })
        .filter_map(|r| r["bpf_cpu_share"].as_f64())
        .collect();
    eprintln!(
        "BPF share of the node's CPU while madvise was paused: {paused_rounds:?}; at the pause: {}",
        pause["bpf_cpu_share"]
    );
    assert!(!paused_rounds.is_empty(), "health lines while paused");
    let mut sorted = paused_rounds.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    assert!(
        median <= budget,
        "median BPF share while paused {median} over the {budget} budget: {paused_rounds:?}"
    );
    // Its counts are incomplete while paused, and the summary says a pause happened.
    let summary = trace
        .iter()
        .rfind(|r| r["type"] == "summary")
        .expect("summary");
    assert!(
        summary["budget_pauses"].as_u64().unwrap_or(0) >= 1,
        "{summary}"
    );
    // `report` shows it.
    let out = Command::new(leaktracer())
        .arg("report")
        .arg(&path)
        .output()
        .expect("report");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("OVERHEAD BUDGET") && text.contains("madvise"),
        "report: {text}"
    );
}

fn read_trace_so_far(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}
