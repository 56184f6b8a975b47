//! The growth-site profiler's kernel side (tracer-ebpf/src/programs/profile.rs): loads the
//! object with every other map shrunk to nothing, attaches only the growth-site programs
//! (page faults, mmap, brk), and hands userspace the sampled stacks as plain values. Independent of a running `record` or
//! daemon: it is a separate load.
use std::path::Path;

use anyhow::{Context as _, anyhow};
use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, MapData, PerCpuArray},
};
use tracer_common::{
    EXP_QUANTILE_COUNT, EXP_QUANTILE_SCALE, GROWTH_BRK, GROWTH_MAPPED, GROWTH_TOUCHED,
    PCTR_COLLISIONS, PCTR_FAULTS, PCTR_GROWTH_CALLS, PCTR_SAMPLES, PCTR_STACK_ERRORS,
    PCTR_STACKS_FULL, PCTR_TRUNCATED, ProfileTarget, StackKey, StackSamples, globals as g,
};

use crate::{
    kernel::{loader, preflight},
    util::error::UsageError,
};

/// Maps the profiler does not use, shrunk so that loading the object costs no memory.
const UNUSED_MAPS: [&str; 5] = ["PROCS", "PENDING", "MM_OWNER", "HOT", "RSS_SLOTS"];

/// One sampled stack of one process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SampledStack {
    pub pid: u32,
    pub kind: GrowthKind,
    pub samples: u64,
    /// User return addresses, innermost first.
    pub frames: Vec<u64>,
}

pub use crate::model::growth::{GrowthKind, ProfileCounters};

pub struct Profiler {
    /// Priced by a session in this process while attached (unregistered first: fields drop
    /// in order).
    _priced: crate::kernel::priced::Registration,
    ebpf: Ebpf,
}

impl Profiler {
    /// Load and attach; `mean_bytes` is the mean sampling interval.
    pub fn start(host_root: &Path, mean_bytes: u64) -> anyhow::Result<Self> {
        preflight::check_privileges()?;
        let tfs = preflight::locate_tracefs(host_root)?;
        preflight::raise_memlock();
        let fields = field_offsets(&tfs)?;
        let mut l = EbpfLoader::new();
        configure(&mut l, &fields, &mean_bytes);
        for m in UNUSED_MAPS {
            l.map_max_entries(m, 1);
        }
        let mut ebpf = l
            .load(loader::OBJECT)
            .context("loading the eBPF object into the kernel")?;
        init(&mut ebpf)?;
        for (prog, group, event) in PROGRAMS {
            loader::attach_tp(&mut ebpf, prog, group, event)?;
        }
        // A session in this process (the daemon's) prices them with its own hooks.
        Ok(Self {
            _priced: crate::kernel::priced::register(&ebpf)?,
            ebpf,
        })
    }

    /// Sample `pid` from now on; its first sample comes after a random share of the mean.
    pub fn add_target(&mut self, pid: u32, mean_bytes: u64) -> anyhow::Result<()> {
        add_target(&mut self.ebpf, pid, mean_bytes)
    }

    /// Every sampled stack so far.
    pub fn stacks(&self) -> anyhow::Result<Vec<SampledStack>> {
        Ok(stacks(&self.ebpf)?.into_iter().map(|(_, s)| s).collect())
    }

    pub fn counters(&self) -> anyhow::Result<ProfileCounters> {
        counters(&self.ebpf)
    }
}

/// The growth-site programs (tracer-ebpf/src/programs/profile.rs) and their tracepoints
/// (group, event): first-touch page faults, anonymous mmaps, brk growth.
pub const PROGRAMS: [(&str, &str, &str); 3] = [
    ("page_fault_user", "exceptions", "page_fault_user"),
    ("mmap_growth_stack", "syscalls", "sys_enter_mmap"),
    ("brk_growth_stack", "syscalls", "sys_exit_brk"),
];

/// Where the growth-site programs read their tracepoints' fields.
pub struct FieldOffsets {
    fault_error_code: u32,
    mmap_len: u32,
    mmap_prot: u32,
    mmap_flags: u32,
    exit_ret: u32,
}

/// The fields' offsets from tracefs; a usage error on a kernel without the page-fault
/// tracepoint (x86 has it).
pub fn field_offsets(tfs: &crate::kernel::tracefs::TraceFs) -> anyhow::Result<FieldOffsets> {
    if !tfs.has_event("exceptions", "page_fault_user") {
        return Err(anyhow!(UsageError::new(
            "tracepoint exceptions:page_fault_user not available on this kernel (x86 has it): growth sites cannot be profiled"
        )));
    }
    let mmap = tfs.format("syscalls", "sys_enter_mmap")?;
    Ok(FieldOffsets {
        fault_error_code: tfs
            .format("exceptions", "page_fault_user")?
            .offset("error_code")?,
        mmap_len: mmap.offset("len")?,
        mmap_prot: mmap.offset("prot")?,
        mmap_flags: mmap.offset("flags")?,
        exit_ret: tfs.format("syscalls", "sys_exit_brk")?.offset("ret")?,
    })
}

/// Set the growth-site programs' globals before the object is loaded (the mmap and exit
/// offsets are the syscall programs' own, set to the same values when both are loaded).
pub fn configure<'a>(l: &mut EbpfLoader<'a>, fields: &'a FieldOffsets, mean_bytes: &'a u64) {
    l.override_global("OFF_FAULT_ERROR_CODE", &fields.fault_error_code, true)
        .override_global(g::MMAP_LEN, &fields.mmap_len, true)
        .override_global(g::MMAP_PROT, &fields.mmap_prot, true)
        .override_global(g::MMAP_FLAGS, &fields.mmap_flags, true)
        .override_global(g::SYS_EXIT_RET, &fields.exit_ret, true)
        .override_global("PROFILE_MEAN_BYTES", mean_bytes, true);
}

/// Fill the sampling distribution's table, after load and before attach.
pub fn init(ebpf: &mut Ebpf) -> anyhow::Result<()> {
    let mut q: Array<&mut MapData, u32> = Array::try_from(
        ebpf.map_mut("EXP_QUANTILES")
            .context("map EXP_QUANTILES missing")?,
    )?;
    for (i, v) in exponential_quantiles().into_iter().enumerate() {
        q.set(i as u32, v, 0).context("writing EXP_QUANTILES")?;
    }
    Ok(())
}

fn targets(ebpf: &mut Ebpf) -> anyhow::Result<HashMap<&mut MapData, u32, ProfileTarget>> {
    Ok(HashMap::try_from(
        ebpf.map_mut("PROFILE_TARGETS")
            .context("map PROFILE_TARGETS missing")?,
    )?)
}

/// Sample `pid` from now on; its first sample comes after a random share of the mean.
pub fn add_target(ebpf: &mut Ebpf, pid: u32, mean_bytes: u64) -> anyhow::Result<()> {
    let start = exponential_quantiles()[(pid as usize * 97) % EXP_QUANTILE_COUNT as usize];
    let countdown = (mean_bytes * u64::from(start) / EXP_QUANTILE_SCALE) as i64;
    targets(ebpf)?
        .insert(
            pid,
            ProfileTarget {
                countdown,
                // The other countdown starts at another random share of the mean.
                map_countdown: (mean_bytes
                    * u64::from(
                        exponential_quantiles()
                            [(pid as usize * 61 + 13) % EXP_QUANTILE_COUNT as usize],
                    )
                    / EXP_QUANTILE_SCALE) as i64,
                brk_last: 0,
            },
            0,
        )
        .with_context(|| {
            format!("adding pid {pid} to the profile (at most {MAX_TARGETS} processes)")
        })
}

/// Stop sampling `pid` (it ended); a no-op if it was not a target.
pub fn remove_target(ebpf: &mut Ebpf, pid: u32) {
    if let Ok(mut t) = targets(ebpf) {
        let _ = t.remove(&pid);
    }
}

/// Processes the kernel side can sample at once (`PROFILE_TARGETS`).
pub const MAX_TARGETS: usize = 1024;

/// Every sampled stack so far, with its kernel key (to remove it once it is kept).
pub fn stacks(ebpf: &Ebpf) -> anyhow::Result<Vec<(StackKey, SampledStack)>> {
    let m: HashMap<&MapData, StackKey, StackSamples> = HashMap::try_from(
        ebpf.map("GROWTH_STACKS")
            .context("map GROWTH_STACKS missing")?,
    )?;
    let mut out = Vec::new();
    for entry in m.iter() {
        let (k, v) = entry.context("reading GROWTH_STACKS")?;
        let n = (k.nframes as usize).min(v.frames.len());
        out.push((
            k,
            SampledStack {
                pid: k.tgid,
                kind: growth_kind(k.kind),
                samples: v.samples,
                frames: v.frames[..n].to_vec(),
            },
        ));
    }
    Ok(out)
}

/// Forget stacks (their process ended and their samples are kept in userspace), so the
/// kernel's table does not fill with the dead.
pub fn remove_stacks(ebpf: &mut Ebpf, keys: &[StackKey]) -> anyhow::Result<()> {
    let mut m: HashMap<&mut MapData, StackKey, StackSamples> = HashMap::try_from(
        ebpf.map_mut("GROWTH_STACKS")
            .context("map GROWTH_STACKS missing")?,
    )?;
    for k in keys {
        // Already gone is fine: nothing else removes them, but a retry must not fail.
        let _ = m.remove(k);
    }
    Ok(())
}

/// The kernel's `GROWTH_*` as the model's kind (an unknown value, from a newer object, is
/// treated as mapped: never counted as resident growth).
fn growth_kind(kind: u16) -> GrowthKind {
    match kind {
        GROWTH_MAPPED => GrowthKind::Mapped,
        GROWTH_BRK => GrowthKind::Brk,
        GROWTH_TOUCHED => GrowthKind::Touched,
        _ => GrowthKind::Mapped,
    }
}

pub fn counters(ebpf: &Ebpf) -> anyhow::Result<ProfileCounters> {
    let m: PerCpuArray<&MapData, u64> = PerCpuArray::try_from(
        ebpf.map("PROFILE_COUNTERS")
            .context("map PROFILE_COUNTERS missing")?,
    )?;
    let sum = |i: u32| -> anyhow::Result<u64> {
        Ok(m.get(&i, 0)
            .with_context(|| format!("reading PROFILE_COUNTERS[{i}]"))?
            .iter()
            .sum())
    };
    Ok(ProfileCounters {
        faults: sum(PCTR_FAULTS)?,
        samples: sum(PCTR_SAMPLES)?,
        truncated: sum(PCTR_TRUNCATED)?,
        collisions: sum(PCTR_COLLISIONS)?,
        stacks_full: sum(PCTR_STACKS_FULL)?,
        stack_errors: sum(PCTR_STACK_ERRORS)?,
        growth_calls: sum(PCTR_GROWTH_CALLS)?,
    })
}

/// Quantiles of the exponential distribution with mean 1, at the midpoints of
/// `EXP_QUANTILE_COUNT` equal-probability bins, in 1/`EXP_QUANTILE_SCALE`ths: -ln(1 - p).
pub fn exponential_quantiles() -> Vec<u32> {
    let n = f64::from(EXP_QUANTILE_COUNT);
    (0..EXP_QUANTILE_COUNT)
        .map(|i| {
            let p = (f64::from(i) + 0.5) / n;
            (-(1.0 - p).ln() * EXP_QUANTILE_SCALE as f64).round() as u32
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_quantiles_have_mean_one() {
        let q = exponential_quantiles();
        let mean = q.iter().map(|&v| f64::from(v)).sum::<f64>() / q.len() as f64;
        // The midpoint rule cuts the tail a little: within 2% of the mean.
        assert!(
            (mean / EXP_QUANTILE_SCALE as f64 - 1.0).abs() < 0.02,
            "mean {mean}"
        );
        assert!(q.windows(2).all(|w| w[0] <= w[1]), "increasing");
        assert!(q[0] < 10 && q[255] > 5 * EXP_QUANTILE_SCALE as u32);
    }
}
