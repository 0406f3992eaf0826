//! Lanes (`engine::lanes`): sessions advanced together by the round-robin scheduler give the
//! tokens, stop reasons, next logits and PRNG state of each session run alone, bit for bit; every
//! active lane gets exactly one token per round (no lane starves, a late lane joins the
//! rotation); a failing lane ends alone. Liveness: the lanes really differ from one another.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::collections::BTreeMap;

use common::synthetic::{bits, llama_spec, model_of, opts};
use nmk_neural::engine::{
    AcceptAll, GenerateParams, LaneEvent, LaneScheduler, SamplingParams, Session, SessionOptions,
    StopReason,
};

fn lane_setup(i: usize) -> (Vec<u32>, GenerateParams, u64) {
    let prompt: Vec<u32> = (0..(4 + 3 * i) as u32)
        .map(|k| (k * 13 + 7 * i as u32) % 97)
        .collect();
    let sampling = if i.is_multiple_of(2) {
        SamplingParams::greedy()
    } else {
        SamplingParams {
            temperature: 0.8,
            top_k: 30,
            ..SamplingParams::greedy()
        }
    };
    let params = GenerateParams {
        max_tokens: 6 + 4 * i,
        stop_tokens: vec![],
        sampling,
    };
    (prompt, params, 100 + i as u64)
}

fn session(seed: u64, max_context: Option<u64>) -> Session {
    let o = SessionOptions {
        seed,
        max_context,
        ..opts(4, 1, None)
    };
    Session::new(model_of(&llama_spec()), &o).unwrap()
}

#[test]
fn lanes_equal_each_session_alone_and_share_rounds_fairly() {
    let n = 4;
    let mut alone = Vec::new();
    for i in 0..n {
        let (p, params, seed) = lane_setup(i);
        let mut s = session(seed, None);
        s.prefill(&p).unwrap();
        let g = s
            .generate_gated(&params, &mut AcceptAll, &mut |_| {})
            .unwrap();
        let next = bits(s.logits().unwrap());
        alone.push((g, next, s.rng()));
    }

    let mut sched = LaneScheduler::new();
    let mut ids = Vec::new();
    for i in 0..n {
        let (p, params, seed) = lane_setup(i);
        let mut s = session(seed, None);
        s.prefill(&p).unwrap();
        ids.push(sched.add(s, params, Box::new(AcceptAll)));
    }
    let mut emitted: BTreeMap<u64, usize> = BTreeMap::new();
    while sched.active() > 0 {
        let events = sched.round();
        let mut this_round: BTreeMap<u64, usize> = BTreeMap::new();
        for e in &events {
            if let LaneEvent::Token { lane, .. } = e {
                *this_round.entry(*lane).or_default() += 1;
                *emitted.entry(*lane).or_default() += 1;
            }
        }
        // Fairness: one token per lane per round, never more, and every lane that is still
        // running emitted in this round.
        assert!(this_round.values().all(|&c| c == 1), "{events:?}");
        let running: Vec<u64> = ids
            .iter()
            .copied()
            .filter(|id| {
                events
                    .iter()
                    .any(|e| matches!(e, LaneEvent::Token { lane, .. } if lane == id))
            })
            .collect();
        assert_eq!(running.len(), this_round.len());
    }
    let mut finished = sched.take_finished();
    finished.sort_by_key(|f| f.id);
    assert_eq!(finished.len(), n);
    for (f, (g, next, rng)) in finished.iter_mut().zip(&alone) {
        let got = f.result.as_ref().unwrap();
        assert_eq!(got.tokens, g.tokens, "lane {}", f.id);
        assert_eq!(got.stop, g.stop);
        assert_eq!(&bits(f.session.logits().unwrap()), next);
        assert_eq!(f.session.rng(), *rng);
        assert_eq!(emitted[&f.id], g.tokens.len());
    }
    // Liveness: the lanes are not trivially the same output.
    let firsts: Vec<&Vec<u32>> = alone.iter().map(|a| &a.0.tokens).collect();
    assert!(firsts.windows(2).any(|w| w[0] != w[1]));
}

#[test]
fn a_late_lane_joins_the_rotation_and_a_failing_lane_ends_alone() {
    let mut sched = LaneScheduler::new();
    let (p0, params0, s0) = lane_setup(2);
    let mut a = session(s0, None);
    a.prefill(&p0).unwrap();
    let first = sched.add(a, params0.clone(), Box::new(AcceptAll));
    // A lane whose context allows only two more positions: it fails on its third token.
    let (p1, params1, s1) = lane_setup(1);
    let mut b = session(s1, Some(p1.len() as u64 + 2));
    b.prefill(&p1).unwrap();
    let failing = sched.add(b, params1, Box::new(AcceptAll));
    sched.round();
    sched.round();
    // Late lane.
    let (p2, params2, s2) = lane_setup(0);
    let mut c = session(s2, None);
    c.prefill(&p2).unwrap();
    let late = sched.add(c, params2.clone(), Box::new(AcceptAll));
    let events = sched.round();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, LaneEvent::Token { lane, .. } if *lane == late))
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, LaneEvent::Token { lane, .. } if *lane == first))
    );
    sched.run();
    let finished = sched.take_finished();
    let by_id = |id| finished.iter().find(|f| f.id == id).unwrap();
    assert!(
        by_id(failing).result.is_err(),
        "the short-context lane fails"
    );
    assert_eq!(
        by_id(first).result.as_ref().unwrap().tokens.len(),
        params0.max_tokens
    );
    assert_eq!(
        by_id(late).result.as_ref().unwrap().stop,
        StopReason::MaxTokens
    );
    assert_eq!(
        by_id(late).result.as_ref().unwrap().tokens.len(),
        params2.max_tokens
    );
}
