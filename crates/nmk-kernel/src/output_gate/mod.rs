//! The output gate: the kernel's judge of every candidate token a model proposes, before it is
//! emitted (the commit gate per token).
//!
//! The decode loop (in the neural plane, wired by the binary) hands each selected candidate to
//! [`OutputGate::judge`] with its bytes; the gate answers accept, resample (the id is masked at
//! this position and selection runs again) or stop. What it checks:
//!
//! - a forbidden set of token ids (also offered to the decode loop as a logit mask, so the
//!   forbidden ids never even become candidates);
//! - incremental shape checks ([`IncrementalCheck`]) over the output so far: a JSON shape
//!   ([`JsonShape`]) and a regular expression ([`RegexShape`]); a candidate that makes the
//!   output impossible to complete is refused (or, when the output is already complete, ends
//!   it), and the end of the output (a stop token) is refused until every check is complete;
//! - a hard byte cap on the output (stop).
//!
//! What it may not do: pass judgement on the finished answer. That remains the commit trap's
//! (with the gate's counts recorded in the ledger entry); the gate only keeps the stream inside
//! the shapes it was given. It depends on nothing of the neural plane: ids and bytes only.

mod json_shape;
mod regex_shape;

use std::collections::{BTreeMap, BTreeSet};

pub use json_shape::{JsonShape, MAX_DEPTH as MAX_JSON_DEPTH};
pub use regex_shape::{MAX_DFA_BYTES, RegexShape, RegexShapeError};

/// Where an output prefix stands with respect to a shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckState {
    /// Some continuation completes the shape.
    Viable,
    /// The output is a complete instance of the shape now (it may still continue).
    Complete,
    /// No continuation can complete the shape.
    Dead,
}

/// A check that follows the output byte by byte.
pub trait IncrementalCheck: Send + std::fmt::Debug {
    /// A short name, for counts and reports.
    fn name(&self) -> &'static str;
    /// Where the output would stand with `piece` appended (nothing is committed).
    fn try_piece(&self, piece: &[u8]) -> CheckState;
    /// Commits `piece` (called only after `try_piece` did not answer `Dead`).
    fn accept(&mut self, piece: &[u8]);
    /// Whether the output may end here.
    fn may_end(&self) -> bool;
}

/// The gate's decision on one candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateDecision {
    /// Emit it.
    Accept,
    /// Refuse it; select another candidate for this position.
    Resample,
    /// End the output now.
    Stop,
}

/// Default cap on the bytes of one output.
pub const DEFAULT_MAX_OUTPUT_BYTES: usize = 1 << 20;

/// What the gate decided over one output.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GateStats {
    /// Candidates accepted (an accepted end included).
    pub accepted: usize,
    /// Candidates refused because their id is forbidden.
    pub forbidden: usize,
    /// Candidates refused per check (an end refused while incomplete counts for the check).
    pub refused_by: BTreeMap<&'static str, usize>,
    /// Whether the gate stopped the output at the byte cap.
    pub hit_byte_cap: bool,
    /// Whether the gate ended a complete output that the next candidate would have broken.
    pub ended_complete: bool,
}

/// The kernel's per-token gate for one output (see the module documentation).
#[derive(Debug)]
pub struct OutputGate {
    forbidden: BTreeSet<u32>,
    checks: Vec<Box<dyn IncrementalCheck>>,
    max_bytes: usize,
    output: Vec<u8>,
    stats: GateStats,
}

impl Default for OutputGate {
    fn default() -> OutputGate {
        OutputGate::new()
    }
}

impl OutputGate {
    /// A gate with no forbidden ids and no checks: it accepts every candidate up to the default
    /// byte cap, and counts them.
    pub fn new() -> OutputGate {
        OutputGate {
            forbidden: BTreeSet::new(),
            checks: Vec::new(),
            max_bytes: DEFAULT_MAX_OUTPUT_BYTES,
            output: Vec::new(),
            stats: GateStats::default(),
        }
    }

    /// Forbids token ids.
    pub fn forbid(mut self, ids: impl IntoIterator<Item = u32>) -> OutputGate {
        self.forbidden.extend(ids);
        self
    }

    /// Adds a shape check (every check must hold).
    pub fn with_check(mut self, check: Box<dyn IncrementalCheck>) -> OutputGate {
        self.checks.push(check);
        self
    }

    /// Sets the byte cap of the output.
    pub fn with_max_bytes(mut self, max_bytes: usize) -> OutputGate {
        self.max_bytes = max_bytes;
        self
    }

    /// The forbidden ids (for a logit mask before selection).
    pub fn forbidden_ids(&self) -> &BTreeSet<u32> {
        &self.forbidden
    }

    /// The names of the installed checks.
    pub fn check_names(&self) -> Vec<&'static str> {
        self.checks.iter().map(|c| c.name()).collect()
    }

    /// Judges candidate `token` whose text is `piece`; `is_end` when it would end the output.
    /// An accepted piece is appended to the output and committed to every check.
    pub fn judge(&mut self, token: u32, piece: &[u8], is_end: bool) -> GateDecision {
        if self.forbidden.contains(&token) {
            self.stats.forbidden += 1;
            return GateDecision::Resample;
        }
        if is_end {
            if let Some(c) = self.checks.iter().find(|c| !c.may_end()) {
                *self.stats.refused_by.entry(c.name()).or_default() += 1;
                return GateDecision::Resample;
            }
            self.stats.accepted += 1;
            return GateDecision::Accept;
        }
        if self.output.len().saturating_add(piece.len()) > self.max_bytes {
            self.stats.hit_byte_cap = true;
            return GateDecision::Stop;
        }
        if let Some(c) = self
            .checks
            .iter()
            .find(|c| c.try_piece(piece) == CheckState::Dead)
        {
            *self.stats.refused_by.entry(c.name()).or_default() += 1;
            // A complete output that a candidate would break ends there, cleanly, instead of
            // searching the vocabulary for the one continuation the shape still allows.
            if self.complete() {
                self.stats.ended_complete = true;
                return GateDecision::Stop;
            }
            return GateDecision::Resample;
        }
        for c in &mut self.checks {
            c.accept(piece);
        }
        self.output.extend_from_slice(piece);
        self.stats.accepted += 1;
        GateDecision::Accept
    }

    /// The bytes accepted so far.
    pub fn output(&self) -> &[u8] {
        &self.output
    }

    /// Whether every check is complete on the output so far (true with no checks).
    pub fn complete(&self) -> bool {
        self.checks.iter().all(|c| c.may_end())
    }

    /// The counts so far.
    pub fn stats(&self) -> &GateStats {
        &self.stats
    }

    /// A JSON summary for a ledger entry's detail: checks, forbidden-set size, counts,
    /// completeness.
    pub fn summary(&self) -> serde_json::Value {
        serde_json::json!({
            "checks": self.check_names(),
            "forbidden_ids": self.forbidden.len(),
            "accepted": self.stats.accepted,
            "refused_forbidden": self.stats.forbidden,
            "refused_by": self.stats.refused_by,
            "hit_byte_cap": self.stats.hit_byte_cap,
            "ended_complete": self.stats.ended_complete,
            "complete": self.complete(),
            "output_bytes": self.output.len(),
        })
    }
}
