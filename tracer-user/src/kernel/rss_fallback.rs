//! RSS from /proc for the entries whose kernel figures are not exact: while the overhead
//! budget has the rss_stat hook paused (a page-fault storm), and for an entry not yet refilled
//! since it was resumed (see `RssGeneration`). /proc/PID/status is exact at the moment it
//! is read; its cost is one read per such process and interval, whatever the fault rate.
use crate::{
    host::procfs::StatusMem,
    model::counters::{Counters, Rss},
};

/// Where an entry's RSS came from this round.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RssOrigin {
    /// /proc/PID/status, read just now.
    Proc,
    /// The process has no address space any more (it is exiting, or /proc is gone): its last
    /// sample's figures, the latest exact ones there are.
    LastSample,
    /// Neither: the kernel's figures, as they were when they were last exact.
    Kernel,
}

/// Replace `st`'s RSS by `now` (from /proc) or else by the previous sample's `prev`. The
/// private peak never goes down: it is the highest of the kernel's (exact until the pause),
/// the previous sample's and the new figures.
pub fn patch(st: &mut Counters, now: Option<&StatusMem>, prev: Option<&Counters>) -> RssOrigin {
    let origin = match (now.filter(|m| m.has_mm), prev) {
        (Some(m), _) => {
            st.rss = Rss {
                anon: m.rss_anon,
                file: m.rss_file,
                shmem: m.rss_shmem,
                swap: m.swap,
            };
            RssOrigin::Proc
        }
        (None, Some(p)) => {
            st.rss = p.rss;
            RssOrigin::LastSample
        }
        (None, None) => RssOrigin::Kernel,
    };
    let private = st.rss.private();
    st.peak_private = st
        .peak_private
        .max(private)
        .max(prev.map_or(0, |p| p.peak_private));
    origin
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn stale() -> Counters {
        let mut st = Counters::default();
        st.rss.anon = 10 * MIB;
        st.rss.file = 3 * MIB;
        st.peak_private = 10 * MIB;
        st
    }

    #[test]
    fn proc_figures_replace_the_stale_ones_and_raise_the_peak() {
        let mut st = stale();
        let now = StatusMem {
            rss_anon: 50 * MIB,
            rss_file: 4 * MIB,
            rss_shmem: MIB,
            swap: 2 * MIB,
            ppid: 1,
            has_mm: true,
        };
        assert_eq!(patch(&mut st, Some(&now), None), RssOrigin::Proc);
        assert_eq!(st.rss.anon, 50 * MIB);
        assert_eq!(st.rss.file, 4 * MIB);
        assert_eq!(st.rss.shmem, MIB);
        assert_eq!(st.rss.swap, 2 * MIB);
        assert_eq!(st.peak_private, 53 * MIB);
    }

    #[test]
    fn the_peak_of_a_previous_poll_is_kept_when_memory_falls() {
        let mut prev = stale();
        prev.peak_private = 80 * MIB;
        let mut st = stale();
        let now = StatusMem {
            rss_anon: 20 * MIB,
            has_mm: true,
            ..StatusMem::default()
        };
        patch(&mut st, Some(&now), Some(&prev));
        assert_eq!(st.rss.anon, 20 * MIB);
        assert_eq!(st.peak_private, 80 * MIB);
    }

    #[test]
    fn without_an_address_space_the_last_sample_stands() {
        let mut prev = stale();
        prev.rss.anon = 70 * MIB;
        prev.peak_private = 70 * MIB;
        let mut st = stale();
        let exiting = StatusMem::default();
        assert_eq!(
            patch(&mut st, Some(&exiting), Some(&prev)),
            RssOrigin::LastSample
        );
        assert_eq!(st.rss.anon, 70 * MIB);
        assert_eq!(st.peak_private, 70 * MIB);
        let mut alone = stale();
        assert_eq!(patch(&mut alone, None, None), RssOrigin::Kernel);
        assert_eq!(alone.rss, stale().rss);
    }
}
