//! vmscan:mm_vmscan_memcg_reclaim_begin/end — direct reclaim inside a memory cgroup. It runs
//! in the context of the task whose charge pushed the cgroup over its limit (v1
//! limit_in_bytes, v2 memory.max) or over memory.high: the time between begin and end is that
//! task's stall, the pages freed are the cgroup's. The tracepoints carry no cgroup, so the
//! numbers are added to the current process; userspace sums them per cgroup.
use aya_ebpf::{
    Global, helpers::bpf_get_current_pid_tgid, macros::map, macros::tracepoint, maps::HashMap,
    programs::TracePointContext,
};
use tracer_common::{CTR_PENDING_FULL, CTR_READ_ERRORS, CTR_RECLAIM_EVENTS};

use crate::maps::{add, bump, current_proc, now, run_unpausable};

#[unsafe(no_mangle)]
static OFF_RECLAIM_NR_RECLAIMED: Global<u32> = Global::new(0);

/// Start time of the reclaim each thread is in, keyed by pid_tgid. Reclaim does not nest and
/// always reaches its end tracepoint (an OOM kill happens after it returns), so entries do
/// not linger; a thread that was already reclaiming when we attached has no entry and its
/// first end is skipped.
#[map]
static RECLAIM_START: HashMap<u64, u64> = HashMap::with_max_entries(4096, 0);

#[tracepoint]
pub fn memcg_reclaim_begin(_ctx: TracePointContext) -> u32 {
    run_unpausable(|| {
        if RECLAIM_START
            .insert(bpf_get_current_pid_tgid(), now(), 0)
            .is_err()
        {
            bump(CTR_PENDING_FULL);
        }
        0
    })
}

#[tracepoint]
pub fn memcg_reclaim_end(ctx: TracePointContext) -> u32 {
    run_unpausable(|| {
        let id = bpf_get_current_pid_tgid();
        // SAFETY: a copy of a u64 out of the map value; the entry is removed right after.
        let Some(start) = (unsafe { RECLAIM_START.get(id) }).copied() else {
            return 0;
        };
        let _ = RECLAIM_START.remove(id);
        bump(CTR_RECLAIM_EVENTS);
        // SAFETY: read_at goes through bpf_probe_read_kernel: a bad offset is an Err, counted.
        let pages = match unsafe { ctx.read_at::<u64>(OFF_RECLAIM_NR_RECLAIMED.load() as usize) } {
            Ok(v) => v,
            Err(_) => {
                bump(CTR_READ_ERRORS);
                0
            }
        };
        let Some(p) = current_proc((id >> 32) as u32) else {
            return 0;
        };
        // SAFETY: p points into a PROCS map value, valid for the program's run.
        let s = unsafe { &mut *p };
        let t = now();
        add(&mut s.reclaim_runs, 1);
        add(&mut s.reclaim_ns, t.saturating_sub(start));
        add(&mut s.reclaimed_pages, pages);
        0
    })
}
