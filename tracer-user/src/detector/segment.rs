//! Change-point segmentation: splits a series into straight-line pieces.
//!
//! The verdict must describe what memory is doing *now*. A cache that warmed up for three
//! minutes and then levelled off has a strongly positive slope over the whole window, yet it is
//! not leaking; a leak that started two minutes ago after an hour of flat usage has a tiny slope
//! over the whole window, yet it is leaking, and the SRE wants to know since when. Both are
//! answered by cutting the window where the behaviour changed and judging the last piece.
//!
//! Method: greedy binary segmentation. Each piece is modelled by its own least-squares line
//! (discontinuous at the cuts, so both bends and steps are captured); a piece is cut where the
//! two-line fit most reduces the squared error, if that reduction beats a BIC-style penalty.
//! Prefix sums make every candidate cut O(1), so a pass over a piece is O(n) and the whole
//! segmentation is O(n * max_segments²) at worst.

use std::ops::Range;

/// Tuning for [`segments`].
#[derive(Clone, Copy, Debug)]
pub struct SegmentOptions {
    /// Fewest samples a piece may have.
    pub min_len: usize,
    /// Shortest time span (seconds) a piece may cover.
    pub min_span: f64,
    /// Noise the data is assumed to have at least (same unit as the values). Added to the error of
    /// both models so that a perfectly clean line with a little curvature, or rounding error, is
    /// not cut into pieces on a meaningless "infinite" likelihood ratio.
    pub noise_floor: f64,
    /// Most pieces to return.
    pub max_segments: usize,
    /// Penalty per cut, in units of `ln(n)` (BIC would charge 3 for the three extra parameters:
    /// cut position, slope and intercept). Larger is more conservative.
    pub penalty: f64,
}

/// Prefix sums of 1, t, t², y, ty, y² over normalised values.
struct Prefix {
    t: Vec<f64>,
    tt: Vec<f64>,
    y: Vec<f64>,
    ty: Vec<f64>,
    yy: Vec<f64>,
}

impl Prefix {
    fn new(ts: &[f64], ys: &[f64]) -> Self {
        let n = ts.len().min(ys.len());
        let mut p = Prefix {
            t: Vec::with_capacity(n + 1),
            tt: Vec::with_capacity(n + 1),
            y: Vec::with_capacity(n + 1),
            ty: Vec::with_capacity(n + 1),
            yy: Vec::with_capacity(n + 1),
        };
        let (mut st, mut stt, mut sy, mut sty, mut syy) = (0.0, 0.0, 0.0, 0.0, 0.0);
        p.push(st, stt, sy, sty, syy);
        for (&t, &y) in ts.iter().zip(ys) {
            st += t;
            stt += t * t;
            sy += y;
            sty += t * y;
            syy += y * y;
            p.push(st, stt, sy, sty, syy);
        }
        p
    }

    fn push(&mut self, t: f64, tt: f64, y: f64, ty: f64, yy: f64) {
        self.t.push(t);
        self.tt.push(tt);
        self.y.push(y);
        self.ty.push(ty);
        self.yy.push(yy);
    }

    /// Residual sum of squares of the least-squares line through samples `a..b`.
    fn sse(&self, a: usize, b: usize) -> f64 {
        let m = (b - a) as f64;
        if b <= a + 1 {
            return 0.0;
        }
        let st = self.t[b] - self.t[a];
        let sy = self.y[b] - self.y[a];
        let var_t = (self.tt[b] - self.tt[a]) - st * st / m;
        let var_y = (self.yy[b] - self.yy[a]) - sy * sy / m;
        let cov = (self.ty[b] - self.ty[a]) - st * sy / m;
        let explained = if var_t > 1e-12 {
            cov * cov / var_t
        } else {
            0.0
        };
        let sse = var_y - explained;
        if sse.is_finite() { sse.max(0.0) } else { 0.0 }
    }
}

/// Splits samples `(ts[i], ys[i])` (ascending `ts`) into consecutive index ranges that each
/// follow one straight line. Always returns at least one range covering everything (empty input
/// gives one empty range).
pub fn segments(ts: &[f64], ys: &[f64], opts: &SegmentOptions) -> Vec<Range<usize>> {
    let n = ts.len().min(ys.len());
    let whole: Vec<Range<usize>> = std::iter::once(0..n).collect();
    if n < 2 * opts.min_len.max(2) {
        return whole;
    }
    // Normalise to O(1) magnitudes so the prefix sums keep their precision: raw byte counts
    // squared and summed over thousands of samples would swamp the residuals we compare.
    let t0 = ts[0];
    let t_scale = (ts[n - 1] - t0).abs().max(1e-9);
    let y_mid = ys.iter().sum::<f64>() / n as f64;
    let y_scale = ys
        .iter()
        .map(|y| (y - y_mid).abs())
        .fold(0.0, f64::max)
        .max(opts.noise_floor)
        .max(1e-9);
    if !(y_mid.is_finite() && y_scale.is_finite()) {
        return whole;
    }
    let nt: Vec<f64> = ts[..n].iter().map(|t| (t - t0) / t_scale).collect();
    let ny: Vec<f64> = ys[..n].iter().map(|y| (y - y_mid) / y_scale).collect();
    let prefix = Prefix::new(&nt, &ny);
    let noise2 = (opts.noise_floor / y_scale).powi(2);
    let splitter = Splitter {
        ts: &ts[..n],
        prefix: &prefix,
        noise2,
        opts,
    };

    let mut pieces = whole;
    while pieces.len() < opts.max_segments.max(1) {
        let best = pieces
            .iter()
            .enumerate()
            .filter_map(|(i, r)| {
                splitter
                    .best_cut(r.clone())
                    .map(|(cut, gain)| (i, cut, gain))
            })
            .max_by(|a, b| a.2.total_cmp(&b.2));
        let Some((i, cut, _)) = best else { break };
        let r = pieces[i].clone();
        pieces.splice(i..=i, [r.start..cut, cut..r.end]);
    }
    pieces
}

struct Splitter<'a> {
    ts: &'a [f64],
    prefix: &'a Prefix,
    noise2: f64,
    opts: &'a SegmentOptions,
}

impl Splitter<'_> {
    /// Best admissible cut of `r` and its gain over the penalty, if the cut is worth making.
    fn best_cut(&self, r: Range<usize>) -> Option<(usize, f64)> {
        let min_len = self.opts.min_len.max(2);
        let (a, b) = (r.start, r.end);
        if b - a < 2 * min_len {
            return None;
        }
        let mut best: Option<(usize, f64)> = None;
        for k in a + min_len..=b - min_len {
            let left_span = self.ts[k - 1] - self.ts[a];
            let right_span = self.ts[b - 1] - self.ts[k];
            if left_span < self.opts.min_span || right_span < self.opts.min_span {
                continue;
            }
            let cost = self.prefix.sse(a, k) + self.prefix.sse(k, b);
            if best.is_none_or(|(_, c)| cost < c) {
                best = Some((k, cost));
            }
        }
        let (cut, cost) = best?;
        let m = (b - a) as f64;
        let floor = m * self.noise2;
        let ratio = (self.prefix.sse(a, b) + floor) / (cost + floor);
        if !(ratio.is_finite() && ratio > 0.0) {
            return None;
        }
        let gain = m * ratio.ln() - self.opts.penalty * m.ln();
        (gain > 0.0).then_some((cut, gain))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> SegmentOptions {
        SegmentOptions {
            min_len: 5,
            min_span: 0.0,
            noise_floor: 0.01,
            max_segments: 6,
            penalty: 6.0,
        }
    }

    #[test]
    fn straight_line_is_one_piece() {
        let ts: Vec<f64> = (0..200).map(f64::from).collect();
        let ys: Vec<f64> = ts
            .iter()
            .map(|t| 3.0 * t + if (*t as i64) % 2 == 0 { 1.0 } else { -1.0 })
            .collect();
        assert_eq!(segments(&ts, &ys, &opts()), vec![0..200]);
    }

    #[test]
    fn flat_then_ramp_is_cut_at_the_bend() {
        let ts: Vec<f64> = (0..300).map(f64::from).collect();
        let ys: Vec<f64> = ts
            .iter()
            .map(|t| if *t < 120.0 { 50.0 } else { 50.0 + (t - 120.0) })
            .collect();
        let segs = segments(&ts, &ys, &opts());
        let last = segs.last().expect("segment");
        assert!((115..=125).contains(&last.start), "{segs:?}");
    }

    #[test]
    fn tiny_inputs() {
        assert_eq!(segments(&[], &[], &opts()), vec![0..0]);
        assert_eq!(segments(&[1.0], &[1.0], &opts()), vec![0..1]);
    }
}
