//! cgroup:cgroup_mkdir, cgroup_rmdir and cgroup_release — a cgroup made, removed, and freed
//! by the kernel. Between rmdir and release a memory cgroup is a zombie: gone from the
//! filesystem, still held (usually by page cache charged to it). Userspace pairs the two to
//! say which cgroups are zombies, with their paths and ages. Rare events: a cgroup per pod
//! or job, not per allocation.
use aya_ebpf::{
    EbpfContext as _, Global, helpers::bpf_probe_read_kernel_str_bytes, macros::tracepoint,
    programs::TracePointContext,
};
use tracer_common::{
    CGROUP_MKDIR, CGROUP_RELEASE, CGROUP_RMDIR, CTR_RINGBUF_FULL, CgroupEvent, EVENT_CGROUP,
};

use crate::{
    maps::{EVENTS, bump, now, run_unpausable},
    programs::lifecycle::submit,
};

#[unsafe(no_mangle)]
static OFF_CGROUP_ROOT: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static OFF_CGROUP_LEVEL: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static OFF_CGROUP_ID: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static OFF_CGROUP_PATH: Global<u32> = Global::new(0);

#[tracepoint]
pub fn cgroup_mkdir(ctx: TracePointContext) -> u32 {
    run_unpausable(|| {
        cgroup_event(&ctx, CGROUP_MKDIR);
        0
    })
}

#[tracepoint]
pub fn cgroup_rmdir(ctx: TracePointContext) -> u32 {
    run_unpausable(|| {
        cgroup_event(&ctx, CGROUP_RMDIR);
        0
    })
}

#[tracepoint]
pub fn cgroup_release(ctx: TracePointContext) -> u32 {
    run_unpausable(|| {
        cgroup_event(&ctx, CGROUP_RELEASE);
        0
    })
}

#[inline(always)]
fn cgroup_event(ctx: &TracePointContext, action: u32) {
    let Some(mut slot) = EVENTS.reserve::<CgroupEvent>(0) else {
        bump(CTR_RINGBUF_FULL);
        return;
    };
    let ev = slot.as_mut_ptr();
    // SAFETY: read_at is a checked kernel read of the tracepoint record; a bad offset is an
    // Err (the field reads 0).
    let (hierarchy, level, id, loc) = unsafe {
        (
            ctx.read_at::<i32>(OFF_CGROUP_ROOT.load() as usize)
                .unwrap_or(-1),
            ctx.read_at::<i32>(OFF_CGROUP_LEVEL.load() as usize)
                .unwrap_or(-1),
            ctx.read_at::<u64>(OFF_CGROUP_ID.load() as usize)
                .unwrap_or(0),
            ctx.read_at::<u32>(OFF_CGROUP_PATH.load() as usize)
                .unwrap_or(0),
        )
    };
    // SAFETY: `ev` points to a reserved ring-buffer record of size_of::<CgroupEvent>() bytes,
    // ours until submitted. Every field is written (ring memory is not zeroed): the path is
    // cleared first, then the kernel string read into it (bounded by the array).
    unsafe {
        (*ev).kind = EVENT_CGROUP;
        (*ev).action = action;
        (*ev).ts_ns = now();
        (*ev).hierarchy = hierarchy;
        (*ev).level = level;
        (*ev).id = id;
        (*ev).path[0] = 0;
        if loc != 0 {
            // __data_loc: low 16 bits = offset of the string in the record, high 16 = length.
            let src = (ctx.as_ptr() as u64 + (loc & 0xffff) as u64) as *const u8;
            if bpf_probe_read_kernel_str_bytes(src, &mut (*ev).path).is_err() {
                (*ev).path[0] = 0;
            }
        }
    }
    submit(slot, false);
}
