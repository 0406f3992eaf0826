//! The weights of a decoder (dense or mixture-of-experts), loaded over the shared memory map of the GGUF file.
//!
//! Every tensor's shape is checked against the [`ModelConfig`] before use; norms and biases are
//! read as f32, matrices stay in their file format (see [`super::linear`]).

use std::sync::Arc;

use crate::gguf::GgufFile;

use super::config::ModelConfig;
use super::error::{EngineError, Result};
use super::linear::{Embedding, Linear, load_f32};
use super::moe::{Expert, MoeFfn, SharedExpert};

/// Weights of one transformer block.
#[derive(Debug)]
pub struct LayerWeights {
    /// RMSNorm weight before attention.
    pub attn_norm: Vec<f32>,
    /// Query projection.
    pub wq: Linear,
    /// Key projection.
    pub wk: Linear,
    /// Value projection.
    pub wv: Linear,
    /// Query, key and value biases (Qwen2).
    pub qkv_bias: Option<[Vec<f32>; 3]>,
    /// Query and key RMSNorm weights (Qwen3-MoE: `head_dim` values, applied per head; OLMoE:
    /// the whole projection width).
    pub qk_norm: Option<[Vec<f32>; 2]>,
    /// Attention output projection.
    pub wo: Linear,
    /// RMSNorm weight before the feed-forward network.
    pub ffn_norm: Vec<f32>,
    /// The feed-forward network.
    pub ffn: Ffn,
}

/// A block's feed-forward network.
#[derive(Debug)]
#[non_exhaustive]
pub enum Ffn {
    /// SwiGLU: `down(silu(gate x) · up x)`.
    Dense {
        /// Gate projection.
        gate: Linear,
        /// Up projection.
        up: Linear,
        /// Down projection.
        down: Linear,
    },
    /// A routed mixture of SwiGLU experts (see [`super::moe`]).
    Moe(MoeFfn),
}

/// All weights of a model.
#[derive(Debug)]
pub struct ModelWeights {
    /// Token embeddings.
    pub embedding: Embedding,
    /// Blocks.
    pub layers: Vec<LayerWeights>,
    /// Final RMSNorm weight.
    pub output_norm: Vec<f32>,
    /// Output head (the embedding matrix when tied).
    pub output: Linear,
}

impl ModelWeights {
    /// Loads and shape-checks every tensor the configuration calls for.
    pub fn load(file: &Arc<GgufFile>, cfg: &ModelConfig) -> Result<ModelWeights> {
        let d = cfg.n_embd;
        let du = d as u64;
        let embedding = Embedding::load(file, "token_embd.weight", d, cfg.n_vocab)?;
        let mut layers = Vec::with_capacity(cfg.n_layer);
        for l in 0..cfg.n_layer {
            let n = |s: &str| format!("blk.{l}.{s}");
            let qkv_bias = if cfg.qkv_bias {
                Some([
                    load_f32(file, &n("attn_q.bias"), &[cfg.q_dim() as u64])?,
                    load_f32(file, &n("attn_k.bias"), &[cfg.kv_dim() as u64])?,
                    load_f32(file, &n("attn_v.bias"), &[cfg.kv_dim() as u64])?,
                ])
            } else {
                None
            };
            let qk_norm = if cfg.qk_norm {
                Some([
                    load_norm(file, &n("attn_q_norm.weight"), cfg.head_dim, cfg.q_dim())?,
                    load_norm(file, &n("attn_k_norm.weight"), cfg.head_dim, cfg.kv_dim())?,
                ])
            } else {
                None
            };
            let ffn = match &cfg.moe {
                None => Ffn::Dense {
                    gate: Linear::load(file, &n("ffn_gate.weight"), d, cfg.n_ff)?,
                    up: Linear::load(file, &n("ffn_up.weight"), d, cfg.n_ff)?,
                    down: Linear::load(file, &n("ffn_down.weight"), cfg.n_ff, d)?,
                },
                Some(mc) => {
                    let (ne, ff) = (mc.n_expert, mc.n_ff_exp);
                    let gates = Linear::load_experts(file, &n("ffn_gate_exps.weight"), d, ff, ne)?;
                    let ups = Linear::load_experts(file, &n("ffn_up_exps.weight"), d, ff, ne)?;
                    let downs = Linear::load_experts(file, &n("ffn_down_exps.weight"), ff, d, ne)?;
                    let experts = gates
                        .into_iter()
                        .zip(ups)
                        .zip(downs)
                        .map(|((gate, up), down)| Expert { gate, up, down })
                        .collect();
                    let shared = match mc.n_ff_shexp {
                        None => None,
                        Some(sff) => Some(SharedExpert {
                            expert: Expert {
                                gate: Linear::load(file, &n("ffn_gate_shexp.weight"), d, sff)?,
                                up: Linear::load(file, &n("ffn_up_shexp.weight"), d, sff)?,
                                down: Linear::load(file, &n("ffn_down_shexp.weight"), sff, d)?,
                            },
                            gate_inp: load_f32(file, &n("ffn_gate_inp_shexp.weight"), &[du])?,
                        }),
                    };
                    Ffn::Moe(MoeFfn {
                        router: Linear::load(file, &n("ffn_gate_inp.weight"), d, ne)?,
                        experts,
                        shared,
                    })
                }
            };
            layers.push(LayerWeights {
                attn_norm: load_f32(file, &n("attn_norm.weight"), &[du])?,
                wq: Linear::load(file, &n("attn_q.weight"), d, cfg.q_dim())?,
                wk: Linear::load(file, &n("attn_k.weight"), d, cfg.kv_dim())?,
                wv: Linear::load(file, &n("attn_v.weight"), d, cfg.kv_dim())?,
                qkv_bias,
                wo: Linear::load(file, &n("attn_output.weight"), cfg.q_dim(), d)?,
                ffn_norm: load_f32(file, &n("ffn_norm.weight"), &[du])?,
                qk_norm,
                ffn,
            });
        }
        let output_norm = load_f32(file, "output_norm.weight", &[du])?;
        let output = if cfg.tied_output {
            embedding.as_linear()
        } else {
            Linear::load(file, "output.weight", d, cfg.n_vocab)?
        };
        Ok(ModelWeights {
            embedding,
            layers,
            output_norm,
            output,
        })
    }
}

/// A Q/K norm weight: `per_head` values (applied to each head) or `whole` values (applied to
/// the whole projection).
fn load_norm(file: &Arc<GgufFile>, name: &str, per_head: usize, whole: usize) -> Result<Vec<f32>> {
    let found = file.tensor(name)?.dims().to_vec();
    let len = if found == [per_head as u64] {
        per_head
    } else {
        whole
    };
    load_f32(file, name, &[len as u64]).map_err(|e| match e {
        EngineError::TensorShape { name, found, .. } => EngineError::TensorShape {
            name,
            found,
            expected: vec![per_head as u64],
        },
        other => other,
    })
}
