//! The proof ledger: append-only, each entry chained to the previous entry's hash.
//!
//! Every decision of the kernel (a node's verdict, a commit, a commit-trap action) is one
//! [`LedgerEntry`]. Entries carry a gap-free sequence number and the previous entry's hash, and
//! are sealed by a SHA-256 over the canonical encoding of all their fields, so [`Ledger::verify`]
//! detects an edited, deleted, reordered or inserted entry, and — given the last head a reader
//! trusted — a truncated tail. Storage is SQLite (durable, multi-process safe: the tail is read
//! and the new entry written in one immediate transaction) or memory (tests, throwaway runs).

mod entry;
mod sqlite;
mod verify;

use std::io::{BufRead, Read, Write};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

pub use entry::{
    Action, EntryDecodeError, Head, LedgerEntry, LedgerRecord, ModelBinding, ValidatorId,
};
pub use verify::{ChainVerifier, Problem, VerifyReport, verify_rows};

use crate::store::{Durability, StoreError};

/// Errors of the ledger's storage (a broken chain is not an error: see [`VerifyReport`]).
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The database could not be opened or migrated.
    #[error(transparent)]
    Open(#[from] StoreError),
    /// SQLite failed during an operation.
    #[error("ledger storage: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// Another thread panicked while holding the ledger.
    #[error("ledger lock poisoned by a panic elsewhere")]
    Poisoned,
    /// A stored entry could not be decoded for reading.
    #[error("stored ledger entry at row {index} is malformed: {why}")]
    Corrupt {
        /// Row position.
        index: u64,
        /// What is wrong.
        why: String,
    },
    /// Reading or writing an export failed.
    #[error("ledger export: {0}")]
    Io(#[from] std::io::Error),
}

/// One row as stored: the entry's canonical text and, where the store keeps it, its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRow {
    /// Sequence number as indexed by the store.
    pub seq: u64,
    /// The hash column.
    pub hash: String,
    /// The entry's canonical text.
    pub body: String,
}

/// Where entries live. `append` must read the tail and write the new entry atomically.
pub trait LedgerBackend: Send {
    /// Seals `record` after the current tail and stores it; returns the sealed entry once it is
    /// durable to the backend's setting.
    fn append(&mut self, record: LedgerRecord) -> Result<LedgerEntry, LedgerError>;
    /// The last entry's head.
    fn tail(&mut self) -> Result<Option<Head>, LedgerError>;
    /// Number of stored rows.
    fn count(&mut self) -> Result<u64, LedgerError>;
    /// Calls `f` on rows with `seq >= from`, in sequence order, until it returns `false`.
    fn scan(&mut self, from: u64, f: &mut dyn FnMut(StoredRow) -> bool) -> Result<(), LedgerError>;
}

/// A ledger kept in memory.
#[derive(Debug, Default)]
pub struct MemoryBackend {
    rows: Vec<StoredRow>,
}

impl LedgerBackend for MemoryBackend {
    fn append(&mut self, record: LedgerRecord) -> Result<LedgerEntry, LedgerError> {
        let tail = self.tail()?;
        let entry = seal_after(tail, record);
        self.rows.push(StoredRow {
            seq: entry.seq,
            hash: entry.hash.to_hex(),
            body: entry.to_canonical(),
        });
        Ok(entry)
    }

    fn tail(&mut self) -> Result<Option<Head>, LedgerError> {
        match self.rows.last() {
            None => Ok(None),
            Some(row) => LedgerEntry::from_canonical(&row.body)
                .map(|e| Some(e.head()))
                .map_err(|e| LedgerError::Corrupt {
                    index: row.seq,
                    why: e.to_string(),
                }),
        }
    }

    fn count(&mut self) -> Result<u64, LedgerError> {
        Ok(self.rows.len() as u64)
    }

    fn scan(&mut self, from: u64, f: &mut dyn FnMut(StoredRow) -> bool) -> Result<(), LedgerError> {
        for row in self.rows.iter().filter(|r| r.seq >= from) {
            if !f(row.clone()) {
                break;
            }
        }
        Ok(())
    }
}

fn seal_after(tail: Option<Head>, record: LedgerRecord) -> LedgerEntry {
    match tail {
        None => LedgerEntry::seal(0, nmk_det::ContentHash::ZERO, record),
        Some(head) => LedgerEntry::seal(head.seq + 1, head.hash, record),
    }
}

/// A shared handle on one ledger. Cloning shares the same chain.
#[derive(Clone)]
pub struct Ledger {
    backend: Arc<Mutex<Box<dyn LedgerBackend>>>,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ledger")
    }
}

/// Longest JSONL line [`verify_jsonl`] reads before calling the input malformed.
pub const MAX_EXPORT_LINE: usize = 16 << 20;

impl Ledger {
    /// A ledger over any backend.
    pub fn with_backend(backend: Box<dyn LedgerBackend>) -> Ledger {
        Ledger {
            backend: Arc::new(Mutex::new(backend)),
        }
    }

    /// A fresh ledger in memory.
    pub fn in_memory() -> Ledger {
        Ledger::with_backend(Box::new(MemoryBackend::default()))
    }

    /// Opens (creating) the SQLite ledger at `path`.
    pub fn open(path: &Path, durability: Durability) -> Result<Ledger, LedgerError> {
        Ok(Ledger::with_backend(Box::new(sqlite::SqliteBackend::open(
            path, durability,
        )?)))
    }

    fn lock(&self) -> Result<MutexGuard<'_, Box<dyn LedgerBackend>>, LedgerError> {
        self.backend.lock().map_err(|_| LedgerError::Poisoned)
    }

    /// Seals and stores one entry. When this returns `Ok`, the entry is durable to the backend's
    /// setting.
    pub fn append(&self, record: LedgerRecord) -> Result<LedgerEntry, LedgerError> {
        self.lock()?.append(record)
    }

    /// The last entry's head.
    pub fn head(&self) -> Result<Option<Head>, LedgerError> {
        self.lock()?.tail()
    }

    /// Number of entries.
    pub fn len(&self) -> Result<u64, LedgerError> {
        self.lock()?.count()
    }

    /// Whether the ledger has no entries.
    pub fn is_empty(&self) -> Result<bool, LedgerError> {
        Ok(self.len()? == 0)
    }

    /// Up to `limit` decoded entries starting at sequence number `from`.
    pub fn entries(&self, from: u64, limit: usize) -> Result<Vec<LedgerEntry>, LedgerError> {
        let mut out = Vec::new();
        let mut bad = None;
        self.lock()?.scan(from, &mut |row| {
            if out.len() >= limit {
                return false;
            }
            match LedgerEntry::from_canonical(&row.body) {
                Ok(entry) => {
                    out.push(entry);
                    true
                }
                Err(e) => {
                    bad = Some(LedgerError::Corrupt {
                        index: row.seq,
                        why: e.to_string(),
                    });
                    false
                }
            }
        })?;
        match bad {
            Some(err) => Err(err),
            None => Ok(out),
        }
    }

    /// Verifies the whole chain, and against `known_head` when given.
    pub fn verify(&self, known_head: Option<Head>) -> Result<VerifyReport, LedgerError> {
        let mut verifier = ChainVerifier::new(known_head);
        self.lock()?.scan(0, &mut |row| {
            verifier.push(&row.body, Some(&row.hash));
            true
        })?;
        Ok(verifier.finish())
    }

    /// Verifies the entries appended after `start` (a head the caller trusts, e.g. the head
    /// before a run began), or the whole chain when `start` is `None`. Cost is proportional to
    /// the new entries only.
    pub fn verify_since(&self, start: Option<Head>) -> Result<VerifyReport, LedgerError> {
        let Some(start) = start else {
            return self.verify(None);
        };
        let mut verifier = ChainVerifier::after(start);
        self.lock()?.scan(start.seq + 1, &mut |row| {
            verifier.push(&row.body, Some(&row.hash));
            true
        })?;
        Ok(verifier.finish())
    }

    /// Writes every entry as one canonical JSON line; returns the number written.
    pub fn export_jsonl(&self, out: &mut dyn Write) -> Result<u64, LedgerError> {
        let mut written = 0u64;
        let mut failure = None;
        self.lock()?
            .scan(0, &mut |row| match writeln!(out, "{}", row.body) {
                Ok(()) => {
                    written += 1;
                    true
                }
                Err(e) => {
                    failure = Some(e);
                    false
                }
            })?;
        if let Some(e) = failure {
            return Err(LedgerError::Io(e));
        }
        out.flush()?;
        Ok(written)
    }
}

/// Verifies an exported JSONL ledger (as written by [`Ledger::export_jsonl`]).
pub fn verify_jsonl(
    mut input: impl BufRead,
    known_head: Option<Head>,
) -> Result<VerifyReport, std::io::Error> {
    let mut verifier = ChainVerifier::new(known_head);
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = Read::take(&mut input, MAX_EXPORT_LINE as u64 + 1).read_until(b'\n', &mut line)?;
        if n == 0 {
            break;
        }
        let complete = line.last() == Some(&b'\n');
        if complete {
            line.pop();
        }
        let body = if !complete && line.len() > MAX_EXPORT_LINE {
            // Too long to be an entry: record it as malformed and skip to the next newline.
            let mut rest = Vec::new();
            loop {
                rest.clear();
                let m =
                    Read::take(&mut input, MAX_EXPORT_LINE as u64).read_until(b'\n', &mut rest)?;
                if m == 0 || rest.last() == Some(&b'\n') {
                    break;
                }
            }
            String::from("<line too long>")
        } else {
            String::from_utf8(line.clone()).unwrap_or_else(|_| String::from("<not UTF-8>"))
        };
        verifier.push(&body, None);
    }
    Ok(verifier.finish())
}
