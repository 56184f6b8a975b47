//! One session loop over a source (the kernel and the host live, or a recorded trace): each
//! step updates the model, rounds refresh the verdicts, and every result goes to the sink,
//! with the lookup services of one context.
pub mod context;
pub mod core;
pub mod filter;
pub mod postmortem;
pub mod session;
pub mod sink;
pub mod source;
pub mod step;
