//! Engine acceptance and determinism on the real models (SmolLM2-135M Q4_1, Qwen2.5-Coder-0.5B):
//! greedy continuations checked through the vocabulary's pieces, the determinism contract bit
//! for bit (chunking, threads, snapshot/restore/trim), hook liveness, and decode speed (printed;
//! run with `--nocapture`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use nmk_neural::engine::{
    ForbiddenIds, GenerateParams, Model, ResidualAdd, SamplingParams, Session, SessionOptions,
    argmax,
};
use nmk_neural::models::resolve_model;

fn load(name: &str) -> Arc<Model> {
    let path = resolve_model(name, &mut |_| {}).expect("model available");
    Arc::new(Model::load(path).expect("model loads"))
}

fn smol() -> Arc<Model> {
    static M: OnceLock<Arc<Model>> = OnceLock::new();
    M.get_or_init(|| load("smollm2-135m-instruct")).clone()
}

fn qwen() -> Arc<Model> {
    static M: OnceLock<Arc<Model>> = OnceLock::new();
    M.get_or_init(|| load("qwen2.5-coder-0.5b-instruct"))
        .clone()
}

/// The vocabulary's pieces (byte-level BPE: 'Ġ' is a space, 'Ċ' a newline).
fn vocab(m: &Model) -> Vec<String> {
    m.file()
        .metadata()
        .get_str_array("tokenizer.ggml.tokens")
        .unwrap()
        .to_vec()
}

fn text(vocab: &[String], ids: &[u32]) -> String {
    ids.iter()
        .map(|&i| vocab[i as usize].replace('Ġ', " ").replace('Ċ', "\n"))
        .collect()
}

/// Greedy longest-match segmentation of `s` over the vocabulary (a test stand-in for the
/// tokenizer: not llama.cpp's ids, but a valid encoding of the text).
fn segment(vocab: &[String], s: &str) -> Vec<u32> {
    let enc = s.replace(' ', "Ġ").replace('\n', "Ċ");
    let mut ids = Vec::new();
    let mut rest = enc.as_str();
    while !rest.is_empty() {
        let (id, len) = vocab
            .iter()
            .enumerate()
            .filter(|(_, p)| !p.is_empty() && rest.starts_with(p.as_str()))
            .map(|(i, p)| (i as u32, p.len()))
            .max_by_key(|&(i, l)| (l, std::cmp::Reverse(i)))
            .expect("some piece matches");
        ids.push(id);
        rest = &rest[len..];
    }
    ids
}

fn opts(batch: usize, threads: usize) -> SessionOptions {
    SessionOptions {
        batch,
        threads,
        ..SessionOptions::default()
    }
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

const PROMPT: [u32; 5] = [504, 3575, 282, 4649, 314];

/// Greedy decode of `n` tokens; returns tokens, per-step logits bits and tokens/s.
fn decode(s: &mut Session, n: usize) -> (Vec<u32>, Vec<Vec<u32>>, f64) {
    let mut toks = Vec::new();
    let mut logs = Vec::new();
    let t0 = Instant::now();
    for _ in 0..n {
        let l = s.logits().unwrap();
        let t = argmax(l).unwrap();
        logs.push(bits(l));
        toks.push(t);
        s.feed(t).unwrap();
    }
    // Run the last fed token too, so that n forwards are timed.
    s.logits().unwrap();
    let dt = t0.elapsed().as_secs_f64();
    (toks, logs, n as f64 / dt)
}

#[test]
fn smollm2_greedy_paris_and_speed() {
    let m = smol();
    let v = vocab(&m);
    assert_eq!(text(&v, &PROMPT), "The capital of France is");
    let mut s = Session::new(m.clone(), &opts(32, 1)).unwrap();
    let t0 = Instant::now();
    s.prefill(&PROMPT).unwrap();
    let prefill = t0.elapsed().as_secs_f64();
    let g = s
        .generate(&GenerateParams {
            max_tokens: 8,
            ..GenerateParams::default()
        })
        .unwrap();
    let cont = text(&v, &g.tokens);
    println!("smollm2 greedy: {:?} -> {cont:?}", g.tokens);
    assert!(cont.starts_with(" Paris."), "continuation {cont:?}");

    // Decode speed, 1 thread, 64 tokens after the prompt.
    let mut s = Session::new(m.clone(), &opts(32, 1)).unwrap();
    s.prefill(&PROMPT).unwrap();
    let (_, _, tps) = decode(&mut s, 64);
    println!(
        "smollm2-135m Q4_1: decode {tps:.1} tok/s (1 thread), prefill of 5 tokens {:.1} ms",
        prefill * 1e3
    );
    let mut s2 = Session::new(m.clone(), &opts(32, 2)).unwrap();
    s2.prefill(&PROMPT).unwrap();
    let (_, _, tps2) = decode(&mut s2, 64);
    println!("smollm2-135m Q4_1: decode {tps2:.1} tok/s (2 threads)");
}

#[test]
fn qwen_coder_continues_gcd_and_speed() {
    let m = qwen();
    let c = m.config();
    assert_eq!(
        (c.n_layer, c.n_embd, c.n_head, c.n_head_kv),
        (24, 896, 14, 2)
    );
    assert!(c.qkv_bias && !c.tied_output);
    let v = vocab(&m);
    let prompt = segment(&v, "def gcd(a, b):");
    println!(
        "qwen prompt pieces: {:?}",
        prompt.iter().map(|&i| &v[i as usize]).collect::<Vec<_>>()
    );
    let mut s = Session::new(m.clone(), &opts(32, 1)).unwrap();
    s.prefill(&prompt).unwrap();
    let t0 = Instant::now();
    let g = s
        .generate(&GenerateParams {
            max_tokens: 48,
            ..GenerateParams::default()
        })
        .unwrap();
    let tps = g.tokens.len() as f64 / t0.elapsed().as_secs_f64();
    let cont = text(&v, &g.tokens);
    println!("qwen greedy continuation: {cont:?}");
    println!(
        "qwen2.5-coder-0.5b: decode {tps:.1} tok/s (1 thread, {} tokens)",
        g.tokens.len()
    );
    assert!(cont.contains("return"), "continuation {cont:?}");
}

#[test]
fn smollm2_determinism_chunking_threads_bitwise() {
    let m = smol();
    let v = vocab(&m);
    let ids = segment(
        &v,
        "The quick brown fox jumps over the lazy dog, and then it ran home.",
    );
    assert!(ids.len() >= 12, "{}", ids.len());
    let all = |batch, threads| {
        let mut s = Session::new(m.clone(), &opts(batch, threads)).unwrap();
        bits(&s.prefill_all_logits(&ids).unwrap())
    };
    let one = all(64, 1);
    assert_eq!(one, all(64, 1), "repeated run");
    for c in [1, 2, 3, 7] {
        assert_eq!(one, all(c, 1), "batch {c}");
    }
    assert_eq!(one, all(64, 2), "2 threads");
    assert_eq!(one, all(3, 2), "2 threads, batch 3");
    // Token by token through feed/step.
    let mut s = Session::new(m.clone(), &opts(32, 1)).unwrap();
    let mut fed = Vec::new();
    for &t in &ids {
        s.feed(t).unwrap();
        fed.extend(bits(&s.step().unwrap().logits));
    }
    assert_eq!(one, fed, "token by token");
}

#[test]
fn smollm2_snapshot_restore_trim_bitwise_and_hook_liveness() {
    let m = smol();
    let mut straight = Session::new(m.clone(), &opts(32, 1)).unwrap();
    straight.prefill(&PROMPT).unwrap();
    let (toks, logs, _) = decode(&mut straight, 16);

    let mut s = Session::new(m.clone(), &opts(4, 1)).unwrap();
    s.prefill(&PROMPT).unwrap();
    let (t1, l1, _) = decode(&mut s, 6);
    assert_eq!((t1.as_slice(), l1.as_slice()), (&toks[..6], &logs[..6]));
    let snap = s.snapshot().unwrap();
    let _ = decode(&mut s, 5);
    // Through the park byte format (bound to the model's and tokenizer's SHA-256).
    let id = nmk_neural::engine::ParkBinding::of(&m).unwrap();
    let parked = snap.to_bytes(&id);
    let snap = nmk_neural::engine::SessionSnapshot::from_bytes(&parked, &id).unwrap();
    s.restore(&snap).unwrap();
    let (t2, l2, _) = decode(&mut s, 10);
    assert_eq!((t2.as_slice(), l2.as_slice()), (&toks[6..], &logs[6..]));
    s.trim(PROMPT.len() + 3).unwrap();
    let (t3, l3, _) = decode(&mut s, 13);
    assert_eq!((t3.as_slice(), l3.as_slice()), (&toks[3..], &logs[3..]));

    // Speculation: verify the 8 greedy drafts in one batched forward, bit for bit against the
    // sequential logits, then roll back 3 of them and continue identically.
    let mut v = Session::new(m.clone(), &opts(32, 1)).unwrap();
    v.prefill(&PROMPT).unwrap();
    let first = bits(v.logits().unwrap());
    assert_eq!(first, logs[0]);
    let verified = v.prefill_all_logits(&toks[..8]).unwrap();
    let nv = m.config().n_vocab;
    for k in 0..8 {
        assert_eq!(
            bits(&verified[k * nv..(k + 1) * nv]),
            logs[k + 1],
            "draft {k}"
        );
    }
    v.trim(PROMPT.len() + 5).unwrap();
    let (t4, l4, _) = decode(&mut v, 11);
    assert_eq!((t4.as_slice(), l4.as_slice()), (&toks[5..], &logs[5..]));

    // Zero-effect hooks identical; live hooks change the output.
    let d = m.config().n_embd;
    let run = |delta: f32, armed: bool, forbid: Vec<u32>| {
        let mut s = Session::new(m.clone(), &opts(32, 1)).unwrap();
        s.hooks_mut()
            .add_post_block(Box::new(ResidualAdd {
                layer: 10,
                delta: vec![delta; d],
                armed,
            }))
            .add_logit_mask(Box::new(ForbiddenIds::new(forbid)));
        s.prefill(&PROMPT).unwrap();
        bits(&s.step().unwrap().logits)
    };
    assert_eq!(run(0.0, true, vec![]), logs[0]);
    assert_eq!(run(1.0, false, vec![]), logs[0]);
    assert_ne!(run(0.5, true, vec![]), logs[0]);
    let masked = run(0.0, true, vec![toks[0]]);
    assert_ne!(masked, logs[0]);
    assert_eq!(masked[toks[0] as usize], f32::NEG_INFINITY.to_bits());

    // Seeded sampling is reproducible.
    let sample = |seed| {
        let mut s = Session::new(
            m.clone(),
            &SessionOptions {
                seed,
                ..opts(32, 1)
            },
        )
        .unwrap();
        s.prefill(&PROMPT).unwrap();
        s.generate(&GenerateParams {
            max_tokens: 12,
            stop_tokens: vec![],
            sampling: SamplingParams::with_temperature(0.9),
        })
        .unwrap()
        .tokens
    };
    assert_eq!(sample(11), sample(11));
}
