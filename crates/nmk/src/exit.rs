//! Exit codes scripts can rely on.

use std::process::ExitCode;

/// The process's exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// Everything checked out.
    Success = 0,
    /// A check failed: a broken ledger, a demo whose results did not verify.
    CheckFailed = 1,
    /// The command was given something it cannot use (a malformed gap file, bad arguments).
    Usage = 2,
    /// Something went wrong running the command (I/O, database).
    RuntimeError = 3,
}

impl From<Code> for ExitCode {
    fn from(code: Code) -> Self {
        ExitCode::from(code as u8)
    }
}
