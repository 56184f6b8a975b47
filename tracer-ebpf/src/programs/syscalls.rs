//! mmap / munmap / brk / mremap / madvise, aggregated per process (tgid). Each hook costs
//! what it must and no more:
//! - madvise and munmap are counted at sys_enter alone: they are the hot ones (an allocator
//!   purging makes millions of madvise calls a second) and they practically never fail on a
//!   valid range (EINVAL/ENOMEM come from a caller's bug), so an exit program and a map
//!   round-trip per call buy nothing. They count into a per-CPU slot of their process
//!   (hot.rs), not its `PROCS` entry, when it has one.
//! - brk is counted at sys_exit alone: its return value is the new break.
//! - mmap and mremap are counted at sys_exit when they succeeded (mmap fails for real under
//!   memory pressure, and its PROT_NONE reservations must not be counted as memory). The
//!   exit reads the call's arguments back from the thread's saved registers
//!   (syscall_args.rs); where it cannot, the enter programs save them for it (pending.rs).
//!   The exit counts into the process's per-CPU slot like madvise and munmap.
use aya_ebpf::{
    Global, helpers::bpf_get_current_pid_tgid, macros::tracepoint, programs::TracePointContext,
};
use tracer_common::{
    CALL_BRK, CALL_MADVISE, CALL_MMAP, CALL_MREMAP, CALL_MUNMAP, CTR_EXIT_WITHOUT_ENTRY,
    CTR_READ_ERRORS, HotCounts, PendingCall, ProcStats, RUN_BRK, RUN_MADVISE, RUN_MMAP_ENTER,
    RUN_MMAP_EXIT, RUN_MREMAP_ENTER, RUN_MREMAP_EXIT, RUN_MUNMAP, mmap_size_bucket,
};

use super::fields::at;
use crate::{
    hot::own_slot,
    maps::{add, bump, current_proc, run_hook},
    pending, syscall_args,
};

// Field offsets from tracefs format files (set by the loader).
#[unsafe(no_mangle)]
pub(super) static OFF_MMAP_LEN: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
pub(super) static OFF_MMAP_PROT: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
pub(super) static OFF_MMAP_FLAGS: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static OFF_MMAP_FD: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static OFF_MUNMAP_LEN: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static OFF_MREMAP_OLD_LEN: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static OFF_MREMAP_NEW_LEN: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static OFF_MADVISE_LEN: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static OFF_MADVISE_BEHAVIOR: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
pub(super) static OFF_SYS_EXIT_RET: Global<u32> = Global::new(0);

pub(super) const PROT_NONE: u64 = 0;
pub(super) const MAP_ANONYMOUS: u64 = 0x20;
const MADV_DONTNEED: u64 = 4;
const MADV_FREE: u64 = 8;
const MADV_REMOVE: u64 = 9;
const MADV_DONTNEED_LOCKED: u64 = 24;
const PAGE_MASK: u64 = 4095;

#[tracepoint]
pub fn sys_enter_mmap(ctx: TracePointContext) -> u32 {
    run_hook(RUN_MMAP_ENTER, || {
        pending::save(PendingCall {
            kind: CALL_MMAP as u32,
            len: at::<24>(&ctx, &OFF_MMAP_LEN),
            arg2: at::<32>(&ctx, &OFF_MMAP_PROT),
            arg3: at::<40>(&ctx, &OFF_MMAP_FLAGS),
            arg4: at::<48>(&ctx, &OFF_MMAP_FD),
            ..PendingCall::default()
        });
        0
    })
}

/// munmap at enter: the length is all there is to count.
#[tracepoint]
pub fn sys_enter_munmap(ctx: TracePointContext) -> u32 {
    run_hook(RUN_MUNMAP, || {
        let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
        let len = page_align(at::<24>(&ctx, &OFF_MUNMAP_LEN));
        count_in(
            tgid,
            |h| {
                h.munmap_calls += 1;
                h.unmapped += len;
            },
            |s| {
                add(&mut s.calls[CALL_MUNMAP], 1);
                add(&mut s.unmapped, len);
            },
        );
        0
    })
}

#[tracepoint]
pub fn sys_enter_mremap(ctx: TracePointContext) -> u32 {
    run_hook(RUN_MREMAP_ENTER, || {
        pending::save(PendingCall {
            kind: CALL_MREMAP as u32,
            len: at::<24>(&ctx, &OFF_MREMAP_OLD_LEN),
            arg2: at::<32>(&ctx, &OFF_MREMAP_NEW_LEN),
            ..PendingCall::default()
        });
        0
    })
}

/// madvise at enter: the advice decides whether memory is given back.
#[tracepoint]
pub fn sys_enter_madvise(ctx: TracePointContext) -> u32 {
    run_hook(RUN_MADVISE, || {
        let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
        // `behavior` is an int in an 8-byte slot: keep the low 32 bits.
        let behavior = at::<32>(&ctx, &OFF_MADVISE_BEHAVIOR) & 0xffff_ffff;
        let released = if matches!(
            behavior,
            MADV_DONTNEED | MADV_FREE | MADV_REMOVE | MADV_DONTNEED_LOCKED
        ) {
            page_align(at::<24>(&ctx, &OFF_MADVISE_LEN))
        } else {
            0
        };
        count_in(
            tgid,
            |h| {
                h.madvise_calls += 1;
                h.released += released;
            },
            |s| {
                add(&mut s.calls[CALL_MADVISE], 1);
                if released != 0 {
                    add(&mut s.released, released);
                }
            },
        );
        0
    })
}

/// Count into the current process's per-CPU slot (hot.rs) when it has one on this CPU, else
/// into its entry (created if missing).
#[inline(always)]
fn count_in(
    tgid: u32,
    in_slot: impl FnOnce(&mut HotCounts),
    in_entry: impl FnOnce(&mut ProcStats),
) {
    if let Some(slot) = own_slot(tgid) {
        // SAFETY: slot points into this CPU's value of HOT, valid for the program's run and
        // written only by this process's programs on this CPU (hot.rs).
        in_slot(unsafe { &mut *slot });
        return;
    }
    if let Some(stats) = current_proc(tgid) {
        // SAFETY: stats points into a PROCS map value, valid for the program's run.
        in_entry(unsafe { &mut *stats });
    }
}

/// One exit program per syscall (tracepoints are per syscall), all sharing this body.
#[inline(always)]
fn on_exit(ctx: &TracePointContext, expected_kind: usize) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let call = if syscall_args::from_regs() {
        let Some(call) = syscall_args::current(expected_kind) else {
            bump(CTR_READ_ERRORS);
            return 0;
        };
        call
    } else {
        let Some(call) = pending::take(pid_tgid) else {
            bump(CTR_EXIT_WITHOUT_ENTRY);
            return 0;
        };
        call
    };
    if call.kind as usize != expected_kind {
        return 0;
    }
    let ret = at::<16>(ctx, &OFF_SYS_EXIT_RET);
    // Errors come back as -errno, i.e. the top 4095 values of an unsigned long.
    let failed = ret > (-4096i64) as u64;
    let tgid = (pid_tgid >> 32) as u32;
    count_in(
        tgid,
        |h| match failed {
            true => h.failed_calls += 1,
            false => account_in_slot(h, &call),
        },
        |s| match failed {
            true => add(&mut s.failed_calls, 1),
            false => account(s, &call),
        },
    );
    0
}

#[inline(always)]
pub(super) fn page_align(len: u64) -> u64 {
    (len + PAGE_MASK) & !PAGE_MASK
}

#[inline(always)]
fn account(s: &mut ProcStats, call: &PendingCall) {
    match call.kind as usize {
        CALL_MMAP => {
            let len = page_align(call.len);
            add(&mut s.calls[CALL_MMAP], 1);
            if call.arg2 == PROT_NONE {
                // A reservation (Go arenas, guard regions): address space, not memory. The
                // later MAP_FIXED commit over it is what counts as mapped.
                add(&mut s.reserved, len);
            } else if call.arg3 & MAP_ANONYMOUS != 0 {
                add(&mut s.mapped_anon, len);
            } else {
                add(&mut s.mapped_file, len);
            }
            let bucket = mmap_size_bucket(len);
            if let Some(slot) = s.mmap_size_hist.get_mut(bucket) {
                *slot = slot.wrapping_add(1);
            }
        }
        CALL_MREMAP => {
            add(&mut s.calls[CALL_MREMAP], 1);
            let (old, new) = (page_align(call.len), page_align(call.arg2));
            if new > old {
                add(&mut s.mremap_grown, new - old);
            } else {
                add(&mut s.mremap_shrunk, old - new);
            }
        }
        _ => {}
    }
}

/// [`account`] into the process's per-CPU slot: plain adds, no other CPU writes it.
#[inline(always)]
fn account_in_slot(h: &mut HotCounts, call: &PendingCall) {
    match call.kind as usize {
        CALL_MMAP => {
            let len = page_align(call.len);
            h.mmap_calls += 1;
            if call.arg2 == PROT_NONE {
                h.reserved += len;
            } else if call.arg3 & MAP_ANONYMOUS != 0 {
                h.mapped_anon += len;
            } else {
                h.mapped_file += len;
            }
            if let Some(slot) = h.mmap_size_hist.get_mut(mmap_size_bucket(len)) {
                *slot = slot.wrapping_add(1);
            }
        }
        CALL_MREMAP => {
            h.mremap_calls += 1;
            let (old, new) = (page_align(call.len), page_align(call.arg2));
            if new > old {
                h.mremap_grown += new - old;
            } else {
                h.mremap_shrunk += old - new;
            }
        }
        _ => {}
    }
}

#[tracepoint]
pub fn sys_exit_mmap(ctx: TracePointContext) -> u32 {
    run_hook(RUN_MMAP_EXIT, || on_exit(&ctx, CALL_MMAP))
}

/// brk needs no enter program: it returns the new break (the old one when it fails), so
/// comparing with the last break seen gives the growth or shrink exactly, at half the cost
/// of an enter/exit pair. A failed brk counts as a call with no change.
#[tracepoint]
pub fn sys_exit_brk(ctx: TracePointContext) -> u32 {
    run_hook(RUN_BRK, || {
        let ret = at::<16>(&ctx, &OFF_SYS_EXIT_RET);
        let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
        let Some(stats) = current_proc(tgid) else {
            return 0;
        };
        // SAFETY: stats points into a PROCS map value, valid for the program's run.
        let s = unsafe { &mut *stats };
        add(&mut s.calls[CALL_BRK], 1);
        let before = s.brk_current;
        if before != 0 && ret != before {
            if ret > before {
                add(&mut s.brk_grown, ret - before);
            } else {
                add(&mut s.brk_shrunk, before - ret);
            }
        }
        s.brk_current = ret;
        0
    })
}

#[tracepoint]
pub fn sys_exit_mremap(ctx: TracePointContext) -> u32 {
    run_hook(RUN_MREMAP_EXIT, || on_exit(&ctx, CALL_MREMAP))
}
