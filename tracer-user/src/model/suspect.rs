//! The one shape of "a suspect": a process the detector judges leaking or growing, judged at
//! one moment, with the figures every view shows of it, rounded once, in the one ranking
//! ([`crate::model::rank`]). `record`'s summary, `report` and the views build theirs from it,
//! so a live recording and the report of its trace list the same suspects in the same order
//! with the same verdicts.
use serde::Serialize;

use crate::{
    detector::{Assessment, DetectorConfig, Verdict},
    model::{
        rank::{self, RankKey},
        table::{Process, ProcessTable},
    },
    pipeline::verdicts,
};

/// A leaking or growing process, as judged at one moment.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Suspect {
    pub pid: u32,
    pub comm: String,
    pub verdict: Verdict,
    /// Rounded to two places (see [`round_confidence`]).
    pub confidence: f64,
    /// The detector's slope, whole bytes per second.
    pub growth_bytes_per_sec: f64,
    /// Session time the growth began (ms precision).
    pub since_secs: Option<f64>,
    pub private_bytes: u64,
    pub peak_private_bytes: u64,
    pub reason: String,
    pub exited: bool,
    /// Session time of first sight (the last tie-break of the ranking).
    #[serde(skip)]
    pub first_seen: f64,
    /// The judgement itself (for time-to-limit estimates and the like).
    #[serde(skip)]
    pub assessment: Assessment,
}

use crate::detector::round_confidence;

impl Suspect {
    /// `p` as judged by `a`; None unless `a` says leaking or growing.
    pub fn of(p: &Process, a: &Assessment) -> Option<Self> {
        if !matches!(a.verdict, Verdict::Leaking | Verdict::Growing) {
            return None;
        }
        Some(Self {
            pid: p.pid,
            comm: p.comm.clone(),
            verdict: a.verdict,
            confidence: round_confidence(a.confidence),
            growth_bytes_per_sec: a.growth_bytes_per_sec.round(),
            since_secs: a.since.map(crate::util::clock::round_ms),
            private_bytes: p.last().map_or(0, |s| s.private()),
            peak_private_bytes: p.peak_private(),
            reason: a.reason.clone(),
            exited: p.exited_at.is_some(),
            first_seen: p.first_seen,
            assessment: a.clone(),
        })
    }

    /// Its place in the one ranking, by the slope it shows.
    pub fn rank_key(&self) -> RankKey {
        RankKey {
            verdict: Some(self.verdict),
            rate: self.growth_bytes_per_sec,
            private: self.private_bytes,
            pid: self.pid,
            first_seen: self.first_seen,
        }
    }
}

/// Every process of `table` (live and recently ended) that `wanted` keeps, judged afresh at
/// `now`; the leaking and growing ones, ranked. Each comes with its process, for the figures a
/// view adds (limits, identity, histograms).
pub fn judge<'t>(
    table: &'t ProcessTable,
    now: f64,
    cfg: &DetectorConfig,
    mut wanted: impl FnMut(&Process) -> bool,
) -> Vec<(Suspect, &'t Process)> {
    let mut out: Vec<(Suspect, &Process)> = table
        .live
        .values()
        .chain(table.graveyard.iter())
        .filter(|p| wanted(p))
        .filter_map(|p| Suspect::of(p, &verdicts::assess(p, now, cfg)).map(|s| (s, p)))
        .collect();
    rank::sort(&mut out, |(s, _)| s.rank_key());
    out
}
