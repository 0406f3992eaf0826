//! `nmk gate` and `nmk primitives` as a user runs them: exit codes, JSON, the ledger, and a
//! learned primitive that persists from one process to the next.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::{json, nmk};

use std::path::{Path, PathBuf};

fn gap(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/gaps")
        .join(name)
        .display()
        .to_string()
}

fn program(dir: &Path, name: &str, code: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, code).unwrap();
    p.display().to_string()
}

const GCD: &str = "def gcd(a, b):\n    while b:\n        a, b = b, a % b\n    return a\n";

#[test]
fn a_correct_program_is_admitted_and_a_wrong_one_refused_with_its_reason() {
    let home = tempfile::tempdir().unwrap();
    let good = program(home.path(), "gcd.py", GCD);
    let out = nmk(home.path(), &["gate", &gap("gcd.toml"), &good, "--json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json(&out);
    assert_eq!(v["admitted"], true);
    assert_eq!(v["reason"], "ok");
    assert_eq!(v["gate"]["passed"], v["gate"]["n"]);
    assert_eq!(v["regate"]["passed"], v["regate"]["n"]);
    assert!(v["sample"]["n"].as_u64().unwrap() > 0);
    assert!(v["placebos"]["run"].as_u64().unwrap() >= 4);
    assert_eq!(v["placebos"]["failed_as_required"], v["placebos"]["run"]);
    assert_eq!(v["registered"], false);

    // Wrong on held-out instances only: passes the samples, fails the gate.
    let wrong = program(
        home.path(),
        "wrong.py",
        "def gcd(a, b):\n    if a % b == 0 or b % a == 0:\n        return min(a, b)\n    return 1\n",
    );
    let out = nmk(
        home.path(),
        &["gate", &gap("gcd.toml"), &wrong, "--json", "--n", "300"],
    );
    assert_eq!(out.status.code(), Some(1));
    let v = json(&out);
    assert_eq!(v["admitted"], false);
    assert!(
        ["sample_fail", "gate_fail"].contains(&v["reason"].as_str().unwrap()),
        "{v}"
    );
    assert!(!v["feedback"].as_str().unwrap().is_empty());

    // Both verdicts are in the ledger, and the ledger verifies.
    let out = nmk(home.path(), &["ledger", "verify"]);
    assert_eq!(out.status.code(), Some(0));
    let out = nmk(home.path(), &["ledger", "show", "--json"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.matches("\"gate\"").count() >= 2, "{text}");

    // Text output; a missing program file is a usage error.
    let out = nmk(home.path(), &["gate", &gap("gcd.toml"), &good]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("ADMITTED"));
    let out = nmk(home.path(), &["gate", &gap("gcd.toml"), "/nonexistent.py"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn an_unsound_gap_admits_nothing() {
    let home = tempfile::tempdir().unwrap();
    let prog = program(
        home.path(),
        "sort.py",
        "def sort_in_place(xs):\n    xs.sort()\n    return None\n",
    );
    let out = nmk(
        home.path(),
        &[
            "gate",
            &gap("bad/constant_oracle.toml"),
            &prog,
            "--json",
            "--register",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let v = json(&out);
    assert_eq!(v["admitted"], false);
    assert_eq!(v["reason"], "placebo_unsound");
    let out = nmk(home.path(), &["primitives", "list", "--json"]);
    assert_eq!(json(&out)["learned"].as_array().unwrap().len(), 0);
}

#[test]
fn a_registered_primitive_is_listed_shown_and_called_from_later_processes() {
    let home = tempfile::tempdir().unwrap();
    let good = program(home.path(), "gcd.py", GCD);
    let out = nmk(
        home.path(),
        &["gate", &gap("gcd.toml"), &good, "--register", "--json"],
    );
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(json(&out)["registered"], true);

    // Each of these is a new process: the registry is reloaded and re-checked from the store.
    let out = nmk(home.path(), &["primitives", "list", "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let v = json(&out);
    let learned = v["learned"].as_array().unwrap();
    assert_eq!(learned.len(), 1);
    assert_eq!(learned[0]["entry"], "gcd");
    assert_eq!(learned[0]["proposer"], "user");
    assert!(learned[0]["model"].is_null());
    assert!(!v["builtin"].as_array().unwrap().is_empty());

    let out = nmk(home.path(), &["primitives", "show", "gcd", "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let v = json(&out);
    assert_eq!(v["code"], GCD);
    assert_eq!(v["usable"], true);
    assert_eq!(v["gate"]["passed"], v["gate"]["n"]);
    assert_eq!(v["code_hash"].as_str().unwrap().len(), 64);

    let out = nmk(
        home.path(),
        &["primitives", "call", "gcd", "[12, 18]", "--json"],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json(&out);
    assert_eq!(v["result"], 6);
    assert_eq!(v["source"], "learned");
    assert_eq!(v["model_tokens"], 0);
    assert_eq!(v["committed"], true);

    // Re-gated under a fresh seed before the call.
    let out = nmk(
        home.path(),
        &["primitives", "call", "gcd", "[35, 21]", "--regate"],
    );
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "7");

    // Malformed arguments are a usage error.
    let out = nmk(home.path(), &["primitives", "call", "gcd", "12"]);
    assert_eq!(out.status.code(), Some(2));
    let out = nmk(home.path(), &["ledger", "verify"]);
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn a_tampered_stored_primitive_is_refused_by_the_cli() {
    let home = tempfile::tempdir().unwrap();
    let good = program(home.path(), "gcd.py", GCD);
    let out = nmk(
        home.path(),
        &["gate", &gap("gcd.toml"), &good, "--register"],
    );
    assert_eq!(out.status.code(), Some(0));
    let db = nmk_kernel::store::database_path(home.path());
    let conn =
        nmk_kernel::store::open_database(&db, nmk_kernel::store::Durability::Process).unwrap();
    conn.execute(
        "UPDATE learned_primitives SET code = 'def gcd(a, b):\n    return 1\n'",
        [],
    )
    .unwrap();
    drop(conn);
    let out = nmk(home.path(), &["primitives", "call", "gcd", "[12, 18]"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("tampered"));
    let out = nmk(home.path(), &["primitives", "list", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let v = json(&out);
    assert_eq!(v["learned"].as_array().unwrap().len(), 0);
    assert_eq!(v["refused"][0]["entry"], "gcd");
}

#[test]
fn built_in_primitives_are_listed_and_callable() {
    let home = tempfile::tempdir().unwrap();
    let out = nmk(
        home.path(),
        &["primitives", "call", "is_prime", "[97]", "--json"],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json(&out);
    assert_eq!(v["result"], true);
    assert_eq!(v["source"], "builtin");
    let out = nmk(home.path(), &["primitives", "show", "is_prime"]);
    assert_eq!(out.status.code(), Some(0));
    let out = nmk(home.path(), &["primitives", "show", "no_such_thing"]);
    assert_eq!(out.status.code(), Some(2));
}
