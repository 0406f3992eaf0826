//! `nmk job submit|dashboard` (no model needed): a structured_output job runs through the
//! orchestrator on the home's ledger with the binary's real JSON and schema checks, commits or
//! fails on what the draft actually is, persists plan memory across invocations, and jobs the
//! binary has no executors for are refused by name instead of faked.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::{json, nmk};

use std::path::Path;

fn write_job(dir: &Path, name: &str, job: serde_json::Value) -> String {
    let path = dir.join(name);
    std::fs::write(&path, job.to_string()).unwrap();
    path.to_string_lossy().into_owned()
}

fn person_job(id: &str, draft: &str) -> serde_json::Value {
    serde_json::json!({
        "id": id,
        "prompt": "Give a JSON object describing the person.",
        "inputs": {"draft": draft, "schema": {"required": ["name", "age"]}},
    })
}

#[test]
fn a_structured_output_job_commits_only_when_the_draft_fits_the_schema() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let good = write_job(
        dir.path(),
        "good.json",
        person_job("p1", r#"{"name": "Ada", "age": 36}"#),
    );
    let out = nmk(&home, &["job", "submit", "--json", &good]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json(&out);
    assert_eq!(v["committed"], true);
    assert_eq!(v["job_type"], "structured_output");
    assert_eq!(v["template"], "structured_output");
    assert_eq!(v["ledger_verified"], true);
    assert_eq!(v["result"]["name"], "Ada");
    assert_eq!(v["run_id"], "r1");
    let checklist: Vec<&str> = v["checklist"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert!(
        checklist.contains(&"✓ validate_schema [scheduler] (checked)"),
        "{checklist:?}"
    );
    // Honest self-check: a SCHEMA-level commit is not oracle-backed.
    assert_eq!(v["self_check"]["passed"], false);

    // Contrast: the same job with a draft missing a required key does not commit (exit 1).
    let bad = write_job(
        dir.path(),
        "bad.json",
        person_job("p2", r#"{"name": "Ada"}"#),
    );
    let out = nmk(&home, &["job", "submit", "--json", &bad]);
    assert_eq!(out.status.code(), Some(1));
    let v = json(&out);
    assert_eq!(v["committed"], false);
    assert_eq!(v["run_id"], "r2");
    let schema = v["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["kind"] == "validate_schema")
        .unwrap();
    assert_ne!(schema["status"], "PASSED");

    // Not JSON at all: the syntax step fails.
    let junk = write_job(dir.path(), "junk.json", person_job("p3", "name: Ada"));
    assert_eq!(
        nmk(&home, &["job", "submit", "--json", &junk])
            .status
            .code(),
        Some(1)
    );

    // Plan memory persisted across invocations; the ledger in the home verifies.
    let d = json(&nmk(&home, &["job", "dashboard", "--json"]));
    assert_eq!(d["jobs_total"], 3);
    assert_eq!(d["committed_total"], 1);
    assert_eq!(d["by_type"]["structured_output"], 3);
    assert_eq!(
        d["proven_templates"]["structured_output"],
        "structured_output"
    );
    let lessons = d["learnings"]["structured_output"].as_array().unwrap();
    assert!(
        lessons
            .iter()
            .any(|l| l.as_str().unwrap().starts_with("job p2 failed at:"))
    );
    let verify = nmk(&home, &["ledger", "verify"]);
    assert_eq!(
        verify.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
    // The trace written out is the run's, and the kernel's self-check reads it back: clean but
    // for the SCHEMA-only commit, and a line removed is caught.
    let trace_file = dir.path().join("trace.jsonl");
    let traced = nmk(
        &home,
        &[
            "job",
            "submit",
            "--trace",
            trace_file.to_str().unwrap(),
            &good,
        ],
    );
    assert_eq!(traced.status.code(), Some(0));
    let lines = std::fs::read_to_string(&trace_file).unwrap();
    assert!(lines.lines().count() >= 10);
    let violations = nmk_kernel::trace::check_jsonl("p1", &lines);
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert!(violations[0].contains("unsafe commit"));
    let without_classify: String = lines
        .lines()
        .filter(|l| !l.contains("\"kind\":\"classify\""))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(
        nmk_kernel::trace::check_jsonl("p1", &without_classify)
            .iter()
            .any(|v| v.contains("no classify"))
    );
    // Every task consulted the home's memory store before it ran; dropping one consultation
    // is caught by the self-check (the rule that makes "always consult" enforceable).
    let consults: Vec<&str> = lines
        .lines()
        .filter(|l| l.contains("\"kind\":\"memory.consult\""))
        .collect();
    assert!(consults.len() >= 4, "{lines}");
    assert!(
        consults.iter().all(|l| l.contains("\"consulted\":true")),
        "{consults:?}"
    );
    let first_consult = consults[0];
    let without_consult: String = lines
        .lines()
        .filter(|l| *l != first_consult)
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(
        nmk_kernel::trace::check_jsonl("p1", &without_consult)
            .iter()
            .any(|v| v.contains("without consulting memory")),
        "{without_consult}"
    );
    // Human output names the outcome.
    let text = nmk(&home, &["job", "submit", &good]);
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert!(
        stdout.contains("committed") && stdout.contains("✓ validate_syntax"),
        "{stdout}"
    );
}

#[test]
fn jobs_without_real_executors_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let coding = write_job(
        dir.path(),
        "coding.json",
        serde_json::json!({"id": "c1", "prompt": "def add(a, b): return a + b"}),
    );
    let out = nmk(&home, &["job", "submit", "--json", &coding]);
    assert_eq!(out.status.code(), Some(2));
    let v = json(&out);
    assert_eq!(v["ran"], false);
    let why = v["refused"].as_str().unwrap();
    assert!(
        why.contains("code_gen") && why.contains("op:run_tests"),
        "{why}"
    );
    let cyber = write_job(
        dir.path(),
        "cyber.json",
        serde_json::json!({"id": "s1", "prompt": "SOC alert: beacon to 203.0.113.9"}),
    );
    let v = json(&nmk(&home, &["job", "submit", "--json", &cyber]));
    assert!(v["refused"].as_str().unwrap().contains("op:det_checks"));
    // No draft or no schema: refused, not run with a vacuous check.
    let no_schema = write_job(
        dir.path(),
        "no_schema.json",
        serde_json::json!({"id": "j1", "prompt": "give json", "inputs": {"draft": "{}"}}),
    );
    let v = json(&nmk(&home, &["job", "submit", "--json", &no_schema]));
    assert!(v["refused"].as_str().unwrap().contains("inputs.schema"));
    // Malformed job files are usage errors.
    let bad = write_job(
        dir.path(),
        "bad.json",
        serde_json::json!({"prompt": "no id"}),
    );
    assert_eq!(nmk(&home, &["job", "submit", &bad]).status.code(), Some(2));
    // Nothing ran, so nothing was counted.
    let d = json(&nmk(&home, &["job", "dashboard", "--json"]));
    assert_eq!(d["jobs_total"], 0);
}

#[test]
fn a_corrupt_plan_memory_is_refused_not_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::write(home.join("plan_memory.json"), "{broken").unwrap();
    let out = nmk(&home, &["job", "dashboard"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("corrupt"));
    let good = write_job(
        dir.path(),
        "good.json",
        person_job("p1", r#"{"name": "Ada", "age": 1}"#),
    );
    assert_eq!(nmk(&home, &["job", "submit", &good]).status.code(), Some(3));
    assert_eq!(
        std::fs::read_to_string(home.join("plan_memory.json")).unwrap(),
        "{broken"
    );
}
