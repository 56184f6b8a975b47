//! `cargo xtask bench`: leaktracer's cost, measured side by side with no tracer and with the
//! closest bpftrace script, on the same machine in one run. These machines are noisy, so every
//! configuration runs several times in alternation and the table reports medians and ratios.
//!
//! - workload slowdown: stress-ng bogo-ops/s with and without each tracer;
//! - per-event cost of every eBPF program from the kernel's own accounting
//!   (kernel.bpf_stats_enabled=1: run_time_ns / run_cnt);
//! - leaktracer's own CPU and RSS while tracing.
use std::{
    collections::BTreeMap,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
enum Tracer {
    None,
    LeaktracerRaw,
    LeaktracerTracepoint,
    Bpftrace,
}

impl Tracer {
    fn label(self) -> &'static str {
        match self {
            Self::None => "no tracer",
            Self::LeaktracerRaw => "leaktracer (raw rss_stat)",
            Self::LeaktracerTracepoint => "leaktracer (classic rss_stat)",
            Self::Bpftrace => "bpftrace equivalent",
        }
    }
}

/// Allocation-heavy stress-ng workloads (name, args).
const WORKLOADS: &[(&str, &[&str])] = &[
    ("brk", &["--brk", "1"]),
    ("mmap", &["--mmap", "1", "--mmap-bytes", "64M"]),
    ("malloc", &["--malloc", "1"]),
    ("vm (page faults)", &["--vm", "1", "--vm-bytes", "128M"]),
    ("fault", &["--fault", "1"]),
];

struct Running {
    child: Child,
    tracer: Tracer,
    /// Ids of the BPF programs this tracer loaded (bpftool here cannot map programs to pids,
    /// so they are told apart by appearing after the tracer started).
    progs: Vec<u64>,
}

fn start_tracer(tracer: Tracer, bin: &Path, root: &Path) -> anyhow::Result<Option<Running>> {
    let mut cmd = match tracer {
        Tracer::None => return Ok(None),
        Tracer::LeaktracerRaw | Tracer::LeaktracerTracepoint => {
            let mut c = Command::new(bin);
            let src = if tracer == Tracer::LeaktracerRaw {
                "raw"
            } else {
                "tracepoint"
            };
            c.args(["record", "--output", "/dev/null", "--rss-source", src]);
            c
        }
        Tracer::Bpftrace => {
            let mut c = Command::new("bpftrace");
            c.arg(root.join("bench/peer.bt"));
            c
        }
    };
    let before: Vec<u64> = programs().into_iter().map(|p| p.0).collect();
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {cmd:?}"))?;
    // Wait until its programs are attached and stop appearing.
    let deadline = Instant::now() + Duration::from_secs(30);
    let new_ids = || -> Vec<u64> {
        programs()
            .into_iter()
            .map(|p| p.0)
            .filter(|id| !before.contains(id))
            .collect()
    };
    loop {
        if new_ids().len() >= 6 {
            std::thread::sleep(Duration::from_millis(500));
            break;
        }
        if Instant::now() > deadline {
            let mut child = child;
            let _ = child.kill();
            let _ = child.wait();
            bail!("{} attached no programs within 30 s", tracer.label());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let progs = new_ids();
    Ok(Some(Running {
        child,
        tracer,
        progs,
    }))
}

fn stop(r: Option<Running>) {
    if let Some(mut r) = r {
        // SAFETY: signalling our own child.
        unsafe { libc_kill(r.child.id() as i32, 2) };
        let _ = r.child.wait();
        let _ = r.tracer;
    }
}

unsafe extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

/// (id, name, run_time_ns, run_cnt) of every loaded BPF program, from bpftool. (bpftool here
/// cannot map programs to pids, so a tracer's programs are the ones that appeared after it
/// started.)
fn programs() -> Vec<(u64, String, u64, u64)> {
    let Ok(out) = Command::new("bpftool")
        .args(["-j", "prog", "show"])
        .output()
    else {
        return Vec::new();
    };
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&out.stdout) else {
        return Vec::new();
    };
    v.as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            (
                p["id"].as_u64().unwrap_or(0),
                p["name"].as_str().unwrap_or("?").to_string(),
                p["run_time_ns"].as_u64().unwrap_or(0),
                p["run_cnt"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

/// Run a stress-ng workload for `secs`; bogo-ops per second (real time).
fn stress(args: &[&str], secs: u64) -> anyhow::Result<f64> {
    let out = Command::new("stress-ng")
        .args(args)
        .args(["--timeout", &format!("{secs}s"), "--metrics-brief"])
        .output()
        .context("running stress-ng")?;
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    // "stress-ng: metrc: [pid] brk  452965  3.06  0.16  2.90  148083.50  148187.20"
    for line in text
        .lines()
        .filter(|l| l.contains("metrc:") || l.contains("info:"))
    {
        let cols: Vec<&str> = line.split_whitespace().collect();
        if let Some(i) = cols
            .iter()
            .position(|c| *c == args[0].trim_start_matches('-'))
        {
            if let Some(rate) = cols.get(i + 5).and_then(|c| c.parse::<f64>().ok()) {
                return Ok(rate);
            }
        }
    }
    bail!("no bogo-ops rate in stress-ng output:\n{text}")
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() { 0.0 } else { v[v.len() / 2] }
}

#[derive(Serialize)]
struct Results {
    date_unix: u64,
    kernel: String,
    runs_per_config: usize,
    seconds_per_run: u64,
    /// workload -> tracer -> median bogo-ops/s
    throughput: BTreeMap<String, BTreeMap<String, f64>>,
    /// workload -> tracer -> slowdown % vs no tracer
    slowdown_pct: BTreeMap<String, BTreeMap<String, f64>>,
    /// tracer -> program -> ns per event
    ns_per_event: BTreeMap<String, BTreeMap<String, f64>>,
    /// leaktracer's own footprint during the runs
    own_rss_max_bytes: u64,
    own_cpu_pct_of_one_core: f64,
}

pub fn run(root: &Path, bin: &Path, smoke: bool) -> anyhow::Result<()> {
    let (runs, secs, workloads) = if smoke {
        (1, 1, &WORKLOADS[..1])
    } else {
        (3, 5, WORKLOADS)
    };
    let tracers = [
        Tracer::None,
        Tracer::LeaktracerRaw,
        Tracer::LeaktracerTracepoint,
        Tracer::Bpftrace,
    ];
    let _ = Command::new("sysctl")
        .args(["-q", "-w", "kernel.bpf_stats_enabled=1"])
        .status();
    let mut samples: BTreeMap<(String, Tracer), Vec<f64>> = BTreeMap::new();
    let mut per_event: BTreeMap<Tracer, BTreeMap<String, (u64, u64)>> = BTreeMap::new();
    let mut own_rss_max = 0u64;
    let (mut own_cpu_ticks, mut own_wall) = (0u64, 0.0f64);
    for round in 0..runs {
        for (name, args) in workloads {
            // Alternate the order every round so drift in the machine's speed spreads evenly.
            let mut order = tracers.to_vec();
            if round % 2 == 1 {
                order.reverse();
            }
            for tracer in order {
                let t = start_tracer(tracer, bin, root)?;
                let started = Instant::now();
                let cpu_before = t.as_ref().map_or(0, |r| cpu_ticks(r.child.id()));
                let rate = stress(args, secs)?;
                if let Some(r) = &t {
                    for (_, prog, ns, cnt) in
                        programs().into_iter().filter(|p| r.progs.contains(&p.0))
                    {
                        let e = per_event
                            .entry(tracer)
                            .or_default()
                            .entry(prog)
                            .or_default();
                        e.0 += ns;
                        e.1 += cnt;
                    }
                    if matches!(tracer, Tracer::LeaktracerRaw) {
                        own_rss_max = own_rss_max.max(rss_bytes(r.child.id()));
                        own_cpu_ticks += cpu_ticks(r.child.id()) - cpu_before;
                        own_wall += started.elapsed().as_secs_f64();
                    }
                }
                stop(t);
                eprintln!(
                    "bench: {name:>16} | {:<30} | {rate:>12.0} bogo-ops/s",
                    tracer.label()
                );
                samples
                    .entry(((*name).to_string(), tracer))
                    .or_default()
                    .push(rate);
            }
        }
    }
    // bpf_stats counters are cumulative per program; since each run loads fresh programs,
    // the sums above are per-run totals.
    let mut throughput = BTreeMap::new();
    let mut slowdown = BTreeMap::new();
    for (name, _) in workloads {
        let base = median(
            samples
                .get_mut(&((*name).to_string(), Tracer::None))
                .map(Vec::as_mut_slice)
                .unwrap_or(&mut []),
        );
        for tracer in tracers {
            let m = median(
                samples
                    .get_mut(&((*name).to_string(), tracer))
                    .map(Vec::as_mut_slice)
                    .unwrap_or(&mut []),
            );
            throughput
                .entry((*name).to_string())
                .or_insert_with(BTreeMap::new)
                .insert(tracer.label().to_string(), m.round());
            if tracer != Tracer::None && base > 0.0 {
                let pct = (1.0 - m / base) * 100.0;
                slowdown
                    .entry((*name).to_string())
                    .or_insert_with(BTreeMap::new)
                    .insert(tracer.label().to_string(), (pct * 10.0).round() / 10.0);
            }
        }
    }
    let ns_per_event: BTreeMap<String, BTreeMap<String, f64>> = per_event
        .iter()
        .map(|(t, progs)| {
            (
                t.label().to_string(),
                progs
                    .iter()
                    .filter(|(_, (_, cnt))| *cnt > 0)
                    .map(|(p, (ns, cnt))| {
                        (
                            p.clone(),
                            ((*ns as f64 / *cnt as f64) * 10.0).round() / 10.0,
                        )
                    })
                    .collect(),
            )
        })
        .collect();
    let tick = 100.0; // USER_HZ
    let results = Results {
        date_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_string(),
        runs_per_config: runs,
        seconds_per_run: secs,
        throughput,
        slowdown_pct: slowdown,
        ns_per_event,
        own_rss_max_bytes: own_rss_max,
        own_cpu_pct_of_one_core: if own_wall > 0.0 {
            ((own_cpu_ticks as f64 / tick) / own_wall * 1000.0).round() / 10.0
        } else {
            0.0
        },
    };
    let md = markdown(&results, smoke);
    println!("{md}");
    let dir = root.join("bench/results");
    std::fs::create_dir_all(&dir)?;
    let stem = if smoke { "smoke" } else { "latest" };
    std::fs::write(dir.join(format!("{stem}.md")), &md)?;
    std::fs::write(
        dir.join(format!("{stem}.json")),
        serde_json::to_string_pretty(&results)?,
    )?;
    eprintln!("bench: wrote bench/results/{stem}.md and .json");
    Ok(())
}

fn markdown(r: &Results, smoke: bool) -> String {
    let mut s = String::new();
    s.push_str(&format!(
        "# leaktracer benchmarks{}\n\nKernel {}; {} alternating run(s) of {} s per configuration; medians.\n\n",
        if smoke { " (smoke run: harness check only, timings meaningless)" } else { "" },
        r.kernel,
        r.runs_per_config,
        r.seconds_per_run
    ));
    s.push_str("## Workload slowdown (stress-ng bogo-ops/s, % slower than no tracer; target < 3%)\n\n| workload | no tracer (ops/s) | leaktracer raw | leaktracer classic | bpftrace |\n|---|---|---|---|---|\n");
    for (w, by) in &r.throughput {
        let sl = |t: Tracer| {
            r.slowdown_pct
                .get(w)
                .and_then(|m| m.get(t.label()))
                .map_or("-".to_string(), |v| format!("{v:+.1}%"))
        };
        s.push_str(&format!(
            "| {w} | {:.0} | {} | {} | {} |\n",
            by.get(Tracer::None.label()).copied().unwrap_or(0.0),
            sl(Tracer::LeaktracerRaw),
            sl(Tracer::LeaktracerTracepoint),
            sl(Tracer::Bpftrace)
        ));
    }
    s.push_str("\n## Cost per event (ns, kernel.bpf_stats_enabled; target < 150 ns)\n\n| tracer | program | ns/event |\n|---|---|---|\n");
    for (t, progs) in &r.ns_per_event {
        for (p, ns) in progs {
            s.push_str(&format!("| {t} | {p} | {ns:.1} |\n"));
        }
    }
    s.push_str(&format!(
        "\n## leaktracer's own footprint while tracing these workloads (raw mode)\n\n- max RSS: {:.1} MiB (target < 32 MiB)\n- CPU: {:.1}% of one core\n",
        r.own_rss_max_bytes as f64 / 1048576.0,
        r.own_cpu_pct_of_one_core
    ));
    s
}

fn cpu_ticks(pid: u32) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    // fields after ')' start at state (3rd); utime is the 14th, stime the 15th overall.
    f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
}

fn rss_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("VmRSS:")
                    .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            })
        })
        .unwrap_or(0)
        * 1024
}
