//! The orchestrator ("job kernel"): turns a job into a planned, admitted, validated and
//! committed run, and remembers how its templates fare.
//!
//! `submit` gives each job a fresh run id and a fresh [`Scheduler`] on the shared ledger, with
//! a trap budget equal to the job's budget and exactly the job type's policy as grants (§9 D22:
//! a plan needing anything outside that policy is refused, never granted). The trace runs
//! `run.start` → `classify` (with what plan memory recalled) → `plan` → the task events →
//! `run.end`; the rollup carries the trace self-check. Executors and validators for the
//! template ops come from the caller's [`OpCatalogue`]: the orchestrator never produces a
//! result or a verdict itself, and may not touch a task once the scheduler has judged it.

pub mod classify;
pub mod job;
pub mod plan_memory;
pub mod rollup;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use nmk_det::Value;

use crate::budget::{Budget, BudgetLimits};
use crate::capability::Capability;
use crate::ledger::Ledger;
use crate::memory::MemoryStore;
use crate::ops::{OpSpec, OpTier, Validator};
use crate::plan::Template;
use crate::scheduler::{Scheduler, SchedulerError};
use crate::task::TaskSpec;
use crate::trace;

pub use classify::{Classification, JobType, classify};
pub use job::{Job, JobError};
pub use plan_memory::{PlanMemory, PlanMemoryError, TemplateRecord};
pub use rollup::{Dashboard, Rollup, TaskLine};

/// Most steps one job's run may take.
pub const MAX_STEPS: usize = 1000;

/// Why a job could not be run at all (a refused plan or a failed task is a rollup, not this).
#[derive(Debug, thiserror::Error)]
pub enum OrchestratorError {
    /// The job itself is malformed.
    #[error(transparent)]
    Job(#[from] JobError),
    /// The scheduler could not record a decision or register an op.
    #[error(transparent)]
    Scheduler(#[from] SchedulerError),
}

/// The executors and validators a caller supplies for the template ops.
#[derive(Clone, Default)]
pub struct OpCatalogue {
    ops: Vec<OpSpec>,
    validators: Vec<(String, Arc<dyn Validator>)>,
}

impl std::fmt::Debug for OpCatalogue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpCatalogue")
            .field("ops", &self.ops.iter().map(|o| &o.name).collect::<Vec<_>>())
            .field(
                "validators",
                &self.validators.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl OpCatalogue {
    /// An empty catalogue.
    pub fn new() -> OpCatalogue {
        OpCatalogue::default()
    }

    /// Adds an op.
    pub fn op(mut self, op: OpSpec) -> OpCatalogue {
        self.ops.push(op);
        self
    }

    /// Adds a validator under `name`.
    pub fn validator(mut self, name: &str, validator: Arc<dyn Validator>) -> OpCatalogue {
        self.validators.push((name.to_owned(), validator));
        self
    }

    /// The ops and validators `template` needs that the catalogue lacks (`op:<kind>`,
    /// `validator:<name>`), and judgment-only nodes whose op is registered at another tier.
    pub fn missing_for(&self, template: Template) -> Vec<String> {
        let mut missing = Vec::new();
        for spec in template.tasks() {
            match self.ops.iter().find(|o| o.name == spec.kind) {
                None => missing.push(format!("op:{}", spec.kind)),
                Some(op) if spec.validator.is_none() && op.tier != OpTier::JudgmentOnly => {
                    missing.push(format!("op:{} (must be judgment-only)", spec.kind));
                }
                Some(_) => {}
            }
            if let Some(v) = &spec.validator
                && !self.validators.iter().any(|(n, _)| *n == v.name)
            {
                missing.push(format!("validator:{}", v.name));
            }
        }
        missing
    }
}

/// Submits jobs, one fresh scheduler each, and keeps plan memory.
#[derive(Debug)]
pub struct Orchestrator {
    ledger: Ledger,
    catalogue: OpCatalogue,
    memory: PlanMemory,
    memory_path: Option<PathBuf>,
    task_memory: Option<SharedMemory>,
}

/// A memory store several schedulers consult in turn (one per job run).
pub type SharedMemory = Arc<Mutex<MemoryStore>>;

impl Orchestrator {
    /// An orchestrator writing to `ledger`, running `catalogue`'s ops, remembering in `memory`
    /// (kept in this process only).
    pub fn new(ledger: Ledger, catalogue: OpCatalogue, memory: PlanMemory) -> Orchestrator {
        Orchestrator {
            ledger,
            catalogue,
            memory,
            memory_path: None,
            task_memory: None,
        }
    }

    /// Every job's scheduler consults `store` before each task (a trace event and a ledger
    /// input per task; a store that cannot be read aborts the task).
    pub fn with_task_memory(mut self, store: SharedMemory) -> Orchestrator {
        self.task_memory = Some(store);
        self
    }

    /// As [`Orchestrator::new`], with plan memory loaded from (and saved after each job to)
    /// `path`. A corrupt file is refused.
    pub fn with_memory_file(
        ledger: Ledger,
        catalogue: OpCatalogue,
        path: &Path,
    ) -> Result<Orchestrator, PlanMemoryError> {
        let memory = PlanMemory::load(path)?;
        Ok(Orchestrator {
            ledger,
            catalogue,
            memory,
            memory_path: Some(path.to_owned()),
            task_memory: None,
        })
    }

    /// Plan memory.
    pub fn memory(&self) -> &PlanMemory {
        &self.memory
    }

    /// Plan memory, for trusted callers that seed it.
    pub fn memory_mut(&mut self) -> &mut PlanMemory {
        &mut self.memory
    }

    /// Classifies `job` and runs its type's (or memory's) deterministic template.
    pub fn submit(&mut self, job: &Job) -> Result<Rollup, OrchestratorError> {
        self.run_job(job, None)
    }

    /// Runs `job` on a plan someone proposed instead of the template. The plan gets nothing
    /// the job type's policy does not already grant: a task needing more refuses the plan.
    pub fn submit_plan(
        &mut self,
        job: &Job,
        plan: Vec<TaskSpec>,
    ) -> Result<Rollup, OrchestratorError> {
        self.run_job(job, Some(plan))
    }

    /// Totals over every job plan memory has seen.
    pub fn dashboard(&self) -> Dashboard {
        dashboard(&self.memory)
    }

    fn run_job(
        &mut self,
        job: &Job,
        proposed: Option<Vec<TaskSpec>>,
    ) -> Result<Rollup, OrchestratorError> {
        job.check()?;
        let run_id = format!("r{}", self.memory.jobs_total.saturating_add(1));
        let class = classify(job, &self.memory);
        let limits = BudgetLimits {
            max_traps: class.budget,
            ..BudgetLimits::default()
        };
        let mut sched = Scheduler::new(&run_id, self.ledger.clone(), Budget::new(limits))?;
        if let Some(store) = &self.task_memory {
            sched.attach_memory(Box::new(Arc::clone(store)));
        }
        for op in &self.catalogue.ops {
            sched.register_op(op.clone())?;
        }
        for (name, v) in &self.catalogue.validators {
            sched.register_validator(name, Arc::clone(v));
        }
        let policy = class.job_type.policy();
        for cap in policy.iter() {
            sched.grants_mut().grant(cap.clone());
        }
        let type_name = class.job_type.name();
        let recalled = Value::map([
            (
                "best_template",
                opt_str(self.memory.best_template(type_name)),
            ),
            (
                "learnings",
                Value::List(
                    self.memory
                        .learnings
                        .get(type_name)
                        .into_iter()
                        .flatten()
                        .map(|l| Value::str(l.clone()))
                        .collect(),
                ),
            ),
            (
                "details",
                Value::map(
                    self.memory
                        .details
                        .get(type_name)
                        .into_iter()
                        .flatten()
                        .map(|(k, v)| (k.clone(), Value::str(v.clone()))),
                ),
            ),
        ]);
        sched.classify_with(
            type_name,
            Value::map([
                ("rule", Value::str(class.rule)),
                ("template", Value::str(class.template.name())),
                (
                    "template_from_memory",
                    Value::Bool(class.template_from_memory),
                ),
                ("budget", Value::int(i64::from(class.budget))),
                ("recall", recalled),
            ]),
        );
        let mut inputs = BTreeMap::new();
        inputs.insert(
            "prompt".to_owned(),
            sched.put_artifact(Value::str(job.text.clone()), "input:prompt")?,
        );
        for (name, value) in &job.inputs {
            inputs.insert(
                name.clone(),
                sched.put_artifact(value.clone(), &format!("input:{name}"))?,
            );
        }
        let mut plan = proposed.unwrap_or_else(|| class.template.tasks());
        for spec in plan.iter_mut().filter(|s| s.dependencies.is_empty()) {
            for (name, r) in &inputs {
                spec.input_refs.entry(name.clone()).or_insert(*r);
            }
        }
        apply_owners(&mut plan, job.inputs.get("owners"));
        let refused = match outside_policy(&plan, &policy) {
            Some(why) => Some(why),
            None => sched
                .admit_plan(plan)
                .err()
                .map(|r| format!("admit refused: {r}")),
        };
        let summary = sched.run(if refused.is_some() { 0 } else { MAX_STEPS })?;
        let events = sched.trace().events().to_vec();
        let tasks: Vec<TaskLine> = sched.tasks().iter().map(TaskLine::of).collect();
        let mut rollup = Rollup {
            job_id: job.id.clone(),
            run_id: run_id.clone(),
            job_type: type_name.to_owned(),
            template: class.template.name().to_owned(),
            rule: class.rule.to_owned(),
            template_from_memory: class.template_from_memory,
            refused,
            committed: summary.committed,
            ledger_verified: summary.ledger_verified,
            ledger_entries: summary.ledger_entries,
            result: summary.root_result,
            checklist: tasks.iter().map(TaskLine::checklist_line).collect(),
            tasks,
            violations: trace::check(&run_id, &events),
            trace: events,
            memory_error: None,
        };
        self.learn(job, &class, &rollup);
        if let Some(path) = &self.memory_path
            && let Err(e) = self.memory.save(path)
        {
            rollup.memory_error = Some(e.to_string());
        }
        Ok(rollup)
    }

    fn learn(&mut self, job: &Job, class: &Classification, rollup: &Rollup) {
        let type_name = class.job_type.name();
        let mem = &mut self.memory;
        mem.jobs_total = mem.jobs_total.saturating_add(1);
        if rollup.committed {
            mem.committed_total = mem.committed_total.saturating_add(1);
        }
        let n = mem.by_type.entry(type_name.to_owned()).or_insert(0);
        *n = n.saturating_add(1);
        mem.last_job = Some(job.id.clone());
        mem.record_run(type_name, class.template.name(), rollup.committed);
        if let Some(why) = &rollup.refused {
            mem.learn(type_name, &format!("job {} refused: {why}", job.id));
        } else if !rollup.committed {
            mem.learn(
                type_name,
                &format!(
                    "job {} failed at: [{}]",
                    job.id,
                    rollup.failed_kinds().join(", ")
                ),
            );
        }
    }
}

/// The dashboard over `memory`.
pub fn dashboard(memory: &PlanMemory) -> Dashboard {
    Dashboard {
        jobs_total: memory.jobs_total,
        committed_total: memory.committed_total,
        by_type: memory.by_type.clone(),
        proven_templates: memory.proven_templates(),
        learnings: memory.learnings.clone(),
    }
}

fn opt_str(s: Option<&str>) -> Value {
    s.map(Value::str).unwrap_or(Value::Null)
}

/// The first capability a plan declares that the job type's policy does not grant (§9 D22).
fn outside_policy(plan: &[TaskSpec], policy: &crate::capability::Grants) -> Option<String> {
    plan.iter().find_map(|spec| {
        spec.capabilities.iter().find_map(|text| {
            let allowed = Capability::parse(text).is_ok_and(|c| policy.allows(&c));
            (!allowed).then(|| {
                format!(
                    "plan refused: task {:?} needs {:?}, outside the job type's policy",
                    spec.id, text
                )
            })
        })
    })
}

/// Owners named by the job's `owners` input (`{task_id: owner}`), when well-formed.
fn apply_owners(plan: &mut [TaskSpec], owners: Option<&Value>) {
    let Some(Value::Map(owners)) = owners else {
        return;
    };
    for spec in plan.iter_mut() {
        if let Some(owner) = owners.get(&spec.id).and_then(Value::as_str)
            && !owner.is_empty()
            && owner.len() <= 64
            && owner
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | ':' | '/' | '-'))
        {
            spec.owner = owner.to_owned();
        }
    }
}
