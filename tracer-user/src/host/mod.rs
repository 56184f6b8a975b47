//! The host, read from files: /proc (RSS, command lines, cgroups), identity (cgroup path to
//! pod, container and unit; CRI names), memory cgroups (limits, events, pressure) and the
//! node's own memory (meminfo, slab caches, zombie memory cgroups).
pub mod gobin;
pub mod goruntime;
pub mod identity;
pub mod memcg;
pub mod node;
pub mod procfs;
pub mod procmaps;
pub mod sites;
pub mod symbols;
