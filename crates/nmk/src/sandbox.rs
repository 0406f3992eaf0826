//! The binary's sandbox pool: `nmk` is its own worker (`nmk sandbox-worker`, a hidden role run
//! before argument parsing), so `cargo run -p nmk` and an installed `nmk` need no second binary.
//! `NMK_SANDBOX_WORKER` still selects a dedicated worker binary when set.

use anyhow::Context;
use nmk_det::sandbox::{Sandbox, SandboxConfig, WORKER_ENV};

/// The first argument that turns `nmk` into a sandbox worker.
pub const WORKER_ARG: &str = "sandbox-worker";

/// The pool configuration: the env override, else this executable in its worker role.
pub fn config() -> anyhow::Result<SandboxConfig> {
    if std::env::var_os(WORKER_ENV).is_some() {
        return Ok(SandboxConfig::default());
    }
    let exe = std::env::current_exe().context("cannot locate the nmk executable")?;
    Ok(SandboxConfig {
        worker: Some(exe),
        worker_args: vec![WORKER_ARG.to_owned()],
        ..SandboxConfig::default()
    })
}

/// Starts a pool of confined workers; fails (never runs unconfined) when confinement is refused.
pub fn start() -> anyhow::Result<Sandbox> {
    Sandbox::new(config()?).context("cannot start a confined sandbox worker")
}
