//! The node's own memory as series, judged by the same detector as processes: the kinds of
//! /proc/meminfo, the memory no process or kernel counter explains, every slab cache, and the
//! count of zombie memory cgroups. A node can die of any of them while no process grows, so
//! a slab cache that leaks gets a verdict with its name, like a process.
use std::collections::BTreeMap;

use serde::Serialize;

use crate::{
    detector::{self, Assessment, DetectorConfig, Point, Verdict},
    host::node::{NodeReading, meminfo::NodeMemory, slabinfo::SlabCache, zombies::Zombies},
    model::series::Ring,
    util::format,
};

/// Points kept per series: the depth of a process's fine series.
const SERIES_POINTS: usize = 300;
/// A series that did not change is judged again this often (its flat stretch matters too).
const REASSESS_SECS: f64 = 10.0;
/// A series that changed is judged at most this often: a busy node moves dozens of slab
/// caches every round, a judgement costs up to 2 ms, and node memory needs no verdict within
/// the second.
const REASSESS_CHANGED_SECS: f64 = 3.0;
/// Slab caches followed at most; a kernel has 150–300, this bounds a strange one.
const MAX_SLAB_SERIES: usize = 1024;
/// Slab caches shown in views and metrics, biggest first.
pub const SLAB_TOP: usize = 10;

/// Reads one kind out of a meminfo reading.
type KindOf = fn(&NodeMemory) -> u64;

/// The /proc/meminfo kinds judged, with their stable names (metric labels, JSON keys).
/// Anonymous memory is not among them: processes own it, and each is judged on its own.
/// Nor is the page cache: it grows with every file read and is given back under pressure,
/// so its growth is the kernel doing its job, not a leak.
const KINDS: [(&str, KindOf); 7] = [
    ("shmem", |m| m.shmem),
    ("slab_reclaimable", |m| m.slab_reclaimable),
    ("slab_unreclaimable", |m| m.slab_unreclaimable),
    ("kernel_stack", |m| m.kernel_stack),
    ("page_tables", |m| m.page_tables),
    ("percpu", |m| m.percpu),
    ("vmalloc_used", |m| m.vmalloc_used),
];

/// One series of the node.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NodeSeries {
    /// A kind of /proc/meminfo, by its stable name.
    Kind(&'static str),
    /// Used memory that neither processes' anonymous memory nor the kernel's own counters
    /// explain (meminfo.rs, `unattributed`).
    Unattributed,
    /// One slab cache, by name.
    Slab(String),
    /// Memory cgroups removed but still held by the kernel (a count, not bytes).
    Zombies,
}

impl NodeSeries {
    /// Stable name: `anon`, `unattributed`, `memcg_zombies`, `slab:dentry`.
    pub fn name(&self) -> String {
        match self {
            Self::Kind(k) => (*k).to_string(),
            Self::Unattributed => "unattributed".into(),
            Self::Slab(cache) => format!("slab:{cache}"),
            Self::Zombies => "memcg_zombies".into(),
        }
    }

    /// What a person calls it.
    pub fn describe(&self) -> String {
        match self {
            Self::Kind("shmem") => "shared memory (tmpfs, shm)".into(),
            Self::Kind("slab_reclaimable") => "reclaimable slab".into(),
            Self::Kind("slab_unreclaimable") => "unreclaimable slab".into(),
            Self::Kind("kernel_stack") => "kernel stacks".into(),
            Self::Kind("page_tables") => "page tables".into(),
            Self::Kind("percpu") => "per-CPU kernel memory".into(),
            Self::Kind("vmalloc_used") => "vmalloc".into(),
            Self::Kind(k) => (*k).to_string(),
            Self::Unattributed => "kernel memory no counter explains".into(),
            Self::Slab(cache) => format!("slab cache {cache}"),
            Self::Zombies => "zombie memory cgroups".into(),
        }
    }

    fn is_count(&self) -> bool {
        matches!(self, Self::Zombies)
    }
}

/// A node series' verdict changed.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeVerdictChange {
    pub series: NodeSeries,
    pub previous: Option<Verdict>,
    pub now: Assessment,
    /// One sentence a person understands (see [`NodeModel::sentence`]).
    pub sentence: String,
}

#[derive(Clone, Debug)]
struct Track {
    /// Stored on change only; the last value is carried forward when judged.
    points: Ring<Point>,
    changed: bool,
    assessed_at: f64,
    assessment: Option<Assessment>,
}

impl Track {
    fn new() -> Self {
        Self {
            points: Ring::new(SERIES_POINTS),
            changed: false,
            assessed_at: f64::NEG_INFINITY,
            assessment: None,
        }
    }

    fn push(&mut self, t: f64, value: f64) {
        if self.points.last().is_some_and(|p| p.bytes == value) {
            return;
        }
        self.points.push(Point { t, bytes: value });
        self.changed = true;
    }

    fn current(&self) -> f64 {
        self.points.last().map_or(0.0, |p| p.bytes)
    }

    /// Change over the points kept (the window).
    fn change(&self) -> f64 {
        match (self.points.first(), self.points.last()) {
            (Some(a), Some(b)) => b.bytes - a.bytes,
            _ => 0.0,
        }
    }

    fn range(&self) -> f64 {
        let (lo, hi) = self
            .points
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| {
                (lo.min(p.bytes), hi.max(p.bytes))
            });
        if lo.is_finite() { hi - lo } else { 0.0 }
    }

    /// The points as a step function up to `now` (as model/verdicts.rs does for processes).
    fn step_points(&self, now: f64) -> Vec<Point> {
        let mut pts: Vec<Point> = self.points.iter().copied().collect();
        if let Some(last) = pts.last().copied() {
            let gap = now - last.t;
            if gap > 1.0 {
                let n = gap.min(60.0) as usize;
                pts.extend((1..=n).map(|i| Point {
                    t: last.t + gap * i as f64 / n as f64,
                    bytes: last.bytes,
                }));
            }
        }
        pts
    }
}

/// A slab cache as views show it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SlabView {
    pub name: String,
    pub bytes: u64,
    pub objects: u64,
    pub object_size: u64,
    /// Change over the window the series keeps (bytes; negative when it shrank).
    pub change_bytes: i64,
}

/// A node series' verdict as views show it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NodeVerdictView {
    pub series: String,
    pub verdict: Verdict,
    pub confidence: f64,
    /// Bytes per second (zombie cgroups: cgroups per second).
    pub growth_per_sec: f64,
    pub since: Option<f64>,
    pub sentence: String,
}

/// The node's memory now, for views (top, report, JSON).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NodeView {
    /// Session time of the reading.
    pub t: f64,
    pub memory: NodeMemory,
    /// Used memory as free(1) counts it.
    pub used: u64,
    pub unattributed: u64,
    /// The biggest slab caches.
    pub slab_top: Vec<SlabView>,
    pub zombies: Option<Zombies>,
    /// Zombie memory cgroups added since the session started (None without a count).
    pub zombies_added: Option<i64>,
    /// The zombies removed while watched, by name (None without the cgroup tracepoints).
    pub zombies_named: Option<NamedZombies>,
    /// One sentence on zombie memory cgroups, when there are any.
    pub zombies_sentence: Option<String>,
    /// Series judged growing or leaking (worst first).
    pub verdicts: Vec<NodeVerdictView>,
}

/// Removed memory cgroups followed at most, waiting to be freed (each ~100 bytes).
const MAX_REMOVED: usize = 65_536;

/// A memory cgroup seen removed and not freed since.
#[derive(Clone, Debug)]
struct Removed {
    path: String,
    t: f64,
}

/// Zombie memory cgroups by name: the ones seen removed during the session and not freed.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NamedZombies {
    /// Removed during the session and not freed since.
    pub count: u64,
    /// The parents holding most of them, (parent path, count), most first (at most 3).
    pub by_parent: Vec<(String, u64)>,
    /// The oldest, (path, seconds since removal), oldest first (at most 5).
    pub oldest: Vec<(String, f64)>,
    /// Removed during the session and freed since (zombies that ended).
    pub freed: u64,
    /// Removals not followed because too many were waiting (still in the kernel's count).
    pub not_followed: u64,
}

/// The node's series, bounded.
#[derive(Default)]
pub struct NodeModel {
    latest: Option<(f64, NodeReading)>,
    first_zombies: Option<u64>,
    tracks: BTreeMap<NodeSeries, Track>,
    /// Slab caches not followed because `MAX_SLAB_SERIES` was reached.
    pub slabs_not_followed: u64,
    /// Memory cgroups seen removed and not freed yet, by id; None until the first cgroup
    /// event (without the tracepoints zombies are counted, not named).
    removed: Option<std::collections::HashMap<u64, Removed>>,
    freed_after_removal: u64,
    removed_not_followed: u64,
}

impl NodeModel {
    /// Fold one reading taken at session time `t`.
    pub fn fold(&mut self, t: f64, reading: NodeReading) {
        let m = reading.memory;
        if m.total > 0 {
            for (name, get) in KINDS {
                self.track(NodeSeries::Kind(name)).push(t, get(&m) as f64);
            }
            self.track(NodeSeries::Unattributed)
                .push(t, m.unattributed(m.anon) as f64);
        }
        for c in &reading.slabs {
            let key = NodeSeries::Slab(c.name.clone());
            if !self.tracks.contains_key(&key) && self.slab_tracks() >= MAX_SLAB_SERIES {
                self.slabs_not_followed += 1;
                continue;
            }
            self.track(key).push(t, c.bytes as f64);
        }
        if let Some(z) = reading.zombies {
            self.first_zombies.get_or_insert(z.zombies);
            self.track(NodeSeries::Zombies).push(t, z.zombies as f64);
        }
        self.latest = Some((t, reading));
    }

    /// A memory cgroup made, removed or freed: between rmdir and release it is a zombie.
    pub fn cgroup(&mut self, t: f64, c: &crate::model::cgroups::CgroupChange) {
        use crate::model::cgroups::CgroupAction;
        let removed = self.removed.get_or_insert_with(Default::default);
        match c.action {
            CgroupAction::Mkdir => {}
            CgroupAction::Rmdir => {
                if removed.len() < MAX_REMOVED {
                    removed.insert(
                        c.id,
                        Removed {
                            path: c.path.clone(),
                            t,
                        },
                    );
                } else {
                    self.removed_not_followed += 1;
                }
            }
            CgroupAction::Release => {
                if removed.remove(&c.id).is_some() {
                    self.freed_after_removal += 1;
                }
            }
        }
    }

    /// The zombies seen removed during the session, named (None without cgroup events).
    pub fn named_zombies(&self, now: f64) -> Option<NamedZombies> {
        let removed = self.removed.as_ref()?;
        let mut parents: std::collections::HashMap<&str, u64> = Default::default();
        for r in removed.values() {
            let parent = match r.path.rsplit_once('/') {
                Some(("", _)) | None => "/",
                Some((p, _)) => p,
            };
            *parents.entry(parent).or_default() += 1;
        }
        let mut by_parent: Vec<(String, u64)> = parents
            .into_iter()
            .map(|(p, n)| (p.to_string(), n))
            .collect();
        by_parent.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        by_parent.truncate(3);
        let mut oldest: Vec<&Removed> = removed.values().collect();
        oldest.sort_by(|a, b| a.t.total_cmp(&b.t).then_with(|| a.path.cmp(&b.path)));
        Some(NamedZombies {
            count: removed.len() as u64,
            by_parent,
            oldest: oldest
                .into_iter()
                .take(5)
                .map(|r| (r.path.clone(), crate::util::clock::round_ms(now - r.t)))
                .collect(),
            freed: self.freed_after_removal,
            not_followed: self.removed_not_followed,
        })
    }

    fn track(&mut self, key: NodeSeries) -> &mut Track {
        self.tracks.entry(key).or_insert_with(Track::new)
    }

    fn slab_tracks(&self) -> usize {
        self.tracks
            .keys()
            .filter(|k| matches!(k, NodeSeries::Slab(_)))
            .count()
    }

    pub fn latest(&self) -> Option<&NodeReading> {
        self.latest.as_ref().map(|(_, r)| r)
    }

    /// Judge the series that changed (and the others every `REASSESS_SECS`); return the
    /// verdicts that changed. A series that never moved by the detector's smallest change is
    /// not judged at all: it cannot be anything but steady.
    pub fn refresh(&mut self, now: f64, cfg: &DetectorConfig) -> Vec<NodeVerdictChange> {
        let counts = count_config(cfg);
        let mut changed = Vec::new();
        for (key, track) in &mut self.tracks {
            let due = if track.changed {
                REASSESS_CHANGED_SECS
            } else {
                REASSESS_SECS
            };
            if now - track.assessed_at < due {
                continue;
            }
            let cfg = if key.is_count() { &counts } else { cfg };
            if track.assessment.is_none() && track.range() < cfg.min_change_bytes {
                continue;
            }
            let a = detector::assess(&track.step_points(now), cfg);
            track.changed = false;
            track.assessed_at = now;
            let previous = track.assessment.as_ref().map(|x| x.verdict);
            if previous != Some(a.verdict)
                && !(previous.is_none() && a.verdict == Verdict::Insufficient)
            {
                changed.push((key.clone(), previous, a.clone()));
            }
            track.assessment = Some(a);
        }
        changed
            .into_iter()
            .map(|(series, previous, now)| NodeVerdictChange {
                sentence: self.sentence(&series, &now),
                series,
                previous,
                now,
            })
            .collect()
    }

    /// One sentence on a series' verdict, e.g. "slab cache dentry is leaking: +812 MiB at
    /// 81 MiB/s since t=12s, now 1.1 GiB".
    pub fn sentence(&self, series: &NodeSeries, a: &Assessment) -> String {
        let now = self.tracks.get(series).map_or(0.0, Track::current);
        let what = series.describe();
        if series.is_count() {
            let held = self.zombies_sentence().unwrap_or_default();
            return match a.verdict {
                Verdict::Leaking | Verdict::Growing => format!(
                    "{what} are {}: +{:.0} at {:.1}/min{}. {held}",
                    a.verdict.as_str(),
                    a.grown_bytes,
                    a.growth_bytes_per_sec * 60.0,
                    since(a.since)
                ),
                v => format!("{what}: {}, {now:.0} now. {held}", v.as_str()),
            };
        }
        match a.verdict {
            Verdict::Leaking | Verdict::Growing => format!(
                "{what} is {}: +{} at {}/s{}, now {}",
                a.verdict.as_str(),
                format::bytes(a.grown_bytes),
                format::bytes(a.growth_bytes_per_sec),
                since(a.since),
                format::bytes(now)
            ),
            v => format!("{what} is {}, now {}", v.as_str(), format::bytes(now)),
        }
    }

    /// "312 removed memory cgroups are still held by the kernel (300 more than when
    /// leaktracer started)", or None without zombies.
    pub fn zombies_sentence(&self) -> Option<String> {
        let z = self.latest()?.zombies?;
        if z.zombies == 0 {
            return None;
        }
        let added = self.zombies_added().unwrap_or(0);
        let change = match added {
            0 => String::new(),
            a if a > 0 => format!(" ({a} more than when leaktracer started)"),
            a => format!(" ({} fewer than when leaktracer started)", -a),
        };
        let named = self
            .latest
            .as_ref()
            .and_then(|(t, _)| self.named_zombies(*t))
            .filter(|n| n.count > 0)
            .map_or(String::new(), |n| {
                let held = |parent: &str| {
                    self.latest()
                        .and_then(|r| r.held.iter().find(|h| h.parent == parent))
                        .map_or(String::new(), |h| {
                            format!(" holding {} of page cache", format::bytes(h.bytes as f64))
                        })
                };
                let parent = n.by_parent.first().map_or(String::new(), |(p, c)| {
                    format!(", {c} of them under {p}{}", held(p))
                });
                let oldest = n.oldest.first().map_or(String::new(), |(p, age)| {
                    format!(
                        "; the oldest, {p}, was removed {} ago",
                        format::duration(*age)
                    )
                });
                format!(
                    ". {} were removed while leaktracer watched and never freed{parent}{oldest}",
                    n.count
                )
            });
        Some(format!(
            "{} removed memory cgroups are still held by the kernel, against {} live ones{change}{named}",
            z.zombies, z.directories
        ))
    }

    fn zombies_added(&self) -> Option<i64> {
        let now = self.latest()?.zombies?.zombies;
        Some(now as i64 - self.first_zombies? as i64)
    }

    /// Latest assessment of a series (None: never judged, it has not moved).
    pub fn assessment(&self, series: &NodeSeries) -> Option<&Assessment> {
        self.tracks.get(series)?.assessment.as_ref()
    }

    /// The node now, for views; None before the first reading.
    pub fn view(&self) -> Option<NodeView> {
        let (t, r) = self.latest.as_ref()?;
        let mut slabs: Vec<&SlabCache> = r.slabs.iter().collect();
        slabs.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.name.cmp(&b.name)));
        let slab_top = slabs
            .into_iter()
            .take(SLAB_TOP)
            .map(|c| SlabView {
                name: c.name.clone(),
                bytes: c.bytes,
                objects: c.active_objects,
                object_size: c.object_size,
                change_bytes: self
                    .tracks
                    .get(&NodeSeries::Slab(c.name.clone()))
                    .map_or(0, |t| t.change() as i64),
            })
            .collect();
        let mut verdicts: Vec<NodeVerdictView> = self
            .tracks
            .iter()
            .filter_map(|(k, t)| {
                let a = t.assessment.as_ref()?;
                a.verdict.is_growth().then(|| NodeVerdictView {
                    series: k.name(),
                    verdict: a.verdict,
                    confidence: detector::round_confidence(a.confidence),
                    growth_per_sec: a.growth_bytes_per_sec,
                    since: a.since,
                    sentence: self.sentence(k, a),
                })
            })
            .collect();
        verdicts.sort_by(|a, b| {
            (b.verdict == Verdict::Leaking)
                .cmp(&(a.verdict == Verdict::Leaking))
                .then(b.confidence.total_cmp(&a.confidence))
                .then_with(|| a.series.cmp(&b.series))
        });
        Some(NodeView {
            t: *t,
            memory: r.memory,
            used: r.memory.used(),
            unattributed: r.memory.unattributed(r.memory.anon),
            slab_top,
            zombies: r.zombies,
            zombies_added: self.zombies_added(),
            zombies_named: self.named_zombies(*t),
            zombies_sentence: self.zombies_sentence(),
            verdicts,
        })
    }
}

/// The worst a node series was judged during a session (growing or leaking), for reports:
/// a dentry storm that grew for a minute and stopped is steady at the end, but it happened.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NodeFinding {
    pub series: String,
    /// The worst verdict reached (`leaking` over `growing`).
    pub verdict: Verdict,
    /// Session time it was first reached.
    pub first_t: f64,
    /// The sentence when it was last judged so.
    pub sentence: String,
}

/// [`NodeFinding`]s folded from verdict changes, bounded.
#[derive(Default)]
pub struct NodeFindings {
    by_series: BTreeMap<String, NodeFinding>,
}

impl NodeFindings {
    const MAX: usize = 64;

    pub fn fold(&mut self, t: f64, changes: &[NodeVerdictChange]) {
        for c in changes.iter().filter(|c| c.now.verdict.is_growth()) {
            let series = c.series.name();
            if !self.by_series.contains_key(&series) && self.by_series.len() >= Self::MAX {
                continue;
            }
            let f = self
                .by_series
                .entry(series.clone())
                .or_insert_with(|| NodeFinding {
                    series,
                    verdict: c.now.verdict,
                    first_t: t,
                    sentence: c.sentence.clone(),
                });
            if c.now.verdict == Verdict::Leaking && f.verdict != Verdict::Leaking {
                f.verdict = Verdict::Leaking;
                f.first_t = t;
            }
            if c.now.verdict == f.verdict {
                f.sentence = c.sentence.clone();
            }
        }
    }

    /// Leaking first, then by when it began.
    pub fn list(&self) -> Vec<NodeFinding> {
        let mut v: Vec<NodeFinding> = self.by_series.values().cloned().collect();
        v.sort_by(|a, b| {
            (b.verdict == Verdict::Leaking)
                .cmp(&(a.verdict == Verdict::Leaking))
                .then(a.first_t.total_cmp(&b.first_t))
        });
        v
    }
}

fn since(t: Option<f64>) -> String {
    t.map_or(String::new(), |t| format!(" since t={t:.0}s"))
}

/// The detector tuned for a count (zombie cgroups) instead of bytes: a change of a few
/// cgroups is a change, a cgroup every 100 s is a rate, and counts do not cycle like a
/// garbage-collected heap.
fn count_config(bytes: &DetectorConfig) -> DetectorConfig {
    DetectorConfig {
        min_rate_bytes_per_sec: 0.01,
        min_change_bytes: 5.0,
        noise_floor_bytes: 0.5,
        min_cycle_bytes: f64::INFINITY,
        ..bytes.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(t: f64, dentry: u64, zombies: u64) -> NodeReading {
        let _ = t;
        NodeReading {
            memory: NodeMemory {
                total: 8 << 30,
                free: 4 << 30,
                anon: 1 << 30,
                slab_reclaimable: dentry,
                ..NodeMemory::default()
            },
            slabs: vec![
                SlabCache {
                    name: "dentry".into(),
                    active_objects: dentry / 192,
                    objects: dentry / 192,
                    object_size: 192,
                    bytes: dentry,
                },
                SlabCache {
                    name: "kmalloc-64".into(),
                    active_objects: 1000,
                    objects: 1000,
                    object_size: 64,
                    bytes: 64_000,
                },
            ],
            zombies: Some(Zombies {
                in_kernel: 10 + zombies,
                directories: 10,
                zombies,
            }),
            held: vec![crate::host::node::HeldCache {
                parent: "/lt".into(),
                bytes: 3 << 18,
            }],
        }
    }

    #[test]
    fn a_growing_slab_cache_is_named_and_a_flat_one_is_not_judged() {
        let mut m = NodeModel::default();
        let cfg = DetectorConfig::default();
        let mut changes = Vec::new();
        for i in 0..40 {
            let t = i as f64;
            m.fold(t, reading(t, (100 << 20) + i * (20 << 20), 3));
            changes.extend(m.refresh(t, &cfg));
        }
        let dentry = NodeSeries::Slab("dentry".into());
        let a = m.assessment(&dentry).expect("judged");
        assert_eq!(a.verdict, Verdict::Leaking, "{}", a.reason);
        assert!(
            m.assessment(&NodeSeries::Slab("kmalloc-64".into()))
                .is_none()
        );
        let c = changes
            .iter()
            .find(|c| c.series == dentry && c.now.verdict == Verdict::Leaking)
            .expect("the change is told");
        assert!(
            c.sentence.starts_with("slab cache dentry is leaking: +"),
            "{}",
            c.sentence
        );
        let v = m.view().unwrap();
        assert_eq!(v.slab_top[0].name, "dentry");
        assert_eq!(v.slab_top[0].change_bytes, 39 * (20 << 20));
        assert!(v.verdicts.iter().any(|x| x.series == "slab:dentry"));
        assert!(
            v.verdicts.iter().any(|x| x.series == "slab_reclaimable"),
            "the meminfo kind follows the cache: {:?}",
            v.verdicts
        );
    }

    #[test]
    fn zombie_cgroups_are_judged_as_a_count() {
        let mut m = NodeModel::default();
        let cfg = DetectorConfig::default();
        for i in 0..30 {
            let t = i as f64;
            m.fold(t, reading(t, 100 << 20, 29 + 10 * i));
            m.refresh(t, &cfg);
        }
        let a = m.assessment(&NodeSeries::Zombies).expect("judged");
        assert!(a.verdict.is_growth(), "{a:?}");
        let v = m.view().unwrap();
        assert_eq!(v.zombies_added, Some(290));
        let s = v.zombies_sentence.unwrap();
        assert!(
            s.starts_with("319 removed memory cgroups are still held by the kernel, against 10 live ones (290 more"),
            "{s}"
        );
        let verdict = v
            .verdicts
            .iter()
            .find(|x| x.series == "memcg_zombies")
            .unwrap();
        assert!(
            verdict
                .sentence
                .starts_with("zombie memory cgroups are leaking: +")
                || verdict
                    .sentence
                    .starts_with("zombie memory cgroups are growing: +"),
            "{}",
            verdict.sentence
        );
        assert!(verdict.sentence.contains("/min"), "{}", verdict.sentence);
    }

    #[test]
    fn flat_zombies_are_steady_and_say_so_without_growth() {
        let mut m = NodeModel::default();
        for i in 0..30 {
            let t = i as f64;
            m.fold(t, reading(t, 100 << 20, 40));
            m.refresh(t, &DetectorConfig::default());
        }
        let v = m.view().unwrap();
        assert!(v.verdicts.is_empty(), "{:?}", v.verdicts);
        assert_eq!(v.zombies_added, Some(0));
        assert_eq!(
            v.zombies_sentence.as_deref(),
            Some("40 removed memory cgroups are still held by the kernel, against 10 live ones")
        );
    }

    #[test]
    fn removed_and_never_freed_cgroups_are_named() {
        use crate::model::cgroups::{CgroupAction, CgroupChange};
        let change = |action, id, path: &str| CgroupChange {
            action,
            id,
            level: 2,
            path: path.into(),
            hierarchy: 4,
            t_mono: 0.0,
        };
        let mut m = NodeModel::default();
        m.fold(0.0, reading(0.0, 1 << 20, 40));
        for i in 0..3 {
            m.cgroup(
                i as f64,
                &change(CgroupAction::Mkdir, i, &format!("/lt/z{i}")),
            );
            m.cgroup(
                10.0 + i as f64,
                &change(CgroupAction::Rmdir, i, &format!("/lt/z{i}")),
            );
        }
        m.cgroup(20.0, &change(CgroupAction::Rmdir, 9, "/other"));
        m.cgroup(21.0, &change(CgroupAction::Release, 1, "/lt/z1"));
        m.fold(30.0, reading(30.0, 1 << 20, 42));
        let n = m.named_zombies(30.0).unwrap();
        assert_eq!(n.count, 3);
        assert_eq!(n.freed, 1);
        assert_eq!(n.by_parent[0], ("/lt".to_string(), 2));
        assert_eq!(n.oldest[0], ("/lt/z0".to_string(), 20.0));
        let s = m.zombies_sentence().unwrap();
        assert!(
            s.ends_with("(2 more than when leaktracer started). 3 were removed while leaktracer watched and never freed, 2 of them under /lt holding 768 KiB of page cache; the oldest, /lt/z0, was removed 20s ago"),
            "{s}"
        );
    }

    #[test]
    fn slab_series_stay_bounded() {
        let mut m = NodeModel::default();
        let mut r = reading(0.0, 1 << 20, 0);
        r.slabs = (0..MAX_SLAB_SERIES + 5)
            .map(|i| SlabCache {
                name: format!("cache-{i}"),
                active_objects: 1,
                objects: 1,
                object_size: 64,
                bytes: 4096,
            })
            .collect();
        m.fold(0.0, r);
        assert_eq!(m.slab_tracks(), MAX_SLAB_SERIES);
        assert_eq!(m.slabs_not_followed, 5);
    }
}
