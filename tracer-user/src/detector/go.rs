//! Verdicts from a Go runtime's own figures (host/goruntime): the heap each GC left live, and
//! the goroutine count. RSS sees a Go leak only through the troughs of the GC saw-tooth,
//! about seven cycles; the live heap after GC is the trough itself, measured by the runtime,
//! so a leak under GC shows in three. Pure, like the rest of the detector.
use super::{Assessment, DetectorConfig, Point, Verdict, assess, wording::fmt_bytes};

/// A GC-to-GC rise smaller than this is the runtime's noise, not growth.
const MIN_RISE_BYTES: f64 = 512.0 * 1024.0;
/// ... and smaller than this share of the live heap. What a GC finds live includes what was
/// allocated while it marked, so a busy healthy service reads ±10% from GC to GC (a 32 MiB
/// live set reads 34-41 MiB at 80 MiB/s of garbage): only rises of 5% or more count.
const MIN_RISE_FRAC: f64 = 0.05;
/// The rises together must add up to this much.
const MIN_TOTAL_RISE_BYTES: f64 = 1024.0 * 1024.0;
/// Rises in a row needed: four readings, each above the one before...
const MIN_RISES: usize = 3;
/// ... or three, when each rise is this share of the heap or more: a heap that grows by a
/// fifth at two GCs in a row is not wandering in a band (a busy one wanders by ±10%).
const STEEP_RISE_FRAC: f64 = 0.2;
const MIN_STEEP_RISES: usize = 2;
/// No GC for this long (and three GC intervals) ends a rise.
const STALL_SECS: f64 = 30.0;

/// Judge the live heaps the last GCs left (one point per GC cycle seen, oldest first).
/// `Leaking` when the last four or more rose at every GC, each time by 5% and 512 KiB or more
/// (or the last three, each time by 20% or more), by 1 MiB in all, and, when earlier readings exist, to above all of them by half their
/// spread (a heap that wanders within a band does not break out of it); the confidence is
/// 1 − ½^rises (three rises: 0.875). None otherwise: RSS decides, as before. A program that
/// stopped allocating stops collecting too, so its last readings would say "rising" forever:
/// when no GC came for three of the run's GC intervals (and 30 s), the rise is over (`now`).
pub fn judge_live_heap(points: &[Point], now: f64) -> Option<Assessment> {
    let rises = points
        .windows(2)
        .rev()
        .take_while(|w| {
            let (a, b) = (w[0].bytes, w[1].bytes);
            b - a >= MIN_RISE_BYTES.max(a * MIN_RISE_FRAC)
        })
        .count();
    let steep = points
        .windows(2)
        .rev()
        .take_while(|w| w[1].bytes - w[0].bytes >= MIN_RISE_BYTES.max(w[0].bytes * STEEP_RISE_FRAC))
        .count();
    if rises < MIN_RISES && steep < MIN_STEEP_RISES {
        return None;
    }
    let run = &points[points.len() - 1 - rises..];
    let (first, last) = (run[0], run[run.len() - 1]);
    let grown = last.bytes - first.bytes;
    if grown < MIN_TOTAL_RISE_BYTES || last.t <= first.t {
        return None;
    }
    let gc_interval = (last.t - first.t) / rises as f64;
    if now - last.t > (3.0 * gc_interval).max(STALL_SECS) {
        return None;
    }
    let before = &points[..points.len() - 1 - rises];
    if before.len() >= 2 {
        let (lo, hi) = before
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| {
                (lo.min(p.bytes), hi.max(p.bytes))
            });
        if last.bytes < hi + MIN_TOTAL_RISE_BYTES.max((hi - lo) / 2.0) {
            return None;
        }
    }
    let rate = grown / (last.t - first.t);
    let shown: Vec<String> = run
        .iter()
        .rev()
        .take(4)
        .rev()
        .map(|p| fmt_bytes(p.bytes))
        .collect();
    Some(Assessment {
        verdict: Verdict::Leaking,
        confidence: 1.0 - 0.5f64.powi(rises as i32),
        growth_bytes_per_sec: rate,
        since: Some(first.t),
        grown_bytes: grown,
        window_secs: last.t - points[0].t,
        troughs: points.len(),
        reason: format!(
            "Go live heap after GC rising at each of the last {rises} GCs: {}{} (+{} per GC, {}/s since t={:.0}s)",
            if run.len() > 4 { "… " } else { "" },
            shown.join(" → "),
            fmt_bytes(grown / rises as f64),
            fmt_bytes(rate),
            first.t
        ),
    })
}

/// The detector tuned for a goroutine count: 50 goroutines is a change, one every 5 s a
/// rate; counts do not cycle like a heap.
fn goroutine_config(cfg: &DetectorConfig) -> DetectorConfig {
    DetectorConfig {
        min_rate_bytes_per_sec: 0.2,
        min_change_bytes: 50.0,
        noise_floor_bytes: 2.0,
        min_cycle_bytes: f64::INFINITY,
        ..cfg.clone()
    }
}

/// Judge the goroutine count over time: `Leaking` (with the count's own sentence, e.g.
/// "goroutines rising 25/s since t=3s (+750, now 812)") when the detector calls the count
/// leaking; None otherwise.
pub fn judge_goroutines(points: &[Point], cfg: &DetectorConfig) -> Option<Assessment> {
    let a = assess(points, &goroutine_config(cfg));
    if a.verdict != Verdict::Leaking {
        return None;
    }
    let now = points.last().map_or(0.0, |p| p.bytes);
    Some(Assessment {
        reason: format!(
            "goroutines rising {:.1}/s since t={:.0}s (+{:.0}, now {now:.0})",
            a.growth_bytes_per_sec,
            a.since.unwrap_or(0.0),
            a.grown_bytes
        ),
        ..a
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: f64 = 1024.0 * 1024.0;

    /// Judged right after the last reading.
    fn judge(points: &[Point]) -> Option<Assessment> {
        judge_live_heap(points, points.last().map_or(0.0, |p| p.t))
    }

    #[test]
    fn a_rise_that_stopped_with_the_gcs_is_over() {
        let p = pts(&[6.0, 12.0, 18.0, 25.0]);
        assert!(
            judge_live_heap(&p, 30.0 + 30.0).is_some(),
            "30 s without a GC"
        );
        assert!(
            judge_live_heap(&p, 30.0 + 31.0).is_none(),
            "a cache that filled and stopped allocating stops collecting too"
        );
    }

    fn pts(values_mib: &[f64]) -> Vec<Point> {
        values_mib
            .iter()
            .enumerate()
            .map(|(i, v)| Point {
                t: 10.0 * i as f64,
                bytes: v * MIB,
            })
            .collect()
    }

    #[test]
    fn four_readings_of_a_rising_live_heap_are_a_leak() {
        let a = judge(&pts(&[6.0, 12.0, 18.0, 25.0])).expect("leaking");
        assert_eq!(a.verdict, Verdict::Leaking);
        assert_eq!(a.confidence, 0.875);
        assert_eq!(a.since, Some(0.0));
        assert!((a.growth_bytes_per_sec - 19.0 * MIB / 30.0).abs() < 1.0);
        assert!(
            a.reason.starts_with(
                "Go live heap after GC rising at each of the last 3 GCs: 6.0 MiB → 12 MiB → 18 MiB → 25 MiB"
            ),
            "{}",
            a.reason
        );
        // After a history, only a break out of its band counts.
        assert!(judge(&pts(&[20.0, 24.0, 10.0, 12.0, 18.0, 25.0])).is_none());
        assert!(judge(&pts(&[20.0, 24.0, 14.0, 18.0, 22.0, 27.0])).is_some());
    }

    /// What a healthy service with a 32 MiB live set and 80 MiB/s of garbage read, GC after
    /// GC (tests/tests/go_runtime.rs, Go 1.19 stripped): it wanders in a band.
    #[test]
    fn a_busy_healthy_heap_wandering_in_its_band_is_not_a_leak() {
        let read = [
            35.0, 35.0, 35.0, 34.0, 35.0, 39.0, 39.0, 40.0, 38.0, 39.0, 41.0, 39.0, 39.0, 34.0,
            41.0, 40.0, 37.0, 39.0, 38.0, 37.0, 35.0, 39.0, 41.0, 39.0, 40.0, 41.0, 40.0, 40.0,
            41.0, 41.0, 40.0, 41.0, 41.0, 41.0, 41.0, 34.0, 39.0, 39.0, 38.0, 35.0, 35.0, 41.0,
            39.0, 40.0, 41.0, 34.0, 35.0, 36.0, 37.0, 39.0,
        ];
        for n in 2..=read.len() {
            assert!(
                judge(&pts(&read[..n])).is_none(),
                "judged leaking after {n} readings: {:?}",
                &read[..n]
            );
        }
    }

    #[test]
    fn a_flat_or_noisy_live_heap_is_left_to_rss() {
        assert!(judge(&pts(&[32.0, 32.1, 31.9, 32.05, 32.0])).is_none());
        assert!(
            judge(&pts(&[30.0, 33.0, 36.0])).is_none(),
            "three readings rising 10% are too few"
        );
        let steep = judge(&pts(&[4.0, 8.0, 12.0])).expect("two steep rises");
        assert_eq!(steep.confidence, 0.75);
        assert!(
            judge(&pts(&[10.0, 20.0, 30.0, 30.0])).is_none(),
            "stopped rising: a warm-up that levelled off"
        );
        assert!(
            judge(&pts(&[32.0, 32.3, 32.6])).is_none(),
            "rises under 1% of the heap are noise"
        );
    }

    #[test]
    fn goroutines_rising_steadily_are_a_leak_with_their_own_sentence() {
        let points: Vec<Point> = (0..30)
            .map(|i| Point {
                t: i as f64,
                bytes: 12.0 + 25.0 * i as f64,
            })
            .collect();
        let a = judge_goroutines(&points, &DetectorConfig::default()).expect("leaking");
        assert!(
            a.reason
                .starts_with("goroutines rising 25.0/s since t=0s (+725"),
            "{}",
            a.reason
        );
        let flat: Vec<Point> = (0..30)
            .map(|i| Point {
                t: i as f64,
                bytes: 40.0 + (i % 3) as f64,
            })
            .collect();
        assert!(judge_goroutines(&flat, &DetectorConfig::default()).is_none());
    }
}
