//! The OpenAI wire format of `nmk serve`: request bodies parsed and validated against the
//! server's caps (everything a client sends is hostile input), and the response objects built
//! from the kernel thread's reply. Owns only the shapes; it never routes, generates or writes
//! the ledger.

use serde::Deserialize;
use serde_json::{Value as Json, json};

use super::http::ApiError;
use super::kernel_thread::{Finish, Reply};

/// Most messages one chat request may carry.
pub const MAX_MESSAGES: usize = 256;

/// One message of a chat request.
#[derive(Debug, Clone, Deserialize)]
pub struct Message {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text (a string; content-part arrays are refused).
    pub content: Json,
}

#[derive(Debug, Deserialize)]
struct ChatBody {
    model: Option<String>,
    messages: Option<Vec<Message>>,
    max_tokens: Option<i64>,
    max_completion_tokens: Option<i64>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    seed: Option<u64>,
    n: Option<i64>,
    stream: Option<bool>,
}

#[derive(Debug, Deserialize)]
struct CompletionBody {
    model: Option<String>,
    prompt: Option<Json>,
    max_tokens: Option<i64>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    seed: Option<u64>,
    n: Option<i64>,
    stream: Option<bool>,
}

/// What a request asks the kernel, once validated.
#[derive(Debug, Clone)]
pub enum Ask {
    /// A conversation (chat template); the last message is the user's request.
    Chat(Vec<(String, String)>),
    /// Raw text continued by the model.
    Raw(String),
}

/// A validated request.
#[derive(Debug, Clone)]
pub struct Validated {
    /// What is asked.
    pub ask: Ask,
    /// Most tokens to generate (within the server's cap).
    pub max_tokens: usize,
    /// Sampling temperature (0 = greedy, the default: the kernel's answers are reproducible).
    pub temperature: f32,
    /// Nucleus threshold.
    pub top_p: f32,
    /// Sampler seed.
    pub seed: u64,
    /// Server-sent events instead of one object.
    pub stream: bool,
}

/// The server's caps that validation enforces.
#[derive(Debug, Clone)]
pub struct Caps {
    /// The loaded model's name (a request naming another one is refused).
    pub model: String,
    /// Most tokens one request may ask for.
    pub max_tokens: usize,
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::bad_request(message)
}

fn parse<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| bad(format!("malformed JSON body: {e}")))
}

fn check_model(model: Option<&str>, caps: &Caps) -> Result<(), ApiError> {
    match model {
        Some(m) if m != caps.model => Err(ApiError::model_not_found(m, &caps.model)),
        _ => Ok(()),
    }
}

fn check_common(
    max_tokens: Option<i64>,
    n: Option<i64>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    caps: &Caps,
) -> Result<(usize, f32, f32), ApiError> {
    if let Some(n) = n
        && n != 1
    {
        return Err(bad(format!(
            "n = {n}: this server returns exactly one choice"
        )));
    }
    let max_tokens = match max_tokens {
        None => caps.max_tokens,
        Some(m) if m < 1 => return Err(bad(format!("max_tokens = {m}: must be at least 1"))),
        Some(m) => match usize::try_from(m) {
            Ok(m) if m <= caps.max_tokens => m,
            _ => {
                return Err(bad(format!(
                    "max_tokens = {m} is above this server's cap of {}",
                    caps.max_tokens
                )));
            }
        },
    };
    let temperature = temperature.unwrap_or(0.0);
    if !(0.0..=2.0).contains(&temperature) {
        return Err(bad(format!(
            "temperature = {temperature}: must be between 0 and 2"
        )));
    }
    let top_p = top_p.unwrap_or(1.0);
    if !(top_p > 0.0 && top_p <= 1.0) {
        return Err(bad(format!("top_p = {top_p}: must be in (0, 1]")));
    }
    Ok((max_tokens, temperature as f32, top_p as f32))
}

/// Parses and validates a `POST /v1/chat/completions` body.
pub fn chat_request(body: &[u8], caps: &Caps) -> Result<Validated, ApiError> {
    let b: ChatBody = parse(body)?;
    check_model(b.model.as_deref(), caps)?;
    let messages = b.messages.ok_or_else(|| bad("missing field `messages`"))?;
    if messages.is_empty() {
        return Err(bad("`messages` is empty"));
    }
    if messages.len() > MAX_MESSAGES {
        return Err(bad(format!(
            "{} messages: at most {MAX_MESSAGES} per request",
            messages.len()
        )));
    }
    let mut turns = Vec::with_capacity(messages.len());
    for (i, m) in messages.into_iter().enumerate() {
        if !matches!(m.role.as_str(), "system" | "user" | "assistant") {
            return Err(bad(format!(
                "messages[{i}].role = {:?}: only system, user and assistant are served",
                m.role
            )));
        }
        let Json::String(text) = m.content else {
            return Err(bad(format!(
                "messages[{i}].content must be a string (content parts are not served)"
            )));
        };
        turns.push((m.role, text));
    }
    if turns.last().is_none_or(|(role, _)| role != "user") {
        return Err(bad("the last message must be the user's request"));
    }
    let max = b.max_completion_tokens.or(b.max_tokens);
    let (max_tokens, temperature, top_p) = check_common(max, b.n, b.temperature, b.top_p, caps)?;
    Ok(Validated {
        ask: Ask::Chat(turns),
        max_tokens,
        temperature,
        top_p,
        seed: b.seed.unwrap_or(0),
        stream: b.stream.unwrap_or(false),
    })
}

/// Parses and validates a `POST /v1/completions` body (one prompt string, raw mode).
pub fn completion_request(body: &[u8], caps: &Caps) -> Result<Validated, ApiError> {
    let b: CompletionBody = parse(body)?;
    check_model(b.model.as_deref(), caps)?;
    let prompt = match b.prompt {
        Some(Json::String(s)) => s,
        Some(Json::Array(a)) if a.len() == 1 && a[0].is_string() => {
            a[0].as_str().unwrap_or_default().to_owned()
        }
        Some(_) => return Err(bad("`prompt` must be one string")),
        None => return Err(bad("missing field `prompt`")),
    };
    let (max_tokens, temperature, top_p) =
        check_common(b.max_tokens, b.n, b.temperature, b.top_p, caps)?;
    Ok(Validated {
        ask: Ask::Raw(prompt),
        max_tokens,
        temperature,
        top_p,
        seed: b.seed.unwrap_or(0),
        stream: b.stream.unwrap_or(false),
    })
}

/// Seconds since the epoch (the `created` field).
pub fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn finish_str(f: Finish) -> &'static str {
    match f {
        Finish::Stop => "stop",
        Finish::Length => "length",
        Finish::Withheld => "content_filter",
    }
}

fn usage(r: &Reply) -> Json {
    json!({
        "prompt_tokens": r.prompt_tokens,
        "completion_tokens": r.completion_tokens,
        "total_tokens": r.prompt_tokens + r.completion_tokens,
    })
}

/// The `chat.completion` object of a reply: the content is the released text only.
pub fn chat_completion(id: &str, model: &str, r: &Reply) -> Json {
    json!({
        "id": id,
        "object": "chat.completion",
        "created": now_s(),
        "model": model,
        "choices": [{
            "index": 0,
            "message": { "role": "assistant", "content": r.released },
            "logprobs": null,
            "finish_reason": finish_str(r.finish),
        }],
        "usage": usage(r),
        "nmk": r.nmk,
    })
}

/// The `text_completion` object of a reply.
pub fn text_completion(id: &str, model: &str, r: &Reply) -> Json {
    json!({
        "id": id,
        "object": "text_completion",
        "created": now_s(),
        "model": model,
        "choices": [{
            "index": 0,
            "text": r.released.clone().unwrap_or_default(),
            "logprobs": null,
            "finish_reason": finish_str(r.finish),
        }],
        "usage": usage(r),
        "nmk": r.nmk,
    })
}

/// Which object family a stream's chunks belong to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    /// `chat.completion.chunk`.
    Chat,
    /// `text_completion` chunks.
    Text,
}

/// A chunk carrying a piece of text the per-token gate accepted.
pub fn delta_chunk(kind: StreamKind, id: &str, model: &str, text: &str, first: bool) -> Json {
    match kind {
        StreamKind::Chat => {
            let delta = if first {
                json!({ "role": "assistant", "content": text })
            } else {
                json!({ "content": text })
            };
            json!({
                "id": id, "object": "chat.completion.chunk", "created": now_s(), "model": model,
                "choices": [{ "index": 0, "delta": delta, "logprobs": null, "finish_reason": null }],
            })
        }
        StreamKind::Text => json!({
            "id": id, "object": "text_completion", "created": now_s(), "model": model,
            "choices": [{ "index": 0, "text": text, "logprobs": null, "finish_reason": null }],
        }),
    }
}

/// The last chunk: the finish reason, the usage and the kernel's whole-answer decision.
pub fn final_chunk(kind: StreamKind, id: &str, model: &str, r: &Reply) -> Json {
    let choice = match kind {
        StreamKind::Chat => {
            json!({ "index": 0, "delta": {}, "logprobs": null, "finish_reason": finish_str(r.finish) })
        }
        StreamKind::Text => {
            json!({ "index": 0, "text": "", "logprobs": null, "finish_reason": finish_str(r.finish) })
        }
    };
    json!({
        "id": id,
        "object": if kind == StreamKind::Chat { "chat.completion.chunk" } else { "text_completion" },
        "created": now_s(),
        "model": model,
        "choices": [choice],
        "usage": usage(r),
        "nmk": r.nmk,
    })
}
