//! Memory cgroups: limits and usage (what a leak races towards, and the state of a cgroup
//! at an OOM kill).
mod limits;

pub use limits::{CgroupRoots, Limit, LimitCache};
