//! What the watchers report.
use serde::{Deserialize, Serialize};

use super::parse::{MemoryEvents, Psi};

/// One observation by a [`super::MemcgWatcher`]. `ts_ms` is the wall clock (unix ms) when
/// the watcher saw it, not when the kernel counted it (within milliseconds of each other:
/// the watchers are woken by the kernel, they do not poll).
/// Deserialize too: traces embed it and are read back.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MemcgEvent {
    /// v1: the cgroup hit its limit and the OOM killer ran (the memory.oom_control eventfd).
    /// On v2 the same news comes as `Events` with `deltas.oom_kill` > 0.
    Oom {
        ts_ms: u64,
        cgroup: String,
        /// Kills in this cgroup so far (memory.oom_control oom_kill).
        oom_kill_total: u64,
        /// Times usage hit the limit so far (memory.failcnt).
        failcnt: u64,
        /// Usage when read, i.e. just after the kill freed the victim's memory.
        usage_bytes: u64,
        /// The tightest limit from this cgroup up (see `effective_limit`).
        limit_bytes: u64,
    },
    /// v2: memory.events limit counters rose (high, max, oom, oom_kill, oom_group_kill;
    /// changes of `low` alone are not reported). `max` is v2's analogue of v1's failcnt.
    Events {
        ts_ms: u64,
        cgroup: String,
        /// Rise of each counter since the previous observation (0: unchanged).
        deltas: MemoryEvents,
        totals: MemoryEvents,
    },
    /// v1: usage crossed the threshold registered at watch time (either direction: compare
    /// `usage_bytes` with `threshold_bytes`).
    Threshold {
        ts_ms: u64,
        cgroup: String,
        usage_bytes: u64,
        limit_bytes: u64,
        threshold_bytes: u64,
    },
    /// Processes of this cgroup ran memory-cgroup direct reclaim since the previous report
    /// (vmscan memcg_reclaim tracepoints, summed per round): the cgroup is at its limit
    /// (v1 limit_in_bytes, v2 memory.max) or above memory.high and its allocations stall.
    Reclaim {
        ts_ms: u64,
        cgroup: String,
        /// Reclaim runs (each a stall of one allocating thread).
        runs: u64,
        /// Bytes the runs freed (pages × page size): near 0 means nothing was reclaimable
        /// (anonymous memory without swap), the usual prelude to an OOM kill.
        reclaimed_bytes: u64,
        /// Time the allocating threads spent in reclaim, summed (ms).
        stall_ms: f64,
        /// Some of the processes that stalled (at most 8).
        pids: Vec<u32>,
    },
    /// A PSI trigger fired: tasks stalled on memory for longer than the trigger's threshold
    /// within its window.
    Pressure {
        ts_ms: u64,
        /// "node" for /proc/pressure/memory, else the cgroup path (v2 memory.pressure).
        scope: String,
        /// The trigger as written to the kernel, e.g. "some 150000 1000000".
        trigger: String,
        some_avg10: f64,
        some_avg60: f64,
        some_avg300: f64,
        some_total_us: u64,
        full_avg10: f64,
        full_avg60: f64,
        full_avg300: f64,
        full_total_us: u64,
    },
}

impl MemcgEvent {
    pub fn pressure(scope: String, trigger: String, psi: &Psi) -> Self {
        let full = psi.full.unwrap_or_default();
        Self::Pressure {
            ts_ms: unix_ms(),
            scope,
            trigger,
            some_avg10: psi.some.avg10,
            some_avg60: psi.some.avg60,
            some_avg300: psi.some.avg300,
            some_total_us: psi.some.total_us,
            full_avg10: full.avg10,
            full_avg60: full.avg60,
            full_avg300: full.avg300,
            full_total_us: full.total_us,
        }
    }

    /// The cgroup (or "node") the event is about.
    pub fn scope(&self) -> &str {
        match self {
            Self::Oom { cgroup, .. }
            | Self::Events { cgroup, .. }
            | Self::Threshold { cgroup, .. }
            | Self::Reclaim { cgroup, .. } => cgroup,
            Self::Pressure { scope, .. } => scope,
        }
    }

    /// (cgroup or "node", counter name, increase) for metrics: v1 `Oom` counts as one "oom",
    /// v2 `Events` as the rise of each memory.events counter, the others as one
    /// "threshold" / "pressure", `Reclaim` as its runs under "reclaim".
    pub fn counts(&self) -> Vec<(String, String, u64)> {
        let one = |scope: &str, what: &str| vec![(scope.to_owned(), what.to_owned(), 1)];
        match self {
            Self::Oom { cgroup, .. } => one(cgroup, "oom"),
            Self::Events { cgroup, deltas, .. } => deltas
                .changed()
                .into_iter()
                .map(|(name, n)| (cgroup.clone(), name.to_owned(), n))
                .collect(),
            Self::Threshold { cgroup, .. } => one(cgroup, "threshold"),
            Self::Reclaim { cgroup, runs, .. } => vec![(cgroup.clone(), "reclaim".into(), *runs)],
            Self::Pressure { scope, .. } => one(scope, "pressure"),
        }
    }
}

pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shape() {
        let e = MemcgEvent::Oom {
            ts_ms: 1,
            cgroup: "/a".into(),
            oom_kill_total: 2,
            failcnt: 3,
            usage_bytes: 4,
            limit_bytes: 5,
        };
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"kind":"oom","ts_ms":1,"cgroup":"/a","oom_kill_total":2,"failcnt":3,"usage_bytes":4,"limit_bytes":5}"#
        );
        let p = Psi::parse("some avg10=1.50 avg60=0.00 avg300=0.00 total=9\n").unwrap();
        let v = serde_json::to_value(MemcgEvent::pressure("node".into(), "some 1 2".into(), &p))
            .unwrap();
        assert_eq!(v["kind"], "pressure");
        assert_eq!(v["scope"], "node");
        assert_eq!(v["some_avg10"], 1.5);
        assert_eq!(v["full_total_us"], 0);
        let ev = MemcgEvent::Events {
            ts_ms: 1,
            cgroup: "/b".into(),
            deltas: MemoryEvents {
                oom_kill: 1,
                ..Default::default()
            },
            totals: MemoryEvents {
                oom_kill: 4,
                ..Default::default()
            },
        };
        let v = serde_json::to_value(&ev).unwrap();
        assert_eq!(v["kind"], "events");
        assert_eq!(v["deltas"]["oom_kill"], 1);
        assert_eq!(v["totals"]["oom_kill"], 4);
        assert_eq!(ev.scope(), "/b");
        assert_eq!(
            ev.counts(),
            vec![("/b".to_owned(), "oom_kill".to_owned(), 1)]
        );
        assert_eq!(e.counts(), vec![("/a".to_owned(), "oom".to_owned(), 1)]);
        // Read back, also flattened into an outer record as traces do.
        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        #[serde(tag = "type")]
        enum Record {
            Memcg {
                t: f64,
                #[serde(flatten)]
                event: MemcgEvent,
            },
        }
        for event in [e, ev] {
            let r = Record::Memcg { t: 1.5, event };
            let json = serde_json::to_string(&r).unwrap();
            assert_eq!(serde_json::from_str::<Record>(&json).unwrap(), r, "{json}");
        }
    }
}
