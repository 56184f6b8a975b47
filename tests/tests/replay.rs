//! `report` on a recorded trace lists exactly the suspects `record` gave live: the same
//! processes, in the same order, with the same verdicts, confidences, slopes and start times.
//! Both judge through the one suspect list (leaktracer's model::suspect) at the same moment,
//! and the replayed table holds the very series the live one did (session time at millisecond
//! precision on both sides). Real processes: two leakers at different rates, one that leaks
//! and exits mid-recording, and a busy process that does not grow.
// An integration test crate: a panic (unwrap, expect) is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use std::time::Duration;

use leaktracer_tests::*;

const LEAKER: &str = env!("CARGO_BIN_EXE_leaker");
const STEADY: &str = env!("CARGO_BIN_EXE_steady");

/// What must agree between the two lists, per suspect.
fn key(s: &Value) -> (u64, String, String, f64, f64, Option<f64>) {
    (
        s["pid"].as_u64().unwrap_or(0),
        s["comm"].as_str().unwrap_or_default().to_string(),
        s["verdict"].as_str().unwrap_or_default().to_string(),
        s["confidence"].as_f64().unwrap_or(-1.0),
        s["growth_bytes_per_sec"].as_f64().unwrap_or(-1.0),
        // `since` in the summary, `since_secs` in the report: session seconds either way.
        s.get("since_secs")
            .or_else(|| s.get("since"))
            .and_then(Value::as_f64),
    )
}

#[test]
fn report_lists_exactly_the_suspects_record_gave_live() {
    let Some(_serial) = privileged() else { return };
    let rec = Recording::start(
        "replay",
        &["--interval", "1s", "--comm", "leaker", "--comm", "steady"],
    );
    let fast = Proc::spawn(workload(LEAKER).arg("2048"));
    let slow = Proc::spawn(workload(LEAKER).arg("384"));
    let short = Proc::spawn(workload(LEAKER).arg("4096").arg("15"));
    let _steady = Proc::spawn(workload(STEADY).arg("32"));
    let (fast_pid, short_pid) = (fast.pid(), short.pid());
    // Until the fast leaker is judged leaking and the short one has leaked and ended (bounded;
    // no sleep stands in for either).
    let ready = wait_until(Duration::from_secs(120), || {
        let t = read_trace(&rec.path);
        let leaking = t.iter().any(|r| {
            r["type"] == "verdict"
                && r["pid"].as_u64() == Some(u64::from(fast_pid))
                && r["verdict"] == "leaking"
        });
        let ended = t
            .iter()
            .any(|r| r["type"] == "exit" && r["pid"].as_u64() == Some(u64::from(short_pid)));
        (leaking && ended).then_some(())
    });
    // A few more rounds: the slow leaker's verdict moves on, the ended one is in the past.
    std::thread::sleep(Duration::from_secs(5));
    let path = rec.path.clone();
    let trace = rec.stop();
    drop((fast, slow, short));
    assert!(
        ready.is_some(),
        "within 120 s: the fast leaker judged leaking and the short one ended"
    );
    let summary = trace
        .iter()
        .rfind(|r| r["type"] == "summary")
        .expect("summary line");
    let live: Vec<_> = summary["suspects"]
        .as_array()
        .expect("summary suspects")
        .iter()
        .map(key)
        .collect();
    let report = report_json(&path, &[]);
    let offline: Vec<_> = report["suspects"]
        .as_array()
        .expect("report suspects")
        .iter()
        .map(key)
        .collect();
    eprintln!("live: {live:?}\nreport: {offline:?}");
    assert!(
        live.iter()
            .any(|s| s.0 == u64::from(fast_pid) && s.2 == "leaking"),
        "the fast leaker is a live suspect: {live:?}"
    );
    assert!(
        live.iter().any(|s| s.0 == u64::from(short_pid)),
        "the leaker that ended is still a suspect: {live:?}"
    );
    assert_eq!(
        live, offline,
        "report must list exactly record's live suspects, in the same order"
    );
}
