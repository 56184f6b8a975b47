//! Rates over a process's recent samples: the numbers `top` ranks by. Robust (Theil–Sen)
//! so one spike does not make a process look like it is leaking.
use crate::{
    detector::Point,
    series::{Ring, Sample},
};

/// The series as a step function over `[now - window, now]`: samples are stored only when
/// something changed, so the value in force at the window's start and the latest value
/// carried forward to `now` are added. A process that stopped growing ten minutes ago
/// thus shows a flat line now, not its last burst.
fn window_points(
    ring: &Ring<Sample>,
    now: f64,
    window: f64,
    f: impl Fn(&Sample) -> f64,
) -> Vec<(f64, f64)> {
    let start = now - window;
    let mut pts = Vec::with_capacity(ring.len().min(512) + 2);
    let mut before: Option<f64> = None;
    for s in ring.iter() {
        if s.t < start {
            before = Some(f(s));
        } else if s.t <= now {
            if pts.is_empty()
                && let Some(v) = before
            {
                pts.push((start, v));
            }
            pts.push((s.t, f(s)));
        }
    }
    match (pts.last().copied(), before) {
        (Some((t, v)), _) if t < now => pts.push((now, v)),
        (None, Some(v)) => pts.extend([(start, v), (now, v)]),
        _ => {}
    }
    pts
}

/// Robust slope (units per second) of `f` over the last `window` seconds before `now`;
/// None without at least two points.
pub fn rate(ring: &Ring<Sample>, now: f64, window: f64, f: impl Fn(&Sample) -> f64) -> Option<f64> {
    theil_sen(&window_points(ring, now, window, f))
}

/// Difference of a cumulative counter over the window, per second.
pub fn delta_rate(ring: &Ring<Sample>, now: f64, window: f64, f: impl Fn(&Sample) -> u64) -> f64 {
    let pts = window_points(ring, now, window, |s| f(s) as f64);
    match (pts.first(), pts.last()) {
        (Some(a), Some(b)) if b.0 > a.0 => (b.1 - a.1).max(0.0) / (b.0 - a.0),
        _ => 0.0,
    }
}

/// Start of the current rise: the time of the last sample that is not above any later one
/// (the last trough). For a steady leak that is the first sample; for a GC saw-tooth it is
/// the latest low. None without samples.
pub fn growing_since(ring: &Ring<Sample>, f: impl Fn(&Sample) -> u64) -> Option<f64> {
    let mut min_after = u64::MAX;
    let mut since = None;
    for s in ring.iter().rev() {
        let v = f(s);
        // Strictly lower: on a flat floor the rise starts at its last point, not its first.
        if v < min_after {
            min_after = v;
            since = Some(s.t);
        }
    }
    since
}

/// Robust slope of (t, value) points: the detector's bounded Theil–Sen (one implementation
/// for ranking and verdicts alike).
fn theil_sen(pts: &[(f64, f64)]) -> Option<f64> {
    let pts: Vec<Point> = pts.iter().map(|&(t, bytes)| Point { t, bytes }).collect();
    crate::detector::stats::theil_sen(&pts).map(|trend| trend.slope)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(vals: &[(f64, u64)]) -> Ring<Sample> {
        let mut r = Ring::new(1000);
        for &(t, v) in vals {
            let mut s = Sample {
                t,
                ..Sample::default()
            };
            s.rss[tracer_ebpf::RSS_ANON] = v;
            s.alloc = v;
            r.push(s);
        }
        r
    }

    #[test]
    fn slope_of_a_line() {
        let r = ring(
            &(0..30)
                .map(|i| (i as f64, 1000 + 500 * i as u64))
                .collect::<Vec<_>>(),
        );
        assert_eq!(rate(&r, 29.0, 60.0, |s| s.private() as f64), Some(500.0));
        assert_eq!(delta_rate(&r, 29.0, 60.0, |s| s.alloc), 500.0);
    }

    #[test]
    fn one_spike_does_not_move_the_slope() {
        let mut v: Vec<(f64, u64)> = (0..30).map(|i| (i as f64, 1 << 20)).collect();
        v[15].1 = 900 << 20;
        let r = ring(&v);
        assert_eq!(rate(&r, 29.0, 60.0, |s| s.private() as f64), Some(0.0));
    }

    #[test]
    fn window_limits_the_samples() {
        // Flat for 100 s, then rising 10 B/s for the last 20 s.
        let v: Vec<(f64, u64)> = (0..120)
            .map(|i| (i as f64, if i < 100 { 0 } else { 10 * (i - 100) as u64 }))
            .collect();
        let r = ring(&v);
        assert_eq!(rate(&r, 119.0, 15.0, |s| s.private() as f64), Some(10.0));
        assert_eq!(growing_since(&r, |s| s.private()), Some(100.0));
    }

    #[test]
    fn degenerate_inputs() {
        assert_eq!(theil_sen(&[]), None);
        assert_eq!(theil_sen(&[(1.0, 1.0)]), None);
        assert_eq!(
            theil_sen(&[(1.0, 1.0), (1.0, 5.0)]),
            None,
            "no time elapsed"
        );
        let big: Vec<(f64, f64)> = (0..5000).map(|i| (i as f64, 2.0 * i as f64)).collect();
        assert_eq!(theil_sen(&big), Some(2.0));
        let r: Ring<Sample> = Ring::new(4);
        assert_eq!(growing_since(&r, |s| s.private()), None);
        assert_eq!(delta_rate(&r, 5.0, 10.0, |s| s.alloc), 0.0);
    }

    #[test]
    fn a_stopped_grower_is_flat_now() {
        // Grew 1 KiB/s for 60 s, then nothing changed (no new samples) for 10 minutes.
        let r = ring(
            &(0..60)
                .map(|i| (i as f64, 1024 * i as u64))
                .collect::<Vec<_>>(),
        );
        assert_eq!(rate(&r, 59.0, 30.0, |s| s.private() as f64), Some(1024.0));
        assert_eq!(rate(&r, 660.0, 30.0, |s| s.private() as f64), Some(0.0));
        assert_eq!(delta_rate(&r, 660.0, 30.0, |s| s.alloc), 0.0);
    }
}
