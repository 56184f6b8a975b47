//! `leaktracer profile` on real programs: growth sites named down to the function, for C
//! (ELF symbols, frame pointers) and for stripped Go binaries of several Go versions (Go's own
//! symbol table), and a pprof file that `go tool pprof` reads; the same sites in a trace
//! (`record --stacks`), per suspect in `report` and as its flame graph.
// An integration test crate: a panic (unwrap, expect) is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use std::{
    path::{Path, PathBuf},
    process::Command,
};

use leaktracer_tests::*;
use serde_json::Value;

fn source(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("workloads/profile")
        .join(name)
}

/// Profile `pid` for `secs`; the JSON summary and the pprof file written.
fn profile(pid: u32, secs: u32, dir: &Path) -> (Value, PathBuf) {
    let out = dir.join(format!("growth-{pid}.pb.gz"));
    let json = run_checked(
        Command::new(leaktracer())
            .args(["profile", "--pid", &pid.to_string(), "--duration"])
            .arg(format!("{secs}s"))
            .arg("--output")
            .arg(&out)
            .args(["--format", "json", "--top", "20"]),
    );
    (serde_json::from_str(&json).unwrap(), out)
}

/// A function's cumulative growth (with its callees: through the shared helper).
fn cum_bytes(summary: &Value, function: &str) -> u64 {
    summary["functions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["function"] == function)
        .map(|s| s["cum_bytes"].as_u64().unwrap())
        .sum()
}

/// The C workload, built with frame pointers and DWARF.
fn two_callers(dir: &Path) -> PathBuf {
    let exe = dir.join("two_callers");
    run_checked(
        Command::new("cc")
            .args(["-O1", "-g", "-fno-omit-frame-pointer", "-o"])
            .arg(&exe)
            .arg(source("two_callers.c")),
    );
    exe
}

/// The Go heap leak, built stripped (`-s -w`, as k3s is) with the toolchain `go`.
fn stripped_goleak(go: &str, release: &str, dir: &Path) -> PathBuf {
    assert!(
        Path::new(go).exists(),
        "Go toolchain {go} missing: `cargo xtask setup` installs it"
    );
    let exe = dir.join(format!("goleak-{release}"));
    run_checked(
        Command::new(go)
            .args(["build", "-ldflags=-s -w", "-o"])
            .arg(&exe)
            .arg(source("goleak.go"))
            .env("GOTOOLCHAIN", "local")
            .env("GO111MODULE", "off")
            .env("GOFLAGS", "")
            .env("CGO_ENABLED", "0")
            .env("GOCACHE", std::env::temp_dir().join("leaktracer-gocache")),
    );
    exe
}

fn pprof_top(go: &str, file: &Path) -> String {
    run_checked(
        Command::new(go)
            .args(["tool", "pprof", "-top"])
            .arg(file)
            .env("GOTOOLCHAIN", "local"),
    )
}

#[test]
fn the_c_caller_that_keeps_its_memory_is_the_growth_site() {
    let Some(_serial) = privileged() else { return };
    let dir = tempfile::tempdir().unwrap();
    let exe = two_callers(dir.path());
    let p = Proc::spawn(&mut workload(exe.to_str().unwrap()));
    let (summary, file) = profile(p.pid(), 8, dir.path());
    eprintln!("{summary:#}");
    let (keeper, churner) = (
        cum_bytes(&summary, "keeper"),
        cum_bytes(&summary, "churner"),
    );
    assert!(
        summary["samples"].as_u64().unwrap() >= 20,
        "enough samples to judge: {summary}"
    );
    assert!(keeper > 0, "keeper is on the sampled stacks: {summary}");
    let share = keeper as f64 / (keeper + churner) as f64;
    assert!(
        share >= 0.9,
        "keeper holds {:.0}% of the two callers' sampled growth (keeper {keeper}, churner {churner})",
        share * 100.0
    );
    // The site is the shared helper, where the memory is touched, named down to its file.
    let top = &summary["sites"][0];
    assert_eq!(top["function"], "fill", "{summary}");
    assert!(
        top["file"]
            .as_str()
            .is_some_and(|f| f.ends_with("two_callers.c")),
        "named down to the file (DWARF): {top}"
    );
    let listed = pprof_top("/usr/bin/go", &file);
    assert!(listed.contains("keeper"), "go tool pprof -top:\n{listed}");
}

#[test]
fn a_stripped_go_leak_is_named_by_function_for_each_go_version() {
    let Some(_serial) = privileged() else { return };
    let dir = tempfile::tempdir().unwrap();
    for (go, release) in [("/usr/bin/go", "1.19"), ("/opt/go126/bin/go", "1.26")] {
        let exe = stripped_goleak(go, release, dir.path());
        let p = Proc::spawn(&mut workload(exe.to_str().unwrap()));
        let (summary, file) = profile(p.pid(), 8, dir.path());
        eprintln!("Go {release}: {summary:#}");
        assert!(
            summary["samples"].as_u64().unwrap() >= 20,
            "Go {release}: enough samples: {summary}"
        );
        assert_eq!(
            summary["sites"][0]["function"], "main.retain",
            "Go {release}: the retaining function is the top site: {summary}"
        );
        let listed = pprof_top(go, &file);
        assert!(
            listed.contains("main.retain"),
            "Go {release}: go tool pprof -top:\n{listed}"
        );
    }
}

#[test]
fn profile_without_a_target_is_a_usage_error() {
    let out = Command::new(leaktracer())
        .args(["profile", "--output", "/tmp/unused.pb.gz"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--pid, --comm or --pod"),
        "{out:?}"
    );
}

/// GET on 127.0.0.1:`port`: the status code and the body's bytes (a profile is binary).
fn get_bytes(port: u16, path: &str) -> Option<(u16, Vec<u8>)> {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(90)))
        .ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, raw[split + 4..].to_vec()))
}

#[test]
fn the_daemon_serves_a_growth_profile_on_demand() {
    let Some(_serial) = privileged() else { return };
    let dir = tempfile::tempdir().unwrap();
    let exe = two_callers(dir.path());
    let p = Proc::spawn(&mut workload(exe.to_str().unwrap()));
    let port = free_port();
    let _daemon = daemon(port, "1s");
    let ready = wait_until(std::time::Duration::from_secs(60), || {
        http_get(port, "/readyz").filter(|r| r.starts_with("HTTP/1.1 200"))
    });
    assert!(ready.is_some(), "the daemon was not ready within 60 s");
    let (status, body) = get_bytes(port, "/debug/pprof/growth").unwrap();
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
    let (status, body) = get_bytes(port, "/debug/pprof/growth?pid=999999999&seconds=1").unwrap();
    assert_eq!(status, 404, "{}", String::from_utf8_lossy(&body));
    let (status, body) = get_bytes(
        port,
        &format!("/debug/pprof/growth?pid={}&seconds=8", p.pid()),
    )
    .unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(&body[..2], &[0x1f, 0x8b], "a gzipped profile");
    let file = dir.path().join("served.pb.gz");
    std::fs::write(&file, &body).unwrap();
    let listed = pprof_top("/usr/bin/go", &file);
    assert!(listed.contains("keeper"), "go tool pprof -top:\n{listed}");
}

/// Samples the trace's `stacks` records gave `pid` so far (each record carries the
/// cumulative samples of the stacks that changed).
/// The samples of `pid`'s stacks of one growth kind ("touched", "mapped", "brk") so far.
fn samples_of_kind(trace: &[Value], pid: u32, kind: &str) -> u64 {
    let mut by_id = std::collections::HashMap::new();
    for r in trace.iter().filter(|r| r["type"] == "stacks") {
        for s in r["stacks"].as_array().into_iter().flatten() {
            if s["pid"].as_u64() == Some(u64::from(pid)) && s["kind"] == kind {
                by_id.insert(s["id"].as_u64(), s["samples"].as_u64().unwrap_or(0));
            }
        }
    }
    by_id.values().sum()
}

/// First-touch samples: resident growth.
fn stack_samples(trace: &[Value], pid: u32) -> u64 {
    samples_of_kind(trace, pid, "touched")
}

fn judged_growing(trace: &[Value], pid: u32) -> bool {
    trace.iter().any(|r| {
        r["type"] == "verdict"
            && r["pid"].as_u64() == Some(u64::from(pid))
            && (r["verdict"] == "leaking" || r["verdict"] == "growing")
    })
}

#[test]
fn record_with_stacks_names_where_each_suspect_grows() {
    let Some(_serial) = privileged() else { return };
    let dir = tempfile::tempdir().unwrap();
    // 256 KiB kept every 60 ms (4 MiB/s, for a minute): still growing when judged.
    let c = Proc::spawn(workload(two_callers(dir.path()).to_str().unwrap()).arg("60000"));
    let go_exe = stripped_goleak("/opt/go126/bin/go", "1.26", dir.path());
    let go = Proc::spawn(&mut workload(go_exe.to_str().unwrap()));
    let (c_pid, go_pid) = (c.pid().to_string(), go.pid().to_string());
    let rec = Recording::start(
        "stacks",
        &[
            "--stacks",
            "--pid",
            &c_pid,
            "--pid",
            &go_pid,
            "--interval",
            "500ms",
        ],
    );
    // Until both are judged growing and have enough samples to tell their sites apart, and
    // their mmaps have been sampled too.
    let ready = wait_until(std::time::Duration::from_secs(50), || {
        let t = read_trace(&rec.path);
        ([c.pid(), go.pid()]
            .iter()
            .all(|&p| judged_growing(&t, p) && stack_samples(&t, p) >= 20)
            && [c.pid(), go.pid()]
                .iter()
                .all(|&p| samples_of_kind(&t, p, "mapped") >= 10))
        .then_some(())
    });
    let trace_path = rec.path.clone();
    let trace = rec.stop();
    assert!(
        ready.is_some(),
        "both judged growing with 20 first-touch and 10 mmap samples each within 50 s: C {} and {} mapped, Go {} and {} mapped",
        stack_samples(&trace, c.pid()),
        samples_of_kind(&trace, c.pid(), "mapped"),
        stack_samples(&trace, go.pid()),
        samples_of_kind(&trace, go.pid(), "mapped")
    );
    // Frames are kept with their binary, build id and file offset (named again offline).
    let go_frame = trace
        .iter()
        .filter(|r| r["type"] == "stacks")
        .flat_map(|r| r["stacks"].as_array().cloned().unwrap_or_default())
        .filter(|s| s["pid"].as_u64() == Some(u64::from(go.pid())))
        .flat_map(|s| s["frames"].as_array().cloned().unwrap_or_default())
        .find(|f| f["function"] == "main.retain")
        .unwrap_or_else(|| panic!("no main.retain frame in the Go process's stacks"));
    assert!(
        go_frame["module"]
            .as_str()
            .is_some_and(|m| m.ends_with("goleak-1.26"))
            && go_frame["build_id"].as_str().is_some_and(|b| !b.is_empty())
            && go_frame["offset"].as_u64().is_some(),
        "{go_frame}"
    );

    let report = report_json(&trace_path, &[]);
    let suspect = |pid: u32| {
        report["suspects"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["pid"].as_u64() == Some(u64::from(pid)))
            .unwrap_or_else(|| panic!("pid {pid} is not a suspect: {report:#}"))
            .clone()
    };
    // C: the site is the shared helper; its caller tells the keeping path from the other.
    let c_sites = suspect(c.pid())["sites"].as_array().cloned().unwrap();
    eprintln!("C sites: {c_sites:#?}");
    let via = |caller: &str| -> u64 {
        c_sites
            .iter()
            .filter(|s| s["function"] == "fill" && s["callers"][0] == caller)
            .map(|s| s["bytes"].as_u64().unwrap())
            .sum()
    };
    let (keeper, churner) = (via("keeper"), via("churner"));
    assert_eq!(c_sites[0]["function"], "fill");
    assert_eq!(c_sites[0]["callers"][0], "keeper");
    assert!(
        keeper as f64 >= 0.9 * (keeper + churner) as f64,
        "keeper's path holds at least 90% of the two callers' growth: keeper {keeper}, churner {churner}"
    );
    // Its mmaps were sampled (each kept record is a mapping of its own, above glibc's
    // threshold). Debian's glibc keeps no frame pointers: the unwind from the mmap syscall
    // stops in libc, so no C caller is named here (docs/profiling.md); Go's is, below.
    let c_mapped = suspect(c.pid())["mapped_sites"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    eprintln!("C mapped sites: {c_mapped:#?}");
    assert!(
        c_mapped
            .iter()
            .all(|s| s["kind"] == "mapped" || s["kind"] == "brk")
            && c_mapped
                .iter()
                .map(|s| s["samples"].as_u64().unwrap())
                .sum::<u64>()
                >= 10,
        "the C program's mmaps sampled"
    );
    // Go, stripped: the retaining function is the top site, by name.
    let go_sites = suspect(go.pid())["sites"].as_array().cloned().unwrap();
    eprintln!("Go sites: {go_sites:#?}");
    assert_eq!(go_sites[0]["function"], "main.retain");
    // Go maps its heap from the system stack, and its frame pointers lead back to the
    // goroutine: the mmap is named by the Go code whose allocation grew the heap.
    let go_mapped = suspect(go.pid())["mapped_sites"].clone();
    eprintln!("Go mapped sites: {go_mapped:#?}");
    assert_eq!(
        (&go_mapped[0]["function"], &go_mapped[0]["kind"]),
        (&Value::from("main.retain"), &Value::from("mapped")),
        "{go_mapped:#}"
    );
    assert!(report["growth_sites"]["samples"].as_u64().unwrap() >= 40);
    assert!(report["growth_sites"]["mapped_samples"].as_u64().unwrap() >= 10);

    // The text report shows them under each suspect, and --flame draws them.
    let flame = dir.path().join("sites.svg");
    let text = report_text(&trace_path, &["--flame", &flame.to_string_lossy()]);
    assert!(
        text.contains("grows at") && text.contains("fill") && text.contains("<- keeper"),
        "{text}"
    );
    assert!(text.contains("maps at"), "{text}");
    let svg = std::fs::read_to_string(&flame).unwrap();
    assert!(svg.starts_with("<?xml") && svg.contains("<svg"), "an SVG");
    for name in ["keeper", "main.retain", "goleak-1.26", "[mapped]"] {
        assert!(svg.contains(name), "the flame graph names {name}");
    }
}

#[test]
fn the_daemon_profiles_a_process_judged_leaking_on_its_own() {
    let Some(_serial) = privileged() else { return };
    let dir = tempfile::tempdir().unwrap();
    let c = Proc::spawn(workload(two_callers(dir.path()).to_str().unwrap()).arg("60000"));
    let port = free_port();
    let mut daemon = Proc::spawn(
        Command::new(leaktracer())
            .args(["daemon", "--interval", "1s", "--auto-profile-seconds", "6"])
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit()),
    );
    let rx = json_lines(daemon.0.stdout.take().unwrap(), &["growth_profile"]);
    // Judged leaking (a few seconds at 4 MiB/s), then a 6 s capture.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    let event = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(v) if v["pid"].as_u64() == Some(u64::from(c.pid())) => break v,
            Ok(_) => continue,
            Err(_) => panic!("no growth_profile line for pid {} within 90 s", c.pid()),
        }
    };
    eprintln!("{event:#}");
    assert!(event["reason"].as_str().is_some_and(|r| !r.is_empty()));
    assert_eq!(event["cut_short"], false, "no storm here: a full capture");
    assert_eq!(event["sites"][0]["function"], "fill", "{event}");
    assert_eq!(event["sites"][0]["callers"][0], "keeper", "{event}");
    let listed: Value = serde_json::from_str(
        http_get(port, "/debug/pprof/leaks")
            .and_then(|r| r.split_once("\r\n\r\n").map(|(_, b)| b.to_string()))
            .unwrap()
            .as_str(),
    )
    .unwrap();
    let url = event["url"].as_str().unwrap();
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["url"] == url && p["pid"] == event["pid"]),
        "{listed:#}"
    );
    let (status, body) = get_bytes(port, url).unwrap();
    assert_eq!(status, 200);
    let file = dir.path().join("auto.pb.gz");
    std::fs::write(&file, &body).unwrap();
    let top = pprof_top("/usr/bin/go", &file);
    assert!(top.contains("keeper"), "go tool pprof -top:\n{top}");
    let (status, _) = get_bytes(port, "/debug/pprof/leaks/999999").unwrap();
    assert_eq!(status, 404);
    // Counted at the daemon's next round after the capture ends.
    let counted = wait_until(std::time::Duration::from_secs(20), || {
        http_get(port, "/metrics")
            .filter(|m| m.contains("leaktracer_growth_profiles_total{outcome=\"captured\"} 1"))
    });
    assert!(counted.is_some(), "the capture is counted in the metrics");
}
