//! Shared helpers for the sandbox and gate tests: a pool on the real worker binary.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use nmk_det::sandbox::{Sandbox, SandboxConfig};

pub fn worker() -> std::path::PathBuf {
    env!("CARGO_BIN_EXE_nmk-sandbox-worker").into()
}

pub fn sandbox() -> Sandbox {
    Sandbox::new(SandboxConfig {
        worker: Some(worker()),
        ..SandboxConfig::default()
    })
    .expect("the real worker confines itself on Linux")
}
