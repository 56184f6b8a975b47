//! Memory cgroups: limits and usage (what a leak races towards, and the state of a cgroup at
//! an OOM kill), and event-driven watchers for OOMs, limit events and memory pressure, on
//! cgroup v1 and v2.
//!
//! - [`CgroupRoots`] finds the hierarchies; [`effective_limit`] / [`LimitCache`] give the
//!   tightest limit on a cgroup's path (else the node's memory), [`current_usage`] its usage.
//! - [`MemcgWatcher`] watches cgroups (v1 eventfd, v2 inotify on memory.events) and PSI
//!   triggers, and sends [`MemcgEvent`]s into a tokio channel.
mod event;
mod limits;
mod parse;
pub mod psi;
mod summary;
pub mod sys;
mod watch;

pub use event::MemcgEvent;
pub use limits::{CgroupRoots, CgroupVersion, LimitCache};
pub use summary::{ActivityFold, CgroupActivity};
// The rest of the module's API, used by its tests (tests/tests/memcg_host.rs).
pub use limits::{LimitSource, current_usage, effective_limit};
pub use parse::MemoryEvents;
pub use psi::PsiTrigger;
pub use psi::StallKind;
pub use watch::MemcgWatcher;
pub use watch::WatchConfig;
