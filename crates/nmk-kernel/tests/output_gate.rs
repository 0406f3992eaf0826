//! The output gate (the commit gate per token): its JSON shape agrees with a real JSON parser
//! on every prefix, its regex shape with whole-string matching, and the gate's decisions.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use nmk_kernel::output_gate::{
    CheckState, GateDecision, IncrementalCheck, JsonShape, OutputGate, RegexShape,
};
use proptest::prelude::*;

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        any::<i64>().prop_map(|n| serde_json::json!(n)),
        (-1e12f64..1e12).prop_map(|f| serde_json::json!(f)),
        "[ -~é✓\n\t\"\\\\]{0,8}".prop_map(serde_json::Value::String),
    ];
    leaf.prop_recursive(4, 32, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(serde_json::Value::Array),
            prop::collection::btree_map("[a-z\"]{0,4}", inner, 0..5)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Every prefix of a serialised JSON value is viable, the whole is complete, fed in any
    /// split into pieces.
    #[test]
    fn every_prefix_of_real_json_is_viable(v in json_value(), pretty in any::<bool>(), cut in 1usize..7) {
        let text = if pretty { serde_json::to_string_pretty(&v).unwrap() } else { v.to_string() };
        let bytes = text.as_bytes();
        let mut j = JsonShape::new();
        for piece in bytes.chunks(cut) {
            prop_assert_ne!(j.try_piece(piece), CheckState::Dead, "{}", text);
            j.accept(piece);
        }
        prop_assert!(j.may_end(), "{}", text);
    }

    /// On arbitrary strings over JSON's own alphabet, "complete" is exactly "serde_json parses
    /// it", and "dead" never precedes a parse (no surrogate escapes: no `d` in the alphabet).
    #[test]
    fn complete_iff_a_json_parser_accepts(s in "[{}\\[\\],:\"0-9.eE+\\- \\\\ntrufals]{0,14}") {
        let parsed = serde_json::from_str::<serde_json::Value>(&s).is_ok();
        let state = JsonShape::new().try_piece(s.as_bytes());
        prop_assert_eq!(state == CheckState::Complete, parsed, "{:?} {:?}", s, state);
        if state == CheckState::Dead {
            // No extension of a dead prefix parses either.
            for tail in ["", "}", "]", "\"", "0", "]}", "\"}", "}]"] {
                let t = format!("{s}{tail}");
                prop_assert!(serde_json::from_str::<serde_json::Value>(&t).is_err(), "{:?}", t);
            }
        }
    }

    /// The regex shape is whole-string matching, and a dead prefix has no matching extension.
    #[test]
    fn regex_shape_is_whole_string_match(s in "[0-9a ,]{0,10}") {
        let pattern = "[0-9]+(, [0-9]+)*";
        let re = RegexShape::new(pattern).unwrap();
        let whole = regex_matches_whole(&s);
        let st = re.try_piece(s.as_bytes());
        prop_assert_eq!(st == CheckState::Complete, whole, "{:?}", s);
        if st == CheckState::Dead {
            for tail in ["0", ", 1", "1"] {
                let t = format!("{s}{tail}");
                prop_assert!(!regex_matches_whole(&t), "{:?}", t);
            }
        }
    }
}

/// `[0-9]+(, [0-9]+)*` by hand, as an independent oracle.
fn regex_matches_whole(s: &str) -> bool {
    !s.is_empty()
        && s.split(", ")
            .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))
}

#[test]
fn forbidden_ids_are_refused_and_counted() {
    let mut g = OutputGate::new().forbid([7, 9]);
    assert_eq!(g.judge(7, b"x", false), GateDecision::Resample);
    assert_eq!(g.judge(8, b"x", false), GateDecision::Accept);
    assert_eq!(g.judge(9, b"", true), GateDecision::Resample);
    assert_eq!(g.stats().forbidden, 2);
    assert_eq!(g.stats().accepted, 1);
    assert_eq!(g.output(), b"x");
    assert!(g.forbidden_ids().contains(&7));
}

#[test]
fn the_end_is_refused_until_the_shape_is_complete() {
    let mut g = OutputGate::new().with_check(Box::new(JsonShape::new()));
    assert_eq!(g.judge(1, b"{\"a\":", false), GateDecision::Accept);
    // Ending now would leave broken JSON: refused, the decode loop must pick another token.
    assert_eq!(g.judge(0, b"", true), GateDecision::Resample);
    // A token that breaks the shape is refused; the output is unchanged.
    assert_eq!(g.judge(2, b"}", false), GateDecision::Resample);
    assert_eq!(g.output(), b"{\"a\":");
    assert_eq!(g.judge(3, b" 1}", false), GateDecision::Accept);
    assert!(g.complete());
    assert_eq!(g.judge(0, b"", true), GateDecision::Accept);
    assert_eq!(g.stats().refused_by.get("json_shape"), Some(&2));
    let s = g.summary();
    assert_eq!(s["complete"], true);
    assert_eq!(s["checks"][0], "json_shape");
}

#[test]
fn every_check_must_hold() {
    let mut g = OutputGate::new()
        .with_check(Box::new(JsonShape::new()))
        .with_check(Box::new(RegexShape::new("[0-9]{2,3}").unwrap()));
    assert_eq!(g.judge(1, b"1", false), GateDecision::Accept);
    // JSON-valid, regex-dead, output incomplete: another candidate.
    assert_eq!(g.judge(2, b"2345", false), GateDecision::Resample);
    assert_eq!(g.stats().refused_by.get("regex_shape"), Some(&1));
    assert_eq!(g.judge(0, b"", true), GateDecision::Resample);
    assert_eq!(g.judge(3, b"2", false), GateDecision::Accept);
    assert!(g.complete());
    // A complete output that the candidate would break ends cleanly.
    assert_eq!(g.judge(4, b"x", false), GateDecision::Stop);
    assert!(g.stats().ended_complete);
    assert_eq!(g.output(), b"12");
}

#[test]
fn the_byte_cap_stops_the_output() {
    let mut g = OutputGate::new().with_max_bytes(4);
    assert_eq!(g.judge(1, b"abc", false), GateDecision::Accept);
    assert_eq!(g.judge(1, b"de", false), GateDecision::Stop);
    assert!(g.stats().hit_byte_cap);
}

#[test]
fn an_empty_gate_accepts_everything() {
    // Liveness contrast for the tests above: without checks the same candidates pass.
    let mut g = OutputGate::new();
    for (t, p) in [(2u32, &b"}"[..]), (5, b"\xff"), (0, b"")] {
        assert_eq!(g.judge(t, p, t == 0), GateDecision::Accept);
    }
    assert!(g.complete());
}
