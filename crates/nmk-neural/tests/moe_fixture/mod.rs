//! Writes small random-weight mixture-of-experts GGUFs (F32 or Q8_0 matrices) for the engine
//! tests: llama/Mixtral, qwen2moe (shared expert, Q/K/V biases), qwen3moe (per-head Q/K norm),
//! olmoe (whole-projection Q/K norm), granitemoe (scalars). No tokenizer section: the engine
//! does not need one.
#![allow(dead_code)]

pub use crate::common::Lcg;
use nmk_neural::gguf::{GgmlType, GgufWriter};

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
    pub arch: &'static str,
    pub n_layer: usize,
    pub d: usize,
    pub n_head: usize,
    pub n_kv: usize,
    pub ff_exp: usize,
    pub n_expert: usize,
    pub n_used: usize,
    pub vocab: usize,
    pub qk_norm: QkNorm,
    pub bias: bool,
    pub shared_ff: Option<usize>,
    pub granite: bool,
    pub q8: bool,
    /// Scale of the router weights (0: all experts tie).
    pub router_scale: f32,
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
        |r: &mut Lcg, n: usize| -> Vec<f32> { (0..n).map(|_| 1.0 + 0.2 * r.next()).collect() };
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
pub fn metadata(s: &MoeSpec) -> GgufWriter {
    let mut w = GgufWriter::new();
    let a = s.arch;
    w.add("general.architecture", a).unwrap();
    w.add(format!("{a}.block_count"), s.n_layer as u32).unwrap();
    w.add(format!("{a}.context_length"), 256u32).unwrap();
    w.add(format!("{a}.embedding_length"), s.d as u32).unwrap();
    w.add(format!("{a}.feed_forward_length"), 4 * s.d as u32)
        .unwrap();
    w.add(format!("{a}.expert_feed_forward_length"), s.ff_exp as u32)
        .unwrap();
    if let Some(sff) = s.shared_ff {
        w.add(format!("{a}.expert_shared_feed_forward_length"), sff as u32)
            .unwrap();
    }
    w.add(format!("{a}.expert_count"), s.n_expert as u32)
        .unwrap();
    w.add(format!("{a}.expert_used_count"), s.n_used as u32)
        .unwrap();
    w.add(format!("{a}.attention.head_count"), s.n_head as u32)
        .unwrap();
    w.add(format!("{a}.attention.head_count_kv"), s.n_kv as u32)
        .unwrap();
    w.add(format!("{a}.rope.freq_base"), 10_000f32).unwrap();
    w.add(format!("{a}.attention.layer_norm_rms_epsilon"), 1e-5f32)
        .unwrap();
    if s.granite {
        w.add(format!("{a}.embedding_scale"), 12.0f32).unwrap();
        w.add(format!("{a}.residual_scale"), 0.22f32).unwrap();
        w.add(format!("{a}.attention.scale"), 0.015625f32).unwrap();
        w.add(format!("{a}.logit_scale"), 6.0f32).unwrap();
    }
    w
}

/// Adds the tensors (matrices as Q8_0 when `q8`).
pub fn add_tensors(w: &mut GgufWriter, t: &Tensors, q8: bool) {
    for (name, dims, data, matrix) in t {
        if q8 && *matrix {
            let bytes =
                nmk_neural::quant::quantize(GgmlType::Q8_0, data, dims[0] as usize).unwrap();
            w.add_tensor_raw(name.clone(), dims, GgmlType::Q8_0, bytes)
                .unwrap();
        } else {
            w.add_tensor_f32(name.clone(), dims, data).unwrap();
        }
    }
}

/// The whole file.
pub fn write(s: &MoeSpec) -> Vec<u8> {
    let mut w = metadata(s);
    add_tensors(&mut w, &tensors(s), s.q8);
    w.to_bytes().unwrap()
}

/// The reference's view of `s`, derived from the spec (not from the engine's config parsing):
/// NeoX RoPE and unnormalised top-k follow llama.cpp's per-architecture tables.
pub fn reference_config(s: &MoeSpec) -> crate::common::reference::Config {
    use crate::common::reference::{Config, Routing};
    let hd = s.head_dim();
    let neox = matches!(s.arch, "qwen2moe" | "qwen3moe" | "olmoe");
    let mut c = Config::dense(
        s.n_layer, s.d, s.n_head, s.n_kv, hd, s.vocab, 1e-5, 10_000.0, neox,
    );
    if s.granite {
        c.embedding_scale = 12.0;
        c.residual_scale = f64::from(0.22f32);
        c.attention_scale = 0.015625;
        c.logit_scale = 6.0;
    }
    c.moe = Some(Routing {
        n_used: s.n_used,
        norm_topk: matches!(s.arch, "llama" | "qwen3moe" | "granitemoe"),
    });
    c
}
