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

/// The profiler's own health: what it saw and what it could not keep.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ProfileCounters {
    /// First-touch page faults of the targets.
    pub faults: u64,
    pub samples: u64,
    /// Stacks deeper than the frames kept (kept truncated).
    pub truncated: u64,
    /// Samples dropped: two stacks with one hash, the stack table full, no user stack.
    pub collisions: u64,
    pub stacks_full: u64,
    pub stack_errors: u64,
}

pub struct Profiler {
    ebpf: Ebpf,
}

impl Profiler {
    /// Load and attach; `mean_bytes` is the mean sampling interval.
    pub fn start(host_root: &Path, mean_bytes: u64) -> anyhow::Result<Self> {
        preflight::check_privileges()?;
        let tfs = preflight::locate_tracefs(host_root)?;
        preflight::raise_memlock();
        if !tfs.has_event("exceptions", "page_fault_user") {
            return Err(anyhow!(UsageError::new(
                "tracepoint exceptions:page_fault_user not available on this kernel (x86 has it): growth sites cannot be profiled"
            )));
        }
        let error_code = tfs
            .format("exceptions", "page_fault_user")?
            .offset("error_code")?;
        let mut l = EbpfLoader::new();
        l.override_global("OFF_FAULT_ERROR_CODE", &error_code, true)
            .override_global("PROFILE_MEAN_BYTES", &mean_bytes, true);
        for m in UNUSED_MAPS {
            l.map_max_entries(m, 1);
        }
        let mut ebpf = l
            .load(loader::OBJECT)
            .context("loading the eBPF object into the kernel")?;
        let mut q: Array<&mut MapData, u32> = Array::try_from(
            ebpf.map_mut("EXP_QUANTILES")
                .context("map EXP_QUANTILES missing")?,
        )?;
        for (i, v) in exponential_quantiles().into_iter().enumerate() {
            q.set(i as u32, v, 0).context("writing EXP_QUANTILES")?;
        }
        loader::attach_tp(
            &mut ebpf,
            "page_fault_user",
            "exceptions",
            "page_fault_user",
        )?;
        Ok(Self { ebpf })
    }

    /// Sample `pid` from now on; its first sample comes after a random share of the mean.
    pub fn add_target(&mut self, pid: u32, mean_bytes: u64) -> anyhow::Result<()> {
        let mut t: HashMap<&mut MapData, u32, ProfileTarget> = HashMap::try_from(
            self.ebpf
                .map_mut("PROFILE_TARGETS")
                .context("map PROFILE_TARGETS missing")?,
        )?;
        let start = exponential_quantiles()[(pid as usize * 97) % EXP_QUANTILE_COUNT as usize];
        let countdown = (mean_bytes * u64::from(start) / EXP_QUANTILE_SCALE) as i64;
        t.insert(pid, ProfileTarget { countdown }, 0)
            .with_context(|| format!("adding pid {pid} to the profile (at most 1024 processes)"))
    }

    /// Every sampled stack so far.
    pub fn stacks(&self) -> anyhow::Result<Vec<SampledStack>> {
        let m: HashMap<&MapData, StackKey, StackSamples> = HashMap::try_from(
            self.ebpf
                .map("GROWTH_STACKS")
                .context("map GROWTH_STACKS missing")?,
        )?;
        let mut out = Vec::new();
        for entry in m.iter() {
            let (k, v) = entry.context("reading GROWTH_STACKS")?;
            let n = (k.nframes as usize).min(v.frames.len());
            out.push(SampledStack {
                pid: k.tgid,
                samples: v.samples,
                frames: v.frames[..n].to_vec(),
            });
        }
        Ok(out)
    }

    pub fn counters(&self) -> anyhow::Result<ProfileCounters> {
        let m: PerCpuArray<&MapData, u64> = PerCpuArray::try_from(
            self.ebpf
                .map("PROFILE_COUNTERS")
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
