//! The arguments of the syscall the current thread is returning from, read at its sys_exit
//! from the user registers the kernel saved when the thread entered the kernel.
//!
//! mmap and mremap are counted at exit (only a call that succeeded maps memory), but their
//! exit records carry only the return value. Reading the arguments back from the saved
//! registers spares each call an enter program and the state that carried the arguments to
//! the exit: a second program run, a slot written at enter and taken at exit, and the cases
//! where a thread sleeps in mmap while another thread's call lands on that CPU, or wakes on
//! another CPU. The registers are the thread's own, so none of those cases exist here.
//!
//! On x86_64 the kernel leaves the argument registers (rdi, rsi, rdx, r10, r8, r9) as the
//! thread passed them; only rax takes the return value. Only 64-bit syscalls reach these
//! tracepoints (the kernel does not trace compat syscalls there), so the 64-bit ABI is the
//! one to read.
//!
//! Needs `bpf_get_current_task_btf` (5.11) and `bpf_task_pt_regs` (5.15), and the kernel's
//! BTF for the verifier to type them. The registers are read with plain loads from the
//! pt_regs the second helper returns: the verifier knows its type from BTF and turns each load
//! into one that cannot fault, so no `bpf_probe_read_kernel` call is needed (measured: 12-31 ns
//! less per call, bench/results/mmap-modes-2026-12-05.md). The loader sets `ARGS_FROM_REGS` only where they exist
//! and the architecture is x86_64; elsewhere the enter programs save the arguments
//! (pending.rs), and the verifier prunes every path that calls these helpers (a read-only
//! global is a known constant), so the object still loads on older kernels.
use aya_ebpf::Global;
use tracer_common::{CALL_MMAP, CALL_MREMAP, PendingCall};

/// 1 when the exits read the arguments from the saved registers (see the module comment).
#[unsafe(no_mangle)]
static ARGS_FROM_REGS: Global<u32> = Global::new(0);

/// Whether the mmap/mremap exits read their arguments from the saved registers.
#[inline(always)]
pub fn from_regs() -> bool {
    ARGS_FROM_REGS.load() != 0
}

/// The current thread's mmap (`kind` = `CALL_MMAP`) or mremap arguments; None when the
/// registers could not be read.
#[inline(always)]
pub fn current(kind: usize) -> Option<PendingCall> {
    let r = arch::saved_args()?;
    Some(match kind {
        // mmap(addr, len, prot, flags, fd, offset)
        CALL_MMAP => PendingCall {
            kind: CALL_MMAP as u32,
            len: r[1],
            arg2: r[2],
            arg3: r[3],
            arg4: r[4],
            ..PendingCall::default()
        },
        // mremap(old_addr, old_len, new_len, flags, new_addr)
        _ => PendingCall {
            kind: CALL_MREMAP as u32,
            len: r[1],
            arg2: r[2],
            ..PendingCall::default()
        },
    })
}

#[cfg(bpf_target_arch = "x86_64")]
mod arch {
    use aya_ebpf::{
        bindings::pt_regs,
        helpers::generated::{bpf_get_current_task_btf, bpf_task_pt_regs},
    };

    /// The first five syscall arguments, in the syscall's order (rdi, rsi, rdx, r10, r8);
    /// rdi (the address) is not used by the exits and reads as 0.
    #[inline(always)]
    pub fn saved_args() -> Option<[u64; 5]> {
        // SAFETY: both helpers take no pointer from us but the task the first returns, and the
        // verifier types both results (BTF). The loads read 8-byte fields of that pt_regs at
        // their offsets in the kernel's own layout (x86_64's, as the bindings'); the verifier
        // checks each against the kernel's BTF and makes it a load that cannot fault.
        unsafe {
            let regs = bpf_task_pt_regs(bpf_get_current_task_btf()) as *const pt_regs;
            let field =
                |at: usize| core::ptr::read_volatile((regs as *const u8).add(at) as *const u64);
            Some([
                0,
                field(core::mem::offset_of!(pt_regs, rsi)),
                field(core::mem::offset_of!(pt_regs, rdx)),
                field(core::mem::offset_of!(pt_regs, r10)),
                field(core::mem::offset_of!(pt_regs, r8)),
            ])
        }
    }
}

/// Other architectures keep the enter programs (the loader leaves `ARGS_FROM_REGS` at 0).
#[cfg(not(bpf_target_arch = "x86_64"))]
mod arch {
    #[inline(always)]
    pub fn saved_args() -> Option<[u64; 5]> {
        None
    }
}
