//! [`Session`]: one sequence decoded by a [`Model`]: KV cache, hooks, sampler and PRNG, with
//! snapshot / restore / trim.
//!
//! Tokens are fed lazily: [`Session::feed`] queues a token and [`Session::step`] (or sampling)
//! runs the forward over whatever is queued and yields the logits of the next position.
//! [`Session::prefill`] runs its tokens at once. Whatever the split of the tokens between
//! prefill calls, feeds and internal batches, the logits are bitwise the same (see
//! [`super::model`]).
//!
//! A [`SessionSnapshot`] holds everything the future of a session depends on: KV entries, the
//! token history, the pending logits and the PRNG state. Restoring it and continuing is
//! bitwise identical to never having left.

use std::sync::Arc;

use super::error::{EngineError, Result};
use super::hooks::{HookSet, LayerRoute};
use super::kv_cache::{KvCache, KvSnapshot};
use super::linear::Threads;
use super::model::{LogitsWanted, Model, Scratch};
use super::park::ParkBinding;
use super::sampling::{Rng, Sampler, SamplingParams};
use super::token_gate::{DEFAULT_MAX_RESAMPLES, GateCounts, TokenGate, TokenVerdict};

/// Largest internal forward batch a session accepts.
pub const MAX_BATCH: usize = 4096;

/// How a session runs.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionOptions {
    /// Threads for matrix kernels (results do not depend on it).
    pub threads: usize,
    /// Sliding-window KV ring of this many positions; `None` keeps every position.
    pub window: Option<usize>,
    /// Most positions per internal forward batch (prefill).
    pub batch: usize,
    /// Seed of the sampling PRNG.
    pub seed: u64,
    /// Most positions without a window (default: the model's training context).
    pub max_context: Option<u64>,
}

impl Default for SessionOptions {
    fn default() -> SessionOptions {
        SessionOptions {
            threads: 1,
            window: None,
            batch: 32,
            seed: 0,
            max_context: None,
        }
    }
}

/// The result of one step: the (masked) logits of the next position, and for MoE models the
/// routing of the last forwarded position (empty for dense models).
#[derive(Debug, Clone, PartialEq)]
pub struct StepOut {
    /// Logits over the vocabulary.
    pub logits: Vec<f32>,
    /// Per-layer routes of the last forwarded token.
    pub routes: Vec<LayerRoute>,
}

/// Why generation stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// `max_tokens` tokens were produced.
    MaxTokens,
    /// A stop token was selected (it is not part of the output and was not fed).
    StopToken(u32),
    /// The token gate ended the generation ([`TokenVerdict::Stop`]).
    GateStop,
    /// The token gate refused every candidate it was offered at one position (the resample
    /// cap was reached, or no selectable token was left).
    GateExhausted,
}

/// Parameters of [`Session::generate`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GenerateParams {
    /// Most tokens to produce.
    pub max_tokens: usize,
    /// Tokens that end generation.
    pub stop_tokens: Vec<u32>,
    /// Selection rule.
    pub sampling: SamplingParams,
}

/// The output of [`Session::generate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generated {
    /// Tokens produced (stop token excluded).
    pub tokens: Vec<u32>,
    /// Why it stopped.
    pub stop: StopReason,
}

/// The output of [`Session::generate_gated`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatedGeneration {
    /// Tokens accepted and fed (an accepted stop token excluded).
    pub tokens: Vec<u32>,
    /// Why it stopped.
    pub stop: StopReason,
    /// What the gate decided.
    pub counts: GateCounts,
}

/// Everything needed to resume a session exactly.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionSnapshot {
    kv: KvSnapshot,
    tokens: Vec<u32>,
    logits: Vec<f32>,
    logits_pos: Option<u64>,
    rng: Rng,
}

impl SessionSnapshot {
    /// The park encoding of this snapshot, bound to a model and tokenizer
    /// ([`ParkBinding::of`]): see [`super::park`].
    pub fn to_bytes(&self, binding: &ParkBinding) -> Vec<u8> {
        use super::park::{put_f32s, put_u64, seal, write_header};
        let mut out = Vec::with_capacity(self.kv.data_bytes() + self.logits.len() * 4 + 256);
        write_header(&mut out, binding);
        self.kv.encode(&mut out);
        put_u64(&mut out, self.tokens.len() as u64);
        for t in &self.tokens {
            out.extend_from_slice(&t.to_le_bytes());
        }
        put_u64(&mut out, self.logits_pos.unwrap_or(u64::MAX));
        put_u64(&mut out, self.logits.len() as u64);
        put_f32s(&mut out, &self.logits);
        for w in self.rng.state() {
            put_u64(&mut out, w);
        }
        seal(&mut out);
        out
    }

    /// Decodes a parked snapshot; fails unless it was parked under `binding` (same model file,
    /// same tokenizer) by this format version and is intact. [`Session::restore`] then checks
    /// it against the live model.
    pub fn from_bytes(bytes: &[u8], binding: &ParkBinding) -> Result<SessionSnapshot> {
        use super::park::Reader;
        let mut r = Reader::open(bytes, binding)?;
        let kv = KvSnapshot::decode(&mut r)?;
        let n_tokens = r.count()?;
        let tokens = r.u32s(n_tokens)?;
        let logits_pos = match r.u64()? {
            u64::MAX => None,
            p => Some(p),
        };
        let n_logits = r.count()?;
        let logits = r.f32s(n_logits)?;
        let mut s = [0u64; 4];
        for w in &mut s {
            *w = r.u64()?;
        }
        r.finish()?;
        Ok(SessionSnapshot {
            kv,
            tokens,
            logits,
            logits_pos,
            rng: Rng::from_state(s),
        })
    }

    /// The token history (forwarded and queued).
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// The KV part.
    pub fn kv(&self) -> &KvSnapshot {
        &self.kv
    }

    /// The PRNG state.
    pub fn rng(&self) -> Rng {
        self.rng
    }
}

/// One sequence being decoded.
#[derive(Debug)]
pub struct Session {
    model: Arc<Model>,
    cache: KvCache,
    scratch: Scratch,
    hooks: HookSet,
    rng: Rng,
    sampler: Sampler,
    /// Every token of the sequence; those at index ≥ `cache.next_pos()` are queued.
    tokens: Vec<u32>,
    /// Raw logits of position `logits_pos`.
    logits: Vec<f32>,
    logits_pos: Option<u64>,
    /// Masked copy of `logits` handed out.
    masked: Vec<f32>,
    routes: Vec<LayerRoute>,
    max_context: u64,
}

impl Session {
    /// A fresh session on `model`.
    pub fn new(model: Arc<Model>, opts: &SessionOptions) -> Result<Session> {
        if opts.threads == 0 || opts.batch == 0 || opts.batch > MAX_BATCH {
            return Err(EngineError::State {
                reason: format!(
                    "threads must be at least 1 and batch in 1..={MAX_BATCH} (got {} and {})",
                    opts.threads, opts.batch
                ),
            });
        }
        let cache = model.new_cache(opts.window)?;
        let scratch = Scratch::new(model.config(), opts.batch, Threads::new(opts.threads));
        let max_context = opts
            .max_context
            .unwrap_or(model.config().n_ctx_train as u64);
        Ok(Session {
            cache,
            scratch,
            hooks: HookSet::new(),
            rng: Rng::new(opts.seed),
            sampler: Sampler::new(),
            tokens: Vec::new(),
            logits: Vec::new(),
            logits_pos: None,
            masked: Vec::new(),
            routes: Vec::new(),
            max_context,
            model,
        })
    }

    /// The model.
    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }

    /// The hooks run on every forward of this session.
    pub fn hooks_mut(&mut self) -> &mut HookSet {
        &mut self.hooks
    }

    /// The KV cache.
    pub fn cache(&self) -> &KvCache {
        &self.cache
    }

    /// Every token of the sequence (forwarded and queued).
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// Number of tokens in the sequence (the position of the next token).
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// True when the sequence is empty.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The sampling PRNG.
    pub fn rng(&self) -> Rng {
        self.rng
    }

    /// Replaces the sampling PRNG (e.g. reseeding).
    pub fn set_rng(&mut self, rng: Rng) {
        self.rng = rng;
    }

    /// Changes the thread count (results do not depend on it).
    pub fn set_threads(&mut self, threads: usize) -> Result<()> {
        if threads == 0 {
            return Err(EngineError::State {
                reason: "threads must be at least 1".to_owned(),
            });
        }
        self.scratch.set_threads(Threads::new(threads));
        Ok(())
    }

    fn check_token(&self, t: u32) -> Result<()> {
        let vocab = self.model.config().n_vocab;
        if t as usize >= vocab {
            return Err(EngineError::TokenOutOfRange { token: t, vocab });
        }
        Ok(())
    }

    /// Queues one token (run by the next step or sampling call).
    pub fn feed(&mut self, token: u32) -> Result<()> {
        self.check_token(token)?;
        self.check_room(1)?;
        self.tokens.push(token);
        Ok(())
    }

    fn check_room(&self, extra: usize) -> Result<()> {
        if self.cache.window().is_some() {
            return Ok(());
        }
        let needed = self.tokens.len() as u64 + extra as u64;
        if needed > self.max_context {
            return Err(EngineError::ContextFull {
                needed,
                limit: self.max_context,
            });
        }
        Ok(())
    }

    /// Runs `ids` (after anything queued) through the model now, keeping the logits of the last
    /// position.
    pub fn prefill(&mut self, ids: &[u32]) -> Result<()> {
        for &t in ids {
            self.check_token(t)?;
        }
        self.check_room(ids.len())?;
        self.tokens.extend_from_slice(ids);
        self.run_queued()
    }

    /// Runs `ids` (after anything queued) and returns the logits of every one of them
    /// (`ids.len() × n_vocab`, unmasked), for checks and scoring.
    pub fn prefill_all_logits(&mut self, ids: &[u32]) -> Result<Vec<f32>> {
        self.run_queued()?;
        for &t in ids {
            self.check_token(t)?;
        }
        self.check_room(ids.len())?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        self.tokens.extend_from_slice(ids);
        let mut all = Vec::new();
        let res = self.model.forward(
            ids,
            &mut self.cache,
            &mut self.scratch,
            &mut self.hooks,
            LogitsWanted::All,
            &mut all,
        );
        self.after_forward(res)?;
        let nv = self.model.config().n_vocab;
        let start = (ids.len() - 1) * nv;
        self.logits.clear();
        self.logits
            .extend_from_slice(all.get(start..).unwrap_or(&[]));
        self.logits_pos = Some(self.cache.next_pos() - 1);
        Ok(all)
    }

    /// Whether this session can join [`Session::forward_together`].
    fn joins_rows(&self) -> bool {
        self.hooks.is_empty()
            && self.cache.window().is_none()
            && self.tokens.len() as u64 == self.cache.next_pos() + 1
    }

    /// Forwards the one queued token of each of `sessions` in one pass that reads the weights
    /// once for all of them (the server's lanes, after each fed its last token). Each
    /// session's logits are bitwise those its own next step would compute, so no generation
    /// changes. A session joins when it has exactly one token queued, no hooks and no sliding
    /// window, and shares the first joining session's (dense) model; the others are left for
    /// their own next step. When the pass fails nothing is committed and every session is left
    /// as it was (its own next step forwards it, and reports its own error if it has one).
    /// Returns how many sessions were forwarded together.
    pub fn forward_together(sessions: &mut [&mut Session]) -> Result<usize> {
        let mut group: Vec<&mut Session> = sessions
            .iter_mut()
            .map(|s| &mut **s)
            .filter(|s| s.joins_rows())
            .collect();
        let Some(model) = group.first().map(|s| s.model.clone()) else {
            return Ok(0);
        };
        group.retain(|s| Arc::ptr_eq(&s.model, &model));
        if group.len() < 2 || model.config().moe.is_some() {
            return Ok(0);
        }
        let capacity = group
            .iter()
            .map(|s| s.scratch.capacity())
            .min()
            .unwrap_or(1);
        let mut forwarded = 0;
        for chunk in group.chunks_mut(capacity.max(1)) {
            let Some((first, rest)) = chunk.split_first_mut() else {
                continue;
            };
            let first: &mut Session = first;
            let mut tokens = Vec::with_capacity(rest.len() + 1);
            let mut caches: Vec<&mut KvCache> = Vec::with_capacity(rest.len() + 1);
            let mut logits: Vec<&mut Vec<f32>> = Vec::with_capacity(rest.len() + 1);
            for s in std::iter::once(&mut *first).chain(rest.iter_mut().map(|s| &mut **s)) {
                let next = usize::try_from(s.cache.next_pos()).unwrap_or(usize::MAX);
                let Some(&t) = s.tokens.get(next) else {
                    return Err(EngineError::State {
                        reason: "a lane without its queued token".to_owned(),
                    });
                };
                tokens.push(t);
            }
            caches.push(&mut first.cache);
            logits.push(&mut first.logits);
            for s in rest.iter_mut() {
                let s: &mut Session = s;
                caches.push(&mut s.cache);
                logits.push(&mut s.logits);
            }
            model.forward_rows(&tokens, &mut caches, &mut first.scratch, &mut logits)?;
            for s in std::iter::once(&mut *first).chain(rest.iter_mut().map(|s| &mut **s)) {
                s.routes.clear();
                s.logits_pos = Some(s.cache.next_pos() - 1);
                forwarded += 1;
            }
        }
        Ok(forwarded)
    }

    /// Forwards queued tokens, if any.
    fn run_queued(&mut self) -> Result<()> {
        let done = usize::try_from(self.cache.next_pos()).unwrap_or(usize::MAX);
        let Some(queued) = self.tokens.get(done..) else {
            return Err(EngineError::State {
                reason: "KV cache is ahead of the token history".to_owned(),
            });
        };
        if queued.is_empty() {
            return Ok(());
        }
        let res = self.model.forward(
            queued,
            &mut self.cache,
            &mut self.scratch,
            &mut self.hooks,
            LogitsWanted::Last,
            &mut self.logits,
        );
        self.after_forward(res)?;
        self.logits_pos = Some(self.cache.next_pos() - 1);
        Ok(())
    }

    fn after_forward(&mut self, res: Result<()>) -> Result<()> {
        self.scratch.take_routes(&mut self.routes);
        if res.is_err() {
            self.routes.clear();
            // Drop what was not forwarded; the logits held no longer match the history.
            let done = usize::try_from(self.cache.next_pos()).unwrap_or(usize::MAX);
            self.tokens.truncate(done);
            self.logits_pos = None;
        }
        res
    }

    /// Forwards queued tokens and returns the logits of the next position, masked by the
    /// installed logit masks (copied only when a mask is installed).
    fn ready(&mut self) -> Result<&[f32]> {
        self.run_queued()?;
        let pos = match self.logits_pos {
            Some(p) if p + 1 == self.tokens.len() as u64 => p + 1,
            _ => {
                return Err(EngineError::State {
                    reason: "no logits: feed or prefill at least one token first".to_owned(),
                });
            }
        };
        if !self.hooks.has_logit_masks() {
            return Ok(&self.logits);
        }
        self.masked.clear();
        self.masked.extend_from_slice(&self.logits);
        self.hooks.apply_logit_masks(pos, &mut self.masked);
        Ok(&self.masked)
    }

    /// The (masked) logits `ready` produced last, without forwarding anything.
    fn current_logits(&self) -> &[f32] {
        if self.hooks.has_logit_masks() {
            &self.masked
        } else {
            &self.logits
        }
    }

    /// Runs queued tokens and returns the (masked) logits of the next position.
    pub fn step(&mut self) -> Result<StepOut> {
        let logits = self.ready()?.to_vec();
        Ok(StepOut {
            logits,
            routes: self.routes.clone(),
        })
    }

    /// Like [`Session::step`], borrowing the logits instead of copying them.
    pub fn logits(&mut self) -> Result<&[f32]> {
        self.ready()
    }

    /// The routes of the last forwarded token (empty for dense models).
    pub fn routes(&self) -> &[LayerRoute] {
        &self.routes
    }

    /// Selects the next token (does not feed it).
    pub fn sample(&mut self, params: &SamplingParams) -> Result<u32> {
        self.ready()?;
        let logits = if self.hooks.has_logit_masks() {
            &self.masked
        } else {
            &self.logits
        };
        self.sampler
            .select(logits, params, &self.tokens, &mut self.rng)
    }

    /// Samples and feeds up to `max_tokens` tokens, stopping early at a stop token.
    pub fn generate(&mut self, params: &GenerateParams) -> Result<Generated> {
        params.sampling.validate()?;
        let mut out = Vec::with_capacity(params.max_tokens);
        while out.len() < params.max_tokens {
            let t = self.sample(&params.sampling)?;
            if params.stop_tokens.contains(&t) {
                return Ok(Generated {
                    tokens: out,
                    stop: StopReason::StopToken(t),
                });
            }
            self.feed(t)?;
            out.push(t);
        }
        Ok(Generated {
            tokens: out,
            stop: StopReason::MaxTokens,
        })
    }

    /// Generates up to `params.max_tokens` tokens, each one judged by `gate` before it is fed
    /// or emitted (see [`super::token_gate`]). With a gate that accepts everything this is
    /// [`Session::generate`], token for token. A refused candidate is masked (−∞) for this
    /// position only and selection runs again on the same logits; after
    /// [`DEFAULT_MAX_RESAMPLES`] refusals at one position, or when nothing selectable is left,
    /// generation ends with [`StopReason::GateExhausted`] and nothing more is fed.
    pub fn generate_gated(
        &mut self,
        params: &GenerateParams,
        gate: &mut dyn TokenGate,
        on_token: &mut dyn FnMut(u32),
    ) -> Result<GatedGeneration> {
        params.sampling.validate()?;
        let mut out = GatedGeneration {
            tokens: Vec::with_capacity(params.max_tokens),
            stop: StopReason::MaxTokens,
            counts: GateCounts::default(),
        };
        // The logits are copied only when the gate edits them (a mask, or a refused
        // candidate); an accepting gate selects straight from the session's own buffer.
        let mut edited: Vec<f32> = Vec::new();
        while out.tokens.len() < params.max_tokens {
            let pos = self.tokens.len() as u64;
            self.ready()?;
            let mut own = false;
            if gate.masks() {
                edited.clear();
                edited.extend_from_slice(self.current_logits());
                gate.mask(pos, &mut edited);
                own = true;
            }
            let mut refused = 0usize;
            let chosen = loop {
                let logits: &[f32] = if own {
                    &edited
                } else if self.hooks.has_logit_masks() {
                    &self.masked
                } else {
                    &self.logits
                };
                let Ok(t) =
                    self.sampler
                        .select(logits, &params.sampling, &self.tokens, &mut self.rng)
                else {
                    break None;
                };
                let is_stop = params.stop_tokens.contains(&t);
                match gate.judge(pos, t, is_stop) {
                    TokenVerdict::Accept => {
                        out.counts.accepted += 1;
                        break Some((t, is_stop));
                    }
                    TokenVerdict::Stop => {
                        out.stop = StopReason::GateStop;
                        return Ok(out);
                    }
                    TokenVerdict::Resample => {
                        out.counts.resampled += 1;
                        refused += 1;
                        if refused >= DEFAULT_MAX_RESAMPLES {
                            break None;
                        }
                        if !own {
                            edited.clear();
                            edited.extend_from_slice(self.current_logits());
                            own = true;
                        }
                        if let Some(l) = edited.get_mut(t as usize) {
                            *l = f32::NEG_INFINITY;
                        }
                    }
                }
            };
            match chosen {
                None => {
                    out.stop = StopReason::GateExhausted;
                    return Ok(out);
                }
                Some((t, true)) => {
                    out.stop = StopReason::StopToken(t);
                    return Ok(out);
                }
                Some((t, false)) => {
                    self.feed(t)?;
                    out.tokens.push(t);
                    on_token(t);
                }
            }
        }
        Ok(out)
    }

    /// Captures everything the session's future depends on.
    pub fn snapshot(&self) -> Result<SessionSnapshot> {
        Ok(SessionSnapshot {
            kv: self.cache.snapshot()?,
            tokens: self.tokens.clone(),
            logits: self.logits.clone(),
            logits_pos: self.logits_pos,
            rng: self.rng,
        })
    }

    /// Returns to a snapshot taken from a session of the same model and cache shape.
    pub fn restore(&mut self, snap: &SessionSnapshot) -> Result<()> {
        if (snap.tokens.len() as u64) < snap.kv.positions().end {
            return Err(EngineError::SnapshotMismatch {
                reason: "snapshot KV reaches beyond its token history".to_owned(),
            });
        }
        if let Some(t) = snap
            .tokens
            .iter()
            .find(|&&t| t as usize >= self.model.config().n_vocab)
        {
            return Err(EngineError::SnapshotMismatch {
                reason: format!("snapshot token {t} is outside the vocabulary"),
            });
        }
        if snap
            .logits_pos
            .is_some_and(|p| p.checked_add(1) != Some(snap.kv.positions().end))
        {
            return Err(EngineError::SnapshotMismatch {
                reason: "snapshot logits are not those of its last KV position".to_owned(),
            });
        }
        if snap.logits_pos.is_some() && snap.logits.len() != self.model.config().n_vocab {
            return Err(EngineError::SnapshotMismatch {
                reason: "snapshot logits have the wrong length".to_owned(),
            });
        }
        self.cache.restore(&snap.kv)?;
        self.tokens.clear();
        self.tokens.extend_from_slice(&snap.tokens);
        self.logits.clear();
        self.logits.extend_from_slice(&snap.logits);
        self.logits_pos = snap.logits_pos;
        self.rng = snap.rng;
        self.routes.clear();
        Ok(())
    }

    /// Keeps the first `n` tokens of the sequence and drops the rest (KV entries included).
    /// The logits of position `n − 1` are recomputed on the next step when needed; a KV ring
    /// that has overwritten entries this needs refuses.
    pub fn trim(&mut self, n: usize) -> Result<()> {
        let len = self.tokens.len();
        if n > len {
            return Err(EngineError::Trim {
                to: n as u64,
                reason: format!("the sequence has only {len} tokens"),
            });
        }
        let n64 = n as u64;
        let next = self.cache.next_pos();
        if n64 >= next {
            // Only queued tokens go; the KV cache and logits stay.
            self.tokens.truncate(n);
        } else if n == 0 {
            self.cache.trim(0)?;
            self.tokens.clear();
            self.logits_pos = None;
        } else {
            // Re-run token n−1 so that its logits exist again.
            self.cache.trim(n64 - 1)?;
            self.tokens.truncate(n);
            self.logits_pos = None;
        }
        Ok(())
    }

    /// Keeps the first `n` tokens (all forwarded) and their KV entries and installs `logits` as
    /// the pending logits of position `n − 1`, without re-running that position.
    ///
    /// Crate-private because the caller vouches for `logits`: speculative decoding
    /// ([`super::speculate`]) passes the row its own verify batch computed for position `n − 1`,
    /// which batch invariance makes bitwise equal to what a re-run would give. Routes of the
    /// last forwarded token are dropped (they belonged to a rolled-back position).
    pub(crate) fn rewind_with_logits(&mut self, n: usize, logits: &[f32]) -> Result<()> {
        let next = self.cache.next_pos();
        if n == 0 || n as u64 > next || self.tokens.len() as u64 != next {
            return Err(EngineError::State {
                reason: format!(
                    "rewind to {n} tokens needs 1..={next} forwarded positions and nothing queued \
                     ({} tokens held)",
                    self.tokens.len()
                ),
            });
        }
        if logits.len() != self.model.config().n_vocab {
            return Err(EngineError::State {
                reason: format!(
                    "rewind logits have {} values, the vocabulary {}",
                    logits.len(),
                    self.model.config().n_vocab
                ),
            });
        }
        self.cache.trim(n as u64)?;
        self.tokens.truncate(n);
        self.logits.clear();
        self.logits.extend_from_slice(logits);
        self.logits_pos = Some(n as u64 - 1);
        self.routes.clear();
        Ok(())
    }

    /// The context limit checked when feeding, or `None` for a sliding-window ring (no limit).
    pub(crate) fn context_limit(&self) -> Option<u64> {
        match self.cache.window() {
            Some(_) => None,
            None => Some(self.max_context),
        }
    }

    /// Drops the whole sequence (hooks and PRNG are kept).
    pub fn reset(&mut self) {
        self.cache.clear();
        self.tokens.clear();
        self.logits_pos = None;
        self.routes.clear();
    }
}
