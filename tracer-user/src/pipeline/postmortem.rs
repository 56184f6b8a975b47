//! OOM post-mortem: one record saying who was killed, who triggered it, in which cgroup,
//! how big the victim was, the cgroup's limit and usage, how the victim grew in the minutes
//! before and whose it was (pod/container) -- from what the process table kept, since the
//! victim (and often its container) is gone by the time anyone looks. Built once by the
//! session when the kernel reports the victim, so every sink shows the same record.
use crate::{
    host::identity::parse_proc_cgroup, kernel::events::OomVictim, model::table::ProcessTable,
    pipeline::context::Context, trace::OomRecord, util::clock::round_ms,
};

/// How much of the victim's history goes into the record, and at what resolution.
const HISTORY_SECS: f64 = 300.0;
const HISTORY_POINTS: usize = 60;

/// Build the record from the table's memory of the victim (cgroup at first sight, series,
/// verdict), the cgroup's state now and the victim's identity. Its time is session time,
/// rounded to the millisecond like every other record's.
pub fn post_mortem(table: &ProcessTable, v: &OomVictim, ctx: &mut Context) -> OomRecord {
    let t = round_ms(table.session_time(v.t_mono));
    let victim = table.find(v.pid);
    let memory_path = |raw: Option<&str>| {
        raw.map(parse_proc_cgroup)
            .and_then(|c| c.memory_path().map(str::to_string))
    };
    let cgroup = memory_path(victim.and_then(|p| p.cgroup_raw.as_deref()));
    let trigger_cgroup = memory_path(
        table
            .find(v.trigger_pid)
            .and_then(|p| p.cgroup_raw.as_deref()),
    );
    let limit = cgroup.as_deref().and_then(|c| ctx.roots.limit_of(c));
    let usage = cgroup.as_deref().and_then(|c| ctx.roots.usage_of(c));
    let history = victim
        .map(|p| {
            let end = p.exited_at.unwrap_or(t);
            let pts: Vec<(f64, u64)> = p
                .fine
                .iter()
                .filter(|s| s.t >= end - HISTORY_SECS)
                .map(|s| (round_ms(s.t), s.private()))
                .collect();
            let step = pts.len().div_ceil(HISTORY_POINTS).max(1);
            let mut out: Vec<(f64, u64)> = pts.iter().step_by(step).copied().collect();
            if let (Some(last), Some(kept)) = (pts.last(), out.last())
                && last != kept
            {
                out.push(*last);
            }
            out
        })
        .unwrap_or_default();
    let assessment = victim.and_then(|p| p.assessment.as_ref());
    OomRecord {
        t,
        victim: v.clone(),
        cgroup_constrained: limit.is_some(),
        cgroup,
        cgroup_limit_bytes: limit,
        cgroup_usage_bytes: usage,
        history,
        last_verdict: assessment.map(|a| a.verdict),
        last_growth_bytes_per_sec: assessment.map(|a| a.growth_bytes_per_sec.round()),
        trigger_cgroup,
        pod: victim.map(|p| ctx.ids.get(p).into()).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        host::{
            identity::{Resolver, cri::SocketChoice},
            memcg::CgroupRoots,
        },
        kernel::sampler::Snapshot,
        model::table::TableLimits,
    };

    const POD_UID: &str = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";
    const CID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn snap(t_mono: f64, procs: Vec<(u32, u64)>) -> Snapshot {
        Snapshot {
            t_mono,
            procs: procs
                .into_iter()
                .map(|(pid, anon)| {
                    let mut st = crate::model::counters::Counters::default();
                    st.rss.anon = anon;
                    st.mapped_anon = anon;
                    (pid, st)
                })
                .collect(),
            counters: Default::default(),
            procs_capacity: 100,
            go: Vec::new(),
        }
    }

    fn victim(pid: u32, trigger_pid: u32, t_mono: f64) -> OomVictim {
        OomVictim {
            pid,
            comm: "leaker".into(),
            trigger_pid,
            trigger_comm: "other".into(),
            uid: 0,
            total_vm_bytes: 0,
            anon_rss_bytes: 40 << 20,
            file_rss_bytes: 0,
            shmem_rss_bytes: 0,
            pgtables_bytes: 0,
            oom_score_adj: 0,
            t_mono,
        }
    }

    /// A victim that grew in a limited pod cgroup, then was killed: the record has its
    /// cgroup, the pod's limit and usage, its history, its identity from the cgroup path,
    /// and the kill's session time rounded to the millisecond.
    #[test]
    fn record_from_the_table_the_cgroup_and_the_identity() {
        let root = tempfile::tempdir().unwrap();
        let cg = root.path().join("sys/fs/cgroup");
        let pod_slice = format!(
            "kubepods.slice/kubepods-pod{}.slice",
            POD_UID.replace('-', "_")
        );
        let container = format!("{pod_slice}/cri-containerd-{CID}.scope");
        std::fs::create_dir_all(cg.join(&container)).unwrap();
        std::fs::write(cg.join(&pod_slice).join("memory.max"), "67108864\n").unwrap();
        std::fs::write(cg.join(&container).join("memory.max"), "max\n").unwrap();
        std::fs::write(cg.join(&container).join("memory.current"), "1000\n").unwrap();
        let mut ctx = Context::from_parts(
            CgroupRoots::new(None, Some(cg.clone()), root.path()),
            Resolver::new(root.path(), SocketChoice::Disabled),
        );

        let t0 = 100.0;
        let mut table = ProcessTable::new(TableLimits::default(), t0);
        table.update(&snap(t0 + 1.0, vec![(42, 10 << 20), (7, 1 << 20)]), None);
        table.live.get_mut(&42).unwrap().cgroup_raw = Some(format!("0::/{container}\n").into());
        table.live.get_mut(&7).unwrap().cgroup_raw =
            Some("0::/system.slice/other.service\n".into());
        for (i, mib) in [20u64, 30, 40].into_iter().enumerate() {
            table.update(
                &snap(t0 + 2.0 + i as f64, vec![(42, mib << 20), (7, 1 << 20)]),
                None,
            );
        }
        // The kernel reports the victim a little after its last sample, and its exit follows.
        let v = victim(42, 7, t0 + 4.000_4);
        table.exit(42, v.t_mono);
        let rec = post_mortem(&table, &v, &mut ctx);

        assert_eq!(rec.t, 4.0, "session time, rounded to the millisecond");
        assert_eq!(rec.victim, v);
        assert_eq!(
            rec.cgroup.as_deref(),
            Some(format!("/{container}").as_str())
        );
        assert!(rec.cgroup_constrained);
        assert_eq!(rec.cgroup_limit_bytes, Some(64 << 20), "the pod's limit");
        assert_eq!(rec.cgroup_usage_bytes, Some(1000));
        assert_eq!(
            rec.trigger_cgroup.as_deref(),
            Some("/system.slice/other.service")
        );
        assert_eq!(
            rec.history,
            vec![
                (1.0, 10 << 20),
                (2.0, 20 << 20),
                (3.0, 30 << 20),
                (4.0, 40 << 20)
            ]
        );
        assert_eq!(rec.pod.pod_uid.as_deref(), Some(POD_UID));
        assert_eq!(rec.pod.container_id.as_deref(), Some(CID));
    }

    /// A victim never seen alive (killed before the first round): the kernel's facts only.
    #[test]
    fn unknown_victim_has_the_kernel_facts_only() {
        let root = tempfile::tempdir().unwrap();
        let mut ctx = Context::from_parts(
            CgroupRoots::new(None, None, root.path()),
            Resolver::new(root.path(), SocketChoice::Disabled),
        );
        let table = ProcessTable::new(TableLimits::default(), 10.0);
        let v = victim(99, 98, 12.345_67);
        let rec = post_mortem(&table, &v, &mut ctx);
        assert_eq!(rec.t, 2.346);
        assert_eq!(rec.cgroup, None);
        assert!(!rec.cgroup_constrained);
        assert_eq!(rec.cgroup_limit_bytes, None);
        assert!(rec.history.is_empty());
        assert_eq!(rec.last_verdict, None);
        assert_eq!(rec.pod, Default::default());
    }
}
