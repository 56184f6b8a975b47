//! Maps and globals shared by the programs, plus the few helpers every program uses.
use core::intrinsics::{AtomicOrdering, atomic_xadd};

use aya_ebpf::{
    Global,
    helpers::{
        bpf_get_current_comm, bpf_get_current_task, bpf_ktime_get_ns, bpf_probe_read_kernel,
    },
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf},
};
use tracer_common::{
    CTR_COUNT, CTR_PROCS_FULL, PendingCall, ProcStats, RSS_MEMBERS, RUN_COUNT, RunTime, TIME_EVERY,
    TIMED_COUNT, TIMED_UNPAUSABLE, hook_of_run,
};

/// Per-process aggregates. A plain hash map, not LRU: entries are removed explicitly at
/// exit (and by the userspace sweeper for processes whose exit was missed), and a full map
/// is counted in `CTR_PROCS_FULL` instead of silently evicting a live process.
#[map]
pub static PROCS: HashMap<u32, ProcStats> = HashMap::with_max_entries(32768, 0);

/// One slot per thread for the arguments of its mmap or mremap in flight, keyed by pid_tgid,
/// written in place at sys_enter and marked consumed at sys_exit, where a per-CPU slot cannot
/// serve (see pending.rs). Slots persist (a map insert
/// and delete per call cost several times an in-place write): an LRU, so that on a node with
/// more threads than slots the idle threads' slots are the ones recycled; a slot recycled
/// while its call is in flight is counted at the exit (`exit_without_enter`). A thread's slot
/// is removed when it exits (sched_process_exit).
#[map]
pub static PENDING: LruHashMap<u64, PendingCall> = LruHashMap::with_max_entries(16384, 0);

/// mm (pointer for the raw program, mm_id hash for the classic one) -> owning tgid, so RSS
/// changes made by another task (reclaim, fork, exit: `curr=0`) reach the right process.
#[map]
pub static MM_OWNER: LruHashMap<u64, u32> = LruHashMap::with_max_entries(32768, 0);

/// One all-zero `ProcStats`, never written: new entries are copied from it rather than
/// built on the stack (328 bytes of a 512-byte stack; older verifiers, e.g. 6.1's, count a
/// caller's and an inlined helper's frames together and refuse the program).
#[map]
pub static ZERO_STATS: Array<ProcStats> = Array::with_max_entries(1, 0);

/// The RSS generation (one slot, written by userspace; see `ProcStats::rss_gen`): 0 while the
/// overhead budget has the rss_stat hook paused. An array lookup the verifier inlines: a few
/// instructions on the page-fault path, no helper call.
#[map]
pub static RSS_GEN: Array<u32> = Array::with_max_entries(1, 0);

/// Health counters, see `tracer_common::CTR_*`.
#[map]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(CTR_COUNT, 0);

/// Runs of each pausable hook's programs, see `tracer_common::RUN_*`.
#[map]
pub static PROG_RUNS: PerCpuArray<u64> = PerCpuArray::with_max_entries(RUN_COUNT, 0);

/// What the programs' timed runs cost, per hook and for the unpausable programs, see
/// `tracer_common::RunTime`. The overhead budget prices runs with it.
#[map]
pub static HOOK_TIME: PerCpuArray<RunTime> = PerCpuArray::with_max_entries(TIMED_COUNT, 0);

/// Rare events (exec, exit, OOM victim).
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(256 * 1024, 0);

/// Field offsets of the RSS counters (BTF-derived; set by the loader), shared by the rss_stat
/// programs and every program that creates an entry (see `fill_rss_from_mm`).
#[unsafe(no_mangle)]
pub static OFF_TASK_MM: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
pub static OFF_MM_RSS_STAT: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
pub static RSS_STAT_STRIDE: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
pub static OFF_RSS_STAT_COUNT: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
pub static PAGE_SIZE: Global<u64> = Global::new(4096);

#[unsafe(no_mangle)]
pub static SELF_TGID: Global<u32> = Global::new(0);

/// task_struct.group_leader and task_struct.comm (BTF-derived; 0 = unknown): a process is
/// named by its thread-group leader, not by whichever thread touched memory first.
#[unsafe(no_mangle)]
pub static OFF_TASK_GROUP_LEADER: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
pub static OFF_TASK_COMM: Global<u32> = Global::new(0);

/// The comm of the current task's thread-group leader: the process's name (what
/// /proc/<pid>/comm shows), not the calling thread's (memcached's workers are "mc-worker").
/// Falls back to the current thread's comm when the offsets are unknown (no BTF).
#[inline(always)]
pub fn leader_comm() -> [u8; 16] {
    let (off_leader, off_comm) = (OFF_TASK_GROUP_LEADER.load(), OFF_TASK_COMM.load());
    if off_leader != 0 && off_comm != 0 {
        // SAFETY: bpf_get_current_task has no preconditions; the reads go through
        // bpf_probe_read_kernel, which fails cleanly on a bad address.
        let task = unsafe { bpf_get_current_task() };
        // SAFETY: a checked kernel read (bpf_probe_read_kernel); a bad address is an Err.
        let leader =
            unsafe { bpf_probe_read_kernel((task + off_leader as u64) as *const u64) }.unwrap_or(0);
        if leader != 0
            && let Ok(comm) =
                // SAFETY: as above, a checked kernel read.
                unsafe {
                    bpf_probe_read_kernel((leader + off_comm as u64) as *const [u8; 16])
                }
        {
            return comm;
        }
    }
    bpf_get_current_comm().unwrap_or_default()
}

/// Fill every RSS member of a new entry from the counters of `mm` (raw-layout offsets known
/// only). An entry created by a thread's first syscall, or by an rss_stat event for one
/// member, would otherwise show 0 for the other members until their next change: a process
/// that predates us showed `rss_anon` 0, then 31 MB a second later.
#[inline(always)]
pub fn fill_rss_from_mm(s: &mut ProcStats, mm: u64) -> bool {
    fill_rss(&mut s.rss, &mut s.peak_private, &mut s.rss_gen, mm)
}

/// [`fill_rss_from_mm`] on the RSS fields wherever they live (a `PROCS` entry or its process's
/// `RSS_SLOTS` slot).
#[inline(always)]
pub fn fill_rss(
    rss: &mut [u64; RSS_MEMBERS],
    peak_private: &mut u64,
    rss_gen_of: &mut u32,
    mm: u64,
) -> bool {
    let stride = RSS_STAT_STRIDE.load() as u64;
    if mm == 0 || stride == 0 {
        return false;
    }
    let base = mm + OFF_MM_RSS_STAT.load() as u64 + OFF_RSS_STAT_COUNT.load() as u64;
    let page = PAGE_SIZE.load();
    for (member, slot) in rss.iter_mut().enumerate() {
        // SAFETY: a checked kernel read; an mm freed under us reads garbage or fails, and
        // the next rss_stat event for the member overwrites it with the absolute value.
        let read = unsafe { bpf_probe_read_kernel((base + member as u64 * stride) as *const i64) };
        if let Ok(pages) = read {
            // Per-CPU batching can leave the shared count briefly negative: clamp.
            *slot = if pages > 0 { pages as u64 * page } else { 0 };
        }
    }
    let private =
        rss[tracer_common::RSS_ANON] + rss[tracer_common::RSS_SHMEM] + rss[tracer_common::RSS_SWAP];
    if private > *peak_private {
        *peak_private = private;
    }
    // Whole and current as of this generation: exact from here on while rss_stat runs.
    *rss_gen_of = rss_gen();
    true
}

/// The process `tgid` no longer uses the mm its entry knows (exec, exit, or a new mm seen in
/// its own events, which during exec come before the exec event): release its
/// `MM_OWNER` entry, so that the owner map holds the mms of live processes only. Entries are no
/// longer refreshed by every event (see rss.rs), so stale ones must not crowd a live one out
/// of the LRU. A CLONE_VM child (vfork, posix_spawn, Go's os/exec) shares its parent's mm
/// until it execs or exits, and may have claimed it meanwhile: the mm goes back to the parent.
#[inline(always)]
pub fn forget_mm(s: &mut ProcStats, tgid: u32) {
    let key = s.mm_key;
    if key == 0 {
        return;
    }
    s.mm_key = 0;
    // SAFETY: the u32 is copied out at once.
    if unsafe { MM_OWNER.get(key) }.copied() != Some(tgid) {
        return; // owned by another process since (an mm address reused, a CLONE_VM child)
    }
    let parent = s.ppid;
    // SAFETY: the field is copied out at once from a PROCS map value.
    let parent_shares =
        parent != 0 && unsafe { PROCS.get(parent) }.is_some_and(|p| p.mm_key == key);
    if parent_shares {
        let _ = MM_OWNER.insert(key, parent, 0);
    } else {
        let _ = MM_OWNER.remove(key);
    }
}

/// The current RSS generation (see `RSS_GEN`).
#[inline(always)]
pub fn rss_gen() -> u32 {
    RSS_GEN.get(0).copied().unwrap_or(0)
}

/// The current task's mm (0 for kernel threads, or when the offset is unknown).
#[inline(always)]
pub fn current_mm() -> u64 {
    let off = OFF_TASK_MM.load();
    if off == 0 {
        return 0;
    }
    // SAFETY: as in leader_comm, a checked kernel read from the current task.
    unsafe { bpf_probe_read_kernel((bpf_get_current_task() + off as u64) as *const u64) }
        .unwrap_or(0)
}

#[inline(always)]
pub fn bump(counter: u32) {
    if let Some(slot) = COUNTERS.get_ptr_mut(counter) {
        // Per-CPU slot: no other CPU writes it, a plain add is enough.
        // SAFETY: slot points into this CPU's value of COUNTERS, valid for the program's run
        // and written by no one else while we run (programs are not preempted on a CPU).
        unsafe { *slot += 1 };
    }
}

/// Run the body of a pausable hook's program (`run`: its `RUN_*` index): count the run (see
/// `PROG_RUNS`) and time one run in `TIME_EVERY` into its hook's `HOOK_TIME`. The kernel
/// inlines per-CPU array lookups (since 6.10): the untimed runs cost a few instructions, a
/// plain add and a mask test, no helper call.
#[inline(always)]
pub fn run_hook<R>(run: u32, body: impl FnOnce() -> R) -> R {
    let t0 = match PROG_RUNS.get_ptr_mut(run) {
        // SAFETY: slot points into this CPU's value of PROG_RUNS, valid for the program's
        // run and written by no one else while we run (programs are not preempted on a CPU).
        Some(slot) => unsafe {
            *slot += 1;
            if *slot & (TIME_EVERY - 1) == 0 {
                now()
            } else {
                0
            }
        },
        None => 0,
    };
    let r = body();
    if t0 != 0 {
        add_run_time(hook_of_run(run), t0);
    }
    r
}

/// Run a program that is never paused (lifecycle, cgroups, OOM, reclaim), timing every run:
/// they are rare, and the budget counts their share against the hooks'.
#[inline(always)]
pub fn run_unpausable<R>(body: impl FnOnce() -> R) -> R {
    let t0 = now();
    let r = body();
    add_run_time(TIMED_UNPAUSABLE, t0);
    r
}

#[inline(always)]
fn add_run_time(index: u32, t0: u64) {
    let spent = now().saturating_sub(t0);
    if let Some(t) = HOOK_TIME.get_ptr_mut(index) {
        // SAFETY: t points into this CPU's value of HOOK_TIME, valid for the program's run
        // and written by no one else while we run (programs are not preempted on a CPU).
        unsafe {
            (*t).ns += spent;
            (*t).runs += 1;
        }
    }
}

/// Atomically add to a counter inside a shared map value (threads of one process run on
/// several CPUs at once).
#[inline(always)]
pub fn add(field: *mut u64, value: u64) {
    // The result is unused, so LLVM emits the plain (non-fetching) BPF atomic add.
    // SAFETY: callers pass a field of a map value (valid and aligned for the program's run);
    // the add is atomic, so concurrent writers on other CPUs are fine.
    unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(field, value) };
}

#[inline(always)]
pub fn now() -> u64 {
    // SAFETY: bpf_ktime_get_ns takes no arguments and has no preconditions.
    unsafe { bpf_ktime_get_ns() }
}

/// The stats entry of `tgid`, created from the current task when missing: named by its
/// thread-group leader and with the RSS of its mm at that moment. Only call with `tgid` ==
/// current's tgid.
#[inline(always)]
pub fn current_proc(tgid: u32) -> Option<*mut ProcStats> {
    if let Some(p) = PROCS.get_ptr_mut(tgid) {
        return Some(p);
    }
    if tgid == SELF_TGID.load() || current_is_exiting() {
        return None;
    }
    let p = new_proc(
        tgid, 1, /* BPF_NOEXIST: another thread may have raced us */
    )?;
    // SAFETY: p points into a PROCS map value, valid for the program's run.
    let s = unsafe { &mut *p };
    if s.first_seen_ns == 0 {
        s.comm = leader_comm();
        s.first_seen_ns = now();
        fill_rss_from_mm(s, current_mm());
    }
    Some(p)
}

/// task_struct.flags offset from BTF (0: unknown, no check).
#[unsafe(no_mangle)]
static OFF_TASK_FLAGS: Global<u32> = Global::new(0);

const PF_EXITING: u32 = 0x4;

/// Whether current is past the start of do_exit. Its process's exit may already have been
/// reported and its entry freed: an RSS change or a syscall's return seen now must not
/// create a new entry for a process that is gone. Only on the (rare) missing-entry path.
#[inline(always)]
fn current_is_exiting() -> bool {
    let off = OFF_TASK_FLAGS.load();
    if off == 0 {
        return false;
    }
    // SAFETY: bpf_probe_read_kernel checks the address; current's task_struct outlives the
    // program run.
    unsafe {
        let task = bpf_get_current_task();
        bpf_probe_read_kernel((task + off as u64) as *const u32)
            .is_ok_and(|flags| flags & PF_EXITING != 0)
    }
}

/// Insert a zeroed entry for `tgid` (`flags`: 0 = replace, 1 = BPF_NOEXIST = keep an existing
/// one) and return it; a full map is counted.
#[inline(always)]
pub fn new_proc(tgid: u32, flags: u64) -> Option<*mut ProcStats> {
    let zero = ZERO_STATS.get(0)?;
    if PROCS.insert(tgid, zero, flags).is_err() && PROCS.get_ptr_mut(tgid).is_none() {
        bump(CTR_PROCS_FULL);
        return None;
    }
    PROCS.get_ptr_mut(tgid)
}
