//! Step 1: clean the input (finite, in range, sorted, near-duplicates averaged) and measure it:
//! its span, whether there is enough of it, the process's current size.

use super::{DetectorConfig, Point, stats, wording::fmt_secs};

/// Timestamps beyond this (≈ 31 700 years) are garbage, not data.
const MAX_ABS_T: f64 = 1e12;
/// Byte counts beyond 2^62 are garbage, not data; bounding them keeps every product finite.
const MAX_ABS_BYTES: f64 = 4.611_686_018_427_388e18;
/// Samples closer than this are one observation (averaged): no RSS counter is meaningful at a
/// finer grain, and it keeps pairwise slopes finite.
const MIN_DT: f64 = 1e-3;

/// Usable points: finite, in range, sorted by time, near-duplicates averaged.
pub(super) fn sanitize(points: &[Point]) -> Vec<Point> {
    let mut v: Vec<Point> = points
        .iter()
        .copied()
        .filter(|p| {
            p.t.is_finite()
                && p.bytes.is_finite()
                && p.t.abs() <= MAX_ABS_T
                && p.bytes.abs() <= MAX_ABS_BYTES
        })
        .collect();
    v.sort_by(|a, b| a.t.total_cmp(&b.t));
    let mut out: Vec<Point> = Vec::with_capacity(v.len());
    let (mut group_t, mut group_sum, mut group_n) = (f64::NEG_INFINITY, 0.0, 0.0);
    for p in v {
        match out.last_mut() {
            Some(last) if p.t - group_t < MIN_DT => {
                group_sum += p.bytes;
                group_n += 1.0;
                last.bytes = group_sum / group_n;
            }
            _ => {
                out.push(p);
                (group_t, group_sum, group_n) = (p.t, p.bytes, 1.0);
            }
        }
    }
    out
}

/// Time span of sorted points (0 for fewer than two).
pub(super) fn span(pts: &[Point]) -> f64 {
    match (pts.first(), pts.last()) {
        (Some(a), Some(b)) => b.t - a.t,
        _ => 0.0,
    }
}

/// Why `pts` are too few or too short to judge, if they are.
pub(super) fn too_little(pts: &[Point], cfg: &DetectorConfig) -> Option<String> {
    if pts.len() < cfg.min_samples.max(2) {
        return Some(format!(
            "only {} usable samples; need at least {}",
            pts.len(),
            cfg.min_samples.max(2)
        ));
    }
    let s = span(pts);
    (s < cfg.min_window_secs).then(|| {
        format!(
            "only {} of data; need at least {}",
            fmt_secs(s),
            fmt_secs(cfg.min_window_secs)
        )
    })
}

/// Typical size now: median of the most recent part of the window. Sets the relative floors.
pub(super) fn current_size(pts: &[Point], cfg: &DetectorConfig) -> f64 {
    let recent = recent_part(pts, cfg.recent_frac, 1);
    let ys: Vec<f64> = recent.iter().map(|p| p.bytes).collect();
    stats::median(&ys).unwrap_or(0.0).max(0.0)
}

/// The points in the last `frac` of the time span, but at least `min_points` of them.
pub(super) fn recent_part(pts: &[Point], frac: f64, min_points: usize) -> &[Point] {
    let Some(last) = pts.last() else { return pts };
    let cutoff = last.t - frac.clamp(0.0, 1.0) * span(pts);
    let from = pts.iter().position(|p| p.t >= cutoff).unwrap_or(0);
    &pts[from.min(pts.len().saturating_sub(min_points))..]
}
