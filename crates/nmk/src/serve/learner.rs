//! The gap endpoint's worker. A submitted gap (a gap file's TOML, optionally with a program
//! the client wrote) is parsed at once — a malformed one is the client's 400 — and queued for
//! this thread, which owns a sandbox pool and, once a gap without a program arrives, the
//! learning model. With a program, the whole admission pipeline judges it (as `nmk gate
//! --register`); without one, the model writes it (as `nmk learn`). Every verdict is a ledger
//! entry; an admitted program is stored as a learned primitive and the kernel thread is told
//! (a generation counter) to rebuild its router before the next request, so the new primitive
//! answers from then on with zero model tokens. Nothing here decides admission: the kernel's
//! gate does. The board keeps the last [`BOARD_SIZE`] submissions for polling.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use anyhow::{Context, Result};
use nmk_det::gate::gapfile::{GapFile, GapFileError, MAX_CODE_BYTES};
use nmk_det::sandbox::Sandbox;
use nmk_kernel::learn::{LearnConfig, learn};
use serde::Deserialize;
use serde_json::{Value as Json, json};
use tokio::sync::oneshot;

use super::http::ApiError;
use crate::commands::learned::{self, Kernel, admission_json, gate_user_program, outcome_json};
use crate::proposer::NeuralProposer;

/// Submissions the board remembers (older ones are forgotten; their verdicts stay in the
/// ledger).
pub const BOARD_SIZE: usize = 256;
/// The largest held-out `n` a client may ask for.
pub const MAX_N: usize = 100_000;

/// A gap as a client submits it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GapSubmission {
    /// The gap file's TOML.
    pub gap: String,
    /// A program for it (Python defining the gap's entry); absent: the model writes one.
    pub program: Option<String>,
    /// Held-out instances per seed (default: the gap file's n).
    pub n: Option<usize>,
    /// Answer when the verdict is in (bounded by the request deadline) instead of at once.
    #[serde(default)]
    pub wait: bool,
}

struct GapJob {
    id: String,
    file: GapFile,
    program: Option<String>,
    n: Option<usize>,
    done: Option<oneshot::Sender<Json>>,
}

#[derive(Default)]
struct Board {
    order: VecDeque<String>,
    status: HashMap<String, Json>,
}

impl Board {
    fn put(&mut self, id: &str, status: Json) {
        if self.status.insert(id.to_owned(), status).is_none() {
            self.order.push_back(id.to_owned());
            while self.order.len() > BOARD_SIZE {
                if let Some(old) = self.order.pop_front() {
                    self.status.remove(&old);
                }
            }
        }
    }
}

/// The handle the HTTP layer holds.
pub struct Learner {
    tx: std::sync::mpsc::SyncSender<GapJob>,
    board: Arc<Mutex<Board>>,
    next_id: AtomicU64,
    queue: usize,
}

impl std::fmt::Debug for Learner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Learner")
            .field("queue", &self.queue)
            .finish()
    }
}

/// How the worker learns.
#[derive(Debug, Clone)]
pub struct LearnerConfig {
    /// The kernel home.
    pub home: PathBuf,
    /// The model that writes programs for gaps submitted without one.
    pub model: String,
    /// Its threads.
    pub threads: usize,
    /// Gaps that may wait; more get 429.
    pub queue: usize,
}

/// Starts the worker; `routes_changed` is bumped whenever a primitive was registered.
pub fn spawn(
    config: LearnerConfig,
    routes_changed: Arc<AtomicU64>,
) -> Result<(Learner, JoinHandle<()>)> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<GapJob>(config.queue.max(1));
    let board = Arc::new(Mutex::new(Board::default()));
    let worker_board = board.clone();
    let queue = config.queue;
    let handle = std::thread::Builder::new()
        .name("nmk-learner".into())
        .spawn(move || {
            let mut worker = Worker {
                config,
                kernel: None,
                sandbox: None,
                proposer: None,
            };
            while let Ok(job) = rx.recv() {
                set(
                    &worker_board,
                    &job.id,
                    status_json(&job, "running", Json::Null),
                );
                let started = Instant::now();
                let (state, mut result) = match worker.run(&job) {
                    Ok(r) => r,
                    Err(e) => ("failed", json!({ "error": format!("{e:#}") })),
                };
                if let Some(obj) = result.as_object_mut() {
                    obj.insert(
                        "elapsed_ms".into(),
                        (started.elapsed().as_millis() as u64).into(),
                    );
                }
                if result["registered"] == true {
                    routes_changed.fetch_add(1, Ordering::SeqCst);
                }
                tracing::info!(id = %job.id, entry = %job.file.entry, state, "gap judged");
                let status = status_json(&job, state, result);
                set(&worker_board, &job.id, status.clone());
                if let Some(done) = job.done {
                    let _ = done.send(status);
                }
            }
            tracing::info!("learner: drained, stopping");
        })
        .context("starting the learner thread")?;
    Ok((
        Learner {
            tx,
            board,
            next_id: AtomicU64::new(0),
            queue,
        },
        handle,
    ))
}

fn set(board: &Mutex<Board>, id: &str, status: Json) {
    if let Ok(mut b) = board.lock() {
        b.put(id, status);
    }
}

fn status_json(job: &GapJob, state: &str, result: Json) -> Json {
    json!({
        "id": job.id,
        "entry": job.file.entry,
        "source": if job.program.is_some() { "program" } else { "model" },
        "status": state,
        "result": result,
    })
}

impl Learner {
    /// Validates `sub` and queues it; returns its id, its status now, and (when `wait`) where
    /// the final status will arrive.
    pub fn submit(
        &self,
        sub: GapSubmission,
    ) -> Result<(Json, Option<oneshot::Receiver<Json>>), ApiError> {
        if let Some(p) = &sub.program
            && (p.len() > MAX_CODE_BYTES || p.trim().is_empty())
        {
            return Err(ApiError::bad_request(format!(
                "program: between 1 and {MAX_CODE_BYTES} bytes of Python, got {}",
                p.len()
            )));
        }
        if let Some(n) = sub.n
            && !(1..=MAX_N).contains(&n)
        {
            return Err(ApiError::bad_request(format!(
                "n = {n}: between 1 and {MAX_N}"
            )));
        }
        let file = GapFile::parse(&sub.gap)
            .map_err(|e: GapFileError| ApiError::bad_request(format!("gap: {e}")))?;
        let id = format!("gap-{}", self.next_id.fetch_add(1, Ordering::SeqCst));
        let (done, wait) = if sub.wait {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let job = GapJob {
            id: id.clone(),
            file,
            program: sub.program,
            n: sub.n,
            done,
        };
        let queued = status_json(&job, "queued", Json::Null);
        // On the board before the worker can see it, so its "running" is never overwritten.
        set(&self.board, &id, queued.clone());
        match self.tx.try_send(job) {
            Ok(()) => Ok((queued, wait)),
            Err(e) => {
                if let Ok(mut b) = self.board.lock() {
                    b.status.remove(&id);
                    b.order.retain(|x| *x != id);
                }
                Err(match e {
                    std::sync::mpsc::TrySendError::Full(_) => ApiError::queue_full(self.queue),
                    std::sync::mpsc::TrySendError::Disconnected(_) => ApiError::shutting_down(),
                })
            }
        }
    }

    /// The status of submission `id`.
    pub fn status(&self, id: &str) -> Option<Json> {
        self.board.lock().ok()?.status.get(id).cloned()
    }

    /// Every remembered submission, oldest first.
    pub fn list(&self) -> Json {
        let list: Vec<Json> = self
            .board
            .lock()
            .map(|b| {
                b.order
                    .iter()
                    .filter_map(|id| b.status.get(id).cloned())
                    .collect()
            })
            .unwrap_or_default();
        json!({ "object": "list", "data": list })
    }
}

struct Worker {
    config: LearnerConfig,
    kernel: Option<Kernel>,
    sandbox: Option<Arc<Sandbox>>,
    proposer: Option<NeuralProposer>,
}

impl Worker {
    /// Judges one gap: `(final state, result)`.
    fn run(&mut self, job: &GapJob) -> Result<(&'static str, Json)> {
        let sandbox = match &self.sandbox {
            Some(s) => s.clone(),
            None => {
                let s = Arc::new(crate::sandbox::start()?);
                self.sandbox = Some(s.clone());
                s
            }
        };
        let gap = match job.file.build(sandbox.clone()) {
            Ok(g) => g,
            Err(e) => {
                let reason = match e {
                    GapFileError::Unsound { .. } => "gap_unsound",
                    _ => "gap_error",
                };
                return Ok((
                    "refused",
                    json!({ "admitted": false, "registered": false, "reason": reason, "detail": e.to_string() }),
                ));
            }
        };
        let mut gate = job.file.gate_config();
        if let Some(n) = job.n {
            gate.n = n;
        }
        let kernel = match &mut self.kernel {
            Some(k) => k,
            None => self.kernel.insert(learned::open(&self.config.home)?),
        };
        let result = match &job.program {
            Some(code) => {
                let g = gate_user_program(kernel, &sandbox, &gap, code, &gate, true)?;
                let mut v = admission_json(&g.admission);
                if let Some(obj) = v.as_object_mut() {
                    obj.insert("registered".into(), g.registered.is_some().into());
                    obj.insert("ledger_seq".into(), g.entry.seq.into());
                    obj.insert("ledger_hash".into(), g.entry.hash.to_hex().into());
                }
                v
            }
            None => {
                let proposer = match &mut self.proposer {
                    Some(p) => p,
                    None => self
                        .proposer
                        .insert(load_model(&self.config.model, self.config.threads)?),
                };
                let config = LearnConfig {
                    gate,
                    ..LearnConfig::for_gap(&gap)
                };
                let outcome = learn(
                    &gap,
                    proposer,
                    &sandbox,
                    &kernel.ledger,
                    Some(&mut kernel.registry),
                    &config,
                    &mut |_| {},
                )?;
                let mut v = outcome_json(&outcome);
                if let Some(obj) = v.as_object_mut() {
                    obj.insert("model".into(), self.config.model.clone().into());
                }
                v
            }
        };
        let state = if result["admitted"] == true {
            "admitted"
        } else {
            "refused"
        };
        Ok((state, result))
    }
}

fn load_model(model: &str, threads: usize) -> Result<NeuralProposer> {
    let path: PathBuf = crate::commands::model::resolve_with_progress(model, true)?;
    NeuralProposer::load(model, Path::new(&path), threads)
}
