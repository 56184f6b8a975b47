//! The tracers compared, started and stopped the same way: leaktracer `record` (raw and
//! classic rss_stat), leaktracer `daemon`, the bpftrace equivalent, and bcc's memleak (which
//! follows one pid, so it is attached per workload run: see `memleak.rs`).
use std::{
    fs::File,
    io::{Read as _, Write as _},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use serde::Serialize;

use super::{
    bpf::{self, ProgStat},
    memleak::Memleak,
    sys,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Tracer {
    None,
    LeaktracerRaw,
    LeaktracerClassic,
    LeaktracerDaemon,
    Bpftrace,
    Memleak,
}

impl Tracer {
    pub const ALL: [Tracer; 6] = [
        Self::None,
        Self::LeaktracerRaw,
        Self::LeaktracerClassic,
        Self::LeaktracerDaemon,
        Self::Bpftrace,
        Self::Memleak,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Self::None => "no tracer",
            Self::LeaktracerRaw => "leaktracer record (raw rss_stat)",
            Self::LeaktracerClassic => "leaktracer record (classic rss_stat)",
            Self::LeaktracerDaemon => "leaktracer daemon",
            Self::Bpftrace => "bpftrace equivalent",
            Self::Memleak => "bcc memleak -p",
        }
    }

    pub fn is_leaktracer(self) -> bool {
        matches!(
            self,
            Self::LeaktracerRaw | Self::LeaktracerClassic | Self::LeaktracerDaemon
        )
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
        Tracer::LeaktracerRaw => record(env, "raw", &[], tag).map(Some),
        Tracer::LeaktracerClassic => record(env, "tracepoint", &[], tag).map(Some),
        Tracer::LeaktracerDaemon => daemon(env, tag).map(Some),
        Tracer::Bpftrace => bpftrace(env, tag).map(Some),
    }
}

/// `leaktracer record` into a trace file under the work dir; ready once the header is written
/// (which happens after the programs are attached).
pub fn record(env: &Env, rss_source: &str, extra: &[&str], tag: &str) -> anyhow::Result<Running> {
    let trace = env.work.join(format!("{tag}.jsonl"));
    let _ = std::fs::remove_file(&trace);
    let mut cmd = Command::new(&env.bin);
    cmd.arg("record")
        .arg("--output")
        .arg(&trace)
        .args(["--rss-source", rss_source])
        .args(extra);
    let mut r = spawn(cmd, env, tag)?;
    r.trace = Some(trace.clone());
    wait_until(&mut r, env, tag, Duration::from_secs(30), || {
        std::fs::metadata(&trace).is_ok_and(|m| m.len() > 0)
    })?;
    Ok(r)
}

fn daemon(env: &Env, tag: &str) -> anyhow::Result<Running> {
    let port = free_port()?;
    let mut cmd = Command::new(&env.bin);
    cmd.args(["daemon", "--listen", &format!("127.0.0.1:{port}")]);
    let mut r = spawn(cmd, env, tag)?;
    wait_until(&mut r, env, tag, Duration::from_secs(30), || {
        http_ok(port, "/readyz")
    })?;
    Ok(r)
}

fn bpftrace(env: &Env, tag: &str) -> anyhow::Result<Running> {
    if let Some(why) = &env.bpftrace_missing {
        bail!("{why}");
    }
    let mut cmd = Command::new("bpftrace");
    cmd.arg(env.root.join("bench/peer.bt"));
    let r = spawn(cmd, env, tag)?;
    wait_programs(r, env, tag, 6)
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

fn free_port() -> anyhow::Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(l.local_addr()?.port())
}

fn http_ok(port: u16, path: &str) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").is_err() {
        return false;
    }
    let mut head = [0u8; 16];
    s.read(&mut head).is_ok_and(|n| {
        String::from_utf8_lossy(&head[..n])
            .split_whitespace()
            .nth(1)
            == Some("200")
    })
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
