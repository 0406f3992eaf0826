//! The router: which code answers a request — a proven primitive with zero model tokens, or
//! the model lane.
//!
//! Owns the ordered route registry ([`Router`]: built-in primitives, then learned ones, then
//! whatever is registered later — fact routes implement the same [`DeterministicRoute`] trait —
//! and, implicitly last, the model lane), the governed choice of candidates (lexical scores,
//! floor 0.55, score margin as the k policy's independent disagreement, budget charge: spec
//! §4.7 `governed_propose`), argument extraction that refuses rather than guesses, the memory
//! consultation that precedes every request, and the ledger entries of all three: one for the
//! consultation, one for the route decision (candidates, scores, k audit, every extraction or
//! refusal), one for a primitive's validated answer.
//!
//! What it may not touch: a model (the model lane is the caller's: generation through the
//! output gate, then the commit trap), and verdicts on answers, which come only from each
//! route's own validator (a built-in's independent oracle, a learned primitive's `<entry>_ok`).
//! A lexical score only ranks; it never answers.

pub mod extract;
pub mod governed;
pub mod head;
pub mod lexical;
pub mod routes;

use std::collections::BTreeMap;

use nmk_det::{ContentHash, ValidationLevel, Value, hash_value};

pub use extract::{ArgSpec, Cues};
pub use governed::{GAP_SIGNAL, GovernedAction};
pub use head::{
    HeadDecision, HeadDisposal, HeadPolicy, HeadProposal, HeadReading, HeadRouted, HeadVerdict,
};
pub use routes::{
    BuiltinRoute, DeterministicRoute, LearnedRoute, ProgramRunner, RouteAnswer, RouteKind,
    SandboxRunner,
};

use crate::k_policy::{Charge, CostSource, KDecision, KPolicy, KSignals, charge_budget, decide};
use crate::ledger::{Action, Head, Ledger, LedgerEntry, LedgerError, LedgerRecord};
use crate::memory::MemoryStore;
use crate::verification::Verification;

/// Opcode of a route decision's ledger entry.
pub const ROUTE_OPCODE: &str = "route";
/// Opcode of the memory consultation's ledger entry.
pub const CONSULT_OPCODE: &str = "memory.consult";
/// Version of the router's rules, bound in its entries.
pub const ROUTER_VERSION: &str = "1";
/// The lexical floor below which no primitive is tried (spec §4.7).
pub const ROUTE_FLOOR: f64 = 0.55;
/// How many recent memory entries a consultation reads.
pub const CONSULT_LIMIT: usize = 10;
/// The model lane's id in decisions and reports.
pub const MODEL_LANE: &str = "model_lane";

/// Errors of the router: only a ledger that cannot be written (then nothing is answered).
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    /// A decision could not be recorded.
    #[error("router could not write its ledger entry: {0}")]
    Ledger(#[from] LedgerError),
}

/// Settings of the governed choice.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RouterConfig {
    /// Lexical floor (default [`ROUTE_FLOOR`]).
    pub floor: f64,
    /// The k policy that turns the score margin into a number of candidates to try.
    pub policy: KPolicy,
    /// Importance of a request (default 0.5).
    pub importance: f64,
    /// Budget units for candidates (`None`: no budget).
    pub budget: Option<f64>,
    /// Most candidates scored into the decision (default 8).
    pub top_n: usize,
}

impl Default for RouterConfig {
    fn default() -> Self {
        RouterConfig {
            floor: ROUTE_FLOOR,
            policy: KPolicy::default(),
            importance: 0.5,
            budget: None,
            top_n: 8,
        }
    }
}

/// One scored route.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// Index in the registry.
    pub index: usize,
    /// Route id.
    pub route: String,
    /// Lexical score in [0, 1].
    pub score: f64,
}

/// The governed part of a decision (spec §4.7): how many candidates the policy lets the router
/// try, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Governed {
    /// Candidates with a positive score, best first (ties keep registry order), at most top_n.
    pub candidates: Vec<Candidate>,
    /// Extractions to try among the candidates at or above the floor (candidates without their
    /// cue words are skipped without counting). 0 when below the floor.
    pub k: usize,
    /// Best score (0 with no candidate).
    pub top_score: f64,
    /// Second-best score.
    pub runner_up: Option<f64>,
    /// `(s0 − s1)/s0`, 1 with a single candidate; `None` below the floor.
    pub margin: Option<f64>,
    /// The k decision (`None` below the floor).
    pub decision: Option<KDecision>,
    /// The budget charge (`None` below the floor).
    pub charge: Option<Charge>,
    /// Cost read, and why it is 1.0 when a probe failed.
    pub cost: (f64, Option<String>),
}

/// One candidate tried: its arguments, or why it refused.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    /// Route id.
    pub route: String,
    /// The extracted arguments, or the refusal's reason.
    pub outcome: Result<Vec<Value>, String>,
}

/// A route decision, before anything runs.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteDecision {
    /// The governed candidate choice.
    pub governed: Governed,
    /// Candidates tried, in order.
    pub attempts: Vec<Attempt>,
    /// The chosen route (registry index) and its arguments; `None`: the model lane.
    pub chosen: Option<(usize, Vec<Value>)>,
    /// Why (`routed`, `forced_model_lane`, `below_floor`, `no_extraction`, `request_too_long`).
    pub reason: String,
}

impl RouteDecision {
    /// The model lane, with no candidate considered, for `reason`.
    pub fn model_lane(reason: &str) -> RouteDecision {
        RouteDecision {
            governed: Governed {
                candidates: Vec::new(),
                k: 0,
                top_score: 0.0,
                runner_up: None,
                margin: None,
                decision: None,
                charge: None,
                cost: (0.0, None),
            },
            attempts: Vec::new(),
            chosen: None,
            reason: reason.into(),
        }
    }
}

/// What the memory consultation found.
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryCheck {
    /// Whether the store was open and consulted.
    pub consulted: bool,
    /// Why it was not.
    pub error: Option<String>,
    /// Hash of the governance object read.
    pub governance: Option<ContentHash>,
    /// Keys of the recent entries read, newest first.
    pub recent: Vec<String>,
    /// Live entries in the store.
    pub entries: u64,
    /// The consultation's ledger entry.
    pub entry: Head,
}

/// How the router reaches memory for one request.
#[derive(Debug)]
pub enum MemoryAccess<'a> {
    /// An open store.
    Open(&'a mut MemoryStore),
    /// The store could not be opened: why.
    Unavailable(String),
}

/// Everything one request's routing needs besides the router.
pub struct RouteEnv<'a> {
    /// The ledger every decision goes to.
    pub ledger: &'a Ledger,
    /// The memory store, consulted before routing.
    pub memory: MemoryAccess<'a>,
    /// Where cost comes from (failures read as cost 1.0).
    pub cost: CostSource<'a>,
    /// Skip the primitives: go straight to the model lane (recorded as such).
    pub force_model_lane: bool,
    /// Logical time of the first entry; later entries count up from it.
    pub logical_time: u64,
}

/// A primitive's committed answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Answered {
    /// Route id.
    pub route: String,
    /// Builtin or learned.
    pub kind: RouteKind,
    /// Entry name.
    pub entry: String,
    /// The arguments extracted.
    pub args: Vec<Value>,
    /// The answer.
    pub value: Value,
    /// The answer as text (a string as it is, anything else canonically encoded).
    pub text: String,
    /// Level certified by the route's validator.
    pub level: ValidationLevel,
    /// What that supports.
    pub verification: Verification,
    /// The answer's ledger entry.
    pub ledger_entry: LedgerEntry,
}

/// Where a request ended up.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// A primitive answered (zero model tokens).
    Answered(Box<Answered>),
    /// The model lane must answer.
    ModelLane {
        /// Why no primitive answered.
        reason: String,
    },
}

/// The result of [`Router::handle`].
#[derive(Debug, Clone, PartialEq)]
pub struct Routed {
    /// The memory consultation.
    pub memory: MemoryCheck,
    /// The decision.
    pub decision: RouteDecision,
    /// The decision's ledger entry.
    pub decision_entry: LedgerEntry,
    /// Answered or model lane.
    pub outcome: Outcome,
}

fn num(x: f64) -> Value {
    Value::float((x * 1e4).round() / 1e4).unwrap_or(Value::Null)
}

/// The text of an answer value.
pub fn answer_text(v: &Value) -> String {
    match v {
        Value::Str(s) => s.clone(),
        other => nmk_det::encode(other),
    }
}

/// The ordered route registry.
pub struct Router {
    routes: Vec<Box<dyn DeterministicRoute>>,
    config: RouterConfig,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("routes", &self.route_ids())
            .field("config", &self.config)
            .finish()
    }
}

impl Router {
    /// An empty registry (only the model lane).
    pub fn new(config: RouterConfig) -> Router {
        Router {
            routes: Vec::new(),
            config,
        }
    }

    /// A registry with every routable built-in.
    pub fn with_builtins(config: RouterConfig) -> Router {
        let mut r = Router::new(config);
        for b in BuiltinRoute::all() {
            r.register(Box::new(b));
        }
        r
    }

    /// Appends a route (later routes lose ties). A route whose id is already registered
    /// replaces it in place.
    pub fn register(&mut self, route: Box<dyn DeterministicRoute>) {
        let id = route.id();
        match self.routes.iter().position(|r| r.id() == id) {
            Some(i) => self.routes[i] = route,
            None => self.routes.push(route),
        }
    }

    /// Removes a route by id; returns whether one was removed.
    pub fn unregister(&mut self, id: &str) -> bool {
        let before = self.routes.len();
        self.routes.retain(|r| r.id() != id);
        self.routes.len() != before
    }

    /// The ids of the registered routes, in order (the model lane, always last, is implicit).
    pub fn route_ids(&self) -> Vec<String> {
        self.routes.iter().map(|r| r.id()).collect()
    }

    /// The settings.
    pub fn config(&self) -> &RouterConfig {
        &self.config
    }

    /// Hash of the registry in effect (rules version, floor, every route's id and code), bound
    /// as the contract of each route decision: the same request under another registry is a
    /// different decision.
    pub fn contract_hash(&self) -> ContentHash {
        hash_value(&Value::map([
            ("router", Value::str(ROUTER_VERSION)),
            ("floor", num(self.config.floor)),
            (
                "routes",
                Value::List(
                    self.routes
                        .iter()
                        .map(|r| {
                            Value::List(vec![
                                Value::str(r.id()),
                                Value::str(r.code_hash().to_hex()),
                            ])
                        })
                        .collect(),
                ),
            ),
        ]))
    }

    /// Lexical candidates of `request`, best first (ties in registry order), at most top_n.
    pub fn candidates(&self, request: &str) -> Vec<Candidate> {
        let q = lexical::tokens(request);
        let mut out: Vec<Candidate> = self
            .routes
            .iter()
            .enumerate()
            .map(|(index, r)| Candidate {
                index,
                route: r.id(),
                score: r
                    .names()
                    .iter()
                    .map(|n| lexical::score(&q, n))
                    .fold(0.0, f64::max),
            })
            .filter(|c| c.score > 0.0)
            .collect();
        out.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.index.cmp(&b.index)));
        out.truncate(self.config.top_n);
        out
    }

    /// The governed choice for `request` at the cost `cost` reads (spec §4.7).
    pub fn govern(&self, request: &str, cost: &CostSource<'_>) -> Governed {
        let candidates = self.candidates(request);
        let top_score = candidates.first().map_or(0.0, |c| c.score);
        let runner_up = candidates.get(1).map(|c| c.score);
        let cost = cost.read();
        if candidates.is_empty() || top_score < self.config.floor {
            return Governed {
                candidates,
                k: 0,
                top_score,
                runner_up,
                margin: None,
                decision: None,
                charge: None,
                cost,
            };
        }
        let margin = match runner_up {
            None => 1.0,
            Some(s1) => (top_score - s1) / top_score,
        };
        let signals = KSignals {
            disagreement: Some(1.0 - margin),
            cost: cost.0,
            importance: self.config.importance,
            ..KSignals::default()
        };
        let decision = decide(&self.config.policy, &signals);
        let charge = charge_budget(
            &decision,
            self.config.budget,
            self.config.policy.unit_cost(),
        );
        let above = candidates
            .iter()
            .filter(|c| c.score >= self.config.floor)
            .count();
        // At least one candidate is always tried: an extraction is cheap and is what guards
        // the answer, so the policy widens the search, it never forbids the best candidate.
        let k = (charge.admitted_k as usize).min(above).max(1);
        Governed {
            candidates,
            k,
            top_score,
            runner_up,
            margin: Some(margin),
            decision: Some(decision),
            charge: Some(charge),
            cost,
        }
    }

    /// Decides the route of `request` without running anything: governed candidates, then
    /// extraction in order until one succeeds. Routes needing memory refuse when `memory_open`
    /// is false.
    pub fn decide(&self, request: &str, cost: &CostSource<'_>, memory_open: bool) -> RouteDecision {
        if request.len() > lexical::MAX_REQUEST_BYTES {
            return RouteDecision {
                governed: Governed {
                    candidates: Vec::new(),
                    k: 0,
                    top_score: 0.0,
                    runner_up: None,
                    margin: None,
                    decision: None,
                    charge: None,
                    cost: cost.read(),
                },
                attempts: Vec::new(),
                chosen: None,
                reason: "request_too_long".into(),
            };
        }
        let governed = self.govern(request, cost);
        let mut attempts = Vec::new();
        let mut chosen = None;
        // k counts extractions. A candidate without its cue words is skipped for free (no
        // extraction is tried), so a lexical near-miss never uses up the policy's width.
        let mut tried = 0usize;
        for c in &governed.candidates {
            if tried >= governed.k || c.score < self.config.floor {
                break;
            }
            let Some(route) = self.routes.get(c.index) else {
                continue;
            };
            let outcome = if let Err(why) = route.owns(request) {
                Err(why)
            } else if route.needs_memory() && !memory_open {
                tried += 1;
                Err("memory unavailable: a memory-dependent route fails closed".to_owned())
            } else {
                tried += 1;
                route.extract(request)
            };
            let ok = outcome.as_ref().ok().cloned();
            attempts.push(Attempt {
                route: c.route.clone(),
                outcome,
            });
            if let Some(args) = ok {
                chosen = Some((c.index, args));
                break;
            }
        }
        let reason = if chosen.is_some() {
            "routed"
        } else if governed.k == 0 {
            "below_floor"
        } else {
            "no_extraction"
        };
        RouteDecision {
            governed,
            attempts,
            chosen,
            reason: reason.into(),
        }
    }

    /// Serves one request: consults memory (ledgered), decides the route (ledgered), and when
    /// a primitive was chosen, computes and validates its answer (ledgered: emit when the
    /// validator passes, reject otherwise, and then the model lane must answer).
    pub fn handle(&self, request: &str, env: RouteEnv<'_>) -> Result<Routed, RouterError> {
        self.handle_with(request, env, |router, cost, memory_open| {
            (router.decide(request, cost, memory_open), None)
        })
    }

    /// [`Router::handle`] with the decision made by `choose` (given the cost source and whether
    /// memory is open); `choose` may add a `head` part to the decision's ledger detail. Not
    /// called when the model lane is forced.
    pub(crate) fn handle_with(
        &self,
        request: &str,
        env: RouteEnv<'_>,
        choose: impl FnOnce(&Router, &CostSource<'_>, bool) -> (RouteDecision, Option<Value>),
    ) -> Result<Routed, RouterError> {
        let mut t = env.logical_time;
        let request_hash = hash_value(&Value::str(request));
        let memory = consult(env.ledger, env.memory, request_hash, t)?;
        t += 1;
        let mut extra = None;
        let decision = if env.force_model_lane {
            RouteDecision::model_lane("forced_model_lane")
        } else {
            let (decision, detail) = choose(self, &env.cost, memory.consulted);
            extra = detail;
            decision
        };
        let chosen_id = match &decision.chosen {
            Some((i, _)) => self
                .routes
                .get(*i)
                .map_or_else(|| MODEL_LANE.into(), |r| r.id()),
            None => MODEL_LANE.to_owned(),
        };
        let mut inputs = BTreeMap::new();
        inputs.insert("request".to_owned(), request_hash);
        inputs.insert("memory_consult".to_owned(), memory.entry.hash);
        let decision_entry = env.ledger.append(LedgerRecord {
            opcode: ROUTE_OPCODE.into(),
            op_version: ROUTER_VERSION.into(),
            inputs,
            result: hash_value(&Value::str(chosen_id.clone())),
            contract: self.contract_hash(),
            validator: None,
            level: ValidationLevel::None,
            verification: Verification::Judgment,
            // Pass: a deterministic route owns the request; bail: escalate to the model lane.
            action: if decision.chosen.is_some() {
                Action::Pass
            } else {
                Action::Bail
            },
            logical_time: t,
            model: None,
            detail: with_head(decision_detail(&decision, &chosen_id), extra),
        })?;
        t += 1;
        let Some((index, args)) = decision.chosen.clone() else {
            let reason = decision.reason.clone();
            return Ok(Routed {
                memory,
                decision,
                decision_entry,
                outcome: Outcome::ModelLane { reason },
            });
        };
        let Some(route) = self.routes.get(index) else {
            return Ok(Routed {
                memory,
                decision,
                decision_entry,
                outcome: Outcome::ModelLane {
                    reason: "route_vanished".into(),
                },
            });
        };
        let answer = route.answer(&args);
        let emitted = answer.valid && answer.value.is_ok();
        let (level, verification) = if emitted {
            (answer.level, Verification::for_pass(answer.level))
        } else {
            (ValidationLevel::None, Verification::Unverified)
        };
        let result = match (&answer.value, emitted) {
            (Ok(v), true) => hash_value(v),
            _ => hash_value(&Value::Null),
        };
        let args_value = Value::List(args.clone());
        let mut inputs = BTreeMap::new();
        inputs.insert("args".to_owned(), hash_value(&args_value));
        inputs.insert("request".to_owned(), request_hash);
        inputs.insert("route_decision".to_owned(), decision_entry.hash);
        let contract = hash_value(&Value::map([
            ("route", Value::str(route.id())),
            ("signature", Value::str(route.signature())),
            ("code", Value::str(route.code_hash().to_hex())),
        ]));
        let entry = env.ledger.append(LedgerRecord {
            opcode: route.entry().to_owned(),
            op_version: ROUTER_VERSION.into(),
            inputs,
            result,
            contract,
            validator: Some(answer.validator.clone()),
            level,
            verification,
            action: if emitted {
                Action::Emit
            } else {
                Action::Reject
            },
            logical_time: t,
            model: None,
            detail: Value::map([
                ("route", Value::str(route.id())),
                ("kind", Value::str(route.kind().as_str())),
                ("args", args_value),
                (
                    "answer",
                    match (&answer.value, emitted) {
                        (Ok(v), true) => v.clone(),
                        _ => Value::Null,
                    },
                ),
                ("reason", Value::str(answer.reason.clone())),
                ("tokens", Value::int(0)),
            ]),
        })?;
        let outcome = match answer.value {
            Ok(value) if emitted => Outcome::Answered(Box::new(Answered {
                route: route.id(),
                kind: route.kind(),
                entry: route.entry().to_owned(),
                args,
                text: answer_text(&value),
                value,
                level,
                verification,
                ledger_entry: entry,
            })),
            Ok(_) => Outcome::ModelLane {
                reason: format!("answer_rejected:{}:{}", route.id(), answer.reason),
            },
            Err(e) => Outcome::ModelLane {
                reason: format!("answer_failed:{}:{e}", route.id()),
            },
        };
        Ok(Routed {
            memory,
            decision,
            decision_entry,
            outcome,
        })
    }
}

/// The decision's detail with the entry-trap head's part added under `head`.
fn with_head(detail: Value, head: Option<Value>) -> Value {
    match (detail, head) {
        (Value::Map(mut m), Some(h)) => {
            m.insert("head".to_owned(), h);
            Value::Map(m)
        }
        (d, _) => d,
    }
}

fn decision_detail(d: &RouteDecision, chosen: &str) -> Value {
    let g = &d.governed;
    let candidates = Value::List(
        g.candidates
            .iter()
            .map(|c| {
                Value::map([
                    ("route", Value::str(c.route.clone())),
                    ("score", num(c.score)),
                ])
            })
            .collect(),
    );
    let attempts = Value::List(
        d.attempts
            .iter()
            .map(|a| match &a.outcome {
                Ok(args) => Value::map([
                    ("route", Value::str(a.route.clone())),
                    ("extracted", Value::List(args.clone())),
                ]),
                Err(why) => Value::map([
                    ("route", Value::str(a.route.clone())),
                    ("refused", Value::str(why.clone())),
                ]),
            })
            .collect(),
    );
    let opt = |x: Option<f64>| x.map_or(Value::Null, num);
    let audit = Value::map([
        ("top_score", num(g.top_score)),
        ("runner_up_score", opt(g.runner_up)),
        ("margin", opt(g.margin)),
        ("disagreement", opt(g.margin.map(|m| 1.0 - m))),
        (
            "decided_k",
            g.decision
                .map_or(Value::Null, |k| Value::int(u64::from(k.k))),
        ),
        (
            "explore_k",
            g.decision
                .map_or(Value::Null, |k| Value::int(u64::from(k.explore_k))),
        ),
        (
            "k_reason",
            g.decision
                .map_or(Value::Null, |k| Value::str(k.reason.as_str())),
        ),
        (
            "admitted_k",
            g.charge
                .map_or(Value::Null, |c| Value::int(u64::from(c.admitted_k))),
        ),
        (
            "budget_note",
            g.charge
                .map_or(Value::Null, |c| Value::str(c.note.as_str())),
        ),
        ("k", Value::int(g.k as u64)),
        ("cost", num(g.cost.0)),
        (
            "cost_note",
            g.cost.1.clone().map_or(Value::Null, Value::str),
        ),
    ]);
    Value::map([
        ("reason", Value::str(d.reason.clone())),
        ("chosen", Value::str(chosen)),
        ("candidates", candidates),
        ("attempts", attempts),
        ("governed", audit),
        ("floor", num(ROUTE_FLOOR)),
    ])
}

/// Consults memory before a request and ledgers what was read (or that nothing could be).
fn consult(
    ledger: &Ledger,
    memory: MemoryAccess<'_>,
    request: ContentHash,
    t: u64,
) -> Result<MemoryCheck, RouterError> {
    let read = match memory {
        MemoryAccess::Open(store) => store.consult(CONSULT_LIMIT).map_err(|e| e.to_string()),
        MemoryAccess::Unavailable(why) => Err(why),
    };
    let (check, detail, result) = match read {
        Ok(c) => {
            let governance = hash_value(&c.governance);
            let recent: Vec<String> = c.recent.iter().map(|r| r.key.clone()).collect();
            let detail = Value::map([
                ("consulted", Value::Bool(true)),
                ("governance", Value::str(governance.to_hex())),
                (
                    "recent",
                    Value::List(recent.iter().map(|k| Value::str(k.clone())).collect()),
                ),
                ("entries", Value::int(c.stats.entries)),
                ("total_bytes", Value::int(c.stats.total_bytes)),
            ]);
            let result = hash_value(&detail);
            (
                MemoryCheck {
                    consulted: true,
                    error: None,
                    governance: Some(governance),
                    recent,
                    entries: c.stats.entries,
                    entry: Head {
                        seq: 0,
                        hash: ContentHash::ZERO,
                    },
                },
                detail,
                result,
            )
        }
        Err(why) => {
            let detail = Value::map([
                ("consulted", Value::Bool(false)),
                ("error", Value::str(why.clone())),
            ]);
            (
                MemoryCheck {
                    consulted: false,
                    error: Some(why),
                    governance: None,
                    recent: Vec::new(),
                    entries: 0,
                    entry: Head {
                        seq: 0,
                        hash: ContentHash::ZERO,
                    },
                },
                detail,
                hash_value(&Value::Null),
            )
        }
    };
    let entry = ledger.append(LedgerRecord {
        opcode: CONSULT_OPCODE.into(),
        op_version: ROUTER_VERSION.into(),
        inputs: [("request".to_owned(), request)].into_iter().collect(),
        result,
        contract: hash_value(&Value::str("consult memory before each request")),
        validator: None,
        level: ValidationLevel::None,
        verification: Verification::Judgment,
        action: if check.consulted {
            Action::Pass
        } else {
            Action::Fail
        },
        logical_time: t,
        model: None,
        detail,
    })?;
    Ok(MemoryCheck {
        entry: entry.head(),
        ..check
    })
}
