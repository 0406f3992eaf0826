//! The model lane of one request: the model generates through the kernel's per-token gate and
//! the commit trap judges the whole answer before anything is released. Shared by `nmk run` and
//! the benchmarks so that what they measure is the path a user gets. Owns only the wiring: the
//! gate's and the trap's decisions are the kernel's.

use anyhow::Result;
use nmk_det::oracles::OutputType;
use nmk_det::{ValidationLevel, Value, hash_value};
use nmk_kernel::budget::{Budget, BudgetLimits};
use nmk_kernel::commit_trap::{CommitTrap, Contract, Decision};
use nmk_kernel::ledger::{Ledger, ModelBinding};
use nmk_kernel::output_gate::OutputGate;
use nmk_kernel::proposer::Proposer;
use nmk_kernel::router::MODEL_LANE;
use nmk_neural::engine::{SamplingParams, Session, TokenGate, TokenVerdict};
use nmk_neural::text::{Completion, PromptMode};

use crate::proposer::NeuralProposer;
use crate::token_gate::KernelTokenGate;

/// How the model is asked.
#[derive(Debug, Clone)]
pub struct LaneRequest<'a> {
    /// The request text (one user turn, or raw text).
    pub prompt: &'a str,
    /// Chat template or raw.
    pub mode: PromptMode,
    /// Sampling parameters.
    pub sampling: SamplingParams,
    /// Seed of the sampler.
    pub seed: u64,
    /// Most tokens to generate.
    pub max_tokens: usize,
    /// Token ids the gate forbids (bound into the decision's policy hash).
    pub forbid_ids: &'a [u32],
    /// Whether the gate keeps the output JSON (the contract then asks for JSON).
    pub shape_json: bool,
}

/// The model's answer and the commit trap's decision on it.
#[derive(Debug)]
pub struct LaneAnswer {
    /// What the model generated (released only if `decision` committed it).
    pub completion: Completion,
    /// The commit trap's decision.
    pub decision: Decision,
    /// The gate's report (checks, counts, completeness).
    pub gate_summary: serde_json::Value,
    /// Candidates the gate accepted.
    pub gate_accepted: usize,
    /// Whether the gate's shapes are complete.
    pub gate_complete: bool,
}

/// A session that already prefilled the request (the entry-trap head reads the residual of the
/// request's own prefill), and how long that took.
pub struct Prefilled {
    /// The session, positioned after the prompt.
    pub session: Session,
    /// Prefill time in seconds.
    pub prefill_s: f64,
}

/// Generates `request` through `gate` and has the commit trap judge the whole answer, on
/// `ledger`. A `prefilled` session that holds exactly the request's tokens is decoded from
/// (no second prefill); otherwise the request is prefilled here. The decision binds this
/// request's decode policy (sampling, seed, budget, gate checks, forbidden ids), not only the
/// proposer's default one.
pub fn answer(
    ledger: &Ledger,
    proposer: &NeuralProposer,
    request: &LaneRequest<'_>,
    gate: OutputGate,
    prefilled: Option<Prefilled>,
) -> Result<LaneAnswer> {
    answer_streaming(
        ledger,
        proposer,
        request,
        gate,
        prefilled,
        None,
        &mut |_| {},
        &|| false,
    )
}

/// Why [`answer_streaming`] stopped before the commit trap: its caller cancelled it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cancelled;

impl std::fmt::Display for Cancelled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("generation cancelled before the commit trap judged it")
    }
}

impl std::error::Error for Cancelled {}

/// A token gate that ends the generation once `cancelled` says so, else defers to `inner`;
/// `tripped` records that it did (an answer that ended on its own is not "cancelled").
struct CancellableGate<'g, G> {
    inner: &'g mut G,
    cancelled: &'g dyn Fn() -> bool,
    tripped: bool,
}

impl<G: TokenGate> TokenGate for CancellableGate<'_, G> {
    fn masks(&self) -> bool {
        self.inner.masks()
    }
    fn mask(&mut self, position: u64, logits: &mut [f32]) {
        self.inner.mask(position, logits);
    }
    fn judge(&mut self, position: u64, candidate: u32, is_stop: bool) -> TokenVerdict {
        if (self.cancelled)() {
            self.tripped = true;
            return TokenVerdict::Stop;
        }
        self.inner.judge(position, candidate, is_stop)
    }
}

/// [`answer`], with two additions the HTTP server needs: `prompt_ids` replaces the encoding
/// of `request.prompt` (a conversation rendered through the chat template; the commit trap's
/// contract still names `request.prompt`), and `on_text` receives each piece of text the
/// per-token gate accepted as it is decoded. Those pieces passed the per-token gate only: the
/// commit trap's whole-answer decision comes after the last one. Once `cancelled` returns true
/// (a deadline passed, the client left) the generation ends at the next token and the call
/// fails with [`Cancelled`]: a cut answer is neither judged nor ledgered as if it were whole.
#[allow(clippy::too_many_arguments)]
pub fn answer_streaming(
    ledger: &Ledger,
    proposer: &NeuralProposer,
    request: &LaneRequest<'_>,
    gate: OutputGate,
    prefilled: Option<Prefilled>,
    prompt_ids: Option<Vec<u32>>,
    on_text: &mut dyn FnMut(&str),
    cancelled: &dyn Fn() -> bool,
) -> Result<LaneAnswer> {
    let m = proposer.model();
    let ids = match prompt_ids {
        Some(ids) => ids,
        None => m.encode(request.prompt, request.mode)?,
    };
    let checks: Vec<Value> = gate.check_names().into_iter().map(Value::str).collect();
    let mut kernel_gate = KernelTokenGate::new(gate, m.tokenizer());
    let mut token_gate = CancellableGate {
        inner: &mut kernel_gate,
        cancelled,
        tripped: false,
    };
    // Nothing is released while decoding: the commit trap judges the whole answer first.
    let completion = match prefilled {
        Some(mut p) if p.session.tokens() == ids.as_slice() => {
            let t1 = std::time::Instant::now();
            let (text, g) = m.continue_session(
                &mut p.session,
                request.max_tokens,
                &request.sampling,
                &mut token_gate,
                on_text,
            )?;
            Completion {
                text,
                prompt_ids: ids.clone(),
                ids: g.tokens,
                stop: g.stop,
                gate: g.counts,
                prefill_s: p.prefill_s,
                decode_s: t1.elapsed().as_secs_f64(),
            }
        }
        _ => m.generate_ids(
            &ids,
            request.max_tokens,
            &request.sampling,
            request.seed,
            &mut token_gate,
            on_text,
        )?,
    };
    if token_gate.tripped {
        return Err(Cancelled.into());
    }
    let gate = kernel_gate.gate();
    let (gate_summary, gate_accepted, gate_complete) =
        (gate.summary(), gate.stats().accepted, gate.complete());
    let base = proposer.binding();
    let s = &request.sampling;
    let flt = |x: f32| Value::float(f64::from(x)).unwrap_or(Value::Null);
    let binding = ModelBinding {
        policy: hash_value(&Value::map([
            ("base", Value::str(base.policy.to_hex())),
            (
                "mode",
                Value::str(match request.mode {
                    PromptMode::Raw => "raw",
                    PromptMode::Chat => "chat",
                }),
            ),
            ("temperature", flt(s.temperature)),
            ("top_k", Value::int(s.top_k)),
            ("top_p", flt(s.top_p)),
            ("repeat_penalty", flt(s.repeat_penalty)),
            ("seed", Value::int(request.seed)),
            ("max_tokens", Value::int(request.max_tokens)),
            ("gate_checks", Value::List(checks)),
            (
                "forbidden_ids",
                Value::List(
                    request
                        .forbid_ids
                        .iter()
                        .map(|&i| Value::int(u64::from(i)))
                        .collect(),
                ),
            ),
        ])),
        ..base
    };
    let mut trap =
        CommitTrap::new(ledger.clone(), Budget::new(BudgetLimits::default())).with_model(binding);
    let contract = Contract {
        otype: Some(if request.shape_json {
            OutputType::Json
        } else {
            OutputType::Text
        }),
        prompt: request.prompt.to_owned(),
        ..Contract::new(MODEL_LANE)
    };
    let t = ledger.len()?;
    let decision = trap.commit(&completion.text, &contract, t, ValidationLevel::Syntax);
    Ok(LaneAnswer {
        completion,
        decision,
        gate_summary,
        gate_accepted,
        gate_complete,
    })
}
