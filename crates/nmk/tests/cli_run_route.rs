//! `nmk run` through the kernel's router: a request a primitive owns is answered with zero
//! model tokens and a ledger entry `nmk ledger show` knows; the same request with `--no-route`
//! (the contrast) and a free question go to the real SmolLM2 (fetched into the cache if
//! needed) with tokens > 0 and the commit trap's entry; memory is consulted every time.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::{json, nmk};

use std::path::Path;

fn ledger_hashes(home: &Path) -> Vec<String> {
    common::ledger_hashes(home, 1000)
}

#[test]
fn a_primitive_answers_with_zero_tokens_and_a_known_ledger_entry() {
    let home = tempfile::tempdir().unwrap();
    let out = nmk(
        home.path(),
        &["run", "--json", "what is the gcd of 12 and 18"],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json(&out);
    assert_eq!(v["route"], "builtin:gcd");
    assert_eq!(v["answer"], 6);
    assert_eq!(v["text"], "6");
    assert_eq!(v["tokens"], 0);
    assert_eq!(v["verification"], "verified");
    assert_eq!(v["memory"]["consulted"], true);
    let hash = v["ledger_entry"].as_str().unwrap().to_owned();
    let known = ledger_hashes(home.path());
    assert!(known.contains(&hash));
    assert!(known.contains(&v["memory"]["ledger_entry"].as_str().unwrap().to_owned()));
    assert!(
        known.contains(
            &v["route_decision"]["ledger_entry"]
                .as_str()
                .unwrap()
                .to_owned()
        )
    );
    assert_eq!(
        nmk(home.path(), &["ledger", "verify"]).status.code(),
        Some(0)
    );

    // Human form: the answer on stdout, the route line on stderr.
    let out = nmk(home.path(), &["run", "is 97 prime"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "true");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("route builtin:is_prime"), "{err}");
    assert!(err.contains("0 model tokens"), "{err}");
}

#[test]
fn the_model_lane_answers_what_no_primitive_owns() {
    let home = tempfile::tempdir().unwrap();
    // Contrast: the routed request forced to the model lane spends tokens.
    let out = nmk(
        home.path(),
        &[
            "run",
            "--json",
            "--no-route",
            "--max-tokens",
            "8",
            "what is the gcd of 12 and 18",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json(&out);
    assert_eq!(v["route"], "model_lane");
    assert_eq!(v["route_reason"], "forced_model_lane");
    assert!(v["tokens"].as_u64().unwrap() > 0);

    let out = nmk(
        home.path(),
        &[
            "run",
            "--json",
            "--max-tokens",
            "8",
            "Name the capital city of France.",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json(&out);
    assert_eq!(v["route"], "model_lane");
    assert_eq!(v["route_reason"], "below_floor");
    assert!(v["tokens"].as_u64().unwrap() > 0);
    assert_eq!(v["committed"], true);
    assert_eq!(v["output"], v["text"]);
    assert_eq!(v["memory"]["consulted"], true);
    let hash = v["ledger_entry"].as_str().unwrap().to_owned();
    assert!(ledger_hashes(home.path()).contains(&hash));
}

#[test]
fn a_learned_primitive_answers_once_admitted_and_not_before() {
    let home = tempfile::tempdir().unwrap();
    let request = "reverse the words of 'a b c'";
    // Contrast: nothing learned yet, so the model lane answers (one token is enough to show it).
    let before = json(&nmk(
        home.path(),
        &["run", "--json", "--max-tokens", "1", request],
    ));
    assert_eq!(before["route"], "model_lane");
    assert!(before["tokens"].as_u64().unwrap() > 0);

    let program = home.path().join("rw.py");
    std::fs::write(
        &program,
        "def reverse_words(s):\n    return ' '.join(s.split()[::-1])\n",
    )
    .unwrap();
    let gap = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/gaps/reverse_words.toml");
    let out = nmk(
        home.path(),
        &[
            "gate",
            gap.to_str().unwrap(),
            program.to_str().unwrap(),
            "--register",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let v = json(&nmk(home.path(), &["run", "--json", request]));
    assert_eq!(v["route"], "learned:reverse_words");
    assert_eq!(v["answer"], "c b a");
    assert_eq!(v["tokens"], 0);
    // A learned program's per-call result is checked, never labelled proven (spec §9 D11).
    assert_eq!(v["verification"], "checked");
    assert!(ledger_hashes(home.path()).contains(&v["ledger_entry"].as_str().unwrap().to_owned()));
}
