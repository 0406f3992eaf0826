//! The entry-trap head's disposal (spec §5.6 `HeadFactRouter`, adapted): a mapped class fires
//! at or above the threshold when its capability is granted and extraction succeeds; `none`,
//! unknown classes, errored or malformed proposals never fire; lexical fallback decides
//! otherwise; every decision's ledger entry carries the head's part. No model: proposals are
//! given as data.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use nmk_det::Value;
use nmk_kernel::capability::Grants;
use nmk_kernel::k_policy::CostSource;
use nmk_kernel::ledger::Ledger;
use nmk_kernel::router::head::trap_capability;
use nmk_kernel::router::{
    HeadDisposal, HeadPolicy, HeadProposal, HeadReading, HeadRouted, HeadVerdict, MemoryAccess,
    Outcome, RouteEnv, Router, RouterConfig,
};
use nmk_kernel::store::{Durability, database_path};

const GCD_PROMPT: &str = "what is the gcd of 12 and 18";
/// No lexical cue of gcd: only a head can route it.
const GCD_PARAPHRASE: &str = "what is the largest whole number that divides both 12 and 18?";
const LETTER_PROMPT: &str = "count the r's in strawberry";
const CHAT_PROMPT: &str = "tell me a short story about a friendly dragon";

fn reading(class: &str, confidence: f32) -> HeadReading {
    HeadReading {
        proposal: Ok(HeadProposal {
            class: class.into(),
            confidence,
        }),
        head_hash: "ab".repeat(32),
    }
}

fn router() -> Router {
    Router::with_builtins(RouterConfig::default())
}

fn no_fallback(router: &Router) -> HeadPolicy {
    HeadPolicy {
        lexical_fallback: false,
        ..HeadPolicy::granting_all(router)
    }
}

fn dispose(
    router: &Router,
    request: &str,
    r: Option<&HeadReading>,
    p: &HeadPolicy,
) -> Option<String> {
    let d = router.dispose_head(request, r, p, &CostSource::Given(0.0), false);
    d.decision
        .chosen
        .map(|(i, _)| router.route_ids()[i].clone())
}

#[test]
fn mapped_classes_at_0_9_fire_the_same_routes_the_lexical_router_chooses() {
    let r = router();
    let p = no_fallback(&r);
    for (prompt, class) in [
        (GCD_PROMPT, "builtin:gcd"),
        ("is 97 prime", "builtin:is_prime"),
        (LETTER_PROMPT, "builtin:count_letter"),
    ] {
        let d = r.dispose_head(
            prompt,
            Some(&reading(class, 0.9)),
            &p,
            &CostSource::Given(0.0),
            false,
        );
        assert_eq!(d.verdict, HeadVerdict::Fired, "{prompt}");
        assert_eq!(d.disposal, HeadDisposal::Fired);
        let (i, args) = d.decision.chosen.clone().unwrap();
        assert_eq!(r.route_ids()[i], class);
        // The same route and arguments the lexical router extracts from the same prompt.
        let lex = r.decide(prompt, &CostSource::Given(0.0), false);
        assert_eq!(lex.chosen, Some((i, args)), "{prompt}");
    }
}

#[test]
fn the_head_routes_a_paraphrase_the_lexical_router_misses() {
    let r = router();
    let p = no_fallback(&r);
    assert_eq!(
        dispose(&r, GCD_PARAPHRASE, None, &HeadPolicy::granting_all(&r)),
        None
    );
    assert_eq!(
        dispose(&r, GCD_PARAPHRASE, Some(&reading("builtin:gcd", 0.9)), &p).as_deref(),
        Some("builtin:gcd")
    );
}

#[test]
fn none_and_unknown_classes_never_fire() {
    let r = router();
    let p = no_fallback(&r);
    let d = r.dispose_head(
        GCD_PROMPT,
        Some(&reading("none", 0.99)),
        &p,
        &CostSource::Given(0.0),
        false,
    );
    assert_eq!(d.verdict, HeadVerdict::NoneClass);
    assert_eq!(d.decision.chosen, None);
    for class in ["shortest_dist", "gcd", "learned:nothing", ""] {
        let d = r.dispose_head(
            GCD_PROMPT,
            Some(&reading(class, 0.99)),
            &p,
            &CostSource::Given(0.0),
            false,
        );
        assert_eq!(d.verdict, HeadVerdict::UnknownClass, "{class}");
        assert_eq!(d.decision.chosen, None, "{class}");
    }
}

#[test]
fn the_threshold_is_inclusive_and_configurable() {
    let r = router();
    let p = no_fallback(&r);
    let at = |c: f32, p: &HeadPolicy| dispose(&r, GCD_PROMPT, Some(&reading("builtin:gcd", c)), p);
    assert_eq!(at(0.3, &p), None);
    assert_eq!(at(0.49, &p), None);
    assert_eq!(at(0.5, &p).as_deref(), Some("builtin:gcd"));
    let strict = HeadPolicy {
        threshold: 0.8,
        ..p.clone()
    };
    assert_eq!(at(0.6, &strict), None);
    assert_eq!(at(0.8, &strict).as_deref(), Some("builtin:gcd"));
    let d = r.dispose_head(
        GCD_PROMPT,
        Some(&reading("builtin:gcd", 0.49)),
        &p,
        &CostSource::Given(0.0),
        false,
    );
    assert_eq!(d.verdict, HeadVerdict::BelowThreshold);
}

#[test]
fn malformed_or_errored_proposals_are_no_proposal() {
    let r = router();
    let p = no_fallback(&r);
    for c in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 1.5, -0.1] {
        let d = r.dispose_head(
            GCD_PROMPT,
            Some(&reading("builtin:gcd", c)),
            &p,
            &CostSource::Given(0.0),
            false,
        );
        assert_eq!(d.verdict, HeadVerdict::InvalidConfidence, "{c}");
        assert_eq!(d.decision.chosen, None, "{c}");
    }
    let errored = HeadReading {
        proposal: Err("head file unreadable".into()),
        head_hash: String::new(),
    };
    let d = r.dispose_head(
        GCD_PROMPT,
        Some(&errored),
        &p,
        &CostSource::Given(0.0),
        false,
    );
    assert_eq!(d.verdict, HeadVerdict::NoProposal);
    assert_eq!(d.decision.chosen, None);
    // Liveness: the same confidence range's edge values do fire.
    assert!(dispose(&r, GCD_PROMPT, Some(&reading("builtin:gcd", 1.0)), &p).is_some());
}

#[test]
fn an_ungranted_capability_denies_a_confident_head() {
    let r = router();
    let mut grants = Grants::none();
    grants.grant(trap_capability("is_prime").unwrap());
    let p = HeadPolicy {
        grants,
        ..no_fallback(&r)
    };
    let d = r.dispose_head(
        GCD_PROMPT,
        Some(&reading("builtin:gcd", 0.99)),
        &p,
        &CostSource::Given(0.0),
        false,
    );
    assert_eq!(d.verdict, HeadVerdict::CapDenied);
    assert_eq!(d.decision.chosen, None);
    // Contrast: the granted one fires.
    assert_eq!(
        dispose(
            &r,
            "is 97 prime",
            Some(&reading("builtin:is_prime", 0.99)),
            &p
        )
        .as_deref(),
        Some("builtin:is_prime")
    );
}

#[test]
fn a_confident_head_never_bypasses_strict_extraction() {
    let r = router();
    let p = no_fallback(&r);
    // Three numbers: gcd's extraction refuses, whatever the head says.
    let prompt = "what is the gcd of 12, 18 and 30";
    let d = r.dispose_head(
        prompt,
        Some(&reading("builtin:gcd", 0.99)),
        &p,
        &CostSource::Given(0.0),
        false,
    );
    assert_eq!(d.verdict, HeadVerdict::ExtractionRefused);
    assert_eq!(d.decision.chosen, None);
    assert!(d.decision.attempts[0].outcome.is_err());
    // A class that does not fit the request: is_prime on a gcd request has two numbers.
    let d = r.dispose_head(
        GCD_PROMPT,
        Some(&reading("builtin:is_prime", 0.99)),
        &p,
        &CostSource::Given(0.0),
        false,
    );
    assert_eq!(d.verdict, HeadVerdict::ExtractionRefused);
}

#[test]
fn lexical_fallback_decides_when_the_head_does_not_fire() {
    let r = router();
    let p = HeadPolicy::granting_all(&r);
    let d = r.dispose_head(
        GCD_PROMPT,
        Some(&reading("builtin:gcd", 0.3)),
        &p,
        &CostSource::Given(0.0),
        false,
    );
    assert_eq!(d.verdict, HeadVerdict::BelowThreshold);
    assert_eq!(d.disposal, HeadDisposal::FallbackLexical);
    assert_eq!(
        dispose(&r, GCD_PROMPT, Some(&reading("builtin:gcd", 0.3)), &p).as_deref(),
        Some("builtin:gcd")
    );
    assert_eq!(
        dispose(&r, LETTER_PROMPT, Some(&reading("none", 0.99)), &p).as_deref(),
        Some("builtin:count_letter")
    );
    let d = r.dispose_head(
        CHAT_PROMPT,
        Some(&reading("none", 0.99)),
        &p,
        &CostSource::Given(0.0),
        false,
    );
    assert_eq!(d.disposal, HeadDisposal::None);
    assert_eq!(d.decision.chosen, None);
    // A confident 'none' vetoes the fallback only when the policy says so.
    let veto = HeadPolicy {
        none_vetoes_fallback: true,
        ..p.clone()
    };
    assert_eq!(
        dispose(&r, LETTER_PROMPT, Some(&reading("none", 0.99)), &veto),
        None
    );
    assert_eq!(
        dispose(&r, LETTER_PROMPT, Some(&reading("none", 0.3)), &veto).as_deref(),
        Some("builtin:count_letter")
    );
    // Contrast: without the fallback the same letter prompt goes nowhere.
    assert_eq!(
        dispose(
            &r,
            LETTER_PROMPT,
            Some(&reading("none", 0.99)),
            &no_fallback(&r)
        ),
        None
    );
}

fn ledger() -> (tempfile::TempDir, Ledger) {
    let dir = tempfile::tempdir().unwrap();
    let l = Ledger::open(&database_path(dir.path()), Durability::Process).unwrap();
    (dir, l)
}

fn handle(r: &Router, l: &Ledger, prompt: &str, reading: Option<&HeadReading>) -> HeadRouted {
    r.handle_with_head(
        prompt,
        RouteEnv {
            ledger: l,
            memory: MemoryAccess::Unavailable("no store in this test".into()),
            cost: CostSource::Given(0.0),
            force_model_lane: false,
            logical_time: 1,
        },
        reading,
        &HeadPolicy::granting_all(r),
    )
    .unwrap()
}

fn head_part(l: &Ledger) -> Value {
    let entries = l.entries(0, 100).unwrap();
    let route = entries.iter().find(|e| e.record.opcode == "route").unwrap();
    match &route.record.detail {
        Value::Map(m) => m.get("head").cloned().unwrap_or(Value::Null),
        other => panic!("detail is not a map: {other:?}"),
    }
}

fn field(v: &Value, key: &str) -> Value {
    match v {
        Value::Map(m) => m.get(key).cloned().unwrap_or(Value::Null),
        other => panic!("not a map: {other:?}"),
    }
}

#[test]
fn the_decision_entry_records_proposal_hash_verdict_and_disposal() {
    let r = router();
    let (_d, l) = ledger();
    let h = handle(&r, &l, GCD_PARAPHRASE, Some(&reading("builtin:gcd", 0.9)));
    match &h.routed.outcome {
        Outcome::Answered(a) => {
            assert_eq!(a.route, "builtin:gcd");
            assert_eq!(a.value, Value::int(6));
        }
        Outcome::ModelLane { reason } => panic!("model lane: {reason}"),
    }
    assert_eq!(h.verdict, Some(HeadVerdict::Fired));
    let head = head_part(&l);
    assert_eq!(field(&head, "class"), Value::str("builtin:gcd"));
    assert_eq!(field(&head, "head_hash"), Value::str("ab".repeat(32)));
    assert_eq!(field(&head, "verdict"), Value::str("fired"));
    assert_eq!(field(&head, "disposal"), Value::str("fired"));
    assert!(matches!(field(&head, "confidence"), Value::Float(_)));

    let (_d2, l2) = ledger();
    let h = handle(&r, &l2, CHAT_PROMPT, Some(&reading("none", 0.97)));
    assert!(matches!(h.routed.outcome, Outcome::ModelLane { .. }));
    let head = head_part(&l2);
    assert_eq!(field(&head, "verdict"), Value::str("none_class"));
    assert_eq!(field(&head, "disposal"), Value::str("none"));

    // Contrast: the plain router's entry has no head part.
    let (_d3, l3) = ledger();
    r.handle(
        GCD_PROMPT,
        RouteEnv {
            ledger: &l3,
            memory: MemoryAccess::Unavailable("none".into()),
            cost: CostSource::Given(0.0),
            force_model_lane: false,
            logical_time: 1,
        },
    )
    .unwrap();
    assert_eq!(head_part(&l3), Value::Null);
}
