#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! MoE forward on synthetic models of every MoE architecture: routing rules per architecture,
//! the determinism contract (chunking, threads) bit for bit, routes reported, expert-mask
//! identity and liveness, router-observer inertness, tie-breaking, hostile shapes.

mod common;
mod moe_fixture;

use std::sync::{Arc, Mutex};

use common::reference;
use common::synthetic::{bits, opts};
use moe_fixture::{MoeSpec, add_tensors, metadata, tensors, write};
use nmk_neural::engine::{EngineError, ExpertMask, LayerRoute, Model, RouterObserver, Session};
use nmk_neural::gguf::GgufFile;

fn model(s: &MoeSpec) -> Arc<Model> {
    Arc::new(Model::from_file(Arc::new(GgufFile::from_bytes(write(s)).unwrap())).unwrap())
}

fn all_specs() -> Vec<MoeSpec> {
    vec![
        MoeSpec::mixtral(),
        MoeSpec::qwen2moe(),
        MoeSpec::qwen3moe(),
        MoeSpec::olmoe(),
        MoeSpec::granitemoe(),
    ]
}

const IDS: [u32; 19] = [
    5, 17, 99, 3, 42, 42, 7, 0, 100, 64, 8, 13, 21, 34, 55, 89, 1, 2, 3,
];

fn logits(m: &Arc<Model>, batch: usize, threads: usize) -> Vec<u32> {
    let mut s = Session::new(m.clone(), &opts(batch, threads, None)).unwrap();
    bits(&s.prefill_all_logits(&IDS).unwrap())
}

#[test]
fn config_per_architecture() {
    for spec in all_specs() {
        let m = model(&spec);
        let c = m.config();
        let moe = c.moe.as_ref().unwrap();
        assert_eq!(moe.n_expert, spec.n_expert, "{}", spec.arch);
        assert_eq!(moe.n_expert_used, spec.n_used);
        assert_eq!(moe.n_ff_exp, spec.ff_exp);
        let norm = matches!(spec.arch, "llama" | "qwen3moe" | "granitemoe");
        assert_eq!(moe.norm_topk, norm, "{}", spec.arch);
        assert_eq!(moe.n_ff_shexp, spec.shared_ff);
        assert_eq!(c.qk_norm, spec.arch == "qwen3moe" || spec.arch == "olmoe");
        if spec.granite {
            assert_eq!(c.scales.embedding, 12.0);
            assert_eq!(c.scales.attention, Some(0.015625));
        }
    }
}

#[test]
fn chunking_and_threads_bitwise_invariant() {
    for spec in all_specs() {
        let m = model(&spec);
        let base = logits(&m, 32, 1);
        assert!(
            base.iter().all(|&b| f32::from_bits(b).is_finite()),
            "{}",
            spec.arch
        );
        for (batch, threads) in [(1, 1), (3, 1), (7, 2), (32, 2), (5, 3)] {
            assert_eq!(
                base,
                logits(&m, batch, threads),
                "{} {batch} {threads}",
                spec.arch
            );
        }
        // Caller-side chunks too.
        let mut s = Session::new(m.clone(), &opts(4, 1, None)).unwrap();
        let mut out = Vec::new();
        for c in IDS.chunks(6) {
            out.extend(s.prefill_all_logits(c).unwrap());
        }
        assert_eq!(base, bits(&out), "{} caller chunks", spec.arch);
    }
}

#[test]
fn routes_reported_and_follow_the_architecture_rule() {
    for spec in all_specs() {
        let m = model(&spec);
        let mut s = Session::new(m.clone(), &opts(8, 1, None)).unwrap();
        s.prefill(&IDS).unwrap();
        let out = s.step().unwrap();
        assert_eq!(out.routes.len(), spec.n_layer, "{}", spec.arch);
        assert_eq!(out.routes, s.routes());
        let norm = m.config().moe.as_ref().unwrap().norm_topk;
        for (l, r) in out.routes.iter().enumerate() {
            assert_eq!(r.layer, l);
            assert_eq!(r.position, IDS.len() as u64 - 1);
            assert_eq!(r.probs.len(), spec.n_expert);
            let total: f32 = r.probs.iter().sum();
            assert!((total - 1.0).abs() < 1e-5);
            assert_eq!(r.chosen.len(), spec.n_used);
            // Highest probabilities, in selection order, ties to the lower index.
            let mut order: Vec<usize> = (0..spec.n_expert).collect();
            order.sort_by(|&a, &b| r.probs[b].total_cmp(&r.probs[a]).then(a.cmp(&b)));
            let ids: Vec<u32> = r.chosen.iter().map(|c| c.0).collect();
            let want: Vec<u32> = order[..spec.n_used].iter().map(|&e| e as u32).collect();
            assert_eq!(ids, want, "{}", spec.arch);
            let sel: f32 = ids.iter().map(|&e| r.probs[e as usize]).sum();
            for &(e, w) in &r.chosen {
                let p = r.probs[e as usize];
                let expect = if norm { p / sel } else { p };
                assert!(
                    (w - expect).abs() < 1e-6,
                    "{} weight {w} vs {expect}",
                    spec.arch
                );
            }
            let h = r.entropy;
            assert!(h >= 0.0 && h <= (spec.n_expert as f32).ln() + 1e-5);
            let hn = r.normalized_entropy();
            assert!((0.0..=1.0 + 1e-6).contains(&hn));
        }
    }
}

#[derive(Clone)]
struct Forbid {
    layer: usize,
    experts: Vec<u32>,
}

impl ExpertMask for Forbid {
    fn allowed(&self, layer: usize, _position: u64, expert: u32) -> bool {
        layer != self.layer || !self.experts.contains(&expert)
    }
}

#[test]
fn expert_mask_identity_and_liveness() {
    for spec in [MoeSpec::mixtral(), MoeSpec::olmoe(), MoeSpec::qwen2moe()] {
        let m = model(&spec);
        let base = logits(&m, 8, 1);
        let run = |mask: Forbid| {
            let mut s = Session::new(m.clone(), &opts(8, 1, None)).unwrap();
            s.hooks_mut().set_expert_mask(Some(Box::new(mask)));
            let l = bits(&s.prefill_all_logits(&IDS).unwrap());
            (l, s.routes().to_vec())
        };
        // An empty mask is bitwise the same as no mask.
        let (l, _) = run(Forbid {
            layer: 0,
            experts: vec![],
        });
        assert_eq!(l, base, "{}", spec.arch);
        // Forbidding the expert chosen first at layer 0 for the last token changes the logits.
        let mut s = Session::new(m.clone(), &opts(8, 1, None)).unwrap();
        s.prefill(&IDS).unwrap();
        let first = s.routes()[0].chosen[0].0;
        let (l, routes) = run(Forbid {
            layer: 0,
            experts: vec![first],
        });
        assert_ne!(l, base, "{}: masking a chosen expert is live", spec.arch);
        assert!(routes[0].chosen.iter().all(|c| c.0 != first));
        assert_eq!(routes[0].chosen.len(), spec.n_used);
        // Forbidding all experts but one leaves exactly that one.
        let (_, routes) = run(Forbid {
            layer: 1,
            experts: (1..spec.n_expert as u32).collect(),
        });
        assert_eq!(
            routes[1].chosen.iter().map(|c| c.0).collect::<Vec<_>>(),
            vec![0]
        );
    }
}

struct Recorder(Arc<Mutex<Vec<LayerRoute>>>);
impl RouterObserver for Recorder {
    fn observe(&mut self, route: &LayerRoute) {
        self.0.lock().unwrap().push(route.clone());
    }
}

#[test]
fn router_observer_is_inert_and_sees_every_position() {
    for spec in [MoeSpec::qwen3moe(), MoeSpec::granitemoe()] {
        let m = model(&spec);
        let base = logits(&m, 5, 1);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut s = Session::new(m.clone(), &opts(5, 1, None)).unwrap();
        s.hooks_mut()
            .add_router_observer(Box::new(Recorder(seen.clone())));
        assert_eq!(bits(&s.prefill_all_logits(&IDS).unwrap()), base);
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), IDS.len() * spec.n_layer);
        let last: Vec<LayerRoute> = seen
            .iter()
            .filter(|r| r.position == IDS.len() as u64 - 1)
            .cloned()
            .collect();
        assert_eq!(last, s.routes());
    }
}

#[test]
fn equal_router_logits_choose_the_lowest_experts() {
    for spec in [MoeSpec::mixtral(), MoeSpec::olmoe()] {
        let spec = MoeSpec {
            router_scale: 0.0,
            ..spec
        };
        let m = model(&spec);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut s = Session::new(m.clone(), &opts(4, 1, None)).unwrap();
        s.hooks_mut()
            .add_router_observer(Box::new(Recorder(seen.clone())));
        s.prefill(&IDS).unwrap();
        let u = 1.0 / spec.n_expert as f32;
        for r in seen.lock().unwrap().iter() {
            let ids: Vec<u32> = r.chosen.iter().map(|c| c.0).collect();
            assert_eq!(ids, (0..spec.n_used as u32).collect::<Vec<_>>());
            assert!(r.probs.iter().all(|&p| p == u));
            assert!((r.entropy - (spec.n_expert as f32).ln()).abs() < 1e-5);
            assert!((r.normalized_entropy() - 1.0).abs() < 1e-5);
        }
    }
}

fn load_err(bytes: Vec<u8>) -> EngineError {
    match Model::from_file(Arc::new(GgufFile::from_bytes(bytes).unwrap())) {
        Ok(_) => panic!("hostile MoE model loaded"),
        Err(e) => e,
    }
}

/// `spec`'s file with tensors edited and metadata overridden.
fn hostile(
    spec: &MoeSpec,
    edit: &dyn Fn(&mut moe_fixture::Tensors),
    md: &[(&str, u32)],
) -> Vec<u8> {
    let mut w = nmk_neural::gguf::GgufWriter::new();
    let base = metadata(spec);
    for (k, v) in base.metadata().entries() {
        let over = md.iter().find(|(mk, _)| *mk == k.as_str());
        match over {
            Some(&(_, 0)) => {}
            Some(&(_, x)) => {
                w.add(k.clone(), x).unwrap();
            }
            None => {
                w.add(k.clone(), v.clone()).unwrap();
            }
        }
    }
    for &(k, x) in md {
        if x != 0 && !base.metadata().contains(k) {
            w.add(k.to_owned(), x).unwrap();
        }
    }
    let mut t = tensors(spec);
    edit(&mut t);
    add_tensors(&mut w, &t, spec.q8);
    w.to_bytes().unwrap()
}

fn reshape(t: &mut moe_fixture::Tensors, name: &str, dims: Vec<u64>) {
    let e = t.iter_mut().find(|x| x.0 == name).unwrap();
    let n: u64 = dims.iter().product();
    e.2.resize(n as usize, 0.0);
    e.1 = dims;
}

#[test]
fn hostile_moe_shapes_give_typed_errors() {
    let s = MoeSpec::mixtral();
    let (d, ff, ne) = (s.d as u64, s.ff_exp as u64, s.n_expert as u64);
    let none: &dyn Fn(&mut moe_fixture::Tensors) = &|_| {};
    // Used experts above the expert count; zero experts on an MoE architecture.
    let e = load_err(hostile(&s, none, &[("llama.expert_used_count", 9)]));
    assert!(matches!(e, EngineError::InvalidConfig { .. }), "{e}");
    let e = load_err(hostile(
        &MoeSpec::olmoe(),
        none,
        &[("olmoe.expert_count", 0)],
    ));
    assert!(matches!(e, EngineError::InvalidConfig { .. }), "{e}");
    // Sigmoid gating (llama.cpp's id 2) is refused rather than run as softmax; softmax (1) loads.
    let e = load_err(hostile(&s, none, &[("llama.expert_gating_func", 2)]));
    assert!(e.to_string().contains("expert_gating_func"), "{e}");
    assert!(
        Model::from_file(Arc::new(
            GgufFile::from_bytes(hostile(&s, none, &[("llama.expert_gating_func", 1)])).unwrap()
        ))
        .is_ok()
    );
    // Merged expert tensors of the wrong shape.
    for (name, dims) in [
        ("blk.1.ffn_gate_exps.weight", vec![d, ff, ne - 1]),
        ("blk.0.ffn_up_exps.weight", vec![d, ff * ne]),
        ("blk.0.ffn_down_exps.weight", vec![d, ff, ne]),
        ("blk.0.ffn_gate_inp.weight", vec![d, ne + 1]),
    ] {
        let e = load_err(hostile(&s, &|t| reshape(t, name, dims.clone()), &[]));
        assert!(matches!(e, EngineError::TensorShape { .. }), "{name}: {e}");
    }
    // A missing expert tensor, a missing shared expert.
    let e = load_err(hostile(
        &s,
        &|t| t.retain(|x| x.0 != "blk.1.ffn_up_exps.weight"),
        &[],
    ));
    assert!(matches!(e, EngineError::Gguf(_)), "{e}");
    let e = load_err(hostile(
        &MoeSpec::qwen2moe(),
        &|t| t.retain(|x| x.0 != "blk.0.ffn_gate_inp_shexp.weight"),
        &[],
    ));
    assert!(matches!(e, EngineError::Gguf(_)), "{e}");
    // A Q/K norm of neither the head nor the projection width.
    let e = load_err(hostile(
        &MoeSpec::qwen3moe(),
        &|t| reshape(t, "blk.1.attn_k_norm.weight", vec![3]),
        &[],
    ));
    assert!(matches!(e, EngineError::TensorShape { .. }), "{e}");
}

// ---------------------------------------------------------------- naive reference

#[test]
fn every_architecture_matches_a_naive_reference() {
    let ids = &IDS[..9];
    for spec in all_specs() {
        let spec = MoeSpec { q8: false, ..spec };
        let m = model(&spec);
        let mut s = Session::new(m.clone(), &opts(4, 1, None)).unwrap();
        let got = s.prefill_all_logits(ids).unwrap();
        let want = reference::logits(
            &moe_fixture::reference_config(&spec),
            &tensors(&spec)[..],
            ids,
        );
        common::assert_close_to_reference(spec.arch, &got, &want, 2e-4);
    }
}
