//! The entry-trap head's disposal: a classifier outside the kernel proposes a route, the kernel
//! disposes (spec §5.6 `HeadFactRouter`, §6.4.10).
//!
//! Owns the mapping of a head's class to a route of the same [`Router`] (class name = route id,
//! `none` and anything else map to nothing), the checks a proposal must pass before it fires
//! (a finite confidence in [0, 1] at or above the threshold, the route's `trap:<entry>`
//! capability granted, the route's own strict extraction), the lexical fallback when it does
//! not fire, and the `head` part of the route decision's ledger entry (class, confidence, head
//! file hash, verdict, disposal).
//!
//! What it may not touch: the head itself. The kernel never runs a model; the proposal comes
//! from the binary as plain data and is treated as hostile (an errored or malformed proposal
//! is no proposal). A confident head never bypasses extraction: an ambiguous request refuses
//! the route exactly as it does under the lexical router.

use nmk_det::Value;

use super::{Attempt, RouteDecision, RouteEnv, Routed, Router, RouterError};
use crate::capability::{Capability, Grants};
use crate::k_policy::CostSource;

/// The class a head uses for "no route".
pub const NONE_CLASS: &str = "none";
/// Default confidence threshold (inclusive).
pub const DEFAULT_THRESHOLD: f32 = 0.5;
/// Longest class name or head hash recorded (a longer one is cut: it is hostile input).
const MAX_TEXT: usize = 128;

/// What the head proposes: a class and its softmax confidence.
#[derive(Debug, Clone, PartialEq)]
pub struct HeadProposal {
    /// Class name: a route id of the router, or [`NONE_CLASS`].
    pub class: String,
    /// Confidence in [0, 1].
    pub confidence: f32,
}

/// One request's head reading as the kernel receives it.
#[derive(Debug, Clone, PartialEq)]
pub struct HeadReading {
    /// The proposal, or why the head produced none (an error is no proposal).
    pub proposal: Result<HeadProposal, String>,
    /// Hash of the head file that produced it (hex), bound in the ledger.
    pub head_hash: String,
}

/// How the kernel disposes of proposals.
#[derive(Debug, Clone, PartialEq)]
pub struct HeadPolicy {
    /// Confidence at or above which a mapped class may fire.
    pub threshold: f32,
    /// When the head does not fire, whether the lexical router decides instead.
    pub lexical_fallback: bool,
    /// Capabilities granted for this request; a route fires only with `trap:<entry>` here.
    pub grants: Grants,
    /// Whether a `none` at or above the threshold also keeps the lexical fallback from
    /// routing (off by default, as in the reference: the fallback decides whenever the head
    /// does not fire). Measured by `nmk train-head` as a variant.
    pub none_vetoes_fallback: bool,
}

impl HeadPolicy {
    /// Threshold 0.5, lexical fallback, and `trap:<entry>` granted for every route of `router`.
    pub fn granting_all(router: &Router) -> HeadPolicy {
        let mut grants = Grants::none();
        for r in &router.routes {
            if let Some(cap) = trap_capability(r.entry()) {
                grants.grant(cap);
            }
        }
        HeadPolicy {
            threshold: DEFAULT_THRESHOLD,
            lexical_fallback: true,
            grants,
            none_vetoes_fallback: false,
        }
    }
}

/// The capability a head needs to fire the route of `entry`.
pub fn trap_capability(entry: &str) -> Option<Capability> {
    Capability::parse(&format!("trap:{entry}")).ok()
}

/// Why the head did or did not fire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadVerdict {
    /// The proposed route was chosen.
    Fired,
    /// The head errored or none was given.
    NoProposal,
    /// The confidence was NaN, infinite or outside [0, 1].
    InvalidConfidence,
    /// The head said `none`.
    NoneClass,
    /// The class names no route of this router.
    UnknownClass,
    /// Confidence below the threshold.
    BelowThreshold,
    /// The route's `trap:<entry>` capability is not granted.
    CapDenied,
    /// The route's extraction refused the request (or it needs memory that is not open).
    ExtractionRefused,
}

impl HeadVerdict {
    /// Stable name for ledgers and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            HeadVerdict::Fired => "fired",
            HeadVerdict::NoProposal => "no_proposal",
            HeadVerdict::InvalidConfidence => "invalid_confidence",
            HeadVerdict::NoneClass => "none_class",
            HeadVerdict::UnknownClass => "unknown_class",
            HeadVerdict::BelowThreshold => "below_threshold",
            HeadVerdict::CapDenied => "cap_denied",
            HeadVerdict::ExtractionRefused => "extraction_refused",
        }
    }
}

/// Who decided the route in the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadDisposal {
    /// The head's route.
    Fired,
    /// The head did not fire; the lexical router chose a route.
    FallbackLexical,
    /// No route: the model lane.
    None,
}

impl HeadDisposal {
    /// Stable name for ledgers and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            HeadDisposal::Fired => "fired",
            HeadDisposal::FallbackLexical => "fallback_lexical",
            HeadDisposal::None => "none",
        }
    }
}

/// A decision with the head's part.
#[derive(Debug, Clone, PartialEq)]
pub struct HeadDecision {
    /// The route decision (what [`Router::handle`] would act on).
    pub decision: RouteDecision,
    /// Why the head did or did not fire.
    pub verdict: HeadVerdict,
    /// Who decided.
    pub disposal: HeadDisposal,
    /// The route the head's class maps to, when it maps to one.
    pub proposed_route: Option<String>,
}

/// The result of [`Router::handle_with_head`].
#[derive(Debug, Clone, PartialEq)]
pub struct HeadRouted {
    /// What [`Router::handle`] returns.
    pub routed: Routed,
    /// Why the head did or did not fire (`None` when the model lane was forced).
    pub verdict: Option<HeadVerdict>,
    /// Who decided (`None` when the model lane was forced).
    pub disposal: Option<HeadDisposal>,
}

fn clip(s: &str) -> String {
    s.chars().take(MAX_TEXT).collect()
}

impl Router {
    /// Decides the route of `request` from the head's reading under `policy` (see the module
    /// doc), falling back to [`Router::decide`] when allowed. Runs nothing.
    pub fn dispose_head(
        &self,
        request: &str,
        reading: Option<&HeadReading>,
        policy: &HeadPolicy,
        cost: &CostSource<'_>,
        memory_open: bool,
    ) -> HeadDecision {
        let proposal = reading.and_then(|r| r.proposal.as_ref().ok());
        let mut proposed_route = None;
        let mut head_attempt = None;
        let verdict = match proposal {
            None => HeadVerdict::NoProposal,
            Some(p) if !p.confidence.is_finite() || !(0.0..=1.0).contains(&p.confidence) => {
                HeadVerdict::InvalidConfidence
            }
            Some(p) if p.class == NONE_CLASS => HeadVerdict::NoneClass,
            Some(p) => match self.routes.iter().position(|r| r.id() == p.class) {
                None => HeadVerdict::UnknownClass,
                Some(index) => {
                    let route = &self.routes[index];
                    proposed_route = Some(route.id());
                    let granted =
                        trap_capability(route.entry()).is_some_and(|c| policy.grants.allows(&c));
                    if p.confidence < policy.threshold {
                        HeadVerdict::BelowThreshold
                    } else if !granted {
                        HeadVerdict::CapDenied
                    } else {
                        // The head replaces the lexical cue check, never the strict extraction.
                        let outcome = if route.needs_memory() && !memory_open {
                            Err("memory unavailable: a memory-dependent route fails closed"
                                .to_owned())
                        } else if request.len() > super::lexical::MAX_REQUEST_BYTES {
                            Err("request too long".to_owned())
                        } else {
                            route.extract(request)
                        };
                        let fired = outcome.is_ok();
                        head_attempt = Some((index, outcome));
                        if fired {
                            HeadVerdict::Fired
                        } else {
                            HeadVerdict::ExtractionRefused
                        }
                    }
                }
            },
        };
        let head_attempt = head_attempt.map(|(index, outcome)| {
            (
                index,
                Attempt {
                    route: self.routes[index].id(),
                    outcome,
                },
            )
        });
        if let Some((index, attempt)) = &head_attempt
            && let Ok(args) = &attempt.outcome
        {
            return HeadDecision {
                decision: RouteDecision {
                    // The lexical scores are kept for the audit; they did not decide.
                    governed: self.govern(request, cost),
                    attempts: vec![attempt.clone()],
                    chosen: Some((*index, args.clone())),
                    reason: "head_routed".into(),
                },
                verdict,
                disposal: HeadDisposal::Fired,
                proposed_route,
            };
        }
        let vetoed = policy.none_vetoes_fallback
            && verdict == HeadVerdict::NoneClass
            && proposal.is_some_and(|p| p.confidence >= policy.threshold);
        let mut decision = if policy.lexical_fallback && !vetoed {
            self.decide(request, cost, memory_open)
        } else {
            RouteDecision::model_lane("head_declined")
        };
        if let Some((_, attempt)) = head_attempt {
            decision.attempts.insert(0, attempt);
        }
        let disposal = if decision.chosen.is_some() {
            HeadDisposal::FallbackLexical
        } else {
            HeadDisposal::None
        };
        HeadDecision {
            decision,
            verdict,
            disposal,
            proposed_route,
        }
    }

    /// [`Router::handle`] with the route decided by [`Router::dispose_head`]; the decision's
    /// ledger entry carries the head's proposal, its file hash, the verdict and the disposal.
    pub fn handle_with_head(
        &self,
        request: &str,
        env: RouteEnv<'_>,
        reading: Option<&HeadReading>,
        policy: &HeadPolicy,
    ) -> Result<HeadRouted, RouterError> {
        let mut outcome = None;
        let routed = self.handle_with(request, env, |router, cost, memory_open| {
            let d = router.dispose_head(request, reading, policy, cost, memory_open);
            let detail = head_detail(reading, policy, &d);
            outcome = Some((d.verdict, d.disposal));
            (d.decision, Some(detail))
        })?;
        Ok(HeadRouted {
            routed,
            verdict: outcome.map(|o| o.0),
            disposal: outcome.map(|o| o.1),
        })
    }
}

fn head_detail(reading: Option<&HeadReading>, policy: &HeadPolicy, d: &HeadDecision) -> Value {
    let conf = |x: f32| Value::float(f64::from(x)).unwrap_or(Value::Null);
    let (class, confidence, error) = match reading.map(|r| &r.proposal) {
        Some(Ok(p)) => (Value::str(clip(&p.class)), conf(p.confidence), Value::Null),
        Some(Err(e)) => (Value::Null, Value::Null, Value::str(clip(e))),
        None => (Value::Null, Value::Null, Value::Null),
    };
    Value::map([
        ("class", class),
        ("confidence", confidence),
        ("error", error),
        (
            "head_hash",
            reading.map_or(Value::Null, |r| Value::str(clip(&r.head_hash))),
        ),
        ("threshold", conf(policy.threshold)),
        ("lexical_fallback", Value::Bool(policy.lexical_fallback)),
        (
            "none_vetoes_fallback",
            Value::Bool(policy.none_vetoes_fallback),
        ),
        (
            "proposed_route",
            d.proposed_route.clone().map_or(Value::Null, Value::str),
        ),
        ("verdict", Value::str(d.verdict.as_str())),
        ("disposal", Value::str(d.disposal.as_str())),
    ])
}
