//! bcc's memleak as a peer. Its kernel mode needs kernel allocator hooks; its user mode
//! (`-p PID`) puts uprobes on the allocator functions of the libc that PID has mapped, so it
//! follows one process: it is attached to each workload run separately, before the workload
//! starts its timed loop (`Memleak::attach`, in tracers.rs with the other tracers' starts).
//!
//! bcc compiles its C program at start-up against the running kernel's headers. Kernels
//! without headers (no /lib/modules/$(uname -r)/build, no CONFIG_IKHEADERS) get Debian's
//! cloud-amd64 headers unpacked under target/bench/bcc-headers: memleak's uprobe programs
//! use only stable structures (pt_regs), so another version's headers do.
use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

use super::sys;

pub struct Memleak {
    pub(super) exe: PathBuf,
    /// BCC_KERNEL_SOURCE, when the running kernel's own headers are missing.
    pub(super) headers: Option<PathBuf>,
    /// How it runs here, for the report.
    pub note: String,
}

const EXES: [&str; 2] = ["/usr/sbin/memleak-bpfcc", "/usr/share/bcc/tools/memleak"];

/// Whether bcc's memleak is installed (whether or not it can run).
pub fn installed() -> bool {
    EXES.iter().any(|p| Path::new(p).exists())
}

/// Find memleak and the kernel headers bcc needs, or say why it cannot run.
pub fn detect(work: &Path) -> Result<Memleak, String> {
    let exe = EXES
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .ok_or("bcc's memleak not installed (Debian: bpfcc-tools)")?;
    let release = sys::kernel();
    let own = Path::new("/lib/modules")
        .join(&release)
        .join("build/include");
    if own.exists() || Path::new("/sys/kernel/kheaders.tar.xz").exists() {
        return Ok(Memleak {
            exe,
            headers: None,
            note: "uprobes on libc malloc/free".into(),
        });
    }
    if let Some(dir) = std::env::var_os("BCC_KERNEL_SOURCE") {
        return Ok(Memleak {
            exe,
            headers: Some(dir.into()),
            note: "uprobes on libc malloc/free; headers from BCC_KERNEL_SOURCE".into(),
        });
    }
    let headers = debian_headers(work).map_err(|e| {
        format!("no kernel headers for {release} and Debian's could not be unpacked: {e:#}")
    })?;
    Ok(Memleak {
        exe,
        headers: Some(headers),
        note: format!(
            "uprobes on libc malloc/free; kernel {release} has no headers, bcc compiled against Debian's {}",
            headers_version(work)
        ),
    })
}

/// Unpack linux-headers-cloud-amd64 (and its -common part) with `apt-get download` and
/// `dpkg -x`, merged into one tree, once; later runs reuse it.
fn debian_headers(work: &Path) -> anyhow::Result<PathBuf> {
    let dir = work.join("bcc-headers");
    let merged = dir.join("merged");
    if merged.join("include/generated/autoconf.h").exists() {
        return Ok(merged);
    }
    eprintln!(
        "bench: memleak: unpacking Debian's kernel headers into {}",
        dir.display()
    );
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let flavour = depends_matching("linux-headers-cloud-amd64", "cloud-amd64")?;
    let common = depends_matching(&flavour, "-common")?;
    for pkg in [&flavour, &common] {
        run(Command::new("apt-get")
            .args(["download", pkg])
            .current_dir(&dir))?;
    }
    let unpacked = dir.join("x");
    for deb in std::fs::read_dir(&dir)?.flatten().map(|e| e.path()) {
        if deb.extension().is_some_and(|e| e == "deb") {
            run(Command::new("dpkg").arg("-x").arg(&deb).arg(&unpacked))?;
        }
    }
    let src = unpacked.join("usr/src");
    let _ = std::fs::remove_dir_all(&merged);
    // The flavour's tree (generated headers, .config) overlaid on the common one.
    run(Command::new("cp")
        .arg("-a")
        .arg(src.join(&common))
        .arg(&merged))?;
    run(Command::new("cp")
        .arg("-a")
        .arg(src.join(&flavour).join("."))
        .arg(&merged))?;
    std::fs::write(dir.join("version"), &flavour)?;
    Ok(merged)
}

fn headers_version(work: &Path) -> String {
    std::fs::read_to_string(work.join("bcc-headers/version"))
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|_| "linux-headers".into())
}

/// The first `Depends:` of a Debian package whose name contains `needle`.
fn depends_matching(pkg: &str, needle: &str) -> anyhow::Result<String> {
    let out = Command::new("apt-cache")
        .args(["depends", pkg])
        .output()
        .context("running apt-cache")?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Depends:"))
        .map(str::trim)
        .find(|d| d.contains(needle) && !d.starts_with('<'))
        .map(str::to_string)
        .with_context(|| format!("no dependency of {pkg} matching {needle} (apt-get update?)"))
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}
