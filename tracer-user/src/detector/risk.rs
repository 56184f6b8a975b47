//! # Limit risk: will the next peak meet the memory limit?
//!
//! The verdict answers "is it leaking". A process that rises under periodic load and falls
//! back (a webhook during backups) is not leaking, yet it is killed at its limit again and
//! again when its peaks come within a few MiB of it. [`assess_risk`] judges that beside the
//! verdict, from the same series and the limit of the memory cgroup that constrains it:
//!
//! 1. **Find the peaks**: a zig-zag scan (the troughs finder on the negated series) with a
//!    swing threshold above 6 noise sigmas, a quarter of the series' range and 512 KiB, so
//!    noise on a plateau is one peak, not many. The rise still under way counts too: the
//!    current value is a peak candidate. A series without cycles has one peak, its maximum.
//! 2. **Near the limit**: the highest of the last [`RiskConfig::recent_peaks`] peaks (or the
//!    current value) is within [`RiskConfig::margin`] of the limit (default 10 %: 90 % of the
//!    limit or more).
//! 3. **Trending towards it**: the last `recent_peaks` peaks each rise above the one before by
//!    more than the noise, and at that pace (a straight line through them) the peaks reach the
//!    margin within [`RiskConfig::horizon_secs`].
//!
//! Pure: no I/O, no clock; the same input always gives the same answer.

use serde::{Deserialize, Serialize};

use super::{Point, input::sanitize, stats, wording::fmt_secs};

/// Tuning of the limit-risk judgement.
#[derive(Clone, Debug, PartialEq)]
pub struct RiskConfig {
    /// At risk when a recent peak is within this fraction of the limit (0.10: peaks at 90 % of
    /// the limit or more). `--risk-margin` on top, record and daemon.
    pub margin: f64,
    /// How many recent peaks are judged (and quoted in the reason).
    pub recent_peaks: usize,
    /// Peaks rising towards the limit raise the risk when they would come within the margin
    /// in this many seconds or fewer.
    pub horizon_secs: f64,
    /// A peak must stand at least this many bytes above the troughs beside it.
    pub min_swing_bytes: f64,
}

impl Default for RiskConfig {
    fn default() -> Self {
        Self {
            margin: 0.10,
            recent_peaks: 3,
            horizon_secs: 3600.0,
            min_swing_bytes: 512.0 * 1024.0,
        }
    }
}

/// Why a process is at risk of meeting its limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RiskKind {
    /// A recent peak came within the margin of the limit.
    NearLimit,
    /// The peaks rise and would come within the margin soon.
    Trending,
}

/// The limit-risk judgement of one process: its recent peaks against its memory cgroup's
/// limit. Also the JSON `risk` object of top, trace samples, report and daemon events.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LimitRisk {
    /// Whether the peaks meet (or are about to meet) the limit.
    pub at_risk: bool,
    /// Why it is at risk (None when it is not).
    pub kind: Option<RiskKind>,
    /// The highest recent peak over the limit (3 decimal places): 0.94 is 94 % of the limit.
    pub peak_ratio: f64,
    pub peak_bytes: u64,
    pub limit_bytes: u64,
    /// The last peaks, oldest first (at most `recent_peaks`).
    pub recent_peaks_bytes: Vec<u64>,
    /// One sentence: "Peaks reach 94% of the 256 MiB limit (last 3 peaks: 238, 241, 240 MiB)".
    pub reason: String,
}

/// Judges `points` (one process's private memory over time) against `limit_bytes`. None
/// without a usable limit or sample.
pub fn assess_risk(points: &[Point], limit_bytes: u64, cfg: &RiskConfig) -> Option<LimitRisk> {
    let pts = sanitize(points);
    let last = *pts.last()?;
    if limit_bytes == 0 {
        return None;
    }
    let limit = limit_bytes as f64;
    let peaks = recent_peaks(&pts, cfg);
    let peak = peaks.iter().map(|p| p.bytes).fold(last.bytes, f64::max);
    let peak_ratio = (peak / limit * 1000.0).round() / 1000.0;
    let threshold = limit * (1.0 - cfg.margin);
    let quoted: Vec<u64> = peaks.iter().map(|p| p.bytes.max(0.0) as u64).collect();
    let list = peak_list(&quoted);
    let kind = if peak >= threshold {
        Some(RiskKind::NearLimit)
    } else {
        trend_eta(&peaks, limit, threshold, cfg)
            .filter(|eta| *eta <= cfg.horizon_secs)
            .map(|_| RiskKind::Trending)
    };
    let reason = match kind {
        Some(RiskKind::Trending) => format!(
            "Peaks climb towards the {} limit ({list}, {:.0}% now); at this pace they pass {:.0}% of it in {}",
            mib(limit),
            peak_ratio * 100.0,
            (1.0 - cfg.margin) * 100.0,
            fmt_secs(trend_eta(&peaks, limit, threshold, cfg).unwrap_or(0.0)),
        ),
        _ => format!(
            "Peaks reach {:.0}% of the {} limit ({list})",
            peak_ratio * 100.0,
            mib(limit)
        ),
    };
    Some(LimitRisk {
        at_risk: kind.is_some(),
        kind,
        peak_ratio,
        peak_bytes: peak.max(0.0) as u64,
        limit_bytes,
        recent_peaks_bytes: quoted,
        reason,
    })
}

/// The last `cfg.recent_peaks` peaks, oldest first: confirmed ones (a fall of the swing
/// threshold followed them), then the rise under way if it already tops the last trough by
/// the threshold; a series without cycles has one peak, its maximum.
fn recent_peaks(pts: &[Point], cfg: &RiskConfig) -> Vec<Point> {
    let ys: Vec<f64> = pts.iter().map(|p| p.bytes).collect();
    let swing = swing_threshold(&ys, cfg);
    let neg: Vec<f64> = ys.iter().map(|y| -y).collect();
    let mut peaks: Vec<Point> = stats::find_troughs(&neg, swing)
        .iter()
        .filter_map(|tr| pts.get(tr.index).copied())
        .collect();
    match peaks.last() {
        None => {
            if let Some(max) = pts
                .iter()
                .copied()
                .max_by(|a, b| a.bytes.total_cmp(&b.bytes))
            {
                peaks.push(max);
            }
        }
        Some(last_peak) => {
            // The rise since the last confirmed peak, once it is a swing of its own: its
            // highest point after the lowest one.
            let after: Vec<Point> = pts.iter().copied().filter(|p| p.t > last_peak.t).collect();
            let low_at = after
                .iter()
                .enumerate()
                .min_by(|a, b| a.1.bytes.total_cmp(&b.1.bytes))
                .map(|(i, _)| i);
            if let Some(low_at) = low_at
                && let Some(high) = after[low_at..]
                    .iter()
                    .copied()
                    .max_by(|a, b| a.bytes.total_cmp(&b.bytes))
                && high.bytes - after[low_at].bytes >= swing
            {
                peaks.push(high);
            }
        }
    }
    let keep = cfg.recent_peaks.max(1);
    if peaks.len() > keep {
        peaks.drain(..peaks.len() - keep);
    }
    peaks
}

/// A swing smaller than this is noise on a plateau, not a new peak: a quarter of the series'
/// range (2nd to 98th percentile) and `min_swing_bytes`. Unlike the verdict's cycle finder it
/// takes no noise estimate from first differences: samples are stored on change, so a
/// process that jumps between two levels alternates and its "noise" would be the swing itself.
fn swing_threshold(ys: &[f64], cfg: &RiskConfig) -> f64 {
    let range = match (stats::quantile(ys, 0.98), stats::quantile(ys, 0.02)) {
        (Some(hi), Some(lo)) => hi - lo,
        _ => 0.0,
    };
    (0.25 * range).max(cfg.min_swing_bytes)
}

/// Seconds until the rising peaks cross `threshold`, when every recent peak tops the one
/// before by more than 1 % of the limit (noise on a plateau does not climb); None when they
/// do not rise so.
fn trend_eta(peaks: &[Point], limit: f64, threshold: f64, cfg: &RiskConfig) -> Option<f64> {
    if peaks.len() < cfg.recent_peaks.max(2) {
        return None;
    }
    let step = (0.01 * limit).max(cfg.min_swing_bytes / 8.0);
    if !peaks.windows(2).all(|w| w[1].bytes - w[0].bytes > step) {
        return None;
    }
    let trend = stats::theil_sen(peaks)?;
    let last = peaks.last()?;
    if trend.slope.is_nan() || trend.slope <= 0.0 {
        return None;
    }
    let eta = (threshold - trend.at(last.t)) / trend.slope;
    eta.is_finite().then_some(eta.max(0.0))
}

/// "238, 241, 240 MiB" with its count: "last 3 peaks: 238, 241, 240 MiB".
fn peak_list(peaks: &[u64]) -> String {
    let values: Vec<String> = peaks
        .iter()
        .map(|&b| format!("{:.0}", b as f64 / MIB))
        .collect();
    match peaks.len() {
        1 => format!("peak: {} MiB", values[0]),
        n => format!("last {n} peaks: {} MiB", values.join(", ")),
    }
}

const MIB: f64 = 1024.0 * 1024.0;

/// "256 MiB" (whole MiB: limits are set in round numbers).
fn mib(b: f64) -> String {
    format!("{:.0} MiB", b / MIB)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: f64 = MIB;

    /// A saw-tooth: from `low` up to `peak(i)` over `rise` seconds, held 2 s, back down, one
    /// cycle every `period` seconds, sampled every second.
    fn sawtooth(cycles: usize, low: f64, peak: impl Fn(usize) -> f64) -> Vec<Point> {
        let period = 8;
        let mut out = Vec::new();
        for c in 0..cycles {
            for s in 0..period {
                let top = peak(c);
                let bytes = match s {
                    0 => low,
                    1..=4 => low + (top - low) * s as f64 / 4.0,
                    5 => top,
                    _ => low,
                };
                out.push(Point {
                    t: (c * period + s) as f64,
                    bytes,
                });
            }
        }
        out
    }

    #[test]
    fn the_webhook_case_is_at_risk_with_its_peaks_quoted() {
        let pts = sawtooth(6, 40.0 * MB, |c| {
            [230.0, 236.0, 238.0, 241.0, 240.0, 240.0][c] * MB
        });
        let r = assess_risk(&pts, (256.0 * MB) as u64, &RiskConfig::default()).unwrap();
        assert!(r.at_risk);
        assert_eq!(r.kind, Some(RiskKind::NearLimit));
        assert_eq!(r.peak_ratio, 0.941);
        assert_eq!(r.peak_bytes, (241.0 * MB) as u64);
        // The last peak is confirmed by the fall after it; no rise is under way at the end.
        assert_eq!(
            r.reason,
            "Peaks reach 94% of the 256 MiB limit (last 3 peaks: 241, 240, 240 MiB)"
        );
    }

    #[test]
    fn the_same_shape_under_a_roomy_limit_is_not_at_risk() {
        let pts = sawtooth(6, 40.0 * MB, |_| 118.0 * MB);
        let r = assess_risk(&pts, (512.0 * MB) as u64, &RiskConfig::default()).unwrap();
        assert!(!r.at_risk);
        assert_eq!(r.kind, None);
        assert_eq!(r.peak_ratio, 0.23);
        assert_eq!(r.recent_peaks_bytes.len(), 3);
        assert_eq!(
            r.reason,
            "Peaks reach 23% of the 512 MiB limit (last 3 peaks: 118, 118, 118 MiB)"
        );
        let tight = assess_risk(&pts, (128.0 * MB) as u64, &RiskConfig::default()).unwrap();
        assert!(tight.at_risk, "118 of 128 MiB is 92%: within 10%");
        assert_eq!(tight.peak_ratio, 0.922);
    }

    #[test]
    fn the_margin_is_configurable() {
        let pts = sawtooth(4, 40.0 * MB, |_| 118.0 * MB);
        let cfg = RiskConfig {
            margin: 0.05,
            ..RiskConfig::default()
        };
        let r = assess_risk(&pts, (128.0 * MB) as u64, &cfg).unwrap();
        assert!(!r.at_risk, "92% is outside a 5% margin");
        let cfg = RiskConfig {
            margin: 0.6,
            ..RiskConfig::default()
        };
        // 118 of 256 MiB is 46%: within a 60% margin.
        assert!(
            assess_risk(&pts, (256.0 * MB) as u64, &cfg)
                .unwrap()
                .at_risk
        );
    }

    #[test]
    fn rising_peaks_are_at_risk_before_they_reach_the_margin() {
        // Peaks 120, 140, 160, 180 MiB every 8 s: 2.5 MiB/s; 90% of 256 MiB is 230 MiB.
        let pts = sawtooth(4, 40.0 * MB, |c| (120.0 + 20.0 * c as f64) * MB);
        let r = assess_risk(&pts, (256.0 * MB) as u64, &RiskConfig::default()).unwrap();
        assert!(r.at_risk, "{}", r.reason);
        assert_eq!(r.kind, Some(RiskKind::Trending));
        assert!(
            r.reason.starts_with(
                "Peaks climb towards the 256 MiB limit (last 3 peaks: 140, 160, 180 MiB, 70% now)"
            ),
            "{}",
            r.reason
        );
        // Far from the horizon: a slow climb is not a risk yet.
        let cfg = RiskConfig {
            horizon_secs: 5.0,
            ..RiskConfig::default()
        };
        assert!(
            !assess_risk(&pts, (256.0 * MB) as u64, &cfg)
                .unwrap()
                .at_risk
        );
    }

    #[test]
    fn a_flat_process_near_its_limit_is_at_risk_and_one_far_from_it_is_not() {
        let flat: Vec<Point> = (0..30)
            .map(|i| Point {
                t: i as f64,
                bytes: 120.0 * MB + (i % 3) as f64 * 4096.0,
            })
            .collect();
        let r = assess_risk(&flat, (128.0 * MB) as u64, &RiskConfig::default()).unwrap();
        assert!(r.at_risk);
        assert_eq!(r.recent_peaks_bytes.len(), 1);
        assert!(r.reason.ends_with("(peak: 120 MiB)"), "{}", r.reason);
        let r = assess_risk(&flat, (1024.0 * MB) as u64, &RiskConfig::default()).unwrap();
        assert!(!r.at_risk);
    }

    /// Samples are stored on change: a process that jumps between two levels alternates
    /// between them, with no ramp in between.
    #[test]
    fn peaks_of_a_series_that_jumps_between_two_levels_are_found() {
        let pts: Vec<Point> = (0..12)
            .map(|i| Point {
                t: i as f64 * 4.0,
                bytes: if i % 2 == 1 { 118.0 * MB } else { 40.0 * MB },
            })
            .collect();
        let r = assess_risk(&pts, (128.0 * MB) as u64, &RiskConfig::default()).unwrap();
        assert!(r.at_risk);
        assert_eq!(r.recent_peaks_bytes.len(), 3, "{r:?}");
    }

    #[test]
    fn a_rise_under_way_counts_as_a_peak() {
        let mut pts = sawtooth(3, 40.0 * MB, |_| 100.0 * MB);
        let t0 = pts.last().unwrap().t;
        for (i, b) in [60.0, 90.0, 125.0].iter().enumerate() {
            pts.push(Point {
                t: t0 + 1.0 + i as f64,
                bytes: b * MB,
            });
        }
        let r = assess_risk(&pts, (128.0 * MB) as u64, &RiskConfig::default()).unwrap();
        assert!(r.at_risk);
        assert_eq!(r.recent_peaks_bytes.last(), Some(&((125.0 * MB) as u64)));
    }

    #[test]
    fn garbage_in_gives_no_answer_or_a_sane_one() {
        assert_eq!(assess_risk(&[], 100, &RiskConfig::default()), None);
        let p = [Point {
            t: 1.0,
            bytes: 50.0,
        }];
        assert_eq!(assess_risk(&p, 0, &RiskConfig::default()), None);
        let nan = [
            Point {
                t: f64::NAN,
                bytes: 1.0,
            },
            Point {
                t: 1.0,
                bytes: f64::INFINITY,
            },
        ];
        assert_eq!(assess_risk(&nan, 100, &RiskConfig::default()), None);
        let r = assess_risk(&p, 100, &RiskConfig::default()).unwrap();
        assert_eq!(r.peak_ratio, 0.5);
    }
}
