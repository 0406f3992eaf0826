//! The kernel's [`FactLane`] on the neural engine: the bare answer, and an answer grounded with
//! verified facts either by re-prefilling the augmented prompt or mid-stream — the session
//! parked right after the prompt resumes with the facts block appended as tokens in the same KV
//! cache, so the prompt is not computed again. Every token goes through the kernel's gate.

use nmk_kernel::fact_loop::{Fact, FactLane, Grounding, augment_prompt, render_facts};
use nmk_kernel::output_gate::OutputGate;
use nmk_kernel::proposer::{Proposal, ProposerError};
use nmk_neural::engine::{SamplingParams, Session, SessionSnapshot, StopReason};
use nmk_neural::text::{PromptMode, TextModel};

use crate::token_gate::KernelTokenGate;

/// The fact lane (see the module documentation).
pub struct NeuralFactLane<'m> {
    model: &'m TextModel,
    mode: Grounding,
    max_tokens: usize,
    /// The session state right after the last bare prompt, for mid-stream grounding.
    parked: Option<(String, SessionSnapshot)>,
    /// Positions prefilled (prompt and injected tokens) over all calls.
    pub prefilled: u64,
}

fn err(e: impl std::fmt::Display) -> ProposerError {
    ProposerError(e.to_string())
}

impl<'m> NeuralFactLane<'m> {
    /// A lane on `model` grounding by `mode`, answers of at most `max_tokens`.
    pub fn new(model: &'m TextModel, mode: Grounding, max_tokens: usize) -> NeuralFactLane<'m> {
        NeuralFactLane {
            model,
            mode,
            max_tokens,
            parked: None,
            prefilled: 0,
        }
    }

    /// Greedy generation from the session's current state, through the kernel's gate.
    fn generate(&self, session: &mut Session) -> Result<Proposal, ProposerError> {
        let mut gate = KernelTokenGate::new(OutputGate::new(), self.model.tokenizer());
        let (text, g) = self
            .model
            .continue_session(
                session,
                self.max_tokens,
                &SamplingParams::greedy(),
                &mut gate,
                &mut |_| {},
            )
            .map_err(err)?;
        Ok(Proposal {
            text,
            tokens: u32::try_from(g.tokens.len()).unwrap_or(u32::MAX),
            finished: matches!(g.stop, StopReason::StopToken(_)),
        })
    }

    fn prefilled_session(&mut self, prompt: &str) -> Result<Session, ProposerError> {
        let ids = self.model.encode(prompt, PromptMode::Chat).map_err(err)?;
        let mut s = self.model.session(0).map_err(err)?;
        s.prefill(&ids).map_err(err)?;
        self.prefilled += ids.len() as u64;
        Ok(s)
    }
}

impl FactLane for NeuralFactLane<'_> {
    fn answer(&mut self, prompt: &str) -> Result<Proposal, ProposerError> {
        let mut s = self.prefilled_session(prompt)?;
        if self.mode == Grounding::MidStream {
            self.parked = Some((prompt.to_owned(), s.snapshot().map_err(err)?));
        }
        self.generate(&mut s)
    }

    fn grounded(&mut self, prompt: &str, facts: &[Fact]) -> Result<Proposal, ProposerError> {
        match self.mode {
            Grounding::Reprefill => {
                let mut s = self.prefilled_session(&augment_prompt(prompt, facts))?;
                self.generate(&mut s)
            }
            Grounding::MidStream => {
                let mut s = match self.parked.take() {
                    Some((p, snap)) if p == prompt => {
                        let mut s = self.model.session(0).map_err(err)?;
                        s.restore(&snap).map_err(err)?;
                        s
                    }
                    _ => self.prefilled_session(prompt)?,
                };
                // The facts open the assistant's turn, as if it had looked them up itself.
                let block = format!("{}\n\n", render_facts(facts));
                let ids = self.model.tokenizer().encode(&block, false, false);
                s.prefill(&ids).map_err(err)?;
                self.prefilled += ids.len() as u64;
                self.generate(&mut s)
            }
        }
    }

    fn grounding(&self) -> Grounding {
        self.mode
    }
}
