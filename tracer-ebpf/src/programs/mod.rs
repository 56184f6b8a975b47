//! One module per hook family.
mod lifecycle;
mod oom;
mod rss;
mod syscalls;
