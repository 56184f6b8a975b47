//! Bridges the process table and the limit-risk judgement (detector/risk.rs): which limit
//! applies, the judgement kept on each process, and the moments a process starts or stops
//! being at risk. Live sessions and `report` both come through here, so they agree.
use serde::{Deserialize, Serialize};

use crate::{
    detector::{LimitRisk, RiskConfig, assess_risk},
    host::memcg::LimitCache,
    model::table::{Process, ProcessTable},
};

/// The memory cgroup limit that constrains `p`: the one its trace recorded (offline), else
/// the tightest on its cgroup's path (live). None when only the node's memory limits it: the
/// judgement is about a limit that kills the process while the node has memory to spare.
pub fn cgroup_limit(p: &Process, limits: &mut LimitCache) -> Option<u64> {
    if let Some(recorded) = p.limit_bytes {
        return p.limit_from_cgroup.then_some(recorded);
    }
    let limit = limits.get(p.memcg_path().as_deref())?;
    limit.cgroup.is_some().then_some(limit.bytes)
}

/// `p`'s risk at `now` against `limit_bytes`, from its fine series.
pub fn judge(p: &Process, now: f64, limit_bytes: u64, cfg: &RiskConfig) -> Option<LimitRisk> {
    assess_risk(
        &crate::model::verdicts::fine_points(p, now),
        limit_bytes,
        cfg,
    )
}

/// A process started or stopped being at risk this round.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RiskChange {
    pub pid: u32,
    /// True: it is at risk now (it was not before); false: it no longer is.
    pub at_risk: bool,
    pub risk: LimitRisk,
}

/// Re-judge the processes whose memory changed this round (a flat stretch does not move
/// their peaks, and the node's idle processes cost nothing), keeping each one's latest judgement; returns those whose at-risk state
/// flipped. A process first judged not at risk is no change.
pub fn refresh(
    table: &mut ProcessTable,
    now: f64,
    limits: &mut LimitCache,
    cfg: &RiskConfig,
) -> Vec<RiskChange> {
    let mut changes = Vec::new();
    for p in table.live.values_mut() {
        if !p.changed {
            continue;
        }
        let risk = cgroup_limit(p, limits).and_then(|limit| judge(p, now, limit, cfg));
        let was = p.risk.as_ref().is_some_and(|r| r.at_risk);
        let is = risk.as_ref().is_some_and(|r| r.at_risk);
        if was != is {
            // Losing the limit (the process left its cgroup) ends the risk with the last
            // judgement it had.
            let shown = risk.clone().or_else(|| p.risk.as_deref().cloned());
            if let Some(shown) = shown {
                changes.push(RiskChange {
                    pid: p.pid,
                    at_risk: is,
                    risk: LimitRisk {
                        at_risk: is,
                        kind: if is { shown.kind } else { None },
                        ..shown
                    },
                });
            }
        }
        p.risk = risk.map(Box::new);
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        kernel::sampler::Snapshot,
        model::{counters::Counters, table::TableLimits},
    };

    const MIB: u64 = 1 << 20;

    /// A table whose pid 7 had these private-memory samples (one round each), with this
    /// limit recorded as its memory cgroup's.
    fn table_with(series: &[(f64, u64)], limit: Option<u64>) -> ProcessTable {
        let mut table = ProcessTable::new(TableLimits::default(), 0.0);
        for &(t, private) in series {
            let mut st = Counters::default();
            st.rss.anon = private;
            table.update(
                &Snapshot {
                    t_mono: t,
                    procs: vec![(7, st)],
                    counters: Default::default(),
                    procs_capacity: 100,
                    go: Vec::new(),
                },
                None,
            );
        }
        let p = table.live.get_mut(&7).unwrap();
        p.limit_bytes = limit;
        p.limit_from_cgroup = limit.is_some();
        table
    }

    fn offline_limits() -> LimitCache {
        LimitCache::new(crate::host::memcg::CgroupRoots::new(
            None,
            None,
            std::path::Path::new("/nonexistent"),
        ))
    }

    #[test]
    fn a_recorded_cgroup_limit_is_used_and_the_node_is_not_a_limit() {
        let mut limits = offline_limits();
        let mut t = table_with(&[(0.0, MIB)], Some(128 * MIB));
        assert_eq!(cgroup_limit(&t.live[&7], &mut limits), Some(128 * MIB));
        t.live.get_mut(&7).unwrap().limit_from_cgroup = false;
        assert_eq!(cgroup_limit(&t.live[&7], &mut limits), None);
        let unknown = table_with(&[(0.0, MIB)], None);
        assert_eq!(cgroup_limit(&unknown.live[&7], &mut limits), None);
    }

    #[test]
    fn starting_and_ending_risk_are_changes_and_staying_is_not() {
        let saw: Vec<(f64, u64)> = (0..40)
            .map(|i| (i as f64, if i % 8 == 5 { 118 * MIB } else { 40 * MIB }))
            .collect();
        let mut table = table_with(&saw, Some(128 * MIB));
        let mut limits = offline_limits();
        let cfg = RiskConfig::default();
        // Judged when its memory changed in the round.
        table.live.get_mut(&7).unwrap().changed = true;
        let first = refresh(&mut table, 40.0, &mut limits, &cfg);
        assert_eq!(first.len(), 1);
        assert!(first[0].at_risk);
        assert_eq!(first[0].risk.peak_ratio, 0.922);
        table.live.get_mut(&7).unwrap().changed = true;
        assert!(refresh(&mut table, 41.0, &mut limits, &cfg).is_empty());
        // The limit is raised to 512 MiB: the risk ends.
        table.live.get_mut(&7).unwrap().limit_bytes = Some(512 * MIB);
        table.live.get_mut(&7).unwrap().changed = true;
        let ended = refresh(&mut table, 42.0, &mut limits, &cfg);
        assert_eq!(ended.len(), 1);
        assert!(!ended[0].at_risk);
        assert_eq!(ended[0].risk.kind, None);
        assert_eq!(ended[0].risk.limit_bytes, 512 * MIB);
    }
}
