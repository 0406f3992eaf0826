//! Delegation (spec §3.15, §7 `agent_delegate`): a tool call run for an agent as a task of
//! its own child run — admitted, budgeted (§9 D27), judged by the tool's validator only and
//! never labelled PROVEN (§9 D11) — and the reconciliation of the agent's claim with the
//! child trace.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use nmk_det::{ValidationLevel, Value, hash_value};
use nmk_kernel::budget::{Budget, BudgetLimits};
use nmk_kernel::delegation::{AgentTool, Claim, Delegator, reconcile_with_trace};
use nmk_kernel::ledger::Ledger;
use nmk_kernel::ops::{ExecCall, ExecError, ExecOutcome, FnValidator};
use nmk_kernel::trace::{self, EventKind};
use nmk_kernel::{TaskStatus, Verification};

/// `echo`: `{x: v}` → `{echo: v}`, validated by a check that the echo is the input's shape.
fn echo_tool(calls: Arc<AtomicUsize>, level: ValidationLevel, syscall: bool) -> AgentTool {
    let exec = move |call: &ExecCall<'_>| -> Result<ExecOutcome, ExecError> {
        calls.fetch_add(1, Ordering::SeqCst);
        let x = call
            .inputs
            .get("x")
            .ok_or_else(|| ExecError("missing x".into()))?;
        Ok(ExecOutcome::Done(Value::map([("echo", x.clone())])))
    };
    let validator = Arc::new(FnValidator::new("echo_ok", "1", |v, _| {
        Ok(matches!(v, Value::Map(m) if m.len() == 1 && m.contains_key("echo")))
    }));
    if syscall {
        AgentTool::syscall("echo", "1", level, exec, validator)
    } else {
        AgentTool::pure("echo", "1", level, exec, validator)
    }
}

fn x42() -> BTreeMap<String, Value> {
    BTreeMap::from([("x".to_owned(), Value::int(42))])
}

fn delegator(grant: bool) -> (Delegator, Arc<AtomicUsize>, Ledger) {
    let ledger = Ledger::in_memory();
    let calls = Arc::new(AtomicUsize::new(0));
    let mut d = Delegator::new(ledger.clone());
    d.register_tool(
        echo_tool(Arc::clone(&calls), ValidationLevel::Schema, true),
        grant,
    )
    .unwrap();
    (d, calls, ledger)
}

fn budget(max_traps: u32) -> Budget {
    Budget::new(BudgetLimits {
        max_traps,
        ..BudgetLimits::default()
    })
}

#[test]
fn delegating_echo_verifies_and_every_check_holds() {
    let (mut d, calls, ledger) = delegator(true);
    let mut b = budget(64);
    let v = d.delegate_and_verify(&mut b, "echo", x42(), "a1").unwrap();
    assert!(v.verified, "{v:#?}");
    let del = &v.delegation;
    assert!(del.ok && del.kernel_validated);
    assert_eq!(del.agent_task_id, "agent:a1/echo");
    assert_eq!(del.result, Value::map([("echo", Value::int(42))]));
    assert_eq!(del.content_hash, Some(hash_value(&del.result)));
    assert_eq!(del.result_ref.map(|r| r.hash()), del.content_hash);
    assert_eq!(del.verification, Verification::Checked);
    let c = &v.reconciliation.checks;
    assert!(c.self_check_passed && c.task_passed && c.hash_match && c.task_event_found);
    assert!(c.violations.is_empty());
    assert_eq!(c.recorded_proof, Some(c.claimed_hash));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // The verdict is in the ledger, and the ledger verifies.
    assert!(ledger.len().unwrap() >= 1);
    assert!(ledger.verify(None).unwrap().ok());
}

#[test]
fn the_child_trace_is_a_whole_run_of_its_own() {
    let (mut d, _, _) = delegator(true);
    let mut b = budget(64);
    let first = d.delegate_run(&mut b, "echo", x42(), "a1").unwrap();
    let kinds: Vec<EventKind> = first.trace.iter().map(|e| e.kind).collect();
    assert_eq!(kinds.first(), Some(&EventKind::RunStart));
    assert_eq!(kinds.last(), Some(&EventKind::RunEnd));
    assert!(kinds.contains(&EventKind::Classify) && kinds.contains(&EventKind::Plan));
    // Nothing is committed on an agent's say-so.
    assert!(!kinds.contains(&EventKind::Commit));
    let passed = first
        .trace
        .iter()
        .find(|e| e.to == Some(TaskStatus::Passed))
        .unwrap();
    assert_eq!(passed.result, first.content_hash);
    assert!(passed.proof.is_some());
    assert_eq!(passed.owner.as_deref(), Some("agent:a1"));
    assert!(trace::check(&first.run_id, &first.trace).is_empty());
    // Each delegation is a fresh run; the settled task is never run again.
    assert_eq!(first.status, Some(TaskStatus::Passed));
    assert_eq!(
        trace::replay(&first.trace).get("agent:a1/echo"),
        Some(&TaskStatus::Passed)
    );
    let second = d.delegate_run(&mut b, "echo", x42(), "a1").unwrap();
    assert_ne!(first.run_id, second.run_id);
    assert!(second.trace.iter().all(|e| e.run == second.run_id));
    assert_eq!(
        first
            .trace
            .iter()
            .filter(|e| e.to == Some(TaskStatus::Running))
            .count(),
        1
    );
}

#[test]
fn a_tampered_claim_or_an_unknown_task_is_inconsistent() {
    let (mut d, _, _) = delegator(true);
    let mut b = budget(64);
    let del = d.delegate_run(&mut b, "echo", x42(), "a1").unwrap();
    let honest = Claim {
        agent_task_id: del.agent_task_id.clone(),
        result: del.result.clone(),
    };
    assert!(reconcile_with_trace(&honest, &del.trace).consistent);
    let tampered = Claim {
        result: Value::map([("echo", Value::int(43))]),
        ..honest.clone()
    };
    let r = reconcile_with_trace(&tampered, &del.trace);
    assert!(!r.consistent);
    assert!(!r.checks.hash_match);
    assert!(r.checks.task_passed && r.checks.self_check_passed);
    let unknown = Claim {
        agent_task_id: "agent:a9/echo".into(),
        ..honest
    };
    let r = reconcile_with_trace(&unknown, &del.trace);
    assert!(!r.consistent);
    assert!(!r.checks.task_event_found && !r.checks.task_passed);
}

#[test]
fn a_trace_lacking_classify_or_plan_fails_even_when_the_hash_matches() {
    let (mut d, _, _) = delegator(true);
    let mut b = budget(64);
    let del = d.delegate_run(&mut b, "echo", x42(), "a1").unwrap();
    let claim = Claim {
        agent_task_id: del.agent_task_id.clone(),
        result: del.result.clone(),
    };
    for dropped in [EventKind::Classify, EventKind::Plan] {
        let mut trace = del.trace.clone();
        trace.retain(|e| e.kind != dropped);
        let r = reconcile_with_trace(&claim, &trace);
        assert!(r.checks.hash_match && r.checks.task_passed);
        assert!(!r.checks.self_check_passed);
        assert!(!r.consistent, "{dropped:?}");
    }
}

#[test]
fn an_unknown_tool_is_not_ok() {
    let (mut d, calls, _) = delegator(true);
    let mut b = budget(64);
    let del = d.delegate_run(&mut b, "rm_rf", x42(), "a1").unwrap();
    assert!(!del.ok);
    assert!(del.error.as_deref().unwrap().starts_with("unknown tool"));
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    assert_eq!(b.n_traps(), 0);
}

#[test]
fn an_always_false_validator_is_not_verified() {
    let ledger = Ledger::in_memory();
    let mut d = Delegator::new(ledger);
    let never = Arc::new(FnValidator::new("echo_ok", "1", |_, _| Ok(false)));
    let exec = |_: &ExecCall<'_>| -> Result<ExecOutcome, ExecError> {
        Ok(ExecOutcome::Done(Value::map([("echo", Value::int(42))])))
    };
    d.register_tool(
        AgentTool::syscall("echo", "1", ValidationLevel::Schema, exec, never),
        true,
    )
    .unwrap();
    let mut b = budget(64);
    let v = d.delegate_and_verify(&mut b, "echo", x42(), "a1").unwrap();
    assert!(!v.verified);
    assert!(!v.delegation.ok && !v.delegation.kernel_validated);
    assert!(!v.reconciliation.checks.task_passed);
    assert_eq!(v.delegation.verification, Verification::Unverified);
    // Contrast: the same call with the real validator verifies.
    let (mut d, _, _) = delegator(true);
    assert!(
        d.delegate_and_verify(&mut b, "echo", x42(), "a1")
            .unwrap()
            .verified
    );
}

#[test]
fn an_ungranted_tool_is_refused_at_admission() {
    let (mut d, calls, _) = delegator(false);
    let mut b = budget(64);
    let del = d.delegate_run(&mut b, "echo", x42(), "a1").unwrap();
    assert!(!del.ok);
    let why = del.error.clone().unwrap();
    assert!(
        why.starts_with("admit refused:") && why.contains("op:echo"),
        "{why}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    assert_eq!(b.n_traps(), 0);
    let (mut granted, _, _) = delegator(true);
    assert!(
        granted
            .delegate_run(&mut b, "echo", x42(), "a1")
            .unwrap()
            .ok
    );
}

#[test]
fn delegation_charges_the_requestors_budget() {
    let (mut d, calls, _) = delegator(true);
    // A budget of 0 refuses the call before its executor runs.
    let mut empty = budget(0);
    let del = d.delegate_run(&mut empty, "echo", x42(), "a1").unwrap();
    assert!(!del.ok);
    assert!(
        del.error
            .as_deref()
            .unwrap()
            .starts_with("budget:max_traps"),
        "{:?}",
        del.error
    );
    assert_eq!(del.status, Some(TaskStatus::Aborted));
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    // A budget of 1 pays for exactly one call; the requestor sees the spend.
    let mut one = budget(1);
    assert!(d.delegate_run(&mut one, "echo", x42(), "a1").unwrap().ok);
    assert_eq!((one.n_traps(), one.remaining()), (1, 0));
    assert_eq!(one.charges_of("echo"), 1);
    let refused = d.delegate_run(&mut one, "echo", x42(), "a1").unwrap();
    assert!(!refused.ok);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // The per-op ceiling carries over too.
    let mut per_op = Budget::new(BudgetLimits {
        max_same_op: 1,
        ..BudgetLimits::default()
    });
    assert!(d.delegate_run(&mut per_op, "echo", x42(), "a1").unwrap().ok);
    let second = d.delegate_run(&mut per_op, "echo", x42(), "a1").unwrap();
    assert!(second.error.as_deref().unwrap().contains("max_same_op"));
}

#[test]
fn a_delegated_level_is_what_the_validator_certifies_never_proven_by_label() {
    let calls = Arc::new(AtomicUsize::new(0));
    let mut d = Delegator::new(Ledger::in_memory());
    // A non-syscall "validated" tool is not PROVEN: registering it as such is refused.
    let refused = d.register_tool(
        echo_tool(Arc::clone(&calls), ValidationLevel::Proven, false),
        true,
    );
    assert!(refused.is_err());
    d.register_tool(
        echo_tool(Arc::clone(&calls), ValidationLevel::Property, false),
        true,
    )
    .unwrap();
    let mut b = budget(64);
    let del = d.delegate_run(&mut b, "echo", x42(), "a1").unwrap();
    assert!(del.ok);
    assert_eq!(del.level, ValidationLevel::Property);
    assert_eq!(del.verification, Verification::Validated);
    let passed = del
        .trace
        .iter()
        .find(|e| e.to == Some(TaskStatus::Passed))
        .unwrap();
    assert_eq!(passed.level, Some(ValidationLevel::Property));
    // Contrast: registered at ORACLE, the same validator's pass is verified; the capability
    // of a non-syscall tool is prim:<name>.
    let mut d2 = Delegator::new(Ledger::in_memory());
    let oracle = echo_tool(calls, ValidationLevel::Oracle, false);
    assert_eq!(oracle.capability(), "prim:echo");
    d2.register_tool(oracle, true).unwrap();
    let del2 = d2.delegate_run(&mut b, "echo", x42(), "a1").unwrap();
    assert_eq!(del2.verification, Verification::Verified);
}

#[test]
fn agent_ids_and_inputs_are_untrusted() {
    let (mut d, _, _) = delegator(true);
    let mut b = budget(64);
    assert!(d.delegate_run(&mut b, "echo", x42(), "a1/../x").is_err());
    assert!(d.delegate_run(&mut b, "echo", x42(), "").is_err());
    let many: BTreeMap<String, Value> =
        (0..100).map(|i| (format!("k{i}"), Value::int(i))).collect();
    assert!(d.delegate_run(&mut b, "echo", many, "a1").is_err());
    assert_eq!(b.n_traps(), 0);
}

#[test]
fn a_delegated_task_consults_the_attached_memory_first() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("k.sqlite");
    let ledger = Ledger::open(&db, nmk_kernel::Durability::Process).unwrap();
    let store = nmk_kernel::memory::MemoryStore::open(
        &db,
        nmk_kernel::memory::MemoryConfig::default(),
        ledger.clone(),
    )
    .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let mut d =
        Delegator::new(ledger.clone()).with_task_memory(Arc::new(std::sync::Mutex::new(store)));
    d.register_tool(
        echo_tool(Arc::clone(&calls), ValidationLevel::Schema, true),
        true,
    )
    .unwrap();
    let v = d
        .delegate_and_verify(&mut budget(64), "echo", x42(), "a1")
        .unwrap();
    assert!(v.verified, "{v:#?}");
    let consults: Vec<_> = v
        .delegation
        .trace
        .iter()
        .filter(|e| e.kind == EventKind::MemoryConsult)
        .collect();
    assert_eq!(consults.len(), 1, "{:#?}", v.delegation.trace);
    let consulted = |e: &nmk_kernel::trace::TraceEvent| match &e.detail {
        Value::Map(m) => m.get("consulted") == Some(&Value::Bool(true)),
        _ => false,
    };
    assert!(consulted(consults[0]), "{:#?}", consults[0]);
    assert!(trace::check("agent", &v.delegation.trace).is_empty());
    // Contrast: without a store attached the consultation is recorded as not read.
    let (mut bare, _, _) = delegator(true);
    let w = bare
        .delegate_and_verify(&mut budget(64), "echo", x42(), "a1")
        .unwrap();
    assert!(w.verified);
    assert!(
        !w.delegation
            .trace
            .iter()
            .filter(|e| e.kind == EventKind::MemoryConsult)
            .any(consulted)
    );
}
