//! `nmk run` and `nmk tokenize`: a request routed by the kernel (a proven primitive with zero
//! model tokens, else the model through the per-token gate and the commit trap), and the
//! tokenizer.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use nmk_kernel::output_gate::GateDecision;
use nmk_kernel::router::{Answered, MODEL_LANE, Outcome, Routed};
use nmk_neural::engine::SamplingParams;
use nmk_neural::text::{PromptMode, TextModel};

use super::Output;
use super::learned::value_json;
use super::model::resolve_with_progress;
use crate::account::Account;
use crate::exit::Code;
use crate::head_lane::{self, HeadLookup, HeadRun};
use crate::model_lane::{LaneRequest, Prefilled};
use crate::proposer::NeuralProposer;
use crate::route_lane::Front;
use nmk_neural::entry_head::TappedPrefill;

/// Which model and how to sample.
#[derive(Debug, Args)]
pub struct ModelArgs {
    /// A registered model name or a path to a .gguf file.
    #[arg(long, short, default_value = crate::config::DEFAULT_MODEL)]
    pub model: String,
    /// Threads for the matrix kernels (results do not depend on it).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
}

/// Options of `nmk run`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  nmk run \"Name the capital city of France.\"\n  nmk run \"what is the gcd of 12 and 18\"\n  nmk run --no-route \"is 97 prime\"\n  nmk run --raw --max-tokens 8 \"The capital of France is\"\n  nmk run --shape-json \"Give a JSON object with keys name and age.\"\n  nmk run --temp 0.7 --seed 3 --json \"Write a haiku about rust.\"\n  NMK_MODEL=qwen2.5-coder-0.5b-instruct nmk run \"Write hello world in C.\""
)]
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
    /// Skip the proven primitives and answer with the model (the kernel still consults memory
    /// and records the decision).
    #[arg(long)]
    no_route: bool,
    /// The entry-trap head file to read the request with (default: the nmk home's head for
    /// the loaded model, when one was trained).
    #[arg(long, value_name = "PATH", conflicts_with = "no_head")]
    head: Option<PathBuf>,
    /// Route without the entry-trap head (lexical router only).
    #[arg(long)]
    no_head: bool,
}

/// Options of `nmk tokenize`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  nmk tokenize \"Hello, world\"\n  nmk tokenize --json --no-special \"<|im_start|>\"\n  nmk tokenize -m qwen2.5-coder-0.5b-instruct \"fn main() {}\""
)]
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

/// Runs `nmk run`: the kernel consults memory and routes the request; a primitive answers with
/// zero model tokens, else the model lane generates through the per-token gate and the commit
/// trap judges the whole answer before it is printed.
pub fn run(home: &Path, out: &Output, args: &RunArgs) -> Result<Code> {
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
    let mut front = Front::open(home)?;
    for (entry, why) in &front.refused {
        tracing::warn!("learned primitive {entry} not routed: {why}");
    }
    let (head, loaded) = read_head(home, out, args)?;
    let (routed, head_report) = match &head {
        Some(h) => {
            let hr = front.route_with_head(&args.prompt, &h.reading)?;
            let report = head_json(h, &hr);
            (hr.routed, report)
        }
        None => (
            front.route(&args.prompt, args.no_route)?,
            serde_json::Value::Null,
        ),
    };
    let mut lane_reason = match &routed.outcome {
        Outcome::ModelLane { reason } => reason.clone(),
        Outcome::Answered(a) => {
            if shape_fits(&a.text, args) {
                return Ok(report_primitive(out, &routed, a, &head_report));
            }
            format!("answer_outside_requested_shape:{}", a.route)
        }
    };
    if args.no_route {
        lane_reason = "forced_model_lane".into();
    }
    let model = match head {
        Some(h) => Some((h.proposer, h.tapped)),
        None => loaded.map(|p| (p, None)),
    };
    model_lane(
        out,
        args,
        &front,
        &routed,
        gate,
        &lane_reason,
        (model, &head_report),
    )
}

/// The head's reading for this request, when a head applies: not with `--no-head`,
/// `--no-route` or `--raw` (the head reads the chat-encoded request), and only when a head
/// file was given or the home holds heads (the model is loaded only then, and handed back for
/// the model lane when no head is for it).
fn read_head(
    home: &Path,
    out: &Output,
    args: &RunArgs,
) -> Result<(Option<HeadRun>, Option<NeuralProposer>)> {
    if args.no_head || args.no_route || args.raw {
        return Ok((None, None));
    }
    let home_has_heads = std::fs::read_dir(home.join("heads"))
        .map(|mut d| d.next().is_some())
        .unwrap_or(false);
    if args.head.is_none() && !home_has_heads {
        return Ok((None, None));
    }
    let path = resolve_with_progress(&args.model.model, out.json)?;
    Ok(
        match head_lane::read(
            home,
            args.head.as_deref(),
            &args.model,
            &path,
            &args.prompt,
            args.max_tokens,
            args.seed,
        )? {
            HeadLookup::Read(h) => (Some(*h), None),
            HeadLookup::NoHead(p) => (None, Some(*p)),
        },
    )
}

fn head_json(h: &HeadRun, hr: &nmk_kernel::router::HeadRouted) -> serde_json::Value {
    let (class, confidence, error) = match &h.reading.proposal {
        Ok(p) => (Some(p.class.clone()), Some(p.confidence), None),
        Err(e) => (None, None, Some(e.clone())),
    };
    serde_json::json!({
        "file": h.file.display().to_string(),
        "hash": h.reading.head_hash,
        "layer": h.layer,
        "class": class,
        "confidence": confidence,
        "error": error,
        "verdict": hr.verdict.map(|v| v.as_str()),
        "disposal": hr.disposal.map(|d| d.as_str()),
    })
}

fn head_note(head: &serde_json::Value) -> String {
    if head.is_null() {
        return String::new();
    }
    match (head["class"].as_str(), head["confidence"].as_f64()) {
        (Some(c), Some(p)) => format!(
            " · head {c} {p:.2} → {}",
            head["disposal"].as_str().unwrap_or("?")
        ),
        _ => format!(
            " · head no proposal ({}) → {}",
            head["error"].as_str().unwrap_or("?"),
            head["disposal"].as_str().unwrap_or("?")
        ),
    }
}

/// Whether a primitive's answer satisfies the shape the caller asked the gate for (a shape
/// binds whatever is released, not only model tokens).
fn shape_fits(text: &str, args: &RunArgs) -> bool {
    if !args.shape_json && args.shape_regex.is_none() {
        return true;
    }
    let Ok(mut gate) =
        crate::token_gate::build_gate(&[], args.shape_json, args.shape_regex.as_deref())
    else {
        return false;
    };
    // No token ids here: the answer is judged as one piece, then its end.
    gate.judge(u32::MAX, text.as_bytes(), false) == GateDecision::Accept
        && gate.judge(u32::MAX, &[], true) == GateDecision::Accept
}

fn memory_json(routed: &Routed) -> serde_json::Value {
    let m = &routed.memory;
    serde_json::json!({
        "consulted": m.consulted,
        "error": m.error,
        "recent": m.recent,
        "entries": m.entries,
        "ledger_entry": m.entry.hash.to_hex(),
    })
}

fn decision_json(routed: &Routed) -> serde_json::Value {
    let d = &routed.decision;
    serde_json::json!({
        "reason": d.reason,
        "k": d.governed.k,
        "top_score": d.governed.top_score,
        "candidates": d.governed.candidates.iter().map(|c| serde_json::json!({
            "route": c.route, "score": c.score,
        })).collect::<Vec<_>>(),
        "attempts": d.attempts.iter().map(|a| match &a.outcome {
            Ok(args) => serde_json::json!({
                "route": a.route,
                "extracted": args.iter().map(value_json).collect::<Vec<_>>(),
            }),
            Err(why) => serde_json::json!({ "route": a.route, "refused": why }),
        }).collect::<Vec<_>>(),
        "ledger_entry": routed.decision_entry.hash.to_hex(),
    })
}

fn memory_note(routed: &Routed) -> String {
    match &routed.memory.error {
        None => format!("memory consulted ({} entries)", routed.memory.entries),
        Some(e) => format!("memory UNAVAILABLE: {e}"),
    }
}

fn report_primitive(out: &Output, routed: &Routed, a: &Answered, head: &serde_json::Value) -> Code {
    let e = &a.ledger_entry;
    if out.json {
        out.print_json(&Account::primitive(routed, a).json_with(serde_json::json!({
            "text": a.text,
            "answer": value_json(&a.value),
            "args": a.args.iter().map(value_json).collect::<Vec<_>>(),
            "memory": memory_json(routed),
            "route_decision": decision_json(routed),
            "head": head,
        })));
    } else {
        println!("{}", a.text);
        eprintln!(
            "[route {} · verification {} ({}) · 0 model tokens · ledger #{} {} · {}{}]",
            a.route,
            a.verification,
            a.level.as_str(),
            e.seq,
            e.hash.short(16),
            memory_note(routed),
            head_note(head)
        );
    }
    Code::Success
}

fn model_lane(
    out: &Output,
    args: &RunArgs,
    front: &Front,
    routed: &Routed,
    gate: nmk_kernel::output_gate::OutputGate,
    lane_reason: &str,
    (model, head_report): (
        Option<(NeuralProposer, Option<TappedPrefill>)>,
        &serde_json::Value,
    ),
) -> Result<Code> {
    // The model loaded for the head (and its prefilled session, if any) is reused.
    let (proposer, tapped) = match model {
        Some(loaded) => loaded,
        None => {
            let path = resolve_with_progress(&args.model.model, out.json)?;
            let p = NeuralProposer::load(&args.model.model, &path, args.model.threads)?;
            (p, None)
        }
    };
    let lane = crate::model_lane::answer(
        &front.ledger,
        &proposer,
        &LaneRequest {
            prompt: &args.prompt,
            mode: if args.raw {
                PromptMode::Raw
            } else {
                PromptMode::Chat
            },
            sampling: SamplingParams {
                temperature: args.temp,
                top_k: args.top_k,
                top_p: args.top_p,
                repeat_penalty: args.repeat_penalty,
                ..SamplingParams::greedy()
            },
            seed: args.seed,
            max_tokens: args.max_tokens,
            forbid_ids: &args.forbid_ids,
            shape_json: args.shape_json,
        },
        gate,
        tapped.map(|t| Prefilled {
            session: t.session,
            prefill_s: t.prefill_s,
        }),
    )?;
    let (c, d) = (&lane.completion, &lane.decision);
    let tokens = c.ids.len();
    let prefill_tps = c.prompt_ids.len() as f64 / c.prefill_s.max(1e-9);
    let decode_tps = c.ids.len() as f64 / c.decode_s.max(1e-9);
    let entry_seq = d.ledger_entry.as_ref().map(|e| e.seq);
    if out.json {
        out.print_json(
            &Account::model_lane(lane_reason, &lane).json_with(serde_json::json!({
                "model": args.model.model,
                "text": &c.text,
                "output": &d.output,
                "prompt_ids": &c.prompt_ids,
                "ids": &c.ids,
                "stop": format!("{:?}", c.stop),
                "prefill_s": c.prefill_s,
                "decode_s": c.decode_s,
                "prefill_tokens_per_s": prefill_tps,
                "decode_tokens_per_s": decode_tps,
                "gate": lane.gate_summary,
                "memory": memory_json(routed),
                "route_decision": decision_json(routed),
                "head": head_report,
            })),
        );
    } else {
        if let Some(text) = &d.output {
            println!("{text}");
        }
        eprintln!(
            "[{} prompt tokens at {prefill_tps:.0} tok/s, {} generated at {decode_tps:.1} tok/s, stop: {:?}; gate: {} accepted, {} refused{}]",
            c.prompt_ids.len(),
            c.ids.len(),
            c.stop,
            lane.gate_accepted,
            c.gate.resampled,
            if lane.gate_complete {
                ""
            } else {
                ", shape incomplete"
            }
        );
        eprintln!(
            "[route {MODEL_LANE} ({lane_reason}) · {} · verification {} ({}) · {tokens} model tokens · ledger #{} {} · {}{}]",
            if d.committed() {
                "committed".to_owned()
            } else {
                format!("WITHHELD: {} {}", d.action, d.reason)
            },
            d.verification,
            d.level.as_str(),
            entry_seq.map_or_else(|| "-".to_owned(), |s| s.to_string()),
            d.ledger_entry
                .as_ref()
                .map_or_else(|| "-".to_owned(), |e| e.hash.short(16)),
            memory_note(routed),
            head_note(head_report)
        );
    }
    Ok(if d.committed() {
        Code::Success
    } else {
        Code::CheckFailed
    })
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
