//! `nmk prove`: runs every forward-pass mechanism battery on a model and reports, per battery,
//! the largest |Δ| over the full logits of every step (exactly 0 to pass) and the liveness
//! contrast (above 0). Exit 0 when every applicable battery passed, 1 when one failed.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use nmk_neural::engine::Model;
use nmk_neural::gguf::GgufFile;
use nmk_neural::prove::{ProofReport, ProveOptions, Status, run_batteries};
use nmk_neural::text::{PromptMode, TextModel};

use super::Output;
use super::model::resolve_with_progress;
use crate::exit::Code;

/// Options of `nmk prove`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  nmk prove\n  nmk prove --model qwen2.5-coder-0.5b-instruct --json\n  nmk prove --gguf ./model.gguf --report proof.json --steps 8"
)]
pub struct ProveArgs {
    /// A registered model name (fetched into the cache if needed) or a path to a .gguf file.
    #[arg(long, short, default_value = crate::config::DEFAULT_MODEL)]
    model: String,
    /// A GGUF file to prove on (overrides --model).
    #[arg(long)]
    gguf: Option<PathBuf>,
    /// Write the JSON proof report to this file (the global --json prints it to stdout).
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
    /// Greedy decode steps per run (at least 4).
    #[arg(long, default_value_t = 12)]
    steps: usize,
    /// Also run the research batteries (the Mode-B residual injector).
    #[arg(long)]
    research: bool,
    /// Trap-plane sites: `default` (after the first block, every n/4 blocks, before the head),
    /// or a list of `first`, `last`, `every:K` and block indices, e.g. `first,every:8,last`.
    #[arg(long, default_value = "default")]
    trap_sites: String,
}

/// The prompts: the first is input-grounded (the answer copies the prompt), so prompt-lookup
/// drafts get both accepted and rejected.
const PROMPTS: [&str; 3] = [
    "Repeat this sentence exactly: the quick brown fox jumps over the lazy dog near the river \
     bank, and the quick brown fox runs away.",
    "Name the capital city of France.",
    "Write a haiku about the sea.",
];

/// Prompts as token ids for a model without a tokenizer: an input-grounded one (a phrase
/// repeated, so prompt-lookup drafts exist) and two irregular ones.
fn id_prompts(n_vocab: usize) -> Vec<Vec<u32>> {
    let v = u32::try_from(n_vocab.max(1)).unwrap_or(u32::MAX);
    let phrase = [11u32, 42, 7, 99, 3, 58, 23, 64];
    let grounded = (0..24).map(|i| phrase[i % phrase.len()] % v).collect();
    let irregular = |seed: u32| {
        (0..12u32)
            .map(|i| (seed + i * 37 + i * i * 11) % v)
            .collect()
    };
    vec![grounded, irregular(5), irregular(17)]
}

fn fmt_delta(d: f64) -> String {
    if d.is_finite() {
        format!("{d:.3e}")
    } else {
        "inf".to_owned()
    }
}

fn print_table(report: &ProofReport, model: &str) {
    println!(
        "nmk {} prove on {model} (sha256 {}), {} steps per run",
        report.nmk_version, report.model_sha256, report.steps
    );
    println!(
        "{:<22} {:<15} {:>11} {:>11} {:>8}",
        "battery", "status", "max |Δ|", "liveness Δ", "time s"
    );
    for b in &report.batteries {
        let ran = matches!(b.status, Status::Pass | Status::Fail);
        let (d, l) = if ran {
            (fmt_delta(b.max_abs_delta), fmt_delta(b.liveness_delta))
        } else {
            ("-".to_owned(), "-".to_owned())
        };
        println!(
            "{:<22} {:<15} {:>11} {:>11} {:>8.2}",
            b.name,
            b.status.as_str(),
            d,
            l,
            b.elapsed_s
        );
        if b.status != Status::Pass
            && let Some(r) = &b.reason
        {
            println!("    {r}");
        }
    }
    println!(
        "{} in {:.1} s",
        if report.all_passed {
            "all applicable batteries passed"
        } else {
            "SOME BATTERIES FAILED"
        },
        report.elapsed_s
    );
}

/// Runs `nmk prove`.
pub fn run(out: &Output, args: &ProveArgs) -> Result<Code> {
    let started = Instant::now();
    if args.steps < 4 {
        eprintln!(
            "error: --steps must be at least 4 (the ring battery needs room to wrap), got {}",
            args.steps
        );
        return Ok(Code::Usage);
    }
    let (path, name) = match &args.gguf {
        Some(p) => (p.clone(), p.display().to_string()),
        None => (
            resolve_with_progress(&args.model, out.json)?,
            args.model.clone(),
        ),
    };
    let file =
        Arc::new(GgufFile::open(&path).with_context(|| format!("loading {}", path.display()))?);
    let (model, prompts) = if file.metadata().contains("tokenizer.ggml.model") {
        let m = TextModel::load(&path).with_context(|| format!("loading {}", path.display()))?;
        let prompts = PROMPTS
            .iter()
            .map(|p| m.encode(p, PromptMode::Chat))
            .collect::<Result<Vec<_>, _>>()?;
        (m.model().clone(), prompts)
    } else {
        // A file without a tokenizer (e.g. `nmk model synth`): the same roles as token ids.
        let model = Arc::new(Model::from_file(file)?);
        let prompts = id_prompts(model.config().n_vocab);
        (model, prompts)
    };
    let opts = ProveOptions {
        steps: args.steps,
        research: args.research,
        trap_sites: match nmk_neural::engine::TrapSites::parse(&args.trap_sites) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("error: {e}");
                return Ok(Code::Usage);
            }
        },
        ..ProveOptions::default()
    };
    let report = run_batteries(model, &prompts, &opts)?;
    let value = serde_json::to_value(&report)?;
    if let Some(file) = &args.report {
        let text = serde_json::to_string_pretty(&value)?;
        std::fs::write(file, text + "\n").with_context(|| format!("writing {}", file.display()))?;
    }
    if out.json {
        out.print_json(&value);
    } else {
        print_table(&report, &name);
        tracing::debug!(total_s = started.elapsed().as_secs_f64(), "prove done");
    }
    Ok(if report.all_passed {
        Code::Success
    } else {
        Code::CheckFailed
    })
}
