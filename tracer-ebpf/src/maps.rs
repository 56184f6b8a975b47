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
use tracer_ebpf::{CTR_COUNT, CTR_PROCS_FULL, PendingCall, ProcStats};

/// Per-process aggregates. A plain hash map, not LRU: entries are removed explicitly at
/// exit (and by the userspace sweeper for processes whose exit was missed), and a full map
/// is counted in `CTR_PROCS_FULL` instead of silently evicting a live process.
#[map]
pub static PROCS: HashMap<u32, ProcStats> = HashMap::with_max_entries(32768, 0);

/// Syscalls in flight, keyed by pid_tgid. A plain (preallocated) hash, cheaper to update
/// than an LRU; a thread killed inside a syscall never reaches sys_exit, so its entry is
/// removed when the thread exits (sched_process_exit).
#[map]
pub static PENDING: HashMap<u64, PendingCall> = HashMap::with_max_entries(16384, 0);

/// mm (pointer for the raw program, mm_id hash for the classic one) -> owning tgid, so RSS
/// changes made by another task (reclaim, fork, exit: `curr=0`) reach the right process.
#[map]
pub static MM_OWNER: LruHashMap<u64, u32> = LruHashMap::with_max_entries(32768, 0);

/// One all-zero `ProcStats`, never written: new entries are copied from it rather than
/// built on the stack (328 bytes of a 512-byte stack; older verifiers, e.g. 6.1's, count a
/// caller's and an inlined helper's frames together and refuse the program).
#[map]
pub static ZERO_STATS: Array<ProcStats> = Array::with_max_entries(1, 0);

/// Health counters, see `tracer_ebpf::CTR_*`.
#[map]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(CTR_COUNT, 0);

/// Rare events (exec, exit, OOM victim).
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(256 * 1024, 0);

#[unsafe(no_mangle)]
pub static SELF_TGID: Global<u32> = Global::new(0);

#[inline(always)]
pub fn bump(counter: u32) {
    if let Some(slot) = COUNTERS.get_ptr_mut(counter) {
        // Per-CPU slot: no other CPU writes it, a plain add is enough.
        unsafe { *slot += 1 };
    }
}

/// Atomically add to a counter inside a shared map value (threads of one process run on
/// several CPUs at once).
#[inline(always)]
pub fn add(field: *mut u64, value: u64) {
    // The result is unused, so LLVM emits the plain (non-fetching) BPF atomic add.
    unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(field, value) };
}

#[inline(always)]
pub fn now() -> u64 {
    unsafe { bpf_ktime_get_ns() }
}

/// The stats entry of `tgid`, created from the current task when missing. Only call with
/// `tgid` == current's tgid (comm is taken from current).
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
        s.comm = process_comm();
        s.first_seen_ns = now();
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

#[unsafe(no_mangle)]
static OFF_TASK_GROUP_LEADER: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static OFF_TASK_COMM: Global<u32> = Global::new(0);

/// The name of current's process: its thread-group leader's comm, as /proc/<pid>/comm
/// shows it (a worker thread may carry its own name, e.g. memcached's `mc-worker`). Falls
/// back to current's own comm without the BTF offsets.
#[inline(always)]
pub fn process_comm() -> [u8; 16] {
    let (off_leader, off_comm) = (OFF_TASK_GROUP_LEADER.load(), OFF_TASK_COMM.load());
    if off_leader != 0 && off_comm != 0 {
        // SAFETY: bpf_probe_read_kernel checks the addresses; current and its group leader
        // (pinned by the thread group while current runs) outlive the program run.
        let leader_comm = unsafe {
            let task = bpf_get_current_task();
            bpf_probe_read_kernel((task + off_leader as u64) as *const u64).and_then(|leader| {
                bpf_probe_read_kernel((leader + off_comm as u64) as *const [u8; 16])
            })
        };
        if let Ok(c) = leader_comm {
            return c;
        }
    }
    bpf_get_current_comm().unwrap_or_default()
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
