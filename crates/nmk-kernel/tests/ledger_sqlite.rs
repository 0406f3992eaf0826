//! The SQLite-backed proof ledger: persistence across reopen, tamper detection through a second
//! raw connection (edited body, edited hash column, deleted middle and last rows, swapped bodies,
//! a forged row sealed over the wrong `prev`), multi-connection and multi-process appends that
//! keep one unforked chain, the durability pragmas, and refusal of a schema newer than this build.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use nmk_det::{ContentHash, ValidationLevel, Value, hash_value};
use nmk_kernel::Verification;
use nmk_kernel::ledger::{
    Action, Head, Ledger, LedgerEntry, LedgerError, LedgerRecord, ModelBinding, Problem,
    ValidatorId,
};
use nmk_kernel::store::{Durability, SCHEMA_VERSION, StoreError, open_database};
use rusqlite::{Connection, params};

fn h(tag: &str) -> ContentHash {
    hash_value(&Value::str(tag))
}

fn record(writer: &str, i: u64) -> LedgerRecord {
    LedgerRecord {
        opcode: "run_tests".into(),
        op_version: "tg1".into(),
        inputs: BTreeMap::from([
            ("code".to_string(), h(&format!("{writer} code {i}"))),
            ("cases".to_string(), h("cases")),
        ]),
        result: h(&format!("{writer} result {i}")),
        contract: h("contract"),
        validator: Some(ValidatorId::new("run_tests_ok", "1")),
        level: ValidationLevel::Oracle,
        verification: Verification::Verified,
        action: Action::Pass,
        logical_time: i,
        model: Some(ModelBinding {
            model: h("m"),
            tokenizer: h("t"),
            policy: h("p"),
        }),
        detail: Value::map([("writer", Value::str(writer)), ("i", Value::int(i))]),
    }
}

/// A fresh ledger of `n` entries in a temp dir; returns the dir, the path and the entries.
fn ledger_with(n: u64) -> (tempfile::TempDir, std::path::PathBuf, Vec<LedgerEntry>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kernel").join("nmk.sqlite");
    let ledger = Ledger::open(&path, Durability::Process).unwrap();
    let entries = (0..n)
        .map(|i| ledger.append(record("t", i)).unwrap())
        .collect();
    (dir, path, entries)
}

fn raw(path: &Path) -> Connection {
    let conn = Connection::open(path).unwrap();
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .unwrap();
    conn
}

fn verify(path: &Path, known: Option<Head>) -> Vec<Problem> {
    Ledger::open(path, Durability::Process)
        .unwrap()
        .verify(known)
        .unwrap()
        .problems
}

#[test]
fn entries_persist_across_reopen_and_the_chain_continues() {
    let (_dir, path, entries) = ledger_with(10);
    let head = entries[9].head();
    let ledger = Ledger::open(&path, Durability::PowerLoss).unwrap();
    assert_eq!(ledger.len().unwrap(), 10);
    assert_eq!(ledger.head().unwrap(), Some(head));
    assert_eq!(ledger.entries(0, 100).unwrap(), entries);
    let report = ledger.verify(Some(head)).unwrap();
    assert!(report.ok(), "{:?}", report.problems);
    let next = ledger.append(record("t", 10)).unwrap();
    assert_eq!(next.seq, 10);
    assert_eq!(next.prev, head.hash);
    drop(ledger);
    let again = Ledger::open(&path, Durability::Process).unwrap();
    assert_eq!(again.head().unwrap(), Some(next.head()));
    assert!(again.verify(Some(next.head())).unwrap().ok());
    // The exported file verifies to the same head.
    let mut out = Vec::new();
    assert_eq!(again.export_jsonl(&mut out).unwrap(), 11);
    let report = nmk_kernel::ledger::verify_jsonl(&out[..], Some(next.head())).unwrap();
    assert!(report.ok());
    assert_eq!(report.head, Some(next.head()));
}

#[test]
fn an_edited_body_breaks_the_seal() {
    let (_dir, path, entries) = ledger_with(5);
    // Keep a handle open across the tampering: it must see the change too.
    let ledger = Ledger::open(&path, Durability::Process).unwrap();
    let body: String = raw(&path)
        .query_row("SELECT body FROM ledger WHERE seq = 2", [], |r| r.get(0))
        .unwrap();
    assert!(body.contains("\"level\":\"ORACLE\""));
    let forged = body.replace("\"level\":\"ORACLE\"", "\"level\":\"PROVEN\"");
    let n = raw(&path)
        .execute("UPDATE ledger SET body = ?1 WHERE seq = 2", params![forged])
        .unwrap();
    assert_eq!(n, 1);
    let report = ledger.verify(Some(entries[4].head())).unwrap();
    assert_eq!(report.problems, vec![Problem::SealBroken { seq: 2 }]);
}

#[test]
fn an_edited_hash_column_is_detected() {
    let (_dir, path, _entries) = ledger_with(5);
    raw(&path)
        .execute(
            "UPDATE ledger SET hash = ?1 WHERE seq = 3",
            params![h("not the seal").to_hex()],
        )
        .unwrap();
    assert_eq!(verify(&path, None), vec![Problem::SealBroken { seq: 3 }]);
}

#[test]
fn a_deleted_middle_row_is_detected() {
    let (_dir, path, _entries) = ledger_with(6);
    raw(&path)
        .execute("DELETE FROM ledger WHERE seq = 2", [])
        .unwrap();
    let problems = verify(&path, None);
    assert!(
        problems.contains(&Problem::OutOfSequence {
            expected: 2,
            found: 3
        }),
        "{problems:?}"
    );
    assert!(
        problems.contains(&Problem::LinkBroken { seq: 3 }),
        "{problems:?}"
    );
}

#[test]
fn a_deleted_last_row_is_detected_against_the_known_head() {
    let (_dir, path, entries) = ledger_with(6);
    let head = entries[5].head();
    raw(&path)
        .execute("DELETE FROM ledger WHERE seq = 5", [])
        .unwrap();
    // Without a trusted head the shorter chain is sound on its own ...
    assert_eq!(verify(&path, None), vec![]);
    // ... the head the reader remembered exposes the truncation.
    assert_eq!(
        verify(&path, Some(head)),
        vec![Problem::Truncated {
            head_seq: 5,
            entries: 5
        }]
    );
}

#[test]
fn swapped_bodies_are_detected() {
    let (_dir, path, _entries) = ledger_with(6);
    let mut conn = raw(&path);
    let body = |conn: &Connection, seq: i64| -> String {
        conn.query_row("SELECT body FROM ledger WHERE seq = ?1", [seq], |r| {
            r.get(0)
        })
        .unwrap()
    };
    let (b1, b4) = (body(&conn, 1), body(&conn, 4));
    let tx = conn.transaction().unwrap();
    for (seq, b) in [(1i64, &b4), (4, &b1)] {
        tx.execute(
            "UPDATE ledger SET body = ?1 WHERE seq = ?2",
            params![b, seq],
        )
        .unwrap();
    }
    tx.commit().unwrap();
    assert_eq!((body(&conn, 1), body(&conn, 4)), (b4, b1));
    let problems = verify(&path, None);
    for p in [
        Problem::OutOfSequence {
            expected: 1,
            found: 4,
        },
        Problem::OutOfSequence {
            expected: 4,
            found: 1,
        },
        Problem::SealBroken { seq: 4 },
        Problem::SealBroken { seq: 1 },
    ] {
        assert!(problems.contains(&p), "missing {p:?} in {problems:?}");
    }
}

#[test]
fn a_forged_row_sealed_over_the_wrong_prev_is_detected() {
    let (_dir, path, entries) = ledger_with(4);
    // A forger who can compute seals but links the new row to an older entry.
    let forged = LedgerEntry::seal(4, entries[2].hash, record("forger", 4));
    assert!(forged.seal_holds());
    raw(&path)
        .execute(
            "INSERT INTO ledger (seq, hash, prev, body) VALUES (?1, ?2, ?3, ?4)",
            params![
                4i64,
                forged.hash.to_hex(),
                forged.prev.to_hex(),
                forged.to_canonical()
            ],
        )
        .unwrap();
    assert_eq!(verify(&path, None), vec![Problem::LinkBroken { seq: 4 }]);
    // Against the head before the forgery, the rest still matches.
    assert_eq!(
        verify(&path, Some(entries[3].head())),
        vec![Problem::LinkBroken { seq: 4 }]
    );
}

#[test]
fn durability_settings_reach_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.sqlite");
    for (durability, expected) in [(Durability::Process, 1i64), (Durability::PowerLoss, 2)] {
        let conn = open_database(&path, durability).unwrap();
        let sync: i64 = conn
            .pragma_query_value(None, "synchronous", |r| r.get(0))
            .unwrap();
        let mode: String = conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(sync, expected, "{durability:?}");
        assert_eq!(mode, "wal");
    }
    assert_eq!(Durability::default(), Durability::Process);
}

#[test]
fn a_schema_newer_than_this_build_is_refused() {
    let (_dir, path, _entries) = ledger_with(2);
    raw(&path)
        .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .unwrap();
    let err = Ledger::open(&path, Durability::Process).unwrap_err();
    match &err {
        LedgerError::Open(StoreError::SchemaTooNew {
            found, supported, ..
        }) => {
            assert_eq!(*found, SCHEMA_VERSION + 1);
            assert_eq!(*supported, SCHEMA_VERSION);
        }
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
    let text = err.to_string();
    assert!(
        text.contains(&format!("schema version {}", SCHEMA_VERSION + 1))
            && text.contains(&format!("supports up to {SCHEMA_VERSION}"))
            && text.contains("nmk.sqlite"),
        "unclear error: {text}"
    );
    // The refusal left the file alone.
    let version: i64 = raw(&path)
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION + 1);
    // The current version itself is accepted.
    raw(&path)
        .pragma_update(None, "user_version", SCHEMA_VERSION)
        .unwrap();
    assert_eq!(
        Ledger::open(&path, Durability::Process)
            .unwrap()
            .len()
            .unwrap(),
        2
    );
}

/// Checks that `appended` (what each writer's `append` returned) is exactly the stored chain.
fn assert_one_chain(path: &Path, appended: &[(u64, ContentHash)], total: u64) {
    let ledger = Ledger::open(path, Durability::Process).unwrap();
    assert_eq!(ledger.len().unwrap(), total);
    let head = ledger.head().unwrap().unwrap();
    assert_eq!(head.seq, total - 1);
    let report = ledger.verify(Some(head)).unwrap();
    assert!(report.ok(), "{:?}", report.problems);
    let stored: BTreeMap<u64, ContentHash> = ledger
        .entries(0, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|e| (e.seq, e.hash))
        .collect();
    let seqs: BTreeSet<u64> = appended.iter().map(|(s, _)| *s).collect();
    assert_eq!(seqs.len(), appended.len(), "two appends got the same seq");
    for (seq, hash) in appended {
        assert_eq!(stored.get(seq), Some(hash), "entry {seq}");
    }
    // How interleaved the writers were (informational: scheduling decides it).
    let writers: Vec<Value> = ledger
        .entries(0, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|e| e.record.detail.get("writer").cloned().unwrap())
        .collect();
    let switches = writers.windows(2).filter(|w| w[0] != w[1]).count();
    eprintln!("{total} entries, writer changed {switches} times along the chain");
}

#[test]
fn two_connections_in_one_process_append_one_chain() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("threads.sqlite");
    let start = std::sync::Arc::new(std::sync::Barrier::new(2));
    let writers: Vec<_> = ["a", "b"]
        .into_iter()
        .map(|name| {
            let path = path.clone();
            let start = start.clone();
            std::thread::spawn(move || {
                let ledger = Ledger::open(&path, Durability::Process).unwrap();
                start.wait();
                (0..200)
                    .map(|i| {
                        let e = ledger.append(record(name, i)).unwrap();
                        (e.seq, e.hash)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let appended: Vec<(u64, ContentHash)> = writers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    assert_eq!(appended.len(), 400);
    assert_one_chain(&path, &appended, 400);
}

const WRITER_ENV: &str = "NMK_LEDGER_SQLITE_TEST_WRITER";
const WRITER_APPENDS: u64 = 150;

#[test]
fn two_processes_append_one_chain() {
    // Child mode: this same test, re-invoked by the parent below, acts as one writer.
    if let Ok(spec) = std::env::var(WRITER_ENV) {
        let (name, path) = spec.split_once(':').unwrap();
        let ledger = Ledger::open(Path::new(path), Durability::Process).unwrap();
        // Report ready, then wait for the parent's go so both writers start together.
        println!("\nREADY");
        let mut go = String::new();
        std::io::stdin().read_line(&mut go).unwrap();
        for i in 0..WRITER_APPENDS {
            let e = ledger.append(record(name, i)).unwrap();
            println!("APPENDED {} {}", e.seq, e.hash.to_hex());
        }
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("procs.sqlite");
    // Create the schema first so both children only append.
    Ledger::open(&path, Durability::Process).unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut children: Vec<_> = ["p1", "p2"]
        .into_iter()
        .map(|name| {
            Command::new(&exe)
                .args([
                    "--exact",
                    "two_processes_append_one_chain",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(WRITER_ENV, format!("{name}:{}", path.display()))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut outputs: Vec<_> = children
        .iter_mut()
        .map(|c| BufReader::new(c.stdout.take().unwrap()).lines())
        .collect();
    for out in &mut outputs {
        let ready = out.find_map(|l| l.ok().filter(|l| l == "READY"));
        assert!(ready.is_some(), "writer never became ready");
    }
    for child in &mut children {
        writeln!(child.stdin.as_mut().unwrap(), "go").unwrap();
    }
    let mut appended = Vec::new();
    for (mut child, out) in children.into_iter().zip(outputs) {
        let mut mine = 0;
        for line in out {
            let line = line.unwrap();
            if let Some(rest) = line.strip_prefix("APPENDED ") {
                let (seq, hash) = rest.split_once(' ').unwrap();
                appended.push((seq.parse::<u64>().unwrap(), hash.parse().unwrap()));
                mine += 1;
            }
        }
        assert!(child.wait().unwrap().success(), "writer process failed");
        assert_eq!(mine, WRITER_APPENDS, "writer reported every append");
    }
    assert_one_chain(&path, &appended, 2 * WRITER_APPENDS);
}
