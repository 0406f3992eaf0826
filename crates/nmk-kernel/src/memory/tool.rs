//! The `memory` syscall tool: the store behind capability `op:memory`, judged by `memory_ok`.
//!
//! Owns the mapping from a task's inputs (`action` = `consult` (default) | `get` | `put` |
//! `list` | `delete` | `stats`, with `key`, `value`, `kind`, `pin`, `ttl_s`, `limit`) to store
//! calls, and
//! of their outcomes to a result map with `ok`. The task's id is recorded as the actor of every
//! change. It grants nothing: the caller grants `op:memory` to the runs that may use it.

use std::sync::{Arc, Mutex};

use nmk_det::{ValidationLevel, Value};

use super::{MemoryStats, MemoryStore, PutOptions, RecentItem};
use crate::capability::Capability;
use crate::ops::{ExecCall, ExecError, ExecOutcome, Executor, FnValidator, OpSpec};
use crate::scheduler::{Scheduler, SchedulerError};

/// The op name.
pub const MEMORY_OP: &str = "memory";

/// The validator's name.
pub const MEMORY_VALIDATOR: &str = "memory_ok";

/// Default number of entries `list` and `consult` return.
const DEFAULT_LIMIT: usize = 10;

/// Whether a `memory` result reports success: `ok` must be exactly `true`.
pub fn memory_ok(result: &Value) -> bool {
    matches!(result, Value::Map(m) if m.get("ok") == Some(&Value::Bool(true)))
}

/// The executor of op `memory`.
pub struct MemoryTool {
    store: Arc<Mutex<MemoryStore>>,
}

impl MemoryTool {
    /// A tool over `store`.
    pub fn new(store: Arc<Mutex<MemoryStore>>) -> MemoryTool {
        MemoryTool { store }
    }
}

/// The longest time to live the tool accepts: ten years, in seconds.
const MAX_TTL_S: i64 = 10 * 366 * 24 * 3600;

/// `ttl_s`: absent or null → never expires; a whole number of seconds in 1..=MAX_TTL_S → that;
/// anything else is refused (a model-written TTL is input like any other).
fn ttl_input(v: Option<&Value>) -> Result<Option<std::time::Duration>, String> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_i64() {
            Some(s) if (1..=MAX_TTL_S).contains(&s) => {
                Ok(Some(std::time::Duration::from_secs(s.unsigned_abs())))
            }
            _ => Err(format!(
                "ttl_s must be a whole number of seconds in 1..={MAX_TTL_S}"
            )),
        },
    }
}

fn failure(why: impl Into<String>) -> Value {
    Value::map([("ok", Value::Bool(false)), ("error", Value::str(why))])
}

fn success(fields: Vec<(&str, Value)>) -> Value {
    let mut pairs = vec![("ok", Value::Bool(true))];
    pairs.extend(fields);
    Value::map(pairs)
}

fn recent_value(items: Vec<RecentItem>) -> Value {
    Value::List(
        items
            .into_iter()
            .map(|i| {
                Value::map([
                    ("key", Value::str(i.key)),
                    ("kind", Value::str(i.kind)),
                    ("pinned", Value::Bool(i.pinned)),
                    ("updated", Value::int(i.updated)),
                ])
            })
            .collect(),
    )
}

fn stats_value(s: &MemoryStats) -> Value {
    Value::map([
        ("entries", Value::int(s.entries)),
        ("tombstones", Value::int(s.tombstones)),
        ("history_rows", Value::int(s.history_rows)),
        ("total_bytes", Value::int(s.total_bytes)),
        ("max_bytes", Value::int(s.max_bytes)),
        ("pct_full", Value::float(s.pct_full).unwrap_or(Value::Null)),
    ])
}

fn limit(call: &ExecCall<'_>) -> usize {
    call.inputs
        .get("limit")
        .and_then(Value::as_i64)
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(DEFAULT_LIMIT)
}

impl MemoryTool {
    fn run(&self, store: &mut MemoryStore, call: &ExecCall<'_>) -> Value {
        let action = match call.inputs.get("action") {
            None | Some(Value::Null) => "consult",
            Some(Value::Str(a)) => a.as_str(),
            Some(other) => {
                return failure(format!(
                    "action must be a string, not {}",
                    other.type_name()
                ));
            }
        };
        let key = call.inputs.get("key").and_then(Value::as_str);
        let need_key = || key.ok_or_else(|| format!("action {action:?} needs a string key"));
        let outcome: Result<Value, String> = match action {
            "consult" => store
                .consult(limit(call))
                .map(|c| {
                    success(vec![
                        ("governance", c.governance),
                        ("recent", recent_value(c.recent)),
                        ("stats", stats_value(&c.stats)),
                    ])
                })
                .map_err(|e| e.to_string()),
            "get" => need_key().and_then(|k| {
                store
                    .get(k, true)
                    .map(|item| match item {
                        Some(i) => success(vec![
                            ("key", Value::str(i.key)),
                            ("value", i.value),
                            ("kind", Value::str(i.kind)),
                            ("version", Value::int(i.version)),
                            ("found", Value::Bool(true)),
                        ]),
                        None => success(vec![
                            ("key", Value::str(k)),
                            ("value", Value::Null),
                            ("found", Value::Bool(false)),
                        ]),
                    })
                    .map_err(|e| e.to_string())
            }),
            "put" => need_key().and_then(|k| {
                let value = call.inputs.get("value").cloned().unwrap_or(Value::Null);
                let mut opts = PutOptions::by(call.task_id);
                if let Some(kind) = call.inputs.get("kind").and_then(Value::as_str) {
                    opts = opts.kind(kind);
                }
                if call.inputs.get("pin") == Some(&Value::Bool(true)) {
                    opts = opts.pinned();
                }
                opts.ttl = ttl_input(call.inputs.get("ttl_s"))?;
                store
                    .put(k, &value, &opts)
                    .map(|o| {
                        success(vec![
                            ("key", Value::str(o.key)),
                            ("version", Value::int(o.version)),
                            ("bytes", Value::int(o.bytes)),
                            (
                                "evicted",
                                Value::List(o.evicted.into_iter().map(Value::str).collect()),
                            ),
                            ("total_bytes", Value::int(o.total_bytes)),
                        ])
                    })
                    .map_err(|e| e.to_string())
            }),
            "delete" => need_key().and_then(|k| {
                store
                    .delete(k, call.task_id)
                    .map(|o| success(vec![("existed", Value::Bool(o.existed))]))
                    .map_err(|e| e.to_string())
            }),
            "list" => store
                .list(limit(call))
                .map(|items| success(vec![("items", recent_value(items))]))
                .map_err(|e| e.to_string()),
            "stats" => store
                .stats()
                .map(|s| success(vec![("stats", stats_value(&s))]))
                .map_err(|e| e.to_string()),
            other => Err(format!("unknown memory action {other:?}")),
        };
        outcome.unwrap_or_else(failure)
    }
}

impl Executor for MemoryTool {
    fn execute(&self, call: &ExecCall<'_>) -> Result<ExecOutcome, ExecError> {
        let mut store = self
            .store
            .lock()
            .map_err(|_| ExecError("memory store lock poisoned".into()))?;
        Ok(ExecOutcome::Done(self.run(&mut store, call)))
    }
}

/// Registers op `memory` (syscall tier, capability `op:memory`, ceiling SCHEMA) and its
/// validator `memory_ok`. The capability is not granted here.
pub fn register_memory_tool(
    scheduler: &mut Scheduler,
    store: Arc<Mutex<MemoryStore>>,
) -> Result<(), SchedulerError> {
    let capability =
        Capability::parse("op:memory").map_err(|e| SchedulerError::Registration(e.to_string()))?;
    scheduler.register_op(OpSpec::syscall(
        MEMORY_OP,
        "v1",
        capability,
        ValidationLevel::Schema,
        MemoryTool::new(store),
    ))?;
    scheduler.register_validator(
        MEMORY_VALIDATOR,
        Arc::new(FnValidator::new(
            MEMORY_VALIDATOR,
            "v1",
            |result: &Value, _call: &_| Ok(memory_ok(result)),
        )),
    );
    Ok(())
}
