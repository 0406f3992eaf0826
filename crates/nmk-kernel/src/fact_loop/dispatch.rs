//! Fact dispatch: which prompts get verified facts, from which trusted primitive, checked how.
//!
//! An ordered [`FactRouter`] of [`FactSpec`]s; the first spec whose cues the prompt carries
//! owns it. Its operands are extracted by the router's strict rules ([`crate::router::extract`]:
//! ambiguity refuses, never guesses), the fact is computed by a built-in primitive of
//! `nmk-det`, and the spec builds the deterministic check of the answer. Ambiguous operands give
//! no facts and a check that always fails, so the governed loop stays thin and says why. Each
//! spec has its own capability (`fact:<name>`): when the caller passes grants, an ungranted
//! spec is a pass-through, recorded as such.
//!
//! A pass-through (no route, or capability denied) is the bare answer, exactly: one generation,
//! no facts, and its verification is JUDGMENT (no check judged it; the original recorded it
//! VALIDATED, spec §9 D24).

use nmk_det::Value;

use super::{Fact, FactLane, FactLoopConfig, FactLoopOutcome, governed_fact_loop};
use crate::capability::{Capability, Grants};
use crate::k_policy::CostSource;
use crate::proposer::ProposerError;
use crate::router::extract::{ArgSpec, Cues, extract};

/// Which trusted computation a spec grounds with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FactKind {
    LetterCount,
    Gcd,
    IsPrime,
}

/// One fact route.
#[derive(Debug, Clone)]
pub struct FactSpec {
    /// `letter_count`, `gcd`, `is_prime`.
    pub name: &'static str,
    /// The capability it needs (`fact:<name>`).
    pub cap: &'static str,
    cues: Cues,
    args: ArgSpec,
    kind: FactKind,
}

/// What a spec made of a prompt: the facts and the check of the answer.
pub struct Grounding {
    /// The facts (empty when the operands were ambiguous).
    pub facts: Vec<Fact>,
    /// Why there are no facts, if there are none.
    pub refusal: Option<String>,
    check: Check,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Check {
    /// The answer holds this integer, not glued to other digits.
    Integer(i64),
    /// The answer says prime (true) or not prime (false), and not the other.
    Polarity(bool),
    /// Operands were ambiguous: no answer passes.
    Never,
}

impl Grounding {
    /// Judges an answer.
    pub fn check(&self, answer: &str) -> bool {
        match &self.check {
            Check::Integer(n) => has_integer(answer, *n),
            Check::Polarity(prime) => says_prime(answer) == Some(*prime),
            Check::Never => false,
        }
    }
}

/// Whether `text` holds `n` as a standalone integer (not part of a longer digit run).
fn has_integer(text: &str, n: i64) -> bool {
    let want = n.to_string();
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_digit() {
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            let neg = start > 0 && b[start - 1] == b'-';
            let run = text.get(start..i).unwrap_or("");
            if (run == want && !neg) || (neg && format!("-{run}") == want) {
                return true;
            }
        } else {
            i += 1;
        }
    }
    false
}

/// What the answer claims about primality: `Some(true)` for "is prime", `Some(false)` for "not
/// prime" / "composite", `None` when it says both or neither.
fn says_prime(answer: &str) -> Option<bool> {
    let a = answer.to_lowercase();
    let negative = [
        "not prime",
        "not a prime",
        "isn't prime",
        "isn't a prime",
        "is not a prime",
        "composite",
    ]
    .iter()
    .any(|p| a.contains(p))
        || a.trim_start().starts_with("no");
    let positive_phrase = ["is prime", "is a prime", "a prime number"]
        .iter()
        .any(|p| a.contains(p))
        || a.trim_start().starts_with("yes");
    // "is not a prime number" contains "a prime number": positives count only without a
    // negative.
    match (negative, positive_phrase) {
        (true, _) => Some(false),
        (false, true) => Some(true),
        (false, false) => None,
    }
}

fn primitive(name: &str, args: &[Value]) -> Result<Value, String> {
    let p = nmk_det::primitives::find(name).ok_or_else(|| format!("no primitive {name}"))?;
    p.call(args).map_err(|e| format!("{name}: {e}"))
}

impl FactSpec {
    /// Whether the prompt carries this spec's cues.
    pub fn matches(&self, prompt: &str) -> bool {
        self.cues.check(prompt).is_ok()
    }

    /// The facts and the answer check for `prompt`.
    pub fn ground(&self, prompt: &str) -> Grounding {
        let never = |why: String| Grounding {
            facts: Vec::new(),
            refusal: Some(why),
            check: Check::Never,
        };
        let args = match extract(self.args, prompt) {
            Ok(a) => a,
            Err(why) => return never(format!("ambiguous operands: {why}")),
        };
        let shown: Vec<String> = args.iter().map(show).collect();
        let prim = match self.kind {
            FactKind::LetterCount => "count_letter",
            FactKind::Gcd => "gcd",
            FactKind::IsPrime => "is_prime",
        };
        let value = match primitive(prim, &args) {
            Ok(v) => v,
            Err(why) => return never(why),
        };
        let check = match (&value, value.as_i64()) {
            (Value::Bool(b), _) => Check::Polarity(*b),
            (_, Some(n)) => Check::Integer(n),
            _ => return never(format!("{prim} returned {value:?}")),
        };
        Grounding {
            facts: vec![Fact {
                label: format!("{prim}({})", shown.join(", ")),
                value: show(&value),
            }],
            refusal: None,
            check,
        }
    }
}

/// A value as it appears in a fact label (strings quoted with `'`).
fn show(v: &Value) -> String {
    match v {
        Value::Str(s) => format!("'{s}'"),
        Value::Bool(b) => if *b { "True" } else { "False" }.to_owned(),
        other => other
            .as_i64()
            .map_or_else(|| format!("{other:?}"), |n| n.to_string()),
    }
}

/// The ordered fact routes.
#[derive(Debug, Clone)]
pub struct FactRouter {
    specs: Vec<FactSpec>,
}

impl Default for FactRouter {
    /// letter_count, gcd, is_prime.
    fn default() -> FactRouter {
        FactRouter {
            specs: vec![
                FactSpec {
                    name: "letter_count",
                    cap: "fact:letter_count",
                    cues: Cues::new(
                        &[
                            &["letter", "letters", "character", "characters"],
                            &[
                                "how many",
                                "number of",
                                "count",
                                "times",
                                "occur",
                                "occurs",
                                "appear",
                                "appears",
                            ],
                        ],
                        &[],
                    ),
                    args: ArgSpec::LetterInText,
                    kind: FactKind::LetterCount,
                },
                FactSpec {
                    name: "gcd",
                    cap: "fact:gcd",
                    cues: Cues::new(
                        &[&["gcd", "greatest common divisor", "greatest common factor"]],
                        &[],
                    ),
                    args: ArgSpec::Ints(2),
                    kind: FactKind::Gcd,
                },
                FactSpec {
                    name: "is_prime",
                    cap: "fact:is_prime",
                    cues: Cues::new(&[&["prime"]], &[]),
                    args: ArgSpec::Ints(1),
                    kind: FactKind::IsPrime,
                },
            ],
        }
    }
}

impl FactRouter {
    /// The first spec owning `prompt`.
    pub fn route(&self, prompt: &str) -> Option<&FactSpec> {
        self.specs.iter().find(|s| s.matches(prompt))
    }

    /// The specs, in order.
    pub fn specs(&self) -> &[FactSpec] {
        &self.specs
    }
}

/// How a prompt was dispatched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Routed {
    /// No spec owns it: the bare answer.
    None,
    /// A spec owns it but its capability was not granted: the bare answer.
    CapDenied(&'static str),
    /// A spec owns it: the governed loop ran.
    Spec(&'static str),
}

/// The result of [`dispatch`].
#[derive(Debug, Clone, PartialEq)]
pub struct Dispatch {
    /// The answer released.
    pub answer: String,
    /// How it was routed.
    pub routed: Routed,
    /// The loop's outcome when a spec ran.
    pub outcome: Option<FactLoopOutcome>,
    /// Generations run.
    pub generations: u32,
    /// Model tokens generated.
    pub tokens: u32,
    /// Whether a deterministic check passed the released answer (false on pass-through:
    /// nothing judged it, so it is JUDGMENT, never VALIDATED — spec §9 D24).
    pub checked: bool,
    /// Why a routed prompt got no facts, if it got none.
    pub refusal: Option<String>,
}

/// Dispatches `prompt`: pass-through when no spec owns it or its capability is not in
/// `grants` (when given), else the governed fact loop with the spec's facts and check.
pub fn dispatch(
    lane: &mut dyn FactLane,
    prompt: &str,
    router: &FactRouter,
    grants: Option<&Grants>,
    cost: &CostSource<'_>,
    config: &FactLoopConfig,
) -> Result<Dispatch, ProposerError> {
    let pass = |lane: &mut dyn FactLane, routed: Routed| -> Result<Dispatch, ProposerError> {
        let a = lane.answer(prompt)?;
        Ok(Dispatch {
            answer: a.text,
            routed,
            outcome: None,
            generations: 1,
            tokens: a.tokens,
            checked: false,
            refusal: None,
        })
    };
    let Some(spec) = router.route(prompt) else {
        return pass(lane, Routed::None);
    };
    if let Some(g) = grants {
        let allowed = Capability::parse(spec.cap).is_ok_and(|c| g.allows(&c));
        if !allowed {
            return pass(lane, Routed::CapDenied(spec.name));
        }
    }
    let grounding = spec.ground(prompt);
    let facts = grounding.facts.clone();
    let check = |a: &str| -> Result<bool, String> { Ok(grounding.check(a)) };
    let outcome = governed_fact_loop(lane, prompt, &mut |_| facts.clone(), &check, cost, config)?;
    Ok(Dispatch {
        answer: outcome.answer.clone(),
        routed: Routed::Spec(spec.name),
        generations: outcome.generations,
        tokens: outcome.tokens,
        checked: outcome.audit.final_validated,
        refusal: grounding.refusal.clone(),
        outcome: Some(outcome),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_and_polarity_are_read_strictly() {
        assert!(has_integer("It occurs 3 times.", 3));
        assert!(!has_integer("It occurs 33 times.", 3));
        assert!(has_integer("gcd is 21", 21));
        assert_eq!(says_prime("Yes, 97 is a prime number."), Some(true));
        assert_eq!(says_prime("91 is not a prime number."), Some(false));
        assert_eq!(says_prime("It is composite."), Some(false));
        assert_eq!(says_prime("Hard to say."), None);
    }
}
