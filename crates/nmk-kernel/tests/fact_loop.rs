//! The governed fact loop (spec §5.5 and §7 `fact_loop`, our own tests): inertness of the
//! augmentation, thin by default, grounding when the check fails and the policy and budget
//! allow it, the veto of a saturated machine under the DEFAULT policy (§9 D31), sensor failure
//! as cost 1.0 (D30), an erring or panicking validator as a failure, an empty provider.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::cell::Cell;

use nmk_kernel::fact_loop::{
    FACTS_HEADER, Fact, FactLane, FactLoopConfig, Grounding, augment_prompt, governed_fact_loop,
    render_facts,
};
use nmk_kernel::k_policy::{BudgetNote, CostSource, KPolicy, KReason};
use nmk_kernel::proposer::{Proposal, ProposerError};

const PROMPT: &str = "How many times does the letter r occur in the word strawberry?";

/// Answers "2" to the bare prompt and "3" when the facts header is in what it was given;
/// records every prompt it saw.
struct Scripted {
    base: &'static str,
    seen: Vec<String>,
    grounding: Grounding,
}

impl Scripted {
    fn new(base: &'static str) -> Scripted {
        Scripted {
            base,
            seen: Vec::new(),
            grounding: Grounding::Reprefill,
        }
    }
    fn reply(&mut self, prompt: String) -> Result<Proposal, ProposerError> {
        let text = if prompt.contains(FACTS_HEADER) {
            "The letter r occurs 3 times."
        } else {
            self.base
        };
        self.seen.push(prompt);
        Ok(Proposal {
            text: text.to_owned(),
            tokens: 7,
            finished: true,
        })
    }
}

impl FactLane for Scripted {
    fn answer(&mut self, prompt: &str) -> Result<Proposal, ProposerError> {
        self.reply(prompt.to_owned())
    }
    fn grounded(&mut self, prompt: &str, facts: &[Fact]) -> Result<Proposal, ProposerError> {
        self.reply(augment_prompt(prompt, facts))
    }
    fn grounding(&self) -> Grounding {
        self.grounding
    }
}

fn fact() -> Fact {
    Fact {
        label: "count_byte('strawberry', 'r')".to_owned(),
        value: "3".to_owned(),
    }
}

fn says_three(answer: &str) -> Result<bool, String> {
    Ok(answer.contains('3'))
}

#[test]
fn augmentation_is_inert_without_facts_and_carries_them_otherwise() {
    assert_eq!(augment_prompt(PROMPT, &[]), PROMPT);
    assert_eq!(render_facts(&[]), "");
    let a = augment_prompt(PROMPT, &[fact()]);
    assert!(a.starts_with(FACTS_HEADER));
    assert!(a.contains("- count_byte('strawberry', 'r') = 3"));
    assert!(a.ends_with(&format!("\n\n{PROMPT}")));
}

#[test]
fn a_right_base_answer_is_returned_and_the_provider_never_called() {
    let mut lane = Scripted::new("It occurs 3 times.");
    let calls = Cell::new(0);
    let mut provider = |_: &str| {
        calls.set(calls.get() + 1);
        vec![fact()]
    };
    let o = governed_fact_loop(
        &mut lane,
        PROMPT,
        &mut provider,
        &says_three,
        &CostSource::Given(0.0),
        &FactLoopConfig::default(),
    )
    .unwrap();
    assert!(!o.used_facts);
    assert_eq!((o.generations, o.k), (1, 0));
    assert!(o.audit.base_validated && o.audit.final_validated);
    assert_eq!(o.audit.reason, KReason::ThinDefault);
    assert_eq!(o.audit.cost, None);
    assert_eq!(calls.get(), 0);
    assert_eq!(lane.seen, [PROMPT]);
}

#[test]
fn a_wrong_base_on_an_idle_machine_is_grounded_and_fixed() {
    let mut lane = Scripted::new("It occurs 2 times.");
    let o = governed_fact_loop(
        &mut lane,
        PROMPT,
        &mut |_| vec![fact()],
        &says_three,
        &CostSource::Given(0.0),
        &FactLoopConfig::default(),
    )
    .unwrap();
    assert!(o.used_facts);
    assert_eq!((o.generations, o.k, o.tokens), (2, 1, 14));
    assert!(!o.audit.base_validated);
    assert!(o.audit.final_validated);
    assert!(o.answer.contains('3'));
    assert_eq!(o.grounding, Some(Grounding::Reprefill));
    assert!(o.audit.disposed_k.unwrap() >= 1);
    assert!(
        lane.seen[1].starts_with(FACTS_HEADER),
        "the header reached the model"
    );
    assert_eq!(lane.seen[0], PROMPT);
}

#[test]
fn a_saturated_machine_vetoes_grounding_under_the_default_policy() {
    // §9 D31: the original's default k_min = 1 meant cost could never veto. Here the optional
    // part of k decides, so cost 1.0 vetoes with the default policy itself.
    for cost in [CostSource::Given(1.0), CostSource::Unknown] {
        let mut lane = Scripted::new("It occurs 2 times.");
        let o = governed_fact_loop(
            &mut lane,
            PROMPT,
            &mut |_| vec![fact()],
            &says_three,
            &cost,
            &FactLoopConfig::default(),
        )
        .unwrap();
        assert!(!o.used_facts);
        assert_eq!((o.generations, o.k), (1, 0));
        assert_eq!(o.audit.reason, KReason::CostBraked);
        assert_eq!(o.audit.optional_k, Some(0));
        assert!(!o.answer.contains('3'));
        assert_eq!(lane.seen.len(), 1, "no header was ever sent");
    }
    // k_min = 0, as the original's test used, vetoes too.
    let policy = KPolicy::default().with_bounds(0, 4).unwrap();
    let mut lane = Scripted::new("2");
    let o = governed_fact_loop(
        &mut lane,
        PROMPT,
        &mut |_| vec![fact()],
        &says_three,
        &CostSource::Given(1.0),
        &FactLoopConfig {
            policy,
            ..FactLoopConfig::default()
        },
    )
    .unwrap();
    assert_eq!(o.k, 0);
}

#[test]
fn a_failing_cost_sensor_counts_as_saturated() {
    // §9 D30: a probe that errs or panics is cost 1.0 (the contrast: the same probe
    // succeeding at 0.0 grounds).
    let failing = || -> Result<f64, String> { Err("no /proc".into()) };
    let panicking = || -> Result<f64, String> { panic!("sensor crashed") };
    let idle = || -> Result<f64, String> { Ok(0.0) };
    for (probe, grounded) in [
        (&failing as &dyn Fn() -> Result<f64, String>, false),
        (&panicking, false),
        (&idle, true),
    ] {
        let mut lane = Scripted::new("2");
        let o = governed_fact_loop(
            &mut lane,
            PROMPT,
            &mut |_| vec![fact()],
            &says_three,
            &CostSource::Probe(probe),
            &FactLoopConfig::default(),
        )
        .unwrap();
        assert_eq!(o.used_facts, grounded);
        assert_eq!(o.audit.cost_failure.is_some(), !grounded);
    }
}

#[test]
fn an_empty_budget_keeps_the_loop_thin() {
    let mut lane = Scripted::new("2");
    let o = governed_fact_loop(
        &mut lane,
        PROMPT,
        &mut |_| vec![fact()],
        &says_three,
        &CostSource::Given(0.0),
        &FactLoopConfig {
            budget: Some(0.0),
            ..FactLoopConfig::default()
        },
    )
    .unwrap();
    assert!(!o.used_facts);
    assert_eq!(o.audit.budget_note, Some(BudgetNote::Exhausted));
    assert_eq!(o.generations, 1);
}

#[test]
fn an_empty_provider_stays_thin_and_says_so() {
    let mut lane = Scripted::new("2");
    let o = governed_fact_loop(
        &mut lane,
        PROMPT,
        &mut |_| Vec::new(),
        &says_three,
        &CostSource::Given(0.0),
        &FactLoopConfig::default(),
    )
    .unwrap();
    assert!(!o.used_facts);
    assert_eq!(o.k, 0);
    assert!(o.audit.note.contains("no verified facts"));
    assert_eq!(lane.seen.len(), 1);
}

#[test]
fn an_erring_or_panicking_validator_fails_the_base_and_the_loop_lifts() {
    let erring = |a: &str| -> Result<bool, String> {
        if a.contains('3') {
            Ok(true)
        } else {
            Err("cannot parse".into())
        }
    };
    let panicking = |a: &str| -> Result<bool, String> {
        if a.contains('3') {
            Ok(true)
        } else {
            panic!("validator bug")
        }
    };
    for v in [&erring as &dyn Fn(&str) -> Result<bool, String>, &panicking] {
        let mut lane = Scripted::new("2");
        let o = governed_fact_loop(
            &mut lane,
            PROMPT,
            &mut |_| vec![fact()],
            v,
            &CostSource::Given(0.0),
            &FactLoopConfig::default(),
        )
        .unwrap();
        assert!(!o.audit.base_validated);
        assert!(o.audit.base_failure.is_some());
        assert!(o.used_facts && o.audit.final_validated);
        assert!(o.audit.disposed_k.is_some());
    }
}

#[test]
fn the_grounding_mode_is_reported() {
    let mut lane = Scripted::new("2");
    lane.grounding = Grounding::MidStream;
    let o = governed_fact_loop(
        &mut lane,
        PROMPT,
        &mut |_| vec![fact()],
        &says_three,
        &CostSource::Given(0.0),
        &FactLoopConfig::default(),
    )
    .unwrap();
    assert_eq!(o.grounding, Some(Grounding::MidStream));
    assert!(o.audit.note.contains("mid_stream"));
}

// ---------------------------------------------------------------- fact dispatch (§5.6)

mod dispatch {
    use super::*;
    use nmk_kernel::capability::{Capability, Grants};
    use nmk_kernel::fact_loop::dispatch::{FactRouter, Routed, dispatch};

    /// Answers wrongly ("2", "20", "yes") to bare prompts and copies the fact's value when a
    /// facts block is present.
    struct Wrong {
        seen: Vec<String>,
    }

    impl FactLane for Wrong {
        fn answer(&mut self, prompt: &str) -> Result<Proposal, ProposerError> {
            self.seen.push(prompt.to_owned());
            let text = if prompt.contains("prime") {
                "Yes, it is a prime number."
            } else if prompt.contains("gcd") || prompt.contains("divisor") {
                "The gcd is 20."
            } else if prompt.contains("haiku") {
                "Waves fold into foam"
            } else {
                "It occurs 2 times."
            };
            Ok(Proposal {
                text: text.to_owned(),
                tokens: 5,
                finished: true,
            })
        }
        fn grounded(&mut self, prompt: &str, facts: &[Fact]) -> Result<Proposal, ProposerError> {
            self.seen.push(augment_prompt(prompt, facts));
            let v = &facts[0].value;
            let text = match v.as_str() {
                "True" => "Yes, it is a prime number.".to_owned(),
                "False" => "No, it is not a prime number.".to_owned(),
                n => format!("The answer is {n}."),
            };
            Ok(Proposal {
                text,
                tokens: 6,
                finished: true,
            })
        }
        fn grounding(&self) -> Grounding {
            Grounding::Reprefill
        }
    }

    fn lane() -> Wrong {
        Wrong { seen: Vec::new() }
    }

    fn run(
        prompt: &str,
        grants: Option<&Grants>,
    ) -> (nmk_kernel::fact_loop::dispatch::Dispatch, Wrong) {
        let mut l = lane();
        let d = dispatch(
            &mut l,
            prompt,
            &FactRouter::default(),
            grants,
            &CostSource::Given(0.0),
            &FactLoopConfig::default(),
        )
        .unwrap();
        (d, l)
    }

    #[test]
    fn routes_by_shape() {
        let r = FactRouter::default();
        let name = |p: &str| r.route(p).map(|s| s.name);
        assert_eq!(
            name("How many times does the letter r occur in 'strawberry'?"),
            Some("letter_count")
        );
        assert_eq!(name("What is the gcd of 1071 and 462?"), Some("gcd"));
        assert_eq!(name("Is 1000003 a prime number?"), Some("is_prime"));
        assert_eq!(name("Write a haiku about the sea."), None);
        assert_eq!(r.specs()[0].cap, "fact:letter_count");
    }

    #[test]
    fn wrong_answers_are_lifted_by_the_right_facts() {
        let (d, l) = run(
            "How many times does the letter r occur in 'strawberry'?",
            None,
        );
        assert_eq!(d.routed, Routed::Spec("letter_count"));
        assert!(d.answer.contains('3'), "{}", d.answer);
        assert!(d.checked);
        assert_eq!(d.generations, 2);
        let o = d.outcome.unwrap();
        assert!(o.used_facts && !o.audit.base_validated);
        assert_eq!(o.facts[0].label, "count_letter('strawberry', 'r')");
        assert!(l.seen[1].starts_with(FACTS_HEADER));

        let (d, _) = run("What is the gcd of 1071 and 462?", None);
        assert_eq!(d.routed, Routed::Spec("gcd"));
        assert!(d.answer.contains("21"), "{}", d.answer);

        let (d, _) = run("Is 91 a prime number?", None);
        assert_eq!(d.routed, Routed::Spec("is_prime"));
        assert!(d.answer.contains("not a prime"), "{}", d.answer);
        assert!(d.checked);
    }

    #[test]
    fn a_right_base_answer_is_not_regrounded() {
        // 97 is prime and the bare lane says so: checked, one generation, no facts.
        let (d, l) = run("Is 97 a prime number?", None);
        assert!(d.checked);
        assert_eq!(d.generations, 1);
        assert!(!d.outcome.unwrap().used_facts);
        assert_eq!(l.seen.len(), 1);
    }

    #[test]
    fn pass_through_is_the_bare_answer_and_never_claims_a_check() {
        let (d, l) = run("Write a haiku about the sea.", None);
        assert_eq!(d.routed, Routed::None);
        assert_eq!(d.answer, "Waves fold into foam");
        assert_eq!((d.generations, d.checked), (1, false));
        assert!(d.outcome.is_none());
        assert_eq!(l.seen, ["Write a haiku about the sea."], "prompt unchanged");
    }

    #[test]
    fn capabilities_gate_each_route() {
        let p = "How many times does the letter r occur in 'strawberry'?";
        let none = Grants::none();
        let (d, l) = run(p, Some(&none));
        assert_eq!(d.routed, Routed::CapDenied("letter_count"));
        assert!(!d.answer.contains('3'));
        assert_eq!(d.generations, 1);
        assert!(!l.seen.iter().any(|s| s.contains(FACTS_HEADER)));
        let mut other = Grants::none();
        other.grant(Capability::parse("fact:gcd").unwrap());
        assert_eq!(
            run(p, Some(&other)).0.routed,
            Routed::CapDenied("letter_count")
        );
        let mut granted = Grants::none();
        granted.grant(Capability::parse("fact:letter_count").unwrap());
        let (d, _) = run(p, Some(&granted));
        assert_eq!(d.routed, Routed::Spec("letter_count"));
        assert!(d.answer.contains('3'));
    }

    #[test]
    fn ambiguous_operands_give_no_facts_and_stay_thin() {
        let (d, l) = run("What is the gcd of 12, 18 and 30?", None);
        assert_eq!(d.routed, Routed::Spec("gcd"));
        assert!(d.refusal.as_deref().unwrap_or("").contains("ambiguous"));
        let o = d.outcome.unwrap();
        assert!(!o.used_facts);
        assert!(o.audit.note.contains("no verified facts"));
        assert!(!d.checked);
        assert_eq!(l.seen.len(), 1);
    }
}
