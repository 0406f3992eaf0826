//! The kernel's account of one answer — the route that produced it, its verification, its
//! ledger entry, whether it was released — in the one shape every front end reports it in
//! (`nmk run`, `nmk chat`, `nmk serve`'s `nmk` object, the demo). Built from the kernel's own
//! decision; it decides nothing.

use nmk_det::ValidationLevel;
use nmk_kernel::ledger::Action;
use nmk_kernel::router::{Answered, MODEL_LANE, Routed};
use nmk_kernel::verification::Verification;
use serde_json::{Value as Json, json};

use crate::model_lane::LaneAnswer;

/// The `action` of an answer cut before the commit trap judged it (not a ledger action: no
/// commit entry is written for it).
pub const CANCELLED: &str = "cancelled";

/// What the kernel did with one request.
#[derive(Debug, Clone)]
pub struct Account {
    /// Route id (`builtin:gcd`, `learned:count_vowels`, `model_lane`).
    pub route: String,
    /// `builtin`, `learned` or `model_lane`.
    pub route_kind: String,
    /// Why the router chose it.
    pub route_reason: String,
    /// What the verdict supports.
    pub verification: &'static str,
    /// The validation level reached.
    pub level: &'static str,
    /// Model tokens generated (`None`: cut before the answer was whole).
    pub tokens: Option<usize>,
    /// The answer's ledger entry: sequence number and hash (hex).
    pub ledger: Option<(u64, String)>,
    /// Whether a primitive answered.
    pub primitive: bool,
    /// Whether the answer was released.
    pub committed: bool,
    /// The commit trap's action (`commit` for a primitive, [`CANCELLED`] for a cut answer).
    pub action: &'static str,
    /// Why.
    pub reason: String,
    /// The released text (`None` when withheld or cut).
    pub released: Option<String>,
}

impl Account {
    /// A primitive's answer (zero model tokens, checked by its oracle or validator).
    pub fn primitive(routed: &Routed, a: &Answered) -> Account {
        Account {
            route: a.route.clone(),
            route_kind: a.kind.as_str().to_owned(),
            route_reason: routed.decision.reason.clone(),
            verification: a.verification.as_str(),
            level: a.level.as_str(),
            tokens: Some(0),
            ledger: Some((a.ledger_entry.seq, a.ledger_entry.hash.to_hex())),
            primitive: true,
            committed: true,
            action: Action::Commit.as_str(),
            reason: "answered by a verified primitive".into(),
            released: Some(a.text.clone()),
        }
    }

    /// The model lane's answer as the commit trap judged it.
    pub fn model_lane(route_reason: &str, lane: &LaneAnswer) -> Account {
        let d = &lane.decision;
        Account {
            route: MODEL_LANE.to_owned(),
            route_kind: MODEL_LANE.to_owned(),
            route_reason: route_reason.to_owned(),
            verification: d.verification.as_str(),
            level: d.level.as_str(),
            tokens: Some(lane.completion.ids.len()),
            ledger: d.ledger_entry.as_ref().map(|e| (e.seq, e.hash.to_hex())),
            primitive: false,
            committed: d.committed(),
            action: d.action.as_str(),
            reason: d.reason.clone(),
            released: if d.committed() {
                d.output.clone()
            } else {
                None
            },
        }
    }

    /// A model-lane answer cut before the commit trap judged it (nothing released, no commit
    /// entry).
    pub fn cut(route_reason: &str, why: String) -> Account {
        Account {
            route: MODEL_LANE.to_owned(),
            route_kind: MODEL_LANE.to_owned(),
            route_reason: route_reason.to_owned(),
            verification: Verification::Unverified.as_str(),
            level: ValidationLevel::None.as_str(),
            tokens: None,
            ledger: None,
            primitive: false,
            committed: false,
            action: CANCELLED,
            reason: why,
            released: None,
        }
    }

    /// The account as JSON, with `extra`'s fields (an object) added.
    pub fn json_with(&self, extra: Json) -> Json {
        let mut v = json!({
            "route": self.route,
            "route_kind": self.route_kind,
            "route_reason": self.route_reason,
            "verification": self.verification,
            "level": self.level,
            "tokens": self.tokens,
            "ledger_entry": self.ledger.as_ref().map(|l| &l.1),
            "ledger_seq": self.ledger.as_ref().map(|l| l.0),
            "primitive": self.primitive,
            "committed": self.committed,
            "action": self.action,
            "reason": self.reason,
        });
        if let (Some(obj), Json::Object(more)) = (v.as_object_mut(), extra) {
            obj.extend(more);
        }
        v
    }
}
