//! The code-habits gate (`cargo xtask lint`, and the first step of `cargo xtask test`):
//! formatting, then clippy with warnings as errors, for the host crates and for the kernel
//! programs on their real target. The lints themselves are in the root Cargo.toml
//! (`[workspace.lints]`) and in rustfmt.toml.
use std::{path::Path, process::Command};

use crate::{cargo, check};

/// The target the kernel programs are built for (aya-build picks bpfel on little-endian hosts).
const BPF_TARGET: &str = "bpfel-unknown-none";

pub fn run(root: &Path) -> anyhow::Result<()> {
    check(cargo(root).args(["fmt", "--all", "--check"]))?;
    // No -p: the workspace's default members are exactly the host crates (the eBPF crate
    // does not build for the host).
    check(cargo(root).args(["clippy", "--all-targets", "--", "-D", "warnings"]))?;
    check(&mut ebpf_clippy(root))
}

/// Clippy over tracer-ebpf the way aya-build compiles it from tracer-user's build.rs: the
/// `nightly` toolchain, the bpf target, `-Z build-std=core`, release, and the
/// `bpf_target_arch` cfg aya-ebpf reads. Only `--lib --bins`: a test harness does not exist
/// for the bpf target.
fn ebpf_clippy(root: &Path) -> Command {
    let mut c = Command::new("rustup");
    c.current_dir(root)
        .args([
            "run",
            "nightly",
            "cargo",
            "clippy",
            "--package",
            "tracer-ebpf",
        ])
        .args(["--lib", "--bins", "--release", "--target", BPF_TARGET])
        .args(["-Z", "build-std=core", "--", "-D", "warnings"])
        .env(
            "CARGO_ENCODED_RUSTFLAGS",
            format!("--cfg=bpf_target_arch=\"{}\"", std::env::consts::ARCH),
        )
        // Set by the stable cargo running xtask; they would pick its rustc over nightly's
        // (aya-build removes them for the same reason).
        .env_remove("RUSTC")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("CARGO");
    c
}
