//! `nmk memory` on the store in the kernel home: put/get/list/history/delete/stats/consult,
//! supersession kept as history, the reserved governance key refused (exit 2), an absent key
//! (exit 1), every change on the ledger; and `nmk run` records its consultation of the store.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::{json, nmk};

use std::path::Path;

fn ok(home: &Path, args: &[&str]) -> serde_json::Value {
    let out = nmk(home, args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    json(&out)
}

#[test]
fn put_get_supersede_delete_and_the_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let v = ok(home, &["memory", "put", "--json", "city", "Paris"]);
    assert_eq!(v["version"], 1);
    let v = ok(
        home,
        &["memory", "put", "--json", "city", "{\"name\": \"Lyon\"}"],
    );
    assert_eq!(v["version"], 2);
    assert!(v["superseded"].is_string());
    let v = ok(home, &["memory", "get", "--json", "city"]);
    assert_eq!(v["value"]["name"], "Lyon");
    let out = nmk(home, &["memory", "get", "city"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "{\"name\":\"Lyon\"}"
    );

    let v = ok(home, &["memory", "history", "--json", "city"]);
    let h = v["history"].as_array().unwrap();
    assert_eq!(h.len(), 1);
    assert_eq!(h[0]["value"], "Paris");
    assert_eq!(h[0]["ended"], "superseded");

    let v = ok(home, &["memory", "list", "--json"]);
    let keys: Vec<&str> = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["__governance__", "city"]);

    let v = ok(home, &["memory", "consult", "--json"]);
    assert_eq!(v["governance"]["policy"], "ALWAYS CONSULT");
    assert_eq!(v["recent"][0]["key"], "city");

    let v = ok(home, &["memory", "delete", "--json", "city"]);
    assert_eq!(v["existed"], true);
    assert_eq!(nmk(home, &["memory", "get", "city"]).status.code(), Some(1));
    assert_eq!(
        nmk(home, &["memory", "delete", "city"]).status.code(),
        Some(1)
    );
    let v = ok(home, &["memory", "stats", "--json"]);
    assert_eq!(v["entries"], 1);
    assert_eq!(v["tombstones"], 1);
    assert_eq!(v["history_rows"], 2);

    // The governance object is the kernel's.
    let out = nmk(home, &["memory", "put", "__governance__", "x"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("reserved"));
    assert_eq!(
        nmk(home, &["memory", "delete", "__governance__"])
            .status
            .code(),
        Some(2)
    );

    // Every change is a ledger entry, and the chain verifies.
    let out = nmk(home, &["ledger", "show", "--limit", "100", "--json"]);
    let entries = json(&out);
    let memory_ops = entries
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["opcode"].as_str().unwrap().starts_with("memory"))
        .count();
    assert!(memory_ops >= 5, "{entries}");
    assert_eq!(nmk(home, &["ledger", "verify"]).status.code(), Some(0));
}

#[test]
fn nmk_run_consults_memory_first_and_names_what_it_read() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    ok(home, &["memory", "put", "--json", "note", "hello"]);
    let v = ok(home, &["run", "--json", "is 7 prime"]);
    assert_eq!(v["memory"]["consulted"], true);
    assert_eq!(v["memory"]["recent"], serde_json::json!(["note"]));
    let out = nmk(home, &["ledger", "show", "--limit", "100", "--json"]);
    let entries = json(&out);
    let consult = entries
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["opcode"] == "memory.consult")
        .unwrap();
    assert_eq!(consult["detail"]["recent"], serde_json::json!(["note"]));
    assert_eq!(consult["hash"], v["memory"]["ledger_entry"]);
}

#[test]
fn an_entry_with_a_ttl_expires_and_one_without_stays() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    ok(
        home,
        &["memory", "put", "--json", "--ttl", "1", "session", "abc"],
    );
    ok(home, &["memory", "put", "--json", "city", "Paris"]);
    assert_eq!(
        ok(home, &["memory", "get", "--json", "session"])["value"],
        "abc"
    );
    std::thread::sleep(std::time::Duration::from_millis(2100));
    // Expired: absent (exit 1); the entry written without a TTL is still there (contrast).
    assert_eq!(
        nmk(home, &["memory", "get", "session"]).status.code(),
        Some(1)
    );
    assert_eq!(
        ok(home, &["memory", "get", "--json", "city"])["value"],
        "Paris"
    );
    // The next write purges it, and the purge is a ledger entry.
    ok(home, &["memory", "put", "--json", "other", "1"]);
    let ledger = ok(home, &["ledger", "show", "--limit", "100", "--json"]);
    assert!(
        ledger
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["opcode"] == "memory.expire"),
        "{ledger}"
    );
}
