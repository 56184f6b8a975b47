//! Naming a process's sampled stack frames while it runs: each address's mapping from the
//! process's /proc/PID/maps, the binary read through the process's root (so a container's
//! files are found), and the (binary, file offset) pair named by the symbolizer. The pair is
//! kept with the name, so an address stays meaningful after the process is gone and on
//! another machine. Shared by `profile` and `record --stacks`.
use std::path::{Path, PathBuf};

use crate::{
    host::{
        procmaps::{Mapping, Maps},
        symbols::{ResolvedFrame, Symbolizer},
    },
    model::growth::SiteFrame,
};

/// A process as last seen: its name and mappings.
pub struct ProcessImage {
    pub comm: String,
    pub maps: Maps,
    /// /proc/PID/root: the process's view of the file system.
    pub root: PathBuf,
}

impl ProcessImage {
    /// Read the process's mappings now; None once it is gone.
    pub fn read(proc_root: &Path, pid: u32, comm: String) -> Option<Self> {
        let maps = Maps::read(proc_root, pid).ok()?;
        Some(Self {
            comm,
            maps,
            root: proc_root.join(pid.to_string()).join("root"),
        })
    }

    /// Whether every address has a mapping (a stale image misses newly loaded code).
    pub fn covers(&self, addresses: &[u64]) -> bool {
        addresses.iter().all(|a| self.maps.find(*a).is_some())
    }

    /// The file mapping holding `addr` and the binary's path as readable from the host.
    pub fn locate(&self, addr: u64) -> Option<(&Mapping, PathBuf, PathBuf)> {
        let m = self.maps.find(addr)?;
        let path = m.path.clone()?;
        let readable = readable_path(&self.root, &path);
        Some((m, path, readable))
    }

    /// Name each frame (innermost first).
    pub fn name_frames(&self, sym: &mut Symbolizer, addresses: &[u64]) -> Vec<SiteFrame> {
        addresses
            .iter()
            .enumerate()
            .map(|(i, &address)| match self.locate(address) {
                Some((m, path, readable)) => {
                    let offset = m.file_offset(address);
                    let ResolvedFrame {
                        function,
                        file,
                        line,
                    } = sym.resolve(&readable, offset, i > 0);
                    SiteFrame {
                        address,
                        function,
                        file,
                        line,
                        module: Some(path.to_string_lossy().into_owned()),
                        build_id: sym.binary(&readable).and_then(|b| b.build_id.clone()),
                        offset: Some(offset),
                    }
                }
                None => SiteFrame::unnamed(address),
            })
            .collect()
    }
}

/// The binary as the process sees it (through its root), if that is readable; else the
/// path on the host.
pub fn readable_path(root: &Path, path: &Path) -> PathBuf {
    let inside = root.join(path.strip_prefix("/").unwrap_or(path));
    if inside.exists() {
        inside
    } else {
        path.to_path_buf()
    }
}
