//! Activation quantization: one f32 activation row → the 8-bit format the weight type's dot
//! product consumes (ggml's `vec_dot_type`), stored structure-of-arrays for the kernels.
//!
//! The values are exactly ggml's reference quantizers (`quantize_row_q8_0_ref`,
//! `quantize_row_q8_1_ref`, `quantize_row_q8_K_ref`): the f16 scales are stored rounded
//! through f16, as ggml stores them. Each row is quantized on its own by the same scalar code
//! whatever the batch, the thread count or the ISA: the first half of batch invariance.

use super::blocks::{QK, QK_K, q8_0_values, q8_k_values, round_f16};
use crate::gguf::GgmlType;

/// The activation format a weight type is dotted against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(non_camel_case_types)]
pub enum ActFormat {
    /// Plain f32 (F32, F16, BF16 weights).
    F32,
    /// Q8_0: blocks of 32, scale `d` (Q4_0, Q5_0, Q8_0 weights).
    Q8_0,
    /// Q8_1: blocks of 32, scale `d` and `s = d·Σq` (Q4_1, Q5_1 weights).
    Q8_1,
    /// Q8_K: super-blocks of 256, f32 scale and sums of 16 (k-quant weights).
    Q8_K,
}

impl ActFormat {
    /// The activation format ggml uses for weights of type `ty` (`None` if unsupported).
    pub fn for_weights(ty: GgmlType) -> Option<ActFormat> {
        Some(match ty {
            GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => ActFormat::F32,
            GgmlType::Q4_0 | GgmlType::Q5_0 | GgmlType::Q8_0 => ActFormat::Q8_0,
            GgmlType::Q4_1 | GgmlType::Q5_1 => ActFormat::Q8_1,
            GgmlType::Q4_K | GgmlType::Q5_K | GgmlType::Q6_K => ActFormat::Q8_K,
            _ => return None,
        })
    }
}

/// A quantized activation row (one of the Q8 formats), structure-of-arrays.
#[derive(Debug, Clone, Default)]
pub(crate) struct QAct {
    /// All quants, `n` of them.
    pub qs: Vec<i8>,
    /// One scale per block (f16-rounded for Q8_0/Q8_1, f32 for Q8_K).
    pub d: Vec<f32>,
    /// Q8_1 only: `s = f16(d·Σq)` per block.
    pub s: Vec<f32>,
    /// Q8_K only: sums of 16 quants, 16 per super-block.
    pub bsums: Vec<i16>,
}

/// Borrowed view of a [`QAct`] handed to the dot kernels.
#[derive(Debug, Clone, Copy)]
pub(crate) struct QActRef<'a> {
    pub qs: &'a [i8],
    pub d: &'a [f32],
    pub s: &'a [f32],
    pub bsums: &'a [i16],
}

impl QAct {
    pub(crate) fn view(&self) -> QActRef<'_> {
        QActRef {
            qs: &self.qs,
            d: &self.d,
            s: &self.s,
            bsums: &self.bsums,
        }
    }

    /// Quantizes `x` (whose length is a multiple of the block size, checked by the caller;
    /// a trailing partial block is ignored) into `self`, reusing its buffers.
    pub(crate) fn quantize(&mut self, fmt: ActFormat, x: &[f32]) {
        self.qs.clear();
        self.d.clear();
        self.s.clear();
        self.bsums.clear();
        match fmt {
            ActFormat::F32 => {}
            ActFormat::Q8_0 | ActFormat::Q8_1 => {
                for blk in x.as_chunks::<QK>().0 {
                    let (d, qs) = q8_0_values(blk);
                    self.d.push(round_f16(d));
                    if fmt == ActFormat::Q8_1 {
                        let sum: i32 = qs.iter().map(|&q| q as i32).sum();
                        self.s.push(round_f16(sum as f32 * d));
                    }
                    self.qs.extend_from_slice(&qs);
                }
            }
            ActFormat::Q8_K => {
                for blk in x.as_chunks::<QK_K>().0 {
                    let (d, qs, bsums) = q8_k_values(blk);
                    self.d.push(d);
                    self.qs.extend_from_slice(&qs);
                    self.bsums.extend_from_slice(&bsums);
                }
            }
        }
    }
}
