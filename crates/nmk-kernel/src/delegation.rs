//! Delegation: "the agent claims, the trace proves, the requestor reconciles".
//!
//! A delegated tool call runs as one task `agent:<id>/<tool>` in a child scheduler of its own:
//! it goes through admission (the tool's capability must be granted), through the normal run
//! loop with the requestor's trap budget charged (§9 D27), and is judged by the tool's
//! registered validator alone. Its child trace (`run.start`, `classify`, `plan`, the task's
//! events, `run.end`) records the content hash of the result; [`reconcile_with_trace`] checks
//! an agent's claim against that trace. The task is not the child graph's root, so nothing is
//! committed on the agent's say-so, and once it has settled it is never run again.
//!
//! A delegated tool's level is what its validator certifies, registered up front and at most
//! ORACLE: delegation never labels re-executed code PROVEN (§9 D11). This module may not judge
//! a result itself or touch the requestor's own task graph.

use std::collections::BTreeMap;
use std::sync::Arc;

use nmk_det::{ContentHash, ValidationLevel, Value, hash_value};

use crate::artifact::ArtifactRef;
use crate::budget::{Budget, BudgetLimits};
use crate::capability::{Capability, Grants};
use crate::ledger::Ledger;
use crate::ops::{Executor, OpSpec, Validator};
use crate::scheduler::{Scheduler, SchedulerError};
use crate::task::{TaskSpec, TaskStatus};
use crate::trace::{self, EventKind, TraceEvent};
use crate::verification::Verification;

/// Longest agent id, in characters.
pub const MAX_AGENT_ID_CHARS: usize = 64;
/// Longest tool name, in characters.
pub const MAX_TOOL_NAME_CHARS: usize = 64;
/// Most named inputs one delegation may carry.
pub const MAX_INPUTS: usize = 64;

/// Why a delegation could not be attempted (a refused or failed one is a [`Delegation`]).
#[derive(Debug, thiserror::Error)]
pub enum DelegationError {
    /// A tool registration was refused.
    #[error("tool registration refused: {0}")]
    Registration(String),
    /// The agent id is malformed.
    #[error("malformed agent id {0:?}")]
    BadAgentId(String),
    /// Too many or malformed inputs.
    #[error("bad delegation inputs: {0}")]
    BadInputs(String),
    /// The child scheduler could not record a decision.
    #[error(transparent)]
    Scheduler(#[from] SchedulerError),
}

/// A tool an agent may be asked to run.
#[derive(Clone)]
pub struct AgentTool {
    name: String,
    version: String,
    executor: Arc<dyn Executor>,
    validator: Arc<dyn Validator>,
    level: ValidationLevel,
    syscall: bool,
}

impl std::fmt::Debug for AgentTool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentTool")
            .field("name", &self.name)
            .field("level", &self.level)
            .field("syscall", &self.syscall)
            .finish()
    }
}

impl AgentTool {
    /// A syscall-tier tool (capability `op:<name>`), its validator certifying `level`, which is
    /// also the op's ceiling.
    pub fn syscall(
        name: &str,
        version: &str,
        level: ValidationLevel,
        executor: impl Executor + 'static,
        validator: Arc<dyn Validator>,
    ) -> AgentTool {
        AgentTool {
            name: name.to_owned(),
            version: version.to_owned(),
            executor: Arc::new(executor),
            validator,
            level,
            syscall: true,
        }
    }

    /// An ordinary tool (capability `prim:<name>`), its validator certifying `level`.
    pub fn pure(
        name: &str,
        version: &str,
        level: ValidationLevel,
        executor: impl Executor + 'static,
        validator: Arc<dyn Validator>,
    ) -> AgentTool {
        AgentTool {
            syscall: false,
            ..AgentTool::syscall(name, version, level, executor, validator)
        }
    }

    /// The tool's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The level its validator certifies.
    pub fn level(&self) -> ValidationLevel {
        self.level
    }

    /// The capability a delegation of it needs.
    pub fn capability(&self) -> String {
        if self.syscall {
            format!("op:{}", self.name)
        } else {
            format!("prim:{}", self.name)
        }
    }

    /// The validator's registered name.
    pub fn validator_name(&self) -> String {
        format!("{}_ok", self.name)
    }

    fn op_spec(&self) -> Result<OpSpec, DelegationError> {
        let executor = Arc::clone(&self.executor);
        let run = move |call: &crate::ops::ExecCall<'_>| executor.execute(call);
        if self.syscall {
            let cap = Capability::parse(&self.capability())
                .map_err(|e| DelegationError::Registration(e.to_string()))?;
            Ok(OpSpec::syscall(
                &self.name,
                &self.version,
                cap,
                self.level,
                run,
            ))
        } else {
            Ok(OpSpec::pure(&self.name, &self.version, run))
        }
    }
}

/// What a delegation came to.
#[derive(Debug, Clone, PartialEq)]
pub struct Delegation {
    /// Whether the task ran and its validator passed.
    pub ok: bool,
    /// The delegated task's id (`agent:<id>/<tool>`).
    pub agent_task_id: String,
    /// The tool.
    pub tool: String,
    /// The result the tool produced (`Null` when none).
    pub result: Value,
    /// Its artifact ref in the child run.
    pub result_ref: Option<ArtifactRef>,
    /// The canonical content hash of the result.
    pub content_hash: Option<ContentHash>,
    /// The child run's id.
    pub run_id: String,
    /// The child run's trace.
    pub trace: Vec<TraceEvent>,
    /// Whether a deterministic validator backs the result (checked, validated or verified).
    pub kernel_validated: bool,
    /// The verification the validator's verdict supports.
    pub verification: Verification,
    /// The level it certified.
    pub level: ValidationLevel,
    /// The task's final state (`None` when it was never admitted).
    pub status: Option<TaskStatus>,
    /// Why it is not ok (`unknown tool: …`, `admit refused: …`, the abort or failure reason).
    pub error: Option<String>,
}

/// Runs delegated tool calls, one child scheduler each, on a shared ledger.
#[derive(Debug)]
pub struct Delegator {
    tools: BTreeMap<String, AgentTool>,
    grants: Grants,
    ledger: Ledger,
    runs: u64,
    task_memory: Option<crate::orchestrator::SharedMemory>,
}

fn name_ok(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.chars().count() <= max
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
}

impl Delegator {
    /// A delegator writing to `ledger`, with no tools.
    pub fn new(ledger: Ledger) -> Delegator {
        Delegator {
            tools: BTreeMap::new(),
            grants: Grants::none(),
            ledger,
            runs: 0,
            task_memory: None,
        }
    }

    /// Every delegated task's child scheduler consults `store` before it runs.
    pub fn with_task_memory(mut self, store: crate::orchestrator::SharedMemory) -> Delegator {
        self.task_memory = Some(store);
        self
    }

    /// Registers a tool; with `grant` its capability is granted, otherwise it is nameable but
    /// refused at admission. A tool claiming PROVEN is refused: a delegated call re-runs
    /// untrusted code and can earn at most what a per-call check shows (§9 D11).
    pub fn register_tool(&mut self, tool: AgentTool, grant: bool) -> Result<(), DelegationError> {
        if !name_ok(&tool.name, MAX_TOOL_NAME_CHARS) {
            return Err(DelegationError::Registration(format!(
                "malformed tool name {:?}",
                tool.name.chars().take(80).collect::<String>()
            )));
        }
        if tool.level >= ValidationLevel::Proven {
            return Err(DelegationError::Registration(format!(
                "tool {:?} claims PROVEN; a delegated call is checked per call, at most ORACLE",
                tool.name
            )));
        }
        let cap = Capability::parse(&tool.capability())
            .map_err(|e| DelegationError::Registration(e.to_string()))?;
        if grant {
            self.grants.grant(cap);
        } else {
            self.grants.revoke(&cap);
        }
        self.tools.insert(tool.name.clone(), tool);
        Ok(())
    }

    /// Delegates one call of `tool` on `inputs` to agent `agent_id`, charging `budget` (the
    /// requestor's) for every trap the child run spends.
    pub fn delegate_run(
        &mut self,
        budget: &mut Budget,
        tool: &str,
        inputs: BTreeMap<String, Value>,
        agent_id: &str,
    ) -> Result<Delegation, DelegationError> {
        if !name_ok(agent_id, MAX_AGENT_ID_CHARS) {
            return Err(DelegationError::BadAgentId(
                agent_id.chars().take(80).collect(),
            ));
        }
        if inputs.len() > MAX_INPUTS {
            return Err(DelegationError::BadInputs(format!(
                "{} inputs, over the cap of {MAX_INPUTS}",
                inputs.len()
            )));
        }
        self.runs = self.runs.saturating_add(1);
        let run_id = format!("d{}", self.runs);
        let agent_task_id = format!("agent:{agent_id}/{tool}");
        let not_ok = |why: String, trace: Vec<TraceEvent>| Delegation {
            ok: false,
            agent_task_id: agent_task_id.clone(),
            tool: tool.to_owned(),
            result: Value::Null,
            result_ref: None,
            content_hash: None,
            run_id: run_id.clone(),
            trace,
            kernel_validated: false,
            verification: Verification::Unverified,
            level: ValidationLevel::None,
            status: None,
            error: Some(why),
        };
        let Some(spec) = self.tools.get(tool).cloned() else {
            return Ok(not_ok(
                format!(
                    "unknown tool: {:?}",
                    tool.chars().take(80).collect::<String>()
                ),
                Vec::new(),
            ));
        };
        let parent = budget.limits().clone();
        let mut child_budget = Budget::new(BudgetLimits {
            max_traps: budget.remaining(),
            max_same_op: parent.max_same_op.saturating_sub(budget.charges_of(tool)),
            tokens: budget.tokens_left(),
            wall: None,
        });
        if budget.is_disabled(tool) {
            child_budget.disable(tool);
        }
        let mut child = Scheduler::new(&run_id, self.ledger.clone(), child_budget)?;
        if let Some(store) = &self.task_memory {
            child.attach_memory(Box::new(Arc::clone(store)));
        }
        child.register_op(spec.op_spec()?)?;
        child.register_validator(&spec.validator_name(), Arc::clone(&spec.validator));
        let cap = Capability::parse(&spec.capability())
            .map_err(|e| DelegationError::Registration(e.to_string()))?;
        if self.grants.allows(&cap) {
            child.grants_mut().grant(cap);
        }
        child.classify_with(
            "delegation",
            Value::map([("tool", Value::str(tool)), ("agent", Value::str(agent_id))]),
        );
        let mut task = TaskSpec::new(agent_task_id.clone(), tool)
            .owned_by(&format!("agent:{agent_id}"))
            .validated_by(&spec.validator_name(), spec.level.as_str())
            .needs(&spec.capability());
        for (name, value) in inputs {
            let r = child.put_artifact(value, &format!("input:{name}"))?;
            task = task.input(&name, r);
        }
        let admitted = child.admit(task);
        child.run(if admitted.is_ok() { 2 } else { 0 })?;
        let used = child.budget().n_traps();
        for _ in 0..used {
            // The child spent at most what remained, so this only fails if the requestor's
            // budget was changed concurrently; the child's spend is recorded either way.
            let _ = budget.charge(tool, 0);
        }
        if child.budget().is_disabled(tool) {
            budget.disable(tool);
        }
        let events = child.trace().events().to_vec();
        if let Err(reject) = admitted {
            return Ok(not_ok(format!("admit refused: {reject}"), events));
        }
        let Some(t) = child.task(&agent_task_id) else {
            return Ok(not_ok("task vanished".into(), events));
        };
        let ok = t.status == TaskStatus::Passed;
        let result = child.result(&agent_task_id).cloned().unwrap_or(Value::Null);
        let error = (!ok).then(|| {
            t.abort_reason
                .clone()
                .unwrap_or_else(|| format!("task ended {}", t.status))
        });
        Ok(Delegation {
            ok,
            agent_task_id: agent_task_id.clone(),
            tool: tool.to_owned(),
            content_hash: ok.then(|| hash_value(&result)),
            result_ref: t.result_ref,
            result,
            run_id,
            trace: events,
            kernel_validated: ok && t.verification.is_evidence_backed(),
            verification: t.verification,
            level: t.level,
            status: Some(t.status),
            error,
        })
    }

    /// Delegates, then reconciles the agent's claim (its own result) with the child trace.
    pub fn delegate_and_verify(
        &mut self,
        budget: &mut Budget,
        tool: &str,
        inputs: BTreeMap<String, Value>,
        agent_id: &str,
    ) -> Result<Verified, DelegationError> {
        let delegation = self.delegate_run(budget, tool, inputs, agent_id)?;
        let claim = Claim {
            agent_task_id: delegation.agent_task_id.clone(),
            result: delegation.result.clone(),
        };
        let reconciliation = reconcile_with_trace(&claim, &delegation.trace);
        Ok(Verified {
            verified: reconciliation.consistent && delegation.ok,
            delegation,
            reconciliation,
        })
    }
}

/// What an agent claims it produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Claim {
    /// The delegated task's id.
    pub agent_task_id: String,
    /// The result it claims.
    pub result: Value,
}

/// The individual checks of a reconciliation.
#[derive(Debug, Clone, PartialEq)]
pub struct ReconcileChecks {
    /// The trace self-check found nothing.
    pub self_check_passed: bool,
    /// What it found.
    pub violations: Vec<String>,
    /// The trace has events for the claimed task.
    pub task_event_found: bool,
    /// The task reached PASSED.
    pub task_passed: bool,
    /// The claim's hash equals the recorded one.
    pub hash_match: bool,
    /// The claim's canonical content hash.
    pub claimed_hash: ContentHash,
    /// The content hash the kernel recorded when the task passed.
    pub recorded_proof: Option<ContentHash>,
}

/// Whether a claim agrees with the trace.
#[derive(Debug, Clone, PartialEq)]
pub struct Reconciliation {
    /// Every check holds.
    pub consistent: bool,
    /// The checks.
    pub checks: ReconcileChecks,
}

/// A delegation with its reconciliation.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    /// Consistent and ok.
    pub verified: bool,
    /// The delegation.
    pub delegation: Delegation,
    /// The reconciliation of its own result with its trace.
    pub reconciliation: Reconciliation,
}

/// Reconciles `claim` with `events`: consistent iff the trace self-check passes, the claimed
/// task reached PASSED there, and the claim's canonical hash is the content hash the kernel
/// recorded at that transition (which a ledger proof also backs, by self-check rule 5).
pub fn reconcile_with_trace(claim: &Claim, events: &[TraceEvent]) -> Reconciliation {
    let run = events.first().map(|e| e.run.as_str()).unwrap_or("?");
    let violations = trace::check(run, events);
    let task_events: Vec<&TraceEvent> = events
        .iter()
        .filter(|e| e.kind == EventKind::Task && e.task.as_deref() == Some(&claim.agent_task_id))
        .collect();
    let passed = task_events
        .iter()
        .rev()
        .find(|e| e.to == Some(TaskStatus::Passed));
    let recorded_proof = passed.and_then(|e| e.result);
    let claimed_hash = hash_value(&claim.result);
    let checks = ReconcileChecks {
        self_check_passed: violations.is_empty(),
        violations,
        task_event_found: !task_events.is_empty(),
        task_passed: passed.is_some(),
        hash_match: recorded_proof == Some(claimed_hash),
        claimed_hash,
        recorded_proof,
    };
    Reconciliation {
        consistent: checks.self_check_passed
            && checks.task_event_found
            && checks.task_passed
            && checks.hash_match,
        checks,
    }
}
