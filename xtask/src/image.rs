//! The container image (`Containerfile`, `FROM scratch`): builds the statically linked musl
//! release binary, checks that it needs no dynamic loader and no shared library, builds the
//! image with podman, runs `<image> --version` once, and removes the image again.
//!
//! podman runs rootful with a private, throw-away store (vfs driver, under the system's temp
//! directory), so it touches neither `/var/lib/containers/storage` nor the images of the
//! machine, and needs no systemd, network or registry. [`Store::podman`] and [`run_args`] hold
//! the flags these sandboxes need and why (also in `deploy/README.md`, "Build the image").
use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{Context as _, bail, ensure};

use crate::{cargo, check, prereqs::MUSL_TARGET};

/// The workspace version (xtask takes `version.workspace = true`): what `--version` must print.
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Where `cargo build --release --target x86_64-unknown-linux-musl` puts the binary, and where
/// the Containerfile's `COPY` takes it from.
pub fn musl_binary(root: &Path) -> PathBuf {
    root.join("target")
        .join(MUSL_TARGET)
        .join("release")
        .join("leaktracer")
}

pub fn build_and_check(root: &Path) -> anyhow::Result<()> {
    // Fails before the long build rather than after it.
    if !crate::prereqs::is_root() {
        bail!(
            "building and running the image uses rootful podman: run `cargo xtask image` as root"
        );
    }
    // (a) The binary, where the Containerfile's COPY expects it whatever CARGO_TARGET_DIR says.
    let t = Instant::now();
    check(
        cargo(root)
            .args([
                "build",
                "--release",
                "-p",
                "tracer-user",
                "--target",
                MUSL_TARGET,
            ])
            .env("CARGO_TARGET_DIR", root.join("target")),
    )?;
    eprintln!(
        "xtask: musl release build: {:.1} s",
        t.elapsed().as_secs_f64()
    );

    // (b) Static: no PT_INTERP, no DT_NEEDED (a static-pie still has a PT_DYNAMIC).
    let bin = musl_binary(root);
    let elf = std::fs::read(&bin).with_context(|| format!("reading {}", bin.display()))?;
    let linking = Linking::of(&elf).with_context(|| format!("parsing {}", bin.display()))?;
    ensure!(
        linking.is_static(),
        "{} is not statically linked: {linking}",
        bin.display()
    );
    eprintln!("xtask: {} is statically linked", bin.display());

    // (c)-(e) The image, in a private store removed on every path out of here.
    let store = Store::new()?;
    let tag = format!("localhost/leaktracer:{VERSION}");
    let t = Instant::now();
    check(
        store
            .podman()
            .args(["build", "--network", "none", "-t", &tag, "-f"])
            .arg(root.join("Containerfile"))
            .arg(root),
    )?;
    let built = t.elapsed();

    // The Containerfile's version label follows Cargo.toml.
    let label = output(store.podman().args([
        "image",
        "inspect",
        "--format",
        "{{index .Labels \"org.opencontainers.image.version\"}}",
        &tag,
    ]))?;
    ensure!(
        label.trim() == VERSION,
        "the Containerfile's org.opencontainers.image.version label is {:?}, Cargo.toml says {VERSION}",
        label.trim()
    );

    let t = Instant::now();
    let printed = output(store.podman().args(run_args(&tag, &["--version"])))?;
    let ran = t.elapsed();
    ensure!(
        printed.contains(VERSION),
        "`podman run {tag} --version` printed {printed:?}, expected version {VERSION}"
    );
    eprintln!(
        "xtask: image {tag}: built in {:.1} s; `--version` ran in {:.1} s and printed {:?}",
        built.as_secs_f64(),
        ran.as_secs_f64(),
        printed.trim()
    );
    store.remove_image(&tag)
}

/// `podman run` arguments: no network, and small explicit rlimits. Rootful podman otherwise
/// asks the runtime for nofile 1048576 and nproc 32768, which it cannot set on these sandboxes
/// (no CAP_SYS_RESOURCE: "setrlimit `RLIMIT_NOFILE`: Operation not permitted"); leaktracer's
/// `--version` needs neither.
fn run_args<'a>(tag: &'a str, args: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![
        "run",
        "--rm",
        "--network",
        "none",
        "--ulimit",
        "nofile=1024:1024",
        "--ulimit",
        "nproc=1024:1024",
        tag,
    ];
    v.extend_from_slice(args);
    v
}

fn output(cmd: &mut Command) -> anyhow::Result<String> {
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

/// A throw-away podman store: removed (image, then directory) when dropped.
struct Store {
    dir: PathBuf,
}

impl Store {
    fn new() -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("leaktracer-image.{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Self { dir })
    }

    /// podman with explicit global flags. Needed here: runc, because podman's default crun 1.8
    /// refuses this machine's hybrid cgroups ("cgroups in hybrid mode not supported, drop all
    /// controllers from cgroupv2": the v2 hierarchy holds hugetlb). The rest makes the run
    /// independent of the host's podman configuration and keeps every file in the store: its
    /// own root, run root and tmpdir (not /var/lib/containers/storage, /run/libpod), the vfs
    /// driver (no mounts left behind), cgroupfs and a file event log (no systemd, journald).
    fn podman(&self) -> Command {
        let mut c = Command::new("podman");
        c.arg("--root")
            .arg(self.dir.join("root"))
            .arg("--runroot")
            .arg(self.dir.join("run"))
            .arg("--tmpdir")
            .arg(self.dir.join("tmp"))
            .args([
                "--storage-driver",
                "vfs",
                "--cgroup-manager",
                "cgroupfs",
                "--events-backend",
                "file",
                "--runtime",
                "runc",
            ]);
        c
    }

    fn remove_image(&self, tag: &str) -> anyhow::Result<()> {
        check(self.podman().args(["rmi", "--force", tag]))
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        // Whatever remains (intermediate layers, an image left by a failed check).
        let _ = self
            .podman()
            .args(["rmi", "--all", "--force"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            eprintln!("xtask: could not remove {}: {e}", self.dir.display());
        }
    }
}

/// How an ELF file is linked: its program interpreter (PT_INTERP) and the shared libraries it
/// names (DT_NEEDED). Static, including static-pie, means neither.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Linking {
    pub interpreter: Option<String>,
    pub needed: Vec<String>,
}

impl std::fmt::Display for Linking {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.interpreter {
            Some(i) => write!(f, "interpreter {i}")?,
            None => write!(f, "no interpreter")?,
        }
        if self.needed.is_empty() {
            write!(f, ", no shared libraries")
        } else {
            write!(f, ", needs {}", self.needed.join(" "))
        }
    }
}

const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const DT_NULL: u64 = 0;
const DT_NEEDED: u64 = 1;
const DT_STRTAB: u64 = 5;

impl Linking {
    pub fn is_static(&self) -> bool {
        self.interpreter.is_none() && self.needed.is_empty()
    }

    /// Reads the program headers and the dynamic section of a 64-bit little-endian ELF file
    /// (the only kind xtask builds).
    pub fn of(elf: &[u8]) -> anyhow::Result<Self> {
        ensure!(elf.get(..4) == Some(b"\x7fELF"), "not an ELF file");
        ensure!(elf.get(4) == Some(&2), "not a 64-bit ELF file");
        ensure!(elf.get(5) == Some(&1), "not a little-endian ELF file");
        let phoff = usize_at(elf, 0x20)?;
        let phentsize = usize::from(u16_at(elf, 0x36)?);
        let phnum = usize::from(u16_at(elf, 0x38)?);
        ensure!(phentsize >= 56, "program header size {phentsize} too small");

        struct Ph {
            kind: u32,
            offset: usize,
            vaddr: u64,
            filesz: usize,
        }
        let phs = (0..phnum)
            .map(|i| {
                let p = phoff
                    .checked_add(i * phentsize)
                    .context("program header offset overflows")?;
                Ok(Ph {
                    kind: u32_at(elf, p)?,
                    offset: usize_at(elf, p + 8)?,
                    vaddr: u64_at(elf, p + 16)?,
                    filesz: usize_at(elf, p + 32)?,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let segment = |ph: &Ph| {
            elf.get(ph.offset..ph.offset.saturating_add(ph.filesz))
                .context("segment beyond the end of the file")
        };

        let mut linking = Self::default();
        if let Some(ph) = phs.iter().find(|p| p.kind == PT_INTERP) {
            let s = segment(ph)?;
            let s = s.split(|&b| b == 0).next().unwrap_or_default();
            linking.interpreter = Some(String::from_utf8_lossy(s).into_owned());
        }
        let Some(dynamic) = phs.iter().find(|p| p.kind == PT_DYNAMIC) else {
            return Ok(linking);
        };
        let dynamic = segment(dynamic)?;
        let mut needed = Vec::new();
        let mut strtab = None;
        for entry in dynamic.chunks_exact(16) {
            let tag = u64_at(entry, 0)?;
            let val = u64_at(entry, 8)?;
            match tag {
                DT_NULL => break,
                DT_NEEDED => needed.push(val),
                DT_STRTAB => strtab = Some(val),
                _ => {}
            }
        }
        // DT_STRTAB is an address: find the file offset through the PT_LOAD mapping it.
        let strtab = strtab.and_then(|addr| {
            phs.iter()
                .filter(|p| p.kind == PT_LOAD)
                .find(|p| addr >= p.vaddr && addr - p.vaddr < p.filesz as u64)
                .map(|p| p.offset + usize::try_from(addr - p.vaddr).unwrap_or(usize::MAX))
        });
        linking.needed = needed
            .into_iter()
            .map(|off| {
                let name = strtab
                    .and_then(|s| s.checked_add(usize::try_from(off).ok()?))
                    .and_then(|start| elf.get(start..))
                    .and_then(|s| s.split(|&b| b == 0).next());
                match name {
                    Some(n) => String::from_utf8_lossy(n).into_owned(),
                    None => format!("<DT_NEEDED at string offset {off}>"),
                }
            })
            .collect();
        Ok(linking)
    }
}

fn bytes<const N: usize>(b: &[u8], at: usize) -> anyhow::Result<[u8; N]> {
    b.get(at..at.saturating_add(N))
        .and_then(|s| s.try_into().ok())
        .with_context(|| format!("ELF file truncated at offset {at}"))
}

fn u16_at(b: &[u8], at: usize) -> anyhow::Result<u16> {
    Ok(u16::from_le_bytes(bytes(b, at)?))
}

fn u32_at(b: &[u8], at: usize) -> anyhow::Result<u32> {
    Ok(u32::from_le_bytes(bytes(b, at)?))
}

fn u64_at(b: &[u8], at: usize) -> anyhow::Result<u64> {
    Ok(u64::from_le_bytes(bytes(b, at)?))
}

fn usize_at(b: &[u8], at: usize) -> anyhow::Result<usize> {
    usize::try_from(u64_at(b, at)?).context("ELF offset does not fit in usize")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF64 LE file: header, program headers, then the given segments' contents.
    /// `dynamic` (tag, value) pairs get a PT_DYNAMIC, `strtab` a PT_LOAD at vaddr 0x1000 + its
    /// file offset, `interp` a PT_INTERP.
    fn elf(interp: Option<&str>, dynamic: Option<&[(u64, u64)]>, strtab: &[u8]) -> Vec<u8> {
        let phnum = 3;
        let data_start = 64 + 56 * phnum;
        let mut data = Vec::new();
        let mut phs: Vec<(u32, usize, u64, usize)> = Vec::new();
        let strtab_off = data_start + data.len();
        data.extend_from_slice(strtab);
        phs.push((
            PT_LOAD,
            strtab_off,
            0x1000 + strtab_off as u64,
            strtab.len(),
        ));
        if let Some(i) = interp {
            let off = data_start + data.len();
            data.extend_from_slice(i.as_bytes());
            data.push(0);
            phs.push((PT_INTERP, off, 0, i.len() + 1));
        }
        if let Some(d) = dynamic {
            let off = data_start + data.len();
            for &(t, v) in d {
                data.extend_from_slice(&t.to_le_bytes());
                data.extend_from_slice(&v.to_le_bytes());
            }
            phs.push((PT_DYNAMIC, off, 0, d.len() * 16));
        }
        while phs.len() < phnum {
            phs.push((0, 0, 0, 0)); // PT_NULL
        }
        let mut f = vec![0u8; 64];
        f[..6].copy_from_slice(b"\x7fELF\x02\x01");
        f[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
        f[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        f[0x38..0x3a].copy_from_slice(&(phnum as u16).to_le_bytes());
        for (kind, off, vaddr, size) in phs {
            let mut ph = [0u8; 56];
            ph[0..4].copy_from_slice(&kind.to_le_bytes());
            ph[8..16].copy_from_slice(&(off as u64).to_le_bytes());
            ph[16..24].copy_from_slice(&vaddr.to_le_bytes());
            ph[32..40].copy_from_slice(&(size as u64).to_le_bytes());
            f.extend_from_slice(&ph);
        }
        f.extend_from_slice(&data);
        f
    }

    const STRTAB_ADDR: u64 = 0x1000 + 64 + 56 * 3;

    #[test]
    fn dynamic_executable() {
        let f = elf(
            Some("/lib64/ld-linux-x86-64.so.2"),
            Some(&[
                (DT_NEEDED, 1),
                (DT_STRTAB, STRTAB_ADDR),
                (DT_NEEDED, 12),
                (DT_NULL, 0),
                (DT_NEEDED, 1), // after DT_NULL: ignored
            ]),
            b"\0libzstd.so\0libc.so.6\0",
        );
        let l = Linking::of(&f).unwrap();
        assert_eq!(
            l,
            Linking {
                interpreter: Some("/lib64/ld-linux-x86-64.so.2".into()),
                needed: vec!["libzstd.so".into(), "libc.so.6".into()],
            }
        );
        assert!(!l.is_static());
        assert_eq!(
            l.to_string(),
            "interpreter /lib64/ld-linux-x86-64.so.2, needs libzstd.so libc.so.6"
        );
    }

    #[test]
    fn static_pie_has_a_dynamic_section_but_needs_nothing() {
        // What rustc makes for x86_64-unknown-linux-musl: PT_DYNAMIC for the self-relocation,
        // no PT_INTERP, no DT_NEEDED.
        let f = elf(None, Some(&[(DT_STRTAB, STRTAB_ADDR), (DT_NULL, 0)]), b"\0");
        let l = Linking::of(&f).unwrap();
        assert!(l.is_static(), "{l}");
    }

    #[test]
    fn classic_static_has_no_dynamic_section() {
        assert!(Linking::of(&elf(None, None, b"")).unwrap().is_static());
    }

    #[test]
    fn needed_without_string_table_still_counts() {
        let f = elf(None, Some(&[(DT_NEEDED, 1), (DT_NULL, 0)]), b"");
        let l = Linking::of(&f).unwrap();
        assert!(!l.is_static());
        assert_eq!(l.needed, ["<DT_NEEDED at string offset 1>"]);
    }

    #[test]
    fn rejects_what_is_not_a_whole_elf64_le_file() {
        assert!(Linking::of(b"#!/bin/sh\n").is_err());
        assert!(Linking::of(b"").is_err());
        let mut f = elf(Some("/lib/ld.so"), None, b"");
        f[4] = 1; // ELFCLASS32
        assert!(Linking::of(&f).is_err());
        let f = elf(Some("/lib/ld.so"), None, b"");
        assert!(Linking::of(&f[..100]).is_err()); // program headers cut off
        let mut f = elf(Some("/lib/ld.so"), None, b"");
        f.truncate(f.len() - 4); // interpreter segment cut off
        assert!(Linking::of(&f).is_err());
    }

    /// Real files: this test binary and /bin/ls are dynamic (glibc); Debian's busybox-static
    /// (installed by `cargo xtask setup` for the QEMU guests) and the musl leaktracer are
    /// static. Those but the test binary are skipped when absent.
    #[test]
    fn real_binaries() {
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let l = Linking::of(&me).unwrap();
        assert!(!l.is_static(), "{l}");
        assert!(l.needed.iter().any(|n| n.starts_with("libc.so")), "{l}");

        if let Ok(ls) = std::fs::read("/bin/ls") {
            let l = Linking::of(&ls).unwrap();
            assert!(
                l.interpreter.as_deref().is_some_and(|i| i.contains("ld-")),
                "{l}"
            );
            assert!(l.needed.iter().any(|n| n.starts_with("libc.so")), "{l}");
        }
        if let Ok(b) = std::fs::read("/bin/busybox") {
            let l = Linking::of(&b).unwrap();
            // Debian's busybox package (not -static) is dynamic: only check the static one.
            if Path::new("/usr/share/doc/busybox-static").exists() {
                assert!(l.is_static(), "{l}");
            }
        }
        // The image's binary, when `cargo xtask image` has built it (a static-pie).
        if let Ok(b) = std::fs::read(musl_binary(&crate::workspace_root())) {
            let l = Linking::of(&b).unwrap();
            assert!(l.is_static(), "{l}");
        }
    }

    #[test]
    fn run_arguments_end_with_image_and_its_arguments() {
        let a = run_args("localhost/leaktracer:0.1.0", &["--version"]);
        assert_eq!(a[..2], ["run", "--rm"]);
        assert_eq!(
            a[a.len() - 2..],
            ["localhost/leaktracer:0.1.0", "--version"]
        );
    }
}
