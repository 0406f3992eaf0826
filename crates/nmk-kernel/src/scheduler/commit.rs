//! Committing the root with honest attribution, and the run summary.

use std::collections::BTreeMap;

use nmk_det::{Value, hash_value};

use super::{COMMIT_VALIDATOR, RunSummary, Scheduler, SchedulerError};
use crate::ledger::{Action, LedgerRecord, ValidatorId};
use crate::task::TaskStatus;
use crate::trace::{EventKind, TraceEvent};

impl Scheduler {
    pub(super) fn commit(&mut self) -> Result<(), SchedulerError> {
        let Some(r) = self.root else { return Ok(()) };
        let root = &self.tasks[r];
        // Honest attribution: the producer is the passed dependency with the same content.
        let producer = root.dependencies.iter().find_map(|d| {
            let t = self.task(d)?;
            (t.status.is_passed() && t.result_ref.is_some() && t.result_ref == root.result_ref)
                .then_some(t)
        });
        let verification = match producer {
            Some(p) => root.verification.stronger(p.verification),
            None => root.verification,
        };
        let level = producer
            .map(|p| p.level.max(root.level))
            .unwrap_or(root.level);
        let backing_proof = producer.and_then(|p| p.proof).or(root.proof);
        let producer_id = producer.map(|p| p.id.clone());
        let result_hash = root
            .result_ref
            .map(|r| r.hash())
            .unwrap_or_else(|| hash_value(&Value::Null));
        let mut inputs = BTreeMap::new();
        inputs.insert("root".to_owned(), result_hash);
        if let Some(p) = backing_proof {
            inputs.insert("backing_proof".to_owned(), p);
        }
        let root_id = root.id.clone();
        let contract = hash_value(&root.contract);
        let t = self.tick();
        let detail = Value::map([
            ("task", Value::str(root_id)),
            (
                "producer",
                producer_id.clone().map(Value::Str).unwrap_or(Value::Null),
            ),
            (
                "evidence_backed",
                Value::Bool(verification.is_evidence_backed()),
            ),
        ]);
        let record = LedgerRecord {
            opcode: "commit".into(),
            op_version: "1".into(),
            inputs,
            result: result_hash,
            contract,
            validator: Some(ValidatorId::new(COMMIT_VALIDATOR, "1")),
            level,
            verification,
            action: Action::Commit,
            logical_time: t,
            model: None,
            detail,
        };
        let entry = self.append(record)?;
        let verified = self.ledger.verify_since(self.start_head)?.ok();
        self.tasks[r].verification = verification;
        self.tasks[r].level = level;
        self.commit_entry = Some(entry.clone());
        self.transition(r, TaskStatus::Committed, "commit_trap", None);
        let mut e = TraceEvent::new(EventKind::Commit);
        e.task = Some(self.tasks[r].id.clone());
        e.verification = Some(verification);
        e.level = Some(level);
        e.proof = Some(entry.hash);
        e.result = Some(result_hash);
        e.detail = Value::map([
            ("ledger_verified", Value::Bool(verified)),
            ("ledger_entries", Value::int(self.ledger_entries)),
            (
                "evidence_backed",
                Value::Bool(verification.is_evidence_backed()),
            ),
            (
                "conf_cal",
                Value::float(verification.confidence()).unwrap_or(Value::Null),
            ),
            (
                "producer",
                producer_id.map(Value::Str).unwrap_or(Value::Null),
            ),
            (
                "backing_proof",
                backing_proof
                    .map(|h| Value::str(h.to_hex()))
                    .unwrap_or(Value::Null),
            ),
        ]);
        self.record(e);
        Ok(())
    }

    /// Where the run stands.
    pub fn summary(&self) -> Result<RunSummary, SchedulerError> {
        let mut states: BTreeMap<String, usize> = BTreeMap::new();
        for t in &self.tasks {
            *states.entry(t.status.as_str().to_owned()).or_insert(0) += 1;
        }
        let committed = self.root_status() == Some(TaskStatus::Committed);
        let root_result = if committed {
            self.root
                .and_then(|r| self.result(&self.tasks[r].id))
                .cloned()
        } else {
            None
        };
        Ok(RunSummary {
            committed,
            root_result,
            states,
            ledger_entries: self.ledger_entries,
            ledger_verified: self.ledger.verify_since(self.start_head)?.ok(),
            events: self.trace.events().len(),
            verification: self
                .tasks
                .iter()
                .map(|t| (t.id.clone(), t.verification))
                .collect(),
        })
    }
}
