//! Processes shorter than one sampling interval keep their exact counts in every output:
//! the trace (at 1 s and 100 ms intervals, and under CPU load), `report`, `top --once` and the
//! daemon's stdout. The workload (`brief`) forks children that make a known number of brk,
//! mmap, madvise (on two CPUs) and munmap calls and live 5-50 ms; nothing here assumes a
//! child outlives an interval.
// An integration test crate: a panic (unwrap, expect) is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use std::{
    io::{BufRead as _, BufReader},
    process::{Command, Stdio},
};

use leaktracer_tests::*;

const BRIEF: &str = env!("CARGO_BIN_EXE_brief");
const CHILDREN: usize = 200;
const BRK_CALLS: u64 = 500;
const MMAP_CALLS: u64 = 20;
const MAP_KIB: u64 = 64;
/// madvise calls of each child, on two CPUs (the per-CPU fast path's slots are folded at
/// the exit); then it unmaps its maps.
const MADVISE_CALLS: u64 = 300;

/// Run `brief COUNT BRK MMAP MIN_MS MAX_MS MAP_KIB MADVISE` to its end; the pids of its
/// children.
fn run_brief(count: usize, min_ms: u64, max_ms: u64, map_kib: u64) -> Vec<u32> {
    let mut p = Proc::spawn(workload(BRIEF).args([
        count.to_string(),
        BRK_CALLS.to_string(),
        MMAP_CALLS.to_string(),
        min_ms.to_string(),
        max_ms.to_string(),
        map_kib.to_string(),
        MADVISE_CALLS.to_string(),
    ]));
    let out = p.0.stdout.take().expect("piped");
    let mut pids = Vec::new();
    let mut done = false;
    for line in BufReader::new(out).lines().map_while(Result::ok) {
        match line.split_whitespace().collect::<Vec<_>>()[..] {
            ["child", pid, _] => pids.push(pid.parse().expect("a pid")),
            ["done"] => done = true,
            _ => {}
        }
    }
    let status = p.0.wait().expect("waiting for brief");
    assert!(status.success() && done, "brief failed: {status}");
    assert_eq!(pids.len(), count);
    pids
}

fn records<'a>(trace: &'a [Value], kind: &str, pid: u32) -> Vec<&'a Value> {
    trace
        .iter()
        .filter(|r| r["type"] == kind && r["pid"].as_u64() == Some(u64::from(pid)))
        .collect()
}

/// Every child is in the trace with its exact counts: a process record, a final sample
/// marked exited, and an exit record with its peak.
fn assert_exact(trace: &[Value], pids: &[u32]) {
    let min_peak = MMAP_CALLS * MAP_KIB * 1024;
    let mut missing = Vec::new();
    for &pid in pids {
        let Some(s) = last_sample(trace, pid) else {
            missing.push(pid);
            continue;
        };
        assert_eq!(s["calls"]["brk"], BRK_CALLS, "pid {pid}: {s}");
        assert_eq!(s["calls"]["mmap"], MMAP_CALLS, "pid {pid}: {s}");
        assert_eq!(s["brk_grown"], (BRK_CALLS - 1) * 4096, "pid {pid}: {s}");
        assert_eq!(
            s["mapped_anon"],
            MMAP_CALLS * MAP_KIB * 1024,
            "pid {pid}: {s}"
        );
        assert_eq!(s["calls"]["madvise"], MADVISE_CALLS, "pid {pid}: {s}");
        assert_eq!(s["released"], MADVISE_CALLS * 4096, "pid {pid}: {s}");
        assert_eq!(s["calls"]["munmap"], MMAP_CALLS, "pid {pid}: {s}");
        assert_eq!(s["unmapped"], MMAP_CALLS * MAP_KIB * 1024, "pid {pid}: {s}");
        assert_eq!(
            s["exited"], true,
            "pid {pid}: its last sample is its end: {s}"
        );
        assert!(
            s["peak_private_bytes"].as_u64().unwrap_or(0) >= min_peak,
            "pid {pid}: peak below the {min_peak} bytes it touched: {s}"
        );
        let exits = records(trace, "exit", pid);
        assert_eq!(exits.len(), 1, "pid {pid}: one exit record");
        assert_eq!(
            exits[0]["comm"], "brief-child",
            "named by its leader: {}",
            exits[0]
        );
        assert!(exits[0]["peak_private_bytes"].as_u64().unwrap_or(0) >= min_peak);
        let procs = records(trace, "process", pid);
        assert_eq!(procs.len(), 1, "pid {pid}: one process record");
    }
    assert!(
        missing.is_empty(),
        "{} of {} short-lived processes have no sample: {missing:?}",
        missing.len(),
        pids.len()
    );
    let summary = trace
        .iter()
        .rfind(|r| r["type"] == "summary")
        .expect("a summary line");
    for lossy in ["procs_map_full", "ringbuf_full", "pending_map_full"] {
        assert_eq!(summary["counters"][lossy], 0, "{summary}");
    }
}

fn record_brief(name: &str, interval: &str) -> (Vec<Value>, Vec<u32>, std::path::PathBuf) {
    let rec = Recording::start(name, &["--interval", interval]);
    let pids = run_brief(CHILDREN, 5, 50, MAP_KIB);
    let path = rec.path.clone();
    let trace = rec.stop();
    (trace, pids, path)
}

#[test]
fn short_lived_processes_keep_exact_counts_at_1s() {
    let Some(_serial) = privileged() else { return };
    let (trace, pids, _) = record_brief("brief-1s", "1s");
    assert_exact(&trace, &pids);
}

#[test]
fn short_lived_processes_keep_exact_counts_at_100ms() {
    let Some(_serial) = privileged() else { return };
    let (trace, pids, _) = record_brief("brief-100ms", "100ms");
    assert_exact(&trace, &pids);
}

#[test]
fn short_lived_processes_keep_exact_counts_under_cpu_load() {
    let Some(_serial) = privileged() else { return };
    let _load = Proc::spawn(
        Command::new("stress-ng")
            .args(["--cpu", "2"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    for interval in ["1s", "100ms"] {
        let (trace, pids, _) = record_brief(&format!("brief-load-{interval}"), interval);
        assert_exact(&trace, &pids);
    }
}

/// A process that lived about 10 ms and touched 64 MiB: `report`, `top --once` and the
/// daemon all show it with its exact calls and its peak.
#[test]
fn report_top_and_daemon_show_a_10ms_process() {
    let Some(_serial) = privileged() else { return };
    const BIG_KIB: u64 = 64 << 10 >> 4; // 20 maps of 4 MiB: 80 MiB touched
    let big_peak = MMAP_CALLS * BIG_KIB * 1024;
    let check_ended = |what: &str, e: &Value| {
        assert_eq!(e["comm"], "brief-child", "{what}: {e}");
        assert_eq!(e["calls"]["brk"], BRK_CALLS, "{what}: {e}");
        assert_eq!(e["calls"]["mmap"], MMAP_CALLS, "{what}: {e}");
        assert_eq!(e["calls"]["madvise"], MADVISE_CALLS, "{what}: {e}");
        assert_eq!(e["calls"]["munmap"], MMAP_CALLS, "{what}: {e}");
        assert!(
            e["peak_private_bytes"].as_u64().unwrap_or(0) >= big_peak,
            "{what}: {e}"
        );
    };

    // record + report
    let rec = Recording::start("brief-report", &["--interval", "1s"]);
    let pids = run_brief(3, 10, 10, BIG_KIB);
    let path = rec.path.clone();
    drop(rec.stop());
    let doc = report_json(&path, &["--comm", "brief-child"]);
    for pid in &pids {
        let e = doc["ended"]["largest"]
            .as_array()
            .and_then(|l| l.iter().find(|e| e["pid"] == *pid))
            .unwrap_or_else(|| panic!("report: pid {pid} not among the ended: {}", doc["ended"]));
        check_ended("report", e);
    }

    // top --once
    let mut top = start_attached(&["top", "--once", "--duration", "10s", "--format", "json"]);
    let pids = run_brief(3, 10, 10, BIG_KIB);
    let out = top.0.stdout.take().expect("piped");
    let status = top.0.wait().expect("waiting for top");
    assert!(status.success(), "top --once failed: {status}");
    let doc: Value = serde_json::from_reader(out).expect("top JSON");
    for pid in &pids {
        let e = doc["ended"]["largest"]
            .as_array()
            .and_then(|l| l.iter().find(|e| e["pid"] == *pid))
            .unwrap_or_else(|| panic!("top: pid {pid} not among the ended: {}", doc["ended"]));
        check_ended("top", e);
    }

    // daemon: its stdout carries the final sample and exit of each big short-lived process
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let listen = format!("127.0.0.1:{port}");
    let daemon = start_attached(&["daemon", "--listen", &listen, "--exit-min-peak-mib", "64"]);
    let pids = run_brief(3, 10, 10, BIG_KIB);
    daemon.signal(libc::SIGTERM);
    let mut daemon = daemon;
    let out = daemon.0.stdout.take().expect("piped");
    let lines: Vec<Value> = BufReader::new(out)
        .lines()
        .map_while(Result::ok)
        .filter_map(|l| serde_json::from_str(&l).ok())
        .collect();
    let status = daemon.0.wait().expect("waiting for the daemon");
    assert!(status.success(), "daemon exited with {status}");
    for &pid in &pids {
        let s = last_sample(&lines, pid)
            .unwrap_or_else(|| panic!("daemon: no final sample of pid {pid}"));
        assert_eq!(s["calls"]["brk"], BRK_CALLS);
        assert_eq!(s["calls"]["mmap"], MMAP_CALLS);
        let exit = records(&lines, "exit", pid);
        assert_eq!(exit.len(), 1, "daemon: one exit record for pid {pid}");
        assert!(exit[0]["peak_private_bytes"].as_u64().unwrap_or(0) >= big_peak);
    }
}
