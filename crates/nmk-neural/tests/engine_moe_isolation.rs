#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Expert isolation: a model run with an [`ExpertMask`] against the same GGUF REWRITTEN without
//! the forbidden experts (their slices cut out of the stacked `ffn_*_exps` tensors, their router
//! rows cut out of `ffn_gate_inp`, `expert_count` lowered), run without a mask.
//!
//! Where the engine applies the mask (engine/moe.rs): the router softmax runs over ALL experts,
//! then forbidden experts get −∞ as *selection score* before top-k; the mixing weights are the
//! chosen experts' full-softmax probabilities, renormalised over the chosen ones only when the
//! architecture has `norm_topk`. Consequences, which decide what can be exact:
//!
//! - `norm_topk` architectures (Mixtral/llama, Qwen3-MoE, Granite): the weights are
//!   `p_e / Σ_chosen p` = `exp(l_e) / Σ_chosen exp(l)`, the same real number as in the rewritten
//!   model, but the f32 roundings differ (`p` is divided by a different softmax sum first). With
//!   ONE expert per token the weight is `w / w = 1` exactly on both sides, so the logits are
//!   bit-identical: that is the exact test below. With k ≥ 2 the selection is compared exactly
//!   and the weights to a few f32 rounding units.
//! - Non-`norm_topk` architectures (Qwen2-MoE, OLMoE): the weight is the full-softmax
//!   probability `p_e`, while the rewritten model's is `p_e / P` with `P` the permitted experts'
//!   probability mass. The forbidden experts' mass is dropped, not redistributed, so a masked
//!   model is NOT the rewritten model (the logits genuinely differ, not by rounding). What holds
//!   exactly: the same experts are chosen at every layer and position, the masked weights are the
//!   unmasked router probabilities bit for bit, and the rewritten weights times `P` equal them to
//!   rounding; the logits match an independent f64 reference that implements that rule.
//!
//! (Applying the mask to the router LOGITS before the softmax would make every architecture
//! bit-identical to the rewritten model: `exp(−∞) = +0` adds exactly to the sum and cannot be
//! the max. That is an engine design choice, not something a test can change.)

mod common;
mod moe_fixture;

use std::sync::{Arc, Mutex};

use common::reference;
use common::synthetic::bits;
use moe_fixture::{MoeSpec, tensors, write};
use nmk_neural::engine::{ExpertMask, LayerRoute, Model, RouterObserver, Session, SessionOptions};
use nmk_neural::gguf::{GgufFile, GgufWriter, Value};

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

/// `bytes` rewritten with the crate's GGUF reader and writer: experts `drop` removed from every
/// stacked expert tensor (last ggml dim) and router (one row of `n_embd` per expert), the raw
/// bytes of every kept slice copied unchanged (Q8_0 blocks included), `expert_count` lowered and
/// `expert_used_count` clamped to what remains. `edit` may then change any tensor's bytes.
fn rewrite(bytes: Vec<u8>, drop: &[u32], edit: &dyn Fn(&str, &mut Vec<u8>)) -> Vec<u8> {
    let f = GgufFile::from_bytes(bytes).unwrap();
    let arch = match f.metadata().get("general.architecture").unwrap() {
        Value::String(a) => a.clone(),
        v => panic!("architecture {v:?}"),
    };
    let u32_of = |k: &str| match f.metadata().get(&format!("{arch}.{k}")).unwrap() {
        Value::U32(v) => *v,
        v => panic!("{k}: {v:?}"),
    };
    let (ne, used) = (u32_of("expert_count"), u32_of("expert_used_count"));
    let kept = ne - drop.len() as u32;
    let mut w = GgufWriter::new();
    for (k, v) in f.metadata().entries() {
        let v = match k.strip_prefix(&format!("{arch}.")) {
            Some("expert_count") => Value::U32(kept),
            Some("expert_used_count") => Value::U32(used.min(kept)),
            _ => v.clone(),
        };
        w.add(k.clone(), v).unwrap();
    }
    for t in f.tensors() {
        let name = t.name();
        let data = f.tensor_bytes(t).unwrap();
        let stacked = [
            "ffn_gate_exps",
            "ffn_up_exps",
            "ffn_down_exps",
            "ffn_gate_inp",
        ]
        .iter()
        .any(|s| name.ends_with(&format!(".{s}.weight")));
        let mut dims = t.dims().to_vec();
        let mut out = if stacked {
            // The expert index is the outermost (last) ggml dim, so each expert is one
            // contiguous run of bytes.
            assert_eq!(*dims.last().unwrap(), u64::from(ne), "{name}");
            let per = data.len() / ne as usize;
            *dims.last_mut().unwrap() = u64::from(kept);
            (0..ne)
                .filter(|e| !drop.contains(e))
                .flat_map(|e| data[e as usize * per..(e as usize + 1) * per].to_vec())
                .collect()
        } else {
            data.to_vec()
        };
        edit(name, &mut out);
        w.add_tensor_raw(name.to_owned(), &dims, t.ggml_type(), out)
            .unwrap();
    }
    w.to_bytes().unwrap()
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

#[test]
fn norm_topk_one_expert_masked_equals_rewritten_bitwise_at_every_position() {
    // One expert per token: the renormalised weight is exactly 1 on both sides (see the module
    // comment), so any difference would be a real isolation failure. Q8_0 too, to check that
    // the raw-sliced quantized experts run identically.
    for (spec, extra) in [
        (MoeSpec::mixtral(), 0),
        (
            MoeSpec {
                q8: true,
                ..MoeSpec::mixtral()
            },
            1,
        ),
        (MoeSpec::qwen3moe(), 3),
        (MoeSpec::granitemoe(), 1),
    ] {
        let spec = MoeSpec { n_used: 1, ..spec };
        let bytes = write(&spec);
        let m = load(bytes.clone());
        let (base, base_routes) = run(&m, None);
        let drop = forbidden(&spec, &base_routes, extra);
        let (masked, masked_routes) = run(&m, Some(Box::new(Forbid(drop.clone()))));
        // Liveness: the mask removed an expert the router was using.
        assert_ne!(bits(&masked), bits(&base), "{} {drop:?}", spec.arch);
        let r = load(rewrite(bytes, &drop, &|_, _| {}));
        assert_eq!(
            r.config().moe.as_ref().unwrap().n_expert,
            spec.n_expert - drop.len()
        );
        let (rewritten, rewritten_routes) = run(&r, None);
        let keep = kept(spec.n_expert, &drop);
        same_selection(&masked_routes, &rewritten_routes, &keep, spec.arch);
        for (a, b) in masked_routes.iter().zip(&rewritten_routes) {
            assert_eq!((a.chosen[0].1, b.chosen[0].1), (1.0, 1.0));
        }
        let nv = spec.vocab;
        for p in 0..IDS.len() {
            assert_eq!(
                bits(&masked[p * nv..(p + 1) * nv]),
                bits(&rewritten[p * nv..(p + 1) * nv]),
                "{} q8 {} position {p}: masked ≠ rewritten without {drop:?}",
                spec.arch,
                spec.q8
            );
        }
    }
}

/// Relative tolerance for comparing f32 routing weights computed by two different f32
/// softmaxes of the same router logits (≤ 8 experts, |logit − max| ≲ 10): each probability
/// carries at most ~20 rounding units of 2⁻²⁴ (subtraction, exp, ≤ 7 additions, division), and
/// a quotient of two of them or a sum of ≤ 8 of them roughly doubles that. 1e-5 (≈ 170 units)
/// is a safe bound, orders of magnitude below the effects being tested.
const WEIGHT_REL: f32 = 1e-5;

#[test]
fn norm_topk_two_experts_same_selection_and_weights_to_rounding() {
    // k = 2: both sides compute p_a / (p_a + p_b), the masked one with p from the softmax over
    // all experts, the rewritten one over the kept experts: equal reals, different roundings.
    let spec = MoeSpec::mixtral();
    let bytes = write(&spec);
    let m = load(bytes.clone());
    let drop = forbidden(&spec, &run(&m, None).1, 0);
    let (_, masked) = run(&m, Some(Box::new(Forbid(drop.clone()))));
    let (_, rewritten) = run(&load(rewrite(bytes, &drop, &|_, _| {})), None);
    same_selection(&masked, &rewritten, &kept(spec.n_expert, &drop), spec.arch);
    for (a, b) in masked.iter().zip(&rewritten) {
        assert_eq!(a.chosen.len(), 2);
        for (x, y) in a.chosen.iter().zip(&b.chosen) {
            assert!((x.1 - y.1).abs() <= WEIGHT_REL * x.1, "{x:?} vs {y:?}");
        }
    }
}

#[test]
fn unnormalised_archs_keep_full_softmax_weights_so_masked_is_not_rewritten() {
    for spec in [MoeSpec::qwen2moe(), MoeSpec::olmoe()] {
        let bytes = write(&spec);
        let m = load(bytes.clone());
        let (base, base_routes) = run(&m, None);
        let drop = forbidden(&spec, &base_routes, 1);
        let (masked, masked_routes) = run(&m, Some(Box::new(Forbid(drop.clone()))));
        assert_ne!(bits(&masked), bits(&base), "{}: mask is live", spec.arch);
        let keep = kept(spec.n_expert, &drop);
        let (rewritten, rewritten_routes) = run(&load(rewrite(bytes, &drop, &|_, _| {})), None);
        // Only layer 0 sees the same input in both models: its output already differs (the
        // weights below), so deeper layers route different residuals. Layer 0, every position:
        let first = |r: &[LayerRoute]| -> Vec<LayerRoute> {
            r.iter().filter(|r| r.layer == 0).cloned().collect()
        };
        let (masked_routes, rewritten_routes) = (first(&masked_routes), first(&rewritten_routes));
        assert_eq!(masked_routes.len(), IDS.len());
        // Exact: the same experts, in the same order.
        same_selection(&masked_routes, &rewritten_routes, &keep, spec.arch);
        let mut least_mass = 1f32;
        for (a, b) in masked_routes.iter().zip(&rewritten_routes) {
            // Exact: the masked weight is the unmasked router probability, bit for bit (the
            // probabilities reported are the full softmax; the mask only edits selection).
            for &(e, w) in &a.chosen {
                assert_eq!(w.to_bits(), a.probs[e as usize].to_bits(), "{}", spec.arch);
            }
            // To rounding: the rewritten weight is that probability renormalised by the
            // permitted mass P — the factor that makes the two models differ.
            let mass: f32 = keep.iter().map(|&e| a.probs[e as usize]).sum();
            least_mass = least_mass.min(mass);
            for (x, y) in a.chosen.iter().zip(&b.chosen) {
                assert!(
                    (x.1 - y.1 * mass).abs() <= WEIGHT_REL * x.1,
                    "{} {x:?} vs {y:?} · {mass}",
                    spec.arch
                );
            }
        }
        assert!(
            least_mass < 0.9,
            "{}: forbidden experts carry mass",
            spec.arch
        );
        // Hence the logits genuinely differ (by the weights' factor P, not by rounding).
        assert_ne!(bits(&masked), bits(&rewritten), "{}", spec.arch);
        // And the masked model is the independent reference with the documented rule (F32
        // weights so the reference's tolerance from engine_moe.rs applies).
        let spec = MoeSpec { q8: false, ..spec };
        let (got, _) = run(&load(write(&spec)), Some(Box::new(Forbid(drop.clone()))));
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
