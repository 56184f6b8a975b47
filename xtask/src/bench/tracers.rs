//! The tracers compared, started and stopped the same way: leaktracer `record` with its
//! default options (whatever the overhead budget and rss source default to), the bpftrace
//! script on the same hooks (bench/peer.bt), and bcc's memleak (which follows one pid, so it
//! is attached per workload run: see `memleak.rs`). Every tracer runs on the "other" CPU
//! (`sys::Pinning`), away from the measured workload.
use std::{
    fs::File,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use serde::Serialize;

use super::{
    bpf::{self, ProgStat},
    memleak::Memleak,
    sys::{self, Pinning},
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Tracer {
    None,
    /// `leaktracer record` with its defaults.
    Leaktracer,
    Bpftrace,
    Memleak,
    /// Programs that do nothing, on leaktracer's hooks (bench/floor.bt): the least any tracer
    /// of these hooks costs here.
    Floor,
    /// `leaktracer profile` on the workload's processes (growth sites: sampled page faults).
    Profile,
    /// `leaktracer record --stacks` with its defaults: growth sites of every process, under
    /// the overhead budget.
    RecordStacks,
}

impl Tracer {
    pub const ALL: [Tracer; 7] = [
        Self::None,
        Self::Leaktracer,
        Self::Bpftrace,
        Self::Memleak,
        Self::Floor,
        Self::Profile,
        Self::RecordStacks,
    ];

    /// The cells the slowdown verdicts rest on: every round runs them.
    pub fn judged(self) -> bool {
        matches!(self, Self::None | Self::Leaktracer | Self::Bpftrace)
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::None => "no tracer",
            Self::Leaktracer => "leaktracer record",
            Self::Bpftrace => "bpftrace, same hooks",
            Self::Memleak => "bcc memleak -p",
            Self::Floor => "empty programs, same hooks",
            Self::Profile => "leaktracer profile of the workload",
            Self::RecordStacks => "leaktracer record --stacks",
        }
    }
}

/// What the sections need to start tracers and workloads.
pub struct Env {
    pub root: PathBuf,
    /// The release leaktracer binary.
    pub bin: PathBuf,
    /// Scratch directory for traces, logs and built helpers (target/bench).
    pub work: PathBuf,
    /// bcc's memleak, or why it cannot run here.
    pub memleak: Result<Memleak, String>,
    /// Why bpftrace cannot run here, if it cannot.
    pub bpftrace_missing: Option<String>,
    /// CPUs for the workloads and for everything else.
    pub pin: Pinning,
}

impl Env {
    /// A command for a tracer: on the CPU away from the workloads.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        self.pin.other(program)
    }
}

/// A tracer process, stopped (SIGINT, then SIGKILL) when dropped.
pub struct Running {
    child: Option<Child>,
    pid: u32,
    /// The trace file of a `record`.
    pub trace: Option<PathBuf>,
}

impl Running {
    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn programs(&self) -> Vec<ProgStat> {
        bpf::programs_of(self.pid)
    }

    /// Stop it; returns its programs' final counters (read just before the stop).
    pub fn stop(mut self) -> Vec<ProgStat> {
        let progs = self.programs();
        self.interrupt();
        progs
    }

    fn interrupt(&mut self) {
        if let Some(mut c) = self.child.take() {
            sys::interrupt(&mut c, Duration::from_secs(10));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.interrupt();
    }
}

/// Start a node-wide tracer and wait until its programs are attached. `None` for no tracer
/// and for memleak (attached per workload run).
pub fn start(tracer: Tracer, env: &Env, tag: &str) -> anyhow::Result<Option<Running>> {
    match tracer {
        Tracer::None | Tracer::Memleak => Ok(None),
        Tracer::Leaktracer => record(env, &[], tag).map(Some),
        Tracer::Bpftrace => bpftrace(env, tag, "bench/peer.bt", 6).map(Some),
        Tracer::Floor => bpftrace(env, tag, "bench/floor.bt", 6).map(Some),
        Tracer::Profile => profile(env, tag).map(Some),
        Tracer::RecordStacks => record(env, &["--stacks"], tag).map(Some),
    }
}

/// The command names of every slowdown workload's processes: `profile` samples them all.
const WORKLOAD_COMMS: [&str; 7] = [
    "stress-ng-brk",
    "stress-ng-mmap",
    "stress-ng-malloc",
    "stress-ng-vm",
    "redis-server",
    "helpers",
    "allocbench",
];

/// `leaktracer profile` of the workloads' processes (they join as they start), until
/// stopped; ready once its page-fault program is attached.
fn profile(env: &Env, tag: &str) -> anyhow::Result<Running> {
    let mut cmd = env.command(&env.bin);
    cmd.args(["profile", "--duration", "1h", "--output"])
        .arg(env.work.join(format!("{tag}.pb.gz")));
    for comm in WORKLOAD_COMMS {
        cmd.args(["--comm", comm]);
    }
    let r = spawn(cmd, env, tag)?;
    wait_programs(r, env, tag, 1)
}

/// `leaktracer record` into a trace file under the work dir, with `extra` options on top of its
/// defaults; ready once the header is written (which happens after the programs are attached).
pub fn record(env: &Env, extra: &[&str], tag: &str) -> anyhow::Result<Running> {
    let trace = env.work.join(format!("{tag}.jsonl"));
    let _ = std::fs::remove_file(&trace);
    let mut cmd = env.command(&env.bin);
    cmd.arg("record").arg("--output").arg(&trace).args(extra);
    let mut r = spawn(cmd, env, tag)?;
    r.trace = Some(trace.clone());
    wait_until(&mut r, env, tag, Duration::from_secs(30), || {
        std::fs::metadata(&trace).is_ok_and(|m| m.len() > 0)
    })?;
    Ok(r)
}

/// bpftrace running `script`, once its `programs` programs are attached.
fn bpftrace(env: &Env, tag: &str, script: &str, programs: usize) -> anyhow::Result<Running> {
    if let Some(why) = &env.bpftrace_missing {
        bail!("{why}");
    }
    let mut cmd = env.command("bpftrace");
    cmd.arg(env.root.join(script));
    let r = spawn(cmd, env, tag)?;
    wait_programs(r, env, tag, programs)
}

impl Memleak {
    /// Attach `memleak -p pid` and wait for its uprobes.
    pub fn attach(&self, env: &Env, pid: u32, tag: &str) -> anyhow::Result<Running> {
        let mut cmd = env.command(&self.exe);
        // Report every 3600 s: nothing printed while measuring.
        cmd.args(["-p", &pid.to_string(), "3600"]);
        if let Some(h) = &self.headers {
            cmd.env("BCC_KERNEL_SOURCE", h);
        }
        let r = spawn(cmd, env, tag)?;
        wait_programs(r, env, tag, 2)
    }
}

/// Spawn a tracer with stdout discarded and stderr kept in `<work>/<tag>.stderr`.
pub fn spawn(mut cmd: Command, env: &Env, tag: &str) -> anyhow::Result<Running> {
    let log = File::create(env.work.join(format!("{tag}.stderr")))
        .with_context(|| format!("creating the stderr log of {tag}"))?;
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {cmd:?}"))?;
    Ok(Running {
        pid: child.id(),
        child: Some(child),
        trace: None,
    })
}

/// Wait until the tracer holds at least `min` programs and their number has not changed
/// for a second (bpftrace and bcc print nothing once attached).
pub fn wait_programs(mut r: Running, env: &Env, tag: &str, min: usize) -> anyhow::Result<Running> {
    let pid = r.pid();
    let mut last = (0, Instant::now());
    wait_until(&mut r, env, tag, Duration::from_secs(90), || {
        let n = bpf::programs_of(pid).len();
        if n != last.0 {
            last = (n, Instant::now());
        }
        n >= min && last.1.elapsed() >= Duration::from_secs(1)
    })?;
    Ok(r)
}

/// Poll `ready` every 20 ms; fail with the tracer's stderr if it exits or times out.
fn wait_until(
    r: &mut Running,
    env: &Env,
    tag: &str,
    timeout: Duration,
    mut ready: impl FnMut() -> bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if ready() {
            return Ok(());
        }
        let exited = r.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
        if let Some(status) = exited {
            bail!(
                "{tag} exited ({status}) before attaching: {}",
                stderr_tail(env, tag)
            );
        }
        if Instant::now() > deadline {
            bail!(
                "{tag} not attached within {} s: {}",
                timeout.as_secs(),
                stderr_tail(env, tag)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The last meaningful line a tracer wrote to stderr.
pub fn stderr_tail(env: &Env, tag: &str) -> String {
    let text = std::fs::read_to_string(env.work.join(format!("{tag}.stderr"))).unwrap_or_default();
    text.lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("(no output)")
        .chars()
        .take(200)
        .collect()
}

/// Whether a command can be run (`--version` succeeds).
pub fn missing(program: &str) -> Option<String> {
    match Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(s) if s.success() => None,
        Ok(s) => Some(format!("`{program} --version` failed ({s})")),
        Err(_) => Some(format!("{program} not installed")),
    }
}

pub fn work_dir(root: &Path) -> anyhow::Result<PathBuf> {
    let dir = root.join("target/bench");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    /// The peer must trace what leaktracer traces (issue 11: mmap, munmap, madvise, brk at
    /// enter, and rss_stat), or comparing their slowdowns means nothing.
    #[test]
    fn the_bpftrace_peer_uses_leaktracers_hooks() {
        let script = include_str!("../../../bench/peer.bt");
        for hook in [
            "tracepoint:syscalls:sys_enter_mmap",
            "tracepoint:syscalls:sys_enter_munmap",
            "tracepoint:syscalls:sys_enter_madvise",
            "tracepoint:syscalls:sys_enter_brk",
            "tracepoint:kmem:rss_stat",
        ] {
            assert!(
                script.lines().any(|l| l.starts_with(&format!("{hook} "))),
                "bench/peer.bt lacks {hook}"
            );
        }
    }

    /// The floor runs an empty program on each of leaktracer's own hooks (the ones the
    /// per-event table lists), exit programs included.
    #[test]
    fn the_floor_script_covers_leaktracers_hooks() {
        let script = include_str!("../../../bench/floor.bt");
        let probes: Vec<&str> = script
            .lines()
            .filter(|l| l.starts_with("tracepoint:"))
            .collect();
        for hook in [
            "syscalls:sys_exit_mmap",
            "syscalls:sys_enter_munmap",
            "syscalls:sys_exit_mremap",
            "syscalls:sys_enter_madvise",
            "syscalls:sys_exit_brk",
            "kmem:rss_stat",
        ] {
            assert!(
                probes
                    .iter()
                    .any(|l| l.starts_with(&format!("tracepoint:{hook} {{ $x = 1; }}"))),
                "bench/floor.bt lacks an empty program on {hook}"
            );
        }
        assert_eq!(probes.len(), 6, "one empty program per hook, nothing else");
    }
}
