//! Kernel per-process entries (`ProcStats`) to the model's [`Counters`], done once where an
//! entry is read (the sampler's snapshot, an exit event's final counters); and the kernel
//! entry that seeds a process that predates us, from what /proc says of it.
use tracer_common::{
    CALL_BRK, CALL_KINDS, CALL_MADVISE, CALL_MMAP, CALL_MREMAP, CALL_MUNMAP, MMAP_HIST_BUCKETS,
    MMAP_HIST_MIN_SHIFT, PROC_FLAG_EXEC_SEEN, PROC_FLAG_EXITED, PROC_FLAG_FORK_SEEN, ProcStats,
    RSS_ANON, RSS_FILE, RSS_SHMEM, RSS_SWAP,
};

use crate::{
    host::procfs::StatusMem,
    model::counters::{Calls, Counters, MMAP_SIZE_CLASSES, MMAP_SIZE_MIN_SHIFT, Rss},
};

// The model's histogram is the kernel's, bucket for bucket.
const _: () = assert!(MMAP_SIZE_CLASSES == MMAP_HIST_BUCKETS);
const _: () = assert!(MMAP_SIZE_MIN_SHIFT == MMAP_HIST_MIN_SHIFT);
const _: () = assert!(Calls::NAMES.len() == CALL_KINDS);

/// The model's counters of one kernel entry. `rss_exact`: whether the entry's RSS figures
/// are current (see `RssGeneration::is_exact`); the kernel struct alone cannot tell.
pub fn counters(st: &ProcStats, rss_exact: bool) -> Counters {
    Counters {
        comm: st.comm,
        first_seen_ns: st.first_seen_ns,
        rss: rss(&st.rss),
        peak_private: st.peak_private,
        calls: calls(&st.calls),
        failed_calls: st.failed_calls,
        mapped_anon: st.mapped_anon,
        mapped_file: st.mapped_file,
        reserved: st.reserved,
        unmapped: st.unmapped,
        released: st.released,
        brk_grown: st.brk_grown,
        brk_shrunk: st.brk_shrunk,
        mremap_grown: st.mremap_grown,
        mremap_shrunk: st.mremap_shrunk,
        brk_current: st.brk_current,
        ppid: st.ppid,
        mmap_size_hist: st.mmap_size_hist,
        reclaim_runs: st.reclaim_runs,
        reclaim_ns: st.reclaim_ns,
        reclaimed_pages: st.reclaimed_pages,
        fork_seen: st.flags & PROC_FLAG_FORK_SEEN != 0,
        exec_seen: st.flags & PROC_FLAG_EXEC_SEEN != 0,
        exited: st.flags & PROC_FLAG_EXITED != 0,
        rss_exact,
    }
}

/// RSS by kind from the kernel's `enum mm_counter` order.
pub fn rss(rss: &[u64; 4]) -> Rss {
    Rss {
        anon: rss[RSS_ANON],
        file: rss[RSS_FILE],
        shmem: rss[RSS_SHMEM],
        swap: rss[RSS_SWAP],
    }
}

/// Calls by syscall from the kernel's `CALL_*` order.
pub fn calls(calls: &[u64; CALL_KINDS]) -> Calls {
    Calls {
        mmap: calls[CALL_MMAP],
        munmap: calls[CALL_MUNMAP],
        brk: calls[CALL_BRK],
        mremap: calls[CALL_MREMAP],
        madvise: calls[CALL_MADVISE],
    }
}

/// The kernel-map seed of a process that predates us: its name and RSS as /proc has them now
/// (None for a kernel thread: no address space to track).
pub fn seed(comm: &str, mem: &StatusMem, now_ns: u64) -> Option<ProcStats> {
    if !mem.has_mm {
        return None;
    }
    let mut s = ProcStats {
        first_seen_ns: now_ns,
        ppid: mem.ppid,
        ..ProcStats::default()
    };
    let n = comm.len().min(15);
    s.comm[..n].copy_from_slice(&comm.as_bytes()[..n]);
    s.rss[RSS_ANON] = mem.rss_anon;
    s.rss[RSS_FILE] = mem.rss_file;
    s.rss[RSS_SHMEM] = mem.rss_shmem;
    s.rss[RSS_SWAP] = mem.swap;
    s.peak_private = mem.rss_anon + mem.rss_shmem + mem.swap;
    Some(s)
}

/// Add a process's per-CPU madvise/munmap slot (`tracer_common::HOT_SLOTS`) to its counters.
pub fn add_hot(c: &mut Counters, h: &tracer_common::HotCounts) {
    c.calls.madvise = c.calls.madvise.wrapping_add(h.madvise_calls);
    c.calls.munmap = c.calls.munmap.wrapping_add(h.munmap_calls);
    c.released = c.released.wrapping_add(h.released);
    c.unmapped = c.unmapped.wrapping_add(h.unmapped);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_is_carried_over() {
        let mut st = ProcStats {
            first_seen_ns: 7,
            peak_private: 9,
            failed_calls: 1,
            mapped_anon: 2,
            unmapped: 3,
            brk_current: 4,
            ppid: 5,
            reclaim_runs: 6,
            flags: PROC_FLAG_FORK_SEEN | PROC_FLAG_EXITED,
            ..ProcStats::default()
        };
        st.comm[..4].copy_from_slice(b"leak");
        st.rss = [1, 2, 3, 4];
        st.calls[CALL_BRK] = 500;
        st.mmap_size_hist[3] = 7;
        let c = counters(&st, true);
        assert_eq!(c.comm(), "leak");
        assert_eq!(
            c.rss,
            Rss {
                file: 1,
                anon: 2,
                swap: 3,
                shmem: 4
            }
        );
        assert_eq!(c.calls.brk, 500);
        assert_eq!(c.mmap_size_hist[3], 7);
        assert_eq!(
            (c.first_seen_ns, c.peak_private, c.brk_current, c.ppid),
            (7, 9, 4, 5)
        );
        assert!(c.fork_seen && c.exited && !c.exec_seen && c.rss_exact);
    }

    #[test]
    fn seed_from_status() {
        let mem = StatusMem {
            rss_anon: 10,
            rss_file: 20,
            rss_shmem: 1,
            swap: 2,
            ppid: 3,
            has_mm: true,
        };
        let s = seed("a-very-long-command-name", &mem, 99).unwrap();
        let c = counters(&s, true);
        assert_eq!(c.comm(), "a-very-long-com");
        assert_eq!(c.rss.total(), 31);
        assert_eq!(c.peak_private, 13);
        assert_eq!((s.first_seen_ns, s.ppid), (99, 3));
        assert!(seed("kthreadd", &StatusMem::default(), 0).is_none());
    }

    #[test]
    fn a_hot_slot_adds_to_the_madvise_and_munmap_counters_only() {
        let mut c = counters(&ProcStats::default(), true);
        c.calls.madvise = 5;
        c.released = 4096;
        let h = tracer_common::HotCounts {
            tgid: 7,
            _pad: 0,
            madvise_calls: 10,
            released: 8192,
            munmap_calls: 2,
            unmapped: 1 << 20,
        };
        add_hot(&mut c, &h);
        assert_eq!((c.calls.madvise, c.released), (15, 12288));
        assert_eq!((c.calls.munmap, c.unmapped), (2, 1 << 20));
        assert_eq!((c.calls.mmap, c.calls.brk, c.mapped_anon), (0, 0, 0));
    }
}
