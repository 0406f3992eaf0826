//! `nmk demo`: what a newcomer runs first.
//!
//! Today it walks through the trusted kernel on its own: plans admitted or refused, registered
//! validators judging, a clean-context repair, a validator crash failing closed, a budget
//! refusal, commits with honest attribution, the ledger verified, and a tampered export caught.
//! The model lane joins the demo when the neural engine lands; the demo says so rather than
//! pretend.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use clap::Args;
use nmk_det::{ValidationLevel, Value};
use nmk_kernel::budget::{Budget, BudgetLimits};
use nmk_kernel::capability::Capability;
use nmk_kernel::commit_trap::{CommitTrap, Contract};
use nmk_kernel::ledger::{Ledger, verify_jsonl};
use nmk_kernel::memory::{MemoryConfig, MemoryStore};
use nmk_kernel::ops::{ExecCall, ExecError, ExecOutcome, FnValidator, OpSpec};
use nmk_kernel::store::{Durability, database_path};
use nmk_kernel::{Scheduler, TaskSpec, TaskStatus, trace};

use super::Output;
use super::ledger::format_head;
use crate::exit::Code;
use nmk_kernel::proposer::Proposer;

/// Options of `nmk demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// fsync every ledger append (survives power loss, slower).
    #[arg(long)]
    durable: bool,
    /// Skip the model lane (no model is fetched or run).
    #[arg(long)]
    no_model: bool,
    /// The model of the model lane.
    #[arg(long, default_value = "smollm2-135m-instruct")]
    model: String,
}

struct Row {
    scenario: String,
    outcome: String,
    verification: String,
    entries: u64,
    trace_ok: bool,
    expected: bool,
    micros: u128,
    model_tokens: u32,
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
) -> Result<Row> {
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
    Ok(Row {
        scenario: scenario.to_owned(),
        outcome,
        verification: root.map(|t| t.verification.to_string()).unwrap_or_default(),
        entries: summary.ledger_entries,
        trace_ok: summary.ledger_verified,
        expected: summary.committed == expected_commit,
        micros: started.elapsed().as_micros(),
        model_tokens: 0,
    })
}

/// Questions for the model, each with the deterministic check its answer must pass.
fn model_questions() -> Vec<(&'static str, Contract)> {
    let text = |must: &[&str]| Contract {
        otype: Some(nmk_det::oracles::OutputType::Text),
        must_include: must.iter().map(|m| (*m).to_owned()).collect(),
        ..Contract::new("answer")
    };
    vec![
        ("Name the capital city of France.", text(&["Paris"])),
        ("What is 2 plus 2?", text(&["4"])),
        (
            "How many letters r are in the word strawberry?",
            text(&["3"]),
        ),
        (
            "Give the capital of France as a JSON object with keys city and country.",
            Contract {
                required_keys: vec!["city".into(), "country".into()],
                ..Contract::new("answer_json")
            },
        ),
    ]
}

/// The model proposes; the commit trap disposes. A row is as expected when the trap's decision
/// is consistent (output released if and only if emitted) and its ledger entry binds the model.
fn model_lane(ledger: &Ledger, spec: &str, quiet: bool) -> Result<Vec<Row>> {
    let path = super::model::resolve_with_progress(spec, quiet)?;
    let mut proposer = crate::proposer::NeuralProposer::load(spec, &path, 1)?;
    let binding = proposer.binding();
    let mut trap = CommitTrap::new(ledger.clone(), Budget::new(BudgetLimits::default()))
        .with_model(binding.clone());
    let mut rows = Vec::new();
    for (i, (question, contract)) in model_questions().into_iter().enumerate() {
        let t = Instant::now();
        let proposal = proposer.gen_fast(question, 64)?;
        let d = trap.commit(
            &proposal.text,
            &contract,
            100 + i as u64,
            ValidationLevel::Schema,
        );
        let consistent = d.output.is_some() == (d.action == nmk_kernel::Action::Emit)
            && d.ledger_entry
                .as_ref()
                .is_some_and(|e| e.record.model.as_ref() == Some(&binding));
        let answer: String = proposal.text.replace('\n', " ").chars().take(60).collect();
        rows.push(Row {
            scenario: format!("model: {question}"),
            outcome: match &d.output {
                Some(_) => format!("emitted “{answer}”"),
                None => format!("withheld ({}: {}) “{answer}”", d.action, d.reason),
            },
            verification: d.verification.to_string(),
            entries: u64::from(d.ledger_entry.is_some()),
            trace_ok: d.ledger_entry.is_some(),
            expected: consistent,
            micros: t.elapsed().as_micros(),
            model_tokens: proposal.tokens,
        });
    }
    Ok(rows)
}

/// Runs the demo.
pub fn run(home: &Path, out: &Output, args: &DemoArgs) -> Result<Code> {
    let db = database_path(home);
    let durability = if args.durable {
        Durability::PowerLoss
    } else {
        Durability::Process
    };
    let ledger = Ledger::open(&db, durability)?;
    let mut rows = Vec::new();

    let t = Instant::now();
    let mut s = structured(
        &ledger,
        &db,
        r#"{"item": "widget", "price": "12.50"}"#,
        "demo-repair",
        BudgetLimits::default(),
    )?;
    rows.push(finish(
        "structured output, price as text: repaired",
        &mut s,
        true,
        t,
    )?);

    let t = Instant::now();
    let mut s = structured(
        &ledger,
        &db,
        r#"{"item": "widget", "price": 12.5}"#,
        "demo-clean",
        BudgetLimits::default(),
    )?;
    rows.push(finish(
        "structured output, valid first time",
        &mut s,
        true,
        t,
    )?);

    let t = Instant::now();
    let mut s = structured(
        &ledger,
        &db,
        "not json at all",
        "demo-garbage",
        BudgetLimits::default(),
    )?;
    rows.push(finish(
        "structured output, unparseable draft",
        &mut s,
        false,
        t,
    )?);

    let t = Instant::now();
    let mut s = structured(
        &ledger,
        &db,
        r#"{"price": 1}"#,
        "demo-budget",
        BudgetLimits {
            max_traps: 2,
            ..BudgetLimits::default()
        },
    )?;
    rows.push(finish(
        "trap budget of 2 on a 4-step plan",
        &mut s,
        false,
        t,
    )?);

    let t = Instant::now();
    let mut s = kernel(&ledger, &db, "demo-gcd", BudgetLimits::default())?;
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
    let mut s = kernel(&ledger, &db, "demo-crash", BudgetLimits::default())?;
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
        rows.push(Row {
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
            model_tokens: 0,
        });
    }

    if !args.no_model {
        rows.extend(model_lane(&ledger, &args.model, out.json)?);
    }

    // Admission refusals never reach the run loop, so they have no ledger entry of their own.
    let refusals: Vec<(&str, String)> = {
        let mut s = kernel(&ledger, &db, "demo-admission", BudgetLimits::default())?;
        vec![
            (
                "unregistered op",
                s.admit(TaskSpec::new("x", "rm_rf").validated_by("is_object", "SCHEMA"))
                    .err()
                    .map(|e| e.to_string())
                    .unwrap_or_default(),
            ),
            (
                "capability not granted",
                s.admit(TaskSpec::new("x", "draft").needs("net:fetch"))
                    .err()
                    .map(|e| e.to_string())
                    .unwrap_or_default(),
            ),
            (
                "no validator",
                s.admit(TaskSpec::new("x", "gcd"))
                    .err()
                    .map(|e| e.to_string())
                    .unwrap_or_default(),
            ),
            (
                "unknown dependency",
                s.admit(TaskSpec::new("x", "draft").after("ghost"))
                    .err()
                    .map(|e| e.to_string())
                    .unwrap_or_default(),
            ),
            (
                "malformed level",
                s.admit(TaskSpec::new("x", "gcd").validated_by("gcd_oracle", "ORACLES"))
                    .err()
                    .map(|e| e.to_string())
                    .unwrap_or_default(),
            ),
        ]
    };
    let refusals_ok = refusals.iter().all(|(_, why)| !why.is_empty());

    let report = ledger.verify(None)?;
    let tamper_caught = {
        let mut buf = Vec::new();
        ledger.export_jsonl(&mut buf)?;
        let clean = verify_jsonl(buf.as_slice(), report.head)?.ok();
        if let Some(pos) = buf.windows(8).position(|w| w == b"\"ORACLE\"") {
            buf[pos + 1] = b'P';
        }
        clean && !verify_jsonl(buf.as_slice(), report.head)?.ok()
    };
    let all_expected = rows.iter().all(|r| r.expected && r.trace_ok)
        && refusals_ok
        && report.ok()
        && tamper_caught;

    if out.json {
        out.print_json(&serde_json::json!({
            "runs": rows.iter().map(|r| serde_json::json!({
                "scenario": r.scenario, "outcome": r.outcome, "verification": r.verification,
                "ledger_entries": r.entries, "ledger_verified": r.trace_ok, "as_expected": r.expected, "micros": r.micros,
                "model_tokens": r.model_tokens,
            })).collect::<Vec<_>>(),
            "admission_refusals": refusals.iter().map(|(k, why)| serde_json::json!({"case": k, "reason": why})).collect::<Vec<_>>(),
            "ledger": { "path": db.display().to_string(), "ok": report.ok(), "entries": report.entries,
                        "head": report.head.as_ref().map(format_head) },
            "tampered_export_caught": tamper_caught,
            "model_lane": if args.no_model { serde_json::Value::Null } else { serde_json::Value::String(args.model.clone()) },
            "ok": all_expected,
        }));
    } else {
        println!("nmk — the model proposes, the kernel disposes\n");
        println!(
            "  {:<58} {:<10} {:>6} {:>8}  outcome",
            "request", "verified", "tokens", "ms"
        );
        for r in &rows {
            let mark = if r.expected && r.trace_ok {
                "✓"
            } else {
                "✗"
            };
            let scenario: String = r.scenario.chars().take(58).collect();
            println!(
                "{mark} {:<58} {:<10} {:>6} {:>8.1}  {}",
                scenario,
                r.verification,
                r.model_tokens,
                r.micros as f64 / 1000.0,
                r.outcome
            );
        }
        println!("\nrefused at admission (fail-closed, before anything runs):");
        for (case, why) in &refusals {
            println!("  {:<24} {why}", case);
        }
        let head = report.head.as_ref().map(format_head).unwrap_or_default();
        println!(
            "\nledger {}: {} entries at {}\n  head {head}",
            if report.ok() { "verified" } else { "BROKEN" },
            report.entries,
            db.display()
        );
        println!(
            "  one byte of an exported copy changed → {}",
            if tamper_caught {
                "detected"
            } else {
                "NOT detected"
            }
        );
        if args.no_model {
            println!("\nmodel lane skipped (--no-model).");
        } else {
            println!(
                "\nmodel lane: {} — every answer went through the commit trap; only emitted ones are released.",
                args.model
            );
        }
        println!(
            "next: `nmk ledger show --tail` to read the decisions, `nmk ledger verify` to check them."
        );
    }
    Ok(if all_expected {
        Code::Success
    } else {
        Code::CheckFailed
    })
}
