//! The task-graph scheduler: admit → sequence → park → resume → validate → commit.
//!
//! The run loop takes READY tasks in admission order, charges the budget before each runs,
//! consults the attached memory store (`consult`: an unreadable store aborts the task, none
//! attached is recorded as such), gathers its inputs (its own refs and each dependency's result, keyed by the dependency's id),
//! runs its executor, stores the result as an artifact and has the task's registered validator
//! judge it. Every verdict, abort and commit is one ledger entry; every transition is a trace
//! event on the kernel's logical clock. Failures go through the repair policy: a clean-context
//! repair worker (admitted like any task) sees only the parent's inputs and the failed result.
//! The run bails out early as soon as the root passes, and commits it with honest attribution:
//! the root inherits the verification of the dependency whose result has the same content hash.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use nmk_det::{ContentHash, ValidationLevel, Value};

mod commit;
mod consult;
mod repair;
mod verdict;

pub use consult::{CONSULT_RECENT_LIMIT, MEMORY_CONSULT_INPUT, TaskMemory};

use crate::admission::{self, AdmissionView, Reject};
use crate::artifact::{ArtifactError, ArtifactRef, ArtifactStore};
use crate::budget::Budget;
use crate::capability::Grants;
use crate::ledger::{Head, Ledger, LedgerEntry, LedgerError};
use crate::ops::{ExecCall, ExecOutcome, OpSpec, OpTier, Validator, WaitOn};
use crate::task::{Task, TaskSpec, TaskStatus};
use crate::trace::{EventKind, Trace, TraceEvent, stated_confidence};
use crate::verification::Verification;

/// Errors that stop the scheduler itself (a node's failure is never one of these).
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    /// The ledger could not record a decision; the node concerned did not pass.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// An artifact could not be stored.
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
    /// No such task.
    #[error("unknown task {0:?}")]
    UnknownTask(String),
    /// The task is not parked waiting for a delivery.
    #[error("task {0:?} is not waiting for a delivery")]
    NotWaiting(String),
    /// An op or validator registration was refused.
    #[error("registration refused: {0}")]
    Registration(String),
}

/// The outcome of a run, as far as it got.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSummary {
    /// Whether the root was committed.
    pub committed: bool,
    /// The committed root's result.
    pub root_result: Option<Value>,
    /// Tasks per state name.
    pub states: BTreeMap<String, usize>,
    /// Ledger entries this scheduler wrote.
    pub ledger_entries: u64,
    /// Whether those entries verify as a chain continuing the head the scheduler started from.
    pub ledger_verified: bool,
    /// Trace events so far.
    pub events: usize,
    /// Each task's verification.
    pub verification: BTreeMap<String, Verification>,
}

/// The op name under which the scheduler writes its own commit decisions.
pub const COMMIT_VALIDATOR: &str = "scheduler.commit";

/// A task graph and everything it runs against.
pub struct Scheduler {
    ops: BTreeMap<String, OpSpec>,
    validators: HashMap<String, Arc<dyn Validator>>,
    grants: Grants,
    budget: Budget,
    artifacts: ArtifactStore,
    ledger: Ledger,
    start_head: Option<Head>,
    ledger_entries: u64,
    tasks: Vec<Task>,
    index: HashMap<String, usize>,
    root: Option<usize>,
    trace: Trace,
    clock: u64,
    started: bool,
    ended: bool,
    commit_entry: Option<LedgerEntry>,
    memory: Option<Box<dyn TaskMemory>>,
    consults: HashMap<usize, ContentHash>,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("run", &self.trace.run_id())
            .field("tasks", &self.tasks.len())
            .finish()
    }
}

impl Scheduler {
    /// A scheduler for run `run_id`, writing to `ledger`, spending `budget`, with no ops,
    /// validators or grants.
    pub fn new(run_id: &str, ledger: Ledger, budget: Budget) -> Result<Scheduler, SchedulerError> {
        let start_head = ledger.head()?;
        Ok(Scheduler {
            ops: BTreeMap::new(),
            validators: HashMap::new(),
            grants: Grants::none(),
            budget,
            artifacts: ArtifactStore::default(),
            ledger,
            start_head,
            ledger_entries: 0,
            tasks: Vec::new(),
            index: HashMap::new(),
            root: None,
            trace: Trace::new(run_id),
            clock: 0,
            started: false,
            ended: false,
            commit_entry: None,
            memory: None,
            consults: HashMap::new(),
        })
    }

    /// Registers an op. A syscall-tier op may never certify PROVEN.
    pub fn register_op(&mut self, op: OpSpec) -> Result<(), SchedulerError> {
        if let OpTier::Syscall { ceiling, .. } = &op.tier
            && *ceiling >= ValidationLevel::Proven
        {
            return Err(SchedulerError::Registration(format!(
                "syscall op {:?} cannot have ceiling PROVEN",
                op.name
            )));
        }
        self.ops.insert(op.name.clone(), op);
        Ok(())
    }

    /// Whether an op is registered.
    pub fn has_op(&self, name: &str) -> bool {
        self.ops.contains_key(name)
    }

    /// Registers a validator under `name` (what task specs refer to).
    pub fn register_validator(&mut self, name: &str, validator: Arc<dyn Validator>) {
        self.validators.insert(name.to_owned(), validator);
    }

    /// The granted capabilities. Only trusted code holds a `&mut Scheduler`.
    pub fn grants_mut(&mut self) -> &mut Grants {
        &mut self.grants
    }

    /// The granted capabilities.
    pub fn grants(&self) -> &Grants {
        &self.grants
    }

    /// The request's budget.
    pub fn budget(&self) -> &Budget {
        &self.budget
    }

    /// Stores an input value and returns its ref.
    pub fn put_artifact(
        &mut self,
        value: Value,
        kind: &str,
    ) -> Result<ArtifactRef, SchedulerError> {
        Ok(self.artifacts.put(value, kind)?)
    }

    /// The value behind a ref.
    pub fn artifact(&self, r: &ArtifactRef) -> Option<&Value> {
        self.artifacts.get(r)
    }

    /// A task by id.
    pub fn task(&self, id: &str) -> Option<&Task> {
        self.index.get(id).and_then(|&i| self.tasks.get(i))
    }

    /// All tasks in admission order.
    pub fn tasks(&self) -> &[Task] {
        &self.tasks
    }

    /// A task's result value.
    pub fn result(&self, id: &str) -> Option<&Value> {
        self.task(id)
            .and_then(|t| t.result_ref.as_ref())
            .and_then(|r| self.artifacts.get(r))
    }

    /// The run's trace.
    pub fn trace(&self) -> &Trace {
        &self.trace
    }

    /// The ledger entry of the root's commit, once committed.
    pub fn commit_entry(&self) -> Option<&LedgerEntry> {
        self.commit_entry.as_ref()
    }

    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    fn record(&mut self, event: TraceEvent) {
        let t = self.tick();
        self.trace.record(event, t);
    }

    fn start(&mut self) {
        if !self.started {
            self.started = true;
            let mut e = TraceEvent::new(EventKind::RunStart);
            e.detail = Value::map([("memory_attached", Value::Bool(self.memory.is_some()))]);
            self.record(e);
        }
    }

    /// Records how the job was classified (the trace requires it).
    pub fn classify(&mut self, job_type: &str) {
        self.start();
        let mut e = TraceEvent::new(EventKind::Classify);
        e.detail = Value::map([("job_type", Value::str(job_type))]);
        self.record(e);
    }

    /// Admits one task (a plan of one).
    pub fn admit(&mut self, spec: TaskSpec) -> Result<(), Reject> {
        self.admit_plan(vec![spec])
    }

    /// Admits a whole plan, atomically: every task passes admission, or none is admitted.
    pub fn admit_plan(&mut self, plan: Vec<TaskSpec>) -> Result<(), Reject> {
        self.start();
        let admitted = self.check_plan(&plan)?;
        let ids: Vec<Value> = admitted.iter().map(|t| Value::str(t.id.clone())).collect();
        let mut e = TraceEvent::new(EventKind::Plan);
        e.detail = Value::map([("tasks", Value::List(ids))]);
        self.record(e);
        for task in admitted {
            self.insert(task);
        }
        Ok(())
    }

    fn check_plan(&self, plan: &[TaskSpec]) -> Result<Vec<Task>, Reject> {
        let validators: HashSet<String> = self.validators.keys().cloned().collect();
        let existing: HashSet<String> = self.index.keys().cloned().collect();
        let artifacts = &self.artifacts;
        let exists = |r: &ArtifactRef| artifacts.has(r);
        let view = AdmissionView {
            ops: &self.ops,
            validators: &validators,
            grants: &self.grants,
            existing: &existing,
            has_root: self.root.is_some(),
            artifact_exists: &exists,
        };
        admission::admit_plan(&view, plan)
    }

    fn insert(&mut self, mut task: Task) {
        let ready = task
            .dependencies
            .iter()
            .all(|d| self.task(d).is_some_and(|t| t.status.is_passed()));
        let to = if ready {
            TaskStatus::Ready
        } else {
            TaskStatus::Blocked
        };
        let i = self.tasks.len();
        if task.is_root {
            self.root = Some(i);
        }
        task.status = TaskStatus::New;
        self.index.insert(task.id.clone(), i);
        self.tasks.push(task);
        self.transition(i, to, "scheduler", None);
    }

    fn transition(&mut self, i: usize, to: TaskStatus, executor: &str, detail: Option<Value>) {
        let Some(task) = self.tasks.get_mut(i) else {
            return;
        };
        let from = task.status;
        task.status = to;
        let mut e = TraceEvent::new(EventKind::Task);
        e.task = Some(task.id.clone());
        e.op = Some(task.kind.clone());
        e.owner = Some(task.owner.clone());
        e.from = Some(from);
        e.to = Some(to);
        e.executor = Some(executor.to_owned());
        e.retries = Some(task.retries);
        if matches!(
            to,
            TaskStatus::Passed | TaskStatus::Failed | TaskStatus::Committed
        ) {
            e.verification = Some(task.verification);
            e.level = Some(task.level);
            e.proof = task.proof;
            e.result = task.result_ref.map(|r| r.hash());
        }
        if matches!(to, TaskStatus::Passed | TaskStatus::Committed) {
            e.conf_model = task
                .result_ref
                .and_then(|r| self.artifacts.get(&r))
                .and_then(Value::as_str)
                .and_then(stated_confidence);
        }
        e.detail = detail.unwrap_or(Value::Null);
        self.record(e);
    }

    /// Runs at most `max_steps` tasks. Returns when the root is committed, when nothing more
    /// can run (done, deadlocked, or parked waiting for deliveries), or after `max_steps`.
    pub fn run(&mut self, max_steps: usize) -> Result<RunSummary, SchedulerError> {
        self.start();
        for _ in 0..max_steps {
            if self.root_status() == Some(TaskStatus::Committed) {
                break;
            }
            self.propagate()?;
            let next = self
                .tasks
                .iter()
                .position(|t| t.status == TaskStatus::Ready);
            match next {
                None => {
                    if self.root_status() == Some(TaskStatus::Passed) {
                        self.commit()?;
                    }
                    break;
                }
                Some(i) => {
                    self.execute(i)?;
                    if self.root_status() == Some(TaskStatus::Passed) {
                        // Early bail-out: the root passed; nothing else needs to run.
                        self.commit()?;
                        break;
                    }
                }
            }
        }
        self.propagate()?;
        let can_progress = self
            .tasks
            .iter()
            .any(|t| t.status == TaskStatus::Ready || t.status.is_waiting());
        if can_progress {
            self.record(TraceEvent::new(EventKind::Park));
        } else if !self.ended {
            self.ended = true;
            self.record(TraceEvent::new(EventKind::RunEnd));
        }
        self.summary()
    }

    fn root_status(&self) -> Option<TaskStatus> {
        self.root.and_then(|i| self.tasks.get(i)).map(|t| t.status)
    }

    /// Unblocks tasks whose dependencies all passed; aborts those with an aborted dependency.
    fn propagate(&mut self) -> Result<(), SchedulerError> {
        loop {
            let mut changed = false;
            for i in 0..self.tasks.len() {
                if self.tasks[i].status != TaskStatus::Blocked {
                    continue;
                }
                let deps: Vec<(String, TaskStatus)> = self.tasks[i]
                    .dependencies
                    .iter()
                    .map(|d| {
                        (
                            d.clone(),
                            self.task(d)
                                .map(|t| t.status)
                                .unwrap_or(TaskStatus::Aborted),
                        )
                    })
                    .collect();
                if let Some((dead, _)) = deps.iter().find(|(_, s)| *s == TaskStatus::Aborted) {
                    self.abort(i, format!("dependency_aborted:{dead}"), "scheduler")?;
                    changed = true;
                } else if deps.iter().all(|(_, s)| s.is_passed()) {
                    self.transition(i, TaskStatus::Ready, "scheduler", None);
                    changed = true;
                }
            }
            if !changed {
                return Ok(());
            }
        }
    }

    fn gather_inputs(&self, i: usize) -> BTreeMap<String, Value> {
        let mut inputs = BTreeMap::new();
        let Some(task) = self.tasks.get(i) else {
            return inputs;
        };
        for (name, r) in &task.input_refs {
            if let Some(v) = self.artifacts.get(r) {
                inputs.insert(name.clone(), v.clone());
            }
        }
        for dep in &task.dependencies {
            if let Some(v) = self.result(dep) {
                inputs.entry(dep.clone()).or_insert_with(|| v.clone());
            }
        }
        inputs
    }

    fn execute(&mut self, i: usize) -> Result<(), SchedulerError> {
        let (kind, tokens) = (self.tasks[i].kind.clone(), self.tasks[i].budget.tokens);
        if let Err(refusal) = self.budget.charge(&kind, tokens) {
            return self.abort(i, format!("budget:{refusal}"), "budget");
        }
        // Memory is consulted before the executor runs; an attached store that cannot be read
        // fails the task closed (see `consult`).
        let consultation = match self.consult_memory(i) {
            Ok(c) => c,
            Err(why) => return self.abort(i, format!("memory_unavailable:{why}"), "memory"),
        };
        self.transition(i, TaskStatus::Running, &kind, None);
        let inputs = self.gather_inputs(i);
        let Some(op) = self.ops.get(&kind).cloned() else {
            return self.fail(
                i,
                Value::Null,
                format!("executor_error:op {kind} unregistered"),
                &inputs,
            );
        };
        let task = &self.tasks[i];
        let call = ExecCall {
            task_id: &task.id,
            kind: &task.kind,
            inputs: &inputs,
            contract: &task.contract,
            token_allowance: tokens,
            memory: consultation.as_ref(),
        };
        let outcome = catch_unwind(AssertUnwindSafe(|| op.executor.execute(&call)));
        match outcome {
            Err(_) => self.fail(i, Value::Null, "executor_panic".into(), &inputs),
            Ok(Err(e)) => self.fail(i, Value::Null, format!("executor_error:{e}"), &inputs),
            Ok(Ok(ExecOutcome::Wait(on))) => {
                let (to, what) = match &on {
                    WaitOn::Primitive(w) => (TaskStatus::WaitingForPrimitive, w),
                    WaitOn::Agent(w) => (TaskStatus::WaitingForAgent, w),
                    WaitOn::Tool(w) => (TaskStatus::WaitingForTool, w),
                };
                let detail = Value::map([("waiting_on", Value::str(what.clone()))]);
                self.transition(i, to, &kind, Some(detail));
                Ok(())
            }
            Ok(Ok(ExecOutcome::Done(value))) => self.judge(i, value, inputs),
        }
    }

    /// Delivers the result a parked task was waiting for, and judges it at once. Call
    /// [`Scheduler::run`] afterwards to continue.
    pub fn deliver(
        &mut self,
        task_id: &str,
        result: Result<Value, String>,
    ) -> Result<(), SchedulerError> {
        let i = *self
            .index
            .get(task_id)
            .ok_or_else(|| SchedulerError::UnknownTask(task_id.to_owned()))?;
        if !self.tasks[i].status.is_waiting() {
            return Err(SchedulerError::NotWaiting(task_id.to_owned()));
        }
        let inputs = self.gather_inputs(i);
        match result {
            Ok(value) => self.judge(i, value, inputs),
            Err(e) => self.fail(i, Value::Null, format!("delivery_error:{e}"), &inputs),
        }
    }

    /// Records how the job was classified together with the facts that decided it (the rule,
    /// the template, what plan memory recalled). `facts` keys never replace `job_type`.
    pub fn classify_with(&mut self, job_type: &str, facts: Value) {
        self.start();
        let mut detail = match facts {
            Value::Map(m) => m,
            _ => BTreeMap::new(),
        };
        detail.insert("job_type".to_owned(), Value::str(job_type));
        let mut e = TraceEvent::new(EventKind::Classify);
        e.detail = Value::Map(detail);
        self.record(e);
    }
}
