//! The kernel read endpoints of `nmk serve`: the ledger's tail and its verification, the
//! learned and built-in primitives, their admission proofs, and the memory store (consultation and one key, read
//! without touching). Each call opens its own handles on the kernel home, as the CLI does, so
//! reads never wait behind a decode. Read-only: it writes nothing to the ledger or memory.

use std::path::Path;

use nmk_det::primitives as builtin;
use nmk_kernel::learn::{Recheck, ReloadReport};
use nmk_kernel::ledger::Ledger;
use nmk_kernel::memory::{MemoryConfig, MemoryStore};
use nmk_kernel::store::{Durability, database_path};
use serde_json::{Value as Json, json};

use super::http::ApiError;
use crate::commands::learned::{self, record_json, value_json};
use crate::commands::ledger::format_head;

/// Most ledger entries one read returns.
pub const MAX_LEDGER_LIMIT: usize = 1000;

fn internal(what: &str) -> impl Fn(String) -> ApiError + '_ {
    move |e| ApiError::internal(format!("{what}: {e}"))
}

fn open_ledger(home: &Path) -> Result<Ledger, ApiError> {
    Ledger::open(&database_path(home), Durability::Process)
        .map_err(|e| internal("opening the ledger")(e.to_string()))
}

/// The last `limit` entries, in the JSON of `nmk ledger show --json`.
pub fn ledger_tail(home: &Path, limit: usize) -> Result<Json, ApiError> {
    let ledger = open_ledger(home)?;
    let len = ledger
        .len()
        .map_err(|e| internal("reading the ledger")(e.to_string()))?;
    let entries = ledger
        .entries(len.saturating_sub(limit as u64), limit)
        .map_err(|e| internal("reading the ledger")(e.to_string()))?;
    let list = entries
        .iter()
        .map(|e| serde_json::from_str::<Json>(&e.to_canonical()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| internal("encoding an entry")(e.to_string()))?;
    Ok(Json::Array(list))
}

/// The whole chain verified, in the JSON of `nmk ledger verify --json`.
pub fn ledger_verify(home: &Path) -> Result<Json, ApiError> {
    let ledger = open_ledger(home)?;
    let report = ledger
        .verify(None)
        .map_err(|e| internal("verifying the ledger")(e.to_string()))?;
    Ok(json!({
        "source": database_path(home).display().to_string(),
        "ok": report.ok(),
        "entries": report.entries,
        "head": report.head.as_ref().map(format_head),
        "problems": report.problems.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
    }))
}

/// The home's ledger and registry, and its learned primitives after their hash re-check.
fn rechecked(home: &Path) -> Result<(learned::Kernel, ReloadReport), ApiError> {
    let mut kernel =
        learned::open(home).map_err(|e| internal("opening the registry")(format!("{e:#}")))?;
    let report = kernel
        .registry
        .reload(&kernel.ledger, Recheck::Hashes, None)
        .map_err(|e| internal("re-checking primitives")(e.to_string()))?;
    Ok((kernel, report))
}

/// Learned primitives that pass their hash re-check, the refused ones, and the built-ins.
pub fn primitives(home: &Path) -> Result<Json, ApiError> {
    let (_, report) = rechecked(home)?;
    Ok(json!({
        "learned": report.usable.iter().map(|p| record_json(p.record(), false)).collect::<Vec<_>>(),
        "refused": report.refused.iter().map(|r| json!({ "entry": r.entry, "reason": r.reason })).collect::<Vec<_>>(),
        "recheck": "hashes",
        "builtin": builtin::catalog().iter().map(|p| json!({
            "name": p.name,
            "signature": p.signature,
            "kind": format!("{:?}", p.kind()).to_lowercase(),
        })).collect::<Vec<_>>(),
    }))
}

/// The admission proofs of the learned primitives that pass their hash re-check: each record
/// (gate counts, seeds, provenance, code hash) with its admission entry read back from the
/// chain and whether that entry's hash is the one the record names; `entry` narrows to one
/// primitive and adds its program and gate report (404 when there is no such primitive).
pub fn proofs(home: &Path, entry: Option<&str>) -> Result<Json, ApiError> {
    let (kernel, report) = rechecked(home)?;
    let mut proofs = Vec::new();
    for p in &report.usable {
        let rec = p.record();
        if entry.is_some_and(|e| e != rec.entry) {
            continue;
        }
        let admission = kernel
            .ledger
            .entries(rec.ledger.seq, 1)
            .map_err(|e| internal("reading the ledger")(e.to_string()))?;
        let admission = admission.first();
        let mut v = record_json(rec, entry.is_some());
        if let Some(obj) = v.as_object_mut() {
            obj.insert(
                "admission_entry".into(),
                admission
                    .and_then(|e| serde_json::from_str::<Json>(&e.to_canonical()).ok())
                    .unwrap_or(Json::Null),
            );
            obj.insert(
                "admission_entry_matches".into(),
                admission.is_some_and(|e| e.hash == rec.ledger.hash).into(),
            );
        }
        proofs.push(v);
    }
    match entry {
        Some(e) => proofs
            .pop()
            .ok_or_else(|| ApiError::not_found(format!("no usable learned primitive {e:?}"))),
        None => Ok(json!({
            "object": "list",
            "data": proofs,
            "refused": report.refused.iter().map(|r| json!({ "entry": r.entry, "reason": r.reason })).collect::<Vec<_>>(),
        })),
    }
}

fn open_memory(home: &Path) -> Result<MemoryStore, ApiError> {
    let ledger = open_ledger(home)?;
    MemoryStore::open(&database_path(home), MemoryConfig::default(), ledger)
        .map_err(|e| internal("opening the memory store")(e.to_string()))
}

/// The memory consultation (governance, recent items, stats), as `nmk memory consult --json`.
pub fn memory_consult(home: &Path, limit: usize) -> Result<Json, ApiError> {
    let mut store = open_memory(home)?;
    let c = store
        .consult(limit)
        .map_err(|e| internal("consulting memory")(e.to_string()))?;
    Ok(json!({
        "governance": value_json(&c.governance),
        "recent": c.recent.iter().map(|i| json!({
            "key": i.key, "kind": i.kind, "pinned": i.pinned, "updated": i.updated,
        })).collect::<Vec<_>>(),
        "stats": {
            "entries": c.stats.entries,
            "total_bytes": c.stats.total_bytes,
            "max_bytes": c.stats.max_bytes,
            "pct_full": c.stats.pct_full,
        },
    }))
}

/// One live memory item, read without touching it; 404 when there is none.
pub fn memory_get(home: &Path, key: &str) -> Result<Json, ApiError> {
    let mut store = open_memory(home)?;
    let item = store
        .get(key, false)
        .map_err(|e| internal("reading memory")(e.to_string()))?
        .ok_or_else(|| ApiError::not_found(format!("no live memory entry {key:?}")))?;
    Ok(crate::commands::memory::item_json(&item))
}
