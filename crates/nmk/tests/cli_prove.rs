//! `nmk prove` on the real SmolLM2 file (fetched into the cache if it is not there yet; the test
//! fails loudly if it cannot be had): every battery passes with exact zeros and a positive
//! liveness contrast, or states why it is not available / not applicable.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

fn nmk(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_nmk"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

const BATTERIES: [&str; 12] = [
    "repeat_runs",
    "threads_1_vs_2",
    "chunked_prefill",
    "trap_plane",
    "park_resume",
    "speculate_rollback",
    "interrupt_logit_mask",
    "ring_rollback",
    "expert_mask",
    "router_tap",
    "lane_interleaving",
    "mode_b_injector",
];

#[test]
fn prove_passes_on_smollm2_and_writes_the_report() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("proof.json");
    let out = nmk(&[
        "prove",
        "--model",
        "smollm2-135m-instruct",
        "--steps",
        "8",
        "--research",
        "--report",
        file.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("all applicable batteries passed"),
        "{stdout}"
    );
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(r["all_passed"], true);
    assert_eq!(r["model_sha256"].as_str().unwrap().len(), 64);
    assert_eq!(r["nmk_version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(r["model"]["n_vocab"], 49152);
    let batteries = r["batteries"].as_array().unwrap();
    let names: Vec<&str> = batteries
        .iter()
        .map(|b| b["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, BATTERIES);
    for b in batteries {
        let name = b["name"].as_str().unwrap();
        match b["status"].as_str().unwrap() {
            "pass" => {
                assert_eq!(b["max_abs_delta"].as_f64(), Some(0.0), "{name}");
                assert!(b["liveness_delta"].as_f64().unwrap() > 0.0, "{name}");
                assert!(!b["token_hashes"].as_array().unwrap().is_empty(), "{name}");
                assert!(!b["prompts"].as_array().unwrap().is_empty(), "{name}");
            }
            "not_available" | "not_applicable" => {
                assert!(!b["reason"].as_str().unwrap().is_empty(), "{name}");
            }
            other => panic!("{name}: status {other}: {}", b["reason"]),
        }
    }
    // SmolLM2 is dense: the MoE batteries say so.
    for name in ["expert_mask", "router_tap"] {
        let b = batteries.iter().find(|b| b["name"] == name).unwrap();
        assert_eq!(b["status"], "not_applicable");
    }
}

#[test]
fn prove_passes_on_a_synthetic_moe_file_with_every_moe_battery() {
    // No pretrained MoE can be fetched here: `nmk model synth` writes a random-weight one
    // (Qwen2-MoE: shared expert, no top-k renormalisation), proven with token-id prompts.
    let dir = tempfile::tempdir().unwrap();
    let gguf = dir.path().join("qwen2moe.gguf");
    let out = nmk(&[
        "model",
        "synth",
        "--arch",
        "qwen2moe",
        "--out",
        gguf.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0));
    let out = nmk(&[
        "prove",
        "--gguf",
        gguf.to_str().unwrap(),
        "--research",
        "--json",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["all_passed"], true);
    assert_eq!(r["model"]["n_expert"], 6);
    for b in r["batteries"].as_array().unwrap() {
        let name = b["name"].as_str().unwrap();
        if name == "threads_1_vs_2" && b["status"] == "not_available" {
            continue;
        }
        assert_eq!(b["status"], "pass", "{name}: {}", b["reason"]);
        assert_eq!(b["max_abs_delta"].as_f64(), Some(0.0), "{name}");
    }
    let unknown = nmk(&["model", "synth", "--arch", "gpt", "--out", "x.gguf"]);
    assert_eq!(unknown.status.code(), Some(2));
}

#[test]
fn prove_refuses_too_few_steps_as_a_usage_error() {
    let out = nmk(&["prove", "--steps", "2"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn prove_on_a_missing_gguf_is_a_runtime_error() {
    let out = nmk(&["prove", "--gguf", "/nonexistent/model.gguf"]);
    assert_eq!(out.status.code(), Some(3));
}
