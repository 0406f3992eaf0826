//! The kernel on its own, before any model speaks: plans admitted or refused, registered
//! validators judging, a clean-context repair, a validator crash failing closed, a budget
//! refusal, and the commit trap releasing or withholding hand-written candidates.
//!
//! Owns the tour's op table, its scenarios and what each is expected to do. It writes only
//! through the ledger handle it is given and never reaches a model or the router.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use nmk_det::{ValidationLevel, Value};
use nmk_kernel::budget::{Budget, BudgetLimits};
use nmk_kernel::capability::Capability;
use nmk_kernel::commit_trap::{CommitTrap, Contract};
use nmk_kernel::ledger::Ledger;
use nmk_kernel::memory::{MemoryConfig, MemoryStore};
use nmk_kernel::ops::{ExecCall, ExecError, ExecOutcome, FnValidator, OpSpec};
use nmk_kernel::{Scheduler, TaskSpec, TaskStatus, trace};

/// One scenario of the tour and what the kernel did with it.
#[derive(Debug)]
pub struct TourRow {
    /// What was tried.
    pub scenario: String,
    /// Committed (and what) or refused (and why).
    pub outcome: String,
    /// What the verdict supports.
    pub verification: String,
    /// Ledger entries the scenario wrote.
    pub entries: u64,
    /// Whether its ledger entries (and trace, where checked) are sound.
    pub trace_ok: bool,
    /// Whether the kernel did what the scenario expects (commit or refuse).
    pub expected: bool,
    /// Wall time in microseconds.
    pub micros: u128,
}

/// The whole tour: the scenarios run, then the plans refused at admission.
#[derive(Debug)]
pub struct Tour {
    /// Scenarios that ran.
    pub rows: Vec<TourRow>,
    /// Plans refused before anything ran: (case, the kernel's reason).
    pub refusals: Vec<(&'static str, String)>,
}

impl Tour {
    /// Whether every scenario went as expected and every bad plan was refused.
    pub fn as_expected(&self) -> bool {
        self.rows.iter().all(|r| r.expected && r.trace_ok)
            && self.refusals.iter().all(|(_, why)| !why.is_empty())
    }
}

fn done(v: Value) -> Result<ExecOutcome, ExecError> {
    Ok(ExecOutcome::Done(v))
}

fn arg<'a>(call: &'a ExecCall<'_>, name: &str) -> &'a Value {
    call.inputs.get(name).unwrap_or(&Value::Null)
}

/// A kernel with a small op table: a "draft" that stands in for a model's structured output,
/// JSON parsing, a schema check with its repair worker, gcd with an oracle, and a commit.
fn kernel(ledger: &Ledger, db: &Path, run: &str, limits: BudgetLimits) -> Result<Scheduler> {
    let mut s = Scheduler::new(run, ledger.clone(), Budget::new(limits))?;
    // The kernel consults memory before every task; the trace and the ledger record it.
    s.attach_memory(Box::new(MemoryStore::open(
        db,
        MemoryConfig::default(),
        ledger.clone(),
    )?));
    s.register_op(OpSpec::judgment_only(
        "draft",
        "1",
        |call: &ExecCall<'_>| done(arg(call, "text").clone()),
    ))?;
    s.register_op(OpSpec::pure("parse_json", "1", |call: &ExecCall<'_>| {
        let text = arg(call, "draft")
            .as_str()
            .ok_or_else(|| ExecError("draft is not text".into()))?;
        let json: serde_json::Value =
            serde_json::from_str(text).map_err(|e| ExecError(e.to_string()))?;
        done(Value::from_json(&json))
    }))?;
    s.register_op(OpSpec::pure("check_schema", "1", |call: &ExecCall<'_>| {
        done(arg(call, "parse").clone())
    }))?;
    s.register_op(OpSpec::pure(
        "check_schema_repair",
        "1",
        |call: &ExecCall<'_>| {
            let Value::Map(mut m) = arg(call, "_failed").clone() else {
                return Err(ExecError("failed result is not an object".into()));
            };
            if let Some(p) = m
                .get("price")
                .and_then(Value::as_str)
                .and_then(|p| p.trim().parse::<f64>().ok())
            {
                m.insert("price".into(), Value::float(p).unwrap_or(Value::Null));
            }
            done(Value::Map(m))
        },
    ))?;
    s.register_op(OpSpec::pure("gcd", "1", |call: &ExecCall<'_>| {
        let (mut a, mut b) = (
            arg(call, "a").as_i64().unwrap_or(0),
            arg(call, "b").as_i64().unwrap_or(0),
        );
        while b != 0 {
            (a, b) = (b, a % b);
        }
        done(Value::int(a.abs()))
    }))?;
    s.register_op(OpSpec::judgment_only(
        "commit",
        "1",
        |call: &ExecCall<'_>| {
            Ok(ExecOutcome::Done(
                call.inputs.values().next().cloned().unwrap_or(Value::Null),
            ))
        },
    ))?;
    s.register_validator(
        "is_object",
        Arc::new(FnValidator::new("is_object", "1", |v, _| {
            Ok(matches!(v, Value::Map(_)))
        })),
    );
    s.register_validator(
        "price_is_number",
        Arc::new(FnValidator::new("price_is_number", "1", |v, _| {
            Ok(matches!(
                v.get("price"),
                Some(Value::Float(_) | Value::Int(_))
            ))
        })),
    );
    // An independent oracle: the gcd divides both and every common divisor divides it.
    s.register_validator(
        "gcd_oracle",
        Arc::new(FnValidator::new("gcd_oracle", "1", |v, call| {
            let (a, b) = (
                call.contract.get("a").and_then(Value::as_i64),
                call.contract.get("b").and_then(Value::as_i64),
            );
            let (Some(a), Some(b), Some(g)) = (a, b, v.as_i64()) else {
                return Ok(false);
            };
            if g <= 0 {
                return Ok(a == 0 && b == 0 && g == 0);
            }
            Ok(a % g == 0
                && b % g == 0
                && (1..=g).all(|d| !(a % d == 0 && b % d == 0) || g % d == 0))
        })),
    );
    s.register_validator(
        "crashes",
        Arc::new(FnValidator::new("crashes", "1", |_, _| {
            Err("validator bug".into())
        })),
    );
    s.grants_mut().grant(Capability::parse("op:check_schema")?);
    Ok(s)
}

fn structured(
    ledger: &Ledger,
    db: &Path,
    text: &str,
    run: &str,
    limits: BudgetLimits,
) -> Result<Scheduler> {
    let mut s = kernel(ledger, db, run, limits)?;
    s.classify("structured_output");
    let text = s.put_artifact(Value::str(text), "prompt")?;
    s.admit_plan(vec![
        TaskSpec::new("draft", "draft")
            .input("text", text)
            .owned_by("model_lane"),
        TaskSpec::new("parse", "parse_json")
            .after("draft")
            .validated_by("is_object", "SYNTAX"),
        TaskSpec::new("schema", "check_schema")
            .after("parse")
            .validated_by("price_is_number", "SCHEMA")
            .needs("op:check_schema"),
        TaskSpec::new("commit", "commit")
            .after("schema")
            .root()
            .owned_by("commit_trap"),
    ])?;
    Ok(s)
}

fn finish(
    scenario: &'static str,
    s: &mut Scheduler,
    expected_commit: bool,
    started: Instant,
) -> Result<TourRow> {
    let summary = s.run(1000)?;
    let root = s.tasks().iter().find(|t| t.is_root);
    let outcome = match root {
        Some(t) if t.status == TaskStatus::Committed => {
            format!(
                "committed {}",
                summary
                    .root_result
                    .as_ref()
                    .map(|v| v.to_string())
                    .unwrap_or_default()
            )
        }
        _ => {
            let why = s
                .tasks()
                .iter()
                .find_map(|t| t.abort_reason.clone())
                .unwrap_or_else(|| "not committed".into());
            format!("refused: {why}")
        }
    };
    Ok(TourRow {
        scenario: scenario.to_owned(),
        outcome,
        verification: root.map(|t| t.verification.to_string()).unwrap_or_default(),
        entries: summary.ledger_entries,
        trace_ok: summary.ledger_verified,
        expected: summary.committed == expected_commit,
        micros: started.elapsed().as_micros(),
    })
}

/// Runs the tour on `ledger` (the kernel home's database at `db`, where memory lives too).
pub fn run(ledger: &Ledger, db: &Path) -> Result<Tour> {
    let mut rows = Vec::new();
    // (scenario, draft the "model" produced, trap budget, whether it should commit)
    let structured_cases: [(&'static str, &str, &str, Option<u32>, bool); 4] = [
        (
            "structured output, price as text: repaired",
            r#"{"item": "widget", "price": "12.50"}"#,
            "demo-repair",
            None,
            true,
        ),
        (
            "structured output, valid first time",
            r#"{"item": "widget", "price": 12.5}"#,
            "demo-clean",
            None,
            true,
        ),
        (
            "structured output, unparseable draft",
            "not json at all",
            "demo-garbage",
            None,
            false,
        ),
        (
            "trap budget of 2 on a 4-step plan",
            r#"{"price": 1}"#,
            "demo-budget",
            Some(2),
            false,
        ),
    ];
    for (scenario, draft, run_id, max_traps, commits) in structured_cases {
        let t = Instant::now();
        let limits = match max_traps {
            Some(max_traps) => BudgetLimits {
                max_traps,
                ..BudgetLimits::default()
            },
            None => BudgetLimits::default(),
        };
        let mut s = structured(ledger, db, draft, run_id, limits)?;
        rows.push(finish(scenario, &mut s, commits, t)?);
    }

    let t = Instant::now();
    let mut s = kernel(ledger, db, "demo-gcd", BudgetLimits::default())?;
    s.classify("primitive");
    let a = s.put_artifact(Value::int(1071), "arg")?;
    let b = s.put_artifact(Value::int(462), "arg")?;
    s.admit(
        TaskSpec::new("gcd", "gcd")
            .input("a", a)
            .input("b", b)
            .with_contract(Value::map([
                ("a", Value::int(1071)),
                ("b", Value::int(462)),
            ]))
            .validated_by("gcd_oracle", "ORACLE")
            .root(),
    )?;
    let mut row = finish("gcd(1071, 462) judged by an oracle", &mut s, true, t)?;
    row.trace_ok &= trace::check("gcd", s.trace().events()).is_empty();
    rows.push(row);

    let t = Instant::now();
    let mut s = kernel(ledger, db, "demo-crash", BudgetLimits::default())?;
    s.classify("primitive");
    let a = s.put_artifact(Value::int(4), "arg")?;
    s.admit(
        TaskSpec::new("gcd", "gcd")
            .input("a", a)
            .validated_by("crashes", "ORACLE")
            .root(),
    )?;
    rows.push(finish(
        "validator crashes: node fails closed",
        &mut s,
        false,
        t,
    )?);

    // The commit trap: the only path from a model's answer to the caller.
    let mut trap = CommitTrap::new(ledger.clone(), Budget::new(BudgetLimits::default()));
    let contract = Contract {
        required_keys: vec!["city".into(), "country".into()],
        ..Contract::new("answer")
    };
    for (scenario, candidate, expect_emit) in [
        (
            "commit trap: answer with the required keys",
            "```json\n{\"city\": \"Paris\", \"country\": \"France\"}\n```",
            true,
        ),
        (
            "commit trap: answer missing a key",
            "{\"city\": \"Paris\"}",
            false,
        ),
        (
            "commit trap: prose where JSON was due",
            "The capital of France is Paris.",
            false,
        ),
    ] {
        let t = Instant::now();
        let d = trap.commit(candidate, &contract, 1, ValidationLevel::Schema);
        rows.push(TourRow {
            scenario: scenario.to_owned(),
            outcome: match &d.output {
                Some(out) => format!("emitted {}", out.replace('\n', " ")),
                None => format!("{}: {}", d.action, d.reason),
            },
            verification: d.verification.to_string(),
            entries: u64::from(d.ledger_entry.is_some()),
            trace_ok: d.ledger_entry.is_some(),
            expected: d.committed() == expect_emit,
            micros: t.elapsed().as_micros(),
        });
    }

    // Admission refusals never reach the run loop, so they have no ledger entry of their own.
    let mut s = kernel(ledger, db, "demo-admission", BudgetLimits::default())?;
    let mut refuse = |case: &'static str, spec: TaskSpec| {
        let why = s
            .admit(spec)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        (case, why)
    };
    let refusals = vec![
        refuse(
            "unregistered op",
            TaskSpec::new("x", "rm_rf").validated_by("is_object", "SCHEMA"),
        ),
        refuse(
            "capability not granted",
            TaskSpec::new("x", "draft").needs("net:fetch"),
        ),
        refuse("no validator", TaskSpec::new("x", "gcd")),
        refuse(
            "unknown dependency",
            TaskSpec::new("x", "draft").after("ghost"),
        ),
        refuse(
            "malformed level",
            TaskSpec::new("x", "gcd").validated_by("gcd_oracle", "ORACLES"),
        ),
    ];
    Ok(Tour { rows, refusals })
}
