//! Process lifecycle: fork creates the entry (and teaches `MM_OWNER` the child's mm), exec
//! renames it, exit reports it through the ring buffer and frees it.
use aya_ebpf::{
    Global,
    helpers::{bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_probe_read_kernel},
    macros::{raw_tracepoint, tracepoint},
    programs::{RawTracePointContext, TracePointContext},
};
use tracer_ebpf::{
    CTR_RINGBUF_FULL, EVENT_EXEC, EVENT_EXIT, Event, PROC_FLAG_EXEC_SEEN, PROC_FLAG_EXITED,
    PROC_FLAG_FORK_SEEN,
};

use crate::{
    maps::{
        EVENTS, MM_OWNER, PENDING, PROCS, SELF_TGID, bump, current_mm, current_proc,
        fill_rss_from_mm, new_proc, now,
    },
    programs::rss::OFF_TASK_MM,
};

#[unsafe(no_mangle)]
static OFF_TASK_PID: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static OFF_TASK_TGID: Global<u32> = Global::new(0);
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
    let child: u64 = ctx.arg(1);
    let read_u32 = |off: u32| unsafe { bpf_probe_read_kernel((child + off as u64) as *const u32) };
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
    if let Ok(mm) =
        unsafe { bpf_probe_read_kernel((child + OFF_TASK_MM.load() as u64) as *const u64) }
        && mm != 0
    {
        if RSS_KEYS_ARE_POINTERS.load() != 0 {
            let _ = MM_OWNER.insert(mm, tgid, 0);
        }
        // The pages copied at fork were counted before the mm had an owner here (and the
        // classic event's mm_id is not known yet): take them from the child's mm.
        fill_rss_from_mm(fresh, mm);
    }
    0
}

#[tracepoint]
pub fn sched_process_exec(ctx: TracePointContext) -> u32 {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    let comm = bpf_get_current_comm().unwrap_or_default();
    if let Some(stats) = current_proc(tgid) {
        let s = unsafe { &mut *stats };
        s.comm = comm;
        s.flags |= PROC_FLAG_EXEC_SEEN;
        // A new mm: its counters, not the old one's (or the parent's, filled at fork), until
        // each member's next rss_stat event.
        fill_rss_from_mm(s, current_mm());
    }
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
}

#[tracepoint]
pub fn sched_process_exit(ctx: TracePointContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let (tid, tgid) = (pid_tgid as u32, (pid_tgid >> 32) as u32);
    // A thread killed inside a traced syscall never reached sys_exit: free its slot.
    let _ = PENDING.remove(&pid_tgid);
    let off = OFF_EXIT_GROUP_DEAD.load();
    let group_dead = if off != 0 {
        unsafe { ctx.read_at::<u8>(off as usize) }.unwrap_or(0) != 0
    } else {
        // Older kernels have no group_dead: the leader's exit stands for the process's.
        tid == tgid
    };
    if !group_dead || tgid == SELF_TGID.load() {
        return 0;
    }
    let mut ev = Event {
        kind: EVENT_EXIT,
        tgid,
        ts_ns: now(),
        comm: bpf_get_current_comm().unwrap_or_default(),
        ..Event::default()
    };
    if let Some(p) = PROCS.get_ptr_mut(tgid) {
        let s = unsafe { &mut *p };
        ev.aux = 1;
        ev.rss = s.rss;
        ev.peak_private = s.peak_private;
        // Keep the entry: userspace reads the final counters, then deletes it.
        s.flags |= PROC_FLAG_EXITED;
    }
    emit(&ev, false);
    0
}

const BPF_RB_NO_WAKEUP: u64 = 1;
const BPF_RB_FORCE_WAKEUP: u64 = 2;
const BPF_RB_AVAIL_DATA: u64 = 0;
const BPF_RB_RING_SIZE: u64 = 1;

/// Emit an event. `urgent` events (OOM) wake the reader now; routine ones (exec, exit) skip
/// the wake-up, which costs microseconds per event, unless the ring is an eighth full:
/// userspace also drains the ring on a short timer, so they are late by at most that.
#[inline(always)]
pub fn emit(ev: &Event, urgent: bool) {
    let flags = if urgent || EVENTS.query(BPF_RB_AVAIL_DATA) > EVENTS.query(BPF_RB_RING_SIZE) / 8 {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    };
    if EVENTS.output::<Event>(ev, flags).is_err() {
        bump(CTR_RINGBUF_FULL);
    }
}
