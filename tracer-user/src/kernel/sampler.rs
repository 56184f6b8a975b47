//! The only code that reads kernel maps: turns the kernel's cumulative per-process
//! counters into a snapshot each interval, and keeps the kernel map tidy (seeding
//! processes that predate us, removing entries whose exit was missed).
use std::sync::{
    Arc,
    atomic::{AtomicU32, Ordering},
};

use anyhow::Context as _;
use aya::maps::{Array, HashMap, MapData, PerCpuArray};
use tracer_common::{CTR_COUNT, HOT_SLOTS, HotCounts, ProcStats, RSS_SLOTS, RssSlot};

use crate::{host::procfs::StatusMem, kernel::health::Health, model::counters::Counters};

/// One read of the kernel state.
pub struct Snapshot {
    /// CLOCK_MONOTONIC seconds when the read started.
    pub t_mono: f64,
    /// Each process's counters; `rss_exact` tells whether their RSS is current.
    pub procs: Vec<(u32, Counters)>,
    /// Kernel health counters summed over CPUs.
    pub counters: Health,
    /// Capacity of the kernel's per-process map.
    pub procs_capacity: u32,
    /// Go processes' runtime figures this round (read from their memory by the live source,
    /// host/goruntime; from samples' `go` objects in a replay). Empty from the sampler.
    pub go: Vec<(u32, crate::model::go::GoFigures)>,
}

/// The RSS generation userspace last wrote to `RSS_GEN` (see `ProcStats::rss_gen`), shared
/// by the sampler (which writes it) and the event reader (which judges an exit's final
/// counters by it as it decodes them).
#[derive(Clone, Debug, Default)]
pub struct RssGeneration(Arc<AtomicU32>);

impl RssGeneration {
    /// Whether an entry's RSS figures are exact: filled whole since rss_stat was last
    /// (re)attached, and kept current by it since. Otherwise read /proc.
    pub fn is_exact(&self, stats: &ProcStats) -> bool {
        let current = self.0.load(Ordering::Relaxed);
        current != 0 && stats.rss_gen == current
    }

    fn current(&self) -> u32 {
        self.0.load(Ordering::Relaxed)
    }

    fn set(&self, generation: u32) {
        self.0.store(generation, Ordering::Relaxed);
    }
}

pub struct Sampler {
    procs: HashMap<MapData, u32, ProcStats>,
    /// The per-CPU madvise/munmap slots, when the programs count there (see
    /// `tracer_common::HOT_SLOTS`).
    hot: Option<PerCpuArray<MapData, HotCounts>>,
    /// Where the rss_stat programs keep a process's RSS while it holds a slot (see
    /// `tracer_common::RSS_SLOTS`).
    rss_slots: Array<MapData, RssSlot>,
    counters: PerCpuArray<MapData, u64>,
    capacity: u32,
    /// `RSS_GEN`, and the value userspace last wrote there (see `ProcStats::rss_gen`).
    rss_gen_map: Array<MapData, u32>,
    rss_gen: RssGeneration,
    /// The last non-zero generation written.
    last_gen: u32,
    /// Entries read by the previous round: the next snapshot is sized from it.
    last_len: usize,
}

/// Write the kernel's RSS generation (before the programs are attached, and by the sampler).
pub fn set_rss_gen(ebpf: &mut aya::Ebpf, generation: u32) -> anyhow::Result<()> {
    let mut map: Array<&mut MapData, u32> =
        Array::try_from(ebpf.map_mut("RSS_GEN").context("map RSS_GEN missing")?)?;
    map.set(0, generation, 0).context("writing RSS_GEN")
}

impl Sampler {
    pub fn new(ebpf: &mut aya::Ebpf, capacity: u32, hot_slots: bool) -> anyhow::Result<Self> {
        let procs = HashMap::try_from(ebpf.take_map("PROCS").context("map PROCS missing")?)?;
        let hot = match hot_slots {
            true => Some(PerCpuArray::try_from(
                ebpf.take_map("HOT").context("map HOT missing")?,
            )?),
            false => None,
        };
        let rss_slots = Array::try_from(
            ebpf.take_map("RSS_SLOTS")
                .context("map RSS_SLOTS missing")?,
        )?;
        let counters =
            PerCpuArray::try_from(ebpf.take_map("COUNTERS").context("map COUNTERS missing")?)?;
        let rss_gen_map =
            Array::try_from(ebpf.take_map("RSS_GEN").context("map RSS_GEN missing")?)?;
        let generation = rss_gen_map.get(&0, 0).context("reading RSS_GEN")?;
        let rss_gen = RssGeneration::default();
        rss_gen.set(generation);
        Ok(Self {
            procs,
            hot,
            rss_slots,
            counters,
            capacity,
            rss_gen_map,
            rss_gen,
            last_gen: generation,
            last_len: 0,
        })
    }

    /// The current RSS generation, for the event reader.
    pub fn rss_generation(&self) -> RssGeneration {
        self.rss_gen.clone()
    }

    /// The RSS generation now: 0 while rss_stat is paused, a new value at each resume.
    pub fn rss_generation_now(&self) -> u32 {
        self.rss_gen.current()
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
        self.rss_gen.set(generation);
        Ok(())
    }

    pub fn sample(&mut self) -> Snapshot {
        let t_mono = crate::util::clock::monotonic_secs();
        // Sized from the previous round, with room for some newcomers: a snapshot of 10,000
        // processes is 3 MiB, and growing it by doubling would copy it and leave up to half
        // of it unused.
        let mut procs = Vec::with_capacity(self.last_len + self.last_len / 16 + 64);
        for item in self.procs.iter() {
            match item {
                Ok((pid, st)) => {
                    let st = self.with_rss_slot(pid, st);
                    procs.push((
                        pid,
                        crate::kernel::convert::counters(&st, self.rss_gen.is_exact(&st)),
                    ))
                }
                // An entry removed between get_next_key and lookup: the process just exited.
                Err(_) => continue,
            }
        }
        // The slots are read after the entries: a process whose exit folds its slots into its
        // entry in between is then short of them in this snapshot (its exit brings the final
        // counters), never counted twice.
        self.add_hot_slots(&mut procs);
        self.last_len = procs.len();
        let mut counters = [0u64; CTR_COUNT as usize];
        for (i, slot) in counters.iter_mut().enumerate() {
            if let Ok(per_cpu) = self.counters.get(&(i as u32), 0) {
                *slot = per_cpu.iter().sum();
            }
        }
        Snapshot {
            t_mono,
            procs,
            counters: Health::from_kernel(counters),
            procs_capacity: self.capacity,
            go: Vec::new(),
        }
    }

    /// The entry of `pid` with its RSS figures from its RSS slot, when they live there.
    fn with_rss_slot(&self, pid: u32, st: ProcStats) -> ProcStats {
        if st.rss_in_slot == 0 {
            return st;
        }
        if let Ok(slot) = self.rss_slots.get(&(pid % RSS_SLOTS), 0)
            && let Some(merged) = slot.merged_into(pid, &st)
        {
            return merged;
        }
        // Folded back into the entry since it was read (exec, exit): read it again.
        self.procs.get(&pid, 0).unwrap_or(st)
    }

    /// Add each process's per-CPU slots (madvise, munmap, mmap, mremap) to its counters.
    fn add_hot_slots(&self, procs: &mut [(u32, Counters)]) {
        let Some(hot) = &self.hot else { return };
        let mut owned: std::collections::HashMap<u32, HotCounts> = std::collections::HashMap::new();
        for index in 0..HOT_SLOTS {
            let Ok(per_cpu) = hot.get(&index, 0) else {
                continue;
            };
            for slot in per_cpu.iter().filter(|s| s.tgid != 0) {
                owned.entry(slot.tgid).or_default().merge(slot);
            }
        }
        if owned.is_empty() {
            return;
        }
        for (pid, c) in procs.iter_mut() {
            if let Some(h) = owned.get(pid) {
                crate::kernel::convert::add_hot(c, h);
            }
        }
    }

    /// Put a process that predates us into the kernel map so later RSS changes made on
    /// its behalf (curr=0) and its exit are tracked. Never overwrites a kernel entry.
    /// `comm` and `mem` are what /proc says now; false for a process without an address
    /// space (a kernel thread), which is not tracked.
    pub fn seed(&mut self, tgid: u32, comm: &str, mem: &StatusMem, now_ns: u64) -> bool {
        let Some(stats) = crate::kernel::convert::seed(comm, mem, now_ns) else {
            return false;
        };
        // Read whole from /proc just now: as exact as a kernel fill.
        let stats = ProcStats {
            rss_gen: self.rss_gen.current(),
            ..stats
        };
        let _ = self.procs.insert(tgid, stats, 1 /* BPF_NOEXIST */);
        true
    }

    /// Delete the kernel entries the exit program flagged (their exit event found the ring
    /// buffer full), now that their final counters have been read.
    pub fn forget_exited(&mut self, snap: &Snapshot) {
        for (pid, st) in &snap.procs {
            if st.exited {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rss_is_exact_only_at_the_current_non_zero_generation() {
        let generation = RssGeneration::default();
        let entry = |rss_gen| ProcStats {
            rss_gen,
            ..ProcStats::default()
        };
        assert!(!generation.is_exact(&entry(0)), "0: the hook is paused");
        generation.set(3);
        assert!(generation.is_exact(&entry(3)));
        assert!(
            !generation.is_exact(&entry(2)),
            "not refilled since resumed"
        );
        let shared = generation.clone();
        generation.set(0);
        assert!(
            !shared.is_exact(&entry(3)),
            "the event reader sees the pause"
        );
    }
}
