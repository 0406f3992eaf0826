//! The commit gate per token: the decode loop's only way to emit a token.
//!
//! [`Session::generate_gated`](super::Session::generate_gated) selects a candidate, then hands
//! it to a [`TokenGate`] owned by the caller (the kernel, through the binary). The gate
//! accepts it (it is fed and emitted), asks for another candidate (the id is masked for this
//! position and selection runs again), or stops the generation. A stop token is a candidate
//! like any other, so a gate can refuse to let the output end before it is complete.
//!
//! The engine knows token ids only; gates that judge text (a JSON shape, a regular expression)
//! map ids to bytes with the tokenizer themselves. The engine never judges a token.

/// The gate's decision on one candidate token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenVerdict {
    /// Emit the candidate (feed it, or end the output if it is a stop token).
    Accept,
    /// Forbid the candidate at this position and select again.
    Resample,
    /// End the generation now; the candidate is not emitted.
    Stop,
}

/// A judge of each candidate token, called by the decode loop before anything is emitted.
pub trait TokenGate {
    /// Whether [`TokenGate::mask`] may edit logits; a gate that never masks returns false, and
    /// the decode loop then does not copy them. Default: true.
    fn masks(&self) -> bool {
        true
    }

    /// Edits the logits of `position` before selection (e.g. sets forbidden ids to −∞). The
    /// default leaves them alone.
    fn mask(&mut self, position: u64, logits: &mut [f32]) {
        let _ = (position, logits);
    }

    /// Judges `candidate`, the token selected for `position`; `is_stop` tells whether it is one
    /// of the generation's stop tokens. Returning [`TokenVerdict::Accept`] commits it: a gate
    /// that tracks the output updates its state here.
    fn judge(&mut self, position: u64, candidate: u32, is_stop: bool) -> TokenVerdict;
}

/// A gate that accepts every candidate: generation through it is plain generation.
#[derive(Debug, Clone, Copy, Default)]
pub struct AcceptAll;

impl TokenGate for AcceptAll {
    fn masks(&self) -> bool {
        false
    }

    fn judge(&mut self, _position: u64, _candidate: u32, _is_stop: bool) -> TokenVerdict {
        TokenVerdict::Accept
    }
}

/// Counts of a gated generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GateCounts {
    /// Candidates accepted (stop token included when accepted).
    pub accepted: usize,
    /// Candidates sent back for another selection.
    pub resampled: usize,
}

/// How many candidates one position may have refused before the gate is deemed to refuse the
/// position altogether (the generation then ends with
/// [`StopReason::GateExhausted`](super::StopReason::GateExhausted)).
pub const DEFAULT_MAX_RESAMPLES: usize = 64;
