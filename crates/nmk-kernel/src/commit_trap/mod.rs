//! The commit trap: the only path by which a candidate output reaches the caller.
//!
//! This module owns the commit decision. [`CommitTrap::commit`] charges the request's budget
//! first, climbs the validation [`ladder`] against a [`Contract`], turns the level reached into
//! an [`Action`] (emit, repair, bail or reject), and writes exactly one ledger entry per
//! decision, binding the candidate's hash, the output's hash, the contract's hash, the ladder's
//! identity, the level and the action. Only an emit decision carries output, and only once its
//! ledger entry is durable: if the entry cannot be written, the decision becomes a reject with
//! no output. It never judges code itself: programs are parsed and run by an installed
//! [`CodeChecker`] (none installed → code fails closed), and PROVEN comes only from a
//! [`ProvenRegistry`] whose recorded code hash equals the candidate's own. `commit` never panics
//! and never returns an error: every failure is a decision.

pub mod checker;
pub mod contract;
pub mod ladder;

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};

use nmk_det::{ContentHash, ValidationLevel, Value, hash_value};

use crate::budget::Budget;
use crate::ledger::{
    Action, Ledger, LedgerEntry, LedgerError, LedgerRecord, ModelBinding, ValidatorId,
};
use crate::verification::Verification;

pub use checker::{CodeChecker, ProvenRegistry, Signature, parse_params, prompt_signature};
pub use contract::{Case, Contract, ContractError, DEFAULT_OP_VERSION};
pub use ladder::{HandlerError, Verdict};

/// Name of the ladder validator recorded in every entry the trap writes after a charge.
pub const LADDER_VALIDATOR_NAME: &str = "commit_trap.ladder";
/// Version of the ladder's logic; change it whenever a rung's rule changes.
pub const LADDER_VALIDATOR_VERSION: &str = "1";

/// The ladder's identity as the ledger records it.
pub fn ladder_validator() -> ValidatorId {
    ValidatorId::new(LADDER_VALIDATOR_NAME, LADDER_VALIDATOR_VERSION)
}

/// The content hash of a candidate text (the hash of it as a string [`Value`]): what the
/// ledger binds as the `candidate` input, and what a [`ProvenRegistry`] must record for the
/// proven code of an entry.
pub fn candidate_hash(candidate: &str) -> ContentHash {
    hash_value(&Value::str(candidate))
}

/// What the trap decided about one candidate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Emit, repair, bail or reject.
    pub action: Action,
    /// The released output: the candidate, only when `action` is [`Action::Emit`].
    pub output: Option<String>,
    /// The level the ladder reached (NONE for a refusal or a handler error).
    pub level: ValidationLevel,
    /// What the verdict supports: [`Verification::for_pass`] of the level when emitted,
    /// [`Verification::Unverified`] otherwise.
    pub verification: Verification,
    /// Why (`oracle_pass:2/2`, `budget:max_traps:2`, `handler_error:…`, `ledger_write:…`).
    pub reason: String,
    /// The decision's ledger entry; `None` only when writing it failed.
    pub ledger_entry: Option<LedgerEntry>,
}

impl Decision {
    /// Whether output was released.
    pub fn committed(&self) -> bool {
        self.action == Action::Emit && self.output.is_some()
    }
}

/// A decision before its ledger entry is written.
struct Outcome {
    action: Action,
    output: Option<String>,
    level: ValidationLevel,
    reason: String,
    validator: Option<ValidatorId>,
}

/// Candidates longer than this are rejected before any check runs (model output is hostile
/// input: no validator is asked to parse an unbounded text).
pub const MAX_CANDIDATE_BYTES: usize = 4 << 20;

/// The commit trap of one request: its ledger, its budget and its optional judges.
pub struct CommitTrap {
    ledger: Ledger,
    budget: Budget,
    checker: Option<Box<dyn CodeChecker>>,
    proven: Option<Box<dyn ProvenRegistry>>,
    model: Option<ModelBinding>,
}

impl fmt::Debug for CommitTrap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CommitTrap")
            .field("budget", &self.budget)
            .field("code_checker", &self.checker.is_some())
            .field("proven_registry", &self.proven.is_some())
            .finish_non_exhaustive()
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic".to_owned())
}

impl CommitTrap {
    /// A trap writing to `ledger` and charging `budget`, with no code checker and no proven
    /// registry: code candidates fail closed and nothing is PROVEN until they are installed.
    pub fn new(ledger: Ledger, budget: Budget) -> CommitTrap {
        CommitTrap {
            ledger,
            budget,
            checker: None,
            proven: None,
            model: None,
        }
    }

    /// Binds every later decision to the model that proposes the candidates (model, tokenizer
    /// and decode-policy hashes go into each ledger entry).
    pub fn with_model(mut self, binding: ModelBinding) -> CommitTrap {
        self.model = Some(binding);
        self
    }

    /// Installs the code checker that parses and runs code candidates.
    pub fn with_code_checker(mut self, checker: Box<dyn CodeChecker>) -> CommitTrap {
        self.checker = Some(checker);
        self
    }

    /// Installs the registry of proven primitives.
    pub fn with_proven_registry(mut self, registry: Box<dyn ProvenRegistry>) -> CommitTrap {
        self.proven = Some(registry);
        self
    }

    /// The request's budget.
    pub fn budget(&self) -> &Budget {
        &self.budget
    }

    /// The request's budget, for the kernel to disable ops or inspect charges.
    pub fn budget_mut(&mut self) -> &mut Budget {
        &mut self.budget
    }

    /// The ledger decisions are written to.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Judges `candidate` against `contract` at kernel time `logical_time`, releasing it only if
    /// the ladder reaches `min_level` (and never below SYNTAX, whatever `min_level` says).
    ///
    /// 1. Charge the budget for `contract.opcode`; a refusal rejects (`budget:<why>`).
    /// 2. Climb the ladder; a validation step that errors disables the op for the rest of the
    ///    request and rejects (`handler_error:<what>`).
    /// 3. Level ≥ `min_level` → emit; ≥ PROPERTY → repair; ≥ SYNTAX → bail (escalate rather
    ///    than invent); else repair. Only emit carries output.
    /// 4. Write exactly one ledger entry; if that fails, reject with no output
    ///    (`ledger_write:<err>`) and no entry.
    pub fn commit(
        &mut self,
        candidate: &str,
        contract: &Contract,
        logical_time: u64,
        min_level: ValidationLevel,
    ) -> Decision {
        let outcome = match self.budget.charge(&contract.opcode, 0) {
            Err(refusal) => Outcome {
                action: Action::Reject,
                output: None,
                level: ValidationLevel::None,
                reason: format!("budget:{refusal}"),
                validator: None,
            },
            Ok(()) if candidate.len() > MAX_CANDIDATE_BYTES => Outcome {
                action: Action::Reject,
                output: None,
                level: ValidationLevel::None,
                reason: format!(
                    "candidate_too_large:{}>{MAX_CANDIDATE_BYTES}",
                    candidate.len()
                ),
                validator: None,
            },
            Ok(()) => self.judge(candidate, contract, min_level),
        };
        self.record(candidate, contract, logical_time, outcome)
    }

    fn judge(
        &mut self,
        candidate: &str,
        contract: &Contract,
        min_level: ValidationLevel,
    ) -> Outcome {
        let checker = self.checker.as_deref();
        let proven = self.proven.as_deref();
        let climbed = catch_unwind(AssertUnwindSafe(|| {
            ladder::climb(candidate, contract, checker, proven)
        }))
        .unwrap_or_else(|payload| Err(HandlerError::Panic(panic_message(payload.as_ref()))));
        let verdict = match climbed {
            Ok(verdict) => verdict,
            Err(e) => {
                self.budget.disable(&contract.opcode);
                return Outcome {
                    action: Action::Reject,
                    output: None,
                    level: ValidationLevel::None,
                    reason: format!("handler_error:{e}"),
                    validator: Some(ladder_validator()),
                };
            }
        };
        let emit_floor = min_level.max(ValidationLevel::Syntax);
        let action = if verdict.level >= emit_floor {
            Action::Emit
        } else if verdict.level >= ValidationLevel::Property {
            Action::Repair
        } else if verdict.level >= ValidationLevel::Syntax {
            Action::Bail
        } else {
            Action::Repair
        };
        Outcome {
            action,
            output: (action == Action::Emit).then(|| candidate.to_owned()),
            level: verdict.level,
            reason: verdict.reason,
            validator: Some(ladder_validator()),
        }
    }

    fn record(
        &mut self,
        candidate: &str,
        contract: &Contract,
        logical_time: u64,
        outcome: Outcome,
    ) -> Decision {
        let verification = if outcome.action == Action::Emit {
            Verification::for_pass(outcome.level)
        } else {
            Verification::Unverified
        };
        let result = match &outcome.output {
            Some(output) => hash_value(&Value::str(output.clone())),
            None => hash_value(&Value::Null),
        };
        let record = LedgerRecord {
            opcode: contract.opcode.clone(),
            op_version: contract.op_version.clone(),
            inputs: [("candidate".to_owned(), candidate_hash(candidate))]
                .into_iter()
                .collect(),
            result,
            contract: contract.hash(),
            validator: outcome.validator,
            level: outcome.level,
            verification,
            action: outcome.action,
            logical_time,
            model: self.model.clone(),
            detail: Value::map([("reason", Value::str(outcome.reason.clone()))]),
        };
        let ledger = &self.ledger;
        let written = match catch_unwind(AssertUnwindSafe(|| ledger.append(record))) {
            Ok(appended) => appended.map_err(|e: LedgerError| e.to_string()),
            Err(payload) => Err(format!("panic:{}", panic_message(payload.as_ref()))),
        };
        match written {
            Ok(entry) => Decision {
                action: outcome.action,
                output: outcome.output,
                level: outcome.level,
                verification,
                reason: outcome.reason,
                ledger_entry: Some(entry),
            },
            Err(e) => Decision {
                action: Action::Reject,
                output: None,
                level: ValidationLevel::None,
                verification: Verification::Unverified,
                reason: format!("ledger_write:{e}"),
                ledger_entry: None,
            },
        }
    }
}
