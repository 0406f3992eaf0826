//! The scheduler consults memory before every task (spec §3.14 "ALWAYS CONSULT", §9 D46: the
//! original never enforced it): the consult event precedes each executor, the consultation is
//! live (a write between tasks is seen by the next), a store that cannot be read fails the task
//! closed, a run without memory says so, and the trace checker flags a task that ran without
//! its consultation.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use nmk_det::{Value, hash_value};
use nmk_kernel::budget::{Budget, BudgetLimits};
use nmk_kernel::ledger::{Action, Ledger, LedgerEntry};
use nmk_kernel::memory::{Consultation, GOVERNANCE_KEY, MemoryConfig, MemoryStore, PutOptions};
use nmk_kernel::ops::{ExecCall, ExecError, ExecOutcome, FnValidator, OpSpec};
use nmk_kernel::scheduler::{CONSULT_RECENT_LIMIT, MEMORY_CONSULT_INPUT, TaskMemory};
use nmk_kernel::store::Durability;
use nmk_kernel::trace::{self, EventKind, TraceEvent};
use nmk_kernel::{Scheduler, TaskSpec, TaskStatus};

const TASKS: [&str; 3] = ["fetch", "think", "answer"];

/// What each executor saw of memory: (task, recent keys), or `None` when it got no consultation.
type Seen = Arc<Mutex<Vec<(String, Option<Vec<String>>)>>>;

fn open_store(path: &Path) -> (Arc<Mutex<MemoryStore>>, Ledger) {
    let ledger = Ledger::open(path, Durability::Process).unwrap();
    let config = MemoryConfig {
        max_bytes: 1 << 20,
        durability: Durability::Process,
    };
    let store = MemoryStore::open(path, config, ledger.clone()).unwrap();
    (Arc::new(Mutex::new(store)), ledger)
}

/// A three-task chain fetch → think → answer (root, ORACLE), with `memory` attached before the
/// run starts. `fetch` writes `fact.fetched` into `writer` when given; every executor records what memory it was shown and counts runs.
fn three_task_run(
    ledger: Ledger,
    memory: Option<Box<dyn TaskMemory>>,
    writer: Option<Arc<Mutex<MemoryStore>>>,
) -> (Scheduler, Seen, Arc<AtomicUsize>) {
    let mut s = Scheduler::new("mem", ledger, Budget::new(BudgetLimits::default())).unwrap();
    if let Some(m) = memory {
        s.attach_memory(m);
    }
    let seen: Seen = Arc::new(Mutex::new(Vec::new()));
    let runs = Arc::new(AtomicUsize::new(0));
    for kind in TASKS {
        let seen = seen.clone();
        let runs = runs.clone();
        let writer = writer.clone();
        s.register_op(OpSpec::pure(kind, "1", move |call: &ExecCall<'_>| {
            runs.fetch_add(1, Ordering::SeqCst);
            let keys = call
                .memory
                .map(|c: &Consultation| c.recent.iter().map(|r| r.key.clone()).collect());
            seen.lock().unwrap().push((call.task_id.to_owned(), keys));
            if call.kind == "fetch"
                && let Some(w) = &writer
            {
                w.lock()
                    .unwrap()
                    .put(
                        "fact.fetched",
                        &Value::str("Paris"),
                        &PutOptions::by("fetch"),
                    )
                    .map_err(|e| ExecError(e.to_string()))?;
            }
            Ok(ExecOutcome::Done(Value::str(format!(
                "{} done",
                call.task_id
            ))))
        }))
        .unwrap();
    }
    s.register_validator(
        "nonempty",
        Arc::new(FnValidator::new("nonempty", "1", |v, _| {
            Ok(v.as_str().is_some_and(|t| !t.is_empty()))
        })),
    );
    s.classify("memory_consult");
    s.admit_plan(vec![
        TaskSpec::new("fetch", "fetch").validated_by("nonempty", "SCHEMA"),
        TaskSpec::new("think", "think")
            .after("fetch")
            .validated_by("nonempty", "SCHEMA"),
        TaskSpec::new("answer", "answer")
            .after("think")
            .validated_by("nonempty", "ORACLE")
            .root(),
    ])
    .unwrap();
    (s, seen, runs)
}

fn consult_events<'a>(events: &'a [TraceEvent], task: &str) -> Vec<&'a TraceEvent> {
    events
        .iter()
        .filter(|e| e.kind == EventKind::MemoryConsult && e.task.as_deref() == Some(task))
        .collect()
}

fn recent_keys(e: &TraceEvent) -> Vec<String> {
    match e.detail.get("recent") {
        Some(Value::List(l)) => l
            .iter()
            .filter_map(|k| k.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

fn entries_of(ledger: &Ledger, task: &str) -> Vec<LedgerEntry> {
    ledger
        .entries(0, usize::MAX)
        .unwrap()
        .into_iter()
        .filter(|e| e.record.detail.get("task").and_then(Value::as_str) == Some(task))
        .collect()
}

#[test]
fn every_task_consults_memory_before_its_executor_and_its_ledger_entry_binds_the_consultation() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nmk.sqlite");
    let (store, ledger) = open_store(&path);
    let (mut s, seen, runs) = three_task_run(ledger.clone(), Some(Box::new(store.clone())), None);
    let summary = s.run(100).unwrap();
    assert!(summary.committed);
    assert!(summary.ledger_verified);
    assert_eq!(runs.load(Ordering::SeqCst), 3);

    let events = s.trace().events();
    let start = events.first().unwrap();
    assert_eq!(start.kind, EventKind::RunStart);
    assert_eq!(
        start.detail.get("memory_attached"),
        Some(&Value::Bool(true))
    );
    for task in TASKS {
        let consults = consult_events(events, task);
        assert_eq!(consults.len(), 1, "{task} consulted exactly once");
        let consult = consults[0];
        assert_eq!(consult.detail.get("consulted"), Some(&Value::Bool(true)));
        assert!(
            consult
                .detail
                .get("entries")
                .and_then(Value::as_i64)
                .unwrap()
                >= 1
        );
        assert!(
            consult
                .detail
                .get("total_bytes")
                .and_then(Value::as_i64)
                .unwrap()
                > 0
        );
        let governance = store
            .lock()
            .unwrap()
            .get(GOVERNANCE_KEY, false)
            .unwrap()
            .unwrap();
        assert_eq!(
            consult.detail.get("governance").and_then(Value::as_str),
            Some(hash_value(&governance.value).to_hex().as_str())
        );
        // The consultation comes before the first event the task's executor made.
        let first_exec = events
            .iter()
            .position(|e| {
                e.kind == EventKind::Task
                    && e.task.as_deref() == Some(task)
                    && e.executor.as_deref() == Some(task)
            })
            .unwrap();
        assert!(
            consult.seq < events[first_exec].seq,
            "{task}: consult after executor"
        );
        assert_eq!(events[first_exec].to, Some(TaskStatus::Running));
        // The hash is the store's own consultation (nothing wrote to memory in this run).
        let expected = store
            .lock()
            .unwrap()
            .consult(CONSULT_RECENT_LIMIT)
            .unwrap()
            .content_hash()
            .to_hex();
        assert_eq!(
            consult.detail.get("consultation").and_then(Value::as_str),
            Some(expected.as_str())
        );
        // The task's verdict entry binds the consultation's hash as an input.
        let hash = consult
            .detail
            .get("consultation")
            .and_then(Value::as_str)
            .unwrap();
        let verdicts = entries_of(&ledger, task);
        let pass = verdicts
            .iter()
            .find(|e| e.record.action == Action::Pass)
            .unwrap();
        assert_eq!(
            pass.record
                .inputs
                .get(MEMORY_CONSULT_INPUT)
                .map(|h| h.to_hex()),
            Some(hash.to_owned())
        );
    }
    // Every executor was handed the consultation.
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 3);
    assert!(seen.iter().all(|(_, keys)| keys.is_some()));
    assert_eq!(trace::check("mem", events), Vec::<String>::new());
}

#[test]
fn a_memory_write_between_tasks_is_seen_by_the_next_consultation() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nmk.sqlite");
    let (store, ledger) = open_store(&path);
    let (mut s, seen, _) = three_task_run(ledger, Some(Box::new(store.clone())), Some(store));
    assert!(s.run(100).unwrap().committed);
    let events = s.trace().events();
    // Before `fetch` wrote, its own consultation did not have the key; after, `think`'s did.
    let before = recent_keys(consult_events(events, "fetch")[0]);
    let after = recent_keys(consult_events(events, "think")[0]);
    assert!(!before.contains(&"fact.fetched".to_owned()), "{before:?}");
    assert!(after.contains(&"fact.fetched".to_owned()), "{after:?}");
    let entries = |task: &str| {
        consult_events(events, task)[0]
            .detail
            .get("entries")
            .and_then(Value::as_i64)
            .unwrap()
    };
    assert_eq!(entries("think"), entries("fetch") + 1);
    // The executors were shown the same thing.
    let seen = seen.lock().unwrap();
    let shown = |task: &str| {
        seen.iter()
            .find(|(t, _)| t == task)
            .and_then(|(_, k)| k.clone())
            .unwrap()
    };
    assert!(!shown("fetch").contains(&"fact.fetched".to_owned()));
    assert!(shown("think").contains(&"fact.fetched".to_owned()));
    assert!(shown("answer").contains(&"fact.fetched".to_owned()));
}

/// A store that cannot be read.
struct Broken;

impl TaskMemory for Broken {
    fn consult(&mut self, _limit: usize) -> Result<Consultation, String> {
        Err("disk unreadable".to_owned())
    }
}

#[test]
fn an_attached_store_that_cannot_be_read_fails_the_task_closed() {
    // A fake that errs, and a real store whose governance object was removed behind its back.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nmk.sqlite");
    let (store, _) = open_store(&path);
    let raw = rusqlite::Connection::open(&path).unwrap();
    raw.execute(
        "DELETE FROM memory_entries WHERE key = ?1",
        [GOVERNANCE_KEY],
    )
    .unwrap();
    let broken: [(Box<dyn TaskMemory>, &str); 2] = [
        (Box::new(Broken), "disk unreadable"),
        (Box::new(store), "governance object is missing"),
    ];
    for (memory, why) in broken {
        let ledger = Ledger::in_memory();
        let (mut s, seen, runs) = three_task_run(ledger.clone(), Some(memory), None);
        let summary = s.run(100).unwrap();
        assert!(!summary.committed);
        assert_eq!(runs.load(Ordering::SeqCst), 0, "no executor ran");
        assert!(seen.lock().unwrap().is_empty());
        let fetch = s.task("fetch").unwrap();
        assert_eq!(fetch.status, TaskStatus::Aborted);
        let reason = fetch.abort_reason.clone().unwrap();
        assert!(reason.starts_with("memory_unavailable:"), "{reason}");
        assert!(reason.contains(why), "{reason}");
        // Its dependents never ran either; the abort is ledgered with the failed consultation.
        assert_eq!(s.task("answer").unwrap().status, TaskStatus::Aborted);
        let abort = entries_of(&ledger, "fetch")
            .into_iter()
            .find(|e| e.record.action == Action::Abort)
            .unwrap();
        assert!(abort.record.inputs.contains_key(MEMORY_CONSULT_INPUT));
        let consult = consult_events(s.trace().events(), "fetch")[0];
        assert_eq!(consult.detail.get("attached"), Some(&Value::Bool(true)));
        assert_eq!(consult.detail.get("consulted"), Some(&Value::Bool(false)));
        assert!(
            !s.trace()
                .events()
                .iter()
                .any(|e| e.to == Some(TaskStatus::Running)),
            "nothing reached RUNNING"
        );
    }
    // Contrast: an intact store on the same plan runs all three.
    let dir = tempfile::tempdir().unwrap();
    let (store, ledger) = open_store(&dir.path().join("nmk.sqlite"));
    let (mut s, _, runs) = three_task_run(ledger, Some(Box::new(store)), None);
    assert!(s.run(100).unwrap().committed);
    assert_eq!(runs.load(Ordering::SeqCst), 3);
}

#[test]
fn without_a_store_each_task_records_that_memory_was_not_consulted() {
    let (mut s, seen, runs) = three_task_run(Ledger::in_memory(), None, None);
    assert!(!s.memory_attached());
    assert!(s.run(100).unwrap().committed);
    assert_eq!(runs.load(Ordering::SeqCst), 3);
    let events = s.trace().events();
    assert_eq!(
        events[0].detail.get("memory_attached"),
        Some(&Value::Bool(false))
    );
    for task in TASKS {
        let consult = consult_events(events, task);
        assert_eq!(consult.len(), 1, "{task}: the skip is recorded, not silent");
        assert_eq!(consult[0].detail.get("attached"), Some(&Value::Bool(false)));
        assert_eq!(
            consult[0].detail.get("consulted"),
            Some(&Value::Bool(false))
        );
    }
    assert!(seen.lock().unwrap().iter().all(|(_, keys)| keys.is_none()));
    assert_eq!(trace::check("mem", events), Vec::<String>::new());
}

#[test]
fn the_trace_checker_flags_a_task_that_ran_without_its_consultation() {
    let dir = tempfile::tempdir().unwrap();
    let (store, ledger) = open_store(&dir.path().join("nmk.sqlite"));
    let (mut s, _, _) = three_task_run(ledger, Some(Box::new(store.clone())), None);
    assert!(s.run(100).unwrap().committed);
    let clean = s.trace().events().to_vec();
    assert_eq!(trace::check("j", &clean), Vec::<String>::new());

    // One consultation removed.
    let removed: Vec<TraceEvent> = clean
        .iter()
        .filter(|e| !(e.kind == EventKind::MemoryConsult && e.task.as_deref() == Some("think")))
        .cloned()
        .collect();
    let v = trace::check("j", &removed);
    assert_eq!(v.len(), 1, "{v:?}");
    assert!(
        v[0].contains("think ran without consulting memory"),
        "{v:?}"
    );

    // A consultation that failed but the task ran anyway.
    let mut failed = clean.clone();
    for e in &mut failed {
        if e.kind == EventKind::MemoryConsult && e.task.as_deref() == Some("answer") {
            e.detail = Value::map([
                ("attached", Value::Bool(true)),
                ("consulted", Value::Bool(false)),
                ("error", Value::str("x")),
            ]);
        }
    }
    let v = trace::check("j", &failed);
    assert_eq!(v.len(), 1, "{v:?}");
    assert!(v[0].contains("answer ran although its memory consultation failed"));

    // The consultation moved after the executor started counts as missing.
    let mut late = clean.clone();
    let at = late
        .iter()
        .position(|e| e.kind == EventKind::MemoryConsult && e.task.as_deref() == Some("fetch"))
        .unwrap();
    let consult = late.remove(at);
    let running = late
        .iter()
        .position(|e| e.task.as_deref() == Some("fetch") && e.to == Some(TaskStatus::Running))
        .unwrap();
    late.insert(running + 1, consult);
    let v = trace::check("j", &late);
    assert!(
        v.iter()
            .any(|m| m.contains("fetch ran without consulting memory")),
        "{v:?}"
    );

    // Through JSONL too (what a trace file holds).
    let jsonl: String = removed
        .iter()
        .map(|e| format!("{}\n", nmk_det::canonical::encode(&e.to_value())))
        .collect();
    assert!(
        trace::check_jsonl("j", &jsonl)
            .iter()
            .any(|m| m.contains("think ran without consulting memory"))
    );
    assert_eq!(
        trace::check_jsonl("j", &s.trace().to_jsonl()),
        Vec::<String>::new()
    );

    // Without memory attached, runs carry no such obligation: the same removal is not flagged.
    let (mut bare, _, _) = three_task_run(Ledger::in_memory(), None, None);
    assert!(bare.run(100).unwrap().committed);
    let stripped: Vec<TraceEvent> = bare
        .trace()
        .events()
        .iter()
        .filter(|e| e.kind != EventKind::MemoryConsult)
        .cloned()
        .collect();
    assert_eq!(trace::check("j", &stripped), Vec::<String>::new());

    // Memory attached after the run started: the attach event declares it, so stripping every
    // per-task consultation is still caught.
    let (mut late, _, _) = three_task_run(Ledger::in_memory(), None, None);
    late.attach_memory(Box::new(store));
    assert!(late.run(100).unwrap().committed);
    let events = late.trace().events();
    assert_eq!(
        events[0].detail.get("memory_attached"),
        Some(&Value::Bool(false))
    );
    assert_eq!(trace::check("j", events), Vec::<String>::new());
    let stripped: Vec<TraceEvent> = events
        .iter()
        .filter(|e| !(e.kind == EventKind::MemoryConsult && e.task.is_some()))
        .cloned()
        .collect();
    assert_eq!(trace::check("j", &stripped).len(), 3);
}
