//! The kernel side's health counters (full maps, lost events, failed reads, ...), summed over
//! CPUs, and the one definition of which of them are losses.
use std::collections::BTreeMap;

use tracer_common::{
    COUNTER_NAMES, CTR_COUNT, CTR_PENDING_FULL, CTR_PROCS_FULL, CTR_READ_ERRORS, CTR_RINGBUF_FULL,
};

/// Counters that mean data was lost or missed: worth an operator's attention. The others
/// are normal (`rss_unattributed`: changes to an mm whose owner was never seen) or activity
/// (`reclaim_events`).
const LOSSY: [u32; 4] = [
    CTR_PROCS_FULL,
    CTR_PENDING_FULL,
    CTR_RINGBUF_FULL,
    CTR_READ_ERRORS,
];

/// Whether the health counter called `name` counts losses (names as in traces and metrics).
pub fn is_lossy(name: &str) -> bool {
    LOSSY.iter().any(|&i| COUNTER_NAMES[i as usize] == name)
}

/// One reading of the kernel's health counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Health {
    values: [u64; CTR_COUNT as usize],
}

impl Health {
    /// From the values of the kernel's `COUNTERS` array, in its index order.
    pub fn from_kernel(values: [u64; CTR_COUNT as usize]) -> Self {
        Self { values }
    }

    /// Each counter's name with its value, in the kernel's order.
    pub fn named(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        COUNTER_NAMES
            .iter()
            .copied()
            .zip(self.values.iter().copied())
    }

    /// The lossy counters by name, in the kernel's order.
    pub fn lossy(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        self.named().filter(|(name, _)| is_lossy(name))
    }

    /// Everything lost or missed so far.
    pub fn losses(&self) -> u64 {
        self.lossy().map(|(_, v)| v).sum()
    }

    /// Name -> value, as the trace's health and summary records write them.
    pub fn to_map(&self) -> BTreeMap<String, u64> {
        self.named().map(|(n, v)| (n.to_string(), v)).collect()
    }

    /// The value of the counter called `name` (0 when there is none).
    pub fn get(&self, name: &str) -> u64 {
        self.named().find(|(n, _)| *n == name).map_or(0, |(_, v)| v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn losses_are_the_four_lossy_counters() {
        let h = Health::from_kernel([1, 2, 4, 8, 16, 32, 64]);
        assert_eq!(h.losses(), 1 + 2 + 4 + 32);
        assert!(is_lossy("ringbuf_full") && is_lossy("kernel_read_errors"));
        assert!(!is_lossy("rss_unattributed") && !is_lossy("reclaim_events"));
        assert_eq!(h.get("exit_without_enter"), 16);
        let map = h.to_map();
        assert_eq!(map.len(), 7);
        assert_eq!(map["procs_map_full"], 1);
    }
}
