//! oom:mark_victim — fires in the killer's context: current is the task whose allocation
//! triggered the kill, the event's pid is the victim.
use aya_ebpf::{
    EbpfContext as _, Global,
    helpers::{bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_probe_read_kernel_str_bytes},
    macros::tracepoint,
    programs::TracePointContext,
};
use tracer_common::{EVENT_OOM_VICTIM, Event};

use crate::{
    maps::{now, run_unpausable},
    programs::lifecycle::emit,
};

#[unsafe(no_mangle)]
static OFF_OOM_PID: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static OFF_OOM_COMM: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static OFF_OOM_TOTAL_VM: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static OFF_OOM_ANON_RSS: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static OFF_OOM_FILE_RSS: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static OFF_OOM_SHMEM_RSS: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static OFF_OOM_UID: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static OFF_OOM_PGTABLES: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static OFF_OOM_SCORE_ADJ: Global<u32> = Global::new(0);

#[tracepoint]
pub fn mark_victim(ctx: TracePointContext) -> u32 {
    // Fields other than pid were added in 6.8; an offset of 0 means "absent here".
    run_unpausable(|| {
        let opt_u64 = |off: &Global<u32>| {
            let off = off.load();
            if off == 0 {
                0
            } else {
                // SAFETY: read_at goes through bpf_probe_read_kernel: a bad offset is an Err.
                unsafe { ctx.read_at::<u64>(off as usize) }.unwrap_or(0)
            }
        };
        // SAFETY: read_at is a checked kernel read; a bad offset is an Err (pid 0).
        let victim = unsafe { ctx.read_at::<u32>(OFF_OOM_PID.load() as usize) }.unwrap_or(0);
        let mut ev = Event {
            kind: EVENT_OOM_VICTIM,
            tgid: victim,
            ts_ns: now(),
            aux: (bpf_get_current_pid_tgid() >> 32) as u32,
            oom_total_vm_kb: opt_u64(&OFF_OOM_TOTAL_VM),
            oom_anon_rss_kb: opt_u64(&OFF_OOM_ANON_RSS),
            oom_file_rss_kb: opt_u64(&OFF_OOM_FILE_RSS),
            oom_shmem_rss_kb: opt_u64(&OFF_OOM_SHMEM_RSS),
            oom_pgtables_kb: opt_u64(&OFF_OOM_PGTABLES),
            uid: opt_u64(&OFF_OOM_UID) as u32,
            oom_score_adj: opt_u64(&OFF_OOM_SCORE_ADJ) as u16 as i16 as i64,
            trigger_comm: bpf_get_current_comm().unwrap_or_default(),
            ..Event::default()
        };
        let comm_off = OFF_OOM_COMM.load();
        if comm_off != 0 {
            // __data_loc: low 16 bits = offset of the string in the record, high 16 = length.
            // SAFETY: read_at is a checked kernel read; a bad offset is an Err.
            if let Ok(loc) = unsafe { ctx.read_at::<u32>(comm_off as usize) } {
                let src = (ctx.as_ptr() as u64 + (loc & 0xffff) as u64) as *const u8;
                // SAFETY: a checked kernel string read into a buffer we own, bounded by its
                // length; an address outside the record is an Err, leaving comm empty.
                let _ = unsafe { bpf_probe_read_kernel_str_bytes(src, &mut ev.comm) };
            }
        }
        emit(&ev, true);
        0
    })
}
