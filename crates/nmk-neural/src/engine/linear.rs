//! [`Linear`]: a 2-D weight `n_out × n_in` (ggml dims `[n_in, n_out]`) applied to f32
//! activation rows, and [`Embedding`], row lookup into the token-embedding matrix.
//!
//! Both wrap a [`QMatrix`] over the GGUF file's shared memory map: no quantized byte is copied,
//! and plain float weights (F32, F16, BF16) go through the same type. The quant module
//! guarantees that each output element is one fixed-order row reduction, so a batch of `m` rows
//! gives bitwise the same results as `m` single-row calls, with any thread count.

use std::sync::Arc;

use crate::gguf::{GgmlType, GgufFile};
use crate::quant::{QMatrix, QuantError};

pub use crate::quant::Threads;

use super::error::{EngineError, Result};

/// A weight matrix applied as `y = W x`.
#[derive(Debug, Clone)]
pub struct Linear {
    name: String,
    n_in: usize,
    n_out: usize,
    w: QMatrix,
}

/// Checks that tensor `name` has ggml dims exactly `expected` and returns its type.
pub(crate) fn check_shape(file: &GgufFile, name: &str, expected: &[u64]) -> Result<GgmlType> {
    let info = file.tensor(name)?;
    if info.dims() != expected {
        return Err(EngineError::TensorShape {
            name: name.to_owned(),
            found: info.dims().to_vec(),
            expected: expected.to_vec(),
        });
    }
    Ok(info.ggml_type())
}

/// Loads a float tensor (F32/F16/BF16) of exact shape `expected` as f32.
pub(crate) fn load_f32(file: &GgufFile, name: &str, expected: &[u64]) -> Result<Vec<f32>> {
    let ty = check_shape(file, name, expected)?;
    match ty {
        GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => Ok(file.tensor_to_f32(name)?),
        other => Err(EngineError::UnsupportedTensorType {
            name: name.to_owned(),
            ggml_type: other,
            reason: "norms and biases must be F32, F16 or BF16".to_owned(),
        }),
    }
}

fn weight_err(name: &str, e: QuantError) -> EngineError {
    match e {
        QuantError::Gguf(g) => EngineError::Gguf(g),
        other => EngineError::Weight {
            name: name.to_owned(),
            reason: other.to_string(),
        },
    }
}

impl Linear {
    /// Loads weight `name` with `n_in` inputs and `n_out` outputs (ggml dims `[n_in, n_out]`).
    pub(crate) fn load(
        file: &Arc<GgufFile>,
        name: &str,
        n_in: usize,
        n_out: usize,
    ) -> Result<Linear> {
        let ty = check_shape(file, name, &[n_in as u64, n_out as u64])?;
        if !crate::quant::is_supported(ty) {
            return Err(EngineError::UnsupportedTensorType {
                name: name.to_owned(),
                ggml_type: ty,
                reason: "no matrix kernel for this type".to_owned(),
            });
        }
        let w = QMatrix::from_gguf(file, name).map_err(|e| weight_err(name, e))?;
        if w.n_rows() != n_out || w.n_cols() != n_in {
            return Err(EngineError::TensorShape {
                name: name.to_owned(),
                found: vec![w.n_cols() as u64, w.n_rows() as u64],
                expected: vec![n_in as u64, n_out as u64],
            });
        }
        Ok(Linear {
            name: name.to_owned(),
            n_in,
            n_out,
            w,
        })
    }

    /// Loads a merged expert tensor `name` (ggml dims `[n_in, n_out, n_expert]`) as one
    /// [`Linear`] per expert: row views on the same bytes, nothing copied.
    pub(crate) fn load_experts(
        file: &Arc<GgufFile>,
        name: &str,
        n_in: usize,
        n_out: usize,
        n_expert: usize,
    ) -> Result<Vec<Linear>> {
        let ty = check_shape(file, name, &[n_in as u64, n_out as u64, n_expert as u64])?;
        if !crate::quant::is_supported(ty) {
            return Err(EngineError::UnsupportedTensorType {
                name: name.to_owned(),
                ggml_type: ty,
                reason: "no matrix kernel for this type".to_owned(),
            });
        }
        let all = QMatrix::from_gguf(file, name).map_err(|e| weight_err(name, e))?;
        if all.n_cols() != n_in || Some(all.n_rows()) != n_out.checked_mul(n_expert) {
            return Err(EngineError::TensorShape {
                name: name.to_owned(),
                found: vec![all.n_cols() as u64, all.n_rows() as u64],
                expected: vec![n_in as u64, (n_out * n_expert) as u64],
            });
        }
        (0..n_expert)
            .map(|e| {
                let w = all
                    .sub_rows(e * n_out, n_out)
                    .map_err(|err| weight_err(name, err))?;
                Ok(Linear {
                    name: format!("{name}[{e}]"),
                    n_in,
                    n_out,
                    w,
                })
            })
            .collect()
    }

    /// Inputs per row.
    pub fn n_in(&self) -> usize {
        self.n_in
    }

    /// Outputs per row.
    pub fn n_out(&self) -> usize {
        self.n_out
    }

    /// The weight type.
    pub fn ggml_type(&self) -> GgmlType {
        self.w.ggml_type()
    }

    /// `ys[i] = W · xs[i]` for `m` rows (`xs`: at least `m × n_in`, `ys`: at least
    /// `m × n_out`; only those prefixes are touched).
    pub fn matmul(&self, xs: &[f32], m: usize, ys: &mut [f32], threads: &Threads) -> Result<()> {
        let (Some(xs), Some(ys)) = (xs.get(..m * self.n_in), ys.get_mut(..m * self.n_out)) else {
            return Err(EngineError::Weight {
                name: self.name.clone(),
                reason: format!("buffers too small for {m} rows"),
            });
        };
        self.w
            .matmul(xs, ys, threads)
            .map_err(|e| weight_err(&self.name, e))
    }
}

/// The token-embedding matrix (`n_vocab` rows of `n_embd`), read one row at a time.
#[derive(Debug, Clone)]
pub struct Embedding {
    lin: Linear,
}

impl Embedding {
    /// Loads `name` (ggml dims `[n_embd, n_vocab]`).
    pub(crate) fn load(
        file: &Arc<GgufFile>,
        name: &str,
        n_embd: usize,
        n_vocab: usize,
    ) -> Result<Embedding> {
        Ok(Embedding {
            lin: Linear::load(file, name, n_embd, n_vocab)?,
        })
    }

    /// Writes the embedding of `token` into `out` (the first `n_embd` values).
    pub fn row(&self, token: u32, out: &mut [f32]) -> Result<()> {
        let vocab = self.lin.n_out;
        if token as usize >= vocab {
            return Err(EngineError::TokenOutOfRange { token, vocab });
        }
        let out = out
            .get_mut(..self.lin.n_in)
            .ok_or_else(|| EngineError::State {
                reason: "embedding output buffer too small".to_owned(),
            })?;
        self.lin
            .w
            .dequantize_row(token as usize, out)
            .map_err(|e| weight_err(&self.lin.name, e))
    }

    /// The embedding matrix as an output head (tied weights; shares the bytes).
    pub(crate) fn as_linear(&self) -> Linear {
        self.lin.clone()
    }
}
