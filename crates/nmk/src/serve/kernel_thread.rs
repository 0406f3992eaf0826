//! The one thread that owns the kernel's front door (ledger, memory, router) and the model.
//! Requests arrive on a bounded channel (its capacity is the server's queue: a full channel is
//! the HTTP layer's 429); each is routed through the kernel first — a proven primitive answers
//! at once with zero model tokens — else the model lane generates through the per-token gate
//! and the commit trap judges the whole answer. Every ledger entry of a request is written
//! before its reply is sent. One request is decoded at a time (no interleaving yet). A
//! generation whose deadline passes or whose client leaves is cut at the next token and not
//! judged (its route decision stays ledgered; no commit entry is written for a cut answer). This
//! module owns the order of work; every decision is the kernel's, and it never touches HTTP.

use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::Instant;

use anyhow::{Context, Result, anyhow};
use nmk_kernel::router::{Answered, MODEL_LANE, Outcome, Routed};
use nmk_neural::engine::{SamplingParams, StopReason};
use nmk_neural::text::{PromptMode, TextError};
use nmk_neural::tokenizer::ChatMessage;
use serde_json::{Value as Json, json};
use tokio::sync::{mpsc, oneshot};

use super::http::ApiError;
use super::openai::{Ask, Validated};
use crate::model_lane::{Cancelled, LaneRequest, answer_streaming};
use crate::proposer::NeuralProposer;
use crate::route_lane::Front;

/// Why the answer ended (the OpenAI `finish_reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// A stop token, or a primitive's whole answer.
    Stop,
    /// `max_tokens` was reached.
    Length,
    /// The commit trap withheld the answer.
    Withheld,
}

/// What the kernel answered one request with.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The released text (`None` when the commit trap withheld it).
    pub released: Option<String>,
    /// Why it ended.
    pub finish: Finish,
    /// Tokens the model read (0 for a primitive).
    pub prompt_tokens: usize,
    /// Tokens the model generated (0 for a primitive).
    pub completion_tokens: usize,
    /// The kernel's account: route, verification, ledger entry, whether a primitive answered.
    pub nmk: Json,
}

/// What a streaming request receives, in order: text pieces, then exactly one `Done`.
#[derive(Debug)]
pub enum StreamEvent {
    /// Text the per-token gate accepted (or a primitive's whole answer).
    Text(String),
    /// The kernel's whole-answer decision, or why the request failed.
    Done(Result<Reply, ApiError>),
}

/// Where the reply goes.
#[derive(Debug)]
pub enum Sink {
    /// One reply at the end.
    Whole(oneshot::Sender<Result<Reply, ApiError>>),
    /// Text pieces as they are accepted, then the decision.
    Stream(mpsc::UnboundedSender<StreamEvent>),
}

impl Sink {
    /// Whether nobody waits for the reply any more (the client disconnected or gave up).
    fn client_gone(&self) -> bool {
        match self {
            Sink::Whole(tx) => tx.is_closed(),
            Sink::Stream(tx) => tx.is_closed(),
        }
    }

    fn finish(self, result: Result<Reply, ApiError>) {
        // A client that went away is not an error of the kernel: its entries are written.
        match self {
            Sink::Whole(tx) => {
                let _ = tx.send(result);
            }
            Sink::Stream(tx) => {
                let _ = tx.send(StreamEvent::Done(result));
            }
        }
    }
}

/// One request for the kernel thread.
#[derive(Debug)]
pub struct Job {
    /// The request id (logs).
    pub id: String,
    /// The validated request.
    pub ask: Validated,
    /// When the request stops being worth starting.
    pub deadline: Instant,
    /// Where the reply goes.
    pub sink: Sink,
}

/// Starts the kernel thread on `home` with the model `model` and a queue of `queue` requests;
/// returns once the kernel and the model are loaded (or with why they could not be).
pub fn spawn(
    home: &Path,
    model: &str,
    threads: usize,
    queue: usize,
) -> Result<(mpsc::Sender<Job>, JoinHandle<()>)> {
    let (jobs_tx, jobs_rx) = mpsc::channel::<Job>(queue.max(1));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
    let home: PathBuf = home.to_path_buf();
    let model = model.to_owned();
    let handle = std::thread::Builder::new()
        .name("nmk-kernel".into())
        .spawn(move || {
            let state = match load(&home, &model, threads) {
                Ok(s) => {
                    let _ = ready_tx.send(Ok(()));
                    s
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(format!("{e:#}")));
                    return;
                }
            };
            serve_jobs(state, jobs_rx);
        })
        .context("starting the kernel thread")?;
    match ready_rx.recv() {
        Ok(Ok(())) => Ok((jobs_tx, handle)),
        Ok(Err(why)) => Err(anyhow!("{why}")),
        Err(_) => Err(anyhow!("the kernel thread ended before it was ready")),
    }
}

struct KernelState {
    front: Front,
    proposer: NeuralProposer,
}

fn load(home: &Path, model: &str, threads: usize) -> Result<KernelState> {
    let front = Front::open(home)?;
    for (entry, why) in &front.refused {
        tracing::warn!("learned primitive {entry} not routed: {why}");
    }
    let path = crate::commands::model::resolve_with_progress(model, true)?;
    let proposer = NeuralProposer::load(model, &path, threads)?;
    Ok(KernelState { front, proposer })
}

fn serve_jobs(mut state: KernelState, mut jobs: mpsc::Receiver<Job>) {
    // Ends when every sender is gone: the server stopped accepting and the queue is drained.
    while let Some(job) = jobs.blocking_recv() {
        let Job {
            id,
            ask,
            deadline,
            sink,
        } = job;
        if Instant::now() >= deadline {
            tracing::warn!(%id, "deadline passed while queued; not started");
            sink.finish(Err(ApiError::deadline()));
            continue;
        }
        let t0 = Instant::now();
        let result = handle(&mut state, &ask, deadline, &sink);
        match &result {
            Ok(r) => tracing::info!(
                %id,
                route = %r.nmk["route"],
                tokens = r.completion_tokens,
                committed = %r.nmk["committed"],
                seconds = t0.elapsed().as_secs_f64(),
                "answered"
            ),
            Err(e) => tracing::warn!(%id, error = %e.message, "failed"),
        }
        sink.finish(result);
    }
    tracing::info!("kernel thread: queue drained, stopping");
}

fn handle(
    state: &mut KernelState,
    ask: &Validated,
    deadline: Instant,
    sink: &Sink,
) -> Result<Reply, ApiError> {
    let (request, context_turns) = match &ask.ask {
        Ask::Chat(turns) => (
            turns.last().map(|(_, t)| t.as_str()).unwrap_or_default(),
            turns.len() > 1,
        ),
        Ask::Raw(prompt) => (prompt.as_str(), false),
    };
    // A primitive answers the request alone; with earlier turns or a system message it could
    // not honour them, so the conversation goes to the model (the decision is still ledgered).
    let routed = state
        .front
        .route(request, context_turns)
        .map_err(|e| ApiError::internal(format!("routing failed: {e:#}")))?;
    let lane_reason = match &routed.outcome {
        Outcome::Answered(a) => {
            if let Sink::Stream(tx) = sink {
                let _ = tx.send(StreamEvent::Text(a.text.clone()));
            }
            return Ok(primitive_reply(&routed, a));
        }
        Outcome::ModelLane { .. } if context_turns => "conversation_context".to_owned(),
        Outcome::ModelLane { reason } => reason.clone(),
    };
    model_reply(state, ask, request, (&routed, &lane_reason), deadline, sink)
}

fn primitive_reply(routed: &Routed, a: &Answered) -> Reply {
    Reply {
        released: Some(a.text.clone()),
        finish: Finish::Stop,
        prompt_tokens: 0,
        completion_tokens: 0,
        nmk: json!({
            "route": a.route,
            "route_kind": a.kind.as_str(),
            "route_reason": routed.decision.reason,
            "verification": a.verification.as_str(),
            "level": a.level.as_str(),
            "ledger_entry": a.ledger_entry.hash.to_hex(),
            "ledger_seq": a.ledger_entry.seq,
            "primitive": true,
            "committed": true,
            "reason": "answered by a verified primitive",
            "memory_entry": routed.memory.entry.hash.to_hex(),
            "decision_entry": routed.decision_entry.hash.to_hex(),
        }),
    }
}

fn model_reply(
    state: &KernelState,
    ask: &Validated,
    request: &str,
    (routed, lane_reason): (&Routed, &str),
    deadline: Instant,
    sink: &Sink,
) -> Result<Reply, ApiError> {
    let gate = crate::token_gate::build_gate(&[], false, None)
        .map_err(|e| ApiError::internal(format!("building the token gate: {e}")))?;
    let (mode, prompt_ids) = match &ask.ask {
        Ask::Chat(turns) => {
            let messages: Vec<ChatMessage> = turns
                .iter()
                .map(|(role, text)| ChatMessage::new(role.as_str(), text.as_str()))
                .collect();
            let ids = state
                .proposer
                .model()
                .tokenizer()
                .encode_chat(&messages, true)
                .map_err(|e| ApiError::bad_request(format!("rendering the chat template: {e}")))?;
            (PromptMode::Chat, Some(ids))
        }
        Ask::Raw(_) => (PromptMode::Raw, None),
    };
    let mut forward = |piece: &str| {
        if let Sink::Stream(tx) = sink {
            let _ = tx.send(StreamEvent::Text(piece.to_owned()));
        }
    };
    let lane = answer_streaming(
        &state.front.ledger,
        &state.proposer,
        &LaneRequest {
            prompt: request,
            mode,
            sampling: SamplingParams {
                temperature: ask.temperature,
                top_p: ask.top_p,
                ..SamplingParams::greedy()
            },
            seed: ask.seed,
            max_tokens: ask.max_tokens,
            forbid_ids: &[],
            shape_json: false,
        },
        gate,
        None,
        prompt_ids,
        &mut forward,
        &|| Instant::now() >= deadline || sink.client_gone(),
    )
    .map_err(lane_error)?;
    let (c, d) = (&lane.completion, &lane.decision);
    let finish = if !d.committed() {
        Finish::Withheld
    } else if c.stop == StopReason::MaxTokens {
        Finish::Length
    } else {
        Finish::Stop
    };
    Ok(Reply {
        released: if d.committed() {
            d.output.clone()
        } else {
            None
        },
        finish,
        prompt_tokens: c.prompt_ids.len(),
        completion_tokens: c.ids.len(),
        nmk: json!({
            "route": MODEL_LANE,
            "route_kind": MODEL_LANE,
            "route_reason": lane_reason,
            "verification": d.verification.as_str(),
            "level": d.level.as_str(),
            "ledger_entry": d.ledger_entry.as_ref().map(|e| e.hash.to_hex()),
            "ledger_seq": d.ledger_entry.as_ref().map(|e| e.seq),
            "primitive": false,
            "committed": d.committed(),
            "action": d.action.as_str(),
            "reason": d.reason,
            "stop": format!("{:?}", c.stop),
            "gate": lane.gate_summary,
            "memory_entry": routed.memory.entry.hash.to_hex(),
            "decision_entry": routed.decision_entry.hash.to_hex(),
        }),
    })
}

fn lane_error(e: anyhow::Error) -> ApiError {
    if e.downcast_ref::<Cancelled>().is_some() {
        return ApiError::deadline();
    }
    match e.downcast_ref::<TextError>() {
        Some(t @ TextError::ContextOverflow { .. }) => ApiError::bad_request(t.to_string()),
        _ => ApiError::internal(format!("the model lane failed: {e:#}")),
    }
}
