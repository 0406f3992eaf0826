//! `nmk demo` end to end on a fresh kernel home, with the real SmolLM2 (fetched into the
//! binary's cache if needed; the demo fails loudly when it cannot be): requests phrased for a
//! primitive are answered by one with zero model tokens and correctly, while the bare model
//! spends tokens on the very same requests (the contrast); what no primitive owns takes the
//! model lane; the totals are the sums of the rows; every answer has a ledger entry, the
//! ledger verifies and a tampered export is caught. `--no-model` runs no model at all.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::{json, nmk};

use serde_json::Value;

const PRIMITIVE_FAMILIES: [&str; 4] = ["counting", "gcd", "prime", "dates"];

fn rows(pass: &Value) -> &Vec<Value> {
    pass["rows"].as_array().unwrap()
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

/// The totals a pass reports are the sums of its rows.
fn assert_totals(pass: &Value) {
    let rows = rows(pass);
    let t = &pass["totals"];
    assert_eq!(u(&t["requests"]), rows.len() as u64);
    let sum = |f: &dyn Fn(&Value) -> u64| rows.iter().map(f).sum::<u64>();
    assert_eq!(u(&t["model_tokens"]), sum(&|r| u(&r["model_tokens"])));
    assert_eq!(u(&t["total_latency_us"]), sum(&|r| u(&r["latency_us"])));
    assert_eq!(
        u(&t["checkable"]),
        sum(&|r| u64::from(!r["correct"].is_null()))
    );
    assert_eq!(u(&t["correct"]), sum(&|r| u64::from(r["correct"] == true)));
    assert_eq!(
        u(&t["answered_by_primitives"]),
        sum(&|r| u64::from(r["by_primitive"] == true))
    );
    let mut ms: Vec<f64> = rows
        .iter()
        .map(|r| r["latency_ms"].as_f64().unwrap())
        .collect();
    ms.sort_by(f64::total_cmp);
    let median = t["median_latency_ms"].as_f64().unwrap();
    assert!(median >= ms[0] && median <= ms[ms.len() - 1], "{median}");
}

#[test]
fn the_kernel_answers_what_primitives_own_with_zero_tokens_and_the_bare_model_does_not() {
    let home = tempfile::tempdir().unwrap();
    let out = nmk(home.path(), &["demo", "--json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json(&out);
    assert_eq!(v["ok"], true);
    assert_eq!(v["model"], "smollm2-135m-instruct");
    let kernel = &v["kernel_pass"];
    let bare = &v["bare_model_pass"];
    let (krows, brows) = (rows(kernel), rows(bare));
    assert!(krows.len() >= 14, "{}", krows.len());
    assert_eq!(krows.len(), brows.len());

    let mut primitive_rows = 0;
    let mut lane_rows = 0;
    for (k, b) in krows.iter().zip(brows) {
        assert_eq!(k["request"], b["request"]);
        // The bare pass: nothing routes, judges or records it.
        assert_eq!(b["route"], "bare_model");
        assert_eq!(b["by_primitive"], false);
        assert!(b["verification"].is_null() && b["level"].is_null() && b["ledger_seq"].is_null());
        // Every kernel answer, whoever gave it, has its ledger entry.
        assert!(k["ledger_seq"].is_u64(), "{k}");
        if k["primitive_phrasing"] == true {
            primitive_rows += 1;
            assert!(
                PRIMITIVE_FAMILIES.contains(&k["family"].as_str().unwrap()),
                "{k}"
            );
            assert!(k["route"].as_str().unwrap().starts_with("builtin:"), "{k}");
            assert_eq!(k["by_primitive"], true);
            assert_eq!(k["model_tokens"], 0, "{k}");
            assert_eq!(k["verification"], "verified", "{k}");
            assert_eq!(k["level"], "ORACLE", "{k}");
            assert_eq!(k["correct"], true, "{k}");
            // Contrast: the same request to the bare model costs tokens.
            assert!(u(&b["model_tokens"]) > 0, "{b}");
        } else {
            lane_rows += 1;
            assert_eq!(k["route"], "model_lane", "{k}");
            assert!(k["lane_reason"].is_string(), "{k}");
            assert!(u(&k["model_tokens"]) > 0, "{k}");
            assert!(u(&b["model_tokens"]) > 0, "{b}");
        }
    }
    // Every family the primitives own is in the workload, and some requests are not theirs.
    for family in PRIMITIVE_FAMILIES {
        assert!(
            krows
                .iter()
                .any(|r| r["family"] == family && r["by_primitive"] == true),
            "{family}"
        );
    }
    assert!(
        primitive_rows >= 8 && lane_rows >= 4,
        "{primitive_rows} {lane_rows}"
    );
    let seqs: std::collections::BTreeSet<u64> = krows.iter().map(|r| u(&r["ledger_seq"])).collect();
    assert_eq!(seqs.len(), krows.len(), "ledger entries are distinct");

    assert_totals(kernel);
    assert_totals(bare);
    assert_eq!(
        u(&kernel["totals"]["answered_by_primitives"]),
        primitive_rows
    );
    assert_eq!(u(&bare["totals"]["answered_by_primitives"]), 0);
    assert!(u(&bare["totals"]["model_tokens"]) > u(&kernel["totals"]["model_tokens"]));

    assert_eq!(v["ledger"]["ok"], true);
    assert_eq!(v["tampered_export_caught"], true);
    assert!(u(&v["ledger"]["entries_added"]) > krows.len() as u64);
    let verify = nmk(home.path(), &["ledger", "verify", "--json"]);
    assert_eq!(verify.status.code(), Some(0));
    assert_eq!(json(&verify)["head"], v["ledger"]["head"]);
    let shown = json(&nmk(
        home.path(),
        &["ledger", "show", "--limit", "1000", "--json"],
    ));
    let shown_seqs: std::collections::BTreeSet<u64> = shown
        .as_array()
        .unwrap()
        .iter()
        .map(|e| u(&e["seq"]))
        .collect();
    assert!(seqs.is_subset(&shown_seqs));
}

#[test]
fn without_a_model_only_the_kernel_tour_runs() {
    let home = tempfile::tempdir().unwrap();
    let out = nmk(home.path(), &["demo", "--json", "--no-model"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json(&out);
    assert_eq!(v["ok"], true);
    assert!(v["model"].is_null());
    assert!(v["kernel_pass"].is_null() && v["bare_model_pass"].is_null());
    let runs = v["kernel_tour"]["runs"].as_array().unwrap();
    assert!(runs.iter().all(|r| r["as_expected"] == true));
    assert!(
        runs.iter()
            .all(|r| !r.to_string().contains("model_lane") && !r.to_string().contains("bare"))
    );
    assert_eq!(v["ledger"]["ok"], true);
    assert_eq!(v["tampered_export_caught"], true);

    // Human form: the tour and the ledger, no pass table.
    let text = nmk(home.path(), &["demo", "--no-model"]);
    assert_eq!(text.status.code(), Some(0));
    let s = String::from_utf8_lossy(&text.stdout);
    assert!(s.contains("ledger verified"), "{s}");
    assert!(s.contains("model passes skipped"), "{s}");
    assert!(
        !s.contains("model_lane") && !s.contains("bare_model"),
        "{s}"
    );
}
