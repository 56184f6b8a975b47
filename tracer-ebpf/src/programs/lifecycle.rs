//! Process lifecycle: fork creates the entry (and teaches `MM_OWNER` the child's mm), exec
//! renames it, exit reports it through the ring buffer and frees it.
use aya_ebpf::maps::ring_buf::RingBufEntry;
use aya_ebpf::{
    Global,
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_task, bpf_probe_read_kernel,
    },
    macros::{raw_tracepoint, tracepoint},
    programs::{RawTracePointContext, TracePointContext},
};
use tracer_common::{
    CTR_RINGBUF_FULL, EVENT_EXEC, EVENT_EXIT, Event, ExitEvent, PROC_FLAG_EXEC_SEEN,
    PROC_FLAG_EXITED, PROC_FLAG_FORK_SEEN,
};

use crate::maps::{
    EVENTS, MM_OWNER, OFF_TASK_MM, PROCS, SELF_TGID, ZERO_STATS, bump, current_mm, current_proc,
    fill_rss_from_mm, forget_mm, leader_comm, new_proc, now, run_unpausable,
};

#[unsafe(no_mangle)]
static OFF_TASK_PID: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static OFF_TASK_TGID: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static OFF_TASK_SIGNAL: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static OFF_SIGNAL_LIVE: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static OFF_EXIT_GROUP_DEAD: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static OFF_EXEC_OLD_PID: Global<u32> = Global::new(0);
/// 1 when the raw rss program is attached (MM_OWNER keys are mm pointers).
#[unsafe(no_mangle)]
static RSS_KEYS_ARE_POINTERS: Global<u32> = Global::new(0);

/// sched_process_fork as a raw tracepoint: (parent, child) task pointers, so threads
/// (child pid != tgid) can be told apart from new processes.
#[raw_tracepoint(tracepoint = "sched_process_fork")]
pub fn sched_process_fork(ctx: RawTracePointContext) -> i32 {
    run_unpausable(|| {
        let child: u64 = ctx.arg(1);
        // SAFETY: a checked kernel read (bpf_probe_read_kernel) inside the child task the
        // tracepoint hands us; a bad address is an Err and the event is skipped.
        let read_u32 =
            |off: u32| unsafe { bpf_probe_read_kernel((child + off as u64) as *const u32) };
        let (Ok(pid), Ok(tgid)) = (
            read_u32(OFF_TASK_PID.load()),
            read_u32(OFF_TASK_TGID.load()),
        ) else {
            return 0;
        };
        if pid != tgid {
            return 0; // a thread
        }
        let parent = (bpf_get_current_pid_tgid() >> 32) as u32;
        if parent == SELF_TGID.load() {
            return 0;
        }
        // A new process: replace whatever a recycled pid left behind.
        crate::hot::free_stale(tgid);
        crate::rss_slots::free_stale(tgid);
        let Some(p) = new_proc(tgid, 0) else {
            return 0;
        };
        // SAFETY: p points into a PROCS map value, valid for the program's run.
        let fresh = unsafe { &mut *p };
        fresh.comm = bpf_get_current_comm().unwrap_or_default();
        fresh.first_seen_ns = now();
        fresh.ppid = parent;
        fresh.flags = PROC_FLAG_FORK_SEEN;
        // This program is attached only when the task offsets are known (OFF_TASK_MM is set).
        // SAFETY: a checked kernel read of the child task's mm pointer.
        let child_mm =
            unsafe { bpf_probe_read_kernel((child + OFF_TASK_MM.load() as u64) as *const u64) };
        if let Ok(mm) = child_mm
            && mm != 0
        {
            // A copied mm is the child's own; a shared one (CLONE_VM: vfork, posix_spawn) stays
            // its parent's, and the child learns it from its own events if it touches memory.
            if RSS_KEYS_ARE_POINTERS.load() != 0 && mm != current_mm() {
                let _ = MM_OWNER.insert(mm, tgid, 0);
                fresh.mm_key = mm;
            }
            // The pages copied at fork were counted before the mm had an owner here (and the
            // classic event's mm_id is not known yet): take them from the child's mm.
            fill_rss_from_mm(fresh, mm);
        }
        0
    })
}

#[tracepoint]
pub fn sched_process_exec(ctx: TracePointContext) -> u32 {
    run_unpausable(|| {
        let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
        let comm = bpf_get_current_comm().unwrap_or_default();
        if let Some(stats) = current_proc(tgid) {
            // SAFETY: stats points into a PROCS map value, valid for the program's run.
            let s = unsafe { &mut *stats };
            s.comm = comm;
            s.flags |= PROC_FLAG_EXEC_SEEN;
            // Its RSS slot held the old mm's figures (or the new one's first pages): back into
            // the entry, refilled below; the new mm's next event claims a slot again.
            crate::rss_slots::fold(tgid, Some(s));
            // The old mm is gone; the new one is learnt at its first rss_stat event.
            forget_mm(s, tgid);
            // A new mm: its counters, not the old one's (or the parent's, filled at fork), until
            // each member's next rss_stat event.
            fill_rss_from_mm(s, current_mm());
        }
        // SAFETY: read_at goes through bpf_probe_read_kernel: a bad offset is an Err (pid 0).
        let old_pid = unsafe { ctx.read_at::<u32>(OFF_EXEC_OLD_PID.load() as usize) }.unwrap_or(0);
        emit(
            &Event {
                kind: EVENT_EXEC,
                tgid,
                ts_ns: now(),
                comm,
                aux: old_pid,
                ..Event::default()
            },
            false,
        );
        0
    })
}

#[tracepoint]
pub fn sched_process_exit(ctx: TracePointContext) -> u32 {
    run_unpausable(|| {
        let pid_tgid = bpf_get_current_pid_tgid();
        let (tid, tgid) = (pid_tgid as u32, (pid_tgid >> 32) as u32);
        crate::pending::forget_current();
        let off = OFF_EXIT_GROUP_DEAD.load();
        let group_dead = if off != 0 {
            // SAFETY: a bounded read of the tracepoint record at a tracefs-given offset.
            unsafe { ctx.read_at::<u8>(off as usize) }.unwrap_or(0) != 0
        } else {
            no_thread_left(tid, tgid)
        };
        if !group_dead || tgid == SELF_TGID.load() {
            return 0;
        }
        // Its madvise/munmap counts still in per-CPU slots join the final counters first (and
        // the slots are freed even when the entry is gone).
        let known = PROCS.get_ptr_mut(tgid);
        // SAFETY: p points into a PROCS map value, valid for the program's run.
        crate::hot::fold(tgid, known.map(|p| unsafe { &mut *p }));
        // Likewise its RSS figures, from its RSS slot.
        // SAFETY: as above.
        crate::rss_slots::fold(tgid, known.map(|p| unsafe { &mut *p }));
        // The final counters travel with the exit, written in place (360 bytes: too big for
        // the stack), and the entry is freed now: a process shorter than one sampling interval
        // is counted exactly, and the map holds live processes only.
        let Some(mut slot) = EVENTS.reserve::<ExitEvent>(0) else {
            bump(CTR_RINGBUF_FULL);
            // No room: keep the entry, flagged, so the sampler still reads the final counters
            // (and then deletes it). Only the exit's timestamp is lost.
            if let Some(p) = known {
                // SAFETY: p points into a PROCS map value, valid for the program's run.
                let s = unsafe { &mut *p };
                s.flags |= PROC_FLAG_EXITED;
                forget_mm(s, tgid);
            }
            return 0;
        };
        let ev = slot.as_mut_ptr();
        if let Some(p) = known {
            // SAFETY: p points into a PROCS map value, valid for the program's run.
            forget_mm(unsafe { &mut *p }, tgid);
        }
        // SAFETY: `ev` points to a reserved ring-buffer record of size_of::<ExitEvent>() bytes,
        // ours until submitted; `known` and the ZERO_STATS value point into map values, valid for
        // the program's run. Every field of the record is written (ring memory is not zeroed).
        unsafe {
            (*ev).kind = EVENT_EXIT;
            (*ev).tgid = tgid;
            (*ev).ts_ns = now();
            (*ev)._pad = 0;
            let src = match known {
                Some(p) => p as *const _,
                None => match ZERO_STATS.get_ptr(0) {
                    Some(z) => z,
                    None => {
                        slot.discard(0);
                        return 0;
                    }
                },
            };
            core::ptr::copy_nonoverlapping(src, &raw mut (*ev).stats, 1);
            (*ev).has_stats = u32::from(known.is_some());
            // The process's name as it ends: its leader's current comm (renamed since exec by
            // prctl, e.g. stress-ng's workers), as /proc/<pid>/comm showed it.
            (*ev).stats.comm = leader_comm();
        }
        submit(slot, false);
        if known.is_some() {
            let _ = PROCS.remove(tgid);
        }
        0
    })
}

/// Kernels whose sched_process_exit lacks group_dead: the process ends with the exit that
/// brought signal->live to 0 (do_exit decrements it before the event). Without the BTF
/// offsets, the leader's exit stands for the process's (a leader that exits first would end
/// the process early).
#[inline(always)]
fn no_thread_left(tid: u32, tgid: u32) -> bool {
    let (off_signal, off_live) = (OFF_TASK_SIGNAL.load(), OFF_SIGNAL_LIVE.load());
    if off_signal == 0 {
        return tid == tgid;
    }
    // SAFETY: bpf_probe_read_kernel checks the addresses; current's task_struct and its
    // signal_struct outlive this program run (current is running it).
    unsafe {
        let task = bpf_get_current_task();
        let Ok(signal) = bpf_probe_read_kernel((task + off_signal as u64) as *const u64) else {
            return tid == tgid;
        };
        match bpf_probe_read_kernel((signal + off_live as u64) as *const i32) {
            Ok(live) => live == 0,
            Err(_) => tid == tgid,
        }
    }
}

const BPF_RB_NO_WAKEUP: u64 = 1;
const BPF_RB_FORCE_WAKEUP: u64 = 2;
const BPF_RB_AVAIL_DATA: u64 = 0;
const BPF_RB_RING_SIZE: u64 = 1;

/// Wake-up flags for a routine or urgent record (see [`emit`]).
#[inline(always)]
fn wakeup(urgent: bool) -> u64 {
    if urgent || EVENTS.query(BPF_RB_AVAIL_DATA) > EVENTS.query(BPF_RB_RING_SIZE) / 8 {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    }
}

#[inline(always)]
pub(crate) fn submit<T>(slot: RingBufEntry<T>, urgent: bool) {
    slot.submit(wakeup(urgent));
}

/// Emit an event. `urgent` events (OOM) wake the reader now; routine ones (exec, exit) skip
/// the wake-up, which costs microseconds per event, unless the ring is an eighth full:
/// userspace also drains the ring on a short timer, so they are late by at most that.
#[inline(always)]
pub fn emit(ev: &Event, urgent: bool) {
    if EVENTS.output::<Event>(ev, wakeup(urgent)).is_err() {
        bump(CTR_RINGBUF_FULL);
    }
}
