//! The kernel's SQLite database: connection settings, durability and schema migrations.
//!
//! One database under the kernel home holds the ledger (and, as they land, memory, learned
//! primitives and run records). WAL mode; every component opens its own connection.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::Connection;

/// How much a committed write survives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Survives a crash of the process (WAL, `synchronous=NORMAL`): the default.
    #[default]
    Process,
    /// Also survives power loss: an fsync per commit (`synchronous=FULL`).
    PowerLoss,
}

/// Errors opening or migrating the database.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite refused.
    #[error("database {path}: {source}")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// The file was written by a newer nmk.
    #[error("database {path} has schema version {found}; this nmk supports up to {supported}")]
    SchemaTooNew {
        /// The database file.
        path: PathBuf,
        /// Version in the file.
        found: i64,
        /// Newest version this build knows.
        supported: i64,
    },
    /// The directory could not be created.
    #[error("creating {path}: {source}")]
    Io {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// Each migration takes the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: the proof ledger.
    "CREATE TABLE ledger (
        seq  INTEGER PRIMARY KEY,
        hash TEXT NOT NULL UNIQUE,
        prev TEXT NOT NULL,
        body TEXT NOT NULL
    );",
    // 2: learned primitives (see `learn::registry`): the code, the gap it was proven on (its
    // source text, so it can be re-gated without the gap file), the gate's counts and the
    // ledger entry of the admission it rests on.
    "CREATE TABLE learned_primitives (
        entry           TEXT PRIMARY KEY,
        code            TEXT NOT NULL,
        code_hash       TEXT NOT NULL,
        gap_spec_hash   TEXT NOT NULL,
        gap_source      TEXT NOT NULL,
        signature       TEXT NOT NULL,
        description     TEXT NOT NULL,
        gate_n          INTEGER NOT NULL,
        gate_seed       INTEGER NOT NULL,
        gate_passed     INTEGER NOT NULL,
        regate_seed     INTEGER NOT NULL,
        regate_passed   INTEGER NOT NULL,
        report          TEXT NOT NULL,
        proposer        TEXT NOT NULL,
        model           TEXT,
        prompt_hash     TEXT,
        ledger_seq      INTEGER NOT NULL,
        ledger_hash     TEXT NOT NULL,
        created_at      INTEGER NOT NULL
    );",
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Where the kernel keeps its state: `$NMK_HOME`, else `$XDG_DATA_HOME/nmk`, else
/// `~/.local/share/nmk`, else `./.nmk`.
pub fn default_home() -> PathBuf {
    if let Some(home) = std::env::var_os("NMK_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(home);
    }
    if let Some(data) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(data).join("nmk");
    }
    match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        Some(home) => PathBuf::from(home).join(".local/share/nmk"),
        None => PathBuf::from(".nmk"),
    }
}

/// The database file inside a kernel home.
pub fn database_path(home: &Path) -> PathBuf {
    home.join("nmk.sqlite")
}

/// Opens (creating if needed) the database at `path`, applies the durability setting and brings
/// the schema up to date.
pub fn open_database(path: &Path, durability: Durability) -> Result<Connection, StoreError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
            path: dir.to_owned(),
            source,
        })?;
    }
    let sql = |source| StoreError::Sqlite {
        path: path.to_owned(),
        source,
    };
    let mut conn = Connection::open(path).map_err(sql)?;
    conn.busy_timeout(Duration::from_secs(10)).map_err(sql)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(sql)?;
    let sync = match durability {
        Durability::Process => "NORMAL",
        Durability::PowerLoss => "FULL",
    };
    conn.pragma_update(None, "synchronous", sync).map_err(sql)?;
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(sql)?;
    migrate(&mut conn).map_err(|e| match e {
        MigrateError::Sqlite(source) => StoreError::Sqlite {
            path: path.to_owned(),
            source,
        },
        MigrateError::TooNew(found) => StoreError::SchemaTooNew {
            path: path.to_owned(),
            found,
            supported: SCHEMA_VERSION,
        },
    })?;
    Ok(conn)
}

enum MigrateError {
    Sqlite(rusqlite::Error),
    TooNew(i64),
}

fn migrate(conn: &mut Connection) -> Result<(), MigrateError> {
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(MigrateError::Sqlite)?;
    let version: i64 = tx
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(MigrateError::Sqlite)?;
    if version > SCHEMA_VERSION {
        return Err(MigrateError::TooNew(version));
    }
    for step in MIGRATIONS
        .iter()
        .skip(usize::try_from(version).unwrap_or(0))
    {
        tx.execute_batch(step).map_err(MigrateError::Sqlite)?;
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)
        .map_err(MigrateError::Sqlite)?;
    tx.commit().map_err(MigrateError::Sqlite)
}
