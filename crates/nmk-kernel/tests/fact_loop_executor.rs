//! The fact loop as a scheduler op (spec §5.6 `register_fact_loop_executor`, §7 fact_dispatch
//! executor lines, adapted): registration, the capability gate at admission, a grounded
//! letter count committed VALIDATED with a verified ledger, a chat prompt committed as JUDGMENT
//! (never VALIDATED, §9 D24), and the validator's independent re-check failing what the loop
//! could not fix. The model is a deterministic fake [`FactLane`].
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};

use nmk_det::{ValidationLevel, Value};
use nmk_kernel::budget::{Budget, BudgetLimits};
use nmk_kernel::capability::Capability;
use nmk_kernel::fact_loop::executor::FactLoopValidator;
use nmk_kernel::fact_loop::{
    FACTS_HEADER, Fact, FactLane, FactLoopOptions, FactLoopRegistration, Grounding, augment_prompt,
    dispatch::FactRouter, register_fact_loop_executor,
};
use nmk_kernel::ledger::{Action, Ledger};
use nmk_kernel::ops::{ValidationCall, Validator, Verdict};
use nmk_kernel::proposer::{Proposal, ProposerError};
use nmk_kernel::{Reject, Scheduler, TaskStatus, Verification};

const STRAWBERRY: &str = "How many times does the letter r occur in the word strawberry?";
const HAIKU: &str = "Write a haiku about autumn leaves.";

/// Answers `base` to a bare prompt and "The letter r occurs 3 times." when it is shown the
/// facts header (unless `ignores_facts`); records every prompt.
struct FakeLane {
    base: &'static str,
    ignores_facts: bool,
    seen: Arc<Mutex<Vec<String>>>,
}

impl FakeLane {
    fn reply(&mut self, prompt: String) -> Result<Proposal, ProposerError> {
        let text = if prompt.contains(FACTS_HEADER) && !self.ignores_facts {
            "The letter r occurs 3 times."
        } else {
            self.base
        };
        self.seen.lock().unwrap().push(prompt);
        Ok(Proposal {
            text: text.to_owned(),
            tokens: 5,
            finished: true,
        })
    }
}

impl FactLane for FakeLane {
    fn answer(&mut self, prompt: &str) -> Result<Proposal, ProposerError> {
        self.reply(prompt.to_owned())
    }
    fn grounded(&mut self, prompt: &str, facts: &[Fact]) -> Result<Proposal, ProposerError> {
        self.reply(augment_prompt(prompt, facts))
    }
    fn grounding(&self) -> Grounding {
        Grounding::Reprefill
    }
}

struct Setup {
    s: Scheduler,
    reg: FactLoopRegistration,
    seen: Arc<Mutex<Vec<String>>>,
    ledger: Ledger,
}

fn setup(base: &'static str, ignores_facts: bool, options: FactLoopOptions) -> Setup {
    let ledger = Ledger::in_memory();
    let mut s = Scheduler::new(
        "facts",
        ledger.clone(),
        Budget::new(BudgetLimits::default()),
    )
    .unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let lane = FakeLane {
        base,
        ignores_facts,
        seen: seen.clone(),
    };
    let reg = register_fact_loop_executor(&mut s, Box::new(lane), options).unwrap();
    Setup {
        s,
        reg,
        seen,
        ledger,
    }
}

fn idle() -> FactLoopOptions {
    FactLoopOptions {
        cost: Arc::new(|| Ok(0.0)),
        ..FactLoopOptions::default()
    }
}

/// Grants the op's capability, admits one root task on `prompt` (as input, when given), runs.
fn run_one(setup: &mut Setup, prompt: Option<&str>) {
    let cap = Capability::parse(&setup.reg.capability).unwrap();
    setup.s.grants_mut().grant(cap);
    setup.s.classify("fact_question");
    let mut task = setup.reg.task("q").root();
    if let Some(p) = prompt {
        let r = setup.s.put_artifact(Value::str(p), "prompt").unwrap();
        task = task.input("prompt", r);
    }
    setup.s.admit(task).unwrap();
    setup.s.run(10).unwrap();
}

fn result_field<'a>(s: &'a Scheduler, field: &str) -> &'a Value {
    s.result("q")
        .and_then(|r| r.get(field))
        .unwrap_or(&Value::Null)
}

#[test]
fn registration_reports_its_capability_and_validator_and_is_not_a_syscall_op() {
    let mut su = setup("2", false, idle());
    assert_eq!(su.reg.capability, "fact:fact_loop");
    assert_eq!(su.reg.validator, "fact_loop_validated");
    assert_eq!(su.reg.level, ValidationLevel::Property);
    assert!(su.s.has_op("fact_loop"));
    // Not a syscall op: a task need not declare the capability, only have it granted.
    su.s.grants_mut()
        .grant(Capability::parse("fact:fact_loop").unwrap());
    let undeclared =
        nmk_kernel::TaskSpec::new("q", "fact_loop").validated_by("fact_loop_validated", "PROPERTY");
    assert_eq!(su.s.admit(undeclared), Ok(()));

    // Another op name derives both names.
    let other = setup(
        "2",
        false,
        FactLoopOptions {
            op: "ask_facts".into(),
            ..idle()
        },
    );
    assert_eq!(other.reg.capability, "fact:ask_facts");
    assert_eq!(other.reg.validator, "ask_facts_validated");
}

#[test]
fn an_ungranted_capability_is_refused_at_admission() {
    let mut su = setup("2", false, idle());
    let declared = su.reg.task("q");
    let undeclared =
        nmk_kernel::TaskSpec::new("q", "fact_loop").validated_by("fact_loop_validated", "PROPERTY");
    for task in [declared.clone(), undeclared] {
        assert_eq!(
            su.s.admit(task),
            Err(Reject::MissingCapability("fact:fact_loop".into()))
        );
    }
    // Another fact capability does not stand in for it.
    su.s.grants_mut()
        .grant(Capability::parse("fact:letter_count").unwrap());
    assert!(su.s.admit(declared.clone()).is_err());
    assert!(su.s.tasks().is_empty());
    // Contrast: granted, the same task is admitted.
    su.s.grants_mut()
        .grant(Capability::parse("fact:fact_loop").unwrap());
    assert_eq!(su.s.admit(declared), Ok(()));
    assert!(su.seen.lock().unwrap().is_empty(), "admission ran no model");
}

#[test]
fn a_wrong_base_answer_is_grounded_validated_and_committed_with_a_verified_ledger() {
    let mut su = setup("The letter r occurs 2 times.", false, idle());
    run_one(&mut su, Some(STRAWBERRY));
    let summary = su.s.summary().unwrap();
    assert!(summary.committed);
    assert!(summary.ledger_verified);
    assert_eq!(result_field(&su.s, "routed").as_str(), Some("letter_count"));
    assert_eq!(result_field(&su.s, "used_facts"), &Value::Bool(true));
    assert_eq!(result_field(&su.s, "base_validated"), &Value::Bool(false));
    assert_eq!(result_field(&su.s, "final_validated"), &Value::Bool(true));
    assert_eq!(result_field(&su.s, "generations").as_i64(), Some(2));
    let answer = result_field(&su.s, "answer").as_str().unwrap();
    assert!(answer.contains('3'), "{answer}");
    let q = su.s.task("q").unwrap();
    assert_eq!(q.status, TaskStatus::Committed);
    assert_eq!(q.verification, Verification::Validated);
    assert_eq!(q.level, ValidationLevel::Property);
    let seen = su.seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0], STRAWBERRY);
    assert!(seen[1].starts_with(FACTS_HEADER));
    assert!(
        seen[1].contains("count_letter('strawberry', 'r') = 3"),
        "{}",
        seen[1]
    );
    // The verdict entry names the validator.
    let pass = su
        .ledger
        .entries(0, usize::MAX)
        .unwrap()
        .into_iter()
        .find(|e| e.record.opcode == "fact_loop" && e.record.action == Action::Pass)
        .unwrap();
    assert_eq!(
        pass.record.validator.as_ref().map(|v| v.name.as_str()),
        Some("fact_loop_validated")
    );
    assert_eq!(pass.record.verification, Verification::Validated);
}

#[test]
fn a_right_base_answer_is_validated_without_grounding() {
    let mut su = setup("It occurs 3 times.", false, idle());
    run_one(&mut su, Some(STRAWBERRY));
    assert!(su.s.summary().unwrap().committed);
    assert_eq!(result_field(&su.s, "routed").as_str(), Some("letter_count"));
    assert_eq!(result_field(&su.s, "used_facts"), &Value::Bool(false));
    assert_eq!(result_field(&su.s, "base_validated"), &Value::Bool(true));
    assert_eq!(result_field(&su.s, "generations").as_i64(), Some(1));
    assert_eq!(
        su.s.task("q").unwrap().verification,
        Verification::Validated
    );
    assert_eq!(su.seen.lock().unwrap().len(), 1);
}

#[test]
fn a_chat_prompt_passes_through_and_commits_as_judgment_never_validated() {
    let mut su = setup("Crisp leaves drift down", false, idle());
    run_one(&mut su, Some(HAIKU));
    assert!(su.s.summary().unwrap().committed);
    assert_eq!(result_field(&su.s, "routed").as_str(), Some("none"));
    assert_eq!(result_field(&su.s, "generations").as_i64(), Some(1));
    assert_eq!(
        result_field(&su.s, "answer").as_str(),
        Some("Crisp leaves drift down")
    );
    let q = su.s.task("q").unwrap();
    assert_eq!(q.status, TaskStatus::Committed);
    assert_eq!(q.verification, Verification::Judgment);
    assert_eq!(q.level, ValidationLevel::None);
    assert_eq!(
        su.seen.lock().unwrap().as_slice(),
        [HAIKU],
        "prompt unchanged"
    );
}

#[test]
fn an_answer_the_facts_could_not_fix_fails_the_task() {
    // Base wrong, facts used, grounded answer still wrong: base ∨ (used ∧ final) is false.
    let mut su = setup("It occurs 2 times.", true, idle());
    run_one(&mut su, Some(STRAWBERRY));
    assert!(!su.s.summary().unwrap().committed);
    assert_ne!(su.s.task("q").unwrap().status, TaskStatus::Committed);
    // (The scheduler's repair policy may re-run the op; the first attempt is what matters.)
    let seen = su.seen.lock().unwrap().clone();
    assert_eq!(seen[0], STRAWBERRY);
    assert!(seen[1].starts_with(FACTS_HEADER), "grounding was tried");
    // A saturated machine vetoes grounding: the wrong base answer is not kept either.
    let mut sat = setup(
        "It occurs 2 times.",
        false,
        FactLoopOptions {
            cost: Arc::new(|| Ok(1.0)),
            ..FactLoopOptions::default()
        },
    );
    run_one(&mut sat, Some(STRAWBERRY));
    assert!(!sat.s.summary().unwrap().committed);
    let seen = sat.seen.lock().unwrap();
    assert!(!seen.is_empty());
    assert!(
        seen.iter().all(|p| !p.contains(FACTS_HEADER)),
        "no grounding on a saturated machine"
    );
}

#[test]
fn the_prompt_comes_from_the_input_else_the_job_and_none_is_not_ok() {
    // None: not ok, zero generations, the lane never called, the task not kept.
    let mut none = setup("It occurs 3 times.", false, idle());
    run_one(&mut none, None);
    let q = none.s.task("q").unwrap();
    assert!(!q.status.is_passed(), "{:?}", q.status);
    assert!(none.seen.lock().unwrap().is_empty());
    let failed = q
        .result_ref
        .and_then(|r| none.s.artifact(&r))
        .cloned()
        .unwrap();
    assert_eq!(failed.get("ok"), Some(&Value::Bool(false)));
    assert_eq!(failed.get("generations").and_then(Value::as_i64), Some(0));
    // The job prompt stands in for a missing input.
    let mut job = setup(
        "It occurs 3 times.",
        false,
        FactLoopOptions {
            job_prompt: Some(STRAWBERRY.to_owned()),
            ..idle()
        },
    );
    run_one(&mut job, None);
    assert!(job.s.summary().unwrap().committed);
    assert_eq!(job.seen.lock().unwrap().as_slice(), [STRAWBERRY]);
}

#[test]
fn the_validator_rechecks_the_answer_rather_than_trusting_the_result() {
    let v = FactLoopValidator::new("fact_loop_validated", FactRouter::default());
    let contract = Value::map::<&str>([]);
    let call = ValidationCall {
        task_id: "q",
        kind: "fact_loop",
        contract: &contract,
        level: ValidationLevel::Property,
    };
    let result = |prompt: &str, answer: &str, routed: &str, claims: bool| {
        Value::map([
            ("ok", Value::Bool(true)),
            ("prompt", Value::str(prompt)),
            ("answer", Value::str(answer)),
            ("routed", Value::str(routed)),
            ("final_validated", Value::Bool(claims)),
        ])
    };
    let judge = |r: &Value| v.verdict(r, &call).unwrap();
    assert_eq!(
        judge(&result(STRAWBERRY, "3 times", "letter_count", false)),
        Verdict::Pass
    );
    // A claim of validity does not make a wrong answer pass.
    assert_eq!(
        judge(&result(STRAWBERRY, "2 times", "letter_count", true)),
        Verdict::Fail
    );
    // A routed prompt labelled as a pass-through does not escape its check.
    assert_eq!(
        judge(&result(STRAWBERRY, "2 times", "none", true)),
        Verdict::Fail
    );
    assert_eq!(
        judge(&result(HAIKU, "anything", "none", false)),
        Verdict::Unjudged
    );
    assert_eq!(
        judge(&result(HAIKU, "anything", "gcd", true)),
        Verdict::Fail
    );
    assert_eq!(
        judge(&result(
            "What is the gcd of 1071 and 462?",
            "It is 21.",
            "gcd",
            false
        )),
        Verdict::Pass
    );
    assert_eq!(judge(&Value::Null), Verdict::Fail);
}
