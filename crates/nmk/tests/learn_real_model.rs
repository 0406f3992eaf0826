//! Acceptance: `nmk learn` with the real Qwen2.5-Coder-0.5B on the example gaps. At least 3 of
//! the 5 simple gaps must be admitted, and the deliberately unsound gap must admit nothing.
//! The model is fetched when it is not cached (a failed fetch fails the test: never a skip).
//! Run in release: `cargo test --release -p nmk --test learn_real_model -- --nocapture`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/gaps")
}

fn learn(home: &Path, gaps: &[PathBuf]) -> serde_json::Value {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_nmk"));
    cmd.arg("--json")
        .arg("learn")
        .args(gaps)
        .env("NMK_HOME", home)
        .env_remove("NMK_SANDBOX_WORKER");
    let out = cmd.output().unwrap();
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "nmk learn failed to run (exit {:?}): {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[test]
fn the_real_model_learns_most_simple_gaps_and_nothing_from_an_unsound_one() {
    let home = tempfile::tempdir().unwrap();
    let mut gaps: Vec<PathBuf> = std::fs::read_dir(examples())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    gaps.sort();
    assert_eq!(gaps.len(), 5, "{gaps:?}");

    let t = Instant::now();
    let v = learn(home.path(), &gaps);
    eprintln!(
        "nmk learn on {} gaps: {:.1}s",
        gaps.len(),
        t.elapsed().as_secs_f64()
    );
    for r in v["results"].as_array().unwrap() {
        eprintln!(
            "  {:<16} admitted={} reason={} attempts={} tokens={} {:.1}s",
            r["entry"].as_str().unwrap(),
            r["admitted"],
            r["reason"].as_str().unwrap(),
            r["attempts"].as_array().unwrap().len(),
            r["tokens"],
            r["elapsed_ms"].as_f64().unwrap() / 1000.0
        );
    }
    let admitted = v["admitted"].as_u64().unwrap();
    assert!(admitted >= 3, "only {admitted} of 5 admitted: {v:#}");
    // Every admitted program was registered and is served after a reload.
    let out = Command::new(env!("CARGO_BIN_EXE_nmk"))
        .args(["--json", "primitives", "list"])
        .env("NMK_HOME", home.path())
        .output()
        .unwrap();
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list["learned"].as_array().unwrap().len() as u64, admitted);

    let t = Instant::now();
    let bad = learn(home.path(), &[examples().join("bad/constant_oracle.toml")]);
    let r = &bad["results"][0];
    eprintln!(
        "  {:<16} admitted={} reason={} attempts={} {:.1}s",
        r["entry"].as_str().unwrap(),
        r["admitted"],
        r["reason"].as_str().unwrap(),
        r["attempts"].as_array().unwrap().len(),
        t.elapsed().as_secs_f64()
    );
    assert_eq!(bad["admitted"], 0, "{bad:#}");
    assert_eq!(r["admitted"], false);
    let out = Command::new(env!("CARGO_BIN_EXE_nmk"))
        .args(["ledger", "verify"])
        .env("NMK_HOME", home.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
}
