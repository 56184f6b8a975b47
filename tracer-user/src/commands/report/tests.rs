//! `report` over small synthetic traces, written here line by line as `record` writes them
//! (docs/trace-format.md): the suspects, their order and verdicts, the ended processes, the
//! OOM kills and what else the trace recorded, as the replay source feeds them through the
//! pipeline.
use serde_json::{Value, json};

use super::*;
use crate::{
    detector::Verdict,
    detector::VerdictChange,
    host::identity::PodNames,
    model::table::ProcessTable,
    pipeline::sink::{Happening, SessionEnd, Sink},
};

const MIB: u64 = 1 << 20;
const POD_CGROUP: &str = "0::/kubepods.slice/kubepods-pod1a2b3c4d_5e6f_7081_92a3_b4c5d6e7f809.slice/cri-containerd-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.scope";

/// A trace as JSON Lines text, one helper per record type.
struct Trace(String);

impl Trace {
    fn new() -> Self {
        let mut t = Self(String::new());
        t.line(
            json!({"type": "header", "schema": 1, "tool": "leaktracer", "version": "0.1.0",
            "host": "node-1", "kernel": "6.1.0", "start_unix_ms": 1_700_000_000_000u64,
            "start": "2023-11-14T22:13:20.000Z", "interval_ms": 1000, "rss_source": "tracepoint",
            "page_size": 4096, "filter_pids": [], "filter_comms": []}),
        );
        t
    }

    fn line(&mut self, v: Value) -> &mut Self {
        self.0.push_str(&v.to_string());
        self.0.push('\n');
        self
    }

    fn process(&mut self, t: f64, pid: u32, comm: &str, extra: Value) -> &mut Self {
        let mut v = json!({"type": "process", "t": t, "pid": pid, "ppid": 1, "comm": comm,
            "cmdline": format!("/bin/{comm}"), "cgroup": "0::/system.slice/app.service"});
        if let (Some(o), Value::Object(e)) = (v.as_object_mut(), extra) {
            o.extend(e);
        }
        self.line(v)
    }

    /// A sample with `private` bytes of anonymous memory (the leak figure).
    fn sample(&mut self, t: f64, pid: u32, comm: &str, private: u64, exited: bool) -> &mut Self {
        let mut v = json!({"type": "sample", "t": t, "pid": pid, "comm": comm,
            "rss_anon": private, "rss_file": MIB, "rss_shmem": 0, "rss_swap": 0,
            "mapped_anon": private, "mapped_file": 0, "reserved": 0, "unmapped": 0, "released": 0,
            "brk_grown": 0, "brk_shrunk": 0, "mremap_grown": 0, "mremap_shrunk": 0,
            "calls": {"mmap": private / MIB, "munmap": 0, "brk": 0, "mremap": 0, "madvise": 0},
            "failed_calls": 0, "peak_private_bytes": private, "mmap_size_log2": [0, 0, 0, 0, 0, 0, 0, 0, 4]});
        if exited && let Some(o) = v.as_object_mut() {
            o.insert("exited".into(), json!(true));
        }
        self.line(v)
    }

    fn exit(&mut self, t: f64, pid: u32, comm: &str, private: u64) -> &mut Self {
        self.line(json!({"type": "exit", "t": t, "pid": pid, "comm": comm,
            "last_rss": {"anon": private, "file": MIB, "shmem": 0, "swap": 0},
            "peak_private_bytes": private}))
    }

    fn summary(&mut self, t: f64) -> &mut Self {
        self.line(
            json!({"type": "summary", "t": t, "end_unix_ms": 1_700_000_100_000u64,
            "rounds": 60, "samples": 0, "processes_seen": 5, "exits": 2, "oom_kills": 1,
            "dropped_records": 0, "counters": {"ringbuf_full": 0}, "ended_by": "duration",
            "top_growers": [], "suspects": []}),
        )
    }

    fn text(&self) -> String {
        self.0.clone()
    }
}

fn report(text: &str, filter: &Filter) -> Report {
    build(
        Box::new(std::io::Cursor::new(text.as_bytes().to_vec())),
        0,
        false,
        20,
        false,
        filter,
    )
    .unwrap()
    .report
}

/// One minute of a node: two leakers in the table all along (one in a pod, with a limit),
/// one that leaks and exits half-way, a steady process renamed by exec, a process born and
/// dead between two rounds, and an OOM kill, memory-cgroup events and budget decisions.
fn minute_of_a_node() -> Trace {
    let mut tr = Trace::new();
    tr.process(
        1.0,
        10,
        "fast",
        json!({"cgroup": POD_CGROUP, "limit_bytes": 1024 * MIB, "limit_cgroup": "/kubepods.slice",
            "namespace": "shop", "pod": "web-1", "container": "app",
            "pod_uid": "1a2b3c4d-5e6f-7081-92a3-b4c5d6e7f809"}),
    )
    .process(1.0, 11, "slow", json!({}))
    .process(1.0, 12, "steady", json!({}))
    .process(1.0, 13, "quitter", json!({}));
    for r in 0..60u64 {
        let t = 1.0 + r as f64;
        tr.sample(t, 10, "fast", 10 * MIB + 4 * MIB * r, false)
            .sample(t, 11, "slow", 10 * MIB + MIB * r, false);
        if r == 0 {
            tr.sample(t, 12, "steady", 20 * MIB, false);
        }
        if r < 40 {
            tr.sample(t, 13, "quitter", 10 * MIB + 2 * MIB * r, false);
        }
        if r % 10 == 0 {
            tr.line(
                json!({"type": "health", "t": t, "counters": {"ringbuf_full": 0},
                "procs_in_map": 4, "procs_capacity": 100, "own_rss_bytes": 1}),
            );
        }
        match r {
            4 => {
                tr.line(
                    json!({"type": "exec", "t": 5.5, "pid": 12, "comm": "steady2",
                    "cmdline": "/bin/steady2 --serve"}),
                );
            }
            // Born and dead between two rounds: its first line is its last.
            19 => {
                tr.process(20.25, 14, "brief", json!({}))
                    .sample(20.25, 14, "brief", 300 * MIB, true)
                    .exit(20.25, 14, "brief", 300 * MIB);
            }
            29 => {
                tr.line(
                    json!({"type": "oom_kill", "t": 30.5, "pid": 99, "comm": "victim",
                    "trigger_pid": 99, "trigger_comm": "victim", "uid": 0, "total_vm_bytes": 0,
                    "anon_rss_bytes": 200 * MIB, "file_rss_bytes": 0, "shmem_rss_bytes": 0,
                    "pgtables_bytes": 0, "oom_score_adj": 0, "cgroup": "/system.slice/app.service",
                    "cgroup_constrained": true, "cgroup_limit_bytes": 256 * MIB,
                    "history": [[28.0, 100 * MIB], [30.0, 200 * MIB]], "last_verdict": "leaking"}),
                );
                tr.line(
                    json!({"type": "memcg", "t": 31.0, "kind": "events", "ts_ms": 1,
                    "cgroup": "/system.slice/app.service",
                    "deltas": {"high": 0, "max": 1, "oom": 1, "oom_kill": 1, "oom_group_kill": 0},
                    "totals": {"high": 0, "max": 1, "oom": 1, "oom_kill": 1, "oom_group_kill": 0}}),
                );
                tr.line(json!({"type": "budget", "t": 30.2, "hook": "madvise", "action": "pause",
                    "bpf_cpu_share": 0.02, "hook_cpu_share": 0.015, "budget": 0.01, "hold_secs": 15.0}));
            }
            // Its exit: the final sample (exited) and the exit line, at the exit's time.
            39 => {
                tr.sample(40.5, 13, "quitter", 90 * MIB, true)
                    .exit(40.5, 13, "quitter", 90 * MIB);
                tr.line(json!({"type": "budget", "t": 40.2, "hook": "madvise", "action": "resume",
                    "bpf_cpu_share": 0.002, "hook_cpu_share": 0.0, "budget": 0.01, "hold_secs": 0.0}));
            }
            _ => {}
        }
    }
    tr.summary(61.0);
    tr
}

#[test]
fn suspects_are_judged_at_the_end_in_the_one_ranking() {
    let r = report(&minute_of_a_node().text(), &Filter::default());
    let ranked: Vec<(u32, &str, Verdict, bool)> = r
        .suspects
        .iter()
        .map(|row| {
            let s = &row.suspect;
            (s.pid, s.comm.as_str(), s.verdict, s.exited)
        })
        .collect();
    // Leaking first, then by slope: 4 MiB/s, the exited 2 MiB/s, 1 MiB/s. The steady one
    // and the brief one are no suspects.
    assert_eq!(
        ranked,
        vec![
            (10, "fast", Verdict::Leaking, false),
            (13, "quitter", Verdict::Leaking, true),
            (11, "slow", Verdict::Leaking, false),
        ]
    );
    let fast = &r.suspects[0];
    assert_eq!(fast.suspect.growth_bytes_per_sec, (4 * MIB) as f64);
    assert!(fast.suspect.confidence >= 0.9, "{fast:?}");
    assert_eq!(fast.suspect.since_secs, Some(1.0));
    assert_eq!(
        fast.suspect.since.as_deref(),
        Some("2023-11-14T22:13:21.000Z")
    );
    assert_eq!(fast.suspect.private_bytes, 246 * MIB);
    // What the trace recorded at first sight: limit, command line, cgroup, pod names.
    assert_eq!(fast.limit_bytes, Some(1024 * MIB));
    assert_eq!(fast.time_to_limit_secs, Some(194.5));
    assert_eq!(fast.cmdline.as_deref(), Some("/bin/fast"));
    assert!(
        fast.cgroup
            .as_deref()
            .is_some_and(|c| c.starts_with("/kubepods.slice"))
    );
    assert_eq!(
        (
            fast.names.namespace.as_deref(),
            fast.names.pod.as_deref(),
            fast.names.container.as_deref()
        ),
        (Some("shop"), Some("web-1"), Some("app"))
    );
    // 4 mmaps of 2 MiB: the percentiles are that size class (to the histogram's precision).
    assert!(
        fast.mmap_size_p50_bytes
            .is_some_and(|b| (2 * MIB..2 * MIB + MIB / 50).contains(&b)),
        "{fast:?}"
    );
    assert_eq!(
        r.suspects[1].suspect.private_bytes,
        90 * MIB,
        "its final counters"
    );
    assert_eq!(r.suspects[2].names, PodNames::default());
}

#[test]
fn ended_processes_oom_kills_and_the_rest_of_the_trace() {
    let r = report(&minute_of_a_node().text(), &Filter::default());
    assert_eq!((r.ended.count, r.ended.brief), (2, 1));
    let ended: Vec<(u32, &str, bool, f64, u64)> = r
        .ended
        .largest
        .iter()
        .map(|e| {
            (
                e.pid,
                e.comm.as_str(),
                e.brief,
                e.ended_at_secs,
                e.peak_private_bytes,
            )
        })
        .collect();
    assert_eq!(
        ended,
        vec![
            (14, "brief", true, 20.25, 300 * MIB),
            (13, "quitter", false, 40.5, 90 * MIB),
        ]
    );
    // Handed on as recorded: a trace's OOM records are post-mortems already.
    assert_eq!(r.oom_kills.len(), 1);
    assert_eq!(r.oom_kills[0].victim.pid, 99);
    assert_eq!(
        r.oom_kills[0].history,
        vec![(28.0, 100 * MIB), (30.0, 200 * MIB)]
    );
    assert_eq!(r.memory_cgroups.len(), 1);
    assert_eq!(r.memory_cgroups[0].cgroup, "/system.slice/app.service");
    assert_eq!(r.overhead_budget.len(), 1);
    assert_eq!(r.overhead_budget[0].pauses, 1);
    assert_eq!(r.overhead_budget[0].paused_secs, 10.0);
    assert_eq!(r.processes, 5);
    assert_eq!(r.samples, 60 + 60 + 1 + 40 + 1 + 1);
    assert_eq!(r.duration_secs, 61.0);
    assert!(r.summary.is_some());
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    // The exec renamed the steady process.
    let text = render_text(&r);
    assert!(
        text.contains("ENDED: 2 processes (1 lived less than one interval)"),
        "{text}"
    );
    assert!(text.contains("killed 99 (victim)"), "{text}");
}

#[test]
fn filters_apply_to_suspects_and_ended_processes() {
    let text = minute_of_a_node().text();
    let pods = report(
        &text,
        &Filter {
            namespaces: vec!["shop".into()],
            ..Filter::default()
        },
    );
    assert_eq!(
        pods.suspects
            .iter()
            .map(|s| s.suspect.pid)
            .collect::<Vec<_>>(),
        [10]
    );
    let comms = report(
        &text,
        &Filter {
            comms: vec!["quitter".into(), "brief".into()],
            ..Filter::default()
        },
    );
    assert_eq!(
        comms
            .suspects
            .iter()
            .map(|s| s.suspect.pid)
            .collect::<Vec<_>>(),
        [13]
    );
    assert_eq!(
        comms
            .ended
            .largest
            .iter()
            .map(|e| e.pid)
            .collect::<Vec<_>>(),
        [14, 13]
    );
    // Every end is still counted.
    assert_eq!(comms.ended.count, 2);
}

/// An exit the kernel had no final counters for: `record` writes the process's last
/// counters (not flagged exited) and the exit. The process has ended all the same.
#[test]
fn an_exit_without_final_counters_ends_the_process() {
    let mut tr = Trace::new();
    tr.process(1.0, 10, "leaker", json!({}));
    for r in 0..30u64 {
        tr.sample(1.0 + r as f64, 10, "leaker", 10 * MIB + MIB * r, false);
    }
    tr.sample(30.5, 10, "leaker", 39 * MIB, false)
        .exit(30.5, 10, "leaker", 39 * MIB);
    tr.process(40.0, 11, "late", json!({}))
        .sample(40.0, 11, "late", MIB, false)
        .summary(60.0);
    let r = report(&tr.text(), &Filter::default());
    assert_eq!(r.suspects.len(), 1);
    assert!(r.suspects[0].suspect.exited, "{:?}", r.suspects[0]);
    // Not an end with final counters: counted nowhere in the ended log.
    assert_eq!(r.ended.count, 0);
    assert_eq!(r.processes, 2);
}

/// A pid reused by a process outside any pod does not inherit the first one's pod names.
#[test]
fn a_reused_pid_does_not_keep_the_previous_pod_names() {
    let mut tr = Trace::new();
    tr.process(1.0, 10, "old", json!({"namespace": "shop", "pod": "web-1"}))
        .sample(1.0, 10, "old", MIB, true)
        .exit(1.0, 10, "old", MIB);
    tr.process(2.0, 10, "new", json!({}));
    for r in 0..30u64 {
        tr.sample(2.0 + r as f64, 10, "new", 10 * MIB + MIB * r, false);
    }
    tr.summary(31.5);
    let r = report(&tr.text(), &Filter::default());
    assert_eq!(r.suspects.len(), 1);
    assert_eq!(
        (
            r.suspects[0].suspect.comm.as_str(),
            r.suspects[0].names.namespace.as_deref()
        ),
        ("new", None)
    );
    let shop = report(
        &tr.text(),
        &Filter {
            namespaces: vec!["shop".into()],
            ..Filter::default()
        },
    );
    assert!(shop.suspects.is_empty(), "{:?}", shop.suspects);
}

#[test]
fn damaged_traces_are_reported_as_such() {
    let mut tr = minute_of_a_node();
    let whole = tr.text();
    // Killed before its summary: what was written is reported, with a warning.
    let cut: String = whole
        .lines()
        .filter(|l| !l.contains("\"summary\""))
        .flat_map(|l| [l, "\n"])
        .collect();
    let r = report(&cut, &Filter::default());
    assert_eq!(r.duration_secs, 60.0, "the last sample");
    assert_eq!(r.suspects.len(), 3);
    assert!(
        r.warnings.iter().any(|w| w.starts_with("no summary line")),
        "{:?}",
        r.warnings
    );
    // Two traces concatenated: refused, unless --lenient, which warns.
    tr.line(serde_json::from_str(whole.lines().next().unwrap()).unwrap());
    let twice = tr.text();
    let input = || Box::new(std::io::Cursor::new(twice.as_bytes().to_vec()));
    let err = build(input(), 0, false, 20, false, &Filter::default())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("a second header"), "{err}");
    let r = build(input(), 0, true, 20, false, &Filter::default())
        .unwrap()
        .report;
    assert!(
        r.warnings.iter().any(|w| w.contains("a second header")),
        "{:?}",
        r.warnings
    );
}

/// The replay source through the pipeline into a sink that follows verdicts: they are
/// refreshed round by round as in a live session.
#[test]
fn a_replay_refreshes_verdicts_round_by_round() {
    #[derive(Default)]
    struct Verdicts(Vec<(f64, u32, Verdict)>);
    impl Sink for Verdicts {
        fn handle(
            &mut self,
            _ctx: &mut Context,
            table: &ProcessTable,
            what: Happening<'_>,
        ) -> anyhow::Result<()> {
            if let Happening::Round { snap, verdicts, .. } = what {
                let t = table.session_time(snap.t_mono);
                self.0.extend(
                    verdicts
                        .iter()
                        .map(|v: &VerdictChange| (t, v.pid, v.now.verdict)),
                );
            }
            Ok(())
        }
        fn finish(
            &mut self,
            _: &mut Context,
            _: &ProcessTable,
            _: SessionEnd,
        ) -> anyhow::Result<()> {
            Ok(())
        }
    }
    let text = minute_of_a_node().text();
    let mut source = ReplaySource::open(
        Box::new(std::io::Cursor::new(text.into_bytes())),
        0,
        false,
        false,
    )
    .unwrap();
    let mut sink = Verdicts::default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut session = Session::replay(&mut source, Context::offline());
    let reason = runtime.block_on(session.run(&mut sink)).unwrap();
    assert_eq!(reason, crate::pipeline::sink::EndReason::EndOfTrace);
    let fast: Vec<(f64, Verdict)> = sink
        .0
        .iter()
        .filter(|(_, pid, _)| *pid == 10)
        .map(|(t, _, v)| (*t, *v))
        .collect();
    assert_eq!(fast.last().map(|x| x.1), Some(Verdict::Leaking), "{fast:?}");
    assert!(fast.len() <= 3, "a verdict change is said once: {fast:?}");
    // The steady process never changed after its first sample: judged, never a suspect.
    assert!(
        sink.0
            .iter()
            .all(|(_, pid, v)| *pid != 12 || !v.is_growth()),
        "{:?}",
        sink.0
    );
}

/// The JSON shape of `report --format json`'s suspects: field names and order.
#[test]
fn suspect_json_shape() {
    let r = report(&minute_of_a_node().text(), &Filter::default());
    let fast = serde_json::to_string(&r.suspects[0]).unwrap();
    let reason = &r.suspects[0].suspect.reason;
    let p99 = r.suspects[0].mmap_size_p99_bytes.unwrap();
    let p50 = r.suspects[0].mmap_size_p50_bytes.unwrap();
    assert_eq!(
        fast,
        format!(
            r#"{{"pid":10,"comm":"fast","verdict":"leaking","confidence":1.0,"growth_bytes_per_sec":4194304.0,"since_secs":1.0,"since":"2023-11-14T22:13:21.000Z","private_bytes":257949696,"peak_private_bytes":257949696,"reason":"{reason}","exited":false,"limit_bytes":1073741824,"time_to_limit_secs":194.5,"mmap_size_p50_bytes":{p50},"mmap_size_p99_bytes":{p99},"cmdline":"/bin/fast","cgroup":"/kubepods.slice/kubepods-pod1a2b3c4d_5e6f_7081_92a3_b4c5d6e7f809.slice/cri-containerd-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.scope","namespace":"shop","pod":"web-1","container":"app","risk":{{"at_risk":false,"kind":null,"peak_ratio":0.24,"peak_bytes":257949696,"limit_bytes":1073741824,"recent_peaks_bytes":[257949696],"reason":"Peaks reach 24% of the 1024 MiB limit (peak: 246 MiB)"}},"go":null}}"#
        )
    );
    let slow = serde_json::to_string(&r.suspects[2]).unwrap();
    let reason = &r.suspects[2].suspect.reason;
    assert_eq!(
        slow,
        format!(
            r#"{{"pid":11,"comm":"slow","verdict":"leaking","confidence":1.0,"growth_bytes_per_sec":1048576.0,"since_secs":1.0,"since":"2023-11-14T22:13:21.000Z","private_bytes":72351744,"peak_private_bytes":72351744,"reason":"{reason}","exited":false,"limit_bytes":null,"time_to_limit_secs":null,"mmap_size_p50_bytes":{p50},"mmap_size_p99_bytes":{p99},"cmdline":"/bin/slow","cgroup":"/system.slice/app.service","risk":null,"go":null}}"#
        )
    );
}

/// A webhook that rises to 118 MiB every 8 s and falls back, in a 128 MiB memory cgroup: not
/// a suspect (it is not growing), but at risk, with its peaks; under 512 MiB it is not.
#[test]
fn a_sawtooth_near_its_cgroup_limit_is_at_risk_and_not_a_suspect() {
    for (limit_mib, at_risk) in [(128, true), (512, false)] {
        let mut tr = Trace::new();
        tr.process(
            1.0,
            20,
            "webhook",
            json!({"cgroup": "4:memory:/webhook", "limit_bytes": limit_mib * MIB,
                "limit_cgroup": "/webhook"}),
        );
        for r in 0..64u64 {
            let private = if r % 8 == 5 { 118 * MIB } else { 40 * MIB };
            tr.sample(1.0 + r as f64, 20, "webhook", private, false);
        }
        let r = report(&tr.text(), &Filter::default());
        assert!(r.suspects.is_empty(), "{:?}", r.suspects);
        assert_eq!(r.at_risk.len(), usize::from(at_risk), "{:?}", r.at_risk);
        let text = render_text(&r);
        if at_risk {
            let row = &r.at_risk[0];
            assert_eq!(row.risk.peak_ratio, 0.922);
            assert!(!row.verdict.is_growth(), "{:?}", row.verdict);
            assert_eq!(
                row.risk.reason,
                "Peaks reach 92% of the 128 MiB limit (last 3 peaks: 118, 118, 118 MiB)"
            );
            assert!(
                text.contains("AT RISK OF MEETING THE MEMORY LIMIT"),
                "{text}"
            );
            assert!(
                text.contains(&format!(
                    "webhook          {:<12}   92%",
                    row.verdict.as_str()
                )),
                "{text}"
            );
            let json = serde_json::to_value(&r).unwrap();
            assert_eq!(json["at_risk"][0]["risk"]["kind"], "near_limit");
        } else {
            assert!(!text.contains("AT RISK"), "{text}");
        }
    }
}

#[test]
fn a_trace_with_stacks_names_where_each_suspect_grows_and_draws_them() {
    let mut tr = Trace::new();
    tr.process(1.0, 10, "fast", json!({}))
        .process(1.0, 11, "slow", json!({}));
    let frame = |name: &str, line: u32| {
        json!({"address": 0x1000 + line, "function": name, "file": "/src/app/leak.c",
            "line": line, "module": "/usr/bin/app", "build_id": "ab12", "offset": 0x100 + line})
    };
    for r in 0..60u64 {
        let t = 1.0 + r as f64;
        tr.sample(t, 10, "fast", 10 * MIB + 4 * MIB * r, false)
            .sample(t, 11, "slow", 10 * MIB + MIB * r, false);
        if r == 5 {
            // First report: frames with every stack.
            tr.line(json!({"type": "stacks", "t": t, "mean_bytes": 524288,
                "stacks": [
                    {"pid": 10, "id": 1, "samples": 3,
                     "frames": [frame("malloc", 1), frame("fill", 20), frame("keeper", 30), frame("main", 40)]},
                    {"pid": 10, "id": 2, "samples": 1,
                     "frames": [frame("fill", 20), frame("churner", 35), frame("main", 40)]},
                    {"pid": 11, "id": 3, "samples": 2,
                     "frames": [frame("grow", 7), frame("main", 41)]}],
                "counters": {"faults": 100, "samples": 6, "truncated": 0, "collisions": 0,
                    "stacks_full": 0, "stack_errors": 1},
                "targets": 2, "targets_refused": 0}));
        }
        if r == 30 {
            // Later: cumulative samples of the stacks that changed, without frames.
            tr.line(json!({"type": "stacks", "t": t, "mean_bytes": 524288,
                "stacks": [{"pid": 10, "id": 1, "samples": 37}],
                "counters": {"faults": 900, "samples": 40, "truncated": 2, "collisions": 0,
                    "stacks_full": 0, "stack_errors": 1},
                "targets": 2, "targets_refused": 0}));
        }
    }
    tr.summary(61.0);
    let built = build(
        Box::new(std::io::Cursor::new(tr.text().into_bytes())),
        0,
        false,
        20,
        false,
        &Filter::default(),
    )
    .unwrap();
    let r = &built.report;
    let fast = r.suspects.iter().find(|s| s.suspect.pid == 10).unwrap();
    assert_eq!(fast.sites[0].function, "fill");
    assert_eq!(fast.sites[0].callers, ["keeper", "main"]);
    assert_eq!(fast.sites[0].samples, 37);
    assert_eq!(fast.sites[0].bytes, 37 * 524288);
    assert_eq!(fast.sites[1].callers, ["churner", "main"]);
    let slow = r.suspects.iter().find(|s| s.suspect.pid == 11).unwrap();
    assert_eq!(slow.sites[0].function, "grow");
    let g = r.growth_sites.as_ref().unwrap();
    assert_eq!(
        (g.samples, g.kernel.truncated, g.kernel.dropped()),
        (40, 2, 1)
    );
    let text = render_text(r);
    assert!(
        text.contains("grows at") && text.contains("fill (app/leak.c:20) <- keeper <- main"),
        "{text}"
    );
    assert!(text.contains("GROWTH SITES: 40 samples"), "{text}");
    // The flame graph's lines: each process's tower, outermost first, in bytes.
    assert!(
        built.flame_lines.contains(&format!(
            "fast_(10);main;keeper;fill;malloc {}",
            37 * 524288
        )),
        "{:?}",
        built.flame_lines
    );
    // A trace without stacks has no sites and no sampling section.
    let plain = report(&minute_of_a_node().text(), &Filter::default());
    assert!(plain.growth_sites.is_none());
    assert!(plain.suspects.iter().all(|s| s.sites.is_empty()));
}
