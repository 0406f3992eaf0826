//! The planes' dependency rule (ARCHITECTURE.md §1), read from `cargo metadata`: the untrusted
//! neural plane depends on no other nmk crate, and the judge does not depend on the neural plane.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

/// Every nmk crate's direct normal, build and dev dependencies on other nmk crates.
fn nmk_dependencies() -> BTreeMap<String, BTreeSet<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../../Cargo.toml");
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--manifest-path",
            manifest,
        ])
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut deps = BTreeMap::new();
    for package in meta["packages"].as_array().unwrap() {
        let name = package["name"].as_str().unwrap().to_owned();
        let on: BTreeSet<String> = package["dependencies"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["name"].as_str().unwrap().to_owned())
            .filter(|d| d.starts_with("nmk"))
            .collect();
        deps.insert(name, on);
    }
    deps
}

#[test]
fn the_workspace_has_the_four_planes() {
    let deps = nmk_dependencies();
    let names: Vec<&str> = deps.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        ["nmk", "nmk-det", "nmk-kernel", "nmk-neural", "nmk-sandbox"]
    );
}

#[test]
fn the_neural_plane_depends_on_no_other_nmk_crate() {
    let deps = nmk_dependencies();
    assert_eq!(
        deps["nmk-neural"],
        BTreeSet::new(),
        "nmk-neural must stay untrusted and standalone"
    );
}

#[test]
fn the_judge_and_the_kernel_never_depend_on_the_neural_plane() {
    let deps = nmk_dependencies();
    assert!(
        !deps["nmk-det"].contains("nmk-neural"),
        "nmk-det depends on nmk-neural"
    );
    assert!(
        !deps["nmk-det"].contains("nmk-kernel"),
        "nmk-det must stay below the kernel"
    );
    assert!(
        !deps["nmk-kernel"].contains("nmk-neural"),
        "nmk-kernel reaches models only through its Proposer trait"
    );
    // Liveness: the rule is read from real data: the binary does wire the planes together.
    assert!(deps["nmk"].contains("nmk-neural") && deps["nmk"].contains("nmk-kernel"));
}

/// Every nmk crate `name` reaches through nmk crates, directly or not.
fn reaches(deps: &BTreeMap<String, BTreeSet<String>>, name: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo = vec![name.to_owned()];
    while let Some(n) = todo.pop() {
        for d in deps.get(&n).into_iter().flatten() {
            if seen.insert(d.clone()) {
                todo.push(d.clone());
            }
        }
    }
    seen
}

#[test]
fn the_interpreter_stays_out_of_the_trusted_crates() {
    let deps = nmk_dependencies();
    for trusted in ["nmk-det", "nmk-kernel"] {
        assert!(
            !reaches(&deps, trusted).contains("nmk-sandbox"),
            "{trusted} must not link the sandbox worker (and so the interpreter)"
        );
    }
    // Liveness: the sandbox worker does speak the judge's protocol.
    assert!(deps["nmk-sandbox"].contains("nmk-det"));
}
