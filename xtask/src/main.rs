//! `cargo xtask`: set-up, build, run, test and bench orchestration for leaktracer.
//!
//! Every command first ensures the build prerequisites (nightly rust-src, bpf-linker built
//! against LLVM 22, Debian packages when root), so a fresh machine needs nothing else.
mod bench;
mod image;
mod prereqs;
mod qemu;

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};

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
    /// Install the prerequisites (apt packages when root, nightly rust-src, bpf-linker).
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
    /// Unit tests, then the privileged end-to-end scenarios against the real kernel.
    Test {
        /// Only the unit tests (no BPF needed).
        #[arg(long)]
        unit_only: bool,
        /// Extra filter passed to the end-to-end test binaries.
        filter: Option<String>,
    },
    /// The container image: static musl release binary, `podman build` of the Containerfile,
    /// `podman run <image> --version`, then the image is removed (needs root).
    Image,
    /// Only the cgroup-v2 QEMU guest tests (Debian 6.1 and 6.12 kernels), part of `test`.
    Guest,
    /// Benchmarks: cost per event, workload slowdown, own footprint (writes bench/results/).
    Bench {
        /// A short run that only checks the harness works (for CI), not the timings.
        #[arg(long)]
        smoke: bool,
    },
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        eprintln!("xtask: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let root = workspace_root();
    match cli.cmd {
        Cmd::Setup => prereqs::ensure(&root),
        Cmd::Build { release } => {
            prereqs::ensure(&root)?;
            build(&root, release)
        }
        Cmd::Run { release, args } => {
            prereqs::ensure(&root)?;
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
        Cmd::Test { unit_only, filter } => {
            prereqs::ensure(&root)?;
            test(&root, unit_only, filter.as_deref())
        }
        Cmd::Image => {
            prereqs::ensure(&root)?;
            image::build_and_check(&root)
        }
        Cmd::Guest => {
            prereqs::ensure(&root)?;
            build(&root, false)?;
            guest_tests(&root)
        }
        Cmd::Bench { smoke } => {
            prereqs::ensure(&root)?;
            build(&root, true)?;
            bench::run(&root, &binary(&root, true), smoke)
        }
    }
}

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

fn test(root: &Path, unit_only: bool, filter: Option<&str>) -> anyhow::Result<()> {
    // Unit tests of every host crate. tracer-ebpf only as a library (its ABI checks): its
    // binary is the kernel object and builds for the bpf target only.
    check(cargo(root).args(["test", "-p", "tracer-ebpf", "--lib"]))?;
    check(cargo(root).args(["test", "-p", "tracer-user", "-p", "xtask"]))?;
    if unit_only {
        return Ok(());
    }
    build(root, false)?;
    // The deployment files: Kubernetes schemas, dashboard queries, and the DaemonSet's flags
    // against the binary just built.
    check(
        Command::new("bash")
            .arg(root.join("deploy/validate.sh"))
            .current_dir(root),
    )?;
    image::build_and_check(root)?;
    // The scenarios measure rates and CPU: one at a time on these 2-core machines.
    let mut c = cargo(root);
    c.args(["test", "-p", "leaktracer-tests", "--", "--test-threads=1"]);
    if let Some(f) = filter {
        c.arg(f);
    }
    c.env("LEAKTRACER_BIN", binary(root, false));
    check(&mut c)?;
    guest_tests(root)?;
    // The bench harness, not its timings: a smoke run (every section, minimal) so that
    // `cargo xtask bench` keeps working. The debug binary saves CI a release build; the
    // numbers of a smoke run mean nothing either way.
    bench::run(root, &binary(root, false), true)
}

/// cgroup v2 for real: QEMU guests booting Debian's 6.1 and 6.12 cloud kernels (this
/// machine's memory controller is v1 only). Needs the debug leaktracer built.
fn guest_tests(root: &Path) -> anyhow::Result<()> {
    check(cargo(root).args(["build", "-p", "leaktracer-tests", "--bin", "leaker"]))?;
    qemu::guest_tests::run(
        root,
        &binary(root, false),
        &root.join("target/debug/leaker"),
    )
}
