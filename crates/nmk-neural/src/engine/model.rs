//! [`Model`]: a loaded model and its forward pass.
//!
//! [`Model::forward`] runs a batch of tokens at the next positions of a [`KvCache`]: embedding,
//! then per block RMSNorm → Q/K/V (+bias) → RoPE → causal GQA attention over the cache → output
//! projection → residual, RMSNorm → SwiGLU (or the routed experts of [`super::moe`]) →
//! residual, the post-block hook site; finally the
//! output norm and the logits of the positions asked for.
//!
//! Batch invariance: every per-position computation (norms, projections, RoPE, attention) is
//! done row by row with fixed-order reductions, and attention for the query at position `p`
//! reads keys `window_start(p) ..= p` in position order. Within a block each position's key and
//! value are written to the cache just before its query attends, so a ring never loses an entry
//! an earlier query of the same batch needs. Hence one batch of `m` tokens gives bitwise the same
//! logits as any split of it, down to token by token.

use std::path::Path;
use std::sync::Arc;

use crate::gguf::GgufFile;

use super::attention::attend;
use super::config::ModelConfig;
use super::error::{EngineError, Result};
use super::hooks::{HookSet, LayerRoute, Residual};
use super::kv_cache::KvCache;
use super::linear::Threads;
use super::moe::{MoeScratch, Routing};
use super::ops;
use super::rope::Rope;
use super::weights::{Ffn, ModelWeights};

/// Which positions of a batch produce logits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogitsWanted {
    /// None (pure prefill).
    None,
    /// The last position only.
    Last,
    /// Every position (`m × n_vocab`, row-major).
    All,
}

/// A loaded model: configuration, weights over the file's map, RoPE table.
#[derive(Debug)]
pub struct Model {
    file: Arc<GgufFile>,
    config: ModelConfig,
    weights: ModelWeights,
    rope: Rope,
}

/// Reusable activation buffers for batches of up to `capacity` positions, and the thread
/// budget of the matrix kernels.
#[derive(Debug, Clone)]
pub struct Scratch {
    capacity: usize,
    /// (n_embd, q_dim, kv_dim, n_ff) the buffers were sized for.
    dims: (usize, usize, usize, usize),
    threads: Threads,
    x: Vec<f32>,
    xn: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    att: Vec<f32>,
    tmp: Vec<f32>,
    gate: Vec<f32>,
    up: Vec<f32>,
    cos: Vec<f32>,
    sin: Vec<f32>,
    scores: Vec<f32>,
    hn: Vec<f32>,
    moe: MoeScratch,
    /// Logits of every row of [`Model::forward_rows`].
    rows_out: Vec<f32>,
}

impl Scratch {
    /// Buffers for batches of up to `capacity` positions (at least 1).
    pub fn new(cfg: &ModelConfig, capacity: usize, threads: Threads) -> Scratch {
        let b = capacity.max(1);
        Scratch {
            capacity: b,
            dims: (cfg.n_embd, cfg.q_dim(), cfg.kv_dim(), cfg.n_ff),
            threads,
            x: vec![0.0; b * cfg.n_embd],
            xn: vec![0.0; b * cfg.n_embd],
            q: vec![0.0; b * cfg.q_dim()],
            k: vec![0.0; b * cfg.kv_dim()],
            v: vec![0.0; b * cfg.kv_dim()],
            att: vec![0.0; b * cfg.q_dim()],
            tmp: vec![0.0; b * cfg.n_embd],
            gate: vec![0.0; b * cfg.n_ff],
            up: vec![0.0; b * cfg.n_ff],
            cos: Vec::new(),
            sin: Vec::new(),
            scores: Vec::new(),
            hn: Vec::new(),
            moe: MoeScratch::default(),
            rows_out: Vec::new(),
        }
    }

    /// Largest batch the buffers hold.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The thread budget.
    pub fn threads(&self) -> &Threads {
        &self.threads
    }

    /// Moves the routes of the last forwarded position (MoE models; one per layer) into `out`.
    pub(crate) fn take_routes(&mut self, out: &mut Vec<LayerRoute>) {
        out.clear();
        out.append(&mut self.moe.last_routes);
    }

    /// Changes the thread budget (results do not depend on it).
    pub fn set_threads(&mut self, threads: Threads) {
        self.threads = threads;
    }
}

impl Model {
    /// Opens (memory-maps) and loads a GGUF model.
    pub fn load(path: impl AsRef<Path>) -> Result<Model> {
        let file = Arc::new(GgufFile::open(path)?);
        Model::from_file(file)
    }

    /// Loads a model from an already opened GGUF file.
    pub fn from_file(file: Arc<GgufFile>) -> Result<Model> {
        let embd = file.tensor("token_embd.weight")?;
        let dims = embd.dims();
        if dims.len() != 2 {
            return Err(EngineError::TensorShape {
                name: "token_embd.weight".to_owned(),
                found: dims.to_vec(),
                expected: vec![0, 0],
            });
        }
        let n_vocab = dims.get(1).copied().unwrap_or(0);
        let has = |n: &str| file.content().tensor(n).is_some();
        let config = ModelConfig::from_metadata(file.metadata(), &has, n_vocab)?;
        let weights = ModelWeights::load(&file, &config)?;
        let rope = Rope::new(&config);
        Ok(Model {
            file,
            config,
            weights,
            rope,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The GGUF file (metadata, tokenizer tables).
    pub fn file(&self) -> &Arc<GgufFile> {
        &self.file
    }

    /// The end-of-sequence token from `tokenizer.ggml.eos_token_id`, if present and in range.
    pub fn eos_token(&self) -> Option<u32> {
        self.token_meta("tokenizer.ggml.eos_token_id")
    }

    /// The end-of-turn token from `tokenizer.ggml.eot_token_id`, if present and in range.
    pub fn eot_token(&self) -> Option<u32> {
        self.token_meta("tokenizer.ggml.eot_token_id")
    }

    /// Tokens that end a generation by default: end-of-sequence and end-of-turn.
    pub fn stop_tokens(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self
            .eos_token()
            .into_iter()
            .chain(self.eot_token())
            .collect();
        v.dedup();
        v
    }

    fn token_meta(&self, key: &str) -> Option<u32> {
        let id = self.file.metadata().opt_u32(key).ok().flatten()?;
        ((id as usize) < self.config.n_vocab).then_some(id)
    }

    /// An empty KV cache for this model (`window`: optional sliding window).
    pub fn new_cache(&self, window: Option<usize>) -> Result<KvCache> {
        KvCache::new(self.config.n_layer, self.config.kv_dim(), window)
    }

    /// Runs `tokens` at positions `cache.next_pos() ..`, in batches of at most
    /// `scratch.capacity()`, and writes logits as asked into `logits` (resized: `n_vocab` for
    /// [`LogitsWanted::Last`], `tokens.len() × n_vocab` for [`LogitsWanted::All`]).
    pub fn forward(
        &self,
        tokens: &[u32],
        cache: &mut KvCache,
        scratch: &mut Scratch,
        hooks: &mut HookSet,
        wanted: LogitsWanted,
        logits: &mut Vec<f32>,
    ) -> Result<()> {
        self.check_call(cache, scratch)?;
        self.check_tokens(tokens)?;
        let nv = self.config.n_vocab;
        match wanted {
            LogitsWanted::None => logits.clear(),
            LogitsWanted::Last => logits.resize(nv, 0.0),
            LogitsWanted::All => logits.resize(tokens.len() * nv, 0.0),
        }
        let cap = scratch.capacity.max(1);
        let n_chunks = tokens.len().div_ceil(cap);
        for (ci, chunk) in tokens.chunks(cap).enumerate() {
            let out: Option<&mut [f32]> = match wanted {
                LogitsWanted::None => None,
                LogitsWanted::Last if ci + 1 == n_chunks => Some(&mut logits[..]),
                LogitsWanted::Last => None,
                LogitsWanted::All => {
                    let s = ci * cap * nv;
                    logits.get_mut(s..s + chunk.len() * nv)
                }
            };
            let all = wanted == LogitsWanted::All;
            self.forward_batch(chunk, cache, scratch, hooks, out, all)?;
        }
        Ok(())
    }

    /// One batch of at most `scratch.capacity()` tokens. `out`: where logits go (`all`: every
    /// row, else the last row only).
    fn forward_batch(
        &self,
        tokens: &[u32],
        cache: &mut KvCache,
        s: &mut Scratch,
        hooks: &mut HookSet,
        out: Option<&mut [f32]>,
        all: bool,
    ) -> Result<()> {
        let m = tokens.len();
        if m == 0 {
            return Ok(());
        }
        let pos0 = cache.next_pos();
        let positions: Vec<u64> = (0..m as u64).map(|i| pos0 + i).collect();
        self.run_blocks(tokens, &positions, Rows::One(cache), s, hooks)?;
        if let Some(out) = out {
            let rows = if all { 0..m } else { m - 1..m };
            self.logits_of(rows, s, out)?;
        }
        Ok(())
    }

    /// One decode step for several independent sequences at once (the server's lanes): row
    /// `i` is `tokens[i]` at the next position of `caches[i]`, and its logits go to
    /// `logits[i]` (resized to `n_vocab`). Each weight matrix is read once for every row, and
    /// each row's logits are bitwise those [`Model::forward`] gives for that sequence alone:
    /// the several-rows kernels keep every row's dot products those of a single row, and
    /// norms, RoPE and attention are per row over the row's own cache. Dense models without
    /// hooks and caches without a sliding window only (the caller runs the others alone); at
    /// most `scratch.capacity()` rows. On an error nothing is committed to any cache.
    pub fn forward_rows(
        &self,
        tokens: &[u32],
        caches: &mut [&mut KvCache],
        scratch: &mut Scratch,
        logits: &mut [&mut Vec<f32>],
    ) -> Result<()> {
        let m = tokens.len();
        if m == 0 || caches.len() != m || logits.len() != m {
            return Err(EngineError::State {
                reason: format!(
                    "forward_rows: {m} tokens, {} caches and {} logit buffers",
                    caches.len(),
                    logits.len()
                ),
            });
        }
        if self.config.moe.is_some() || caches.iter().any(|c| c.window().is_some()) {
            return Err(EngineError::State {
                reason: "forward_rows runs dense models on caches without a window only".to_owned(),
            });
        }
        for c in caches.iter() {
            self.check_call(c, scratch)?;
        }
        self.check_tokens(tokens)?;
        if m > scratch.capacity {
            return Err(EngineError::State {
                reason: format!("{m} rows exceed scratch capacity {}", scratch.capacity),
            });
        }
        let positions: Vec<u64> = caches.iter().map(|c| c.next_pos()).collect();
        let mut no_hooks = HookSet::new();
        self.run_blocks(
            tokens,
            &positions,
            Rows::Many(caches),
            scratch,
            &mut no_hooks,
        )?;
        let nv = self.config.n_vocab;
        let mut all = std::mem::take(&mut scratch.rows_out);
        all.resize(m * nv, 0.0);
        let done = self.logits_of(0..m, scratch, &mut all);
        if done.is_ok() {
            for (row, out) in all.chunks_exact(nv).zip(logits.iter_mut()) {
                out.clear();
                out.extend_from_slice(row);
            }
        }
        scratch.rows_out = all;
        done
    }

    fn check_call(&self, cache: &KvCache, scratch: &Scratch) -> Result<()> {
        cache.check_usable()?;
        let cfg = &self.config;
        if cache.n_layer() != cfg.n_layer || cache.kv_dim() != cfg.kv_dim() {
            return Err(EngineError::State {
                reason: "KV cache was made for another model".to_owned(),
            });
        }
        if scratch.dims != (cfg.n_embd, cfg.q_dim(), cfg.kv_dim(), cfg.n_ff) {
            return Err(EngineError::State {
                reason: "scratch buffers were made for another model".to_owned(),
            });
        }
        Ok(())
    }

    fn check_tokens(&self, tokens: &[u32]) -> Result<()> {
        for &t in tokens {
            if t as usize >= self.config.n_vocab {
                return Err(EngineError::TokenOutOfRange {
                    token: t,
                    vocab: self.config.n_vocab,
                });
            }
        }
        Ok(())
    }

    /// The blocks over `tokens`, row `i` at `positions[i]` of its cache in `rows`; leaves the
    /// final residuals in `s.x` and commits every row's position.
    fn run_blocks(
        &self,
        tokens: &[u32],
        positions: &[u64],
        mut rows: Rows<'_, '_>,
        s: &mut Scratch,
        hooks: &mut HookSet,
    ) -> Result<()> {
        let cfg = &self.config;
        let m = tokens.len();
        if m > s.capacity {
            return Err(EngineError::State {
                reason: format!("batch of {m} exceeds scratch capacity {}", s.capacity),
            });
        }
        let (d, qd, kvd, ff) = (cfg.n_embd, cfg.q_dim(), cfg.kv_dim(), cfg.n_ff);
        let pos0 = positions.first().copied().unwrap_or(0);
        let pairs = self.rope.pairs();
        let w = &self.weights;
        let threads = &s.threads.clone();

        for (i, &t) in tokens.iter().enumerate() {
            w.embedding.row(t, &mut s.x[i * d..(i + 1) * d])?;
        }
        let sc = cfg.scales;
        if sc.embedding != 1.0 {
            for v in &mut s.x[..m * d] {
                *v *= sc.embedding;
            }
        }
        s.moe.last_routes.clear();
        self.rope
            .fill(positions.iter().copied(), &mut s.cos, &mut s.sin);
        rows.begin();

        for (l, lw) in w.layers.iter().enumerate() {
            // Attention.
            for i in 0..m {
                let r = i * d..(i + 1) * d;
                ops::rms_norm(&s.x[r.clone()], &lw.attn_norm, cfg.rms_eps, &mut s.xn[r]);
            }
            lw.wq.matmul(&s.xn, m, &mut s.q, threads)?;
            lw.wk.matmul(&s.xn, m, &mut s.k, threads)?;
            lw.wv.matmul(&s.xn, m, &mut s.v, threads)?;
            for (i, &pos) in positions.iter().enumerate() {
                let q = &mut s.q[i * qd..(i + 1) * qd];
                let k = &mut s.k[i * kvd..(i + 1) * kvd];
                let v = &mut s.v[i * kvd..(i + 1) * kvd];
                if let Some([bq, bk, bv]) = &lw.qkv_bias {
                    ops::add_assign(q, bq);
                    ops::add_assign(k, bk);
                    ops::add_assign(v, bv);
                }
                if let Some([qn, kn]) = &lw.qk_norm {
                    for (x, wn) in [(&mut *q, qn), (&mut *k, kn)] {
                        for h in x.chunks_exact_mut(wn.len().max(1)) {
                            s.hn.clear();
                            s.hn.extend_from_slice(h);
                            ops::rms_norm(&s.hn, wn, cfg.rms_eps, h);
                        }
                    }
                }
                let cs = &s.cos[i * pairs..(i + 1) * pairs];
                let sn = &s.sin[i * pairs..(i + 1) * pairs];
                self.rope.apply(q, cs, sn);
                self.rope.apply(k, cs, sn);
                let cache = rows.cache(i)?;
                cache.write(l, pos, k, v)?;
                attend(
                    cfg,
                    cache,
                    l,
                    pos,
                    q,
                    &mut s.att[i * qd..(i + 1) * qd],
                    &mut s.scores,
                )?;
            }
            lw.wo.matmul(&s.att, m, &mut s.tmp, threads)?;
            if sc.residual != 1.0 {
                for v in &mut s.tmp[..m * d] {
                    *v *= sc.residual;
                }
            }
            ops::add_assign(&mut s.x[..m * d], &s.tmp[..m * d]);

            // Feed-forward.
            for i in 0..m {
                let r = i * d..(i + 1) * d;
                ops::rms_norm(&s.x[r.clone()], &lw.ffn_norm, cfg.rms_eps, &mut s.xn[r]);
            }
            match &lw.ffn {
                Ffn::Dense { gate, up, down } => {
                    gate.matmul(&s.xn, m, &mut s.gate, threads)?;
                    up.matmul(&s.xn, m, &mut s.up, threads)?;
                    ops::swiglu(&mut s.gate[..m * ff], &s.up[..m * ff]);
                    down.matmul(&s.gate, m, &mut s.tmp, threads)?;
                }
                Ffn::Moe(moe) => {
                    let mc = cfg.moe.as_ref().ok_or_else(|| EngineError::State {
                        reason: "MoE weights without an MoE configuration".to_owned(),
                    })?;
                    let routing = Routing {
                        layer: l,
                        first_pos: pos0,
                        k: mc.n_expert_used,
                        norm_topk: mc.norm_topk,
                    };
                    moe.forward(
                        &s.xn, m, d, &mut s.tmp, &routing, hooks, &mut s.moe, threads,
                    )?;
                }
            }
            if sc.residual != 1.0 {
                for v in &mut s.tmp[..m * d] {
                    *v *= sc.residual;
                }
            }
            ops::add_assign(&mut s.x[..m * d], &s.tmp[..m * d]);

            if hooks.wants_block(l) {
                let mut res = Residual::new(&mut s.x[..m * d], d, pos0);
                hooks
                    .run_post_block(l, &mut res)
                    .map_err(|e| EngineError::Hook {
                        site: "post_block",
                        reason: e.0,
                    })?;
            }
        }
        rows.commit(m);
        Ok(())
    }

    /// The logits of rows `rows` of the final residuals in `s.x`, into `out` (row-major).
    fn logits_of(
        &self,
        rows: std::ops::Range<usize>,
        s: &mut Scratch,
        out: &mut [f32],
    ) -> Result<()> {
        let cfg = &self.config;
        let d = cfg.n_embd;
        let w = &self.weights;
        let threads = &s.threads.clone();
        let n = rows.len();
        for (j, i) in rows.enumerate() {
            ops::rms_norm(
                &s.x[i * d..(i + 1) * d],
                &w.output_norm,
                cfg.rms_eps,
                &mut s.xn[j * d..(j + 1) * d],
            );
        }
        w.output.matmul(&s.xn, n, out, threads)?;
        if cfg.scales.logit != 1.0 {
            let inv = 1.0 / cfg.scales.logit;
            for v in out.iter_mut() {
                *v *= inv;
            }
        }
        Ok(())
    }
}

/// Where the rows of one forward pass keep their keys and values: one sequence (a batch of
/// consecutive positions) or one cache per row (independent sequences, one position each).
enum Rows<'a, 'c> {
    One(&'a mut KvCache),
    Many(&'a mut [&'c mut KvCache]),
}

impl Rows<'_, '_> {
    fn cache(&mut self, row: usize) -> Result<&mut KvCache> {
        match self {
            Rows::One(c) => Ok(c),
            Rows::Many(cs) => cs
                .get_mut(row)
                .map(|c| &mut **c)
                .ok_or_else(|| EngineError::State {
                    reason: format!("no cache for row {row}"),
                }),
        }
    }

    fn begin(&mut self) {
        match self {
            Rows::One(c) => c.begin(),
            Rows::Many(cs) => cs.iter_mut().for_each(|c| c.begin()),
        }
    }

    /// `m` positions for one sequence, or one for each of many.
    fn commit(&mut self, m: usize) {
        match self {
            Rows::One(c) => c.commit(m),
            Rows::Many(cs) => cs.iter_mut().for_each(|c| c.commit(1)),
        }
    }
}
