//! One ledger entry: what a decision bound, sealed into a hash chained to the entry before it.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use nmk_det::{ContentHash, Integer, ValidationLevel, Value, canonical, hash_bytes};

use crate::verification::Verification;

/// What a decision did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Commit trap: output released to the caller.
    Emit,
    /// Commit trap: not good enough; repair and try again.
    Repair,
    /// Commit trap: escalate rather than invent.
    Bail,
    /// Commit trap: refused (budget, disabled op, handler error).
    Reject,
    /// Task graph: a node's validator passed.
    Pass,
    /// Task graph: a node's validator failed or errored.
    Fail,
    /// Task graph: the root was committed.
    Commit,
    /// Task graph: a node was aborted (budget, repair exhausted or skipped).
    Abort,
}

const ALL_ACTIONS: [Action; 8] = [
    Action::Emit,
    Action::Repair,
    Action::Bail,
    Action::Reject,
    Action::Pass,
    Action::Fail,
    Action::Commit,
    Action::Abort,
];

impl Action {
    /// The lower-case name stored in the ledger.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Emit => "emit",
            Action::Repair => "repair",
            Action::Bail => "bail",
            Action::Reject => "reject",
            Action::Pass => "pass",
            Action::Fail => "fail",
            Action::Commit => "commit",
            Action::Abort => "abort",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Action {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ALL_ACTIONS
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| format!("unknown action {s:?}"))
    }
}

/// Which registered validator judged, by name and version.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ValidatorId {
    /// Registered name.
    pub name: String,
    /// Version of its logic; a changed validator must change this.
    pub version: String,
}

impl ValidatorId {
    /// A validator identity.
    pub fn new(name: impl Into<String>, version: impl Into<String>) -> Self {
        ValidatorId {
            name: name.into(),
            version: version.into(),
        }
    }
}

/// The model side of a decision that involved a model: what proposed, under which policy.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ModelBinding {
    /// SHA-256 of the model file.
    pub model: ContentHash,
    /// SHA-256 of the tokenizer definition.
    pub tokenizer: ContentHash,
    /// Hash of the decode policy (sampling parameters, template, limits).
    pub policy: ContentHash,
}

/// What the caller records; the ledger adds sequence number, chain link and seal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerRecord {
    /// The op (task kind or commit-trap opcode).
    pub opcode: String,
    /// The op's version.
    pub op_version: String,
    /// Every input the decision consumed, by name, as content hashes (dependency values too).
    pub inputs: BTreeMap<String, ContentHash>,
    /// Content hash of the result judged.
    pub result: ContentHash,
    /// Content hash of the contract judged against.
    pub contract: ContentHash,
    /// The validator that judged; `None` only for judgment-only ops and budget refusals.
    pub validator: Option<ValidatorId>,
    /// The level certified.
    pub level: ValidationLevel,
    /// The verification it supports.
    pub verification: Verification,
    /// What was decided.
    pub action: Action,
    /// Caller-stamped logical time (the kernel's logical clock, never a wall clock).
    pub logical_time: u64,
    /// Model, tokenizer and policy hashes, where a model was involved.
    pub model: Option<ModelBinding>,
    /// Anything else the decision must bind (reason, counts, route), as a canonical value.
    pub detail: Value,
}

/// Position and hash of an entry: what a reader remembers to detect a truncated tail later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Head {
    /// Sequence number (0 for the first entry).
    pub seq: u64,
    /// The entry's hash.
    pub hash: ContentHash,
}

/// A sealed entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEntry {
    /// Position in the chain, from 0, without gaps.
    pub seq: u64,
    /// Hash of the previous entry ([`ContentHash::ZERO`] for the first).
    pub prev: ContentHash,
    /// What was decided.
    pub record: LedgerRecord,
    /// SHA-256 over the canonical encoding of every other field.
    pub hash: ContentHash,
}

impl LedgerEntry {
    /// Seals `record` at `seq` after `prev`.
    pub fn seal(seq: u64, prev: ContentHash, record: LedgerRecord) -> LedgerEntry {
        let hash = hash_bytes(canonical::encode(&unsealed_value(seq, &prev, &record)).as_bytes());
        LedgerEntry {
            seq,
            prev,
            record,
            hash,
        }
    }

    /// This entry's head.
    pub fn head(&self) -> Head {
        Head {
            seq: self.seq,
            hash: self.hash,
        }
    }

    /// The canonical text stored and exported: every field and the seal.
    pub fn to_canonical(&self) -> String {
        let mut value = unsealed_value(self.seq, &self.prev, &self.record);
        if let Value::Map(map) = &mut value {
            map.insert("hash".into(), Value::str(self.hash.to_hex()));
        }
        canonical::encode(&value)
    }

    /// Parses a stored entry strictly (canonical text, exactly the known fields, well-typed).
    /// It does not check the seal: see [`LedgerEntry::seal_holds`].
    pub fn from_canonical(text: &str) -> Result<LedgerEntry, EntryDecodeError> {
        let value = canonical::decode(text).map_err(|e| EntryDecodeError(e.to_string()))?;
        let Value::Map(mut map) = value else {
            return Err(EntryDecodeError("entry is not a map".into()));
        };
        let mut take = |key: &str| {
            map.remove(key)
                .ok_or_else(|| EntryDecodeError(format!("missing field {key:?}")))
        };
        let seq = u64_field(take("seq")?, "seq")?;
        let prev = hash_field(take("prev")?, "prev")?;
        let hash = hash_field(take("hash")?, "hash")?;
        let opcode = str_field(take("opcode")?, "opcode")?;
        let op_version = str_field(take("op_version")?, "op_version")?;
        let inputs = match take("inputs")? {
            Value::Map(m) => m
                .into_iter()
                .map(|(k, v)| hash_field(v, "inputs").map(|h| (k, h)))
                .collect::<Result<BTreeMap<_, _>, _>>()?,
            _ => return Err(EntryDecodeError("inputs is not a map".into())),
        };
        let result = hash_field(take("result")?, "result")?;
        let contract = hash_field(take("contract")?, "contract")?;
        let validator = match take("validator")? {
            Value::Null => None,
            Value::Map(mut m) => {
                let name = str_field(m.remove("name").unwrap_or(Value::Null), "validator.name")?;
                let version = str_field(
                    m.remove("version").unwrap_or(Value::Null),
                    "validator.version",
                )?;
                if !m.is_empty() {
                    return Err(EntryDecodeError("unknown validator field".into()));
                }
                Some(ValidatorId { name, version })
            }
            _ => return Err(EntryDecodeError("validator is not a map".into())),
        };
        // Exact names only: a level written in another case is not the entry that was sealed.
        let level_name = str_field(take("level")?, "level")?;
        let level = level_name
            .parse::<ValidationLevel>()
            .ok()
            .filter(|l| l.as_str() == level_name)
            .ok_or_else(|| {
                EntryDecodeError(format!("level {level_name:?} is not an exact level name"))
            })?;
        let verification = str_field(take("verification")?, "verification")?
            .parse::<Verification>()
            .map_err(|e| EntryDecodeError(e.to_string()))?;
        let action = str_field(take("action")?, "action")?
            .parse::<Action>()
            .map_err(EntryDecodeError)?;
        let logical_time = u64_field(take("t")?, "t")?;
        let model = match take("model")? {
            Value::Null => None,
            Value::Map(mut m) => {
                let mut h = |k: &str| hash_field(m.remove(k).unwrap_or(Value::Null), k);
                let binding = ModelBinding {
                    model: h("model")?,
                    tokenizer: h("tokenizer")?,
                    policy: h("policy")?,
                };
                if !m.is_empty() {
                    return Err(EntryDecodeError("unknown model field".into()));
                }
                Some(binding)
            }
            _ => return Err(EntryDecodeError("model is not a map".into())),
        };
        let detail = take("detail")?;
        if !map.is_empty() {
            let extra: Vec<&String> = map.keys().collect();
            return Err(EntryDecodeError(format!("unknown fields {extra:?}")));
        }
        let record = LedgerRecord {
            opcode,
            op_version,
            inputs,
            result,
            contract,
            validator,
            level,
            verification,
            action,
            logical_time,
            model,
            detail,
        };
        Ok(LedgerEntry {
            seq,
            prev,
            record,
            hash,
        })
    }

    /// Whether the stored hash is the seal of the other fields.
    pub fn seal_holds(&self) -> bool {
        LedgerEntry::seal(self.seq, self.prev, self.record.clone()).hash == self.hash
    }
}

/// A stored entry that is not a well-formed canonical entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed ledger entry: {0}")]
pub struct EntryDecodeError(pub String);

fn unsealed_value(seq: u64, prev: &ContentHash, r: &LedgerRecord) -> Value {
    let hex = |h: &ContentHash| Value::str(h.to_hex());
    Value::map([
        ("seq", Value::int(seq)),
        ("prev", hex(prev)),
        ("opcode", Value::str(r.opcode.clone())),
        ("op_version", Value::str(r.op_version.clone())),
        (
            "inputs",
            Value::Map(r.inputs.iter().map(|(k, h)| (k.clone(), hex(h))).collect()),
        ),
        ("result", hex(&r.result)),
        ("contract", hex(&r.contract)),
        (
            "validator",
            match &r.validator {
                None => Value::Null,
                Some(v) => Value::map([
                    ("name", Value::str(v.name.clone())),
                    ("version", Value::str(v.version.clone())),
                ]),
            },
        ),
        ("level", Value::str(r.level.as_str())),
        ("verification", Value::str(r.verification.as_str())),
        ("action", Value::str(r.action.as_str())),
        ("t", Value::int(r.logical_time)),
        (
            "model",
            match &r.model {
                None => Value::Null,
                Some(m) => Value::map([
                    ("model", hex(&m.model)),
                    ("tokenizer", hex(&m.tokenizer)),
                    ("policy", hex(&m.policy)),
                ]),
            },
        ),
        ("detail", r.detail.clone()),
    ])
}

fn str_field(v: Value, name: &str) -> Result<String, EntryDecodeError> {
    match v {
        Value::Str(s) => Ok(s),
        _ => Err(EntryDecodeError(format!("{name} is not a string"))),
    }
}

fn u64_field(v: Value, name: &str) -> Result<u64, EntryDecodeError> {
    let n = match &v {
        Value::Int(Integer::Small(i)) => u64::try_from(*i).ok(),
        Value::Int(Integer::Big(digits)) => digits.parse::<u64>().ok(),
        _ => None,
    };
    n.ok_or_else(|| EntryDecodeError(format!("{name} is not an integer in 0..=2^64-1")))
}

fn hash_field(v: Value, name: &str) -> Result<ContentHash, EntryDecodeError> {
    str_field(v, name)?
        .parse()
        .map_err(|_| EntryDecodeError(format!("{name} is not a content hash")))
}
