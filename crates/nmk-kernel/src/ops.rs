//! The op table: executors (the syscall table) and validators (the only source of verdicts).
//!
//! An executor returns a result and nothing else: it cannot claim a level or a verdict. A
//! validator returns pass or fail, or an error that fails its node closed.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use nmk_det::{ValidationLevel, Value};

use crate::capability::Capability;
use crate::ledger::ValidatorId;
use crate::memory::Consultation;

/// Which of the kernel's deferred sources a parked task waits on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WaitOn {
    /// A proven primitive's result.
    Primitive(String),
    /// A delegated agent's result.
    Agent(String),
    /// A tool's (syscall's) result.
    Tool(String),
}

/// What an executor produced.
#[derive(Debug, Clone, PartialEq)]
pub enum ExecOutcome {
    /// A result, to be judged by the task's validator.
    Done(Value),
    /// Park the task until the result is delivered (`Scheduler::deliver`).
    Wait(WaitOn),
}

/// An executor's failure; it fails the node, never the run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ExecError(pub String);

/// What an executor sees of its task.
#[derive(Debug)]
pub struct ExecCall<'a> {
    /// The task id.
    pub task_id: &'a str,
    /// The op.
    pub kind: &'a str,
    /// Inputs by name: the task's `input_refs` values and each dependency's result keyed by the
    /// dependency's id (a repair worker also gets `_failed`).
    pub inputs: &'a BTreeMap<String, Value>,
    /// The output contract.
    pub contract: &'a Value,
    /// Model tokens reserved for this call; an executor that drives a model must not pass it.
    pub token_allowance: u64,
    /// What the memory store said when the scheduler consulted it just before this call
    /// (`None`: no store is attached to the scheduler; the trace records `consulted: false`).
    pub memory: Option<&'a Consultation>,
}

/// Runs an op. Implementations must be deterministic for a given call when they claim to be.
pub trait Executor: Send + Sync {
    /// Produces a result for `call`.
    fn execute(&self, call: &ExecCall<'_>) -> Result<ExecOutcome, ExecError>;
}

impl<F> Executor for F
where
    F: Fn(&ExecCall<'_>) -> Result<ExecOutcome, ExecError> + Send + Sync,
{
    fn execute(&self, call: &ExecCall<'_>) -> Result<ExecOutcome, ExecError> {
        self(call)
    }
}

/// What a validator sees of the task it judges.
#[derive(Debug)]
pub struct ValidationCall<'a> {
    /// The task id.
    pub task_id: &'a str,
    /// The op.
    pub kind: &'a str,
    /// The output contract.
    pub contract: &'a Value,
    /// The declared level.
    pub level: ValidationLevel,
}

/// A validator's graded verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The check ran and passed: the task passes at its declared level.
    Pass,
    /// The check ran and failed.
    Fail,
    /// No check applies to this result (e.g. a fact-loop pass-through): the task passes, but
    /// only at JUDGMENT, level NONE, whatever level it declared (spec §9 D24).
    Unjudged,
}

/// A registered judge. `Ok(true)` passes at the task's declared level; `Ok(false)` fails;
/// `Err` fails the node closed and disables the op for the rest of the request.
pub trait Validator: Send + Sync {
    /// Name and version, written to the ledger with every verdict.
    fn id(&self) -> ValidatorId;
    /// Judges `result`.
    fn validate(&self, result: &Value, call: &ValidationCall<'_>) -> Result<bool, String>;
    /// The graded verdict the scheduler acts on. By default [`Validator::validate`]'s pass or
    /// fail; a validator that can tell "nothing to check here" overrides it to say
    /// [`Verdict::Unjudged`] rather than claim a pass it did not check.
    fn verdict(&self, result: &Value, call: &ValidationCall<'_>) -> Result<Verdict, String> {
        self.validate(result, call)
            .map(|ok| if ok { Verdict::Pass } else { Verdict::Fail })
    }
}

/// A validator from a function.
pub struct FnValidator<F> {
    id: ValidatorId,
    f: F,
}

impl<F> FnValidator<F>
where
    F: Fn(&Value, &ValidationCall<'_>) -> Result<bool, String> + Send + Sync,
{
    /// Wraps `f` under the identity `name`/`version`.
    pub fn new(name: &str, version: &str, f: F) -> Self {
        FnValidator {
            id: ValidatorId::new(name, version),
            f,
        }
    }
}

impl<F> Validator for FnValidator<F>
where
    F: Fn(&Value, &ValidationCall<'_>) -> Result<bool, String> + Send + Sync,
{
    fn id(&self) -> ValidatorId {
        self.id.clone()
    }
    fn validate(&self, result: &Value, call: &ValidationCall<'_>) -> Result<bool, String> {
        (self.f)(result, call)
    }
}

/// How an op may be admitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpTier {
    /// An ordinary op: needs a registered validator on each task.
    Pure,
    /// An op registered explicitly as judgment-only: its tasks carry no validator and their
    /// results are capped at JUDGMENT.
    JudgmentOnly,
    /// A syscall-tier tool (I/O, clock, network, sandboxed execution): each task must declare
    /// `capability` itself, carry a validator, and declare a level no higher than `ceiling`.
    Syscall {
        /// The capability every task of this op must declare (and be granted).
        capability: Capability,
        /// The highest level its validator may certify (default SCHEMA; never PROVEN).
        ceiling: ValidationLevel,
    },
}

/// A registered op.
#[derive(Clone)]
pub struct OpSpec {
    /// The op name (task kind).
    pub name: String,
    /// Its version, written to the ledger.
    pub version: String,
    /// How it is admitted.
    pub tier: OpTier,
    /// What runs it.
    pub executor: Arc<dyn Executor>,
    /// A capability every task of the op needs granted, whether or not the task declares it
    /// (checked at admission; unlike the syscall tier, the task need not declare it).
    pub required_capability: Option<Capability>,
}

impl fmt::Debug for OpSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpSpec")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("tier", &self.tier)
            .field("required_capability", &self.required_capability)
            .finish()
    }
}

impl OpSpec {
    /// An ordinary op.
    pub fn pure(name: &str, version: &str, executor: impl Executor + 'static) -> Self {
        OpSpec {
            name: name.into(),
            version: version.into(),
            tier: OpTier::Pure,
            executor: Arc::new(executor),
            required_capability: None,
        }
    }

    /// A judgment-only op.
    pub fn judgment_only(name: &str, version: &str, executor: impl Executor + 'static) -> Self {
        OpSpec {
            name: name.into(),
            version: version.into(),
            tier: OpTier::JudgmentOnly,
            executor: Arc::new(executor),
            required_capability: None,
        }
    }

    /// The same op, admitted only when `capability` is granted.
    pub fn requiring(mut self, capability: Capability) -> Self {
        self.required_capability = Some(capability);
        self
    }

    /// A syscall-tier op.
    pub fn syscall(
        name: &str,
        version: &str,
        capability: Capability,
        ceiling: ValidationLevel,
        executor: impl Executor + 'static,
    ) -> Self {
        OpSpec {
            name: name.into(),
            version: version.into(),
            tier: OpTier::Syscall {
                capability,
                ceiling,
            },
            executor: Arc::new(executor),
            required_capability: None,
        }
    }
}
