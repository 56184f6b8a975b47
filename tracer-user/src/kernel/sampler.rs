//! The only code that reads kernel maps: turns the kernel's cumulative per-process
//! counters into a snapshot each interval, and keeps the kernel map tidy (seeding
//! processes that predate us, removing entries whose exit was missed).
use anyhow::Context as _;
use aya::maps::{Array, HashMap, MapData, PerCpuArray};
use tracer_common::{CTR_COUNT, ProcStats};

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
    /// `RSS_GEN`, and the value userspace last wrote there (see `ProcStats::rss_gen`).
    rss_gen_map: Array<MapData, u32>,
    rss_gen: u32,
    /// The last non-zero generation written.
    last_gen: u32,
}

/// Write the kernel's RSS generation (before the programs are attached, and by the sampler).
pub fn set_rss_gen(ebpf: &mut aya::Ebpf, generation: u32) -> anyhow::Result<()> {
    let mut map: Array<&mut MapData, u32> =
        Array::try_from(ebpf.map_mut("RSS_GEN").context("map RSS_GEN missing")?)?;
    map.set(0, generation, 0).context("writing RSS_GEN")
}

impl Sampler {
    pub fn new(ebpf: &mut aya::Ebpf, capacity: u32) -> anyhow::Result<Self> {
        let procs = HashMap::try_from(ebpf.take_map("PROCS").context("map PROCS missing")?)?;
        let counters =
            PerCpuArray::try_from(ebpf.take_map("COUNTERS").context("map COUNTERS missing")?)?;
        let rss_gen_map =
            Array::try_from(ebpf.take_map("RSS_GEN").context("map RSS_GEN missing")?)?;
        let rss_gen = rss_gen_map.get(&0, 0).context("reading RSS_GEN")?;
        Ok(Self {
            procs,
            counters,
            capacity,
            rss_gen_map,
            rss_gen,
            last_gen: rss_gen,
        })
    }

    /// Whether the kernel's RSS figures of this entry are exact: filled whole since rss_stat
    /// was last (re)attached, and kept current by it since. Otherwise read /proc.
    pub fn rss_exact(&self, stats: &ProcStats) -> bool {
        self.rss_gen != 0 && stats.rss_gen == self.rss_gen
    }

    /// The overhead budget paused the rss_stat hook: no kernel RSS figure is exact from now.
    pub fn rss_paused(&mut self) -> anyhow::Result<()> {
        self.write_rss_gen(0)
    }

    /// The rss_stat hook runs again: each entry is refilled whole at its next RSS change
    /// (until then it is not exact).
    pub fn rss_resumed(&mut self) -> anyhow::Result<()> {
        // Never 0 (paused) and never a value an entry may still carry from before.
        self.last_gen = self.last_gen.wrapping_add(1).max(1);
        self.write_rss_gen(self.last_gen)
    }

    fn write_rss_gen(&mut self, generation: u32) -> anyhow::Result<()> {
        self.rss_gen_map
            .set(0, generation, 0)
            .context("writing RSS_GEN")?;
        self.rss_gen = generation;
        Ok(())
    }

    pub fn sample(&self) -> Snapshot {
        let t_mono = crate::util::clock::monotonic_secs();
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
        // Read whole from /proc just now: as exact as a kernel fill.
        let stats = ProcStats {
            rss_gen: self.rss_gen,
            ..*stats
        };
        let _ = self.procs.insert(tgid, stats, 1 /* BPF_NOEXIST */);
    }

    /// Delete the kernel entries the exit program flagged (their exit event found the ring
    /// buffer full), now that their final counters have been read.
    pub fn forget_exited(&mut self, snap: &Snapshot) {
        for (pid, st) in &snap.procs {
            if st.flags & tracer_common::PROC_FLAG_EXITED != 0 {
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
