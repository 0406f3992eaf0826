//! The governed fact loop: answer thin by default, and ground the model with verified facts only
//! when its own answer fails a deterministic check and the policy says the spend is worth it.
//!
//! 1. The model answers the bare prompt. A validator (deterministic, outside the model) judges
//!    the answer; a validator that errs or panics counts as a failure.
//! 2. A valid answer is returned as it is: the fact provider is never called.
//! 3. Otherwise the dynamic-k policy decides, with disagreement 1.0 (the check failed), the
//!    measured cost (any sensor failure reads as 1.0) and the item's importance, whether an
//!    *optional* spend is justified ([`KDecision::optional_k`]: under the default policy a
//!    saturated machine vetoes it, spec §9 D31), and the budget is charged one unit for it.
//! 4. When it is, the provider computes facts with trusted tools; none means the loop stays thin
//!    and says so. With facts the model answers again, grounded, and the second answer is
//!    judged by the same validator.
//!
//! Grounding is done by a [`FactLane`] the binary implements: by re-prefilling the whole prompt
//! with the facts block in front ([`augment_prompt`], byte-identical to the prompt when there
//! are no facts: the inertness rule), or mid-stream (the parked session continues with the facts
//! appended as tokens). The kernel does not care which; the report records it.
//!
//! [`dispatch`] picks the fact route of a prompt; [`executor`] runs dispatch as a scheduler op.
//!
//! What this module may not do: compute a fact or judge an answer itself. Facts come from the
//! provider, verdicts from the validator, both supplied by the caller.

pub mod dispatch;
pub mod executor;

pub use executor::{
    FACT_LOOP_OP, FactLoopOptions, FactLoopRegistration, register_fact_loop_executor,
};

use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::k_policy::{
    BudgetNote, CostSource, KDecision, KPolicy, KReason, KSignals, charge_budget, decide,
};
use crate::proposer::{Proposal, ProposerError};

/// One verified fact: what was computed (`count_byte('strawberry', 'r')`) and its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fact {
    /// The computation, as a call.
    pub label: String,
    /// Its result.
    pub value: String,
}

/// The header of the facts block.
pub const FACTS_HEADER: &str = "Verified facts (computed by a trusted tool; trust them over your \
                                own counting or arithmetic):";

/// The facts block: empty for no facts, else the header and one `- label = value` line each.
pub fn render_facts(facts: &[Fact]) -> String {
    if facts.is_empty() {
        return String::new();
    }
    let mut s = String::from(FACTS_HEADER);
    for f in facts {
        s.push_str("\n- ");
        s.push_str(&f.label);
        s.push_str(" = ");
        s.push_str(&f.value);
    }
    s
}

/// `prompt` with the facts block in front (and a blank line), or `prompt` itself, byte for
/// byte, when there are no facts.
pub fn augment_prompt(prompt: &str, facts: &[Fact]) -> String {
    if facts.is_empty() {
        return prompt.to_owned();
    }
    format!("{}\n\n{prompt}", render_facts(facts))
}

/// How grounded answers are produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grounding {
    /// The whole prompt again, with the facts block in front.
    Reprefill,
    /// The session parked after the prompt continues with the facts appended as tokens.
    MidStream,
}

impl Grounding {
    /// `reprefill` or `mid_stream`.
    pub fn as_str(self) -> &'static str {
        match self {
            Grounding::Reprefill => "reprefill",
            Grounding::MidStream => "mid_stream",
        }
    }
}

/// The model side of the loop, implemented by the binary.
pub trait FactLane {
    /// The bare answer to `prompt`.
    fn answer(&mut self, prompt: &str) -> Result<Proposal, ProposerError>;
    /// An answer to `prompt` grounded with `facts` (never empty), in the lane's way.
    fn grounded(&mut self, prompt: &str, facts: &[Fact]) -> Result<Proposal, ProposerError>;
    /// How [`FactLane::grounded`] grounds.
    fn grounding(&self) -> Grounding;
}

/// Settings of the loop.
#[derive(Debug, Clone, PartialEq)]
pub struct FactLoopConfig {
    /// The dynamic-k policy (default: `KPolicy::default()`).
    pub policy: KPolicy,
    /// How much the item matters (default 0.7).
    pub importance: f64,
    /// Budget left for optional spends, in policy units (`None`: unlimited).
    pub budget: Option<f64>,
}

impl Default for FactLoopConfig {
    fn default() -> FactLoopConfig {
        FactLoopConfig {
            policy: KPolicy::default(),
            importance: 0.7,
            budget: None,
        }
    }
}

/// Why the loop did what it did.
#[derive(Debug, Clone, PartialEq)]
pub struct FactAudit {
    /// The decision's label (`thin_default` when the base answer passed).
    pub reason: KReason,
    /// The cost read (`None`: not needed, the base passed).
    pub cost: Option<f64>,
    /// Why the cost read as 1.0, when a probe failed.
    pub cost_failure: Option<String>,
    /// The budget charge note (`None`: no charge was needed).
    pub budget_note: Option<BudgetNote>,
    /// The decision's total k (`None`: no decision was needed).
    pub disposed_k: Option<u32>,
    /// The optional part of k the spend was judged on.
    pub optional_k: Option<u32>,
    /// Whether the base answer passed the validator.
    pub base_validated: bool,
    /// Whether the final answer passed it.
    pub final_validated: bool,
    /// What the validator said when it failed or errored, on the base answer.
    pub base_failure: Option<String>,
    /// A sentence on the outcome (e.g. "no verified facts").
    pub note: String,
}

/// The result of [`governed_fact_loop`].
#[derive(Debug, Clone, PartialEq)]
pub struct FactLoopOutcome {
    /// The answer released (the grounded one when grounding ran, else the base one).
    pub answer: String,
    /// Whether facts were used.
    pub used_facts: bool,
    /// The facts used.
    pub facts: Vec<Fact>,
    /// Generations run (1 or 2).
    pub generations: u32,
    /// Model tokens generated over all generations.
    pub tokens: u32,
    /// The spend admitted for grounding (0 or 1).
    pub k: u32,
    /// How grounding was done, when it was.
    pub grounding: Option<Grounding>,
    /// The audit.
    pub audit: FactAudit,
}

/// Runs `validate`, counting an error or a panic as a failure (with its message).
fn judged(validate: &dyn Fn(&str) -> Result<bool, String>, answer: &str) -> (bool, Option<String>) {
    match catch_unwind(AssertUnwindSafe(|| validate(answer))) {
        Ok(Ok(true)) => (true, None),
        Ok(Ok(false)) => (false, Some("the validator rejected the answer".to_owned())),
        Ok(Err(e)) => (false, Some(format!("the validator failed: {e}"))),
        Err(_) => (false, Some("the validator panicked".to_owned())),
    }
}

/// The governed fact loop (see the module documentation).
pub fn governed_fact_loop(
    lane: &mut dyn FactLane,
    prompt: &str,
    provider: &mut dyn FnMut(&str) -> Vec<Fact>,
    validate: &dyn Fn(&str) -> Result<bool, String>,
    cost: &CostSource<'_>,
    config: &FactLoopConfig,
) -> Result<FactLoopOutcome, ProposerError> {
    let base = lane.answer(prompt)?;
    let (base_ok, base_failure) = judged(validate, &base.text);
    let mut out = FactLoopOutcome {
        answer: base.text.clone(),
        used_facts: false,
        facts: Vec::new(),
        generations: 1,
        tokens: base.tokens,
        k: 0,
        grounding: None,
        audit: FactAudit {
            reason: KReason::ThinDefault,
            cost: None,
            cost_failure: None,
            budget_note: None,
            disposed_k: None,
            optional_k: None,
            base_validated: base_ok,
            final_validated: base_ok,
            base_failure,
            note: "the base answer passed; no facts needed".to_owned(),
        },
    };
    if base_ok {
        return Ok(out);
    }

    let (c, why) = cost.read();
    let decision = decide(
        &config.policy,
        &KSignals {
            disagreement: Some(1.0),
            cost: c,
            importance: config.importance,
            ..KSignals::default()
        },
    );
    let want = decision.optional_k().min(1);
    let charge = charge_budget(
        &KDecision {
            k: want,
            ..decision
        },
        config.budget,
        config.policy.unit_cost(),
    );
    out.audit.reason = decision.reason;
    out.audit.cost = Some(c);
    out.audit.cost_failure = why;
    out.audit.budget_note = Some(charge.note);
    out.audit.disposed_k = Some(decision.k);
    out.audit.optional_k = Some(decision.optional_k());
    if charge.admitted_k == 0 {
        out.audit.note = if want == 0 {
            format!("grounding not justified ({})", decision.reason.as_str())
        } else {
            format!("grounding not affordable ({})", charge.note.as_str())
        };
        return Ok(out);
    }

    let facts = provider(prompt);
    if facts.is_empty() {
        out.audit.note = "no verified facts for this prompt: stayed thin".to_owned();
        return Ok(out);
    }
    let grounded = lane.grounded(prompt, &facts)?;
    let (ok, _) = judged(validate, &grounded.text);
    out.answer = grounded.text;
    out.used_facts = true;
    out.facts = facts;
    out.generations = 2;
    out.tokens = out.tokens.saturating_add(grounded.tokens);
    out.k = charge.admitted_k;
    out.grounding = Some(lane.grounding());
    out.audit.final_validated = ok;
    out.audit.note = format!(
        "grounded with {} fact(s) by {}; final answer {}",
        out.facts.len(),
        lane.grounding().as_str(),
        if ok { "validated" } else { "still rejected" }
    );
    Ok(out)
}
