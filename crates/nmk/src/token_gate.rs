//! The bridge from the kernel's output gate (`nmk_kernel::output_gate`) to the engine's decode
//! loop (`nmk_neural::engine::TokenGate`): every token any command generates is judged here
//! before it is emitted. The kernel sees ids and bytes; the tokenizer turns one into the other.

use nmk_kernel::output_gate::{GateDecision, JsonShape, OutputGate, RegexShape};
use nmk_neural::engine::{TokenGate, TokenVerdict};
use nmk_neural::tokenizer::Tokenizer;

/// The kernel's gate, seen by the decode loop.
#[derive(Debug)]
pub struct KernelTokenGate<'a> {
    gate: OutputGate,
    tokenizer: &'a Tokenizer,
}

impl<'a> KernelTokenGate<'a> {
    /// Wraps `gate` for a model whose tokenizer is `tokenizer`.
    pub fn new(gate: OutputGate, tokenizer: &'a Tokenizer) -> KernelTokenGate<'a> {
        KernelTokenGate { gate, tokenizer }
    }

    /// The kernel's gate (its counts and output).
    pub fn gate(&self) -> &OutputGate {
        &self.gate
    }
}

impl TokenGate for KernelTokenGate<'_> {
    fn masks(&self) -> bool {
        !self.gate.forbidden_ids().is_empty()
    }

    fn mask(&mut self, _position: u64, logits: &mut [f32]) {
        for &id in self.gate.forbidden_ids() {
            if let Some(l) = logits.get_mut(id as usize) {
                *l = f32::NEG_INFINITY;
            }
        }
    }

    fn judge(&mut self, _position: u64, candidate: u32, is_stop: bool) -> TokenVerdict {
        let piece = if is_stop {
            Vec::new()
        } else {
            self.tokenizer.token_to_piece(candidate)
        };
        match self.gate.judge(candidate, &piece, is_stop) {
            GateDecision::Accept => TokenVerdict::Accept,
            GateDecision::Resample => TokenVerdict::Resample,
            GateDecision::Stop => TokenVerdict::Stop,
        }
    }
}

/// The gate asked for on the command line: forbidden ids, a JSON shape, a regex shape.
pub fn build_gate(
    forbid: &[u32],
    json_shape: bool,
    regex: Option<&str>,
) -> Result<OutputGate, nmk_kernel::output_gate::RegexShapeError> {
    let mut gate = OutputGate::new().forbid(forbid.iter().copied());
    if json_shape {
        gate = gate.with_check(Box::new(JsonShape::new()));
    }
    if let Some(p) = regex {
        gate = gate.with_check(Box::new(RegexShape::new(p)?));
    }
    Ok(gate)
}
