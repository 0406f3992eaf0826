//! The task graph end to end: admission, the run loop, repair, honest commit attribution, the
//! ledger entries it writes and the trace it leaves (spec §3.3–§3.8, §7 `test_task_graph`, and
//! the fail-open defects D17–D21, D25–D28 now failing closed).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use nmk_det::{ValidationLevel, Value, hash_value};
use nmk_kernel::budget::{Budget, BudgetLimits};
use nmk_kernel::capability::Capability;
use nmk_kernel::ledger::{Action, Ledger};
use nmk_kernel::ops::{ExecCall, ExecError, ExecOutcome, FnValidator, OpSpec, WaitOn};
use nmk_kernel::trace::{self, EventKind};
use nmk_kernel::{Reject, Scheduler, TaskSpec, TaskStatus, Verification};

fn done(v: Value) -> Result<ExecOutcome, ExecError> {
    Ok(ExecOutcome::Done(v))
}

fn input<'a>(call: &'a ExecCall<'_>, name: &str) -> &'a Value {
    call.inputs.get(name).unwrap_or(&Value::Null)
}

/// A structured-output plan: draft → syntax → schema → commit, with a schema repair executor.
fn structured_output(ledger: Ledger, limits: BudgetLimits, with_repair: bool) -> Scheduler {
    let mut s = Scheduler::new("r1", ledger, Budget::new(limits)).unwrap();
    s.register_op(OpSpec::judgment_only("draft", "1", |_: &ExecCall<'_>| {
        done(Value::str(r#"{"item": "widget", "price": "12.50"}"#))
    }))
    .unwrap();
    s.register_op(OpSpec::pure(
        "validate_syntax",
        "1",
        |call: &ExecCall<'_>| {
            let text = input(call, "draft")
                .as_str()
                .ok_or_else(|| ExecError("draft is not text".into()))?;
            let json: serde_json::Value =
                serde_json::from_str(text).map_err(|e| ExecError(e.to_string()))?;
            done(Value::from_json(&json))
        },
    ))
    .unwrap();
    s.register_op(OpSpec::pure(
        "validate_schema",
        "1",
        |call: &ExecCall<'_>| done(input(call, "syntax").clone()),
    ))
    .unwrap();
    if with_repair {
        s.register_op(OpSpec::pure(
            "validate_schema_repair",
            "1",
            |call: &ExecCall<'_>| {
                let failed = input(call, "_failed");
                let Value::Map(mut m) = failed.clone() else {
                    return Err(ExecError("not a map".into()));
                };
                let price = m
                    .get("price")
                    .and_then(Value::as_str)
                    .and_then(|p| p.parse::<f64>().ok());
                if let Some(p) = price.and_then(Value::float) {
                    m.insert("price".into(), p);
                }
                done(Value::Map(m))
            },
        ))
        .unwrap();
    }
    s.register_op(OpSpec::judgment_only(
        "commit",
        "1",
        |call: &ExecCall<'_>| done(input(call, "schema").clone()),
    ))
    .unwrap();
    s.register_validator(
        "is_json",
        Arc::new(FnValidator::new("is_json", "1", |v, _| {
            Ok(matches!(v, Value::Map(_)))
        })),
    );
    s.register_validator(
        "schema_ok",
        Arc::new(FnValidator::new("schema_ok", "1", |v, _| {
            Ok(
                matches!(v.get("price"), Some(Value::Float(_) | Value::Int(_)))
                    && v.get("item").is_some(),
            )
        })),
    );
    s.grants_mut()
        .grant(Capability::parse("op:validate_schema").unwrap());
    s.classify("structured_output");
    s.admit_plan(vec![
        TaskSpec::new("draft", "draft").owned_by("model_lane"),
        TaskSpec::new("syntax", "validate_syntax")
            .after("draft")
            .validated_by("is_json", "SYNTAX"),
        TaskSpec::new("schema", "validate_schema")
            .after("syntax")
            .validated_by("schema_ok", "SCHEMA")
            .needs("op:validate_schema"),
        TaskSpec::new("commit", "commit")
            .after("schema")
            .root()
            .owned_by("commit_trap"),
    ])
    .unwrap();
    s
}

#[test]
fn structured_output_plan_repairs_the_schema_and_commits() {
    let ledger = Ledger::in_memory();
    let mut s = structured_output(ledger.clone(), BudgetLimits::default(), true);
    let summary = s.run(1000).unwrap();
    assert!(summary.committed, "{summary:?}");
    let price = summary
        .root_result
        .as_ref()
        .and_then(|r| r.get("price"))
        .cloned();
    assert_eq!(price, Value::float(12.5));
    assert_eq!(s.task("schema").unwrap().status, TaskStatus::Passed);
    assert_eq!(
        s.task("schema").unwrap().verification,
        Verification::Checked
    );
    let repair = s
        .tasks()
        .iter()
        .find(|t| t.owner == "agent:repair")
        .expect("a repair worker");
    assert_eq!(repair.kind, "validate_schema_repair");
    assert_eq!(repair.reopen.as_deref(), Some("schema"));
    // Honest attribution: the root inherits `checked` from its producer, not `judgment`.
    assert_eq!(
        s.task("commit").unwrap().verification,
        Verification::Checked
    );
    assert_eq!(s.result("commit"), summary.root_result.as_ref());
    assert!(summary.ledger_verified);
    assert!(ledger.verify(None).unwrap().ok());
    assert!(summary.ledger_entries >= 4, "{}", summary.ledger_entries);
    // The commit itself is on the ledger (D2).
    let entries = ledger.entries(0, 100).unwrap();
    let last = entries.last().unwrap();
    assert_eq!(last.record.action, Action::Commit);
    assert_eq!(Some(last), s.commit_entry());
    assert_eq!(
        last.record.result,
        hash_value(summary.root_result.as_ref().unwrap())
    );
}

#[test]
fn ledger_entries_bind_the_dependency_values_consumed() {
    let ledger = Ledger::in_memory();
    let mut s = structured_output(ledger.clone(), BudgetLimits::default(), true);
    s.run(1000).unwrap();
    let syntax_result = s.result("syntax").unwrap().clone();
    let entries = ledger.entries(0, 100).unwrap();
    let schema_entry = entries
        .iter()
        .find(|e| e.record.opcode == "validate_schema")
        .unwrap();
    assert_eq!(
        schema_entry.record.inputs.get("syntax"),
        Some(&hash_value(&syntax_result))
    );
    assert_eq!(
        schema_entry.record.validator.as_ref().unwrap().name,
        "schema_ok"
    );
    assert_eq!(schema_entry.record.action, Action::Fail);
}

#[test]
fn without_a_repair_executor_a_schema_failure_retries_in_band_then_aborts() {
    let mut s = structured_output(Ledger::in_memory(), BudgetLimits::default(), false);
    let summary = s.run(1000).unwrap();
    assert!(!summary.committed);
    // SCHEMA (0.6) is inside the repair band: one same-kind retry was admitted and failed,
    // which fails the parent instead of stranding it in REPAIRING (D18).
    let worker = s.task("schema.repair1").expect("a same-kind retry");
    assert_eq!(worker.kind, "validate_schema");
    assert_eq!(worker.status, TaskStatus::Aborted);
    let schema = s.task("schema").unwrap();
    assert_eq!(schema.status, TaskStatus::Aborted);
    assert!(
        schema
            .abort_reason
            .as_deref()
            .unwrap()
            .starts_with("repair_failed:"),
        "{schema:?}"
    );
    assert_eq!(s.task("commit").unwrap().status, TaskStatus::Aborted);
    assert_eq!(s.trace().events().last().unwrap().kind, EventKind::RunEnd);
}

#[test]
fn trap_budget_of_two_aborts_before_the_third_op_runs() {
    let ledger = Ledger::in_memory();
    let mut s = structured_output(
        ledger.clone(),
        BudgetLimits {
            max_traps: 2,
            ..BudgetLimits::default()
        },
        true,
    );
    let summary = s.run(1000).unwrap();
    assert!(!summary.committed);
    let aborted = s.tasks().iter().find(|t| {
        t.abort_reason
            .as_deref()
            .is_some_and(|r| r.starts_with("budget"))
    });
    let aborted = aborted.expect("a task aborted for budget");
    assert_eq!(aborted.status, TaskStatus::Aborted);
    assert!(
        s.trace()
            .events()
            .iter()
            .any(|e| e.executor.as_deref() == Some("budget"))
    );
    // The refusal is a decision, so it is on the ledger too.
    assert!(
        ledger
            .entries(0, 100)
            .unwrap()
            .iter()
            .any(|e| e.record.action == Action::Abort)
    );
}

fn echo_scheduler() -> Scheduler {
    let mut s = Scheduler::new(
        "r",
        Ledger::in_memory(),
        Budget::new(BudgetLimits::default()),
    )
    .unwrap();
    s.register_op(OpSpec::pure("echo", "1", |call: &ExecCall<'_>| {
        done(input(call, "x").clone())
    }))
    .unwrap();
    s.register_op(OpSpec::judgment_only("note", "1", |_: &ExecCall<'_>| {
        done(Value::str("n"))
    }))
    .unwrap();
    s.register_validator(
        "always",
        Arc::new(FnValidator::new("always", "1", |_, _| Ok(true))),
    );
    s
}

#[test]
fn admission_rejects_unregistered_ops_and_validators() {
    let mut s = echo_scheduler();
    assert_eq!(
        s.admit(TaskSpec::new("a", "nope").validated_by("always", "SCHEMA")),
        Err(Reject::UnsupportedOp("nope".into()))
    );
    assert_eq!(
        s.admit(TaskSpec::new("a", "echo").validated_by("ghost", "SCHEMA")),
        Err(Reject::UnknownValidator("ghost".into()))
    );
    // D21: no validator is a rejection unless the op is registered judgment-only.
    assert_eq!(
        s.admit(TaskSpec::new("a", "echo")),
        Err(Reject::NoValidator("echo".into()))
    );
    assert_eq!(s.admit(TaskSpec::new("n", "note")), Ok(()));
}

#[test]
fn judgment_only_results_are_capped_at_judgment_even_with_a_validator() {
    let mut s = echo_scheduler();
    s.admit(
        TaskSpec::new("n", "note")
            .validated_by("always", "ORACLE")
            .root(),
    )
    .unwrap();
    let summary = s.run(10).unwrap();
    assert!(summary.committed);
    assert_eq!(s.task("n").unwrap().verification, Verification::Judgment);
}

#[test]
fn malformed_levels_are_rejected_at_admission_for_every_op() {
    let mut s = echo_scheduler();
    assert_eq!(
        s.admit(TaskSpec::new("a", "echo").validated_by("always", "ORACLES")),
        Err(Reject::MalformedLevel("ORACLES".into()))
    );
    assert_eq!(
        s.admit(TaskSpec::new("n", "note").validated_by("always", "")),
        Err(Reject::MalformedLevel(String::new()))
    );
}

#[test]
fn unknown_dependencies_cycles_duplicates_and_second_roots_are_rejected() {
    let mut s = echo_scheduler();
    let t = |id: &str| TaskSpec::new(id, "note");
    assert!(matches!(
        s.admit(t("a").after("ghost")),
        Err(Reject::UnknownDependency { .. })
    ));
    assert!(matches!(
        s.admit_plan(vec![t("a").after("b"), t("b").after("a")]),
        Err(Reject::Cycle(_))
    ));
    assert!(matches!(
        s.admit_plan(vec![t("a").after("a")]),
        Err(Reject::Cycle(_))
    ));
    assert_eq!(
        s.admit_plan(vec![t("a"), t("a")]),
        Err(Reject::DuplicateTask("a".into()))
    );
    assert_eq!(
        s.admit_plan(vec![t("a").root(), t("b").root()]),
        Err(Reject::SecondRoot("b".into()))
    );
    // Nothing of a refused plan was admitted.
    assert!(s.tasks().is_empty());
    assert_eq!(s.admit_plan(vec![t("a"), t("b").after("a").root()]), Ok(()));
    assert_eq!(s.task("b").unwrap().status, TaskStatus::Blocked);
    assert_eq!(s.admit(t("c").root()), Err(Reject::SecondRoot("c".into())));
}

#[test]
fn capabilities_are_denied_by_default_and_granted_only_by_the_kernel() {
    let mut s = echo_scheduler();
    let wants = TaskSpec::new("a", "note").needs("op:web_search");
    assert_eq!(
        s.admit(wants.clone()),
        Err(Reject::MissingCapability("op:web_search".into()))
    );
    assert_eq!(s.admit(TaskSpec::new("b", "note")), Ok(()));
    assert!(matches!(
        s.admit(TaskSpec::new("c", "note").needs("root:everything")),
        Err(Reject::MalformedCapability(_))
    ));
    s.grants_mut()
        .grant(Capability::parse("op:web_search").unwrap());
    assert_eq!(s.admit(wants), Ok(()));
}

#[test]
fn syscall_tier_needs_its_own_capability_a_validator_and_a_level_within_the_ceiling() {
    let mut s = echo_scheduler();
    let cap = Capability::parse("op:sysinfo").unwrap();
    s.register_op(OpSpec::syscall(
        "sysinfo",
        "1",
        cap.clone(),
        ValidationLevel::Schema,
        |_: &ExecCall<'_>| done(Value::map([("cpu_count", Value::int(2))])),
    ))
    .unwrap();
    s.grants_mut().grant(cap);
    assert!(matches!(
        s.admit(TaskSpec::new("a", "sysinfo").validated_by("always", "SCHEMA")),
        Err(Reject::SyscallCapabilityNotDeclared { .. })
    ));
    assert!(matches!(
        s.admit(
            TaskSpec::new("a", "sysinfo")
                .needs("op:sysinfo")
                .validated_by("always", "ORACLE")
        ),
        Err(Reject::LevelAboveCeiling { .. })
    ));
    assert_eq!(
        s.admit(TaskSpec::new("a", "sysinfo").needs("op:sysinfo")),
        Err(Reject::NoValidator("sysinfo".into()))
    );
    assert_eq!(
        s.admit(
            TaskSpec::new("a", "sysinfo")
                .needs("op:sysinfo")
                .validated_by("always", "SCHEMA")
                .root()
        ),
        Ok(())
    );
    assert!(s.run(10).unwrap().committed);
    // A syscall op can never be registered to certify PROVEN.
    let proven = OpSpec::syscall(
        "x",
        "1",
        Capability::parse("op:x").unwrap(),
        ValidationLevel::Proven,
        |_: &ExecCall<'_>| done(Value::Null),
    );
    assert!(s.register_op(proven).is_err());
}

#[test]
fn a_raising_or_panicking_validator_fails_its_node_closed_and_disables_the_op() {
    for panics in [false, true] {
        let mut s = echo_scheduler();
        s.register_validator(
            "boom",
            Arc::new(FnValidator::new("boom", "1", move |_, _| {
                if panics {
                    panic!("validator bug")
                } else {
                    Err("crashed".into())
                }
            })),
        );
        let x = s.put_artifact(Value::int(1), "blob").unwrap();
        s.admit(
            TaskSpec::new("a", "echo")
                .input("x", x)
                .validated_by("boom", "ORACLE")
                .root(),
        )
        .unwrap();
        let summary = s.run(100).unwrap();
        assert!(!summary.committed);
        let a = s.task("a").unwrap();
        assert!(
            matches!(
                a.status,
                TaskStatus::Failed | TaskStatus::Aborted | TaskStatus::Repairing
            ),
            "{a:?}"
        );
        assert_eq!(a.verification, Verification::Unverified);
        assert!(s.budget().is_disabled("echo"));
        assert!(summary.ledger_verified);
    }
}

#[test]
fn an_oracle_level_failure_is_never_blindly_retried() {
    let mut s = echo_scheduler();
    s.register_validator(
        "never",
        Arc::new(FnValidator::new("never", "1", |_, _| Ok(false))),
    );
    let x = s.put_artifact(Value::int(1), "blob").unwrap();
    s.admit(
        TaskSpec::new("a", "echo")
            .input("x", x)
            .validated_by("never", "ORACLE")
            .root(),
    )
    .unwrap();
    s.run(100).unwrap();
    let a = s.task("a").unwrap();
    assert_eq!(a.status, TaskStatus::Aborted);
    assert_eq!(
        a.abort_reason.as_deref(),
        Some("repair_skipped:validation_failed")
    );
    assert_eq!(s.tasks().len(), 1, "no repair worker spawned");
    assert!(
        s.trace()
            .events()
            .iter()
            .any(|e| e.kind == EventKind::RepairSkipped)
    );
}

#[test]
fn repairs_go_through_admission_and_inherit_only_granted_capabilities() {
    let mut s = echo_scheduler();
    s.register_validator(
        "never",
        Arc::new(FnValidator::new("never", "1", |_, _| Ok(false))),
    );
    let cap = Capability::parse("op:echo").unwrap();
    s.grants_mut().grant(cap.clone());
    let x = s.put_artifact(Value::int(1), "blob").unwrap();
    s.admit(
        TaskSpec::new("a", "echo")
            .input("x", x)
            .needs("op:echo")
            .validated_by("never", "SCHEMA")
            .root(),
    )
    .unwrap();
    // The grant is withdrawn after admission: the repair worker must not run on the old grant.
    s.grants_mut().revoke(&cap);
    s.run(100).unwrap();
    let a = s.task("a").unwrap();
    assert_eq!(a.status, TaskStatus::Aborted);
    assert!(
        a.abort_reason
            .as_deref()
            .unwrap()
            .starts_with("repair_refused:missing capability"),
        "{a:?}"
    );
    assert_eq!(s.tasks().len(), 1);
}

#[test]
fn a_root_that_republishes_its_dependency_is_gate_failed() {
    let mut s = echo_scheduler();
    s.register_validator(
        "never",
        Arc::new(FnValidator::new("never", "1", |_, _| Ok(false))),
    );
    s.register_op(OpSpec::pure("pass_through", "1", |call: &ExecCall<'_>| {
        done(input(call, "a").clone())
    }))
    .unwrap();
    let x = s.put_artifact(Value::int(1), "blob").unwrap();
    s.admit_plan(vec![
        TaskSpec::new("a", "echo")
            .input("x", x)
            .validated_by("always", "SCHEMA"),
        TaskSpec::new("root", "pass_through")
            .after("a")
            .validated_by("never", "SCHEMA")
            .root(),
    ])
    .unwrap();
    s.run(100).unwrap();
    let root = s.task("root").unwrap();
    assert_eq!(
        root.abort_reason.as_deref(),
        Some("gate_failed:validation_failed")
    );
    assert!(
        s.trace()
            .events()
            .iter()
            .any(|e| e.kind == EventKind::GateFail)
    );
}

#[test]
fn the_run_bails_out_as_soon_as_the_root_passes() {
    let ran = Arc::new(AtomicUsize::new(0));
    let mut s = echo_scheduler();
    let counter = ran.clone();
    s.register_op(OpSpec::pure("slow", "1", move |_: &ExecCall<'_>| {
        counter.fetch_add(1, Ordering::SeqCst);
        done(Value::Null)
    }))
    .unwrap();
    let x = s.put_artifact(Value::int(3), "blob").unwrap();
    s.admit_plan(vec![
        TaskSpec::new("root", "echo")
            .input("x", x)
            .validated_by("always", "SCHEMA")
            .root(),
        TaskSpec::new("other", "slow").validated_by("always", "SCHEMA"),
    ])
    .unwrap();
    let summary = s.run(100).unwrap();
    assert!(summary.committed);
    assert_eq!(
        ran.load(Ordering::SeqCst),
        0,
        "a READY task ran after the root passed"
    );
    assert_eq!(s.task("other").unwrap().status, TaskStatus::Ready);
}

#[test]
fn commit_attribution_follows_the_content_hash_not_the_strongest_sibling() {
    let mut s = echo_scheduler();
    s.register_op(OpSpec::judgment_only(
        "pick_b",
        "1",
        |call: &ExecCall<'_>| done(input(call, "b").clone()),
    ))
    .unwrap();
    let one = s.put_artifact(Value::int(1), "blob").unwrap();
    let two = s.put_artifact(Value::int(2), "blob").unwrap();
    s.admit_plan(vec![
        TaskSpec::new("a", "echo")
            .input("x", one)
            .validated_by("always", "ORACLE"),
        TaskSpec::new("b", "echo")
            .input("x", two)
            .validated_by("always", "SCHEMA"),
        TaskSpec::new("root", "pick_b").after("a").after("b").root(),
    ])
    .unwrap();
    assert!(s.run(100).unwrap().committed);
    assert_eq!(s.task("a").unwrap().verification, Verification::Verified);
    assert_eq!(s.task("root").unwrap().verification, Verification::Checked);
    let commit = s.commit_entry().unwrap();
    assert_eq!(commit.record.detail.get("producer"), Some(&Value::str("b")));
}

#[test]
fn parked_tasks_wait_for_delivery_then_resume() {
    let mut s = echo_scheduler();
    s.register_op(OpSpec::pure("clock", "1", |_: &ExecCall<'_>| {
        Ok(ExecOutcome::Wait(WaitOn::Tool("clock".into())))
    }))
    .unwrap();
    s.classify("tool");
    s.admit(
        TaskSpec::new("t", "clock")
            .validated_by("always", "SCHEMA")
            .root(),
    )
    .unwrap();
    let first = s.run(100).unwrap();
    assert!(!first.committed);
    assert_eq!(s.task("t").unwrap().status, TaskStatus::WaitingForTool);
    assert_eq!(s.trace().events().last().unwrap().kind, EventKind::Park);
    assert!(s.deliver("nope", Ok(Value::Null)).is_err());
    s.deliver("t", Ok(Value::int(1_700_000_000))).unwrap();
    assert!(
        s.deliver("t", Ok(Value::Null)).is_err(),
        "a settled task takes no second delivery"
    );
    let second = s.run(100).unwrap();
    assert!(second.committed);
    assert_eq!(second.root_result, Some(Value::int(1_700_000_000)));
    assert_eq!(s.trace().events().last().unwrap().kind, EventKind::RunEnd);
}

#[test]
fn token_budget_is_reserved_before_the_executor_runs() {
    let ran = Arc::new(AtomicUsize::new(0));
    let mut s = Scheduler::new(
        "r",
        Ledger::in_memory(),
        Budget::new(BudgetLimits {
            tokens: Some(100),
            ..BudgetLimits::default()
        }),
    )
    .unwrap();
    let counter = ran.clone();
    s.register_op(OpSpec::judgment_only(
        "gen",
        "1",
        move |call: &ExecCall<'_>| {
            counter.fetch_add(1, Ordering::SeqCst);
            done(Value::int(i64::try_from(call.token_allowance).unwrap()))
        },
    ))
    .unwrap();
    let mut big = TaskSpec::new("big", "gen").root();
    big.budget.tokens = 500;
    s.admit(big).unwrap();
    s.run(10).unwrap();
    assert_eq!(ran.load(Ordering::SeqCst), 0);
    assert_eq!(
        s.task("big").unwrap().abort_reason.as_deref(),
        Some("budget:tokens:500>100")
    );
}

#[test]
fn executor_errors_and_panics_fail_the_node_not_the_run() {
    let mut s = echo_scheduler();
    s.register_op(OpSpec::pure("bad", "1", |_: &ExecCall<'_>| {
        Err(ExecError("no luck".into()))
    }))
    .unwrap();
    s.register_op(OpSpec::pure(
        "worse",
        "1",
        |_: &ExecCall<'_>| -> Result<ExecOutcome, ExecError> { panic!("bug") },
    ))
    .unwrap();
    s.admit_plan(vec![
        TaskSpec::new("a", "bad").validated_by("always", "ORACLE"),
        TaskSpec::new("b", "worse").validated_by("always", "ORACLE"),
    ])
    .unwrap();
    let summary = s.run(100).unwrap();
    assert!(!summary.committed);
    assert!(
        s.task("a")
            .unwrap()
            .abort_reason
            .as_deref()
            .unwrap()
            .contains("executor_error:no luck")
    );
    assert!(
        s.task("b")
            .unwrap()
            .abort_reason
            .as_deref()
            .unwrap()
            .contains("executor_panic")
    );
    assert!(summary.ledger_verified);
}

#[test]
fn inputs_may_not_clash_with_dependency_ids_and_must_name_stored_content() {
    let mut s = echo_scheduler();
    let x = s.put_artifact(Value::int(1), "blob").unwrap();
    s.admit(TaskSpec::new("a", "note")).unwrap();
    assert!(matches!(
        s.admit(TaskSpec::new("b", "note").after("a").input("a", x)),
        Err(Reject::InputNameClash { .. })
    ));
    let foreign = "artifact:0000000000000000000000000000000000000000000000000000000000000000"
        .parse()
        .unwrap();
    assert!(matches!(
        s.admit(TaskSpec::new("c", "note").input("y", foreign)),
        Err(Reject::UnknownArtifact { .. })
    ));
}

#[test]
fn the_trace_replays_to_the_live_states_with_increasing_logical_time() {
    let mut s = structured_output(Ledger::in_memory(), BudgetLimits::default(), true);
    s.run(1000).unwrap();
    let events = s.trace().events();
    assert!(
        events
            .windows(2)
            .all(|w| w[0].t < w[1].t && w[0].seq + 1 == w[1].seq)
    );
    let replayed = trace::replay(events);
    for task in s.tasks() {
        assert_eq!(replayed.get(&task.id), Some(&task.status), "{}", task.id);
    }
    // The JSONL export reads back to the same checker verdict.
    let jsonl = s.trace().to_jsonl();
    assert_eq!(trace::check_jsonl("j", &jsonl), trace::check("j", events));
}

#[test]
fn the_trace_checker_accepts_an_oracle_commit_and_flags_a_schema_only_commit() {
    let mut s = echo_scheduler();
    s.classify("direct");
    let x = s.put_artifact(Value::int(1), "blob").unwrap();
    s.admit(
        TaskSpec::new("a", "echo")
            .input("x", x)
            .validated_by("always", "ORACLE")
            .root(),
    )
    .unwrap();
    s.run(10).unwrap();
    assert_eq!(trace::check("j", s.trace().events()), Vec::<String>::new());

    let mut schema_only = structured_output(Ledger::in_memory(), BudgetLimits::default(), true);
    schema_only.run(1000).unwrap();
    let violations = trace::check("j", schema_only.trace().events());
    assert!(
        violations.iter().any(|v| v.contains("unsafe commit")),
        "{violations:?}"
    );
}

#[test]
fn a_proven_only_chain_counts_as_a_valid_commit() {
    let mut s = echo_scheduler();
    s.classify("primitive");
    let x = s.put_artifact(Value::int(1), "blob").unwrap();
    s.admit(
        TaskSpec::new("a", "echo")
            .input("x", x)
            .validated_by("always", "PROVEN")
            .root(),
    )
    .unwrap();
    assert!(s.run(10).unwrap().committed);
    assert_eq!(trace::check("j", s.trace().events()), Vec::<String>::new());
}

#[test]
fn the_trace_checker_catches_each_fault() {
    let mut s = echo_scheduler();
    s.classify("direct");
    let x = s.put_artifact(Value::int(1), "blob").unwrap();
    s.admit(
        TaskSpec::new("a", "echo")
            .input("x", x)
            .validated_by("always", "ORACLE")
            .root(),
    )
    .unwrap();
    s.run(10).unwrap();
    let clean = s.trace().events().to_vec();
    assert!(trace::check("j", &clean).is_empty());

    assert_eq!(trace::check("j", &[]), vec!["j: empty trace".to_owned()]);

    let mut no_proof = clean.clone();
    for e in &mut no_proof {
        if e.to == Some(TaskStatus::Passed) {
            e.proof = None;
        }
    }
    assert!(
        trace::check("j", &no_proof)
            .iter()
            .any(|v| v.contains("without a proof"))
    );

    let mut unverified = clean.clone();
    for e in &mut unverified {
        if e.kind == EventKind::Commit {
            e.detail = Value::map([("ledger_verified", Value::Bool(false))]);
        }
    }
    assert!(
        trace::check("j", &unverified)
            .iter()
            .any(|v| v.contains("verified ledger"))
    );

    let mut miscalibrated = clean.clone();
    for e in &mut miscalibrated {
        if e.to == Some(TaskStatus::Passed) {
            e.conf_model = Some(0.9);
            e.verification = Some(Verification::Unverified);
        }
    }
    assert!(
        trace::check("j", &miscalibrated)
            .iter()
            .any(|v| v.contains("miscalibration"))
    );

    let mut inert = clean.clone();
    let passed = inert
        .iter()
        .position(|e| e.to == Some(TaskStatus::Passed))
        .unwrap();
    let mut failed = inert[passed].clone();
    failed.to = Some(TaskStatus::Failed);
    inert[passed].owner = Some("agent:repair".into());
    inert.insert(passed, failed);
    assert!(
        trace::check("j", &inert)
            .iter()
            .any(|v| v.contains("inert repair"))
    );

    let no_plan: Vec<_> = clean
        .iter()
        .filter(|e| e.kind != EventKind::Plan)
        .cloned()
        .collect();
    assert!(
        trace::check("j", &no_plan)
            .iter()
            .any(|v| v.contains("no plan"))
    );

    let garbage = format!("{}not json\n{{\"kind\":1}}\n", s.trace().to_jsonl());
    let violations = trace::check_jsonl("j", &garbage);
    assert_eq!(violations.len(), 2, "{violations:?}");
}

#[test]
fn a_task_that_states_high_confidence_but_passes_only_on_judgment_is_miscalibrated() {
    let mut s = echo_scheduler();
    s.register_op(OpSpec::judgment_only("claim", "1", |_: &ExecCall<'_>| {
        done(Value::str("42, confidence: 0.95"))
    }))
    .unwrap();
    s.classify("direct");
    s.admit(TaskSpec::new("c", "claim").root()).unwrap();
    s.run(10).unwrap();
    let violations = trace::check("j", s.trace().events());
    assert!(
        violations.iter().any(|v| v.contains("miscalibration")),
        "{violations:?}"
    );
}

#[test]
fn templates_have_their_shape_validators_and_capabilities() {
    use nmk_kernel::plan::Template;
    let so = Template::StructuredOutput.tasks();
    let ids: Vec<&str> = so.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, ["draft", "syntax", "schema", "commit"]);
    assert_eq!(so.iter().filter(|t| t.is_root).count(), 1);
    for t in &so {
        let expects_validator = !matches!(t.id.as_str(), "draft" | "commit");
        assert_eq!(t.validator.is_some(), expects_validator, "{}", t.id);
    }
    let caps = |t: &TaskSpec| t.capabilities.clone();
    let cg = Template::CodeGen.tasks();
    assert_eq!(caps(&cg[1]), ["op:ast_parse"]);
    assert_eq!(caps(&cg[2]), ["op:run_tests"]);
    assert!(caps(&cg[0]).is_empty() && caps(&cg[3]).is_empty());
    assert_eq!(Template::by_name("cyber_alert"), Some(Template::CyberAlert));
    assert!(
        Template::CodeGen
            .grants()
            .allows(&Capability::parse("op:run_tests").unwrap())
    );
    assert!(
        !Template::CodeGen
            .grants()
            .allows(&Capability::parse("op:validate_schema").unwrap())
    );
}

#[test]
fn a_proposed_plan_loses_unknown_ops_and_can_never_grant_itself_capabilities() {
    use nmk_kernel::plan::{Template, normalize_proposed};
    let mut s = echo_scheduler();
    let proposals = vec![
        TaskSpec::new("a", "note"),
        TaskSpec::new("b", "launch_missiles"),
        TaskSpec::new("c", "note").after("a"),
        TaskSpec::new("d", "note").needs("net:fetch"),
    ];
    let job_grants = Template::StructuredOutput.grants();
    let n = normalize_proposed(proposals, &|k| s.has_op(k), &job_grants);
    assert_eq!(
        n.kept.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(),
        ["a", "c"]
    );
    assert_eq!(n.rejected.len(), 2);
    assert!(n.rejected[0].contains("b:launch_missiles (unsupported op)"));
    assert!(n.rejected[1].contains("net:fetch"));
    assert!(n.kept.iter().all(|t| t.owner == "model_lane"));
    // Normalising granted nothing: a task declaring the capability is still refused.
    assert!(!s.grants().allows(&Capability::parse("net:fetch").unwrap()));
    assert_eq!(
        s.admit(TaskSpec::new("e", "note").needs("net:fetch")),
        Err(Reject::MissingCapability("net:fetch".into()))
    );
    assert_eq!(s.admit_plan(n.kept), Ok(()));
}

#[test]
fn registries_belong_to_a_kernel_instance_not_to_the_process() {
    let a = echo_scheduler();
    let b = Scheduler::new(
        "other",
        Ledger::in_memory(),
        Budget::new(BudgetLimits::default()),
    )
    .unwrap();
    assert!(a.has_op("echo"));
    assert!(
        !b.has_op("echo"),
        "op registration leaked across kernels (D29)"
    );
}

#[test]
fn a_repair_worker_sees_the_failing_slice_and_nothing_else() {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut s = echo_scheduler();
    let log = seen.clone();
    s.register_op(OpSpec::pure("consume", "1", |call: &ExecCall<'_>| {
        done(input(call, "a").clone())
    }))
    .unwrap();
    s.register_op(OpSpec::pure(
        "consume_repair",
        "1",
        move |call: &ExecCall<'_>| {
            log.lock()
                .unwrap()
                .push(call.inputs.keys().cloned().collect::<Vec<_>>());
            done(Value::int(2))
        },
    ))
    .unwrap();
    s.register_validator(
        "is_two",
        Arc::new(FnValidator::new("is_two", "1", |v, _| {
            Ok(*v == Value::int(2))
        })),
    );
    let one = s.put_artifact(Value::int(1), "blob").unwrap();
    let unrelated = s.put_artifact(Value::str("secret"), "blob").unwrap();
    s.admit_plan(vec![
        TaskSpec::new("a", "echo")
            .input("x", one)
            .validated_by("always", "SCHEMA"),
        TaskSpec::new("z", "echo")
            .input("x", unrelated)
            .validated_by("always", "SCHEMA"),
        TaskSpec::new("b", "consume")
            .after("a")
            .after("z")
            .validated_by("is_two", "SCHEMA")
            .root(),
    ])
    .unwrap();
    assert!(s.run(100).unwrap().committed);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0],
        ["_failed", "a", "z"],
        "the worker sees the parent's inputs and its failed result"
    );
    assert_eq!(
        s.task("b.repair1").unwrap().dependencies,
        Vec::<String>::new()
    );
}

/// The ledger side of the orchestrator's acceptance: each job template, run on stub executors,
/// commits with a verified ledger, one shared chain across jobs.
#[test]
fn every_template_commits_with_a_verified_ledger_on_one_chain() {
    use nmk_kernel::plan::Template;
    let ledger = Ledger::in_memory();
    for template in [
        Template::StructuredOutput,
        Template::CodeGen,
        Template::CyberAlert,
    ] {
        let mut s = Scheduler::new(
            template.name(),
            ledger.clone(),
            Budget::new(BudgetLimits::default()),
        )
        .unwrap();
        let specs = template.tasks();
        for spec in &specs {
            // Stub executors: each returns a map naming its task; the root republishes its input.
            let id = spec.id.clone();
            let op = if spec.is_root {
                OpSpec::judgment_only(&spec.kind, "1", |call: &ExecCall<'_>| {
                    done(call.inputs.values().next().cloned().unwrap_or(Value::Null))
                })
            } else if spec.validator.is_none() {
                OpSpec::judgment_only(&spec.kind, "1", move |_: &ExecCall<'_>| {
                    done(Value::map([("by", Value::str(id.clone()))]))
                })
            } else {
                OpSpec::pure(&spec.kind, "1", move |_: &ExecCall<'_>| {
                    done(Value::map([("by", Value::str(id.clone()))]))
                })
            };
            s.register_op(op).unwrap();
            if let Some(v) = &spec.validator {
                s.register_validator(
                    &v.name,
                    Arc::new(FnValidator::new(&v.name, "1", |v, _| {
                        Ok(v.get("by").is_some())
                    })),
                );
            }
        }
        *s.grants_mut() = template.grants();
        s.classify(template.name());
        s.admit_plan(specs).unwrap();
        let summary = s.run(100).unwrap();
        assert!(summary.committed, "{}: {summary:?}", template.name());
        assert!(summary.ledger_verified, "{}", template.name());
        let owners: Vec<&str> = s.tasks().iter().map(|t| t.owner.as_str()).collect();
        assert!(owners.contains(&"commit_trap"));
        if template == Template::CyberAlert {
            assert!(owners.contains(&"primitive:cyber"));
        }
    }
    let report = ledger.verify(None).unwrap();
    assert!(report.ok());
    let commits = ledger
        .entries(0, 1000)
        .unwrap()
        .iter()
        .filter(|e| e.record.action == Action::Commit)
        .count();
    assert_eq!(commits, 3);
}
