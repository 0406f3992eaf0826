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
use std::time::Instant;

use nmk_neural::engine::{SamplingParams, Session};
use nmk_neural::text::{Completion, PromptMode, TextError, TextStream};

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
    let mut run = LaneRun::start(proposer, request, gate, prefilled, prompt_ids)?;
    loop {
        if cancelled() {
            return Err(Cancelled.into());
        }
        if run.step(on_text)? {
            break;
        }
    }
    run.finish(ledger, request, on_text)
}

/// The prompt ids of `request` (`prompt_ids` when given), refused when they and `max_tokens` do
/// not fit the model's context.
fn prompt_of(
    proposer: &NeuralProposer,
    request: &LaneRequest<'_>,
    prompt_ids: Option<Vec<u32>>,
) -> Result<Vec<u32>> {
    let m = proposer.model();
    let ids = match prompt_ids {
        Some(ids) => ids,
        None => m.encode(request.prompt, request.mode)?,
    };
    let context = m.model().config().n_ctx_train as u64;
    if (ids.len() + request.max_tokens) as u64 > context {
        return Err(TextError::ContextOverflow {
            prompt: ids.len(),
            max_tokens: request.max_tokens,
            context,
        }
        .into());
    }
    Ok(ids)
}

/// One model-lane answer in progress: the request is prefilled by [`LaneRun::start`], generated
/// a token at a time by [`LaneRun::step`] (so a server can interleave many of them fairly), and
/// judged whole by the commit trap in [`LaneRun::finish`]. Stepping to the end and finishing is
/// exactly [`answer_streaming`], which is built on it.
pub struct LaneRun<'m> {
    proposer: &'m NeuralProposer,
    session: Session,
    gate: KernelTokenGate<'m>,
    stream: TextStream<'m>,
    checks: Vec<Value>,
    prompt_ids: Vec<u32>,
    /// Prompt tokens prefilled so far.
    prefilled: usize,
    /// Prompt tokens prefilled per step while the prompt is not in.
    chunk: usize,
    prefill_s: f64,
    decode_started: Instant,
}

impl std::fmt::Debug for LaneRun<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LaneRun")
            .field("prompt_tokens", &self.prompt_ids.len())
            .field("stream", &self.stream)
            .finish()
    }
}

impl<'m> LaneRun<'m> {
    /// Prefills `request` (or takes over `prefilled` when it holds exactly the request's
    /// tokens); `prompt_ids` replaces the encoding of `request.prompt` as in
    /// [`answer_streaming`]. Fails with [`TextError::ContextOverflow`] when the prompt and
    /// `max_tokens` do not fit the model's context.
    pub fn start(
        proposer: &'m NeuralProposer,
        request: &LaneRequest<'_>,
        gate: OutputGate,
        prefilled: Option<Prefilled>,
        prompt_ids: Option<Vec<u32>>,
    ) -> Result<LaneRun<'m>> {
        let ids = prompt_of(proposer, request, prompt_ids)?;
        match prefilled {
            Some(p) if p.session.tokens() == ids.as_slice() => {
                let mut run = LaneRun::new(proposer, request, gate, ids, usize::MAX, p.session);
                run.prefilled = run.prompt_ids.len();
                run.prefill_s = p.prefill_s;
                Ok(run)
            }
            _ => {
                let session = proposer.model().session(request.seed)?;
                let mut run = LaneRun::new(proposer, request, gate, ids, usize::MAX, session);
                run.prefill_next()?;
                Ok(run)
            }
        }
    }

    /// Like [`LaneRun::start`] without a prefilled session, but nothing runs yet: the prompt is
    /// prefilled `chunk` tokens per [`LaneRun::step`], so that a long prompt joining a server's
    /// lanes delays the others' next tokens by one chunk per round, not by its whole prefill.
    /// (Logits do not depend on how a prefill is split, so neither does the answer.)
    pub fn queued(
        proposer: &'m NeuralProposer,
        request: &LaneRequest<'_>,
        gate: OutputGate,
        prompt_ids: Option<Vec<u32>>,
        chunk: usize,
    ) -> Result<LaneRun<'m>> {
        let ids = prompt_of(proposer, request, prompt_ids)?;
        let session = proposer.model().session(request.seed)?;
        Ok(LaneRun::new(proposer, request, gate, ids, chunk, session))
    }

    fn new(
        proposer: &'m NeuralProposer,
        request: &LaneRequest<'_>,
        gate: OutputGate,
        ids: Vec<u32>,
        chunk: usize,
        session: Session,
    ) -> LaneRun<'m> {
        let m = proposer.model();
        let checks: Vec<Value> = gate.check_names().into_iter().map(Value::str).collect();
        LaneRun {
            proposer,
            session,
            gate: KernelTokenGate::new(gate, m.tokenizer()),
            stream: m.stream(request.max_tokens, &request.sampling),
            checks,
            prompt_ids: ids,
            prefilled: 0,
            chunk: chunk.max(1),
            prefill_s: 0.0,
            decode_started: Instant::now(),
        }
    }

    /// Prefills the next chunk of the prompt (the last one also computes the logits of the
    /// first position to generate).
    fn prefill_next(&mut self) -> Result<()> {
        let t0 = Instant::now();
        let end = self
            .prefilled
            .saturating_add(self.chunk)
            .min(self.prompt_ids.len());
        if let Some(chunk) = self.prompt_ids.get(self.prefilled..end) {
            self.session.prefill(chunk)?;
        }
        self.prefilled = end;
        if end == self.prompt_ids.len() {
            let _ = self.session.logits()?;
            self.decode_started = Instant::now();
        }
        self.prefill_s += t0.elapsed().as_secs_f64();
        Ok(())
    }

    /// Prefills the next chunk of a queued prompt, or once the prompt is in, generates at most
    /// one token through the per-token gate (accepted text to `on_text`); returns whether the
    /// generation has ended. Nothing is released: the text is judged whole by
    /// [`LaneRun::finish`].
    pub fn step(&mut self, on_text: &mut dyn FnMut(&str)) -> Result<bool> {
        if self.prefilled < self.prompt_ids.len() {
            self.prefill_next()?;
            return Ok(false);
        }
        Ok(self
            .stream
            .step(&mut self.session, &mut self.gate, on_text)?)
    }

    /// Runs the next forward pass of every lane in `runs` that is waiting for one in a single
    /// pass over the weights (see `Session::forward_together`: each lane's logits, and so its
    /// answer, are bitwise those it would compute alone); the rest run alone at their next
    /// step. Returns how many were forwarded together.
    pub fn forward_together(runs: &mut [&mut LaneRun<'_>]) -> Result<usize> {
        let mut sessions: Vec<&mut Session> = runs.iter_mut().map(|r| &mut r.session).collect();
        Ok(Session::forward_together(&mut sessions)?)
    }

    /// Tokens generated so far.
    pub fn generated(&self) -> usize {
        self.stream.tokens().len()
    }

    /// Has the commit trap judge the whole answer on `ledger` (call once [`LaneRun::step`]
    /// returned true); binds this request's decode policy, not only the proposer's default.
    pub fn finish(
        self,
        ledger: &Ledger,
        request: &LaneRequest<'_>,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<LaneAnswer> {
        let LaneRun {
            proposer,
            gate: kernel_gate,
            stream,
            checks,
            prompt_ids,
            prefill_s,
            decode_started,
            ..
        } = self;
        let (text, g) = stream.finish(on_text);
        let completion = Completion {
            text,
            prompt_ids,
            ids: g.tokens,
            stop: g.stop,
            gate: g.counts,
            prefill_s,
            decode_s: decode_started.elapsed().as_secs_f64(),
        };
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
        let mut trap = CommitTrap::new(ledger.clone(), Budget::new(BudgetLimits::default()))
            .with_model(binding);
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
}
