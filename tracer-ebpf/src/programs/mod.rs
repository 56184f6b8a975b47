//! One module per hook family.
mod lifecycle;
mod oom;
mod reclaim;
mod rss;
mod syscalls;
