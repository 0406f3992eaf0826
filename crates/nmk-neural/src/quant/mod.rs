//! Quantized weight formats and the kernels that read them (dequantization, activation
//! quantization, dot products, matrix-vector products).
//!
//! # API
//! - [`dequantize_row`], [`quantize_row_into`], [`quantize`], [`row_bytes`]: ggml block formats
//!   F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1, Q4_K, Q5_K, Q6_K, Q8_K, bit-exact with
//!   ggml's reference code (`dequantize_row_*`, `quantize_row_*_ref`). Quantizers exist for
//!   F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1, Q8_K. Malformed lengths are a
//!   [`QuantError`], never a panic.
//! - [`QMatrix`]: a weight `n_rows × n_cols` (output × input features) over an
//!   `Arc<dyn ByteStore>` (an `Arc<GgufFile>` mmap, a `Vec<u8>`…) plus a byte offset — no copy
//!   of quantized weights. [`QMatrix::matvec`], [`QMatrix::matmul`],
//!   [`QMatrix::dequantize_row`], [`QMatrix::sub_rows`] (one expert of a merged tensor).
//! - [`Threads`]: 1 thread (inline) or a persistent pool of `n − 1` parked workers.
//!
//! # Batch and thread invariance (by construction)
//! `matmul` output `ys[i][r]` is bitwise identical to `matvec` of row `i` alone, for every `m`
//! and thread count, because: each activation row is quantized on its own by one scalar routine
//! (ggml's `vec_dot_type`: Q8_0 for Q4_0/Q5_0/Q8_0, Q8_1 for Q4_1/Q5_1, Q8_K for k-quants, f32
//! for F32/F16/BF16); each output element is one call of one row-dot kernel with a fixed
//! reduction order, or one output of a several-rows kernel that performs, for that activation
//! row, exactly the row-dot's float operations in the same order (it only shares the weight
//! decoding between up to 8 activation rows; integer parts are exact whatever their grouping);
//! threads split only output rows, never a dot product. The kernels are chosen once per matrix
//! from the ISA detected once per process ([`Isa::detect`]), so every call on a machine takes
//! the same path.
//!
//! # Kernels per CPU
//! | weights | scalar | AVX2+FMA+F16C | AVX-512 F/BW/VL+VNNI |
//! |---|---|---|---|
//! | F32, F16, BF16 | yes | yes (bitwise = scalar) | uses AVX2 |
//! | Q4_0, Q5_0, Q5_1 | yes | yes (≈ scalar) | uses AVX2 |
//! | Q4_1, Q8_0 | yes | yes (≈ scalar) | `vpdpbusd`, 8-block groups (≈ scalar) |
//! | Q4_K, Q5_K, Q6_K | yes | yes (bitwise = scalar) | uses AVX2 |
//!
//! Several-rows kernels (prefill, `m > 1`): Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q6_K on AVX2
//! (4 activation rows per weight decode); on AVX-512, Q4_1 and Q8_0 (4 rows, equal to the
//! AVX-512 row-dots), Q4_0 and Q5_0 (VNNI, 8 rows, two per register) and Q4_K and Q6_K
//! (64-byte `maddubs` + `vpdpwssd`, 4 rows), all bitwise equal to the AVX2 row-dots that level
//! runs for them. Other types and the scalar level loop over the row-dot.
//!
//! "bitwise = scalar": same integers per super-block (k-quants) or the same 16 float lanes and
//! reduction tree (float weights), so results do not depend on the CPU. "≈ scalar": per-block
//! float terms are summed in SIMD lanes, within ~1e-5 of Σ|terms| of the scalar reference (tests
//! check both). Whatever the ISA, one machine always runs one kernel per type ([`Isa::detect`]).
//!
//! # Threads
//! [`Threads::new(2)`](Threads::new) keeps one parked worker (spins 100 µs after a job, then
//! sleeps on a condvar). On the shared 2-vCPU build machines under load, 2 threads were slower
//! than 1 for single matvecs (see `benches/quant_matvec.rs`); 1 thread is the default to use.

mod act;
mod blocks;
mod kernels;
mod matrix;
mod scalar;
mod threads;
#[cfg(target_arch = "x86_64")]
mod x86;

pub use act::ActFormat;
pub use blocks::{QK, QK_K, dequantize_row, is_supported, quantize, quantize_row_into, row_bytes};
pub use kernels::{Isa, effective_isa};
pub use matrix::{ByteStore, QMatrix};
pub use threads::{MAX_THREADS, Threads};

use crate::gguf::{GgmlType, GgufError};

/// An error from the quantization module.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QuantError {
    /// The type has no implementation of the operation.
    #[error("{op} is not supported for {ty}")]
    Unsupported {
        /// The type.
        ty: GgmlType,
        /// The operation.
        op: &'static str,
    },
    /// A row length is not a whole number of blocks.
    #[error("row length {n} of {ty} is not a multiple of its block size {block}")]
    RowLength {
        /// The type.
        ty: GgmlType,
        /// The row length in elements.
        n: usize,
        /// The block size.
        block: usize,
    },
    /// A slice has the wrong length.
    #[error("{what}: expected length {expected}, got {got}")]
    Length {
        /// Which slice.
        what: &'static str,
        /// Expected length.
        expected: usize,
        /// Actual length.
        got: usize,
    },
    /// The store is too short for the matrix.
    #[error("byte store too short: need {need} bytes, have {have}")]
    ShortBuffer {
        /// Bytes needed.
        need: usize,
        /// Bytes available.
        have: usize,
    },
    /// A row index is out of range.
    #[error("row {row} out of range (matrix has {n_rows} rows)")]
    RowOutOfRange {
        /// The row asked for.
        row: usize,
        /// Rows in the matrix.
        n_rows: usize,
    },
    /// A size computation overflowed.
    #[error("size overflow")]
    Overflow,
    /// A tensor has no dimensions.
    #[error("tensor {name} has no dimensions")]
    Shape {
        /// The tensor name.
        name: String,
    },
    /// The CPU cannot run the requested kernels.
    #[error("this CPU cannot run {isa:?} kernels")]
    IsaUnavailable {
        /// The requested level.
        isa: Isa,
    },
    /// Reading the GGUF tensor failed.
    #[error(transparent)]
    Gguf(#[from] GgufError),
}
