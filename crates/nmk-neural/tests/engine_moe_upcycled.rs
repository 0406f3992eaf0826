#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The upcycled test: SmolLM2-135M rewritten as a Mixtral-style MoE (`llama` with experts) whose
//! every layer holds `E` identical copies of the dense FFN (the same quantized bytes, merged into
//! `ffn_*_exps`) and an all-zero router. Equal router logits give probabilities exactly `1/E`;
//! top-1 with renormalisation gives the lowest expert (ties) with weight exactly 1.0, so the MoE
//! path must reproduce the dense model's per-position logits bit for bit.

use std::sync::Arc;

use nmk_neural::engine::{Model, Session, SessionOptions};
use nmk_neural::gguf::{GgufFile, GgufWriter};
use nmk_neural::models::resolve_model;

const N_EXPERT: u32 = 4;

fn upcycle(dense: &GgufFile) -> Vec<u8> {
    let mut w = GgufWriter::new();
    for (k, v) in dense.metadata().entries() {
        if k != "general.alignment" {
            w.add(k.clone(), v.clone()).unwrap();
        }
    }
    assert_eq!(
        dense.metadata().get_str("general.architecture").unwrap(),
        "llama"
    );
    w.add("llama.expert_count", N_EXPERT).unwrap();
    w.add("llama.expert_used_count", 1u32).unwrap();
    let n_embd = u64::from(dense.metadata().get_u32("llama.embedding_length").unwrap());
    for info in dense.tensors() {
        let name = info.name();
        let bytes = dense.tensor_bytes(info).unwrap();
        let ffn = ["ffn_gate", "ffn_up", "ffn_down"]
            .iter()
            .find(|p| name.starts_with("blk.") && name.ends_with(&format!(".{p}.weight")));
        match ffn {
            Some(p) => {
                let layer = name.split('.').nth(1).unwrap();
                let dims = info.dims();
                assert_eq!(dims.len(), 2);
                let mut merged = Vec::with_capacity(bytes.len() * N_EXPERT as usize);
                for _ in 0..N_EXPERT {
                    merged.extend_from_slice(bytes);
                }
                w.add_tensor_raw(
                    format!("blk.{layer}.{p}_exps.weight"),
                    &[dims[0], dims[1], u64::from(N_EXPERT)],
                    info.ggml_type(),
                    merged,
                )
                .unwrap();
                if *p == "ffn_gate" {
                    let zeros = vec![0f32; (n_embd * u64::from(N_EXPERT)) as usize];
                    w.add_tensor_f32(
                        format!("blk.{layer}.ffn_gate_inp.weight"),
                        &[n_embd, u64::from(N_EXPERT)],
                        &zeros,
                    )
                    .unwrap();
                }
            }
            None => {
                w.add_tensor_raw(name, info.dims(), info.ggml_type(), bytes.to_vec())
                    .unwrap();
            }
        }
    }
    w.to_bytes().unwrap()
}

fn opts(batch: usize) -> SessionOptions {
    SessionOptions {
        batch,
        threads: 1,
        ..SessionOptions::default()
    }
}

#[test]
fn upcycled_smollm2_moe_matches_dense_bit_for_bit() {
    let path = resolve_model("smollm2-135m-instruct", &mut |_| {}).expect("model available");
    let dense_file = Arc::new(GgufFile::open(&path).unwrap());
    let moe_file = Arc::new(GgufFile::from_bytes(upcycle(&dense_file)).unwrap());
    let dense = Arc::new(Model::from_file(dense_file).unwrap());
    let moe = Arc::new(Model::from_file(moe_file).unwrap());
    assert!(dense.config().moe.is_none());
    let mc = moe.config().moe.clone().unwrap();
    assert_eq!((mc.n_expert, mc.n_expert_used, mc.norm_topk), (4, 1, true));

    let prompt: Vec<u32> = vec![
        504, 3575, 282, 4649, 314, 198, 1, 42, 2000, 17, 905, 33, 7, 1234, 88, 4000, 12, 600,
    ];
    assert!(prompt.len() >= 16);
    let run = |m: &Arc<Model>, batch: usize| {
        let mut s = Session::new(m.clone(), &opts(batch)).unwrap();
        let l = s.prefill_all_logits(&prompt).unwrap();
        (
            l.iter().map(|x| x.to_bits()).collect::<Vec<u32>>(),
            s.routes().to_vec(),
        )
    };
    let (want, dense_routes) = run(&dense, 32);
    assert!(dense_routes.is_empty());
    for batch in [32, 5] {
        let (got, routes) = run(&moe, batch);
        assert_eq!(got.len(), want.len());
        let first_diff = got.iter().zip(&want).position(|(a, b)| a != b);
        assert_eq!(
            first_diff, None,
            "batch {batch}: MoE logits differ from dense"
        );
        assert_eq!(routes.len(), moe.config().n_layer);
        for r in &routes {
            assert_eq!(r.chosen, vec![(0, 1.0)]);
            assert!(r.probs.iter().all(|&p| p == 0.25));
        }
    }
}
