//! One session loop: each round samples the kernel, updates the model, refreshes the
//! verdicts and hands the result to the sinks.
pub mod session;
pub mod verdicts;
