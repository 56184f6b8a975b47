//! Reading another process's memory: many small pieces in one `process_vm_readv` call (one
//! syscall, one iovec per piece), and where the executable is loaded (the load bias of a
//! position-independent binary, from /proc/PID/maps).
use std::path::Path;

use anyhow::{Context as _, bail};

use crate::host::procmaps::Maps;

/// The kernel's limit on iovecs per call (UIO_MAXIOV).
pub const MAX_PIECES: usize = 1024;

/// Read `len` bytes at each address, all in one system call. Every piece must be read in
/// full: a short read (a piece unmapped, the process gone) is an error.
pub fn read_pieces(pid: u32, pieces: &[(u64, usize)]) -> anyhow::Result<Vec<Vec<u8>>> {
    if pieces.len() > MAX_PIECES {
        bail!("{} pieces: more than one call can read", pieces.len());
    }
    let mut out: Vec<Vec<u8>> = pieces.iter().map(|&(_, len)| vec![0u8; len]).collect();
    let local: Vec<libc::iovec> = out
        .iter_mut()
        .map(|buf| libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        })
        .collect();
    let remote: Vec<libc::iovec> = pieces
        .iter()
        .map(|&(addr, len)| libc::iovec {
            iov_base: addr as *mut libc::c_void,
            iov_len: len,
        })
        .collect();
    let wanted: usize = pieces.iter().map(|p| p.1).sum();
    let pid = libc::pid_t::try_from(pid).context("pid out of range")?;
    // SAFETY: every local iovec points into a live Vec of exactly iov_len bytes, which
    // nothing else borrows until the call returns; the remote iovecs are only addresses in
    // the other process (the kernel checks them), never dereferenced here.
    let n = unsafe {
        libc::process_vm_readv(
            pid,
            local.as_ptr(),
            local.len() as libc::c_ulong,
            remote.as_ptr(),
            remote.len() as libc::c_ulong,
            0,
        )
    };
    if n < 0 {
        return Err(std::io::Error::last_os_error()).context("process_vm_readv");
    }
    if n as usize != wanted {
        bail!("process_vm_readv read {n} of {wanted} bytes");
    }
    Ok(out)
}

/// Where the file's PT_LOAD segments start: (page-aligned virtual address, page-aligned
/// file offset), as the ELF says.
pub type Segments = Vec<(u64, u64)>;

const PAGE: u64 = 4096;

pub fn segments(file: &object::File<'_>) -> Segments {
    use object::{Object as _, ObjectSegment as _};
    file.segments()
        .map(|s| (s.address() & !(PAGE - 1), s.file_range().0 & !(PAGE - 1)))
        .collect()
}

/// How far the kernel moved a position-independent executable: its first mapping of the
/// executable, matched with the segment at that file offset.
pub fn load_bias(proc_root: &Path, pid: u32, segments: &Segments) -> anyhow::Result<u64> {
    let link = std::fs::read_link(proc_root.join(pid.to_string()).join("exe"))
        .context("reading the executable's path")?;
    // A replaced binary reads "PATH (deleted)"; `Maps` drops that suffix, so drop it here.
    let link = link.to_string_lossy();
    let exe = Path::new(link.trim_end_matches(" (deleted)"));
    let maps = Maps::read(proc_root, pid).context("reading the process's maps")?;
    let mapping = maps
        .0
        .iter()
        .find(|m| m.path.as_deref() == Some(exe))
        .with_context(|| format!("{} is not mapped", exe.display()))?;
    let &(vaddr, _) = segments
        .iter()
        .find(|&&(_, offset)| offset == mapping.offset)
        .with_context(|| format!("no segment at file offset {:#x}", mapping.offset))?;
    mapping
        .start
        .checked_sub(vaddr)
        .context("mapped below its link address")
}
