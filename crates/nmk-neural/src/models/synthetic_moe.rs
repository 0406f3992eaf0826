//! Small random-weight mixture-of-experts GGUF files, one per supported MoE architecture:
//! llama/Mixtral, qwen2moe (shared expert, Q/K/V biases), qwen3moe (per-head Q/K norm), olmoe
//! (whole-projection Q/K norm), granitemoe (scalars); F32 or Q8_0 matrices.
//!
//! No pretrained MoE model can be fetched here, so these files are what the mechanisms are
//! proven on for MoE (`nmk model synth`, then `nmk prove --gguf`) and what the engine's MoE
//! tests compare against an independent reference. The weights come from a fixed LCG per seed,
//! so a spec always gives the same bytes. There is no tokenizer section: prove them with token
//! ids.

use crate::gguf::{GgmlType, GgufError, GgufWriter};

/// Deterministic pseudo-random weights in [−1, 1).
#[derive(Debug, Clone)]
pub struct Lcg(pub u64);

impl Lcg {
    /// The next value.
    pub fn next_f32(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    /// `n` values times `scale`.
    pub fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.next_f32() * scale).collect()
    }
}

/// How Q/K norms are laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QkNorm {
    /// None.
    No,
    /// `head_dim` values applied per head (Qwen3-MoE).
    PerHead,
    /// The whole projection width (OLMoE).
    Whole,
}

/// A synthetic MoE model.
#[derive(Clone, Debug)]
pub struct MoeSpec {
    /// `general.architecture`.
    pub arch: &'static str,
    /// Blocks.
    pub n_layer: usize,
    /// Residual width.
    pub d: usize,
    /// Query heads.
    pub n_head: usize,
    /// Key/value heads.
    pub n_kv: usize,
    /// Hidden width of one expert.
    pub ff_exp: usize,
    /// Experts per layer.
    pub n_expert: usize,
    /// Experts used per token.
    pub n_used: usize,
    /// Vocabulary size.
    pub vocab: usize,
    /// Q/K norm layout.
    pub qk_norm: QkNorm,
    /// Q/K/V biases.
    pub bias: bool,
    /// Hidden width of the shared expert, if any.
    pub shared_ff: Option<usize>,
    /// Granite's scalar multipliers.
    pub granite: bool,
    /// Matrices as Q8_0 (else F32).
    pub q8: bool,
    /// Scale of the router weights (0: all experts tie).
    pub router_scale: f32,
    /// Seed of the weights.
    pub seed: u64,
}

impl MoeSpec {
    /// Mixtral-style (`llama` with experts), F32.
    pub fn mixtral() -> MoeSpec {
        MoeSpec {
            arch: "llama",
            n_layer: 2,
            d: 64,
            n_head: 4,
            n_kv: 2,
            ff_exp: 32,
            n_expert: 4,
            n_used: 2,
            vocab: 101,
            qk_norm: QkNorm::No,
            bias: false,
            shared_ff: None,
            granite: false,
            q8: false,
            router_scale: 1.0,
            seed: 7,
        }
    }

    /// Qwen2-MoE, Q8_0 matrices, shared expert and biases.
    pub fn qwen2moe() -> MoeSpec {
        MoeSpec {
            arch: "qwen2moe",
            bias: true,
            shared_ff: Some(64),
            q8: true,
            n_expert: 6,
            n_used: 3,
            seed: 8,
            ..MoeSpec::mixtral()
        }
    }

    /// Qwen3-MoE, per-head Q/K norm, F32.
    pub fn qwen3moe() -> MoeSpec {
        MoeSpec {
            arch: "qwen3moe",
            qk_norm: QkNorm::PerHead,
            n_expert: 8,
            n_used: 2,
            seed: 9,
            ..MoeSpec::mixtral()
        }
    }

    /// OLMoE, whole-width Q/K norm, Q8_0.
    pub fn olmoe() -> MoeSpec {
        MoeSpec {
            arch: "olmoe",
            qk_norm: QkNorm::Whole,
            n_kv: 4,
            q8: true,
            n_expert: 8,
            n_used: 3,
            seed: 10,
            ..MoeSpec::mixtral()
        }
    }

    /// Granite MoE with its scalars, F32.
    pub fn granitemoe() -> MoeSpec {
        MoeSpec {
            arch: "granitemoe",
            granite: true,
            seed: 11,
            ..MoeSpec::mixtral()
        }
    }

    /// The spec of a named architecture (`mixtral`/`llama`, `qwen2moe`, `qwen3moe`, `olmoe`,
    /// `granitemoe`).
    pub fn named(arch: &str) -> Option<MoeSpec> {
        Some(match arch {
            "mixtral" | "llama" => MoeSpec::mixtral(),
            "qwen2moe" => MoeSpec::qwen2moe(),
            "qwen3moe" => MoeSpec::qwen3moe(),
            "olmoe" => MoeSpec::olmoe(),
            "granitemoe" => MoeSpec::granitemoe(),
            _ => return None,
        })
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.d / self.n_head
    }
}

/// A tensor of the fixture: name, ggml dims, data, whether it is a matrix (quantizable).
pub type Tensors = Vec<(String, Vec<u64>, Vec<f32>, bool)>;

/// The tensors of `s`.
pub fn tensors(s: &MoeSpec) -> Tensors {
    let mut r = Lcg(s.seed);
    let hd = s.head_dim();
    let (qd, kvd) = (s.n_head * hd, s.n_kv * hd);
    let (d, ff, v, ne) = (
        s.d as u64,
        s.ff_exp as u64,
        s.vocab as u64,
        s.n_expert as u64,
    );
    let mut t: Tensors = Vec::new();
    let norm =
        |r: &mut Lcg, n: usize| -> Vec<f32> { (0..n).map(|_| 1.0 + 0.2 * r.next_f32()).collect() };
    t.push((
        "token_embd.weight".into(),
        vec![d, v],
        r.vec(s.d * s.vocab, 1.0),
        true,
    ));
    for l in 0..s.n_layer {
        let n = |x: &str| format!("blk.{l}.{x}");
        t.push((n("attn_norm.weight"), vec![d], norm(&mut r, s.d), false));
        t.push((
            n("attn_q.weight"),
            vec![d, qd as u64],
            r.vec(s.d * qd, 0.3),
            true,
        ));
        t.push((
            n("attn_k.weight"),
            vec![d, kvd as u64],
            r.vec(s.d * kvd, 0.3),
            true,
        ));
        t.push((
            n("attn_v.weight"),
            vec![d, kvd as u64],
            r.vec(s.d * kvd, 0.3),
            true,
        ));
        if s.bias {
            t.push((n("attn_q.bias"), vec![qd as u64], r.vec(qd, 0.1), false));
            t.push((n("attn_k.bias"), vec![kvd as u64], r.vec(kvd, 0.1), false));
            t.push((n("attn_v.bias"), vec![kvd as u64], r.vec(kvd, 0.1), false));
        }
        match s.qk_norm {
            QkNorm::No => {}
            QkNorm::PerHead => {
                t.push((
                    n("attn_q_norm.weight"),
                    vec![hd as u64],
                    norm(&mut r, hd),
                    false,
                ));
                t.push((
                    n("attn_k_norm.weight"),
                    vec![hd as u64],
                    norm(&mut r, hd),
                    false,
                ));
            }
            QkNorm::Whole => {
                t.push((
                    n("attn_q_norm.weight"),
                    vec![qd as u64],
                    norm(&mut r, qd),
                    false,
                ));
                t.push((
                    n("attn_k_norm.weight"),
                    vec![kvd as u64],
                    norm(&mut r, kvd),
                    false,
                ));
            }
        }
        t.push((
            n("attn_output.weight"),
            vec![qd as u64, d],
            r.vec(qd * s.d, 0.3),
            true,
        ));
        t.push((n("ffn_norm.weight"), vec![d], norm(&mut r, s.d), false));
        t.push((
            n("ffn_gate_inp.weight"),
            vec![d, ne],
            r.vec(s.d * s.n_expert, s.router_scale),
            false,
        ));
        let ex = s.d * s.ff_exp * s.n_expert;
        t.push((
            n("ffn_gate_exps.weight"),
            vec![d, ff, ne],
            r.vec(ex, 0.3),
            true,
        ));
        t.push((
            n("ffn_up_exps.weight"),
            vec![d, ff, ne],
            r.vec(ex, 0.3),
            true,
        ));
        t.push((
            n("ffn_down_exps.weight"),
            vec![ff, d, ne],
            r.vec(ex, 0.3),
            true,
        ));
        if let Some(sff) = s.shared_ff {
            let sf = sff as u64;
            t.push((
                n("ffn_gate_shexp.weight"),
                vec![d, sf],
                r.vec(s.d * sff, 0.3),
                true,
            ));
            t.push((
                n("ffn_up_shexp.weight"),
                vec![d, sf],
                r.vec(s.d * sff, 0.3),
                true,
            ));
            t.push((
                n("ffn_down_shexp.weight"),
                vec![sf, d],
                r.vec(s.d * sff, 0.3),
                true,
            ));
            t.push((
                n("ffn_gate_inp_shexp.weight"),
                vec![d],
                r.vec(s.d, 0.5),
                false,
            ));
        }
    }
    t.push((
        "output_norm.weight".into(),
        vec![d],
        norm(&mut r, s.d),
        false,
    ));
    t.push((
        "output.weight".into(),
        vec![d, v],
        r.vec(s.d * s.vocab, 0.5),
        true,
    ));
    t
}

/// The metadata of `s` (edit it, then add tensors with [`add_tensors`]).
pub fn metadata(s: &MoeSpec) -> Result<GgufWriter, GgufError> {
    let mut w = GgufWriter::new();
    let a = s.arch;
    w.add("general.architecture", a)?;
    w.add(format!("{a}.block_count"), s.n_layer as u32)?;
    w.add(format!("{a}.context_length"), 256u32)?;
    w.add(format!("{a}.embedding_length"), s.d as u32)?;
    // llama.cpp sizes the experts of `llama` (Mixtral) by `feed_forward_length` (its loader
    // refuses the file otherwise) and loads `olmoe` files written this way; the Qwen MoEs read
    // `expert_feed_forward_length`. Where both keys are written they agree, so the file means
    // the same thing to both engines.
    let ff = if matches!(a, "qwen2moe" | "qwen3moe") {
        4 * s.d
    } else {
        s.ff_exp
    };
    w.add(format!("{a}.feed_forward_length"), ff as u32)?;
    w.add(format!("{a}.expert_feed_forward_length"), s.ff_exp as u32)?;
    if let Some(sff) = s.shared_ff {
        w.add(format!("{a}.expert_shared_feed_forward_length"), sff as u32)?;
    }
    w.add(format!("{a}.expert_count"), s.n_expert as u32)?;
    w.add(format!("{a}.expert_used_count"), s.n_used as u32)?;
    w.add(format!("{a}.attention.head_count"), s.n_head as u32)?;
    w.add(format!("{a}.attention.head_count_kv"), s.n_kv as u32)?;
    w.add(format!("{a}.rope.freq_base"), 10_000f32)?;
    w.add(format!("{a}.attention.layer_norm_rms_epsilon"), 1e-5f32)?;
    if s.granite {
        w.add(format!("{a}.embedding_scale"), 12.0f32)?;
        w.add(format!("{a}.residual_scale"), 0.22f32)?;
        w.add(format!("{a}.attention.scale"), 0.015625f32)?;
        w.add(format!("{a}.logit_scale"), 6.0f32)?;
    }
    Ok(w)
}

/// Adds the tensors (matrices as Q8_0 when `q8`).
pub fn add_tensors(w: &mut GgufWriter, t: &Tensors, q8: bool) -> Result<(), GgufError> {
    for (name, dims, data, matrix) in t {
        if q8 && *matrix {
            let bytes =
                crate::quant::quantize(GgmlType::Q8_0, data, dims[0] as usize).map_err(|e| {
                    GgufError::InvalidTensor {
                        name: name.clone(),
                        reason: e.to_string(),
                    }
                })?;
            w.add_tensor_raw(name.clone(), dims, GgmlType::Q8_0, bytes)?;
        } else {
            w.add_tensor_f32(name.clone(), dims, data)?;
        }
    }
    Ok(())
}

/// The whole file.
pub fn write(s: &MoeSpec) -> Result<Vec<u8>, GgufError> {
    let mut w = metadata(s)?;
    add_tensors(&mut w, &tensors(s), s.q8)?;
    w.to_bytes()
}
