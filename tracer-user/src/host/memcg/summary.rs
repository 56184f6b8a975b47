//! Per-cgroup totals of [`MemcgEvent`]s, for `report`: which cgroups pressed on their limits,
//! how often, and how long their allocations stalled.
use std::collections::BTreeMap;

use serde::Serialize;

use super::MemcgEvent;

/// What one cgroup (or "node" for node-wide pressure) went through during a trace.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct CgroupActivity {
    pub cgroup: String,
    /// Session time (s) of the first and last event.
    pub first_t: f64,
    pub last_t: f64,
    /// Event counts by name, as in the `leaktracer_memcg_events_total` metric: v1 `oom`,
    /// `threshold`, v2 memory.events counters, `reclaim` runs, `pressure` triggers.
    pub counts: BTreeMap<String, u64>,
    /// Direct reclaim: bytes freed and time stalled (ms), summed.
    pub reclaimed_bytes: u64,
    pub reclaim_stall_ms: f64,
    /// Highest PSI "some" avg10 seen when a pressure trigger fired (%).
    pub peak_pressure_some_avg10: Option<f64>,
}

/// Folds events into per-cgroup activity, keeping at most `max_cgroups` cgroups (the rest
/// are counted in `dropped`: a trace of a huge node must not make `report` unbounded).
pub struct ActivityFold {
    by_cgroup: BTreeMap<String, CgroupActivity>,
    max_cgroups: usize,
    pub dropped: u64,
}

impl ActivityFold {
    pub fn new(max_cgroups: usize) -> Self {
        Self {
            by_cgroup: BTreeMap::new(),
            max_cgroups,
            dropped: 0,
        }
    }

    pub fn add(&mut self, t: f64, ev: &MemcgEvent) {
        let scope = ev.scope();
        if !self.by_cgroup.contains_key(scope) && self.by_cgroup.len() >= self.max_cgroups {
            self.dropped += 1;
            return;
        }
        let a = self
            .by_cgroup
            .entry(scope.to_owned())
            .or_insert_with(|| CgroupActivity {
                cgroup: scope.to_owned(),
                first_t: t,
                ..CgroupActivity::default()
            });
        a.last_t = t;
        for (_, what, n) in ev.counts() {
            *a.counts.entry(what).or_default() += n;
        }
        match ev {
            MemcgEvent::Reclaim {
                reclaimed_bytes,
                stall_ms,
                ..
            } => {
                a.reclaimed_bytes += reclaimed_bytes;
                a.reclaim_stall_ms += stall_ms;
            }
            MemcgEvent::Pressure { some_avg10, .. } => {
                let peak = a.peak_pressure_some_avg10.get_or_insert(*some_avg10);
                *peak = peak.max(*some_avg10);
            }
            _ => {}
        }
    }

    /// Busiest first: most limit events (everything but pressure and reclaim), then longest
    /// reclaim stall.
    pub fn finish(self) -> Vec<CgroupActivity> {
        let mut v: Vec<CgroupActivity> = self.by_cgroup.into_values().collect();
        let limit_events = |a: &CgroupActivity| -> u64 {
            a.counts
                .iter()
                .filter(|(k, _)| k.as_str() != "reclaim" && k.as_str() != "pressure")
                .map(|(_, n)| n)
                .sum()
        };
        v.sort_by(|a, b| {
            limit_events(b)
                .cmp(&limit_events(a))
                .then(b.reclaim_stall_ms.total_cmp(&a.reclaim_stall_ms))
        });
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::memcg::MemoryEvents;

    fn reclaim(cgroup: &str, runs: u64, bytes: u64, ms: f64) -> MemcgEvent {
        MemcgEvent::Reclaim {
            ts_ms: 0,
            cgroup: cgroup.into(),
            runs,
            reclaimed_bytes: bytes,
            stall_ms: ms,
            pids: vec![1],
        }
    }

    #[test]
    fn folds_counts_reclaim_and_pressure_per_cgroup() {
        let mut f = ActivityFold::new(10);
        f.add(1.0, &reclaim("/a", 3, 4096, 2.5));
        f.add(2.0, &reclaim("/a", 1, 0, 0.5));
        let deltas = MemoryEvents {
            max: 2,
            oom: 1,
            oom_kill: 1,
            ..MemoryEvents::default()
        };
        f.add(
            3.0,
            &MemcgEvent::Events {
                ts_ms: 0,
                cgroup: "/b".into(),
                deltas,
                totals: deltas,
            },
        );
        let psi = crate::host::memcg::parse::Psi::parse(
            "some avg10=12.50 avg60=1.00 avg300=0.00 total=100\nfull avg10=3.00 avg60=0.00 avg300=0.00 total=10\n",
        )
        .unwrap();
        f.add(
            4.0,
            &MemcgEvent::pressure("node".into(), "some 150000 1000000".into(), &psi),
        );
        let v = f.finish();
        assert_eq!(v[0].cgroup, "/b", "limit events rank first: {v:?}");
        assert_eq!(v[0].counts["oom_kill"], 1);
        assert_eq!(v[0].counts["max"], 2);
        let a = v.iter().find(|a| a.cgroup == "/a").unwrap();
        assert_eq!(a.counts["reclaim"], 4);
        assert_eq!((a.reclaimed_bytes, a.reclaim_stall_ms), (4096, 3.0));
        assert_eq!((a.first_t, a.last_t), (1.0, 2.0));
        let node = v.iter().find(|a| a.cgroup == "node").unwrap();
        assert_eq!(node.peak_pressure_some_avg10, Some(12.5));
    }

    #[test]
    fn bounded_number_of_cgroups() {
        let mut f = ActivityFold::new(2);
        for c in ["/a", "/b", "/c", "/a"] {
            f.add(0.0, &reclaim(c, 1, 0, 0.0));
        }
        assert_eq!(f.dropped, 1);
        assert_eq!(f.finish().len(), 2);
    }
}
