//! The weights of a dense decoder, loaded over the shared memory map of the GGUF file.
//!
//! Every tensor's shape is checked against the [`ModelConfig`] before use; norms and biases are
//! read as f32, matrices stay in their file format (see [`super::linear`]).

use std::sync::Arc;

use crate::gguf::GgufFile;

use super::config::ModelConfig;
use super::error::Result;
use super::linear::{Embedding, Linear, load_f32};

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
            layers.push(LayerWeights {
                attn_norm: load_f32(file, &n("attn_norm.weight"), &[du])?,
                wq: Linear::load(file, &n("attn_q.weight"), d, cfg.q_dim())?,
                wk: Linear::load(file, &n("attn_k.weight"), d, cfg.kv_dim())?,
                wv: Linear::load(file, &n("attn_v.weight"), d, cfg.kv_dim())?,
                qkv_bias,
                wo: Linear::load(file, &n("attn_output.weight"), cfg.q_dim(), d)?,
                ffn_norm: load_f32(file, &n("ffn_norm.weight"), &[du])?,
                ffn: Ffn::Dense {
                    gate: Linear::load(file, &n("ffn_gate.weight"), d, cfg.n_ff)?,
                    up: Linear::load(file, &n("ffn_up.weight"), d, cfg.n_ff)?,
                    down: Linear::load(file, &n("ffn_down.weight"), cfg.n_ff, d)?,
                },
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
