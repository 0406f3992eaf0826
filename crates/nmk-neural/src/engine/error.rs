//! The one error type of the engine.
//!
//! Model files are hostile input: every inconsistency found while reading configuration or
//! weights is answered with one of these variants, never a panic. Runtime misuse (a token id out
//! of range, a full context, an impossible trim) is typed too.

use crate::gguf::{GgmlType, GgufError};

/// An error loading a model or running it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The GGUF layer failed (I/O, parse, missing key, wrong metadata type, missing tensor).
    #[error(transparent)]
    Gguf(#[from] GgufError),
    /// `general.architecture` names an architecture the engine does not run (yet).
    #[error("unsupported architecture {arch:?}: {reason}")]
    UnsupportedArchitecture {
        /// The architecture string from the file.
        arch: String,
        /// Why it is not supported.
        reason: String,
    },
    /// A metadata value is present but unusable (zero, inconsistent, out of range).
    #[error("invalid model configuration {key:?}: {reason}")]
    InvalidConfig {
        /// The metadata key (or a description of the combination at fault).
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// A tensor has the wrong shape for the configuration.
    #[error("tensor {name:?} has shape {found:?}, expected {expected:?}")]
    TensorShape {
        /// Tensor name.
        name: String,
        /// Dimensions found (ggml order).
        found: Vec<u64>,
        /// Dimensions expected (ggml order).
        expected: Vec<u64>,
    },
    /// A tensor's element type cannot be used where it appears.
    #[error("tensor {name:?} has type {ggml_type}, which is not supported here ({reason})")]
    UnsupportedTensorType {
        /// Tensor name.
        name: String,
        /// Its type.
        ggml_type: GgmlType,
        /// Why it is refused.
        reason: String,
    },
    /// A quantized-weight operation failed.
    #[error("weight {name:?}: {reason}")]
    Weight {
        /// Tensor name.
        name: String,
        /// What failed.
        reason: String,
    },
    /// A token id is not below the vocabulary size.
    #[error("token id {token} is out of range (vocabulary {vocab})")]
    TokenOutOfRange {
        /// The id.
        token: u32,
        /// The vocabulary size.
        vocab: usize,
    },
    /// Feeding more tokens would exceed the session's context limit.
    #[error("context full: {needed} positions needed, limit {limit}")]
    ContextFull {
        /// Positions the operation needs.
        needed: u64,
        /// The limit.
        limit: u64,
    },
    /// A KV cache trim cannot be performed.
    #[error("cannot trim the KV cache to {to} positions: {reason}")]
    Trim {
        /// Requested length in positions.
        to: u64,
        /// Why not.
        reason: String,
    },
    /// A snapshot does not fit the cache or session it is restored into.
    #[error("snapshot does not match: {reason}")]
    SnapshotMismatch {
        /// What differs.
        reason: String,
    },
    /// A session operation was called in a state that does not allow it.
    #[error("invalid session state: {reason}")]
    State {
        /// What is wrong.
        reason: String,
    },
    /// Sampling parameters are out of range.
    #[error("invalid sampling parameter {name}: {reason}")]
    InvalidSampling {
        /// The parameter.
        name: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A parked session cannot be decoded (corrupt, truncated, another version or model).
    #[error("cannot resume parked session: {reason}")]
    Park {
        /// What is wrong.
        reason: String,
    },
    /// A hook reported a failure; the forward pass was abandoned.
    #[error("hook {site} failed: {reason}")]
    Hook {
        /// Which hook site.
        site: &'static str,
        /// The hook's message.
        reason: String,
    },
}

/// Shorthand for engine results.
pub type Result<T> = std::result::Result<T, EngineError>;
