//! The kernel thread, which owns the kernel's front door (ledger, memory, router), and the
//! model thread it feeds, which owns the model. Requests arrive on a bounded channel (its
//! capacity is the server's queue: a full channel is the HTTP layer's 429); the kernel thread
//! routes each one first — a proven primitive answers at once with zero model tokens, even
//! while the model is decoding — else hands it to the model thread without waiting (at most a queue's worth of routed
//! requests wait for a lane; more get 429), so a primitive never waits behind model requests. The
//! model thread decodes several requests at once as lanes, one token per lane per round (fair:
//! no request waits more than a round for its next token); each generates through the
//! per-token gate and the commit trap judges the whole answer on the same ledger handle. Every
//! ledger entry of a request is written before its reply is sent. Each round the lanes waiting
//! for a forward pass share one pass over the weights (each lane's logits bitwise its own), so
//! the lanes together decode faster than one request alone. A generation whose deadline passes or whose client leaves is cut at the next token and not
//! judged (its route decision stays ledgered; no commit entry is written for a cut answer). This
//! module owns the order of work; every decision is the kernel's, and it never touches HTTP.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Instant;

use anyhow::{Context, Result, anyhow};
use nmk_kernel::ledger::Ledger;
use nmk_kernel::router::{Answered, Outcome, Routed};
use nmk_neural::engine::{SamplingParams, StopReason};
use nmk_neural::text::{PromptMode, TextError};
use nmk_neural::tokenizer::ChatMessage;
use serde_json::{Value as Json, json};
use tokio::sync::{mpsc, oneshot};

use super::http::ApiError;
use super::openai::{Ask, Validated};
use crate::account::Account;
use crate::model_lane::{Cancelled, LaneRequest, LaneRun};
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

    /// Sends text the per-token gate accepted (a whole reply ignores pieces).
    fn text(&self, piece: &str) {
        if let Sink::Stream(tx) = self {
            let _ = tx.send(StreamEvent::Text(piece.to_owned()));
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

/// How the model thread decodes.
#[derive(Debug, Clone, Copy)]
pub struct Lanes {
    /// Requests decoded at once.
    pub max: usize,
    /// Prompt tokens a joining request prefills per round.
    pub prefill_chunk: usize,
}

/// A request the kernel routed to the model lane, on its way to the model thread.
struct ModelJob {
    id: String,
    ask: Validated,
    deadline: Instant,
    sink: Sink,
    routed: Routed,
    lane_reason: String,
    t0: Instant,
}

/// Starts the kernel thread (and the model thread it feeds) on `home` with the model `model`
/// and a queue of `queue` requests; returns once the kernel and the model are loaded (or with
/// why they could not be). The handle ends after both threads drained their work.
pub fn spawn(
    home: &Path,
    model: &str,
    threads: usize,
    queue: usize,
    lanes: Lanes,
    routes_changed: Arc<AtomicU64>,
) -> Result<(mpsc::Sender<Job>, JoinHandle<()>)> {
    let (jobs_tx, jobs_rx) = mpsc::channel::<Job>(queue.max(1));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
    let home: PathBuf = home.to_path_buf();
    let model = model.to_owned();
    // Routed requests waiting for a free lane; the kernel thread never blocks on them, so a
    // primitive is answered at once however many model requests are waiting.
    let waiting = Arc::new(AtomicUsize::new(0));
    let handle = std::thread::Builder::new()
        .name("nmk-kernel".into())
        .spawn(move || {
            let started = Front::open(&home).and_then(|front| {
                for (entry, why) in &front.refused {
                    tracing::warn!("learned primitive {entry} not routed: {why}");
                }
                let (model_tx, model_thread) = spawn_model_thread(
                    front.ledger.clone(),
                    &model,
                    threads,
                    lanes,
                    waiting.clone(),
                )?;
                Ok((front, model_tx, model_thread))
            });
            let (front, model_tx, model_thread) = match started {
                Ok(s) => {
                    let _ = ready_tx.send(Ok(()));
                    s
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(format!("{e:#}")));
                    return;
                }
            };
            let routes = Routes {
                home,
                changed: routes_changed,
                seen: 0,
            };
            route_jobs(front, routes, jobs_rx, &model_tx, &waiting, queue);
            // The model thread ends once its channel is closed and drained.
            drop(model_tx);
            if model_thread.join().is_err() {
                tracing::error!("the model thread panicked");
            }
        })
        .context("starting the kernel thread")?;
    match ready_rx.recv() {
        Ok(Ok(())) => Ok((jobs_tx, handle)),
        Ok(Err(why)) => Err(anyhow!("{why}")),
        Err(_) => Err(anyhow!("the kernel thread ended before it was ready")),
    }
}

/// The model thread: owns the model, shares the kernel's ledger (one chain, one handle) for
/// the commit trap, and decodes up to `lanes` requests at once. Routed requests wait in its
/// channel; `waiting` counts them (the kernel thread refuses more than the queue allows).
fn spawn_model_thread(
    ledger: Ledger,
    model: &str,
    threads: usize,
    lanes: Lanes,
    waiting: Arc<AtomicUsize>,
) -> Result<(std::sync::mpsc::Sender<ModelJob>, JoinHandle<()>)> {
    let path = crate::commands::model::resolve_with_progress(model, true)?;
    let proposer = NeuralProposer::load(model, &path, threads)?;
    let (tx, rx) = std::sync::mpsc::channel::<ModelJob>();
    let handle = std::thread::Builder::new()
        .name("nmk-model".into())
        .spawn(move || {
            decode_lanes(&ledger, &proposer, &rx, lanes, &waiting);
            tracing::info!("model thread: drained, stopping");
        })
        .context("starting the model thread")?;
    Ok((tx, handle))
}

/// A request the model is decoding.
struct ActiveLane<'m> {
    job: ModelJob,
    run: LaneRun<'m>,
}

/// Fair decoding: between rounds, free lanes take waiting requests in arrival order; a round
/// then advances every lane by one step, in the order they joined — a chunk of its prompt
/// while the prompt is not in, else exactly one gated token — so no request waits more than one round for its next token however long
/// the others are. A lane whose deadline passed or whose client left is cut before its next
/// token (not judged, as in `answer_streaming`); a finished lane is judged whole by the commit
/// trap and its reply sent at once. Ends when the channel is closed and every lane finished.
fn decode_lanes(
    ledger: &Ledger,
    proposer: &NeuralProposer,
    jobs: &std::sync::mpsc::Receiver<ModelJob>,
    lanes: Lanes,
    waiting: &AtomicUsize,
) {
    use std::sync::mpsc::TryRecvError;
    let max = lanes.max.max(1);
    let mut active: std::collections::VecDeque<ActiveLane<'_>> =
        std::collections::VecDeque::with_capacity(max);
    let mut open = true;
    loop {
        while open && active.len() < max {
            let next = if active.is_empty() {
                jobs.recv().ok()
            } else {
                match jobs.try_recv() {
                    Ok(job) => Some(job),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => None,
                }
            };
            let Some(job) = next else {
                open = false;
                break;
            };
            waiting.fetch_sub(1, Ordering::SeqCst);
            if Instant::now() >= job.deadline || job.sink.client_gone() {
                finish_job(job, Err(ApiError::deadline()));
                continue;
            }
            match start_lane(proposer, &job, lanes.prefill_chunk) {
                Ok(run) => active.push_back(ActiveLane { job, run }),
                Err(e) => finish_job(job, Err(e)),
            }
        }
        if active.is_empty() {
            if open {
                continue;
            }
            return;
        }
        // One pass over the weights for every lane waiting for its next forward; a lane left
        // out (or all of them, if the pass fails) forwards alone in its own step.
        let mut runs: Vec<&mut LaneRun<'_>> = active.iter_mut().map(|l| &mut l.run).collect();
        if let Err(e) = LaneRun::forward_together(&mut runs) {
            tracing::warn!("lanes forwarded one by one this round: {e:#}");
        }
        for _ in 0..active.len() {
            let Some(mut lane) = active.pop_front() else {
                break;
            };
            if Instant::now() >= lane.job.deadline || lane.job.sink.client_gone() {
                tracing::warn!(id = %lane.job.id, tokens = lane.run.generated(), "cut: deadline passed or client left");
                finish_job(lane.job, Err(ApiError::deadline()));
                continue;
            }
            let sink = &lane.job.sink;
            match lane.run.step(&mut |piece| sink.text(piece)) {
                Ok(false) => active.push_back(lane),
                Ok(true) => {
                    let ActiveLane { job, run } = lane;
                    let result = finish_lane(ledger, &job, run);
                    finish_job(job, result);
                }
                Err(e) => finish_job(lane.job, Err(lane_error(e))),
            }
        }
    }
}

fn finish_job(job: ModelJob, result: Result<Reply, ApiError>) {
    log_result(&job.id, job.t0, &result);
    job.sink.finish(result);
}

fn log_result(id: &str, t0: Instant, result: &Result<Reply, ApiError>) {
    match result {
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
}

/// When the learned primitives changed (a gap was admitted over HTTP), the router is rebuilt
/// before the next request.
struct Routes {
    home: PathBuf,
    changed: Arc<AtomicU64>,
    seen: u64,
}

impl Routes {
    fn refresh(&mut self, front: &mut Front) {
        let now = self.changed.load(Ordering::SeqCst);
        if now == self.seen {
            return;
        }
        match front.reload_learned(&self.home) {
            Ok(()) => {
                self.seen = now;
                for (entry, why) in &front.refused {
                    tracing::warn!("learned primitive {entry} not routed: {why}");
                }
                tracing::info!("learned primitives reloaded");
            }
            // The old router stays; the next request tries again.
            Err(e) => tracing::error!("reloading learned primitives: {e:#}"),
        }
    }
}

fn route_jobs(
    mut front: Front,
    mut routes: Routes,
    mut jobs: mpsc::Receiver<Job>,
    model: &std::sync::mpsc::Sender<ModelJob>,
    waiting: &AtomicUsize,
    queue: usize,
) {
    // Ends when every sender is gone: the server stopped accepting and the queue is drained.
    while let Some(job) = jobs.blocking_recv() {
        let Job {
            id,
            ask,
            deadline,
            sink,
        } = job;
        let t0 = Instant::now();
        if t0 >= deadline {
            tracing::warn!(%id, "deadline passed while queued; not started");
            sink.finish(Err(ApiError::deadline()));
            continue;
        }
        routes.refresh(&mut front);
        match route(&mut front, &ask, &sink) {
            Err(e) => {
                let result = Err(e);
                log_result(&id, t0, &result);
                sink.finish(result);
            }
            Ok(Routing::Answered(reply)) => {
                let result = Ok(*reply);
                log_result(&id, t0, &result);
                sink.finish(result);
            }
            Ok(Routing::ModelLane(routed, lane_reason)) => {
                // Back-pressure for the model: its ledgered route decision stands; the client
                // is told to retry.
                if waiting.load(Ordering::SeqCst) >= queue {
                    let result = Err(ApiError::queue_full(queue));
                    log_result(&id, t0, &result);
                    sink.finish(result);
                    continue;
                }
                waiting.fetch_add(1, Ordering::SeqCst);
                let job = ModelJob {
                    id,
                    ask,
                    deadline,
                    sink,
                    routed: *routed,
                    lane_reason,
                    t0,
                };
                if let Err(std::sync::mpsc::SendError(job)) = model.send(job) {
                    waiting.fetch_sub(1, Ordering::SeqCst);
                    job.sink
                        .finish(Err(ApiError::internal("the model thread is gone")));
                }
            }
        }
    }
    tracing::info!("kernel thread: queue drained, stopping");
}

enum Routing {
    Answered(Box<Reply>),
    ModelLane(Box<Routed>, String),
}

fn route(front: &mut Front, ask: &Validated, sink: &Sink) -> Result<Routing, ApiError> {
    let (request, context_turns) = split_request(ask);
    // A primitive answers the request alone; with earlier turns or a system message it could
    // not honour them, so the conversation goes to the model (the decision is still ledgered).
    let routed = front
        .route(request, context_turns)
        .map_err(|e| ApiError::internal(format!("routing failed: {e:#}")))?;
    let lane_reason = match &routed.outcome {
        Outcome::Answered(a) => {
            sink.text(&a.text);
            return Ok(Routing::Answered(Box::new(primitive_reply(&routed, a))));
        }
        Outcome::ModelLane { .. } if context_turns => "conversation_context".to_owned(),
        Outcome::ModelLane { reason } => reason.clone(),
    };
    Ok(Routing::ModelLane(Box::new(routed), lane_reason))
}

/// The request text the kernel routes and the commit trap's contract names, and whether the
/// conversation has context besides it.
fn split_request(ask: &Validated) -> (&str, bool) {
    match &ask.ask {
        Ask::Chat(turns) => (
            turns.last().map(|(_, t)| t.as_str()).unwrap_or_default(),
            turns.len() > 1,
        ),
        Ask::Raw(prompt) => (prompt.as_str(), false),
    }
}

fn primitive_reply(routed: &Routed, a: &Answered) -> Reply {
    let account = Account::primitive(routed, a);
    Reply {
        nmk: account.json_with(json!({
            "memory_entry": routed.memory.entry.hash.to_hex(),
            "decision_entry": routed.decision_entry.hash.to_hex(),
        })),
        released: account.released,
        finish: Finish::Stop,
        prompt_tokens: 0,
        completion_tokens: 0,
    }
}

/// How the model is asked for `ask`, and the prompt ids of a conversation (rendered through
/// the chat template; `None` for raw text, which the lane encodes itself).
fn lane_request(ask: &Validated) -> LaneRequest<'_> {
    let (request, _) = split_request(ask);
    LaneRequest {
        prompt: request,
        mode: match &ask.ask {
            Ask::Chat(_) => PromptMode::Chat,
            Ask::Raw(_) => PromptMode::Raw,
        },
        sampling: SamplingParams {
            temperature: ask.temperature,
            top_p: ask.top_p,
            ..SamplingParams::greedy()
        },
        seed: ask.seed,
        max_tokens: ask.max_tokens,
        forbid_ids: &[],
        shape_json: false,
    }
}

/// The lane of `job`, its prompt queued to be prefilled `chunk` tokens per round.
fn start_lane<'m>(
    proposer: &'m NeuralProposer,
    job: &ModelJob,
    chunk: usize,
) -> Result<LaneRun<'m>, ApiError> {
    let gate = crate::token_gate::build_gate(&[], false, None)
        .map_err(|e| ApiError::internal(format!("building the token gate: {e}")))?;
    let prompt_ids = match &job.ask.ask {
        Ask::Chat(turns) => {
            let messages: Vec<ChatMessage> = turns
                .iter()
                .map(|(role, text)| ChatMessage::new(role.as_str(), text.as_str()))
                .collect();
            let ids = proposer
                .model()
                .tokenizer()
                .encode_chat(&messages, true)
                .map_err(|e| ApiError::bad_request(format!("rendering the chat template: {e}")))?;
            Some(ids)
        }
        Ask::Raw(_) => None,
    };
    LaneRun::queued(proposer, &lane_request(&job.ask), gate, prompt_ids, chunk).map_err(lane_error)
}

fn finish_lane(ledger: &Ledger, job: &ModelJob, run: LaneRun<'_>) -> Result<Reply, ApiError> {
    let sink = &job.sink;
    let lane = run
        .finish(ledger, &lane_request(&job.ask), &mut |piece| {
            sink.text(piece)
        })
        .map_err(lane_error)?;
    let (routed, lane_reason) = (&job.routed, job.lane_reason.as_str());
    let c = &lane.completion;
    let account = Account::model_lane(lane_reason, &lane);
    let finish = if !account.committed {
        Finish::Withheld
    } else if c.stop == StopReason::MaxTokens {
        Finish::Length
    } else {
        Finish::Stop
    };
    Ok(Reply {
        nmk: account.json_with(json!({
            "stop": format!("{:?}", c.stop),
            "gate": lane.gate_summary,
            "memory_entry": routed.memory.entry.hash.to_hex(),
            "decision_entry": routed.decision_entry.hash.to_hex(),
        })),
        released: account.released,
        finish,
        prompt_tokens: c.prompt_ids.len(),
        completion_tokens: c.ids.len(),
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
