//! Fixed-capacity time series: one per process, so memory stays bounded however long a
//! process lives. A ring buffer over a Vec that grows on demand up to its capacity, so
//! idle processes (one or two samples) cost almost nothing.
//!
//! The ring grows itself instead of leaving it to VecDeque: VecDeque's growth starts at 4
//! items and doubles past the limit (300 fine samples would hold room for 512), and a node
//! runs thousands of sleeping processes with one sample each.
use std::collections::VecDeque;

#[derive(Clone, Debug)]
pub struct Ring<T> {
    items: VecDeque<T>,
    capacity: usize,
}

impl<T> Ring<T> {
    pub fn new(capacity: usize) -> Self {
        Self {
            items: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    /// Append, dropping the oldest item when full.
    pub fn push(&mut self, item: T) {
        let len = self.items.len();
        if len == self.capacity {
            self.items.pop_front();
        } else if len == self.items.capacity() {
            // Double (from one item), never past the limit: amortised O(1) like VecDeque's
            // own growth, without its minimum of 4 or its overshoot.
            self.items
                .reserve_exact(len.max(1).min(self.capacity - len));
        }
        self.items.push_back(item);
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    #[cfg(test)]
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn last(&self) -> Option<&T> {
        self.items.back()
    }

    pub fn last_mut(&mut self) -> Option<&mut T> {
        self.items.back_mut()
    }

    pub fn first(&self) -> Option<&T> {
        self.items.front()
    }

    /// Oldest first.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &T> + ExactSizeIterator {
        self.items.iter()
    }

    /// Release spare allocation (after a burst, or when a process dies).
    pub fn shrink(&mut self) {
        self.items.shrink_to_fit();
    }
}

/// One observation of a process, compact (64 bytes): what the detector and the live views
/// need. The full kernel counters go to the trace, not here.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Sample {
    /// Seconds since the session started.
    pub t: f64,
    /// RSS by kind (bytes).
    pub rss: crate::model::counters::Rss,
    /// Cumulative bytes obtained: mmap (anon+file, committed), brk and mremap growth.
    pub alloc: u64,
    /// Cumulative bytes given back: munmap, madvise releases, brk and mremap shrink.
    pub freed: u64,
    /// Cumulative traced syscalls.
    pub calls: u64,
}

impl Sample {
    /// Leak-relevant memory: anonymous + shared-memory + swapped-out pages. File pages are
    /// reclaimable page cache and are left out.
    pub fn private(&self) -> u64 {
        self.rss.private()
    }

    pub fn total_rss(&self) -> u64 {
        self.rss.total()
    }
}

/// A coarse bucket (one per `COARSE_SECS`) kept for hours: the trough and peak of private
/// memory in that span, so slow leaks and GC saw-tooths stay visible long after the fine
/// samples have rolled over.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Bucket {
    pub t: f64,
    pub min_private: u64,
    pub max_private: u64,
    pub last_private: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_keeps_the_newest() {
        let mut r = Ring::new(3);
        for i in 0..10 {
            r.push(i);
        }
        assert_eq!(r.iter().copied().collect::<Vec<_>>(), vec![7, 8, 9]);
        assert_eq!(r.len(), 3);
        assert_eq!(r.first(), Some(&7));
        assert_eq!(r.last(), Some(&9));
    }

    #[test]
    fn ring_grows_exactly_up_to_its_limit() {
        let mut r: Ring<Sample> = Ring::new(300);
        r.push(Sample::default());
        assert_eq!(r.items.capacity(), 1, "one sample, room for one");
        for _ in 0..299 {
            r.push(Sample::default());
        }
        assert_eq!(r.len(), 300);
        assert_eq!(r.items.capacity(), 300, "no room past the limit");
        r.push(Sample::default());
        assert_eq!(r.items.capacity(), 300);
    }

    #[test]
    fn ring_grows_on_demand() {
        let mut r: Ring<u64> = Ring::new(1000);
        r.push(1);
        assert_eq!(r.len(), 1);
        assert_eq!(r.capacity(), 1000);
        let r0: Ring<u8> = Ring::new(0);
        assert_eq!(r0.capacity(), 1, "capacity is at least one");
    }

    #[test]
    fn private_excludes_file_pages() {
        let s = Sample {
            rss: crate::model::counters::Rss {
                file: 100,
                anon: 10,
                swap: 1,
                shmem: 5,
            },
            ..Sample::default()
        };
        assert_eq!(s.private(), 16);
        assert_eq!(s.total_rss(), 115);
    }
}
