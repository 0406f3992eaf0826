//! A reader that goes away (`nmk … | head`) ends nmk quietly with the broken-pipe status, not
//! with a panic report; the same command with its reader in place succeeds (the contrast).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Read;
use std::process::{Command, Stdio};

fn primitives_list(home: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_nmk"));
    c.args(["primitives", "list"])
        .env("NMK_HOME", home)
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

#[test]
fn a_closed_stdout_ends_quietly_with_the_broken_pipe_status() {
    let home = tempfile::tempdir().unwrap();
    let mut child = primitives_list(home.path()).spawn().unwrap();
    // Close the read end before nmk writes anything.
    drop(child.stdout.take());
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(141), "stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "stderr: {stderr}");

    let out = primitives_list(home.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("gcd"));
}
