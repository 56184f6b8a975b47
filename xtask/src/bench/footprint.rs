//! Section 3: leaktracer's own footprint (`record`, default classic rss_stat): RSS and CPU at
//! idle, at about 100k events/s, and while tracking thousands of live processes; and its
//! start-up time from exec to programs attached.
use std::{
    io::{BufRead as _, BufReader},
    process::{Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use serde::Serialize;

use super::{
    bpf,
    sys::{self, CpuMeter},
    trace_tail::TraceTail,
    tracers::{self, Env, Running},
    workloads::{self, Helpers},
};

/// The footprint is measured with classic rss_stat, as its table says.
const CLASSIC: &[&str] = &["--rss-source", "tracepoint"];
/// The same with the overhead budget off: the scenarios at a given event rate measure what
/// userspace costs at that rate, and the budget would pause the hooks and cut the rate (at the
/// default 1% of the node, 100k syscall events/s are over it on 2 CPUs).
const CLASSIC_NO_BUDGET: &[&str] = &["--rss-source", "tracepoint", "--max-overhead", "0"];

/// leaktracer's cost over one measured window.
#[derive(Debug, Default, Serialize)]
pub struct Load {
    pub seconds: f64,
    /// Runs of leaktracer's programs per second (bpf_stats run_cnt delta).
    pub events_per_sec: f64,
    /// Largest VmRSS seen in the window.
    pub rss_bytes: u64,
    /// The leaktracer process's CPU (user + system), % of one core.
    pub cpu_pct: f64,
    /// Its BPF programs' run time (charged to the traced tasks), % of one core.
    pub bpf_cpu_pct: f64,
}

#[derive(Debug, Serialize)]
pub struct ManyProcs {
    pub spawned: usize,
    /// `procs_in_map` of the last `health` line before the spawn.
    pub tracked_before: usize,
    /// Largest `procs_in_map` of `health` lines while they lived.
    pub tracked_with: usize,
    /// `process` records (first sight in userspace) written while they lived.
    pub process_records: usize,
    pub spawn_seconds: f64,
    pub load: Load,
}

#[derive(Debug, Serialize)]
pub struct Startup {
    /// Seconds from spawn to the "attached N programs" log line, per run.
    pub to_attached: Vec<f64>,
    /// Seconds from spawn to the trace's header line (after attach and the /proc seeding).
    pub to_header: Vec<f64>,
}

#[derive(Debug, Serialize)]
pub struct Footprint {
    pub idle: Result<Load, String>,
    pub target_events_per_sec: f64,
    pub at_rate: Result<Load, String>,
    /// Under a madvise + page-fault storm (over a million events a second), budget off.
    pub storm_events_per_sec: f64,
    pub at_storm: Result<Load, String>,
    pub many_procs: Result<ManyProcs, String>,
    pub startup: Result<Startup, String>,
}

pub struct Plan {
    pub idle_secs: f64,
    pub rate_secs: f64,
    pub calibrate: bool,
    pub procs: usize,
    pub hold_secs: f64,
    pub startup_runs: usize,
}

const TARGET_RATE: f64 = 100_000.0;
/// The rate the storm scenario is judged at (issue 11: userspace at most 1% of one core at
/// 1M events/s); the measured rate is in the table.
const STORM_RATE: f64 = 1_000_000.0;
/// Events per paced op (a first guess, calibrated from the programs' run counts): mmap's
/// exit, munmap's enter, rss_stat on the fault and on the unmap.
const EVENTS_PER_OP: f64 = 4.0;

pub fn run(env: &Env, helpers: &Helpers, plan: &Plan) -> Footprint {
    Footprint {
        idle: out("idle", idle(env, plan.idle_secs)),
        target_events_per_sec: TARGET_RATE,
        at_rate: out("at 100k events/s", at_rate(env, helpers, plan)),
        storm_events_per_sec: STORM_RATE,
        at_storm: out("at 1M events/s", at_storm(env, helpers, plan)),
        many_procs: out("many processes", many_procs(env, helpers, plan)),
        startup: out("start-up", startup(env, plan.startup_runs)),
    }
}

fn out<T>(what: &str, r: anyhow::Result<T>) -> Result<T, String> {
    r.map_err(|e| {
        eprintln!("bench: footprint {what}: n/a: {e:#}");
        format!("{e:#}")
    })
}

fn idle(env: &Env, secs: f64) -> anyhow::Result<Load> {
    let r = tracers::record(env, CLASSIC, "footprint-idle")?;
    // Let the first rounds (seeding every process from /proc) pass.
    std::thread::sleep(Duration::from_secs(2));
    let load = measure(&r, secs, || {});
    eprintln!("bench: footprint idle: {load:?}");
    Ok(load)
}

fn at_rate(env: &Env, helpers: &Helpers, plan: &Plan) -> anyhow::Result<Load> {
    let r = tracers::record(env, CLASSIC_NO_BUDGET, "footprint-rate")?;
    std::thread::sleep(Duration::from_secs(2));
    let mut ops = TARGET_RATE / EVENTS_PER_OP;
    if plan.calibrate {
        let secs = 3.0;
        let mut pacer = workloads::pace(helpers, ops, secs)?;
        let seen = measure(&r, secs, || {});
        let _ = pacer.wait();
        if seen.events_per_sec > 0.0 {
            ops = (ops * TARGET_RATE / seen.events_per_sec).clamp(1_000.0, 100_000.0);
        }
    }
    let mut pacer = workloads::pace(helpers, ops, plan.rate_secs + 1.0)?;
    let load = measure(&r, plan.rate_secs, || {});
    let _ = pacer.wait();
    eprintln!("bench: footprint at {ops:.0} mmap+munmap/s: {load:?}");
    Ok(load)
}

/// An event storm on every CPU (`helpers madvise`: madvise(DONTNEED) on one page, touched
/// again one call in 64, so nearly one event per call; about a million events a second here). In-kernel
/// aggregation means userspace's work should not grow with the event rate; this is where that
/// is checked.
fn at_storm(env: &Env, helpers: &Helpers, plan: &Plan) -> anyhow::Result<Load> {
    let r = tracers::record(env, CLASSIC_NO_BUDGET, "footprint-storm")?;
    std::thread::sleep(Duration::from_secs(2));
    let secs = plan.rate_secs;
    let storm = workloads::madvise_storm(helpers, secs + 2.0)?;
    // Let the storm reach its rate before measuring.
    std::thread::sleep(Duration::from_secs(1));
    let load = measure(&r, secs, || {});
    for mut s in storm {
        let _ = s.wait();
    }
    eprintln!("bench: footprint under a madvise storm: {load:?}");
    if load.events_per_sec < STORM_RATE {
        eprintln!(
            "bench: footprint storm: {:.0} events/s, under the {STORM_RATE:.0} the target is set at",
            load.events_per_sec
        );
    }
    Ok(load)
}

fn many_procs(env: &Env, helpers: &Helpers, plan: &Plan) -> anyhow::Result<ManyProcs> {
    let r = tracers::record(env, CLASSIC, "footprint-procs")?;
    let mut tail = TraceTail::new(r.trace.clone().context("record has a trace")?);
    let before = wait_health(&mut tail, Duration::from_secs(15))?;
    let t0 = Instant::now();
    let (mut group, spawned) = workloads::fork_pause(helpers, plan.procs)?;
    let spawn_seconds = t0.elapsed().as_secs_f64();
    let (mut tracked_with, mut process_records) = (0, 0);
    let load = measure(&r, plan.hold_secs, || {
        for rec in tail.next_records() {
            match rec["type"].as_str() {
                Some("health") => {
                    let n = rec["procs_in_map"].as_u64().unwrap_or(0) as usize;
                    tracked_with = tracked_with.max(n);
                }
                Some("process") => process_records += 1,
                _ => {}
            }
        }
    });
    sys::signal(-(group.id() as i32), sys::SIGKILL);
    let _ = group.wait();
    std::thread::sleep(Duration::from_secs(2));
    let m = ManyProcs {
        spawned,
        tracked_before: before,
        tracked_with,
        process_records,
        spawn_seconds,
        load,
    };
    eprintln!("bench: footprint with {spawned} sleeping processes: {m:?}");
    Ok(m)
}

/// `procs_in_map` of the next `health` line.
fn wait_health(tail: &mut TraceTail, timeout: Duration) -> anyhow::Result<usize> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        let found = tail
            .next_records()
            .into_iter()
            .filter(|r| r["type"] == "health")
            .filter_map(|r| r["procs_in_map"].as_u64())
            .next_back();
        if let Some(n) = found {
            return Ok(n as usize);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("no health line in the trace within {} s", timeout.as_secs())
}

/// Watch a running leaktracer for `secs`, calling `poll` every 250 ms.
fn measure(r: &Running, secs: f64, mut poll: impl FnMut()) -> Load {
    let pid = r.pid();
    let progs0 = r.programs();
    let cpu = CpuMeter::start(pid);
    let t0 = Instant::now();
    let mut rss = sys::status_bytes(pid, "VmRSS");
    while t0.elapsed().as_secs_f64() < secs {
        std::thread::sleep(Duration::from_millis(250));
        rss = rss.max(sys::status_bytes(pid, "VmRSS"));
        poll();
    }
    let (ns, cnt) = bpf::delta(&progs0, &r.programs());
    let wall = t0.elapsed().as_secs_f64();
    Load {
        seconds: (wall * 10.0).round() / 10.0,
        events_per_sec: (cnt as f64 / wall).round(),
        rss_bytes: rss,
        cpu_pct: round2(cpu.pct_of_core()),
        bpf_cpu_pct: round2(ns as f64 / 1e9 / wall * 100.0),
    }
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

fn startup(env: &Env, runs: usize) -> anyhow::Result<Startup> {
    let mut s = Startup {
        to_attached: Vec::new(),
        to_header: Vec::new(),
    };
    for i in 0..runs {
        let (attached, header) = startup_once(env, i)?;
        eprintln!(
            "bench: start-up {}: attached {attached:.3} s, header {header:.3} s",
            i + 1
        );
        s.to_attached.push(attached);
        s.to_header.push(header);
    }
    Ok(s)
}

/// Spawn `record --log-level info`; seconds to the "attached" log line and to the header.
fn startup_once(env: &Env, i: usize) -> anyhow::Result<(f64, f64)> {
    let trace = env.work.join(format!("startup-{i}.jsonl"));
    let _ = std::fs::remove_file(&trace);
    let t0 = Instant::now();
    let mut child = Command::new(&env.bin)
        .args(["--log-level", "info", "record", "--output"])
        .arg(&trace)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting leaktracer record")?;
    let stderr = child.stderr.take().context("leaktracer stderr")?;
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("attached") {
                let _ = tx.send(t0.elapsed().as_secs_f64());
            }
        }
    });
    let attached = rx.recv_timeout(Duration::from_secs(30));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::metadata(&trace).is_ok_and(|m| m.len() > 0) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
    let header = t0.elapsed().as_secs_f64();
    sys::interrupt(&mut child, Duration::from_secs(10));
    let _ = reader.join();
    let attached = attached.context("no \"attached\" log line within 30 s")?;
    if header > 30.0 {
        bail!("no trace header within 30 s");
    }
    Ok((attached, header))
}
