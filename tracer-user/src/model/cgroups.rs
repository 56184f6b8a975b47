//! A memory cgroup made, removed or freed, as the model takes it (the kernel's cgroup
//! tracepoints say it; kernel/events.rs converts their records into this). Removed and not
//! freed is a zombie: model/node.rs counts and names them.

/// What happened to a cgroup.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CgroupAction {
    Mkdir,
    Rmdir,
    /// The kernel freed it; after an rmdir, the end of a zombie.
    Release,
}

/// A cgroup made, removed or freed (cgroup:cgroup_mkdir/rmdir/release).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CgroupChange {
    pub action: CgroupAction,
    /// The cgroup's id (its kernfs inode number).
    pub id: u64,
    pub level: i32,
    /// Its path within the hierarchy ("/kubepods/burstable/pod…").
    pub path: String,
    /// The hierarchy (v1: /proc/cgroups' second column; v2: 0).
    #[serde(skip)]
    pub hierarchy: i32,
    #[serde(skip)]
    pub t_mono: f64,
}
