//! The memory store: facts and notes the kernel keeps across tasks and processes (spec §3.14).
//!
//! Owns the `memory_*` tables of the kernel database (SQLite, WAL, busy timeout; every change in
//! one IMMEDIATE transaction, so several processes can share one store), the hard byte cap and
//! its LRU eviction, the pinned governance object, and the ledger entries of every change.
//!
//! Beyond the original: a fact is never silently overwritten or deleted. An overwrite moves the
//! old value into `memory_history` with who superseded it, when (the store's logical tick) and
//! the new value's hash; a delete leaves a tombstone and keeps the history; every write,
//! supersession, eviction, delete and refused write appends a ledger entry. Ledger entries go
//! through an outbox (`memory_events`) written in the same transaction as the change, then
//! appended after commit, so a change can never land without its event, and an event whose
//! append failed stays pending until [`MemoryStore::flush_pending`] appends it.
//!
//! **What the cap counts** (`total_bytes`): for each entry, the UTF-8 bytes of its key plus its
//! value's canonical encoding (a tombstone: its key); for each history row, key plus old value
//! plus [`HISTORY_ROW_OVERHEAD`]. SQLite's own page and index overhead is not counted.
//!
//! **Expiry** (§9 D46): a write may carry a time to live ([`PutOptions::expires_after`], wall
//! clock). Past it the entry is invisible at once to `get`, `list`, `stats` and `consult`, and
//! the next write (put or delete) purges it before anything is evicted, with its history,
//! ledgered as `memory.expire`. Until purged, its bytes still count against the cap. A later
//! write without a time to live makes the key permanent again. Expiry applies to pinned
//! entries too: a pin protects from eviction, not from the writer's own deadline.
//!
//! Eviction removes the least recently used unpinned key (by last access, then last update)
//! together with its history, and ledgers the hashes of everything it removed. A write that
//! cannot fit even after evicting every unpinned key is refused and changes nothing.
//!
//! What it may not touch: other tables of the database, the ledger's contents (it only appends),
//! and verdicts: a memory entry is judgment, never evidence (its ledger entries carry level
//! `none`, verification `judgment`).

mod schema;
pub mod tool;

use std::collections::BTreeMap;
use std::path::Path;

use nmk_det::{ContentHash, ValidationLevel, Value, canonical, hash_bytes, hash_value};
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};

pub use schema::{HISTORY_ROW_OVERHEAD, MEMORY_SCHEMA_VERSION};
pub use tool::{MEMORY_OP, MEMORY_VALIDATOR, MemoryTool, memory_ok, register_memory_tool};

use crate::ledger::{Action, Head, Ledger, LedgerError, LedgerRecord};
use crate::store::{Durability, StoreError, open_database};
use crate::verification::Verification;

/// The pinned governance entry's key.
pub const GOVERNANCE_KEY: &str = "__governance__";

/// Prefix of keys reserved for the kernel.
pub const RESERVED_PREFIX: &str = "__";

/// Default byte cap: 100 MiB.
pub const DEFAULT_MAX_BYTES: u64 = 100 << 20;

/// Version of the store's logic, recorded in its ledger entries.
pub const MEMORY_OP_VERSION: &str = "1";

/// The actor recorded for the store's own writes (the governance object).
pub const KERNEL_ACTOR: &str = "kernel";

/// The four-point policy of the governance object.
pub const GOVERNANCE_RULES: [&str; 4] = [
    "ALWAYS CONSULT this memory before acting on a task: read this policy and the recent entries first.",
    "Keep it current: when a fact changes, write the new value; the old one stays as superseded history, never silently replaced.",
    "Stay in bounds: the store has a hard byte cap; the least recently used unpinned entries are evicted to make room, and every eviction is ledgered.",
    "This object is pinned and reserved: it cannot be overwritten, deleted or evicted, and every key starting with __ belongs to the kernel.",
];

/// The governance object as stored.
pub fn governance_value() -> Value {
    Value::map([
        ("policy", Value::str("ALWAYS CONSULT")),
        (
            "rules",
            Value::List(GOVERNANCE_RULES.iter().map(|r| Value::str(*r)).collect()),
        ),
        ("version", Value::int(1u64)),
    ])
}

/// Errors of the memory store.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    /// The database could not be opened or migrated.
    #[error(transparent)]
    Open(#[from] StoreError),
    /// SQLite failed.
    #[error("memory storage: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The memory tables were written by a newer nmk.
    #[error("memory schema version {found}; this nmk supports up to {supported}")]
    SchemaTooNew {
        /// Version found.
        found: i64,
        /// Newest version known.
        supported: i64,
    },
    /// The cap cannot even hold the governance object.
    #[error("memory cap of {max_bytes} bytes cannot hold the governance object ({needed} bytes)")]
    TooSmall {
        /// The cap.
        max_bytes: u64,
        /// Bytes the governance object needs.
        needed: u64,
    },
    /// An empty key.
    #[error("memory keys must not be empty")]
    EmptyKey,
    /// A key reserved for the kernel (`__…`), including the governance object.
    #[error("key {key:?} is reserved for the kernel")]
    Reserved {
        /// The key.
        key: String,
    },
    /// One write larger than the whole cap.
    #[error("write of {bytes} bytes to {key:?} exceeds the memory cap of {max_bytes} bytes")]
    TooLarge {
        /// The key.
        key: String,
        /// Bytes the write needs.
        bytes: u64,
        /// The cap.
        max_bytes: u64,
    },
    /// The write would fit the cap only by evicting pinned entries (or the key's own history).
    #[error(
        "no room for {key:?}: needs {needed} bytes in total, cap is {max_bytes} \
         (only pinned entries or the key's own history remain); nothing was evicted"
    )]
    NoRoom {
        /// The key.
        key: String,
        /// Bytes the key itself would hold (its entry and its history).
        needed: u64,
        /// The cap.
        max_bytes: u64,
    },
    /// A stored value that is not a canonical encoding.
    #[error("stored value of {key:?} is malformed: {why}")]
    Corrupt {
        /// The key.
        key: String,
        /// What is wrong.
        why: String,
    },
    /// The change was committed, but appending its ledger entries failed; they stay pending
    /// (see [`MemoryStore::flush_pending`]).
    #[error("memory change committed but {pending} ledger entries are pending: {source}")]
    Unledgered {
        /// Events not yet in the ledger.
        pending: usize,
        /// The ledger's error.
        #[source]
        source: LedgerError,
    },
}

/// Settings of a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryConfig {
    /// Hard byte cap (see the module doc for what is counted). The cap is kept in the store and
    /// the last opener's value wins; content above a lowered cap is evicted by the next write.
    pub max_bytes: u64,
    /// Durability of each commit.
    pub durability: Durability,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        MemoryConfig {
            max_bytes: DEFAULT_MAX_BYTES,
            durability: Durability::Process,
        }
    }
}

/// How to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutOptions {
    /// Kind label (default `note`).
    pub kind: String,
    /// Pin the entry (never evicted). A pin, once set, is kept by later writes.
    pub pin: bool,
    /// Who writes (task id, `model`, `user`, …), recorded in history and ledger.
    pub actor: String,
    /// Time to live from the write (`None`: never expires).
    pub ttl: Option<std::time::Duration>,
}

impl PutOptions {
    /// An unpinned `note` written by `actor`.
    pub fn by(actor: impl Into<String>) -> PutOptions {
        PutOptions {
            kind: "note".into(),
            pin: false,
            actor: actor.into(),
            ttl: None,
        }
    }

    /// Expiring `ttl` after the write (see the module doc).
    pub fn expires_after(mut self, ttl: std::time::Duration) -> PutOptions {
        self.ttl = Some(ttl);
        self
    }

    /// With another kind.
    pub fn kind(mut self, kind: impl Into<String>) -> PutOptions {
        self.kind = kind.into();
        self
    }

    /// Pinned.
    pub fn pinned(mut self) -> PutOptions {
        self.pin = true;
        self
    }
}

/// The result of a successful [`MemoryStore::put`].
#[derive(Debug, Clone, PartialEq)]
pub struct PutOutcome {
    /// The key.
    pub key: String,
    /// The entry's new version (1 for a first write).
    pub version: u64,
    /// Bytes charged for the entry.
    pub bytes: u64,
    /// Keys evicted to make room, in eviction order.
    pub evicted: Vec<String>,
    /// Store total after the write.
    pub total_bytes: u64,
    /// Hash of the live value this write superseded, if any.
    pub superseded: Option<ContentHash>,
    /// Whether the value, kind and pin were already as written (no history row then).
    pub unchanged: bool,
    /// Ledger heads of the entries this write appended.
    pub ledger: Vec<Head>,
}

/// The result of [`MemoryStore::delete`].
#[derive(Debug, Clone, PartialEq)]
pub struct DeleteOutcome {
    /// Whether a live entry existed (and is now a tombstone).
    pub existed: bool,
    /// Keys evicted to make room for the history row.
    pub evicted: Vec<String>,
    /// Ledger heads appended.
    pub ledger: Vec<Head>,
}

/// A live entry.
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryItem {
    /// The key.
    pub key: String,
    /// The value.
    pub value: Value,
    /// Hash of the value's canonical encoding.
    pub value_hash: ContentHash,
    /// Kind label.
    pub kind: String,
    /// Never evicted.
    pub pinned: bool,
    /// Version (1 = first write).
    pub version: u64,
    /// Who wrote this version.
    pub writer: String,
    /// Logical tick of the first write.
    pub created: u64,
    /// Logical tick of this version.
    pub updated: u64,
    /// Logical tick of the last access.
    pub accessed: u64,
    /// Touched reads.
    pub n_access: u64,
    /// Bytes charged.
    pub bytes: u64,
}

/// How a history row's value stopped being current.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// A later write replaced it.
    Superseded,
    /// A delete ended it.
    Deleted,
}

impl Ended {
    fn as_str(self) -> &'static str {
        match self {
            Ended::Superseded => "superseded",
            Ended::Deleted => "deleted",
        }
    }
}

/// A past value of a key.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryRow {
    /// The key.
    pub key: String,
    /// The version this value was.
    pub version: u64,
    /// The value.
    pub value: Value,
    /// Its hash.
    pub value_hash: ContentHash,
    /// Its kind.
    pub kind: String,
    /// Who wrote it.
    pub written_by: String,
    /// When it was written (logical tick).
    pub written_at: u64,
    /// How it ended.
    pub ended: Ended,
    /// Who ended it.
    pub ended_by: String,
    /// When (logical tick).
    pub ended_at: u64,
    /// Hash of the value that replaced it (`None` for a delete).
    pub successor_hash: Option<ContentHash>,
}

/// One line of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecentItem {
    /// The key.
    pub key: String,
    /// Kind label.
    pub kind: String,
    /// Pinned.
    pub pinned: bool,
    /// Logical tick of the current version.
    pub updated: u64,
}

/// Size of the store.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MemoryStats {
    /// Live entries (governance included).
    pub entries: u64,
    /// Tombstones.
    pub tombstones: u64,
    /// History rows.
    pub history_rows: u64,
    /// Bytes counted against the cap.
    pub total_bytes: u64,
    /// The cap.
    pub max_bytes: u64,
    /// `100 · total / max`.
    pub pct_full: f64,
    /// Ledger events not yet appended.
    pub pending_events: u64,
}

/// What the kernel reads before each task.
#[derive(Debug, Clone, PartialEq)]
pub struct Consultation {
    /// The governance object.
    pub governance: Value,
    /// Most recently updated non-reserved entries, newest first.
    pub recent: Vec<RecentItem>,
    /// Size of the store.
    pub stats: MemoryStats,
}

struct Row {
    value: String,
    value_hash: String,
    kind: String,
    pinned: bool,
    deleted: bool,
    version: u64,
    writer: String,
    created: u64,
    updated: u64,
    bytes: u64,
}

fn u(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn i(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn read_row(tx: &Connection, key: &str) -> rusqlite::Result<Option<Row>> {
    tx.prepare_cached(
        "SELECT value, value_hash, kind, pinned, deleted, version, writer, created, updated, bytes
         FROM memory_entries WHERE key = ?1",
    )?
    .query_row([key], |r| {
        Ok(Row {
            value: r.get(0)?,
            value_hash: r.get(1)?,
            kind: r.get(2)?,
            pinned: r.get(3)?,
            deleted: r.get(4)?,
            version: u(r.get(5)?),
            writer: r.get(6)?,
            created: u(r.get(7)?),
            updated: u(r.get(8)?),
            bytes: u(r.get(9)?),
        })
    })
    .optional()
}

fn next_tick(tx: &Connection) -> rusqlite::Result<u64> {
    tx.execute(
        "UPDATE memory_meta SET value = value + 1 WHERE name = 'tick'",
        [],
    )?;
    tx.query_row(
        "SELECT value FROM memory_meta WHERE name = 'tick'",
        [],
        |r| r.get::<_, i64>(0),
    )
    .map(u)
}

fn cap(tx: &Connection) -> rusqlite::Result<u64> {
    tx.query_row(
        "SELECT value FROM memory_meta WHERE name = 'max_bytes'",
        [],
        |r| r.get::<_, i64>(0),
    )
    .map(u)
}

fn total_bytes(tx: &Connection) -> rusqlite::Result<u64> {
    tx.query_row(
        "SELECT (SELECT COALESCE(SUM(bytes), 0) FROM memory_entries)
              + (SELECT COALESCE(SUM(bytes), 0) FROM memory_history)",
        [],
        |r| r.get::<_, i64>(0),
    )
    .map(u)
}

fn parse_hash(key: &str, text: &str) -> Result<ContentHash, MemoryError> {
    text.parse().map_err(|_| MemoryError::Corrupt {
        key: key.to_owned(),
        why: format!("bad value hash {text:?}"),
    })
}

fn decode_value(key: &str, text: &str) -> Result<Value, MemoryError> {
    canonical::decode(text).map_err(|e| MemoryError::Corrupt {
        key: key.to_owned(),
        why: e.to_string(),
    })
}

/// A change to be ledgered, kept in the outbox until appended.
fn event(name: &str, key: &str, actor: &str, tick: u64, fields: Vec<(&str, Value)>) -> Value {
    let mut map: BTreeMap<String, Value> =
        fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    map.insert("event".into(), Value::str(name));
    map.insert("key".into(), Value::str(key));
    map.insert("actor".into(), Value::str(actor));
    map.insert("tick".into(), Value::int(tick));
    Value::Map(map)
}

/// How long an unappended event stays claimed by the handle that wrote it before another
/// handle's [`MemoryStore::flush_pending`] may take it over.
pub const CLAIM_LEASE_MS: i64 = 60_000;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A unique name for one store handle: process id and a process-wide counter.
fn new_token() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{}-{n}", std::process::id())
}

/// Events written in one transaction, claimed by the writing handle.
struct Outbox<'t> {
    token: &'t str,
    ids: Vec<i64>,
}

impl<'t> Outbox<'t> {
    fn new(token: &'t str) -> Outbox<'t> {
        Outbox {
            token,
            ids: Vec::new(),
        }
    }

    fn push(&mut self, tx: &Transaction<'_>, body: &Value) -> rusqlite::Result<()> {
        tx.prepare_cached(
            "INSERT INTO memory_events (body, claim, claimed_at) VALUES (?1, ?2, ?3)",
        )?
        .execute(params![canonical::encode(body), self.token, now_ms()])?;
        self.ids.push(tx.last_insert_rowid());
        Ok(())
    }
}

/// Purges every entry whose time to live has passed (with its history), ledgering each as
/// `expire`. Returns the keys purged. The governance object never carries an expiry.
fn purge_expired(
    tx: &Transaction<'_>,
    actor: &str,
    outbox: &mut Outbox<'_>,
) -> Result<Vec<String>, MemoryError> {
    let now = now_ms();
    let due: Vec<(String, String, i64, i64)> = tx
        .prepare_cached(
            "SELECT key, value_hash, bytes, expires_at FROM memory_entries
             WHERE deleted = 0 AND expires_at IS NOT NULL AND expires_at <= ?1
             ORDER BY expires_at ASC, key ASC",
        )?
        .query_map([now], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<Result<_, _>>()?;
    if due.is_empty() {
        return Ok(Vec::new());
    }
    let tick = next_tick(tx)?;
    let mut purged = Vec::with_capacity(due.len());
    for (key, value_hash, entry_bytes, expires_at) in due {
        let history: Vec<(String, i64)> = tx
            .prepare_cached("SELECT value_hash, bytes FROM memory_history WHERE key = ?1")?
            .query_map([&key], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        let freed = u(entry_bytes) + history.iter().map(|(_, b)| u(*b)).sum::<u64>();
        tx.execute("DELETE FROM memory_history WHERE key = ?1", [&key])?;
        tx.execute("DELETE FROM memory_entries WHERE key = ?1", [&key])?;
        let total = total_bytes(tx)?;
        let body = event(
            "expire",
            &key,
            actor,
            tick,
            vec![
                ("value_hash", Value::str(value_hash)),
                (
                    "history_hashes",
                    Value::List(history.into_iter().map(|(h, _)| Value::str(h)).collect()),
                ),
                ("expired_at_ms", Value::int(expires_at)),
                ("bytes_freed", Value::int(freed)),
                ("total_bytes", Value::int(total)),
            ],
        );
        outbox.push(tx, &body)?;
        purged.push(key);
    }
    Ok(purged)
}

/// When a write with time to live `ttl` made now expires (wall-clock ms).
fn expiry(ttl: Option<std::time::Duration>) -> Option<i64> {
    ttl.map(|d| now_ms().saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)))
}

/// Evicts least-recently-used unpinned keys other than `keep` until `total ≤ max`. Returns the
/// keys evicted and the total after, or `None` if even evicting everything evictable is not
/// enough (the caller then rolls back).
fn make_room(
    tx: &Transaction<'_>,
    keep: &str,
    mut total: u64,
    max: u64,
    actor: &str,
    tick: u64,
    outbox: &mut Outbox<'_>,
) -> Result<Option<(Vec<String>, u64)>, MemoryError> {
    let mut evicted = Vec::new();
    while total > max {
        let victim: Option<(String, String, bool, i64)> = tx
            .prepare_cached(
                "SELECT key, value_hash, deleted, bytes FROM memory_entries
                 WHERE pinned = 0 AND key <> ?1
                 ORDER BY accessed ASC, updated ASC, key ASC LIMIT 1",
            )?
            .query_row([keep], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .optional()?;
        let Some((key, value_hash, deleted, entry_bytes)) = victim else {
            return Ok(None);
        };
        let history: Vec<(String, i64)> = tx
            .prepare_cached("SELECT value_hash, bytes FROM memory_history WHERE key = ?1")?
            .query_map([&key], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        let freed = u(entry_bytes) + history.iter().map(|(_, b)| u(*b)).sum::<u64>();
        tx.execute("DELETE FROM memory_history WHERE key = ?1", [&key])?;
        tx.execute("DELETE FROM memory_entries WHERE key = ?1", [&key])?;
        total = total.saturating_sub(freed);
        let body = event(
            "evict",
            &key,
            actor,
            tick,
            vec![
                (
                    "value_hash",
                    if deleted {
                        Value::Null
                    } else {
                        Value::str(value_hash)
                    },
                ),
                ("tombstone", Value::Bool(deleted)),
                (
                    "history_hashes",
                    Value::List(history.into_iter().map(|(h, _)| Value::str(h)).collect()),
                ),
                ("bytes_freed", Value::int(freed)),
                ("total_bytes", Value::int(total)),
                ("to_make_room_for", Value::str(keep)),
            ],
        );
        outbox.push(tx, &body)?;
        evicted.push(key);
    }
    Ok(Some((evicted, total)))
}

/// The memory store over one SQLite database. Each handle owns one connection; open one handle
/// per thread or process (all changes are serialised by SQLite's write lock).
pub struct MemoryStore {
    conn: Connection,
    ledger: Ledger,
    token: String,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MemoryStore")
    }
}

impl MemoryStore {
    /// Opens (creating) the store in the kernel database at `path`, sets the cap, installs the
    /// governance object if missing (ledgered), and appends any events a previous process left
    /// pending. Fails if the cap cannot hold the governance object.
    pub fn open(
        path: &Path,
        config: MemoryConfig,
        ledger: Ledger,
    ) -> Result<MemoryStore, MemoryError> {
        let mut conn = open_database(path, config.durability)?;
        let version = schema::ensure(&mut conn)?;
        if version > MEMORY_SCHEMA_VERSION {
            return Err(MemoryError::SchemaTooNew {
                found: version,
                supported: MEMORY_SCHEMA_VERSION,
            });
        }
        let gov_text = canonical::encode(&governance_value());
        let needed = schema::entry_bytes(GOVERNANCE_KEY, &gov_text);
        if needed > config.max_bytes {
            return Err(MemoryError::TooSmall {
                max_bytes: config.max_bytes,
                needed,
            });
        }
        let mut store = MemoryStore {
            conn,
            ledger,
            token: new_token(),
        };
        let token = store.token.clone();
        let mut events = Outbox::new(&token);
        {
            let tx = store
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute(
                "INSERT OR REPLACE INTO memory_meta (name, value) VALUES ('max_bytes', ?1)",
                [i(config.max_bytes)],
            )?;
            if read_row(&tx, GOVERNANCE_KEY)?.is_none() {
                let tick = next_tick(&tx)?;
                let total = total_bytes(&tx)? + needed;
                let Some((evicted, total)) = make_room(
                    &tx,
                    GOVERNANCE_KEY,
                    total,
                    config.max_bytes,
                    KERNEL_ACTOR,
                    tick,
                    &mut events,
                )?
                else {
                    return Err(MemoryError::TooSmall {
                        max_bytes: config.max_bytes,
                        needed,
                    });
                };
                let hash = hash_bytes(gov_text.as_bytes()).to_hex();
                tx.execute(
                    "INSERT INTO memory_entries (key, value, value_hash, kind, pinned, deleted,
                        version, writer, created, updated, accessed, n_access, bytes)
                     VALUES (?1, ?2, ?3, 'governance', 1, 0, 1, ?4, ?5, ?5, ?5, 0, ?6)",
                    params![
                        GOVERNANCE_KEY,
                        gov_text,
                        hash,
                        KERNEL_ACTOR,
                        i(tick),
                        i(needed)
                    ],
                )?;
                let body = event(
                    "write",
                    GOVERNANCE_KEY,
                    KERNEL_ACTOR,
                    tick,
                    vec![
                        ("kind", Value::str("governance")),
                        ("pinned", Value::Bool(true)),
                        ("version", Value::int(1u64)),
                        ("value_hash", Value::str(hash)),
                        ("previous_hash", Value::Null),
                        ("bytes", Value::int(needed)),
                        ("total_bytes", Value::int(total)),
                        (
                            "evicted",
                            Value::List(evicted.into_iter().map(Value::str).collect()),
                        ),
                    ],
                );
                events.push(&tx, &body)?;
            }
            tx.commit()?;
        }
        store.flush_pending()?;
        Ok(store)
    }

    /// The ledger this store appends to.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Appends pending outbox events to the ledger, oldest first; returns how many. It takes
    /// this handle's own pending events (a ledger failure it reported earlier) and events whose
    /// writer's claim is older than [`CLAIM_LEASE_MS`] (a process that died between its commit
    /// and its ledger append); the claim is taken over atomically, so two handles never append
    /// one event. Called by [`MemoryStore::open`]. A writer stalled for longer than the lease
    /// between its commit and its append could still race a takeover; each ledger entry names
    /// its event id, so such a duplicate would be visible.
    pub fn flush_pending(&mut self) -> Result<usize, MemoryError> {
        let ids: Vec<i64> = {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            let now = now_ms();
            tx.execute(
                "UPDATE memory_events SET claim = ?1, claimed_at = ?2
                 WHERE ledger_seq IS NULL
                   AND (claim = ?1 OR claim IS NULL OR claimed_at < ?3)",
                params![self.token, now, now.saturating_sub(CLAIM_LEASE_MS)],
            )?;
            let ids = tx
                .prepare_cached(
                    "SELECT id FROM memory_events
                     WHERE ledger_seq IS NULL AND claim = ?1 ORDER BY id",
                )?
                .query_map([&self.token], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            tx.commit()?;
            ids
        };
        let n = ids.len();
        self.append_events(&ids)?;
        Ok(n)
    }

    fn append_events(&mut self, ids: &[i64]) -> Result<Vec<Head>, MemoryError> {
        let mut heads = Vec::with_capacity(ids.len());
        for (done, id) in ids.iter().enumerate() {
            let row: Option<(String, Option<i64>, Option<String>)> = self
                .conn
                .prepare_cached("SELECT body, ledger_seq, claim FROM memory_events WHERE id = ?1")?
                .query_row([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .optional()?;
            // Only unappended events this handle holds the claim on.
            let Some((body, None, Some(claim))) = row else {
                continue;
            };
            if claim != self.token {
                continue;
            }
            let value = decode_value("<event>", &body)?;
            let record = match self.record_for(*id, value) {
                Ok(r) => r,
                Err(source) => {
                    return Err(MemoryError::Unledgered {
                        pending: ids.len() - done,
                        source,
                    });
                }
            };
            let entry = match self.ledger.append(record) {
                Ok(e) => e,
                Err(source) => {
                    return Err(MemoryError::Unledgered {
                        pending: ids.len() - done,
                        source,
                    });
                }
            };
            self.conn.execute(
                "UPDATE memory_events SET ledger_seq = ?1, ledger_hash = ?2
                 WHERE id = ?3 AND ledger_seq IS NULL",
                params![i(entry.seq), entry.hash.to_hex(), id],
            )?;
            heads.push(entry.head());
        }
        Ok(heads)
    }

    fn record_for(&self, id: i64, body: Value) -> Result<LedgerRecord, LedgerError> {
        let name = body
            .get("event")
            .and_then(Value::as_str)
            .unwrap_or("unknown")
            .to_owned();
        let key = body.get("key").and_then(Value::as_str).unwrap_or("");
        let mut inputs = BTreeMap::new();
        inputs.insert("key".to_owned(), hash_value(&Value::str(key)));
        for (field, input) in [("previous_hash", "previous"), ("value_hash", "value")] {
            if let Some(h) = body
                .get(field)
                .and_then(Value::as_str)
                .and_then(|t| t.parse::<ContentHash>().ok())
            {
                inputs.insert(input.to_owned(), h);
            }
        }
        let result = body
            .get("value_hash")
            .and_then(Value::as_str)
            .and_then(|t| t.parse::<ContentHash>().ok())
            .unwrap_or_else(|| hash_value(&body));
        let action = if name == "reject" {
            Action::Reject
        } else {
            Action::Commit
        };
        let contract = hash_value(&Value::map([
            ("store", Value::str("memory")),
            ("schema", Value::int(MEMORY_SCHEMA_VERSION)),
            ("history_row_overhead", Value::int(HISTORY_ROW_OVERHEAD)),
        ]));
        let mut detail = match body {
            Value::Map(m) => m,
            other => BTreeMap::from([("body".to_owned(), other)]),
        };
        detail.insert("event_id".into(), Value::int(id));
        Ok(LedgerRecord {
            opcode: format!("memory.{name}"),
            op_version: MEMORY_OP_VERSION.into(),
            inputs,
            result,
            contract,
            validator: None,
            level: ValidationLevel::None,
            verification: Verification::Judgment,
            action,
            logical_time: self.ledger.len()?,
            model: None,
            detail: Value::Map(detail),
        })
    }

    /// Records a refused write (nothing changed) in the outbox and the ledger, then returns
    /// `err`.
    fn refuse<T>(&mut self, key: &str, actor: &str, err: MemoryError) -> Result<T, MemoryError> {
        let id = {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            let tick = next_tick(&tx)?;
            let body = event(
                "reject",
                key,
                actor,
                tick,
                vec![("why", Value::str(err.to_string()))],
            );
            let mut outbox = Outbox::new(&self.token);
            outbox.push(&tx, &body)?;
            tx.commit()?;
            outbox.ids
        };
        self.append_events(&id)?;
        Err(err)
    }

    fn check_key(key: &str) -> Result<(), MemoryError> {
        if key.is_empty() {
            Err(MemoryError::EmptyKey)
        } else if key.starts_with(RESERVED_PREFIX) {
            Err(MemoryError::Reserved {
                key: key.to_owned(),
            })
        } else {
            Ok(())
        }
    }

    /// Writes `value` under `key`. A live value that differs is superseded (kept as history);
    /// least recently used unpinned keys are evicted if needed. Refused (and ledgered as
    /// refused, changing nothing): empty or reserved keys, a write larger than the cap, a write
    /// that fits only by evicting pinned entries.
    pub fn put(
        &mut self,
        key: &str,
        value: &Value,
        opts: &PutOptions,
    ) -> Result<PutOutcome, MemoryError> {
        if let Err(e) = Self::check_key(key) {
            return self.refuse(key, &opts.actor, e);
        }
        let text = canonical::encode(value);
        let hash = hash_bytes(text.as_bytes());
        let new_bytes = schema::entry_bytes(key, &text);
        let expires_at = expiry(opts.ttl);
        let token = self.token.clone();
        let mut events = Outbox::new(&token);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        purge_expired(&tx, &opts.actor, &mut events)?;
        let max = cap(&tx)?;
        let old = read_row(&tx, key)?;
        let live_old = old.as_ref().filter(|o| !o.deleted);
        let unchanged = live_old.is_some_and(|o| {
            o.value_hash == hash.to_hex() && o.kind == opts.kind && (o.pinned || !opts.pin)
        });
        let history_add = match live_old {
            Some(o) if !unchanged => schema::history_bytes(key, &o.value),
            _ => 0,
        };
        let own_history: i64 = tx.query_row(
            "SELECT COALESCE(SUM(bytes), 0) FROM memory_history WHERE key = ?1",
            [key],
            |r| r.get(0),
        )?;
        let own = new_bytes + history_add + u(own_history);
        if new_bytes > max {
            drop(tx);
            let err = MemoryError::TooLarge {
                key: key.to_owned(),
                bytes: new_bytes,
                max_bytes: max,
            };
            return self.refuse(key, &opts.actor, err);
        }
        let tick = next_tick(&tx)?;
        let old_bytes = old.as_ref().map_or(0, |o| o.bytes);
        let total = (total_bytes(&tx)? + new_bytes + history_add).saturating_sub(old_bytes);
        let Some((evicted, total)) =
            make_room(&tx, key, total, max, &opts.actor, tick, &mut events)?
        else {
            drop(tx);
            let err = MemoryError::NoRoom {
                key: key.to_owned(),
                needed: own,
                max_bytes: max,
            };
            return self.refuse(key, &opts.actor, err);
        };
        let superseded = match live_old {
            Some(o) if !unchanged => {
                tx.execute(
                    "INSERT INTO memory_history (key, version, value, value_hash, kind,
                        written_by, written_at, ended_how, ended_by, ended_at, successor_hash,
                        bytes)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                    params![
                        key,
                        i(o.version),
                        o.value,
                        o.value_hash,
                        o.kind,
                        o.writer,
                        i(o.updated),
                        Ended::Superseded.as_str(),
                        opts.actor,
                        i(tick),
                        hash.to_hex(),
                        i(history_add)
                    ],
                )?;
                Some(parse_hash(key, &o.value_hash)?)
            }
            _ => None,
        };
        let version = match &old {
            Some(o) if unchanged => o.version,
            Some(o) => o.version + 1,
            None => 1,
        };
        let pinned = opts.pin || old.as_ref().is_some_and(|o| o.pinned);
        let created = old.as_ref().map_or(tick, |o| o.created);
        tx.execute(
            "INSERT INTO memory_entries (key, value, value_hash, kind, pinned, deleted, version,
                writer, created, updated, accessed, n_access, bytes, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6, ?7, ?8, ?9, ?9, 0, ?10, ?11)
             ON CONFLICT (key) DO UPDATE SET value = ?2, value_hash = ?3, kind = ?4,
                pinned = ?5, deleted = 0, version = ?6, writer = ?7, updated = ?9,
                accessed = ?9, bytes = ?10, expires_at = ?11",
            params![
                key,
                text,
                hash.to_hex(),
                opts.kind,
                pinned,
                i(version),
                opts.actor,
                i(created),
                i(tick),
                i(new_bytes),
                expires_at
            ],
        )?;
        let name = if superseded.is_some() {
            "supersede"
        } else {
            "write"
        };
        let body = event(
            name,
            key,
            &opts.actor,
            tick,
            vec![
                ("kind", Value::str(opts.kind.clone())),
                ("pinned", Value::Bool(pinned)),
                ("version", Value::int(version)),
                ("value_hash", Value::str(hash.to_hex())),
                (
                    "previous_hash",
                    superseded.map_or(Value::Null, |h| Value::str(h.to_hex())),
                ),
                ("unchanged", Value::Bool(unchanged)),
                ("expires_at_ms", expires_at.map_or(Value::Null, Value::int)),
                ("bytes", Value::int(new_bytes)),
                ("total_bytes", Value::int(total)),
                (
                    "evicted",
                    Value::List(evicted.iter().cloned().map(Value::str).collect()),
                ),
            ],
        );
        events.push(&tx, &body)?;
        tx.commit()?;
        let ledger = self.append_events(&events.ids)?;
        Ok(PutOutcome {
            key: key.to_owned(),
            version,
            bytes: new_bytes,
            evicted,
            total_bytes: total,
            superseded,
            unchanged,
            ledger,
        })
    }

    /// Reads a live entry (`None` for absent or deleted keys). `touch` records the access (for
    /// LRU eviction): last access tick and access count.
    pub fn get(&mut self, key: &str, touch: bool) -> Result<Option<MemoryItem>, MemoryError> {
        let tx = self.conn.transaction_with_behavior(if touch {
            TransactionBehavior::Immediate
        } else {
            TransactionBehavior::Deferred
        })?;
        let row = tx
            .prepare_cached(
                "SELECT value, value_hash, kind, pinned, deleted, version, writer, created,
                        updated, accessed, n_access, bytes
                 FROM memory_entries
                 WHERE key = ?1 AND (expires_at IS NULL OR expires_at > ?2)",
            )?
            .query_row(params![key, now_ms()], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, bool>(3)?,
                    r.get::<_, bool>(4)?,
                    r.get::<_, i64>(5)?,
                    r.get::<_, String>(6)?,
                    r.get::<_, i64>(7)?,
                    r.get::<_, i64>(8)?,
                    r.get::<_, i64>(9)?,
                    r.get::<_, i64>(10)?,
                    r.get::<_, i64>(11)?,
                ))
            })
            .optional()?;
        let Some((value, vh, kind, pinned, deleted, version, writer, created, updated, acc, n, b)) =
            row
        else {
            return Ok(None);
        };
        if deleted {
            return Ok(None);
        }
        let (accessed, n_access) = if touch {
            let tick = next_tick(&tx)?;
            tx.execute(
                "UPDATE memory_entries SET accessed = ?1, n_access = n_access + 1 WHERE key = ?2",
                params![i(tick), key],
            )?;
            (tick, u(n) + 1)
        } else {
            (u(acc), u(n))
        };
        tx.commit()?;
        Ok(Some(MemoryItem {
            key: key.to_owned(),
            value: decode_value(key, &value)?,
            value_hash: parse_hash(key, &vh)?,
            kind,
            pinned,
            version: u(version),
            writer,
            created: u(created),
            updated: u(updated),
            accessed,
            n_access,
            bytes: u(b),
        }))
    }

    /// Deletes `key`: the live value moves to history (ended `deleted`, by `actor`) and a
    /// tombstone remains. Reserved keys are refused. Returns `existed: false` (and ledgers
    /// nothing) when there was no live value.
    pub fn delete(&mut self, key: &str, actor: &str) -> Result<DeleteOutcome, MemoryError> {
        if let Err(e) = Self::check_key(key) {
            return self.refuse(key, actor, e);
        }
        let token = self.token.clone();
        let mut events = Outbox::new(&token);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let purged = purge_expired(&tx, actor, &mut events)?;
        let Some(old) = read_row(&tx, key)?.filter(|o| !o.deleted) else {
            if !purged.is_empty() {
                tx.commit()?;
                let ledger = self.append_events(&events.ids)?;
                return Ok(DeleteOutcome {
                    existed: purged.iter().any(|k| k == key),
                    evicted: Vec::new(),
                    ledger,
                });
            }
            return Ok(DeleteOutcome {
                existed: false,
                evicted: Vec::new(),
                ledger: Vec::new(),
            });
        };
        let max = cap(&tx)?;
        let tick = next_tick(&tx)?;
        let hist = schema::history_bytes(key, &old.value);
        let tomb = schema::entry_bytes(key, "");
        let total = (total_bytes(&tx)? + hist + tomb).saturating_sub(old.bytes);
        let Some((evicted, total)) = make_room(&tx, key, total, max, actor, tick, &mut events)?
        else {
            drop(tx);
            let err = MemoryError::NoRoom {
                key: key.to_owned(),
                needed: hist + tomb,
                max_bytes: max,
            };
            return self.refuse(key, actor, err);
        };
        tx.execute(
            "INSERT INTO memory_history (key, version, value, value_hash, kind, written_by,
                written_at, ended_how, ended_by, ended_at, successor_hash, bytes)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, NULL, ?11)",
            params![
                key,
                i(old.version),
                old.value,
                old.value_hash,
                old.kind,
                old.writer,
                i(old.updated),
                Ended::Deleted.as_str(),
                actor,
                i(tick),
                i(hist)
            ],
        )?;
        tx.execute(
            "UPDATE memory_entries SET value = '', value_hash = '', deleted = 1,
                version = version + 1, writer = ?1, updated = ?2, accessed = ?2, bytes = ?3
             WHERE key = ?4",
            params![actor, i(tick), i(tomb), key],
        )?;
        let body = event(
            "delete",
            key,
            actor,
            tick,
            vec![
                ("previous_hash", Value::str(old.value_hash.clone())),
                ("version", Value::int(old.version + 1)),
                ("total_bytes", Value::int(total)),
                (
                    "evicted",
                    Value::List(evicted.iter().cloned().map(Value::str).collect()),
                ),
            ],
        );
        events.push(&tx, &body)?;
        tx.commit()?;
        let ledger = self.append_events(&events.ids)?;
        Ok(DeleteOutcome {
            existed: true,
            evicted,
            ledger,
        })
    }

    /// The past values of `key`, oldest first.
    pub fn history(&mut self, key: &str) -> Result<Vec<HistoryRow>, MemoryError> {
        let rows: Vec<_> = self
            .conn
            .prepare_cached(
                "SELECT version, value, value_hash, kind, written_by, written_at, ended_how,
                        ended_by, ended_at, successor_hash
                 FROM memory_history WHERE key = ?1 ORDER BY version, id",
            )?
            .query_map([key], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, i64>(5)?,
                    r.get::<_, String>(6)?,
                    r.get::<_, String>(7)?,
                    r.get::<_, i64>(8)?,
                    r.get::<_, Option<String>>(9)?,
                ))
            })?
            .collect::<Result<_, _>>()?;
        rows.into_iter()
            .map(|(v, value, vh, kind, wb, wa, how, eb, ea, succ)| {
                Ok(HistoryRow {
                    key: key.to_owned(),
                    version: u(v),
                    value: decode_value(key, &value)?,
                    value_hash: parse_hash(key, &vh)?,
                    kind,
                    written_by: wb,
                    written_at: u(wa),
                    ended: if how == "deleted" {
                        Ended::Deleted
                    } else {
                        Ended::Superseded
                    },
                    ended_by: eb,
                    ended_at: u(ea),
                    successor_hash: succ.map(|s| parse_hash(key, &s)).transpose()?,
                })
            })
            .collect()
    }

    /// Up to `limit` live entries: pinned first, then most recently updated.
    pub fn list(&mut self, limit: usize) -> Result<Vec<RecentItem>, MemoryError> {
        self.listing(limit, true)
    }

    fn listing(
        &mut self,
        limit: usize,
        with_reserved: bool,
    ) -> Result<Vec<RecentItem>, MemoryError> {
        let sql = if with_reserved {
            "SELECT key, kind, pinned, updated FROM memory_entries
             WHERE deleted = 0 AND (expires_at IS NULL OR expires_at > ?2)
             ORDER BY pinned DESC, updated DESC, key ASC LIMIT ?1"
        } else {
            "SELECT key, kind, pinned, updated FROM memory_entries
             WHERE deleted = 0 AND (expires_at IS NULL OR expires_at > ?2)
                AND substr(key, 1, 2) <> '__'
             ORDER BY updated DESC, key ASC LIMIT ?1"
        };
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let items = self
            .conn
            .prepare_cached(sql)?
            .query_map(params![limit, now_ms()], |r| {
                Ok(RecentItem {
                    key: r.get(0)?,
                    kind: r.get(1)?,
                    pinned: r.get(2)?,
                    updated: u(r.get(3)?),
                })
            })?
            .collect::<Result<_, _>>()?;
        Ok(items)
    }

    /// Size of the store.
    pub fn stats(&mut self) -> Result<MemoryStats, MemoryError> {
        let tx = self.conn.transaction()?;
        let count = |sql: &str| tx.query_row(sql, [], |r| r.get::<_, i64>(0)).map(u);
        let entries = tx
            .query_row(
                "SELECT COUNT(*) FROM memory_entries
                 WHERE deleted = 0 AND (expires_at IS NULL OR expires_at > ?1)",
                [now_ms()],
                |r| r.get::<_, i64>(0),
            )
            .map(u)?;
        let tombstones = count("SELECT COUNT(*) FROM memory_entries WHERE deleted = 1")?;
        let history_rows = count("SELECT COUNT(*) FROM memory_history")?;
        let pending_events = count("SELECT COUNT(*) FROM memory_events WHERE ledger_seq IS NULL")?;
        let total = total_bytes(&tx)?;
        let max = cap(&tx)?;
        tx.commit()?;
        let pct_full = if max == 0 {
            100.0
        } else {
            (total as f64 / max as f64 * 10000.0).round() / 100.0
        };
        Ok(MemoryStats {
            entries,
            tombstones,
            history_rows,
            total_bytes: total,
            max_bytes: max,
            pct_full,
            pending_events,
        })
    }

    /// What the kernel reads before each task: the governance object, the `limit` most recently
    /// updated non-reserved entries, and the stats. Reads only (no access is recorded).
    pub fn consult(&mut self, limit: usize) -> Result<Consultation, MemoryError> {
        let governance = match self.get(GOVERNANCE_KEY, false)? {
            Some(item) => item.value,
            None => {
                return Err(MemoryError::Corrupt {
                    key: GOVERNANCE_KEY.into(),
                    why: "the governance object is missing".into(),
                });
            }
        };
        let recent = self.listing(limit, false)?;
        let stats = self.stats()?;
        Ok(Consultation {
            governance,
            recent,
            stats,
        })
    }
}

impl Consultation {
    /// The consultation as a canonical value: the governance object's hash, the recent entries
    /// read (key, kind, pinned, version tick) and the store's counters. What a task's ledger
    /// entries bind (through [`Consultation::content_hash`]).
    pub fn to_value(&self) -> Value {
        Value::map([
            (
                "governance",
                Value::str(hash_value(&self.governance).to_hex()),
            ),
            (
                "recent",
                Value::List(
                    self.recent
                        .iter()
                        .map(|r| {
                            Value::map([
                                ("key", Value::str(r.key.clone())),
                                ("kind", Value::str(r.kind.clone())),
                                ("pinned", Value::Bool(r.pinned)),
                                ("updated", Value::int(r.updated)),
                            ])
                        })
                        .collect(),
                ),
            ),
            ("entries", Value::int(self.stats.entries)),
            ("tombstones", Value::int(self.stats.tombstones)),
            ("history_rows", Value::int(self.stats.history_rows)),
            ("total_bytes", Value::int(self.stats.total_bytes)),
            ("max_bytes", Value::int(self.stats.max_bytes)),
        ])
    }

    /// Hash of [`Consultation::to_value`].
    pub fn content_hash(&self) -> ContentHash {
        hash_value(&self.to_value())
    }
}
