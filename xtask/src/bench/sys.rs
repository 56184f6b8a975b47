//! Small readers of /proc and signals: the measurements every section shares.
use std::{
    ffi::OsStr,
    process::{Child, Command},
    time::{Duration, Instant},
};

use serde::Serialize;

/// USER_HZ: the unit of utime/stime in /proc/PID/stat.
const TICKS_PER_SEC: f64 = 100.0;

/// CPU time (user + system) a process has used so far, in seconds; 0 when it is gone.
pub fn cpu_secs(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields after ')' start at state (field 3); utime is field 14, stime field 15.
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    (ticks(11) + ticks(12)) as f64 / TICKS_PER_SEC
}

/// A `/proc/PID/status` size field (VmRSS, VmHWM, ...) in bytes; 0 when unavailable.
pub fn status_bytes(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix(field)?
                    .strip_prefix(':')?
                    .split_whitespace()
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
        })
        .unwrap_or(0)
        * 1024
}

/// Whether `program` is an executable file in a $PATH directory.
pub fn installed(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| {
            std::fs::metadata(dir.join(program))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    })
}

/// Which CPU the measured workloads run on and which the rest (tracers' userspace,
/// redis-benchmark, the harness) run on, through `taskset -c`.
///
/// On 2 cores: workloads on the last CPU, everything else on CPU 0. The workload then never
/// shares its CPU with the tracer's userspace or redis's load generator, so what a tracer
/// costs it is only what the kernel charges to it (its eBPF programs), the run-to-run noise
/// from migrations between CPUs goes, and every round runs on the same CPU. Other tenants of
/// the machine are not pinned; the per-CPU-second metric keeps their competition for the CPU
/// out of the figures.
///
/// Workloads also run with address-space layout randomisation off (`setarch -R`, which
/// execs the rest of the command line: the child's pid is still the program's). Where a
/// process's heap and stack land decides how its hot data falls into the caches: with a new
/// random layout every run, stress-ng brk's untraced 1-second runs seconds apart spread by
/// ±9%; with the same layout every run, by ±4% (bench/layout-noise.sh). Traced and untraced
/// runs get that same layout, so a tracer's cost is all that differs between them. The C and
/// Go loops spread as much either way (their noise comes from the machine).
#[derive(Clone, Debug, Serialize)]
pub struct Pinning {
    pub workload_cpu: Option<u32>,
    pub other_cpu: Option<u32>,
    /// Whether workloads run with the same address-space layout every run (`setarch -R`).
    pub fixed_layout: bool,
}

impl Pinning {
    /// Pin when at least two CPUs are online and taskset is installed; otherwise not at all.
    pub fn detect() -> Self {
        let online = std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap_or_default();
        match parse_cpu_list(&online) {
            Some(cpus) if cpus.len() >= 2 && installed("taskset") => Self {
                workload_cpu: cpus.last().copied(),
                other_cpu: cpus.first().copied(),
                fixed_layout: installed("setarch"),
            },
            _ => Self {
                fixed_layout: installed("setarch"),
                ..Self::none()
            },
        }
    }

    pub fn none() -> Self {
        Self {
            workload_cpu: None,
            other_cpu: None,
            fixed_layout: false,
        }
    }

    /// A command for a measured workload.
    pub fn workload(&self, program: impl AsRef<OsStr>) -> Command {
        if !self.fixed_layout {
            return pinned(self.workload_cpu, program);
        }
        // setarch execs the pinned command line as it stands.
        let pinned = pinned(self.workload_cpu, program);
        let mut c = Command::new("setarch");
        c.arg("-R")
            .arg(pinned.get_program())
            .args(pinned.get_args());
        c
    }

    /// A command for a tracer or load generator.
    pub fn other(&self, program: impl AsRef<OsStr>) -> Command {
        pinned(self.other_cpu, program)
    }

    pub fn describe(&self) -> String {
        let pinning = match (self.workload_cpu, self.other_cpu) {
            (Some(w), Some(o)) => format!(
                "pinned with `taskset -c`: the workload on CPU {w}; tracers' userspace, redis-benchmark and bcc memleak on CPU {o}"
            ),
            _ => "not pinned (fewer than 2 CPUs online, or no taskset)".into(),
        };
        let layout = if self.fixed_layout {
            "; workloads run with the same address-space layout every run (`setarch -R`: with a random layout per run, stress-ng brk's untraced runs alone spread by ±9%, bench/layout-noise.sh)"
        } else {
            ""
        };
        format!("{pinning}{layout}")
    }
}

/// `taskset -c CPU program` (taskset execs the program: the child's pid is the program's).
fn pinned(cpu: Option<u32>, program: impl AsRef<OsStr>) -> Command {
    match cpu {
        Some(cpu) => {
            let mut c = Command::new("taskset");
            c.args(["-c", &cpu.to_string()]).arg(program);
            c
        }
        None => Command::new(program),
    }
}

/// A kernel CPU list such as "0-1" or "0,2-3" (sysfs `online`), in order.
pub fn parse_cpu_list(text: &str) -> Option<Vec<u32>> {
    let mut out = Vec::new();
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => out.extend(a.parse::<u32>().ok()?..=b.parse::<u32>().ok()?),
            None => out.push(part.parse().ok()?),
        }
    }
    (!out.is_empty()).then_some(out)
}

/// The 1-minute load average, for the "machine not quiet" warning.
pub fn load1(loadavg: &str) -> Option<f64> {
    loadavg.split_whitespace().next()?.parse().ok()
}

pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

pub fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string()
}

pub fn cpus() -> usize {
    std::thread::available_parallelism().map_or(0, |n| n.get())
}

unsafe extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

pub const SIGINT: i32 = 2;
pub const SIGKILL: i32 = 9;

/// Send `sig` to a pid (negative: a process group). Errors (already gone) are ignored.
pub fn signal(pid: i32, sig: i32) {
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe { libc_kill(pid, sig) };
}

/// SIGINT, then SIGKILL if the child has not exited after `grace`.
pub fn interrupt(child: &mut Child, grace: Duration) {
    signal(child.id() as i32, SIGINT);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The CPU time and wall time of a process over a measured window.
pub struct CpuMeter {
    pid: u32,
    cpu0: f64,
    t0: Instant,
}

impl CpuMeter {
    pub fn start(pid: u32) -> Self {
        Self {
            pid,
            cpu0: cpu_secs(pid),
            t0: Instant::now(),
        }
    }

    /// Percent of one core used since `start`.
    pub fn pct_of_core(&self) -> f64 {
        let wall = self.t0.elapsed().as_secs_f64();
        if wall <= 0.0 {
            return 0.0;
        }
        (cpu_secs(self.pid) - self.cpu0) / wall * 100.0
    }
}

pub fn median(v: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0-1\n"), Some(vec![0, 1]));
        assert_eq!(parse_cpu_list("0,2-3"), Some(vec![0, 2, 3]));
        assert_eq!(parse_cpu_list("0"), Some(vec![0]));
        assert_eq!(parse_cpu_list(""), None);
        assert_eq!(parse_cpu_list("x"), None);
    }

    #[test]
    fn workloads_run_pinned_with_a_fixed_layout() {
        let words = |c: Command| {
            std::iter::once(c.get_program())
                .chain(c.get_args())
                .map(|a| a.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        };
        let pin = Pinning {
            workload_cpu: Some(1),
            other_cpu: Some(0),
            fixed_layout: true,
        };
        assert_eq!(
            words(pin.workload("stress-ng")),
            "setarch -R taskset -c 1 stress-ng"
        );
        // Tracers and load generators keep the kernel's layout randomisation.
        assert_eq!(words(pin.other("bpftrace")), "taskset -c 0 bpftrace");
        let unpinned = Pinning {
            fixed_layout: true,
            ..Pinning::none()
        };
        assert_eq!(
            words(unpinned.workload("redis-server")),
            "setarch -R redis-server"
        );
        assert_eq!(words(Pinning::none().workload("x")), "x");
    }

    #[test]
    fn first_load_figure() {
        assert_eq!(load1("2.76 2.96 3.91"), Some(2.76));
        assert_eq!(load1("?"), None);
    }

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[f64::NAN, 1.0]), Some(1.0));
    }
}
