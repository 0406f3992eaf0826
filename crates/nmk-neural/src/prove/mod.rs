//! `nmk prove`: every forward-pass mechanism, checked bit for bit on the full logits of every
//! step against a plain baseline, each with a liveness contrast so a dead hook cannot pass.
//!
//! [`run_batteries`] runs the batteries on a model and a few prompts (token ids) and returns a
//! [`ProofReport`]. A battery passes when every identity variant gives logits whose bit
//! patterns equal the baseline's (max |Δ| exactly 0, token streams equal) and its deliberately
//! non-identity variant changes the logits (liveness Δ > 0). Mechanisms the engine cannot
//! exercise yet are reported `not_available` with the reason, never passed.
//!
//! Modules: [`report`] (the serialisable report), `trace` (recorded greedy runs and the bitwise
//! comparison), `batteries` (one function per battery).

mod batteries;
pub mod report;
mod trace;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use sha2::{Digest, Sha256};

use crate::engine::{EngineError, Model};

pub use report::{BatteryReport, ModelFacts, ProofReport, Status};

/// Errors that stop the whole proof run (a battery's own failure is a [`Status::Fail`] entry).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProveError {
    /// The inputs cannot be proved on (no prompts, an empty prompt, zero steps).
    #[error("invalid prove input: {0}")]
    Input(String),
    /// The baseline runs themselves failed.
    #[error("baseline run failed: {0}")]
    Baseline(#[source] EngineError),
}

/// A deliberately broken mechanism, for testing that the batteries catch breakage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// The on-disk park battery restores a snapshot whose KV bytes were altered (and the
    /// checksum recomputed, so the format accepts it).
    CorruptRestoredSnapshot,
    /// The interrupt battery's "empty" logit mask forbids one id.
    LeakyEmptyMask,
    /// The expert-mask battery's "allow all" mask forbids expert 0 in the first layer.
    LeakyEmptyExpertMask,
    /// The expert-mask battery's isolation witness is the original file, still holding the
    /// masked expert, instead of the file rewritten without it.
    RewriteKeepsExpert,
    /// The Mode-B battery's "zero up" injector has one non-zero `up` weight.
    ModeBUpNotZero,
}

/// How the batteries run.
#[derive(Debug, Clone, PartialEq)]
pub struct ProveOptions {
    /// Greedy decode steps per run (at least 4: the ring battery needs room to wrap).
    pub steps: usize,
    /// Caller chunk sizes (and internal batch sizes) compared with a whole prefill.
    pub chunk_sizes: Vec<usize>,
    /// Draft lengths of the speculation battery.
    pub speculate_ks: Vec<usize>,
    /// Internal forward batch of the baseline sessions.
    pub batch: usize,
    /// Where parked snapshots are written (default: the system temporary directory).
    pub park_dir: Option<PathBuf>,
    /// Also run the research batteries (the Mode-B injector).
    pub research: bool,
    /// Where the trap plane's sites sit (default: after the first block, every n/4 blocks,
    /// before the head).
    pub trap_sites: crate::engine::TrapSites,
    /// A deliberately broken mechanism (tests only).
    pub fault: Option<Fault>,
}

impl Default for ProveOptions {
    fn default() -> ProveOptions {
        ProveOptions {
            steps: 12,
            chunk_sizes: vec![1, 3, 7],
            speculate_ks: vec![1, 3, 5],
            batch: 32,
            park_dir: None,
            research: false,
            trap_sites: crate::engine::TrapSites::default(),
            fault: None,
        }
    }
}

/// SHA-256 of the model's GGUF bytes: the id snapshots are parked under and the report's model
/// hash.
pub fn model_sha256(model: &Model) -> [u8; 32] {
    Sha256::digest(model.file().bytes()).into()
}

/// Runs every battery on `model` with `prompts` (token ids; the first should be
/// input-grounded, e.g. "repeat this passage", so prompt-lookup drafts are accepted and
/// rejected).
pub fn run_batteries(
    model: Arc<Model>,
    prompts: &[Vec<u32>],
    opts: &ProveOptions,
) -> Result<ProofReport, ProveError> {
    let started = Instant::now();
    if prompts.is_empty() || prompts.iter().any(Vec::is_empty) {
        return Err(ProveError::Input(
            "at least one prompt is needed and no prompt may be empty".to_owned(),
        ));
    }
    if opts.steps < 4 {
        return Err(ProveError::Input(format!(
            "at least 4 steps are needed (got {})",
            opts.steps
        )));
    }
    if opts.batch == 0 || opts.chunk_sizes.contains(&0) {
        return Err(ProveError::Input(
            "batch and chunk sizes must be at least 1".to_owned(),
        ));
    }
    let cfg = model.config();
    let facts = ModelFacts {
        arch: format!("{:?}", cfg.arch),
        n_layer: cfg.n_layer,
        n_vocab: cfg.n_vocab,
        n_expert: cfg.moe.as_ref().map(|m| m.n_expert),
    };
    let binding = crate::engine::ParkBinding::of(&model).map_err(ProveError::Baseline)?;
    let model_id = binding.model;
    let ctx = batteries::Ctx::new(model, prompts, opts, binding).map_err(ProveError::Baseline)?;
    let batteries = batteries::run_all(&ctx);
    let all_passed = batteries.iter().all(|b| b.status != Status::Fail);
    Ok(ProofReport {
        nmk_version: env!("CARGO_PKG_VERSION").to_owned(),
        model_sha256: trace::hex(&model_id),
        model: facts,
        steps: opts.steps,
        batteries,
        all_passed,
        elapsed_s: started.elapsed().as_secs_f64(),
    })
}
