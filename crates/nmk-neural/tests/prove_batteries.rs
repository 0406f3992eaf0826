#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `prove::run_batteries` on a synthetic dense model and a synthetic MoE: every applicable
//! battery passes with exact zeros and a positive liveness contrast; deliberately broken
//! mechanisms (a corrupted restored snapshot, a leaky empty mask) are caught as failures.

mod common;
mod moe_fixture;

use std::sync::Arc;

use common::synthetic::{llama_spec, model_of};
use moe_fixture::MoeSpec;
use nmk_neural::engine::Model;
use nmk_neural::gguf::GgufFile;
use nmk_neural::prove::{Fault, ProofReport, ProveOptions, Status, run_batteries};

/// The small dense llama of the shared synthetic fixture.
fn dense_model() -> Arc<Model> {
    model_of(&llama_spec())
}

fn moe_model() -> Arc<Model> {
    moe_model_of(&MoeSpec::mixtral())
}

fn moe_model_of(spec: &MoeSpec) -> Arc<Model> {
    let bytes = moe_fixture::write(spec);
    Arc::new(Model::from_file(Arc::new(GgufFile::from_bytes(bytes).unwrap())).unwrap())
}

/// An input-grounded first prompt (a passage repeated, so prompt-lookup drafts exist) and two
/// others.
fn prompts() -> Vec<Vec<u32>> {
    let passage = [5u32, 17, 99, 3, 42, 7, 0, 64, 8, 13, 21, 34];
    let mut grounded = passage.to_vec();
    grounded.extend_from_slice(&passage);
    grounded.extend_from_slice(&passage[..5]);
    vec![
        grounded,
        vec![55, 89, 1, 2, 3, 5, 8, 13, 21],
        vec![100, 64, 8, 13, 21, 34, 55],
    ]
}

fn opts() -> ProveOptions {
    ProveOptions {
        steps: 10,
        research: true,
        ..ProveOptions::default()
    }
}

fn battery<'a>(r: &'a ProofReport, name: &str) -> &'a nmk_neural::prove::BatteryReport {
    r.batteries
        .iter()
        .find(|b| b.name == name)
        .unwrap_or_else(|| panic!("no battery {name}"))
}

fn assert_all_pass(r: &ProofReport, not_applicable: &[&str]) {
    for b in &r.batteries {
        if not_applicable.contains(&b.name.as_str()) {
            assert_eq!(
                b.status,
                Status::NotApplicable,
                "{}: {:?}",
                b.name,
                b.reason
            );
            continue;
        }
        assert_eq!(
            b.status,
            Status::Pass,
            "{} failed: {:?} notes {:?}",
            b.name,
            b.reason,
            b.notes
        );
        assert_eq!(b.max_abs_delta, 0.0, "{}", b.name);
        assert!(b.liveness_delta > 0.0, "{}", b.name);
        assert!(
            b.rows_compared > 0 || b.name == "speculate_rollback",
            "{}",
            b.name
        );
        assert!(!b.token_hashes.is_empty(), "{}", b.name);
    }
    assert!(r.all_passed);
    assert_eq!(r.model_sha256.len(), 64);
    // The report serialises, and passes carry exact zeros in the JSON too.
    let v = serde_json::to_value(r).unwrap();
    for b in v["batteries"].as_array().unwrap() {
        if b["status"] == "pass" {
            assert_eq!(b["max_abs_delta"].as_f64(), Some(0.0));
            assert!(b["liveness_delta"].as_f64().unwrap() > 0.0);
        }
    }
}

#[test]
fn dense_model_passes_every_applicable_battery() {
    let r = run_batteries(dense_model(), &prompts(), &opts()).unwrap();
    assert_eq!(r.batteries.len(), 12);
    assert_all_pass(&r, &["expert_mask", "router_tap"]);
}

#[test]
fn moe_models_pass_every_battery() {
    // Two MoE architectures: Mixtral-style, and Qwen2-MoE with a shared expert.
    for spec in [MoeSpec::mixtral(), MoeSpec::qwen2moe()] {
        let r = run_batteries(moe_model_of(&spec), &prompts(), &opts()).unwrap();
        assert_all_pass(&r, &[]);
        assert!(
            battery(&r, "router_tap")
                .notes
                .iter()
                .any(|n| n.contains("routes over")),
            "{}",
            spec.arch
        );
    }
}

#[test]
fn corrupted_restored_snapshot_is_caught() {
    let o = ProveOptions {
        fault: Some(Fault::CorruptRestoredSnapshot),
        ..opts()
    };
    let r = run_batteries(dense_model(), &prompts(), &o).unwrap();
    let b = battery(&r, "park_resume");
    assert_eq!(b.status, Status::Fail);
    assert!(b.max_abs_delta > 0.0);
    assert!(!r.all_passed);
    // Only the broken mechanism fails.
    assert_eq!(r.failures().count(), 1);
}

#[test]
fn leaky_empty_masks_are_caught() {
    let o = ProveOptions {
        fault: Some(Fault::LeakyEmptyMask),
        ..opts()
    };
    let r = run_batteries(dense_model(), &prompts(), &o).unwrap();
    assert_eq!(battery(&r, "interrupt_logit_mask").status, Status::Fail);
    assert_eq!(r.failures().count(), 1);

    let o = ProveOptions {
        fault: Some(Fault::LeakyEmptyExpertMask),
        ..opts()
    };
    let r = run_batteries(moe_model(), &prompts(), &o).unwrap();
    let b = battery(&r, "expert_mask");
    assert_eq!(b.status, Status::Fail, "{:?}", b.reason);
    assert!(b.max_abs_delta > 0.0);
}

#[test]
fn isolation_witness_that_keeps_the_expert_is_caught() {
    // The honest run: the expert-mask battery compared the masked model with a file rewritten
    // without the expert, exactly.
    let r = run_batteries(moe_model(), &prompts(), &opts()).unwrap();
    let b = battery(&r, "expert_mask");
    assert_eq!(b.status, Status::Pass, "{:?}", b.reason);
    assert!(b.notes.iter().any(|n| n.starts_with("isolation: expert")));
    // A witness that still holds the masked expert differs from the masked model.
    let o = ProveOptions {
        fault: Some(Fault::RewriteKeepsExpert),
        ..opts()
    };
    let r = run_batteries(moe_model(), &prompts(), &o).unwrap();
    let b = battery(&r, "expert_mask");
    assert_eq!(b.status, Status::Fail);
    assert!(b.max_abs_delta > 0.0);
    assert_eq!(r.failures().count(), 1);
}

#[test]
fn mode_b_runs_only_with_research_and_its_zero_identity_is_checked() {
    let plain = ProveOptions {
        research: false,
        ..opts()
    };
    let r = run_batteries(dense_model(), &prompts(), &plain).unwrap();
    assert_eq!(battery(&r, "mode_b_injector").status, Status::NotApplicable);
    for model in [dense_model(), moe_model()] {
        let r = run_batteries(model.clone(), &prompts(), &opts()).unwrap();
        let b = battery(&r, "mode_b_injector");
        assert_eq!(b.status, Status::Pass, "{:?}", b.reason);
        assert_eq!(b.max_abs_delta, 0.0);
        assert!(b.liveness_delta > 0.0);
        // An injector whose "zero" up is not zero is caught.
        let o = ProveOptions {
            fault: Some(Fault::ModeBUpNotZero),
            ..opts()
        };
        let r = run_batteries(model, &prompts(), &o).unwrap();
        let b = battery(&r, "mode_b_injector");
        assert_eq!(b.status, Status::Fail);
        assert_eq!(r.failures().count(), 1);
    }
}

#[test]
fn bad_inputs_are_refused() {
    assert!(run_batteries(dense_model(), &[], &opts()).is_err());
    assert!(run_batteries(dense_model(), &[vec![]], &opts()).is_err());
    let few = ProveOptions { steps: 2, ..opts() };
    assert!(run_batteries(dense_model(), &prompts(), &few).is_err());
}
