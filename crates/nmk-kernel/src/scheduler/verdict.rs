//! Judging a result: the registered validator's verdict, failures and aborts, each one ledger
//! entry.

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};

use nmk_det::{ContentHash, ValidationLevel, Value, hash_value};

use super::{MEMORY_CONSULT_INPUT, Scheduler, SchedulerError};
use crate::ledger::{Action, LedgerEntry, LedgerRecord, ValidatorId};
use crate::ops::{OpTier, ValidationCall, Verdict};
use crate::task::TaskStatus;
use crate::trace::{EventKind, TraceEvent};
use crate::verification::Verification;

impl Scheduler {
    pub(super) fn ledger_record(
        &mut self,
        i: usize,
        inputs: &BTreeMap<String, Value>,
        result: ContentHash,
        validator: Option<ValidatorId>,
        action: Action,
        detail: Value,
    ) -> LedgerRecord {
        let t = self.tick();
        let task = &self.tasks[i];
        let mut inputs: BTreeMap<String, ContentHash> = inputs
            .iter()
            .map(|(k, v)| (k.clone(), hash_value(v)))
            .collect();
        // What memory said before the task ran, bound into every entry about it.
        if let Some(consult) = self.consults.get(&i) {
            inputs.insert(MEMORY_CONSULT_INPUT.to_owned(), *consult);
        }
        LedgerRecord {
            opcode: task.kind.clone(),
            op_version: self
                .ops
                .get(&task.kind)
                .map(|o| o.version.clone())
                .unwrap_or_default(),
            inputs,
            result,
            contract: hash_value(&task.contract),
            validator,
            level: task.level,
            verification: task.verification,
            action,
            logical_time: t,
            model: None,
            detail,
        }
    }

    pub(super) fn append(&mut self, record: LedgerRecord) -> Result<LedgerEntry, SchedulerError> {
        let entry = self.ledger.append(record)?;
        self.ledger_entries += 1;
        Ok(entry)
    }

    pub(super) fn judge(
        &mut self,
        i: usize,
        value: Value,
        inputs: BTreeMap<String, Value>,
    ) -> Result<(), SchedulerError> {
        let kind = self.tasks[i].kind.clone();
        let result_ref = match self.artifacts.put(value.clone(), &format!("result:{kind}")) {
            Ok(r) => r,
            Err(e) => return self.fail(i, Value::Null, format!("artifact_error:{e}"), &inputs),
        };
        self.tasks[i].result_ref = Some(result_ref);
        self.transition(i, TaskStatus::Validating, "scheduler", None);
        let judgment_only = self
            .ops
            .get(&kind)
            .is_some_and(|o| o.tier == OpTier::JudgmentOnly);
        let (verdict, validator_id) = match self.tasks[i].validator.clone() {
            None => (Ok((ValidationLevel::None, Verification::Judgment)), None),
            Some((name, level)) => match self.validators.get(&name).cloned() {
                None => (Err(format!("validator_missing:{name}")), None),
                Some(v) => {
                    let task = &self.tasks[i];
                    let call = ValidationCall {
                        task_id: &task.id,
                        kind: &task.kind,
                        contract: &task.contract,
                        level,
                    };
                    let outcome = catch_unwind(AssertUnwindSafe(|| v.verdict(&value, &call)));
                    let verdict = match outcome {
                        // Nothing was checked: kept, but only as judgment.
                        Ok(Ok(Verdict::Unjudged)) => {
                            Ok((ValidationLevel::None, Verification::Judgment))
                        }
                        Ok(Ok(Verdict::Pass)) => {
                            let verification = Verification::for_pass(level);
                            Ok((
                                level,
                                if judgment_only {
                                    Verification::Judgment
                                } else {
                                    verification
                                },
                            ))
                        }
                        Ok(Ok(Verdict::Fail)) => Err("validation_failed".to_owned()),
                        Ok(Err(e)) => {
                            self.budget.disable(&kind);
                            Err(format!("validator_error:{e}"))
                        }
                        Err(_) => {
                            self.budget.disable(&kind);
                            Err("validator_panic".to_owned())
                        }
                    };
                    (verdict, Some(v.id()))
                }
            },
        };
        match verdict {
            Ok((level, verification)) => {
                self.tasks[i].level = level;
                self.tasks[i].verification = verification;
                let detail = Value::map([
                    ("task", Value::str(self.tasks[i].id.clone())),
                    ("owner", Value::str(self.tasks[i].owner.clone())),
                ]);
                let record = self.ledger_record(
                    i,
                    &inputs,
                    result_ref.hash(),
                    validator_id,
                    Action::Pass,
                    detail,
                );
                let entry = match self.append(record) {
                    Ok(entry) => entry,
                    Err(e) => {
                        // No verdict without a ledger entry: the node does not pass.
                        self.tasks[i].verification = Verification::Unverified;
                        self.tasks[i].level = ValidationLevel::None;
                        self.tasks[i].abort_reason = Some("ledger_error".into());
                        self.transition(i, TaskStatus::Aborted, "scheduler", None);
                        return Err(e);
                    }
                };
                self.tasks[i].proof = Some(entry.hash);
                self.transition(i, TaskStatus::Passed, &kind, None);
                if let Some(parent) = self.tasks[i]
                    .reopen
                    .clone()
                    .and_then(|p| self.index.get(&p).copied())
                {
                    let (r, v, l, p) = (
                        self.tasks[i].result_ref,
                        self.tasks[i].verification,
                        self.tasks[i].level,
                        self.tasks[i].proof,
                    );
                    let parent_task = &mut self.tasks[parent];
                    parent_task.result_ref = r;
                    parent_task.verification = v;
                    parent_task.level = l;
                    parent_task.proof = p;
                    self.transition(parent, TaskStatus::Passed, "agent:repair", None);
                }
                Ok(())
            }
            Err(reason) => {
                if let Some(id) = validator_id {
                    self.fail_with_validator(i, value, reason, &inputs, Some(id))
                } else {
                    self.fail(i, value, reason, &inputs)
                }
            }
        }
    }

    pub(super) fn fail(
        &mut self,
        i: usize,
        value: Value,
        reason: String,
        inputs: &BTreeMap<String, Value>,
    ) -> Result<(), SchedulerError> {
        self.fail_with_validator(i, value, reason, inputs, None)
    }

    pub(super) fn fail_with_validator(
        &mut self,
        i: usize,
        value: Value,
        reason: String,
        inputs: &BTreeMap<String, Value>,
        validator: Option<ValidatorId>,
    ) -> Result<(), SchedulerError> {
        let result_hash = hash_value(&value);
        if self.tasks[i].result_ref.is_none()
            && let Ok(r) = self
                .artifacts
                .put(value, &format!("failed:{}", self.tasks[i].kind))
        {
            self.tasks[i].result_ref = Some(r);
        }
        self.tasks[i].verification = Verification::Unverified;
        self.tasks[i].level = ValidationLevel::None;
        self.tasks[i].failed_results.push(result_hash);
        let detail = Value::map([
            ("task", Value::str(self.tasks[i].id.clone())),
            ("owner", Value::str(self.tasks[i].owner.clone())),
            ("reason", Value::str(reason.clone())),
        ]);
        let record = self.ledger_record(i, inputs, result_hash, validator, Action::Fail, detail);
        let entry = self.append(record)?;
        self.tasks[i].proof = Some(entry.hash);
        let kind = self.tasks[i].kind.clone();
        self.transition(
            i,
            TaskStatus::Failed,
            &kind,
            Some(Value::map([("reason", Value::str(reason.clone()))])),
        );
        self.repair_policy(i, reason)
    }

    pub(super) fn abort(
        &mut self,
        i: usize,
        reason: String,
        executor: &str,
    ) -> Result<(), SchedulerError> {
        self.tasks[i].abort_reason = Some(reason.clone());
        let detail = Value::map([
            ("task", Value::str(self.tasks[i].id.clone())),
            ("owner", Value::str(self.tasks[i].owner.clone())),
            ("reason", Value::str(reason.clone())),
        ]);
        let result = self.tasks[i]
            .result_ref
            .map(|r| r.hash())
            .unwrap_or_else(|| hash_value(&Value::Null));
        let record = self.ledger_record(i, &BTreeMap::new(), result, None, Action::Abort, detail);
        self.append(record)?;
        let mut e = TraceEvent::new(EventKind::Abort);
        e.task = Some(self.tasks[i].id.clone());
        e.detail = Value::map([("reason", Value::str(reason.clone()))]);
        self.record(e);
        self.transition(
            i,
            TaskStatus::Aborted,
            executor,
            Some(Value::map([("reason", Value::str(reason))])),
        );
        // A repair worker that is aborted takes its parent down with it.
        if let Some(parent) = self.tasks[i]
            .reopen
            .clone()
            .and_then(|p| self.index.get(&p).copied())
            && self.tasks[parent].status == TaskStatus::Repairing
        {
            let why = format!(
                "repair_failed:{}",
                self.tasks[i].abort_reason.clone().unwrap_or_default()
            );
            return self.abort(parent, why, "agent:repair");
        }
        Ok(())
    }
}
