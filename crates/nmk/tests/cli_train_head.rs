//! `nmk train-head` on the real SmolLM2 with a small generated set: the head beats chance on
//! held-out paraphrases by a wide margin while the shuffled-label placebo does not; `nmk run`
//! with the head fires a held-out gcd paraphrase to the gcd primitive with zero model tokens,
//! and a chat prompt goes to the model lane decoded from the head's own prefill.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::{Command, Output};

fn nmk(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nmk"))
        .args(args)
        .env("NMK_HOME", home)
        .env_remove("RUST_LOG")
        .env_remove("NMK_SANDBOX_WORKER")
        .output()
        .unwrap()
}

fn json(out: &Output) -> serde_json::Value {
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
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

/// Held-out head accuracy the small run must reach (chance is 1/8 = 12.5 %).
const HELD_OUT_FLOOR: f64 = 0.6;
/// Highest held-out accuracy tolerated from the placebo.
const PLACEBO_CEILING: f64 = 0.35;

#[test]
fn a_small_head_beats_chance_the_placebo_does_not_and_run_uses_it() {
    let home = tempfile::tempdir().unwrap();
    let head = home.path().join("small.head");
    let head_s = head.to_str().unwrap();
    let r = json(&nmk(
        home.path(),
        &[
            "train-head",
            "--json",
            "--layers",
            "9,15",
            "--per-class",
            "8",
            "--held-out-per-class",
            "4",
            "--out",
            head_s,
        ],
    ));
    let held = r["held_out"]["head_accuracy"].as_f64().unwrap();
    let placebo = r["placebo"]["held_out_accuracy"].as_f64().unwrap();
    let chance = r["held_out"]["chance_uniform"].as_f64().unwrap();
    eprintln!(
        "layer {} held-out head {held} lexical {} placebo {placebo}",
        r["layer"], r["held_out"]["lexical_accuracy"]
    );
    assert!((chance - 0.125).abs() < 1e-9);
    assert!(held >= HELD_OUT_FLOOR, "held-out accuracy {held}");
    assert!(placebo <= PLACEBO_CEILING, "placebo accuracy {placebo}");
    assert!(held - placebo >= 0.3, "head {held} vs placebo {placebo}");
    assert!(head.exists());

    // A held-out gcd paraphrase: the head proposes gcd and the kernel fires it, 0 tokens.
    let prompt = "what's the greatest common divisor between 84 and 36?";
    let v = json(&nmk(
        home.path(),
        &["run", "--json", "--head", head_s, prompt],
    ));
    assert_eq!(v["route"], "builtin:gcd", "{v:#}");
    assert_eq!(v["answer"], 12);
    assert_eq!(v["tokens"], 0);
    assert_eq!(v["head"]["class"], "builtin:gcd", "{v:#}");
    assert_eq!(v["head"]["verdict"], "fired");
    assert_eq!(v["head"]["disposal"], "fired");
    assert_eq!(v["head"]["hash"], r["head_hash"]);
    // Contrast: without the head the run reports no head part.
    let v = json(&nmk(home.path(), &["run", "--json", "--no-head", prompt]));
    assert!(v["head"].is_null(), "{v:#}");

    // A chat prompt: the head does not fire and the model lane answers from the same prefill.
    let v = json(&nmk(
        home.path(),
        &[
            "run",
            "--json",
            "--head",
            head_s,
            "--max-tokens",
            "12",
            "what is the tallest mountain in Europe?",
        ],
    ));
    assert_eq!(v["route"], "model_lane", "{v:#}");
    assert!(v["tokens"].as_u64().unwrap() > 0);
    assert_eq!(v["head"]["disposal"], "none", "{v:#}");
    assert_ne!(v["head"]["verdict"], "fired");
    // The same prompt without the head gives the same text (the tap does not change decoding).
    let plain = json(&nmk(
        home.path(),
        &[
            "run",
            "--json",
            "--no-head",
            "--max-tokens",
            "12",
            "what is the tallest mountain in Europe?",
        ],
    ));
    assert_eq!(plain["text"], v["text"]);
}
