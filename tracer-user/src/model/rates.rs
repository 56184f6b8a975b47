//! Rates over a process's recent samples: the numbers `top` ranks by. Robust (Theil–Sen)
//! so one spike does not make a process look like it is leaking.
use crate::{
    detector::Point,
    model::series::{Ring, Sample},
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

/// Most points a rate is fitted on (Theil–Sen is quadratic in them: 121 points are 7,260
/// slopes per process and round).
const GRID_MAX: usize = 120;

/// The step function of [`window_points`] resampled on a regular time grid, so each stretch
/// of time weighs by its length, not by how many samples it happened to store. Samples are
/// stored only on change: a 15 s rise sampled every 500 ms is 30 points, the flat minute
/// after it one or two, and a fit over the stored points alone reports the rise. The grid is
/// never finer than the closest two stored samples (the sampling interval, for a process
/// that changes every round: finer would only repeat values) and has at most
/// `GRID_MAX + 1` points.
fn grid_points(knots: &[(f64, f64)], min_gap: f64) -> Vec<(f64, f64)> {
    let (Some(&(a, first)), Some(&(b, _))) = (knots.first(), knots.last()) else {
        return Vec::new();
    };
    let span = b - a;
    if span.is_nan() || span <= 0.0 || knots.iter().all(|&(_, v)| v == first) {
        // Nothing to resample: one instant, or no change at all (slope 0 from two points).
        return knots.to_vec();
    }
    let steps = if min_gap.is_finite() && min_gap > 0.0 {
        (span / min_gap).floor().clamp(1.0, GRID_MAX as f64) as usize
    } else {
        GRID_MAX
    };
    let mut out = Vec::with_capacity(steps + 1);
    let mut k = 0;
    for i in 0..=steps {
        let t = if i == steps {
            b
        } else {
            a + span * i as f64 / steps as f64
        };
        // The value in force at t: the last knot at or before it.
        while k + 1 < knots.len() && knots[k + 1].0 <= t {
            k += 1;
        }
        out.push((t, knots[k].1));
    }
    out
}

/// Smallest time between two consecutive stored samples inside the window.
fn min_sample_gap(ring: &Ring<Sample>, now: f64, window: f64) -> f64 {
    let start = now - window;
    let mut prev: Option<f64> = None;
    let mut gap = f64::INFINITY;
    for s in ring.iter().filter(|s| s.t >= start && s.t <= now) {
        if let Some(p) = prev
            && s.t > p
        {
            gap = gap.min(s.t - p);
        }
        prev = Some(s.t);
    }
    gap
}

/// Robust slope (units per second) of `f` over the last `window` seconds before `now`, as a
/// function of time: Theil–Sen over the step function resampled on a regular grid (see
/// [`grid_points`]). A process that rose for 15 s and has been flat for the 60 s since has a
/// rate of 0 over those 75 s. None without at least two points.
pub fn rate(ring: &Ring<Sample>, now: f64, window: f64, f: impl Fn(&Sample) -> f64) -> Option<f64> {
    let knots = window_points(ring, now, window, f);
    theil_sen(&grid_points(&knots, min_sample_gap(ring, now, window)))
}

/// Difference of a cumulative counter over the window, per second.
pub fn delta_rate(ring: &Ring<Sample>, now: f64, window: f64, f: impl Fn(&Sample) -> u64) -> f64 {
    let pts = window_points(ring, now, window, |s| f(s) as f64);
    match (pts.first(), pts.last()) {
        (Some(a), Some(b)) if b.0 > a.0 => (b.1 - a.1).max(0.0) / (b.0 - a.0),
        _ => 0.0,
    }
}

/// The latest rise of a series: from its last trough (the last sample not above any later
/// one: the first sample of a steady leak, the latest low of a GC saw-tooth) to the sample
/// where it reached its highest value since (the first such sample: growth stopped there).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rise {
    pub since: f64,
    pub until: f64,
}

impl Rise {
    pub fn secs(&self) -> f64 {
        (self.until - self.since).max(0.0)
    }
}

/// The latest rise (see [`Rise`]). A process still growing has `until` at its latest sample;
/// one that rose for 15 s and then stayed flat has `until` 15 s after `since`, however long
/// the flat stretch lasts (samples are stored only on change, so nothing after the peak
/// moves it). None without samples.
pub fn latest_rise(ring: &Ring<Sample>, f: impl Fn(&Sample) -> u64) -> Option<Rise> {
    let mut min_after = u64::MAX;
    let mut since_idx = None;
    for (i, s) in ring.iter().enumerate().rev() {
        let v = f(s);
        // Strictly lower: on a flat floor the rise starts at its last point, not its first.
        if v < min_after {
            min_after = v;
            since_idx = Some(i);
        }
    }
    let since_idx = since_idx?;
    let mut peak = (u64::MIN, f64::NAN);
    for s in ring.iter().skip(since_idx) {
        let v = f(s);
        // Strictly higher: the first sample at the peak is when growth stopped.
        if v > peak.0 || peak.1.is_nan() {
            peak = (v, s.t);
        }
    }
    let since = ring.iter().nth(since_idx)?.t;
    Some(Rise {
        since,
        until: peak.1,
    })
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

    const MIB: f64 = (1 << 20) as f64;

    fn ring(vals: &[(f64, u64)]) -> Ring<Sample> {
        let mut r = Ring::new(1000);
        for &(t, v) in vals {
            let mut s = Sample {
                t,
                ..Sample::default()
            };
            s.rss.anon = v;
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
        assert_eq!(
            latest_rise(&r, |s| s.private()).map(|r| r.since),
            Some(100.0)
        );
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
        assert_eq!(latest_rise(&r, |s| s.private()), None);
        assert_eq!(delta_rate(&r, 5.0, 10.0, |s| s.alloc), 0.0);
    }

    /// The shape of issue 10: 8 MiB/s for 15 s (a sample every 500 ms, each a change), then
    /// flat for 60 s, stored only on change: no sample at all after the rise.
    fn burst_then_flat() -> Ring<Sample> {
        ring(
            &(0..=30)
                .map(|i| (i as f64 * 0.5, (4 << 20) + i as u64 * (4 << 20)))
                .collect::<Vec<_>>(),
        )
    }

    #[test]
    fn a_burst_then_a_longer_flat_stretch_has_no_rate() {
        let r = burst_then_flat();
        let private = |s: &Sample| s.private() as f64;
        // While it rises: its rate.
        let rising = rate(&r, 15.0, 60.0, private).unwrap();
        assert!((rising - 8.0 * MIB).abs() < 0.01 * MIB, "{rising}");
        // Over the last minute, and over the whole 75 s (`top --once --duration 75s`): the
        // flat minute is most of the time, so the robust rate is 0 (it was 8.28 MB/s when
        // the fit saw the 31 stored points instead of the curve).
        for window in [60.0, 75.0, 300.0] {
            let g = rate(&r, 75.0, window, private).unwrap();
            assert!(g.abs() < 0.01 * MIB, "window {window}: {g}");
        }
        // The rise ends where growth stopped, not now.
        let rise = latest_rise(&r, |s| s.private()).unwrap();
        assert_eq!(
            rise,
            Rise {
                since: 0.0,
                until: 15.0
            }
        );
        assert_eq!(rise.secs(), 15.0);
    }

    #[test]
    fn a_rise_longer_than_the_flat_stretch_keeps_a_rate_and_ends_at_its_peak() {
        // 1 MiB/s for 40 s, then flat for 35 s: most of the 75 s is rise.
        let r = ring(
            &(0..=40)
                .map(|i| (i as f64, i as u64 * (1 << 20)))
                .collect::<Vec<_>>(),
        );
        let g = rate(&r, 75.0, 75.0, |s| s.private() as f64).unwrap();
        assert!(g > 0.2 * MIB && g <= 1.0 * MIB, "{g}");
        let rise = latest_rise(&r, |s| s.private()).unwrap();
        assert_eq!((rise.since, rise.until), (0.0, 40.0));
    }

    #[test]
    fn the_grid_is_bounded_and_not_finer_than_the_samples() {
        // 1000 samples, 10 ms apart: at most GRID_MAX + 1 points.
        let r = ring(
            &(0..1000)
                .map(|i| (i as f64 * 0.01, 7 * i as u64))
                .collect::<Vec<_>>(),
        );
        let knots = window_points(&r, 9.99, 60.0, |s| s.private() as f64);
        let g = grid_points(&knots, min_sample_gap(&r, 9.99, 60.0));
        assert_eq!(g.len(), GRID_MAX + 1);
        assert!((rate(&r, 9.99, 60.0, |s| s.private() as f64).unwrap() - 700.0).abs() < 1.0);
        // Samples 1 s apart over 10 s: a point per second, not 120.
        let r = ring(&(0..=10).map(|i| (i as f64, i as u64)).collect::<Vec<_>>());
        let knots = window_points(&r, 10.0, 60.0, |s| s.private() as f64);
        assert_eq!(
            grid_points(&knots, min_sample_gap(&r, 10.0, 60.0)).len(),
            11
        );
        // Nothing changed in the window: the two knots, no grid.
        let flat = ring(&[(0.0, 5)]);
        let knots = window_points(&flat, 100.0, 60.0, |s| s.private() as f64);
        assert_eq!(grid_points(&knots, f64::INFINITY), knots);
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
