//! The allocation-heavy workloads and the helper programs: stress-ng stressors, redis-server
//! under redis-benchmark, a C malloc churn and a Go allocation loop (both wait for a line on stdin before their timed loop, so
//! a per-pid tracer can attach first), and the C helpers for the footprint section.
use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use serde::Serialize;

use super::sys::{self, Pinning};
use crate::check;

const HELPERS_C: &str = include_str!("helpers.c");

/// What one run of a workload did: operations, the CPU time the workload's own processes used
/// for them, and the wall time.
///
/// The bench divides ops by CPU time, not wall time. On a shared 2-core machine the wall-time
/// rate mostly measures how often other tenants (cargo builds, other engineers' tests, the
/// tracer's own userspace) took the workload's CPU away: that swung untraced runs by ±32-100%
/// and buried a 3% effect. A tracer's cost to a workload is the time its eBPF programs run
/// inside the workload's syscalls and page faults, and the kernel charges that to the
/// workload's system time, so ops per CPU-second still falls by exactly that cost while
/// time spent runnable-but-waiting drops out. What it does not capture (the tracer's own
/// userspace CPU, cache pollution) is measured apart in the footprint section.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Throughput {
    pub ops: f64,
    pub cpu_secs: f64,
    pub wall_secs: f64,
}

impl Throughput {
    /// Operations per CPU-second of the workload; None when it used no measurable CPU.
    pub fn per_cpu_sec(&self) -> Option<f64> {
        (self.cpu_secs > 0.0 && self.ops > 0.0).then(|| self.ops / self.cpu_secs)
    }
}

#[derive(Clone, Debug)]
pub enum Workload {
    /// A stress-ng stressor: its own bogo-ops per usr+sys second.
    Stress {
        name: &'static str,
        args: &'static [&'static str],
    },
    /// A program that prints `ops N` and `cpu_secs S` after a line on stdin. `libc_alloc`: it
    /// allocates through libc's malloc (so memleak's uprobes must fire on it; Go's allocator
    /// does not).
    Gated {
        name: &'static str,
        exe: PathBuf,
        libc_alloc: bool,
    },
    /// redis-server (jemalloc) under redis-benchmark: requests per CPU-second of the server.
    Redis {
        /// Requests per redis-benchmark test, calibrated so that a run lasts about the planned
        /// seconds on this machine.
        requests_per_test: u64,
    },
}

pub const REDIS: &str = "redis-server (jemalloc) under redis-benchmark";

impl Workload {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Stress { name, .. } | Self::Gated { name, .. } => name,
            Self::Redis { .. } => REDIS,
        }
    }
}

/// Allocation-heavy stress-ng stressors (name, args): one instance each, so that it runs on
/// the one CPU the workloads are pinned to.
const STRESS: &[(&str, &[&str])] = &[
    ("stress-ng brk", &["--brk", "1"]),
    ("stress-ng mmap", &["--mmap", "1", "--mmap-bytes", "4M"]),
    ("stress-ng malloc", &["--malloc", "1"]),
    (
        "stress-ng vm (page faults)",
        &["--vm", "1", "--vm-bytes", "128M"],
    ),
];

/// The helper programs, built into the work dir.
pub struct Helpers {
    /// helpers.c: `malloc`, `pace`, `madvise`, `mmap`, `forkpause`.
    pub c: PathBuf,
    /// tests/workloads/go/allocbench.go, or why it could not be built.
    pub go_alloc: Result<PathBuf, String>,
}

pub fn build_helpers(root: &Path, work: &Path) -> anyhow::Result<Helpers> {
    let src = work.join("helpers.c");
    std::fs::write(&src, HELPERS_C).context("writing helpers.c")?;
    let c = work.join("helpers");
    check(Command::new("cc").args(["-O2", "-o"]).arg(&c).arg(&src))
        .context("building the C bench helpers (needs cc)")?;
    let go_alloc = build_go(root, work).map_err(|e| format!("{e:#}"));
    Ok(Helpers { c, go_alloc })
}

fn build_go(root: &Path, work: &Path) -> anyhow::Result<PathBuf> {
    let out = work.join("allocbench");
    let status = Command::new("go")
        .arg("build")
        .arg("-o")
        .arg(&out)
        .arg(root.join("tests/workloads/go/allocbench.go"))
        .env("GOCACHE", work.join("gocache"))
        .env("GOFLAGS", "")
        .env("GO111MODULE", "off")
        .status()
        .context("Go toolchain not found (apt-get install golang-go)")?;
    if !status.success() {
        bail!("go build allocbench.go failed ({status})");
    }
    Ok(out)
}

/// A workload that could not be set up: its name, why, and whether what it needs is installed
/// (not installed is a fact about the machine; installed but failing is a harness failure).
pub struct Missing {
    pub name: String,
    pub why: String,
    pub installed: bool,
}

/// The slowdown workloads: the stress-ng ones, redis, then the C and Go allocation loops.
/// `smoke` keeps the first stress-ng one. `keep` filters by name (substring, any of them).
pub fn slowdown_set(
    helpers: &Helpers,
    pin: &Pinning,
    smoke: bool,
    secs: u64,
    keep: &[String],
) -> (Vec<Workload>, Vec<Missing>) {
    let wanted = |name: &str| keep.is_empty() || keep.iter().any(|k| name.contains(k.as_str()));
    let stress = if smoke { &STRESS[..1] } else { STRESS };
    let mut set: Vec<Workload> = stress
        .iter()
        .map(|(name, args)| Workload::Stress { name, args })
        .collect();
    let mut missing = Vec::new();
    if wanted(REDIS) {
        match calibrate_redis(pin, secs) {
            Ok(requests_per_test) => set.push(Workload::Redis { requests_per_test }),
            Err(e) => missing.push(Missing {
                name: REDIS.into(),
                why: format!("{e:#}"),
                installed: sys::installed("redis-server") && sys::installed("redis-benchmark"),
            }),
        }
    }
    set.push(Workload::Gated {
        name: "C malloc/free churn (glibc)",
        exe: helpers.c.clone(),
        libc_alloc: true,
    });
    match &helpers.go_alloc {
        Ok(exe) => set.push(Workload::Gated {
            name: "Go allocation loop (allocbench.go)",
            exe: exe.clone(),
            libc_alloc: false,
        }),
        Err(why) => missing.push(Missing {
            name: "Go allocation loop (allocbench.go)".into(),
            why: why.clone(),
            installed: sys::installed("go"),
        }),
    }
    set.retain(|w| wanted(w.name()));
    missing.retain(|m| wanted(&m.name));
    (set, missing)
}

/// The seed of stress-ng's random numbers, the same in every run. The malloc stressor draws
/// its allocation sizes and the mmap stressor its flags from them: with a new seed per run,
/// stress-ng malloc's untraced 2-second runs seconds apart spread by ±3%, with this one by
/// ±1% (bench/layout-noise.sh).
const STRESS_SEED: &str = "1";

/// Run a stress-ng stressor for `secs` on the workload CPU.
pub fn stress(pin: &Pinning, args: &[&str], secs: u64) -> anyhow::Result<Throughput> {
    let out = pin
        .workload("stress-ng")
        .args(args)
        .args(["--seed", STRESS_SEED])
        .args(["--timeout", &format!("{secs}s"), "--metrics-brief"])
        .output()
        .context("running stress-ng")?;
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    parse_stress(&text, args[0].trim_start_matches('-'))
        .with_context(|| format!("no bogo-ops rate in stress-ng output:\n{text}"))
}

/// stress-ng's metrics line for `stressor`:
/// `stress-ng: metrc: [pid] brk  452965  3.06  0.16  2.90  148083.50  148187.20`, i.e. bogo
/// ops, real, usr and sys seconds, bogo ops/s (real time), bogo ops/s (usr+sys time). The CPU
/// time is taken as ops ÷ the usr+sys rate, which stress-ng computes from its exact times (the
/// printed seconds are rounded to 10 ms). The "miscellaneous metrics" lines that follow start
/// with the stressor's name too; their second column is not a whole number of ops.
pub fn parse_stress(text: &str, stressor: &str) -> Option<Throughput> {
    text.lines()
        .filter(|l| l.contains("metrc:") || l.contains("info:"))
        .find_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let i = cols.iter().position(|c| *c == stressor)?;
            let num = |k: usize| cols.get(i + k)?.parse::<f64>().ok();
            let ops = cols.get(i + 1)?.parse::<u64>().ok()? as f64;
            let (wall, cpu_rate) = (num(2)?, num(6)?);
            (cpu_rate > 0.0).then(|| Throughput {
                ops,
                cpu_secs: ops / cpu_rate,
                wall_secs: wall,
            })
        })
}

/// What redis-benchmark runs: writes and reads of 512-byte values over 100,000 random keys,
/// and list pushes and pops, 16 requests per pipeline so that the server, not the network
/// round trip, is the bottleneck and jemalloc allocates and frees at a high rate.
const REDIS_TESTS: &[&str] = &["SET", "GET", "LPUSH", "LPOP"];

/// A redis-server on a free port, on the workload CPU, stopped when dropped.
struct RedisServer {
    child: Child,
    port: u16,
}

impl RedisServer {
    fn start(pin: &Pinning) -> anyhow::Result<Self> {
        let port = free_port()?;
        let child = pin
            .workload("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            // No persistence: the bench measures serving, not fork-and-dump.
            .args(["--save", "", "--appendonly", "no", "--logfile", ""])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting redis-server (Debian: redis-server)")?;
        let mut server = Self { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !redis_ping(port) {
            if let Ok(Some(status)) = server.child.try_wait() {
                bail!("redis-server exited ({status}) before answering PING");
            }
            if Instant::now() > deadline {
                bail!("redis-server did not answer PING within 10 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(server)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        sys::interrupt(&mut self.child, Duration::from_secs(5));
    }
}

fn redis_ping(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    let mut buf = [0u8; 16];
    s.write_all(b"PING\r\n").is_ok()
        && s.read(&mut buf)
            .is_ok_and(|n| buf[..n].starts_with(b"+PONG"))
}

fn free_port() -> anyhow::Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(l.local_addr()?.port())
}

/// One redis run: a fresh server (the same empty state every run), `requests_per_test` of
/// each test from redis-benchmark on the other CPU, and the server's CPU time over them
/// (/proc/PID/stat, every thread: jemalloc's background purge thread included).
pub fn redis(pin: &Pinning, requests_per_test: u64) -> anyhow::Result<Throughput> {
    let server = RedisServer::start(pin)?;
    let pid = server.child.id();
    let cpu0 = sys::cpu_secs(pid);
    let t0 = Instant::now();
    let out = pin
        .other("redis-benchmark")
        .args(["-p", &server.port.to_string(), "-t", &REDIS_TESTS.join(",")])
        .args(["-n", &requests_per_test.to_string()])
        .args(["-r", "100000", "-d", "512", "-P", "16", "-c", "32", "--csv"])
        .stdin(Stdio::null())
        .output()
        .context("running redis-benchmark (Debian: redis-tools)")?;
    let wall = t0.elapsed().as_secs_f64();
    let cpu = sys::cpu_secs(pid) - cpu0;
    drop(server);
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "redis-benchmark failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let rps = parse_redis_csv(&text);
    let missing: Vec<&&str> = REDIS_TESTS
        .iter()
        .filter(|t| !rps.iter().any(|(name, r)| name == *t && *r > 0.0))
        .collect();
    if !missing.is_empty() {
        bail!("redis-benchmark printed no rate for {missing:?}: {text:?}");
    }
    Ok(Throughput {
        ops: (requests_per_test * REDIS_TESTS.len() as u64) as f64,
        cpu_secs: cpu,
        wall_secs: wall,
    })
}

/// `redis-benchmark --csv`: a header line, then `"SET","106382.98","4.207",...` per test.
pub fn parse_redis_csv(text: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter_map(|l| {
            let mut cols = l.split(',').map(|c| c.trim().trim_matches('"'));
            let test = cols.next()?;
            let rps = cols.next()?.parse::<f64>().ok()?;
            Some((test.to_string(), rps))
        })
        .collect()
}

/// Requests per test for a run of about `secs`: one untraced probe of 20,000 per test, scaled
/// (rounded to 10,000, at least 10,000). The same count is then used by every run, so traced
/// and untraced runs do the same work.
fn calibrate_redis(pin: &Pinning, secs: u64) -> anyhow::Result<u64> {
    const PROBE: u64 = 20_000;
    let t = redis(pin, PROBE).context("calibrating redis")?;
    let n = PROBE as f64 * secs as f64 / t.wall_secs.max(0.01);
    Ok(((n / 10_000.0).round() as u64 * 10_000).max(10_000))
}

/// A gated workload, started and waiting for its go signal.
pub struct Gated {
    child: Child,
}

impl Gated {
    /// `exe` with the C helper's `malloc` mode or the Go program's arguments, on the
    /// workload CPU (taskset execs it: the child's pid is the program's).
    pub fn spawn(pin: &Pinning, exe: &Path, secs: u64) -> anyhow::Result<Self> {
        let mut cmd = pin.workload(exe);
        if exe.file_name().is_some_and(|n| n == "helpers") {
            cmd.arg("malloc");
        }
        let child = cmd
            .arg(secs.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", exe.display()))?;
        Ok(Self { child })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Start the timed loop and wait for its figures.
    pub fn go(mut self) -> anyhow::Result<Throughput> {
        let mut stdin = self.child.stdin.take().context("workload stdin")?;
        writeln!(stdin).context("starting the workload")?;
        let out = self
            .child
            .wait_with_output()
            .context("waiting for the workload")?;
        let text = String::from_utf8_lossy(&out.stdout);
        parse_gated(&text).with_context(|| {
            format!("no ops/cpu_secs/wall_secs in the workload's output: {text:?}")
        })
    }
}

/// The gated programs' `ops N`, `cpu_secs S` and `wall_secs S` lines.
pub fn parse_gated(text: &str) -> Option<Throughput> {
    let field = |key: &str| {
        text.lines().find_map(|l| {
            l.strip_prefix(key)?
                .strip_prefix(' ')?
                .trim()
                .parse::<f64>()
                .ok()
        })
    };
    Some(Throughput {
        ops: field("ops")?,
        cpu_secs: field("cpu_secs")?,
        wall_secs: field("wall_secs")?,
    })
}

/// `helpers forkpause n`: n sleeping children in their own process group; returns once they
/// exist, with how many were made.
pub fn fork_pause(helpers: &Helpers, n: usize) -> anyhow::Result<(Child, usize)> {
    use std::os::unix::process::CommandExt as _;
    let mut child = Command::new(&helpers.c)
        .args(["forkpause", &n.to_string()])
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("starting helpers forkpause")?;
    let stdout = child.stdout.take().context("forkpause stdout")?;
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .context("reading forkpause's ready line")?;
    let made = line
        .strip_prefix("ready ")
        .and_then(|v| v.trim().parse::<usize>().ok())
        .with_context(|| format!("forkpause said {line:?}"))?;
    Ok((child, made))
}

/// `helpers pace ops_per_sec secs`: one-page mmap + touch + munmap, paced.
pub fn pace(helpers: &Helpers, ops_per_sec: f64, secs: f64) -> anyhow::Result<Child> {
    Command::new(&helpers.c)
        .args(["pace", &format!("{ops_per_sec:.0}"), &format!("{secs}")])
        .stdout(Stdio::null())
        .spawn()
        .context("starting helpers pace")
}

/// `helpers madvise SECS`, one per CPU, not pinned: the event storm of the footprint section
/// (a madvise syscall costs about 1.8 µs on this VM, so one CPU alone stays near 550k events/s).
pub fn madvise_storm(helpers: &Helpers, secs: f64) -> anyhow::Result<Vec<Child>> {
    (0..super::sys::cpus().max(1))
        .map(|_| {
            Command::new(&helpers.c)
                .args(["madvise", &format!("{secs}")])
                .stdout(Stdio::null())
                .spawn()
                .context("starting helpers madvise")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRESS_OUT: &str = "stress-ng: info:  [1] dispatching hogs: 1 brk\n\
stress-ng: metrc: [1] stressor       bogo ops real time  usr time  sys time   bogo ops/s     bogo ops/s\n\
stress-ng: metrc: [1]                           (secs)    (secs)    (secs)   (real time) (usr+sys time)\n\
stress-ng: metrc: [1] brk              452965      3.06      0.16      2.90    148083.50      148187.20\n\
stress-ng: metrc: [1] miscellaneous metrics:\n\
stress-ng: metrc: [1] brk                 2437.82 nanosecs per sbrk page expand (geometic mean of 1 instances)\n";

    #[test]
    fn stress_ng_rate_is_per_cpu_second() {
        let t = parse_stress(STRESS_OUT, "brk").expect("parsed");
        assert_eq!(t.ops, 452965.0);
        assert_eq!(t.wall_secs, 3.06);
        // ops ÷ (usr+sys rate): about 3.06 s of CPU, not the 3.06 s of wall time by chance.
        assert!((t.cpu_secs - 452965.0 / 148187.2).abs() < 1e-9);
        assert!((t.per_cpu_sec().unwrap() - 148187.2).abs() < 1e-6);
        assert_eq!(parse_stress(STRESS_OUT, "mmap"), None);
    }

    #[test]
    fn stress_ng_misc_lines_are_not_metrics() {
        let only_misc = "stress-ng: metrc: [1] brk                 2437.82 nanosecs per sbrk page expand (geometic mean of 1 instances)\n";
        assert_eq!(parse_stress(only_misc, "brk"), None);
        // A stressor that made no progress has no rate: not a measurement.
        let zero = "stress-ng: metrc: [1] brk 0 1.00 0.00 0.00 0.00 0.00\n";
        assert_eq!(parse_stress(zero, "brk"), None);
    }

    #[test]
    fn redis_benchmark_csv() {
        let out = "\"test\",\"rps\",\"avg_latency_ms\",\"min_latency_ms\"\n\"SET\",\"106382.98\",\"4.207\",\"0.400\"\n\"GET\",\"173913.05\",\"2.375\",\"0.208\"\n";
        assert_eq!(
            parse_redis_csv(out),
            vec![
                ("SET".to_string(), 106382.98),
                ("GET".to_string(), 173913.05)
            ]
        );
        assert!(parse_redis_csv("All clients disconnected\n").is_empty());
    }

    #[test]
    fn gated_output() {
        let t = parse_gated("ops_per_sec 800789\nops 802816\ncpu_secs 0.5\nwall_secs 1.002532\n")
            .expect("parsed");
        assert_eq!(t.ops, 802816.0);
        assert_eq!(t.per_cpu_sec(), Some(802816.0 / 0.5));
        // `ops_per_sec` is not `ops`.
        assert_eq!(
            parse_gated("ops_per_sec 5\ncpu_secs 1\nwall_secs 1\n"),
            None
        );
        let idle = Throughput {
            ops: 10.0,
            cpu_secs: 0.0,
            wall_secs: 1.0,
        };
        assert_eq!(idle.per_cpu_sec(), None);
    }
}
