//! `Session::forward_together` (the server's lanes decoded in one pass that reads the weights
//! once for every lane): on the real models, with their real quantization mixes, each lane's
//! logits at every step are bitwise those of the same session stepped alone. Liveness: the
//! shared pass really ran (each cache advanced before the lane asked for its logits, and the
//! call reports every lane), the lanes differ from one another, and a session with a hook
//! installed is left out (reported 0, its cache untouched).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::needless_range_loop,
    missing_docs
)]

use nmk_neural::engine::{ForbiddenIds, Session, SessionOptions, argmax};
use nmk_neural::models::resolve_model;
use nmk_neural::text::{PromptMode, TextModel};

const PROMPTS: [&str; 3] = [
    "Name the capital city of France.",
    "Write a short poem about rain.",
    "What is 2 plus 2?",
];
const STEPS: usize = 12;

fn load(name: &str) -> TextModel {
    let path =
        resolve_model(name, &mut |_| {}).unwrap_or_else(|e| panic!("cannot fetch {name}: {e}"));
    TextModel::load(&path).unwrap()
}

fn prefilled(m: &TextModel, prompt: &str) -> Session {
    let mut s = Session::new(m.model().clone(), &SessionOptions::default()).unwrap();
    s.prefill(&m.encode(prompt, PromptMode::Chat).unwrap())
        .unwrap();
    s
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Greedy steps of each prompt alone: the logits before every step.
fn alone(m: &TextModel) -> Vec<Vec<Vec<u32>>> {
    PROMPTS
        .iter()
        .map(|p| {
            let mut s = prefilled(m, p);
            (0..STEPS)
                .map(|_| {
                    let l = s.logits().unwrap().to_vec();
                    s.feed(argmax(&l).unwrap()).unwrap();
                    bits(&l)
                })
                .collect()
        })
        .collect()
}

fn check(name: &str) {
    let m = load(name);
    let reference = alone(&m);
    assert_ne!(reference[0][0], reference[1][0], "the lanes must differ");
    let mut lanes: Vec<Session> = PROMPTS.iter().map(|p| prefilled(&m, p)).collect();
    for step in 0..STEPS {
        if step > 0 {
            let mut refs: Vec<&mut Session> = lanes.iter_mut().collect();
            assert_eq!(Session::forward_together(&mut refs).unwrap(), PROMPTS.len());
            for s in &lanes {
                // Forwarded by the shared pass, not by the lane's own step below.
                assert_eq!(s.cache().next_pos(), s.tokens().len() as u64);
            }
        }
        for (i, s) in lanes.iter_mut().enumerate() {
            let l = s.logits().unwrap().to_vec();
            assert_eq!(
                bits(&l),
                reference[i][step],
                "{name}: lane {i}, step {step}"
            );
            s.feed(argmax(&l).unwrap()).unwrap();
        }
    }

    // A session with a hook does not join; alone with the others it would be the only one.
    let mut hooked = prefilled(&m, PROMPTS[0]);
    hooked
        .hooks_mut()
        .add_logit_mask(Box::new(ForbiddenIds::new([0])));
    let l = hooked.logits().unwrap().to_vec();
    hooked.feed(argmax(&l).unwrap()).unwrap();
    let before = hooked.cache().next_pos();
    let mut plain = prefilled(&m, PROMPTS[1]);
    let l = plain.logits().unwrap().to_vec();
    plain.feed(argmax(&l).unwrap()).unwrap();
    assert_eq!(
        Session::forward_together(&mut [&mut hooked, &mut plain]).unwrap(),
        0
    );
    assert_eq!(hooked.cache().next_pos(), before);
}

#[test]
fn smollm2_lanes_forwarded_together_equal_each_alone() {
    check("smollm2-135m-instruct");
}

#[test]
fn qwen_lanes_forwarded_together_equal_each_alone() {
    check("qwen2.5-coder-0.5b-instruct");
}
