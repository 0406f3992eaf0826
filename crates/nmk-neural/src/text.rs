//! The text-level ABI: a prompt in, text out, on top of the engine and the tokenizer.
//!
//! `gen_fast` (greedy) and `gen_sample` (seeded) take one user turn, apply the model's chat
//! template, and stop *without emitting* an end-of-generation token or at `max_tokens`. Both are
//! deterministic for their inputs: the same prompt (and seed) gives byte-identical text. This is
//! what the kernel's `Proposer` is implemented with; `generate_ids` is the streaming form the CLI
//! and server use.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use sha2::{Digest, Sha256};

use crate::engine::{
    EngineError, GateCounts, GatedGeneration, GenerateParams, Model, SamplingParams, Session,
    SessionOptions, StopReason, TokenGate,
};
use crate::gguf::GgufFile;
use crate::tokenizer::{ChatMessage, Tokenizer, TokenizerError};

/// Errors of the text ABI.
#[derive(Debug, thiserror::Error)]
pub enum TextError {
    /// The forward pass failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// Tokenizing or rendering the template failed.
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    /// The prompt does not fit the model's context.
    #[error(
        "prompt of {prompt} tokens plus {max_tokens} new tokens exceeds the context of {context}"
    )]
    ContextOverflow {
        /// Prompt tokens.
        prompt: usize,
        /// Tokens asked for.
        max_tokens: usize,
        /// The context.
        context: u64,
    },
}

/// A finished generation.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// The generated text (stop token not included).
    pub text: String,
    /// Prompt token ids.
    pub prompt_ids: Vec<u32>,
    /// Generated token ids.
    pub ids: Vec<u32>,
    /// Why it stopped.
    pub stop: StopReason,
    /// What the token gate decided.
    pub gate: GateCounts,
    /// Prefill time in seconds.
    pub prefill_s: f64,
    /// Decode time in seconds (first sampled token to last).
    pub decode_s: f64,
}

/// How to turn a prompt into ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromptMode {
    /// One user turn through the model's chat template, generation prompt added.
    Chat,
    /// The text as it is (BOS per the vocabulary's rule; special-token text not parsed).
    Raw,
}

/// A loaded model with its tokenizer: what the text ABI runs on.
#[derive(Debug)]
pub struct TextModel {
    model: Arc<Model>,
    tokenizer: Tokenizer,
    stop_tokens: Vec<u32>,
    threads: usize,
}

impl TextModel {
    /// Loads the GGUF at `path` (mmapped once, shared by the weights and the tokenizer).
    pub fn load(path: &Path) -> Result<TextModel, TextError> {
        let file = Arc::new(GgufFile::open(path).map_err(EngineError::from)?);
        let tokenizer = Tokenizer::from_gguf(&file)?;
        let model = Arc::new(Model::from_file(file)?);
        let mut stop_tokens: Vec<u32> = tokenizer.eos_ids().iter().copied().collect();
        for t in [model.eos_token(), model.eot_token()].into_iter().flatten() {
            if !stop_tokens.contains(&t) {
                stop_tokens.push(t);
            }
        }
        Ok(TextModel {
            model,
            tokenizer,
            stop_tokens,
            threads: 1,
        })
    }

    /// Sets the thread count of sessions started from now on (results do not depend on it).
    pub fn set_threads(&mut self, threads: usize) {
        self.threads = threads.max(1);
    }

    /// The model.
    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Ids that end a generation (end-of-sequence, end-of-turn).
    pub fn stop_tokens(&self) -> &[u32] {
        &self.stop_tokens
    }

    /// Prompt ids for `prompt`.
    pub fn encode(&self, prompt: &str, mode: PromptMode) -> Result<Vec<u32>, TextError> {
        Ok(match mode {
            PromptMode::Chat => self
                .tokenizer
                .encode_chat(&[ChatMessage::new("user", prompt)], true)?,
            PromptMode::Raw => self.tokenizer.encode(prompt, true, false),
        })
    }

    /// A fresh session on this model.
    pub fn session(&self, seed: u64) -> Result<Session, TextError> {
        let opts = SessionOptions {
            threads: self.threads,
            seed,
            ..SessionOptions::default()
        };
        Ok(Session::new(self.model.clone(), &opts)?)
    }

    /// Generates from prompt ids, each token judged by `gate` before it is emitted (the commit
    /// gate per token: there is no ungated path from the model to the text), calling `on_text`
    /// with each complete piece of UTF-8 text as it is produced.
    pub fn generate_ids(
        &self,
        prompt_ids: &[u32],
        max_tokens: usize,
        sampling: &SamplingParams,
        seed: u64,
        gate: &mut dyn TokenGate,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<Completion, TextError> {
        let context = self.model.config().n_ctx_train as u64;
        if (prompt_ids.len() + max_tokens) as u64 > context {
            return Err(TextError::ContextOverflow {
                prompt: prompt_ids.len(),
                max_tokens,
                context,
            });
        }
        let mut session = self.session(seed)?;
        let t0 = Instant::now();
        session.prefill(prompt_ids)?;
        let _ = session.logits()?;
        let prefill_s = t0.elapsed().as_secs_f64();
        let t1 = Instant::now();
        let (text, g) = self.continue_session(&mut session, max_tokens, sampling, gate, on_text)?;
        Ok(Completion {
            text,
            prompt_ids: prompt_ids.to_vec(),
            ids: g.tokens,
            stop: g.stop,
            gate: g.counts,
            prefill_s,
            decode_s: t1.elapsed().as_secs_f64(),
        })
    }

    /// Generates from wherever `session` stands (prefilled, restored, or with tokens
    /// appended), each token judged by `gate`, until a stop token or `max_tokens`; returns the
    /// text (streamed to `on_text` as complete UTF-8 pieces) and the generation.
    pub fn continue_session(
        &self,
        session: &mut Session,
        max_tokens: usize,
        sampling: &SamplingParams,
        gate: &mut dyn TokenGate,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<(String, GatedGeneration), TextError> {
        let mut stream = self.stream(max_tokens, sampling);
        while !stream.step(session, gate, on_text)? {}
        Ok(stream.finish(on_text))
    }

    /// A generation advanced one token at a time by [`TextStream::step`], so that a caller can
    /// interleave many sessions (the server's lanes). Stepping a stream to its end gives the same
    /// tokens, text and gate counts as one [`TextModel::continue_session`] call, which is built on it.
    pub fn stream(&self, max_tokens: usize, sampling: &SamplingParams) -> TextStream<'_> {
        TextStream {
            decoder: self.tokenizer.decoder(),
            params: GenerateParams {
                max_tokens: 1,
                stop_tokens: self.stop_tokens.clone(),
                sampling: sampling.clone(),
            },
            limit: max_tokens,
            text: String::new(),
            generation: GatedGeneration {
                tokens: Vec::with_capacity(max_tokens.min(4096)),
                stop: StopReason::MaxTokens,
                counts: GateCounts::default(),
            },
            ended: false,
        }
    }

    /// Greedy generation from one user turn: `(text, tokens generated)`.
    pub fn gen_fast(
        &self,
        prompt: &str,
        max_tokens: usize,
        gate: &mut dyn TokenGate,
    ) -> Result<(String, usize), TextError> {
        let ids = self.encode(prompt, PromptMode::Chat)?;
        let c = self.generate_ids(
            &ids,
            max_tokens,
            &SamplingParams::greedy(),
            0,
            gate,
            &mut |_| {},
        )?;
        Ok((c.text, c.ids.len()))
    }

    /// Seeded sampling at temperature `temp` from one user turn: `(text, tokens generated)`.
    pub fn gen_sample(
        &self,
        prompt: &str,
        temp: f32,
        seed: u64,
        max_tokens: usize,
        gate: &mut dyn TokenGate,
    ) -> Result<(String, usize), TextError> {
        let ids = self.encode(prompt, PromptMode::Chat)?;
        let sampling = SamplingParams {
            temperature: temp.max(1e-6),
            ..SamplingParams::greedy()
        };
        let c = self.generate_ids(&ids, max_tokens, &sampling, seed, gate, &mut |_| {})?;
        Ok((c.text, c.ids.len()))
    }

    /// SHA-256 of the tokenizer definition (vocabulary pieces, in id order, and the pre-tokenizer
    /// name): what binds a ledger entry to the tokenizer that produced its ids.
    pub fn tokenizer_hash(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.tokenizer.pre_tokenizer().unwrap_or("").as_bytes());
        h.update([0]);
        for id in 0..self.tokenizer.vocab_size() {
            let id = u32::try_from(id).unwrap_or(u32::MAX);
            h.update(self.tokenizer.token_to_piece(id));
            h.update([0xff]);
        }
        h.finalize().into()
    }
}

/// A generation in progress (see [`TextModel::stream`]).
pub struct TextStream<'m> {
    decoder: crate::tokenizer::Decoder<'m>,
    /// One token per step; the stop tokens and sampling of the whole generation.
    params: GenerateParams,
    limit: usize,
    text: String,
    generation: GatedGeneration,
    ended: bool,
}

impl std::fmt::Debug for TextStream<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextStream")
            .field("tokens", &self.generation.tokens.len())
            .field("limit", &self.limit)
            .field("ended", &self.ended)
            .finish()
    }
}

impl TextStream<'_> {
    /// Generates at most one token on `session`, judged by `gate`; complete UTF-8 pieces go to
    /// `on_text`. Returns whether the generation has ended (a stop token, the gate, or the
    /// token limit); once it has, further calls do nothing.
    pub fn step(
        &mut self,
        session: &mut Session,
        gate: &mut dyn TokenGate,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<bool, TextError> {
        if self.ended {
            return Ok(true);
        }
        if self.generation.tokens.len() >= self.limit {
            self.generation.stop = StopReason::MaxTokens;
            self.ended = true;
            return Ok(true);
        }
        // One token through the same gated loop: the same operations, in the same order, as
        // one long `generate_gated` call.
        let (decoder, text) = (&mut self.decoder, &mut self.text);
        let g = session.generate_gated(&self.params, gate, &mut |id| {
            let piece = decoder.push(id);
            if !piece.is_empty() {
                on_text(&piece);
                text.push_str(&piece);
            }
        })?;
        self.generation.counts.accepted += g.counts.accepted;
        self.generation.counts.resampled += g.counts.resampled;
        match g.tokens.first() {
            Some(&t) => {
                self.generation.tokens.push(t);
                if self.generation.tokens.len() >= self.limit {
                    self.generation.stop = StopReason::MaxTokens;
                    self.ended = true;
                }
            }
            None => {
                self.generation.stop = g.stop;
                self.ended = true;
            }
        }
        Ok(self.ended)
    }

    /// Tokens generated so far.
    pub fn tokens(&self) -> &[u32] {
        &self.generation.tokens
    }

    /// Ends the generation: flushes any held-back UTF-8 bytes to `on_text` and returns the
    /// text and the generation (`stop` is `MaxTokens` if it was ended before it finished).
    pub fn finish(mut self, on_text: &mut dyn FnMut(&str)) -> (String, GatedGeneration) {
        let rest = self.decoder.finish();
        if !rest.is_empty() {
            on_text(&rest);
            self.text.push_str(&rest);
        }
        (self.text, self.generation)
    }
}
