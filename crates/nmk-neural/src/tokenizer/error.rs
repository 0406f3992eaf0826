//! The one error type of the tokenizer and the chat template.
//!
//! Hostile or inconsistent GGUF metadata is always answered with one of these, never a panic.

use crate::gguf::GgufError;

/// An error building a tokenizer from GGUF metadata, or rendering a chat template.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenizerError {
    /// A metadata key is missing or holds a value of the wrong type.
    #[error("tokenizer metadata: {0}")]
    Metadata(#[from] GgufError),
    /// `tokenizer.ggml.model` names a vocabulary type this tokenizer does not implement.
    #[error("unsupported tokenizer model {model:?} (supported: \"gpt2\", \"llama\")")]
    UnsupportedModel {
        /// The value of `tokenizer.ggml.model`.
        model: String,
    },
    /// `tokenizer.ggml.pre` names a pre-tokenizer this tokenizer does not implement.
    #[error("unsupported pre-tokenizer {pre:?}")]
    UnsupportedPreTokenizer {
        /// The value of `tokenizer.ggml.pre`.
        pre: String,
    },
    /// The vocabulary has no tokens.
    #[error("tokenizer.ggml.tokens is empty")]
    EmptyVocab,
    /// The vocabulary is larger than token ids can address.
    #[error("vocabulary of {len} tokens is too large")]
    VocabTooLarge {
        /// The number of tokens.
        len: usize,
    },
    /// A per-token array is shorter than the vocabulary.
    #[error("{key} has {found} entries, the vocabulary has {expected} tokens")]
    LengthMismatch {
        /// The metadata key of the short array.
        key: &'static str,
        /// The vocabulary size.
        expected: usize,
        /// The array length.
        found: usize,
    },
    /// A merge rule is not two symbols separated by a space.
    #[error("tokenizer.ggml.merges[{index}] = {merge:?} is not \"LEFT RIGHT\"")]
    BadMerge {
        /// Index in the merges array.
        index: usize,
        /// The merge text.
        merge: String,
    },
    /// A token id in the metadata is outside the vocabulary.
    #[error("{key} = {id} is outside the vocabulary of {vocab_size} tokens")]
    TokenIdOutOfRange {
        /// The metadata key.
        key: &'static str,
        /// The id found.
        id: i128,
        /// The vocabulary size.
        vocab_size: usize,
    },
    /// A SentencePiece vocabulary lacks a byte token it needs.
    #[error("SentencePiece vocabulary lacks the byte token {token:?}")]
    MissingByteToken {
        /// The token text looked for (`<0x0A>`).
        token: String,
    },
    /// A pre-tokenizer regular expression failed to compile.
    #[error("pre-tokenizer regex {pattern:?}: {message}")]
    Regex {
        /// The pattern.
        pattern: String,
        /// The compiler's message.
        message: String,
    },
    /// A pre-tokenizer regular expression failed while matching (backtrack limit).
    #[error("pre-tokenizer regex failed while matching: {message}")]
    RegexRuntime {
        /// The matcher's message.
        message: String,
    },
    /// The model has no `tokenizer.chat_template`.
    #[error("the model has no tokenizer.chat_template")]
    NoChatTemplate,
    /// The chat template failed to compile or render (including `raise_exception`).
    #[error("chat template: {0}")]
    Template(String),
}
