//! Identity of processes, resolved once and cached: the cgroup path seen at first sight (or
//! exec) gives pod UID, container ID, QoS or systemd unit; the CRI runtime (when its socket is
//! reachable) or else the kubelet's log directories give namespace, pod and container names.
//! Offline (a replayed trace) nothing is resolved: the identities are those the trace
//! recorded. Bounded by the process table.
use std::{collections::HashMap, path::Path};

use super::{Identity, PodLogIndex, cri, parse_cgroup_path};
use crate::model::table::{Process, ProcessTable};

pub struct Resolver {
    /// Where names come from; None offline, where only recorded identities are known.
    host: Option<HostNames>,
    cache: HashMap<u32, (Option<String>, Identity)>,
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
            cache: HashMap::new(),
        }
    }

    /// A resolver that knows only what it is told ([`Resolver::remember`]): a replayed
    /// trace's host is not this one, so nothing of this machine may answer for it.
    pub fn recorded() -> Self {
        Self {
            host: None,
            cache: HashMap::new(),
        }
    }

    /// The identity a trace recorded for `p` at its first sight (offline). Nothing known
    /// forgets what was recorded for its pid before (a reused pid).
    pub fn remember(&mut self, p: &Process, id: Identity) {
        if id == Identity::default() {
            self.cache.remove(&p.pid);
        } else {
            self.cache.insert(p.pid, (p.memcg_path(), id));
        }
    }

    /// The identity of `p`; recomputed only when its cgroup path changed (exec into a
    /// container) or its pod names were not known yet. Offline: the recorded one, else
    /// nothing.
    pub fn get(&mut self, p: &Process) -> Identity {
        let Some(host) = &mut self.host else {
            return self
                .cache
                .get(&p.pid)
                .map(|(_, id)| id.clone())
                .unwrap_or_default();
        };
        let path = p.memcg_path();
        if let Some((seen, id)) = self.cache.get(&p.pid)
            && *seen == path
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
        self.cache.insert(p.pid, (path, id.clone()));
        id
    }

    /// Forget processes that left the table (keeps the cache bounded).
    pub fn prune(&mut self, table: &ProcessTable) {
        self.cache.retain(|pid, _| table.find(*pid).is_some());
    }
}
