//! /proc/meminfo: where the node's memory is, by kind, in bytes.
use serde::Serialize;

/// The kinds of /proc/meminfo the node accounting follows (bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(default)]
pub struct NodeMemory {
    pub total: u64,
    pub free: u64,
    pub available: u64,
    pub buffers: u64,
    /// Page cache, shmem included (as the kernel counts it).
    pub cached: u64,
    pub anon: u64,
    pub file: u64,
    pub shmem: u64,
    pub slab_reclaimable: u64,
    pub slab_unreclaimable: u64,
    pub kernel_stack: u64,
    pub page_tables: u64,
    pub percpu: u64,
    pub vmalloc_used: u64,
}

impl NodeMemory {
    /// Parse the text of /proc/meminfo ("Key:   123 kB" lines; unknown keys are ignored, a
    /// missing key reads 0, as on kernels that predate it).
    pub fn parse(text: &str) -> Self {
        let mut m = Self::default();
        for line in text.lines() {
            let Some((key, rest)) = line.split_once(':') else {
                continue;
            };
            let mut words = rest.split_whitespace();
            let Some(value) = words.next().and_then(|v| v.parse::<u64>().ok()) else {
                continue;
            };
            let bytes = match words.next() {
                Some("kB") => value.saturating_mul(1024),
                _ => value,
            };
            let slot = match key {
                "MemTotal" => &mut m.total,
                "MemFree" => &mut m.free,
                "MemAvailable" => &mut m.available,
                "Buffers" => &mut m.buffers,
                "Cached" => &mut m.cached,
                "AnonPages" => &mut m.anon,
                "Shmem" => &mut m.shmem,
                "SReclaimable" => &mut m.slab_reclaimable,
                "SUnreclaim" => &mut m.slab_unreclaimable,
                "KernelStack" => &mut m.kernel_stack,
                "PageTables" => &mut m.page_tables,
                "Percpu" => &mut m.percpu,
                "VmallocUsed" => &mut m.vmalloc_used,
                _ => continue,
            };
            *slot = bytes;
        }
        // File-backed page cache: what Cached holds beyond shmem.
        m.file = m.cached.saturating_sub(m.shmem);
        m
    }

    /// Used memory as free(1) counts it: total − free − buffers − cache − reclaimable slab.
    pub fn used(&self) -> u64 {
        self.total
            .saturating_sub(self.free)
            .saturating_sub(self.buffers)
            .saturating_sub(self.cached)
            .saturating_sub(self.slab_reclaimable)
    }

    /// Kernel memory that neither reclaim nor a process's exit gives back by itself.
    pub fn kernel_unreclaimable(&self) -> u64 {
        self.slab_unreclaimable + self.kernel_stack + self.page_tables + self.percpu
    }

    /// Used memory that neither processes nor the kernel's own accounting explain: used
    /// minus the processes' anonymous memory (`process_anon`, the sum of their RssAnon) and
    /// minus [`Self::kernel_unreclaimable`]. Shmem and page cache are outside `used` already.
    /// Anonymous pages shared after fork are counted by each process, so the sum can exceed
    /// what they hold: the residual saturates at 0 rather than going negative.
    pub fn unattributed(&self, process_anon: u64) -> u64 {
        self.used()
            .saturating_sub(process_anon)
            .saturating_sub(self.kernel_unreclaimable())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "MemTotal:       24576000 kB
MemFree:        20000000 kB
MemAvailable:   22000000 kB
Buffers:          100000 kB
Cached:          2000000 kB
SwapCached:            0 kB
AnonPages:       1500000 kB
Shmem:            300000 kB
KReclaimable:     250000 kB
Slab:             400000 kB
SReclaimable:     250000 kB
SUnreclaim:       150000 kB
KernelStack:       10000 kB
PageTables:        20000 kB
Percpu:             5000 kB
VmallocUsed:       30000 kB
HugePages_Total:       0
";

    #[test]
    fn reads_every_kind_in_bytes() {
        let m = NodeMemory::parse(SAMPLE);
        assert_eq!(m.total, 24_576_000 * 1024);
        assert_eq!(m.anon, 1_500_000 * 1024);
        assert_eq!(m.shmem, 300_000 * 1024);
        assert_eq!(m.file, 1_700_000 * 1024, "Cached minus Shmem");
        assert_eq!(m.slab_reclaimable, 250_000 * 1024);
        assert_eq!(m.slab_unreclaimable, 150_000 * 1024);
        assert_eq!(m.kernel_stack, 10_000 * 1024);
        assert_eq!(m.page_tables, 20_000 * 1024);
        assert_eq!(m.percpu, 5_000 * 1024);
        assert_eq!(m.vmalloc_used, 30_000 * 1024);
    }

    #[test]
    fn used_and_unattributed_follow_free_1() {
        let m = NodeMemory::parse(SAMPLE);
        // 24576000 - 20000000 - 100000 - 2000000 - 250000 = 2226000 kB
        assert_eq!(m.used(), 2_226_000 * 1024);
        // minus processes' anon 1500000 and kernel 150000+10000+20000+5000 = 541000 kB
        assert_eq!(m.unattributed(1_500_000 * 1024), 541_000 * 1024);
        assert_eq!(m.unattributed(u64::MAX), 0, "saturates, never negative");
    }

    #[test]
    fn this_machines_meminfo_adds_up() {
        let m = NodeMemory::parse(&std::fs::read_to_string("/proc/meminfo").unwrap());
        assert!(
            m.total > 0 && m.free <= m.total && m.used() <= m.total,
            "{m:?}"
        );
        assert!(m.slab_unreclaimable > 0 && m.page_tables > 0, "{m:?}");
    }

    #[test]
    fn garbage_and_missing_keys_read_zero() {
        let m = NodeMemory::parse("MemTotal: lots\nnonsense\nPercpu: 8 kB\n");
        assert_eq!(m.total, 0);
        assert_eq!(m.percpu, 8192);
        assert_eq!(m.used(), 0);
    }
}
