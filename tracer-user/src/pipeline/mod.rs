//! One session loop: each round samples the kernel, updates the model, refreshes the
//! verdicts and hands the result to the sinks, with the lookup services of one context.
pub mod context;
pub mod postmortem;
pub mod session;
pub mod verdicts;
