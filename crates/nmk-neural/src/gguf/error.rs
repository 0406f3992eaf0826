//! The one error type of the GGUF reader and writer.
//!
//! Every variant says what was wrong and, where it comes from the file, where (a byte offset, a
//! key or a tensor name). Hostile input is always answered with one of these, never a panic.

use std::path::PathBuf;

use super::types::GgmlType;

/// An error reading, validating, querying or writing a GGUF file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GgufError {
    /// Opening, mapping or writing a file failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Writing to a stream failed.
    #[error("I/O error while writing GGUF: {0}")]
    Write(#[source] std::io::Error),
    /// The input ended before a field was complete.
    #[error("truncated GGUF: {what} at offset {offset} needs {needed} bytes, {available} left")]
    Truncated {
        /// The field being read.
        what: &'static str,
        /// Byte offset of the field.
        offset: usize,
        /// Bytes the field needs.
        needed: u64,
        /// Bytes left in the input.
        available: usize,
    },
    /// The first four bytes are not `GGUF`.
    #[error("not a GGUF file: magic {found:02x?}")]
    BadMagic {
        /// The first bytes found.
        found: [u8; 4],
    },
    /// The version is not 2 or 3 (v1 and big-endian files are rejected too).
    #[error("unsupported GGUF version {version} (supported: 2, 3)")]
    UnsupportedVersion {
        /// The version read (little-endian).
        version: u32,
    },
    /// A count in the file exceeds a cap or what the remaining bytes could hold.
    #[error("{what} count {count} at offset {offset} is too large (at most {max})")]
    CountTooLarge {
        /// What is being counted.
        what: &'static str,
        /// The count found.
        count: u64,
        /// The largest count acceptable here.
        max: u64,
        /// Byte offset of the count.
        offset: usize,
    },
    /// A string length exceeds its cap.
    #[error("{what} length {len} at offset {offset} is too long (at most {max})")]
    StringTooLong {
        /// What the string is.
        what: &'static str,
        /// Length found.
        len: u64,
        /// Cap.
        max: u64,
        /// Byte offset of the length field.
        offset: usize,
    },
    /// A string is not valid UTF-8.
    #[error("{what} at offset {offset} is not valid UTF-8")]
    InvalidUtf8 {
        /// What the string is.
        what: &'static str,
        /// Byte offset of the string bytes.
        offset: usize,
    },
    /// A metadata value type id is not one GGUF defines.
    #[error("unknown metadata value type {type_id} at offset {offset}")]
    UnknownValueType {
        /// The type id.
        type_id: u32,
        /// Byte offset of the type id.
        offset: usize,
    },
    /// A bool value is neither 0 nor 1.
    #[error("invalid bool byte {value} at offset {offset}")]
    InvalidBool {
        /// The byte found.
        value: u8,
        /// Its offset.
        offset: usize,
    },
    /// Arrays nest deeper than allowed.
    #[error("metadata arrays nested deeper than {max} at offset {offset}")]
    ArrayTooDeep {
        /// The cap.
        max: usize,
        /// Byte offset of the offending array.
        offset: usize,
    },
    /// The metadata would take more memory than allowed.
    #[error("metadata exceeds the memory cap of {max} bytes at offset {offset}")]
    MetadataTooLarge {
        /// The cap in bytes.
        max: u64,
        /// Byte offset where the cap was hit.
        offset: usize,
    },
    /// A metadata key occurs twice.
    #[error("duplicate metadata key {key:?}")]
    DuplicateKey {
        /// The key.
        key: String,
    },
    /// `general.alignment` is not a power of two in the accepted range.
    #[error("bad general.alignment {value} (must be a power of two in 1..={max})")]
    BadAlignment {
        /// Value found.
        value: u64,
        /// Largest accepted alignment.
        max: u64,
    },
    /// A tensor's dimension count is 0 or above 4.
    #[error("tensor {name:?}: {n_dims} dimensions (must be 1..=4)")]
    BadDimensionCount {
        /// Tensor name.
        name: String,
        /// Dimension count found.
        n_dims: u32,
    },
    /// A tensor has a zero dimension.
    #[error("tensor {name:?}: dimension {index} is zero")]
    ZeroDimension {
        /// Tensor name.
        name: String,
        /// Which dimension.
        index: usize,
    },
    /// A tensor's element count or byte size overflows.
    #[error("tensor {name:?}: element count or byte size overflows")]
    SizeOverflow {
        /// Tensor name.
        name: String,
    },
    /// A tensor type id is not in the supported table.
    #[error("tensor {name:?}: unknown ggml type id {type_id}")]
    UnknownTensorType {
        /// Tensor name.
        name: String,
        /// Type id found.
        type_id: u32,
    },
    /// A tensor's row length is not a multiple of its type's block size.
    #[error(
        "tensor {name:?}: row length {row} is not a multiple of the {ggml_type} block size {block}"
    )]
    RowNotBlockMultiple {
        /// Tensor name.
        name: String,
        /// Row length (`dims[0]`).
        row: u64,
        /// Block size.
        block: u64,
        /// Tensor type.
        ggml_type: GgmlType,
    },
    /// Two tensors share a name.
    #[error("duplicate tensor name {name:?}")]
    DuplicateTensor {
        /// The name.
        name: String,
    },
    /// A tensor's data offset is not a multiple of the alignment.
    #[error("tensor {name:?}: data offset {offset} is not a multiple of the alignment {alignment}")]
    MisalignedTensor {
        /// Tensor name.
        name: String,
        /// Offset relative to the data section.
        offset: u64,
        /// Alignment in force.
        alignment: u64,
    },
    /// A tensor's data lies (partly) outside the file.
    #[error("tensor {name:?}: data bytes {start}..{end} lie outside the file of {file_len} bytes")]
    TensorOutOfBounds {
        /// Tensor name.
        name: String,
        /// Absolute start (may be saturated).
        start: u64,
        /// Absolute end (may be saturated).
        end: u64,
        /// File length.
        file_len: usize,
    },
    /// Two tensors' data ranges overlap.
    #[error("tensors {first:?} and {second:?} have overlapping data")]
    OverlappingTensors {
        /// The tensor with the lower offset.
        first: String,
        /// The tensor that overlaps it.
        second: String,
    },
    /// The aligned start of the data section lies beyond the end of the file.
    #[error("data section starts at {start}, past the end of the file ({file_len} bytes)")]
    DataSectionOutOfBounds {
        /// Aligned start of the data section.
        start: u64,
        /// File length.
        file_len: usize,
    },
    /// A metadata key asked for is absent.
    #[error("metadata key {key:?} is missing")]
    MissingKey {
        /// The key.
        key: String,
    },
    /// A metadata key holds a value of another type.
    #[error("metadata key {key:?} holds {found}, expected {expected}")]
    WrongType {
        /// The key.
        key: String,
        /// What the caller asked for.
        expected: &'static str,
        /// What the file holds.
        found: String,
    },
    /// An integer metadata value does not fit the type asked for.
    #[error("metadata key {key:?}: value {value} does not fit {expected}")]
    OutOfRange {
        /// The key.
        key: String,
        /// The type asked for.
        expected: &'static str,
        /// The value (as text).
        value: String,
    },
    /// A tensor asked for is absent.
    #[error("tensor {name:?} not found")]
    TensorNotFound {
        /// The name.
        name: String,
    },
    /// A tensor was given data whose length or type does not match its shape.
    #[error("tensor {name:?}: {reason}")]
    InvalidTensor {
        /// The tensor name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// A value cannot be written (e.g. an array mixing types).
    #[error("cannot write metadata {key:?}: {reason}")]
    InvalidValue {
        /// The key.
        key: String,
        /// What is wrong.
        reason: String,
    },
}
