//! The workload's two passes. The kernel pass sends each request through the binary's front
//! door (memory consulted, router, ledger): a primitive answers with zero model tokens, else
//! the model lane generates through the per-token gate and the commit trap judges the whole
//! answer before anything is released. The bare-model pass sends the same requests straight to
//! the same model (chat template, greedy, same token budget): no router, no commit trap, no
//! ledger.
//!
//! Owns the rows the passes produce and their totals. Judging a row's correctness is the
//! workload's (`workload::states`); every kernel decision is the kernel's. It may not print.

use std::time::Instant;

use anyhow::Result;
use nmk_kernel::output_gate::OutputGate;
use nmk_kernel::router::Outcome;
use nmk_neural::engine::{AcceptAll, SamplingParams};
use nmk_neural::text::PromptMode;

use super::workload::{Expected, Request, states};
use crate::account::Account;
use crate::model_lane::{self, LaneRequest};
use crate::proposer::NeuralProposer;
use crate::route_lane::Front;

/// Most tokens the model generates per request, in both passes.
pub const MAX_TOKENS: usize = 48;
/// Seed of the sampler (greedy decoding does not use it; it is bound into the ledger entry).
const SEED: u64 = 0;
/// The route label of the bare-model pass.
pub const BARE_MODEL: &str = "bare_model";

/// One request as a pass answered it.
#[derive(Debug, Clone)]
pub struct Row {
    /// The request.
    pub request: Request,
    /// Who answered: a primitive's route id, `model_lane`, or `bare_model`.
    pub route: String,
    /// Whether a deterministic primitive answered (zero model tokens by construction).
    pub by_primitive: bool,
    /// Why the router sent it to the model lane (kernel pass only).
    pub lane_reason: Option<String>,
    /// What the kernel's verdict supports; `None` in the bare pass (nothing judged it).
    pub verification: Option<String>,
    /// The validation level the verdict reached (`ORACLE`, `SYNTAX`, …); `None` in the bare
    /// pass.
    pub level: Option<String>,
    /// Tokens the model generated.
    pub model_tokens: usize,
    /// Wall time of the request, routing included, in microseconds.
    pub micros: u128,
    /// The text a caller receives; `None` when the commit trap withheld the answer.
    pub answer: Option<String>,
    /// Why the commit trap withheld it.
    pub withheld: Option<String>,
    /// The sequence number of the entry recording the answer (kernel pass only).
    pub ledger_seq: Option<u64>,
    /// The demo's own expected answer, when the request is checkable.
    pub expected: Option<Expected>,
    /// Whether the answer states it (`None` when not checkable; a withheld answer states
    /// nothing).
    pub correct: Option<bool>,
}

impl Row {
    fn judged(mut self) -> Row {
        self.expected = self.request.check.map(|c| c.expected());
        self.correct = self.expected.as_ref().map(|e| {
            self.answer
                .as_deref()
                .is_some_and(|a| states(self.request.text, a, e))
        });
        self
    }

    fn new(request: Request, route: String, micros: u128) -> Row {
        Row {
            request,
            route,
            by_primitive: false,
            lane_reason: None,
            verification: None,
            level: None,
            model_tokens: 0,
            micros,
            answer: None,
            withheld: None,
            ledger_seq: None,
            expected: None,
            correct: None,
        }
    }
}

fn lane_request(prompt: &str) -> LaneRequest<'_> {
    LaneRequest {
        prompt,
        mode: PromptMode::Chat,
        sampling: SamplingParams::greedy(),
        seed: SEED,
        max_tokens: MAX_TOKENS,
        forbid_ids: &[],
        shape_json: false,
    }
}

/// Each request through the kernel; `on_row` hears each row as it is done.
pub fn kernel_pass(
    front: &mut Front,
    proposer: &NeuralProposer,
    requests: &[Request],
    on_row: &mut dyn FnMut(&Row),
) -> Result<Vec<Row>> {
    let mut rows = Vec::with_capacity(requests.len());
    for &request in requests {
        let t = Instant::now();
        let routed = front.route(request.text, false)?;
        let row = match &routed.outcome {
            Outcome::Answered(a) => {
                let acc = Account::primitive(&routed, a);
                Row {
                    by_primitive: true,
                    verification: Some(acc.verification.to_owned()),
                    level: Some(acc.level.to_owned()),
                    answer: acc.released,
                    ledger_seq: acc.ledger.map(|l| l.0),
                    ..Row::new(request, acc.route, t.elapsed().as_micros())
                }
            }
            Outcome::ModelLane { reason } => {
                let lane = model_lane::answer(
                    &front.ledger,
                    proposer,
                    &lane_request(request.text),
                    OutputGate::new(),
                    None,
                )?;
                let acc = Account::model_lane(reason, &lane);
                Row {
                    lane_reason: Some(reason.clone()),
                    verification: Some(acc.verification.to_owned()),
                    level: Some(acc.level.to_owned()),
                    model_tokens: lane.completion.ids.len(),
                    withheld: (!acc.committed).then(|| format!("{}: {}", acc.action, acc.reason)),
                    answer: acc.released,
                    ledger_seq: acc.ledger.map(|l| l.0),
                    ..Row::new(request, acc.route, t.elapsed().as_micros())
                }
            }
        }
        .judged();
        on_row(&row);
        rows.push(row);
    }
    Ok(rows)
}

/// Each request straight to the model, as `nmk run --no-route` would ask it but with nothing
/// judging or recording the answer: what the model alone would have said.
pub fn bare_pass(
    proposer: &NeuralProposer,
    requests: &[Request],
    on_row: &mut dyn FnMut(&Row),
) -> Result<Vec<Row>> {
    let m = proposer.model();
    let mut rows = Vec::with_capacity(requests.len());
    for &request in requests {
        let t = Instant::now();
        let ids = m.encode(request.text, PromptMode::Chat)?;
        let c = m.generate_ids(
            &ids,
            MAX_TOKENS,
            &SamplingParams::greedy(),
            SEED,
            &mut AcceptAll,
            &mut |_| {},
        )?;
        let row = Row {
            model_tokens: c.ids.len(),
            answer: Some(c.text),
            ..Row::new(request, BARE_MODEL.to_owned(), t.elapsed().as_micros())
        }
        .judged();
        on_row(&row);
        rows.push(row);
    }
    Ok(rows)
}

/// A pass summed up.
#[derive(Debug, Clone, PartialEq)]
pub struct Totals {
    /// Requests answered.
    pub requests: usize,
    /// Requests with a deterministic check.
    pub checkable: usize,
    /// Checkable requests answered correctly.
    pub correct: usize,
    /// Model tokens generated.
    pub model_tokens: usize,
    /// Sum of the latencies, in microseconds.
    pub total_us: u128,
    /// Median latency, in milliseconds.
    pub median_ms: f64,
    /// Requests a primitive answered.
    pub by_primitive: usize,
}

impl Totals {
    /// The totals of `rows`.
    pub fn of(rows: &[Row]) -> Totals {
        let mut micros: Vec<u128> = rows.iter().map(|r| r.micros).collect();
        micros.sort_unstable();
        let ms = |us: u128| us as f64 / 1000.0;
        let median_ms = match micros.len() {
            0 => 0.0,
            n if n % 2 == 1 => ms(micros[n / 2]),
            n => (ms(micros[n / 2 - 1]) + ms(micros[n / 2])) / 2.0,
        };
        Totals {
            requests: rows.len(),
            checkable: rows.iter().filter(|r| r.correct.is_some()).count(),
            correct: rows.iter().filter(|r| r.correct == Some(true)).count(),
            model_tokens: rows.iter().map(|r| r.model_tokens).sum(),
            total_us: micros.iter().sum(),
            median_ms,
            by_primitive: rows.iter().filter(|r| r.by_primitive).count(),
        }
    }
}
