//! `nmk job submit|dashboard`: the orchestrator on the kernel home's ledger, with plan memory in
//! `<home>/plan_memory.json`. This module supplies the executors and validators the binary
//! really has — JSON parsing and the `format_contract_ok` schema oracle for `structured_output`
//! jobs, whose draft is the job's own `inputs.draft` (no model is loaded here) — and refuses,
//! naming what is missing, any job whose template needs an executor it does not have (today
//! `code_gen` and `cyber_alert`), rather than faking a verdict. Exit codes: 0 committed, 1 ran
//! but did not commit, 2 a job this command cannot run (malformed, or no executor), 3 I/O.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Subcommand;
use nmk_det::Value;
use nmk_det::oracles::form::{is_dict, parse_json_text};
use nmk_det::oracles::format_contract_ok;
use nmk_kernel::ledger::Ledger;
use nmk_kernel::memory::{MemoryConfig, MemoryStore};
use nmk_kernel::ops::{ExecCall, ExecError, ExecOutcome, FnValidator, OpSpec};
use nmk_kernel::orchestrator::{self, Job, OpCatalogue, Orchestrator, PlanMemory, classify};
use nmk_kernel::plan::Template;
use nmk_kernel::store::{Durability, database_path};

use super::Output;
use crate::exit::Code;

/// Largest job file read.
const MAX_JOB_FILE_BYTES: u64 = 1 << 20;

/// `nmk job …`
#[derive(Debug, Subcommand)]
#[command(
    after_help = "Examples:\n  echo '{\"id\": \"j1\", \"prompt\": \"Give a JSON object describing the person.\", \"inputs\": {\"draft\": \"{\\\"name\\\": \\\"Ada\\\", \\\"age\\\": 36}\", \"schema\": {\"required\": [\"name\", \"age\"]}}}' > job.json\n  nmk job submit job.json\n  nmk job dashboard"
)]
pub enum JobCommand {
    /// Run a job file (`{"id", "prompt", "type"?, "inputs"?, "budget"?}`) through the
    /// orchestrator: classify, plan, admit, run, commit; print the rollup.
    #[command(
        after_help = "Examples:\n  echo '{\"id\": \"j1\", \"prompt\": \"Give a JSON object describing the person.\", \"inputs\": {\"draft\": \"{\\\"name\\\": \\\"Ada\\\", \\\"age\\\": 36}\", \"schema\": {\"required\": [\"name\", \"age\"]}}}' > job.json\n  nmk job submit job.json\n  nmk job submit job.json --trace trace.jsonl --json"
    )]
    Submit {
        /// The job file (JSON).
        job: PathBuf,
        /// Also write the run's trace here, one canonical JSON event per line (checkable with
        /// the kernel's trace self-check).
        #[arg(long, value_name = "FILE")]
        trace: Option<PathBuf>,
    },
    /// Totals over every job run in this home: jobs, commits, types, proven templates, lessons.
    #[command(after_help = "Examples:\n  nmk job dashboard\n  nmk job dashboard --json")]
    Dashboard,
}

/// Where plan memory lives in a home.
pub fn plan_memory_path(home: &Path) -> PathBuf {
    home.join("plan_memory.json")
}

fn done(v: Value) -> Result<ExecOutcome, ExecError> {
    Ok(ExecOutcome::Done(v))
}

fn named<'a>(call: &'a ExecCall<'_>, name: &str) -> Result<&'a Value, ExecError> {
    call.inputs
        .get(name)
        .ok_or_else(|| ExecError(format!("missing input {name:?}")))
}

/// The structured-output executors and validators, the schema oracle bound to `schema`.
fn structured_output_catalogue(schema: Value) -> OpCatalogue {
    OpCatalogue::new()
        .op(OpSpec::judgment_only(
            "draft",
            "job-input-1",
            |call: &ExecCall<'_>| done(named(call, "draft")?.clone()),
        ))
        .op(OpSpec::pure(
            "validate_syntax",
            "json-1",
            |call: &ExecCall<'_>| {
                let text = named(call, "draft")?
                    .as_str()
                    .ok_or_else(|| ExecError("the draft is not text".into()))?;
                parse_json_text(text)
                    .map(ExecOutcome::Done)
                    .map_err(|e| ExecError(e.to_string()))
            },
        ))
        .op(OpSpec::pure(
            "validate_schema",
            "1",
            |call: &ExecCall<'_>| done(named(call, "syntax")?.clone()),
        ))
        .op(OpSpec::judgment_only(
            "commit",
            "1",
            |call: &ExecCall<'_>| {
                let mut values = call.inputs.values();
                match (values.next(), values.next()) {
                    (Some(v), None) => done(v.clone()),
                    _ => Err(ExecError("commit expects exactly one input".into())),
                }
            },
        ))
        .validator(
            "is_json",
            Arc::new(FnValidator::new("is_json", "1", |v, _| Ok(is_dict(v)))),
        )
        .validator(
            "schema_ok",
            Arc::new(FnValidator::new("format_contract_ok", "1", move |v, _| {
                Ok(format_contract_ok(v, &schema))
            })),
        )
}

fn read_job(path: &Path) -> Result<std::result::Result<Job, String>> {
    // A job file that is not there is the caller's mistake (usage), like a malformed one.
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) => return Ok(Err(format!("{}: cannot read: {e}", path.display()))),
    };
    if meta.len() > MAX_JOB_FILE_BYTES {
        return Ok(Err(format!(
            "{} is {} bytes, over the cap of {MAX_JOB_FILE_BYTES}",
            path.display(),
            meta.len()
        )));
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let json: serde_json::Value = match serde_json::from_str(&text) {
        Ok(j) => j,
        Err(e) => return Ok(Err(format!("{} is not JSON: {e}", path.display()))),
    };
    Ok(Job::from_json(&json).map_err(|e| e.to_string()))
}

fn refuse(out: &Output, job_id: Option<&str>, why: &str) -> Code {
    if out.json {
        out.print_json(&serde_json::json!({ "job_id": job_id, "refused": why, "ran": false }));
    } else {
        eprintln!("refused: {why}");
    }
    Code::Usage
}

/// What stops this binary running `job`, if anything.
fn unrunnable(job: &Job, template: Template) -> Option<String> {
    if template != Template::StructuredOutput {
        let missing = OpCatalogue::new().missing_for(template);
        return Some(format!(
            "template {} needs executors this binary does not have ({}); only structured_output \
             jobs run here, and no verdict is faked",
            template.name(),
            missing
                .iter()
                .filter(|m| m.starts_with("op:"))
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if job.inputs.get("draft").and_then(Value::as_str).is_none() {
        return Some(
            "a structured_output job needs inputs.draft (the text to check): `nmk job` loads no \
             model to draft one"
                .into(),
        );
    }
    if !job.inputs.get("schema").is_some_and(is_dict) {
        return Some(
            "a structured_output job needs inputs.schema (e.g. {\"required\": [\"name\"]}): \
             without one the schema check would certify nothing"
                .into(),
        );
    }
    None
}

fn submit(home: &Path, out: &Output, path: &Path, trace_out: Option<&Path>) -> Result<Code> {
    let job = match read_job(path)? {
        Ok(job) => job,
        Err(why) => return Ok(refuse(out, None, &why)),
    };
    let memory_path = plan_memory_path(home);
    let memory = PlanMemory::load(&memory_path)?;
    let class = classify(&job, &memory);
    if let Some(why) = unrunnable(&job, class.template) {
        return Ok(refuse(out, Some(&job.id), &why));
    }
    let schema = job.inputs.get("schema").cloned().unwrap_or(Value::Null);
    std::fs::create_dir_all(home).with_context(|| format!("creating {}", home.display()))?;
    let db = database_path(home);
    let ledger = Ledger::open(&db, Durability::Process)
        .with_context(|| format!("opening {}", db.display()))?;
    let store = MemoryStore::open(&db, MemoryConfig::default(), ledger.clone())
        .with_context(|| format!("opening the memory store in {}", db.display()))?;
    // Each task of the job consults the home's memory store first (trace event, ledger input).
    let mut orch =
        Orchestrator::with_memory_file(ledger, structured_output_catalogue(schema), &memory_path)?
            .with_task_memory(std::sync::Arc::new(std::sync::Mutex::new(store)));
    let rollup = orch.submit(&job)?;
    if let Some(file) = trace_out {
        let mut lines = String::new();
        for e in &rollup.trace {
            lines.push_str(&nmk_det::encode(&e.to_value()));
            lines.push('\n');
        }
        std::fs::write(file, lines).with_context(|| format!("writing {}", file.display()))?;
    }
    if out.json {
        out.print_json(&rollup.to_json());
    } else {
        println!(
            "job {} ({} via {}, run {}): {}",
            rollup.job_id,
            rollup.job_type,
            rollup.template,
            rollup.run_id,
            if rollup.committed {
                "committed"
            } else {
                "not committed"
            }
        );
        if let Some(why) = &rollup.refused {
            println!("  refused: {why}");
        }
        for line in &rollup.checklist {
            println!("  {line}");
        }
        println!(
            "  ledger: {} entries, {}",
            rollup.ledger_entries,
            if rollup.ledger_verified {
                "verified"
            } else {
                "NOT verified"
            }
        );
        if rollup.violations.is_empty() {
            println!("  trace self-check: passed");
        } else {
            println!(
                "  trace self-check: {} violation(s)",
                rollup.violations.len()
            );
            for v in &rollup.violations {
                println!("    {v}");
            }
        }
        if let Some(result) = &rollup.result {
            println!("  result: {result}");
        }
    }
    if let Some(e) = &rollup.memory_error {
        eprintln!("warning: plan memory not saved: {e}");
    }
    Ok(if rollup.committed {
        Code::Success
    } else {
        Code::CheckFailed
    })
}

fn dashboard(home: &Path, out: &Output) -> Result<Code> {
    let memory = PlanMemory::load(&plan_memory_path(home))?;
    let d = orchestrator::dashboard(&memory);
    if out.json {
        out.print_json(&d.to_json());
    } else {
        println!("jobs: {}, committed: {}", d.jobs_total, d.committed_total);
        for (t, n) in &d.by_type {
            println!("  {t:<20} {n}");
        }
        for (t, template) in &d.proven_templates {
            println!("  proven: {t} → {template}");
        }
        for (t, lessons) in &d.learnings {
            for l in lessons {
                println!("  lesson ({t}): {l}");
            }
        }
    }
    Ok(Code::Success)
}

/// Runs `nmk job`.
pub fn run(home: &Path, out: &Output, cmd: JobCommand) -> Result<Code> {
    match cmd {
        JobCommand::Submit { job, trace } => submit(home, out, &job, trace.as_deref()),
        JobCommand::Dashboard => dashboard(home, out),
    }
}
