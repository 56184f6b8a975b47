//! Where the rss_stat programs keep a process's RSS: a slot of the shared `RSS_SLOTS` array
//! (see `tracer_common::RSS_SLOTS`) instead of its `PROCS` entry, so that a page fault, nearly
//! every rss_stat event, costs an inlined array access and no hash lookup.
//!
//! Who writes a slot: the rss_stat programs of its owner (its own page faults, and changes
//! other tasks make to its mm: reclaim, fork, exit), the owner's exec and exit (which fold the
//! slot back into the entry and free it) and the fork of a later process with the same pid
//! (which frees a slot whose owner's exit was never seen). Userspace only reads slots.
use aya_ebpf::{macros::map, maps::Array};
use tracer_common::{ProcStats, RSS_SLOTS as SLOTS, RssSlot};

#[map]
pub static RSS_SLOTS: Array<RssSlot> = Array::with_max_entries(SLOTS, 0);

/// The slot of process `tgid`, when it holds one.
#[inline(always)]
pub fn owned(tgid: u32) -> Option<*mut RssSlot> {
    let p = RSS_SLOTS.get_ptr_mut(tgid % SLOTS)?;
    // SAFETY: p points into an RSS_SLOTS value, valid for the program's run.
    (unsafe { (*p).tgid } == tgid).then_some(p)
}

/// Take the slot of `tgid`'s index for its entry `s` when it is free: the slot starts from
/// the entry's figures and takes its RSS changes from now on. Only for the process's own mm
/// (`s.mm_key` set): the key the fast path compares.
#[inline(always)]
pub fn claim(tgid: u32, s: &mut ProcStats) -> Option<*mut RssSlot> {
    let p = RSS_SLOTS.get_ptr_mut(tgid % SLOTS)?;
    // SAFETY: p points into an RSS_SLOTS value, valid for the program's run.
    let slot = unsafe { &mut *p };
    if slot.tgid != 0 || s.mm_key == 0 {
        return None;
    }
    // The key last: until it is written no event takes the fast path into a half-copied slot.
    slot.tgid = tgid;
    slot.mm_key = 0;
    slot.rss = s.rss;
    slot.peak_private = s.peak_private;
    slot.rss_gen = s.rss_gen;
    // No compare-and-swap before Linux 5.12: a process with the same index claiming the slot
    // at the same instant may have written its tag after ours. The later tag keeps the slot;
    // the other process backs off to its entry. (A volatile read: the compiler must not assume
    // the value just stored.)
    // SAFETY: a plain read of a field of the map value above.
    if unsafe { core::ptr::read_volatile(&slot.tgid) } != tgid {
        return None;
    }
    slot.mm_key = s.mm_key;
    s.rss_in_slot = 1;
    Some(p)
}

/// Give `tgid`'s slot back (exec, exit): its figures go back into the entry `s` (when there
/// is one) and the slot is freed.
#[inline(always)]
pub fn fold(tgid: u32, s: Option<&mut ProcStats>) {
    let slot = owned(tgid);
    if let Some(s) = s {
        s.rss_in_slot = 0;
        if let Some(p) = slot {
            // SAFETY: p points into an RSS_SLOTS value, valid for the program's run.
            let slot = unsafe { &*p };
            if slot.mm_key != 0 {
                s.rss = slot.rss;
                s.rss_gen = slot.rss_gen;
            }
            if slot.peak_private > s.peak_private {
                s.peak_private = slot.peak_private;
            }
        }
    }
    if let Some(p) = slot {
        // SAFETY: as above. The key first, so that no fast path takes the slot meanwhile.
        unsafe {
            (*p).mm_key = 0;
            (*p).tgid = 0;
        }
    }
}

/// A new process `tgid`: free a slot still tagged with its pid, left by an earlier process
/// whose exit was never seen.
#[inline(always)]
pub fn free_stale(tgid: u32) {
    fold(tgid, None);
}
