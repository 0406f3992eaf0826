//! `nmk serve`: an OpenAI-compatible HTTP server in front of the kernel. Chat and text
//! completions (whole or streamed as server-sent events), the model list, kernel read
//! endpoints (ledger, its verification, primitives and their admission proofs, memory), and gap
//! submission (the learner gates a program, or has a model write one). Every request is routed by the
//! kernel first (a proven primitive answers with zero model tokens), else the model answers
//! through the per-token gate and the commit trap; the kernel's account rides in an extra
//! `nmk` object that OpenAI clients ignore.
//!
//! Streaming: the pieces streamed passed the per-token gate; the commit trap's whole-answer
//! verdict arrives last, in the final chunk's `nmk` object (`committed`, `reason`). A client
//! that needs only committed text should use the non-streaming form, whose content is the
//! released text only.
//!
//! Conversations: system and earlier turns are rendered through the model's chat template;
//! a primitive answers only a request that is a single user message (it could not honour the
//! others), so any conversation with context goes to the model lane (`route_reason`
//! `conversation_context`).
//!
//! This module owns the arguments, the runtime and the shutdown order: stop accepting, let
//! in-flight requests finish (their ledger entries are written before their responses), drain
//! the kernel and model threads, let a gap being judged finish (its verdict is ledgered), exit 0.

mod http;
mod kernel_api;
mod kernel_thread;
mod learner;
mod openai;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::commands::run::ModelArgs;
use crate::exit::Code;

/// Options of `nmk serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on (0 = any free port; the chosen one is printed).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Requests that may wait to be routed, and (separately) routed requests that may wait for
    /// a free lane; more get 429. Primitives never wait for the model.
    #[arg(long, default_value_t = 16)]
    max_queue: usize,
    /// Requests the model decodes at once, interleaved fairly (one token per lane per round);
    /// more wait in the queue.
    #[arg(long, default_value_t = 8)]
    max_lanes: usize,
    /// Prompt tokens a joining request prefills per round, so that a long prompt delays the
    /// other lanes' next tokens by one chunk, not by its whole prefill.
    #[arg(long, default_value_t = 32)]
    prefill_chunk: usize,
    /// Most tokens one request may generate (a request asking for more gets 400).
    #[arg(long, default_value_t = 512)]
    max_tokens: usize,
    /// Require `Authorization: Bearer KEY` on every endpoint.
    #[arg(long, env = "NMK_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Seconds a request may take (504 after; its generation is cut at the next token, and a
    /// cut answer is neither released nor judged as if whole).
    #[arg(long, default_value_t = 120)]
    deadline_s: u64,
    /// The model that writes a program for a gap submitted without one (`POST /v1/nmk/gaps`);
    /// loaded on the first such gap.
    #[arg(long, default_value = "qwen2.5-coder-0.5b-instruct")]
    learn_model: String,
    /// Gap submissions that may wait for the learner; more get 429.
    #[arg(long, default_value_t = 4)]
    max_gaps: usize,
    /// Largest request body in bytes (413 above).
    #[arg(long, default_value_t = 1 << 20)]
    max_body_bytes: usize,
}

/// Runs `nmk serve` until SIGTERM or SIGINT.
pub fn run(home: &Path, args: &ServeArgs) -> Result<Code> {
    if [
        args.max_queue,
        args.max_lanes,
        args.max_tokens,
        args.max_gaps,
    ]
    .contains(&0)
        || args.deadline_s == 0
    {
        bail!(
            "--max-queue, --max-lanes, --prefill-chunk, --max-tokens, --max-gaps and --deadline-s must be at least 1"
        );
    }
    let routes_changed = Arc::new(AtomicU64::new(0));
    let (jobs, kernel) = kernel_thread::spawn(
        home,
        &args.model.model,
        args.model.threads,
        args.max_queue,
        kernel_thread::Lanes {
            max: args.max_lanes,
            prefill_chunk: args.prefill_chunk,
        },
        routes_changed.clone(),
    )?;
    let (learner, learner_thread) = learner::spawn(
        learner::LearnerConfig {
            home: home.to_path_buf(),
            model: args.learn_model.clone(),
            threads: args.model.threads,
            queue: args.max_gaps,
        },
        routes_changed,
    )?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let state = Arc::new(http::AppState {
        jobs,
        queue: args.max_queue,
        caps: openai::Caps {
            model: args.model.model.clone(),
            max_tokens: args.max_tokens,
        },
        home: home.to_path_buf(),
        api_key_digest: args.api_key.as_deref().map(http::key_digest),
        shutting_down: AtomicBool::new(false),
        deadline: Duration::from_secs(args.deadline_s),
        next_id: AtomicU64::new(0),
        learner,
    });
    let served: Result<()> = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind((args.host.as_str(), args.port))
            .await
            .with_context(|| format!("binding {}:{}", args.host, args.port))?;
        let addr = listener.local_addr()?;
        println!("listening on http://{addr}");
        use std::io::Write as _;
        std::io::stdout().flush()?;
        tracing::info!(%addr, model = %args.model.model, "serving");
        let app = http::router(state.clone(), args.max_body_bytes);
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown_signal(state.clone()))
            .await
            .context("serving")?;
        Ok(())
    });
    // The last sender goes with the state: the kernel thread drains its queue and stops.
    drop(state);
    runtime.shutdown_timeout(Duration::from_secs(5));
    if kernel.join().is_err() {
        bail!("the kernel thread panicked");
    }
    // A gap being judged finishes (its verdict is ledgered) before the process ends.
    if learner_thread.join().is_err() {
        bail!("the learner thread panicked");
    }
    served?;
    tracing::info!("stopped");
    Ok(Code::Success)
}

async fn shutdown_signal(state: Arc<http::AppState>) {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    state.shutting_down.store(true, Ordering::SeqCst);
    tracing::info!("shutdown signal: finishing in-flight requests");
}
