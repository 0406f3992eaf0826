//! Speculative greedy decoding (`engine::speculate`): bitwise identity with plain greedy decoding
//! (tokens, stop reason, session state, per-step logits), for repetitive and random prompts and
//! several draft lengths, on full caches and on sliding-window rings before, after and across
//! the wrap; liveness contrasts (a verify that skips the check or the rollback is caught); the
//! prompt-lookup drafter; and the real SmolLM2 on an input-grounded prompt (acceptance and
//! speed-up printed; run with `--nocapture`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::sync::Arc;
use std::time::Instant;

use common::synthetic::{bits, llama_spec, model_of, opts, qwen_spec};
use nmk_neural::engine::{
    Drafter, EngineError, ForbiddenIds, GenerateParams, Generated, Model, PromptLookup,
    SamplingParams, Session, SessionOptions, SpeculativeOutput, SpeculativeParams, StopReason,
    argmax, speculative_greedy,
};
use nmk_neural::models::resolve_model;
use nmk_neural::text::{PromptMode, TextModel};

// ---------------------------------------------------------------- harness

/// A prompt that repeats itself (prompt lookup finds long matches).
fn repetitive(n: usize) -> Vec<u32> {
    let phrase = [11u32, 42, 7, 99, 3, 58, 23];
    (0..n).map(|i| phrase[i % phrase.len()]).collect()
}

/// A pseudo-random prompt (few matches).
fn random(n: usize, seed: u64, vocab: u32) -> Vec<u32> {
    let mut x = seed;
    (0..n)
        .map(|_| {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((x >> 33) % u64::from(vocab)) as u32
        })
        .collect()
}

/// What plain greedy decoding leaves behind: its output, the session's tokens, and the logits
/// of `after` further greedy steps (each step's logits bits and token).
#[derive(Debug, PartialEq)]
struct Outcome {
    tokens: Vec<u32>,
    stop: StopReason,
    history: Vec<u32>,
    next: Vec<(u32, Vec<u32>)>,
}

/// Greedy steps after a run: logits bits of each and the token chosen.
fn continue_greedy(s: &mut Session, after: usize) -> Vec<(u32, Vec<u32>)> {
    let mut out = Vec::new();
    for _ in 0..after {
        let l = s.logits().unwrap();
        let t = argmax(l).unwrap();
        out.push((t, bits(l)));
        s.feed(t).unwrap();
    }
    out
}

fn plain(
    m: &Arc<Model>,
    window: Option<usize>,
    prompt: &[u32],
    p: &GenerateParams,
    after: usize,
) -> Outcome {
    let mut s = Session::new(m.clone(), &opts(8, 1, window)).unwrap();
    s.prefill(prompt).unwrap();
    let Generated { tokens, stop } = s.generate(p).unwrap();
    let history = s.tokens().to_vec();
    Outcome {
        tokens,
        stop,
        history,
        next: continue_greedy(&mut s, after),
    }
}

fn speculative(
    m: &Arc<Model>,
    window: Option<usize>,
    prompt: &[u32],
    p: &GenerateParams,
    k: usize,
    drafter: &mut dyn Drafter,
    after: usize,
) -> (Outcome, SpeculativeOutput) {
    let mut s = Session::new(m.clone(), &opts(8, 1, window)).unwrap();
    s.prefill(prompt).unwrap();
    let o = speculative_greedy(&mut s, &SpeculativeParams::from_generate(p, k), drafter).unwrap();
    let history = s.tokens().to_vec();
    let out = Outcome {
        tokens: o.tokens.clone(),
        stop: o.stop,
        history,
        next: continue_greedy(&mut s, after),
    };
    (out, o)
}

fn gparams(max_tokens: usize, stop_tokens: Vec<u32>) -> GenerateParams {
    GenerateParams {
        max_tokens,
        stop_tokens,
        ..GenerateParams::default()
    }
}

/// Proposes the true greedy continuation (from a plain run) for `good` tokens, then a wrong
/// token: every round then has accepted drafts and a rejection to roll back.
struct Oracle {
    /// Prompt and plain greedy output.
    truth: Vec<u32>,
    good: usize,
    vocab: u32,
}

impl Drafter for Oracle {
    fn draft(&mut self, history: &[u32], k: usize) -> Vec<u32> {
        let at = history.len();
        let mut d: Vec<u32> = self
            .truth
            .iter()
            .skip(at)
            .take(self.good.min(k))
            .copied()
            .collect();
        if d.len() < k {
            let wrong = self
                .truth
                .get(at + d.len())
                .map_or(0, |t| (t + 1) % self.vocab);
            d.push(wrong);
        }
        d
    }
}

// ---------------------------------------------------------------- drafter

#[test]
fn prompt_lookup_finds_latest_match_and_prefers_longer_ngrams() {
    let mut d = PromptLookup::default();
    // The last token 5 occurs at 1 (followed by 6) and at 4 (followed by 8): latest wins.
    assert_eq!(d.draft(&[4, 5, 6, 7, 5, 8, 9, 5], 2), vec![8, 9]);
    // The bigram (3, 5) occurs earlier, followed by 6; the unigram 5 more recently (by 8).
    let h = [3, 5, 6, 7, 5, 8, 3, 5];
    assert_eq!(d.draft(&h, 3), vec![6, 7, 5]);
    assert_eq!(PromptLookup::new(1, 1).draft(&h, 3), vec![8, 3, 5]);
    // The proposal stops at the end of the history, and at k.
    assert_eq!(d.draft(&[1, 2, 1], 5), vec![2, 1]);
    assert_eq!(d.draft(&[1, 2, 3, 1, 2], 1), vec![3]);
    // Overlapping matches: a run of one token proposes more of it.
    assert_eq!(d.draft(&[7, 7, 7, 7], 4), vec![7]);
    assert_eq!(d.draft(&[0, 7, 7, 7, 7], 4), vec![7]);
}

#[test]
fn prompt_lookup_empty_without_match_and_never_panics() {
    let mut d = PromptLookup::default();
    assert!(d.draft(&[1, 2, 3, 4], 4).is_empty());
    assert!(d.draft(&[], 4).is_empty());
    assert!(d.draft(&[1], 4).is_empty());
    assert!(d.draft(&[1, 1], 0).is_empty());
    // Degenerate n-gram bounds: 0 acts as 1, an inverted range matches nothing.
    assert_eq!(
        PromptLookup::new(0, 0).draft(&[1, 2, 1], 3),
        Vec::<u32>::new()
    );
    assert_eq!(PromptLookup::new(0, 1).draft(&[1, 2, 1], 3), vec![2, 1]);
    assert!(PromptLookup::new(3, 1).draft(&[1, 2, 1, 2], 3).is_empty());
    assert_eq!(
        PromptLookup::new(1, 100).draft(&[1, 2, 1, 2], 3),
        vec![1, 2]
    );
    for n in 0..12 {
        for k in 0..4 {
            let h: Vec<u32> = (0..n).map(|i| (i % 3) as u32).collect();
            let got = d.draft(&h, k);
            assert!(got.len() <= k);
        }
    }
}

// ---------------------------------------------------------------- bitwise identity

#[test]
fn identical_to_greedy_for_repetitive_and_random_prompts_and_every_k() {
    for spec in [llama_spec(), qwen_spec()] {
        let m = model_of(&spec);
        let v = spec.vocab as u32;
        let prompts = [
            ("repetitive", repetitive(30)),
            ("random", random(20, 1, v)),
            ("random2", random(9, 77, v)),
            ("short", vec![5]),
        ];
        for (name, prompt) in &prompts {
            let p = gparams(40, vec![]);
            let want = plain(&m, None, prompt, &p, 6);
            for k in [1, 2, 4, 8] {
                let (got, o) =
                    speculative(&m, None, prompt, &p, k, &mut PromptLookup::default(), 6);
                assert_eq!(got, want, "{} {name} k={k}", spec.arch);
                assert_eq!(o.verify_calls + o.plain_steps, rounds(&o));
                eprintln!(
                    "{} {name:>10} k={k}: drafted {:3} accepted {:3} ({:5.1}%), {} verify + {} plain \
                     forwards for {} tokens, {} trims",
                    spec.arch,
                    o.drafted,
                    o.accepted,
                    100.0 * o.acceptance_rate(),
                    o.verify_calls,
                    o.plain_steps,
                    o.tokens.len(),
                    o.trims
                );
            }
        }
    }
}

/// Every round yields its first token plus the accepted drafts.
fn rounds(o: &SpeculativeOutput) -> usize {
    o.tokens.len() - o.accepted
}

#[test]
fn oracle_drafts_accept_and_reject_every_round_and_stay_identical() {
    let spec = llama_spec();
    let m = model_of(&spec);
    let prompt = random(12, 5, spec.vocab as u32);
    let p = gparams(30, vec![]);
    let want = plain(&m, None, &prompt, &p, 5);
    for k in [1, 2, 4, 8] {
        for good in [0, 1, 3, 8] {
            let mut d = Oracle {
                truth: [prompt.clone(), want.tokens.clone()].concat(),
                good,
                vocab: spec.vocab as u32,
            };
            let (got, o) = speculative(&m, None, &prompt, &p, k, &mut d, 5);
            assert_eq!(got, want, "k={k} good={good}");
            // Drafts are exact up to `good`: all of those are accepted, the wrong one never.
            assert!(o.accepted >= o.verify_calls * good.min(k).min(1), "{o:?}");
            if good < k {
                assert!(o.trims > 0, "k={k} good={good}: {o:?}");
            }
            assert_eq!(o.restores, 0);
        }
    }
}

#[test]
fn per_step_logits_identical_between_speculative_segments() {
    // Alternate short speculative runs with single plain steps; every plain step's logits must
    // equal those of straight greedy decoding at that position, bit for bit.
    let spec = llama_spec();
    let m = model_of(&spec);
    let prompt = repetitive(16);
    let mut straight = Session::new(m.clone(), &opts(8, 1, None)).unwrap();
    straight.prefill(&prompt).unwrap();
    let reference = continue_greedy(&mut straight, 60);
    for k in [1, 2, 4, 8] {
        let mut s = Session::new(m.clone(), &opts(8, 1, None)).unwrap();
        s.prefill(&prompt).unwrap();
        let mut checked = 0;
        while s.len() - prompt.len() < 55 {
            let o = speculative_greedy(
                &mut s,
                &SpeculativeParams::from_generate(&gparams(3 + checked % 4, vec![]), k),
                &mut PromptLookup::default(),
            )
            .unwrap();
            let at = s.len() - prompt.len();
            assert_eq!(
                s.tokens()[prompt.len()..],
                reference.iter().map(|r| r.0).take(at).collect::<Vec<_>>()[..]
            );
            let l = s.logits().unwrap();
            let (t, want) = &reference[at];
            let max_abs = l
                .iter()
                .zip(want)
                .map(|(a, b)| (a - f32::from_bits(*b)).abs())
                .fold(0f32, f32::max);
            assert_eq!(max_abs, 0.0, "k={k} position {at}");
            assert_eq!(&bits(l), want, "k={k} position {at}");
            assert_eq!(argmax(l).unwrap(), *t);
            s.feed(*t).unwrap();
            checked += 1;
            assert!(o.tokens.len() <= 3 + (checked - 1) % 4);
        }
        assert!(checked > 5);
    }
}

#[test]
fn stop_tokens_and_max_tokens_honoured_exactly() {
    let spec = llama_spec();
    let m = model_of(&spec);
    for prompt in [repetitive(21), random(15, 9, spec.vocab as u32)] {
        let free = plain(&m, None, &prompt, &gparams(24, vec![]), 0);
        // Every token of the free run as a stop token (drafts often contain it).
        let mut stops: Vec<u32> = free.tokens.clone();
        stops.dedup();
        for &stop in stops.iter().take(8) {
            for extra in [vec![], vec![1000]] {
                let p = gparams(24, [vec![stop], extra.clone()].concat());
                let want = plain(&m, None, &prompt, &p, 3);
                assert_eq!(want.stop, StopReason::StopToken(stop));
                for k in [1, 4, 8] {
                    let (got, _) =
                        speculative(&m, None, &prompt, &p, k, &mut PromptLookup::default(), 3);
                    assert_eq!(got, want, "stop {stop} k={k}");
                }
            }
        }
        for max in [0, 1, 2, 3, 5, 9, 17] {
            let p = gparams(max, vec![]);
            let want = plain(&m, None, &prompt, &p, 3);
            assert_eq!(want.tokens.len(), max);
            for k in [1, 2, 4, 8] {
                let (got, o) =
                    speculative(&m, None, &prompt, &p, k, &mut PromptLookup::default(), 3);
                assert_eq!(got, want, "max {max} k={k}");
                assert_eq!(o.stop, StopReason::MaxTokens);
            }
        }
    }
}

#[test]
fn context_limit_matches_plain_greedy() {
    // Near the context limit, drafts must not make the verify batch fail where plain greedy
    // succeeds, and both fail alike once the limit is reached.
    let spec = llama_spec();
    let m = model_of(&spec);
    let prompt = repetitive(40);
    let o = |limit| SessionOptions {
        max_context: Some(limit),
        ..opts(8, 1, None)
    };
    for k in [2, 8] {
        let mut a = Session::new(m.clone(), &o(50)).unwrap();
        a.prefill(&prompt).unwrap();
        let ga = a.generate(&gparams(10, vec![])).unwrap();
        let mut b = Session::new(m.clone(), &o(50)).unwrap();
        b.prefill(&prompt).unwrap();
        let gb = speculative_greedy(
            &mut b,
            &SpeculativeParams::from_generate(&gparams(10, vec![]), k),
            &mut PromptLookup::default(),
        )
        .unwrap();
        assert_eq!(ga.tokens, gb.tokens);
        assert_eq!(a.tokens(), b.tokens());
        assert_eq!(bits(a.logits().unwrap()), bits(b.logits().unwrap()));
        assert!(matches!(
            a.generate(&gparams(1, vec![])),
            Err(EngineError::ContextFull { .. })
        ));
        assert!(matches!(
            speculative_greedy(
                &mut b,
                &SpeculativeParams::from_generate(&gparams(1, vec![]), k),
                &mut PromptLookup::default()
            ),
            Err(EngineError::ContextFull { .. })
        ));
    }
}

#[test]
fn refuses_sampling_and_hooks() {
    let m = model_of(&llama_spec());
    let mut s = Session::new(m.clone(), &opts(8, 1, None)).unwrap();
    s.prefill(&[1, 2, 3]).unwrap();
    let mut p = SpeculativeParams::from_generate(&gparams(4, vec![]), 4);
    p.sampling = SamplingParams::with_temperature(0.8);
    assert!(matches!(
        speculative_greedy(&mut s, &p, &mut PromptLookup::default()),
        Err(EngineError::InvalidSampling { .. })
    ));
    s.hooks_mut()
        .add_logit_mask(Box::new(ForbiddenIds::new([7])));
    let p = SpeculativeParams::from_generate(&gparams(4, vec![]), 4);
    assert!(matches!(
        speculative_greedy(&mut s, &p, &mut PromptLookup::default()),
        Err(EngineError::State { .. })
    ));
    // A fresh session has nothing to continue.
    let mut e = Session::new(m, &opts(8, 1, None)).unwrap();
    assert!(speculative_greedy(&mut e, &p, &mut PromptLookup::default()).is_err());
}

#[test]
fn repetition_penalty_selection_identical() {
    // Greedy with a repetition penalty: the verify must penalise with each position's own
    // history, as `sample` does.
    let spec = llama_spec();
    let m = model_of(&spec);
    let prompt = repetitive(25);
    let p = GenerateParams {
        max_tokens: 30,
        stop_tokens: vec![],
        sampling: SamplingParams {
            repeat_penalty: 1.3,
            repeat_last_n: 8,
            ..SamplingParams::greedy()
        },
    };
    let mut a = Session::new(m.clone(), &opts(8, 1, None)).unwrap();
    a.prefill(&prompt).unwrap();
    let ga = a.generate(&p).unwrap();
    for k in [1, 4, 8] {
        let mut b = Session::new(m.clone(), &opts(8, 1, None)).unwrap();
        b.prefill(&prompt).unwrap();
        let gb = speculative_greedy(
            &mut b,
            &SpeculativeParams::from_generate(&p, k),
            &mut PromptLookup::default(),
        )
        .unwrap();
        assert_eq!(ga.tokens, gb.tokens, "k={k}");
        assert_eq!(a.tokens(), b.tokens());
    }
    // Liveness: the penalty changes the output here.
    let g0 = plain(&m, None, &prompt, &gparams(30, vec![]), 0);
    assert_ne!(g0.tokens, ga.tokens);
}

#[test]
fn hostile_drafter_output_only_costs_speed() {
    // Too many tokens, out-of-vocabulary ids, a stop token: the output stays that of greedy.
    struct Junk(u32);
    impl Drafter for Junk {
        fn draft(&mut self, history: &[u32], k: usize) -> Vec<u32> {
            self.0 = self.0.wrapping_add(1);
            match self.0 % 4 {
                0 => vec![3; k + 50],
                1 => vec![history.last().copied().unwrap_or(0), u32::MAX, 7],
                2 => vec![101, 1, 2],
                _ => history.iter().rev().take(k + 1).copied().collect(),
            }
        }
    }
    let spec = llama_spec();
    let m = model_of(&spec);
    let prompt = repetitive(14);
    let free = plain(&m, None, &prompt, &gparams(30, vec![]), 0);
    for stop in [vec![], vec![free.tokens[7]]] {
        let p = gparams(30, stop);
        let want = plain(&m, None, &prompt, &p, 4);
        for k in [1, 2, 4, 8] {
            let (got, o) = speculative(&m, None, &prompt, &p, k, &mut Junk(0), 4);
            assert_eq!(got, want, "k={k}");
            assert!(o.drafted <= k * o.verify_calls);
        }
    }
}

// ---------------------------------------------------------------- ring (sliding window)

const W: usize = 64;

/// Speculation on a ring of `W` positions vs plain greedy on the same ring; returns the stats.
fn ring_case(prompt: &[u32], max_tokens: usize, k: usize, good: usize) -> SpeculativeOutput {
    let spec = llama_spec();
    let m = model_of(&spec);
    let p = gparams(max_tokens, vec![]);
    let want = plain(&m, Some(W), prompt, &p, 8);
    let mut d = Oracle {
        truth: [prompt.to_vec(), want.tokens.clone()].concat(),
        good,
        vocab: spec.vocab as u32,
    };
    let (got, o) = speculative(&m, Some(W), prompt, &p, k, &mut d, 8);
    assert_eq!(got, want, "ring prompt {} k={k} good={good}", prompt.len());
    // Liveness of the ring: the same decode without a window differs once past it.
    if prompt.len() + max_tokens > W + 8 {
        assert_ne!(plain(&m, None, prompt, &p, 8).next, want.next);
    }
    o
}

#[test]
fn ring_rollback_before_the_wrap_trims() {
    let prompt = random(10, 3, 101);
    for k in [1, 2, 4, 8] {
        // One exact draft, then a wrong one (with k = 1 only the wrong one).
        let o = ring_case(&prompt, 40, k, usize::from(k > 1));
        const { assert!(10 + 40 + 8 < W) };
        assert!(o.trims > 0 && o.restores == 0, "k={k}: {o:?}");
    }
}

#[test]
fn ring_rollback_after_the_wrap_restores() {
    let prompt = random(90, 4, 101);
    for k in [2, 4, 8] {
        let o = ring_case(&prompt, 40, k, 1);
        assert!(o.restores > 0 && o.trims == 0, "k={k}: {o:?}");
    }
    // With one draft the batch writes two positions, and dropping the last one leaves every key
    // the kept position needs: a wrapped ring still trims.
    let o = ring_case(&prompt, 40, 1, 0);
    assert!(o.trims > 0 && o.restores == 0, "{o:?}");
}

#[test]
fn ring_rollback_across_the_wrap_restores() {
    // The first verify batch starts below W and ends past it; its rejected tail is rolled back
    // by restoring the snapshot taken before the batch.
    for (plen, k) in [(61, 4), (60, 8), (62, 2), (63, 8)] {
        let prompt = random(plen, 6, 101);
        let spec = llama_spec();
        let m = model_of(&spec);
        let mut probe = Session::new(m, &opts(8, 1, Some(W))).unwrap();
        probe.prefill(&prompt).unwrap();
        assert!(!probe.cache().has_wrapped());
        let o = ring_case(&prompt, 20, k, 1);
        assert!(o.restores > 0, "plen {plen} k={k}: {o:?}");
    }
    // And one where everything but the crossing round is a plain step: the only rollback is
    // the one across the boundary.
    let prompt = random(61, 8, 101);
    let spec = llama_spec();
    let m = model_of(&spec);
    let p = gparams(12, vec![]);
    let want = plain(&m, Some(W), &prompt, &p, 8);
    struct Once(Vec<u32>, bool);
    impl Drafter for Once {
        fn draft(&mut self, _h: &[u32], k: usize) -> Vec<u32> {
            if std::mem::replace(&mut self.1, true) {
                Vec::new()
            } else {
                self.0.iter().take(k).copied().collect()
            }
        }
    }
    // Drafts: the true second token, then a wrong one, then more: the batch covers
    // positions 61..=65 and keeps 61..=62.
    let t = &want.tokens;
    let mut d = Once(vec![t[1], (t[2] + 1) % 101, 5, 6], false);
    let (got, o) = speculative(&m, Some(W), &prompt, &p, 4, &mut d, 8);
    assert_eq!(got, want);
    assert_eq!(
        (o.verify_calls, o.accepted, o.restores, o.trims),
        (1, 1, 1, 0),
        "{o:?}"
    );
}

// ---------------------------------------------------------------- liveness

/// A speculative loop with a deliberate fault, built on the public session API.
#[derive(Clone, Copy, Debug)]
enum Fault {
    /// Keep every draft token without checking it.
    NoCheck,
    /// Check, but leave the rejected positions in the session.
    NoRollback,
    /// Roll back one position too few (keeps the first rejected draft's KV and token).
    OffByOne,
}

fn broken(
    s: &mut Session,
    max_tokens: usize,
    k: usize,
    d: &mut dyn Drafter,
    fault: Fault,
) -> Vec<u32> {
    let nv = s.model().config().n_vocab;
    let mut out = Vec::new();
    while out.len() < max_tokens {
        let t0 = argmax(s.logits().unwrap()).unwrap();
        let mut hist = s.tokens().to_vec();
        let base = hist.len();
        hist.push(t0);
        let draft = d.draft(&hist, k.min(max_tokens - out.len() - 1));
        let batch = [vec![t0], draft.clone()].concat();
        let rows = s.prefill_all_logits(&batch).unwrap();
        out.push(t0);
        let mut kept = 0;
        for (j, &dt) in draft.iter().enumerate() {
            let ok = argmax(&rows[j * nv..(j + 1) * nv]) == Some(dt);
            if !ok && !matches!(fault, Fault::NoCheck) {
                break;
            }
            out.push(dt);
            kept += 1;
        }
        if kept < draft.len() {
            match fault {
                Fault::NoCheck | Fault::NoRollback => {}
                // The correct trim is to base + 1 + kept.
                Fault::OffByOne => s.trim(base + 2 + kept).unwrap(),
            }
        }
    }
    out.truncate(max_tokens);
    out
}

#[test]
fn liveness_broken_verify_is_caught() {
    let spec = llama_spec();
    let m = model_of(&spec);
    let prompt = random(12, 5, spec.vocab as u32);
    let p = gparams(24, vec![]);
    let want = plain(&m, None, &prompt, &p, 4);
    for fault in [Fault::NoCheck, Fault::NoRollback, Fault::OffByOne] {
        let mut d = Oracle {
            truth: [prompt.clone(), want.tokens.clone()].concat(),
            good: 1,
            vocab: spec.vocab as u32,
        };
        let mut s = Session::new(m.clone(), &opts(8, 1, None)).unwrap();
        s.prefill(&prompt).unwrap();
        let tokens = broken(&mut s, 24, 4, &mut d, fault);
        let got = Outcome {
            tokens: tokens.clone(),
            stop: StopReason::MaxTokens,
            history: s.tokens().to_vec(),
            next: continue_greedy(&mut s, 4),
        };
        assert_ne!(got, want, "{fault:?} went unnoticed");
        eprintln!(
            "liveness {fault:?}: tokens differ {}, history differs {}, next logits differ {}",
            got.tokens != want.tokens,
            got.history != want.history,
            got.next != want.next
        );
    }
    // The correct loop under the same drafter passes the same comparison.
    let mut d = Oracle {
        truth: [prompt.clone(), want.tokens.clone()].concat(),
        good: 1,
        vocab: spec.vocab as u32,
    };
    let (got, _) = speculative(&m, None, &prompt, &p, 4, &mut d, 4);
    assert_eq!(got, want);
}

// ---------------------------------------------------------------- real model

fn smol() -> TextModel {
    let path = resolve_model("smollm2-135m-instruct", &mut |_| {}).expect("model available");
    TextModel::load(&path).expect("model loads")
}

#[test]
fn smollm2_repeat_prompt_identical_and_acceptance_and_speedup_printed() {
    let tm = smol();
    let m = tm.model().clone();
    let prompt = tm
        .encode(
            "Repeat this sentence exactly: The old lighthouse keeper counted forty-two ships \
             sailing past the northern cliffs before the storm arrived at midnight.",
            PromptMode::Chat,
        )
        .unwrap();
    let p = gparams(48, tm.stop_tokens().to_vec());
    let t = Instant::now();
    let want = plain(&m, None, &prompt, &p, 3);
    let plain_s = t.elapsed().as_secs_f64();
    let text = tm.tokenizer().decode(&want.tokens);
    eprintln!(
        "smollm2 plain greedy ({} tokens, {:?}): {text:?}",
        want.tokens.len(),
        want.stop
    );
    for k in [2, 4, 8] {
        let t = Instant::now();
        let (got, o) = speculative(&m, None, &prompt, &p, k, &mut PromptLookup::default(), 3);
        let spec_s = t.elapsed().as_secs_f64();
        assert_eq!(got, want, "k={k}");
        eprintln!(
            "smollm2 k={k}: acceptance {:.1}% ({}/{} drafts), {} verify + {} plain forwards for {} \
             tokens ({:.2} tokens/forward), {} trims; wall {:.0} ms vs plain {:.0} ms (incl. prefill \
             and 3 extra steps): speed-up {:.2}x",
            100.0 * o.acceptance_rate(),
            o.accepted,
            o.drafted,
            o.verify_calls,
            o.plain_steps,
            o.tokens.len(),
            o.tokens_per_forward(),
            o.trims,
            spec_s * 1e3,
            plain_s * 1e3,
            plain_s / spec_s
        );
        if k == 4 {
            // The sentence is copied from the prompt: prompt lookup must do real work here.
            assert!(o.accepted > 0, "{o:?}");
        }
    }
}

#[test]
fn speedup_measurement_printed_only() {
    // Decode-loop timing only (prefill excluded), synthetic repetitive workload on SmolLM2;
    // prints, never asserts on time.
    let tm = smol();
    let m = tm.model().clone();
    let prompt = tm
        .encode(
            "Copy this list exactly: alpha, beta, gamma, delta, epsilon, zeta, eta, theta, \
             iota, kappa, lambda, mu.",
            PromptMode::Chat,
        )
        .unwrap();
    let p = gparams(40, tm.stop_tokens().to_vec());
    let mut a = Session::new(m.clone(), &opts(8, 1, None)).unwrap();
    a.prefill(&prompt).unwrap();
    let t = Instant::now();
    let ga = a.generate(&p).unwrap();
    let plain_s = t.elapsed().as_secs_f64();
    for k in [1, 2, 4, 8] {
        let mut b = Session::new(m.clone(), &opts(8, 1, None)).unwrap();
        b.prefill(&prompt).unwrap();
        let t = Instant::now();
        let o = speculative_greedy(
            &mut b,
            &SpeculativeParams::from_generate(&p, k),
            &mut PromptLookup::default(),
        )
        .unwrap();
        let spec_s = t.elapsed().as_secs_f64();
        assert_eq!(o.tokens, ga.tokens);
        eprintln!(
            "speed-up k={k}: {} tokens, plain {:.1} ms, speculative {:.1} ms ({:.2}x), acceptance \
             {:.1}%, {:.2} tokens/forward",
            o.tokens.len(),
            plain_s * 1e3,
            spec_s * 1e3,
            plain_s / spec_s,
            100.0 * o.acceptance_rate(),
            o.tokens_per_forward()
        );
    }
}
