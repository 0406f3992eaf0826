//! The entry-trap head in `nmk run`: finds the head file of the loaded model, prefills the
//! chat-encoded request once with a tap after the head's block, and hands the kernel the
//! head's proposal as plain data; the prefilled session is what the model lane decodes from.
//!
//! Owns only that wiring. The proposal is disposed by the kernel (`Router::handle_with_head`);
//! any failure here (no usable head, another model's head, a template that does not match) is
//! "no proposal", never a route. May not decide anything.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use nmk_kernel::router::{HeadProposal, HeadReading};
use nmk_neural::engine::ParkBinding;
use nmk_neural::entry_head::{CHAT_TEMPLATE_ID, HeadFile, TappedPrefill, prefill_with_tap};
use nmk_neural::text::{PromptMode, TextModel};

use crate::commands::run::ModelArgs;
use crate::commands::train_head::default_head_path;
use crate::proposer::NeuralProposer;

/// The head's part of one request.
pub struct HeadRun {
    /// The loaded model (the model lane reuses it).
    pub proposer: NeuralProposer,
    /// The request prefilled with the tap (`None` when the head could not be read).
    pub tapped: Option<TappedPrefill>,
    /// What the kernel receives.
    pub reading: HeadReading,
    /// The head file used.
    pub file: PathBuf,
    /// The block the head reads (when the file loaded).
    pub layer: Option<usize>,
}

/// What looking for a head found. Either way the model is loaded once, and the model lane
/// reuses it.
pub enum HeadLookup {
    /// No head file for the loaded model.
    NoHead(Box<NeuralProposer>),
    /// The head's part of the request.
    Read(Box<HeadRun>),
}

/// Reads the head for `prompt`: `explicit` (`--head`) or the home's head for this model.
pub fn read(
    home: &Path,
    explicit: Option<&Path>,
    model: &ModelArgs,
    model_path: &Path,
    prompt: &str,
    max_tokens: usize,
    seed: u64,
) -> Result<HeadLookup> {
    let proposer = NeuralProposer::load(&model.model, model_path, model.threads)?;
    let m = proposer.model();
    let binding = ParkBinding::of(m.model())?;
    let file = match explicit {
        Some(p) => p.to_path_buf(),
        None => default_head_path(home, &binding),
    };
    if explicit.is_none() && !file.exists() {
        return Ok(HeadLookup::NoHead(Box::new(proposer)));
    }
    let head = match HeadFile::load(&file) {
        Ok(h) => h,
        // An explicit head that cannot be read is the caller's mistake: say so.
        Err(e) if explicit.is_some() => {
            return Err(e).with_context(|| format!("head file {}", file.display()));
        }
        Err(e) => {
            return Ok(HeadLookup::Read(Box::new(HeadRun {
                proposer,
                tapped: None,
                reading: HeadReading {
                    proposal: Err(e.to_string()),
                    head_hash: String::new(),
                },
                file,
                layer: None,
            })));
        }
    };
    let head_hash = head.hash_hex();
    let layer = head.layer();
    let attempt = propose(&head, &binding, m, prompt, max_tokens, seed);
    let (tapped, proposal) = match attempt {
        Ok((t, p)) => (Some(t), Ok(p)),
        Err(e) => (None, Err(format!("{e:#}"))),
    };
    Ok(HeadLookup::Read(Box::new(HeadRun {
        proposer,
        tapped,
        reading: HeadReading {
            proposal,
            head_hash,
        },
        file,
        layer: Some(layer),
    })))
}

/// The head's proposal for `prompt`, and the session it prefilled.
fn propose(
    head: &HeadFile,
    binding: &ParkBinding,
    m: &TextModel,
    prompt: &str,
    max_tokens: usize,
    seed: u64,
) -> Result<(TappedPrefill, HeadProposal)> {
    head.check_binding(binding, CHAT_TEMPLATE_ID)?;
    let ids = m.encode(prompt, PromptMode::Chat)?;
    let context = m.model().config().n_ctx_train;
    if ids.len() + max_tokens > context {
        anyhow::bail!("prompt and max tokens exceed the context of {context}");
    }
    let tapped = prefill_with_tap(m, &ids, seed, head.layer())?;
    let (class, confidence) = head.predict(&tapped.residual)?;
    Ok((tapped, HeadProposal { class, confidence }))
}
