//! The CLI's answers to bad input and missing pieces: one clear line, exit code 2.
// An integration test crate: a panic (unwrap, expect) is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use std::process::Command;

use leaktracer_tests::*;

fn run(args: &[&str]) -> (i32, String) {
    let out = Command::new(leaktracer())
        .args(args)
        .output()
        .expect("running leaktracer");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn unknown_flags_and_bad_values_exit_2() {
    for args in [
        &["top", "--bogus"][..],
        &["top", "--interval", "0s"],
        &["top", "--interval", "soon"],
        &["record"],
        &["top", "--pid", "abc"],
        &["nonsense"],
    ] {
        let (code, err) = run(args);
        assert_eq!(code, 2, "{args:?} should exit 2, stderr: {err}");
        assert!(err.contains("error"), "{args:?}: {err}");
    }
    let (code, _) = run(&["top", "--once"]);
    assert_eq!(code, 2, "--once without --duration");
}

#[test]
fn help_teaches() {
    let out = Command::new(leaktracer()).arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in ["top", "record", "Exit codes", "Examples"] {
        assert!(text.contains(needle), "--help lacks {needle}: {text}");
    }
}

/// Without CAP_BPF/CAP_PERFMON: one line naming what is missing, exit 2.
#[test]
fn unprivileged_user_gets_a_one_line_error() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        // Already unprivileged: run directly.
        let (code, err) = run(&["top", "--once", "--duration", "1s"]);
        assert_eq!(code, 2, "{err}");
        assert!(err.contains("CAP_BPF"), "{err}");
        return;
    }
    let out = Command::new("setpriv")
        .args([
            "--reuid",
            "65534",
            "--regid",
            "65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
        ])
        .arg(leaktracer())
        .args(["top", "--once", "--duration", "1s"])
        .output()
        .expect("setpriv (util-linux) runs leaktracer as nobody");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(err.contains("CAP_BPF") && err.contains("root"), "{err}");
}

/// tracefs not mounted (simulated with a host root that has /proc but no tracefs).
#[test]
fn missing_tracefs_is_explained() {
    let Some(_serial) = privileged() else { return };
    let root = tempdir("no-tracefs");
    std::fs::create_dir_all(root.join("proc")).unwrap();
    let (code, err) = run(&[
        "--host-root",
        root.to_str().unwrap(),
        "top",
        "--once",
        "--duration",
        "1s",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("tracefs is not mounted") && err.contains("mount -t tracefs"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

/// A kernel without a required tracepoint (simulated: a tracefs copy lacking kmem:rss_stat).
#[test]
fn missing_tracepoint_is_named() {
    let Some(_serial) = privileged() else { return };
    let root = tempdir("no-rss-stat");
    std::fs::create_dir_all(root.join("proc")).unwrap();
    let events = root.join("sys/kernel/tracing/events");
    for (group, event) in [
        ("syscalls", "sys_enter_mmap"),
        ("syscalls", "sys_exit_mmap"),
        ("syscalls", "sys_enter_munmap"),
        ("syscalls", "sys_enter_brk"),
        ("syscalls", "sys_enter_mremap"),
        ("syscalls", "sys_enter_madvise"),
    ] {
        let dir = events.join(group).join(event);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(
            format!("/sys/kernel/tracing/events/{group}/{event}/format"),
            dir.join("format"),
        )
        .unwrap();
    }
    let (code, err) = run(&[
        "--host-root",
        root.to_str().unwrap(),
        "top",
        "--once",
        "--duration",
        "1s",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("kmem:rss_stat"), "names the tracepoint: {err}");
}

fn tempdir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("leaktracer-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Bad durations, listen addresses, filters and sizes: exit 2, and the first line of stderr
/// names the flag and the rejected value (clap adds only its "try '--help'" hint, and the
/// possible values of an enum).
#[test]
fn bad_values_are_named_in_one_line_with_exit_2() {
    for (args, flag, value) in [
        (
            &["record", "-o", "/dev/null", "--duration", "5x"][..],
            "--duration",
            "5x",
        ),
        (
            &["record", "-o", "/dev/null", "--duration", "0s"],
            "--duration",
            "0s",
        ),
        (
            &["record", "-o", "/dev/null", "--interval", "0s"],
            "--interval",
            "0s",
        ),
        (
            &["record", "-o", "/dev/null", "--interval", "1 fortnight"],
            "--interval",
            "1 fortnight",
        ),
        (
            &["top", "--once", "--duration", "soon"],
            "--duration",
            "soon",
        ),
        (&["oom", "--duration", "10"], "--duration", "10"),
        (&["daemon", "--interval", "0ms"], "--interval", "0ms"),
        (
            &["daemon", "--listen", "127.0.0.1:99999"],
            "--listen",
            "127.0.0.1:99999",
        ),
        (&["daemon", "--listen", "nonsense"], "--listen", "nonsense"),
        (
            &["daemon", "--listen", "127.0.0.1"],
            "--listen",
            "127.0.0.1",
        ),
        (
            &["daemon", "--listen", "localhost:9464"],
            "--listen",
            "localhost:9464",
        ),
        (&["daemon", "--top", "0"], "--top", "0"),
        (&["top", "--pid", "abc"], "--pid", "abc"),
        (
            &["record", "-o", "/dev/null", "--pid", "4294967296"],
            "--pid",
            "4294967296",
        ),
        (&["report", "x.jsonl", "--pid", "1.5"], "--pid", "1.5"),
        (&["top", "--rss-source", "kprobe"], "--rss-source", "kprobe"),
        (
            &["record", "-o", "/dev/null", "--ringbuf-bytes", "1024"],
            "--ringbuf-bytes",
            "1024",
        ),
        (&["top", "--procs-map-size", "0"], "--procs-map-size", "0"),
        (
            &["top", "--oom-score-adj", "5000"],
            "--oom-score-adj",
            "5000",
        ),
        // Filters that could only match nothing.
        (&["top", "--pid", "0"], "--pid", "0"),
        (&["top", "--namespace", ""], "--namespace", "''"),
        (&["record", "-o", "/dev/null", "--pod", " "], "--pod", "' '"),
        (
            &["top", "--comm", "a-command-name-of-20"],
            "--comm",
            "a-command-name-of-20",
        ),
    ] {
        let (code, err) = run(args);
        eprintln!("{args:?} -> {code}: {}", err.lines().next().unwrap_or(""));
        assert_eq!(code, 2, "{args:?} should exit 2, stderr: {err}");
        let first = err.lines().next().unwrap_or("");
        assert!(
            first.starts_with("error:") && first.contains(flag) && first.contains(value),
            "{args:?}: the first line should name {flag} and {value:?}: {err}"
        );
        let rest: Vec<&str> = err
            .lines()
            .skip(1)
            .filter(|l| {
                !l.trim().is_empty()
                    && !l.contains("try '--help'")
                    && !l.trim().starts_with("[possible values:")
            })
            .collect();
        assert!(rest.is_empty(), "{args:?}: one line, got extra {rest:?}");
    }
}

/// A negative pid looks like a flag to the parser: still exit 2, naming the value.
#[test]
fn negative_pid_exits_2() {
    for args in [
        &["top", "--pid", "-1"][..],
        &["record", "-o", "/dev/null", "--pid", "-1"],
    ] {
        let (code, err) = run(args);
        eprintln!("{args:?} -> {code}: {}", err.lines().next().unwrap_or(""));
        assert_eq!(code, 2, "{args:?} should exit 2, stderr: {err}");
        let first = err.lines().next().unwrap_or("");
        assert!(
            first.starts_with("error:") && first.contains("'-1'"),
            "{args:?}: {err}"
        );
    }
}

/// `--listen` on a port already in use is a usage error (one line, exit 2), found before any
/// eBPF program is loaded.
#[test]
fn busy_listen_port_exits_2() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("an ephemeral port");
    let addr = busy.local_addr().unwrap().to_string();
    let mut child = Command::new(leaktracer())
        .args(["daemon", "--listen", &addr])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("running leaktracer");
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > std::time::Duration::from_secs(10) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("daemon --listen {addr} (busy) still running after 10 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    eprintln!("daemon --listen {addr} (busy) -> {status}: {}", err.trim());
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(
        err.contains("--listen") && err.contains(&addr),
        "names the address: {err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    drop(busy);
}

/// A trace that cannot be opened is a usage error, like a corrupt one: exit 2, one line.
#[test]
fn missing_trace_exits_2() {
    let (code, err) = run(&["report", "/nonexistent/leaktracer-trace.jsonl"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("/nonexistent/leaktracer-trace.jsonl"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
}
