//! Exit codes scripts can rely on.

use std::process::ExitCode;

/// The process's exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// Everything checked out.
    Success = 0,
    /// A check failed: a broken ledger, a refused program, a demo whose results did not verify.
    CheckFailed = 1,
    /// The command was given something it cannot use (bad arguments, a missing or malformed
    /// gap or job file, a bad config file). Clap's own parse errors exit with this code too.
    Usage = 2,
    /// Something went wrong running the command (I/O, database).
    RuntimeError = 3,
}

impl From<Code> for ExitCode {
    fn from(code: Code) -> Self {
        ExitCode::from(code as u8)
    }
}

/// Installs a panic hook under which a write to a closed stdout (`nmk … | head`) ends the
/// process quietly with the shell's broken-pipe status (128 + SIGPIPE) instead of a panic
/// message: `println!` panics on EPIPE, and the reader going away is not an error of ours.
/// Every other panic keeps the default report.
pub fn quiet_on_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("");
        if is_broken_pipe_message(message) {
            std::process::exit(BROKEN_PIPE_STATUS);
        }
        default(info);
    }));
}

/// The status a shell reports for a process killed by SIGPIPE.
pub const BROKEN_PIPE_STATUS: i32 = 141;

fn is_broken_pipe_message(message: &str) -> bool {
    message.starts_with("failed printing to std") && message.contains("Broken pipe")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_failed_print_on_a_broken_pipe_is_quiet() {
        assert!(is_broken_pipe_message(
            "failed printing to stdout: Broken pipe (os error 32)"
        ));
        assert!(!is_broken_pipe_message(
            "failed printing to stdout: No space left on device (os error 28)"
        ));
        assert!(!is_broken_pipe_message("index out of bounds: Broken pipe"));
    }
}
