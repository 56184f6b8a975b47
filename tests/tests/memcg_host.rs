//! leaktracer's memory-cgroup watchers and limit lookups (`leaktracer::host::memcg`) against
//! the running kernel: they create memory cgroups, so they need root (see `privileged`). v1
//! tests say they do not apply on a host whose memory controller is on v2, and the v2 test
//! on a v1 host.
// An integration test crate: a panic (unwrap, expect) is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]
// The privileged() guard serialises the privileged tests of this binary across its test
// threads; each test runs its own current-thread runtime, so no other task awaits that lock.
#![allow(clippy::await_holding_lock)]

use std::{
    io::Read,
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use tokio::{sync::mpsc, time::timeout};

use leaktracer::host::memcg::{
    CgroupRoots, LimitSource, MemcgEvent, MemcgWatcher, PsiTrigger, StallKind, WatchConfig,
    current_usage, effective_limit, psi, sys,
};

const MIB: u64 = 1 << 20;

fn roots() -> CgroupRoots {
    let r = CgroupRoots::discover(Path::new("/"));
    assert!(
        r.v1_memory.is_some() || r.v2.is_some(),
        "no memory cgroup hierarchy found in /proc/self/mountinfo"
    );
    r
}

/// The v1 memory hierarchy, or None (skip, said) on a v2 host.
fn v1_root(test: &str) -> Option<PathBuf> {
    let r = roots();
    if r.v1_memory.is_none() {
        // Not applicable here rather than skipped: the QEMU guests run cgroup v2.
        eprintln!("{test}: not applicable (the memory controller is on cgroup v2 here)");
    }
    r.v1_memory
}

/// A cgroup made for a test; Drop kills what runs in it and removes it, also on failure.
struct TestCgroup {
    dir: PathBuf,
    /// Its path as /proc/PID/cgroup would show it.
    path: String,
}

impl TestCgroup {
    fn create(hierarchy: &Path, path: &str) -> Self {
        let dir = hierarchy.join(path.trim_start_matches('/'));
        std::fs::create_dir(&dir)
            .unwrap_or_else(|e| panic!("creating cgroup {}: {e}", dir.display()));
        Self {
            dir,
            path: path.to_owned(),
        }
    }

    fn write(&self, file: &str, value: &str) {
        let p = self.dir.join(file);
        std::fs::write(&p, value)
            .unwrap_or_else(|e| panic!("writing {value} to {}: {e}", p.display()));
    }

    /// Kill everything in it, reap our own children among them, remove it.
    fn remove(&self) {
        if !self.dir.exists() {
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let pids: Vec<i32> = std::fs::read_to_string(self.dir.join("cgroup.procs"))
                .unwrap_or_default()
                .lines()
                .filter_map(|l| l.trim().parse().ok())
                .collect();
            for &pid in &pids {
                // SAFETY: plain syscalls; waitpid on a non-child only returns ECHILD.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                    libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG);
                }
            }
            if std::fs::remove_dir(&self.dir).is_ok() || Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if self.dir.exists() {
            eprintln!("could not remove test cgroup {}", self.dir.display());
        }
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        self.remove();
    }
}

/// A shell in `dir` that pipes `bytes` of zeros into `tail`, which keeps them all (no
/// newline ever ends its last line): anonymous memory, touched, no swap here.
fn hog(dir: &Path, bytes: u64) -> Child {
    Command::new("sh")
        .arg("-c")
        .arg(r#"echo 0 > "$1/cgroup.procs" && head -c "$2" /dev/zero | tail > /dev/null"#)
        .arg("sh")
        .arg(dir)
        .arg(bytes.to_string())
        .stderr(Stdio::null()) // sh's "Killed"
        .spawn()
        .expect("spawning sh")
}

fn monotonic_us() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1000
}

/// The kernel log timestamp (µs since boot, the monotonic clock's base) of the last record
/// containing `needle`, for measuring how long after the kill our event came.
fn kmsg_time_us(needle: &str) -> Option<u64> {
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open("/dev/kmsg")
        .ok()?;
    let mut found = None;
    let mut buf = vec![0u8; 8192];
    // One record per read; EAGAIN at the end. EPIPE (overwritten records) is skipped.
    for _ in 0..100_000 {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let rec = String::from_utf8_lossy(&buf[..n]);
                if rec.contains(needle) {
                    found = rec.split(',').nth(2).and_then(|t| t.parse().ok());
                }
            }
            Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue,
            Err(_) => break,
        }
    }
    found
}

/// The acceptance test of the v1 watcher: a 64 MiB hog in a 32 MiB cgroup is OOM-killed and
/// an `Oom` event says so; the usage threshold fires on the way; rmdir ends the watch quietly.
#[tokio::test(flavor = "current_thread")]
async fn v1_oom_kill_is_reported() {
    const TEST: &str = "v1_oom_kill_is_reported";
    let Some(_serial) = leaktracer_tests::privileged() else {
        return;
    };
    let Some(v1) = v1_root(TEST) else {
        return;
    };
    let name = format!("leaktracer-memcg-test-{}", std::process::id());
    let cg = TestCgroup::create(&v1, &format!("/{name}"));
    cg.write("memory.limit_in_bytes", &(32 * MIB).to_string());

    let (tx, mut rx) = mpsc::channel(64);
    let mut w = MemcgWatcher::new(roots(), tx);
    w.watch(&cg.path).unwrap();
    w.watch(&format!("{}/", cg.path)).unwrap(); // idempotent, whatever the spelling
    assert_eq!(w.watched().count(), 1);
    assert!(w.is_watching(&cg.path));

    let started = Instant::now();
    let mut child = hog(&cg.dir, 64 * MIB);
    let mut threshold = None;
    let oom = loop {
        let left = Duration::from_secs(30).saturating_sub(started.elapsed());
        match timeout(left, rx.recv()).await {
            Ok(Some(MemcgEvent::Oom {
                ts_ms,
                cgroup,
                oom_kill_total,
                failcnt,
                usage_bytes,
                limit_bytes,
            })) => {
                break (
                    ts_ms,
                    cgroup,
                    oom_kill_total,
                    failcnt,
                    usage_bytes,
                    limit_bytes,
                );
            }
            Ok(Some(ev @ MemcgEvent::Threshold { .. })) => threshold = threshold.or(Some(ev)),
            Ok(Some(other)) => panic!("unexpected event {other:?}"),
            _ => panic!("no Oom event within 30 s (threshold event: {threshold:?})"),
        }
    };
    let received_us = monotonic_us();
    let after_spawn = started.elapsed();
    let status = child.wait().unwrap();
    // sh reports the pipeline's last command: tail, killed by SIGKILL.
    assert_eq!(
        status.code(),
        Some(128 + 9),
        "the hog was not OOM-killed: {status}"
    );
    let (ts_ms, cgroup, oom_kill_total, failcnt, usage_bytes, limit_bytes) = oom;
    assert_eq!(cgroup, cg.path);
    assert!(oom_kill_total >= 1, "oom_kill_total {oom_kill_total}");
    assert_eq!(limit_bytes, 32 * MIB);
    assert!(failcnt >= 1, "failcnt {failcnt}");
    // Not necessarily below the limit yet: the victim's memory is freed asynchronously.
    assert!(usage_bytes <= 32 * MIB);
    assert!(ts_ms.abs_diff(leaktracer::util::clock::unix_millis()) < 60_000);
    let latency = kmsg_time_us(&format!("oom_memcg=/{name},"))
        .map(|k| {
            format!(
                "{} µs after the kernel's oom-kill log record",
                received_us as i64 - k as i64
            )
        })
        .unwrap_or_else(|| "kernel log not readable".into());
    eprintln!(
        "{TEST}: Oom event {after_spawn:?} after spawning the hog, {latency}; \
         oom_kill_total {oom_kill_total}, failcnt {failcnt}, usage after kill {usage_bytes}"
    );
    match threshold {
        Some(MemcgEvent::Threshold {
            usage_bytes,
            limit_bytes,
            threshold_bytes,
            ..
        }) => {
            assert_eq!(limit_bytes, 32 * MIB);
            assert_eq!(threshold_bytes, (32 * MIB) * 9 / 10);
            eprintln!(
                "{TEST}: threshold event at usage {usage_bytes} (threshold {threshold_bytes})"
            );
        }
        _ => panic!("no Threshold event before the OOM"),
    }

    // Events after the kill can only be the threshold crossed downwards, or the kill of the
    // hog pipeline's other process in the same cgroup (seen on a loaded machine).
    while let Ok(Some(ev)) = timeout(Duration::from_millis(300), rx.recv()).await {
        assert!(
            matches!(&ev, MemcgEvent::Threshold { .. })
                || matches!(&ev, MemcgEvent::Oom { cgroup, .. } if *cgroup == cg.path),
            "unexpected {ev:?}"
        );
    }
    // rmdir: the kernel signals the eventfds; the watch ends without an event or a warning.
    cg.remove();
    let removed = Instant::now();
    while w.is_watching(&cg.path) {
        assert!(
            removed.elapsed() < Duration::from_secs(5),
            "watch did not end after rmdir"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eprintln!("{TEST}: watch ended {:?} after rmdir", removed.elapsed());
    assert!(
        timeout(Duration::from_millis(200), rx.recv())
            .await
            .is_err()
            || rx.is_empty()
    );
    // Unknown cgroups are an error naming them.
    let err = w.watch(&cg.path).unwrap_err();
    assert!(format!("{err:#}").contains(&name), "{err:#}");
}

/// Limit resolution on real v1 cgroups: the limit sits on the parent, not the leaf.
#[test]
fn v1_effective_limit_walks_up() {
    const TEST: &str = "v1_effective_limit_walks_up";
    let Some(_serial) = leaktracer_tests::privileged() else {
        return;
    };
    let Some(v1) = v1_root(TEST) else {
        return;
    };
    let pod = TestCgroup::create(
        &v1,
        &format!("/leaktracer-memcg-limits-{}", std::process::id()),
    );
    let ctr = TestCgroup::create(&v1, &format!("{}/ctr", pod.path));
    let leaf = TestCgroup::create(&v1, &format!("{}/leaf", ctr.path));
    pod.write("memory.limit_in_bytes", &(64 * MIB).to_string());
    leaf.write("memory.limit_in_bytes", &(128 * MIB).to_string());
    let roots = roots();
    let l = effective_limit(&roots, &leaf.path);
    assert_eq!(l.bytes, 64 * MIB);
    assert_eq!(
        l.source(),
        LimitSource::Cgroup {
            path: pod.path.clone()
        }
    );
    assert_eq!(roots.own_limit(&leaf.path), Some(128 * MIB));
    assert_eq!(roots.own_limit(&ctr.path), None);
    assert_eq!(current_usage(&roots, &leaf.path).unwrap(), 0);
    // Our own cgroup: whatever it is, a limit comes back (node memory at worst).
    let node = effective_limit(&roots, "/");
    assert_eq!(node.source(), LimitSource::Node);
    assert_eq!(Some(node.bytes), roots.node_memory());
}

/// The node PSI trigger: the kernel accepts ours and refuses a bad one (with the file in
/// the error); then real memory pressure (400 MB written from inside a 32 MiB cgroup, which
/// makes reclaim stall the writer) must fire it.
#[tokio::test(flavor = "current_thread")]
async fn node_psi_trigger_fires() {
    const TEST: &str = "node_psi_trigger_fires";
    let Some(_serial) = leaktracer_tests::privileged() else {
        return;
    };
    let roots = roots();
    let pressure = roots.proc_file("pressure/memory");
    // Bypass PsiTrigger::new's checks to see the kernel's refusal.
    let bad = PsiTrigger {
        kind: StallKind::Some,
        stall: Duration::from_secs(2),
        window: Duration::from_secs(1),
    };
    let err = psi::arm(&pressure, &bad)
        .err()
        .expect("kernel accepted stall > window");
    assert!(
        format!("{err:#}").contains("/proc/pressure/memory"),
        "{err:#}"
    );

    let (tx, mut rx) = mpsc::channel(64);
    let mut w = MemcgWatcher::new(roots.clone(), tx);
    // Without CAP_SYS_RESOURCE (this machine: root in a container) windows must be multiples
    // of 2 s, and the error says why.
    let privileged_psi = sys::has_cap_sys_resource();
    let one_s = PsiTrigger::new(
        StallKind::Some,
        Duration::from_millis(20),
        Duration::from_secs(1),
    )
    .unwrap();
    match (psi::arm(&pressure, &one_s), privileged_psi) {
        (Ok(_), true) => {}
        (Err(e), false) => assert!(format!("{e:#}").contains("CAP_SYS_RESOURCE"), "{e:#}"),
        (r, _) => panic!(
            "1 s window with CAP_SYS_RESOURCE {privileged_psi}: {:?}",
            r.err()
        ),
    }
    let window = if privileged_psi { 1 } else { 2 };
    let trigger = PsiTrigger::new(
        StallKind::Some,
        Duration::from_millis(20),
        Duration::from_secs(window),
    )
    .unwrap();
    w.watch_node_pressure(&trigger).unwrap();
    w.watch_node_pressure(&PsiTrigger::default()).unwrap();
    eprintln!(
        "{TEST}: triggers {:?} and {:?} armed on {} (CAP_SYS_RESOURCE: {privileged_psi})",
        trigger.kernel_line(),
        PsiTrigger::default().kernel_line(),
        pressure.display()
    );

    let Some(v1) = v1_root(TEST) else {
        // TODO(v2 host): make the pressure in a v2 cgroup instead.
        return;
    };
    let cg = TestCgroup::create(
        &v1,
        &format!("/leaktracer-memcg-psi-{}", std::process::id()),
    );
    cg.write("memory.limit_in_bytes", &(32 * MIB).to_string());
    let file = std::env::temp_dir().join(format!("leaktracer-psi-{}", std::process::id()));
    struct Rm(PathBuf);
    impl Drop for Rm {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
    let _rm = Rm(file.clone());
    let mut fired = None;
    for round in 1..=3 {
        let started = Instant::now();
        let mut dd = Command::new("sh")
            .arg("-c")
            .arg(r#"echo 0 > "$1/cgroup.procs" && dd if=/dev/zero of="$2" bs=1M count=400 2>/dev/null && sync"#)
            .arg("sh")
            .arg(&cg.dir)
            .arg(&file)
            .spawn()
            .unwrap();
        let got = timeout(Duration::from_secs(15), rx.recv()).await;
        let _ = dd.wait();
        if let Ok(Some(ev)) = got {
            eprintln!(
                "{TEST}: fired in round {round}, {:?} after starting the writer",
                started.elapsed()
            );
            fired = Some(ev);
            break;
        }
    }
    match fired {
        Some(MemcgEvent::Pressure {
            scope,
            trigger: line,
            some_total_us,
            some_avg10,
            full_avg10,
            ..
        }) => {
            assert_eq!(scope, "node");
            assert!(
                [trigger.kernel_line(), PsiTrigger::default().kernel_line()].contains(&line),
                "{line}"
            );
            assert!(some_total_us > 0);
            eprintln!("{TEST}: some avg10 {some_avg10}, full avg10 {full_avg10}");
        }
        other => panic!("PSI trigger did not fire under generated pressure: {other:?}"),
    }
}

/// The v2 watcher, for a host whose memory controller is on cgroup v2 (not this
/// development machine: it is run in a v2 guest). Same hog; memory.events must report the
/// kill as an `Events` event.
#[tokio::test(flavor = "current_thread")]
async fn v2_oom_kill_is_reported() {
    const TEST: &str = "v2_oom_kill_is_reported";
    let Some(_serial) = leaktracer_tests::privileged() else {
        return;
    };
    let roots = roots();
    let Some(v2) = roots.v2.clone() else {
        eprintln!("{TEST}: not applicable (no memory controller on cgroup v2 here)");
        return;
    };
    let name = format!("leaktracer-memcg-test-{}-v2", std::process::id());
    let cg = TestCgroup::create(&v2, &format!("/{name}"));
    cg.write("memory.max", &(32 * MIB).to_string());
    if cg.dir.join("memory.swap.max").exists() {
        cg.write("memory.swap.max", "0");
    }
    let (tx, mut rx) = mpsc::channel(64);
    let cfg = WatchConfig {
        cgroup_psi: Some(PsiTrigger::default()),
        ..WatchConfig::default()
    };
    let mut w = MemcgWatcher::with_config(roots, tx, cfg);
    w.watch(&cg.path).unwrap();
    w.watch(&cg.path).unwrap();
    assert!(w.is_watching(&cg.path));
    let started = Instant::now();
    let mut child = hog(&cg.dir, 64 * MIB);
    let totals = loop {
        let left = Duration::from_secs(30).saturating_sub(started.elapsed());
        match timeout(left, rx.recv()).await {
            Ok(Some(MemcgEvent::Events {
                deltas,
                totals,
                cgroup,
                ..
            })) => {
                assert_eq!(cgroup, cg.path);
                if deltas.oom_kill >= 1 {
                    break totals;
                }
            }
            Ok(Some(_)) => {}
            _ => panic!("no oom_kill in memory.events within 30 s"),
        }
    };
    let after_spawn = started.elapsed();
    assert!(totals.oom >= 1 && totals.max >= 1, "{totals:?}");
    let status = child.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(128 + 9),
        "the hog was not OOM-killed: {status}"
    );
    eprintln!("{TEST}: oom_kill reported {after_spawn:?} after spawning the hog; {totals:?}");
}
