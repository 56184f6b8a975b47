//! Memory no process owns, for real: zombie memory cgroups (removed, still held by their page
//! cache) are counted against the kernel's own count, named by the cgroup tracepoints, judged
//! as a growing series and seen freed; a stat() storm grows the dentry slab cache and the
//! cache is named growing or leaking. Seen by `record` (node, node_verdict and cgroup records)
//! and `report` on that trace. cgroup v1 here; the v2 guests run the same checks
//! (tests/guest/node-v2.sh).
// An integration test crate: a panic (unwrap, expect) is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use leaktracer_tests::*;

const STATSTORM: &str = env!("CARGO_BIN_EXE_statstorm");
const V1_MEMORY: &str = "/sys/fs/cgroup/memory";
/// Zombies the test makes, and the bytes of page cache each keeps charged.
const ZOMBIES: usize = 300;
const FILE_BYTES: usize = 256 << 10;

/// The kernel's own count of zombie memory cgroups on v1: `num_cgroups` of /proc/cgroups'
/// memory line against the hierarchy's directories.
fn kernel_zombies() -> u64 {
    let text = std::fs::read_to_string("/proc/cgroups").unwrap();
    let in_kernel: u64 = text
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.first() == Some(&"memory")).then(|| f[2].parse().unwrap())
        })
        .expect("/proc/cgroups has a memory line");
    let mut dirs = 0u64;
    let mut stack = vec![PathBuf::from(V1_MEMORY)];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        dirs += 1;
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(e.path());
            }
        }
    }
    in_kernel.saturating_sub(dirs)
}

fn records<'a>(trace: &'a [Value], kind: &str) -> impl Iterator<Item = &'a Value> + use<'a> {
    let kind = kind.to_string();
    trace.iter().filter(move |r| r["type"] == kind.as_str())
}

/// A node series judged growing or leaking in the trace so far.
fn judged_growing(trace: &[Value], series: &str) -> Option<Value> {
    records(trace, "node_verdict")
        .find(|r| r["series"] == series && (r["verdict"] == "growing" || r["verdict"] == "leaking"))
        .cloned()
}

/// The parent cgroup and the files that keep its removed children's memory charged; on drop,
/// the files go (the zombies are freed) and so does the parent.
struct Zombies {
    parent: PathBuf,
    files: PathBuf,
}

impl Zombies {
    fn new() -> Self {
        let name = format!("leaktracer-zombies-{}", std::process::id());
        let parent = Path::new(V1_MEMORY).join(&name);
        let files = std::env::temp_dir().join(&name);
        let _ = std::fs::create_dir(&parent);
        std::fs::create_dir_all(&files).unwrap();
        Self { parent, files }
    }

    /// One zombie: a child cgroup, a process in it writing FILE_BYTES to a file (page cache
    /// charged to the child), the child removed. The file keeps it held.
    fn make(&self, i: usize) {
        let child = self.parent.join(format!("z{i}"));
        std::fs::create_dir(&child).unwrap_or_else(|e| panic!("{}: {e}", child.display()));
        let status = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "echo $$ > {}/cgroup.procs && head -c {FILE_BYTES} /dev/zero > {}/f{i}",
                child.display(),
                self.files.display()
            ))
            .stdin(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "writing from inside {}", child.display());
        std::fs::remove_dir(&child).unwrap_or_else(|e| panic!("rmdir {}: {e}", child.display()));
    }

    fn free(&self) {
        let _ = std::fs::remove_dir_all(&self.files);
    }
}

impl Drop for Zombies {
    fn drop(&mut self) {
        self.free();
        for _ in 0..50 {
            if std::fs::remove_dir(&self.parent).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[test]
fn zombie_memory_cgroups_are_counted_named_judged_and_seen_freed() {
    let Some(_serial) = privileged() else { return };
    let rec = Recording::start("zombies", &["--interval", "1s"]);
    let path = rec.path.clone();
    // The count before: the first node record.
    let baseline = wait_until(Duration::from_secs(30), || {
        let t = read_trace(&path);
        records(&t, "node").find_map(|r| r["zombies"]["zombies"].as_u64())
    })
    .expect("a node record with a zombie count within 30 s");
    let kernel_before = kernel_zombies();
    let zombies = Zombies::new();
    let parent_path = format!("/{}", zombies.parent.file_name().unwrap().to_string_lossy());
    // Ten a second for 30 s: a series that rises for many intervals.
    for i in 0..ZOMBIES {
        zombies.make(i);
        std::thread::sleep(Duration::from_millis(100));
    }
    let kernel_after = kernel_zombies();
    assert!(
        kernel_after >= kernel_before + (ZOMBIES as u64 * 9 / 10),
        "the kernel holds {kernel_after} zombie memory cgroups, {kernel_before} before making {ZOMBIES}: the scenario did not make them"
    );
    // Judged: the zombie count is a growing (or leaking) series.
    let verdict = wait_until(Duration::from_secs(60), || {
        judged_growing(&read_trace(&path), "memcg_zombies")
    })
    .expect("memcg_zombies judged growing or leaking within 60 s of the last zombie");
    assert!(
        verdict["reason"]
            .as_str()
            .unwrap()
            .starts_with("zombie memory cgroups are "),
        "{verdict}"
    );
    // Counted: a node record after the last zombie agrees with the kernel within 10%.
    let counted = wait_until(Duration::from_secs(30), || {
        let t = read_trace(&path);
        let last = records(&t, "node").last()?["zombies"]["zombies"].as_u64()?;
        (last >= baseline + ZOMBIES as u64 * 9 / 10).then_some(last)
    })
    .expect("a node record counting the new zombies within 30 s");
    let kernel = kernel_zombies();
    assert!(
        counted.abs_diff(kernel) * 10 <= kernel,
        "leaktracer counts {counted} zombie memory cgroups, the kernel {kernel}"
    );
    // Named, from the trace alone: `report` on the trace so far (a copy; the recording goes
    // on) says how many were removed while watched and never freed, and under which parent.
    let held = report_json(&copy_of(&path), &[]);
    let named = &held["node"]["end"]["zombies_named"];
    assert!(
        named["count"].as_u64().unwrap() >= ZOMBIES as u64 * 9 / 10,
        "{named}"
    );
    assert_eq!(named["by_parent"][0][0], parent_path.as_str(), "{named}");
    assert!(
        held["node"]["end"]["zombies_sentence"]
            .as_str()
            .unwrap()
            .contains(&format!("of them under {parent_path} holding ")),
        "{}",
        held["node"]["end"]
    );
    // The page cache they hold, read under their parent: the files' bytes, within 20%.
    let trace = read_trace(&path);
    let bytes = records(&trace, "node")
        .filter_map(|r| {
            r["held"]
                .as_array()?
                .iter()
                .find(|h| h["parent"] == parent_path.as_str())?["bytes"]
                .as_u64()
        })
        .last()
        .expect("node records with the page cache held under the zombies' parent");
    let written = (ZOMBIES * FILE_BYTES) as u64;
    assert!(
        bytes.abs_diff(written) * 5 <= written,
        "the zombies under {parent_path} hold {bytes} bytes of page cache; {written} were written"
    );
    assert!(
        held["node"]["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["series"] == "memcg_zombies"),
        "report findings: {}",
        held["node"]["findings"]
    );
    // Freed: deleting the files uncharges their pages, and the kernel frees the cgroups.
    zombies.free();
    let freed = wait_until(Duration::from_secs(60), || {
        let t = read_trace(&path);
        let released = records(&t, "cgroup")
            .filter(|r| {
                r["action"] == "release"
                    && r["path"]
                        .as_str()
                        .is_some_and(|p| p.starts_with(&format!("{parent_path}/")))
            })
            .count();
        (released >= ZOMBIES * 9 / 10).then_some(())
    });
    let kernel_freed = kernel_zombies();
    let trace = rec.stop();
    let ours = |action: &str| {
        records(&trace, "cgroup")
            .filter(|r| {
                r["action"] == action
                    && r["path"]
                        .as_str()
                        .is_some_and(|p| p.starts_with(&format!("{parent_path}/")))
            })
            .count()
    };
    assert_eq!(ours("mkdir"), ZOMBIES, "every mkdir is recorded");
    assert_eq!(ours("rmdir"), ZOMBIES, "every rmdir is recorded");
    assert!(
        freed.is_some(),
        "only {} of {ZOMBIES} zombies were seen freed within 60 s of deleting their files (the kernel now holds {kernel_freed})",
        ours("release")
    );
    let end = report_json(&path, &[]);
    let named = &end["node"]["end"]["zombies_named"];
    assert!(
        named["freed"].as_u64().unwrap() >= ZOMBIES as u64 * 9 / 10,
        "{named}"
    );
}

/// A copy of a trace being written (whole lines only).
fn copy_of(trace: &Path) -> PathBuf {
    let text = std::fs::read_to_string(trace).unwrap();
    let whole = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
    let copy = trace.with_extension("partial.jsonl");
    std::fs::write(&copy, whole).unwrap();
    copy
}

/// Drops the dentries the storm left (negative ones are reclaimable), so later tests start
/// from a normal node.
struct DropCaches;

impl Drop for DropCaches {
    fn drop(&mut self) {
        let _ = std::fs::write("/proc/sys/vm/drop_caches", "2");
    }
}

#[test]
fn a_stat_storm_names_the_dentry_slab_cache_growing() {
    let Some(_serial) = privileged() else { return };
    let _drop = DropCaches;
    let rec = Recording::start("dentry", &["--interval", "1s"]);
    let path = rec.path.clone();
    assert!(
        wait_until(Duration::from_secs(30), || {
            records(&read_trace(&path), "node").next().map(|_| ())
        })
        .is_some(),
        "no node record within 30 s"
    );
    // 100 000 missing names a second for 25 s: about 20 MiB of dentries a second.
    let mut storm = Proc::spawn(
        Command::new(STATSTORM)
            .args(["25", "100000"])
            .stdout(Stdio::piped()),
    );
    storm.wait_for_line("storming", Duration::from_secs(10));
    let verdict = wait_until(Duration::from_secs(60), || {
        judged_growing(&read_trace(&path), "slab:dentry")
    });
    let trace = rec.stop();
    let verdict = verdict.unwrap_or_else(|| {
        let dentry: Vec<u64> = records(&trace, "node")
            .filter_map(|r| {
                r["slabs"]
                    .as_array()?
                    .iter()
                    .find(|c| c["name"] == "dentry")?["bytes"]
                    .as_u64()
            })
            .collect();
        panic!("slab:dentry never judged growing or leaking; its bytes in node records: {dentry:?}")
    });
    let reason = verdict["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("slab cache dentry is growing: +")
            || reason.starts_with("slab cache dentry is leaking: +"),
        "{reason}"
    );
    let doc = report_json(&path, &[]);
    assert!(
        doc["node"]["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["series"] == "slab:dentry"),
        "report findings: {}",
        doc["node"]["findings"]
    );
    let text = report_text(&path, &[]);
    assert!(
        text.contains("NODE (memory no process owns)") && text.contains("slab cache dentry is"),
        "{text}"
    );
}

/// The daemon serves the node's memory: every kind (total exactly as /proc/meminfo says), the
/// biggest slab caches and the zombie memory cgroups the kernel counts.
#[test]
fn daemon_serves_the_node_memory_metrics() {
    let Some(_serial) = privileged() else { return };
    let port = free_port();
    let _daemon = daemon(port, "500ms");
    let metrics = wait_until(Duration::from_secs(60), || {
        // The gauges exist (at 0) from the start; the first reading sets the kinds.
        http_get(port, "/metrics")
            .filter(|m| m.contains("leaktracer_node_memory_bytes{kind=\"total\"}"))
    })
    .expect("the daemon serves leaktracer_node_memory_bytes within 60 s");
    let value = |prefix: &str| -> Option<f64> {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(prefix)?.trim().parse().ok())
    };
    let total_kib: f64 = std::fs::read_to_string("/proc/meminfo")
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix("MemTotal:")?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap();
    assert_eq!(
        value("leaktracer_node_memory_bytes{kind=\"total\"}"),
        Some(total_kib * 1024.0),
        "{metrics}"
    );
    for kind in ["unattributed", "slab_unreclaimable", "kernel_stack"] {
        assert!(
            value(&format!("leaktracer_node_memory_bytes{{kind=\"{kind}\"}}")).is_some(),
            "{kind}: {metrics}"
        );
    }
    let slabs = metrics
        .lines()
        .filter(|l| l.starts_with("leaktracer_slab_bytes{cache="))
        .count();
    assert_eq!(slabs, 10, "the 10 biggest slab caches: {metrics}");
    let zombies = value("leaktracer_memcg_zombies ").unwrap();
    let kernel = kernel_zombies() as f64;
    assert!(
        (zombies - kernel).abs() <= (kernel * 0.1).max(2.0),
        "leaktracer_memcg_zombies {zombies}, the kernel {kernel}"
    );
}
