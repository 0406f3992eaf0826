//! The repair policy: pass-through gate, confidence band, bounded retries, and clean-context
//! repair workers admitted like any other task.

use nmk_det::Value;

use super::{Scheduler, SchedulerError};
use crate::task::{Task, TaskBudget, TaskSpec, TaskStatus, ValidatorSpec};
use crate::trace::{EventKind, TraceEvent};
use crate::verification::Verification;

impl Scheduler {
    /// Declared confidence of a task's validator: what a same-kind re-run could at best earn.
    pub(super) fn declared_verification(task: &Task) -> Verification {
        match &task.validator {
            None => Verification::Judgment,
            Some((_, level)) => Verification::for_pass(*level),
        }
    }

    pub(super) fn repair_policy(&mut self, i: usize, reason: String) -> Result<(), SchedulerError> {
        // A failed repair worker is not repaired again: it fails its parent.
        if self.tasks[i].reopen.is_some() {
            return self.abort(i, reason, "scheduler");
        }
        let kind = self.tasks[i].kind.clone();
        let repair_kind = format!("{kind}_repair");
        let has_repair_executor = self.ops.contains_key(&repair_kind);
        // 1. A root that merely re-published a dependency's content is not retried.
        if self.tasks[i].is_root && !has_repair_executor {
            let result = self.tasks[i].result_ref;
            let republished = result.is_some()
                && self.tasks[i]
                    .dependencies
                    .iter()
                    .any(|d| self.task(d).and_then(|t| t.result_ref) == result);
            if republished {
                let mut e = TraceEvent::new(EventKind::GateFail);
                e.task = Some(self.tasks[i].id.clone());
                e.detail = Value::map([("reason", Value::str(reason.clone()))]);
                self.record(e);
                return self.abort(i, format!("gate_failed:{reason}"), "scheduler");
            }
        }
        // 2. Without a dedicated repair executor, a retry is a deterministic re-run: only worth
        //    it inside the confidence band.
        if !has_repair_executor && !Self::declared_verification(&self.tasks[i]).in_repair_band() {
            let mut e = TraceEvent::new(EventKind::RepairSkipped);
            e.task = Some(self.tasks[i].id.clone());
            e.detail = Value::map([("reason", Value::str(reason.clone()))]);
            self.record(e);
            return self.abort(i, format!("repair_skipped:{reason}"), "scheduler");
        }
        // 3. Retries exhausted.
        if self.tasks[i].retries >= self.tasks[i].budget.max_retries {
            return self.abort(i, reason, "scheduler");
        }
        // 4. A clean-context repair worker, admitted like any other task.
        let failed_value = self.tasks[i]
            .result_ref
            .and_then(|r| self.artifacts.get(&r).cloned())
            .filter(|v| *v != Value::Null)
            .unwrap_or_else(|| Value::map([("error", Value::str(reason.clone()))]));
        let failed_ref = match self.artifacts.put(failed_value, "failed") {
            Ok(r) => r,
            Err(e) => return self.abort(i, format!("repair_refused:{e}"), "scheduler"),
        };
        let parent = &self.tasks[i];
        let n = parent.retries + 1;
        // The failing slice: what the parent consumed (its own inputs and its dependencies'
        // results, keyed as it saw them) and what it produced; nothing else of the graph.
        let mut input_refs = parent.input_refs.clone();
        for dep in &parent.dependencies {
            if let Some(r) = self.task(dep).and_then(|t| t.result_ref) {
                input_refs.entry(dep.clone()).or_insert(r);
            }
        }
        input_refs.insert("_failed".into(), failed_ref);
        let spec = TaskSpec {
            id: format!("{}.repair{n}", parent.id),
            kind: if has_repair_executor {
                repair_kind
            } else {
                kind
            },
            owner: "agent:repair".into(),
            input_refs,
            contract: parent.contract.clone(),
            validator: parent
                .validator
                .as_ref()
                .map(|(name, level)| ValidatorSpec::new(name, level.as_str())),
            capabilities: parent.capabilities.iter().map(|c| c.to_string()).collect(),
            budget: TaskBudget {
                tokens: parent.budget.tokens,
                max_retries: 0,
            },
            dependencies: Vec::new(),
            is_root: false,
        };
        let parent_id = parent.id.clone();
        match self.check_plan(std::slice::from_ref(&spec)) {
            Err(rejection) => self.abort(i, format!("repair_refused:{rejection}"), "scheduler"),
            Ok(mut admitted) => {
                self.tasks[i].retries = n;
                let mut e = TraceEvent::new(EventKind::Repair);
                e.task = Some(parent_id.clone());
                e.detail = Value::map([
                    ("worker", Value::str(spec.id.clone())),
                    ("reason", Value::str(reason)),
                ]);
                self.record(e);
                self.transition(i, TaskStatus::Repairing, "scheduler", None);
                if let Some(mut worker) = admitted.pop() {
                    worker.reopen = Some(parent_id);
                    self.insert(worker);
                }
                Ok(())
            }
        }
    }
}
