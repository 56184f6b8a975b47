//! Bridges the process table and the detector: turns a process's bounded history into the
//! detector's points and keeps the latest assessment. Live sessions and `report` both come
//! through here, so their verdicts agree by construction.
use crate::{
    detector::{self, Assessment, DetectorConfig, Point, Verdict},
    model::series::Sample,
    model::table::Process,
};

/// Fine samples as a step function up to `now` (samples are stored only on change, so the
/// last value is carried forward: a process that stopped growing is flat now).
pub(crate) fn fine_points(p: &Process, now: f64) -> Vec<Point> {
    let mut pts: Vec<Point> = p
        .fine
        .iter()
        .map(|s: &Sample| Point {
            t: s.t,
            bytes: s.private() as f64,
        })
        .collect();
    carry_forward(&mut pts, now, p.exited_at);
    pts
}

/// One point per minute bucket: its trough (the post-GC low), for slow leaks over hours.
fn coarse_points(p: &Process, now: f64) -> Vec<Point> {
    let mut pts: Vec<Point> = p
        .coarse
        .iter()
        .map(|b| Point {
            t: b.t,
            bytes: b.min_private as f64,
        })
        .collect();
    carry_forward(&mut pts, now, p.exited_at);
    pts
}

/// Extends a stored-on-change series to `now` (or the exit) with its last value.
pub(crate) fn carry_forward(pts: &mut Vec<Point>, now: f64, exited_at: Option<f64>) {
    let end = exited_at.unwrap_or(now);
    if let Some(last) = pts.last().copied() {
        // Fill the silent stretch with points at a 1 s-ish pace so the detector sees time
        // passing without change (bounded: at most 60 points).
        let gap = end - last.t;
        if gap > 1.0 {
            let n = (gap.min(60.0)) as usize;
            for i in 1..=n {
                pts.push(Point {
                    t: last.t + gap * i as f64 / n as f64,
                    bytes: last.bytes,
                });
            }
        }
    }
}

/// The verdict for one process at `now`: the fine series catches fast leaks within seconds;
/// the minute troughs catch slow ones over hours. For a Go process whose runtime is read,
/// its own figures come first: goroutines rising without end, then the heap each GC left
/// live rising at every GC (host/goruntime, detector/go.rs).
pub fn assess(p: &Process, now: f64, cfg: &DetectorConfig) -> Assessment {
    let rss = assess_rss(p, now, cfg);
    let Some(go) = &p.go else { return rss };
    if let Some(g) = detector::go::judge_goroutines(&go.goroutine_points(now), cfg) {
        // The verdict and why are the goroutines'; the rates stay the memory's (they feed
        // time to limit and the growth columns, which are bytes).
        return Assessment {
            verdict: Verdict::Leaking,
            confidence: g.confidence,
            since: g.since,
            reason: g.reason,
            ..rss
        };
    }
    let live: Vec<Point> = go.post_gc.iter().copied().collect();
    if let Some(h) = detector::go::judge_live_heap(&live, now) {
        return h;
    }
    within_heap_goal(p, go, rss, cfg)
}

/// Room the Go runtime takes beyond its heap goal before RSS means more than the GC's own
/// pacing: goroutine stacks, runtime metadata, fragmentation (a share of the goal, plus a
/// constant for small heaps).
const GOAL_SLACK_FRAC: f64 = 0.25;
const GOAL_SLACK_BYTES: f64 = 16.0 * 1024.0 * 1024.0;

/// A Go heap grows to its GC goal before each collection: RSS rising while private memory is
/// still within that goal, and the live heap after GC is not rising, is the GC's saw-tooth
/// ramping up, not a leak. Memory beyond the goal (off-heap, cgo) is still judged on RSS, and
/// so is a live heap that rises too slowly for the per-GC judgement (detector/go.rs) but is
/// judged leaking over its readings: a slow heap leak keeps its RSS verdict. (Merely
/// "growing" is not enough: a busy heap's readings climb ±10% while its GC pacing settles.)
fn within_heap_goal(
    p: &Process,
    go: &crate::model::go::GoState,
    rss: Assessment,
    cfg: &DetectorConfig,
) -> Assessment {
    let Some(goal) = go.latest.heap_goal_bytes else {
        return rss;
    };
    let private = p.last().map_or(0, |s| s.private()) as f64;
    let explained = goal as f64 * (1.0 + GOAL_SLACK_FRAC) + GOAL_SLACK_BYTES;
    if !rss.verdict.is_growth() || private > explained {
        return rss;
    }
    let live: Vec<Point> = go.post_gc.iter().copied().collect();
    let runway = go
        .latest
        .live_heap_bytes
        .map_or(0.0, |l| goal.saturating_sub(l) as f64);
    if live_heap_leaks_beyond_its_band(&live, runway, cfg) {
        return rss;
    }
    let live = go.latest.live_heap_bytes.map_or(String::new(), |l| {
        format!(
            ", live heap after GC {}",
            crate::util::format::bytes(l as f64)
        )
    });
    Assessment {
        verdict: Verdict::Steady,
        confidence: 0.5,
        since: None,
        grown_bytes: 0.0,
        reason: format!(
            "memory rising within the Go GC's heap goal ({} private against a {} goal{live}): the GC's own pacing, not a leak",
            crate::util::format::bytes(private),
            crate::util::format::bytes(goal as f64)
        ),
        ..rss
    }
}

/// How far a busy heap's live readings wander: what a GC finds live includes what was
/// allocated while it marked. The runtime starts a GC between 70% and 95% of the runway from
/// the live heap to the heap goal (mgcpacer.go's trigger bounds), so up to the last 30% of
/// that runway is allocated during the mark and counted live: a 32 MiB live set at GOGC=100
/// reads 34-41 MiB, and over the first seconds of a run its readings can climb steadily enough
/// for the detector to call them a trend (CI saw 34 -> 41 MiB in 3 s, judged leaking at
/// t=11.5 s under the old band of 20% of the lowest reading). A rise within the larger of
/// these shares is that wander.
const FLOATING_RUNWAY_FRAC: f64 = 0.3;
/// The band's floor, as a share of the lowest reading: a heap with a small GOGC (a short
/// runway) still wanders this much as its pacing settles.
const LIVE_BAND_FRAC: f64 = 0.2;

/// Whether the live heaps after GC (oldest first) show a leak too slow for the per-GC
/// judgement: the detector calls them leaking, and they rose beyond the busy heap's band.
/// `runway` is the latest heap goal minus the latest live heap, in bytes.
fn live_heap_leaks_beyond_its_band(live: &[Point], runway: f64, cfg: &DetectorConfig) -> bool {
    let a = detector::assess(live, cfg);
    if a.verdict != Verdict::Leaking {
        return false;
    }
    let lowest = live.iter().map(|p| p.bytes).fold(f64::INFINITY, f64::min);
    a.grown_bytes > (lowest * LIVE_BAND_FRAC).max(runway * FLOATING_RUNWAY_FRAC)
}

fn assess_rss(p: &Process, now: f64, cfg: &DetectorConfig) -> Assessment {
    let fine = detector::assess(&fine_points(p, now), cfg);
    if fine.verdict == Verdict::Leaking || p.coarse.len() < 10 {
        return fine;
    }
    let coarse = detector::assess(&coarse_points(p, now), cfg);
    match (coarse.verdict, fine.verdict) {
        (Verdict::Leaking, _) => coarse,
        (Verdict::Growing, Verdict::Steady | Verdict::Insufficient) => coarse,
        _ => fine,
    }
}

pub use crate::detector::VerdictChange;

/// Re-assess processes whose memory changed this round, and the others every
/// `REASSESS_SECS` (their carried-forward flat stretch also changes the verdict, slowly).
pub fn refresh(
    table: &mut crate::model::table::ProcessTable,
    now: f64,
    cfg: &DetectorConfig,
) -> Vec<VerdictChange> {
    const REASSESS_SECS: f64 = 10.0;
    let mut changes = Vec::new();
    for p in table.live.values_mut() {
        if !p.changed && now - p.assessed_at < REASSESS_SECS {
            continue;
        }
        let a = assess(p, now, cfg);
        let previous = p.assessment.as_ref().map(|x| x.verdict);
        p.assessed_at = now;
        if previous != Some(a.verdict)
            && !(previous.is_none() && a.verdict == Verdict::Insufficient)
        {
            changes.push(VerdictChange {
                pid: p.pid,
                previous,
                now: a.clone(),
            });
        }
        p.assessment = Some(a);
    }
    changes
}

/// The memory limit that applies to `p` and the time until it is reached at the assessed
/// growth (only while growing): against the cgroup's usage when a cgroup limits it, else the
/// process's own private memory against the node's memory.
pub fn limit_and_time(
    p: &Process,
    limits: &mut crate::host::memcg::LimitCache,
) -> (Option<u64>, Option<f64>) {
    let cgroup = p.memcg_path();
    let Some(limit) = limits.get(cgroup.as_deref()) else {
        return (None, None);
    };
    let current = match &limit.cgroup {
        Some(c) => limits.roots().usage_of(c).unwrap_or(0) as f64,
        None => p.last().map_or(0, |s| s.private()) as f64,
    };
    let ttl = p
        .assessment
        .as_ref()
        .and_then(|a| a.time_to_limit(current, limit.bytes as f64));
    (Some(limit.bytes), ttl.map(crate::util::clock::round_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: f64 = 1024.0 * 1024.0;

    fn points(mib: &[f64], every_secs: f64) -> Vec<Point> {
        mib.iter()
            .enumerate()
            .map(|(i, m)| Point {
                t: i as f64 * every_secs,
                bytes: m * MIB,
            })
            .collect()
    }

    #[test]
    fn a_busy_heap_settling_within_its_band_is_not_a_live_heap_leak() {
        // A Go 1.19 saw-tooth over a 32 MiB live set, under CPU load: its readings after GC
        // climb by a step every second or so while the pacing settles (CI saw this judged
        // leaking at t=8 s).
        let settling = points(
            &[
                35.7, 35.7, 36.7, 36.7, 36.7, 37.8, 37.8, 37.8, 38.8, 38.8, 39.9, 39.9, 40.9, 40.9,
                41.0,
            ],
            0.5,
        );
        let cfg = DetectorConfig::default();
        assert_eq!(
            detector::assess(&settling, &cfg).verdict,
            Verdict::Leaking,
            "the detector alone calls this climb a trend"
        );
        assert!(!live_heap_leaks_beyond_its_band(&settling, 0.0, &cfg));
        assert!(!live_heap_leaks_beyond_its_band(
            &settling,
            41.0 * MIB,
            &cfg
        ));
    }

    #[test]
    fn a_slow_live_heap_leak_past_its_band_is_one() {
        // +0.5 MiB per GC on 32 MiB: below the per-GC judgement's 5% steps at first, but
        // 50% up after 32 GCs.
        let mib: Vec<f64> = (0..33).map(|i| 32.0 + 0.5 * i as f64).collect();
        let slow = points(&mib, 1.0);
        // At GOGC=100 the runway is the live heap: 48 MiB at the end.
        assert!(live_heap_leaks_beyond_its_band(
            &slow,
            48.0 * MIB,
            &DetectorConfig::default()
        ));
    }

    #[test]
    fn floating_garbage_within_the_last_30_percent_of_the_runway_is_not_a_live_heap_leak() {
        // Go 1.26's saw-tooth over a 32 MiB live set as CI read it (t=0.5 to 11.5 s, every
        // 0.5 s): flat at 34-35 MiB, then 38-41 MiB from t=8.5 s; the heap goal 82 MiB over a
        // 41 MiB live heap. The rise is 20.5% of the lowest reading, but within the share of
        // the runway the runtime allocates while it marks.
        let ci = points(
            &[
                35.07, 34.07, 35.07, 35.07, 35.07, 35.07, 35.07, 34.07, 35.07, 35.07, 35.07, 35.07,
                34.07, 35.07, 35.07, 35.07, 38.07, 39.07, 41.07, 39.07, 41.07, 40.07, 41.07,
            ],
            0.5,
        );
        let cfg = DetectorConfig::default();
        assert_eq!(detector::assess(&ci, &cfg).verdict, Verdict::Leaking);
        assert!(
            live_heap_leaks_beyond_its_band(&ci, 0.0, &cfg),
            "20% of the lowest reading alone would call it a leak"
        );
        assert!(!live_heap_leaks_beyond_its_band(&ci, 41.0 * MIB, &cfg));
    }
}
