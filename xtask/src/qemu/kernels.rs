//! The guest kernels: Debian bookworm's cloud kernels, downloaded with `apt-get download` and
//! unpacked with `dpkg -x` under `<root>/target/qemu/` (never installed on the host).
use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

use super::Kernel;

/// (series, pinned package). The pinned versions are the ones the harness was verified with;
/// when the archive has dropped them, the newest package of the same series is used instead.
pub const SERIES: &[(&str, &str)] = &[
    // 6.1: oom:mark_victim carries only `pid`; older tracepoint layouts.
    ("6.1", "linux-image-6.1.0-56-cloud-amd64"),
    // 6.12 (bookworm-security): the current LTS layouts.
    ("6.12", "linux-image-6.12.117+deb12-cloud-amd64"),
];

pub fn cache_dir(root: &Path) -> PathBuf {
    root.join("target").join("qemu")
}

pub fn kernels(root: &Path) -> anyhow::Result<Vec<Kernel>> {
    let dir = cache_dir(root);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut updated = false;
    SERIES
        .iter()
        .map(|(series, pinned)| {
            kernel(&dir, series, pinned, &mut updated)
                .with_context(|| format!("getting a Debian {series} cloud kernel"))
        })
        .collect()
}

fn kernel(dir: &Path, series: &str, pinned: &str, updated: &mut bool) -> anyhow::Result<Kernel> {
    // 1. The pinned package, already unpacked.
    if let Some(k) = unpacked(dir, pinned)? {
        return Ok(k);
    }
    // 2. Another package of the series unpacked earlier (the pinned one had gone): the newest.
    let mut cached: Vec<String> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| is_series_package(n, series))
        .collect();
    sort_by_version(&mut cached);
    for name in cached.iter().rev() {
        if let Some(k) = unpacked(dir, name)? {
            return Ok(k);
        }
    }
    // 3. Download the pinned one (after refreshing the package lists if it is unknown), or the
    //    newest of the series the archive offers.
    if download(dir, pinned).is_ok() {
        return unpack(dir, pinned);
    }
    if !*updated {
        eprintln!("xtask: refreshing the package lists (apt-get update)");
        run(Command::new("apt-get").args(["update", "-q"]))?;
        *updated = true;
        if download(dir, pinned).is_ok() {
            return unpack(dir, pinned);
        }
    }
    let out = run(Command::new("apt-cache").args([
        "search",
        "--names-only",
        &format!("^linux-image-{}\\.", series.replace('.', "\\.")),
    ]))?;
    let mut offered: Vec<String> = out
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| is_series_package(n, series))
        .map(str::to_string)
        .collect();
    sort_by_version(&mut offered);
    let Some(newest) = offered.last() else {
        bail!("{pinned} is gone and apt-cache offers no other linux-image-{series}.*-cloud-amd64");
    };
    eprintln!("xtask: {pinned} is not available; using {newest}");
    download(dir, newest)?;
    unpack(dir, newest)
}

/// `linux-image-6.1.0-56-cloud-amd64`, `linux-image-6.12.117+deb12-cloud-amd64` (not the
/// `-dbg`/`-unsigned` variants, not the meta-packages).
fn is_series_package(name: &str, series: &str) -> bool {
    name.strip_prefix("linux-image-")
        .and_then(|r| r.strip_prefix(series))
        .and_then(|r| r.strip_prefix('.'))
        .and_then(|r| r.strip_suffix("-cloud-amd64"))
        .is_some_and(|v| v.starts_with(|c: char| c.is_ascii_digit()))
}

/// Numbers in the name, in order: `6.1.0-56` -> [6, 1, 0, 56]; `6.12.117+deb12` -> [6, 12, 117, 12].
fn version_key(name: &str) -> Vec<u64> {
    name.split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .filter_map(|s| s.parse().ok())
        .collect()
}

fn sort_by_version(names: &mut [String]) {
    names.sort_by_key(|n| version_key(n));
}

fn unpacked(dir: &Path, package: &str) -> anyhow::Result<Option<Kernel>> {
    let boot = dir.join(package).join("boot");
    let Ok(entries) = std::fs::read_dir(&boot) else {
        return Ok(None);
    };
    for e in entries {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(release) = name.strip_prefix("vmlinuz-") {
            return Ok(Some(Kernel {
                name: release.to_string(),
                vmlinuz: e.path(),
            }));
        }
    }
    Ok(None)
}

fn download(dir: &Path, package: &str) -> anyhow::Result<()> {
    eprintln!("xtask: downloading {package} (apt-get download)");
    run(Command::new("apt-get")
        .args(["download", "-q", package])
        .current_dir(dir))
    .map(|_| ())
}

/// `dpkg -x` the downloaded .deb into `<dir>/<package>/`, keeping only boot/ (vmlinuz, config,
/// System.map): the guests boot from an initramfs without modules.
fn unpack(dir: &Path, package: &str) -> anyhow::Result<Kernel> {
    let prefix = format!("{}_", package);
    let deb = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".deb"))
        })
        .with_context(|| {
            format!(
                "apt-get download left no {prefix}*.deb in {}",
                dir.display()
            )
        })?;
    let partial = dir.join(format!("{package}.partial"));
    let _ = std::fs::remove_dir_all(&partial);
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&partial))?;
    for e in std::fs::read_dir(&partial)? {
        let e = e?;
        if e.file_name() != "boot" {
            let p = e.path();
            if e.file_type()?.is_dir() {
                std::fs::remove_dir_all(&p)?;
            } else {
                std::fs::remove_file(&p)?;
            }
        }
    }
    let final_dir = dir.join(package);
    let _ = std::fs::remove_dir_all(&final_dir);
    std::fs::rename(&partial, &final_dir)?;
    std::fs::remove_file(&deb)?;
    unpacked(dir, package)?.with_context(|| format!("{} has no boot/vmlinuz-*", deb.display()))
}

fn run(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_packages() {
        assert!(is_series_package("linux-image-6.1.0-56-cloud-amd64", "6.1"));
        assert!(is_series_package(
            "linux-image-6.12.117+deb12-cloud-amd64",
            "6.12"
        ));
        assert!(!is_series_package(
            "linux-image-6.12.117+deb12-cloud-amd64",
            "6.1"
        ));
        assert!(!is_series_package(
            "linux-image-6.1.0-56-cloud-amd64-dbg",
            "6.1"
        ));
        assert!(!is_series_package(
            "linux-image-6.1.0-56-cloud-amd64-unsigned",
            "6.1"
        ));
        assert!(!is_series_package("linux-image-6.12-cloud-amd64", "6.12"));
        assert!(!is_series_package("linux-image-cloud-amd64", "6.1"));
    }

    #[test]
    fn newest_last() {
        let mut v = vec![
            "linux-image-6.12.117+deb12-cloud-amd64".to_string(),
            "linux-image-6.12.99+deb12-cloud-amd64".to_string(),
            "linux-image-6.12.101+deb12-cloud-amd64".to_string(),
        ];
        sort_by_version(&mut v);
        assert_eq!(v.last().unwrap(), "linux-image-6.12.117+deb12-cloud-amd64");
        let mut v = vec![
            "linux-image-6.1.0-9-cloud-amd64".to_string(),
            "linux-image-6.1.0-56-cloud-amd64".to_string(),
        ];
        sort_by_version(&mut v);
        assert_eq!(v.last().unwrap(), "linux-image-6.1.0-56-cloud-amd64");
    }
}
