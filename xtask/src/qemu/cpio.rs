//! A minimal initramfs writer: the kernel's `newc` cpio format, uncompressed.
//!
//! The kernel unpacks an uncompressed cpio directly; under TCG that is much faster than having the
//! guest decompress a gzip image (the debug leaktracer binary alone is ~80 MB). No root needed:
//! device nodes and ownership are written into the archive, not created on the host.
use std::{
    collections::BTreeMap,
    fs::File,
    io::{self, BufWriter, Write},
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, bail};

const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFLNK: u32 = 0o120_000;
const S_IFCHR: u32 = 0o020_000;

#[derive(Debug, Clone)]
enum Entry {
    Dir,
    /// Contents from a host file (symlinks followed), with this permission mode.
    HostFile(PathBuf, u32),
    Bytes(Vec<u8>, u32),
    Symlink(String),
    CharDev(u32, u32),
}

/// An archive being assembled: guest paths (absolute, `/`-separated) to entries. Parent
/// directories are added implicitly; the sorted map writes every parent before its children.
#[derive(Debug, Default)]
pub struct Archive {
    entries: BTreeMap<String, Entry>,
}

/// `/usr//bin/x/` -> `usr/bin/x` (cpio names are relative to the root).
fn normalize(guest: &str) -> anyhow::Result<String> {
    let parts: Vec<&str> = guest
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    if parts.is_empty() || parts.contains(&"..") {
        bail!("bad guest path {guest:?}");
    }
    Ok(parts.join("/"))
}

impl Archive {
    pub fn new() -> Self {
        Self::default()
    }

    fn insert(&mut self, guest: &str, entry: Entry) -> anyhow::Result<()> {
        let path = normalize(guest)?;
        let mut parent = path.as_str();
        while let Some((p, _)) = parent.rsplit_once('/') {
            match self.entries.get(p) {
                None => {
                    self.entries.insert(p.to_string(), Entry::Dir);
                }
                Some(Entry::Dir) => {}
                Some(other) => bail!("{p:?} is already {other:?}, not a directory"),
            }
            parent = p;
        }
        match (self.entries.get(&path), &entry) {
            (Some(Entry::Dir), Entry::Dir) => {}
            (Some(Entry::Dir), _) => bail!("{path:?} is already a directory"),
            _ => {
                self.entries.insert(path, entry);
            }
        }
        Ok(())
    }

    pub fn dir(&mut self, guest: &str) -> anyhow::Result<()> {
        self.insert(guest, Entry::Dir)
    }

    /// A host file (its permission bits kept) or, recursively, a host directory.
    pub fn host_path(&mut self, guest: &str, host: &Path) -> anyhow::Result<()> {
        let meta = std::fs::metadata(host).with_context(|| format!("{}", host.display()))?;
        if meta.is_dir() {
            self.dir(guest)?;
            let mut children: Vec<_> = std::fs::read_dir(host)
                .with_context(|| format!("{}", host.display()))?
                .collect::<Result<_, _>>()?;
            children.sort_by_key(|e| e.file_name());
            for child in children {
                let name = child.file_name();
                let name = name
                    .to_str()
                    .with_context(|| format!("non-UTF-8 name in {}", host.display()))?;
                self.host_path(&format!("{guest}/{name}"), &child.path())?;
            }
            Ok(())
        } else {
            let mode = meta.permissions().mode() & 0o7777;
            self.insert(guest, Entry::HostFile(host.to_path_buf(), mode))
        }
    }

    pub fn bytes(
        &mut self,
        guest: &str,
        data: impl Into<Vec<u8>>,
        mode: u32,
    ) -> anyhow::Result<()> {
        self.insert(guest, Entry::Bytes(data.into(), mode))
    }

    pub fn symlink(&mut self, guest: &str, target: &str) -> anyhow::Result<()> {
        self.insert(guest, Entry::Symlink(target.to_string()))
    }

    pub fn char_dev(&mut self, guest: &str, major: u32, minor: u32) -> anyhow::Result<()> {
        self.insert(guest, Entry::CharDev(major, minor))
    }

    pub fn contains(&self, guest: &str) -> bool {
        normalize(guest).is_ok_and(|p| self.entries.contains_key(&p))
    }

    /// Write the archive (uncompressed newc) to `out`.
    pub fn write_to(&self, out: &Path) -> anyhow::Result<()> {
        let f = File::create(out).with_context(|| format!("creating {}", out.display()))?;
        let mut w = BufWriter::with_capacity(1 << 20, f);
        self.write(&mut w)
            .with_context(|| format!("writing {}", out.display()))?;
        w.into_inner()
            .map_err(|e| e.into_error())
            .and_then(|f| f.sync_all().map(|_| ()))
            .with_context(|| format!("writing {}", out.display()))
    }

    pub fn write(&self, w: &mut impl Write) -> anyhow::Result<()> {
        let mut ino = 1u32;
        for (path, entry) in &self.entries {
            ino += 1;
            match entry {
                Entry::Dir => header(w, ino, S_IFDIR | 0o755, 2, 0, (0, 0), path)?,
                Entry::Bytes(data, mode) => {
                    header(
                        w,
                        ino,
                        S_IFREG | mode,
                        1,
                        len32(data.len() as u64, path)?,
                        (0, 0),
                        path,
                    )?;
                    w.write_all(data)?;
                    pad(w, data.len() as u64)?;
                }
                Entry::Symlink(target) => {
                    let len = len32(target.len() as u64, path)?;
                    header(w, ino, S_IFLNK | 0o777, 1, len, (0, 0), path)?;
                    w.write_all(target.as_bytes())?;
                    pad(w, target.len() as u64)?;
                }
                Entry::CharDev(major, minor) => {
                    header(w, ino, S_IFCHR | 0o600, 1, 0, (*major, *minor), path)?
                }
                Entry::HostFile(host, mode) => {
                    let mut f =
                        File::open(host).with_context(|| format!("opening {}", host.display()))?;
                    let size = f.metadata()?.len();
                    header(w, ino, S_IFREG | mode, 1, len32(size, path)?, (0, 0), path)?;
                    let copied = io::copy(&mut f, w)?;
                    if copied != size {
                        bail!("{} changed size while being archived", host.display());
                    }
                    pad(w, size)?;
                }
            }
        }
        header(w, 0, 0, 1, 0, (0, 0), "TRAILER!!!")?;
        Ok(())
    }
}

fn len32(len: u64, path: &str) -> anyhow::Result<u32> {
    u32::try_from(len).with_context(|| format!("{path}: too large for cpio ({len} bytes)"))
}

fn pad(w: &mut impl Write, len: u64) -> io::Result<()> {
    let n = (4 - (len % 4) as usize) % 4;
    w.write_all(&[0u8; 3][..n])
}

fn header(
    w: &mut impl Write,
    ino: u32,
    mode: u32,
    nlink: u32,
    filesize: u32,
    rdev: (u32, u32),
    name: &str,
) -> io::Result<()> {
    let namesize = name.len() as u32 + 1;
    // magic, ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor, rdevmajor,
    // rdevminor, namesize, check
    write!(
        w,
        "070701{ino:08X}{mode:08X}{:08X}{:08X}{nlink:08X}{:08X}{filesize:08X}{:08X}{:08X}{:08X}{:08X}{namesize:08X}{:08X}",
        0, 0, 0, 0, 0, rdev.0, rdev.1, 0
    )?;
    w.write_all(name.as_bytes())?;
    w.write_all(&[0])?;
    // The 110-byte header plus the name is padded to a multiple of 4.
    pad(w, 110 + u64::from(namesize))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_come_first_and_layout_is_newc() {
        let mut a = Archive::new();
        a.bytes("/bin/x", b"hello".to_vec(), 0o755).unwrap();
        a.symlink("/usr/bin/y", "/bin/x").unwrap();
        a.char_dev("/dev/console", 5, 1).unwrap();
        let mut out = Vec::new();
        a.write(&mut out).unwrap();
        let s = String::from_utf8_lossy(&out);
        let names: Vec<usize> = [
            "bin\0",
            "bin/x\0",
            "dev\0",
            "usr\0",
            "usr/bin\0",
            "usr/bin/y\0",
        ]
        .iter()
        .map(|n| s.find(n).unwrap_or_else(|| panic!("{n:?} missing")))
        .collect();
        assert!(names.windows(2).all(|w| w[0] < w[1]), "{names:?}");
        assert!(s.ends_with('\0'));
        assert!(s.contains("TRAILER!!!\0"));
        assert_eq!(out.len() % 4, 0);
        // Every header starts on a 4-byte boundary.
        for (i, _) in s.match_indices("070701") {
            assert_eq!(i % 4, 0);
        }
    }

    #[test]
    fn refuses_file_over_directory() {
        let mut a = Archive::new();
        a.dir("/bin").unwrap();
        assert!(a.bytes("/bin", b"x".to_vec(), 0o644).is_err());
        assert!(a.bytes("/../x", b"x".to_vec(), 0o644).is_err());
    }
}
