//! The entry-trap head's tap on the real SmolLM2: the residual read during the request's own
//! prefill equals the one a separate partial forward gives (and another block's differs: the
//! tap reads the block it names), and the model lane decoding from the tapped session gives
//! the same answer as a session without the tap.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use nmk_neural::engine::{AcceptAll, SamplingParams};
use nmk_neural::entry_head::{partial_residuals, prefill_with_tap};
use nmk_neural::models::resolve_model;
use nmk_neural::text::{PromptMode, TextModel};

fn load() -> TextModel {
    let name = "smollm2-135m-instruct";
    let path =
        resolve_model(name, &mut |_| {}).unwrap_or_else(|e| panic!("cannot fetch {name}: {e}"));
    TextModel::load(&path).unwrap()
}

#[test]
fn the_prefill_tap_reads_what_a_partial_forward_reads_and_decoding_is_unchanged() {
    let m = load();
    let ids = m
        .encode("what is the gcd of 12 and 18", PromptMode::Chat)
        .unwrap();
    let layer = 9;
    let tapped = prefill_with_tap(&m, &ids, 0, layer).unwrap();
    assert_eq!(tapped.residual.len(), m.model().config().n_embd);
    assert_eq!(tapped.session.tokens(), ids.as_slice());

    let partial = partial_residuals(&m, &ids, &[layer, layer + 6]).unwrap();
    assert_eq!(tapped.residual, partial[&layer], "tap vs partial forward");
    // Liveness: another block's residual is different, so the equality above is not vacuous.
    assert_ne!(tapped.residual, partial[&(layer + 6)]);
    let other = prefill_with_tap(&m, &ids, 0, layer + 6).unwrap();
    assert_eq!(other.residual, partial[&(layer + 6)]);
    assert_ne!(other.residual, tapped.residual);

    // The model lane from the tapped session equals a generation without any tap.
    let mut session = tapped.session;
    let (with_tap, g) = m
        .continue_session(
            &mut session,
            24,
            &SamplingParams::greedy(),
            &mut AcceptAll,
            &mut |_| {},
        )
        .unwrap();
    let plain = m
        .generate_ids(
            &ids,
            24,
            &SamplingParams::greedy(),
            0,
            &mut AcceptAll,
            &mut |_| {},
        )
        .unwrap();
    assert!(!g.tokens.is_empty());
    assert_eq!(g.tokens, plain.ids);
    assert_eq!(with_tap, plain.text);
    // The tap saw no second prefill: the session holds the prompt once, then the answer.
    assert_eq!(&session.tokens()[..ids.len()], ids.as_slice());
    assert!(session.tokens().len() <= ids.len() + g.tokens.len());

    // A block beyond the model is refused, not silently ignored.
    let n = m.model().config().n_layer;
    assert!(prefill_with_tap(&m, &ids, 0, n).is_err());
    assert!(partial_residuals(&m, &ids, &[n]).is_err());
}
