//! What the command-line tests share: running `nmk` on a kernel home, reading its JSON.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod server;

use std::path::Path;
use std::process::{Command, Output};

/// Runs `nmk args…` with `home` as its kernel home, logging and worker-role variables cleared.
pub fn nmk(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nmk"))
        .args(args)
        .env("NMK_HOME", home)
        .env_remove("RUST_LOG")
        .env_remove("NMK_SANDBOX_WORKER")
        .output()
        .unwrap()
}

/// The JSON `nmk` printed, or a panic showing what it printed instead.
pub fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}
