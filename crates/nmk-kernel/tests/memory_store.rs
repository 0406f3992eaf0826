//! The memory store (spec §3.14, §7 `memory_store`): round-trip and persistence, the pinned
//! governance object, the byte cap with LRU eviction of unpinned entries, refusal of what cannot
//! fit — and what we add beyond the original: supersession keeps history, deletes leave
//! tombstones, every change is a ledger entry (through an outbox that survives a failing
//! ledger), exact byte accounting, several connections and processes on one store, and the
//! capability-gated `memory` tool.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use nmk_det::{Value, canonical, hash_value};
use nmk_kernel::budget::{Budget, BudgetLimits};
use nmk_kernel::capability::Capability;
use nmk_kernel::ledger::{
    Action, Head, Ledger, LedgerBackend, LedgerEntry, LedgerError, LedgerRecord, MemoryBackend,
    StoredRow,
};
use nmk_kernel::memory::{
    CLAIM_LEASE_MS, Ended, GOVERNANCE_KEY, HISTORY_ROW_OVERHEAD, MEMORY_OP, MEMORY_VALIDATOR,
    MemoryConfig, MemoryError, MemoryStore, PutOptions, governance_value, memory_ok,
    register_memory_tool,
};
use nmk_kernel::store::Durability;
use nmk_kernel::{Reject, Scheduler, TaskSpec, TaskStatus};

fn db(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("nmk.sqlite")
}

fn config(max_bytes: u64) -> MemoryConfig {
    MemoryConfig {
        max_bytes,
        durability: Durability::Process,
    }
}

/// A store and a ledger in the same database file (the kernel's layout).
fn open(path: &Path, max_bytes: u64) -> (MemoryStore, Ledger) {
    let ledger = Ledger::open(path, Durability::Process).unwrap();
    let store = MemoryStore::open(path, config(max_bytes), ledger.clone()).unwrap();
    (store, ledger)
}

fn by(actor: &str) -> PutOptions {
    PutOptions::by(actor)
}

fn text_of(n: usize) -> Value {
    Value::str("x".repeat(n))
}

fn gov_bytes() -> u64 {
    (GOVERNANCE_KEY.len() + canonical::encode(&governance_value()).len()) as u64
}

/// Ledger entries whose opcode is `memory.<event>`.
fn events(ledger: &Ledger, event: &str) -> Vec<LedgerEntry> {
    let op = format!("memory.{event}");
    ledger
        .entries(0, usize::MAX)
        .unwrap()
        .into_iter()
        .filter(|e| e.record.opcode == op)
        .collect()
}

fn detail_str<'a>(e: &'a LedgerEntry, field: &str) -> Option<&'a str> {
    e.record.detail.get(field).and_then(Value::as_str)
}

#[test]
fn put_get_round_trip_and_persistence_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    let value = Value::map([
        ("city", Value::str("Paris")),
        ("n", Value::int(3u64)),
        ("tags", Value::List(vec![Value::str("a"), Value::Null])),
    ]);
    {
        let (mut store, _) = open(&path, 1 << 20);
        let out = store
            .put("capital", &value, &by("task-1").kind("fact"))
            .unwrap();
        assert_eq!(out.version, 1);
        assert!(out.evicted.is_empty() && out.superseded.is_none());
        let item = store.get("capital", true).unwrap().unwrap();
        assert_eq!(item.value, value);
        assert_eq!(item.kind, "fact");
        assert_eq!(item.writer, "task-1");
        assert_eq!(item.value_hash, hash_value(&value));
        assert!(store.get("missing", true).unwrap().is_none());
    }
    let (mut store, ledger) = open(&path, 1 << 20);
    let item = store.get("capital", false).unwrap().unwrap();
    assert_eq!(item.value, value);
    assert_eq!(item.n_access, 1, "the touch before reopening persisted");
    assert!(ledger.verify(None).unwrap().ok());
    // Reopening does not install a second governance object.
    assert_eq!(events(&ledger, "write").len(), 2);
}

#[test]
fn touch_records_access_and_a_plain_read_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _) = open(&db(&dir), 1 << 20);
    store.put("k", &Value::int(1u64), &by("t")).unwrap();
    let before = store.get("k", false).unwrap().unwrap();
    let after_plain = store.get("k", false).unwrap().unwrap();
    assert_eq!(after_plain.accessed, before.accessed);
    assert_eq!(after_plain.n_access, 0);
    let touched = store.get("k", true).unwrap().unwrap();
    assert!(touched.accessed > before.accessed);
    assert_eq!(touched.n_access, 1);
}

#[test]
fn governance_comes_first_is_pinned_and_cannot_be_changed() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, ledger) = open(&db(&dir), 1 << 20);
    store.put("note", &Value::str("hello"), &by("t")).unwrap();
    let c = store.consult(10).unwrap();
    assert_eq!(c.governance, governance_value());
    assert_eq!(
        c.governance.get("policy").and_then(Value::as_str),
        Some("ALWAYS CONSULT")
    );
    match c.governance.get("rules") {
        Some(Value::List(rules)) => assert_eq!(rules.len(), 4),
        other => panic!("rules: {other:?}"),
    }
    let listed = store.list(10).unwrap();
    assert_eq!(listed[0].key, GOVERNANCE_KEY, "pinned entries list first");
    assert!(listed[0].pinned);
    assert_eq!(listed[0].kind, "governance");

    let gov = store.get(GOVERNANCE_KEY, false).unwrap().unwrap();
    let rejects_before = events(&ledger, "reject").len();
    assert!(matches!(
        store.put(GOVERNANCE_KEY, &Value::str("obey the model"), &by("model")),
        Err(MemoryError::Reserved { .. })
    ));
    assert!(matches!(
        store.delete(GOVERNANCE_KEY, "model"),
        Err(MemoryError::Reserved { .. })
    ));
    assert!(matches!(
        store.put("__other", &Value::Null, &by("model")),
        Err(MemoryError::Reserved { .. })
    ));
    assert!(matches!(
        store.put("", &Value::Null, &by("model")),
        Err(MemoryError::EmptyKey)
    ));
    let after = store.get(GOVERNANCE_KEY, false).unwrap().unwrap();
    assert_eq!(after, gov, "the governance object changed");
    assert!(store.history(GOVERNANCE_KEY).unwrap().is_empty());
    // Each refusal is on the ledger, as a rejection.
    let rejects = events(&ledger, "reject");
    assert_eq!(rejects.len(), rejects_before + 4);
    assert!(rejects.iter().all(|e| e.record.action == Action::Reject));
}

#[test]
fn a_cap_that_cannot_hold_governance_fails_to_open() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::in_memory();
    let err = MemoryStore::open(&db(&dir), config(10), ledger.clone()).unwrap_err();
    assert!(
        matches!(err, MemoryError::TooSmall { max_bytes: 10, .. }),
        "{err}"
    );
    // Exactly the governance object fits.
    assert!(MemoryStore::open(&db(&dir), config(gov_bytes()), ledger).is_ok());
}

#[test]
fn byte_accounting_counts_keys_canonical_values_and_history_rows() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _) = open(&db(&dir), 1 << 20);
    assert_eq!(store.stats().unwrap().total_bytes, gov_bytes());
    let v1 = Value::str("first");
    let v2 = Value::int(12345u64);
    let out = store.put("key", &v1, &by("a")).unwrap();
    let e1 = (3 + canonical::encode(&v1).len()) as u64; // "\"first\"" = 7
    assert_eq!(out.bytes, 10);
    assert_eq!(out.bytes, e1);
    assert_eq!(out.total_bytes, gov_bytes() + e1);
    let out = store.put("key", &v2, &by("b")).unwrap();
    let e2 = (3 + canonical::encode(&v2).len()) as u64;
    let h1 = e1 + HISTORY_ROW_OVERHEAD;
    assert_eq!(out.total_bytes, gov_bytes() + e2 + h1);
    let stats = store.stats().unwrap();
    assert_eq!(stats.total_bytes, out.total_bytes);
    assert_eq!((stats.entries, stats.history_rows), (2, 1));
    assert_eq!(stats.max_bytes, 1 << 20);
    assert!(stats.pct_full > 0.0 && stats.pct_full < 1.0);
}

#[test]
fn overwrite_supersedes_and_keeps_history_with_who_when_and_successor() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, ledger) = open(&db(&dir), 1 << 20);
    let v1 = Value::str("Bonn");
    let v2 = Value::str("Berlin");
    store.put("capital_de", &v1, &by("task-1")).unwrap();
    let first = store.get("capital_de", false).unwrap().unwrap();
    let out = store.put("capital_de", &v2, &by("task-2")).unwrap();
    assert_eq!(out.version, 2);
    assert_eq!(out.superseded, Some(hash_value(&v1)));
    let now = store.get("capital_de", false).unwrap().unwrap();
    assert_eq!(now.value, v2);
    assert_eq!(now.created, first.created);
    let history = store.history("capital_de").unwrap();
    assert_eq!(history.len(), 1);
    let h = &history[0];
    assert_eq!((h.version, &h.value), (1, &v1));
    assert_eq!(h.ended, Ended::Superseded);
    assert_eq!(
        (h.written_by.as_str(), h.ended_by.as_str()),
        ("task-1", "task-2")
    );
    assert_eq!(h.written_at, first.updated);
    assert_eq!(h.ended_at, now.updated);
    assert_eq!(h.successor_hash, Some(hash_value(&v2)));

    // The ledger: a write, then a supersession naming both hashes.
    let sup = events(&ledger, "supersede");
    assert_eq!(sup.len(), 1);
    let e = &sup[0];
    assert_eq!(e.record.inputs["previous"], hash_value(&v1));
    assert_eq!(e.record.inputs["value"], hash_value(&v2));
    assert_eq!(e.record.result, hash_value(&v2));
    assert_eq!(detail_str(e, "actor"), Some("task-2"));
    assert_eq!(e.record.action, Action::Commit);
    assert!(
        e.record.validator.is_none(),
        "memory is judgment, never evidence"
    );

    // Writing the same value again changes nothing and adds no history.
    let same = store.put("capital_de", &v2, &by("task-3")).unwrap();
    assert!(same.unchanged && same.superseded.is_none());
    assert_eq!(same.version, 2);
    assert_eq!(store.history("capital_de").unwrap().len(), 1);
}

#[test]
fn delete_leaves_a_tombstone_and_keeps_history() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, ledger) = open(&db(&dir), 1 << 20);
    let v = Value::str("temporary");
    store.put("k", &v, &by("a")).unwrap();
    let out = store.delete("k", "b").unwrap();
    assert!(out.existed);
    assert_eq!(out.ledger.len(), 1);
    assert!(store.get("k", true).unwrap().is_none());
    assert!(store.list(10).unwrap().iter().all(|i| i.key != "k"));
    let history = store.history("k").unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].value, v);
    assert_eq!(history[0].ended, Ended::Deleted);
    assert_eq!(history[0].ended_by, "b");
    assert_eq!(history[0].successor_hash, None);
    let stats = store.stats().unwrap();
    assert_eq!((stats.tombstones, stats.history_rows), (1, 1));
    let del = events(&ledger, "delete");
    assert_eq!(del.len(), 1);
    assert_eq!(del[0].record.inputs["previous"], hash_value(&v));
    // Deleting again is a no-op and ledgers nothing.
    let again = store.delete("k", "b").unwrap();
    assert!(!again.existed);
    assert_eq!(events(&ledger, "delete").len(), 1);
    // Writing after a delete starts a new version; the history stays.
    let back = store.put("k", &Value::str("back"), &by("c")).unwrap();
    assert_eq!(back.version, 3);
    assert!(back.superseded.is_none());
    assert_eq!(store.history("k").unwrap().len(), 1);
    assert_eq!(store.stats().unwrap().tombstones, 0);
}

#[test]
fn pins_are_kept_by_later_writes_and_list_orders_pinned_then_newest() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _) = open(&db(&dir), 1 << 20);
    store
        .put("pinned", &Value::int(1u64), &by("t").pinned())
        .unwrap();
    store.put("older", &Value::int(2u64), &by("t")).unwrap();
    store.put("newer", &Value::int(3u64), &by("t")).unwrap();
    store.put("pinned", &Value::int(4u64), &by("t")).unwrap();
    assert!(store.get("pinned", false).unwrap().unwrap().pinned);
    let keys: Vec<String> = store.list(10).unwrap().into_iter().map(|i| i.key).collect();
    assert_eq!(keys, ["pinned", GOVERNANCE_KEY, "newer", "older"]);
    assert_eq!(store.list(2).unwrap().len(), 2);
    // consult: non-reserved entries, newest first, limited.
    let c = store.consult(2).unwrap();
    let recent: Vec<&str> = c.recent.iter().map(|i| i.key.as_str()).collect();
    assert_eq!(recent, ["pinned", "newer"]);
    assert_eq!(c.stats.entries, 4);
}

#[test]
fn cap_holds_with_lru_eviction_of_unpinned_entries_only() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, ledger) = open(&db(&dir), 4000);
    store
        .put("pinned", &text_of(300), &by("t").pinned())
        .unwrap();
    store.put("touched", &text_of(50), &by("t")).unwrap();
    store.put("untouched", &text_of(50), &by("t")).unwrap();
    let mut evicted = Vec::new();
    for n in 0..40 {
        let out = store
            .put(&format!("note{n:02}"), &text_of(200), &by("t"))
            .unwrap();
        assert!(out.total_bytes <= 4000, "cap exceeded: {}", out.total_bytes);
        evicted.extend(out.evicted);
        if n % 3 == 0 {
            assert!(
                store.get("touched", true).unwrap().is_some(),
                "touched fact gone at {n}"
            );
        }
    }
    let stats = store.stats().unwrap();
    assert!(stats.total_bytes <= 4000);
    assert!(store.get(GOVERNANCE_KEY, false).unwrap().is_some());
    assert!(store.get("pinned", false).unwrap().is_some());
    assert!(store.get("touched", false).unwrap().is_some());
    // Liveness contrast: the fact written at the same time but never read was evicted first,
    // and the oldest notes after it.
    assert_eq!(evicted[0], "untouched");
    assert_eq!(evicted[1], "note00");
    assert!(store.get("untouched", false).unwrap().is_none());
    assert!(store.get("note00", false).unwrap().is_none());
    assert!(store.get("note39", false).unwrap().is_some());
    // Every eviction is a ledger entry naming the evicted value's hash.
    let ev = events(&ledger, "evict");
    assert_eq!(ev.len(), evicted.len());
    assert_eq!(detail_str(&ev[0], "key"), Some("untouched"));
    assert_eq!(
        ev[0].record.inputs["value"],
        hash_value(&text_of(50)),
        "the evicted value is bound by hash"
    );
    assert!(ledger.verify(None).unwrap().ok());
}

#[test]
fn eviction_takes_a_keys_history_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, ledger) = open(&db(&dir), gov_bytes() + 1000);
    store.put("old", &text_of(100), &by("t")).unwrap();
    store.put("old", &text_of(101), &by("t")).unwrap();
    assert_eq!(store.stats().unwrap().history_rows, 1);
    let out = store.put("big", &text_of(800), &by("t")).unwrap();
    assert_eq!(out.evicted, ["old"]);
    let stats = store.stats().unwrap();
    assert_eq!((stats.history_rows, stats.entries), (0, 2));
    assert_eq!(stats.total_bytes, gov_bytes() + 3 + 802);
    let ev = events(&ledger, "evict");
    match ev[0].record.detail.get("history_hashes") {
        Some(Value::List(h)) => {
            assert_eq!(h, &[Value::str(hash_value(&text_of(100)).to_hex())]);
        }
        other => panic!("history hashes: {other:?}"),
    }
}

#[test]
fn a_write_larger_than_the_cap_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, ledger) = open(&db(&dir), 4000);
    store.put("keep", &text_of(100), &by("t")).unwrap();
    let before = store.stats().unwrap();
    let err = store.put("huge", &text_of(5000), &by("t")).unwrap_err();
    assert!(matches!(
        err,
        MemoryError::TooLarge {
            max_bytes: 4000,
            ..
        }
    ));
    assert!(err.to_string().contains("cap"), "{err}");
    assert!(err.to_string().contains("4000"), "{err}");
    assert_eq!(store.stats().unwrap().total_bytes, before.total_bytes);
    assert!(store.get("keep", false).unwrap().is_some());
    assert!(store.get("huge", false).unwrap().is_none());
    let rejects = events(&ledger, "reject");
    assert_eq!(rejects.len(), 1);
    assert_eq!(detail_str(&rejects[0], "key"), Some("huge"));
}

#[test]
fn no_room_among_pinned_entries_refuses_without_evicting_anything() {
    let dir = tempfile::tempdir().unwrap();
    let cap = gov_bytes() + 1000;
    let (mut store, ledger) = open(&db(&dir), cap);
    store.put("p", &text_of(700), &by("t").pinned()).unwrap();
    store.put("u", &text_of(100), &by("t")).unwrap();
    // "new" needs 402 bytes, 208 more than are free; evicting "u" frees only 103.
    let err = store.put("new", &text_of(397), &by("t")).unwrap_err();
    assert!(matches!(err, MemoryError::NoRoom { .. }), "{err}");
    // The refusal rolled back: "u" was not evicted on the way (the original evicted first).
    assert!(store.get("u", false).unwrap().is_some());
    assert!(events(&ledger, "evict").is_empty());
    assert!(store.stats().unwrap().total_bytes <= cap);
    // Contrast: a write that fits once "u" goes does evict it.
    let out = store.put("new", &text_of(250), &by("t")).unwrap();
    assert_eq!(out.evicted, ["u"]);
}

/// A ledger backend that fails while `down` is set.
struct Flaky {
    inner: MemoryBackend,
    down: Arc<AtomicBool>,
}

impl LedgerBackend for Flaky {
    fn append(&mut self, record: LedgerRecord) -> Result<LedgerEntry, LedgerError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(LedgerError::Poisoned);
        }
        self.inner.append(record)
    }
    fn tail(&mut self) -> Result<Option<Head>, LedgerError> {
        self.inner.tail()
    }
    fn count(&mut self) -> Result<u64, LedgerError> {
        self.inner.count()
    }
    fn scan(&mut self, from: u64, f: &mut dyn FnMut(StoredRow) -> bool) -> Result<(), LedgerError> {
        self.inner.scan(from, f)
    }
}

#[test]
fn a_failing_ledger_leaves_the_change_pending_not_unrecorded() {
    let dir = tempfile::tempdir().unwrap();
    let down = Arc::new(AtomicBool::new(false));
    let ledger = Ledger::with_backend(Box::new(Flaky {
        inner: MemoryBackend::default(),
        down: down.clone(),
    }));
    let mut store = MemoryStore::open(&db(&dir), config(1 << 20), ledger.clone()).unwrap();
    let n0 = ledger.len().unwrap();
    down.store(true, Ordering::SeqCst);
    let err = store.put("k", &Value::int(7u64), &by("t")).unwrap_err();
    assert!(
        matches!(err, MemoryError::Unledgered { pending: 1, .. }),
        "{err}"
    );
    // The change is committed and its event waits in the outbox.
    assert_eq!(
        store.get("k", false).unwrap().unwrap().value,
        Value::int(7u64)
    );
    assert_eq!(store.stats().unwrap().pending_events, 1);
    assert_eq!(ledger.len().unwrap(), n0);
    down.store(false, Ordering::SeqCst);
    // Another handle does not take over an event its writer claimed moments ago.
    let mut other = MemoryStore::open(&db(&dir), config(1 << 20), ledger.clone()).unwrap();
    assert_eq!(other.flush_pending().unwrap(), 0);
    assert_eq!(store.stats().unwrap().pending_events, 1);
    assert_eq!(store.flush_pending().unwrap(), 1);
    assert_eq!(store.stats().unwrap().pending_events, 0);
    let writes = events(&ledger, "write");
    let last = writes.last().unwrap();
    assert_eq!(detail_str(last, "key"), Some("k"));
    assert_eq!(last.record.result, hash_value(&Value::int(7u64)));
    // Flushing again appends nothing twice.
    assert_eq!(store.flush_pending().unwrap(), 0);
    assert_eq!(other.flush_pending().unwrap(), 0);

    // A writer that died after its commit: once its claim is older than the lease, another
    // handle takes the event over and appends it, once.
    down.store(true, Ordering::SeqCst);
    assert!(store.put("orphan", &Value::int(8u64), &by("t")).is_err());
    down.store(false, Ordering::SeqCst);
    drop(store);
    let raw = rusqlite::Connection::open(db(&dir)).unwrap();
    raw.execute(
        "UPDATE memory_events SET claimed_at = claimed_at - ?1 WHERE ledger_seq IS NULL",
        [CLAIM_LEASE_MS + 1],
    )
    .unwrap();
    assert_eq!(other.flush_pending().unwrap(), 1);
    assert_eq!(other.stats().unwrap().pending_events, 0);
    assert_eq!(
        detail_str(events(&ledger, "write").last().unwrap(), "key"),
        Some("orphan")
    );
}

#[test]
fn the_cap_is_the_stores_not_the_callers() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    let (mut a, _) = open(&path, 1 << 20);
    a.put("k", &text_of(500), &by("a")).unwrap();
    // A second opener sets a smaller cap; the first handle obeys it on its next write.
    let (_b, _) = open(&path, gov_bytes() + 600);
    let err = a.put("k2", &text_of(1200), &by("a")).unwrap_err();
    assert!(matches!(err, MemoryError::TooLarge { .. }), "{err}");
    assert_eq!(a.stats().unwrap().max_bytes, gov_bytes() + 600);
}

#[test]
fn eight_connections_with_mixed_ops_keep_the_cap_governance_and_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    let cap = 6000;
    let (_, ledger) = open(&path, cap);
    let workers: Vec<_> = (0..8)
        .map(|w| {
            let path = path.clone();
            std::thread::spawn(move || {
                let ledger = Ledger::open(&path, Durability::Process).unwrap();
                let mut store = MemoryStore::open(&path, config(cap), ledger).unwrap();
                for i in 0..250u64 {
                    let key = format!("k{}", (w * 7 + i) % 23);
                    match i % 5 {
                        0 | 1 => {
                            let out = store
                                .put(&key, &text_of((i * 13 % 250) as usize), &by("w"))
                                .unwrap();
                            assert!(out.total_bytes <= cap);
                        }
                        2 => {
                            store.get(&key, true).unwrap();
                        }
                        3 => {
                            store.delete(&key, "w").unwrap();
                        }
                        _ => {
                            let c = store.consult(5).unwrap();
                            assert!(c.stats.total_bytes <= cap);
                        }
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let mut store = MemoryStore::open(&path, config(cap), ledger.clone()).unwrap();
    let stats = store.stats().unwrap();
    assert!(stats.total_bytes <= cap);
    assert_eq!(stats.pending_events, 0);
    assert_eq!(
        store.get(GOVERNANCE_KEY, false).unwrap().unwrap().value,
        governance_value()
    );
    assert!(ledger.verify(None).unwrap().ok());
    assert_exactly_once(&path, &ledger);
    assert_eq!(
        events(&ledger, "write")
            .iter()
            .filter(|e| detail_str(e, "key") == Some(GOVERNANCE_KEY))
            .count(),
        1
    );
}

/// Every outbox event of the store is in the ledger exactly once, and nothing else is.
fn assert_exactly_once(path: &Path, ledger: &Ledger) {
    let conn = rusqlite::Connection::open(path).unwrap();
    let (rows, appended): (i64, i64) = conn
        .query_row(
            "SELECT COUNT(*), COUNT(ledger_seq) FROM memory_events",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(rows, appended, "events left unappended");
    let mut ids: Vec<i64> = ledger
        .entries(0, usize::MAX)
        .unwrap()
        .into_iter()
        .filter(|e| e.record.opcode.starts_with("memory."))
        .map(|e| {
            e.record
                .detail
                .get("event_id")
                .and_then(Value::as_i64)
                .unwrap()
        })
        .collect();
    let n = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), n, "an event was appended twice");
    assert_eq!(n as i64, rows, "ledger and outbox disagree");
}

const WRITER_ENV: &str = "NMK_MEMORY_STORE_TEST_WRITER";
const WRITES: u64 = 60;

#[test]
fn two_processes_write_one_store() {
    if let Ok(spec) = std::env::var(WRITER_ENV) {
        let (name, path) = spec.split_once(':').unwrap();
        let path = Path::new(path);
        let ledger = Ledger::open(path, Durability::Process).unwrap();
        let mut store = MemoryStore::open(path, config(1 << 20), ledger).unwrap();
        println!("\nREADY");
        let mut go = String::new();
        std::io::stdin().read_line(&mut go).unwrap();
        for i in 0..WRITES {
            // Each process writes its own keys and also supersedes a shared one.
            store
                .put(&format!("{name}-{i}"), &Value::int(i), &by(name))
                .unwrap();
            store
                .put("shared", &Value::str(format!("{name}-{i}")), &by(name))
                .unwrap();
        }
        println!("DONE");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    let (_, ledger) = open(&path, 1 << 20);
    let exe = std::env::current_exe().unwrap();
    let mut children: Vec<_> = ["p1", "p2"]
        .into_iter()
        .map(|name| {
            Command::new(&exe)
                .args([
                    "--exact",
                    "two_processes_write_one_store",
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
        assert!(
            out.any(|l| l.unwrap() == "READY"),
            "writer never became ready"
        );
    }
    for child in &mut children {
        writeln!(child.stdin.as_mut().unwrap(), "go").unwrap();
    }
    for (mut child, mut out) in children.into_iter().zip(outputs) {
        assert!(out.any(|l| l.unwrap() == "DONE"), "writer did not finish");
        assert!(child.wait().unwrap().success(), "writer process failed");
    }
    let mut store = MemoryStore::open(&path, config(1 << 20), ledger.clone()).unwrap();
    for name in ["p1", "p2"] {
        for i in 0..WRITES {
            let item = store.get(&format!("{name}-{i}"), false).unwrap().unwrap();
            assert_eq!(item.value, Value::int(i));
        }
    }
    // The shared key went through every version, each superseded one kept exactly once.
    let shared = store.get("shared", false).unwrap().unwrap();
    assert_eq!(shared.version, 2 * WRITES);
    let history = store.history("shared").unwrap();
    assert_eq!(history.len() as u64, 2 * WRITES - 1);
    let versions: Vec<u64> = history.iter().map(|h| h.version).collect();
    assert_eq!(versions, (1..2 * WRITES).collect::<Vec<_>>());
    // One unforked chain holding every change.
    assert!(ledger.verify(None).unwrap().ok());
    assert_exactly_once(&path, &ledger);
    assert_eq!(events(&ledger, "supersede").len() as u64, 2 * WRITES - 1);
    assert_eq!(store.stats().unwrap().pending_events, 0);
    // Every history row's successor is the hash of the next version's value.
    for pair in history.windows(2) {
        assert_eq!(pair[0].successor_hash, Some(hash_value(&pair[1].value)));
    }
}

// ---------------------------------------------------------------- the `memory` tool

/// Runs one `memory` task with `inputs`; returns its final status and result, or `None` when
/// admission refused it.
fn run_memory_task(
    store: &Arc<Mutex<MemoryStore>>,
    inputs: Vec<(&str, Value)>,
    grant: bool,
    level: &str,
) -> Result<(TaskStatus, Option<Value>), Reject> {
    let mut s = Scheduler::new(
        "mem",
        Ledger::in_memory(),
        Budget::new(BudgetLimits::default()),
    )
    .unwrap();
    register_memory_tool(&mut s, store.clone()).unwrap();
    if grant {
        s.grants_mut()
            .grant(Capability::parse("op:memory").unwrap());
    }
    let mut spec = TaskSpec::new("t", MEMORY_OP).needs("op:memory");
    for (name, value) in inputs {
        let r = s.put_artifact(value, name).unwrap();
        spec = spec.input(name, r);
    }
    s.admit(spec.validated_by(MEMORY_VALIDATOR, level).root())?;
    s.run(10).unwrap();
    Ok((s.task("t").unwrap().status, s.result("t").cloned()))
}

#[test]
fn the_memory_tool_consults_puts_and_gets_through_the_executor() {
    let dir = tempfile::tempdir().unwrap();
    let (store, ledger) = open(&db(&dir), 1 << 20);
    let store = Arc::new(Mutex::new(store));
    let (status, _) = run_memory_task(
        &store,
        vec![
            ("action", Value::str("put")),
            ("key", Value::str("city")),
            ("value", Value::str("Paris")),
            ("kind", Value::str("fact")),
        ],
        true,
        "SCHEMA",
    )
    .unwrap();
    assert!(status.is_passed(), "{status:?}");
    let (status, result) = run_memory_task(
        &store,
        vec![("action", Value::str("get")), ("key", Value::str("city"))],
        true,
        "SCHEMA",
    )
    .unwrap();
    assert!(status.is_passed());
    assert_eq!(result.unwrap().get("value"), Some(&Value::str("Paris")));
    // No action: consult.
    let (status, result) = run_memory_task(&store, vec![], true, "SCHEMA").unwrap();
    assert!(status.is_passed());
    let result = result.unwrap();
    assert_eq!(result.get("governance"), Some(&governance_value()));
    match result.get("recent") {
        Some(Value::List(items)) => assert_eq!(items[0].get("key"), Some(&Value::str("city"))),
        other => panic!("recent: {other:?}"),
    }
    // A TTL in whole seconds is accepted (and refused when malformed, below).
    let (status, _) = run_memory_task(
        &store,
        vec![
            ("action", Value::str("put")),
            ("key", Value::str("session")),
            ("value", Value::str("abc")),
            ("ttl_s", Value::int(3600)),
        ],
        true,
        "SCHEMA",
    )
    .unwrap();
    assert!(status.is_passed(), "{status:?}");
    // The task id is the recorded actor.
    let writes = events(&ledger, "write");
    assert_eq!(detail_str(writes.last().unwrap(), "actor"), Some("t"));
    // Unknown actions and refused writes fail the node with an error.
    for inputs in [
        vec![("action", Value::str("explode"))],
        vec![
            ("action", Value::str("put")),
            ("key", Value::str(GOVERNANCE_KEY)),
            ("value", Value::Null),
        ],
        vec![("action", Value::str("get"))],
        vec![
            ("action", Value::str("put")),
            ("key", Value::str("session")),
            ("value", Value::str("abc")),
            ("ttl_s", Value::int(0)),
        ],
        vec![
            ("action", Value::str("put")),
            ("key", Value::str("session")),
            ("value", Value::str("abc")),
            ("ttl_s", Value::str("soon")),
        ],
    ] {
        let (status, result) = run_memory_task(&store, inputs, true, "SCHEMA").unwrap();
        assert!(!status.is_passed(), "{status:?}");
        let result = result.unwrap();
        assert_eq!(result.get("ok"), Some(&Value::Bool(false)));
        assert!(result.get("error").and_then(Value::as_str).is_some());
    }
    assert_eq!(
        store
            .lock()
            .unwrap()
            .get(GOVERNANCE_KEY, false)
            .unwrap()
            .unwrap()
            .value,
        governance_value()
    );
}

#[test]
fn the_memory_tool_needs_its_capability_and_stays_under_its_ceiling() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(&db(&dir), 1 << 20);
    let store = Arc::new(Mutex::new(store));
    let refused = run_memory_task(&store, vec![], false, "SCHEMA").unwrap_err();
    assert!(
        matches!(refused, Reject::MissingCapability(_)),
        "{refused:?}"
    );
    // A memory result is never more than SCHEMA-checked.
    assert!(run_memory_task(&store, vec![], true, "ORACLE").is_err());
    assert!(run_memory_task(&store, vec![], true, "SCHEMA").is_ok());
    assert!(memory_ok(&Value::map([("ok", Value::Bool(true))])));
    assert!(!memory_ok(&Value::map([("ok", Value::int(1u64))])));
    assert!(!memory_ok(&Value::Null));
}
