//! The learned-primitive registry, kept in the kernel's SQLite store, and how a learned
//! primitive is served.
//!
//! A row holds the program, its hash, the gap it was proven on (spec hash and full source text,
//! so it can be re-gated at start-up without the gap file), the gate's counts, who proposed it
//! and the ledger entry of its admission. A row is never trusted as stored: [`PrimitiveRegistry::
//! reload`] serves a primitive only if its code still hashes to the recorded hash, a sealed
//! `gate` pass in the ledger binds exactly that code, gap and source, and (under
//! [`Recheck::Regate`]) it passes the gate again now, under a fresh seed. Anything else is
//! refused and reported, never served. Only a [`VerifiedPrimitive`] can be called or installed
//! in a scheduler.
//!
//! Calls always run in the sandbox. A call's result carries the gate's provenance (code hash,
//! admission entry, counts) next to its own status; the validator `<entry>_ok` checks the call
//! status and that the code run is the verified code, and certifies no more than SCHEMA: a
//! per-call result is never labelled PROVEN (D11).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use nmk_det::canonical::{decode, encode};
use nmk_det::gate::{Gap, GateConfig};
use nmk_det::sandbox::{CallLimits, CallResult, Sandbox, SandboxError};
use nmk_det::{ContentHash, ValidationLevel, Value, hash_bytes};
use rusqlite::{Connection, OptionalExtension, params};

use super::pipeline::{Admission, GATE_OPCODE, Provenance, Purpose, admit, record_admission};
use crate::capability::Capability;
use crate::commit_trap::ProvenRegistry;
use crate::ledger::{Action, Head, Ledger, LedgerEntry, LedgerError, ModelBinding};
use crate::ops::{ExecCall, ExecError, ExecOutcome, FnValidator, OpSpec};
use crate::scheduler::{Scheduler, SchedulerError};
use crate::store::{Durability, StoreError, open_database};

/// Errors of the registry's storage.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The database could not be opened.
    #[error(transparent)]
    Open(#[from] StoreError),
    /// SQLite failed.
    #[error("primitive registry: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The ledger could not be read or written.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// Only an admitted program, with the ledger entry of its pass, can be registered.
    #[error("refusing to register {0}: {1}")]
    NotAdmitted(String, String),
}

/// How much a stored primitive is re-checked before it is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recheck {
    /// The code hash and the sealed ledger pass that binds code, gap and gap source.
    Hashes,
    /// That, and the gap rebuilt from its stored source and the program re-gated now under a
    /// fresh seed (the verdict is ledgered).
    Regate,
}

/// The gate's counts when the primitive was admitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateCounts {
    /// Held-out instances per seed.
    pub n: usize,
    /// The first seed.
    pub seed: u64,
    /// Instances passed at the first seed.
    pub passed: usize,
    /// The re-gate's seed.
    pub regate_seed: u64,
    /// Instances passed at the second seed.
    pub regate_passed: usize,
}

/// A stored learned primitive, as read (not yet trusted).
#[derive(Debug, Clone, PartialEq)]
pub struct PrimitiveRecord {
    /// The entry function.
    pub entry: String,
    /// The program.
    pub code: String,
    /// The recorded hash of the program.
    pub code_hash: ContentHash,
    /// The gap it was proven on.
    pub gap_spec_hash: ContentHash,
    /// The gap's trusted source text.
    pub gap_source: String,
    /// The gap's signature.
    pub signature: String,
    /// The gap's description.
    pub description: String,
    /// The gate's counts.
    pub gate: GateCounts,
    /// The admission's summary ([`Admission::summary`]).
    pub report: Value,
    /// Who proposed it (`user` for `nmk gate`).
    pub proposer: String,
    /// The model that proposed it, if one did.
    pub model: Option<ModelBinding>,
    /// The prompt's hash, if a model proposed it.
    pub prompt_hash: Option<ContentHash>,
    /// The ledger entry of the admission.
    pub ledger: Head,
    /// Unix seconds when it was registered.
    pub created_at: u64,
}

/// A primitive that passed its re-check in this process: the only kind that is served.
#[derive(Debug, Clone)]
pub struct VerifiedPrimitive {
    record: PrimitiveRecord,
    regate: Option<Admission>,
}

impl VerifiedPrimitive {
    /// The stored record.
    pub fn record(&self) -> &PrimitiveRecord {
        &self.record
    }

    /// The re-gate run at reload, under [`Recheck::Regate`].
    pub fn regate(&self) -> Option<&Admission> {
        self.regate.as_ref()
    }

    /// Runs the primitive on `args` in the sandbox (zero model tokens).
    pub fn call(
        &self,
        sandbox: &Sandbox,
        args: &[Value],
        limits: &CallLimits,
    ) -> Result<CallResult, SandboxError> {
        sandbox.call(&self.record.code, &self.record.entry, args, limits)
    }
}

/// A stored primitive that is not served, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedPrimitive {
    /// The row's entry.
    pub entry: String,
    /// Why it is refused.
    pub reason: String,
}

/// What [`PrimitiveRegistry::reload`] found.
#[derive(Debug, Clone, Default)]
pub struct ReloadReport {
    /// Primitives that passed their re-check.
    pub usable: Vec<VerifiedPrimitive>,
    /// Rows refused, with the reason.
    pub refused: Vec<RefusedPrimitive>,
}

/// The learned-primitive registry.
pub struct PrimitiveRegistry {
    conn: Connection,
    /// Entries verified in this process (registered here or re-checked by `reload`), with the
    /// code hash they were verified with: what [`ProvenRegistry::code_hash`] answers from.
    verified: BTreeMap<String, ContentHash>,
}

impl std::fmt::Debug for PrimitiveRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrimitiveRegistry")
            .field("verified", &self.verified.len())
            .finish_non_exhaustive()
    }
}

const COLUMNS: &str = "entry, code, code_hash, gap_spec_hash, gap_source, signature, \
    description, gate_n, gate_seed, gate_passed, regate_seed, regate_passed, report, proposer, \
    model, prompt_hash, ledger_seq, ledger_hash, created_at";

fn u64_col(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn i64_col(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn binding_value(b: &ModelBinding) -> Value {
    Value::map([
        ("model", Value::str(b.model.to_hex())),
        ("tokenizer", Value::str(b.tokenizer.to_hex())),
        ("policy", Value::str(b.policy.to_hex())),
    ])
}

fn binding_from(text: &str) -> Option<ModelBinding> {
    let v = decode(text).ok()?;
    let h = |k: &str| v.get(k)?.as_str()?.parse::<ContentHash>().ok();
    Some(ModelBinding {
        model: h("model")?,
        tokenizer: h("tokenizer")?,
        policy: h("policy")?,
    })
}

/// The raw text columns of a row, decoded into a record; a malformed row is refused by entry.
struct RawRow {
    entry: String,
    code: String,
    code_hash: String,
    gap_spec_hash: String,
    gap_source: String,
    signature: String,
    description: String,
    nums: [i64; 5],
    report: String,
    proposer: String,
    model: Option<String>,
    prompt_hash: Option<String>,
    ledger_seq: i64,
    ledger_hash: String,
    created_at: i64,
}

fn read_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<RawRow> {
    Ok(RawRow {
        entry: row.get(0)?,
        code: row.get(1)?,
        code_hash: row.get(2)?,
        gap_spec_hash: row.get(3)?,
        gap_source: row.get(4)?,
        signature: row.get(5)?,
        description: row.get(6)?,
        nums: [
            row.get(7)?,
            row.get(8)?,
            row.get(9)?,
            row.get(10)?,
            row.get(11)?,
        ],
        report: row.get(12)?,
        proposer: row.get(13)?,
        model: row.get(14)?,
        prompt_hash: row.get(15)?,
        ledger_seq: row.get(16)?,
        ledger_hash: row.get(17)?,
        created_at: row.get(18)?,
    })
}

impl RawRow {
    fn decode(self) -> Result<PrimitiveRecord, RefusedPrimitive> {
        let entry = self.entry.clone();
        let bad = |what: &str| RefusedPrimitive {
            entry: entry.clone(),
            reason: format!("malformed row: {what}"),
        };
        let hash = |s: &str, what: &str| s.parse::<ContentHash>().map_err(|_| bad(what));
        let model = match &self.model {
            None => None,
            Some(t) => Some(binding_from(t).ok_or_else(|| bad("model"))?),
        };
        let prompt_hash = match &self.prompt_hash {
            None => None,
            Some(t) => Some(hash(t, "prompt_hash")?),
        };
        Ok(PrimitiveRecord {
            code_hash: hash(&self.code_hash, "code_hash")?,
            gap_spec_hash: hash(&self.gap_spec_hash, "gap_spec_hash")?,
            report: decode(&self.report).map_err(|_| bad("report"))?,
            model,
            prompt_hash,
            ledger: Head {
                seq: u64::try_from(self.ledger_seq).map_err(|_| bad("ledger_seq"))?,
                hash: hash(&self.ledger_hash, "ledger_hash")?,
            },
            gate: GateCounts {
                n: usize::try_from(self.nums[0]).unwrap_or(0),
                seed: u64_col(self.nums[1]),
                passed: usize::try_from(self.nums[2]).unwrap_or(0),
                regate_seed: u64_col(self.nums[3]),
                regate_passed: usize::try_from(self.nums[4]).unwrap_or(0),
            },
            entry: self.entry,
            code: self.code,
            gap_source: self.gap_source,
            signature: self.signature,
            description: self.description,
            proposer: self.proposer,
            created_at: u64_col(self.created_at),
        })
    }
}

/// Checks a record against its own hash and the sealed ledger pass it names.
fn check_hashes(rec: &PrimitiveRecord, ledger: &Ledger) -> Result<LedgerEntry, String> {
    if hash_bytes(rec.code.as_bytes()) != rec.code_hash {
        return Err("tampered: the stored code does not match its recorded hash".into());
    }
    let entry = ledger
        .entries(rec.ledger.seq, 1)
        .map_err(|e| format!("ledger unreadable: {e}"))?
        .into_iter()
        .next()
        .ok_or_else(|| format!("no ledger entry {}", rec.ledger.seq))?;
    if entry.hash != rec.ledger.hash || !entry.seal_holds() {
        return Err(format!(
            "ledger entry {} is not the sealed admission the row names",
            rec.ledger.seq
        ));
    }
    let r = &entry.record;
    let input = |k: &str| r.inputs.get(k).copied();
    if r.opcode != GATE_OPCODE || r.action != Action::Pass {
        return Err(format!(
            "ledger entry {} is not a gate pass",
            rec.ledger.seq
        ));
    }
    if input("code") != Some(rec.code_hash) {
        return Err("tampered: the ledger's pass binds other code".into());
    }
    if input("gap") != Some(rec.gap_spec_hash) {
        return Err("tampered: the ledger's pass binds another gap".into());
    }
    if input("gap_source") != Some(hash_bytes(rec.gap_source.as_bytes())) {
        return Err("tampered: the stored gap source is not the one gated".into());
    }
    Ok(entry)
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl PrimitiveRegistry {
    /// Opens the registry in the kernel database at `path` (created and migrated if needed).
    pub fn open(path: &Path, durability: Durability) -> Result<PrimitiveRegistry, RegistryError> {
        Ok(PrimitiveRegistry::from_connection(open_database(
            path, durability,
        )?))
    }

    /// Uses a connection opened by [`crate::store::open_database`] (schema up to date).
    pub fn from_connection(conn: Connection) -> PrimitiveRegistry {
        PrimitiveRegistry {
            conn,
            verified: BTreeMap::new(),
        }
    }

    /// Stores an admitted program for `gap`. `adm` must be a pass of exactly `code` on `gap`,
    /// and `entry` the ledger entry that recorded it. Replaces an earlier primitive of the same
    /// entry name.
    pub fn register(
        &mut self,
        gap: &Gap,
        code: &str,
        adm: &Admission,
        entry: &LedgerEntry,
        provenance: &Provenance,
    ) -> Result<PrimitiveRecord, RegistryError> {
        let refuse = |why: &str| RegistryError::NotAdmitted(gap.entry.clone(), why.to_owned());
        if !adm.admitted {
            return Err(refuse("the program was not admitted"));
        }
        let code_hash = hash_bytes(code.as_bytes());
        if code_hash != adm.code_hash || adm.gap_spec_hash != gap.spec_hash() {
            return Err(refuse("the admission is of other code or another gap"));
        }
        let (gate_passed, regate_passed) = (
            adm.gate_counts().map_or(0, |c| c.0),
            adm.regate_counts().map_or(0, |c| c.0),
        );
        let rec = PrimitiveRecord {
            entry: gap.entry.clone(),
            code: code.to_owned(),
            code_hash,
            gap_spec_hash: adm.gap_spec_hash,
            gap_source: gap.source().to_owned(),
            signature: gap.signature.clone(),
            description: gap.description.clone(),
            gate: GateCounts {
                n: adm.n,
                seed: adm.seed,
                passed: gate_passed,
                regate_seed: adm.seed2,
                regate_passed,
            },
            report: adm.summary(),
            proposer: provenance.proposer.clone(),
            model: provenance.model.clone(),
            prompt_hash: provenance.prompt_hash,
            ledger: entry.head(),
            created_at: now_unix(),
        };
        // The entry must be the pass it claims to be before anything is stored.
        let r = &entry.record;
        if r.opcode != GATE_OPCODE
            || r.action != Action::Pass
            || r.inputs.get("code") != Some(&rec.code_hash)
            || r.inputs.get("gap") != Some(&rec.gap_spec_hash)
            || r.inputs.get("gap_source") != Some(&hash_bytes(rec.gap_source.as_bytes()))
        {
            return Err(refuse("the ledger entry is not this program's pass"));
        }
        self.conn.execute(
            &format!(
                "INSERT OR REPLACE INTO learned_primitives ({COLUMNS}) VALUES \
                 (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, \
                 ?18, ?19)"
            ),
            params![
                rec.entry,
                rec.code,
                rec.code_hash.to_hex(),
                rec.gap_spec_hash.to_hex(),
                rec.gap_source,
                rec.signature,
                rec.description,
                i64_col(rec.gate.n as u64),
                i64_col(rec.gate.seed),
                i64_col(rec.gate.passed as u64),
                i64_col(rec.gate.regate_seed),
                i64_col(rec.gate.regate_passed as u64),
                encode(&rec.report),
                rec.proposer,
                rec.model.as_ref().map(|b| encode(&binding_value(b))),
                rec.prompt_hash.map(|h| h.to_hex()),
                i64_col(rec.ledger.seq),
                rec.ledger.hash.to_hex(),
                i64_col(rec.created_at),
            ],
        )?;
        self.verified.insert(rec.entry.clone(), rec.code_hash);
        Ok(rec)
    }

    fn rows(&self, entry: Option<&str>) -> Result<Vec<RawRow>, RegistryError> {
        let sql = match entry {
            Some(_) => format!("SELECT {COLUMNS} FROM learned_primitives WHERE entry = ?1"),
            None => format!("SELECT {COLUMNS} FROM learned_primitives ORDER BY entry"),
        };
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = match entry {
            Some(e) => stmt.query_map(params![e], read_row)?,
            None => stmt.query_map([], read_row)?,
        };
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// Every stored record, as stored (unverified; malformed rows are reported as refused).
    pub fn list(&self) -> Result<(Vec<PrimitiveRecord>, Vec<RefusedPrimitive>), RegistryError> {
        let mut ok = Vec::new();
        let mut bad = Vec::new();
        for row in self.rows(None)? {
            match row.decode() {
                Ok(r) => ok.push(r),
                Err(r) => bad.push(r),
            }
        }
        Ok((ok, bad))
    }

    /// One stored record, as stored (unverified).
    pub fn get(&self, entry: &str) -> Result<Option<PrimitiveRecord>, RegistryError> {
        Ok(self
            .rows(Some(entry))?
            .into_iter()
            .next()
            .and_then(|r| r.decode().ok()))
    }

    /// Whether a row exists for `entry`.
    pub fn contains(&self, entry: &str) -> Result<bool, RegistryError> {
        Ok(self
            .conn
            .query_row(
                "SELECT 1 FROM learned_primitives WHERE entry = ?1",
                params![entry],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    /// Removes a stored primitive; returns whether one was removed.
    pub fn remove(&mut self, entry: &str) -> Result<bool, RegistryError> {
        self.verified.remove(entry);
        Ok(self.conn.execute(
            "DELETE FROM learned_primitives WHERE entry = ?1",
            params![entry],
        )? > 0)
    }

    /// Re-checks every stored primitive and returns those that may be served. Under
    /// [`Recheck::Regate`], `rebuild_gap` turns a stored gap source into a gap (the binary
    /// parses gap files; the kernel does not), `sandbox` runs the gate and `regate_seed` is the
    /// fresh first seed; every re-gate verdict is ledgered. Rows failing any check are
    /// refused, with the reason, and are not answered by [`ProvenRegistry::code_hash`].
    pub fn reload(
        &mut self,
        ledger: &Ledger,
        recheck: Recheck,
        regate: Option<RegateWith<'_>>,
    ) -> Result<ReloadReport, RegistryError> {
        let mut report = ReloadReport::default();
        let mut regate = regate;
        self.verified.clear();
        for row in self.rows(None)? {
            let rec = match row.decode() {
                Ok(r) => r,
                Err(refused) => {
                    report.refused.push(refused);
                    continue;
                }
            };
            let refuse = |reason: String| RefusedPrimitive {
                entry: rec.entry.clone(),
                reason,
            };
            if let Err(why) = check_hashes(&rec, ledger) {
                report.refused.push(refuse(why));
                continue;
            }
            let mut regate_adm = None;
            if recheck == Recheck::Regate {
                let Some(with) = regate.as_mut() else {
                    report
                        .refused
                        .push(refuse("re-gate asked for but no sandbox given".into()));
                    continue;
                };
                match regate_one(&rec, ledger, with)? {
                    Ok(adm) => regate_adm = Some(adm),
                    Err(why) => {
                        report.refused.push(refuse(why));
                        continue;
                    }
                }
            }
            self.verified.insert(rec.entry.clone(), rec.code_hash);
            report.usable.push(VerifiedPrimitive {
                record: rec,
                regate: regate_adm,
            });
        }
        Ok(report)
    }

    /// Re-checks one stored primitive (see [`PrimitiveRegistry::reload`]).
    pub fn reload_one(
        &mut self,
        entry: &str,
        ledger: &Ledger,
        recheck: Recheck,
        regate: Option<RegateWith<'_>>,
    ) -> Result<Option<Result<VerifiedPrimitive, RefusedPrimitive>>, RegistryError> {
        let Some(row) = self.rows(Some(entry))?.into_iter().next() else {
            return Ok(None);
        };
        let rec = match row.decode() {
            Ok(r) => r,
            Err(refused) => return Ok(Some(Err(refused))),
        };
        let refuse = |reason: String| {
            Ok(Some(Err(RefusedPrimitive {
                entry: entry.to_owned(),
                reason,
            })))
        };
        if let Err(why) = check_hashes(&rec, ledger) {
            self.verified.remove(entry);
            return refuse(why);
        }
        let mut regate_adm = None;
        if recheck == Recheck::Regate {
            let Some(mut with) = regate else {
                return refuse("re-gate asked for but no sandbox given".into());
            };
            match regate_one(&rec, ledger, &mut with)? {
                Ok(adm) => regate_adm = Some(adm),
                Err(why) => {
                    self.verified.remove(entry);
                    return refuse(why);
                }
            }
        }
        self.verified.insert(rec.entry.clone(), rec.code_hash);
        Ok(Some(Ok(VerifiedPrimitive {
            record: rec,
            regate: regate_adm,
        })))
    }
}

/// Builds a gap, and its gate settings, from a stored gap source text (supplied by the binary,
/// which parses gap files; the kernel does not).
pub type RebuildGap<'a> = dyn FnMut(&str) -> Result<(Gap, GateConfig), String> + 'a;

/// What a re-gate at reload needs.
pub struct RegateWith<'a> {
    /// The sandbox the gate runs in.
    pub sandbox: &'a Sandbox,
    /// Builds the gap, and its gate settings, from its stored source text.
    pub rebuild_gap: &'a mut RebuildGap<'a>,
    /// The fresh first seed of the re-gate.
    pub seed: u64,
    /// Instances per seed (`None`: the gap's own n).
    pub n: Option<usize>,
}

fn regate_one(
    rec: &PrimitiveRecord,
    ledger: &Ledger,
    with: &mut RegateWith<'_>,
) -> Result<Result<Admission, String>, RegistryError> {
    let (gap, base) = match (with.rebuild_gap)(&rec.gap_source) {
        Ok(g) => g,
        Err(e) => return Ok(Err(format!("the stored gap no longer builds: {e}"))),
    };
    if gap.spec_hash() != rec.gap_spec_hash || gap.entry != rec.entry {
        return Ok(Err(
            "the rebuilt gap is not the gap the primitive was proven on".into(),
        ));
    }
    let config = GateConfig {
        seed: with.seed,
        n: with.n.unwrap_or(base.n),
        ..base
    };
    let adm = admit(&gap, &rec.code, with.sandbox, &config);
    let provenance = Provenance {
        proposer: rec.proposer.clone(),
        model: rec.model.clone(),
        prompt_hash: rec.prompt_hash,
        attempt: 0,
    };
    record_admission(ledger, &gap, &adm, &config, &provenance, Purpose::Reload)?;
    if adm.admitted {
        Ok(Ok(adm))
    } else {
        Ok(Err(format!(
            "re-gate at seed {} failed: {}",
            with.seed,
            adm.reason_str()
        )))
    }
}

impl ProvenRegistry for PrimitiveRegistry {
    /// Answers only for primitives verified in this process (registered here, or re-checked by
    /// [`PrimitiveRegistry::reload`]); a stored row alone proves nothing.
    fn code_hash(&self, entry: &str) -> Option<ContentHash> {
        self.verified.get(entry).copied()
    }
}

/// The validator name of a learned primitive.
pub fn validator_name(entry: &str) -> String {
    format!("{entry}_ok")
}

/// The capability a task must hold to call a learned primitive.
pub fn capability_name(entry: &str) -> String {
    format!("prim:{entry}")
}

/// Installs a verified primitive in a scheduler: op `<entry>` (sandboxed execution, so
/// syscall-tier under `prim:<entry>`, certifying at most SCHEMA), validator `<entry>_ok`, and the
/// grant of `prim:<entry>`. A task passes its arguments as the input `args` (a list).
///
/// The executor's result is a map: `ok`, `value` (what the program returned), `error`, and
/// the gate's provenance — `primitive`, `code_hash`, `gate_entry` (the admission's ledger hash),
/// `gate_n`, `gate_passed`. The validator passes only when `ok` is true and `code_hash` is the
/// verified code's hash.
pub fn install(
    scheduler: &mut Scheduler,
    primitive: &VerifiedPrimitive,
    sandbox: Arc<Sandbox>,
    limits: CallLimits,
) -> Result<(), SchedulerError> {
    let rec = primitive.record.clone();
    let cap = Capability::parse(&capability_name(&rec.entry))
        .map_err(|e| SchedulerError::Registration(e.to_string()))?;
    let expected = rec.code_hash;
    let entry = rec.entry.clone();
    let executor = move |call: &ExecCall<'_>| -> Result<ExecOutcome, ExecError> {
        let args = match call.inputs.get("args") {
            Some(Value::List(a) | Value::Tuple(a)) => a.clone(),
            Some(_) => return Err(ExecError("input `args` is not a list".into())),
            None => Vec::new(),
        };
        // The hash of what is actually sent to the sandbox, not a copy of a label.
        let code_hash = hash_bytes(rec.code.as_bytes());
        let (ok, value, error) = match sandbox.call(&rec.code, &rec.entry, &args, &limits) {
            Ok(CallResult::Ok(v)) => (true, v, Value::Null),
            Ok(other) => (false, Value::Null, Value::str(other.describe())),
            Err(e) => (false, Value::Null, Value::str(e.to_string())),
        };
        Ok(ExecOutcome::Done(Value::map([
            ("ok", Value::Bool(ok)),
            ("value", value),
            ("error", error),
            ("primitive", Value::str(rec.entry.clone())),
            ("code_hash", Value::str(code_hash.to_hex())),
            ("gate_entry", Value::str(rec.ledger.hash.to_hex())),
            ("gate_n", Value::int(rec.gate.n as u64)),
            ("gate_passed", Value::int(rec.gate.passed as u64)),
        ])))
    };
    scheduler.register_op(OpSpec::syscall(
        &entry,
        "1",
        cap.clone(),
        ValidationLevel::Schema,
        executor,
    ))?;
    let expected_hex = expected.to_hex();
    scheduler.register_validator(
        &validator_name(&entry),
        Arc::new(FnValidator::new(
            &validator_name(&entry),
            "1",
            move |v: &Value, _| {
                Ok(matches!(v.get("ok"), Some(Value::Bool(true)))
                    && v.get("code_hash").and_then(Value::as_str) == Some(expected_hex.as_str()))
            },
        )),
    );
    scheduler.grants_mut().grant(cap);
    Ok(())
}
