//! The limit-risk judgement for real: a process that is not leaking but surges to ~118 MiB
//! every few seconds and falls back, in a 128 MiB memory cgroup (v1 on this host), is flagged
//! at risk with its peak ratio and never called leaking; the same shape under a 512 MiB limit
//! is not at risk. Seen by `record` (samples' `risk`, `risk` records), `report` on that trace
//! and `top --once --format json`.
// An integration test crate: a panic (unwrap, expect) is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use std::{process::Stdio, time::Duration};

use leaktracer_tests::*;

const SURGER: &str = env!("CARGO_BIN_EXE_surger");

/// A surger in its own memory cgroup, ready (its base resident).
fn surger_in(cg: &MemCgroup) -> Proc {
    let mut p = Proc::spawn(cg.command(SURGER, &["30", "118"]).stdout(Stdio::piped()));
    p.wait_for_line("surging", Duration::from_secs(30));
    p
}

fn of(trace: &[Value], kind: &str, pid: u32) -> Vec<Value> {
    trace
        .iter()
        .filter(|r| r["type"] == kind && r["pid"].as_u64() == Some(u64::from(pid)))
        .cloned()
        .collect()
}

/// The latest `risk` of `pid`'s samples that has seen at least three surges (three peaks of
/// 100 MiB or more), if any yet.
fn risk_after_three_surges(trace: &[Value], pid: u32) -> Option<Value> {
    of(trace, "sample", pid).into_iter().rev().find_map(|s| {
        let risk = s.get("risk")?.clone();
        let peaks = risk["recent_peaks_bytes"].as_array()?;
        (peaks.len() >= 3 && peaks.iter().all(|p| p.as_u64().unwrap_or(0) >= 100 * MIB))
            .then_some(risk)
    })
}

#[test]
fn surging_process_near_its_cgroup_limit_is_at_risk_and_never_leaking() {
    let Some(_serial) = privileged() else { return };
    let tight = MemCgroup::v1("risk-128", 128 * MIB);
    let roomy = MemCgroup::v1("risk-512", 512 * MIB);
    let near = surger_in(&tight);
    let far = surger_in(&roomy);
    let (near_pid, far_pid) = (near.pid(), far.pid());
    let pids = [
        "--pid".to_string(),
        near_pid.to_string(),
        "--pid".to_string(),
        far_pid.to_string(),
    ];
    let pid_args: Vec<&str> = pids.iter().map(String::as_str).collect();
    let mut args = vec!["--interval", "500ms"];
    args.extend(&pid_args);
    let rec = Recording::start("limit-risk", &args);

    // Both have been seen through three surges, and the tight one was flagged: conditions,
    // not a sleep (a surge takes ~5 s; 180 s is generous on a loaded machine).
    let seen = wait_until(Duration::from_secs(180), || {
        let trace = std::fs::read_to_string(&rec.path).ok()?;
        let trace: Vec<Value> = trace
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        let started = of(&trace, "risk", near_pid)
            .into_iter()
            .find(|r| r["risk"]["at_risk"] == true)?;
        Some((
            started,
            risk_after_three_surges(&trace, near_pid)?,
            risk_after_three_surges(&trace, far_pid)?,
        ))
    });
    let (started, near_risk, far_risk) = seen
        .expect("within 180 s: a risk record for the 128 MiB surger and three surges of each seen");
    eprintln!("risk started: {started}\nnear: {near_risk}\nfar: {far_risk}");

    // The tight one: at risk, its peaks ~118 of 128 MiB (92%; page-level jitter aside).
    let ratio = started["risk"]["peak_ratio"].as_f64().unwrap();
    assert!(
        (0.85..=1.0).contains(&ratio),
        "peak ratio {ratio}: {started}"
    );
    assert_eq!(started["risk"]["limit_bytes"].as_u64(), Some(128 * MIB));
    assert_eq!(started["risk"]["kind"], "near_limit");
    // Flagged from its first peak on; after three surges the reason quotes them.
    assert_eq!(near_risk["at_risk"], true, "{near_risk}");
    let reason = near_risk["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("Peaks reach 9")
            && reason.contains("% of the 128 MiB limit (last 3 peaks: 11"),
        "{reason}"
    );
    // The roomy one: the same shape, 23% of its limit, never at risk.
    assert_eq!(far_risk["at_risk"], false, "{far_risk}");
    assert_eq!(far_risk["limit_bytes"].as_u64(), Some(512 * MIB));
    let far_ratio = far_risk["peak_ratio"].as_f64().unwrap();
    assert!((0.19..=0.26).contains(&far_ratio), "{far_risk}");

    // top sees the same, in its JSON rows and header count (a few surges in 20 s).
    let doc = top_once(20, &{
        let mut a = vec!["--interval", "500ms"];
        a.extend(&pid_args);
        a
    });
    let near_row = row_of(&doc, near_pid).expect("top lists the tight surger");
    let far_row = row_of(&doc, far_pid).expect("top lists the roomy surger");
    assert_eq!(near_row["risk"]["at_risk"], true, "{near_row}");
    assert_eq!(far_row["risk"]["at_risk"], false, "{far_row}");
    assert_ne!(near_row["verdict"], "leaking", "{near_row}");

    let path = rec.path.clone();
    let trace = rec.stop();
    // Never called leaking, either of them, at any moment of the recording.
    for pid in [near_pid, far_pid] {
        let leaking: Vec<Value> = of(&trace, "verdict", pid)
            .into_iter()
            .filter(|v| v["verdict"] == "leaking")
            .collect();
        assert!(leaking.is_empty(), "pid {pid} called leaking: {leaking:?}");
    }
    assert!(
        of(&trace, "risk", far_pid).is_empty(),
        "the roomy surger was never at risk"
    );

    // report on the trace: the tight one in `at_risk`, not a suspect; the roomy one absent.
    let report = report_json(&path, &[]);
    let at_risk: Vec<u64> = report["at_risk"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["pid"].as_u64())
        .collect();
    assert!(
        at_risk.contains(&u64::from(near_pid)),
        "{}",
        report["at_risk"]
    );
    assert!(
        !at_risk.contains(&u64::from(far_pid)),
        "{}",
        report["at_risk"]
    );
    let suspects = report["suspects"].as_array().unwrap();
    assert!(
        suspects
            .iter()
            .all(|s| s["pid"].as_u64() != Some(u64::from(near_pid)) || s["verdict"] != "leaking"),
        "{suspects:?}"
    );
    drop((near, far));
}

/// The body of GET /metrics on 127.0.0.1:`port`, if it answers.
fn metrics(port: u16) -> Option<String> {
    http_get(port, "/metrics")
}

/// The daemon says when risk starts and when it ends (here: the limit is raised from 128 to
/// 512 MiB under the surging process), and serves the peak over the limit as
/// leaktracer_limit_headroom_ratio.
#[test]
fn daemon_reports_risk_start_end_and_headroom() {
    let Some(_serial) = privileged() else { return };
    let tight = MemCgroup::v1("risk-daemon", 128 * MIB);
    let surger = surger_in(&tight);
    let pid = surger.pid();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut daemon = start_attached(&["daemon", "--listen", &listen, "--interval", "500ms"]);
    let rx = json_lines(daemon.0.stdout.take().expect("piped"), &[]);
    let risk_event = |at_risk: bool, secs: u64| -> Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let v = rx.recv_timeout(left).unwrap_or_else(|_| {
                panic!("no daemon risk event (at_risk {at_risk}) for pid {pid} within {secs} s")
            });
            if v["type"] == "risk"
                && v["pid"].as_u64() == Some(u64::from(pid))
                && v["risk"]["at_risk"] == at_risk
            {
                return v;
            }
        }
    };
    let started = risk_event(true, 120);
    eprintln!("started: {started}");
    assert_eq!(started["risk"]["limit_bytes"].as_u64(), Some(128 * MIB));
    let ratio = started["risk"]["peak_ratio"].as_f64().unwrap();
    assert!((0.85..=1.0).contains(&ratio), "{started}");

    // The gauge: the peak over the limit, for the surger's (unlabelled) group.
    let gauge = wait_until(Duration::from_secs(30), || {
        metrics(port)?
            .lines()
            .find(|l| l.starts_with("leaktracer_limit_headroom_ratio{"))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .filter(|v| *v >= 0.85)
    });
    assert!(
        gauge.is_some_and(|v| v <= 1.0),
        "leaktracer_limit_headroom_ratio near 0.92 served: {gauge:?}"
    );

    // More room: the next peaks are 23% of the new limit, and the risk ends.
    std::fs::write(
        tight.dir.join("memory.limit_in_bytes"),
        (512 * MIB).to_string(),
    )
    .expect("raising the limit");
    let ended = risk_event(false, 120);
    eprintln!("ended: {ended}");
    assert_eq!(ended["risk"]["limit_bytes"].as_u64(), Some(512 * MIB));
    assert_eq!(ended["risk"]["kind"], Value::Null);
    daemon.signal(libc::SIGTERM);
    let status = daemon.0.wait().expect("waiting for the daemon");
    assert!(status.success(), "daemon exited with {status}");
    drop(surger);
}
