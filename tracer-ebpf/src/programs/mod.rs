//! One module per hook family.
mod cgroup;
mod fields;
mod lifecycle;
mod oom;
mod profile;
mod reclaim;
pub(crate) mod rss;
mod syscalls;
