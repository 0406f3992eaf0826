//! The `nmk` binary end to end: the demo writes a ledger that `nmk ledger verify` accepts, and
//! tampering, deletion and truncation are reported with exit code 1.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::{json, nmk};

use std::process::Output;

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn demo_then_verify_show_export_and_head() {
    let home = tempfile::tempdir().unwrap();
    // The kernel tour alone fills a ledger; the model workload is `cli_demo`'s.
    let demo = nmk(home.path(), &["demo", "--no-model", "--json"]);
    assert_eq!(
        demo.status.code(),
        Some(0),
        "{}{}",
        stdout(&demo),
        String::from_utf8_lossy(&demo.stderr)
    );
    let report = json(&demo);
    assert_eq!(report["ok"], true);
    assert_eq!(report["tampered_export_caught"], true);
    assert!(
        report["kernel_tour"]["runs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["verification"] == "verified")
    );

    let verify = nmk(home.path(), &["ledger", "verify", "--json"]);
    assert_eq!(verify.status.code(), Some(0));
    let v = json(&verify);
    assert_eq!(v["ok"], true);
    let head = v["head"].as_str().unwrap().to_owned();

    let shown = json(&nmk(
        home.path(),
        &["ledger", "show", "--tail", "--limit", "3", "--json"],
    ));
    let entries = shown.as_array().unwrap();
    assert_eq!(entries.len(), 3);
    assert_eq!(
        entries[2]["hash"].as_str().unwrap(),
        head.split_once(':').unwrap().1
    );

    let file = home.path().join("export.jsonl");
    let export = nmk(
        home.path(),
        &["ledger", "export", "--out", file.to_str().unwrap()],
    );
    assert_eq!(export.status.code(), Some(0));
    let from_file = nmk(
        home.path(),
        &[
            "ledger",
            "verify",
            "--file",
            file.to_str().unwrap(),
            "--head",
            &head,
        ],
    );
    assert_eq!(from_file.status.code(), Some(0), "{}", stdout(&from_file));

    // Drop the last line: only the known head can tell.
    let text = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let shorter = lines[..lines.len() - 1].join("\n") + "\n";
    std::fs::write(&file, shorter).unwrap();
    let blind = nmk(
        home.path(),
        &["ledger", "verify", "--file", file.to_str().unwrap()],
    );
    assert_eq!(blind.status.code(), Some(0));
    let truncated = nmk(
        home.path(),
        &[
            "ledger",
            "verify",
            "--file",
            file.to_str().unwrap(),
            "--head",
            &head,
        ],
    );
    assert_eq!(truncated.status.code(), Some(1));
    assert!(
        stdout(&truncated).contains("truncated"),
        "{}",
        stdout(&truncated)
    );

    // Edit one entry in place: caught.
    let edited = text.replacen("\"verified\"", "\"validated\"", 1);
    assert_ne!(edited, text);
    std::fs::write(&file, edited).unwrap();
    let caught = nmk(
        home.path(),
        &["ledger", "verify", "--file", file.to_str().unwrap()],
    );
    assert_eq!(caught.status.code(), Some(1));
    assert!(stdout(&caught).contains("BROKEN"));
}

#[test]
fn bad_input_gets_clear_errors_and_exit_codes() {
    let home = tempfile::tempdir().unwrap();
    let missing = nmk(home.path(), &["ledger", "verify"]);
    assert_eq!(missing.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no ledger at"));
    assert_eq!(
        nmk(home.path(), &["demo", "--no-model"]).status.code(),
        Some(0)
    );
    let bad_head = nmk(home.path(), &["ledger", "verify", "--head", "nonsense"]);
    // A malformed --head is a usage error.
    assert_eq!(bad_head.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad_head.stderr).contains("SEQ:HASH"));
    assert_eq!(
        nmk(home.path(), &["ledger", "frobnicate"]).status.code(),
        Some(2)
    );
}
