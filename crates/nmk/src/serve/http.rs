//! The HTTP face of `nmk serve`: axum routes, OpenAI-style JSON errors, bearer-token auth,
//! the body-size cap, back-pressure (a full queue is 429 with `Retry-After`, a server shutting
//! down is 503) and per-request deadlines (504). Model requests go to the kernel thread, gap
//! submissions to the learner; the kernel read endpoints open their own read handles on the
//! kernel home, as the CLI does. This module never routes, generates, judges or writes the
//! ledger itself.

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path as UrlPath, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value as Json_, json};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};

use super::kernel_api;
use super::kernel_thread::{Job, Reply, Sink, StreamEvent};
use super::learner::{GapSubmission, Learner};
use super::openai::{self, Caps, StreamKind};

/// An error as OpenAI clients expect it: `{"error": {"message", "type", "code"}}`.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// What went wrong, for a person.
    pub message: String,
    /// The OpenAI error type.
    pub kind: &'static str,
    /// A stable machine code.
    pub code: &'static str,
    /// Seconds a client should wait before retrying (429).
    pub retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, code: &'static str, message: String) -> Self {
        ApiError {
            status,
            message,
            kind,
            code,
            retry_after: None,
        }
    }
    /// 400: the request cannot be served as sent.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "invalid_request",
            message.into(),
        )
    }
    /// 404: the request names a model this server does not serve.
    pub fn model_not_found(asked: &str, served: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            "model_not_found",
            format!("model {asked:?} is not served here; this server serves {served:?}"),
        )
    }
    /// 404: nothing at this path or key.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            "not_found",
            message.into(),
        )
    }
    /// 405: the endpoint exists but not with this method.
    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request_error",
            "method_not_allowed",
            "this endpoint does not take this method".into(),
        )
    }
    /// 401: a bearer token is required and this one is missing or wrong.
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            "invalid_api_key",
            "missing or wrong bearer token (Authorization: Bearer <key>)".into(),
        )
    }
    /// 429: the queue is full.
    pub fn queue_full(capacity: usize) -> Self {
        ApiError {
            retry_after: Some(1),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                "queue_full",
                format!("the request queue is full ({capacity} waiting); retry later"),
            )
        }
    }
    /// 503: the server is shutting down.
    pub fn shutting_down() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            "shutting_down",
            "the server is shutting down and accepts no new requests".into(),
        )
    }
    /// 504: the request's deadline passed.
    pub fn deadline() -> Self {
        Self::new(
            StatusCode::GATEWAY_TIMEOUT,
            "server_error",
            "deadline_exceeded",
            "the request's deadline passed; its generation was stopped and nothing of it was released".into(),
        )
    }
    /// 500: something failed inside the server.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "internal_error",
            message.into(),
        )
    }
    fn from_body(r: &BytesRejection) -> Self {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request_error",
                "request_too_large",
                format!("request body too large: {}", r.body_text()),
            )
        } else {
            Self::bad_request(format!("unreadable request body: {}", r.body_text()))
        }
    }
    /// The JSON body.
    pub fn body(&self) -> Json_ {
        json!({ "error": { "message": self.message, "type": self.kind, "code": self.code } })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.status, Json(self.body())).into_response();
        if let Some(s) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&s.to_string())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        resp
    }
}

/// What every handler shares.
pub struct AppState {
    /// The kernel thread's queue.
    pub jobs: mpsc::Sender<Job>,
    /// Its capacity (for the 429 message).
    pub queue: usize,
    /// The validation caps.
    pub caps: Caps,
    /// The kernel home (read endpoints).
    pub home: PathBuf,
    /// The bearer token, if auth is on (compared as SHA-256 digests).
    pub api_key_digest: Option<[u8; 32]>,
    /// Set when a shutdown signal arrived.
    pub shutting_down: AtomicBool,
    /// Per-request deadline.
    pub deadline: Duration,
    /// Request counter (ids).
    pub next_id: AtomicU64,
    /// The gap endpoint's worker.
    pub learner: Learner,
}

/// Digest of a bearer token (compared digest to digest, so the comparison's time does not
/// depend on how much of the key a guess got right).
pub fn key_digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// The routes, with the body cap and auth applied.
pub fn router(state: Arc<AppState>, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/v1/models", get(models))
        .route("/v1/chat/completions", post(chat))
        .route("/v1/completions", post(completions))
        .route("/v1/nmk/ledger", get(ledger))
        .route("/v1/nmk/ledger/verify", get(ledger_verify))
        .route("/v1/nmk/primitives", get(primitives))
        .route("/v1/nmk/memory", get(memory))
        .route("/v1/nmk/memory/{key}", get(memory_key))
        .route("/v1/nmk/proofs", get(proofs))
        .route("/v1/nmk/proofs/{entry}", get(proof))
        .route("/v1/nmk/gaps", post(submit_gap).get(gaps))
        .route("/v1/nmk/gaps/{id}", get(gap))
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() })
        .layer(middleware::from_fn_with_state(state.clone(), require_key))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(state)
}

async fn require_key(State(s): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    if let Some(want) = &s.api_key_digest {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|t| key_digest(t.trim()));
        if given.as_ref() != Some(want) {
            return ApiError::unauthorized().into_response();
        }
    }
    next.run(req).await
}

async fn models(State(s): State<Arc<AppState>>) -> Response {
    Json(json!({
        "object": "list",
        "data": [{ "id": s.caps.model, "object": "model", "created": 0, "owned_by": "nmk" }],
    }))
    .into_response()
}

async fn chat(State(s): State<Arc<AppState>>, body: Result<Bytes, BytesRejection>) -> Response {
    complete(&s, body, StreamKind::Chat)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn completions(
    State(s): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    complete(&s, body, StreamKind::Text)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

fn submit(s: &AppState, job: Job) -> Result<(), ApiError> {
    s.jobs.try_send(job).map_err(|e| match e {
        mpsc::error::TrySendError::Full(_) => ApiError::queue_full(s.queue),
        mpsc::error::TrySendError::Closed(_) => ApiError::shutting_down(),
    })
}

async fn complete(
    s: &Arc<AppState>,
    body: Result<Bytes, BytesRejection>,
    kind: StreamKind,
) -> Result<Response, ApiError> {
    if s.shutting_down.load(Ordering::SeqCst) {
        return Err(ApiError::shutting_down());
    }
    let body = body.map_err(|r| ApiError::from_body(&r))?;
    let ask = match kind {
        StreamKind::Chat => openai::chat_request(&body, &s.caps)?,
        StreamKind::Text => openai::completion_request(&body, &s.caps)?,
    };
    let n = s.next_id.fetch_add(1, Ordering::Relaxed);
    let id = match kind {
        StreamKind::Chat => format!("chatcmpl-nmk-{n}"),
        StreamKind::Text => format!("cmpl-nmk-{n}"),
    };
    let deadline = Instant::now() + s.deadline;
    let stream = ask.stream;
    if stream {
        let (tx, rx) = mpsc::unbounded_channel();
        submit(
            s,
            Job {
                id: id.clone(),
                ask,
                deadline,
                sink: Sink::Stream(tx),
            },
        )?;
        return Ok(sse(rx, kind, id, s.caps.model.clone(), deadline).into_response());
    }
    let (tx, rx) = oneshot::channel();
    submit(
        s,
        Job {
            id: id.clone(),
            ask,
            deadline,
            sink: Sink::Whole(tx),
        },
    )?;
    let reply: Reply = tokio::time::timeout_at(deadline.into(), rx)
        .await
        .map_err(|_| ApiError::deadline())?
        .map_err(|_| ApiError::internal("the kernel thread dropped the request"))??;
    Ok(Json(match kind {
        StreamKind::Chat => openai::chat_completion(&id, &s.caps.model, &reply),
        StreamKind::Text => openai::text_completion(&id, &s.caps.model, &reply),
    })
    .into_response())
}

enum Phase {
    Open { first: bool },
    Done,
    Closed,
}

/// The event stream of one request: a chunk per accepted piece of text, a final chunk with
/// the kernel's decision (or an error object), then `[DONE]`.
fn sse(
    rx: mpsc::UnboundedReceiver<StreamEvent>,
    kind: StreamKind,
    id: String,
    model: String,
    deadline: Instant,
) -> Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>> {
    let data = |v: Json_| Event::default().data(v.to_string());
    let stream =
        futures_util::stream::unfold((rx, Phase::Open { first: true }), move |(mut rx, phase)| {
            let (id, model) = (id.clone(), model.clone());
            async move {
                match phase {
                    Phase::Closed => None,
                    Phase::Done => Some((Ok(Event::default().data("[DONE]")), (rx, Phase::Closed))),
                    Phase::Open { first } => {
                        let next = tokio::time::timeout_at(deadline.into(), rx.recv()).await;
                        let (event, phase) = match next {
                            Ok(Some(StreamEvent::Text(t))) => (
                                data(openai::delta_chunk(kind, &id, &model, &t, first)),
                                Phase::Open { first: false },
                            ),
                            Ok(Some(StreamEvent::Done(Ok(r)))) => (
                                data(openai::final_chunk(kind, &id, &model, &r)),
                                Phase::Done,
                            ),
                            Ok(Some(StreamEvent::Done(Err(e)))) => (data(e.body()), Phase::Done),
                            Ok(None) => (
                                data(
                                    ApiError::internal("the kernel thread dropped the request")
                                        .body(),
                                ),
                                Phase::Done,
                            ),
                            Err(_) => (data(ApiError::deadline().body()), Phase::Done),
                        };
                        Some((Ok(event), (rx, phase)))
                    }
                }
            }
        });
    Sse::new(stream)
}

#[derive(Debug, Deserialize)]
struct LimitQuery {
    limit: Option<usize>,
}

async fn blocking(
    f: impl FnOnce() -> Result<Json_, ApiError> + Send + 'static,
) -> Result<Json<Json_>, ApiError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map(Json),
        Err(e) => Err(ApiError::internal(format!("a kernel read failed: {e}"))),
    }
}

async fn ledger(
    State(s): State<Arc<AppState>>,
    q: Result<Query<LimitQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Json_>, ApiError> {
    let q = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let limit = q.limit.unwrap_or(20);
    if limit > kernel_api::MAX_LEDGER_LIMIT {
        return Err(ApiError::bad_request(format!(
            "limit = {limit}: at most {}",
            kernel_api::MAX_LEDGER_LIMIT
        )));
    }
    let home = s.home.clone();
    blocking(move || kernel_api::ledger_tail(&home, limit)).await
}

async fn ledger_verify(State(s): State<Arc<AppState>>) -> Result<Json<Json_>, ApiError> {
    let home = s.home.clone();
    blocking(move || kernel_api::ledger_verify(&home)).await
}

async fn primitives(State(s): State<Arc<AppState>>) -> Result<Json<Json_>, ApiError> {
    let home = s.home.clone();
    blocking(move || kernel_api::primitives(&home)).await
}

async fn memory(
    State(s): State<Arc<AppState>>,
    q: Result<Query<LimitQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Json_>, ApiError> {
    let q = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let limit = q.limit.unwrap_or(20).min(kernel_api::MAX_LEDGER_LIMIT);
    let home = s.home.clone();
    blocking(move || kernel_api::memory_consult(&home, limit)).await
}

async fn memory_key(
    State(s): State<Arc<AppState>>,
    UrlPath(key): UrlPath<String>,
) -> Result<Json<Json_>, ApiError> {
    let home = s.home.clone();
    blocking(move || kernel_api::memory_get(&home, &key)).await
}

async fn proofs(State(s): State<Arc<AppState>>) -> Result<Json<Json_>, ApiError> {
    let home = s.home.clone();
    blocking(move || kernel_api::proofs(&home, None)).await
}

async fn proof(
    State(s): State<Arc<AppState>>,
    UrlPath(entry): UrlPath<String>,
) -> Result<Json<Json_>, ApiError> {
    let home = s.home.clone();
    blocking(move || kernel_api::proofs(&home, Some(&entry))).await
}

/// Queues a gap for the learner: 202 with its status at once, or (`"wait": true`) 200 with the
/// verdict once it is in, 202 with the status so far if the request deadline passes first.
async fn submit_gap(
    State(s): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    if s.shutting_down.load(Ordering::SeqCst) {
        return Err(ApiError::shutting_down());
    }
    let body = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let sub: GapSubmission = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("not a gap submission: {e}")))?;
    let (status, wait) = s.learner.submit(sub)?;
    let Some(wait) = wait else {
        return Ok((StatusCode::ACCEPTED, Json(status)).into_response());
    };
    match tokio::time::timeout(s.deadline, wait).await {
        Ok(Ok(done)) => Ok(Json(done).into_response()),
        _ => {
            let id = status["id"].as_str().unwrap_or_default().to_owned();
            let now = s.learner.status(&id).unwrap_or(status);
            Ok((StatusCode::ACCEPTED, Json(now)).into_response())
        }
    }
}

async fn gaps(State(s): State<Arc<AppState>>) -> Json<Json_> {
    Json(s.learner.list())
}

async fn gap(
    State(s): State<Arc<AppState>>,
    UrlPath(id): UrlPath<String>,
) -> Result<Json<Json_>, ApiError> {
    s.learner.status(&id).map(Json).ok_or_else(|| {
        ApiError::not_found(format!(
            "no gap submission {id:?} (the board keeps the last {})",
            super::learner::BOARD_SIZE
        ))
    })
}
