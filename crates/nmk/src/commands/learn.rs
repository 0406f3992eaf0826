//! `nmk learn GAP_FILE...`: the model writes a program for each gap, the kernel admits or
//! refuses it (every verdict a ledger entry), and admitted programs become learned primitives
//! that later answer with zero model tokens.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use nmk_det::gate::gapfile::GapFileError;
use nmk_kernel::learn::{LearnConfig, LearnEvent, learn};

use super::Output;
use super::learned;
use crate::exit::Code;

/// Options of `nmk learn`.
#[derive(Debug, Args)]
pub struct LearnArgs {
    /// Gap files (TOML), one program learned per gap.
    #[arg(required = true)]
    gaps: Vec<PathBuf>,
    /// The model that proposes programs (registry name or .gguf path).
    #[arg(long, default_value = "qwen2.5-coder-0.5b-instruct")]
    model: String,
    /// Attempts per gap (the first greedy, later ones sampled with feedback).
    #[arg(long, default_value_t = 3)]
    attempts: u32,
    /// Most tokens one attempt may generate.
    #[arg(long, default_value_t = 384)]
    max_tokens: u32,
    /// Sampling temperature of attempts after the first.
    #[arg(long, default_value_t = 0.8)]
    temperature: f32,
    /// Decode threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Held-out instances per seed (default: each gap file's n).
    #[arg(long)]
    n: Option<usize>,
    /// Do not store admitted programs as learned primitives.
    #[arg(long)]
    no_register: bool,
}

struct GapResult {
    json: serde_json::Value,
    admitted: bool,
}

/// Runs `nmk learn`.
pub fn run(home: &std::path::Path, out: &Output, args: &LearnArgs) -> Result<Code> {
    let started = Instant::now();
    let quiet = out.json || !std::io::stderr().is_terminal();
    // Parse every gap file first: a typo in the last one should not cost a model load.
    let mut files = Vec::new();
    for path in &args.gaps {
        match learned::read_gap(path) {
            Ok(f) => files.push((path.clone(), f)),
            Err(e) => {
                eprintln!("error: {e}");
                return Ok(Code::Usage);
            }
        }
    }
    let model_path = super::model::resolve_with_progress(&args.model, quiet)?;
    let mut proposer =
        crate::proposer::NeuralProposer::load(&args.model, &model_path, args.threads)?;
    let sandbox = Arc::new(crate::sandbox::start()?);
    let mut kernel = learned::open(home)?;

    let attempts = args.attempts.max(1);
    let bar = if quiet {
        ProgressBar::hidden()
    } else {
        let b = ProgressBar::with_draw_target(
            Some(files.len() as u64 * u64::from(attempts)),
            ProgressDrawTarget::stderr(),
        );
        b.set_style(
            ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        b.enable_steady_tick(Duration::from_millis(200));
        b
    };
    let mut results = Vec::new();
    for (gi, (path, file)) in files.iter().enumerate() {
        let base = gi as u64 * u64::from(attempts);
        bar.set_position(base);
        bar.set_message(format!(
            "{} ({}/{}): building the gap",
            file.entry,
            gi + 1,
            files.len()
        ));
        let t0 = Instant::now();
        let gap = match file.build(sandbox.clone()) {
            Ok(g) => g,
            Err(e) => {
                let reason = match e {
                    GapFileError::Unsound { .. } => "gap_unsound",
                    _ => "gap_error",
                };
                results.push(GapResult {
                    json: serde_json::json!({
                        "gap": path.display().to_string(),
                        "entry": file.entry,
                        "admitted": false,
                        "reason": reason,
                        "detail": e.to_string(),
                        "attempts": [],
                        "tokens": 0,
                        "elapsed_ms": t0.elapsed().as_millis() as u64,
                    }),
                    admitted: false,
                });
                continue;
            }
        };
        let mut gate = file.gate_config();
        if let Some(n) = args.n {
            gate.n = n;
        }
        let config = LearnConfig {
            max_attempts: attempts,
            max_tokens: args.max_tokens,
            temperature: args.temperature,
            gate,
        };
        let entry = file.entry.clone();
        let (gi1, total) = (gi + 1, files.len());
        let mut on_event = |e: LearnEvent<'_>| match e {
            LearnEvent::Proposing { attempt, of } => {
                bar.set_position(base + u64::from(attempt - 1));
                bar.set_message(format!(
                    "{entry} ({gi1}/{total}): attempt {attempt}/{of}, the model is writing"
                ));
            }
            LearnEvent::Gating { attempt, tokens } => bar.set_message(format!(
                "{entry} ({gi1}/{total}): attempt {attempt}, {tokens} tokens, gating"
            )),
            LearnEvent::Verdict { attempt, admission } => {
                bar.set_position(base + u64::from(attempt));
                bar.println(format!(
                    "  {entry} attempt {attempt}: {}",
                    if admission.admitted {
                        "admitted".to_owned()
                    } else {
                        format!("refused ({})", admission.reason_str())
                    }
                ));
            }
        };
        let registry = if args.no_register {
            None
        } else {
            Some(&mut kernel.registry)
        };
        let outcome = learn(
            &gap,
            &mut proposer,
            &sandbox,
            &kernel.ledger,
            registry,
            &config,
            &mut on_event,
        )?;
        let attempts_json: Vec<serde_json::Value> = outcome
            .attempts
            .iter()
            .map(|a| {
                serde_json::json!({
                    "attempt": a.attempt,
                    "reason": a.reason,
                    "admitted": a.admitted,
                    "tokens": a.tokens,
                    "code_hash": a.code_hash.map(|h| h.to_hex()),
                    "prompt_hash": a.prompt_hash.to_hex(),
                    "ledger_seq": a.ledger.map(|h| h.seq),
                    "feedback": a.feedback,
                    "elapsed_ms": a.elapsed.as_millis() as u64,
                })
            })
            .collect();
        results.push(GapResult {
            json: serde_json::json!({
                "gap": path.display().to_string(),
                "entry": outcome.entry,
                "admitted": outcome.admitted,
                "registered": outcome.registered.is_some(),
                "reason": outcome.reason,
                "attempts": attempts_json,
                "tokens": outcome.tokens,
                "code": outcome.code,
                "elapsed_ms": outcome.elapsed.as_millis() as u64,
            }),
            admitted: outcome.admitted,
        });
    }
    bar.finish_and_clear();
    let admitted = results.iter().filter(|r| r.admitted).count();
    if out.json {
        out.print_json(&serde_json::json!({
            "model": args.model,
            "admitted": admitted,
            "gaps": results.len(),
            "results": results.iter().map(|r| r.json.clone()).collect::<Vec<_>>(),
            "elapsed_ms": started.elapsed().as_millis() as u64,
        }));
    } else {
        println!(
            "{:<20} {:<9} {:>8} {:<18} {:>7} {:>8}",
            "gap", "verdict", "attempts", "reason", "tokens", "time"
        );
        for r in &results {
            let j = &r.json;
            println!(
                "{:<20} {:<9} {:>8} {:<18} {:>7} {:>7.1}s",
                j["entry"].as_str().unwrap_or(""),
                if r.admitted { "admitted" } else { "refused" },
                j["attempts"].as_array().map_or(0, Vec::len),
                j["reason"].as_str().unwrap_or(""),
                j["tokens"].as_u64().unwrap_or(0),
                j["elapsed_ms"].as_u64().unwrap_or(0) as f64 / 1000.0,
            );
        }
        println!(
            "{admitted} of {} gaps admitted in {:.1}s; every verdict is in the ledger ({}).",
            results.len(),
            started.elapsed().as_secs_f64(),
            kernel.db.display()
        );
    }
    Ok(if admitted == results.len() {
        Code::Success
    } else {
        Code::CheckFailed
    })
}
