//! `nmk run` through the kernel's per-token gate on the real SmolLM2 (fetched into the cache if
//! needed): a JSON shape turns a prose answer into a JSON value, a regex shape into a number, a
//! forbidden id never appears; each with the ungated run as the contrast.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

fn run(args: &[&str]) -> (Option<i32>, serde_json::Value, String) {
    // `nmk run` now writes the kernel's ledger and memory: keep them out of the user's home.
    let home = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_nmk"))
        .arg("run")
        .arg("--json")
        .args(args)
        .env("NMK_HOME", home.path())
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let json = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (out.status.code(), json, stderr)
}

fn text(v: &serde_json::Value) -> &str {
    v["text"].as_str().unwrap()
}

const FRANCE: &str = "What is the capital of France? Answer in JSON.";

#[test]
fn json_shape_makes_the_answer_a_json_value() {
    let (code, bare, err) = run(&["--max-tokens", "60", FRANCE]);
    assert_eq!(code, Some(0), "{err}");
    // Contrast: without the gate this model answers in prose.
    assert!(
        serde_json::from_str::<serde_json::Value>(text(&bare)).is_err(),
        "{bare}"
    );
    assert_eq!(bare["gate"]["checks"], serde_json::json!([]));
    // Neither question is a primitive's: both go to the model lane.
    assert_eq!(bare["route"], "model_lane");

    let (code, gated, err) = run(&["--max-tokens", "60", "--shape-json", FRANCE]);
    assert_eq!(code, Some(0), "{err}");
    let t = text(&gated);
    assert!(
        serde_json::from_str::<serde_json::Value>(t).is_ok(),
        "{t:?}"
    );
    assert!(t.contains("Paris"), "{t:?}");
    assert_eq!(gated["gate"]["complete"], true);
    assert!(gated["gate"]["refused_by"]["json_shape"].as_u64().unwrap() > 0);
}

#[test]
fn regex_shape_makes_the_answer_a_number() {
    let q = "How many legs does a spider have?";
    let (_, bare, _) = run(&["--max-tokens", "20", q]);
    assert!(!text(&bare).chars().all(|c| c.is_ascii_digit()));
    let (code, gated, err) = run(&["--max-tokens", "20", "--shape-regex", "[0-9]{1,3}", q]);
    assert_eq!(code, Some(0), "{err}");
    let t = text(&gated);
    assert!(
        (1..=3).contains(&t.len()) && t.chars().all(|c| c.is_ascii_digit()),
        "{t:?}"
    );
    assert_eq!(gated["gate"]["complete"], true);
}

#[test]
fn forbidden_ids_never_appear() {
    let (_, bare, _) = run(&["--max-tokens", "24", FRANCE]);
    let ids: Vec<u64> = bare["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    let banned: Vec<String> = ids.iter().take(3).map(u64::to_string).collect();
    let mut args = vec!["--max-tokens", "24"];
    for b in &banned {
        args.extend(["--forbid-id", b.as_str()]);
    }
    args.push(FRANCE);
    let (code, gated, err) = run(&args);
    assert_eq!(code, Some(0), "{err}");
    let got: Vec<String> = gated["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap().to_string())
        .collect();
    assert!(
        got.iter().all(|i| !banned.contains(i)),
        "{got:?} {banned:?}"
    );
    assert_ne!(gated["ids"], bare["ids"]);
    assert_eq!(gated["gate"]["forbidden_ids"], banned.len());
}

#[test]
fn a_bad_regex_is_a_usage_error() {
    let (code, _, err) = run(&["--shape-regex", "(", "hi"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("regex shape"), "{err}");
}
