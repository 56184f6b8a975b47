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

/// Add a process's per-CPU slot (`tracer_common::HOT_SLOTS`) to its counters: the same sums
/// as the kernel's fold into the entry at exit (`HotCounts::add_to`).
pub fn add_hot(c: &mut Counters, h: &tracer_common::HotCounts) {
    let mut st = ProcStats::default();
    h.add_to(&mut st);
    let add = |a: &mut u64, b: u64| *a = a.wrapping_add(b);
    add(&mut c.calls.madvise, st.calls[CALL_MADVISE]);
    add(&mut c.calls.munmap, st.calls[CALL_MUNMAP]);
    add(&mut c.calls.mmap, st.calls[CALL_MMAP]);
    add(&mut c.calls.mremap, st.calls[CALL_MREMAP]);
    add(&mut c.released, st.released);
    add(&mut c.unmapped, st.unmapped);
    add(&mut c.mapped_anon, st.mapped_anon);
    add(&mut c.mapped_file, st.mapped_file);
    add(&mut c.reserved, st.reserved);
    add(&mut c.mremap_grown, st.mremap_grown);
    add(&mut c.mremap_shrunk, st.mremap_shrunk);
    add(&mut c.failed_calls, st.failed_calls);
    for (into, n) in c.mmap_size_hist.iter_mut().zip(st.mmap_size_hist) {
        *into = into.wrapping_add(n);
    }
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
    fn a_hot_slot_adds_each_count_to_its_counter() {
        let mut c = counters(&ProcStats::default(), true);
        c.calls.madvise = 5;
        c.released = 4096;
        c.mmap_size_hist[2] = 1;
        let mut h = tracer_common::HotCounts {
            tgid: 7,
            madvise_calls: 10,
            released: 8192,
            munmap_calls: 2,
            unmapped: 1 << 20,
            mmap_calls: 3,
            mapped_anon: 1 << 21,
            mapped_file: 4096,
            reserved: 1 << 26,
            mremap_calls: 1,
            mremap_grown: 8192,
            mremap_shrunk: 4096,
            failed_calls: 1,
            ..Default::default()
        };
        h.mmap_size_hist[2] = 2;
        add_hot(&mut c, &h);
        assert_eq!((c.calls.madvise, c.released), (15, 12288));
        assert_eq!((c.calls.munmap, c.unmapped), (2, 1 << 20));
        assert_eq!(
            (c.calls.mmap, c.mapped_anon, c.mapped_file, c.reserved),
            (3, 1 << 21, 4096, 1 << 26)
        );
        assert_eq!(
            (c.calls.mremap, c.mremap_grown, c.mremap_shrunk),
            (1, 8192, 4096)
        );
        assert_eq!((c.failed_calls, c.mmap_size_hist[2]), (1, 3));
        // What no slot counts stays untouched.
        assert_eq!((c.calls.brk, c.brk_grown, c.rss.total()), (0, 0, 0));
    }

    #[test]
    fn slots_of_one_process_on_two_cpus_merge_into_their_sum() {
        let mut a = tracer_common::HotCounts {
            tgid: 7,
            madvise_calls: 1,
            mmap_calls: 2,
            failed_calls: 1,
            ..Default::default()
        };
        a.mmap_size_hist[0] = 1;
        let mut b = tracer_common::HotCounts {
            tgid: 7,
            madvise_calls: 4,
            mmap_calls: 1,
            reserved: 1 << 30,
            ..Default::default()
        };
        b.mmap_size_hist[0] = 2;
        a.merge(&b);
        assert_eq!(
            (a.madvise_calls, a.mmap_calls, a.failed_calls, a.reserved),
            (5, 3, 1, 1 << 30)
        );
        assert_eq!(a.mmap_size_hist[0], 3);
    }
}
