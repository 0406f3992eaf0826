//! `nmk memory get|put|list|delete|history|stats|consult`: the kernel's memory store in the
//! kernel home. Every change is the store's own ledgered operation (writes supersede, deletes
//! leave tombstones); this module only parses and prints. Exit codes: 0 done, 1 the store
//! refused or the key is absent, 2 a key the kernel reserves, 3 storage failed.

use std::path::Path;

use anyhow::{Context, Result};
use clap::Subcommand;
use nmk_det::Value;
use nmk_kernel::ledger::{Head, Ledger};
use nmk_kernel::memory::{
    Ended, MemoryConfig, MemoryError, MemoryItem, MemoryStore, PutOptions, RecentItem,
};
use nmk_kernel::store::{Durability, database_path};

use super::Output;
use super::learned::value_json;
use crate::exit::Code;

/// The actor recorded for writes made from the command line.
const ACTOR: &str = "user";

/// `nmk memory …`
#[derive(Debug, Subcommand)]
#[command(
    after_help = "Examples:\n  nmk memory put city Paris\n  nmk memory get city\n  nmk memory list\n  nmk memory consult --json"
)]
pub enum MemoryCommand {
    /// Print a live entry's value (and its metadata with --json).
    #[command(
        after_help = "Examples:\n  nmk memory get city\n  nmk memory get city --json --no-touch"
    )]
    Get {
        /// The key.
        key: String,
        /// Do not record the read as an access (LRU order unchanged).
        #[arg(long)]
        no_touch: bool,
    },
    /// Write a value: JSON if it parses as JSON, else the text as a string. A different live
    /// value is superseded and kept as history.
    #[command(
        after_help = "Examples:\n  nmk memory put city Paris\n  nmk memory put limits '{\"max\": 3}' --kind config --pin\n  nmk memory put session-note \"back at 3\" --ttl 3600 --json"
    )]
    Put {
        /// The key (keys starting with `__` are the kernel's).
        key: String,
        /// The value.
        value: String,
        /// Store the value as a string even if it parses as JSON.
        #[arg(long)]
        string: bool,
        /// Kind label.
        #[arg(long, default_value = "note")]
        kind: String,
        /// Pin the entry (never evicted).
        #[arg(long)]
        pin: bool,
        /// Seconds until the entry expires (invisible at once, purged and ledgered by the
        /// next write); without it the entry never expires.
        #[arg(long, value_name = "SECONDS")]
        ttl: Option<u64>,
    },
    /// Live entries, pinned first, then newest.
    #[command(after_help = "Examples:\n  nmk memory list\n  nmk memory list --limit 10 --json")]
    List {
        /// Most entries to print.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Delete a key (a tombstone; its history is kept).
    #[command(after_help = "Examples:\n  nmk memory delete city\n  nmk memory delete city --json")]
    Delete {
        /// The key.
        key: String,
    },
    /// A key's past values, oldest first.
    #[command(
        after_help = "Examples:\n  nmk memory history city\n  nmk memory history city --json"
    )]
    History {
        /// The key.
        key: String,
    },
    /// Size of the store against its cap.
    #[command(after_help = "Examples:\n  nmk memory stats\n  nmk memory stats --json")]
    Stats,
    /// What the kernel reads before each request: the governance object, recent entries, stats.
    #[command(
        after_help = "Examples:\n  nmk memory consult\n  nmk memory consult --limit 3 --json"
    )]
    Consult {
        /// Most recent entries to read.
        #[arg(long, default_value_t = 10)]
        limit: usize,
    },
}

fn open(home: &Path) -> Result<MemoryStore> {
    let db = database_path(home);
    let ledger = Ledger::open(&db, Durability::Process)
        .with_context(|| format!("opening {}", db.display()))?;
    MemoryStore::open(&db, MemoryConfig::default(), ledger)
        .with_context(|| format!("opening the memory store in {}", db.display()))
}

/// The exit code of a store refusal; `None` for a storage failure (reported as an error).
fn refusal(e: &MemoryError) -> Option<Code> {
    match e {
        MemoryError::EmptyKey | MemoryError::Reserved { .. } => Some(Code::Usage),
        MemoryError::TooLarge { .. } | MemoryError::NoRoom { .. } => Some(Code::CheckFailed),
        _ => None,
    }
}

fn heads(h: &[Head]) -> Vec<serde_json::Value> {
    h.iter()
        .map(|h| serde_json::json!({ "seq": h.seq, "hash": h.hash.to_hex() }))
        .collect()
}

fn items_json(items: &[RecentItem]) -> Vec<serde_json::Value> {
    items
        .iter()
        .map(|i| {
            serde_json::json!({
                "key": i.key, "kind": i.kind, "pinned": i.pinned, "updated": i.updated,
            })
        })
        .collect()
}

fn print_items(items: &[RecentItem]) {
    for i in items {
        println!(
            "  {:<32} {:<12} {}updated {}",
            i.key,
            i.kind,
            if i.pinned { "pinned  " } else { "" },
            i.updated
        );
    }
    if items.is_empty() {
        println!("  (none)");
    }
}

/// Runs `nmk memory`.
pub fn run(home: &Path, out: &Output, cmd: MemoryCommand) -> Result<Code> {
    let mut store = open(home)?;
    match cmd {
        MemoryCommand::Get { key, no_touch } => match store.get(&key, !no_touch)? {
            None => {
                if out.json {
                    out.print_json(&serde_json::json!({ "key": key, "found": false }));
                } else {
                    eprintln!("no live entry {key:?}");
                }
                Ok(Code::CheckFailed)
            }
            Some(item) => {
                if out.json {
                    out.print_json(&item_json(&item));
                } else {
                    match &item.value {
                        Value::Str(s) => println!("{s}"),
                        other => println!("{}", nmk_det::encode(other)),
                    }
                }
                Ok(Code::Success)
            }
        },
        MemoryCommand::Put {
            key,
            value,
            string,
            kind,
            pin,
            ttl,
        } => {
            let parsed = if string {
                Value::str(value)
            } else {
                match serde_json::from_str::<serde_json::Value>(&value) {
                    Ok(j) => Value::from_json(&j),
                    Err(_) => Value::str(value),
                }
            };
            let mut opts = PutOptions::by(ACTOR).kind(kind);
            if pin {
                opts = opts.pinned();
            }
            opts.ttl = ttl.map(std::time::Duration::from_secs);
            match store.put(&key, &parsed, &opts) {
                Ok(o) => {
                    if out.json {
                        out.print_json(&serde_json::json!({
                            "ok": true,
                            "key": o.key,
                            "version": o.version,
                            "bytes": o.bytes,
                            "evicted": o.evicted,
                            "total_bytes": o.total_bytes,
                            "superseded": o.superseded.map(|h| h.to_hex()),
                            "unchanged": o.unchanged,
                            "ledger": heads(&o.ledger),
                        }));
                    } else {
                        println!(
                            "{} v{} ({} bytes{}{}); store {} bytes",
                            o.key,
                            o.version,
                            o.bytes,
                            if o.superseded.is_some() {
                                ", superseded the previous value"
                            } else if o.unchanged {
                                ", unchanged"
                            } else {
                                ""
                            },
                            if o.evicted.is_empty() {
                                String::new()
                            } else {
                                format!(", evicted {:?}", o.evicted)
                            },
                            o.total_bytes
                        );
                    }
                    Ok(Code::Success)
                }
                Err(e) => match refusal(&e) {
                    Some(code) => {
                        if out.json {
                            out.print_json(
                                &serde_json::json!({ "ok": false, "key": key, "error": e.to_string() }),
                            );
                        }
                        eprintln!("refused: {e}");
                        Ok(code)
                    }
                    None => Err(e.into()),
                },
            }
        }
        MemoryCommand::List { limit } => {
            let items = store.list(limit)?;
            if out.json {
                out.print_json(&serde_json::json!({ "entries": items_json(&items) }));
            } else {
                print_items(&items);
            }
            Ok(Code::Success)
        }
        MemoryCommand::Delete { key } => match store.delete(&key, ACTOR) {
            Ok(d) => {
                if out.json {
                    out.print_json(&serde_json::json!({
                        "key": key,
                        "existed": d.existed,
                        "evicted": d.evicted,
                        "ledger": heads(&d.ledger),
                    }));
                } else if d.existed {
                    println!("deleted {key} (tombstone; history kept)");
                } else {
                    eprintln!("no live entry {key:?}");
                }
                Ok(if d.existed {
                    Code::Success
                } else {
                    Code::CheckFailed
                })
            }
            Err(e) => match refusal(&e) {
                Some(code) => {
                    eprintln!("refused: {e}");
                    Ok(code)
                }
                None => Err(e.into()),
            },
        },
        MemoryCommand::History { key } => {
            let rows = store.history(&key)?;
            if out.json {
                out.print_json(&serde_json::json!({
                    "key": key,
                    "history": rows.iter().map(|r| serde_json::json!({
                        "version": r.version,
                        "value": value_json(&r.value),
                        "value_hash": r.value_hash.to_hex(),
                        "kind": r.kind,
                        "written_by": r.written_by,
                        "written_at": r.written_at,
                        "ended": match r.ended { Ended::Superseded => "superseded", Ended::Deleted => "deleted" },
                        "ended_by": r.ended_by,
                        "ended_at": r.ended_at,
                        "successor_hash": r.successor_hash.map(|h| h.to_hex()),
                    })).collect::<Vec<_>>(),
                }));
            } else {
                for r in &rows {
                    println!(
                        "  v{} {} — {} by {} at {}",
                        r.version,
                        nmk_det::encode(&r.value),
                        match r.ended {
                            Ended::Superseded => "superseded",
                            Ended::Deleted => "deleted",
                        },
                        r.ended_by,
                        r.ended_at
                    );
                }
                if rows.is_empty() {
                    println!("  (no past values)");
                }
            }
            Ok(Code::Success)
        }
        MemoryCommand::Stats => {
            let s = store.stats()?;
            if out.json {
                out.print_json(&serde_json::json!({
                    "entries": s.entries,
                    "tombstones": s.tombstones,
                    "history_rows": s.history_rows,
                    "total_bytes": s.total_bytes,
                    "max_bytes": s.max_bytes,
                    "pct_full": s.pct_full,
                    "pending_events": s.pending_events,
                }));
            } else {
                println!(
                    "{} entries, {} tombstones, {} history rows; {} of {} bytes ({}%); {} events pending",
                    s.entries,
                    s.tombstones,
                    s.history_rows,
                    s.total_bytes,
                    s.max_bytes,
                    s.pct_full,
                    s.pending_events
                );
            }
            Ok(Code::Success)
        }
        MemoryCommand::Consult { limit } => {
            let c = store.consult(limit)?;
            if out.json {
                out.print_json(&serde_json::json!({
                    "governance": value_json(&c.governance),
                    "recent": items_json(&c.recent),
                    "stats": {
                        "entries": c.stats.entries,
                        "total_bytes": c.stats.total_bytes,
                        "max_bytes": c.stats.max_bytes,
                        "pct_full": c.stats.pct_full,
                    },
                }));
            } else {
                println!("governance: {}", nmk_det::encode(&c.governance));
                println!("recent:");
                print_items(&c.recent);
                println!(
                    "{} entries, {} of {} bytes",
                    c.stats.entries, c.stats.total_bytes, c.stats.max_bytes
                );
            }
            Ok(Code::Success)
        }
    }
}

/// A live memory entry as JSON (`nmk memory get --json` and the server's memory endpoint).
pub fn item_json(item: &MemoryItem) -> serde_json::Value {
    serde_json::json!({
        "key": item.key,
        "found": true,
        "value": value_json(&item.value),
        "value_hash": item.value_hash.to_hex(),
        "kind": item.kind,
        "pinned": item.pinned,
        "version": item.version,
        "writer": item.writer,
        "created": item.created,
        "updated": item.updated,
        "accessed": item.accessed,
        "n_access": item.n_access,
        "bytes": item.bytes,
    })
}
