//! `nmk bench --fact-loop` on the real SmolLM2 (fetched into the cache if needed), a few items:
//! the report has the four arms over the same items, and the governed loop's invariants hold —
//! it never loses an item the bare model got right (a right base answer is kept), it runs one or
//! two generations per item, and the bare and always-grounded arms one. No timing thresholds.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

#[test]
fn fact_loop_ab_reports_four_arms_with_the_governed_invariants() {
    let out = Command::new(env!("CARGO_BIN_EXE_nmk"))
        .args(["bench", "--fact-loop", "--fact-items", "6", "--json"])
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
    let f = &r["fact_loop"];
    assert_eq!(f["items"], 6);
    let arm = |name: &str| &f["arms"][name];
    for name in ["base", "always", "governed", "governed_mid_stream"] {
        let a = arm(name);
        assert_eq!(a["accuracy"]["n"], 6, "{name}");
        assert_eq!(a["easy"]["n"], 3, "{name}");
        assert_eq!(a["hard"]["n"], 3, "{name}");
        let ci = a["accuracy"]["ci95"].as_array().unwrap();
        let p = a["accuracy"]["p"].as_f64().unwrap();
        assert!(ci[0].as_f64().unwrap() <= p && p <= ci[1].as_f64().unwrap());
        assert!(a["mean_prefilled_positions"].as_f64().unwrap() > 0.0);
    }
    assert_eq!(arm("base")["mean_generations"], 1.0);
    assert_eq!(arm("always")["mean_generations"], 1.0);
    let base_k = arm("base")["accuracy"]["k"].as_u64().unwrap();
    for name in ["governed", "governed_mid_stream"] {
        let g = arm(name)["mean_generations"].as_f64().unwrap();
        assert!((1.0..=2.0).contains(&g), "{name} {g}");
        // Each governed arm keeps every right base answer, so it is never below base.
        assert!(
            arm(name)["accuracy"]["k"].as_u64().unwrap() >= base_k,
            "{name}"
        );
    }
}
