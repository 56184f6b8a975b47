//! Identity of live processes, resolved once and cached: the cgroup path seen at first
//! sight (or exec) gives pod UID, container ID, QoS or systemd unit; the CRI runtime (when its
//! socket is reachable) or else the kubelet's log directories give namespace, pod and container
//! names. Bounded by the live process set.
use std::{collections::HashMap, path::Path};

use super::{Identity, PodLogIndex, cri, parse_cgroup_path};
use crate::model::table::{Process, ProcessTable};

pub struct Resolver {
    pods: PodLogIndex,
    /// `None` when disabled (`--cri-socket none`) or no runtime socket was found at start.
    cri: Option<cri::CriResolver>,
    cache: HashMap<u32, (Option<String>, Identity)>,
}

impl Resolver {
    /// `socket` is where the CRI runtime's names come from (from `--cri-socket`, see
    /// [`cri::SocketChoice::from_flag`]); the kubelet's log directories are under `host_root`.
    pub fn new(host_root: &Path, socket: cri::SocketChoice) -> Self {
        Self {
            pods: PodLogIndex::new(host_root),
            cri: cri::CriResolver::start(socket),
            cache: HashMap::new(),
        }
    }

    /// The identity of `p`; recomputed only when its cgroup path changed (exec into a
    /// container) or its pod names were not known yet.
    pub fn get(&mut self, p: &Process) -> Identity {
        let path = p.memcg_path();
        if let Some((seen, id)) = self.cache.get(&p.pid)
            && *seen == path
            && (id.pod_uid.is_none() || id.pod.is_some())
        {
            return id.clone();
        }
        let mut id = path.as_deref().map(parse_cgroup_path).unwrap_or_default();
        // Names from the runtime win; the log directories only fill what it does not know.
        let from_cri = self.cri.as_ref().is_some_and(|c| c.resolve(&mut id));
        if !from_cri {
            self.pods.resolve(&mut id);
        }
        self.cache.insert(p.pid, (path, id.clone()));
        id
    }

    /// Forget processes that left the table (keeps the cache bounded).
    pub fn prune(&mut self, table: &ProcessTable) {
        self.cache.retain(|pid, _| table.find(*pid).is_some());
    }
}
