//! Identity of processes, resolved once and cached: the cgroup path seen at first sight (or
//! exec) gives pod UID, container ID, QoS or systemd unit; the CRI runtime (when its socket is
//! reachable) or else the kubelet's log directories give namespace, pod and container names.
//! Offline (a replayed trace) nothing is resolved: the identities are those the trace
//! recorded. Bounded by the process table.
use std::{
    collections::{HashMap, HashSet},
    path::Path,
};

use super::{Identity, PodLogIndex, cri, parse_cgroup_path, parse_proc_cgroup};
use crate::model::table::{Process, ProcessTable};

pub struct Resolver {
    /// Where names come from; None offline, where only recorded identities are known.
    host: Option<HostNames>,
    /// Live: identities by memory cgroup path (None: no cgroup known). An identity is a
    /// function of the path, and a node's thousands of processes share a few hundred paths:
    /// one entry per process cost 0.4 KiB each (10,000 processes: 4 MiB).
    by_path: HashMap<Option<String>, Identity>,
    /// Offline: what the trace recorded for each process at its first sight.
    recorded: HashMap<u32, Identity>,
}

/// The host's sources of pod names.
struct HostNames {
    pods: PodLogIndex,
    /// `None` when disabled (`--cri-socket none`) or no runtime socket was found at start.
    cri: Option<cri::CriResolver>,
}

impl Resolver {
    /// `socket` is where the CRI runtime's names come from (from `--cri-socket`, see
    /// [`cri::SocketChoice::from_flag`]); the kubelet's log directories are under `host_root`.
    pub fn new(host_root: &Path, socket: cri::SocketChoice) -> Self {
        Self {
            host: Some(HostNames {
                pods: PodLogIndex::new(host_root),
                cri: cri::CriResolver::start(socket),
            }),
            by_path: HashMap::new(),
            recorded: HashMap::new(),
        }
    }

    /// A resolver that knows only what it is told ([`Resolver::remember`]): a replayed
    /// trace's host is not this one, so nothing of this machine may answer for it.
    pub fn recorded() -> Self {
        Self {
            host: None,
            by_path: HashMap::new(),
            recorded: HashMap::new(),
        }
    }

    /// The identity a trace recorded for `p` at its first sight (offline). Nothing known
    /// forgets what was recorded for its pid before (a reused pid).
    pub fn remember(&mut self, p: &Process, id: Identity) {
        if id == Identity::default() {
            self.recorded.remove(&p.pid);
        } else {
            self.recorded.insert(p.pid, id);
        }
    }

    /// The identity of `p`; recomputed only when its cgroup path changed (exec into a
    /// container) or its pod names were not known yet. Offline: the recorded one, else
    /// nothing.
    pub fn get(&mut self, p: &Process) -> Identity {
        let Some(host) = &mut self.host else {
            return self.recorded.get(&p.pid).cloned().unwrap_or_default();
        };
        let path = p.memcg_path();
        if let Some(id) = self.by_path.get(&path)
            && (id.pod_uid.is_none() || id.names.pod.is_some())
        {
            return id.clone();
        }
        let mut id = path.as_deref().map(parse_cgroup_path).unwrap_or_default();
        // Names from the runtime win; the log directories only fill what it does not know.
        let from_cri = host.cri.as_ref().is_some_and(|c| c.resolve(&mut id));
        if !from_cri {
            host.pods.resolve(&mut id);
        }
        self.by_path.insert(path, id.clone());
        id
    }

    /// Forget what no process of the table needs any more (keeps the caches bounded by it):
    /// the paths of the cgroups its processes are in (its shared cgroup files, a few hundred
    /// on a node), and offline the processes that left it.
    pub fn prune(&mut self, table: &ProcessTable) {
        if !self.by_path.is_empty() {
            let held: HashSet<String> = table
                .strings
                .iter()
                .filter_map(|raw| parse_proc_cgroup(raw).memory_path().map(str::to_string))
                .collect();
            self.by_path
                .retain(|path, _| path.as_ref().is_none_or(|p| held.contains(p)));
        }
        self.recorded.retain(|pid, _| table.find(*pid).is_some());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        host::identity::cri::SocketChoice, kernel::sampler::Snapshot, model::table::TableLimits,
    };

    const POD_UID: &str = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";

    fn snap(pids: &[u32]) -> Snapshot {
        Snapshot {
            t_mono: 1.0,
            procs: pids
                .iter()
                .map(|pid| (*pid, crate::model::counters::Counters::default()))
                .collect(),
            counters: Default::default(),
            procs_capacity: 100,
            go: Vec::new(),
        }
    }

    /// Processes of one cgroup share one cached identity; it is forgotten when the last of
    /// them has left the table, and a process in another cgroup gets its own.
    #[test]
    fn identities_are_cached_per_cgroup_path_and_bounded_by_the_table() {
        let root = tempfile::tempdir().unwrap();
        let mut ids = Resolver::new(root.path(), SocketChoice::Disabled);
        let mut table = ProcessTable::new(TableLimits::default(), 0.0);
        table.update(&snap(&[1, 2, 3]), None);
        let pod = format!(
            "0::/kubepods.slice/kubepods-pod{}.slice\n",
            POD_UID.replace('-', "_")
        );
        for pid in [1, 2] {
            let raw = table.strings.intern(pod.clone());
            table.live.get_mut(&pid).unwrap().cgroup_raw = Some(raw);
        }
        let raw = table
            .strings
            .intern("0::/system.slice/other.service\n".to_string());
        table.live.get_mut(&3).unwrap().cgroup_raw = Some(raw);

        let (a, b, c) = (
            ids.get(&table.live[&1]),
            ids.get(&table.live[&2]),
            ids.get(&table.live[&3]),
        );
        assert_eq!(a.pod_uid.as_deref(), Some(POD_UID));
        assert_eq!(a, b, "same cgroup, same identity");
        assert_eq!(c.pod_uid, None);
        assert_eq!(c.systemd_unit.as_deref(), Some("other.service"));
        assert_eq!(ids.by_path.len(), 2, "one entry per path, not per process");

        table.exit(1, 2.0);
        table.exit(2, 2.0);
        table.graveyard.clear();
        table.update(&snap(&[3]), None);
        ids.prune(&table);
        assert_eq!(
            ids.by_path.len(),
            1,
            "the pod's path left with its processes"
        );
        assert_eq!(ids.get(&table.live[&3]), c);
    }
}
