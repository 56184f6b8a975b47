//! The only code that reads kernel maps: turns the kernel's cumulative per-process
//! counters into a snapshot each interval, and keeps the kernel map tidy (seeding
//! processes that predate us, removing entries whose exit was missed).
use anyhow::Context as _;
use aya::maps::{HashMap, MapData, PerCpuArray};
use tracer_ebpf::{CTR_COUNT, ProcStats};

/// One read of the kernel state.
pub struct Snapshot {
    /// CLOCK_MONOTONIC seconds when the read started.
    pub t_mono: f64,
    pub procs: Vec<(u32, ProcStats)>,
    /// Kernel health counters summed over CPUs, indexed like `COUNTER_NAMES`.
    pub counters: [u64; CTR_COUNT as usize],
    /// Capacity of the kernel's per-process map.
    pub procs_capacity: u32,
}

impl Snapshot {}

pub struct Sampler {
    procs: HashMap<MapData, u32, ProcStats>,
    counters: PerCpuArray<MapData, u64>,
    capacity: u32,
}

impl Sampler {
    pub fn new(ebpf: &mut aya::Ebpf, capacity: u32) -> anyhow::Result<Self> {
        let procs = HashMap::try_from(ebpf.take_map("PROCS").context("map PROCS missing")?)?;
        let counters =
            PerCpuArray::try_from(ebpf.take_map("COUNTERS").context("map COUNTERS missing")?)?;
        Ok(Self {
            procs,
            counters,
            capacity,
        })
    }

    pub fn sample(&self) -> Snapshot {
        let t_mono = crate::clock::monotonic_secs();
        let mut procs = Vec::with_capacity(256);
        for item in self.procs.iter() {
            match item {
                Ok(kv) => procs.push(kv),
                // An entry removed between get_next_key and lookup: the process just exited.
                Err(_) => continue,
            }
        }
        let mut counters = [0u64; CTR_COUNT as usize];
        for (i, slot) in counters.iter_mut().enumerate() {
            if let Ok(per_cpu) = self.counters.get(&(i as u32), 0) {
                *slot = per_cpu.iter().sum();
            }
        }
        Snapshot {
            t_mono,
            procs,
            counters,
            procs_capacity: self.capacity,
        }
    }

    /// Put a process that predates us into the kernel map so later RSS changes made on
    /// its behalf (curr=0) and its exit are tracked. Never overwrites a kernel entry.
    pub fn seed(&mut self, tgid: u32, stats: &ProcStats) {
        let _ = self.procs.insert(tgid, stats, 1 /* BPF_NOEXIST */);
    }

    /// Delete the kernel entries the exit program flagged (their exit event found the ring
    /// buffer full), now that their final counters have been read.
    pub fn forget_exited(&mut self, snap: &Snapshot) {
        for (pid, st) in &snap.procs {
            if st.flags & tracer_ebpf::PROC_FLAG_EXITED != 0 {
                let _ = self.procs.remove(pid);
            }
        }
    }

    /// Whether the kernel map still has an entry for `tgid`.
    pub fn holds(&self, tgid: u32) -> bool {
        self.procs.get(&tgid, 0).is_ok()
    }

    /// Drop the kernel entry of a process that is gone (its exit event was lost or it
    /// died before we attached).
    pub fn forget(&mut self, tgid: u32) {
        let _ = self.procs.remove(&tgid);
    }
}
