//! The rollup of one job and the dashboard over all of them: reports built from what the
//! scheduler, its ledger and its trace already decided. Nothing here judges or re-derives a
//! verdict; a task's line says exactly the status and verification the scheduler gave it.

use std::collections::BTreeMap;

use nmk_det::Value;
use serde_json::{Value as Json, json};

use crate::task::Task;
use crate::trace::TraceEvent;

/// One task of a job, as the scheduler left it.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskLine {
    /// Task id.
    pub task: String,
    /// Its op.
    pub kind: String,
    /// Who ran it.
    pub owner: String,
    /// Final state.
    pub status: String,
    /// Its verification.
    pub verification: String,
    /// Hash of the ledger entry that judged it.
    pub proof: Option<String>,
}

impl TaskLine {
    /// The line for an admitted task.
    pub fn of(task: &Task) -> TaskLine {
        TaskLine {
            task: task.id.clone(),
            kind: task.kind.clone(),
            owner: task.owner.clone(),
            status: task.status.as_str().to_owned(),
            verification: task.verification.as_str().to_owned(),
            proof: task.proof.map(|h| h.to_hex()),
        }
    }

    /// `✓ kind [owner] (verification)` for a task that passed or committed, `✗ …` otherwise.
    pub fn checklist_line(&self) -> String {
        let mark = if matches!(self.status.as_str(), "PASSED" | "COMMITTED") {
            '✓'
        } else {
            '✗'
        };
        format!(
            "{mark} {} [{}] ({})",
            self.kind, self.owner, self.verification
        )
    }
}

/// What one submitted job came to.
#[derive(Debug, Clone, PartialEq)]
pub struct Rollup {
    /// The job's id.
    pub job_id: String,
    /// The run's id (`r<n>`).
    pub run_id: String,
    /// Its job type.
    pub job_type: String,
    /// The template that planned it.
    pub template: String,
    /// What decided the job type (`declared`, `matched`, `fallback`).
    pub rule: String,
    /// Whether plan memory chose the template.
    pub template_from_memory: bool,
    /// Why the plan was refused before running, if it was.
    pub refused: Option<String>,
    /// Whether the root committed.
    pub committed: bool,
    /// Whether the run's ledger entries verify.
    pub ledger_verified: bool,
    /// Ledger entries the run wrote.
    pub ledger_entries: u64,
    /// The committed result.
    pub result: Option<Value>,
    /// Every task, in admission order.
    pub tasks: Vec<TaskLine>,
    /// One line per task.
    pub checklist: Vec<String>,
    /// The trace self-check's violations (empty: clean).
    pub violations: Vec<String>,
    /// The run's trace.
    pub trace: Vec<TraceEvent>,
    /// Why plan memory could not be saved after the run, if it could not.
    pub memory_error: Option<String>,
}

fn value_json(v: &Value) -> Json {
    serde_json::from_str(&nmk_det::canonical::encode(v)).unwrap_or(Json::Null)
}

impl Rollup {
    /// Kinds of the tasks that ended FAILED or ABORTED.
    pub fn failed_kinds(&self) -> Vec<String> {
        self.tasks
            .iter()
            .filter(|t| matches!(t.status.as_str(), "FAILED" | "ABORTED"))
            .map(|t| t.kind.clone())
            .collect()
    }

    /// The rollup as JSON (the trace as a list of events).
    pub fn to_json(&self) -> Json {
        let tasks: Vec<Json> = self
            .tasks
            .iter()
            .map(|t| {
                json!({
                    "task": t.task, "kind": t.kind, "owner": t.owner, "status": t.status,
                    "verification": t.verification, "proof": t.proof,
                })
            })
            .collect();
        json!({
            "job_id": self.job_id,
            "run_id": self.run_id,
            "job_type": self.job_type,
            "template": self.template,
            "rule": self.rule,
            "template_from_memory": self.template_from_memory,
            "refused": self.refused,
            "committed": self.committed,
            "ledger_verified": self.ledger_verified,
            "ledger_entries": self.ledger_entries,
            "result": self.result.as_ref().map(value_json),
            "tasks": tasks,
            "checklist": self.checklist,
            "self_check": {
                "passed": self.violations.is_empty(),
                "violations": self.violations,
            },
            "trace": self.trace.iter().map(|e| value_json(&e.to_value())).collect::<Vec<_>>(),
            "memory_error": self.memory_error,
        })
    }
}

/// Totals over every job plan memory has seen.
#[derive(Debug, Clone, PartialEq)]
pub struct Dashboard {
    /// Jobs submitted.
    pub jobs_total: u64,
    /// Jobs whose root committed.
    pub committed_total: u64,
    /// Jobs per job type.
    pub by_type: BTreeMap<String, u64>,
    /// Per job type, the best template that has passed at least once.
    pub proven_templates: BTreeMap<String, String>,
    /// Lessons per job type.
    pub learnings: BTreeMap<String, Vec<String>>,
}

impl Dashboard {
    /// The dashboard as JSON.
    pub fn to_json(&self) -> Json {
        json!({
            "jobs_total": self.jobs_total,
            "committed_total": self.committed_total,
            "by_type": self.by_type,
            "proven_templates": self.proven_templates,
            "learnings": self.learnings,
        })
    }
}
