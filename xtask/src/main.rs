//! `cargo xtask`: set-up, build, run, test and bench orchestration for leaktracer.
//!
//! Every command first installs what it needs and is missing (see `needs`): `build` and `run`
//! only the build prerequisites (nightly rust-src, bpf-linker built against LLVM 22, tracefs);
//! `test`, `image`, `guest` and `bench` their workloads, peers and harnesses on top; `lint`
//! and `test` clippy and rustfmt (clippy on nightly too, for the kernel programs). A fresh
//! machine needs nothing else.
// Unit tests may unwrap: a panic is how a test fails. Production code may not (see the
// workspace lints in Cargo.toml).
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]
mod bench;
mod image;
mod lint;
mod prereqs;
mod qemu;
mod skips;

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use prereqs::Need;

#[derive(Parser)]
#[command(
    name = "xtask",
    about = "leaktracer's build, run, test and bench orchestration"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install every prerequisite: build, tests and bench (apt packages when root, nightly
    /// rust-src, bpf-linker, the musl target).
    Setup,
    /// Build leaktracer (debug, or --release).
    Build {
        #[arg(long)]
        release: bool,
    },
    /// Build and run leaktracer as root; arguments after `--` go to leaktracer (default: `top`).
    Run {
        #[arg(long)]
        release: bool,
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// The code-habits gate: `cargo fmt --check`, then clippy with warnings as errors for the
    /// host crates and for the kernel programs (bpf target, nightly). `test` runs it first.
    Lint,
    /// The lint gate, unit tests, then the privileged end-to-end scenarios against the real
    /// kernel (--unit-only and --e2e-only skip the lint gate).
    Test {
        /// Only the unit tests (no BPF needed).
        #[arg(long)]
        unit_only: bool,
        /// Only the end-to-end scenarios (no deployment checks, image, guests or bench smoke):
        /// for working on one scenario with a filter.
        #[arg(long, conflicts_with = "unit_only")]
        e2e_only: bool,
        /// Fail when any end-to-end test was skipped (CI: `.ci/run` passes it).
        #[arg(long)]
        forbid_skips: bool,
        /// Extra filter passed to the end-to-end test binaries.
        filter: Option<String>,
    },
    /// The container image: static musl release binary, `podman build` of the Containerfile,
    /// `podman run <image> --version`, then the image is removed (needs root).
    Image,
    /// Only the cgroup-v2 QEMU guest tests (Debian 6.1 and 6.12 kernels), part of `test`.
    Guest {
        /// Boot each kernel with this one script of tests/guest/ instead (e.g.
        /// repro-bpf-stats-flips.sh) and print its console; it must exit 0.
        #[arg(long, value_name = "NAME")]
        script: Option<String>,
    },
    /// Benchmarks: cost per event, workload slowdown, own footprint (writes bench/results/).
    Bench {
        /// A short run that only checks the harness works (for CI), not the timings.
        #[arg(long)]
        smoke: bool,
        /// Only these sections (repeatable). Any of --only, --workload, --rounds,
        /// --side-rounds, --secs makes a partial run, written to target/bench/partial.{md,json}, never to bench/results.
        #[arg(long, value_enum)]
        only: Vec<bench::Section>,
        /// Only the slowdown workloads whose name contains this (repeatable), e.g. "brk".
        #[arg(long = "workload")]
        workloads: Vec<String>,
        /// Rounds of the slowdown section for untraced, leaktracer `record` and bpftrace, the
        /// cells its verdicts rest on (default 8; smoke 2). More rounds narrow the verdicts'
        /// bounds: with 16 they leave out the four best and four worst rounds.
        #[arg(long)]
        rounds: Option<usize>,
        /// Rounds of the other slowdown cells: memleak, empty programs, `profile`, `record
        /// --stacks` (default 5, at most --rounds; 0 leaves them out).
        #[arg(long)]
        side_rounds: Option<usize>,
        /// Seconds per slowdown run (default 5; smoke 1).
        #[arg(long)]
        secs: Option<u64>,
    },
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        eprintln!("xtask: {e:#}");
        std::process::exit(1);
    }
}

/// The prerequisites of each command.
fn needs(cmd: &Cmd) -> &'static [Need] {
    match cmd {
        Cmd::Setup => &[
            Need::Build,
            Need::UnitTests,
            Need::Tests,
            Need::Bench,
            Need::Lint,
        ],
        Cmd::Lint => &[Need::Build, Need::Lint],
        Cmd::Build { .. } | Cmd::Run { .. } => &[Need::Build],
        Cmd::Test {
            unit_only: true, ..
        } => &[Need::Build, Need::UnitTests],
        Cmd::Test { e2e_only: true, .. } => &[Need::Build, Need::Tests],
        // The full test starts with the lint gate and ends with the bench smoke run.
        Cmd::Test { .. } => &[
            Need::Build,
            Need::UnitTests,
            Need::Tests,
            Need::Bench,
            Need::Lint,
        ],
        Cmd::Image | Cmd::Guest { .. } => &[Need::Build, Need::Tests],
        Cmd::Bench { .. } => &[Need::Build, Need::Bench],
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let root = workspace_root();
    prereqs::ensure(needs(&cli.cmd))?;
    match cli.cmd {
        Cmd::Setup => Ok(()),
        Cmd::Lint => lint::run(&root),
        Cmd::Build { release } => build(&root, release),
        Cmd::Run { release, args } => {
            build(&root, release)?;
            let bin = binary(&root, release);
            let args = if args.is_empty() {
                vec!["top".to_string()]
            } else {
                args
            };
            let status = Command::new(&bin)
                .args(&args)
                .status()
                .with_context(|| format!("running {}", bin.display()))?;
            std::process::exit(status.code().unwrap_or(1));
        }
        Cmd::Test {
            unit_only,
            e2e_only,
            forbid_skips,
            filter,
        } => {
            let scope = if unit_only {
                Scope::Unit
            } else if e2e_only {
                Scope::EndToEnd
            } else {
                Scope::All
            };
            test(&root, scope, forbid_skips, filter.as_deref())
        }
        Cmd::Image => image::build_and_check(&root),
        Cmd::Guest { script } => {
            build(&root, false)?;
            guest_tests(&root, script.as_deref())
        }
        Cmd::Bench {
            smoke,
            only,
            workloads,
            rounds,
            side_rounds,
            secs,
        } => {
            build(&root, true)?;
            let opts = bench::Options {
                smoke,
                only,
                workloads,
                rounds,
                side_rounds,
                secs,
            };
            bench::run(&root, &binary(&root, true), &opts)
        }
    }
}

#[expect(
    clippy::expect_used,
    reason = "CARGO_MANIFEST_DIR is <workspace>/xtask, fixed at compile time: it has a parent"
)]
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

pub fn binary(root: &Path, release: bool) -> PathBuf {
    root.join("target")
        .join(if release { "release" } else { "debug" })
        .join("leaktracer")
}

pub fn cargo(root: &Path) -> Command {
    let mut c = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    c.current_dir(root);
    c
}

pub fn check(cmd: &mut Command) -> anyhow::Result<()> {
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

fn build(root: &Path, release: bool) -> anyhow::Result<()> {
    let mut c = cargo(root);
    c.args(["build", "-p", "tracer-user"]);
    if release {
        c.arg("--release");
    }
    check(&mut c)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Scope {
    All,
    Unit,
    EndToEnd,
}

fn test(root: &Path, scope: Scope, forbid_skips: bool, filter: Option<&str>) -> anyhow::Result<()> {
    // Every skipped end-to-end test appends a line to this file: fresh per run.
    let skip_log = root
        .join("target")
        .join(format!("skipped-tests.{}.txt", std::process::id()));
    std::fs::create_dir_all(root.join("target")).context("creating target/")?;
    match std::fs::remove_file(&skip_log) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("removing {}", skip_log.display()));
        }
        _ => {}
    }
    let outcome = test_steps(root, scope, filter, &skip_log);
    let skipped = skips::read(&skip_log)?;
    let _ = std::fs::remove_file(&skip_log);
    // Printed whatever happened, last, where a reader of the log looks.
    if scope == Scope::Unit {
        eprintln!("xtask: end-to-end tests not run (--unit-only).");
    } else {
        eprintln!("{}", skips::summary(&skipped));
    }
    outcome?;
    skips::check(&skipped, forbid_skips)
}

fn test_steps(
    root: &Path,
    scope: Scope,
    filter: Option<&str>,
    skip_log: &Path,
) -> anyhow::Result<()> {
    if scope == Scope::All {
        // Cheapest first: a formatting slip or a clippy warning fails in a minute, not after
        // the end-to-end scenarios.
        lint::run(root)?;
    }
    if scope != Scope::EndToEnd {
        // Unit tests of every host crate. tracer-common holds the ABI checks: its
        // binary is the kernel object and builds for the bpf target only.
        check(cargo(root).args(["test", "-p", "tracer-common"]))?;
        check(cargo(root).args(["test", "-p", "tracer-user", "-p", "xtask"]))?;
    }
    if scope == Scope::Unit {
        return Ok(());
    }
    build(root, false)?;
    if scope == Scope::All {
        // The deployment files: Kubernetes schemas, dashboard queries, and the DaemonSet's
        // flags against the binary just built.
        check(
            Command::new("bash")
                .arg(root.join("deploy/validate.sh"))
                .current_dir(root),
        )?;
        image::build_and_check(root)?;
    }
    // The scenarios measure rates and CPU: one at a time on these 2-core machines. Every
    // scenario file runs even after one fails, so a red run (CI's above all) names every
    // failure at once instead of hiding the files after the first.
    let mut c = cargo(root);
    c.args([
        "test",
        "-p",
        "leaktracer-tests",
        "--no-fail-fast",
        "--",
        "--test-threads=1",
    ]);
    if let Some(f) = filter {
        c.arg(f);
    }
    c.env("LEAKTRACER_BIN", binary(root, false))
        .env(skips::LOG_ENV, skip_log);
    check(&mut c)?;
    if scope == Scope::EndToEnd {
        return Ok(());
    }
    guest_tests(root, None)?;
    // The bench harness, not its timings: a smoke run (every section, minimal) so that
    // `cargo xtask bench` keeps working. The debug binary saves CI a release build; the
    // numbers of a smoke run mean nothing either way. Any harness error fails it.
    let smoke = bench::Options {
        smoke: true,
        ..bench::Options::default()
    };
    bench::run(root, &binary(root, false), &smoke)
}

/// cgroup v2 for real: QEMU guests booting Debian's 6.1 and 6.12 cloud kernels (this
/// machine's memory controller is v1 only). Needs the debug leaktracer built.
fn guest_tests(root: &Path, only: Option<&str>) -> anyhow::Result<()> {
    check(cargo(root).args(["build", "-p", "leaktracer-tests", "--bin", "leaker"]))?;
    qemu::guest_tests::run(
        root,
        &binary(root, false),
        &root.join("target/debug/leaker"),
        only,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn needs_of(args: &[&str]) -> &'static [Need] {
        needs(&Cli::parse_from(std::iter::once("xtask").chain(args.iter().copied())).cmd)
    }

    #[test]
    fn each_command_installs_what_it_uses() {
        assert_eq!(needs_of(&["run"]), [Need::Build]);
        assert_eq!(
            needs_of(&["run", "--", "record", "-d", "5s"]),
            [Need::Build]
        );
        assert_eq!(needs_of(&["build", "--release"]), [Need::Build]);
        assert_eq!(
            needs_of(&["test", "--unit-only"]),
            [Need::Build, Need::UnitTests]
        );
        assert_eq!(
            needs_of(&["test", "--e2e-only", "brk"]),
            [Need::Build, Need::Tests]
        );
        // .ci/run's command: everything the suite and its bench smoke run use.
        let all = [
            Need::Build,
            Need::UnitTests,
            Need::Tests,
            Need::Bench,
            Need::Lint,
        ];
        assert_eq!(needs_of(&["test", "--forbid-skips"]), all);
        assert_eq!(needs_of(&["test"]), all);
        assert_eq!(needs_of(&["setup"]), all);
        assert_eq!(needs_of(&["lint"]), [Need::Build, Need::Lint]);
        assert_eq!(needs_of(&["image"]), [Need::Build, Need::Tests]);
        assert_eq!(needs_of(&["guest"]), [Need::Build, Need::Tests]);
        assert_eq!(needs_of(&["bench", "--smoke"]), [Need::Build, Need::Bench]);
    }
}
