//! Which processes the user asked to see: `--pid`, `--comm` and the Kubernetes names.
use crate::{
    detector::DetectorConfig,
    host::identity::{Identity, Resolver},
    model::{
        suspect::{self, Suspect},
        table::{Process, ProcessTable},
    },
};

/// Which processes the user asked to see (tracking is always node-wide: a filter must not
/// hide the context a verdict or an OOM needs).
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub pids: Vec<u32>,
    pub comms: Vec<String>,
    pub namespaces: Vec<String>,
    pub pods: Vec<String>,
    pub containers: Vec<String>,
}

impl Filter {
    /// pid/comm part: any listed pid or comm (no list: everything).
    pub fn matches(&self, pid: u32, comm: &str) -> bool {
        (self.pids.is_empty() && self.comms.is_empty())
            || self.pids.contains(&pid)
            || self.comms.iter().any(|c| c == comm)
    }

    pub fn has_identity_filters(&self) -> bool {
        !(self.namespaces.is_empty() && self.pods.is_empty() && self.containers.is_empty())
    }

    /// Kubernetes part: every given dimension must match (namespace AND pod AND container).
    pub fn matches_identity(&self, id: &Identity) -> bool {
        let ok = |wanted: &[String], have: &Option<String>| {
            wanted.is_empty() || have.as_ref().is_some_and(|h| wanted.contains(h))
        };
        ok(&self.namespaces, &id.names.namespace)
            && ok(&self.pods, &id.names.pod)
            && ok(&self.containers, &id.names.container)
    }

    /// Both parts, resolving the identity only when a Kubernetes filter is set (offline, the
    /// resolver knows what the trace recorded).
    pub fn wants(&self, p: &Process, ids: &mut Resolver) -> bool {
        self.matches(p.pid, &p.comm)
            && (!self.has_identity_filters() || self.matches_identity(&ids.get(p)))
    }

    /// The one list of suspects ([`suspect::judge`]) among the processes wanted, judged at
    /// session time `now` (the session started at wall-clock `start_unix_ms`): `record`'s
    /// summary and `report` on its trace judge the same series at the same moment this way,
    /// so they list the same suspects in the same order.
    pub fn suspects<'t>(
        &self,
        table: &'t ProcessTable,
        now: f64,
        start_unix_ms: u64,
        ids: &mut Resolver,
    ) -> Vec<(Suspect, &'t Process)> {
        let cfg = DetectorConfig::default();
        suspect::judge(table, now, start_unix_ms, &cfg, |p| self.wants(p, ids))
    }
}
