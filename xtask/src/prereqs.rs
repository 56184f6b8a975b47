//! Build and test prerequisites, installed when missing (facts: ../shared/TOOLCHAIN.md).
use std::{path::Path, process::Command};

use anyhow::{Context as _, bail};

use crate::check;

/// Debian packages: LLVM 22 for bpf-linker; workloads and peers for the tests and benches;
/// QEMU and busybox for the cgroup-v2 guest tests.
const APT_PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "libpolly-22-dev",
    "libzstd-dev",
    "zlib1g-dev",
    "stress-ng",
    "golang-go",
    "bpftrace",
    "bpfcc-tools",
    "bpftool",
    "util-linux",
    "python3",
    // promtool, to check that /metrics parses as Prometheus text.
    "prometheus",
    // cgroup v2 guests (software-emulated QEMU booting Debian cloud kernels).
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

fn missing_apt_packages() -> Vec<&'static str> {
    APT_PACKAGES
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

pub fn ensure(_root: &Path) -> anyhow::Result<()> {
    let debian = Path::new("/etc/debian_version").exists();
    let missing = if debian {
        missing_apt_packages()
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
    let comps = Command::new("rustup")
        .args(["component", "list", "--toolchain", "nightly", "--installed"])
        .output()
        .context("rustup component list")?;
    if !String::from_utf8_lossy(&comps.stdout)
        .lines()
        .any(|l| l.starts_with("rust-src"))
    {
        eprintln!("xtask: adding rust-src to nightly");
        check(Command::new("rustup").args([
            "component",
            "add",
            "rust-src",
            "--toolchain",
            "nightly",
        ]))?;
    }

    // The image's binary is built for musl with the default (stable) toolchain.
    let targets = Command::new("rustup")
        .args(["target", "list", "--toolchain", "stable", "--installed"])
        .output()
        .context("rustup target list")?;
    if !String::from_utf8_lossy(&targets.stdout)
        .lines()
        .any(|l| l.trim() == crate::image::MUSL_TARGET)
    {
        eprintln!(
            "xtask: adding the {} target to stable",
            crate::image::MUSL_TARGET
        );
        check(Command::new("rustup").args([
            "target",
            "add",
            crate::image::MUSL_TARGET,
            "--toolchain",
            "stable",
        ]))?;
    }

    // bpf-linker, built against LLVM 22 (nightly rustc's LLVM).
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

    // tracefs for the tracer itself (the tests assume it).
    if is_root()
        && !Path::new("/sys/kernel/tracing/events").is_dir()
        && !Path::new("/sys/kernel/debug/tracing/events").is_dir()
    {
        eprintln!("xtask: mounting tracefs at /sys/kernel/tracing");
        check(Command::new("mount").args(["-t", "tracefs", "nodev", "/sys/kernel/tracing"]))?;
    }
    Ok(())
}
