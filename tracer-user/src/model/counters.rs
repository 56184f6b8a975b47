//! A process's cumulative counters as the model keeps them: named fields, no kernel layout.
//! kernel/ fills them from the kernel's per-process entries (and exit events); a replayed
//! trace fills them from its sample records. Byte counters are cumulative since the kernel
//! first saw the process; `rss` is the latest absolute value of each kind.
use serde::{Deserialize, Serialize};

/// Buckets of the mmap request-size histogram: bucket `i` counts requests of
/// `floor(log2(len)) == i + MMAP_SIZE_MIN_SHIFT`; the first takes everything smaller, the last
/// everything larger.
pub const MMAP_SIZE_CLASSES: usize = 24;
/// log2 of the smallest size class (4 KiB).
pub const MMAP_SIZE_MIN_SHIFT: u32 = 12;

/// Resident memory by kind, bytes. (Field order is the JSON order of the trace's
/// `last_rss`.)
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rss {
    pub anon: u64,
    pub file: u64,
    pub shmem: u64,
    pub swap: u64,
}

impl Rss {
    /// Leak-relevant memory: anonymous + shared-memory + swapped-out pages. File pages are
    /// reclaimable page cache and are left out.
    pub fn private(&self) -> u64 {
        self.anon + self.shmem + self.swap
    }

    /// Resident memory (swap is not resident).
    pub fn total(&self) -> u64 {
        self.anon + self.shmem + self.file
    }
}

/// Calls per traced syscall: mmap and mremap when they succeeded; brk, munmap and madvise
/// every call. (Field order is the JSON order of the trace's `calls`.)
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Calls {
    pub mmap: u64,
    pub munmap: u64,
    pub brk: u64,
    pub mremap: u64,
    pub madvise: u64,
}

impl Calls {
    /// The syscalls' names, in the order of [`Calls::named`] (metrics labels, logs).
    pub const NAMES: [&'static str; 5] = ["mmap", "munmap", "brk", "mremap", "madvise"];

    /// Each syscall's name with its count.
    pub fn named(&self) -> [(&'static str, u64); 5] {
        let [mmap, munmap, brk, mremap, madvise] = Self::NAMES;
        [
            (mmap, self.mmap),
            (munmap, self.munmap),
            (brk, self.brk),
            (mremap, self.mremap),
            (madvise, self.madvise),
        ]
    }

    pub fn total(&self) -> u64 {
        self.mmap + self.munmap + self.brk + self.mremap + self.madvise
    }

    /// Calls made since `before` (a counter never goes back; a lower one counts as 0).
    pub fn since(&self, before: &Self) -> Self {
        Self {
            mmap: self.mmap.saturating_sub(before.mmap),
            munmap: self.munmap.saturating_sub(before.munmap),
            brk: self.brk.saturating_sub(before.brk),
            mremap: self.mremap.saturating_sub(before.mremap),
            madvise: self.madvise.saturating_sub(before.madvise),
        }
    }

    pub fn add(&mut self, other: &Self) {
        self.mmap += other.mmap;
        self.munmap += other.munmap;
        self.brk += other.brk;
        self.mremap += other.mremap;
        self.madvise += other.madvise;
    }
}

/// One process's cumulative counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// The command name (NUL-padded, as the kernel keeps it: a copy, no allocation per
    /// round); see [`Counters::comm`].
    pub comm: [u8; 16],
    /// CLOCK_MONOTONIC nanoseconds when the kernel first saw the process.
    pub first_seen_ns: u64,
    pub rss: Rss,
    /// Highest private memory (anon + shmem + swap) seen, bytes.
    pub peak_private: u64,
    pub calls: Calls,
    /// mmap and mremap calls that returned an error (not in the byte counters).
    pub failed_calls: u64,
    /// mmap of anonymous memory with some access (committed address space).
    pub mapped_anon: u64,
    /// mmap of a file.
    pub mapped_file: u64,
    /// mmap with PROT_NONE: address space reserved, not committed.
    pub reserved: u64,
    /// munmap'ed bytes.
    pub unmapped: u64,
    /// Bytes given back to the kernel by madvise without unmapping.
    pub released: u64,
    pub brk_grown: u64,
    pub brk_shrunk: u64,
    pub mremap_grown: u64,
    pub mremap_shrunk: u64,
    /// Current program break (0 until the first brk is seen).
    pub brk_current: u64,
    /// Parent pid at fork, 0 when the process predates the tracer.
    pub ppid: u32,
    /// mmap request sizes per power-of-two class, see [`MMAP_SIZE_CLASSES`].
    pub mmap_size_hist: [u32; MMAP_SIZE_CLASSES],
    /// Memory-cgroup direct reclaim run by the process's threads: runs, time (ns) and pages
    /// freed (from anywhere in the cgroup).
    pub reclaim_runs: u64,
    pub reclaim_ns: u64,
    pub reclaimed_pages: u64,
    /// Created while tracing (its counters are complete).
    pub fork_seen: bool,
    /// Exec'ed while tracing.
    pub exec_seen: bool,
    /// These are the process's final counters: it has exited.
    pub exited: bool,
    /// Whether `rss` was exact when read. The kernel's figures are not while the overhead
    /// budget has its RSS hook paused (and for an entry not refilled since it resumed): the
    /// session then takes them from /proc or the last sample. Always true in a replay.
    pub rss_exact: bool,
}

impl Counters {
    /// The command name as text.
    pub fn comm(&self) -> String {
        crate::host::procfs::comm_from_bytes(&self.comm)
    }

    /// Set the command name (cut to the kernel's 15 bytes).
    pub fn set_comm(&mut self, name: &str) {
        self.comm = [0; 16];
        let n = name.len().min(15);
        self.comm[..n].copy_from_slice(&name.as_bytes()[..n]);
    }

    /// Bytes obtained: mmap (anon + file, committed), brk and mremap growth.
    pub fn alloc(&self) -> u64 {
        self.mapped_anon + self.mapped_file + self.brk_grown + self.mremap_grown
    }

    /// Bytes given back: munmap, madvise releases, brk and mremap shrink.
    pub fn freed(&self) -> u64 {
        self.unmapped + self.released + self.brk_shrunk + self.mremap_shrunk
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rss_sums() {
        let rss = Rss {
            anon: 1,
            file: 2,
            shmem: 4,
            swap: 8,
        };
        assert_eq!(rss.private(), 13);
        assert_eq!(rss.total(), 7);
    }

    #[test]
    fn calls_by_name_and_since() {
        let now = Calls {
            mmap: 5,
            munmap: 4,
            brk: 3,
            mremap: 2,
            madvise: 1,
        };
        let before = Calls {
            mmap: 1,
            brk: 9,
            ..Calls::default()
        };
        let d = now.since(&before);
        assert_eq!((d.mmap, d.brk, d.munmap), (4, 0, 4));
        assert_eq!(now.total(), 15);
        assert_eq!(now.named()[2], ("brk", 3));
    }

    #[test]
    fn comm_is_cut_to_the_kernels_length() {
        let mut c = Counters::default();
        c.set_comm("a-very-long-command-name");
        assert_eq!(c.comm(), "a-very-long-com");
        c.set_comm("leak");
        assert_eq!(c.comm(), "leak");
    }
}
