//! [`ModelConfig`]: the hyper-parameters of a model, read from GGUF metadata and validated.
//!
//! Keys follow llama.cpp's conventions (`{arch}.block_count`, `{arch}.attention.head_count`, …).
//! Every value is range-checked so that a hostile file cannot make later code divide by zero,
//! overflow an index or allocate without bound; combinations (heads × head dim, GQA grouping,
//! rotary dimensions) are checked against each other. Tensor shapes are checked against this
//! configuration when the weights are loaded.

use crate::gguf::Metadata;

use super::error::{EngineError, Result};

/// Upper bounds on hyper-parameters: generous for real models, small enough that no product
/// of them overflows and that buffers sized from them stay reasonable.
mod caps {
    pub const LAYERS: u32 = 512;
    pub const EMBD: u32 = 65_536;
    pub const FF: u32 = 1 << 20;
    pub const HEADS: u32 = 1024;
    pub const HEAD_DIM: u32 = 1024;
    pub const VOCAB: u32 = 1 << 22;
    pub const CONTEXT: u32 = 1 << 24;
    pub const EXPERTS: u32 = 1024;
}

/// The model family, from `general.architecture`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Arch {
    /// Llama (and Mixtral, which GGUF stores as `llama` with experts).
    Llama,
    /// Qwen2 (dense, biased Q/K/V projections).
    Qwen2,
    /// Qwen2-MoE: softmax router, top-k without renormalisation, plus a shared expert gated
    /// by a sigmoid.
    Qwen2Moe,
    /// Qwen3-MoE: per-head Q/K RMSNorm, softmax router, top-k renormalised.
    Qwen3Moe,
    /// OLMoE: Q/K RMSNorm over the whole projection, softmax over all experts, top-k without
    /// renormalisation.
    Olmoe,
    /// Granite MoE: llama layout with embedding, residual, attention and logit scalars; top-k
    /// renormalised.
    GraniteMoe,
}

impl Arch {
    /// Parses a `general.architecture` string.
    pub fn parse(s: &str) -> Option<Arch> {
        Some(match s {
            "llama" => Arch::Llama,
            "qwen2" => Arch::Qwen2,
            "qwen2moe" => Arch::Qwen2Moe,
            "qwen3moe" => Arch::Qwen3Moe,
            "olmoe" => Arch::Olmoe,
            "granitemoe" => Arch::GraniteMoe,
            _ => return None,
        })
    }

    /// The metadata key prefix (`llama`, `qwen2`, …).
    pub fn key_prefix(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Qwen2 => "qwen2",
            Arch::Qwen2Moe => "qwen2moe",
            Arch::Qwen3Moe => "qwen3moe",
            Arch::Olmoe => "olmoe",
            Arch::GraniteMoe => "granitemoe",
        }
    }

    /// The rotary embedding layout llama.cpp uses for this architecture.
    pub fn rope_style(self) -> RopeStyle {
        match self {
            Arch::Llama | Arch::GraniteMoe => RopeStyle::Normal,
            Arch::Qwen2 | Arch::Qwen2Moe | Arch::Qwen3Moe | Arch::Olmoe => RopeStyle::Neox,
        }
    }
}

/// How rotary position embedding pairs up the dimensions of a head.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RopeStyle {
    /// llama.cpp `LLAMA_ROPE_TYPE_NORM`: adjacent pairs `(x[2i], x[2i+1])` (GGUF converters
    /// permute llama's Q/K weights so that this matches the original model).
    Normal,
    /// llama.cpp `LLAMA_ROPE_TYPE_NEOX`: pairs `(x[i], x[i + n_rot/2])`.
    Neox,
}

/// Mixture-of-experts hyper-parameters.
///
/// Routing (llama.cpp's `build_moe_ffn` with softmax gating): router logits → softmax over all
/// experts → top-`n_expert_used` (ties to the lower expert index; experts forbidden by the
/// [`super::ExpertMask`] are excluded) → optionally renormalised to sum 1 (`norm_topk`).
#[derive(Debug, Clone, PartialEq)]
pub struct MoeConfig {
    /// Experts per MoE layer (`{arch}.expert_count`).
    pub n_expert: usize,
    /// Experts used per token (`{arch}.expert_used_count`).
    pub n_expert_used: usize,
    /// Hidden width of one expert (`{arch}.expert_feed_forward_length`, else
    /// `{arch}.feed_forward_length`).
    pub n_ff_exp: usize,
    /// Whether the chosen experts' weights are renormalised to sum 1 (llama/Mixtral, Qwen3-MoE,
    /// Granite: yes; Qwen2-MoE, OLMoE: no; `{arch}.expert_weights_norm` overrides).
    pub norm_topk: bool,
    /// Hidden width of the sigmoid-gated shared expert (Qwen2-MoE), if any.
    pub n_ff_shexp: Option<usize>,
}

/// Granite's scalar multipliers (all 1 / `None` for other architectures).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scales {
    /// Multiplies the token embeddings (`{arch}.embedding_scale`).
    pub embedding: f32,
    /// Multiplies each block's attention and FFN outputs before the residual add
    /// (`{arch}.residual_scale`).
    pub residual: f32,
    /// Replaces `1/√head_dim` as the attention score scale (`{arch}.attention.scale`).
    pub attention: Option<f32>,
    /// Logits are multiplied by `1 / logit` (`{arch}.logit_scale`).
    pub logit: f32,
}

impl Default for Scales {
    fn default() -> Scales {
        Scales {
            embedding: 1.0,
            residual: 1.0,
            attention: None,
            logit: 1.0,
        }
    }
}

/// The validated hyper-parameters of a model.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    /// Architecture.
    pub arch: Arch,
    /// Number of transformer blocks.
    pub n_layer: usize,
    /// Width of the residual stream.
    pub n_embd: usize,
    /// Hidden width of the dense feed-forward network.
    pub n_ff: usize,
    /// Query heads.
    pub n_head: usize,
    /// Key/value heads (grouped-query attention when below `n_head`).
    pub n_head_kv: usize,
    /// Dimension of one head (keys, queries and values).
    pub head_dim: usize,
    /// Dimensions of each head that are rotated (even, at most `head_dim`).
    pub n_rot: usize,
    /// RoPE frequency base.
    pub rope_freq_base: f32,
    /// RoPE position scale (1 / linear scaling factor; 1.0 without scaling).
    pub rope_freq_scale: f32,
    /// RoPE pairing.
    pub rope_style: RopeStyle,
    /// RMSNorm epsilon.
    pub rms_eps: f32,
    /// Context length the model was trained for.
    pub n_ctx_train: usize,
    /// Vocabulary size (rows of the embedding matrix).
    pub n_vocab: usize,
    /// True when the file has no `output.weight` and the embedding matrix is the output head.
    pub tied_output: bool,
    /// True when Q/K/V projections carry biases (`blk.N.attn_{q,k,v}.bias`).
    pub qkv_bias: bool,
    /// Mixture-of-experts parameters, `None` for a dense model.
    pub moe: Option<MoeConfig>,
    /// True when blocks carry Q/K RMSNorm weights (`attn_q_norm`, `attn_k_norm`; per head when
    /// the weight has `head_dim` values, over the whole projection otherwise).
    pub qk_norm: bool,
    /// Granite scalars.
    pub scales: Scales,
}

impl ModelConfig {
    /// Width of the concatenated query heads (`n_head × head_dim`).
    pub fn q_dim(&self) -> usize {
        self.n_head * self.head_dim
    }

    /// Width of the concatenated key (or value) heads (`n_head_kv × head_dim`).
    pub fn kv_dim(&self) -> usize {
        self.n_head_kv * self.head_dim
    }

    /// Reads and validates the configuration. `tensor_names` tells whether `output.weight` and
    /// the Q/K/V biases exist; `n_vocab_tensor` is the row count of `token_embd.weight`.
    pub fn from_metadata(
        md: &Metadata,
        has_tensor: &dyn Fn(&str) -> bool,
        n_vocab_tensor: u64,
    ) -> Result<ModelConfig> {
        let arch_name = md.get_str("general.architecture")?;
        let arch = Arch::parse(arch_name).ok_or_else(|| EngineError::UnsupportedArchitecture {
            arch: arch_name.to_owned(),
            reason: "not one of llama, qwen2, qwen2moe, qwen3moe, olmoe, granitemoe".to_owned(),
        })?;
        let p = arch.key_prefix();
        let key = |k: &str| format!("{p}.{k}");

        let n_layer = ranged(md, &key("block_count"), 1, caps::LAYERS)?;
        let n_embd = ranged(md, &key("embedding_length"), 1, caps::EMBD)?;
        let n_head = ranged(md, &key("attention.head_count"), 1, caps::HEADS)?;
        let n_head_kv = match md.opt_u32(&key("attention.head_count_kv"))? {
            None => n_head,
            Some(_) => ranged(md, &key("attention.head_count_kv"), 1, caps::HEADS)?,
        };
        if n_head % n_head_kv != 0 {
            return Err(invalid(
                &key("attention.head_count_kv"),
                format!("{n_head} query heads are not a multiple of {n_head_kv} kv heads"),
            ));
        }
        let head_dim = match md.opt_u32(&key("attention.key_length"))? {
            Some(_) => ranged(md, &key("attention.key_length"), 1, caps::HEAD_DIM)?,
            None => {
                if n_embd % n_head != 0 {
                    return Err(invalid(
                        &key("embedding_length"),
                        format!("{n_embd} is not a multiple of {n_head} heads"),
                    ));
                }
                n_embd / n_head
            }
        };
        if head_dim == 0 || head_dim > caps::HEAD_DIM as usize {
            return Err(invalid(
                &key("attention.head_count"),
                format!("head dimension {head_dim} is out of range"),
            ));
        }
        if let Some(v) = md.opt_u32(&key("attention.value_length"))?
            && v as usize != head_dim
        {
            return Err(invalid(
                &key("attention.value_length"),
                format!("{v} differs from the key length {head_dim} (unsupported)"),
            ));
        }
        let n_rot = match md.opt_u32(&key("rope.dimension_count"))? {
            Some(v) => v as usize,
            None => head_dim,
        };
        if n_rot == 0 || n_rot > head_dim || n_rot % 2 != 0 {
            return Err(invalid(
                &key("rope.dimension_count"),
                format!("{n_rot} must be even and in 2..={head_dim}"),
            ));
        }
        let rope_freq_base = md.opt_f32(&key("rope.freq_base"))?.unwrap_or(10_000.0);
        if !(rope_freq_base.is_finite() && rope_freq_base > 1.0) {
            return Err(invalid(
                &key("rope.freq_base"),
                format!("{rope_freq_base} must be finite and above 1"),
            ));
        }
        let rope_freq_scale = rope_scale(md, p)?;
        let rms_eps = md.get_f32(&key("attention.layer_norm_rms_epsilon"))?;
        if !(rms_eps.is_finite() && rms_eps > 0.0 && rms_eps < 1.0) {
            return Err(invalid(
                &key("attention.layer_norm_rms_epsilon"),
                format!("{rms_eps} must be finite and in (0, 1)"),
            ));
        }
        let n_ctx_train = ranged(md, &key("context_length"), 1, caps::CONTEXT)?;

        if n_vocab_tensor == 0 || n_vocab_tensor > u64::from(caps::VOCAB) {
            return Err(invalid(
                "token_embd.weight",
                format!("{n_vocab_tensor} rows is out of range"),
            ));
        }
        let n_vocab = n_vocab_tensor as usize;
        if let Some(v) = md.opt_u32(&key("vocab_size"))?
            && v as usize != n_vocab
        {
            return Err(invalid(
                &key("vocab_size"),
                format!("{v} differs from the embedding's {n_vocab} rows"),
            ));
        }

        let n_expert = md.opt_u32(&key("expert_count"))?.unwrap_or(0);
        let is_moe_arch = matches!(
            arch,
            Arch::Qwen2Moe | Arch::Qwen3Moe | Arch::Olmoe | Arch::GraniteMoe
        );
        if is_moe_arch && n_expert == 0 {
            return Err(invalid(
                &key("expert_count"),
                "a mixture-of-experts architecture needs at least one expert".to_owned(),
            ));
        }
        let (moe, n_ff) = if n_expert > 0 {
            if n_expert > caps::EXPERTS {
                return Err(invalid(
                    &key("expert_count"),
                    format!("{n_expert} is above {}", caps::EXPERTS),
                ));
            }
            // llama.cpp's gating function ids: 1 = softmax (what we implement), 2 = sigmoid.
            // Anything else would silently run with the wrong routing, so it is refused.
            if let Some(gating) = md.opt_u32(&key("expert_gating_func"))?
                && gating != 1
            {
                return Err(invalid(
                    &key("expert_gating_func"),
                    format!("gating function {gating} is not supported (only softmax, 1)"),
                ));
            }
            let used = ranged(md, &key("expert_used_count"), 1, n_expert)?;
            let n_ff_exp = match md.opt_u32(&key("expert_feed_forward_length"))? {
                Some(_) => ranged(md, &key("expert_feed_forward_length"), 1, caps::FF)?,
                None => ranged(md, &key("feed_forward_length"), 1, caps::FF)?,
            };
            let n_ff_shexp = if arch == Arch::Qwen2Moe {
                Some(
                    match md.opt_u32(&key("expert_shared_feed_forward_length"))? {
                        Some(_) => {
                            ranged(md, &key("expert_shared_feed_forward_length"), 1, caps::FF)?
                        }
                        None => n_ff_exp,
                    },
                )
            } else {
                None
            };
            let default_norm = !matches!(arch, Arch::Qwen2Moe | Arch::Olmoe);
            let norm_topk = md
                .opt_bool(&key("expert_weights_norm"))?
                .unwrap_or(default_norm);
            let n_ff = n_ff_exp.max(n_ff_shexp.unwrap_or(0));
            (
                Some(MoeConfig {
                    n_expert: n_expert as usize,
                    n_expert_used: used,
                    n_ff_exp,
                    norm_topk,
                    n_ff_shexp,
                }),
                n_ff,
            )
        } else {
            (None, ranged(md, &key("feed_forward_length"), 1, caps::FF)?)
        };
        let scales = if arch == Arch::GraniteMoe {
            let scalar = |k: &str| -> Result<Option<f32>> {
                let full = key(k);
                match md.opt_f32(&full)? {
                    None => Ok(None),
                    Some(v) if v.is_finite() && v > 0.0 && v < 1e6 => Ok(Some(v)),
                    Some(v) => Err(invalid(&full, format!("{v} must be finite and positive"))),
                }
            };
            Scales {
                embedding: scalar("embedding_scale")?.unwrap_or(1.0),
                residual: scalar("residual_scale")?.unwrap_or(1.0),
                attention: scalar("attention.scale")?,
                logit: scalar("logit_scale")?.unwrap_or(1.0),
            }
        } else {
            Scales::default()
        };

        let tied_output = !has_tensor("output.weight");
        let qkv_bias = has_tensor("blk.0.attn_q.bias");
        let qk_norm = has_tensor("blk.0.attn_q_norm.weight");
        Ok(ModelConfig {
            arch,
            n_layer,
            n_embd,
            n_ff,
            n_head,
            n_head_kv,
            head_dim,
            n_rot,
            rope_freq_base,
            rope_freq_scale,
            rope_style: arch.rope_style(),
            rms_eps,
            n_ctx_train,
            n_vocab,
            tied_output,
            qkv_bias,
            moe,
            qk_norm,
            scales,
        })
    }
}

fn invalid(key: &str, reason: String) -> EngineError {
    EngineError::InvalidConfig {
        key: key.to_owned(),
        reason,
    }
}

/// A required u32 key within `[lo, hi]`, as usize.
fn ranged(md: &Metadata, key: &str, lo: u32, hi: u32) -> Result<usize> {
    let v = md.get_u32(key)?;
    if v < lo || v > hi {
        return Err(invalid(key, format!("{v} is outside {lo}..={hi}")));
    }
    Ok(v as usize)
}

/// The RoPE position scale from `{arch}.rope.scaling.*` (only none and linear are supported).
fn rope_scale(md: &Metadata, p: &str) -> Result<f32> {
    let ty_key = format!("{p}.rope.scaling.type");
    let factor_key = format!("{p}.rope.scaling.factor");
    let ty = md.opt_str(&ty_key)?.unwrap_or("none");
    match ty {
        "none" => Ok(1.0),
        "linear" => {
            let f = md.opt_f32(&factor_key)?.unwrap_or(1.0);
            if !(f.is_finite() && (1.0..=1024.0).contains(&f)) {
                return Err(invalid(&factor_key, format!("{f} must be in 1..=1024")));
            }
            Ok(1.0 / f)
        }
        other => Err(invalid(
            &ty_key,
            format!("rope scaling {other:?} is not supported (none, linear)"),
        )),
    }
}
