//! Errors that are the user's to fix (bad flag, missing privilege, unmounted tracefs):
//! printed as one line, exit code 2. Everything else is a runtime failure, exit code 1.
use std::fmt;

#[derive(Debug)]
pub struct UsageError(String);

impl UsageError {
    pub fn new(msg: impl Into<String>) -> Self {
        Self(msg.into())
    }
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Exit codes, documented in `leaktracer --help`.
pub const EXIT_OK: i32 = 0;
pub const EXIT_FAILURE: i32 = 1;
pub const EXIT_USAGE: i32 = 2;

/// The exit code for an error chain: 2 when any cause is a [`UsageError`].
pub fn exit_code(err: &anyhow::Error) -> i32 {
    if err.chain().any(|e| e.is::<UsageError>()) {
        EXIT_USAGE
    } else {
        EXIT_FAILURE
    }
}
