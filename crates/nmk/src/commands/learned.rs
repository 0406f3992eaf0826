//! What `nmk gate`, `nmk learn` and `nmk primitives` share: the kernel's ledger and registry
//! under the home, gap files, fresh seeds, and JSON views of verdicts and values.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use nmk_det::Value;
use nmk_det::gate::gapfile::{GapFile, GapFileError};
use nmk_det::gate::{Gap, GateConfig};
use nmk_det::sandbox::Sandbox;
use nmk_kernel::learn::{
    Admission, AttemptRecord, LearnOutcome, PrimitiveRecord, PrimitiveRegistry, Provenance,
    Purpose, admit, record_admission,
};
use nmk_kernel::ledger::{Ledger, LedgerEntry};
use nmk_kernel::store::{Durability, database_path};

/// The ledger and the learned-primitive registry of one kernel home.
pub struct Kernel {
    /// The database file.
    pub db: PathBuf,
    /// The proof ledger.
    pub ledger: Ledger,
    /// The learned primitives.
    pub registry: PrimitiveRegistry,
}

/// Opens (creating) the ledger and registry under `home`.
pub fn open(home: &Path) -> Result<Kernel> {
    let db = database_path(home);
    let ledger = Ledger::open(&db, Durability::Process)
        .with_context(|| format!("opening {}", db.display()))?;
    let registry = PrimitiveRegistry::open(&db, Durability::Process)
        .with_context(|| format!("opening {}", db.display()))?;
    Ok(Kernel {
        db,
        ledger,
        registry,
    })
}

/// Reads and parses a gap file (no sandbox needed yet).
pub fn read_gap(path: &Path) -> Result<GapFile, GapFileError> {
    GapFile::read(path)
}

/// A closure that rebuilds a gap and its gate settings from a stored gap source, for re-gating
/// at reload.
pub fn rebuilder(sandbox: Arc<Sandbox>) -> impl FnMut(&str) -> Result<(Gap, GateConfig), String> {
    move |text: &str| {
        let file = GapFile::parse(text).map_err(|e| e.to_string())?;
        let gap = file.build(sandbox.clone()).map_err(|e| e.to_string())?;
        Ok((gap, file.gate_config()))
    }
}

/// A fresh seed for a re-gate: unpredictable to whoever wrote the program (time and process id
/// through SHA-256), recorded in the ledger with the verdict.
pub fn fresh_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let h = nmk_det::hash_bytes(format!("{nanos}:{}", std::process::id()).as_bytes());
    u64::from_le_bytes([
        h.0[0], h.0[1], h.0[2], h.0[3], h.0[4], h.0[5], h.0[6], h.0[7],
    ])
}

/// A value as JSON (its canonical encoding is JSON; tuples, sets and bytes keep their tags).
pub fn value_json(v: &Value) -> serde_json::Value {
    serde_json::from_str(&nmk_det::encode(v)).unwrap_or(serde_json::Value::Null)
}

fn counts(c: Option<(usize, usize)>) -> serde_json::Value {
    match c {
        Some((passed, n)) => serde_json::json!({ "passed": passed, "n": n }),
        None => serde_json::Value::Null,
    }
}

/// A verdict as JSON.
pub fn admission_json(adm: &Admission) -> serde_json::Value {
    let (placebos_failed, placebos) = adm.placebo_counts();
    serde_json::json!({
        "entry": adm.entry,
        "admitted": adm.admitted,
        "reason": adm.reason_str(),
        "n": adm.n,
        "seed": adm.seed,
        "seed2": adm.seed2,
        "sample": counts(adm.sample_counts()),
        "gate": counts(adm.gate_counts()),
        "regate": counts(adm.regate_counts()),
        "placebos": { "failed_as_required": placebos_failed, "run": placebos },
        "deterministic": adm.report.as_ref().and_then(|r| r.deterministic),
        "feedback": adm.feedback,
        "code_hash": adm.code_hash.to_hex(),
        "gap_spec_hash": adm.gap_spec_hash.to_hex(),
        "elapsed_ms": adm.elapsed.as_millis() as u64,
    })
}

/// `passed/n` or `-`.
pub fn fmt_counts(c: Option<(usize, usize)>) -> String {
    c.map_or_else(|| "-".into(), |(p, n)| format!("{p}/{n}"))
}

/// A stored primitive as JSON (code included when `with_code`).
pub fn record_json(rec: &PrimitiveRecord, with_code: bool) -> serde_json::Value {
    let mut v = serde_json::json!({
        "entry": rec.entry,
        "signature": rec.signature,
        "description": rec.description,
        "code_hash": rec.code_hash.to_hex(),
        "gap_spec_hash": rec.gap_spec_hash.to_hex(),
        "gate": {
            "n": rec.gate.n,
            "seed": rec.gate.seed,
            "passed": rec.gate.passed,
            "regate_seed": rec.gate.regate_seed,
            "regate_passed": rec.gate.regate_passed,
        },
        "proposer": rec.proposer,
        "model": rec.model.as_ref().map(|m| serde_json::json!({
            "model": m.model.to_hex(),
            "tokenizer": m.tokenizer.to_hex(),
            "policy": m.policy.to_hex(),
        })),
        "prompt_hash": rec.prompt_hash.map(|h| h.to_hex()),
        "ledger": { "seq": rec.ledger.seq, "hash": rec.ledger.hash.to_hex() },
        "created_at": rec.created_at,
    });
    if with_code && let Some(obj) = v.as_object_mut() {
        obj.insert("code".into(), serde_json::Value::String(rec.code.clone()));
        obj.insert("report".into(), value_json(&rec.report));
    }
    v
}

/// A user's program put through the admission pipeline: the verdict, its ledger entry, and the
/// stored record when it was admitted and registration was asked for.
pub struct Gated {
    /// The verdict.
    pub admission: Admission,
    /// The verdict's ledger entry.
    pub entry: LedgerEntry,
    /// The learned primitive, when registered.
    pub registered: Option<PrimitiveRecord>,
}

/// Gates `code` (a user's program, no model involved) for `gap` under `config`, records the
/// verdict in the ledger and, when admitted and `register`, stores the program as a learned
/// primitive. Shared by `nmk gate` and the server's gap endpoint.
pub fn gate_user_program(
    kernel: &mut Kernel,
    sandbox: &Sandbox,
    gap: &Gap,
    code: &str,
    config: &GateConfig,
    register: bool,
) -> Result<Gated> {
    let admission = admit(gap, code, sandbox, config);
    let provenance = Provenance::user();
    let entry = record_admission(
        &kernel.ledger,
        gap,
        &admission,
        config,
        &provenance,
        Purpose::Admit,
    )?;
    let registered = if admission.admitted && register {
        Some(
            kernel
                .registry
                .register(gap, code, &admission, &entry, &provenance)?,
        )
    } else {
        None
    };
    Ok(Gated {
        admission,
        entry,
        registered,
    })
}

/// One attempt of `nmk learn` as JSON.
pub fn attempt_json(a: &AttemptRecord) -> serde_json::Value {
    serde_json::json!({
        "attempt": a.attempt,
        "reason": a.reason,
        "admitted": a.admitted,
        "tokens": a.tokens,
        "code_hash": a.code_hash.map(|h| h.to_hex()),
        "prompt_hash": a.prompt_hash.to_hex(),
        "ledger_seq": a.ledger.map(|h| h.seq),
        "feedback": a.feedback,
        "elapsed_ms": a.elapsed.as_millis() as u64,
    })
}

/// The outcome of `nmk learn` on one gap as JSON (without the gap file's path).
pub fn outcome_json(outcome: &LearnOutcome) -> serde_json::Value {
    serde_json::json!({
        "entry": outcome.entry,
        "admitted": outcome.admitted,
        "registered": outcome.registered.is_some(),
        "reason": outcome.reason,
        "attempts": outcome.attempts.iter().map(attempt_json).collect::<Vec<_>>(),
        "tokens": outcome.tokens,
        "code": outcome.code,
        "elapsed_ms": outcome.elapsed.as_millis() as u64,
    })
}
