//! The growth-site profiler's kernel side (tracer-ebpf/src/programs/profile.rs): loads the
//! object with every other map shrunk to nothing, attaches only the page-fault program, and
//! hands userspace the sampled stacks as plain values. Independent of a running `record` or
//! daemon: it is a separate load.
use std::path::Path;

use anyhow::{Context as _, anyhow};
use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, MapData, PerCpuArray},
};
use tracer_common::{
    EXP_QUANTILE_COUNT, EXP_QUANTILE_SCALE, PCTR_COLLISIONS, PCTR_FAULTS, PCTR_SAMPLES,
    PCTR_STACK_ERRORS, PCTR_STACKS_FULL, PCTR_TRUNCATED, ProfileTarget, StackKey, StackSamples,
};

use crate::{
    kernel::{loader, preflight},
    util::error::UsageError,
};

/// Maps the profiler does not use, shrunk so that loading the object costs no memory.
const UNUSED_MAPS: [&str; 3] = ["PROCS", "PENDING", "MM_OWNER"];

/// One sampled stack of one process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SampledStack {
    pub pid: u32,
    pub samples: u64,
    /// User return addresses, innermost first.
    pub frames: Vec<u64>,
}

pub use crate::model::growth::ProfileCounters;

pub struct Profiler {
    ebpf: Ebpf,
}

impl Profiler {
    /// Load and attach; `mean_bytes` is the mean sampling interval.
    pub fn start(host_root: &Path, mean_bytes: u64) -> anyhow::Result<Self> {
        preflight::check_privileges()?;
        let tfs = preflight::locate_tracefs(host_root)?;
        preflight::raise_memlock();
        let error_code = fault_error_code_offset(&tfs)?;
        let mut l = EbpfLoader::new();
        configure(&mut l, &error_code, &mean_bytes);
        for m in UNUSED_MAPS {
            l.map_max_entries(m, 1);
        }
        let mut ebpf = l
            .load(loader::OBJECT)
            .context("loading the eBPF object into the kernel")?;
        init(&mut ebpf)?;
        loader::attach_tp(&mut ebpf, PROGRAM, "exceptions", "page_fault_user")?;
        Ok(Self { ebpf })
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

/// The page-fault program (tracer-ebpf/src/programs/profile.rs).
pub const PROGRAM: &str = "page_fault_user";

/// Where `error_code` is in the page-fault record; a usage error on a kernel without the
/// tracepoint (x86 has it).
pub fn fault_error_code_offset(tfs: &crate::kernel::tracefs::TraceFs) -> anyhow::Result<u32> {
    if !tfs.has_event("exceptions", "page_fault_user") {
        return Err(anyhow!(UsageError::new(
            "tracepoint exceptions:page_fault_user not available on this kernel (x86 has it): growth sites cannot be profiled"
        )));
    }
    tfs.format("exceptions", "page_fault_user")?
        .offset("error_code")
}

/// Set the page-fault program's globals before the object is loaded.
pub fn configure<'a>(l: &mut EbpfLoader<'a>, error_code_offset: &'a u32, mean_bytes: &'a u64) {
    l.override_global("OFF_FAULT_ERROR_CODE", error_code_offset, true)
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
        .insert(pid, ProfileTarget { countdown }, 0)
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
