//! The memory consultation that precedes every task (spec §3.14 "ALWAYS CONSULT", §9 D46: the
//! original wrote the rule into its governance object but never enforced it).
//!
//! Owns the scheduler's memory handle ([`TaskMemory`]), the consultation made just before a
//! task's executor runs, its `memory.consult` trace event and the hash bound into the task's
//! ledger entries (input [`MEMORY_CONSULT_INPUT`]). The rule, fail closed:
//!
//! - a store is attached and the consultation succeeds → the executor runs and sees it
//!   (`ExecCall::memory`);
//! - a store is attached and the consultation fails → the task is ABORTED with reason
//!   `memory_unavailable:<why>` and its executor never runs (like a budget refusal: nothing
//!   the task could do would make a broken store readable);
//! - no store is attached → the event records `consulted: false, attached: false`; the run's
//!   `run.start` event says so too, so a run without memory is visible, never a silent skip.
//!
//! What it may not touch: the store's contents (a consultation only reads; it does not even
//! bump access counts) and verdicts (what memory says is judgment, never evidence).

use std::sync::{Arc, Mutex};

use nmk_det::{ContentHash, Value, hash_value};

use super::Scheduler;
use crate::memory::{Consultation, MemoryStore};
use crate::trace::{EventKind, TraceEvent};

/// Name of the ledger input that binds a task's entries to the consultation made before it
/// ran. Input names starting with `_` belong to the kernel (as `_failed` for repairs).
pub const MEMORY_CONSULT_INPUT: &str = "_memory_consult";

/// How many recent entries each consultation reads.
pub const CONSULT_RECENT_LIMIT: usize = 10;

/// What the scheduler consults before each task.
pub trait TaskMemory: Send {
    /// Reads the governance object, the most recent entries and the store's counters.
    fn consult(&mut self, limit: usize) -> Result<Consultation, String>;
}

impl TaskMemory for MemoryStore {
    fn consult(&mut self, limit: usize) -> Result<Consultation, String> {
        MemoryStore::consult(self, limit).map_err(|e| e.to_string())
    }
}

/// A store shared with others (the `memory` tool, the request path).
impl TaskMemory for Arc<Mutex<MemoryStore>> {
    fn consult(&mut self, limit: usize) -> Result<Consultation, String> {
        self.lock()
            .map_err(|_| "memory store lock poisoned".to_owned())?
            .consult(limit)
            .map_err(|e| e.to_string())
    }
}

impl Scheduler {
    /// Attaches the memory store every task consults before it runs (see the module doc).
    /// Replaces a store attached before. Attached before the run starts, `run.start` declares
    /// it; attached later, a task-less `memory.consult` event with `attach: true` does, so the
    /// trace checker holds the rest of the run to the rule either way.
    pub fn attach_memory(&mut self, memory: Box<dyn TaskMemory>) {
        self.memory = Some(memory);
        if self.started {
            let mut e = TraceEvent::new(EventKind::MemoryConsult);
            e.executor = Some("memory".to_owned());
            e.detail = Value::map([
                ("attached", Value::Bool(true)),
                ("attach", Value::Bool(true)),
                ("consulted", Value::Bool(false)),
            ]);
            self.record(e);
        }
    }

    /// Whether a memory store is attached.
    pub fn memory_attached(&self) -> bool {
        self.memory.is_some()
    }

    /// Consults memory for task `i`, records the `memory.consult` event and the hash its ledger
    /// entries will bind. `Ok(None)`: nothing attached. `Err`: attached but unreadable.
    pub(super) fn consult_memory(&mut self, i: usize) -> Result<Option<Consultation>, String> {
        let task_id = self.tasks[i].id.clone();
        let read = self
            .memory
            .as_mut()
            .map(|m| m.consult(CONSULT_RECENT_LIMIT));
        let (detail, hash, outcome) = match read {
            None => {
                let detail = Value::map([
                    ("attached", Value::Bool(false)),
                    ("consulted", Value::Bool(false)),
                ]);
                let hash = hash_value(&detail);
                (detail, hash, Ok(None))
            }
            Some(Err(why)) => {
                let why: String = why.chars().take(500).collect();
                let detail = Value::map([
                    ("attached", Value::Bool(true)),
                    ("consulted", Value::Bool(false)),
                    ("error", Value::str(why.clone())),
                ]);
                let hash = hash_value(&detail);
                (detail, hash, Err(why))
            }
            Some(Ok(c)) => {
                let hash: ContentHash = c.content_hash();
                let detail = Value::map([
                    ("attached", Value::Bool(true)),
                    ("consulted", Value::Bool(true)),
                    ("entries", Value::int(c.stats.entries)),
                    ("total_bytes", Value::int(c.stats.total_bytes)),
                    (
                        "recent",
                        Value::List(c.recent.iter().map(|r| Value::str(r.key.clone())).collect()),
                    ),
                    ("governance", Value::str(hash_value(&c.governance).to_hex())),
                    ("consultation", Value::str(hash.to_hex())),
                ]);
                (detail, hash, Ok(Some(c)))
            }
        };
        self.consults.insert(i, hash);
        let mut e = TraceEvent::new(EventKind::MemoryConsult);
        e.task = Some(task_id);
        e.op = Some(self.tasks[i].kind.clone());
        e.executor = Some("memory".to_owned());
        e.detail = detail;
        self.record(e);
        outcome
    }
}
