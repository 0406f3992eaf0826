//! The kernel's only door to a model: the [`Proposer`] trait.
//!
//! The kernel never holds a model handle; the binary implements this trait with the neural plane
//! and hands it in. Everything a proposer returns is a proposal: text the kernel will judge, never
//! a verdict. The text-level ABI mirrors what the kernel's services need (greedy and seeded
//! sampling, with token counts for budgets), plus the hashes that bind a decision to the model
//! that proposed it.

use crate::ledger::ModelBinding;

/// One generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proposal {
    /// The generated text (end-of-sequence not included).
    pub text: String,
    /// Tokens generated (what the token budget is charged).
    pub tokens: u32,
    /// Whether generation stopped at end-of-sequence rather than at the token limit.
    pub finished: bool,
}

/// Why a proposer could not produce a proposal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("proposer failed: {0}")]
pub struct ProposerError(pub String);

/// A model, as the kernel sees it.
pub trait Proposer: Send {
    /// A short name for reports (`smollm2-135m-instruct`).
    fn name(&self) -> &str;
    /// Model, tokenizer and decode-policy hashes, written to the ledger with every decision the
    /// proposer took part in.
    fn binding(&self) -> ModelBinding;
    /// Greedy generation from one user turn (chat template applied), at most `max_tokens`.
    /// Deterministic: the same prompt gives the same text.
    fn gen_fast(&mut self, prompt: &str, max_tokens: u32) -> Result<Proposal, ProposerError>;
    /// Seeded sampling at temperature `temp`; reproducible for a given seed.
    fn gen_sample(
        &mut self,
        prompt: &str,
        temp: f32,
        seed: u64,
        max_tokens: u32,
    ) -> Result<Proposal, ProposerError>;
}
