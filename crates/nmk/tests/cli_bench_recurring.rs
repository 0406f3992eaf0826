//! `nmk bench --recurring` on a small workload: with nothing learned every request takes the
//! model lane (real SmolLM2, tokens > 0); after four programs pass the hold-out gate and are
//! registered, every request of their families is answered by its learned primitive with zero
//! model tokens and the right answer, while the control family still takes the model lane.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::nmk;

use std::path::{Path, PathBuf};

fn bench(home: &Path) -> serde_json::Value {
    let out = nmk(
        home,
        &[
            "bench",
            "--recurring",
            "--requests",
            "25",
            "--recurring-seed",
            "5",
            "--recurring-max-tokens",
            "4",
            "--json",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn register(home: &Path, gap: &str, program: &str) {
    let file = home.join(format!("{gap}.py"));
    std::fs::write(&file, program).unwrap();
    let gap_file = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/gaps")
        .join(format!("{gap}.toml"));
    let out = nmk(
        home,
        &[
            "gate",
            gap_file.to_str().unwrap(),
            file.to_str().unwrap(),
            "--register",
            "--n",
            "200",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{gap}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

const PROGRAMS: [(&str, &str); 4] = [
    (
        "count_vowels",
        "def count_vowels(s):\n    return sum(1 for c in s if c in 'aeiouAEIOU')\n",
    ),
    (
        "is_palindrome",
        "def is_palindrome(s):\n    t = [c.lower() for c in s if c.isascii() and c.isalnum()]\n    return t == t[::-1]\n",
    ),
    (
        "reverse_words",
        "def reverse_words(s):\n    return ' '.join(s.split()[::-1])\n",
    ),
    (
        "sum_of_digits",
        "def sum_of_digits(n):\n    return sum(int(d) for d in str(n))\n",
    ),
];

#[test]
fn learned_primitives_take_over_their_families_with_zero_model_tokens() {
    let home = tempfile::tempdir().unwrap();
    let before = bench(home.path());
    assert_eq!(before["learned_routes"].as_array().unwrap().len(), 0);
    assert_eq!(before["overall"]["requests"], 25);
    assert_eq!(before["overall"]["answered_by_primitive"], 0);
    assert!(before["overall"]["generated_tokens"].as_u64().unwrap() >= 25);
    assert_eq!(before["ledger_verified"], true);

    for (gap, program) in PROGRAMS {
        register(home.path(), gap, program);
    }
    let after = bench(home.path());
    assert_eq!(after["learned_routes"].as_array().unwrap().len(), 4);
    for (gap, _) in PROGRAMS {
        let f = &after["families"][gap];
        let n = f["requests"].as_u64().unwrap();
        assert!(n > 0, "{gap} drew no request");
        assert_eq!(
            f["answered_by_primitive"].as_u64().unwrap(),
            n,
            "{gap}: {f}"
        );
        assert_eq!(f["generated_tokens"], 0, "{gap}");
        assert_eq!(f["primitive_generated_tokens"], 0, "{gap}");
        assert_eq!(f["accuracy"]["k"].as_u64().unwrap(), n, "{gap}: {f}");
        assert_eq!(
            f["routes"][format!("learned:{gap}")].as_u64().unwrap(),
            n,
            "{gap}"
        );
    }
    // The control family no primitive owns still takes the model lane.
    let control = &after["families"]["capital (control)"];
    assert!(control["requests"].as_u64().unwrap() > 0);
    assert_eq!(control["answered_by_primitive"], 0);
    assert!(control["generated_tokens"].as_u64().unwrap() > 0);
    assert_eq!(after["ledger_verified"], true);
}
