//! leaktracer: which process is leaking memory, how fast, since when, and what the OOM
//! killer took. The folders follow the data: `kernel` (the only code that touches BPF maps
//! and programs) and `host` (/proc and cgroup files) feed the `model` (process table,
//! series, rates); the `detector` judges its series; the `pipeline` runs one session loop
//! into sinks; `commands` only render; `trace` is the JSONL schema and its reader.
// Unit tests may unwrap: a panic is how a test fails. Production code may not (see the
// workspace lints in Cargo.toml).
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]
pub mod cli;
pub mod commands;
pub mod detector;
pub mod host;
pub mod kernel;
pub mod model;
pub mod pipeline;
pub mod trace;
pub mod util;
