//! Reading a governed choice as spec §4.7's `governed_propose` reports it, and the proof a
//! lexical candidate must give before it is trusted (`validate_proven`).
//!
//! Owns only views of [`Governed`] (its action, signal, uncertainty and the admitted
//! candidates) and [`Router::validate_proven`]. It changes no decision: the numbers come from
//! [`Router::govern`]. A lexical score ranks; only reproducing known cases shows that a
//! candidate computes what the request means (it rejects lexical false positives).

use nmk_det::Value;
use nmk_det::oracles::strict_equal;

use super::{Candidate, Governed, Router};

/// What a governed choice tells its caller to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GovernedAction {
    /// Try the admitted candidates (each still has to extract and be validated).
    Route,
    /// No candidate reaches the floor: a capability gap (the caller may self-extend, or
    /// answer on the model lane).
    Synthesize,
}

impl GovernedAction {
    /// `route` or `synthesize`.
    pub fn as_str(self) -> &'static str {
        match self {
            GovernedAction::Route => "route",
            GovernedAction::Synthesize => "synthesize",
        }
    }
}

/// The signal label of a gap.
pub const GAP_SIGNAL: &str = "gap_detect";

impl Governed {
    /// Route when a candidate reached the floor, else synthesize.
    pub fn action(&self) -> GovernedAction {
        if self.decision.is_some() && self.k > 0 {
            GovernedAction::Route
        } else {
            GovernedAction::Synthesize
        }
    }

    /// `gap_detect` for a gap, else the k decision's label (`thin_default`,
    /// `independent_disagreement`, `cost_braked`, …).
    pub fn used_signal(&self) -> &'static str {
        match (&self.decision, self.action()) {
            (Some(d), GovernedAction::Route) => d.reason.as_str(),
            _ => GAP_SIGNAL,
        }
    }

    /// The score uncertainty passed to the policy as disagreement: 1 − margin (`None` for a
    /// gap).
    pub fn uncertainty(&self) -> Option<f64> {
        self.margin.map(|m| 1.0 - m)
    }

    /// The candidates the policy admits, best first: the first `k`.
    pub fn admitted(&self) -> &[Candidate] {
        let k = self.k.min(self.candidates.len());
        self.candidates.get(..k).unwrap_or(&[])
    }
}

impl Router {
    /// Whether route `route_id` reproduces every case (arguments → expected value, compared
    /// type-strictly) with its own validator passing each answer. No cases, an unknown route,
    /// a refusal or one mismatch → false.
    pub fn validate_proven(&self, route_id: &str, cases: &[(Vec<Value>, Value)]) -> bool {
        let Some(route) = self.routes.iter().find(|r| r.id() == route_id) else {
            return false;
        };
        !cases.is_empty()
            && cases.iter().all(|(args, expected)| {
                let answer = route.answer(args);
                answer.valid && answer.value.is_ok_and(|v| strict_equal(&v, expected))
            })
    }
}
