//! The proof report: one [`BatteryReport`] per mechanism battery, plus what identifies the run
//! (model hash, nmk version, elapsed time). Serialised with serde for `nmk prove --report`.

use serde::{Serialize, Serializer};

/// The outcome of one battery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Every identity comparison was bit-exact and the liveness contrast changed the logits.
    Pass,
    /// An identity comparison differed, a liveness contrast was dead, or the mechanism errored.
    Fail,
    /// The engine cannot exercise this mechanism yet (the reason says why).
    NotAvailable,
    /// The mechanism does not exist for this model (e.g. expert masks on a dense model).
    NotApplicable,
}

impl Status {
    /// Short lower-case name, as serialised.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Fail => "fail",
            Status::NotAvailable => "not_available",
            Status::NotApplicable => "not_applicable",
        }
    }
}

/// A non-finite difference (a −∞ masked logit against a finite one, a NaN, mismatched shapes)
/// has no JSON number; it is written as `f64::MAX` so the field stays a number that compares
/// as "very different".
fn finite_or_max<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(if v.is_finite() { *v } else { f64::MAX })
}

/// The result of one battery.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BatteryReport {
    /// Battery name (stable identifier, e.g. `park_resume`).
    pub name: String,
    /// Outcome.
    pub status: Status,
    /// What the mechanism's output was compared against.
    pub baseline: String,
    /// The mechanism exercised (the identity variants).
    pub mechanism: String,
    /// The prompts used, as token ids.
    pub prompts: Vec<Vec<u32>>,
    /// Sequence positions at which the mechanism acted (snapshot, trim, chunk or mask points).
    pub positions: Vec<u64>,
    /// Greedy decode steps per run.
    pub steps: usize,
    /// Logit rows (full vocabulary each) compared bit for bit.
    pub rows_compared: usize,
    /// Largest |Δ| over every compared logit of every row: exactly 0 for a pass.
    #[serde(serialize_with = "finite_or_max")]
    pub max_abs_delta: f64,
    /// The deliberately non-identity variant.
    pub liveness: String,
    /// Largest |Δ| the liveness contrast produced: must be above 0 for a pass.
    #[serde(serialize_with = "finite_or_max")]
    pub liveness_delta: f64,
    /// SHA-256 (hex) of the token streams produced (little-endian `u32` ids), one per run kind.
    pub token_hashes: Vec<String>,
    /// Why the battery failed, or is not available / applicable.
    pub reason: Option<String>,
    /// Further observations (refusals seen, speculation statistics, route counts).
    pub notes: Vec<String>,
    /// Wall time of the battery in seconds.
    pub elapsed_s: f64,
}

impl BatteryReport {
    /// A battery that did not run, with its status and reason.
    pub fn skipped(name: &str, status: Status, reason: impl Into<String>) -> BatteryReport {
        BatteryReport {
            name: name.to_owned(),
            status,
            baseline: String::new(),
            mechanism: String::new(),
            prompts: Vec::new(),
            positions: Vec::new(),
            steps: 0,
            rows_compared: 0,
            max_abs_delta: 0.0,
            liveness: String::new(),
            liveness_delta: 0.0,
            token_hashes: Vec::new(),
            reason: Some(reason.into()),
            notes: Vec::new(),
            elapsed_s: 0.0,
        }
    }
}

/// Facts about the model proved on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModelFacts {
    /// Architecture as the engine names it.
    pub arch: String,
    /// Transformer blocks.
    pub n_layer: usize,
    /// Vocabulary size (logits per row).
    pub n_vocab: usize,
    /// Experts per MoE layer, or `None` for a dense model.
    pub n_expert: Option<usize>,
}

/// The whole proof report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProofReport {
    /// Version of nmk that ran the batteries.
    pub nmk_version: String,
    /// SHA-256 (hex) of the model's GGUF bytes: also the id parked snapshots are bound to.
    pub model_sha256: String,
    /// Facts about the model.
    pub model: ModelFacts,
    /// Greedy decode steps per run.
    pub steps: usize,
    /// One entry per battery, in a fixed order.
    pub batteries: Vec<BatteryReport>,
    /// True when no battery failed (not-available and not-applicable ones do not count).
    pub all_passed: bool,
    /// Wall time of the whole run in seconds.
    pub elapsed_s: f64,
}

impl ProofReport {
    /// The batteries that failed.
    pub fn failures(&self) -> impl Iterator<Item = &BatteryReport> {
        self.batteries.iter().filter(|b| b.status == Status::Fail)
    }
}
