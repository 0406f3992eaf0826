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
