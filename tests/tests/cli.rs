//! The CLI's answers to bad input and missing pieces: one clear line, exit code 2.
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
