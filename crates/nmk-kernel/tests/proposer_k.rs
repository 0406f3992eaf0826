//! Proposer k (spec §4.7 `governed_propose`, §7 `proposer_k`, adapted to our router's route ids
//! and built-ins): a clear winner stays thin, a close race widens to k candidates on the score
//! margin as independent disagreement, gibberish is a gap (synthesize, k 0), a loaded machine
//! brakes the exploration but still tries one, a budget clamps k, and `validate_proven` rejects
//! a lexical false positive that cannot reproduce the cases.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use nmk_det::{ContentHash, ValidationLevel, Value, hash_bytes};
use nmk_kernel::k_policy::{BudgetNote, CostSource, KPolicy};
use nmk_kernel::ledger::ValidatorId;
use nmk_kernel::router::lexical::tokens;
use nmk_kernel::router::{
    DeterministicRoute, GovernedAction, ROUTE_FLOOR, RouteAnswer, RouteKind, Router, RouterConfig,
};

const IDLE: CostSource<'static> = CostSource::Given(0.0);
const LOADED: CostSource<'static> = CostSource::Given(1.0);

/// Four built-ins within 0.03 of each other (count_letter, add_days, grapheme_count,
/// days_between): the close race of our catalogue.
const RACE: &str = "count days";

fn builtins() -> Router {
    Router::with_builtins(RouterConfig::default())
}

#[test]
fn a_clear_winner_routes_thin() {
    let g = builtins().govern("greatest common divisor of two integers", &IDLE);
    assert_eq!(g.action(), GovernedAction::Route);
    assert_eq!(g.k, 1);
    let admitted: Vec<&str> = g.admitted().iter().map(|c| c.route.as_str()).collect();
    assert_eq!(admitted, ["builtin:gcd"]);
    assert!(g.uncertainty().unwrap() < 0.5, "{g:?}");
    assert_eq!(g.used_signal(), "thin_default");
}

#[test]
fn a_close_race_widens_to_k_candidates_on_independent_disagreement() {
    let router = builtins();
    for request in ["how many letters", "count letters", RACE] {
        let g = router.govern(request, &IDLE);
        assert_eq!(g.action(), GovernedAction::Route, "{request}");
        assert!(g.k > 1, "{request}: {g:?}");
        assert_eq!(g.admitted().len(), g.k, "{request}: k candidates");
        assert!(g.admitted().iter().all(|c| c.score >= ROUTE_FLOOR));
        assert!(g.uncertainty().unwrap() > 0.5, "{request}: {g:?}");
        assert_eq!(g.used_signal(), "independent_disagreement", "{request}");
    }
    let g = router.govern("how many letters", &IDLE);
    assert!(g.margin.unwrap() < 0.2, "{g:?}");
    assert_eq!(g.admitted()[0].route, "builtin:count_letter");
}

#[test]
fn gibberish_is_a_gap_to_synthesize_with_k_zero() {
    let router = builtins();
    let g = router.govern("xqzv blorft wug", &IDLE);
    assert_eq!(g.action(), GovernedAction::Synthesize);
    assert_eq!(g.action().as_str(), "synthesize");
    assert_eq!(g.k, 0);
    assert_eq!(g.used_signal(), "gap_detect");
    assert!(g.top_score < ROUTE_FLOOR, "{g:?}");
    assert!(g.admitted().is_empty());
    assert!(g.decision.is_none() && g.charge.is_none());
    assert_eq!(
        router.decide("xqzv blorft wug", &IDLE, false).reason,
        "below_floor"
    );
    // Contrast: a request naming a route is no gap.
    assert_eq!(router.govern("gcd", &IDLE).action(), GovernedAction::Route);
}

#[test]
fn a_loaded_machine_brakes_the_race_but_one_candidate_is_still_tried() {
    let cfg = RouterConfig {
        policy: KPolicy::with_k(0, 4, 0.5).unwrap(),
        ..RouterConfig::default()
    };
    let router = Router::with_builtins(cfg);
    let idle = router.govern(RACE, &IDLE);
    let loaded = router.govern(RACE, &LOADED);
    assert!(idle.k >= 2, "{idle:?}");
    assert_eq!(loaded.action(), GovernedAction::Route);
    assert!(loaded.k >= 1 && loaded.k < idle.k, "{loaded:?} vs {idle:?}");
    assert_eq!(
        loaded.decision.unwrap().k,
        0,
        "the policy disposed of no candidate"
    );
    assert_eq!(loaded.used_signal(), "cost_braked");
    assert_eq!(idle.used_signal(), "independent_disagreement");
}

#[test]
fn a_budget_of_one_clamps_k_below_the_idle_k() {
    let free = builtins().govern(RACE, &IDLE);
    let idle_k = free.decision.unwrap().k;
    assert!(idle_k > 1);
    for (budget, note) in [(1.0, BudgetNote::Clamped), (0.0, BudgetNote::Exhausted)] {
        let router = Router::with_builtins(RouterConfig {
            budget: Some(budget),
            ..RouterConfig::default()
        });
        let g = router.govern(RACE, &IDLE);
        let decision = g.decision.unwrap();
        let charge = g.charge.unwrap();
        assert_eq!(decision.k, idle_k, "disposed k is the idle k");
        assert!(charge.admitted_k < idle_k);
        assert_eq!(charge.note, note);
        assert!(g.k >= 1 && g.k < free.k, "budget {budget}: {g:?}");
    }
    assert_eq!(free.charge.unwrap().note, BudgetNote::NoBudget);
}

/// `count_leading_zeros(x: int) -> int`: a name that scores on "count letters" but computes
/// something else.
struct LeadingZeros;

impl DeterministicRoute for LeadingZeros {
    fn id(&self) -> String {
        "builtin:count_leading_zeros".into()
    }
    fn entry(&self) -> &str {
        "count_leading_zeros"
    }
    fn kind(&self) -> RouteKind {
        RouteKind::Builtin
    }
    fn signature(&self) -> &str {
        "count_leading_zeros(x: int) -> int"
    }
    fn names(&self) -> Vec<Vec<String>> {
        vec![tokens("count_leading_zeros")]
    }
    fn owns(&self, _request: &str) -> Result<(), String> {
        Ok(())
    }
    fn extract(&self, _request: &str) -> Result<Vec<Value>, String> {
        Err("no integer".into())
    }
    fn answer(&self, args: &[Value]) -> RouteAnswer {
        let value = match args {
            [x] => x
                .as_i64()
                .and_then(|n| u32::try_from(n).ok())
                .map(|n| Value::int(u64::from(n.leading_zeros())))
                .ok_or_else(|| "expects one 32-bit unsigned integer".to_owned()),
            _ => Err("expects one argument".to_owned()),
        };
        RouteAnswer {
            valid: value.is_ok(),
            value,
            level: ValidationLevel::Oracle,
            validator: ValidatorId::new("count_leading_zeros.oracle", "1"),
            reason: "stub".into(),
        }
    }
    fn code_hash(&self) -> ContentHash {
        hash_bytes(b"count_leading_zeros")
    }
}

#[test]
fn validate_proven_rejects_a_lexical_false_positive() {
    let mut router = builtins();
    router.register(Box::new(LeadingZeros));
    let top4: Vec<String> = router
        .govern("count letters", &IDLE)
        .candidates
        .iter()
        .take(4)
        .map(|c| c.route.clone())
        .collect();
    assert!(
        top4.contains(&"builtin:count_letter".to_owned()),
        "{top4:?}"
    );
    assert!(
        top4.contains(&"builtin:count_leading_zeros".to_owned()),
        "{top4:?}"
    );

    let s = Value::str;
    let cases = vec![
        (vec![s("strawberry"), s("r")], Value::int(3)),
        (vec![s("banana"), s("a")], Value::int(3)),
        (vec![s("sky"), s("e")], Value::int(0)),
    ];
    assert!(!router.validate_proven("builtin:count_leading_zeros", &cases));
    assert!(router.validate_proven("builtin:count_letter", &cases));
    // No cases prove nothing; an unknown route proves nothing.
    assert!(!router.validate_proven("builtin:count_letter", &[]));
    assert!(!router.validate_proven("builtin:nope", &cases));
    // One wrong expectation is enough to reject, and so is a type mismatch (3 vs "3").
    let mut wrong = cases.clone();
    wrong.push((vec![s("moon"), s("o")], Value::int(3)));
    assert!(!router.validate_proven("builtin:count_letter", &wrong));
    let typed = vec![(vec![s("strawberry"), s("r")], s("3"))];
    assert!(!router.validate_proven("builtin:count_letter", &typed));
    // The stub is live: it reproduces its own kind of case.
    let ints = vec![(vec![Value::int(1)], Value::int(31))];
    assert!(router.validate_proven("builtin:count_leading_zeros", &ints));
}
