//! The orchestrator ("job kernel", spec §3.16, §7 `orchestrator`): classification, the three
//! templates end to end on stub executors judged by real validators, plan memory and its
//! atomic persistence (§9 D12), grants from the job type's policy only (§9 D22), the trap
//! budget, the rollup and the dashboard, and the trace self-check on committed runs (§9 D25).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use nmk_det::{Value, oracles::format_contract_ok};
use nmk_kernel::ledger::Ledger;
use nmk_kernel::ops::{ExecCall, ExecError, ExecOutcome, FnValidator, OpSpec};
use nmk_kernel::orchestrator::{Job, OpCatalogue};
use nmk_kernel::orchestrator::{
    JobType, Orchestrator, PlanMemory, PlanMemoryError, classify, plan_memory::temp_path_for,
};
use nmk_kernel::plan::Template;
use nmk_kernel::trace::{self, EventKind};
use nmk_kernel::{TaskSpec, Verification};

fn done(v: Value) -> Result<ExecOutcome, ExecError> {
    Ok(ExecOutcome::Done(v))
}

fn input<'a>(call: &'a ExecCall<'_>, name: &str) -> Result<&'a Value, ExecError> {
    call.inputs
        .get(name)
        .ok_or_else(|| ExecError(format!("missing input {name}")))
}

/// The root's executor: re-publishes its single dependency's result.
fn only_input(call: &ExecCall<'_>) -> Result<ExecOutcome, ExecError> {
    let mut values = call.inputs.values();
    match (values.next(), values.next()) {
        (Some(v), None) => done(v.clone()),
        _ => Err(ExecError("commit expects exactly one input".into())),
    }
}

fn is_ipv4(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() == 4
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 3 && p.parse::<u8>().is_ok())
}

fn is_hash(s: &str) -> bool {
    matches!(s.len(), 32 | 40 | 64) && s.chars().all(|c| c.is_ascii_hexdigit())
}

fn is_domain(s: &str) -> bool {
    s.contains('.')
        && !is_ipv4(s)
        && s.split('.')
            .all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        && s.rsplit('.')
            .next()
            .is_some_and(|tld| tld.chars().all(|c| c.is_ascii_alphabetic()))
}

fn ioc_kind(s: &str) -> Option<&'static str> {
    if is_ipv4(s) {
        Some("ipv4")
    } else if is_hash(s) {
        Some("hash")
    } else if is_domain(s) {
        Some("domain")
    } else {
        None
    }
}

fn ioc_tokens(text: &str) -> Vec<String> {
    text.split(|c: char| c.is_whitespace() || matches!(c, ',' | ';' | '(' | ')'))
        .map(|t| t.trim_end_matches(['.', ':']))
        .filter(|t| ioc_kind(t).is_some())
        .map(str::to_owned)
        .collect()
}

fn strs(v: &Value) -> Vec<String> {
    match v {
        Value::List(items) => items
            .iter()
            .filter_map(|i| i.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

/// A tiny stand-in for running Python: it understands `return a <op> b` bodies only.
fn run_cases(code: &str, cases: &Value) -> (i64, i64) {
    let op = ['+', '-', '*']
        .into_iter()
        .find(|op| code.contains(&format!("return a {op} b")));
    let (mut passed, mut failed) = (0, 0);
    for case in match cases {
        Value::List(c) => c.as_slice(),
        _ => &[],
    } {
        let Value::List(pair) = case else { continue };
        let (Some(Value::List(args)), Some(expected)) = (pair.first(), pair.get(1)) else {
            continue;
        };
        let (a, b) = (
            args.first().and_then(Value::as_i64).unwrap_or(0),
            args.get(1).and_then(Value::as_i64).unwrap_or(0),
        );
        let got = match op {
            Some('+') => Some(a + b),
            Some('-') => Some(a - b),
            Some('*') => Some(a * b),
            _ => None,
        };
        if got.is_some() && got == expected.as_i64() {
            passed += 1;
        } else {
            failed += 1;
        }
    }
    (passed, failed)
}

/// Stub executors for every template op, real validators for every verdict, and a counter of
/// executor calls.
fn catalogue(calls: Arc<AtomicUsize>) -> OpCatalogue {
    let c = move || {
        calls.fetch_add(1, Ordering::SeqCst);
    };
    let (c1, c2, c3, c4, c5, c6, c7, c8, c9, c10) = (
        c.clone(),
        c.clone(),
        c.clone(),
        c.clone(),
        c.clone(),
        c.clone(),
        c.clone(),
        c.clone(),
        c.clone(),
        c.clone(),
    );
    OpCatalogue::new()
        // structured_output: the "model" draft is the job's `draft` input.
        .op(OpSpec::judgment_only(
            "draft",
            "1",
            move |call: &ExecCall<'_>| {
                c1();
                if let Some(code) = call.inputs.get("code") {
                    return done(Value::map([
                        ("code", code.clone()),
                        ("entry", input(call, "entry")?.clone()),
                        ("cases", input(call, "cases")?.clone()),
                    ]));
                }
                done(input(call, "draft")?.clone())
            },
        ))
        .op(OpSpec::pure(
            "validate_syntax",
            "1",
            move |call: &ExecCall<'_>| {
                c2();
                let text = input(call, "draft")?
                    .as_str()
                    .ok_or_else(|| ExecError("draft is not text".into()))?;
                let json: serde_json::Value =
                    serde_json::from_str(text).map_err(|e| ExecError(e.to_string()))?;
                done(Value::from_json(&json))
            },
        ))
        .op(OpSpec::pure(
            "validate_schema",
            "1",
            move |call: &ExecCall<'_>| {
                c3();
                done(input(call, "syntax")?.clone())
            },
        ))
        .op(OpSpec::judgment_only(
            "commit",
            "1",
            move |call: &ExecCall<'_>| {
                c4();
                only_input(call)
            },
        ))
        // code_gen.
        .op(OpSpec::pure(
            "ast_parse",
            "1",
            move |call: &ExecCall<'_>| {
                c5();
                done(input(call, "draft")?.clone())
            },
        ))
        .op(OpSpec::pure(
            "run_tests",
            "1",
            move |call: &ExecCall<'_>| {
                c6();
                let parsed = input(call, "parse")?;
                let code = parsed.get("code").and_then(Value::as_str).unwrap_or("");
                let (passed, failed) = run_cases(code, parsed.get("cases").unwrap_or(&Value::Null));
                done(Value::map([
                    ("code", Value::str(code)),
                    ("passed", Value::int(passed)),
                    ("failed", Value::int(failed)),
                ]))
            },
        ))
        // cyber_alert.
        .op(OpSpec::judgment_only(
            "extract_observables",
            "1",
            move |call: &ExecCall<'_>| {
                c7();
                let text = input(call, "prompt")?.as_str().unwrap_or("");
                done(Value::List(
                    ioc_tokens(text).into_iter().map(Value::Str).collect(),
                ))
            },
        ))
        .op(OpSpec::pure(
            "normalize_iocs",
            "1",
            |call: &ExecCall<'_>| {
                let mut iocs: Vec<String> = strs(input(call, "extract")?)
                    .into_iter()
                    .map(|s| s.to_lowercase())
                    .collect();
                iocs.sort();
                iocs.dedup();
                done(Value::List(iocs.into_iter().map(Value::Str).collect()))
            },
        ))
        .op(OpSpec::pure(
            "det_checks",
            "1",
            move |call: &ExecCall<'_>| {
                c8();
                let iocs = input(call, "normalize")?.clone();
                let checks = strs(&iocs)
                    .iter()
                    .map(|i| {
                        Value::map([
                            ("ioc", Value::str(i.clone())),
                            ("kind", Value::str(ioc_kind(i).unwrap_or("unknown"))),
                        ])
                    })
                    .collect();
                done(Value::map([
                    ("iocs", iocs),
                    ("checks", Value::List(checks)),
                ]))
            },
        ))
        .op(OpSpec::judgment_only(
            "draft_note",
            "1",
            move |call: &ExecCall<'_>| {
                c9();
                let checks = input(call, "checks")?;
                let iocs = strs(checks.get("iocs").unwrap_or(&Value::Null));
                done(Value::map([
                    (
                        "note",
                        Value::str(format!(
                            "Triage: observed {} in the alert.",
                            iocs.join(", ")
                        )),
                    ),
                    (
                        "iocs",
                        Value::List(iocs.into_iter().map(Value::Str).collect()),
                    ),
                ]))
            },
        ))
        .op(OpSpec::pure(
            "verify_claims",
            "1",
            move |call: &ExecCall<'_>| {
                c10();
                done(input(call, "note")?.clone())
            },
        ))
        .validator(
            "is_json",
            Arc::new(FnValidator::new("is_json", "1", |v, _| {
                Ok(matches!(v, Value::Map(_)))
            })),
        )
        .validator(
            "schema_ok",
            Arc::new(FnValidator::new("schema_ok", "1", |v, _| {
                let contract = Value::map([(
                    "required",
                    Value::List(vec![Value::str("name"), Value::str("age")]),
                )]);
                Ok(format_contract_ok(v, &contract)
                    && v.get("age").and_then(Value::as_i64).is_some())
            })),
        )
        .validator(
            "compiles",
            Arc::new(FnValidator::new("compiles", "1", |v, _| {
                let code = v.get("code").and_then(Value::as_str).unwrap_or("");
                let entry = v.get("entry").and_then(Value::as_str).unwrap_or("\u{0}");
                let mut lines = code.lines();
                let header = lines.next().unwrap_or("");
                let body = lines.next().unwrap_or("");
                Ok(header.starts_with(&format!("def {entry}("))
                    && header.trim_end().ends_with("):")
                    && body.starts_with("    ")
                    && !body.trim().is_empty())
            })),
        )
        .validator(
            "tests_pass",
            Arc::new(FnValidator::new("tests_pass", "1", |v, _| {
                let passed = v.get("passed").and_then(Value::as_i64).unwrap_or(0);
                let failed = v.get("failed").and_then(Value::as_i64).unwrap_or(1);
                Ok(passed > 0 && failed == 0)
            })),
        )
        .validator(
            "iocs_ok",
            Arc::new(FnValidator::new("iocs_ok", "1", |v, _| {
                let iocs = strs(v);
                Ok(!iocs.is_empty() && iocs.iter().all(|i| ioc_kind(i).is_some()))
            })),
        )
        .validator(
            "checks_ran",
            Arc::new(FnValidator::new("checks_ran", "1", |v, _| {
                let iocs = strs(v.get("iocs").unwrap_or(&Value::Null));
                let Some(Value::List(checks)) = v.get("checks") else {
                    return Ok(false);
                };
                Ok(!iocs.is_empty()
                    && checks.len() == iocs.len()
                    && checks.iter().zip(&iocs).all(|(c, i)| {
                        c.get("ioc").and_then(Value::as_str) == Some(i.as_str())
                            && c.get("kind").and_then(Value::as_str) == ioc_kind(i)
                    }))
            })),
        )
        .validator(
            "claims_grounded",
            Arc::new(FnValidator::new("claims_grounded", "1", |v, _| {
                let iocs = strs(v.get("iocs").unwrap_or(&Value::Null));
                let note = v.get("note").and_then(Value::as_str).unwrap_or("");
                let claimed = ioc_tokens(note);
                Ok(!claimed.is_empty() && claimed.iter().all(|c| iocs.contains(&c.to_lowercase())))
            })),
        )
}

fn orchestrator() -> (Orchestrator, Ledger, Arc<AtomicUsize>) {
    let ledger = Ledger::in_memory();
    let calls = Arc::new(AtomicUsize::new(0));
    let orch = Orchestrator::new(
        ledger.clone(),
        catalogue(Arc::clone(&calls)),
        PlanMemory::default(),
    );
    (orch, ledger, calls)
}

fn coding_job(id: &str, code: &str) -> Job {
    Job::new(id, "Implement add so the cases pass.")
        .input("entry", Value::str("add"))
        .input("code", Value::str(code))
        .input(
            "cases",
            Value::List(vec![
                Value::List(vec![
                    Value::List(vec![Value::int(1), Value::int(2)]),
                    Value::int(3),
                ]),
                Value::List(vec![
                    Value::List(vec![Value::int(5), Value::int(7)]),
                    Value::int(12),
                ]),
                Value::List(vec![
                    Value::List(vec![Value::int(0), Value::int(0)]),
                    Value::int(0),
                ]),
            ]),
        )
}

const GOOD_ADD: &str = "def add(a, b):\n    return a + b\n";
const BAD_ADD: &str = "def add(a, b):\n    return a - b\n";

fn cyber_job(id: &str, text: &str) -> Job {
    Job::new(id, text)
}

fn structured_job(id: &str, draft: &str) -> Job {
    Job::new(id, "Give a JSON object for the person.")
        .input(
            "schema",
            Value::map([(
                "required",
                Value::List(vec![Value::str("name"), Value::str("age")]),
            )]),
        )
        .input("draft", Value::str(draft))
}

#[test]
fn classifier_applies_its_rules_in_order_and_a_declared_type_wins() {
    let mem = PlanMemory::default();
    let cases: &[(Job, JobType, Template, &str)] = &[
        (
            Job::new("a", "please").input("entry", Value::str("f")),
            JobType::Coding,
            Template::CodeGen,
            "matched",
        ),
        (
            Job::new("b", "def add(a, b): ..."),
            JobType::Coding,
            Template::CodeGen,
            "matched",
        ),
        (
            Job::new("c", "Write a function that will return the sum"),
            JobType::Coding,
            Template::CodeGen,
            "matched",
        ),
        (
            Job::new("d", "SOC alert: host talks to 203.0.113.9"),
            JobType::Cyber,
            Template::CyberAlert,
            "matched",
        ),
        (
            Job::new("e", "C2 BEACON every 60s"),
            JobType::Cyber,
            Template::CyberAlert,
            "matched",
        ),
        (
            Job::new("f", "malware IOC list attached"),
            JobType::Cyber,
            Template::CyberAlert,
            "matched",
        ),
        (
            Job::new("g", "Give a JSON object with a schema"),
            JobType::StructuredOutput,
            Template::StructuredOutput,
            "matched",
        ),
        (
            Job::new("h", "fill it").input("schema", Value::Null),
            JobType::StructuredOutput,
            Template::StructuredOutput,
            "matched",
        ),
        (
            Job::new("i", "Write a haiku about the sea"),
            JobType::Generic,
            Template::StructuredOutput,
            "fallback",
        ),
        // Whole words only: "associate", "socket", "alerting" are not cyber words.
        (
            Job::new("j", "associate the socket with alerting"),
            JobType::Generic,
            Template::StructuredOutput,
            "fallback",
        ),
        // "undefined (x)" has no Python def.
        (
            Job::new("k", "undefined (x)"),
            JobType::Generic,
            Template::StructuredOutput,
            "fallback",
        ),
        // Coding wins over cyber (rule order).
        (
            Job::new("l", "def scan(ioc): flag the malware"),
            JobType::Coding,
            Template::CodeGen,
            "matched",
        ),
        // A declared type wins over every matcher.
        (
            Job::new("m", "def f(x): return x").declared("cyber"),
            JobType::Cyber,
            Template::CyberAlert,
            "declared",
        ),
        (
            Job::new("n", "soc alert").declared("structured_output"),
            JobType::StructuredOutput,
            Template::StructuredOutput,
            "declared",
        ),
    ];
    for (job, ty, template, rule) in cases {
        let c = classify(job, &mem);
        assert_eq!(
            (c.job_type, c.template, c.rule),
            (*ty, *template, *rule),
            "{}",
            job.text
        );
        assert!(!c.template_from_memory);
    }
    assert_eq!(classify(&Job::new("x", "hi"), &mem).budget, 64);
    assert_eq!(
        classify(&Job::new("x", "hi").with_budget(5), &mem).budget,
        5
    );
}

#[test]
fn all_three_templates_commit_with_verified_ledgers_and_honest_rollups() {
    let (mut orch, ledger, calls) = orchestrator();
    let coding = orch.submit(&coding_job("c1", GOOD_ADD)).unwrap();
    let cyber = orch
        .submit(&cyber_job(
            "s1",
            "SOC alert: beacon from 10.0.0.5 to evil.example.com",
        ))
        .unwrap();
    let structured = orch
        .submit(&structured_job("j1", r#"{"name": "Ada", "age": 36}"#))
        .unwrap();
    for r in [&coding, &cyber, &structured] {
        assert!(r.committed, "{:#?}", r.to_json());
        assert!(r.ledger_verified);
        assert!(r.refused.is_none());
        assert!(r.ledger_entries >= 4, "{}", r.ledger_entries);
        assert!(
            r.checklist.iter().all(|l| l.starts_with('✓')),
            "{:?}",
            r.checklist
        );
        assert_eq!(r.checklist.len(), r.tasks.len());
        assert!(
            r.tasks
                .iter()
                .filter(|t| t.status == "PASSED")
                .all(|t| t.proof.is_some())
        );
    }
    assert_eq!(
        (coding.job_type.as_str(), coding.template.as_str()),
        ("coding", "code_gen")
    );
    assert_eq!(
        (cyber.job_type.as_str(), cyber.template.as_str()),
        ("cyber", "cyber_alert")
    );
    assert_eq!(structured.template, "structured_output");
    assert_eq!(
        coding
            .result
            .as_ref()
            .and_then(|r| r.get("passed"))
            .and_then(Value::as_i64),
        Some(3)
    );
    assert_eq!(
        structured
            .result
            .as_ref()
            .and_then(|r| r.get("name"))
            .and_then(Value::as_str),
        Some("Ada")
    );
    // The root inherits its producer's verification by content hash.
    let root = |r: &nmk_kernel::orchestrator::Rollup| {
        r.tasks
            .iter()
            .find(|t| t.task == "commit")
            .unwrap()
            .verification
            .clone()
    };
    assert_eq!(root(&coding), Verification::Verified.as_str());
    assert_eq!(root(&structured), Verification::Checked.as_str());
    assert!(
        coding
            .checklist
            .contains(&"✓ run_tests [scheduler] (verified)".to_owned())
    );
    let owners: Vec<&str> = cyber.tasks.iter().map(|t| t.owner.as_str()).collect();
    assert!(
        owners.contains(&"primitive:cyber") && owners.contains(&"commit_trap"),
        "{owners:?}"
    );
    // The self-check passes on the oracle-backed commits, and flags the structured-output one:
    // its strongest check is SCHEMA, so nothing reached ORACLE (§3.17 rule 3, ≥ ORACLE per D25).
    assert_eq!(coding.violations, Vec::<String>::new());
    assert_eq!(cyber.violations, Vec::<String>::new());
    assert!(
        structured
            .violations
            .iter()
            .any(|v| v.contains("unsafe commit")),
        "{:?}",
        structured.violations
    );
    assert!(ledger.verify(None).unwrap().ok());
    assert!(calls.load(Ordering::SeqCst) > 0);
}

#[test]
fn the_trace_runs_start_classify_plan_tasks_end_with_fresh_run_ids() {
    let (mut orch, _, _) = orchestrator();
    let first = orch.submit(&coding_job("c1", GOOD_ADD)).unwrap();
    let second = orch.submit(&coding_job("c2", GOOD_ADD)).unwrap();
    assert_eq!(
        (first.run_id.as_str(), second.run_id.as_str()),
        ("r1", "r2")
    );
    let kinds: Vec<EventKind> = second.trace.iter().map(|e| e.kind).collect();
    assert_eq!(kinds.first(), Some(&EventKind::RunStart));
    assert_eq!(kinds.get(1), Some(&EventKind::Classify));
    assert_eq!(kinds.get(2), Some(&EventKind::Plan));
    assert_eq!(kinds.last(), Some(&EventKind::RunEnd));
    assert!(kinds.contains(&EventKind::Commit));
    assert!(second.trace.iter().all(|e| e.run == "r2"));
    // The classify event carries the rule, the template and what plan memory recalled: after
    // one committed coding run, code_gen is remembered as the best template.
    let detail = &second.trace[1].detail;
    assert_eq!(detail.get("rule").and_then(Value::as_str), Some("matched"));
    assert_eq!(
        detail
            .get("recall")
            .and_then(|r| r.get("best_template"))
            .and_then(Value::as_str),
        Some("code_gen")
    );
    assert_eq!(
        first.trace[1]
            .detail
            .get("recall")
            .and_then(|r| r.get("best_template")),
        Some(&Value::Null)
    );
    // Liveness of the self-check on this very trace: drop the classify event and it fails.
    let mut without: Vec<_> = second.trace.clone();
    without.retain(|e| e.kind != EventKind::Classify);
    assert!(trace::check("r2", &second.trace).is_empty());
    assert!(!trace::check("r2", &without).is_empty());
}

#[test]
fn dashboard_counts_jobs_types_and_proven_templates() {
    let (mut orch, _, _) = orchestrator();
    assert_eq!(orch.dashboard().jobs_total, 0);
    orch.submit(&coding_job("c1", GOOD_ADD)).unwrap();
    orch.submit(&cyber_job("s1", "SOC alert: beacon to 198.51.100.7"))
        .unwrap();
    orch.submit(&cyber_job("s2", "malware IOC evil.example.org seen"))
        .unwrap();
    orch.submit(&structured_job("j1", r#"{"name": "Ada", "age": 36}"#))
        .unwrap();
    let d = orch.dashboard();
    assert_eq!((d.jobs_total, d.committed_total), (4, 4));
    assert_eq!(d.by_type.get("cyber"), Some(&2));
    assert_eq!(d.by_type.get("coding"), Some(&1));
    assert_eq!(
        d.proven_templates.get("cyber").map(String::as_str),
        Some("cyber_alert")
    );
    assert!(d.learnings.is_empty(), "{:?}", d.learnings);
    let json = d.to_json();
    assert_eq!(json["jobs_total"], 4);
    assert_eq!(json["proven_templates"]["coding"], "code_gen");
}

#[test]
fn a_failing_oracle_is_not_retried_and_leaves_a_failed_at_lesson() {
    let (mut orch, _, _) = orchestrator();
    let r = orch.submit(&coding_job("bad1", BAD_ADD)).unwrap();
    assert!(!r.committed);
    assert!(r.result.is_none());
    let tests = r.tasks.iter().find(|t| t.kind == "run_tests").unwrap();
    assert_eq!(tests.status, "ABORTED");
    assert_eq!(tests.verification, "unverified");
    // ORACLE-declared: a same-kind re-run would be deterministic, so no repair worker.
    assert!(r.tasks.iter().all(|t| t.owner != "agent:repair"));
    assert!(r.trace.iter().any(|e| e.kind == EventKind::RepairSkipped));
    assert!(
        r.checklist
            .contains(&"✗ run_tests [scheduler] (unverified)".to_owned())
    );
    let lessons = &orch.memory().learnings["coding"];
    assert!(
        lessons
            .iter()
            .any(|l| l.starts_with("job bad1 failed at: [") && l.contains("run_tests")),
        "{lessons:?}"
    );
    let d = orch.dashboard();
    assert_eq!((d.jobs_total, d.committed_total), (1, 0));
    assert!(d.proven_templates.is_empty());
    // The same job with the right code commits: the failure was the tests', not the plumbing's.
    assert!(
        orch.submit(&coding_job("good1", GOOD_ADD))
            .unwrap()
            .committed
    );
}

#[test]
fn the_trap_budget_is_the_jobs_budget() {
    let (mut orch, _, _) = orchestrator();
    let starved = orch
        .submit(&coding_job("b2", GOOD_ADD).with_budget(2))
        .unwrap();
    assert!(!starved.committed);
    assert!(starved.trace.iter().any(|e| {
        e.detail
            .get("reason")
            .and_then(Value::as_str)
            .is_some_and(|r| r.starts_with("budget:max_traps:2"))
    }));
    assert_eq!(
        starved
            .tasks
            .iter()
            .filter(|t| t.status == "PASSED")
            .count(),
        2
    );
    let enough = orch
        .submit(&coding_job("b4", GOOD_ADD).with_budget(4))
        .unwrap();
    assert!(enough.committed);
}

#[test]
fn plan_memory_learns_best_templates_and_recalls_details() {
    let mut mem = PlanMemory::default();
    assert_eq!(mem.best_template("coding"), None);
    mem.record_run("coding", "code_gen", true);
    assert_eq!(mem.best_template("coding"), Some("code_gen"));
    // Highest pass rate wins; ties are broken by more runs.
    mem.record_run("cyber", "cyber_alert", true);
    mem.record_run("cyber", "structured_output", true);
    mem.record_run("cyber", "structured_output", true);
    assert_eq!(mem.best_template("cyber"), Some("structured_output"));
    mem.record_run("cyber", "structured_output", false);
    assert_eq!(mem.best_template("cyber"), Some("cyber_alert"));
    mem.remember("coding", "style", "pep8");
    assert_eq!(mem.recall("coding", "style"), Some("pep8"));
    assert_eq!(mem.recall("coding", "other"), None);
    mem.learn("coding", "lesson one");
    mem.learn("coding", "lesson one");
    mem.learn("coding", "lesson two");
    assert_eq!(mem.learnings["coding"], vec!["lesson one", "lesson two"]);

    // The orchestrator's own runs feed it: a committed coding run makes code_gen best.
    let (mut orch, _, _) = orchestrator();
    orch.submit(&coding_job("c1", GOOD_ADD)).unwrap();
    assert_eq!(orch.memory().best_template("coding"), Some("code_gen"));
    assert_eq!(orch.memory().last_job.as_deref(), Some("c1"));
}

#[test]
fn the_classifier_reuses_memorys_template_when_the_policy_can_run_it() {
    let job = coding_job("c1", GOOD_ADD);
    let empty = PlanMemory::default();
    let default = classify(&job, &empty);
    assert_eq!(default.template, Template::CodeGen);
    assert!(!default.template_from_memory);
    let mut mem = PlanMemory::default();
    mem.record_run("coding", "code_gen", true);
    let recalled = classify(&job, &mem);
    assert_eq!(recalled.template, Template::CodeGen);
    assert!(recalled.template_from_memory);
    // A generic job remembered as structured_output reuses it (its policy runs it).
    let mut mem = PlanMemory::default();
    mem.record_run("generic", "structured_output", true);
    assert!(classify(&Job::new("g", "a haiku"), &mem).template_from_memory);
}

#[test]
fn grants_come_only_from_the_job_types_policy() {
    // Memory would steer a coding job to the cyber template, which needs op:det_checks, outside
    // the coding policy: the memory is ignored and the job runs its own template with its own
    // grants; nothing is ever granted because a template or plan asks (§9 D22).
    let (mut orch, _, _) = orchestrator();
    for _ in 0..3 {
        orch.memory_mut().record_run("coding", "cyber_alert", true);
    }
    let c = classify(&coding_job("c1", GOOD_ADD), orch.memory());
    assert_eq!(
        (c.template, c.template_from_memory),
        (Template::CodeGen, false)
    );
    let r = orch.submit(&coding_job("c1", GOOD_ADD)).unwrap();
    assert!(r.committed);
    assert_eq!(r.template, "code_gen");

    // A proposed plan: one task asking for a capability outside the policy refuses the plan;
    // the same plan within the policy runs.
    let within = vec![
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
    ];
    let mut outside = within.clone();
    outside[1] = outside[1].clone().needs("op:run_tests");
    let (mut orch, _, calls) = orchestrator();
    let job = structured_job("j1", r#"{"name": "Ada", "age": 36}"#);
    let refused = orch.submit_plan(&job, outside).unwrap();
    assert!(!refused.committed);
    // Refused by the policy check before admission (admission, holding only the policy's
    // grants, would refuse it too).
    let why = refused.refused.as_deref().unwrap();
    assert!(
        why.contains("op:run_tests") && why.contains("outside the job type's policy"),
        "{why}"
    );
    assert!(refused.tasks.is_empty());
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    let ran = orch.submit_plan(&job, within).unwrap();
    assert!(ran.committed, "{:?}", ran.refused);
}

#[test]
fn plan_memory_survives_save_and_reload() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plan_memory.json");
    let ledger = Ledger::in_memory();
    let calls = Arc::new(AtomicUsize::new(0));
    {
        let mut orch =
            Orchestrator::with_memory_file(ledger.clone(), catalogue(Arc::clone(&calls)), &path)
                .unwrap();
        orch.memory_mut().remember("coding", "style", "pep8");
        let r = orch.submit(&coding_job("bad1", BAD_ADD)).unwrap();
        assert!(r.memory_error.is_none());
        orch.submit(&coding_job("c2", GOOD_ADD)).unwrap();
    }
    let orch = Orchestrator::with_memory_file(ledger, catalogue(calls), &path).unwrap();
    let mem = orch.memory();
    assert_eq!(mem.recall("coding", "style"), Some("pep8"));
    assert!(
        mem.learnings["coding"]
            .iter()
            .any(|l| l.starts_with("job bad1 failed at:"))
    );
    assert_eq!(mem.templates["coding"]["code_gen"].runs, 2);
    assert_eq!(mem.templates["coding"]["code_gen"].passes, 1);
    assert_eq!((mem.jobs_total, mem.committed_total), (2, 1));
    assert_eq!(mem.last_job.as_deref(), Some("c2"));
    assert_eq!(PlanMemory::load(&path).unwrap(), *mem);
}

#[test]
fn a_failed_save_leaves_the_old_file_intact() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plan_memory.json");
    let mut mem = PlanMemory::default();
    mem.learn("coding", "first");
    mem.save(&path).unwrap();
    let before = std::fs::read(&path).unwrap();
    // Block the temp file the save writes first (a directory stands where it would go): the
    // save fails before the target is touched.
    mem.learn("coding", "second");
    let tmp = temp_path_for(&path);
    std::fs::create_dir(&tmp).unwrap();
    let err = mem.save(&path).unwrap_err();
    assert!(matches!(err, PlanMemoryError::Io { .. }), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), before);
    assert_eq!(
        PlanMemory::load(&path).unwrap().learnings["coding"],
        vec!["first"]
    );
    // Contrast: unblocked, the same save replaces the file and leaves no temp file behind.
    std::fs::remove_dir(&tmp).unwrap();
    mem.save(&path).unwrap();
    assert_eq!(
        PlanMemory::load(&path).unwrap().learnings["coding"],
        vec!["first", "second"]
    );
    assert!(!tmp.exists());
}

#[test]
fn loading_tolerates_a_missing_file_and_refuses_a_corrupt_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plan_memory.json");
    assert_eq!(PlanMemory::load(&path).unwrap(), PlanMemory::default());
    for bad in [
        "{not json",
        "[1, 2]",
        r#"{"templates": {"coding": {"code_gen": {"runs": 1, "passes": 2}}}}"#,
        r#"{"learnings": {"coding": [1]}}"#,
        r#"{"jobs_total": -1}"#,
    ] {
        std::fs::write(&path, bad).unwrap();
        let err = PlanMemory::load(&path).unwrap_err();
        assert!(
            matches!(err, PlanMemoryError::Corrupt { .. }),
            "{bad}: {err}"
        );
        let ledger = Ledger::in_memory();
        let refused =
            Orchestrator::with_memory_file(ledger, catalogue(Arc::new(AtomicUsize::new(0))), &path);
        assert!(refused.is_err());
    }
    std::fs::write(&path, r#"{"learnings": {"coding": ["ok"]}}"#).unwrap();
    assert_eq!(
        PlanMemory::load(&path).unwrap().learnings["coding"],
        vec!["ok"]
    );
}

#[test]
fn jobs_are_untrusted_input() {
    let ok = Job::from_json(&serde_json::json!({
        "id": "j-1", "prompt": "Give JSON", "type": "structured_output",
        "inputs": {"draft": "{}"}, "budget": 8
    }))
    .unwrap();
    assert_eq!(ok.budget, Some(8));
    assert_eq!(ok.declared_type.as_deref(), Some("structured_output"));
    assert_eq!(ok.inputs.get("draft"), Some(&Value::str("{}")));
    for bad in [
        serde_json::json!([]),
        serde_json::json!({"prompt": "x"}),
        serde_json::json!({"id": "a b", "prompt": "x"}),
        serde_json::json!({"id": "a", "prompt": 3}),
        serde_json::json!({"id": "a", "budget": -1}),
        serde_json::json!({"id": "a", "budget": 1_000_000}),
        serde_json::json!({"id": "a", "inputs": {"_failed": 1}}),
        serde_json::json!({"id": "a", "inputs": []}),
    ] {
        assert!(Job::from_json(&bad).is_err(), "{bad}");
    }
    let (mut orch, _, _) = orchestrator();
    assert!(orch.submit(&Job::new("bad id", "x")).is_err());
    assert_eq!(orch.dashboard().jobs_total, 0);
}

#[test]
fn owners_named_by_the_job_are_recorded_and_malformed_ones_ignored() {
    let (mut orch, _, _) = orchestrator();
    let owners = Value::map([
        ("draft", Value::str("agent:writer")),
        ("syntax", Value::str("bad owner; rm -rf")),
    ]);
    let r = orch
        .submit(&structured_job("j1", r#"{"name": "Ada", "age": 36}"#).input("owners", owners))
        .unwrap();
    assert!(r.committed);
    let owner = |id: &str| r.tasks.iter().find(|t| t.task == id).unwrap().owner.clone();
    assert_eq!(owner("draft"), "agent:writer");
    assert_eq!(owner("syntax"), "scheduler");
    assert!(
        r.checklist
            .contains(&"✓ draft [agent:writer] (judgment)".to_owned())
    );
    // Without the input, the template's owner stands.
    let plain = orch
        .submit(&structured_job("j2", r#"{"name": "Ada", "age": 36}"#))
        .unwrap();
    assert_eq!(
        plain
            .tasks
            .iter()
            .find(|t| t.task == "draft")
            .unwrap()
            .owner,
        "model_lane"
    );
}
