//! Foundation scenarios: the real leaktracer, real eBPF programs, real processes.
// An integration test crate: a panic (unwrap, expect) is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use std::{process::Command, time::Duration};

use leaktracer_tests::*;

const LEAKER: &str = env!("CARGO_BIN_EXE_leaker");
const STEADY: &str = env!("CARGO_BIN_EXE_steady");
const MAPPER: &str = env!("CARGO_BIN_EXE_mapper");
const SPAWNER: &str = env!("CARGO_BIN_EXE_spawner");
const SPAWNEE: &str = env!("CARGO_BIN_EXE_spawnee");

fn stress_ng(args: &[&str]) -> Proc {
    let mut c = Command::new("stress-ng");
    c.args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    Proc::spawn(&mut c)
}

/// A process leaking 8 MiB/s is ranked first among busy non-leakers, at its true rate.
#[test]
fn leaker_is_ranked_first_at_its_true_rate() {
    let Some(_serial) = privileged() else { return };
    let _busy = [
        Proc::spawn(workload(STEADY).arg("16")),
        Proc::spawn(workload(STEADY).arg("48")),
        stress_ng(&["--vm", "1", "--vm-bytes", "32M", "--vm-keep"]),
        stress_ng(&["--mmap", "1", "--mmap-bytes", "16M"]),
        stress_ng(&["--cpu", "1"]),
    ];
    let rate = 8 * MIB;
    let leaker = Proc::spawn(workload(LEAKER).arg((rate / 1024).to_string()));
    // Ranked among this test's processes (tracking is node-wide; other work on the machine,
    // such as a VM booting, is left out of the comparison with --comm filters).
    let args = [
        "--comm",
        "steady",
        "--comm",
        "stress-ng",
        "--comm",
        "stress-ng-vm",
        "--comm",
        "stress-ng-mmap",
        "--comm",
        "stress-ng-cpu",
        "--comm",
        "leaker",
    ];
    let doc = top_once(10, &args);
    let top = &doc["processes"][0];
    assert_eq!(
        top["pid"].as_u64(),
        Some(u64::from(leaker.pid())),
        "leaker not ranked first: {doc:#}"
    );
    let measured = top["growth_bytes_per_sec"].as_f64().unwrap();
    let err = (measured - rate as f64).abs() / rate as f64;
    eprintln!(
        "leaker growth measured {measured:.0} B/s vs true {rate} B/s ({:.1}% off)",
        err * 100.0
    );
    assert!(
        err < 0.25,
        "growth {measured} B/s not within 25% of {rate} B/s"
    );
    assert!(
        top["growing_for_secs"].as_f64().unwrap() > 5.0,
        "growing_for should cover the run: {top}"
    );
    assert!(
        top["alloc_bytes_per_sec"].as_f64().unwrap() > 0.5 * rate as f64,
        "alloc rate: {top}"
    );
}

/// `stress-ng --brk 1` brk calls counted by leaktracer match stress-ng's own count (1%).
#[test]
fn brk_calls_match_stress_ng() {
    let Some(_serial) = privileged() else { return };
    let rec = Recording::start("brk", &["--interval", "500ms", "--comm", "stress-ng-brk"]);
    let out = Command::new("stress-ng")
        .args(["--brk", "1", "--brk-ops", "200000", "--metrics-brief"])
        .output()
        .expect("running stress-ng (apt-get install stress-ng; cargo xtask test installs it)");
    assert!(
        out.status.success(),
        "stress-ng failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::thread::sleep(Duration::from_millis(1500));
    let trace = rec.stop();
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    // "stress-ng: metrc: [PID] brk   200000   1.23 ..." — the bogo-ops column.
    let ops: u64 = text
        .lines()
        .filter(|l| l.contains("metrc") || l.contains("info"))
        .find_map(|l| {
            let mut it = l.split_whitespace().skip_while(|w| *w != "brk");
            it.next()?;
            it.next()?.parse().ok()
        })
        .unwrap_or_else(|| panic!("no bogo-ops count in stress-ng's output:\n{text}"));
    let counted = trace
        .iter()
        .filter(|r| r["type"] == "sample" && r["comm"] == "stress-ng-brk")
        .filter_map(|r| r["calls"]["brk"].as_u64())
        .max()
        .expect("no sample of stress-ng-brk in the trace");
    let err = (counted as f64 - ops as f64).abs() / ops as f64;
    eprintln!(
        "brk calls: leaktracer {counted}, stress-ng {ops} ({:.3}% off)",
        err * 100.0
    );
    assert!(
        err <= 0.01,
        "leaktracer counted {counted} brk calls, stress-ng {ops}"
    );
}

/// Runs `mapper ARGS` while recording and returns (its pid, its last sample, status RSS).
fn map_and_sample(name: &str, args: &[&str], rss_source: &str) -> (u32, Value, (u64, u64)) {
    map_and_sample_with_env(name, args, rss_source, &[])
}

/// [`map_and_sample`] with environment variables for leaktracer.
fn map_and_sample_with_env(
    name: &str,
    args: &[&str],
    rss_source: &str,
    env: &[(&str, &str)],
) -> (u32, Value, (u64, u64)) {
    let rec = Recording::start_with_env(
        name,
        &[
            "--interval",
            "250ms",
            "--comm",
            "mapper",
            "--rss-source",
            rss_source,
        ],
        env,
    );
    let mut m = Proc::spawn(workload(MAPPER).args(args));
    m.wait_for_line("ready", Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(1200));
    let anon = status_field_kib(m.pid(), "RssAnon").expect("RssAnon") * 1024;
    let file = status_field_kib(m.pid(), "RssFile").expect("RssFile") * 1024;
    std::thread::sleep(Duration::from_millis(600));
    let trace = rec.stop();
    let s = last_sample(&trace, m.pid())
        .unwrap_or_else(|| panic!("no sample of mapper {} in {}", m.pid(), rec_path(name)))
        .clone();
    (m.pid(), s, (anon, file))
}

fn rec_path(name: &str) -> String {
    format!(
        "{}/leaktracer-test-{}/{name}.jsonl",
        std::env::temp_dir().display(),
        std::process::id()
    )
}

fn field(s: &Value, k: &str) -> u64 {
    s[k].as_u64()
        .unwrap_or_else(|| panic!("sample lacks {k}: {s}"))
}

/// mmap then munmap of the same 64 MiB nets to zero.
#[test]
fn mmap_then_munmap_nets_to_zero() {
    let Some(_serial) = privileged() else { return };
    let (_, s, _) = map_and_sample("roundtrip", &["roundtrip", "64"], "tracepoint");
    let (mapped, unmapped) = (field(&s, "mapped_anon"), field(&s, "unmapped"));
    eprintln!("roundtrip: mapped_anon {mapped} unmapped {unmapped}");
    assert!(
        mapped >= 64 * MIB && unmapped >= 64 * MIB,
        "the 64 MiB map/unmap is counted: {s}"
    );
    // Start-up (loader, stack, TLS) maps a little more than it unmaps; the 64 MiB cancel out.
    assert!(
        mapped.abs_diff(unmapped) < 4 * MIB,
        "net {} bytes: {s}",
        mapped as i64 - unmapped as i64
    );
}

/// The mmap/mremap enter programs save the arguments for the exits: the path of kernels
/// before 5.15 (elsewhere the exits read them from the thread's saved registers).
const ARGS_SAVED_AT_ENTER: &[(&str, &str)] = &[("LEAKTRACER_MMAP_ARGS", "enter")];

/// A Go-style PROT_NONE reservation then MAP_FIXED commit: reserved once, committed once.
#[test]
fn go_style_reservation_is_committed_once() {
    go_style_reservation("gostyle", &[]);
}

#[test]
fn go_style_reservation_is_committed_once_with_arguments_saved_at_enter() {
    go_style_reservation("gostyle-enter", ARGS_SAVED_AT_ENTER);
}

fn go_style_reservation(name: &str, env: &[(&str, &str)]) {
    let Some(_serial) = privileged() else { return };
    let (_, s, _) = map_and_sample_with_env(name, &["go-style", "256", "32"], "tracepoint", env);
    let (reserved, mapped) = (field(&s, "reserved"), field(&s, "mapped_anon"));
    eprintln!("go-style: reserved {reserved} mapped_anon {mapped}");
    assert!(
        (256 * MIB..260 * MIB).contains(&reserved),
        "reservation counted once as reserved: {s}"
    );
    assert!(
        (32 * MIB..36 * MIB).contains(&mapped),
        "commit counted once as mapped, not the reservation too: {s}"
    );
    assert!(
        field(&s, "rss_anon") >= 32 * MIB,
        "committed pages are resident: {s}"
    );
}

/// Threads outnumbering the CPUs map at once, each call sleeping in the kernel while it
/// populates its pages: a call whose thread is preempted or moved to another CPU between
/// sys_enter and sys_exit is still counted once, with its own arguments, and a failed call
/// as failed.
#[test]
fn interleaved_mmaps_of_many_threads_are_each_counted_once() {
    interleaved_mmaps("threads", &[]);
}

/// The same with the arguments waiting from enter to exit, where a thread's call can be
/// displaced by another thread's on its CPU or finish on another CPU.
#[test]
fn interleaved_mmaps_of_many_threads_are_each_counted_once_with_arguments_saved_at_enter() {
    interleaved_mmaps("threads-enter", ARGS_SAVED_AT_ENTER);
}

fn interleaved_mmaps(name: &str, env: &[(&str, &str)]) {
    let Some(_serial) = privileged() else { return };
    const THREADS: u64 = 8;
    const CALLS: u64 = 300;
    // 640 KiB: log2 bucket 7 (512 KiB-1 MiB), which nothing else in mapper maps (the loader
    // maps a 332 KiB piece of libc, and threads' stacks are 2 MiB).
    let (_, s, _) = map_and_sample_with_env(
        name,
        &["threads", &THREADS.to_string(), &CALLS.to_string(), "640"],
        "tracepoint",
        env,
    );
    let hist = s["mmap_size_log2"]
        .as_array()
        .unwrap_or_else(|| panic!("no mmap size histogram: {s}"));
    let sized = hist.get(7).and_then(Value::as_u64).unwrap_or(0);
    eprintln!(
        "threads: 640 KiB maps {sized}, failed {}, mmap calls {}",
        field(&s, "failed_calls"),
        s["calls"]["mmap"]
    );
    assert_eq!(
        sized,
        THREADS * CALLS,
        "each 640 KiB mmap counted once: {s}"
    );
    assert_eq!(
        field(&s, "failed_calls"),
        THREADS * CALLS,
        "each mmap of length 0 counted as failed: {s}"
    );
    assert!(
        field(&s, "unmapped") >= THREADS * CALLS * 640 * 1024,
        "every map unmapped: {s}"
    );
}

/// mremap growth and shrink are counted exactly from the call's old and new lengths, and a
/// failed mremap as failed.
#[test]
fn mremap_growth_and_shrink_are_counted() {
    mremap_counted("mremap", &[]);
}

#[test]
fn mremap_growth_and_shrink_are_counted_with_arguments_saved_at_enter() {
    mremap_counted("mremap-enter", ARGS_SAVED_AT_ENTER);
}

fn mremap_counted(name: &str, env: &[(&str, &str)]) {
    let Some(_serial) = privileged() else { return };
    // 3 MiB, grown by 5 MiB, shrunk by 2 MiB.
    let (_, s, _) = map_and_sample_with_env(name, &["mremap", "3", "5", "2"], "tracepoint", env);
    eprintln!(
        "mremap: grown {} shrunk {} calls {} failed {}",
        field(&s, "mremap_grown"),
        field(&s, "mremap_shrunk"),
        s["calls"]["mremap"],
        field(&s, "failed_calls")
    );
    assert_eq!(field(&s, "mremap_grown"), 5 * MIB, "{s}");
    assert_eq!(field(&s, "mremap_shrunk"), 2 * MIB, "{s}");
    assert_eq!(s["calls"]["mremap"].as_u64(), Some(2), "{s}");
    assert!(
        field(&s, "failed_calls") >= 1,
        "the unaligned mremap failed: {s}"
    );
}

/// madvise(MADV_DONTNEED) is counted as released memory.
#[test]
fn madvise_dontneed_is_a_release() {
    let Some(_serial) = privileged() else { return };
    let (_, s, _) = map_and_sample("madvise", &["madvise", "32"], "tracepoint");
    assert!(field(&s, "released") >= 32 * MIB, "32 MiB released: {s}");
    assert!(
        field(&s, "rss_anon") < 16 * MIB,
        "released pages left RSS: {s}"
    );
}

fn rss_matches(rss_source: &str, env: &[(&str, &str)]) {
    let (pid, s, (anon, file)) = map_and_sample_with_env(
        &format!("rss-{rss_source}-{}", env.len()),
        &["go-style", "128", "48"],
        rss_source,
        env,
    );
    let (t_anon, t_file) = (field(&s, "rss_anon"), field(&s, "rss_file"));
    eprintln!(
        "rss ({rss_source}) of {pid}: leaktracer anon {t_anon} file {t_file}; /proc anon {anon} file {file}"
    );
    // The raw program reads the kernel's shared counter, which lags the exact sum by the
    // per-CPU batches not yet folded in: max(32, 2*CPUs) pages per CPU (documented bound).
    let slack = if rss_source == "raw" {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
        32.max(2 * cpus) * cpus * 4096
    } else {
        0
    };
    let close = |a: u64, b: u64| (a as f64 - b as f64).abs() <= (0.02 * b as f64).max(slack as f64);
    assert!(
        close(t_anon, anon),
        "RssAnon: leaktracer {t_anon}, /proc {anon}"
    );
    assert!(
        close(t_file, file),
        "RssFile: leaktracer {t_file}, /proc {file}"
    );
}

/// RSS from the default classic tracepoint matches /proc (2%).
#[test]
fn rss_matches_proc_status() {
    let Some(_serial) = privileged() else { return };
    rss_matches("tracepoint", &[]);
}

/// The raw tracepoint agrees with /proc within 2% or the per-CPU batch bound.
#[test]
fn rss_matches_proc_status_with_raw_tracepoint() {
    let Some(_serial) = privileged() else { return };
    rss_matches("raw", &[]);
}

/// Without RSS slots (every process's RSS in its map entry, the path of a process whose slot
/// index another process holds), the figures are the same.
#[test]
fn rss_matches_proc_status_without_rss_slots() {
    let Some(_serial) = privileged() else { return };
    rss_matches("raw", &[("LEAKTRACER_RSS_SLOTS", "0")]);
    rss_matches("tracepoint", &[("LEAKTRACER_RSS_SLOTS", "0")]);
}

/// Memory another process faults into a process (rss_stat's curr=0: here process_vm_writev;
/// on a node, reclaim and swap) is that process's, even after it spawned children that shared
/// its mm (posix_spawn). The kernel program remembers each process's own mm and updates the
/// owner map only when that changes: a child sharing the mm claims it, and must hand it back
/// when it execs, or these faults are lost (`rss_unattributed`) and RSS stays low.
fn foreign_faults_count_after_spawning(rss_source: &str, env: &[(&str, &str)]) {
    let rec = Recording::start_with_env(
        &format!("foreign-faults-{rss_source}-{}", env.len()),
        &["--interval", "500ms", "--rss-source", rss_source],
        env,
    );
    let mut target = Proc::spawn(
        Command::new(SPAWNEE)
            .args(["64", "5"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit()),
    );
    let line = {
        use std::io::BufRead as _;
        let mut l = String::new();
        std::io::BufReader::new(target.0.stdout.take().unwrap())
            .read_line(&mut l)
            .unwrap();
        l
    };
    let mut words = line.split_whitespace().skip(1);
    let addr: usize = words.next().unwrap().parse().unwrap();
    let len: usize = words.next().unwrap().parse().unwrap();
    let before = status_field_kib(target.pid(), "RssAnon").unwrap();
    // Write the whole buffer from this process: every fault is in the target's mm, from here.
    let data = vec![0x5au8; len];
    let local = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: len,
    };
    let remote = libc::iovec {
        iov_base: addr as *mut libc::c_void,
        iov_len: len,
    };
    // SAFETY: both iovecs describe `len` bytes: ours a live Vec, the target's its own mapping
    // (the kernel checks it); nothing in this process is written.
    let written = unsafe { libc::process_vm_writev(target.pid() as i32, &local, 1, &remote, 1, 0) };
    assert_eq!(written, len as isize, "process_vm_writev into the target");
    let after = status_field_kib(target.pid(), "RssAnon").unwrap();
    assert!(
        after >= before + (len as u64 >> 10) * 9 / 10,
        "the writes made the target's RssAnon grow: {before} -> {after} KiB"
    );
    std::thread::sleep(Duration::from_millis(1500));
    let trace = rec.stop();
    let last = last_sample(&trace, target.pid()).expect("samples of the target");
    let rss_anon_kib = last["rss_anon"].as_u64().unwrap() >> 10;
    eprintln!(
        "{rss_source}: target RssAnon /proc {after} KiB, leaktracer {rss_anon_kib} KiB (before the writes {before} KiB)"
    );
    // The raw program lags by the kernel's per-CPU batches (a few hundred KiB at most here).
    assert!(
        rss_anon_kib + 1024 >= after && rss_anon_kib <= after + 1024,
        "leaktracer's rss_anon {rss_anon_kib} KiB vs /proc RssAnon {after} KiB: the faults another \
         process made in its mm were not counted as its own"
    );
}

#[test]
fn memory_another_process_faults_in_is_counted_after_spawning_children() {
    let Some(_serial) = privileged() else { return };
    foreign_faults_count_after_spawning("tracepoint", &[]);
}

#[test]
fn memory_another_process_faults_in_is_counted_after_spawning_children_raw() {
    let Some(_serial) = privileged() else { return };
    foreign_faults_count_after_spawning("raw", &[]);
}

/// The same through the process's map entry (no RSS slots).
#[test]
fn memory_another_process_faults_in_is_counted_after_spawning_children_without_rss_slots() {
    let Some(_serial) = privileged() else { return };
    foreign_faults_count_after_spawning("raw", &[("LEAKTRACER_RSS_SLOTS", "0")]);
}

/// With a deliberately tiny process map, overflow is counted, not silent.
#[test]
fn undersized_process_map_reports_overflow() {
    let Some(_serial) = privileged() else { return };
    let rec = Recording::start(
        "tiny-map",
        &["--interval", "500ms", "--procs-map-size", "16"],
    );
    // Entries are freed at each exit, so churn alone may never fill 16: hold 40 processes
    // alive at once (the node's own processes were seeded first) while 300 more come and go.
    let _held: Vec<Proc> = (0..40)
        .map(|_| {
            Proc::spawn(
                Command::new("sleep")
                    .arg("30")
                    .stdin(std::process::Stdio::null()),
            )
        })
        .collect();
    let out = Command::new(SPAWNER)
        .args(["300", "8"])
        .output()
        .expect("spawner");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "300");
    std::thread::sleep(Duration::from_secs(1));
    let trace = rec.stop();
    let summary = trace.last().unwrap();
    let full = summary["counters"]["procs_map_full"].as_u64().unwrap_or(0);
    eprintln!("procs_map_full = {full}");
    assert!(
        full > 0,
        "a 16-entry map under 300 processes must report procs_map_full: {summary}"
    );
    assert!(
        trace
            .iter()
            .any(|r| r["type"] == "health" && r["counters"]["procs_map_full"].as_u64() > Some(0)),
        "health lines show it"
    );
}

/// SIGINT during `record`: every line parses and the summary is there.
#[test]
fn sigint_leaves_a_complete_trace() {
    let Some(_serial) = privileged() else { return };
    let rec = Recording::start("sigint", &["--interval", "200ms"]);
    let _leaker = Proc::spawn(workload(LEAKER).arg("2048"));
    std::thread::sleep(Duration::from_secs(2));
    let trace = rec.stop(); // parses every line
    assert_eq!(trace[0]["type"], "header");
    assert_eq!(trace[0]["schema"], 1);
    let last = trace.last().unwrap();
    assert_eq!(last["type"], "summary", "last line is the summary");
    assert_eq!(last["ended_by"], "signal");
    assert!(trace.iter().filter(|r| r["type"] == "sample").count() > 5);
}
