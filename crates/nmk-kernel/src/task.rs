//! Tasks: what a plan asks for ([`TaskSpec`], untrusted) and what the scheduler admitted
//! ([`Task`], typed and checked).

use std::collections::BTreeMap;
use std::fmt;

use nmk_det::{ContentHash, ValidationLevel, Value};

use crate::artifact::ArtifactRef;
use crate::capability::Capability;
use crate::verification::Verification;

/// The lifecycle of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskStatus {
    /// Created, not yet admitted.
    New,
    /// Admitted; every dependency has passed.
    Ready,
    /// Its executor is running.
    Running,
    /// Waiting for dependencies.
    Blocked,
    /// Parked until a primitive delivers its result.
    WaitingForPrimitive,
    /// Parked until an agent delivers its result.
    WaitingForAgent,
    /// Parked until a tool delivers its result.
    WaitingForTool,
    /// Its result is being judged.
    Validating,
    /// Its validator passed.
    Passed,
    /// Its validator failed or its executor erred; the repair policy decides what follows.
    Failed,
    /// A repair worker is trying to fix it.
    Repairing,
    /// Given up (budget, repair skipped or exhausted, a failed dependency).
    Aborted,
    /// The root, committed: the only state that carries output to the caller.
    Committed,
}

impl TaskStatus {
    /// The upper-case name used in traces.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::New => "NEW",
            TaskStatus::Ready => "READY",
            TaskStatus::Running => "RUNNING",
            TaskStatus::Blocked => "BLOCKED",
            TaskStatus::WaitingForPrimitive => "WAITING_FOR_PRIMITIVE",
            TaskStatus::WaitingForAgent => "WAITING_FOR_AGENT",
            TaskStatus::WaitingForTool => "WAITING_FOR_TOOL",
            TaskStatus::Validating => "VALIDATING",
            TaskStatus::Passed => "PASSED",
            TaskStatus::Failed => "FAILED",
            TaskStatus::Repairing => "REPAIRING",
            TaskStatus::Aborted => "ABORTED",
            TaskStatus::Committed => "COMMITTED",
        }
    }

    /// Parses a name written by [`TaskStatus::as_str`].
    pub fn parse(s: &str) -> Option<TaskStatus> {
        ALL_STATUSES.into_iter().find(|st| st.as_str() == s)
    }

    /// PASSED or COMMITTED: a dependency in this state is satisfied.
    pub fn is_passed(self) -> bool {
        matches!(self, TaskStatus::Passed | TaskStatus::Committed)
    }

    /// Parked waiting for a delivery.
    pub fn is_waiting(self) -> bool {
        matches!(
            self,
            TaskStatus::WaitingForPrimitive
                | TaskStatus::WaitingForAgent
                | TaskStatus::WaitingForTool
        )
    }

    /// PASSED, COMMITTED or ABORTED: nothing more will happen to the task.
    pub fn is_settled(self) -> bool {
        matches!(
            self,
            TaskStatus::Passed | TaskStatus::Committed | TaskStatus::Aborted
        )
    }
}

/// Every status.
pub const ALL_STATUSES: [TaskStatus; 13] = [
    TaskStatus::New,
    TaskStatus::Ready,
    TaskStatus::Running,
    TaskStatus::Blocked,
    TaskStatus::WaitingForPrimitive,
    TaskStatus::WaitingForAgent,
    TaskStatus::WaitingForTool,
    TaskStatus::Validating,
    TaskStatus::Passed,
    TaskStatus::Failed,
    TaskStatus::Repairing,
    TaskStatus::Aborted,
    TaskStatus::Committed,
];

impl fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A task's own limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskBudget {
    /// Model tokens reserved from the request's budget before the executor runs.
    pub tokens: u64,
    /// Repair workers that may be spawned for this task.
    pub max_retries: u32,
}

impl Default for TaskBudget {
    fn default() -> Self {
        TaskBudget {
            tokens: 0,
            max_retries: 1,
        }
    }
}

/// The validator a task asks for: a registered name and the level a pass certifies, as text
/// (plans are untrusted: the level is parsed, and a malformed one rejected, at admission).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidatorSpec {
    /// Registered validator name.
    pub name: String,
    /// Declared level name (`"SCHEMA"`, …).
    pub level: String,
}

impl ValidatorSpec {
    /// A validator spec.
    pub fn new(name: impl Into<String>, level: impl Into<String>) -> Self {
        ValidatorSpec {
            name: name.into(),
            level: level.into(),
        }
    }
}

/// What a plan asks the scheduler to run. Untrusted: everything is checked at admission.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskSpec {
    /// Unique id within the graph.
    pub id: String,
    /// The op (executor key).
    pub kind: String,
    /// Who runs it: `scheduler`, `model_lane`, `agent:<id>`, `primitive:<name>`, `tool:<name>`,
    /// `commit_trap`.
    pub owner: String,
    /// Named inputs, by artifact ref.
    pub input_refs: BTreeMap<String, ArtifactRef>,
    /// The output contract (its `type` is the artifact kind).
    pub contract: Value,
    /// The validator; `None` only for ops registered as judgment-only.
    pub validator: Option<ValidatorSpec>,
    /// Capabilities the task needs, as tokens (parsed and checked at admission).
    pub capabilities: Vec<String>,
    /// The task's own limits.
    pub budget: TaskBudget,
    /// Tasks whose results it consumes (keyed by their id in its inputs).
    pub dependencies: Vec<String>,
    /// Whether this is the graph's root (its commit is the run's output).
    pub is_root: bool,
}

impl TaskSpec {
    /// A task of `kind` with id `id`, owner `scheduler`, no inputs, an empty contract, no
    /// validator, capabilities or dependencies.
    pub fn new(id: impl Into<String>, kind: impl Into<String>) -> Self {
        TaskSpec {
            id: id.into(),
            kind: kind.into(),
            owner: "scheduler".into(),
            input_refs: BTreeMap::new(),
            contract: Value::map::<&str>([]),
            validator: None,
            capabilities: Vec::new(),
            budget: TaskBudget::default(),
            dependencies: Vec::new(),
            is_root: false,
        }
    }

    /// Sets the validator.
    pub fn validated_by(mut self, name: &str, level: &str) -> Self {
        self.validator = Some(ValidatorSpec::new(name, level));
        self
    }

    /// Adds a dependency.
    pub fn after(mut self, dep: &str) -> Self {
        self.dependencies.push(dep.to_owned());
        self
    }

    /// Adds a capability token.
    pub fn needs(mut self, cap: &str) -> Self {
        self.capabilities.push(cap.to_owned());
        self
    }

    /// Adds a named input.
    pub fn input(mut self, name: &str, r: ArtifactRef) -> Self {
        self.input_refs.insert(name.to_owned(), r);
        self
    }

    /// Marks the task as the root.
    pub fn root(mut self) -> Self {
        self.is_root = true;
        self
    }

    /// Sets the owner.
    pub fn owned_by(mut self, owner: &str) -> Self {
        self.owner = owner.to_owned();
        self
    }

    /// Sets the contract.
    pub fn with_contract(mut self, contract: Value) -> Self {
        self.contract = contract;
        self
    }

    /// Sets the task's limits.
    pub fn with_budget(mut self, budget: TaskBudget) -> Self {
        self.budget = budget;
        self
    }
}

/// An admitted task: typed, checked, and tracked through its lifecycle.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    /// Unique id.
    pub id: String,
    /// The op.
    pub kind: String,
    /// Who runs it.
    pub owner: String,
    /// The task it repairs, for repair workers.
    pub reopen: Option<String>,
    /// Current state.
    pub status: TaskStatus,
    /// Named inputs.
    pub input_refs: BTreeMap<String, ArtifactRef>,
    /// Output contract.
    pub contract: Value,
    /// Registered validator name and declared level (`None`: judgment-only op).
    pub validator: Option<(String, ValidationLevel)>,
    /// Checked capabilities.
    pub capabilities: Vec<Capability>,
    /// The task's limits.
    pub budget: TaskBudget,
    /// Dependencies (all admitted tasks).
    pub dependencies: Vec<String>,
    /// The stored result.
    pub result_ref: Option<ArtifactRef>,
    /// Hash of the ledger entry that judged it.
    pub proof: Option<ContentHash>,
    /// The verdict's verification (unverified until judged).
    pub verification: Verification,
    /// The level its validator certified (NONE until judged).
    pub level: ValidationLevel,
    /// Repair workers spawned so far.
    pub retries: u32,
    /// Why it was aborted or failed.
    pub abort_reason: Option<String>,
    /// Whether it is the root.
    pub is_root: bool,
    /// Results of earlier failed attempts (own and repairs'), for the inert-repair check.
    pub failed_results: Vec<ContentHash>,
}
