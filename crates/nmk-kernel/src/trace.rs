//! The event trace of a run, its replay, and the checker of its invariants.
//!
//! Every state transition the scheduler makes is an event stamped with the kernel's logical
//! clock (never a wall clock), so a trace is replayable: [`replay`] rebuilds every task's final
//! state from the events alone. [`check`] enforces the trace invariants:
//!
//! 1. `classify` and `plan` events are present;
//! 2. the first event is `run.start` and the last `run.end`;
//! 3. a commit is backed by a task that reached PASSED or COMMITTED at ORACLE or above (a
//!    PROVEN-only chain counts);
//! 4. the commit event records that the ledger verified;
//! 5. every transition into PASSED carries a proof (a ledger entry hash);
//! 6. no inert repair: a repair worker's passing result is not a result that already failed;
//! 7. no miscalibration: nothing kept (PASSED/COMMITTED) whose producer stated a confidence of
//!    0.7 or more while its calibrated confidence is 0.5 or less;
//! 8. always consult: when the run declared a memory store attached (`run.start` detail
//!    `memory_attached`, or any `memory.consult` event with `attached`), every transition of a
//!    task into RUNNING is preceded by a `memory.consult` event of that task that read the store
//!    (`consulted: true`), one per run of the executor.

use std::collections::{BTreeMap, BTreeSet};

use nmk_det::{ContentHash, ValidationLevel, Value, canonical};

use crate::task::TaskStatus;
use crate::verification::Verification;

/// What an event records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// The run began.
    RunStart,
    /// The job was classified.
    Classify,
    /// A plan was admitted.
    Plan,
    /// A task changed state.
    Task,
    /// The root only re-published upstream content.
    GateFail,
    /// A retry would be a deterministic re-run, so it was skipped.
    RepairSkipped,
    /// A task was aborted.
    Abort,
    /// A repair worker was spawned.
    Repair,
    /// The root was committed.
    Commit,
    /// The run stopped with tasks parked waiting for deliveries.
    Park,
    /// The run ended.
    RunEnd,
    /// Memory was consulted before a task's executor ran (or could not be).
    MemoryConsult,
}

impl EventKind {
    /// The event's name in exports (`run.start`, `task`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::RunStart => "run.start",
            EventKind::Classify => "classify",
            EventKind::Plan => "plan",
            EventKind::Task => "task",
            EventKind::GateFail => "gate_fail",
            EventKind::RepairSkipped => "repair_skipped",
            EventKind::Abort => "abort",
            EventKind::Repair => "repair",
            EventKind::Commit => "commit",
            EventKind::Park => "run.park",
            EventKind::RunEnd => "run.end",
            EventKind::MemoryConsult => "memory.consult",
        }
    }

    fn parse(s: &str) -> Option<EventKind> {
        [
            EventKind::RunStart,
            EventKind::Classify,
            EventKind::Plan,
            EventKind::Task,
            EventKind::GateFail,
            EventKind::RepairSkipped,
            EventKind::Abort,
            EventKind::Repair,
            EventKind::Commit,
            EventKind::Park,
            EventKind::RunEnd,
            EventKind::MemoryConsult,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// One event.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceEvent {
    /// Position in the trace, from 0.
    pub seq: u64,
    /// The kernel's logical time.
    pub t: u64,
    /// Run id.
    pub run: String,
    /// What happened.
    pub kind: EventKind,
    /// The task concerned.
    pub task: Option<String>,
    /// Its op.
    pub op: Option<String>,
    /// Its owner.
    pub owner: Option<String>,
    /// State before.
    pub from: Option<TaskStatus>,
    /// State after.
    pub to: Option<TaskStatus>,
    /// Who made the transition (`scheduler`, `budget`, `agent:repair`, `commit_trap`, the op).
    pub executor: Option<String>,
    /// The verdict's verification.
    pub verification: Option<Verification>,
    /// The certified level.
    pub level: Option<ValidationLevel>,
    /// Hash of the ledger entry that recorded the verdict.
    pub proof: Option<ContentHash>,
    /// Content hash of the task's result.
    pub result: Option<ContentHash>,
    /// Repair workers spawned so far for the task.
    pub retries: Option<u32>,
    /// Confidence the producer stated in its result, if it stated one.
    pub conf_model: Option<f64>,
    /// Anything else (reasons, plan ids, commit facts).
    pub detail: Value,
}

impl TraceEvent {
    /// A bare event of `kind`; the recorder fills `seq`, `t` and `run`.
    pub fn new(kind: EventKind) -> Self {
        TraceEvent {
            seq: 0,
            t: 0,
            run: String::new(),
            kind,
            task: None,
            op: None,
            owner: None,
            from: None,
            to: None,
            executor: None,
            verification: None,
            level: None,
            proof: None,
            result: None,
            retries: None,
            conf_model: None,
            detail: Value::Null,
        }
    }

    /// The event as a canonical value (absent fields omitted).
    pub fn to_value(&self) -> Value {
        let mut m: BTreeMap<String, Value> = BTreeMap::new();
        m.insert("seq".into(), Value::int(self.seq));
        m.insert("t".into(), Value::int(self.t));
        m.insert("run".into(), Value::str(self.run.clone()));
        m.insert("kind".into(), Value::str(self.kind.as_str()));
        let mut opt = |k: &str, v: Option<Value>| {
            if let Some(v) = v {
                m.insert(k.into(), v);
            }
        };
        opt("task", self.task.clone().map(Value::Str));
        opt("op", self.op.clone().map(Value::Str));
        opt("owner", self.owner.clone().map(Value::Str));
        opt("from", self.from.map(|s| Value::str(s.as_str())));
        opt("to", self.to.map(|s| Value::str(s.as_str())));
        opt("executor", self.executor.clone().map(Value::Str));
        opt(
            "verification",
            self.verification.map(|v| Value::str(v.as_str())),
        );
        opt("level", self.level.map(|l| Value::str(l.as_str())));
        opt("proof", self.proof.map(|h| Value::str(h.to_hex())));
        opt("result", self.result.map(|h| Value::str(h.to_hex())));
        opt("retries", self.retries.map(|r| Value::int(i64::from(r))));
        opt("conf_model", self.conf_model.and_then(Value::float));
        if self.detail != Value::Null {
            m.insert("detail".into(), self.detail.clone());
        }
        Value::Map(m)
    }

    /// Reads an event back from a value; `None` when it is not a well-formed event.
    pub fn from_value(v: &Value) -> Option<TraceEvent> {
        let Value::Map(m) = v else { return None };
        let s = |k: &str| m.get(k).and_then(Value::as_str).map(str::to_owned);
        let n = |k: &str| {
            m.get(k)
                .and_then(Value::as_i64)
                .and_then(|i| u64::try_from(i).ok())
        };
        let hash = |k: &str| match m.get(k) {
            None => Some(None),
            Some(v) => v.as_str().and_then(|t| t.parse().ok()).map(Some),
        };
        Some(TraceEvent {
            seq: n("seq")?,
            t: n("t")?,
            run: s("run")?,
            kind: EventKind::parse(&s("kind")?)?,
            task: s("task"),
            op: s("op"),
            owner: s("owner"),
            from: match s("from") {
                None => None,
                Some(t) => Some(TaskStatus::parse(&t)?),
            },
            to: match s("to") {
                None => None,
                Some(t) => Some(TaskStatus::parse(&t)?),
            },
            executor: s("executor"),
            verification: match s("verification") {
                None => None,
                Some(t) => Some(t.parse().ok()?),
            },
            level: match s("level") {
                None => None,
                Some(t) => Some(t.parse().ok()?),
            },
            proof: hash("proof")?,
            result: hash("result")?,
            retries: n("retries").and_then(|r| u32::try_from(r).ok()),
            conf_model: match m.get("conf_model") {
                Some(Value::Float(f)) => Some(f.get()),
                _ => None,
            },
            detail: m.get("detail").cloned().unwrap_or(Value::Null),
        })
    }
}

/// A run's events, in order, with the logical clock that stamps them.
#[derive(Debug, Clone, Default)]
pub struct Trace {
    run: String,
    events: Vec<TraceEvent>,
}

impl Trace {
    /// An empty trace for run `run`.
    pub fn new(run: &str) -> Self {
        Trace {
            run: run.to_owned(),
            events: Vec::new(),
        }
    }

    /// Appends `event`, stamping sequence number, run id and logical time `t`.
    pub fn record(&mut self, mut event: TraceEvent, t: u64) {
        event.seq = self.events.len() as u64;
        event.run = self.run.clone();
        event.t = t;
        self.events.push(event);
    }

    /// The events.
    pub fn events(&self) -> &[TraceEvent] {
        &self.events
    }

    /// The run id.
    pub fn run_id(&self) -> &str {
        &self.run
    }

    /// One canonical JSON line per event.
    pub fn to_jsonl(&self) -> String {
        let mut out = String::new();
        for e in &self.events {
            out.push_str(&canonical::encode(&e.to_value()));
            out.push('\n');
        }
        out
    }
}

/// Rebuilds every task's last state from the events alone.
pub fn replay(events: &[TraceEvent]) -> BTreeMap<String, TaskStatus> {
    let mut states = BTreeMap::new();
    for e in events {
        if let (Some(task), Some(to)) = (&e.task, e.to) {
            states.insert(task.clone(), to);
        }
    }
    states
}

/// Checks the trace invariants (see the module doc); returns the violations, empty when clean.
pub fn check(job: &str, events: &[TraceEvent]) -> Vec<String> {
    let mut v = Vec::new();
    if events.is_empty() {
        v.push(format!("{job}: empty trace"));
        return v;
    }
    // Rule 1.
    for needed in [EventKind::Classify, EventKind::Plan] {
        if !events.iter().any(|e| e.kind == needed) {
            v.push(format!("{job}: no {} event", needed.as_str()));
        }
    }
    // Rule 2.
    if events.first().map(|e| e.kind) != Some(EventKind::RunStart) {
        v.push(format!("{job}: first event is not run.start"));
    }
    if events.last().map(|e| e.kind) != Some(EventKind::RunEnd) {
        v.push(format!("{job}: last event is not run.end"));
    }
    for commit in events.iter().filter(|e| e.kind == EventKind::Commit) {
        // Rule 3.
        let backed = events.iter().any(|e| {
            e.kind == EventKind::Task
                && e.to.is_some_and(TaskStatus::is_passed)
                && e.level.is_some_and(|l| l >= ValidationLevel::Oracle)
        });
        if !backed {
            v.push(format!(
                "{job}: unsafe commit (no task passed at ORACLE or above)"
            ));
        }
        // Rule 4.
        if commit.detail.get("ledger_verified") != Some(&Value::Bool(true)) {
            v.push(format!("{job}: commit without a verified ledger"));
        }
    }
    // Rule 5.
    for e in events
        .iter()
        .filter(|e| e.kind == EventKind::Task && e.to == Some(TaskStatus::Passed))
    {
        if e.proof.is_none() {
            v.push(format!(
                "{job}: {} reached PASSED without a proof",
                e.task.as_deref().unwrap_or("?")
            ));
        }
    }
    // Rule 6.
    let failed_results: BTreeSet<ContentHash> = events
        .iter()
        .filter(|e| e.kind == EventKind::Task && e.to == Some(TaskStatus::Failed))
        .filter_map(|e| e.result)
        .collect();
    for e in events.iter().filter(|e| {
        e.kind == EventKind::Task
            && e.to == Some(TaskStatus::Passed)
            && e.owner.as_deref() == Some("agent:repair")
    }) {
        if e.result.is_some_and(|r| failed_results.contains(&r)) {
            v.push(format!(
                "{job}: inert repair: {} passed with a result that already failed",
                e.task.as_deref().unwrap_or("?")
            ));
        }
    }
    // Rule 7.
    for e in events
        .iter()
        .filter(|e| e.to.is_some_and(TaskStatus::is_passed))
    {
        if let (Some(model), Some(cal)) = (e.conf_model, e.verification)
            && model >= 0.7
            && cal.confidence() <= 0.5
        {
            v.push(format!(
                "{job}: miscalibration: {} states confidence {model} but is only {cal}",
                e.task.as_deref().unwrap_or("?")
            ));
        }
    }
    // Rule 8.
    let flag = |e: &TraceEvent, k: &str| e.detail.get(k) == Some(&Value::Bool(true));
    let attached = events.iter().any(|e| {
        (e.kind == EventKind::RunStart && flag(e, "memory_attached"))
            || (e.kind == EventKind::MemoryConsult && flag(e, "attached"))
    });
    if attached {
        // The latest consult of each task not yet used up by a run: whether it read the store.
        let mut pending: BTreeMap<&str, bool> = BTreeMap::new();
        for e in events {
            let Some(task) = e.task.as_deref() else {
                continue;
            };
            if e.kind == EventKind::MemoryConsult {
                pending.insert(task, flag(e, "consulted"));
            } else if e.kind == EventKind::Task && e.to == Some(TaskStatus::Running) {
                match pending.remove(task) {
                    Some(true) => {}
                    Some(false) => v.push(format!(
                        "{job}: {task} ran although its memory consultation failed"
                    )),
                    None => v.push(format!(
                        "{job}: {task} ran without consulting memory (memory is attached)"
                    )),
                }
            }
        }
    }
    v
}

/// Checks a JSONL trace from outside (a file, another process): lines that are not canonical
/// events are violations, never crashes.
pub fn check_jsonl(job: &str, text: &str) -> Vec<String> {
    let mut events = Vec::new();
    let mut bad = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        match canonical::decode(line)
            .ok()
            .as_ref()
            .and_then(TraceEvent::from_value)
        {
            Some(e) => events.push(e),
            None => bad.push(format!("{job}: line {} is not a trace event", i + 1)),
        }
    }
    let mut v = check(job, &events);
    v.extend(bad);
    v
}

/// Reads a producer's stated confidence from a text result: a number after the word
/// "confidence" (0–1, or a percentage), or a word (certain 1.0, very high 0.95, high 0.9,
/// medium 0.6, low 0.3).
pub fn stated_confidence(text: &str) -> Option<f64> {
    let lower = text.to_lowercase();
    let at = lower.find("confidence")?;
    let after = &lower[at + "confidence".len()..];
    let window: String = after.chars().take(40).collect();
    let trimmed = window.trim_start_matches([':', '=', ' ', '"', '\'']);
    let number: String = trimmed
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    if let Ok(x) = number.parse::<f64>() {
        let pct = trimmed[number.len()..].starts_with('%') || x > 1.0;
        let x = if pct { x / 100.0 } else { x };
        return (0.0..=1.0).contains(&x).then_some(x);
    }
    let words = [
        ("very high", 0.95),
        ("certain", 1.0),
        ("high", 0.9),
        ("medium", 0.6),
        ("low", 0.3),
    ];
    let start = (0..=at.saturating_sub(20))
        .rev()
        .find(|i| lower.is_char_boundary(*i))
        .unwrap_or(0);
    let nearby: String = lower[start..].chars().take(60).collect();
    words
        .iter()
        .find(|(w, _)| nearby.contains(w))
        .map(|(_, c)| *c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stated_confidence_reads_numbers_percentages_and_words() {
        assert_eq!(stated_confidence("answer 4, confidence: 0.9"), Some(0.9));
        assert_eq!(stated_confidence("Confidence 85%"), Some(0.85));
        assert_eq!(stated_confidence("my confidence is very high"), Some(0.95));
        assert_eq!(stated_confidence("high confidence"), Some(0.9));
        assert_eq!(stated_confidence("no claim here"), None);
    }

    #[test]
    fn events_round_trip_through_values() {
        let mut e = TraceEvent::new(EventKind::Task);
        e.task = Some("a".into());
        e.to = Some(TaskStatus::Passed);
        e.level = Some(ValidationLevel::Oracle);
        e.conf_model = Some(0.9);
        e.detail = Value::map([("reason", Value::str("x"))]);
        assert_eq!(TraceEvent::from_value(&e.to_value()), Some(e));
    }
}
