//! RSS from /proc for the entries whose kernel figures are not exact: while the overhead
//! budget has the rss_stat hook paused (a page-fault storm), and for an entry not yet refilled
//! since it was resumed (see `RssGeneration`). /proc/PID/status is exact at the moment it
//! is read; its cost is one read per such process and interval, whatever the fault rate.
//!
//! While the hook is paused every such entry is read each round: nothing else sees its RSS
//! change. Once it runs again, a reading taken since the resume stays true until the process's
//! RSS changes, and that change makes rss_stat refill the entry (it is exact from then on). So
//! [`Rereads`] holds those readings and reads each process again only every
//! [`REREAD_MIN_ROUNDS`]-[`REREAD_MAX_ROUNDS`] rounds (staggered by pid, so 10,000 sleeping
//! processes cost a few hundred reads a round, not 10,000), or at once when its kernel
//! counters moved.
use std::collections::HashMap;

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

/// A held reading is taken again after at least this many rounds...
pub const REREAD_MIN_ROUNDS: u64 = 15;
/// ...and at most this many (the period depends on the pid, to spread the reads).
pub const REREAD_MAX_ROUNDS: u64 = 30;

/// This process's period between two readings of a held entry.
fn reread_period(pid: u32) -> u64 {
    REREAD_MIN_ROUNDS + u64::from(pid) % (REREAD_MAX_ROUNDS - REREAD_MIN_ROUNDS + 1)
}

/// A summary of an entry's kernel counters other than RSS (which are stale while it is not
/// exact) and of its identity: when it changes, the process did something (or the pid is
/// another process's), and a held reading is not trusted.
pub fn fingerprint(c: &Counters) -> u64 {
    let words = [
        c.first_seen_ns,
        c.calls.mmap,
        c.calls.munmap,
        c.calls.brk,
        c.calls.mremap,
        c.calls.madvise,
        c.failed_calls,
        c.mapped_anon,
        c.mapped_file,
        c.reserved,
        c.unmapped,
        c.released,
        c.brk_grown,
        c.brk_shrunk,
        c.mremap_grown,
        c.mremap_shrunk,
        c.brk_current,
        c.reclaim_runs,
    ];
    // FNV-1a over the words: cheap, and a change in any of them changes it.
    words.iter().fold(0xcbf2_9ce4_8422_2325, |h: u64, w| {
        w.to_le_bytes()
            .iter()
            .fold(h, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
    })
}

/// A reading of /proc held for an entry.
#[derive(Clone, Copy, Debug)]
struct Held {
    /// The RSS generation current when read (see `RssGeneration`).
    generation: u32,
    round: u64,
    fingerprint: u64,
    /// The last round the entry was inexact (entries exact since are forgotten).
    seen: u64,
}

/// Which inexact entries to read from /proc this round (see the module comment).
#[derive(Debug, Default)]
pub struct Rereads {
    held: HashMap<u32, Held>,
}

impl Rereads {
    /// Whether to read `pid`'s RSS from /proc in round `round`: `generation` is the RSS
    /// generation current now (0: rss_stat is paused), `fingerprint` its counters'. False:
    /// its last reading (the previous sample's figures) still holds.
    pub fn due(&mut self, pid: u32, generation: u32, round: u64, fingerprint: u64) -> bool {
        let Some(h) = self.held.get_mut(&pid) else {
            return true;
        };
        h.seen = round;
        // Paused: nothing sees the RSS change. A reading from before the resume (or of an
        // earlier pause) may be older than a change the hook did not see.
        generation == 0
            || h.generation != generation
            || h.fingerprint != fingerprint
            || round >= h.round + reread_period(pid)
    }

    /// `pid` was read from /proc in `round`.
    pub fn read(&mut self, pid: u32, generation: u32, round: u64, fingerprint: u64) {
        self.held.insert(
            pid,
            Held {
                generation,
                round,
                fingerprint,
                seen: round,
            },
        );
    }

    /// After a round: forget the entries that were not inexact in it (exact again, or gone).
    pub fn end_round(&mut self, round: u64) {
        self.held.retain(|_, h| h.seen == round);
    }

    pub fn len(&self) -> usize {
        self.held.len()
    }

    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }
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
    fn while_paused_every_round_reads() {
        let mut r = Rereads::default();
        for round in 0..5 {
            assert!(r.due(7, 0, round, 1));
            r.read(7, 0, round, 1);
            r.end_round(round);
        }
    }

    #[test]
    fn after_the_resume_a_reading_is_held_and_taken_again_staggered() {
        let mut r = Rereads::default();
        // Read while paused (generation 0), then rss_stat resumes at generation 4: the
        // reading from the pause may predate a change the hook never saw.
        r.read(100, 0, 9, 1);
        r.end_round(9);
        assert!(
            r.due(100, 4, 10, 1),
            "the first round after the resume reads"
        );
        r.read(100, 4, 10, 1);
        r.end_round(10);
        // Pid 100: a period of 15 + 100 % 16 = 19 rounds.
        assert_eq!(reread_period(100), 19);
        for round in 11..29 {
            assert!(!r.due(100, 4, round, 1), "round {round}: held");
            r.end_round(round);
        }
        assert!(r.due(100, 4, 29, 1), "read again 19 rounds later");
        // Periods span 15 to 30 rounds, spread over the pids.
        let periods: std::collections::BTreeSet<u64> = (0..1000).map(reread_period).collect();
        assert_eq!(periods.first(), Some(&REREAD_MIN_ROUNDS));
        assert_eq!(periods.last(), Some(&REREAD_MAX_ROUNDS));
        assert_eq!(periods.len(), 16);
    }

    #[test]
    fn a_held_reading_is_dropped_when_the_counters_move_or_the_hook_pauses_again() {
        let mut r = Rereads::default();
        r.read(5, 2, 0, 111);
        r.end_round(0);
        assert!(!r.due(5, 2, 1, 111));
        assert!(r.due(5, 2, 1, 112), "the process made a call: read it");
        r.read(5, 2, 1, 112);
        r.end_round(1);
        assert!(r.due(5, 0, 2, 112), "paused again: every round");
        assert!(r.due(5, 3, 2, 112), "resumed again: a new generation");
        // An entry exact for a round (not asked about) is forgotten: read afresh later.
        r.read(6, 3, 2, 1);
        r.end_round(2);
        r.end_round(3);
        assert!(r.is_empty());
        assert!(r.due(6, 3, 4, 1));
    }

    #[test]
    fn the_fingerprint_sees_calls_and_a_new_process_but_not_rss() {
        let a = stale();
        let mut b = a;
        b.rss.anon += MIB;
        b.peak_private += MIB;
        assert_eq!(
            fingerprint(&a),
            fingerprint(&b),
            "RSS is what the reading gives"
        );
        let mut c = a;
        c.calls.brk += 1;
        assert_ne!(fingerprint(&a), fingerprint(&c));
        let mut d = a;
        d.first_seen_ns = 42;
        assert_ne!(
            fingerprint(&a),
            fingerprint(&d),
            "the pid is another process's"
        );
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
