//! Harness for the end-to-end scenarios: find the real `leaktracer` binary, gate privileged
//! tests, run workloads that are killed when the test ends, and read what leaktracer said.
//!
//! Privileged tests need root (CAP_BPF + CAP_PERFMON) and tracefs. Without them they FAIL
//! with a message naming what is missing, unless `LEAKTRACER_SKIP_PRIVILEGED=1` is set,
//! in which case they print that they were skipped and append a line to $LEAKTRACER_SKIP_LOG,
//! which `cargo xtask test` counts (and `.ci/run` refuses any).
// The end-to-end harness: every helper here runs inside a test, where a panic with a
// message is the intended way to fail it (setting up a workload, reading leaktracer's output).
#![allow(clippy::unwrap_used, clippy::expect_used)]
use std::{
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Mutex, MutexGuard},
    time::{Duration, Instant},
};

pub use serde_json::Value;

/// Privileged scenarios measure rates and CPU; running two at once on a 2-core machine
/// would make them measure each other. Each test holds this for its whole run.
static SERIAL: Mutex<()> = Mutex::new(());

/// Take the serial lock and check privileges. `None` means "skipped on request".
pub fn privileged() -> Option<MutexGuard<'static, ()>> {
    if std::env::var("LEAKTRACER_SKIP_PRIVILEGED").is_ok_and(|v| v == "1") {
        record_skip("LEAKTRACER_SKIP_PRIVILEGED=1 (this test needs root and eBPF)");
        return None;
    }
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "this test loads eBPF programs and needs root (CAP_BPF + CAP_PERFMON): run `sudo cargo xtask test`, \
         or set LEAKTRACER_SKIP_PRIVILEGED=1 to skip privileged tests explicitly"
    );
    assert!(
        std::path::Path::new("/sys/kernel/tracing/events").is_dir()
            || std::path::Path::new("/sys/kernel/debug/tracing/events").is_dir(),
        "tracefs is not mounted: `mount -t tracefs nodev /sys/kernel/tracing` (cargo xtask test does this)"
    );
    let _ = leaktracer();
    Some(SERIAL.lock().unwrap_or_else(|e| e.into_inner()))
}

/// The file `cargo xtask test` reads to count skipped tests (it passes a fresh path per run).
pub const SKIP_LOG_ENV: &str = "LEAKTRACER_SKIP_LOG";

/// Say that the running test is skipped, and why: on stderr, and as one line
/// `<test binary>::<test name>\t<reason>` appended to $LEAKTRACER_SKIP_LOG, so that a skip
/// cannot pass for a success (libtest would print `ok`). Panics when the line cannot be
/// written: a skip that is not counted is the defect this exists to prevent.
pub fn record_skip(reason: &str) {
    let test = test_name();
    eprintln!("SKIPPED: {test}: {reason}");
    let Some(log) = std::env::var_os(SKIP_LOG_ENV) else {
        return;
    };
    let line = format!("{test}\t{reason}\n");
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        // One write of one line with O_APPEND: lines of tests running at once do not mix.
        .and_then(|mut f| std::io::Write::write_all(&mut f, line.as_bytes()));
    if let Err(e) = written {
        panic!(
            "recording the skip of {test} in {}: {e}",
            Path::new(&log).display()
        );
    }
}

/// `foundation::brk_calls_match_stress_ng`: libtest names each test's thread after the test;
/// the binary's name (minus cargo's hash) says which file it is in.
fn test_name() -> String {
    let thread = std::thread::current()
        .name()
        .unwrap_or("unnamed-thread")
        .to_string();
    let binary = std::env::current_exe()
        .ok()
        .and_then(|p| Some(p.file_stem()?.to_string_lossy().into_owned()))
        .map(|s| match s.rsplit_once('-') {
            Some((name, hash)) if hash.chars().all(|c| c.is_ascii_hexdigit()) => name.to_string(),
            _ => s,
        })
        .unwrap_or_default();
    format!("{binary}::{thread}")
}

/// The leaktracer binary under test: $LEAKTRACER_BIN, else the workspace's debug build.
pub fn leaktracer() -> PathBuf {
    let p = std::env::var_os("LEAKTRACER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/debug/leaktracer")
        });
    assert!(
        p.is_file(),
        "leaktracer binary not found at {}: build it first (`cargo build -p tracer-user`; `cargo xtask test` does)",
        p.display()
    );
    p
}

/// A child process killed (SIGKILL) and reaped when dropped.
pub struct Proc(pub Child);

impl Proc {
    pub fn spawn(cmd: &mut Command) -> Self {
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"));
        Self(child)
    }

    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    /// Wait for a line on stdout equal to `marker` (the workload is ready).
    pub fn wait_for_line(&mut self, marker: &str, timeout: Duration) {
        let out = self
            .0
            .stdout
            .take()
            .expect("spawned with Stdio::piped() stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        let wanted = marker.to_string();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if line.trim() == wanted {
                    let _ = tx.send(());
                    return;
                }
            }
        });
        rx.recv_timeout(timeout)
            .unwrap_or_else(|_| panic!("workload did not print {marker:?} within {timeout:?}"));
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: signalling our own child by pid.
        unsafe { libc::kill(self.0.id() as i32, sig) };
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A workload binary of this crate (built by cargo for the integration tests).
pub fn workload(path: &str) -> Command {
    let mut c = Command::new(path);
    c.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    c
}

/// `--max-overhead 0` unless the test set a budget itself. The scenarios that check exact
/// counts run storms (stress-ng brk, 200 short-lived processes) that the default 1% budget
/// would, by design, answer by pausing syscall hooks; the budget has its own scenarios
/// (tests/tests/budget.rs), which pass `--max-overhead` explicitly.
pub fn accounting_budget(args: &[&str]) -> Vec<&'static str> {
    if args.contains(&"--max-overhead") {
        Vec::new()
    } else {
        vec!["--max-overhead", "0"]
    }
}

/// Run `leaktracer top --once --format json` for `secs` and return the document.
pub fn top_once(secs: u64, extra: &[&str]) -> Value {
    let out = Command::new(leaktracer())
        .args([
            "top",
            "--once",
            "--format",
            "json",
            "--duration",
            &format!("{secs}s"),
        ])
        .args(extra)
        .args(accounting_budget(extra))
        .stderr(Stdio::inherit())
        .output()
        .expect("running leaktracer top --once");
    assert!(
        out.status.success(),
        "leaktracer top --once failed with {}",
        out.status
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "top --once output is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// The row of `pid` in a `top --once --format json` document.
pub fn row_of(doc: &Value, pid: u32) -> Option<&Value> {
    doc["processes"]
        .as_array()?
        .iter()
        .find(|r| r["pid"].as_u64() == Some(u64::from(pid)))
}

/// Run a command to its end: its stdout; panics with its output when it fails.
pub fn run_checked(c: &mut Command) -> String {
    let out = c.output().unwrap_or_else(|e| panic!("running {c:?}: {e}"));
    assert!(
        out.status.success(),
        "{c:?} exited with {}: {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap_or_else(|e| panic!("{c:?} printed no UTF-8: {e}"))
}

/// `leaktracer report TRACE EXTRA...`: its text; panics with its output when it fails.
pub fn report_text(trace: &Path, extra: &[&str]) -> String {
    run_checked(
        Command::new(leaktracer())
            .arg("report")
            .arg(trace)
            .args(extra),
    )
}

/// `leaktracer report TRACE --format json EXTRA...`, parsed; panics when it fails.
pub fn report_json(trace: &Path, extra: &[&str]) -> Value {
    let args = [&["--format", "json"], extra].concat();
    let text = report_text(trace, &args);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("report JSON ({e}): {text}"))
}

/// Parse every line of a JSONL trace; panics naming the first bad line. A trace still being
/// written may end in a line its writer has not finished (its buffer filled mid-line): that
/// line, without its newline yet, is not read. A finished trace ends with a newline.
pub fn read_trace(path: &std::path::Path) -> Vec<Value> {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let complete = match text.rfind('\n') {
        Some(end) => &text[..end],
        None => "",
    };
    complete
        .lines()
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("trace line {} does not parse ({e}): {l}", i + 1))
        })
        .collect()
}

/// The JSON lines a child writes on `out` (a daemon's stdout), parsed, as they come, on a
/// thread of their own: those whose `type` is one of `types` (every line when empty). The
/// thread ends with the child's stdout or when the receiver is dropped.
pub fn json_lines(
    out: std::process::ChildStdout,
    types: &'static [&'static str],
) -> std::sync::mpsc::Receiver<Value> {
    use std::io::BufRead as _;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<Value>(&line)
                && (types.is_empty() || types.iter().any(|t| v["type"] == *t))
                && tx.send(v).is_err()
            {
                return;
            }
        }
    });
    rx
}

/// Poll `f` until it returns Some or the timeout passes.
pub fn wait_until<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if let Some(v) = f() {
            return Some(v);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

/// Resident set of a process in bytes (VmRSS), from /proc.
pub fn status_field_kib(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix(field).and_then(|r| r.strip_prefix(':')))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// A `leaktracer record` running in the background, stopped with SIGINT.
pub struct Recording {
    pub proc: Proc,
    pub path: PathBuf,
}

impl Recording {
    /// Start recording to a fresh file and wait until the programs are attached (the
    /// header line is written after attach).
    pub fn start(name: &str, extra: &[&str]) -> Self {
        Self::start_with_env(name, extra, &[])
    }

    /// [`Recording::start`] with environment variables for leaktracer.
    pub fn start_with_env(name: &str, extra: &[&str], env: &[(&str, &str)]) -> Self {
        let dir = std::env::temp_dir().join(format!("leaktracer-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join(format!("{name}.jsonl"));
        let _ = std::fs::remove_file(&path);
        let proc = Proc::spawn(
            Command::new(leaktracer())
                .args(["record", "--output"])
                .arg(&path)
                .args(extra)
                .args(accounting_budget(extra))
                .envs(env.iter().copied())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::inherit()),
        );
        let started = wait_until(Duration::from_secs(30), || {
            std::fs::read_to_string(&path)
                .ok()
                .filter(|t| t.contains("\"type\":\"header\""))
                .map(|_| ())
        });
        assert!(
            started.is_some(),
            "leaktracer record did not write its header within 30 s"
        );
        Self { proc, path }
    }

    /// SIGINT, wait for a clean exit, and return every record.
    pub fn stop(mut self) -> Vec<Value> {
        self.proc.signal(libc::SIGINT);
        let status = self.proc.0.wait().expect("waiting for leaktracer");
        assert!(
            status.success(),
            "leaktracer record exited with {status} after SIGINT"
        );
        read_trace(&self.path)
    }
}

/// The last `sample` record of `pid` in a trace.
pub fn last_sample(trace: &[Value], pid: u32) -> Option<&Value> {
    trace
        .iter()
        .rev()
        .find(|r| r["type"] == "sample" && r["pid"].as_u64() == Some(u64::from(pid)))
}

pub const MIB: u64 = 1 << 20;

/// Build the Go scenario workloads (tests/workloads/go/*.go) once per test binary, into a
/// temporary directory; returns the path of the named binary.
pub fn go_workload(name: &str) -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    let dir = BUILT.get_or_init(|| {
        let out = std::env::temp_dir().join(format!("leaktracer-go-{}", std::process::id()));
        std::fs::create_dir_all(&out).expect("temp dir for Go workloads");
        let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("workloads/go");
        for entry in std::fs::read_dir(&src).expect("tests/workloads/go") {
            let path = entry.expect("dir entry").path();
            if path.extension().is_some_and(|e| e == "go") {
                let bin = out.join(path.file_stem().expect("file stem"));
                let status = Command::new("go")
                    .arg("build")
                    .arg("-o")
                    .arg(&bin)
                    .arg(&path)
                    .env("GOCACHE", std::env::temp_dir().join("leaktracer-gocache"))
                    .env("GOFLAGS", "")
                    .env("GO111MODULE", "off")
                    .status()
                    .expect("the Go toolchain (apt-get install golang-go; cargo xtask test installs it)");
                assert!(status.success(), "go build {} failed", path.display());
            }
        }
        out
    });
    dir.join(name)
}

/// A cgroup v1 memory cgroup with a limit, removed (its processes killed) when dropped.
pub struct MemCgroup {
    pub name: String,
    pub dir: PathBuf,
}

impl MemCgroup {
    pub fn v1(tag: &str, limit_bytes: u64) -> Self {
        let root = PathBuf::from("/sys/fs/cgroup/memory");
        assert!(
            root.join("memory.limit_in_bytes").exists(),
            "the cgroup v1 memory controller is not mounted at /sys/fs/cgroup/memory (cgroup v2 OOM tests run in QEMU guests)"
        );
        let name = format!("leaktracer-{tag}-{}", std::process::id());
        let dir = root.join(&name);
        let _ = std::fs::remove_dir(&dir);
        std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        std::fs::write(dir.join("memory.limit_in_bytes"), limit_bytes.to_string())
            .expect("setting memory.limit_in_bytes");
        // Swap would let the leaker outlive the limit for a long while; keep the test quick.
        let _ = std::fs::write(dir.join("memory.swappiness"), "0");
        Self { name, dir }
    }

    /// The cgroup path as /proc/PID/cgroup shows it.
    pub fn path(&self) -> String {
        format!("/{}", self.name)
    }

    /// A command that first moves itself into this cgroup, then execs `program args`.
    pub fn command(&self, program: &str, args: &[&str]) -> Command {
        let mut c = Command::new("sh");
        c.arg("-c")
            .arg(format!(
                "echo $$ > {}/cgroup.procs && exec \"$0\" \"$@\"",
                self.dir.display()
            ))
            .arg(program)
            .args(args)
            .stdin(Stdio::null());
        c
    }

    pub fn read(&self, file: &str) -> String {
        std::fs::read_to_string(self.dir.join(file)).unwrap_or_default()
    }
}

impl Drop for MemCgroup {
    fn drop(&mut self) {
        for pid in self
            .read("cgroup.procs")
            .lines()
            .filter_map(|l| l.trim().parse::<i32>().ok())
        {
            // SAFETY: killing processes we placed in our own test cgroup.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        for _ in 0..50 {
            if std::fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Copy `binary` to `dir/<name>` with the shared libraries `ldd` lists, at their own paths: a
/// root filesystem (or image context) that runs it without the host's `/`.
pub fn copy_with_libraries(binary: &Path, dir: &Path, name: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::copy(binary, dir.join(name))
        .unwrap_or_else(|e| panic!("copying {}: {e}", binary.display()));
    let ldd = Command::new("ldd")
        .arg(binary)
        .output()
        .expect("running ldd");
    for line in String::from_utf8_lossy(&ldd.stdout).lines() {
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)"
        let lib = line
            .split("=>")
            .last()
            .and_then(|r| r.split_whitespace().next())
            .filter(|p| p.starts_with('/'));
        if let Some(lib) = lib {
            let dest = dir.join(lib.trim_start_matches('/'));
            std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
            std::fs::copy(lib, &dest).unwrap_or_else(|e| panic!("copying {lib}: {e}"));
        }
    }
}

/// podman with a private, throw-away store under `store` (the flags of xtask/src/image.rs):
/// nothing left in /var/lib/containers, no systemd, runc (crun refuses this host's hybrid
/// cgroups).
pub fn podman(store: &Path) -> Command {
    let mut c = Command::new("podman");
    c.arg("--root")
        .arg(store.join("root"))
        .arg("--runroot")
        .arg(store.join("run"))
        .arg("--tmpdir")
        .arg(store.join("tmp"))
        .args([
            "--storage-driver",
            "vfs",
            "--cgroup-manager",
            "cgroupfs",
            "--events-backend",
            "file",
            "--runtime",
            "runc",
        ])
        .stdin(Stdio::null());
    c
}

/// Start `leaktracer ARGS` (stdout piped) and return once its programs are attached: it logs
/// "attached N programs" at info level, which the harness waits for on its stderr (then
/// forwards the rest of its stderr). No sleep stands in for attachment.
pub fn start_attached(args: &[&str]) -> Proc {
    let mut child = Command::new(leaktracer())
        .args(args)
        .args(accounting_budget(args))
        .args(["--log-level", "info"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawning leaktracer {args:?}: {e}"));
    let err = child.stderr.take().expect("stderr piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            eprintln!("{line}");
            if line.contains("attached ")
                && line.contains(" programs")
                && let Some(tx) = tx.take()
            {
                let _ = tx.send(());
            }
        }
    });
    let proc = Proc(child);
    assert!(
        rx.recv_timeout(Duration::from_secs(60)).is_ok(),
        "leaktracer {args:?} did not report its programs attached within 60 s"
    );
    proc
}

/// `leaktracer daemon --interval INTERVAL --listen 127.0.0.1:PORT`, its stdout dropped.
pub fn daemon(port: u16, interval: &str) -> Proc {
    Proc::spawn(
        Command::new(leaktracer())
            .args(["daemon", "--interval", interval, "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit()),
    )
}

/// An ephemeral TCP port free now (for `daemon --listen`).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("binding an ephemeral port")
        .port()
}

/// GET `path` on 127.0.0.1:`port`: the status line, headers and body, or None if not
/// answering.
pub fn http_get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}
