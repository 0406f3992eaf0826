//! The synthetic MoE files of the library (`nmk_neural::models::synthetic_moe`) for the engine
//! tests, with the panicking conveniences tests want and the reference's view of a spec.
#![allow(dead_code)]

use nmk_neural::gguf::GgufWriter;
use nmk_neural::models::synthetic_moe as lib;
#[allow(unused_imports)]
pub use nmk_neural::models::synthetic_moe::{MoeSpec, Tensors, tensors};

/// The metadata of `s`.
pub fn metadata(s: &MoeSpec) -> GgufWriter {
    lib::metadata(s).unwrap()
}

/// Adds the tensors (matrices as Q8_0 when `q8`).
pub fn add_tensors(w: &mut GgufWriter, t: &Tensors, q8: bool) {
    lib::add_tensors(w, t, q8).unwrap();
}

/// The whole file.
pub fn write(s: &MoeSpec) -> Vec<u8> {
    lib::write(s).unwrap()
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
