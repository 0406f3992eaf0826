//! The kernel's `Proposer`, implemented with the neural plane: the one place the two meet.

use std::path::Path;

use anyhow::{Context, Result};
use nmk_det::{ContentHash, Value, hash_bytes, hash_value};
use nmk_kernel::ledger::ModelBinding;
use nmk_kernel::output_gate::OutputGate;
use nmk_kernel::proposer::{Proposal, Proposer, ProposerError};
use nmk_neural::engine::{SamplingParams, StopReason};
use nmk_neural::models::find_model;
use nmk_neural::text::{PromptMode, TextModel};

use crate::token_gate::KernelTokenGate;

/// A local model behind the kernel's `Proposer` trait.
pub struct NeuralProposer {
    name: String,
    model: TextModel,
    binding: ModelBinding,
}

impl std::fmt::Debug for NeuralProposer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NeuralProposer")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

fn file_sha256(path: &Path) -> Result<ContentHash> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut hasher = <sha2::Sha256 as sha2::Digest>::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        sha2::Digest::update(&mut hasher, &buf[..n]);
    }
    Ok(ContentHash(sha2::Digest::finalize(hasher).into()))
}

impl NeuralProposer {
    /// Loads `spec` (a registry name or a .gguf path) from `path`.
    pub fn load(spec: &str, path: &Path, threads: usize) -> Result<NeuralProposer> {
        let mut model =
            TextModel::load(path).with_context(|| format!("loading {}", path.display()))?;
        model.set_threads(threads);
        // A registry model was verified against its pinned hash when fetched.
        let model_hash = match find_model(spec).and_then(|e| e.sha256.parse().ok()) {
            Some(h) => h,
            None => file_sha256(path)?,
        };
        let template = model.tokenizer().chat_template_source().unwrap_or("");
        let policy = hash_value(&Value::map([
            (
                "engine",
                Value::str(concat!("nmk-neural/", env!("CARGO_PKG_VERSION"))),
            ),
            (
                "template",
                Value::str(hash_bytes(template.as_bytes()).to_hex()),
            ),
            (
                "stop_tokens",
                Value::List(
                    model
                        .stop_tokens()
                        .iter()
                        .map(|&t| Value::int(i64::from(t)))
                        .collect(),
                ),
            ),
            ("prompt", Value::str("chat:user")),
        ]));
        let binding = ModelBinding {
            model: model_hash,
            tokenizer: ContentHash(model.tokenizer_hash()),
            policy,
        };
        Ok(NeuralProposer {
            name: spec.to_owned(),
            model,
            binding,
        })
    }

    /// The loaded model, for callers that drive the decode loop themselves (`nmk run`: raw
    /// prompts, sampling flags, a shaped gate) while keeping this proposer's binding.
    pub fn model(&self) -> &TextModel {
        &self.model
    }

    fn generate(
        &self,
        prompt: &str,
        sampling: &SamplingParams,
        seed: u64,
        max_tokens: u32,
    ) -> Result<Proposal, ProposerError> {
        let err = |e: &dyn std::fmt::Display| ProposerError(e.to_string());
        let ids = self
            .model
            .encode(prompt, PromptMode::Chat)
            .map_err(|e| err(&e))?;
        // Proposals go through the kernel's gate too (no shape: the commit trap and the
        // admission pipeline judge the finished text), so no model token bypasses the kernel.
        let mut gate = KernelTokenGate::new(OutputGate::new(), self.model.tokenizer());
        let c = self
            .model
            .generate_ids(
                &ids,
                max_tokens as usize,
                sampling,
                seed,
                &mut gate,
                &mut |_| {},
            )
            .map_err(|e| err(&e))?;
        Ok(Proposal {
            text: c.text,
            tokens: u32::try_from(c.ids.len()).unwrap_or(u32::MAX),
            finished: matches!(c.stop, StopReason::StopToken(_)),
        })
    }
}

impl Proposer for NeuralProposer {
    fn name(&self) -> &str {
        &self.name
    }

    fn binding(&self) -> ModelBinding {
        self.binding.clone()
    }

    fn gen_fast(&mut self, prompt: &str, max_tokens: u32) -> Result<Proposal, ProposerError> {
        self.generate(prompt, &SamplingParams::greedy(), 0, max_tokens)
    }

    fn gen_sample(
        &mut self,
        prompt: &str,
        temp: f32,
        seed: u64,
        max_tokens: u32,
    ) -> Result<Proposal, ProposerError> {
        let sampling = SamplingParams {
            temperature: temp.max(1e-6),
            ..SamplingParams::greedy()
        };
        self.generate(prompt, &sampling, seed, max_tokens)
    }
}
