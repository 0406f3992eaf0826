//! The SQLite ledger backend.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::entry::{Head, LedgerEntry, LedgerRecord};
use super::{LedgerBackend, LedgerError, StoredRow, seal_after};
use crate::store::{Durability, open_database};

/// Entries in the `ledger` table of the kernel database.
pub struct SqliteBackend {
    conn: Connection,
}

impl SqliteBackend {
    /// Opens (creating and migrating) the database at `path`.
    pub fn open(path: &Path, durability: Durability) -> Result<SqliteBackend, LedgerError> {
        Ok(SqliteBackend {
            conn: open_database(path, durability)?,
        })
    }
}

fn read_tail(conn: &Connection) -> Result<Option<Head>, LedgerError> {
    let row: Option<(i64, String)> = conn
        .prepare_cached("SELECT seq, body FROM ledger ORDER BY seq DESC LIMIT 1")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    match row {
        None => Ok(None),
        Some((seq, body)) => LedgerEntry::from_canonical(&body)
            .map(|e| Some(e.head()))
            .map_err(|e| LedgerError::Corrupt {
                index: u64::try_from(seq).unwrap_or(0),
                why: e.to_string(),
            }),
    }
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl LedgerBackend for SqliteBackend {
    fn append(&mut self, record: LedgerRecord) -> Result<LedgerEntry, LedgerError> {
        // IMMEDIATE takes the write lock before reading the tail, so two processes appending to
        // one database chain their entries instead of forking the chain.
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let entry = seal_after(read_tail(&tx)?, record);
        tx.prepare_cached("INSERT INTO ledger (seq, hash, prev, body) VALUES (?1, ?2, ?3, ?4)")?
            .execute(params![
                to_i64(entry.seq),
                entry.hash.to_hex(),
                entry.prev.to_hex(),
                entry.to_canonical()
            ])?;
        tx.commit()?;
        Ok(entry)
    }

    fn tail(&mut self) -> Result<Option<Head>, LedgerError> {
        read_tail(&self.conn)
    }

    fn count(&mut self) -> Result<u64, LedgerError> {
        let n: i64 = self
            .conn
            .prepare_cached("SELECT COUNT(*) FROM ledger")?
            .query_row([], |r| r.get(0))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    fn scan(&mut self, from: u64, f: &mut dyn FnMut(StoredRow) -> bool) -> Result<(), LedgerError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT seq, hash, body FROM ledger WHERE seq >= ?1 ORDER BY seq")?;
        let mut rows = stmt.query(params![to_i64(from)])?;
        while let Some(row) = rows.next()? {
            let seq: i64 = row.get(0)?;
            let stored = StoredRow {
                seq: u64::try_from(seq).unwrap_or(0),
                hash: row.get(1)?,
                body: row.get(2)?,
            };
            if !f(stored) {
                break;
            }
        }
        Ok(())
    }
}
