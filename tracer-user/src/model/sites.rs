//! Growth-site stacks over a session (`record --stacks`, replayed by `report`): every
//! process's sampled stacks with their cumulative samples, as the live source reports them
//! and the trace keeps them. Bounded: stacks beyond [`MAX_STACKS`] are counted, not kept.
use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::model::growth::{GrowthKind, GrowthProfile, ProcessStack, ProfileCounters, SiteFrame};

/// Stacks kept at most (the kernel keeps 16,384 at a time; the dead are forgotten there).
pub const MAX_STACKS: usize = 100_000;

/// One stack's cumulative samples. Its frames come with its first report only.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StackSample {
    pub pid: u32,
    /// Unique in the session.
    pub id: u32,
    /// How it grew (traces before growth kinds have touched stacks only).
    #[serde(default)]
    pub kind: GrowthKind,
    pub samples: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frames: Option<Vec<SiteFrame>>,
}

/// What changed since the last report: new stacks and stacks with more samples.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StackUpdate {
    /// Bytes one sample stands for (the mean sampling interval).
    pub mean_bytes: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stacks: Vec<StackSample>,
    /// The kernel side's counters so far.
    pub counters: ProfileCounters,
    /// Processes sampled now.
    pub targets: u32,
    /// Processes that could not be sampled (the kernel's table of targets was full).
    #[serde(default)]
    pub targets_refused: u64,
}

#[derive(Clone, Debug)]
struct Logged {
    kind: GrowthKind,
    frames: Vec<SiteFrame>,
    samples: u64,
}

/// The session's stacks, folded from its updates.
#[derive(Clone, Debug, Default)]
pub struct SiteLog {
    mean_bytes: u64,
    stacks: HashMap<(u32, u32), Logged>,
    /// Stacks not kept: beyond [`MAX_STACKS`], or whose frames were never reported.
    pub dropped: u64,
    pub counters: ProfileCounters,
    pub targets_refused: u64,
}

impl SiteLog {
    pub fn apply(&mut self, u: &StackUpdate) {
        self.mean_bytes = u.mean_bytes;
        self.counters = u.counters;
        self.targets_refused = u.targets_refused;
        for s in &u.stacks {
            if let Some(known) = self.stacks.get_mut(&(s.pid, s.id)) {
                known.samples = s.samples;
                continue;
            }
            match &s.frames {
                Some(frames) if self.stacks.len() < MAX_STACKS => {
                    self.stacks.insert(
                        (s.pid, s.id),
                        Logged {
                            kind: s.kind,
                            frames: frames.clone(),
                            samples: s.samples,
                        },
                    );
                }
                _ => self.dropped += 1,
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.stacks.is_empty()
    }

    pub fn mean_bytes(&self) -> u64 {
        self.mean_bytes
    }

    /// Samples of every kind.
    pub fn total_samples(&self) -> u64 {
        self.stacks.values().map(|s| s.samples).sum()
    }

    /// The growth profile of the processes `wanted` accepts.
    pub fn profile(&self, wanted: impl Fn(u32) -> bool) -> GrowthProfile {
        let mut keys: Vec<&(u32, u32)> = self.stacks.keys().filter(|(p, _)| wanted(*p)).collect();
        keys.sort();
        GrowthProfile {
            mean_bytes: self.mean_bytes,
            stacks: keys
                .into_iter()
                .map(|k| {
                    let s = &self.stacks[k];
                    ProcessStack {
                        pid: k.0,
                        kind: s.kind,
                        samples: s.samples,
                        frames: s.frames.iter().map(SiteFrame::to_frame).collect(),
                    }
                })
                .collect(),
            ..GrowthProfile::default()
        }
    }

    /// The stacks as folded lines for a flame graph ("root;...;leaf bytes"), each rooted at
    /// its process (`name(pid)`), of the processes `wanted` accepts. Resident growth (first
    /// touch) sits on the process; mmap and brk growth under a `[mapped]` or `[brk]` frame of
    /// its own, so that memory mapped and then touched is never one wider tower.
    pub fn folded(
        &self,
        mut wanted: impl FnMut(u32) -> bool,
        name: impl Fn(u32) -> String,
    ) -> Vec<String> {
        let mut lines: Vec<String> = self
            .stacks
            .iter()
            .filter(|((pid, _), s)| wanted(*pid) && s.samples > 0)
            .map(|((pid, _), s)| {
                let mut parts = vec![clean(&name(*pid))];
                if !s.kind.is_touched() {
                    parts.push(format!("[{}]", s.kind.as_str()));
                }
                parts.extend(s.frames.iter().rev().map(|f| match &f.function {
                    Some(n) => clean(n),
                    None => format!("{:#x}", f.address),
                }));
                format!("{} {}", parts.join(";"), s.samples * self.mean_bytes)
            })
            .collect();
        lines.sort();
        lines
    }
}

/// A frame's name as a folded line can hold it (';' separates frames, ' ' the count).
fn clean(s: &str) -> String {
    s.replace(';', ":").replace(' ', "_")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(name: &str) -> SiteFrame {
        SiteFrame {
            address: 0x10,
            function: Some(name.into()),
            ..SiteFrame::default()
        }
    }

    fn update(stacks: Vec<StackSample>) -> StackUpdate {
        StackUpdate {
            mean_bytes: 100,
            stacks,
            ..StackUpdate::default()
        }
    }

    #[test]
    fn later_reports_update_the_samples_of_known_stacks() {
        let mut log = SiteLog::default();
        log.apply(&update(vec![StackSample {
            pid: 7,
            id: 1,
            kind: GrowthKind::Touched,
            samples: 2,
            frames: Some(vec![frame("grab"), frame("keeper"), frame("main")]),
        }]));
        log.apply(&update(vec![
            StackSample {
                pid: 7,
                id: 1,
                kind: GrowthKind::Touched,
                samples: 9,
                frames: None,
            },
            // Frames never reported (a trace cut at its start): counted, not kept.
            StackSample {
                pid: 7,
                id: 2,
                kind: GrowthKind::Touched,
                samples: 1,
                frames: None,
            },
        ]));
        assert_eq!(log.total_samples(), 9);
        assert_eq!(log.dropped, 1);
        let p = log.profile(|pid| pid == 7);
        let site = &p.top_sites(1)[0];
        assert_eq!((site.function.as_str(), site.bytes), ("grab", 900));
        assert_eq!(site.callers, ["keeper", "main"]);
        assert!(log.profile(|pid| pid == 8).stacks.is_empty());
        assert_eq!(
            log.folded(|_| true, |pid| format!("leaky ({pid})")),
            ["leaky_(7);main;keeper;grab 900"]
        );
    }

    #[test]
    fn mapped_growth_is_a_kind_of_its_own() {
        let mut log = SiteLog::default();
        let sample = |id, kind, samples| StackSample {
            pid: 7,
            id,
            kind,
            samples,
            frames: Some(vec![frame("mmap"), frame("grab"), frame("keeper")]),
        };
        log.apply(&update(vec![
            sample(1, GrowthKind::Touched, 4),
            sample(2, GrowthKind::Mapped, 6),
            sample(3, GrowthKind::Brk, 2),
        ]));
        let p = log.profile(|_| true);
        assert_eq!(p.total_samples(), 4, "resident growth alone");
        assert_eq!(p.mapped_samples(), 8);
        let touched = p.top_sites(5);
        assert_eq!(touched.len(), 1);
        assert_eq!(
            (touched[0].kind, touched[0].bytes),
            (GrowthKind::Touched, 400)
        );
        let mapped = p.top_mapped_sites(5);
        assert_eq!(
            mapped
                .iter()
                .map(|s| (s.kind, s.function.as_str(), s.bytes))
                .collect::<Vec<_>>(),
            [
                (GrowthKind::Mapped, "grab", 600),
                (GrowthKind::Brk, "grab", 200)
            ]
        );
        assert!(
            (mapped[0].share - 1.0).abs() < 1e-9,
            "share within its kind"
        );
        assert_eq!(
            log.folded(|_| true, |pid| format!("p{pid}")),
            [
                "p7;[brk];keeper;grab;mmap 200",
                "p7;[mapped];keeper;grab;mmap 600",
                "p7;keeper;grab;mmap 400",
            ]
        );
        // A trace written before kinds existed reads as touched.
        let old: StackSample = serde_json::from_str(r#"{"pid":1,"id":2,"samples":3}"#).unwrap();
        assert_eq!(old.kind, GrowthKind::Touched);
    }
}
