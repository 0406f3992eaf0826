//! Engine tests on small synthetic F32 models written by a fixture: a naive reference forward,
//! the determinism contract (chunking, threads, snapshot/restore/trim, rings) bit for bit, hooks
//! with their liveness contrasts, sampling, and hostile configurations.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::sync::{Arc, Mutex};

use common::reference;
use common::synthetic::{
    Spec, Tensors, bits, llama_spec, model_of, opts, qwen_spec, tensors, write,
};

use nmk_neural::engine::{
    EngineError, ForbiddenIds, GenerateParams, HookSet, Model, ResidualAdd, ResidualRecorder,
    RopeStyle, SamplingParams, Session, SessionOptions, StopReason,
};
use nmk_neural::gguf::{GgufFile, GgufWriter, Value};

// ---------------------------------------------------------------- fixture

fn load_err(bytes: Vec<u8>) -> EngineError {
    match Model::from_file(Arc::new(GgufFile::from_bytes(bytes).unwrap())) {
        Ok(_) => panic!("hostile model loaded"),
        Err(e) => e,
    }
}

const IDS: [u32; 23] = [
    5, 17, 99, 3, 42, 42, 7, 0, 100, 64, 8, 13, 21, 34, 55, 89, 1, 2, 3, 5, 8, 13, 21,
];

/// Per-position logits of `IDS`, prefilled with internal batches of `batch`.
fn logits_batched(m: &Arc<Model>, batch: usize, threads: usize) -> Vec<u32> {
    let mut s = Session::new(m.clone(), &opts(batch, threads, None)).unwrap();
    bits(&s.prefill_all_logits(&IDS).unwrap())
}

/// Per-position logits of `IDS`, fed by the caller in slices of `chunk` (internal batch 32).
fn logits_caller_chunks(m: &Arc<Model>, chunk: usize) -> Vec<u32> {
    let mut s = Session::new(m.clone(), &opts(32, 1, None)).unwrap();
    let mut out = Vec::new();
    for c in IDS.chunks(chunk) {
        out.extend(s.prefill_all_logits(c).unwrap());
    }
    bits(&out)
}

// ---------------------------------------------------------------- naive reference

fn check_against_reference(s: &Spec) {
    let m = model_of(s);
    let mut sess = Session::new(m.clone(), &opts(4, 1, None)).unwrap();
    let got = sess.prefill_all_logits(&IDS[..12]).unwrap();
    let hd = s.d / s.n_head;
    let cfg = reference::Config::dense(
        s.n_layer,
        s.d,
        s.n_head,
        s.n_kv,
        hd,
        s.vocab,
        1e-5,
        f64::from(s.rope_base),
        s.arch == "qwen2",
    );
    let want = reference::logits_f32(&cfg, &tensors(s)[..], &IDS[..12]);
    let mut worst = 0f32;
    for (p, w) in want.iter().enumerate() {
        for (v, r) in got[p * s.vocab..(p + 1) * s.vocab].iter().zip(w) {
            worst = worst.max((v - r).abs());
        }
    }
    assert!(
        worst < 2e-3,
        "{}: max |engine − reference| = {worst}",
        s.arch
    );
}

#[test]
fn engine_llama_matches_naive_reference() {
    check_against_reference(&llama_spec());
}

#[test]
fn engine_qwen2_matches_naive_reference() {
    check_against_reference(&qwen_spec());
}

#[test]
fn config_is_read_from_metadata() {
    let m = model_of(&llama_spec());
    let c = m.config();
    assert_eq!((c.n_layer, c.n_embd, c.n_head, c.n_head_kv), (3, 64, 4, 2));
    assert_eq!((c.head_dim, c.n_rot, c.n_vocab, c.n_ff), (16, 16, 101, 96));
    assert_eq!(c.rope_style, RopeStyle::Normal);
    assert!(c.tied_output && !c.qkv_bias);
    let q = model_of(&qwen_spec());
    let c = q.config();
    assert_eq!(c.rope_style, RopeStyle::Neox);
    assert!(!c.tied_output && c.qkv_bias);
}

// ---------------------------------------------------------------- determinism

#[test]
fn determinism_repeated_runs_identical() {
    let m = model_of(&llama_spec());
    let a = logits_batched(&m, 32, 1);
    let b = logits_batched(&m, 32, 1);
    assert_eq!(a, b);
    // A fresh load of the same bytes too.
    assert_eq!(a, logits_batched(&model_of(&llama_spec()), 32, 1));
}

#[test]
fn determinism_any_chunking_identical_at_every_position() {
    for spec in [llama_spec(), qwen_spec()] {
        let m = model_of(&spec);
        let one = logits_batched(&m, 64, 1);
        assert_eq!(one.len(), IDS.len() * spec.vocab);
        for c in [1, 2, 3, 7] {
            assert_eq!(one, logits_batched(&m, c, 1), "internal batch {c}");
            assert_eq!(one, logits_caller_chunks(&m, c), "caller chunks of {c}");
        }
        // Token by token through feed + step.
        let mut s = Session::new(m.clone(), &opts(32, 1, None)).unwrap();
        let mut fed = Vec::new();
        for &t in &IDS {
            s.feed(t).unwrap();
            fed.extend(bits(&s.step().unwrap().logits));
        }
        assert_eq!(one, fed, "feed/step");
    }
}

#[test]
fn determinism_threads_identical() {
    let m = model_of(&llama_spec());
    assert_eq!(logits_batched(&m, 5, 1), logits_batched(&m, 5, 2));
}

/// Greedy decode of `n` tokens after the prompt, returning every step's logits bits.
fn decode(s: &mut Session, n: usize) -> (Vec<u32>, Vec<Vec<u32>>) {
    let mut toks = Vec::new();
    let mut logs = Vec::new();
    for _ in 0..n {
        let out = s.step().unwrap();
        let t = nmk_neural::engine::argmax(&out.logits).unwrap();
        logs.push(bits(&out.logits));
        toks.push(t);
        s.feed(t).unwrap();
    }
    (toks, logs)
}

#[test]
fn determinism_snapshot_restore_trim_identical() {
    let m = model_of(&llama_spec());
    let mut straight = Session::new(m.clone(), &opts(8, 1, None)).unwrap();
    straight.prefill(&IDS[..9]).unwrap();
    let (toks, logs) = decode(&mut straight, 12);

    let mut s = Session::new(m.clone(), &opts(8, 1, None)).unwrap();
    s.prefill(&IDS[..9]).unwrap();
    let (t1, l1) = decode(&mut s, 5);
    let snap = s.snapshot().unwrap();
    let (t2, l2) = decode(&mut s, 7);
    assert_eq!([t1.clone(), t2].concat(), toks);
    assert_eq!([l1.clone(), l2.clone()].concat(), logs);
    // Diverge, then restore.
    s.feed(3).unwrap();
    s.feed(4).unwrap();
    let _ = s.step().unwrap();
    s.restore(&snap).unwrap();
    let (t3, l3) = decode(&mut s, 7);
    assert_eq!(t3, toks[5..]);
    assert_eq!(l3, logs[5..]);
    // Trim back to the prompt plus 2 generated tokens and continue.
    s.trim(9 + 2).unwrap();
    assert_eq!(s.tokens(), &straight.tokens()[..11]);
    let (t4, l4) = decode(&mut s, 10);
    assert_eq!(t4, toks[2..]);
    assert_eq!(l4, logs[2..]);
    // Trim to 0 and redo everything.
    s.trim(0).unwrap();
    s.prefill(&IDS[..9]).unwrap();
    assert_eq!(decode(&mut s, 12), (toks, logs));
}

#[test]
fn interleaved_sessions_identical_to_each_alone() {
    let m = model_of(&llama_spec());
    let alone = |prompt: &[u32]| {
        let mut s = Session::new(m.clone(), &opts(4, 1, None)).unwrap();
        s.prefill(prompt).unwrap();
        decode(&mut s, 10)
    };
    let (pa, pb) = (&IDS[..7], &IDS[9..20]);
    let (a, b) = (alone(pa), alone(pb));
    let mut sa = Session::new(m.clone(), &opts(4, 1, None)).unwrap();
    let mut sb = Session::new(m.clone(), &opts(4, 1, None)).unwrap();
    sa.prefill(pa).unwrap();
    sb.prefill(pb).unwrap();
    let (mut ra, mut rb) = ((Vec::new(), Vec::new()), (Vec::new(), Vec::new()));
    for _ in 0..10 {
        for (s, r) in [(&mut sa, &mut ra), (&mut sb, &mut rb)] {
            let (t, l) = decode(s, 1);
            r.0.extend(t);
            r.1.extend(l);
        }
    }
    assert_eq!(ra, a);
    assert_eq!(rb, b);
    assert_ne!(a.1, b.1);
}

#[test]
fn ring_window_chunking_invariant_and_trim_refused_after_wrap() {
    let m = model_of(&llama_spec());
    let ring = |batch| opts(batch, 1, Some(6));
    let full = {
        let mut s = Session::new(m.clone(), &ring(32)).unwrap();
        bits(&s.prefill_all_logits(&IDS).unwrap())
    };
    for c in [1, 2, 3, 7] {
        let mut s = Session::new(m.clone(), &ring(c)).unwrap();
        assert_eq!(
            full,
            bits(&s.prefill_all_logits(&IDS).unwrap()),
            "ring batch {c}"
        );
    }
    // Liveness: a window shorter than the sequence changes the logits past the window...
    let plain = logits_batched(&m, 32, 1);
    let v = m.config().n_vocab;
    assert_eq!(full[..6 * v], plain[..6 * v]);
    assert_ne!(full[6 * v..], plain[6 * v..]);
    // ...and a window as long as the sequence does not.
    let mut s = Session::new(m.clone(), &opts(4, 1, Some(IDS.len()))).unwrap();
    assert_eq!(plain, bits(&s.prefill_all_logits(&IDS).unwrap()));

    // A wrapped ring refuses a trim that needs overwritten entries, allows one that does not.
    let mut s = Session::new(m.clone(), &ring(4)).unwrap();
    s.prefill(&IDS[..12]).unwrap();
    assert!(s.cache().has_wrapped());
    assert!(matches!(s.trim(3), Err(EngineError::Trim { .. })));
    let snap = s.snapshot().unwrap();
    let (t_a, l_a) = decode(&mut s, 6);
    s.restore(&snap).unwrap();
    assert_eq!(decode(&mut s, 6), (t_a.clone(), l_a.clone()));
    // Trimming one generated token off (within what the ring still holds) and re-decoding
    // reproduces the run; one further back needs an overwritten entry and is refused.
    s.restore(&snap).unwrap();
    let _ = decode(&mut s, 3);
    assert!(matches!(s.trim(12 + 1), Err(EngineError::Trim { .. })));
    s.trim(12 + 2).unwrap();
    let (t_b, l_b) = decode(&mut s, 4);
    assert_eq!(t_b, t_a[2..]);
    assert_eq!(l_b, l_a[2..]);
}

// ---------------------------------------------------------------- hooks

#[test]
fn hooks_zero_effect_identical_and_live_hooks_change_output() {
    let m = model_of(&llama_spec());
    let base = logits_batched(&m, 4, 1);
    let with_hooks = |install: &dyn Fn(&mut HookSet)| {
        let mut s = Session::new(m.clone(), &opts(4, 1, None)).unwrap();
        install(s.hooks_mut());
        bits(&s.prefill_all_logits(&IDS).unwrap())
    };
    let d = m.config().n_embd;
    // Armed zero delta, disarmed non-zero delta, recorder, empty logit mask: all identical.
    let rec = Arc::new(Mutex::new(Vec::new()));
    let same = with_hooks(&|h| {
        h.add_post_block(Box::new(ResidualAdd {
            layer: 1,
            delta: vec![0.0; d],
            armed: true,
        }));
        h.add_post_block(Box::new(ResidualAdd {
            layer: 0,
            delta: vec![1.0; d],
            armed: false,
        }));
        h.add_post_block(Box::new(ResidualRecorder {
            layer: 2,
            rows: rec.clone(),
        }));
        h.add_logit_mask(Box::new(ForbiddenIds::new([])));
    });
    assert_eq!(base, same);
    let rows = rec.lock().unwrap();
    assert_eq!(rows.len(), IDS.len());
    assert!(
        rows.iter()
            .enumerate()
            .all(|(i, r)| r.0 == i as u64 && r.1.len() == d)
    );
    drop(rows);
    // Armed non-zero delta changes the logits.
    let changed = with_hooks(&|h| {
        h.add_post_block(Box::new(ResidualAdd {
            layer: 1,
            delta: vec![0.05; d],
            armed: true,
        }));
    });
    assert_ne!(base, changed);
    // A bad delta length aborts the forward with a typed error.
    let mut s = Session::new(m.clone(), &opts(4, 1, None)).unwrap();
    s.hooks_mut().add_post_block(Box::new(ResidualAdd {
        layer: 0,
        delta: vec![0.0; 3],
        armed: true,
    }));
    assert!(matches!(s.prefill(&IDS), Err(EngineError::Hook { .. })));
}

#[test]
fn logit_mask_forbids_the_greedy_choice() {
    let m = model_of(&llama_spec());
    let mut s = Session::new(m.clone(), &opts(4, 1, None)).unwrap();
    s.prefill(&IDS).unwrap();
    let g = s.sample(&SamplingParams::greedy()).unwrap();
    s.hooks_mut()
        .add_logit_mask(Box::new(ForbiddenIds::new([g])));
    let out = s.step().unwrap();
    assert_eq!(out.logits[g as usize], f32::NEG_INFINITY);
    assert!(out.routes.is_empty());
    let g2 = s.sample(&SamplingParams::greedy()).unwrap();
    assert_ne!(g, g2);
    // Sampling never picks it either.
    for _ in 0..50 {
        assert_ne!(s.sample(&SamplingParams::with_temperature(2.0)).unwrap(), g);
    }
}

// ---------------------------------------------------------------- sampling

#[test]
fn seeded_sampling_reproducible_and_seed_sensitive() {
    let m = model_of(&llama_spec());
    let params = GenerateParams {
        max_tokens: 20,
        stop_tokens: vec![],
        sampling: SamplingParams {
            temperature: 1.5,
            top_k: 30,
            top_p: 0.9,
            repeat_penalty: 1.1,
            repeat_last_n: 16,
        },
    };
    let run = |seed| {
        let mut s = Session::new(
            m.clone(),
            &SessionOptions {
                seed,
                ..opts(4, 1, None)
            },
        )
        .unwrap();
        s.prefill(&IDS[..5]).unwrap();
        s.generate(&params).unwrap().tokens
    };
    assert_eq!(run(7), run(7));
    assert_ne!(run(7), run(8));
    // The PRNG is part of the snapshot: restore and re-generate gives the same tokens.
    let mut s = Session::new(m.clone(), &opts(4, 1, None)).unwrap();
    s.prefill(&IDS[..5]).unwrap();
    let snap = s.snapshot().unwrap();
    let a = s.generate(&params).unwrap();
    s.restore(&snap).unwrap();
    assert_eq!(a, s.generate(&params).unwrap());
}

#[test]
fn generate_stops_at_stop_token_and_max_tokens() {
    let m = model_of(&llama_spec());
    let mut s = Session::new(m.clone(), &opts(4, 1, None)).unwrap();
    s.prefill(&IDS[..5]).unwrap();
    let snap = s.snapshot().unwrap();
    let g = s
        .generate(&GenerateParams {
            max_tokens: 6,
            ..GenerateParams::default()
        })
        .unwrap();
    assert_eq!(g.tokens.len(), 6);
    assert_eq!(g.stop, StopReason::MaxTokens);
    s.restore(&snap).unwrap();
    let stop = g.tokens[2];
    let first = g.tokens.iter().position(|&t| t == stop).unwrap();
    let h = s
        .generate(&GenerateParams {
            max_tokens: 6,
            stop_tokens: vec![stop],
            ..GenerateParams::default()
        })
        .unwrap();
    assert_eq!(h.tokens, g.tokens[..first]);
    assert_eq!(h.stop, StopReason::StopToken(stop));
}

// ---------------------------------------------------------------- hostile input

/// The fixture's bytes with metadata overridden (`Some`) or removed (`None`) and tensors
/// edited.
fn hostile(md: &[(&str, Option<Value>)], edit: &dyn Fn(&mut Tensors)) -> Vec<u8> {
    let s = llama_spec();
    let mut t = tensors(&s);
    edit(&mut t);
    let base = GgufFile::from_bytes(write(&s, &tensors(&s), &|_| {})).unwrap();
    let mut w = GgufWriter::new();
    for (k, v) in base.metadata().entries() {
        match md.iter().find(|(mk, _)| mk == k) {
            Some((_, Some(nv))) => {
                w.add(k.clone(), nv.clone()).unwrap();
            }
            Some((_, None)) => {}
            None => {
                w.add(k.clone(), v.clone()).unwrap();
            }
        }
    }
    for (mk, mv) in md {
        if base.metadata().get(mk).is_none()
            && let Some(v) = mv
        {
            w.add(mk.to_string(), v.clone()).unwrap();
        }
    }
    for (name, dims, data) in &t {
        w.add_tensor_f32(name.clone(), dims, data).unwrap();
    }
    w.to_bytes().unwrap()
}

/// A hostile case: name, metadata edits, the expected error class.
type Case = (
    &'static str,
    Vec<(&'static str, Option<Value>)>,
    fn(EngineError) -> bool,
);

#[test]
fn hostile_configurations_give_typed_errors() {
    let none = |_: &mut Tensors| {};
    let cfg = |e: EngineError| matches!(e, EngineError::InvalidConfig { .. });
    let u = |v: u32| Some(Value::U32(v));
    let cases: Vec<Case> = vec![
        ("zero blocks", vec![("llama.block_count", u(0))], cfg),
        ("huge blocks", vec![("llama.block_count", u(u32::MAX))], cfg),
        (
            "kv heads not dividing",
            vec![("llama.attention.head_count_kv", u(3))],
            cfg,
        ),
        (
            "zero heads",
            vec![("llama.attention.head_count", u(0))],
            cfg,
        ),
        (
            "heads not dividing embd",
            vec![("llama.attention.head_count", u(5))],
            cfg,
        ),
        (
            "odd rope dims",
            vec![("llama.rope.dimension_count", u(7))],
            cfg,
        ),
        (
            "rope dims above head",
            vec![("llama.rope.dimension_count", u(64))],
            cfg,
        ),
        (
            "nan eps",
            vec![(
                "llama.attention.layer_norm_rms_epsilon",
                Some(Value::F32(f32::NAN)),
            )],
            cfg,
        ),
        (
            "negative base",
            vec![("llama.rope.freq_base", Some(Value::F32(-1.0)))],
            cfg,
        ),
        (
            "yarn",
            vec![(
                "llama.rope.scaling.type",
                Some(Value::String("yarn".into())),
            )],
            cfg,
        ),
        ("vocab mismatch", vec![("llama.vocab_size", u(7))], cfg),
        (
            "eps wrong type",
            vec![(
                "llama.attention.layer_norm_rms_epsilon",
                Some(Value::String("x".into())),
            )],
            |e| matches!(e, EngineError::Gguf(_)),
        ),
        (
            "missing eps",
            vec![("llama.attention.layer_norm_rms_epsilon", None)],
            |e| matches!(e, EngineError::Gguf(_)),
        ),
        (
            "unknown arch",
            vec![("general.architecture", Some(Value::String("gpt9".into())))],
            |e| matches!(e, EngineError::UnsupportedArchitecture { .. }),
        ),
        (
            "moe keys on a dense file (no expert tensors)",
            vec![
                ("llama.expert_count", u(4)),
                ("llama.expert_used_count", u(2)),
            ],
            |e| matches!(e, EngineError::Gguf(_)),
        ),
        (
            "ff mismatch",
            vec![("llama.feed_forward_length", u(97))],
            |e| matches!(e, EngineError::TensorShape { .. }),
        ),
        (
            "key length mismatch",
            vec![("llama.attention.key_length", u(8))],
            |e| matches!(e, EngineError::TensorShape { .. }),
        ),
    ];
    for (what, md, ok) in cases {
        let e = load_err(hostile(&md, &none));
        assert!(ok(load_err(hostile(&md, &none))), "{what}: {e}");
    }
    // Tensor edits: wrong shape, missing tensor, quantized norm.
    let shape = load_err(hostile(&[], &|t: &mut Tensors| {
        let q = t.iter_mut().find(|x| x.0 == "blk.1.attn_q.weight").unwrap();
        q.1 = vec![32, 128];
    }));
    assert!(matches!(shape, EngineError::TensorShape { .. }), "{shape}");
    let missing = load_err(hostile(&[], &|t: &mut Tensors| {
        t.retain(|x| x.0 != "blk.2.ffn_up.weight");
    }));
    assert!(matches!(missing, EngineError::Gguf(_)), "{missing}");
    let embd = load_err(hostile(&[], &|t: &mut Tensors| {
        let e = t.iter_mut().find(|x| x.0 == "token_embd.weight").unwrap();
        e.1 = vec![64, 101, 1];
    }));
    assert!(matches!(embd, EngineError::TensorShape { .. }), "{embd}");
}

#[test]
fn runtime_misuse_gives_typed_errors() {
    let m = model_of(&llama_spec());
    let mut s = Session::new(m.clone(), &opts(4, 1, None)).unwrap();
    assert!(matches!(s.step(), Err(EngineError::State { .. })));
    assert!(matches!(
        s.feed(101),
        Err(EngineError::TokenOutOfRange { .. })
    ));
    assert!(matches!(
        s.prefill(&[1, 2, 5000]),
        Err(EngineError::TokenOutOfRange { .. })
    ));
    assert!(s.is_empty());
    assert!(matches!(s.trim(1), Err(EngineError::Trim { .. })));
    let mut small = Session::new(
        m.clone(),
        &SessionOptions {
            max_context: Some(4),
            ..opts(4, 1, None)
        },
    )
    .unwrap();
    assert!(matches!(
        small.prefill(&IDS[..5]),
        Err(EngineError::ContextFull { .. })
    ));
    small.prefill(&IDS[..4]).unwrap();
    assert!(matches!(
        small.feed(1),
        Err(EngineError::ContextFull { .. })
    ));
    // A snapshot of another model's shape is refused.
    let q = model_of(&Spec {
        n_layer: 2,
        ..llama_spec()
    });
    let other = Session::new(q, &opts(4, 1, None))
        .unwrap()
        .snapshot()
        .unwrap();
    assert!(matches!(
        s.restore(&other),
        Err(EngineError::SnapshotMismatch { .. })
    ));
    // Model::forward with a cache or scratch made for another model: typed errors.
    let small = model_of(&Spec {
        d: 32,
        n_head: 2,
        n_kv: 1,
        ..llama_spec()
    });
    let mut hooks = HookSet::new();
    let mut logits = Vec::new();
    let mut c_small = small.new_cache(None).unwrap();
    let mut sc_big =
        nmk_neural::engine::Scratch::new(m.config(), 4, nmk_neural::quant::Threads::single());
    let r = small.forward(
        &[1, 2],
        &mut c_small,
        &mut sc_big,
        &mut hooks,
        nmk_neural::engine::LogitsWanted::Last,
        &mut logits,
    );
    assert!(matches!(r, Err(EngineError::State { .. })), "{r:?}");
    let mut c_big = m.new_cache(None).unwrap();
    let mut sc_small =
        nmk_neural::engine::Scratch::new(small.config(), 4, nmk_neural::quant::Threads::single());
    let r = small.forward(
        &[1, 2],
        &mut c_big,
        &mut sc_small,
        &mut hooks,
        nmk_neural::engine::LogitsWanted::Last,
        &mut logits,
    );
    assert!(matches!(r, Err(EngineError::State { .. })), "{r:?}");
    let bad = SamplingParams {
        top_p: 0.0,
        ..SamplingParams::with_temperature(1.0)
    };
    s.prefill(&IDS[..3]).unwrap();
    assert!(matches!(
        s.sample(&bad),
        Err(EngineError::InvalidSampling { .. })
    ));
}

// ---------------------------------------------------------------- park format

fn reseal(body: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    let mut v = body.to_vec();
    v.extend_from_slice(&sha2::Sha256::digest(body));
    v
}

#[test]
fn park_to_bytes_and_resume_bitwise() {
    use nmk_neural::engine::{ParkBinding, SessionSnapshot};
    let id = ParkBinding {
        model: [7u8; 32],
        tokenizer: [9u8; 32],
    };
    for window in [None, Some(6)] {
        let m = model_of(&llama_spec());
        let o = SessionOptions {
            seed: 3,
            ..opts(4, 1, window)
        };
        let mut s = Session::new(m.clone(), &o).unwrap();
        s.prefill(&IDS[..10]).unwrap();
        let _ = decode(&mut s, 3);
        let bytes = s.snapshot().unwrap().to_bytes(&id);
        let params = GenerateParams {
            max_tokens: 8,
            stop_tokens: vec![],
            sampling: SamplingParams::with_temperature(1.3),
        };
        let (ta, la) = decode(&mut s, 4);
        let ga = s.generate(&params).unwrap();
        // Resume in a fresh session from the bytes.
        let mut r = Session::new(m.clone(), &o).unwrap();
        r.restore(&SessionSnapshot::from_bytes(&bytes, &id).unwrap())
            .unwrap();
        assert_eq!(decode(&mut r, 4), (ta, la), "window {window:?}");
        assert_eq!(r.generate(&params).unwrap(), ga);

        // Hostile bytes: wrong model, truncated, flipped, bad version, lying counts.
        let park = |b: &[u8]| SessionSnapshot::from_bytes(b, &id);
        let is_park =
            |r: Result<SessionSnapshot, EngineError>| matches!(r, Err(EngineError::Park { .. }));
        let other_model = ParkBinding {
            model: [8u8; 32],
            ..id
        };
        let other_tokenizer = ParkBinding {
            tokenizer: [8u8; 32],
            ..id
        };
        assert!(is_park(SessionSnapshot::from_bytes(&bytes, &other_model)));
        assert!(is_park(SessionSnapshot::from_bytes(
            &bytes,
            &other_tokenizer
        )));
        for cut in [0, 1, 31, 40, bytes.len() / 2, bytes.len() - 1] {
            assert!(is_park(park(&bytes[..cut])), "cut {cut}");
        }
        let mut flipped = bytes.clone();
        flipped[60] ^= 1;
        assert!(is_park(park(&flipped)));
        let body = &bytes[..bytes.len() - 32];
        let mut v1 = body.to_vec();
        v1[8] = 1;
        assert!(is_park(park(&reseal(&v1))));
        // The kv_dim field (offset 76, after magic, version and the two hashes): huge, then
        // zero (decodes, refused by restore).
        let mut huge = body.to_vec();
        huge[76..84].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(is_park(park(&reseal(&huge))));
        // Zero kv_dim with a huge layer count (offset 84) must not loop.
        let mut layers = body.to_vec();
        layers[76..84].copy_from_slice(&0u64.to_le_bytes());
        layers[84..92].copy_from_slice(&(u64::MAX / 2).to_le_bytes());
        assert!(is_park(park(&reseal(&layers))));
        let mut extra = body.to_vec();
        extra.push(0);
        assert!(is_park(park(&reseal(&extra))));
        // Well-formed but for another cache shape: refused by restore.
        let other = Session::new(
            model_of(&Spec {
                n_layer: 2,
                ..llama_spec()
            }),
            &o,
        )
        .unwrap()
        .snapshot()
        .unwrap()
        .to_bytes(&id);
        let snap = park(&other).unwrap();
        assert!(matches!(
            r.restore(&snap),
            Err(EngineError::SnapshotMismatch { .. })
        ));
    }
}
