#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Expert isolation: a model run with an [`ExpertMask`] against the same GGUF REWRITTEN without
//! the forbidden experts (`nmk_neural::gguf::rewrite`: their slices cut out of the stacked
//! `ffn_*_exps` tensors, their router rows cut out of `ffn_gate_inp`, `expert_count` lowered),
//! run without a mask.
//!
//! The engine applies the mask to the router logits before the softmax (engine/moe.rs): a
//! forbidden expert's `exp(−∞)` is `+0`, which adds exactly to the softmax sum and cannot be the
//! maximum, so the permitted experts' probabilities, the selection, the mixing weights (with or
//! without top-k renormalisation) and hence the logits are bit for bit those of the rewritten
//! model, for every architecture and any number of experts per token.

mod common;
mod moe_fixture;

use std::sync::{Arc, Mutex};

use common::reference;
use common::synthetic::bits;
use moe_fixture::{MoeSpec, tensors, write};
use nmk_neural::engine::{ExpertMask, LayerRoute, Model, RouterObserver, Session, SessionOptions};
use nmk_neural::gguf::GgufFile;

const IDS: [u32; 19] = [
    5, 17, 99, 3, 42, 42, 7, 0, 100, 64, 8, 13, 21, 34, 55, 89, 1, 2, 3,
];

/// Forbids the same experts in every layer at every position (a rewritten file can only drop
/// experts from all layers: `expert_count` is one number).
struct Forbid(Vec<u32>);
impl ExpertMask for Forbid {
    fn allowed(&self, _layer: usize, _position: u64, expert: u32) -> bool {
        !self.0.contains(&expert)
    }
}

/// Forbids every expert in one layer.
struct ForbidLayer(usize);
impl ExpertMask for ForbidLayer {
    fn allowed(&self, layer: usize, _position: u64, _expert: u32) -> bool {
        layer != self.0
    }
}

struct Recorder(Arc<Mutex<Vec<LayerRoute>>>);
impl RouterObserver for Recorder {
    fn observe(&mut self, route: &LayerRoute) {
        self.0.lock().unwrap().push(route.clone());
    }
}

fn load(bytes: Vec<u8>) -> Arc<Model> {
    Arc::new(Model::from_file(Arc::new(GgufFile::from_bytes(bytes).unwrap())).unwrap())
}

/// Logits at every position of `IDS` and every layer's route at every position.
fn run(m: &Arc<Model>, mask: Option<Box<dyn ExpertMask>>) -> (Vec<f32>, Vec<LayerRoute>) {
    let opts = SessionOptions {
        batch: 5,
        threads: 1,
        ..SessionOptions::default()
    };
    let mut s = Session::new(m.clone(), &opts).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    s.hooks_mut()
        .add_router_observer(Box::new(Recorder(seen.clone())));
    s.hooks_mut().set_expert_mask(mask);
    let logits = s.prefill_all_logits(&IDS).unwrap();
    let routes = seen.lock().unwrap().clone();
    (logits, routes)
}

/// `bytes` rewritten without experts `drop`; `edit` may then change any tensor's bytes.
fn rewrite(bytes: Vec<u8>, drop: &[u32], edit: &dyn Fn(&str, &mut Vec<u8>)) -> Vec<u8> {
    let f = GgufFile::from_bytes(bytes).unwrap();
    nmk_neural::gguf::rewrite::rewrite(&f, drop, &mut |name, data| {
        edit(name, data);
        Ok(())
    })
    .unwrap()
}

/// The original index of each rewritten expert.
fn kept(n_expert: usize, drop: &[u32]) -> Vec<u32> {
    (0..n_expert as u32).filter(|e| !drop.contains(e)).collect()
}

/// Experts to forbid: the one the router chooses first most often at layer 0 (so the mask is
/// live), plus `extra` more from the top of the index range (so dropping them renumbers nothing
/// below them, and dropping the first one renumbers everything above it).
fn forbidden(spec: &MoeSpec, base_routes: &[LayerRoute], extra: usize) -> Vec<u32> {
    let mut count = vec![0usize; spec.n_expert];
    for r in base_routes.iter().filter(|r| r.layer == 0) {
        count[r.chosen[0].0 as usize] += 1;
    }
    let top = (0..spec.n_expert).max_by_key(|&e| count[e]).unwrap() as u32;
    let mut f = vec![top];
    for e in (0..spec.n_expert as u32).rev() {
        if f.len() > extra {
            break;
        }
        if e != top {
            f.push(e);
        }
    }
    f.sort_unstable();
    f
}

/// The chosen experts of the masked original and of the rewritten model agree at every layer and
/// position once the rewritten indices are mapped back; both never pick a forbidden expert.
fn same_selection(masked: &[LayerRoute], rewritten: &[LayerRoute], kept: &[u32], arch: &str) {
    assert_eq!(masked.len(), rewritten.len());
    for (a, b) in masked.iter().zip(rewritten) {
        assert_eq!((a.layer, a.position), (b.layer, b.position));
        let ids_a: Vec<u32> = a.chosen.iter().map(|c| c.0).collect();
        let ids_b: Vec<u32> = b.chosen.iter().map(|c| kept[c.0 as usize]).collect();
        assert_eq!(
            ids_a, ids_b,
            "{arch} layer {} position {}",
            a.layer, a.position
        );
        assert!(ids_a.iter().all(|e| kept.contains(e)));
    }
}

/// Every architecture, quantized and not, one and several experts per token.
fn specs() -> Vec<MoeSpec> {
    let mut v = Vec::new();
    for spec in [
        MoeSpec::mixtral(),
        MoeSpec {
            q8: true,
            ..MoeSpec::mixtral()
        },
        MoeSpec::qwen2moe(),
        MoeSpec::qwen3moe(),
        MoeSpec::olmoe(),
        MoeSpec::granitemoe(),
    ] {
        v.push(MoeSpec { n_used: 1, ..spec });
        v.push(spec);
    }
    v
}

#[test]
fn masked_equals_rewritten_bitwise_for_every_architecture_and_k() {
    for (i, spec) in specs().into_iter().enumerate() {
        let bytes = write(&spec);
        let m = load(bytes.clone());
        let (base, base_routes) = run(&m, None);
        let drop = forbidden(&spec, &base_routes, i % 3);
        let (masked, masked_routes) = run(&m, Some(Box::new(Forbid(drop.clone()))));
        let what = format!(
            "{} k={} q8={} without {drop:?}",
            spec.arch, spec.n_used, spec.q8
        );
        // Liveness: the mask removed an expert the router was using.
        assert_ne!(bits(&masked), bits(&base), "{what}: mask is live");
        let r = load(rewrite(bytes, &drop, &|_, _| {}));
        assert_eq!(
            r.config().moe.as_ref().unwrap().n_expert,
            spec.n_expert - drop.len()
        );
        let (rewritten, rewritten_routes) = run(&r, None);
        let keep = kept(spec.n_expert, &drop);
        same_selection(&masked_routes, &rewritten_routes, &keep, spec.arch);
        for (a, b) in masked_routes.iter().zip(&rewritten_routes) {
            for (x, y) in a.chosen.iter().zip(&b.chosen) {
                assert_eq!(
                    x.1.to_bits(),
                    y.1.to_bits(),
                    "{what}: weight {x:?} vs {y:?}"
                );
            }
            for (e, p) in a.probs.iter().enumerate() {
                match keep.iter().position(|&k| k as usize == e) {
                    Some(j) => assert_eq!(p.to_bits(), b.probs[j].to_bits(), "{what}"),
                    None => assert_eq!(p.to_bits(), 0f32.to_bits(), "{what}: forbidden p"),
                }
            }
        }
        let nv = spec.vocab;
        for p in 0..IDS.len() {
            assert_eq!(
                bits(&masked[p * nv..(p + 1) * nv]),
                bits(&rewritten[p * nv..(p + 1) * nv]),
                "{what} position {p}: masked ≠ rewritten"
            );
        }
    }
}

#[test]
fn masked_model_matches_the_independent_reference() {
    // The same rule computed independently in f64 (F32 weights so the reference tolerance of
    // engine_moe.rs applies): a second witness besides the rewritten file.
    for spec in [MoeSpec::qwen2moe(), MoeSpec::olmoe(), MoeSpec::mixtral()] {
        let spec = MoeSpec { q8: false, ..spec };
        let m = load(write(&spec));
        let drop = forbidden(&spec, &run(&m, None).1, 1);
        let (got, _) = run(&m, Some(Box::new(Forbid(drop.clone()))));
        let want = reference::logits_masked(
            &moe_fixture::reference_config(&spec),
            &tensors(&spec)[..],
            &IDS,
            &|_, _, e| !drop.contains(&(e as u32)),
        );
        common::assert_close_to_reference(spec.arch, &got, &want, 2e-4);
    }
}

#[test]
fn rewrite_refuses_bad_drops() {
    let f = GgufFile::from_bytes(write(&MoeSpec::mixtral())).unwrap();
    let n = MoeSpec::mixtral().n_expert as u32;
    assert!(nmk_neural::gguf::rewrite::without_experts(&f, &[n]).is_err());
    let all: Vec<u32> = (0..n).collect();
    assert!(nmk_neural::gguf::rewrite::without_experts(&f, &all).is_err());
    let edit_len = nmk_neural::gguf::rewrite::rewrite(&f, &[], &mut |_, d| {
        d.push(0);
        Ok(())
    });
    assert!(edit_len.is_err());
}

#[test]
fn empty_mask_is_bitwise_identity() {
    for spec in [
        MoeSpec::mixtral(),
        MoeSpec::qwen2moe(),
        MoeSpec::olmoe(),
        MoeSpec::granitemoe(),
    ] {
        let m = load(write(&spec));
        let (base, base_routes) = run(&m, None);
        let (l, routes) = run(&m, Some(Box::new(Forbid(vec![]))));
        assert_eq!(bits(&l), bits(&base), "{}", spec.arch);
        assert_eq!(routes, base_routes);
    }
}

#[test]
fn forbidding_every_expert_of_a_layer_zeroes_its_routed_output() {
    // The engine does not refuse an all-forbidding mask: it documents "none at all gives a zero
    // FFN output" (engine/moe.rs), the shared expert still running. The independent model for
    // that is the file with that layer's expert down-projections zeroed (all-zero bytes are
    // 0.0 in F32 and in Q8_0), which leaves the residual bitwise unchanged as well.
    for spec in [MoeSpec::mixtral(), MoeSpec::qwen2moe()] {
        for layer in 0..spec.n_layer {
            let bytes = write(&spec);
            let m = load(bytes.clone());
            let (base, _) = run(&m, None);
            let (masked, routes) = run(&m, Some(Box::new(ForbidLayer(layer))));
            assert_ne!(bits(&masked), bits(&base), "{} layer {layer}", spec.arch);
            assert!(masked.iter().all(|v| v.is_finite()));
            for r in &routes {
                assert_eq!(r.chosen.is_empty(), r.layer == layer);
            }
            let down = format!("blk.{layer}.ffn_down_exps.weight");
            let zeroed = rewrite(bytes, &[], &|name, data| {
                if name == down {
                    data.fill(0);
                }
            });
            let (want, _) = run(&load(zeroed), None);
            assert_eq!(bits(&masked), bits(&want), "{} layer {layer}", spec.arch);
        }
    }
}
