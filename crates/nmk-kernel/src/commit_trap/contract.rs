//! What a commit is judged against: the [`Contract`] and its [`Case`]s, and the contract's one
//! canonical value, whose hash the ledger binds.

use std::collections::BTreeMap;

use nmk_det::oracles::OutputType;
use nmk_det::{ContentHash, Value, hash_value};

/// The op version a contract carries unless told otherwise.
pub const DEFAULT_OP_VERSION: &str = "v1";

/// One test case of an entry function (one schema for every runner: positional `args` and
/// keyword `kwargs`), or, for a data output, the value the output must equal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Case {
    /// Positional arguments.
    pub args: Vec<Value>,
    /// Keyword arguments.
    pub kwargs: BTreeMap<String, Value>,
    /// The expected result, compared type-strictly.
    pub expected: Value,
}

impl Case {
    /// A case with positional arguments only.
    pub fn positional(args: Vec<Value>, expected: Value) -> Case {
        Case {
            args,
            kwargs: BTreeMap::new(),
            expected,
        }
    }

    /// The case's canonical value: `{"args": [...], "expected": ..., "kwargs": {...}}`.
    pub fn to_value(&self) -> Value {
        Value::map([
            ("args", Value::List(self.args.clone())),
            ("kwargs", Value::Map(self.kwargs.clone())),
            ("expected", self.expected.clone()),
        ])
    }
}

/// What a candidate output must satisfy to be committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contract {
    /// The op charged to the budget and named in the ledger.
    pub opcode: String,
    /// The entry function (code outputs) or proven primitive the output stands for.
    pub entry: String,
    /// The declared output type; `None` lets the trap detect it from the candidate (a contract
    /// with required keys and no type is read as JSON).
    pub otype: Option<OutputType>,
    /// The task's prompt; for code outputs it must state the entry's signature (`add(a, b)`).
    pub prompt: String,
    /// Cases the output must pass to reach ORACLE.
    pub cases: Vec<Case>,
    /// Keys a JSON output must have (order is irrelevant).
    pub required_keys: Vec<String>,
    /// Substrings the output must contain (order is irrelevant).
    pub must_include: Vec<String>,
    /// Whether a hold-out-proven primitive may answer for `entry`.
    pub proven: bool,
    /// The op's version, bound in the ledger.
    pub op_version: String,
}

/// Why a contract cannot be judged against.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContractError {
    /// The opcode is empty.
    #[error("empty_opcode")]
    EmptyOpcode,
    /// The entry is empty.
    #[error("empty_entry")]
    EmptyEntry,
    /// The op version is empty.
    #[error("empty_op_version")]
    EmptyOpVersion,
}

impl Contract {
    /// A contract for `opcode` whose entry is the opcode itself, version
    /// [`DEFAULT_OP_VERSION`], with no type, prompt, cases, keys or substrings, not proven.
    pub fn new(opcode: impl Into<String>) -> Contract {
        let opcode = opcode.into();
        Contract {
            entry: opcode.clone(),
            opcode,
            otype: None,
            prompt: String::new(),
            cases: Vec::new(),
            required_keys: Vec::new(),
            must_include: Vec::new(),
            proven: false,
            op_version: DEFAULT_OP_VERSION.to_owned(),
        }
    }

    /// Checks that the contract names what the ledger needs.
    pub fn check(&self) -> Result<(), ContractError> {
        if self.opcode.is_empty() {
            return Err(ContractError::EmptyOpcode);
        }
        if self.entry.is_empty() {
            return Err(ContractError::EmptyEntry);
        }
        if self.op_version.is_empty() {
            return Err(ContractError::EmptyOpVersion);
        }
        Ok(())
    }

    /// The contract's canonical value. Every field is bound; cases keep their order, while
    /// required keys and substrings are encoded as sets, so their order does not change the
    /// hash.
    pub fn to_value(&self) -> Value {
        let strings = |items: &[String]| Value::set(items.iter().map(|s| Value::str(s.clone())));
        Value::map([
            ("opcode", Value::str(self.opcode.clone())),
            ("entry", Value::str(self.entry.clone())),
            (
                "otype",
                self.otype
                    .map_or(Value::Null, |t| Value::str(t.as_str().to_owned())),
            ),
            ("prompt", Value::str(self.prompt.clone())),
            (
                "cases",
                Value::List(self.cases.iter().map(Case::to_value).collect()),
            ),
            ("required_keys", strings(&self.required_keys)),
            ("must_include", strings(&self.must_include)),
            ("proven", Value::Bool(self.proven)),
            ("op_version", Value::str(self.op_version.clone())),
        ])
    }

    /// The content hash of [`Contract::to_value`]: the contract hash the ledger records.
    pub fn hash(&self) -> ContentHash {
        hash_value(&self.to_value())
    }
}
