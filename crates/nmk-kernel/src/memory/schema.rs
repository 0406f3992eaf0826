//! The memory store's tables, created idempotently inside the kernel database, and its byte
//! accounting.

use rusqlite::{Connection, TransactionBehavior};

/// Version of the memory tables this build writes (kept in `memory_meta`).
pub const MEMORY_SCHEMA_VERSION: i64 = 2;

/// Version 2 added `memory_entries.expires_at` (wall-clock milliseconds; NULL: never).
const EXPIRY_SCHEMA_VERSION: i64 = 2;

/// Bytes charged for one history row beyond its key and value: the successor's value hash
/// (64 hex digits) and a fixed allowance for the actor, times and reason columns.
pub const HISTORY_ROW_OVERHEAD: u64 = 64 + 64;

const DDL: &str = "
CREATE TABLE IF NOT EXISTS memory_meta (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS memory_entries (
    key        TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    value_hash TEXT NOT NULL,
    kind       TEXT NOT NULL,
    pinned     INTEGER NOT NULL,
    deleted    INTEGER NOT NULL,
    version    INTEGER NOT NULL,
    writer     TEXT NOT NULL,
    created    INTEGER NOT NULL,
    updated    INTEGER NOT NULL,
    accessed   INTEGER NOT NULL,
    n_access   INTEGER NOT NULL,
    bytes      INTEGER NOT NULL,
    expires_at INTEGER
);
CREATE INDEX IF NOT EXISTS memory_entries_lru ON memory_entries (pinned, accessed, updated);
CREATE TABLE IF NOT EXISTS memory_history (
    id             INTEGER PRIMARY KEY,
    key            TEXT NOT NULL,
    version        INTEGER NOT NULL,
    value          TEXT NOT NULL,
    value_hash     TEXT NOT NULL,
    kind           TEXT NOT NULL,
    written_by     TEXT NOT NULL,
    written_at     INTEGER NOT NULL,
    ended_how      TEXT NOT NULL,
    ended_by       TEXT NOT NULL,
    ended_at       INTEGER NOT NULL,
    successor_hash TEXT,
    bytes          INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS memory_history_key ON memory_history (key, version);
CREATE TABLE IF NOT EXISTS memory_events (
    id          INTEGER PRIMARY KEY,
    body        TEXT NOT NULL,
    claim       TEXT,
    claimed_at  INTEGER,
    ledger_seq  INTEGER,
    ledger_hash TEXT
);
CREATE INDEX IF NOT EXISTS memory_events_pending ON memory_events (ledger_seq);
";

/// Creates the tables if missing and checks the version. Returns the stored version.
pub fn ensure(conn: &mut Connection) -> rusqlite::Result<i64> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute_batch(DDL)?;
    tx.execute(
        "INSERT OR IGNORE INTO memory_meta (name, value) VALUES ('schema', ?1), ('tick', 0)",
        [MEMORY_SCHEMA_VERSION],
    )?;
    let mut version: i64 = tx.query_row(
        "SELECT value FROM memory_meta WHERE name = 'schema'",
        [],
        |r| r.get(0),
    )?;
    // A version-1 store gains the expiry column (NULL: its entries never expire).
    if version < EXPIRY_SCHEMA_VERSION {
        let has_column: i64 = tx.query_row(
            "SELECT COUNT(*) FROM pragma_table_info('memory_entries') WHERE name = 'expires_at'",
            [],
            |r| r.get(0),
        )?;
        if has_column == 0 {
            tx.execute_batch("ALTER TABLE memory_entries ADD COLUMN expires_at INTEGER")?;
        }
        tx.execute(
            "UPDATE memory_meta SET value = ?1 WHERE name = 'schema'",
            [EXPIRY_SCHEMA_VERSION],
        )?;
        version = EXPIRY_SCHEMA_VERSION;
    }
    tx.commit()?;
    Ok(version)
}

/// Bytes a live (or tombstoned) entry is charged: its key plus its canonical value text.
pub fn entry_bytes(key: &str, value_text: &str) -> u64 {
    (key.len() + value_text.len()) as u64
}

/// Bytes a history row is charged: key, the old value's canonical text, and
/// [`HISTORY_ROW_OVERHEAD`].
pub fn history_bytes(key: &str, value_text: &str) -> u64 {
    entry_bytes(key, value_text) + HISTORY_ROW_OVERHEAD
}
