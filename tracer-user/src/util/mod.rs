//! Small shared helpers: clocks, errors with exit codes, human-readable figures.
pub mod clock;
pub mod error;
pub mod format;
pub mod page;
