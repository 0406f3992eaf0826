//! `nmk bench --mechanisms --json` on SmolLM2: the three sections are there with finite positive
//! figures, empty hooks leave the logits bit-identical and speculation reproduces greedy. No
//! timing thresholds: the figures are only checked to be numbers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

fn positive(section: &serde_json::Value, key: &str) {
    let v = section[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} is not a number: {section}"));
    assert!(v.is_finite() && v > 0.0, "{key} = {v}");
}

#[test]
fn mechanisms_report_hooks_park_and_speculation() {
    let out = Command::new(env!("CARGO_BIN_EXE_nmk"))
        .args([
            "bench",
            "--mechanisms",
            "--model",
            "smollm2-135m-instruct",
            "--json",
            "--mech-runs",
            "2",
            "--prompt-tokens",
            "16",
            "--gen-tokens",
            "8",
            "--park-tokens",
            "32",
            "--spec-tokens",
            "32",
        ])
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let m = &r["mechanisms"];

    let h = &m["hooks"];
    for k in [
        "bare_decode_tokens_per_s",
        "hooked_decode_tokens_per_s",
        "time_ratio",
        "cpu_time_ratio",
    ] {
        positive(h, k);
    }
    assert_eq!(h["identical"], true, "{h}");

    let p = &m["park"];
    for k in [
        "snapshot_ms_per_1k_tokens",
        "restore_ms_per_1k_tokens",
        "to_bytes_ms_per_1k_tokens",
        "from_bytes_ms_per_1k_tokens",
        "bytes_per_1k_tokens",
    ] {
        positive(p, k);
    }
    assert_eq!(p["bytes_roundtrip_identical"], true, "{p}");

    let s = &m["speculation"];
    for k in [
        "acceptance_rate",
        "tokens_per_forward",
        "greedy_tokens_per_s",
        "speculative_tokens_per_s",
        "speedup",
    ] {
        positive(s, k);
    }
    assert!(s["output_tokens"].as_u64().unwrap() > 0, "{s}");
    assert_eq!(s["tokens_equal_greedy"], true, "{s}");
}
