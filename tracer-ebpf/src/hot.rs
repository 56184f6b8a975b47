//! The per-CPU fast path of madvise, munmap and the mmap/mremap exits (see
//! `tracer_common::HOT_SLOTS`): each CPU keeps a slot per `tgid % HOT_SLOTS`, owned by one
//! process at a time, that those programs count into with plain adds. A `PROCS` lookup (a hash of the key, a bucket walk) and two
//! atomic adds were most of what these programs cost per call above the empty program's floor.
//!
//! Who writes a slot: only the programs of its owning process, on that CPU (a program runs to
//! its end on one CPU, and tracepoint programs do not nest there), and, once the process is
//! gone, the exit program that folds it (no thread of the process is left to write it) or the
//! fork program of a later process with the same pid (which frees a slot whose owner's exit
//! was never seen). Userspace only reads slots.
use aya_ebpf::{
    Global, helpers::generated::bpf_map_lookup_percpu_elem, macros::map, maps::PerCpuArray,
};
use tracer_common::{HOT_MAX_CPUS, HOT_SLOTS, HotCounts, ProcStats};

use crate::maps::current_proc;

#[map]
pub static HOT: PerCpuArray<HotCounts> = PerCpuArray::with_max_entries(HOT_SLOTS, 0);

/// 1 when the slots are in use. Set by the loader on kernels with
/// `bpf_map_lookup_percpu_elem` (5.19+), which the exit program needs to fold another CPU's
/// slot; elsewhere 0, and the verifier prunes every path that calls it (a read-only global
/// is a known constant), so the programs still load on older kernels.
#[unsafe(no_mangle)]
static HOT_ON: Global<u32> = Global::new(0);

/// Possible CPUs (set by the loader): the slots a fold visits.
#[unsafe(no_mangle)]
static NR_CPUS: Global<u32> = Global::new(0);

/// Whether the per-CPU slots are in use (see `HOT_ON`).
#[inline(always)]
pub fn hot_on() -> bool {
    HOT_ON.load() != 0
}

/// Possible CPUs: the slots a fold visits.
#[inline(always)]
pub fn nr_cpus() -> u32 {
    NR_CPUS.load()
}

/// This CPU's slot of the current process `tgid`, claimed if free; None when the fast path
/// is off, or the slot is another process's (the caller counts in `PROCS`), or the process
/// has no entry to belong to (ourselves, a task exiting, a full map).
#[inline(always)]
pub fn own_slot(tgid: u32) -> Option<*mut HotCounts> {
    if !hot_on() {
        return None;
    }
    let slot = HOT.get_ptr_mut(tgid % HOT_SLOTS)?;
    // SAFETY: slot points into this CPU's value of HOT, valid for the program's run; only
    // the programs of its owner on this CPU write it (see the module comment).
    let h = unsafe { &mut *slot };
    if h.tgid == tgid {
        return Some(slot);
    }
    if h.tgid != 0 {
        return None;
    }
    // Free: the process must have an entry for userspace and the exit program to add the
    // slot to. Only this first call per CPU pays the hash lookup.
    current_proc(tgid)?;
    *h = HotCounts {
        tgid,
        ..HotCounts::default()
    };
    Some(slot)
}

/// Visit `tgid`'s slots on every CPU: add them to `into` (when given) and free them.
#[inline(always)]
fn drain(tgid: u32, mut into: Option<&mut ProcStats>) {
    if !hot_on() {
        return;
    }
    on_each_cpu(&HOT, tgid % HOT_SLOTS, |h| {
        // The process is gone, so none of its programs writes the slot meanwhile.
        if h.tgid == tgid {
            if let Some(s) = into.as_deref_mut() {
                h.add_to(s);
            }
            *h = HotCounts::default();
        }
        false
    });
}

/// Visit the value at `index` of a per-CPU array on every possible CPU, until `visit` returns
/// true. Needs `bpf_map_lookup_percpu_elem` (Linux 5.19): only on paths behind `hot_on`.
#[inline(always)]
pub fn on_each_cpu<T>(map: &PerCpuArray<T>, index: u32, mut visit: impl FnMut(&mut T) -> bool) {
    let cpus = nr_cpus();
    for cpu in 0..HOT_MAX_CPUS {
        if cpu >= cpus {
            break;
        }
        // SAFETY: `map` is a map definition (the helper takes its address) and `index` lives
        // on our stack for the call; the result is null or a pointer into that CPU's value.
        let p = unsafe {
            bpf_map_lookup_percpu_elem(
                map as *const _ as *mut _,
                &index as *const u32 as *const _,
                cpu,
            )
        } as *mut T;
        if p.is_null() {
            continue;
        }
        // SAFETY: non-null: a valid pointer into CPU `cpu`'s value for the program's run.
        // Another CPU may write it meanwhile: callers say why that is harmless.
        if visit(unsafe { &mut *p }) {
            break;
        }
    }
}

/// At the process's end: its slots' counts join its final counters (when it has an entry),
/// and the slots are freed.
#[inline(always)]
pub fn fold(tgid: u32, s: Option<&mut ProcStats>) {
    drain(tgid, s);
}

/// A new process `tgid`: free any slot still tagged with its pid, left by an earlier process
/// whose exit was never seen, so that it does not start with that one's counts.
#[inline(always)]
pub fn free_stale(tgid: u32) {
    drain(tgid, None);
}
