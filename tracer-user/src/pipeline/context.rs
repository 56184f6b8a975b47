//! The lookup services that every stage and sink shares, built once per command: the
//! memory-cgroup hierarchies, the limit cache over them and the identity resolver. One of
//! each means one CRI connection, one cache of limits and identities, and one answer to
//! "what limits this process, whose is it" for every view of the same session.
use std::path::Path;

use crate::host::{
    identity::{Resolver, cri::SocketChoice},
    memcg::{CgroupRoots, LimitCache},
};

pub struct Context {
    /// Where the memory-cgroup hierarchies are (limits, usage, watchers).
    pub roots: CgroupRoots,
    /// The limit that applies to a cgroup, cached per cgroup path.
    pub limits: LimitCache,
    /// cgroup path -> pod/container/unit, cached per process.
    pub ids: Resolver,
}

impl Context {
    /// The services for the host mounted at `host_root`; `cri_socket` is `--cri-socket`
    /// (absent: discover the runtime's socket, `none`: no CRI lookups).
    pub fn new(host_root: &Path, cri_socket: Option<&Path>) -> Self {
        Self::from_parts(
            CgroupRoots::discover(host_root),
            Resolver::new(host_root, SocketChoice::from_flag(cri_socket, host_root)),
        )
    }

    /// For a replayed trace: its host is not this one, so no cgroup hierarchy and no name
    /// source of this machine is consulted (no hierarchy is given, and the host root names
    /// nothing); identities are the ones the trace recorded.
    pub fn offline() -> Self {
        Self::from_parts(
            CgroupRoots::new(None, None, Path::new("/nonexistent")),
            Resolver::recorded(),
        )
    }

    /// From explicit parts (tests, unusual layouts).
    pub fn from_parts(roots: CgroupRoots, ids: Resolver) -> Self {
        Self {
            limits: LimitCache::new(roots.clone()),
            roots,
            ids,
        }
    }
}
