//! Growth sites (`leaktracer profile`, `record --stacks`): user stacks where memory is first
//! touched, and where it is mapped (anonymous mmap, brk). Attached only while a profile runs,
//! and only the processes in `PROFILE_TARGETS` are sampled.
//!
//! A page fault on a not-present page is where a process's memory really grows (the zero
//! page or the page cache is mapped in). Faults are sampled by bytes, like Go's runtime and
//! tcmalloc sample allocations: each target counts down a random number of bytes drawn from
//! an exponential distribution (mean set by userspace, 512 KiB by default), and the fault
//! that brings it below 1 is sampled. A sample then stands for the mean in bytes, without
//! bias towards big or small faults. The stack is taken by frame pointers (Go keeps them on
//! amd64; C code needs -fno-omit-frame-pointer) and counted per (process, stack content).
//!
//! mmap and brk growth is sampled the same way with a countdown of its own (a call can
//! cross it several times: a 64 MiB mmap at a 512 KiB mean counts about 128 samples at its
//! stack; see `sample_growth`). It tells where C code asks for memory it may never touch,
//! and where a heap grows whose pages were faulted in long before. Go maps its heap from the
//! system stack and its frame pointers lead back to the goroutine: the Go code that grew the
//! heap is named. A stack taken in a syscall needs frame pointers from the libc wrapper on: a
//! libc without them (Debian 12's glibc) ends a C program's mmap stack there.
use aya_ebpf::{
    EbpfContext as _, Global,
    bindings::{BPF_F_NO_PREALLOC, BPF_F_USER_STACK},
    helpers::{bpf_get_current_pid_tgid, bpf_get_prandom_u32, generated::bpf_get_stack},
    macros::{map, tracepoint},
    maps::{Array, HashMap, PerCpuArray},
    programs::TracePointContext,
};
use tracer_common::{
    EXP_QUANTILE_COUNT, EXP_QUANTILE_SCALE, GROWTH_BRK, GROWTH_MAPPED, GROWTH_TOUCHED,
    PCTR_COLLISIONS, PCTR_COUNT, PCTR_FAULTS, PCTR_GROWTH_CALLS, PCTR_SAMPLES, PCTR_STACK_ERRORS,
    PCTR_STACKS_FULL, PCTR_TRUNCATED, ProfileTarget, RUN_BRK_STACK, RUN_FAULT_STACK,
    RUN_MMAP_STACK, STACK_MAX_FRAMES, StackKey, StackSamples,
};

use super::fields::at;
use super::syscalls::{
    MAP_ANONYMOUS, OFF_MMAP_FLAGS, OFF_MMAP_LEN, OFF_MMAP_PROT, OFF_SYS_EXIT_RET, PROT_NONE,
    page_align,
};
use crate::maps::{add, run_hook};

/// The processes being profiled, with their sampling countdowns (set by userspace).
#[map]
static PROFILE_TARGETS: HashMap<u32, ProfileTarget> = HashMap::with_max_entries(1024, 0);

/// Samples per (process, stack). Allocated as used: empty unless a profile runs.
#[map]
static GROWTH_STACKS: HashMap<StackKey, StackSamples> =
    HashMap::with_max_entries(16384, BPF_F_NO_PREALLOC);

/// Quantiles of the exponential distribution with mean 1, in 1/`EXP_QUANTILE_SCALE`ths
/// (written by userspace): a random index gives the next countdown without floating point.
#[map]
static EXP_QUANTILES: Array<u32> = Array::with_max_entries(EXP_QUANTILE_COUNT, 0);

/// A stack being taken (too big for the BPF stack).
#[map]
static STACK_SCRATCH: PerCpuArray<StackSamples> = PerCpuArray::with_max_entries(1, 0);

/// See `tracer_common::PCTR_*`.
#[map]
static PROFILE_COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(PCTR_COUNT, 0);

/// Mean bytes between two samples (set by the loader).
#[unsafe(no_mangle)]
static PROFILE_MEAN_BYTES: Global<u64> = Global::new(512 * 1024);

/// Offset of `error_code` in the page_fault_user record (set by the loader).
#[unsafe(no_mangle)]
static OFF_FAULT_ERROR_CODE: Global<u32> = Global::new(0);

/// error_code bit 0: the page was present (a protection fault, e.g. copy-on-write), not
/// memory being touched for the first time.
const PF_PROT: u64 = 1;

const PAGE_BYTES: i64 = 4096;

#[inline(always)]
fn count(counter: u32) {
    if let Some(slot) = PROFILE_COUNTERS.get_ptr_mut(counter) {
        // SAFETY: this CPU's slot of a per-CPU array, valid for the program's run and
        // written by no one else meanwhile.
        unsafe { *slot += 1 };
    }
}

#[tracepoint]
pub fn page_fault_user(ctx: TracePointContext) -> u32 {
    // Every user page fault on the node runs this program, target or not: that is its cost,
    // which the overhead budget's guard prices (`record --stacks`).
    run_hook(RUN_FAULT_STACK, || {
        let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
        let Some(target) = PROFILE_TARGETS.get_ptr_mut(tgid) else {
            return 0;
        };
        if at::<24>(&ctx, &OFF_FAULT_ERROR_CODE) & PF_PROT != 0 {
            return 0;
        }
        count(PCTR_FAULTS);
        // SAFETY: target points into a PROFILE_TARGETS value, valid for the program's run.
        // Threads of one process race on the countdown: a lost update shifts one sample by a
        // page, which the sampling's randomness already dwarfs.
        let t = unsafe { &mut *target };
        t.countdown -= PAGE_BYTES;
        if t.countdown > 0 {
            return 0;
        }
        t.countdown += next_interval();
        count(PCTR_SAMPLES);
        take_stack(&ctx, tgid, GROWTH_TOUCHED, 1);
        0
    })
}

/// mmap at enter (the arguments are there; a failed mmap, rare and under memory pressure,
/// is sampled like a successful one). Reservations (PROT_NONE) and file mappings are not
/// growth: only anonymous, accessible mappings count.
#[tracepoint]
pub fn mmap_growth_stack(ctx: TracePointContext) -> u32 {
    run_hook(RUN_MMAP_STACK, || {
        let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
        let Some(target) = PROFILE_TARGETS.get_ptr_mut(tgid) else {
            return 0;
        };
        let prot = at::<32>(&ctx, &OFF_MMAP_PROT);
        let flags = at::<40>(&ctx, &OFF_MMAP_FLAGS);
        if prot == PROT_NONE || flags & MAP_ANONYMOUS == 0 {
            return 0;
        }
        let len = page_align(at::<24>(&ctx, &OFF_MMAP_LEN));
        // SAFETY: target points into a PROFILE_TARGETS value, valid for the program's run; a
        // racing thread's lost update shifts a sample, as for faults.
        let t = unsafe { &mut *target };
        sample_growth(&ctx, tgid, &mut t.map_countdown, len, GROWTH_MAPPED);
        0
    })
}

/// brk at exit: it returns the new break, so the growth is the difference with the last one
/// this target's brk returned (its first brk since it became a target sets the baseline).
#[tracepoint]
pub fn brk_growth_stack(ctx: TracePointContext) -> u32 {
    run_hook(RUN_BRK_STACK, || {
        let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
        let Some(target) = PROFILE_TARGETS.get_ptr_mut(tgid) else {
            return 0;
        };
        let brk = at::<16>(&ctx, &OFF_SYS_EXIT_RET);
        // SAFETY: as in mmap_growth_stack.
        let t = unsafe { &mut *target };
        let last = t.brk_last;
        t.brk_last = brk;
        if last == 0 || brk <= last {
            return 0;
        }
        sample_growth(&ctx, tgid, &mut t.map_countdown, brk - last, GROWTH_BRK);
        0
    })
}

/// Count `bytes` of growth down; each crossing of the countdown is a sample at this stack.
/// The sampling points form a Poisson process over the bytes: after a crossing the next gap
/// is drawn and counted down through the rest of the call, so a call bigger than the mean
/// crosses it as many times as the process has points in it (resetting instead would count
/// a 256 KiB mmap at a 512 KiB mean 1 - e^-0.5 = 0.39 times, not 0.5: 21% low).
#[inline(always)]
fn sample_growth(ctx: &TracePointContext, tgid: u32, countdown: &mut i64, bytes: u64, kind: u16) {
    count(PCTR_GROWTH_CALLS);
    let mut left = *countdown - bytes as i64;
    if left > 0 {
        *countdown = left;
        return;
    }
    let mut samples: u64 = 0;
    // Bounded for the verifier; a call of more than 32 gaps (16 MiB at the default mean)
    // counts the rest by its expected number of points.
    for _ in 0..MAX_DRAWS {
        if left > 0 {
            break;
        }
        samples += 1;
        left += next_interval();
    }
    if left <= 0 {
        // Unsigned: BPF has no signed division.
        samples += ((-left) as u64) / PROFILE_MEAN_BYTES.load().max(1);
        left = next_interval();
    }
    *countdown = left;
    count(PCTR_SAMPLES);
    take_stack(ctx, tgid, kind, samples);
}

/// Gaps drawn at most for one mmap or brk call (see `sample_growth`).
const MAX_DRAWS: usize = 32;

/// The next countdown: the mean times a random quantile of the exponential distribution.
#[inline(always)]
fn next_interval() -> i64 {
    // SAFETY: bpf_get_prandom_u32 has no preconditions.
    let r = unsafe { bpf_get_prandom_u32() } % EXP_QUANTILE_COUNT;
    let q = EXP_QUANTILES
        .get(r)
        .copied()
        .unwrap_or(EXP_QUANTILE_SCALE as u32);
    (PROFILE_MEAN_BYTES.load() * u64::from(q) / EXP_QUANTILE_SCALE) as i64
}

#[inline(always)]
fn take_stack(ctx: &TracePointContext, tgid: u32, kind: u16, samples: u64) {
    let Some(scratch) = STACK_SCRATCH.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: scratch points to this CPU's STACK_SCRATCH value, ours for the program's run.
    let buf = unsafe { &mut *scratch };
    let size = (STACK_MAX_FRAMES * 8) as u32;
    // SAFETY: buf.frames is `size` bytes of map memory; the helper writes at most that.
    let len = unsafe {
        bpf_get_stack(
            ctx.as_ptr(),
            buf.frames.as_mut_ptr().cast(),
            size,
            u64::from(BPF_F_USER_STACK),
        )
    };
    if len <= 0 {
        count(PCTR_STACK_ERRORS);
        return;
    }
    let nframes = (len as usize / 8).min(STACK_MAX_FRAMES);
    if nframes == STACK_MAX_FRAMES {
        count(PCTR_TRUNCATED);
    }
    // Zero what the helper did not write, so a stack is its frames only: stored and compared
    // whole (a comparison bounded by the frame count lost its bound to 6.1's verifier).
    for (i, frame) in buf.frames.iter_mut().enumerate() {
        if i >= nframes {
            *frame = 0;
        }
    }
    let key = StackKey {
        tgid,
        nframes: nframes as u16,
        kind,
        hash: hash_frames(&buf.frames, nframes),
    };
    if let Some(existing) = GROWTH_STACKS.get_ptr_mut(key) {
        // SAFETY: existing points into a GROWTH_STACKS value, valid for the program's run.
        let e = unsafe { &mut *existing };
        if !same_frames(&e.frames, &buf.frames) {
            count(PCTR_COLLISIONS);
            return;
        }
        add(&mut e.samples, samples);
        return;
    }
    buf.samples = samples;
    // Another CPU may have inserted the same stack meanwhile: BPF_NOEXIST keeps its count,
    // and this sample is added to it.
    if GROWTH_STACKS.insert(key, buf, 1).is_err() {
        match GROWTH_STACKS.get_ptr_mut(key) {
            // SAFETY: as above.
            Some(existing) => add(unsafe { &mut (*existing).samples }, samples),
            None => count(PCTR_STACKS_FULL),
        }
    }
}

/// FNV-1a over the first `n` frames.
#[inline(always)]
fn hash_frames(frames: &[u64; STACK_MAX_FRAMES], n: usize) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (i, f) in frames.iter().enumerate() {
        if i >= n {
            break;
        }
        h ^= *f;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[inline(always)]
fn same_frames(a: &[u64; STACK_MAX_FRAMES], b: &[u64; STACK_MAX_FRAMES]) -> bool {
    a.iter().zip(b.iter()).all(|(x, y)| x == y)
}
