//! Fetches SmolLM2-135M-Instruct (cached after the first run) and opens it with the reader.
//! This test needs the package registry on the first run and fails loudly if it cannot fetch.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeSet;

use nmk_neural::gguf::{GgmlType, GgufFile};
use nmk_neural::models::{Phase, Progress, resolve_model};

#[test]
fn smollm2_fetches_verifies_and_parses() {
    let start = std::time::Instant::now();
    let mut downloaded = 0u64;
    let mut phases = BTreeSet::new();
    let path = resolve_model("smollm2-135m-instruct", &mut |p: &Progress<'_>| {
        phases.insert(format!("{:?}", p.phase));
        if p.phase == Phase::Download {
            downloaded = p.done;
        }
        if let Some(total) = p.total {
            assert!(p.done <= total, "progress {p:?}");
        }
    })
    .unwrap_or_else(|e| panic!("fetching smollm2-135m-instruct failed: {e}"));
    eprintln!(
        "resolved {} in {:.2?} (phases {phases:?}, downloaded {downloaded} bytes)",
        path.display(),
        start.elapsed()
    );

    let f = GgufFile::open(&path).unwrap();
    let m = f.metadata();
    assert_eq!(m.get_str("general.architecture").unwrap(), "llama");
    assert_eq!(m.get_u32("llama.block_count").unwrap(), 30);
    assert_eq!(m.get_u32("llama.embedding_length").unwrap(), 576);
    assert_eq!(m.get_u32("llama.attention.head_count").unwrap(), 9);
    assert_eq!(m.get_u32("llama.attention.head_count_kv").unwrap(), 3);
    assert_eq!(
        m.get_str_array("tokenizer.ggml.tokens").unwrap().len(),
        49152
    );
    let types: BTreeSet<&str> = f.tensors().iter().map(|t| t.ggml_type().name()).collect();
    assert!(types.contains(GgmlType::Q4_1.name()), "{types:?}");
    assert!(types.contains(GgmlType::Q8_0.name()), "{types:?}");
    // Every tensor's data is reachable through the map and has the size its shape implies.
    for t in f.tensors() {
        assert_eq!(f.tensor_bytes(t).unwrap().len() as u64, t.n_bytes());
    }
    let emb = f.tensor("token_embd.weight").unwrap();
    assert_eq!(emb.dims(), [576, 49152]);
}
