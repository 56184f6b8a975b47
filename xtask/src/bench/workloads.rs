//! The allocation-heavy workloads and the helper programs: stress-ng stressors, a C malloc
//! churn and a Go allocation loop (both wait for a line on stdin before their timed loop, so
//! a per-pid tracer can attach first), and the C helpers for the footprint section.
use std::{
    io::{BufRead as _, BufReader, Write as _},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
};

use anyhow::{Context as _, bail};

use crate::check;

const HELPERS_C: &str = include_str!("helpers.c");

#[derive(Clone, Debug)]
pub enum Workload {
    /// A stress-ng stressor: bogo-ops/s over the run.
    Stress {
        name: &'static str,
        args: &'static [&'static str],
    },
    /// A program that prints `ops_per_sec N` after a line on stdin. `libc_alloc`: it allocates
    /// through libc's malloc (so memleak's uprobes must fire on it; Go's allocator does not).
    Gated {
        name: &'static str,
        exe: PathBuf,
        libc_alloc: bool,
    },
}

impl Workload {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Stress { name, .. } | Self::Gated { name, .. } => name,
        }
    }
}

/// Allocation-heavy stress-ng stressors (name, args).
const STRESS: &[(&str, &[&str])] = &[
    ("stress-ng brk", &["--brk", "1"]),
    ("stress-ng mmap", &["--mmap", "1", "--mmap-bytes", "4M"]),
    ("stress-ng malloc", &["--malloc", "1"]),
    (
        "stress-ng vm (page faults)",
        &["--vm", "1", "--vm-bytes", "128M"],
    ),
    ("stress-ng fault", &["--fault", "1"]),
];

/// The helper programs, built into the work dir.
pub struct Helpers {
    /// helpers.c: `malloc`, `pace`, `forkpause`.
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

/// The slowdown workloads: the stress-ng ones, then the C and Go allocation loops. `smoke`
/// keeps the first stress-ng one.
pub fn slowdown_set(helpers: &Helpers, smoke: bool) -> (Vec<Workload>, Vec<(String, String)>) {
    let stress = if smoke { &STRESS[..1] } else { STRESS };
    let mut set: Vec<Workload> = stress
        .iter()
        .map(|(name, args)| Workload::Stress { name, args })
        .collect();
    set.push(Workload::Gated {
        name: "C malloc/free churn (glibc)",
        exe: helpers.c.clone(),
        libc_alloc: true,
    });
    let mut missing = Vec::new();
    match &helpers.go_alloc {
        Ok(exe) => set.push(Workload::Gated {
            name: "Go allocation loop (allocbench.go)",
            exe: exe.clone(),
            libc_alloc: false,
        }),
        Err(why) => missing.push((
            "Go allocation loop (allocbench.go)".to_string(),
            why.clone(),
        )),
    }
    (set, missing)
}

/// Run a stress-ng stressor for `secs`; bogo-ops per second (real time).
pub fn stress(args: &[&str], secs: u64) -> anyhow::Result<f64> {
    let out = Command::new("stress-ng")
        .args(args)
        .args(["--timeout", &format!("{secs}s"), "--metrics-brief"])
        .output()
        .context("running stress-ng")?;
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    parse_stress(&text, args[0].trim_start_matches('-'))
        .with_context(|| format!("no bogo-ops rate in stress-ng output:\n{text}"))
}

/// "stress-ng: metrc: [pid] brk  452965  3.06  0.16  2.90  148083.50  148187.20": the real-time
/// bogo-ops/s is the fifth column after the stressor's name.
fn parse_stress(text: &str, stressor: &str) -> Option<f64> {
    text.lines()
        .filter(|l| l.contains("metrc:") || l.contains("info:"))
        .find_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let i = cols.iter().position(|c| *c == stressor)?;
            cols.get(i + 5)?.parse::<f64>().ok()
        })
}

/// A gated workload, started and waiting for its go signal.
pub struct Gated {
    child: Child,
}

impl Gated {
    /// `exe` with the C helper's `malloc` mode or the Go program's arguments.
    pub fn spawn(exe: &Path, secs: u64) -> anyhow::Result<Self> {
        let mut cmd = Command::new(exe);
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

    /// Start the timed loop and wait for its ops/s.
    pub fn go(mut self) -> anyhow::Result<f64> {
        let mut stdin = self.child.stdin.take().context("workload stdin")?;
        writeln!(stdin).context("starting the workload")?;
        let out = self
            .child
            .wait_with_output()
            .context("waiting for the workload")?;
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines()
            .find_map(|l| l.strip_prefix("ops_per_sec ")?.trim().parse::<f64>().ok())
            .with_context(|| format!("no ops_per_sec in the workload's output: {text:?}"))
    }
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

#[cfg(test)]
mod tests {
    use super::parse_stress;

    #[test]
    fn reads_the_real_time_rate() {
        let out = "stress-ng: info:  [1] dispatching hogs: 1 brk\nstress-ng: metrc: [1] stressor       bogo ops real time  usr time  sys time   bogo ops/s     bogo ops/s\nstress-ng: metrc: [1] brk              452965      3.06      0.16      2.90    148083.50      148187.20\n";
        assert_eq!(parse_stress(out, "brk"), Some(148083.5));
        assert_eq!(parse_stress(out, "mmap"), None);
    }
}
