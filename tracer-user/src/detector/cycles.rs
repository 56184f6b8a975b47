//! Step 2: find GC/cache cycles and choose what the verdict is judged on: the samples, the
//! samples since the cycles stopped, or the troughs of a cycling series.

use super::{DetectorConfig, Point, stats};

/// Troughs found in a series, and the swing threshold used to find them.
pub(super) struct Cycles {
    pub(super) troughs: Vec<stats::Trough>,
    pub(super) threshold: f64,
}

/// Finds GC/cache cycles: swings bigger than the noise, than a quarter of the detrended range,
/// and than `min_cycle_bytes`.
pub(super) fn find_cycles(pts: &[Point], cfg: &DetectorConfig) -> Cycles {
    let ys: Vec<f64> = pts.iter().map(|p| p.bytes).collect();
    let noise = stats::diff_sigma(&ys).unwrap_or(0.0);
    // Detrend first so a steep leak's rise is not mistaken for cycle amplitude; use the 2nd-98th
    // percentile range so one spike does not inflate the threshold past real GC swings.
    let range = stats::least_squares(pts)
        .and_then(|(slope, tm, ym)| {
            let resid: Vec<f64> = pts
                .iter()
                .map(|p| p.bytes - (ym + slope * (p.t - tm)))
                .collect();
            Some(stats::quantile(&resid, 0.98)? - stats::quantile(&resid, 0.02)?)
        })
        .unwrap_or(0.0);
    let threshold = (cfg.cycle_noise_sigmas * noise)
        .max(cfg.cycle_range_frac * range)
        .max(cfg.min_cycle_bytes);
    Cycles {
        troughs: stats::find_troughs(&ys, threshold),
        threshold,
    }
}

/// Which series the verdict is judged on.
pub(super) enum Basis {
    /// The samples from this index on (no cycles).
    Samples { from: usize },
    /// Cycles stopped: the samples from the last trough on.
    Stalled { from: usize },
    /// The troughs of a cycling series.
    Troughs(Vec<Point>),
    /// Cycling, but too few cycles yet.
    TooFewCycles,
}

pub(super) fn choose_basis(pts: &[Point], cycles: &Cycles, cfg: &DetectorConfig) -> Basis {
    let tr = &cycles.troughs;
    let (Some(last), Some(first_pt), Some(last_pt)) = (tr.last(), pts.first(), pts.last()) else {
        return Basis::Samples { from: 0 };
    };
    let trough_t: Vec<f64> = tr
        .iter()
        .filter_map(|x| pts.get(x.index).map(|p| p.t))
        .collect();
    let t_last = pts.get(last.index).map_or(last_pt.t, |p| p.t);
    let period = if trough_t.len() >= 2 {
        let gaps: Vec<f64> = trough_t.windows(2).map(|w| w[1] - w[0]).collect();
        stats::median(&gaps).unwrap_or(0.0)
    } else {
        t_last - first_pt.t
    };
    if last_pt.t - t_last > cfg.cycle_stall_factor * period {
        return Basis::Stalled { from: last.index };
    }
    if tr.len() < cfg.min_troughs.max(2) {
        return Basis::TooFewCycles;
    }
    Basis::Troughs(
        tr.iter()
            .filter_map(|x| pts.get(x.index).copied())
            .collect(),
    )
}
