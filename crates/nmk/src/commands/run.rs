//! `nmk run` and `nmk tokenize`: the model, streamed through the kernel's per-token gate, and
//! its tokenizer.

use std::io::Write;

use anyhow::{Context, Result};
use clap::Args;
use nmk_neural::engine::SamplingParams;
use nmk_neural::text::{PromptMode, TextModel};

use super::Output;
use super::model::resolve_with_progress;
use crate::exit::Code;
use crate::token_gate::KernelTokenGate;

/// Which model and how to sample.
#[derive(Debug, Args)]
pub struct ModelArgs {
    /// A registered model name or a path to a .gguf file.
    #[arg(long, short, default_value = "smollm2-135m-instruct")]
    pub model: String,
    /// Threads for the matrix kernels (results do not depend on it).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
}

/// Options of `nmk run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// The prompt (one user turn; see --raw).
    prompt: String,
    /// Feed the prompt as it is, without the chat template.
    #[arg(long)]
    raw: bool,
    /// Most tokens to generate.
    #[arg(long, default_value_t = 256)]
    max_tokens: usize,
    /// Sampling temperature (0 = greedy).
    #[arg(long, default_value_t = 0.0)]
    temp: f32,
    /// Keep only the K most likely tokens (0 = off).
    #[arg(long, default_value_t = 0)]
    top_k: usize,
    /// Nucleus sampling threshold (1 = off).
    #[arg(long, default_value_t = 1.0)]
    top_p: f32,
    /// Repetition penalty (1 = off).
    #[arg(long, default_value_t = 1.0)]
    repeat_penalty: f32,
    /// Seed of the sampler.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Token ids the kernel's gate forbids (masked before every selection); repeatable.
    #[arg(long = "forbid-id", value_name = "ID")]
    forbid_ids: Vec<u32>,
    /// The kernel's gate keeps the output a JSON value: a token that would break it is
    /// refused and another one selected, and the output may not end before the value is whole.
    #[arg(long)]
    shape_json: bool,
    /// The kernel's gate keeps the output a whole match of this regular expression (syntax of
    /// the `regex` crate), token by token.
    #[arg(long, value_name = "REGEX")]
    shape_regex: Option<String>,
}

/// Options of `nmk tokenize`.
#[derive(Debug, Args)]
pub struct TokenizeArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// The text to tokenize.
    text: String,
    /// Do not add BOS/EOS and do not parse special-token text.
    #[arg(long)]
    no_special: bool,
}

/// Loads a model with a progress bar for the fetch.
pub fn load(args: &ModelArgs, quiet: bool) -> Result<TextModel> {
    let path = resolve_with_progress(&args.model, quiet)?;
    let mut m = TextModel::load(&path).with_context(|| format!("loading {}", path.display()))?;
    m.set_threads(args.threads);
    Ok(m)
}

/// Runs `nmk run`.
pub fn run(out: &Output, args: &RunArgs) -> Result<Code> {
    let m = load(&args.model, out.json)?;
    let mode = if args.raw {
        PromptMode::Raw
    } else {
        PromptMode::Chat
    };
    let ids = m.encode(&args.prompt, mode)?;
    let sampling = SamplingParams {
        temperature: args.temp,
        top_k: args.top_k,
        top_p: args.top_p,
        repeat_penalty: args.repeat_penalty,
        ..SamplingParams::greedy()
    };
    let stdout = std::io::stdout();
    let mut on_text = |t: &str| {
        if !out.json {
            let mut lock = stdout.lock();
            let _ = lock.write_all(t.as_bytes());
            let _ = lock.flush();
        }
    };
    let gate = match crate::token_gate::build_gate(
        &args.forbid_ids,
        args.shape_json,
        args.shape_regex.as_deref(),
    ) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(Code::Usage);
        }
    };
    let mut gate = KernelTokenGate::new(gate, m.tokenizer());
    let c = m.generate_ids(
        &ids,
        args.max_tokens,
        &sampling,
        args.seed,
        &mut gate,
        &mut on_text,
    )?;
    let gate = gate.gate();
    let prefill_tps = c.prompt_ids.len() as f64 / c.prefill_s.max(1e-9);
    let decode_tps = c.ids.len() as f64 / c.decode_s.max(1e-9);
    if out.json {
        out.print_json(&serde_json::json!({
            "model": args.model.model,
            "text": c.text,
            "prompt_ids": c.prompt_ids,
            "ids": c.ids,
            "stop": format!("{:?}", c.stop),
            "prefill_s": c.prefill_s,
            "decode_s": c.decode_s,
            "prefill_tokens_per_s": prefill_tps,
            "decode_tokens_per_s": decode_tps,
            "gate": gate.summary(),
        }));
    } else {
        println!();
        eprintln!(
            "[{} prompt tokens at {prefill_tps:.0} tok/s, {} generated at {decode_tps:.1} tok/s, stop: {:?}; gate: {} accepted, {} refused{}]",
            c.prompt_ids.len(),
            c.ids.len(),
            c.stop,
            gate.stats().accepted,
            c.gate.resampled,
            if gate.complete() {
                ""
            } else {
                ", shape incomplete"
            }
        );
    }
    Ok(Code::Success)
}

/// Runs `nmk tokenize`.
pub fn tokenize(out: &Output, args: &TokenizeArgs) -> Result<Code> {
    let m = load(&args.model, out.json)?;
    let special = !args.no_special;
    let ids = m.tokenizer().encode(&args.text, special, special);
    if out.json {
        let pieces: Vec<String> = ids
            .iter()
            .map(|&i| String::from_utf8_lossy(&m.tokenizer().token_to_piece(i)).into_owned())
            .collect();
        out.print_json(&serde_json::json!({ "ids": ids, "pieces": pieces }));
    } else {
        println!("{ids:?}");
    }
    Ok(Code::Success)
}
