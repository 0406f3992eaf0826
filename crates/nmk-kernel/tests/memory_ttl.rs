//! Memory expiry (spec §9 D46 asks for a TTL): an entry past its time to live is invisible to
//! get/list/stats/consult at once, purged (with its history) by the next write and ledgered as
//! `memory.expire`; a rewrite without a TTL makes the key permanent again; expiry survives a
//! reopen. Contrasts: the same writes without a TTL, or with a long one, stay visible.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::time::Duration;

use nmk_det::{Value, hash_value};
use nmk_kernel::ledger::{Ledger, LedgerEntry};
use nmk_kernel::memory::{MemoryConfig, MemoryStore, PutOptions};
use nmk_kernel::store::Durability;

const HOUR: Duration = Duration::from_secs(3600);

fn open(path: &Path) -> (MemoryStore, Ledger) {
    let ledger = Ledger::open(path, Durability::Process).unwrap();
    let config = MemoryConfig {
        max_bytes: 1 << 20,
        durability: Durability::Process,
    };
    (
        MemoryStore::open(path, config, ledger.clone()).unwrap(),
        ledger,
    )
}

fn expiries(ledger: &Ledger) -> Vec<LedgerEntry> {
    ledger
        .entries(0, usize::MAX)
        .unwrap()
        .into_iter()
        .filter(|e| e.record.opcode == "memory.expire")
        .collect()
}

fn visible(store: &mut MemoryStore, key: &str) -> (bool, bool, bool) {
    let got = store.get(key, false).unwrap().is_some();
    let listed = store.list(100).unwrap().iter().any(|r| r.key == key);
    let consulted = store
        .consult(100)
        .unwrap()
        .recent
        .iter()
        .any(|r| r.key == key);
    (got, listed, consulted)
}

#[test]
fn an_expired_entry_is_invisible_at_once_and_a_live_one_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _) = open(&dir.path().join("nmk.sqlite"));
    let entries_before = store.stats().unwrap().entries;
    store
        .put(
            "gone",
            &Value::str("x"),
            &PutOptions::by("t").expires_after(Duration::ZERO),
        )
        .unwrap();
    store
        .put(
            "later",
            &Value::str("y"),
            &PutOptions::by("t").expires_after(HOUR),
        )
        .unwrap();
    store
        .put("forever", &Value::str("z"), &PutOptions::by("t"))
        .unwrap();
    assert_eq!(visible(&mut store, "gone"), (false, false, false));
    assert_eq!(visible(&mut store, "later"), (true, true, true));
    assert_eq!(visible(&mut store, "forever"), (true, true, true));
    assert_eq!(store.stats().unwrap().entries, entries_before + 2);
    // An expiry in the near future passes.
    store
        .put(
            "soon",
            &Value::str("w"),
            &PutOptions::by("t").expires_after(Duration::from_millis(150)),
        )
        .unwrap();
    assert!(store.get("soon", false).unwrap().is_some());
    std::thread::sleep(Duration::from_millis(300));
    assert!(store.get("soon", false).unwrap().is_none());
}

#[test]
fn the_next_write_purges_expired_entries_first_and_ledgers_each() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, ledger) = open(&dir.path().join("nmk.sqlite"));
    let ttl0 = PutOptions::by("t").expires_after(Duration::ZERO);
    store
        .put("gone", &Value::str("v1"), &PutOptions::by("t"))
        .unwrap();
    // A second version (the first goes to history), written with a TTL already passed.
    store.put("gone", &Value::str("v2"), &ttl0).unwrap();
    assert_eq!(store.history("gone").unwrap().len(), 1);
    let bytes_with = store.stats().unwrap().total_bytes;
    assert!(expiries(&ledger).is_empty(), "no write has purged yet");

    store
        .put("other", &Value::str("o"), &PutOptions::by("w"))
        .unwrap();
    let expired = expiries(&ledger);
    assert_eq!(expired.len(), 1);
    let e = &expired[0];
    assert_eq!(
        e.record.detail.get("key").and_then(Value::as_str),
        Some("gone")
    );
    assert_eq!(
        e.record.detail.get("value_hash").and_then(Value::as_str),
        Some(hash_value(&Value::str("v2")).to_hex().as_str())
    );
    match e.record.detail.get("history_hashes") {
        Some(Value::List(h)) => assert_eq!(h.len(), 1),
        other => panic!("{other:?}"),
    }
    assert!(
        store.history("gone").unwrap().is_empty(),
        "history purged too"
    );
    let freed = e
        .record
        .detail
        .get("bytes_freed")
        .and_then(Value::as_i64)
        .unwrap();
    assert!(freed > 0);
    let other_bytes = store.get("other", false).unwrap().unwrap().bytes;
    assert_eq!(
        store.stats().unwrap().total_bytes,
        bytes_with - u64::try_from(freed).unwrap() + other_bytes
    );
    // Purged once: later writes do not ledger it again.
    store
        .put("third", &Value::str("t"), &PutOptions::by("w"))
        .unwrap();
    assert_eq!(expiries(&ledger).len(), 1);
    assert!(ledger.verify(None).unwrap().ok());

    // Contrast: the same history without a TTL is never purged.
    let dir2 = tempfile::tempdir().unwrap();
    let (mut plain, plain_ledger) = open(&dir2.path().join("nmk.sqlite"));
    plain
        .put("gone", &Value::str("v1"), &PutOptions::by("t"))
        .unwrap();
    plain
        .put("gone", &Value::str("v2"), &PutOptions::by("t"))
        .unwrap();
    plain
        .put("other", &Value::str("o"), &PutOptions::by("w"))
        .unwrap();
    assert!(expiries(&plain_ledger).is_empty());
    assert_eq!(plain.history("gone").unwrap().len(), 1);
}

#[test]
fn a_rewrite_without_ttl_is_permanent_and_expiry_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nmk.sqlite");
    {
        let (mut store, _) = open(&path);
        let ttl0 = PutOptions::by("t").expires_after(Duration::ZERO);
        store.put("k", &Value::str("a"), &ttl0).unwrap();
        assert!(store.get("k", false).unwrap().is_none());
        store
            .put("k", &Value::str("b"), &PutOptions::by("t"))
            .unwrap();
        assert_eq!(
            store.get("k", false).unwrap().unwrap().value,
            Value::str("b")
        );
        store.put("e", &Value::str("c"), &ttl0).unwrap();
        store
            .put(
                "h",
                &Value::str("d"),
                &PutOptions::by("t").expires_after(HOUR),
            )
            .unwrap();
    }
    let (mut store, _) = open(&path);
    assert!(store.get("k", false).unwrap().is_some());
    assert!(store.get("e", false).unwrap().is_none());
    assert!(store.get("h", false).unwrap().is_some());
}

#[test]
fn a_version_one_store_gains_the_expiry_column_and_keeps_its_entries() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nmk.sqlite");
    {
        let (mut store, _) = open(&path);
        store
            .put("old", &Value::str("kept"), &PutOptions::by("t"))
            .unwrap();
    }
    // Turn the file back into the version-1 layout.
    {
        let raw = rusqlite::Connection::open(&path).unwrap();
        raw.execute_batch(
            "ALTER TABLE memory_entries DROP COLUMN expires_at;
             UPDATE memory_meta SET value = 1 WHERE name = 'schema';",
        )
        .unwrap();
    }
    let (mut store, _) = open(&path);
    assert_eq!(
        store.get("old", false).unwrap().unwrap().value,
        Value::str("kept")
    );
    store
        .put(
            "new",
            &Value::str("n"),
            &PutOptions::by("t").expires_after(Duration::ZERO),
        )
        .unwrap();
    assert!(store.get("new", false).unwrap().is_none());
    let raw = rusqlite::Connection::open(&path).unwrap();
    let version: i64 = raw
        .query_row(
            "SELECT value FROM memory_meta WHERE name = 'schema'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(version, nmk_kernel::memory::MEMORY_SCHEMA_VERSION);
}
