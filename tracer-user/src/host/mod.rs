//! The host, read from files: /proc (RSS, command lines, cgroups), identity (cgroup path to
//! pod, container and unit; CRI names) and memory cgroups (limits, events, pressure).
pub mod identity;
pub mod memcg;
pub mod procfs;
