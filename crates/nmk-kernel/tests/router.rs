//! The router: built-in families answered with zero model tokens after their oracle agrees,
//! ambiguous extraction refused, gibberish below the floor, the governed width, the memory
//! consultation before every request, every decision on the ledger, and liveness contrasts
//! (a route unregistered, a learned primitive removed, memory unavailable).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use nmk_det::gate::{Gap, GateConfig, Judge, SampleCase};
use nmk_det::{ContentHash, ValidationLevel, Value, hash_bytes};
use nmk_kernel::k_policy::{CostSource, KPolicy};
use nmk_kernel::learn::{
    Admission, PrimitiveRegistry, Provenance, Purpose, Recheck, record_admission,
};
use nmk_kernel::ledger::{Action, Ledger, ValidatorId};
use nmk_kernel::memory::{MemoryConfig, MemoryStore, PutOptions};
use nmk_kernel::router::{
    DeterministicRoute, LearnedRoute, MemoryAccess, Outcome, ProgramRunner, RouteAnswer, RouteEnv,
    RouteKind, Routed, Router, RouterConfig,
};
use nmk_kernel::store::{Durability, database_path};
use nmk_kernel::verification::Verification;

fn env<'a>(ledger: &'a Ledger, memory: MemoryAccess<'a>) -> RouteEnv<'a> {
    RouteEnv {
        ledger,
        memory,
        cost: CostSource::Given(0.0),
        force_model_lane: false,
        logical_time: 1,
    }
}

fn no_memory() -> MemoryAccess<'static> {
    MemoryAccess::Unavailable("no store in this test".into())
}

fn route(router: &Router, ledger: &Ledger, request: &str) -> Routed {
    router.handle(request, env(ledger, no_memory())).unwrap()
}

fn answered(r: &Routed) -> &nmk_kernel::router::Answered {
    match &r.outcome {
        Outcome::Answered(a) => a,
        Outcome::ModelLane { reason } => panic!("went to the model lane: {reason}; {r:#?}"),
    }
}

fn lane_reason(r: &Routed) -> &str {
    match &r.outcome {
        Outcome::ModelLane { reason } => reason,
        Outcome::Answered(a) => panic!("answered by {}: {}", a.route, a.text),
    }
}

#[test]
fn each_builtin_family_is_routed_with_its_arguments_and_its_oracle() {
    let router = Router::with_builtins(RouterConfig::default());
    let cases: [(&str, &str, Vec<Value>, Value); 9] = [
        (
            "what is the gcd of 12 and 18",
            "builtin:gcd",
            vec![Value::int(12), Value::int(18)],
            Value::int(6),
        ),
        (
            "greatest common divisor of 1071 and 462?",
            "builtin:gcd",
            vec![Value::int(1071), Value::int(462)],
            Value::int(21),
        ),
        (
            "is 97 prime",
            "builtin:is_prime",
            vec![Value::int(97)],
            Value::Bool(true),
        ),
        (
            "Is 1000003 a prime number?",
            "builtin:is_prime",
            vec![Value::int(1_000_003)],
            Value::Bool(true),
        ),
        (
            "count the r's in strawberry",
            "builtin:count_letter",
            vec![Value::str("strawberry"), Value::str("r")],
            Value::int(3),
        ),
        (
            "How many times does the letter s appear in 'mississippi'?",
            "builtin:count_letter",
            vec![Value::str("mississippi"), Value::str("s")],
            Value::int(4),
        ),
        (
            "list the primes up to 20",
            "builtin:primes_up_to",
            vec![Value::int(20)],
            Value::List([2, 3, 5, 7, 11, 13, 17, 19].map(Value::int).to_vec()),
        ),
        (
            "how many days between 2024-01-01 and 2024-03-01?",
            "builtin:days_between",
            vec![Value::str("2024-01-01"), Value::str("2024-03-01")],
            Value::int(60),
        ),
        (
            "what date is 30 days after 2024-01-31",
            "builtin:add_days",
            vec![Value::str("2024-01-31"), Value::int(30)],
            Value::str("2024-03-01"),
        ),
    ];
    for (request, id, args, value) in cases {
        let ledger = Ledger::in_memory();
        let r = route(&router, &ledger, request);
        let a = answered(&r);
        assert_eq!(a.route, id, "{request}");
        assert_eq!(a.args, args, "{request}");
        assert_eq!(a.value, value, "{request}");
        assert_eq!(a.kind, RouteKind::Builtin);
        assert_eq!(a.level, ValidationLevel::Oracle);
        assert_eq!(a.verification, Verification::Verified);
        // Three entries: the consultation, the decision, the answer; the chain verifies.
        let entries = ledger.entries(0, 10).unwrap();
        assert_eq!(entries.len(), 3, "{request}");
        assert_eq!(entries[0].record.opcode, "memory.consult");
        assert_eq!(entries[1].record.opcode, "route");
        assert_eq!(entries[1].record.action, Action::Pass);
        assert_eq!(
            entries[1].record.detail.get("chosen"),
            Some(&Value::str(id))
        );
        let answer = &entries[2];
        assert_eq!(answer.hash, a.ledger_entry.hash);
        assert_eq!(answer.record.action, Action::Emit);
        assert_eq!(answer.record.detail.get("answer"), Some(&value));
        assert_eq!(answer.record.detail.get("tokens"), Some(&Value::int(0)));
        assert_eq!(
            answer.record.inputs.get("route_decision"),
            Some(&r.decision_entry.hash)
        );
        assert!(ledger.verify(None).unwrap().ok());
    }
}

#[test]
fn a_grapheme_count_reads_one_quoted_string() {
    let router = Router::with_builtins(RouterConfig::default());
    let ledger = Ledger::in_memory();
    let r = route(&router, &ledger, "how many characters are in 'héllo'?");
    let a = answered(&r);
    assert_eq!(a.route, "builtin:grapheme_count");
    assert_eq!(a.value, Value::int(5));
}

#[test]
fn ambiguous_extraction_refuses_the_route() {
    let router = Router::with_builtins(RouterConfig::default());
    for (request, why) in [
        ("what is the gcd of 12, 18 and 24", "found 3 integers"),
        ("is 97 or 91 prime", "found 2 integers"),
        ("is the 3rd number prime", "glued"),
        ("count the r's and e's in strawberry", "found 2 letters"),
        ("how many characters in 'ab' and 'cd'", "found 2 quoted"),
    ] {
        let ledger = Ledger::in_memory();
        let r = route(&router, &ledger, request);
        assert_eq!(lane_reason(&r), "no_extraction", "{request}");
        let refused: Vec<&String> = r
            .decision
            .attempts
            .iter()
            .filter_map(|a| a.outcome.as_ref().err())
            .collect();
        assert!(
            refused.iter().any(|w| w.contains(why)),
            "{request}: {refused:?}"
        );
        // The decision (with every refusal) is on the ledger; no answer entry.
        let entries = ledger.entries(0, 10).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[1].record.action, Action::Bail);
        let attempts = entries[1].record.detail.get("attempts").unwrap();
        assert!(
            nmk_det::encode(attempts).contains("refused"),
            "{attempts:?}"
        );
    }
}

#[test]
fn below_the_floor_goes_to_the_model_lane() {
    let router = Router::with_builtins(RouterConfig::default());
    for request in ["write a haiku about the sea", "zzqx blorp fnord"] {
        let ledger = Ledger::in_memory();
        let r = route(&router, &ledger, request);
        assert_eq!(lane_reason(&r), "below_floor", "{request}");
        assert!(r.decision.governed.top_score < 0.55);
        assert_eq!(r.decision.governed.k, 0);
        assert!(r.decision.attempts.is_empty());
        assert_eq!(ledger.len().unwrap(), 2);
    }
}

#[test]
fn a_lexical_hit_without_the_routes_cues_is_refused() {
    // "is" makes is_prime a lexical candidate; the missing cue word keeps it from answering.
    let router = Router::with_builtins(RouterConfig::default());
    let ledger = Ledger::in_memory();
    let r = route(&router, &ledger, "Is 2023 a good year to travel");
    assert_ne!(r.decision.governed.k, 0);
    assert_eq!(lane_reason(&r), "no_extraction");
}

#[test]
fn liveness_contrast_unregistered_primitive_goes_to_the_model_lane() {
    let request = "what is the gcd of 12 and 18";
    let mut router = Router::with_builtins(RouterConfig::default());
    let ledger = Ledger::in_memory();
    assert_eq!(
        answered(&route(&router, &ledger, request)).value,
        Value::int(6)
    );
    let before = router.contract_hash();
    assert!(router.unregister("builtin:gcd"));
    assert_ne!(router.contract_hash(), before, "the registry is bound");
    let r = route(&router, &ledger, request);
    lane_reason(&r);
    assert!(
        r.decision
            .governed
            .candidates
            .iter()
            .all(|c| c.route != "builtin:gcd")
    );
}

#[test]
fn forced_model_lane_is_recorded() {
    let router = Router::with_builtins(RouterConfig::default());
    let ledger = Ledger::in_memory();
    let mut e = env(&ledger, no_memory());
    e.force_model_lane = true;
    let r = router.handle("what is the gcd of 12 and 18", e).unwrap();
    assert_eq!(lane_reason(&r), "forced_model_lane");
    let entries = ledger.entries(0, 10).unwrap();
    assert_eq!(
        entries[1].record.detail.get("reason"),
        Some(&Value::str("forced_model_lane"))
    );
}

/// A route whose answer the test controls (its validator can be made to fail).
struct Stub {
    entry: &'static str,
    value: Value,
    valid: bool,
    memory: bool,
}

impl DeterministicRoute for Stub {
    fn id(&self) -> String {
        format!("builtin:{}", self.entry)
    }
    fn entry(&self) -> &str {
        self.entry
    }
    fn kind(&self) -> RouteKind {
        RouteKind::Fact
    }
    fn signature(&self) -> &str {
        "stub() -> int"
    }
    fn names(&self) -> Vec<Vec<String>> {
        vec![nmk_kernel::router::lexical::tokens(self.entry)]
    }
    fn owns(&self, _request: &str) -> Result<(), String> {
        Ok(())
    }
    fn extract(&self, _request: &str) -> Result<Vec<Value>, String> {
        Ok(Vec::new())
    }
    fn answer(&self, _args: &[Value]) -> RouteAnswer {
        RouteAnswer {
            value: Ok(self.value.clone()),
            valid: self.valid,
            level: ValidationLevel::Oracle,
            validator: ValidatorId::new("stub", "1"),
            reason: if self.valid { "ok" } else { "stub_invalid" }.into(),
        }
    }
    fn needs_memory(&self) -> bool {
        self.memory
    }
    fn code_hash(&self) -> ContentHash {
        hash_bytes(self.entry.as_bytes())
    }
}

#[test]
fn an_answer_its_validator_rejects_is_not_released() {
    let mut router = Router::new(RouterConfig::default());
    router.register(Box::new(Stub {
        entry: "weather_today",
        value: Value::int(7),
        valid: false,
        memory: false,
    }));
    let ledger = Ledger::in_memory();
    let r = route(&router, &ledger, "weather today");
    assert!(lane_reason(&r).starts_with("answer_rejected:"), "{r:?}");
    let last = ledger.entries(2, 1).unwrap().remove(0);
    assert_eq!(last.record.action, Action::Reject);
    assert_eq!(last.record.detail.get("answer"), Some(&Value::Null));
    assert_eq!(last.record.verification, Verification::Unverified);
}

#[test]
fn memory_is_consulted_before_each_request_and_memory_routes_fail_closed_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = database_path(dir.path());
    let ledger = Ledger::open(&db, Durability::Process).unwrap();
    let mut store = MemoryStore::open(&db, MemoryConfig::default(), ledger.clone()).unwrap();
    store
        .put("favourite", &Value::str("blue"), &PutOptions::by("user"))
        .unwrap();
    let mut router = Router::with_builtins(RouterConfig::default());
    router.register(Box::new(Stub {
        entry: "recall_favourite",
        value: Value::str("blue"),
        valid: true,
        memory: true,
    }));

    let start = ledger.len().unwrap();
    let r = router
        .handle(
            "recall favourite",
            env(&ledger, MemoryAccess::Open(&mut store)),
        )
        .unwrap();
    assert!(r.memory.consulted);
    assert_eq!(r.memory.recent, vec!["favourite".to_owned()]);
    assert!(r.memory.governance.is_some());
    assert_eq!(answered(&r).value, Value::str("blue"));
    let consult = ledger.entries(start, 1).unwrap().remove(0);
    assert_eq!(consult.record.opcode, "memory.consult");
    assert_eq!(consult.hash, r.memory.entry.hash);
    assert_eq!(
        r.decision_entry.record.inputs.get("memory_consult"),
        Some(&consult.hash)
    );
    let recent = consult.record.detail.get("recent").unwrap();
    assert_eq!(recent, &Value::List(vec![Value::str("favourite")]));

    // Contrast: the store unavailable — the consultation records why, the memory route fails
    // closed, and a primitive that needs no memory still answers.
    let r = route(&router, &ledger, "recall favourite");
    assert!(!r.memory.consulted);
    assert_eq!(r.memory.error.as_deref(), Some("no store in this test"));
    assert_eq!(lane_reason(&r), "no_extraction");
    assert!(
        r.decision.attempts[0]
            .outcome
            .as_ref()
            .unwrap_err()
            .contains("fails closed")
    );
    let r = route(&router, &ledger, "is 7 prime");
    assert!(!r.memory.consulted);
    assert_eq!(answered(&r).value, Value::Bool(true));
    assert!(ledger.verify(None).unwrap().ok());
}

#[test]
fn a_close_race_widens_the_search_and_a_clear_winner_stays_thin() {
    let mut router = Router::new(RouterConfig::default());
    for entry in ["count_vowels", "count_letter_x"] {
        router.register(Box::new(Stub {
            entry,
            value: Value::int(1),
            valid: true,
            memory: false,
        }));
    }
    let g = router.govern("count things", &CostSource::Given(0.0));
    let d = g.decision.unwrap();
    assert!(g.margin.unwrap() < 0.2, "{g:?}");
    assert!(g.k > 1, "{g:?}");
    assert_eq!(d.reason.as_str(), "independent_disagreement");

    // Contrast: cost 1 under k_min 0 brakes the exploration; still at least one is tried.
    let cfg = RouterConfig {
        policy: KPolicy::with_k(0, 4, 0.5).unwrap(),
        ..RouterConfig::default()
    };
    let mut braked = Router::new(cfg);
    for entry in ["count_vowels", "count_letter_x"] {
        braked.register(Box::new(Stub {
            entry,
            value: Value::int(1),
            valid: true,
            memory: false,
        }));
    }
    let g = braked.govern("count things", &CostSource::Given(1.0));
    assert_eq!(g.k, 1);
    assert_eq!(g.decision.unwrap().reason.as_str(), "cost_braked");
    // A failing probe reads as cost 1.0 too.
    let fail = || Err::<f64, String>("probe down".into());
    let g = braked.govern("count things", &CostSource::Probe(&fail));
    assert_eq!(g.cost.0, 1.0);
    assert!(g.cost.1.unwrap().contains("probe down"));

    let router = Router::with_builtins(RouterConfig::default());
    let g = router.govern(
        "greatest common divisor of two integers",
        &CostSource::Given(0.0),
    );
    assert_eq!(g.candidates[0].route, "builtin:gcd");
    assert_eq!(g.k, 1);
    assert_eq!(g.decision.unwrap().reason.as_str(), "thin_default");
}

// ---- learned primitives -------------------------------------------------------------------

const REVERSE: &str = "def reverse_words(s):\n    return ' '.join(s.split()[::-1])\n";

fn reverse_gap() -> Gap {
    Gap::new(
        "reverse_words",
        "reverse_words(s: str) -> str",
        "Reverse the order of the words of s.",
        vec![SampleCase {
            args: vec![Value::str("a b")],
            expected: Value::str("b a"),
        }],
        |_| vec![Value::str("x y")],
        Judge::oracle(|a: &[Value]| {
            let s = a[0].as_str().ok_or("not a str")?;
            Ok(Value::str(
                s.split_whitespace().rev().collect::<Vec<_>>().join(" "),
            ))
        }),
    )
    .unwrap()
    .with_source("builtin:reverse_words:1")
}

/// Stands in for the sandbox in this crate's tests (no worker here): it runs only the exact
/// program it was built for, and refuses any other code.
struct ReverseRunner;

impl ProgramRunner for ReverseRunner {
    fn run(&self, code: &str, entry: &str, args: &[Value]) -> Result<Value, String> {
        if code != REVERSE || entry != "reverse_words" {
            return Err("unknown program".into());
        }
        let s = args.first().and_then(Value::as_str).ok_or("bad args")?;
        Ok(Value::str(
            s.split_whitespace().rev().collect::<Vec<_>>().join(" "),
        ))
    }
}

#[test]
fn a_learned_primitive_is_routed_after_its_recheck_and_not_once_removed() {
    let dir = tempfile::tempdir().unwrap();
    let db = database_path(dir.path());
    let ledger = Ledger::open(&db, Durability::Process).unwrap();
    let mut reg = PrimitiveRegistry::open(&db, Durability::Process).unwrap();
    let gap = reverse_gap();
    let adm = Admission {
        entry: gap.entry.clone(),
        admitted: true,
        reason: None,
        gap_spec_hash: gap.spec_hash(),
        code_hash: hash_bytes(REVERSE.as_bytes()),
        n: gap.n,
        seed: gap.seed,
        seed2: nmk_det::gate::second_seed(gap.seed),
        report: None,
        feedback: String::new(),
        elapsed: Duration::ZERO,
    };
    let prov = Provenance {
        proposer: "user".into(),
        model: None,
        prompt_hash: None,
        attempt: 0,
    };
    let entry = record_admission(
        &ledger,
        &gap,
        &adm,
        &GateConfig::default(),
        &prov,
        Purpose::Admit,
    )
    .unwrap();
    reg.register(&gap, REVERSE, &adm, &entry, &prov).unwrap();
    let report = reg.reload(&ledger, Recheck::Hashes, None).unwrap();
    assert_eq!(report.usable.len(), 1);

    let mut router = Router::with_builtins(RouterConfig::default());
    let learned = LearnedRoute::new(&report.usable[0], Arc::new(ReverseRunner)).unwrap();
    router.register(Box::new(learned));
    let request = "reverse the words of 'a b c'";
    let r = route(&router, &ledger, request);
    let a = answered(&r);
    assert_eq!(a.route, "learned:reverse_words");
    assert_eq!(a.value, Value::str("c b a"));
    assert_eq!(a.kind, RouteKind::Learned);
    // A per-call result of learned code is never labelled PROVEN (spec §9 D11).
    assert_eq!(a.level, ValidationLevel::Schema);
    assert_eq!(a.verification, Verification::Checked);
    assert_eq!(
        a.ledger_entry
            .record
            .validator
            .as_ref()
            .map(|v| v.name.as_str()),
        Some("reverse_words_ok")
    );

    // Ambiguous: two quoted strings for a one-string signature.
    let r = route(&router, &ledger, "reverse the words of 'a b' and 'c d'");
    assert_eq!(lane_reason(&r), "no_extraction");

    // Contrast: removed from the registry, the same request goes to the model lane.
    assert!(router.unregister("learned:reverse_words"));
    let r = route(&router, &ledger, request);
    lane_reason(&r);
    assert!(ledger.verify(None).unwrap().ok());
}

#[test]
fn a_candidate_without_its_cues_does_not_use_up_a_thin_width() {
    // Under full load the policy tries one extraction; grapheme_count ranks first lexically
    // for this request but lacks its cue words, so it is skipped for free and count_letter
    // answers.
    let router = Router::with_builtins(RouterConfig::default());
    let ledger = Ledger::in_memory();
    let mut e = env(&ledger, no_memory());
    e.cost = CostSource::Given(1.0);
    let r = router.handle("count the r's in strawberry", e).unwrap();
    assert_eq!(r.decision.governed.k, 1);
    assert_eq!(answered(&r).value, Value::int(3));
    let skipped: Vec<&str> = r
        .decision
        .attempts
        .iter()
        .filter(|a| {
            a.outcome
                .as_ref()
                .is_err_and(|w| w.starts_with("cue absent"))
        })
        .map(|a| a.route.as_str())
        .collect();
    assert!(skipped.len() <= 1, "{skipped:?}");
}
