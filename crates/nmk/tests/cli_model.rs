//! `nmk model`: the registry listing and `info` on the real SmolLM2 file (fetched into the cache
//! if it is not there yet; the test fails loudly if it cannot be had).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

fn nmk(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_nmk"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

#[test]
fn list_names_both_registry_models() {
    let out = nmk(&["model", "list", "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["smollm2-135m-instruct", "qwen2.5-coder-0.5b-instruct"]
    );
}

#[test]
fn info_reports_the_smollm2_shape_quant_mix_and_tokenizer() {
    let out = nmk(&["model", "info", "smollm2-135m-instruct", "--json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["architecture"], "llama");
    assert_eq!(r["blocks"], 30);
    assert_eq!(r["embedding_length"], 576);
    assert_eq!(r["heads"], 9);
    assert_eq!(r["kv_heads"], 3);
    assert_eq!(r["tokenizer"]["pre"], "smollm");
    assert_eq!(r["tokenizer"]["vocab_size"], 49152);
    assert!(r["quant_mix"]["q4_1"]["tensors"].as_u64().unwrap() > 100);
    assert!(r["chat_template"].as_str().unwrap().contains("message"));
}

#[test]
fn unknown_models_and_missing_files_are_clear_errors() {
    let out = nmk(&["model", "info", "gpt-17"]);
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("smollm2-135m-instruct"),
        "the error should list known models: {err}"
    );
    let out = nmk(&["model", "info", "/nonexistent/x.gguf"]);
    assert_eq!(out.status.code(), Some(3));
}

#[test]
fn tokenize_run_and_bench_on_smollm2() {
    let out = nmk(&["tokenize", "--json", "The capital of France is"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let t: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(t["ids"], serde_json::json!([504, 3575, 282, 4649, 314]));

    let out = nmk(&[
        "run",
        "--raw",
        "--max-tokens",
        "3",
        "--json",
        "The capital of France is",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(r["text"].as_str().unwrap().starts_with(" Paris"), "{r}");
    assert_eq!(r["ids"].as_array().unwrap().len(), 3);
    assert!(r["decode_tokens_per_s"].as_f64().unwrap() > 0.0);

    let out = nmk(&[
        "bench",
        "--json",
        "--runs",
        "1",
        "--prompt-tokens",
        "8",
        "--gen-tokens",
        "4",
        "--thread-counts",
        "1,2",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let b: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let results = b["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    assert!(
        results
            .iter()
            .all(|r| r["decode_tokens_per_s"].as_f64().unwrap() > 0.0)
    );
    assert_eq!(b["prompt_ids"].as_array().unwrap().len(), 8);
    assert!(b["weight_bytes_per_token"].as_u64().unwrap() > 50 << 20);
}
