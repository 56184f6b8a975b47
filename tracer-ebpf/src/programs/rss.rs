//! RSS per process from kmem:rss_stat. Two attachments of the same logic; userspace
//! attaches one:
//! - `rss_stat_raw` (raw tracepoint, default): receives (mm, member) before the classic
//!   event's work of summing per-CPU counters and formatting a record, so it costs less
//!   on the page-fault path. It reads the counter itself at BTF-derived offsets.
//! - `rss_stat` (classic tracepoint): fallback when the kernel's BTF is unavailable.
//!
//! Either way `curr=0` changes (reclaim, fork, exit: another task touches this mm) are
//! attributed through `MM_OWNER`, learnt from `curr=1` changes. Each entry remembers the key
//! of its own mm (`ProcStats::mm_key`), and a process's RSS lives in a slot of an array
//! (rss_slots.rs) from its first own event on, so its own page faults, nearly every event,
//! cost one inlined array access: no hash lookup, no owner lookup (see `update`).
use aya_ebpf::{
    Global,
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_kernel},
    macros::{raw_tracepoint, tracepoint},
    programs::{RawTracePointContext, TracePointContext},
};
use tracer_common::{
    CTR_READ_ERRORS, CTR_RSS_UNATTRIBUTED, PROC_FLAG_EXITED, ProcStats, RSS_ANON, RSS_MEMBERS,
    RSS_SHMEM, RSS_SWAP, RUN_RSS, RssSlot,
};

use super::fields::{field, try_at};
use crate::{
    maps::{
        MM_OWNER, OFF_MM_RSS_STAT, OFF_RSS_STAT_COUNT, PAGE_SIZE, PROCS, RSS_STAT_STRIDE, bump,
        current_mm, current_proc, fill_rss, forget_mm, rss_gen, run_hook,
    },
    rss_slots,
};

#[unsafe(no_mangle)]
static OFF_RSS_MM_ID: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static OFF_RSS_CURR: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static OFF_RSS_MEMBER: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static OFF_RSS_SIZE: Global<u32> = Global::new(0);

/// Keys of `MM_OWNER` from the classic event (a 32-bit hash of the mm) are tagged so they
/// can never collide with kernel pointers used by the raw program.
const MM_ID_TAG: u64 = 1 << 63;

#[raw_tracepoint(tracepoint = "rss_stat")]
pub fn rss_stat_raw(ctx: RawTracePointContext) -> i32 {
    run_hook(RUN_RSS, || {
        let mm: u64 = ctx.arg(0);
        let member: u64 = ctx.arg(1);
        let member = member & 0xffff_ffff;
        if member >= RSS_MEMBERS as u64 || mm == 0 {
            return 0;
        }
        let counter = mm
            + OFF_MM_RSS_STAT.load() as u64
            + member * RSS_STAT_STRIDE.load() as u64
            + OFF_RSS_STAT_COUNT.load() as u64;
        // SAFETY: a checked kernel read of the counter inside the mm the tracepoint hands us
        // (alive while its counter changes); a bad address is an Err, counted.
        let pages = match unsafe { bpf_probe_read_kernel(counter as *const i64) } {
            Ok(p) => p,
            Err(_) => {
                bump(CTR_READ_ERRORS);
                return 0;
            }
        };
        // Per-CPU batching can leave the shared count briefly negative: clamp like the kernel's
        // own *_read_positive.
        let bytes = if pages > 0 {
            pages as u64 * PAGE_SIZE.load()
        } else {
            0
        };
        update(mm, Curr::FromTask, member as usize, bytes, mm);
        0
    })
}

#[tracepoint]
pub fn rss_stat(ctx: TracePointContext) -> u32 {
    // Direct loads at the layout of every kernel since 5.5 (mm_id and curr are adjacent u32s,
    // member an int, size a long), helper reads otherwise: see fields.rs.
    run_hook(RUN_RSS, || {
        let (Some(mm_id), Some(member), Some(size)) = (
            try_at::<8>(&ctx, &OFF_RSS_MM_ID),
            try_at::<16>(&ctx, &OFF_RSS_MEMBER),
            try_at::<24>(&ctx, &OFF_RSS_SIZE),
        ) else {
            return 0;
        };
        // curr is the u32 after mm_id: the 8-byte load above holds it (a context load must be
        // aligned to its size, so it cannot be read alone at 12).
        let curr = if OFF_RSS_MM_ID.load() == 8 && OFF_RSS_CURR.load() == 12 {
            mm_id >> 32 != 0
        } else {
            field(&ctx, &OFF_RSS_CURR).is_some_and(|c| c & 0xffff_ffff != 0)
        };
        let member = (member & 0xffff_ffff) as usize;
        if member >= RSS_MEMBERS {
            return 0;
        }
        let size = size as i64;
        update(
            MM_ID_TAG | (mm_id & 0xffff_ffff),
            Curr::Given(curr),
            member,
            if size > 0 { size as u64 } else { 0 },
            // The classic event names the mm by a hash only (`update` reads current's mm when
            // it needs the address).
            0,
        );
        0
    })
}

/// Whether the changed mm is the current task's: given by the classic event, read from the
/// task by the raw program (only when the fast path did not already answer it).
#[derive(Clone, Copy)]
enum Curr {
    Given(bool),
    FromTask,
}

/// `mm`: the mm's address when the event gave it (0 otherwise), to refill every member
/// after the hook was paused.
#[inline(always)]
fn update(mm_key: u64, curr: Curr, member: usize, bytes: u64, mm: u64) {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    // The fast path, nearly every event: a page fault of a process in its own mm, whose RSS
    // lives in its slot (rss_slots.rs). One inlined array access; no hash, no owner map.
    if let Some(p) = rss_slots::owned(tgid) {
        // SAFETY: p points into an RSS_SLOTS value, valid for the program's run.
        let slot = unsafe { &mut *p };
        if slot.mm_key == mm_key {
            let mm = if mm == 0 {
                current_mm_if_stale(slot.rss_gen)
            } else {
                mm
            };
            apply_in_slot(slot, member, bytes, mm);
            return;
        }
    }
    // Then its entry: the process's first events, a process whose slot index is taken, and
    // changes made by another task (reclaim, fork, exit) to the mm of the process that owns it.
    let (stats, owner, is_current) = match PROCS.get_ptr_mut(tgid) {
        // SAFETY: p points into a PROCS map value, valid for the program's run.
        Some(p) if unsafe { (*p).mm_key } == mm_key => (p, tgid, true),
        _ => match owner_entry(tgid, mm_key, curr, mm) {
            Some(found) => found,
            None => return,
        },
    };
    // SAFETY: stats points into a PROCS map value, valid for the program's run.
    let s = unsafe { &mut *stats };
    if s.flags & PROC_FLAG_EXITED != 0 {
        // Address-space teardown after exit: keep the last live figures for the post-mortem.
        return;
    }
    let slot = match rss_slots::owned(owner) {
        // SAFETY: q points into an RSS_SLOTS value, valid for the program's run.
        Some(q) if unsafe { (*q).mm_key } == s.mm_key => Some(q),
        Some(_) => {
            // A slot of the mm it had before exec (whose new image faults pages in before the
            // exec event): back into the entry, until its new mm's next event claims it.
            rss_slots::fold(owner, Some(s));
            None
        }
        None if is_current && s.mm_key == mm_key => rss_slots::claim(owner, s),
        None => None,
    };
    let mm = if mm == 0 && is_current {
        current_mm_if_stale(s.rss_gen)
    } else {
        mm
    };
    match slot {
        Some(q) => {
            // SAFETY: q points into an RSS_SLOTS value, valid for the program's run.
            apply_in_slot(unsafe { &mut *q }, member, bytes, mm)
        }
        None => apply(
            &mut s.rss,
            &mut s.peak_private,
            &mut s.rss_gen,
            member,
            bytes,
            mm,
        ),
    }
}

/// The current task's mm when figures of generation `generation` must be refilled (see
/// [`apply`]), 0 otherwise: the task read is paid only then.
#[inline(always)]
fn current_mm_if_stale(generation: u32) -> u64 {
    if generation != rss_gen() {
        current_mm()
    } else {
        0
    }
}

/// [`apply`] to a process's RSS slot.
#[inline(always)]
fn apply_in_slot(slot: &mut RssSlot, member: usize, bytes: u64, mm: u64) {
    apply(
        &mut slot.rss,
        &mut slot.peak_private,
        &mut slot.rss_gen,
        member,
        bytes,
        mm,
    )
}

/// Write one member's new value into a process's RSS figures (its slot or its entry) and
/// raise its peak.
#[inline(always)]
fn apply(
    rss: &mut [u64; RSS_MEMBERS],
    peak_private: &mut u64,
    generation: &mut u32,
    member: usize,
    bytes: u64,
    mm: u64,
) {
    // The hook was paused since these figures were last filled whole: the other members are
    // stale, refill them from the mm (once per process and resume; until then userspace
    // reads this process's RSS from /proc).
    if *generation != rss_gen() {
        fill_rss(rss, peak_private, generation, mm);
    }
    // The caller's bound check on `member` is lost on older verifiers (6.1) when the refill
    // branch above spills it to the stack: LLVM drops this check as redundant, and the 6.1
    // verifier then refuses an unbounded write. A volatile reload keeps the check next to the
    // write, where every verifier sees it.
    // SAFETY: a plain read of a local through a reference to it.
    let member = unsafe { core::ptr::read_volatile(&member) };
    if let Some(slot) = rss.get_mut(member) {
        // An absolute value: last writer wins, no atomics needed.
        *slot = bytes;
    }
    let private = rss[RSS_ANON] + rss[RSS_SHMEM] + rss[RSS_SWAP];
    if private > *peak_private {
        *peak_private = private;
    }
}

/// The slow path: the entry of the process that owns the changed mm, that process, and
/// whether it is the current one. The current task's own mm teaches `MM_OWNER` (first event of a
/// process, or after exec); another task's change (`curr=0`: reclaim, fork, exit) is
/// attributed through it.
#[inline(always)]
fn owner_entry(tgid: u32, mm_key: u64, curr: Curr, mm: u64) -> Option<(*mut ProcStats, u32, bool)> {
    let is_current = match curr {
        Curr::Given(c) => c,
        Curr::FromTask => current_mm() == mm,
    };
    if is_current {
        let p = current_proc(tgid)?;
        // SAFETY: p points into a PROCS map value, valid for the program's run.
        let s = unsafe { &mut *p };
        if s.mm_key != mm_key {
            // The mm it knew is no longer its own (exec: the new image faults pages in before
            // the exec event): release it, or give it back to the parent it was shared with.
            forget_mm(s, tgid);
            let _ = MM_OWNER.insert(mm_key, tgid, 0);
            s.mm_key = mm_key;
        }
        return Some((p, tgid, true));
    }
    // SAFETY: the u32 is copied out at once; a stale owner only misattributes one event,
    // which the owner's next curr=1 event corrects.
    let Some(owner) = (unsafe { MM_OWNER.get(mm_key) }).copied() else {
        bump(CTR_RSS_UNATTRIBUTED);
        return None;
    };
    // Never create an entry from another task's context: the owner may be gone.
    Some((PROCS.get_ptr_mut(owner)?, owner, false))
}
