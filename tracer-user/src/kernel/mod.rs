//! The kernel side, seen from userspace: loading and attaching the programs, reading their
//! maps and ring buffer, the overhead budget, and the kernel's own type layouts (BTF,
//! tracefs). Kernel structs become the model's counters here.
pub mod btf;
pub mod budget;
pub mod convert;
pub mod events;
pub mod health;
pub mod loader;
pub mod logging;
pub mod preflight;
pub mod priced;
pub mod profiler;
pub mod rss_fallback;
pub mod run_time;
pub mod sampler;
pub mod tracefs;
