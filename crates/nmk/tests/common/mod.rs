//! What the command-line tests share: running `nmk` on a kernel home, reading its JSON.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod server;

use std::path::Path;
use std::process::{Command, Output};

/// The `nmk` binary with `home` as its kernel home and the logging, worker-role and API-key
/// variables cleared, ready for arguments.
pub fn nmk_command(home: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_nmk"));
    c.env("NMK_HOME", home)
        .env_remove("RUST_LOG")
        .env_remove("NMK_SANDBOX_WORKER")
        .env_remove("NMK_API_KEY");
    c
}

/// Runs `nmk args…` on `home` (see [`nmk_command`]) to its end.
pub fn nmk(home: &Path, args: &[&str]) -> Output {
    nmk_command(home).args(args).output().unwrap()
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

/// The hashes of the first `limit` ledger entries of `home`, in chain order, read through
/// `nmk ledger show --json`.
pub fn ledger_hashes(home: &Path, limit: usize) -> Vec<String> {
    let out = nmk(
        home,
        &["ledger", "show", "--limit", &limit.to_string(), "--json"],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    json(&out)
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["hash"].as_str().unwrap().to_owned())
        .collect()
}
