//! GGUF v2/v3: a reader that never panics on hostile input, and a v3 writer.
//!
//! Owns the on-disk model format. [`GgufContent::parse`] validates a byte slice (header,
//! metadata, tensor infos, alignment, tensor data placement); [`GgufFile`] keeps the bytes (a
//! memory map or a buffer) and hands out tensor views; [`GgufWriter`] produces files the reader
//! accepts. All failures are a [`GgufError`].

mod error;
mod file;
mod reader;
pub mod rewrite;
mod types;
mod value;
pub mod writer;

pub use error::GgufError;
pub use file::GgufFile;
pub use reader::{
    ALIGNMENT_KEY, DEFAULT_ALIGNMENT, GGUF_MAGIC, GgufContent, Limits, MAX_DIMS, TensorInfo,
};
pub use types::GgmlType;
pub use value::{Array, Metadata, Value, ValueType};
pub use writer::GgufWriter;
