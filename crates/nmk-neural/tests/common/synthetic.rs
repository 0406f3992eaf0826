//! Small synthetic dense F32 models (llama / qwen2 shapes) written by a fixture, and the session
//! helpers the tests that drive them share.
#![allow(dead_code)]

use std::sync::Arc;

use nmk_neural::engine::{Model, SessionOptions};
use nmk_neural::gguf::{GgufFile, GgufWriter};

use super::Lcg;

/// The shape of a synthetic dense model.
#[derive(Clone, Debug)]
pub struct Spec {
    pub arch: &'static str,
    pub n_layer: usize,
    pub d: usize,
    pub n_head: usize,
    pub n_kv: usize,
    pub ff: usize,
    pub vocab: usize,
    pub tied: bool,
    pub bias: bool,
    pub rope_base: f32,
}

/// A 3-layer llama with grouped-query attention and tied embeddings.
pub fn llama_spec() -> Spec {
    Spec {
        arch: "llama",
        n_layer: 3,
        d: 64,
        n_head: 4,
        n_kv: 2,
        ff: 96,
        vocab: 101,
        tied: true,
        bias: false,
        rope_base: 10_000.0,
    }
}

/// The llama shape as qwen2: untied output, QKV biases, a larger RoPE base.
pub fn qwen_spec() -> Spec {
    Spec {
        arch: "qwen2",
        tied: false,
        bias: true,
        rope_base: 1_000_000.0,
        ..llama_spec()
    }
}

/// All tensors by name: (ggml dims, data).
pub type Tensors = Vec<(String, Vec<u64>, Vec<f32>)>;

/// The spec's tensors, filled from a fixed-seed [`Lcg`].
pub fn tensors(s: &Spec) -> Tensors {
    let mut r = Lcg(42);
    let hd = s.d / s.n_head;
    let (qd, kvd) = (s.n_head * hd, s.n_kv * hd);
    let mut t: Tensors = Vec::new();
    let mut add = |name: String, dims: Vec<u64>, data: Vec<f32>| t.push((name, dims, data));
    let (d, ff, v) = (s.d as u64, s.ff as u64, s.vocab as u64);
    add(
        "token_embd.weight".into(),
        vec![d, v],
        r.vec(s.d * s.vocab, 1.0),
    );
    for l in 0..s.n_layer {
        let n = |x: &str| format!("blk.{l}.{x}");
        let norm = |r: &mut Lcg| {
            (0..s.d)
                .map(|_| 1.0 + 0.1 * r.next_f32())
                .collect::<Vec<_>>()
        };
        add(n("attn_norm.weight"), vec![d], norm(&mut r));
        add(n("attn_q.weight"), vec![d, qd as u64], r.vec(s.d * qd, 0.3));
        add(
            n("attn_k.weight"),
            vec![d, kvd as u64],
            r.vec(s.d * kvd, 0.3),
        );
        add(
            n("attn_v.weight"),
            vec![d, kvd as u64],
            r.vec(s.d * kvd, 0.3),
        );
        if s.bias {
            add(n("attn_q.bias"), vec![qd as u64], r.vec(qd, 0.2));
            add(n("attn_k.bias"), vec![kvd as u64], r.vec(kvd, 0.2));
            add(n("attn_v.bias"), vec![kvd as u64], r.vec(kvd, 0.2));
        }
        add(
            n("attn_output.weight"),
            vec![qd as u64, d],
            r.vec(qd * s.d, 0.2),
        );
        add(n("ffn_norm.weight"), vec![d], norm(&mut r));
        add(n("ffn_gate.weight"), vec![d, ff], r.vec(s.d * s.ff, 0.3));
        add(n("ffn_up.weight"), vec![d, ff], r.vec(s.d * s.ff, 0.3));
        add(n("ffn_down.weight"), vec![ff, d], r.vec(s.ff * s.d, 0.2));
    }
    add("output_norm.weight".into(), vec![d], vec![1.0; s.d]);
    if !s.tied {
        add(
            "output.weight".into(),
            vec![d, v],
            r.vec(s.d * s.vocab, 0.5),
        );
    }
    t
}

/// The GGUF bytes of `s` with tensors `t`; `edit_md` edits the metadata before the tensors are
/// written.
pub fn write(s: &Spec, t: &Tensors, edit_md: &dyn Fn(&mut GgufWriter)) -> Vec<u8> {
    let mut w = GgufWriter::new();
    let a = s.arch;
    w.add("general.architecture", a).unwrap();
    w.add(format!("{a}.block_count"), s.n_layer as u32).unwrap();
    w.add(format!("{a}.context_length"), 256u32).unwrap();
    w.add(format!("{a}.embedding_length"), s.d as u32).unwrap();
    w.add(format!("{a}.feed_forward_length"), s.ff as u32)
        .unwrap();
    w.add(format!("{a}.attention.head_count"), s.n_head as u32)
        .unwrap();
    w.add(format!("{a}.attention.head_count_kv"), s.n_kv as u32)
        .unwrap();
    w.add(format!("{a}.rope.freq_base"), s.rope_base).unwrap();
    w.add(format!("{a}.attention.layer_norm_rms_epsilon"), 1e-5f32)
        .unwrap();
    edit_md(&mut w);
    for (name, dims, data) in t {
        w.add_tensor_f32(name.clone(), dims, data).unwrap();
    }
    w.to_bytes().unwrap()
}

/// The loaded model of `s` with its default tensors and metadata.
pub fn model_of(s: &Spec) -> Arc<Model> {
    let bytes = write(s, &tensors(s), &|_| {});
    Arc::new(Model::from_file(Arc::new(GgufFile::from_bytes(bytes).unwrap())).unwrap())
}

/// Session options with internal batch `batch`, `threads` threads and an optional sliding
/// window (everything else default).
pub fn opts(batch: usize, threads: usize, window: Option<usize>) -> SessionOptions {
    SessionOptions {
        batch,
        threads,
        window,
        ..SessionOptions::default()
    }
}

/// Logits as bit patterns, for exact comparisons.
pub fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}
