//! Kubernetes identity and `daemon` mode against real cgroups: a leaking process placed in a
//! cgroup with a Kubernetes-shaped path, with the kubelet's /var/log/pods directory under a
//! test host root, is reported with its pod UID, container ID, namespace, pod and container
//! name; `daemon` serves /metrics that parse as Prometheus text and stops cleanly on SIGTERM.
// An integration test crate: a panic (unwrap, expect) is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::TcpStream,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use leaktracer_tests::*;

const LEAKER: &str = env!("CARGO_BIN_EXE_leaker");
const POD_UID: &str = "3f1c2a7e-5b6d-4e8f-9a0b-1c2d3e4f5a6b";

struct FakeNode {
    host_root: std::path::PathBuf,
    cgroup_dir: std::path::PathBuf,
    container_id: String,
}

impl FakeNode {
    /// A v1 memory cgroup at kubepods/burstable/pod<uid>/<64-hex id> and a host root whose
    /// proc/ and sys/ are the real ones, with a kubelet log directory for the pod.
    fn new() -> Self {
        let container_id = format!("{:0>64}", format!("{:x}", std::process::id()) + "abcdef");
        let cgroup_dir = std::path::PathBuf::from(format!(
            "/sys/fs/cgroup/memory/kubepods/burstable/pod{POD_UID}/{container_id}"
        ));
        std::fs::create_dir_all(&cgroup_dir)
            .unwrap_or_else(|e| panic!("creating {}: {e}", cgroup_dir.display()));
        let host_root = std::env::temp_dir().join(format!("leaktracer-k8s-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&host_root);
        std::fs::create_dir_all(
            host_root.join(format!("var/log/pods/shop_web-7f9c_{POD_UID}/app")),
        )
        .unwrap();
        std::fs::write(
            host_root.join(format!("var/log/pods/shop_web-7f9c_{POD_UID}/app/0.log")),
            "",
        )
        .unwrap();
        std::os::unix::fs::symlink("/proc", host_root.join("proc")).unwrap();
        std::os::unix::fs::symlink("/sys", host_root.join("sys")).unwrap();
        Self {
            host_root,
            cgroup_dir,
            container_id,
        }
    }

    fn leaker(&self) -> Proc {
        let mut c = Command::new("sh");
        c.arg("-c")
            .arg(format!(
                "echo $$ > {}/cgroup.procs && exec {LEAKER} 4096",
                self.cgroup_dir.display()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        Proc::spawn(&mut c)
    }
}

impl Drop for FakeNode {
    fn drop(&mut self) {
        for pid in std::fs::read_to_string(self.cgroup_dir.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
        {
            if let Ok(pid) = pid.trim().parse::<i32>() {
                // SAFETY: killing our own test process.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        std::thread::sleep(Duration::from_millis(300));
        let _ = std::fs::remove_dir(&self.cgroup_dir);
        let _ = std::fs::remove_dir(self.cgroup_dir.parent().unwrap());
        let _ = std::fs::remove_dir_all(&self.host_root);
    }
}

fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).ok()?;
    let code = resp.split_whitespace().nth(1)?.parse().ok()?;
    let body = resp
        .split_once("\r\n\r\n")
        .map(|x| x.1.to_string())
        .unwrap_or_default();
    Some((code, body))
}

/// promtool (2.42) checks the classic text format: drop the OpenMetrics-only lines (# UNIT,
/// # EOF) and name each counter's HELP and TYPE after its `_total` sample, as the classic
/// format does (OpenMetrics names the family without the suffix).
fn openmetrics_to_classic(body: &str) -> String {
    let counters: Vec<&str> = body
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    body.lines()
        .filter(|l| !l.starts_with("# UNIT") && *l != "# EOF")
        .map(|l| {
            for prefix in ["# HELP ", "# TYPE "] {
                if let Some(rest) = l.strip_prefix(prefix) {
                    let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                    if counters.contains(&name) && !name.ends_with("_total") {
                        return format!("{prefix}{name}_total {tail}\n");
                    }
                }
            }
            format!("{l}\n")
        })
        .collect()
}

#[test]
fn daemon_serves_metrics_with_pod_labels_and_stops_on_sigterm() {
    let Some(_serial) = privileged() else { return };
    let node = FakeNode::new();
    let port = 19000 + (std::process::id() % 1000) as u16;
    let leaker = node.leaker();
    let mut daemon = Proc::spawn(
        Command::new(leaktracer())
            .args([
                "daemon",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--top",
                "10",
                "--host-root",
            ])
            .arg(&node.host_root)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit()),
    );
    let ready = wait_until(Duration::from_secs(30), || {
        http_get(port, "/readyz").filter(|(c, _)| *c == 200)
    });
    assert!(ready.is_some(), "daemon not ready within 30 s");
    assert_eq!(http_get(port, "/healthz").map(|r| r.0), Some(200));
    // Let the verdict form (fine series: seconds at 4 MiB/s).
    let want = "leaktracer_leak_verdict{namespace=\"shop\",pod=\"web-7f9c\",container=\"app\",comm=\"leaker\",verdict=\"leaking\"} 1";
    let body = wait_until(Duration::from_secs(40), || {
        http_get(port, "/metrics")
            .map(|r| r.1)
            .filter(|b| b.contains(want))
    })
    .unwrap_or_else(|| {
        panic!(
            "no leaking series for the pod's container within 40 s:\n{}",
            http_get(port, "/metrics").map(|r| r.1).unwrap_or_default()
        )
    });
    assert!(body.contains("leaktracer_container_private_bytes{namespace=\"shop\",pod=\"web-7f9c\",container=\"app\"}"), "{body}");
    assert!(body.contains("leaktracer_container_growth_bytes_per_second{namespace=\"shop\",pod=\"web-7f9c\",container=\"app\"}"), "{body}");
    assert!(
        !body.contains(&format!("pid=\"{}\"", leaker.pid())),
        "no pid labels"
    );
    // It parses as Prometheus text (promtool from Debian's prometheus package).
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (apt-get install prometheus; cargo xtask test installs it)");
    let classic = openmetrics_to_classic(&body);
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(classic.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    let lint =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    // Its exit code is the verdict: 1 for text that does not parse, 3 for lint problems (a
    // counter without `_total`, a missing HELP); grepping its output for "error" missed the
    // lint problems, which it words without that word.
    assert!(
        out.status.success(),
        "promtool check metrics: {} {lint}\n{classic}",
        out.status
    );
    // SIGTERM: clean exit, quickly, no programs left behind.
    let started = Instant::now();
    daemon.signal(libc::SIGTERM);
    let status = loop {
        if let Some(s) = daemon.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "daemon did not stop within 5 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    eprintln!("daemon stopped {:?} after SIGTERM", started.elapsed());
    assert!(status.success(), "daemon exit status {status}");
    let mut stdout = String::new();
    BufReader::new(daemon.0.stdout.take().unwrap())
        .read_to_string(&mut stdout)
        .unwrap();
    let verdicts: Vec<Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|v: &Value| v["type"] == "verdict")
        .collect();
    assert!(
        verdicts.iter().any(
            |v| v["pid"].as_u64() == Some(u64::from(leaker.pid())) && v["verdict"] == "leaking"
        ),
        "JSON verdict events on stdout: {stdout}"
    );
    let _ = node.container_id.len();
}

/// `top --once --format json` and the trace carry the pod identity too.
#[test]
fn top_and_trace_show_the_pod_identity() {
    let Some(_serial) = privileged() else { return };
    let node = FakeNode::new();
    let leaker = node.leaker();
    let out = Command::new(leaktracer())
        .args(["--host-root"])
        .arg(&node.host_root)
        .args(["top", "--once", "--format", "json", "--duration", "6s"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let row = row_of(&doc, leaker.pid()).unwrap_or_else(|| panic!("leaker missing: {doc:#}"));
    assert_eq!(row["pod_uid"], POD_UID, "{row}");
    assert_eq!(row["container_id"], node.container_id.as_str(), "{row}");
    assert_eq!(row["namespace"], "shop");
    assert_eq!(row["pod"], "web-7f9c");
    assert_eq!(row["container"], "app");
    assert_eq!(row["qos"], "Burstable");
    let _ = BufReader::new(&b""[..]).lines();
}

/// The trace's process records and the OOM record carry the pod identity, and the
/// --namespace/--pod/--container filters select the pod's processes.
#[test]
fn trace_and_oom_record_carry_the_pod_identity() {
    let Some(_serial) = privileged() else { return };
    let node = FakeNode::new();
    std::fs::write(
        node.cgroup_dir.join("memory.limit_in_bytes"),
        (64 * MIB).to_string(),
    )
    .unwrap();
    let _ = std::fs::write(node.cgroup_dir.join("memory.swappiness"), "0");
    let dir = std::env::temp_dir().join(format!("leaktracer-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("k8s.jsonl");
    let mut rec = Proc::spawn(
        Command::new(leaktracer())
            .arg("--host-root")
            .arg(&node.host_root)
            .args([
                "record",
                "--interval",
                "250ms",
                "--namespace",
                "shop",
                "--pod",
                "web-7f9c",
                "--container",
                "app",
                "--output",
            ])
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null()),
    );
    let started = wait_until(Duration::from_secs(30), || {
        std::fs::read_to_string(&path)
            .ok()
            .filter(|t| t.contains("\"header\""))
    });
    assert!(started.is_some(), "record did not start");
    let outsider = Proc::spawn(Command::new(LEAKER).arg("1024").stdin(Stdio::null()));
    // 4 MiB/s into a 64 MiB limit: OOM-killed after ~15 s.
    let mut leaker = node.leaker();
    let _ = leaker.0.wait();
    std::thread::sleep(Duration::from_secs(1));
    rec.signal(libc::SIGINT);
    assert!(rec.0.wait().unwrap().success());
    let trace = read_trace(&path);
    let proc_rec = trace
        .iter()
        .find(|r| r["type"] == "process" && r["pid"].as_u64() == Some(u64::from(leaker.pid())))
        .unwrap_or_else(|| panic!("no process record for the pod's leaker"));
    assert_eq!(proc_rec["namespace"], "shop", "{proc_rec}");
    assert_eq!(proc_rec["pod"], "web-7f9c");
    assert_eq!(proc_rec["container"], "app");
    assert_eq!(proc_rec["pod_uid"], POD_UID);
    assert_eq!(proc_rec["container_id"], node.container_id.as_str());
    assert!(
        !trace
            .iter()
            .any(|r| r["type"] == "sample" && r["pid"].as_u64() == Some(u64::from(outsider.pid()))),
        "filters keep other processes out"
    );
    let oom = trace
        .iter()
        .find(|r| r["type"] == "oom_kill")
        .unwrap_or_else(|| panic!("no oom_kill record"));
    assert_eq!(oom["pid"].as_u64(), Some(u64::from(leaker.pid())));
    assert_eq!(oom["namespace"], "shop", "{oom}");
    assert_eq!(oom["pod"], "web-7f9c");
    assert_eq!(oom["container"], "app");
    assert_eq!(oom["pod_uid"], POD_UID);
    assert_eq!(oom["cgroup_limit_bytes"].as_u64(), Some(64 * MIB));
    // Offline: the report filters by the recorded names and shows them.
    let report = report_json(&path, &["--namespace", "shop"]);
    let suspects = report["suspects"].as_array().unwrap();
    let s = suspects
        .iter()
        .find(|s| s["pid"].as_u64() == Some(u64::from(leaker.pid())))
        .unwrap_or_else(|| panic!("leaker not in the report: {report:#}"));
    assert_eq!(
        (
            s["namespace"].as_str(),
            s["pod"].as_str(),
            s["container"].as_str()
        ),
        (Some("shop"), Some("web-7f9c"), Some("app"))
    );
    assert!(
        suspects.iter().all(|s| s["namespace"] == "shop"),
        "only the namespace's processes: {suspects:?}"
    );
    assert_eq!(report["oom_kills"].as_array().map(Vec::len), Some(1));
}

/// `daemon --pid A`: verdict lines (and so growth profiles) for A only, though another
/// process leaks just as fast beside it.
#[test]
fn the_daemon_reports_only_the_processes_its_filter_selects() {
    let Some(_serial) = privileged() else { return };
    let selected = Proc::spawn(workload(LEAKER).arg("4096"));
    let other = Proc::spawn(workload(LEAKER).arg("4096"));
    let port = free_port();
    let mut daemon = Proc::spawn(
        Command::new(leaktracer())
            .args(["daemon", "--interval", "1s", "--auto-profiles", "0"])
            .arg("--pid")
            .arg(selected.pid().to_string())
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit()),
    );
    let rx = json_lines(daemon.0.stdout.take().unwrap(), &["verdict"]);
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !lines
        .iter()
        .any(|v: &serde_json::Value| v["pid"] == selected.pid() && v["verdict"] == "leaking")
    {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(v) => lines.push(v),
            Err(_) => panic!(
                "no leaking verdict line for the selected {} within 60 s: {lines:?}",
                selected.pid()
            ),
        }
    }
    // The other leaker would be judged within a round or two of the first.
    std::thread::sleep(Duration::from_secs(5));
    lines.extend(rx.try_iter());
    eprintln!("daemon --pid {}: {lines:#?}", selected.pid());
    assert!(
        lines.iter().all(|v| v["pid"] == selected.pid()),
        "only the selected process {} has verdict lines (the other is {}): {lines:?}",
        selected.pid(),
        other.pid()
    );
}
