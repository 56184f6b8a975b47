//! The one shape of "a suspect": a process the detector judges leaking or growing, judged at
//! one moment, with the figures every view shows of it, rounded once, in the one ranking
//! ([`crate::model::rank`]). `record`'s summary, `report` and the views build theirs from it,
//! so a live recording and the report of its trace list the same suspects in the same order
//! with the same verdicts. A view's latest verdict of a process ([`latest_verdict`]) is
//! rounded here too.
use serde::Serialize;

use crate::{
    detector::{Assessment, DetectorConfig, Verdict},
    model::verdicts,
    model::{
        rank::{self, RankKey},
        table::{Process, ProcessTable},
    },
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
    /// Session time the growth began (ms precision), and the wall-clock time it was.
    pub since_secs: Option<f64>,
    pub since: Option<String>,
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
    /// `p` as judged by `a`; None unless `a` says leaking or growing. `start_unix_ms` is the
    /// wall clock at session start (session times count from it).
    pub fn of(p: &Process, a: &Assessment, start_unix_ms: u64) -> Option<Self> {
        if !matches!(a.verdict, Verdict::Leaking | Verdict::Growing) {
            return None;
        }
        let since_secs = a.since.map(crate::util::clock::round_ms);
        Some(Self {
            pid: p.pid,
            comm: p.comm.clone(),
            verdict: a.verdict,
            confidence: round_confidence(a.confidence),
            growth_bytes_per_sec: a.growth_bytes_per_sec.round(),
            since_secs,
            since: since_secs
                .map(|t| crate::util::clock::rfc3339(start_unix_ms + (t.max(0.0) * 1000.0) as u64)),
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

/// The latest verdict of `p` (None before its first assessment) and its confidence, rounded
/// as a suspect's (0 without a verdict): what a view of live processes shows.
pub fn latest_verdict(p: &Process) -> (Option<Verdict>, f64) {
    p.assessment.as_ref().map_or((None, 0.0), |a| {
        (Some(a.verdict), round_confidence(a.confidence))
    })
}

/// Every process of `table` (live and recently ended) that `wanted` keeps, judged afresh at
/// `now` (session time; the session started at wall-clock `start_unix_ms`); the leaking and
/// growing ones, ranked. Each comes with its process, for the figures a view adds (limits,
/// identity, histograms).
pub fn judge<'t>(
    table: &'t ProcessTable,
    now: f64,
    start_unix_ms: u64,
    cfg: &DetectorConfig,
    mut wanted: impl FnMut(&Process) -> bool,
) -> Vec<(Suspect, &'t Process)> {
    let mut out: Vec<(Suspect, &Process)> = table
        .live
        .values()
        .map(|p| &**p)
        .chain(table.graveyard.iter())
        .filter(|p| wanted(p))
        .filter_map(|p| {
            Suspect::of(p, &verdicts::assess(p, now, cfg), start_unix_ms).map(|s| (s, p))
        })
        .collect();
    rank::sort(&mut out, |(s, _)| s.rank_key());
    out
}
