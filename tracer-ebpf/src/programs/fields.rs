//! Reading fields of a classic tracepoint's record. Offsets come from tracefs `format` files
//! (the loader sets them as globals); the common layouts are read with direct context loads.
use aya_ebpf::{EbpfContext as _, Global, programs::TracePointContext};
use tracer_common::CTR_READ_ERRORS;

use crate::maps::bump;

/// A field at a tracefs-given offset, through a helper read; None (counted) when it fails.
#[inline(always)]
pub fn field(ctx: &TracePointContext, off: &Global<u32>) -> Option<u64> {
    // A helper read, not a direct context load: the verifier only allows ctx accesses at an
    // instruction's immediate offset, and these offsets come from tracefs at load time.
    // SAFETY: read_at goes through bpf_probe_read_kernel: an offset outside the record reads
    // as an Err (counted), never as undefined behaviour.
    match unsafe { ctx.read_at::<u64>(off.load() as usize) } {
        Ok(v) => Some(v),
        Err(_) => {
            bump(CTR_READ_ERRORS);
            None
        }
    }
}

/// The 8 bytes at `AT` in the record when that is where tracefs puts the field (the layout
/// every kernel since 4.x has for the records read this way): a direct context load, no
/// helper call, which is most of what a hot program costs. The loader's tracefs offset still
/// decides: the globals are frozen at load time, so the verifier knows which branch runs and
/// drops the other; a kernel with another layout gets the helper read.
#[inline(always)]
pub fn try_at<const AT: usize>(ctx: &TracePointContext, off: &Global<u32>) -> Option<u64> {
    if off.load() as usize == AT {
        // SAFETY: a read inside the tracepoint record at a constant offset the verifier
        // checks against the record's size at attach time.
        Some(unsafe { core::ptr::read((ctx.as_ptr() as *const u8).add(AT) as *const u64) })
    } else {
        field(ctx, off)
    }
}

/// [`try_at`], with 0 for a field that could not be read (counted in `CTR_READ_ERRORS`).
#[inline(always)]
pub fn at<const AT: usize>(ctx: &TracePointContext, off: &Global<u32>) -> u64 {
    try_at::<AT>(ctx, off).unwrap_or(0)
}
