//! The one order of processes, used by every view: `top` (screen, `--once`, JSON), the daemon's
//! top-N, `record`'s summary and `report`. Leaking first, then growing, then everything else;
//! within each class the faster grower first; at the same rate the larger private memory
//! first (among the many processes that do not grow, the big ones are what an operator looks
//! for, not pid 1); then by pid, then by first sight (a recycled pid in `report`'s graveyard). So a steady process never ranks above a leaking one, however
//! fast its last burst was, and two runs over the same data give the same order.
use std::cmp::Ordering;

use crate::detector::Verdict;

/// What a process is ranked by. `rate` is the growth rate the view shows next to it
/// (bytes/s): `top` and the daemon show the rate over their window, `report` and `record`'s
/// suspects the detector's slope, so each list reads in order of its own column.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RankKey {
    pub verdict: Option<Verdict>,
    pub rate: f64,
    /// Private memory now (bytes): the tie-break among equal rates.
    pub private: u64,
    pub pid: u32,
    pub first_seen: f64,
}

/// 0 for leaking, 1 for growing, 2 for the rest (steady, saw-tooth, shrinking, not judged yet).
pub fn class(verdict: Option<Verdict>) -> u8 {
    match verdict {
        Some(Verdict::Leaking) => 0,
        Some(Verdict::Growing) => 1,
        _ => 2,
    }
}

/// The rate as compared: whole bytes/s (what the views print, so rows that show the same
/// rate fall back to the pid rather than to invisible fractions), never NaN, and no -0.
fn comparable(rate: f64) -> f64 {
    let r = rate.round();
    if r.is_nan() || r == 0.0 { 0.0 } else { r }
}

/// The ranking order: `Less` means `a` comes first.
pub fn compare(a: &RankKey, b: &RankKey) -> Ordering {
    class(a.verdict)
        .cmp(&class(b.verdict))
        .then_with(|| comparable(b.rate).total_cmp(&comparable(a.rate)))
        .then_with(|| b.private.cmp(&a.private))
        .then_with(|| a.pid.cmp(&b.pid))
        .then_with(|| a.first_seen.total_cmp(&b.first_seen))
}

/// Sort `items` into ranking order.
pub fn sort<T>(items: &mut [T], key: impl Fn(&T) -> RankKey) {
    items.sort_by(|a, b| compare(&key(a), &key(b)));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(verdict: Option<Verdict>, rate: f64, pid: u32) -> RankKey {
        RankKey {
            verdict,
            rate,
            private: 0,
            pid,
            first_seen: 0.0,
        }
    }

    fn order(mut keys: Vec<RankKey>) -> Vec<u32> {
        sort(&mut keys, |k| *k);
        keys.iter().map(|k| k.pid).collect()
    }

    #[test]
    fn leaking_then_growing_then_by_rate() {
        let keys = vec![
            key(Some(Verdict::Steady), 8_680_000.0, 1), // the burst: fastest, but steady now
            key(Some(Verdict::Leaking), 500_000.0, 2),
            key(Some(Verdict::Growing), 3_000_000.0, 3),
            key(Some(Verdict::Leaking), 2_200_000.0, 4),
            key(None, 9_000_000.0, 5),
            key(Some(Verdict::Insufficient), 100.0, 6),
            key(Some(Verdict::Sawtooth), 200.0, 7),
            key(Some(Verdict::Shrinking), -50_000.0, 8),
            key(Some(Verdict::Growing), 4_000.0, 9),
        ];
        assert_eq!(order(keys), vec![4, 2, 3, 9, 5, 1, 7, 6, 8]);
    }

    #[test]
    fn a_steady_process_never_ranks_above_a_leaking_one() {
        for v in [
            None,
            Some(Verdict::Steady),
            Some(Verdict::Sawtooth),
            Some(Verdict::Shrinking),
            Some(Verdict::Insufficient),
            Some(Verdict::Growing),
        ] {
            let a = key(v, f64::MAX, 1);
            let b = key(Some(Verdict::Leaking), 0.0, 2);
            assert_eq!(compare(&a, &b), Ordering::Greater, "{v:?}");
        }
    }

    #[test]
    fn ties_are_deterministic() {
        // Same class and the same printed rate: by pid, whatever the input order.
        let a = key(Some(Verdict::Leaking), 1000.2, 9);
        let b = key(Some(Verdict::Leaking), 999.9, 3);
        assert_eq!(order(vec![a, b]), vec![3, 9]);
        assert_eq!(order(vec![b, a]), vec![3, 9]);
        // -0, NaN and 0.3 B/s all print as 0.
        let z = [
            key(None, -0.0, 5),
            key(None, f64::NAN, 4),
            key(None, 0.3, 6),
            key(None, 0.0, 2),
        ];
        assert_eq!(order(z.to_vec()), vec![2, 4, 5, 6]);
        // A recycled pid: the earlier process first.
        let old = RankKey {
            first_seen: 10.0,
            ..key(None, 0.0, 7)
        };
        let new = RankKey {
            first_seen: 99.0,
            ..old
        };
        assert_eq!(compare(&old, &new), Ordering::Less);
        assert_eq!(compare(&new, &old), Ordering::Greater);
        assert_eq!(compare(&old, &old), Ordering::Equal);
    }

    #[test]
    fn at_the_same_rate_the_bigger_process_first() {
        // A flat 96 MiB cache and a flat 8 MiB init: the cache is what matters, whatever
        // the pids.
        let init = RankKey {
            private: 8 << 20,
            ..key(Some(Verdict::Steady), 0.0, 1)
        };
        let cache = RankKey {
            private: 96 << 20,
            ..key(Some(Verdict::Steady), 0.0, 5000)
        };
        assert_eq!(order(vec![init, cache]), vec![5000, 1]);
        // A rate always wins over size.
        let small_grower = key(Some(Verdict::Steady), 100.0, 9);
        assert_eq!(order(vec![cache, small_grower]), vec![9, 5000]);
    }
}
