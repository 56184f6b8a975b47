//! `leaktracer profile` on real programs: growth sites named down to the function, for C
//! (ELF symbols, frame pointers) and for stripped Go binaries of several Go versions (Go's own
//! symbol table), and a pprof file that `go tool pprof` reads.
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

fn run_checked(c: &mut Command) -> String {
    let out = c.output().unwrap_or_else(|e| panic!("{c:?}: {e}"));
    assert!(
        out.status.success(),
        "{c:?} exited with {}: {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
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
        assert!(
            Path::new(go).exists(),
            "Go toolchain {go} missing: `cargo xtask setup` installs it"
        );
        let exe = dir.path().join(format!("goleak-{release}"));
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
