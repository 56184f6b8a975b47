//! The cgroup-v2 guest tests of `cargo xtask test`: tests/guest/*.sh on every guest kernel.
//!
//! - memcg-v2.sh: the harness itself (cgroup2 memory controller, a real memory.max OOM kill).
//! - oom-v2.sh: `leaktracer oom --format json` names the victim, the trigger, the v2 cgroup and
//!   its limit.
//! - events-v2.sh: `leaktracer record` writes the `oom_kill` record with the same evidence.
//! - node-v2.sh: zombie memory cgroups (nr_dying_descendants) counted, named, judged and
//!   seen freed.
//! - stacks.sh: `leaktracer profile` loads the growth-site programs (page faults, mmap, brk)
//!   through each kernel's verifier and samples a leaker's first touches and mmaps.
use std::{
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};
use serde_json::Value;

use super::{GuestRun, Kernel, kernels, run_in_guest};

/// Per guest run; TCG on 2 shared cores: the slowest run seen took 47 s.
pub const TIMEOUT: Duration = Duration::from_secs(180);
const CGROUP: &str = "/lt-test";
const LIMIT: u64 = 64 << 20;

/// Run the guest scripts on both Debian kernels with these binaries (the leaktracer build to
/// test and the tests crate's `leaker`), checking what they report; or only the script `only`,
/// printing its console. Fails on the first failure, with the guest's console in the error.
pub fn run(
    root: &Path,
    leaktracer: &Path,
    leaker: &Path,
    only: Option<&str>,
) -> anyhow::Result<()> {
    let start = Instant::now();
    let kernels = kernels(root)?;
    if let Some(script) = only {
        for kernel in &kernels {
            guest(root, kernel, script, &[leaktracer, leaker], |run, _| {
                eprintln!("{}", run.console);
                Ok(())
            })?;
        }
        return Ok(());
    }
    for kernel in &kernels {
        guest(root, kernel, "memcg-v2.sh", &[leaker], |_, _| Ok(()))?;
        guest(
            root,
            kernel,
            "stacks.sh",
            &[leaktracer, leaker],
            |run, pid| {
                let lines = run
                    .section("=====PROFILE-JSON-BEGIN=====", "=====PROFILE-JSON-END=====")
                    .context("no PROFILE-JSON section")?;
                check_profile(&parse_lines(&lines)?, pid)
            },
        )?;
        guest(root, kernel, "node-v2.sh", &[leaktracer], |run, _| {
            check_zombies(run)
        })?;
        guest(
            root,
            kernel,
            "oom-v2.sh",
            &[leaktracer, leaker],
            |run, pid| {
                let lines = run
                    .section("=====OOM-JSON-BEGIN=====", "=====OOM-JSON-END=====")
                    .context("no OOM-JSON section")?;
                let records = parse_lines(&lines)?;
                ensure!(
                    records.len() == 1,
                    "expected 1 OOM record, got {}",
                    records.len()
                );
                check_oom_record(&records[0], pid)
            },
        )?;
        guest(
            root,
            kernel,
            "events-v2.sh",
            &[leaktracer, leaker],
            |run, pid| {
                let lines = run
                    .section("=====TRACE-BEGIN=====", "=====TRACE-END=====")
                    .context("no TRACE section")?;
                let trace = parse_lines(&lines)?;
                let kills: Vec<&Value> = trace.iter().filter(|r| r["type"] == "oom_kill").collect();
                ensure!(
                    kills.len() == 1,
                    "expected 1 oom_kill record, got {}",
                    kills.len()
                );
                check_oom_record(kills[0], pid)?;
                // cgroup v2 memory.events, watched with inotify: the kill shows as oom_kill.
                let memcg: Vec<&Value> = trace
                    .iter()
                    .filter(|r| {
                        r["type"] == "memcg" && r["kind"] == "events" && r["cgroup"] == "/lt-test"
                    })
                    .collect();
                ensure!(
                    memcg
                        .iter()
                        .any(|r| r["deltas"]["oom_kill"].as_u64().unwrap_or(0) >= 1),
                    "no memory.events oom_kill for /lt-test in the trace: {memcg:?}"
                );
                ensure!(
                    memcg
                        .iter()
                        .any(|r| r["deltas"]["max"].as_u64().unwrap_or(0) >= 1),
                    "no memory.events max for /lt-test in the trace: {memcg:?}"
                );
                check_throttled(&trace, "/lt-high")?;
                ensure!(
                    memcg_of(&trace, "reclaim", "/lt-test")
                        .iter()
                        .any(|r| r["runs"].as_u64().unwrap_or(0) >= 1),
                    "no direct reclaim recorded for /lt-test before its OOM kill"
                );
                ensure!(
                    trace.last().is_some_and(|r| r["type"] == "summary"),
                    "the trace does not end with its summary line"
                );
                Ok(())
            },
        )?;
    }
    eprintln!(
        "xtask: guest tests passed on {} kernels in {:.0?}",
        kernels.len(),
        start.elapsed()
    );
    Ok(())
}

/// stacks.sh's profile: the leaker was a target, and both its first touches and its mmaps
/// were sampled.
fn check_profile(records: &[Value], leaker_pid: u64) -> anyhow::Result<()> {
    ensure!(leaker_pid != 0, "the script printed no LEAKER-PID");
    let [p] = records else {
        bail!("expected 1 JSON line, got {}", records.len());
    };
    ensure!(
        p["processes"]
            .as_array()
            .is_some_and(|ps| ps.iter().any(|x| x["pid"] == leaker_pid)),
        "the leaker {leaker_pid} was not profiled: {p}"
    );
    let count = |v: &Value| v.as_u64().unwrap_or(0);
    ensure!(
        count(&p["samples"]) >= 1 && count(&p["mapped_samples"]) >= 1,
        "first touches and mmaps both sampled: {p}"
    );
    ensure!(
        count(&p["counters"]["growth_calls"]) >= 1 && count(&p["counters"]["faults"]) >= 1,
        "the kernel side saw the faults and the mmaps: {p}"
    );
    eprintln!(
        "xtask: stacks.sh: {} first-touch and {} mmap samples, counters {}",
        p["samples"], p["mapped_samples"], p["counters"]
    );
    Ok(())
}

/// Zombies the guest's node-v2.sh makes (its ZOMBIES default).
const ZOMBIES: u64 = 300;

/// node-v2.sh's trace: the zombie count agrees with the kernel's nr_dying_descendants within
/// 10%, every removal under /ltz is named, the count is judged growing or leaking, and the
/// kernel's freeing of them is seen.
fn check_zombies(run: &GuestRun) -> anyhow::Result<()> {
    let value = |key: &str| -> anyhow::Result<u64> {
        run.console
            .lines()
            .find_map(|l| l.trim().strip_prefix(key)?.parse().ok())
            .with_context(|| format!("no {key} line"))
    };
    let (dying, dying_after) = (value("KERNEL-DYING=")?, value("KERNEL-DYING-FREED=")?);
    let lines = run
        .section("=====TRACE-BEGIN=====", "=====TRACE-END=====")
        .context("no TRACE section")?;
    let trace = parse_lines(&lines)?;
    check_zombie_trace(&trace, dying, dying_after)
}

fn check_zombie_trace(trace: &[Value], dying: u64, dying_after: u64) -> anyhow::Result<()> {
    ensure!(
        dying >= ZOMBIES * 9 / 10,
        "the kernel holds {dying} dying cgroups: the scenario did not make {ZOMBIES}"
    );
    let counts: Vec<u64> = trace
        .iter()
        .filter(|r| r["type"] == "node")
        .filter_map(|r| r["zombies"]["zombies"].as_u64())
        .collect();
    let peak = counts.iter().copied().max().unwrap_or(0);
    ensure!(
        peak.abs_diff(dying) * 10 <= dying,
        "leaktracer counted at most {peak} zombie memory cgroups, the kernel {dying}"
    );
    let under = |action: &str| {
        trace
            .iter()
            .filter(|r| {
                r["type"] == "cgroup"
                    && r["action"] == action
                    && r["path"].as_str().is_some_and(|p| p.starts_with("/ltz/"))
            })
            .count() as u64
    };
    ensure!(
        under("rmdir") == ZOMBIES,
        "{} rmdir records under /ltz, not {ZOMBIES}",
        under("rmdir")
    );
    ensure!(
        trace.iter().any(|r| r["type"] == "node_verdict"
            && r["series"] == "memcg_zombies"
            && (r["verdict"] == "growing" || r["verdict"] == "leaking")),
        "memcg_zombies was never judged growing or leaking"
    );
    // The page cache they hold under /ltz: the files' 256 KiB each, within 20%.
    let written = ZOMBIES * (256 << 10);
    let held = trace
        .iter()
        .filter(|r| r["type"] == "node")
        .filter_map(|r| {
            r["held"]
                .as_array()?
                .iter()
                .find(|h| h["parent"] == "/ltz")?["bytes"]
                .as_u64()
        })
        .max()
        .unwrap_or(0);
    ensure!(
        held.abs_diff(written) * 5 <= written,
        "the zombies under /ltz hold at most {held} bytes of page cache by the trace; {written} were written"
    );
    let freed_by_kernel = dying.saturating_sub(dying_after);
    ensure!(
        under("release").abs_diff(freed_by_kernel) * 10 <= freed_by_kernel.max(1),
        "{} release records under /ltz; the kernel freed {freed_by_kernel}",
        under("release")
    );
    Ok(())
}

/// The trace's `memcg` records of one kind for one cgroup.
fn memcg_of<'a>(trace: &'a [Value], kind: &str, cgroup: &str) -> Vec<&'a Value> {
    trace
        .iter()
        .filter(|r| {
            r["type"] == "memcg"
                && r["kind"] == kind
                && (r["cgroup"] == cgroup || r["scope"] == cgroup)
        })
        .collect()
}

/// A process held above memory.high shows as memory.events `high`, direct reclaim with its
/// stall, and PSI pressure on the cgroup's own memory.pressure.
fn check_throttled(trace: &[Value], cgroup: &str) -> anyhow::Result<()> {
    let events = memcg_of(trace, "events", cgroup);
    ensure!(
        events
            .iter()
            .any(|r| r["deltas"]["high"].as_u64().unwrap_or(0) >= 1),
        "no memory.events high for {cgroup}: {events:?}"
    );
    let reclaim = memcg_of(trace, "reclaim", cgroup);
    let runs: u64 = reclaim.iter().filter_map(|r| r["runs"].as_u64()).sum();
    let stall: f64 = reclaim.iter().filter_map(|r| r["stall_ms"].as_f64()).sum();
    ensure!(
        runs >= 1 && stall > 0.0,
        "no direct reclaim recorded for {cgroup}: {reclaim:?}"
    );
    let pressure = memcg_of(trace, "pressure", cgroup);
    ensure!(
        !pressure.is_empty(),
        "no PSI pressure event from {cgroup}/memory.pressure"
    );
    eprintln!(
        "xtask: {cgroup}: {} memory.events lines, reclaim {runs} runs stalling {stall:.0} ms, {} pressure events",
        events.len(),
        pressure.len()
    );
    Ok(())
}

/// Boot `kernel` with tests/guest/`script`; the script must exit 0 and `check` (given the run
/// and the LEAKER-PID the script printed, 0 if none) must pass.
fn guest(
    root: &Path,
    kernel: &Kernel,
    script: &str,
    binaries: &[&Path],
    check: impl Fn(&GuestRun, u64) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let path = root.join("tests/guest").join(script);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let binaries: Vec<_> = binaries.iter().map(|b| b.to_path_buf()).collect();
    let run = run_in_guest(root, kernel, &binaries, &[], &text, TIMEOUT)
        .with_context(|| format!("guest {} {script}", kernel.name))?;
    let pid = run
        .console
        .lines()
        .find_map(|l| l.trim().strip_prefix("LEAKER-PID=")?.parse().ok())
        .unwrap_or(0);
    let verdict = if run.exit_code != 0 {
        Err(anyhow::anyhow!("the script exited with {}", run.exit_code))
    } else {
        check(&run, pid)
    };
    match verdict {
        Ok(()) => {
            eprintln!(
                "xtask: guest {} {script}: ok in {:.1?}",
                kernel.name, run.duration
            );
            Ok(())
        }
        Err(e) => bail!(
            "guest {} {script}: {e:#}\n----- console -----\n{}",
            kernel.name,
            run.console
        ),
    }
}

fn parse_lines(lines: &[&str]) -> anyhow::Result<Vec<Value>> {
    lines
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).with_context(|| format!("not JSON: {l}")))
        .collect()
}

fn check_oom_record(r: &Value, leaker_pid: u64) -> anyhow::Result<()> {
    ensure!(leaker_pid != 0, "the script printed no LEAKER-PID");
    ensure!(r["pid"] == leaker_pid, "victim pid: {r}");
    ensure!(r["comm"] == "leaker", "victim comm: {r}");
    ensure!(r["trigger_pid"] == leaker_pid, "trigger pid: {r}");
    ensure!(r["cgroup"] == CGROUP, "victim cgroup (v2 path): {r}");
    ensure!(
        r["cgroup_limit_bytes"] == LIMIT,
        "cgroup limit (memory.max): {r}"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oom_record_checks() {
        let good = serde_json::json!({"pid": 7, "comm": "leaker", "trigger_pid": 7,
            "cgroup": "/lt-test", "cgroup_limit_bytes": 67108864u64});
        check_oom_record(&good, 7).unwrap();
        assert!(check_oom_record(&good, 8).is_err());
        let mut bad = good.clone();
        bad["cgroup"] = "/".into();
        assert!(check_oom_record(&bad, 7).is_err());
    }
}
