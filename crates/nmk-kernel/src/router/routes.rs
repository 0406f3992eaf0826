//! The routes a request can take besides the model lane: built-in primitives (trusted Rust,
//! each with an independent oracle) and learned primitives (hold-out-gated programs, re-checked
//! at load, run in the sandbox). Fact routes (issue 6 item 3) will implement the same
//! [`DeterministicRoute`] trait with [`RouteKind::Fact`]; the router needs no change for them.
//!
//! Owns, per route: its names (what the lexical scorer sees), its cues and extraction spec,
//! and how its answer is validated before commit. It may not write the ledger (the router
//! does) nor reach a model.

use std::sync::Arc;

use nmk_det::oracles::strict_equal;
use nmk_det::primitives::{self, Kind, Primitive};
use nmk_det::sandbox::{CallLimits, CallResult, Sandbox};
use nmk_det::{ContentHash, ValidationLevel, Value, hash_bytes};

use super::extract::{ArgSpec, Cues, extract, spec_for_signature};
use super::lexical::tokens;
use crate::learn::VerifiedPrimitive;
use crate::learn::registry::validator_name;
use crate::ledger::ValidatorId;

/// What kind of code answers on a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RouteKind {
    /// A built-in primitive of `nmk_det::primitives`.
    Builtin,
    /// A learned primitive from the registry.
    Learned,
    /// A verified-fact route (reserved: the governed fact loop registers these later).
    Fact,
}

impl RouteKind {
    /// The lower-case label used in ledgers and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            RouteKind::Builtin => "builtin",
            RouteKind::Learned => "learned",
            RouteKind::Fact => "fact",
        }
    }
}

/// A route's answer and what its validator made of it.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteAnswer {
    /// The value computed, or why there is none (a domain error, a failed call).
    pub value: Result<Value, String>,
    /// Whether the validator passed it.
    pub valid: bool,
    /// The level the validator certifies when it passes.
    pub level: ValidationLevel,
    /// The validator that judged.
    pub validator: ValidatorId,
    /// Why (`oracle_agrees`, `oracle_disagrees:…`, `call_ok`, …).
    pub reason: String,
}

/// A route answered by deterministic code, with zero model tokens.
pub trait DeterministicRoute: Send + Sync {
    /// Unique id in the registry (`builtin:gcd`, `learned:reverse_words`).
    fn id(&self) -> String;
    /// The entry name.
    fn entry(&self) -> &str;
    /// Builtin, learned or fact.
    fn kind(&self) -> RouteKind;
    /// Python-style signature.
    fn signature(&self) -> &str;
    /// Token lists the lexical scorer matches the request against (the entry name first, then
    /// aliases); the route's score is the best of them.
    fn names(&self) -> Vec<Vec<String>>;
    /// Whether the request carries this route's cue words (the shape it owns), or why not.
    /// Cheap: a route that does not own the request costs the governed search nothing.
    fn owns(&self, request: &str) -> Result<(), String>;
    /// The arguments read from the request without guessing, or the refusal's reason.
    fn extract(&self, request: &str) -> Result<Vec<Value>, String>;
    /// Computes and validates the answer for `args`.
    fn answer(&self, args: &[Value]) -> RouteAnswer;
    /// Whether answering needs the memory store (such routes fail closed when it is not open).
    fn needs_memory(&self) -> bool {
        false
    }
    /// Hash binding the route's code and rules (recorded in the router's contract hash).
    fn code_hash(&self) -> ContentHash;
}

/// A built-in primitive, its aliases, cues and extraction spec.
#[derive(Debug, Clone)]
pub struct BuiltinRoute {
    primitive: &'static Primitive,
    aliases: Vec<&'static str>,
    cues: Cues,
    spec: ArgSpec,
}

/// The routing rules of the built-ins that can be read from free text. Built-ins absent here
/// (`count_byte`, `shortest_path`, `sort_unique`, `parse_date`, `json_shape_ok`,
/// `regex_match`, the lane validators) take arguments no honest text extraction reads
/// (bytes, graphs, lists, an ordered pattern/text pair) and are not routed.
fn builtin_rules(name: &str) -> Option<(Vec<&'static str>, Cues, ArgSpec)> {
    Some(match name {
        "count_letter" => (
            vec!["count letters", "letter count", "how many letters"],
            Cues::new(
                &[&["count", "how many", "number of", "occurrences", "times"]],
                &[],
            ),
            ArgSpec::LetterInText,
        ),
        "gcd" => (
            vec![
                "greatest common divisor",
                "highest common factor",
                "greatest common factor",
            ],
            Cues::new(
                &[&[
                    "gcd",
                    "greatest common divisor",
                    "highest common factor",
                    "greatest common factor",
                    "hcf",
                ]],
                &[],
            ),
            ArgSpec::Ints(2),
        ),
        "is_prime" => (
            vec!["prime number", "is it prime"],
            Cues::new(
                &[&["prime"]],
                &[
                    "primes",
                    "up to",
                    "below",
                    "under",
                    "less than",
                    "list",
                    "all",
                ],
            ),
            ArgSpec::Ints(1),
        ),
        "primes_up_to" => (
            vec!["primes up to", "prime numbers up to", "list primes"],
            Cues::new(
                &[&["primes", "prime numbers"], &["up to", "upto", "at most"]],
                &[],
            ),
            ArgSpec::Ints(1),
        ),
        "grapheme_count" => (
            vec!["count characters", "how many characters", "grapheme count"],
            Cues::new(
                &[
                    &["characters", "graphemes", "grapheme"],
                    &["count", "how many", "number of"],
                ],
                &["letter", "bytes"],
            ),
            ArgSpec::Quoted(1),
        ),
        "days_between" => (
            vec!["days between", "how many days between"],
            Cues::new(&[&["days"], &["between", "from"]], &[]),
            ArgSpec::Dates(2),
        ),
        "add_days" => (
            vec!["add days", "days after", "days before"],
            Cues::new(&[&["days"]], &["between"]),
            ArgSpec::DateAndDays,
        ),
        _ => return None,
    })
}

impl BuiltinRoute {
    /// The route of built-in `name`, if it is routable from free text.
    pub fn new(name: &str) -> Option<BuiltinRoute> {
        let primitive = primitives::find(name)?;
        if primitive.kind() != Kind::Computation {
            return None;
        }
        let (aliases, cues, spec) = builtin_rules(name)?;
        Some(BuiltinRoute {
            primitive,
            aliases,
            cues,
            spec,
        })
    }

    /// Every routable built-in, in catalogue order.
    pub fn all() -> Vec<BuiltinRoute> {
        primitives::catalog()
            .iter()
            .filter_map(|p| BuiltinRoute::new(p.name))
            .collect()
    }
}

impl DeterministicRoute for BuiltinRoute {
    fn id(&self) -> String {
        format!("builtin:{}", self.primitive.name)
    }
    fn entry(&self) -> &str {
        self.primitive.name
    }
    fn kind(&self) -> RouteKind {
        RouteKind::Builtin
    }
    fn signature(&self) -> &str {
        self.primitive.signature
    }
    fn names(&self) -> Vec<Vec<String>> {
        std::iter::once(self.primitive.name)
            .chain(self.aliases.iter().copied())
            .map(tokens)
            .collect()
    }
    fn owns(&self, request: &str) -> Result<(), String> {
        self.cues.check(request)
    }
    fn extract(&self, request: &str) -> Result<Vec<Value>, String> {
        extract(self.spec, request)
    }
    /// The primitive's answer is validated by its independent oracle on the same arguments:
    /// two algorithms must agree, type-strictly (ORACLE). A domain error of the primitive is
    /// no answer.
    fn answer(&self, args: &[Value]) -> RouteAnswer {
        let validator = ValidatorId::new(format!("{}.oracle", self.primitive.name), "1");
        let value = self.primitive.call(args).map_err(|e| e.to_string());
        let (valid, reason) = match (&value, self.primitive.oracle(args)) {
            (Err(e), _) => (false, format!("primitive_refused:{e}")),
            (Ok(_), None) => (false, "no_oracle".to_owned()),
            (Ok(_), Some(Err(e))) => (false, format!("oracle_refused:{e}")),
            (Ok(v), Some(Ok(o))) if strict_equal(v, &o) => (true, "oracle_agrees".to_owned()),
            (Ok(_), Some(Ok(o))) => (false, format!("oracle_disagrees:{}", nmk_det::encode(&o))),
        };
        RouteAnswer {
            value,
            valid,
            level: ValidationLevel::Oracle,
            validator,
            reason,
        }
    }
    fn code_hash(&self) -> ContentHash {
        hash_bytes(
            format!(
                "builtin:{}:{}:{:?}:{:?}:{:?}",
                self.primitive.name, self.primitive.signature, self.aliases, self.cues, self.spec
            )
            .as_bytes(),
        )
    }
}

/// Runs a learned program on arguments: the sandbox in production.
pub trait ProgramRunner: Send + Sync {
    /// Runs `entry` of `code` on `args`; the value returned, or why there is none.
    fn run(&self, code: &str, entry: &str, args: &[Value]) -> Result<Value, String>;
}

/// The confined sandbox pool as a [`ProgramRunner`].
pub struct SandboxRunner {
    sandbox: Arc<Sandbox>,
    limits: CallLimits,
}

impl std::fmt::Debug for SandboxRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SandboxRunner")
    }
}

impl SandboxRunner {
    /// A runner over `sandbox` with per-call `limits`.
    pub fn new(sandbox: Arc<Sandbox>, limits: CallLimits) -> SandboxRunner {
        SandboxRunner { sandbox, limits }
    }
}

impl ProgramRunner for SandboxRunner {
    fn run(&self, code: &str, entry: &str, args: &[Value]) -> Result<Value, String> {
        match self.sandbox.call(code, entry, args, &self.limits) {
            Ok(CallResult::Ok(v)) => Ok(v),
            Ok(other) => Err(other.describe()),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// A learned primitive that passed its re-check in this process.
pub struct LearnedRoute {
    entry: String,
    signature: String,
    code: String,
    code_hash: ContentHash,
    spec: ArgSpec,
    cues: Vec<String>,
    runner: Arc<dyn ProgramRunner>,
}

impl std::fmt::Debug for LearnedRoute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LearnedRoute")
            .field("entry", &self.entry)
            .field("spec", &self.spec)
            .finish_non_exhaustive()
    }
}

impl LearnedRoute {
    /// The route of a verified primitive, or why its signature is not routable. Its cues are
    /// the words of its entry name (three letters or more), each of which must appear in the
    /// request (a word matching by prefix, so `word` and `words` agree).
    pub fn new(
        primitive: &VerifiedPrimitive,
        runner: Arc<dyn ProgramRunner>,
    ) -> Result<LearnedRoute, String> {
        let rec = primitive.record();
        let spec = spec_for_signature(&rec.signature)?;
        Ok(LearnedRoute {
            entry: rec.entry.clone(),
            signature: rec.signature.clone(),
            code: rec.code.clone(),
            code_hash: rec.code_hash,
            spec,
            cues: tokens(&rec.entry)
                .into_iter()
                .filter(|t| t.len() >= 3)
                .collect(),
            runner,
        })
    }
}

impl DeterministicRoute for LearnedRoute {
    fn id(&self) -> String {
        format!("learned:{}", self.entry)
    }
    fn entry(&self) -> &str {
        &self.entry
    }
    fn kind(&self) -> RouteKind {
        RouteKind::Learned
    }
    fn signature(&self) -> &str {
        &self.signature
    }
    fn names(&self) -> Vec<Vec<String>> {
        vec![tokens(&self.entry)]
    }
    fn owns(&self, request: &str) -> Result<(), String> {
        let req = super::extract::words(request);
        for cue in &self.cues {
            let hit = req.iter().any(|w| {
                let (short, long) = if w.len() <= cue.len() {
                    (w, cue)
                } else {
                    (cue, w)
                };
                short.len() >= 3 && long.starts_with(short.as_str())
            });
            if !hit {
                return Err(format!("cue absent: {cue:?}"));
            }
        }
        Ok(())
    }
    fn extract(&self, request: &str) -> Result<Vec<Value>, String> {
        extract(self.spec, request)
    }
    /// The learned program's validator (`<entry>_ok`): the call succeeded and the code run is
    /// the code verified at load. That certifies SCHEMA, never PROVEN: the gate's proof is of
    /// the program on held-out instances, not of this call (spec §9 D11).
    fn answer(&self, args: &[Value]) -> RouteAnswer {
        let value = self.runner.run(&self.code, &self.entry, args);
        let ran = hash_bytes(self.code.as_bytes());
        let (valid, reason) = match &value {
            Err(e) => (false, format!("call_failed:{e}")),
            Ok(_) if ran != self.code_hash => (false, "code_hash_mismatch".to_owned()),
            Ok(_) => (true, "call_ok".to_owned()),
        };
        RouteAnswer {
            value,
            valid,
            level: ValidationLevel::Schema,
            validator: ValidatorId::new(validator_name(&self.entry), "1"),
            reason,
        }
    }
    fn code_hash(&self) -> ContentHash {
        self.code_hash
    }
}
