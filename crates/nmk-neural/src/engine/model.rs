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
        for &t in tokens {
            if t as usize >= self.config.n_vocab {
                return Err(EngineError::TokenOutOfRange {
                    token: t,
                    vocab: self.config.n_vocab,
                });
            }
        }
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
        let cfg = &self.config;
        let m = tokens.len();
        if m == 0 {
            return Ok(());
        }
        if m > s.capacity {
            return Err(EngineError::State {
                reason: format!("batch of {m} exceeds scratch capacity {}", s.capacity),
            });
        }
        let (d, qd, kvd, ff) = (cfg.n_embd, cfg.q_dim(), cfg.kv_dim(), cfg.n_ff);
        let pos0 = cache.next_pos();
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
            .fill((0..m as u64).map(|i| pos0 + i), &mut s.cos, &mut s.sin);
        cache.begin();

        for (l, lw) in w.layers.iter().enumerate() {
            // Attention.
            for i in 0..m {
                let r = i * d..(i + 1) * d;
                ops::rms_norm(&s.x[r.clone()], &lw.attn_norm, cfg.rms_eps, &mut s.xn[r]);
            }
            lw.wq.matmul(&s.xn, m, &mut s.q, threads)?;
            lw.wk.matmul(&s.xn, m, &mut s.k, threads)?;
            lw.wv.matmul(&s.xn, m, &mut s.v, threads)?;
            for i in 0..m {
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
                let pos = pos0 + i as u64;
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
        cache.commit(m);

        if let Some(out) = out {
            let rows = if all { 0..m } else { m - 1..m };
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
            if sc.logit != 1.0 {
                let inv = 1.0 / sc.logit;
                for v in out.iter_mut() {
                    *v *= inv;
                }
            }
        }
        Ok(())
    }
}
