//! The commit gate per token (`Session::generate_gated`): a gate that accepts everything is
//! plain generation, token for token and state for state; refusing ids is the same as masking
//! them before selection (greedy); a stop verdict ends at once; a gate that refuses everything
//! exhausts without feeding; a refused stop token forces the output to go on; the gate's mask
//! hook runs before selection. Liveness: a refusing gate changes the output.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::collections::BTreeSet;

use common::synthetic::{bits, llama_spec, model_of, opts};
use nmk_neural::engine::{
    AcceptAll, DEFAULT_MAX_RESAMPLES, ForbiddenIds, GenerateParams, SamplingParams, Session,
    StopReason, TokenGate, TokenVerdict,
};

const PROMPT: [u32; 6] = [5, 17, 99, 3, 42, 8];

fn session() -> Session {
    Session::new(model_of(&llama_spec()), &opts(4, 1, None)).unwrap()
}

fn params(max_tokens: usize, sampling: SamplingParams, stop: Vec<u32>) -> GenerateParams {
    GenerateParams {
        max_tokens,
        stop_tokens: stop,
        sampling,
    }
}

/// Refuses a fixed set of ids; records every candidate it saw.
struct Refuse {
    ids: BTreeSet<u32>,
    seen: Vec<(u64, u32, bool)>,
}

impl TokenGate for Refuse {
    fn judge(&mut self, position: u64, candidate: u32, is_stop: bool) -> TokenVerdict {
        self.seen.push((position, candidate, is_stop));
        if self.ids.contains(&candidate) {
            TokenVerdict::Resample
        } else {
            TokenVerdict::Accept
        }
    }
}

#[test]
fn accept_all_is_plain_generation_greedy_and_sampled() {
    for sampling in [
        SamplingParams::greedy(),
        SamplingParams {
            temperature: 0.9,
            top_k: 20,
            ..SamplingParams::greedy()
        },
    ] {
        let p = params(16, sampling, vec![]);
        let mut a = session();
        a.prefill(&PROMPT).unwrap();
        let plain = a.generate(&p).unwrap();
        let mut b = session();
        b.prefill(&PROMPT).unwrap();
        let mut streamed = Vec::new();
        let gated = b
            .generate_gated(&p, &mut AcceptAll, &mut |t| streamed.push(t))
            .unwrap();
        assert_eq!(gated.tokens, plain.tokens);
        assert_eq!(streamed, plain.tokens);
        assert_eq!(gated.stop, plain.stop);
        assert_eq!(gated.counts.accepted, 16);
        assert_eq!(gated.counts.resampled, 0);
        // Same state afterwards: next logits and PRNG.
        assert_eq!(bits(a.logits().unwrap()), bits(b.logits().unwrap()));
        assert_eq!(a.rng(), b.rng());
    }
}

#[test]
fn refusing_ids_equals_masking_them_before_selection() {
    // Which ids does plain greedy pick? Refuse two of them.
    let p = params(12, SamplingParams::greedy(), vec![]);
    let mut s = session();
    s.prefill(&PROMPT).unwrap();
    let plain = s.generate(&p).unwrap();
    let refused: BTreeSet<u32> = plain.tokens.iter().take(2).copied().collect();

    let mut s = session();
    s.prefill(&PROMPT).unwrap();
    let mut gate = Refuse {
        ids: refused.clone(),
        seen: vec![],
    };
    let gated = s.generate_gated(&p, &mut gate, &mut |_| {}).unwrap();
    // Liveness: the gate changed the output.
    assert_ne!(gated.tokens, plain.tokens);
    assert!(gated.tokens.iter().all(|t| !refused.contains(t)));
    assert!(gated.counts.resampled >= 1);

    let mut m = session();
    m.hooks_mut()
        .add_logit_mask(Box::new(ForbiddenIds::new(refused.iter().copied())));
    m.prefill(&PROMPT).unwrap();
    let masked = m.generate(&p).unwrap();
    assert_eq!(gated.tokens, masked.tokens);
    // The gate saw each refused candidate, then the next best, at the same position.
    for w in gate.seen.windows(2) {
        if refused.contains(&w[0].1) {
            assert_eq!(w[0].0, w[1].0);
        }
    }
}

#[test]
fn mask_hook_runs_before_selection() {
    struct MaskOnly(Vec<u32>);
    impl TokenGate for MaskOnly {
        fn mask(&mut self, _position: u64, logits: &mut [f32]) {
            for &i in &self.0 {
                logits[i as usize] = f32::NEG_INFINITY;
            }
        }
        fn judge(&mut self, _p: u64, candidate: u32, _s: bool) -> TokenVerdict {
            assert!(
                !self.0.contains(&candidate),
                "masked id {candidate} selected"
            );
            TokenVerdict::Accept
        }
    }
    let p = params(10, SamplingParams::greedy(), vec![]);
    let mut s = session();
    s.prefill(&PROMPT).unwrap();
    let plain = s.generate(&p).unwrap();
    let mut s = session();
    s.prefill(&PROMPT).unwrap();
    let g = s
        .generate_gated(&p, &mut MaskOnly(plain.tokens[..3].to_vec()), &mut |_| {})
        .unwrap();
    assert_ne!(g.tokens, plain.tokens);
    assert_eq!(g.counts.resampled, 0);
}

#[test]
fn stop_verdict_ends_at_once_without_feeding() {
    struct StopAt(u64);
    impl TokenGate for StopAt {
        fn judge(&mut self, position: u64, _c: u32, _s: bool) -> TokenVerdict {
            if position >= self.0 {
                TokenVerdict::Stop
            } else {
                TokenVerdict::Accept
            }
        }
    }
    let mut s = session();
    s.prefill(&PROMPT).unwrap();
    let g = s
        .generate_gated(
            &params(20, SamplingParams::greedy(), vec![]),
            &mut StopAt(PROMPT.len() as u64 + 3),
            &mut |_| {},
        )
        .unwrap();
    assert_eq!(g.stop, StopReason::GateStop);
    assert_eq!(g.tokens.len(), 3);
    assert_eq!(s.tokens().len(), PROMPT.len() + 3);
}

#[test]
fn refusing_everything_exhausts_without_feeding() {
    struct No;
    impl TokenGate for No {
        fn judge(&mut self, _p: u64, _c: u32, _s: bool) -> TokenVerdict {
            TokenVerdict::Resample
        }
    }
    let mut s = session();
    s.prefill(&PROMPT).unwrap();
    let g = s
        .generate_gated(
            &params(5, SamplingParams::greedy(), vec![]),
            &mut No,
            &mut |_| {},
        )
        .unwrap();
    assert_eq!(g.stop, StopReason::GateExhausted);
    assert!(g.tokens.is_empty());
    assert_eq!(g.counts.resampled, DEFAULT_MAX_RESAMPLES);
    assert_eq!(s.tokens(), PROMPT);
}

#[test]
fn a_refused_stop_token_makes_the_output_go_on() {
    // Make plain greedy's third token a stop token: it ends there.
    let mut s = session();
    s.prefill(&PROMPT).unwrap();
    let plain = s
        .generate(&params(12, SamplingParams::greedy(), vec![]))
        .unwrap();
    let stop = plain.tokens[2];
    if plain.tokens[..2].contains(&stop) {
        panic!("pick another prompt: the stop token repeats early");
    }
    let p = params(12, SamplingParams::greedy(), vec![stop]);
    let mut s = session();
    s.prefill(&PROMPT).unwrap();
    let ended = s.generate_gated(&p, &mut AcceptAll, &mut |_| {}).unwrap();
    assert_eq!(ended.stop, StopReason::StopToken(stop));
    assert_eq!(ended.tokens, plain.tokens[..2]);
    // A gate that refuses to end keeps it going past that point.
    let mut s = session();
    s.prefill(&PROMPT).unwrap();
    let mut gate = Refuse {
        ids: [stop].into(),
        seen: vec![],
    };
    let went_on = s.generate_gated(&p, &mut gate, &mut |_| {}).unwrap();
    assert!(went_on.tokens.len() > 2, "{went_on:?}");
    assert!(
        gate.seen
            .iter()
            .any(|&(_, t, is_stop)| t == stop && is_stop)
    );
}
