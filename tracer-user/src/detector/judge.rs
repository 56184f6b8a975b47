//! Steps 3 and 4: cut the trend series where its behaviour changed and judge its last piece
//! with robust statistics, into an [`Assessment`] with a confidence and a reason.

use super::{
    Assessment, DetectorConfig, Point, Verdict,
    input::{recent_part, span},
    segment::{self, SegmentOptions},
    stats::{self, Trend},
    wording::{fmt_bytes, fmt_rate, fmt_secs, fmt_t},
};

/// Half-width of the running median that spikes are measured against before change-point
/// search (5 samples): a spike up to two samples wide stands out from it.
const SPIKE_FILTER_HALF: usize = 2;
/// Samples further than this many noise sigmas from their running median are clipped to it
/// before change-point search, so a spike cannot create a cut. Ordinary noise is left alone:
/// smoothing it instead would correlate neighbouring samples and make the BIC penalty, which
/// assumes independent noise, far too lenient.
const SPIKE_CLIP_SIGMAS: f64 = 3.0;
/// An earlier piece joins the current growth run only if its Kendall tau is at least this,
/// so a flat-but-noisy stretch before a leak does not drag `since` back to the window start.
const JOIN_CONCORDANCE: f64 = 0.3;

/// A last trend piece shorter than this (and than half the series) is judged together with
/// the rising piece before it when it cannot be judged alone (see `judge_growth`).
const SHORT_LAST_PIECE_SECS: f64 = 30.0;
/// Signal-to-noise at which the SNR factor reaches 1 - 1/e. The factor is Gaussian-shaped,
/// 1 - exp(-(snr/scale)²), so growth of one or two noise sigmas counts for little (wander does
/// that) while growth of several sigmas counts fully.
const SNR_SCALE: f64 = 3.0;
/// Samples (beyond 2) at which the evidence factor reaches 1 - 1/e, when judging samples.
const EVIDENCE_SCALE_SAMPLES: f64 = 4.0;
/// Troughs (beyond 2) at which the evidence factor reaches 1 - 1/e, when judging troughs: each
/// trough summarises a whole cycle, so fewer are needed than samples.
const EVIDENCE_SCALE_TROUGHS: f64 = 3.5;
/// Residuals are clipped to this many robust sigmas before measuring their autocorrelation, so
/// one spike cannot dominate it.
const RESIDUAL_CLIP_SIGMAS: f64 = 3.0;
/// The persistence check only needs the sign and rough size of the recent slope, so its
/// Theil–Sen uses at most this many points (a quarter of the cost of a full fit).
const PERSISTENCE_MAX_POINTS: usize = 200;
/// The persistence check's most recent part spans at least this long. Memory that grows in
/// steps (a Go heap under CPU contention grows 5-8 MiB every 2-4 s, and samples are only stored
/// on change) is flat for seconds after each step; the last third of a 15 s piece is one such
/// pause, and judged on it alone a two-minute leak lost its verdict until the next step (the
/// trace in tests/tests/data/go-heapleak-under-load.jsonl). 10 s spans a few steps: that trace
/// cut at every half second stays `Leaking` (8 s does not), and `tests::report_false_alarms` and
/// the warm-up's time to `Steady` are unchanged within one assessment in a thousand.
const PERSISTENCE_MIN_SECS: f64 = 10.0;
/// Fewest troughs in a trend piece when segmenting a trough series.
const MIN_TROUGH_PIECE: usize = 4;

/// Whether the trend series is made of samples or of troughs.
#[derive(Clone, Copy, PartialEq)]
pub(super) enum Mode {
    Samples,
    Troughs,
}

/// What `judge` needs to know besides the trend series.
pub(super) struct Ctx<'a> {
    pub(super) cfg: &'a DetectorConfig,
    pub(super) window: f64,
    pub(super) troughs: usize,
    pub(super) size: f64,
    /// Sample-to-sample noise sigma of the raw samples (never below the configured floor). A
    /// trend's residuals cannot honestly be quieter than this; with only a handful of troughs
    /// their own MAD can be, by luck.
    pub(super) noise: f64,
    pub(super) cycle_depth: f64,
    pub(super) mode: Mode,
    /// Prefix for the reason (why the basis was chosen), possibly empty.
    pub(super) note: String,
}

impl Ctx<'_> {
    /// Rate below which a trend is page-level jitter: under the absolute floor AND under the
    /// relative one, so small and large processes are both judged sensibly.
    fn rate_floor(&self) -> f64 {
        let relative = self.cfg.min_rate_frac_per_hour * self.size / 3600.0;
        self.cfg.min_rate_bytes_per_sec.min(relative).max(0.0)
    }

    /// The no-trend verdict for this kind of series.
    fn flat_verdict(&self) -> Verdict {
        let cycling = self.mode == Mode::Troughs
            && self.cycle_depth >= self.cfg.sawtooth_min_frac * self.size;
        if cycling {
            Verdict::Sawtooth
        } else {
            Verdict::Steady
        }
    }

    /// Evidence factor for `n` (effective) observations: 0 for two or fewer, rising to 1.
    fn evidence(&self, n: f64) -> f64 {
        let scale = match self.mode {
            Mode::Samples => EVIDENCE_SCALE_SAMPLES,
            Mode::Troughs => EVIDENCE_SCALE_TROUGHS,
        };
        1.0 - (-(n - 2.0).max(0.0) / scale).exp()
    }

    fn assessment(
        &self,
        verdict: Verdict,
        confidence: f64,
        slope: f64,
        since: Option<f64>,
        grown: f64,
        why: String,
    ) -> Assessment {
        let finite_or_zero = |x: f64| if x.is_finite() { x } else { 0.0 };
        Assessment {
            verdict,
            confidence: if confidence.is_finite() {
                confidence.clamp(0.0, 1.0)
            } else {
                0.0
            },
            growth_bytes_per_sec: finite_or_zero(slope),
            since: since.filter(|t| t.is_finite()),
            grown_bytes: finite_or_zero(grown),
            window_secs: self.window,
            troughs: self.troughs,
            reason: format!("{}{}", self.note, why),
        }
    }

    /// `Steady` or `Sawtooth`, with a reason. `why` explains a `Steady`; a `Sawtooth` is
    /// explained by its cycles. `changed` is the " since t=…" of the current trend piece.
    fn flat(&self, confidence: f64, slope: f64, changed: &str, why: String) -> Assessment {
        let verdict = self.flat_verdict();
        let why = match verdict {
            Verdict::Sawtooth => format!(
                "memory cycles by ~{} ({} GC/cache cycles) and the post-GC lows are flat{changed} ({})",
                fmt_bytes(self.cycle_depth),
                self.troughs,
                fmt_rate(slope),
            ),
            _ => why,
        };
        self.assessment(verdict, confidence, slope, None, 0.0, why)
    }

    /// Reason for a trend too weak to report.
    fn within_noise(&self, slope: f64, confidence: f64, changed: &str) -> String {
        format!(
            "no significant trend{changed}: {} drifting {}, within the noise (trend confidence {confidence:.2})",
            self.what(),
            fmt_rate(slope),
        )
    }

    fn what(&self) -> &'static str {
        match self.mode {
            Mode::Samples => "memory",
            Mode::Troughs => "post-GC lows",
        }
    }
}

/// Judges a trend series (samples or troughs): segments it and decides on the last piece.
pub(super) fn judge(trend: &[Point], ctx: &Ctx) -> Assessment {
    let cfg = ctx.cfg;
    let ts: Vec<f64> = trend.iter().map(|p| p.t).collect();
    let raw: Vec<f64> = trend.iter().map(|p| p.bytes).collect();
    let (ys, opts) = match ctx.mode {
        Mode::Samples => (
            clip_spikes(&raw, cfg.noise_floor_bytes),
            SegmentOptions {
                min_len: cfg.min_samples.max(trend.len() / 50).max(3),
                min_span: cfg.min_window_secs.max(cfg.min_piece_frac * span(trend)),
                noise_floor: cfg.noise_floor_bytes,
                max_segments: cfg.max_segments,
                penalty: cfg.split_penalty,
            },
        ),
        Mode::Troughs => (
            raw,
            SegmentOptions {
                min_len: MIN_TROUGH_PIECE,
                min_span: 0.0,
                noise_floor: cfg.noise_floor_bytes,
                max_segments: cfg.max_segments,
                penalty: cfg.split_penalty,
            },
        ),
    };
    let pieces = segment::segments(&ts, &ys, &opts);
    let Some(current) = pieces.last().cloned() else {
        return Assessment::insufficient(ctx.window, ctx.troughs, "no usable samples".into());
    };
    let cur = &trend[current.clone()];
    let Some(fit) = stats::theil_sen(cur) else {
        return Assessment::insufficient(
            ctx.window,
            ctx.troughs,
            "no usable trend in the data".into(),
        );
    };
    let floor = ctx.rate_floor();
    // When the current piece is not the whole series, say where it starts: "flat since t=181s"
    // is how an SRE sees that a warm-up is over.
    let changed = if current.start > 0 {
        format!(" since t={} (when the trend changed)", fmt_t(cur[0].t))
    } else {
        String::new()
    };
    if fit.slope.abs() <= floor {
        let why = format!(
            "no meaningful trend{changed}: {} is under the noise floor of {}",
            fmt_rate(fit.slope),
            fmt_rate(floor)
        );
        return ctx.flat(ctx.evidence(cur.len() as f64), fit.slope, &changed, why);
    }
    if fit.slope > 0.0 {
        judge_growth(trend, &pieces, fit, ctx, &changed)
    } else {
        judge_shrink(cur, fit, ctx, &changed)
    }
}

/// Pulls samples that stick out of their neighbourhood by more than a few noise sigmas back to
/// that limit (winsorising around a running median).
fn clip_spikes(ys: &[f64], noise_floor: f64) -> Vec<f64> {
    let sigma = stats::diff_sigma(ys).unwrap_or(0.0).max(noise_floor);
    let limit = SPIKE_CLIP_SIGMAS * sigma;
    let med = stats::median_filter(ys, SPIKE_FILTER_HALF);
    ys.iter()
        .zip(&med)
        .map(|(y, m)| m + (y - m).clamp(-limit, limit))
        .collect()
}

/// The pieces of evidence a trend verdict rests on.
struct Confidence {
    value: f64,
    concordance: f64,
    snr: f64,
}

/// Confidence that `run` trends in direction `dir` (+1 up, -1 down), with `cur` (its last
/// piece) still doing so at the end. See the module doc for the factors.
fn confidence(
    run: &[Point],
    run_fit: &Trend,
    cur: &[Point],
    cur_fit: &Trend,
    dir: f64,
    ctx: &Ctx,
) -> Confidence {
    let concordance = (dir * run_fit.concordance).max(0.0);
    let resid: Vec<f64> = run.iter().map(|p| p.bytes - run_fit.at(p.t)).collect();
    // Three views of the noise, take the largest: scatter about the fitted line (can be small by
    // luck with few points), scatter of successive differences (trend-free; for troughs this is
    // how much one cycle's low differs from the next, which is large when memory merely wanders),
    // and the raw samples' jitter (a floor: no trend series is quieter than the data under it).
    let values: Vec<f64> = run.iter().map(|p| p.bytes).collect();
    let sigma = stats::robust_sigma(&resid)
        .unwrap_or(0.0)
        .max(stats::diff_sigma(&values).unwrap_or(0.0))
        .max(ctx.noise);
    let change = (dir * run_fit.slope * span(run)).max(0.0);
    let snr = change / sigma;
    // Wandering memory (a random walk) drifts for a while as smoothly as a leak; what gives it
    // away is that its residuals are strongly autocorrelated, so its samples are worth far fewer
    // independent observations. Residuals within the noise floor carry no such structure.
    let rho = if sigma > ctx.cfg.noise_floor_bytes {
        let limit = RESIDUAL_CLIP_SIGMAS * sigma;
        let clipped: Vec<f64> = resid.iter().map(|r| r.clamp(-limit, limit)).collect();
        // Discount by two standard errors (1/sqrt(n) each): with a dozen samples the estimate
        // is mostly noise, and a real fast leak must not lose its evidence to it.
        stats::lag1_autocorrelation(&clipped).unwrap_or(0.0) - 2.0 / (run.len() as f64).sqrt()
    } else {
        0.0
    };
    let n_eff = stats::effective_samples(run.len(), rho);
    let persistence = persistence(cur, cur_fit, dir, ctx.cfg);
    let value = concordance.sqrt()
        * (1.0 - (-(snr / SNR_SCALE).powi(2)).exp())
        * ctx.evidence(n_eff)
        * persistence;
    Confidence {
        value: if value.is_finite() {
            value.clamp(0.0, 1.0)
        } else {
            0.0
        },
        concordance,
        snr,
    }
}

/// 1 if the most recent part of the piece (its last third, at least
/// [`PERSISTENCE_MIN_SECS`]) still trends at least half as fast as the whole piece, falling
/// linearly to 0 as the recent slope falls to zero (or reverses). This is the "is it still
/// happening?" test that keeps a levelling cache from being called a leak.
fn persistence(cur: &[Point], cur_fit: &Trend, dir: f64, cfg: &DetectorConfig) -> f64 {
    let frac = match span(cur) {
        s if s > 0.0 => cfg.recent_frac.max(PERSISTENCE_MIN_SECS / s),
        _ => cfg.recent_frac,
    };
    let recent = recent_part(cur, frac, 3);
    let whole = dir * cur_fit.slope;
    match stats::theil_sen_capped(recent, PERSISTENCE_MAX_POINTS) {
        Some(f) if whole > 0.0 => (dir * f.slope / (0.5 * whole)).clamp(0.0, 1.0),
        _ => 1.0,
    }
}

fn judge_growth(
    trend: &[Point],
    pieces: &[std::ops::Range<usize>],
    fit: Trend,
    ctx: &Ctx,
    changed: &str,
) -> Assessment {
    let cfg = ctx.cfg;
    let floor = ctx.rate_floor();
    let rising = |piece: &[Point]| {
        stats::theil_sen(piece)
            .is_some_and(|f| f.slope > floor && f.concordance >= JOIN_CONCORDANCE)
    };
    let mut pieces = pieces.to_vec();
    let mut fit = fit;
    let mut last = pieces.len() - 1;
    // A last piece too short to stand on its own (a GC cycle or two of a leaking Go heap looks
    // flat) after a clearly rising one is no change of trend yet: judge them together, or one
    // low stretch at the end reads as "steady". A cache that levelled off is cleared once its
    // flat piece is long enough to be judged alone.
    if last > 0 {
        let own_fit = confidence(
            &trend[pieces[last].clone()],
            &fit,
            &trend[pieces[last].clone()],
            &fit,
            1.0,
            ctx,
        );
        let cur_span = span(&trend[pieces[last].clone()]);
        if own_fit.value < cfg.growing_confidence
            && cur_span < SHORT_LAST_PIECE_SECS.min(0.5 * span(trend))
            && rising(&trend[pieces[last - 1].clone()])
        {
            let merged = pieces[last - 1].start..pieces[last].end;
            if let Some(f) = stats::theil_sen(&trend[merged.clone()]) {
                pieces.truncate(last - 1);
                pieces.push(merged);
                last -= 1;
                fit = f;
            }
        }
    }
    let pieces = &pieces[..];
    let cur = &trend[pieces[last].clone()];
    let what = ctx.what();
    // The current piece must be rising on its own evidence: a flat-but-noisy stretch after a
    // warm-up has a small positive slope too, and must not borrow the warm-up's confidence.
    let own = confidence(cur, &fit, cur, &fit, 1.0, ctx);
    if own.value < cfg.growing_confidence {
        let why = ctx.within_noise(fit.slope, own.value, changed);
        return ctx.flat(
            ctx.evidence(cur.len() as f64) * (1.0 - own.value),
            fit.slope,
            changed,
            why,
        );
    }
    // Walk back over earlier pieces that were also clearly rising: the growth began at the
    // first of them, even if its rate changed since.
    let (mut first, mut first_fit) = (last, fit);
    while first > 0 {
        match stats::theil_sen(&trend[pieces[first - 1].clone()]) {
            Some(f) if f.slope > floor && f.concordance >= JOIN_CONCORDANCE => {
                first -= 1;
                first_fit = f;
            }
            _ => break,
        }
    }
    let run = &trend[pieces[first].start..];
    let (Some(start), Some(end)) = (run.first(), run.last()) else {
        return ctx.flat(
            0.0,
            fit.slope,
            changed,
            "no usable trend in the data".into(),
        );
    };
    // A longer run adds evidence; it cannot take away what the current piece shows alone.
    let conf = match (first < last).then(|| stats::theil_sen(run)).flatten() {
        Some(run_fit) => {
            let joint = confidence(run, &run_fit, cur, &fit, 1.0, ctx);
            if joint.value > own.value { joint } else { own }
        }
        None => own,
    };
    let since = start.t;
    let grown = fit.at(end.t) - first_fit.at(since);
    if grown < cfg.min_change_bytes {
        let why = format!(
            "no meaningful trend{changed}: {what} rose only {} ({}), under the {} change floor",
            fmt_bytes(grown),
            fmt_rate(fit.slope),
            fmt_bytes(cfg.min_change_bytes)
        );
        return ctx.flat(
            ctx.evidence(run.len() as f64) * (1.0 - conf.value),
            fit.slope,
            changed,
            why,
        );
    }
    let per_cycle = match ctx.mode {
        Mode::Troughs => format!(" over {} cycles", run.len()),
        Mode::Samples => String::new(),
    };
    let facts = format!(
        "{what} rising {} since t={} (+{} in {}{per_cycle}; tau {:.2}, signal/noise {:.1})",
        fmt_rate(fit.slope),
        fmt_t(since),
        fmt_bytes(grown),
        fmt_secs(end.t - since),
        conf.concordance,
        conf.snr,
    );
    if conf.value >= cfg.leak_confidence {
        ctx.assessment(
            Verdict::Leaking,
            conf.value,
            fit.slope,
            Some(since),
            grown,
            format!("{facts}, still rising at the end"),
        )
    } else {
        let why = format!(
            "{facts}; not conclusive yet (confidence {:.2} < {:.2})",
            conf.value, cfg.leak_confidence
        );
        ctx.assessment(
            Verdict::Growing,
            conf.value,
            fit.slope,
            Some(since),
            grown,
            why,
        )
    }
}

fn judge_shrink(cur: &[Point], fit: Trend, ctx: &Ctx, changed: &str) -> Assessment {
    let cfg = ctx.cfg;
    let conf = confidence(cur, &fit, cur, &fit, -1.0, ctx);
    let fell = -fit.slope * span(cur);
    let what = ctx.what();
    if fell >= cfg.min_change_bytes && conf.value >= cfg.shrink_confidence {
        let why = format!(
            "{what} falling {}{changed} (-{} in {}; tau {:.2})",
            fmt_rate(-fit.slope),
            fmt_bytes(fell),
            fmt_secs(span(cur)),
            conf.concordance
        );
        return ctx.assessment(Verdict::Shrinking, conf.value, fit.slope, None, 0.0, why);
    }
    let why = ctx.within_noise(fit.slope, conf.value, changed);
    ctx.flat(
        ctx.evidence(cur.len() as f64) * (1.0 - conf.value),
        fit.slope,
        changed,
        why,
    )
}
