//! Where an mmap's or mremap's arguments wait from sys_enter to sys_exit (the exit counts the
//! call only when it succeeded).
//!
//! A per-CPU slot first: a thread's enter and exit nearly always run on the same CPU with no
//! other mmap in between, and an inlined per-CPU array access costs a fraction of a hash
//! lookup. The slot is tagged with its thread (pid_tgid). Two cases leave it:
//! - another thread enters mmap on this CPU while the first one sleeps in its call (mmap
//!   waits for the mm's lock, or for memory): the first call's arguments move to that
//!   thread's slot of the `PENDING` hash, where its exit finds them;
//! - the thread sleeps and wakes on another CPU: its exit finds its arguments in the slot of
//!   the CPU it entered on (`bpf_map_lookup_percpu_elem`, Linux 5.19+).
//!
//! Without that helper (older kernels, or with the per-CPU slots turned off: `HOT_ON`, see
//! hot.rs) every call waits in `PENDING`, as before.
use aya_ebpf::{helpers::bpf_get_current_pid_tgid, macros::map, maps::PerCpuArray};
use tracer_common::{CTR_PENDING_FULL, PendingCall};

use crate::{
    hot::{hot_on, on_each_cpu},
    maps::{PENDING, bump},
};

/// `PendingCall::kind` of a slot whose call has been counted (no `CALL_*` value).
pub const CONSUMED: u32 = u32::MAX;

/// One thread's call in flight on this CPU.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct CpuPending {
    /// The thread; 0 = none yet (no task with pid_tgid 0 makes syscalls).
    pid_tgid: u64,
    call: PendingCall,
}

#[map]
static CPU_PENDING: PerCpuArray<CpuPending> = PerCpuArray::with_max_entries(1, 0);

/// At sys_enter: keep the current thread's call until its exit.
#[inline(always)]
pub fn save(call: PendingCall) {
    let key = bpf_get_current_pid_tgid();
    if hot_on()
        && let Some(p) = CPU_PENDING.get_ptr_mut(0)
    {
        // SAFETY: p points into this CPU's value of CPU_PENDING, valid for the program's
        // run; a program runs to its end on one CPU (see the module comment for the other
        // CPUs' exits that read it).
        let slot = unsafe { &mut *p };
        if slot.pid_tgid != key && slot.pid_tgid != 0 && slot.call.kind != CONSUMED {
            // Another thread's call still in flight: it goes to that thread's hash slot
            // first, and only then is overwritten (an exit that missed it here finds it there).
            save_in_hash(slot.pid_tgid, slot.call);
        }
        slot.pid_tgid = key;
        slot.call = call;
        return;
    }
    save_in_hash(key, call);
}

/// At sys_exit: the call of the current thread `key` (its pid_tgid), taken (marked
/// consumed); None when its enter was not seen (attached in between, or its slot recycled:
/// the caller counts it).
#[inline(always)]
pub fn take(key: u64) -> Option<PendingCall> {
    if hot_on() {
        if let Some(p) = CPU_PENDING.get_ptr_mut(0)
            // SAFETY: as in `save`.
            && let Some(call) = take_from(unsafe { &mut *p }, key)
        {
            return Some(call);
        }
        // Moved to another CPU while it slept in the call: before the hash, so that a
        // displaced copy never wins over the slot a moved thread's call is still in.
        if let Some(call) = take_remote(key) {
            return Some(call);
        }
    }
    let p = PENDING.get_ptr_mut(key)?;
    // SAFETY: p points into this thread's PENDING value, valid for the program's run; only
    // this thread writes its own hash slot (or a CPU slot's save, moving its call there).
    take_call(unsafe { &mut *p })
}

/// The call in `slot` when it is the thread `key`'s and not consumed yet.
#[inline(always)]
fn take_from(slot: &mut CpuPending, key: u64) -> Option<PendingCall> {
    if slot.pid_tgid != key {
        return None;
    }
    take_call(&mut slot.call)
}

#[inline(always)]
fn take_call(call: &mut PendingCall) -> Option<PendingCall> {
    if call.kind == CONSUMED {
        return None;
    }
    let taken = *call;
    call.kind = CONSUMED;
    Some(taken)
}

/// The thread `key`'s call in another CPU's slot. That CPU may be saving another thread's
/// call into it meanwhile: the tag is checked first, and a save moves the call it replaces to
/// the hash before overwriting it.
#[inline(always)]
fn take_remote(key: u64) -> Option<PendingCall> {
    let mut found = None;
    on_each_cpu(&CPU_PENDING, 0, |slot| {
        found = take_from(slot, key);
        found.is_some()
    });
    found
}

/// Write the thread `key`'s call into its `PENDING` slot: in place when it has one (a map
/// insert and delete per call cost several times that), else a new slot.
#[inline(always)]
fn save_in_hash(key: u64, call: PendingCall) {
    if let Some(slot) = PENDING.get_ptr_mut(key) {
        // SAFETY: slot points into the thread's PENDING value, valid for the program's run.
        unsafe { *slot = call };
        return;
    }
    if PENDING.insert(key, call, 0).is_err() {
        bump(CTR_PENDING_FULL);
    }
}

/// The current thread is exiting: free its slots (a thread killed inside a traced syscall
/// never reached sys_exit). A slot it left on another CPU is moved to the hash by the next
/// save there, and the hash, an LRU, recycles it.
#[inline(always)]
pub fn forget_current() {
    let key = bpf_get_current_pid_tgid();
    let _ = PENDING.remove(key);
    if let Some(p) = CPU_PENDING.get_ptr_mut(0) {
        // SAFETY: as in `save`.
        let slot = unsafe { &mut *p };
        if slot.pid_tgid == key {
            slot.call.kind = CONSUMED;
        }
    }
}
