//! Progress bars for long commands: drawn on stderr only when a person is watching (stderr is
//! a terminal and the report is not `--json`), so scripts and pipes see clean output. Owns the
//! bars' look; it may not decide what a command counts.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Whether bars should stay hidden for a command reporting in `json` mode.
pub fn hidden(json: bool) -> bool {
    json || !std::io::stderr().is_terminal()
}

/// A bar over `len` steps labelled `what` (e.g. "requests"), or a hidden one when `hide`.
pub fn bar(len: u64, what: &str, hide: bool) -> ProgressBar {
    if hide {
        return ProgressBar::hidden();
    }
    let b = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(&format!(
        "[{{elapsed_precise}}] {{bar:30}} {{pos}}/{{len}} {what} ({{eta}} left) {{msg}}"
    )) {
        b.set_style(style.progress_chars("=> "));
    }
    b
}

/// A spinner with a message for work of unknown length, or a hidden one when `hide`.
pub fn spinner(message: String, hide: bool) -> ProgressBar {
    if hide {
        return ProgressBar::hidden();
    }
    let s = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}") {
        s.set_style(style);
    }
    s.set_message(message);
    s.enable_steady_tick(Duration::from_millis(120));
    s
}
