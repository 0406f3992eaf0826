//! [`Linear`]: a 2-D weight `n_out × n_in` (ggml dims `[n_in, n_out]`) applied to f32
//! activation rows, and [`Embedding`], row lookup into the token-embedding matrix.
//!
//! Plain float weights (F32, F16, BF16) are held as f32 rows; quantized weights stay in the
//! file's memory map and go through [`crate::quant`]. Either way each output element is one
//! fixed-order reduction over its row, so a batch of `m` rows gives bitwise the same results as
//! `m` single-row calls, with any thread count.

use std::sync::Arc;

use crate::gguf::{GgmlType, GgufFile};

use super::error::{EngineError, Result};
use super::ops;

/// Thread budget handed to matrix kernels.
pub type Threads = usize;

#[derive(Debug)]
enum Kind {
    /// Row-major `n_out × n_in` f32.
    F32(Vec<f32>),
}

/// A weight matrix applied as `y = W x`.
#[derive(Debug)]
pub struct Linear {
    name: String,
    n_in: usize,
    n_out: usize,
    kind: Kind,
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

impl Linear {
    /// Loads weight `name` with `n_in` inputs and `n_out` outputs (ggml dims `[n_in, n_out]`).
    pub(crate) fn load(
        file: &Arc<GgufFile>,
        name: &str,
        n_in: usize,
        n_out: usize,
    ) -> Result<Linear> {
        let ty = check_shape(file, name, &[n_in as u64, n_out as u64])?;
        let kind = match ty {
            GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => Kind::F32(file.tensor_to_f32(name)?),
            other => {
                return Err(EngineError::UnsupportedTensorType {
                    name: name.to_owned(),
                    ggml_type: other,
                    reason: "quantized weights need the quant module".to_owned(),
                });
            }
        };
        Ok(Linear {
            name: name.to_owned(),
            n_in,
            n_out,
            kind,
        })
    }

    /// Inputs per row.
    pub fn n_in(&self) -> usize {
        self.n_in
    }

    /// Outputs per row.
    pub fn n_out(&self) -> usize {
        self.n_out
    }

    /// `ys[i] = W · xs[i]` for `m` rows (`xs`: `m × n_in`, `ys`: `m × n_out`).
    pub fn matmul(&self, xs: &[f32], m: usize, ys: &mut [f32], threads: &Threads) -> Result<()> {
        let _ = threads;
        let (Some(xs), Some(ys)) = (xs.get(..m * self.n_in), ys.get_mut(..m * self.n_out)) else {
            return Err(EngineError::Weight {
                name: self.name.clone(),
                reason: format!("buffers too small for {m} rows"),
            });
        };
        match &self.kind {
            Kind::F32(w) => {
                for (x, y) in xs
                    .chunks_exact(self.n_in)
                    .zip(ys.chunks_exact_mut(self.n_out))
                {
                    for (yo, wr) in y.iter_mut().zip(w.chunks_exact(self.n_in)) {
                        *yo = ops::dot(wr, x);
                    }
                }
            }
        }
        Ok(())
    }
}

/// The token-embedding matrix (`n_vocab` rows of `n_embd`), read one row at a time.
#[derive(Debug)]
pub struct Embedding {
    n_embd: usize,
    n_vocab: usize,
    kind: Kind,
}

impl Embedding {
    /// Loads `token_embd.weight` with rows of `n_embd`.
    pub(crate) fn load(
        file: &Arc<GgufFile>,
        name: &str,
        n_embd: usize,
        n_vocab: usize,
    ) -> Result<Embedding> {
        let lin = Linear::load(file, name, n_embd, n_vocab)?;
        Ok(Embedding {
            n_embd,
            n_vocab,
            kind: lin.kind,
        })
    }

    /// Writes the embedding of `token` into `out` (`n_embd` values).
    pub fn row(&self, token: u32, out: &mut [f32]) -> Result<()> {
        let t = token as usize;
        if t >= self.n_vocab {
            return Err(EngineError::TokenOutOfRange {
                token,
                vocab: self.n_vocab,
            });
        }
        let n = self.n_embd;
        let out = out.get_mut(..n).ok_or_else(|| EngineError::State {
            reason: "embedding output buffer too small".to_owned(),
        })?;
        match &self.kind {
            Kind::F32(w) => {
                let src = w.get(t * n..t * n + n).ok_or_else(|| EngineError::State {
                    reason: "embedding row out of range".to_owned(),
                })?;
                out.copy_from_slice(src);
            }
        }
        Ok(())
    }

    /// The embedding matrix as an output head (tied weights).
    pub(crate) fn as_linear(&self, name: &str) -> Linear {
        let kind = match &self.kind {
            Kind::F32(w) => Kind::F32(w.clone()),
        };
        Linear {
            name: name.to_owned(),
            n_in: self.n_embd,
            n_out: self.n_vocab,
            kind,
        }
    }
}
