//! Robust estimators for memory time series.
//!
//! Memory samples are noisy in ways that break least squares: a single page-cache spike, a
//! sampling hiccup that reads a half-updated counter, a GC that frees 40% of the heap at once.
//! Everything here is therefore median-based (Theil–Sen, MAD) or threshold-based (the zig-zag
//! trough finder), and every function ignores non-finite inputs instead of panicking.

use super::Point;

/// Turns a MAD into a standard-deviation estimate (exact for Gaussian noise). Used so that noise
/// thresholds can be written as "k sigma" and mean what they say.
pub const MAD_TO_SIGMA: f64 = 1.4826;

/// Theil–Sen uses every pair of points while there are at most this many points; beyond that it
/// uses every pair of a deterministic sample of this many points (one pseudo-random point from
/// each of this many equal slices of the series). That bounds its cost — at most 79 800 slopes
/// and one selection, well under a millisecond — however long the series is, while 400 points
/// spread over the whole window estimate a trend about as well as thousands.
pub const THEIL_SEN_MAX_POINTS: usize = 400;

/// The finite values of `xs`, so that selection and sorting never see a NaN.
fn finite(xs: &[f64]) -> Vec<f64> {
    xs.iter().copied().filter(|x| x.is_finite()).collect()
}

/// Median of finite values, reordering `v` in place (O(n) selection, no full sort).
fn median_in_place(v: &mut [f64]) -> Option<f64> {
    let n = v.len();
    if n == 0 {
        return None;
    }
    let mid = n / 2;
    let (lower, upper_mid, _) = v.select_nth_unstable_by(mid, f64::total_cmp);
    let upper_mid = *upper_mid;
    if n % 2 == 1 {
        return Some(upper_mid);
    }
    let lower_mid = lower.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    // Halve before adding so two huge values cannot overflow to infinity.
    Some(lower_mid / 2.0 + upper_mid / 2.0)
}

/// Median of the finite values of `xs`; `None` if there are none.
pub fn median(xs: &[f64]) -> Option<f64> {
    median_in_place(&mut finite(xs))
}

/// The `q`-quantile (`q` clamped to 0..=1) of the finite values of `xs`, interpolating linearly
/// between the two nearest order statistics; `None` if there are no finite values.
pub fn quantile(xs: &[f64], q: f64) -> Option<f64> {
    let mut v = finite(xs);
    if v.is_empty() {
        return None;
    }
    v.sort_unstable_by(f64::total_cmp);
    let q = if q.is_nan() { 0.5 } else { q.clamp(0.0, 1.0) };
    let pos = q * (v.len() - 1) as f64;
    // `pos` is within 0..=len-1, so both indices are in bounds.
    let lo = pos.floor() as usize;
    let hi = (lo + 1).min(v.len() - 1);
    let frac = pos - lo as f64;
    Some(v[lo] + (v[hi] - v[lo]) * frac)
}

/// Median absolute deviation from the median (unscaled; multiply by [`MAD_TO_SIGMA`] for a
/// sigma). Half the values can be arbitrarily wild without moving it much.
pub fn mad(xs: &[f64]) -> Option<f64> {
    let v = finite(xs);
    let m = median_in_place(&mut v.clone())?;
    let mut dev: Vec<f64> = v.iter().map(|x| (x - m).abs()).collect();
    median_in_place(&mut dev)
}

/// Robust standard deviation: `MAD * 1.4826`.
pub fn robust_sigma(xs: &[f64]) -> Option<f64> {
    mad(xs).map(|m| m * MAD_TO_SIGMA)
}

/// Noise sigma estimated from first differences: `MAD(diff) * 1.4826 / sqrt(2)`.
///
/// Differencing removes any trend and the MAD ignores the rare big jumps (a GC drop is one
/// difference among many), so this measures sample-to-sample jitter even on a saw-tooth or a
/// steep leak, where the spread of the values themselves would be dominated by the signal.
pub fn diff_sigma(ys: &[f64]) -> Option<f64> {
    let v = finite(ys);
    let diffs: Vec<f64> = v.windows(2).map(|w| w[1] - w[0]).collect();
    robust_sigma(&diffs).map(|s| s / std::f64::consts::SQRT_2)
}

/// Lag-1 autocorrelation of the finite values of `xs` (about their mean), in -1..=1; `None` for
/// fewer than three values or no variation.
///
/// Used on trend residuals: independent noise gives ≈ 0, while a wandering (random-walk-like)
/// series gives close to 1, meaning its samples carry far less independent evidence of a trend
/// than their number suggests.
pub fn lag1_autocorrelation(xs: &[f64]) -> Option<f64> {
    let v = finite(xs);
    if v.len() < 3 {
        return None;
    }
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    let var: f64 = v.iter().map(|x| (x - mean) * (x - mean)).sum();
    let cov: f64 = v.windows(2).map(|w| (w[0] - mean) * (w[1] - mean)).sum();
    let r = cov / var;
    (var > 0.0 && r.is_finite()).then(|| r.clamp(-1.0, 1.0))
}

/// Effective number of independent samples among `n` whose noise has lag-1 autocorrelation
/// `rho` (AR(1) approximation): `n (1 - rho) / (1 + rho)`, never more than `n` (negative
/// autocorrelation is treated as none) and never less than 1 when `n >= 1`.
pub fn effective_samples(n: usize, rho: f64) -> f64 {
    let n = n as f64;
    let rho = if rho.is_finite() {
        rho.clamp(0.0, 0.999)
    } else {
        0.0
    };
    (n * (1.0 - rho) / (1.0 + rho)).max(n.min(1.0))
}

/// A robust straight-line fit.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Trend {
    /// Median of the pairwise slopes, in bytes per second.
    pub slope: f64,
    /// Reference time (median `t` of the fitted points). The line is anchored here rather than
    /// at `t = 0` so that `level` is a typical value of the data, not a far extrapolation.
    pub t0: f64,
    /// Fitted value at `t0`: median of `bytes - slope * (t - t0)`.
    pub level: f64,
    /// (rising pairs - falling pairs) / examined pairs, in -1..=1: Kendall's tau between time
    /// and bytes. 1 means every later sample is higher than every earlier one.
    pub concordance: f64,
    /// Number of pairwise slopes examined.
    pub pairs: usize,
}

impl Trend {
    /// Value of the fitted line at time `t`.
    pub fn at(&self, t: f64) -> f64 {
        self.level + self.slope * (t - self.t0)
    }
}

/// SplitMix64: a tiny deterministic generator, so pair sampling is reproducible (the same series
/// always gets the same verdict) without pulling in a `rand` dependency.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform-enough index in `0..n` (`n > 0`); modulo bias is irrelevant at these sizes.
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Slope between two points, if defined and finite.
fn pair_slope(a: &Point, b: &Point) -> Option<f64> {
    let dt = b.t - a.t;
    if dt == 0.0 {
        return None;
    }
    let s = (b.bytes - a.bytes) / dt;
    s.is_finite().then_some(s)
}

/// The pairwise slopes Theil–Sen takes the median of: all pairs of `pts`, or of a
/// `max_points`-point sample of them.
fn pairwise_slopes(pts: &[Point], max_points: usize) -> Vec<f64> {
    let sampled;
    let pts = if pts.len() > max_points {
        sampled = stratified_sample(pts, max_points);
        &sampled[..]
    } else {
        pts
    };
    let n = pts.len();
    let mut slopes = Vec::with_capacity(n * n.saturating_sub(1) / 2);
    for (i, a) in pts.iter().enumerate() {
        slopes.extend(pts[i + 1..].iter().filter_map(|b| pair_slope(a, b)));
    }
    slopes
}

/// `k` points of `pts` (`k <= pts.len()`), one from each of `k` equal index slices, at a
/// pseudo-random position within its slice. Random rather than every m-th point, so that a
/// periodic signal (a GC cycle of exactly m samples) cannot alias into a trend; seeded by the
/// length, so the same series always gives the same answer.
fn stratified_sample(pts: &[Point], k: usize) -> Vec<Point> {
    let n = pts.len();
    let mut rng = SplitMix64(0x5EED ^ n as u64);
    (0..k)
        .filter_map(|s| {
            let lo = s * n / k;
            let hi = ((s + 1) * n / k).max(lo + 1);
            pts.get(lo + rng.below(hi - lo)).copied()
        })
        .collect()
}

/// Theil–Sen regression: the median of pairwise slopes, with a median intercept.
///
/// Tolerates up to ~29% of the points being arbitrary outliers, so one +300 MiB spike cannot
/// fake a trend. Cost is O(min(n, 400)² + n). Returns `None` for fewer than two points with
/// distinct finite timestamps.
pub fn theil_sen(points: &[Point]) -> Option<Trend> {
    theil_sen_capped(points, THEIL_SEN_MAX_POINTS)
}

/// [`theil_sen`] with a different cap on the points used for pairwise slopes (at least 2), for
/// callers that need only a rough slope and want it cheaper.
pub fn theil_sen_capped(points: &[Point], max_points: usize) -> Option<Trend> {
    let pts: Vec<Point> = points
        .iter()
        .copied()
        .filter(|p| p.t.is_finite() && p.bytes.is_finite())
        .collect();
    let mut slopes = pairwise_slopes(&pts, max_points.max(2));
    let pairs = slopes.len();
    if pairs == 0 {
        return None;
    }
    let rising = slopes.iter().filter(|s| **s > 0.0).count();
    let falling = slopes.iter().filter(|s| **s < 0.0).count();
    let concordance = (rising as f64 - falling as f64) / pairs as f64;
    let slope = median_in_place(&mut slopes)?;
    let mut ts: Vec<f64> = pts.iter().map(|p| p.t).collect();
    let t0 = median_in_place(&mut ts)?;
    let mut offsets: Vec<f64> = pts.iter().map(|p| p.bytes - slope * (p.t - t0)).collect();
    let level = median_in_place(&mut offsets)?;
    let trend = Trend {
        slope,
        t0,
        level,
        concordance,
        pairs,
    };
    (trend.slope.is_finite() && trend.level.is_finite()).then_some(trend)
}

/// Ordinary least-squares line, returned as `(slope, t_mean, y_mean)`. Only used where
/// robustness does not matter (detrending before measuring a range), because it is O(n).
pub fn least_squares(points: &[Point]) -> Option<(f64, f64, f64)> {
    let pts: Vec<&Point> = points
        .iter()
        .filter(|p| p.t.is_finite() && p.bytes.is_finite())
        .collect();
    if pts.is_empty() {
        return None;
    }
    let n = pts.len() as f64;
    let tm = pts.iter().map(|p| p.t).sum::<f64>() / n;
    let ym = pts.iter().map(|p| p.bytes).sum::<f64>() / n;
    let stt: f64 = pts.iter().map(|p| (p.t - tm) * (p.t - tm)).sum();
    let sty: f64 = pts.iter().map(|p| (p.t - tm) * (p.bytes - ym)).sum();
    let slope = if stt > 0.0 { sty / stt } else { 0.0 };
    [slope, tm, ym]
        .iter()
        .all(|x| x.is_finite())
        .then_some((slope, tm, ym))
}

/// Running median over a window of `2 * half + 1` samples (shrunk at the ends). Removes spikes
/// up to `half` samples wide while keeping step edges sharp, unlike a moving average.
pub fn median_filter(ys: &[f64], half: usize) -> Vec<f64> {
    let mut buf = Vec::with_capacity(2 * half + 1);
    (0..ys.len())
        .map(|i| {
            let lo = i.saturating_sub(half);
            let hi = (i + half + 1).min(ys.len());
            buf.clear();
            buf.extend(ys[lo..hi].iter().copied().filter(|y| y.is_finite()));
            median_in_place(&mut buf).unwrap_or(ys[i])
        })
        .collect()
}

/// One trough found by [`find_troughs`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Trough {
    /// Index of the trough (the lowest sample of its cycle).
    pub index: usize,
    /// Index of the peak that preceded it.
    pub peak_index: usize,
    /// How far the series fell from that peak to this trough (its prominence on the left).
    pub depth: f64,
}

/// Where the zig-zag scan is in the current swing.
#[derive(Clone, Copy, PartialEq)]
enum Swing {
    /// No move of `min_swing` yet, so no direction.
    Unknown,
    /// Rising: tracking the highest point, which becomes a peak once we fall `min_swing` below it.
    Up,
    /// Falling: tracking the lowest point, which becomes a trough once we rise `min_swing` above it.
    Down,
}

/// Finds the troughs of a cycling series: the lowest sample between two peaks, for every swing
/// that falls at least `min_swing` from its peak and then rises at least `min_swing` again.
///
/// This is a zig-zag (hysteresis) scan, O(n): a trough is only confirmed by a later rise of
/// `min_swing`, and a peak only by a later fall of `min_swing`, so wiggles smaller than the
/// threshold — noise on a GC ramp — never split a cycle. Choose `min_swing` above the noise
/// (see [`diff_sigma`]) and as a fraction of the series' range, so it measures prominence.
///
/// The leading low point of the series (before any peak) and a final low that has not yet been
/// confirmed by a rise are deliberately not reported: the first has no cycle to its left, and
/// the second may still be falling (a GC that is still releasing) and would look like a rise in
/// the lows. Non-finite values are skipped. Returns nothing if `min_swing` is not positive.
pub fn find_troughs(ys: &[f64], min_swing: f64) -> Vec<Trough> {
    let mut troughs = Vec::new();
    if min_swing.is_nan() || min_swing <= 0.0 {
        return troughs;
    }
    let mut finite_idx = ys
        .iter()
        .enumerate()
        .filter(|(_, y)| y.is_finite())
        .map(|(i, _)| i);
    let Some(first) = finite_idx.next() else {
        return troughs;
    };
    let (mut hi, mut lo, mut peak) = (first, first, first);
    let mut swing = Swing::Unknown;
    for i in finite_idx {
        let y = ys[i];
        match swing {
            Swing::Unknown => {
                if y > ys[hi] {
                    hi = i;
                }
                if y < ys[lo] {
                    lo = i;
                }
                if ys[hi] - ys[lo] >= min_swing {
                    if hi > lo {
                        // Rose from the start's low: that low has no peak before it, so it is
                        // not a cycle's trough; now look for the peak.
                        swing = Swing::Up;
                    } else {
                        // Fell from a peak: confirmed; now look for the trough after it.
                        peak = hi;
                        swing = Swing::Down;
                    }
                }
            }
            Swing::Up => {
                if y > ys[hi] {
                    hi = i;
                } else if ys[hi] - y >= min_swing {
                    peak = hi;
                    lo = i;
                    swing = Swing::Down;
                }
            }
            Swing::Down => {
                if y < ys[lo] {
                    lo = i;
                } else if y - ys[lo] >= min_swing {
                    troughs.push(Trough {
                        index: lo,
                        peak_index: peak,
                        depth: ys[peak] - ys[lo],
                    });
                    hi = i;
                    swing = Swing::Up;
                }
            }
        }
    }
    troughs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pts(ys: &[f64]) -> Vec<Point> {
        ys.iter()
            .enumerate()
            .map(|(i, &y)| Point {
                t: i as f64,
                bytes: y,
            })
            .collect()
    }

    #[test]
    fn median_and_quantile() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[f64::NAN]), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0, f64::NAN]), Some(2.5));
        assert_eq!(quantile(&[1.0, 2.0, 3.0, 4.0, 5.0], 0.25), Some(2.0));
        assert_eq!(quantile(&[1.0, 2.0], 0.5), Some(1.5));
        assert_eq!(quantile(&[7.0], 0.99), Some(7.0));
        assert_eq!(quantile(&[1.0, 2.0], f64::NAN), Some(1.5));
    }

    #[test]
    fn mad_ignores_outliers() {
        let xs = [1.0, 2.0, 3.0, 4.0, 1000.0];
        assert_eq!(median(&xs), Some(3.0));
        assert_eq!(mad(&xs), Some(1.0));
        assert_eq!(mad(&[]), None);
        let s = robust_sigma(&[5.0; 10]);
        assert_eq!(s, Some(0.0));
    }

    #[test]
    fn diff_sigma_ignores_trend_and_rare_jumps() {
        // A steep ramp with a GC drop every 20 samples: differences are all +5 except the drops.
        let ys: Vec<f64> = (0..100).map(|i| 100.0 + 5.0 * (i % 20) as f64).collect();
        assert_eq!(diff_sigma(&ys), Some(0.0));
    }

    #[test]
    fn autocorrelation_tells_noise_from_wander() {
        let alternating: Vec<f64> = (0..100)
            .map(|i| if i % 2 == 0 { 1.0 } else { -1.0 })
            .collect();
        assert!(lag1_autocorrelation(&alternating).is_some_and(|r| r < -0.9));
        let smooth: Vec<f64> = (0..100).map(|i| (i as f64 / 20.0).sin()).collect();
        assert!(lag1_autocorrelation(&smooth).is_some_and(|r| r > 0.9));
        assert_eq!(lag1_autocorrelation(&[1.0, 1.0, 1.0]), None);
        assert_eq!(lag1_autocorrelation(&[1.0, 2.0]), None);
        assert_eq!(effective_samples(100, 0.0), 100.0);
        assert_eq!(effective_samples(100, -0.5), 100.0);
        assert!((effective_samples(100, 0.9) - 100.0 * 0.1 / 1.9).abs() < 1e-9);
        assert_eq!(effective_samples(3, 1.0), 1.0);
        assert_eq!(effective_samples(0, f64::NAN), 0.0);
    }

    #[test]
    fn theil_sen_exact_line_and_spike() {
        let mut ys: Vec<f64> = (0..50).map(|i| 10.0 + 2.0 * i as f64).collect();
        ys[25] += 1e6;
        let fit = theil_sen(&pts(&ys)).expect("fit");
        assert!((fit.slope - 2.0).abs() < 1e-9, "{fit:?}");
        assert!((fit.at(0.0) - 10.0).abs() < 1e-6, "{fit:?}");
        assert!(fit.concordance > 0.9);
    }

    #[test]
    fn theil_sen_degenerate() {
        assert_eq!(theil_sen(&[]), None);
        assert_eq!(theil_sen(&[Point { t: 1.0, bytes: 1.0 }]), None);
        let same_t = [Point { t: 1.0, bytes: 1.0 }, Point { t: 1.0, bytes: 2.0 }];
        assert_eq!(theil_sen(&same_t), None);
        let flat = theil_sen(&pts(&[5.0; 10])).expect("fit");
        assert_eq!(flat.slope, 0.0);
        assert_eq!(flat.concordance, 0.0);
    }

    #[test]
    fn theil_sen_sampled_pairs_are_deterministic_and_accurate() {
        let ys: Vec<f64> = (0..5000)
            .map(|i| 3.0 * i as f64 + ((i * 7919) % 13) as f64)
            .collect();
        let a = theil_sen(&pts(&ys)).expect("fit");
        let b = theil_sen(&pts(&ys)).expect("fit");
        assert_eq!(a, b);
        assert_eq!(
            a.pairs,
            THEIL_SEN_MAX_POINTS * (THEIL_SEN_MAX_POINTS - 1) / 2
        );
        assert!((a.slope - 3.0).abs() < 0.01, "{a:?}");
    }

    #[test]
    fn median_filter_removes_spike_keeps_step() {
        let ys = [1.0, 1.0, 9.0, 1.0, 1.0, 5.0, 5.0, 5.0, 5.0];
        assert_eq!(
            median_filter(&ys, 2),
            vec![1.0, 1.0, 1.0, 1.0, 5.0, 5.0, 5.0, 5.0, 5.0]
        );
        assert!(median_filter(&[], 2).is_empty());
    }

    #[test]
    fn troughs_of_a_noisy_sawtooth() {
        // Ramps 100 -> 195 over 20 samples, drops back; +-2 wiggle on every sample.
        let ys: Vec<f64> = (0..200)
            .map(|i| 100.0 + 5.0 * (i % 20) as f64 + if i % 2 == 0 { 2.0 } else { -2.0 })
            .collect();
        let tr = find_troughs(&ys, 25.0);
        // 10 cycles; the first low (index 0) has no peak before it and is not reported.
        assert_eq!(tr.len(), 9, "{tr:?}");
        for (k, t) in tr.iter().enumerate() {
            assert_eq!(t.index, 20 * (k + 1));
            assert!(t.depth > 90.0);
        }
    }

    #[test]
    fn troughs_ignore_noise_and_need_confirmation() {
        let ys = [5.0, 6.0, 5.0, 6.0, 5.0];
        assert!(find_troughs(&ys, 2.0).is_empty());
        // Falls 10 and never rises again: the low is unconfirmed.
        assert!(find_troughs(&[10.0, 20.0, 10.0, 10.0], 5.0).is_empty());
        assert_eq!(find_troughs(&[10.0, 20.0, 10.0, 16.0], 5.0).len(), 1);
        assert!(find_troughs(&[1.0, f64::NAN, 3.0], 0.0).is_empty());
        assert!(find_troughs(&[f64::NAN], 1.0).is_empty());
    }
}
