//! Memory cgroups: limits and usage (what a leak races towards, and the state of a cgroup
//! at an OOM kill).
mod limits;
mod watch;

pub use limits::{CgroupRoots, LimitCache};
pub use watch::{MemcgEvent, Watcher};
