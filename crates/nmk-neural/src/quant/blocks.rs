//! ggml block layouts, scalar dequantization (bit-exact ggml semantics) and the reference
//! quantizers (f32 → blocks) for the types nmk writes itself.
//!
//! Every function takes whole rows: `bytes` must hold exactly `n / block_elems` blocks of the
//! type, and `out`/`src` exactly `n` elements; anything else is a [`QuantError`], never a panic.
//! Blocks are read with `as_chunks::<N>()` into fixed-size arrays, so in-block indexing is
//! checked at compile time.

use half::{bf16, f16};

use super::QuantError;
use crate::gguf::GgmlType;

/// Elements per block of the 32-element formats (Q4_0 … Q8_1).
pub const QK: usize = 32;
/// Elements per super-block of the k-quants.
pub const QK_K: usize = 256;

/// Bytes per block of each format (the ggml struct sizes).
pub(crate) const Q4_0_BYTES: usize = 18;
pub(crate) const Q4_1_BYTES: usize = 20;
pub(crate) const Q5_0_BYTES: usize = 22;
pub(crate) const Q5_1_BYTES: usize = 24;
pub(crate) const Q8_0_BYTES: usize = 34;
pub(crate) const Q8_1_BYTES: usize = 36;
pub(crate) const Q4_K_BYTES: usize = 144;
pub(crate) const Q5_K_BYTES: usize = 176;
pub(crate) const Q6_K_BYTES: usize = 210;
pub(crate) const Q8_K_BYTES: usize = 292;

#[inline]
pub(crate) fn f16_to_f32(lo: u8, hi: u8) -> f32 {
    f16::from_bits(u16::from_le_bytes([lo, hi])).to_f32()
}

#[inline]
pub(crate) fn f32_to_f16_bytes(v: f32) -> [u8; 2] {
    f16::from_f32(v).to_bits().to_le_bytes()
}

/// Rounds through f16 (what storing a ggml `ggml_half` and reading it back does).
#[inline]
pub(crate) fn round_f16(v: f32) -> f32 {
    f16::from_f32(v).to_f32()
}

/// ggml's `nearest_int` (round half to even via the 1.5·2²³ trick), for |v| ≤ 4194303.
#[inline]
pub(crate) fn nearest_int(v: f32) -> i32 {
    let val = v + 12_582_912.0;
    let i = val.to_bits() as i32;
    (i & 0x007f_ffff) - 0x0040_0000
}

/// Whether the crate can dequantize (and run dot products on) `ty`.
pub fn is_supported(ty: GgmlType) -> bool {
    matches!(
        ty,
        GgmlType::F32
            | GgmlType::F16
            | GgmlType::BF16
            | GgmlType::Q4_0
            | GgmlType::Q4_1
            | GgmlType::Q5_0
            | GgmlType::Q5_1
            | GgmlType::Q8_0
            | GgmlType::Q8_1
            | GgmlType::Q4_K
            | GgmlType::Q5_K
            | GgmlType::Q6_K
            | GgmlType::Q8_K
    )
}

/// Bytes of a row of `n` elements of `ty`, checking that `n` is a whole number of blocks.
pub fn row_bytes(ty: GgmlType, n: usize) -> Result<usize, QuantError> {
    let be = usize::try_from(ty.block_elems()).map_err(|_| QuantError::Overflow)?;
    let bb = usize::try_from(ty.block_bytes()).map_err(|_| QuantError::Overflow)?;
    if !n.is_multiple_of(be) {
        return Err(QuantError::RowLength { ty, n, block: be });
    }
    (n / be).checked_mul(bb).ok_or(QuantError::Overflow)
}

fn check_len(what: &'static str, expected: usize, got: usize) -> Result<(), QuantError> {
    if expected != got {
        return Err(QuantError::Length {
            what,
            expected,
            got,
        });
    }
    Ok(())
}

/// Splits `bytes` into exactly `nb` blocks of `N` bytes.
#[inline]
pub(crate) fn blocks<const N: usize>(bytes: &[u8], nb: usize) -> Result<&[[u8; N]], QuantError> {
    let (b, rest) = bytes.as_chunks::<N>();
    if b.len() != nb || !rest.is_empty() {
        return Err(QuantError::Length {
            what: "row bytes",
            expected: nb.saturating_mul(N),
            got: bytes.len(),
        });
    }
    Ok(b)
}

/// Dequantizes one row: `out.len()` elements from `bytes` (exactly one row of `ty`).
pub fn dequantize_row(ty: GgmlType, bytes: &[u8], out: &mut [f32]) -> Result<(), QuantError> {
    let n = out.len();
    let rb = row_bytes(ty, n)?;
    check_len("row bytes", rb, bytes.len())?;
    match ty {
        GgmlType::F32 => {
            for (o, c) in out.iter_mut().zip(bytes.as_chunks::<4>().0) {
                *o = f32::from_le_bytes(*c);
            }
        }
        GgmlType::F16 => {
            for (o, c) in out.iter_mut().zip(bytes.as_chunks::<2>().0) {
                *o = f16_to_f32(c[0], c[1]);
            }
        }
        GgmlType::BF16 => {
            for (o, c) in out.iter_mut().zip(bytes.as_chunks::<2>().0) {
                *o = bf16::from_bits(u16::from_le_bytes(*c)).to_f32();
            }
        }
        GgmlType::Q4_0 => deq_q4_0(blocks(bytes, n / QK)?, out),
        GgmlType::Q4_1 => deq_q4_1(blocks(bytes, n / QK)?, out),
        GgmlType::Q5_0 => deq_q5_0(blocks(bytes, n / QK)?, out),
        GgmlType::Q5_1 => deq_q5_1(blocks(bytes, n / QK)?, out),
        GgmlType::Q8_0 => deq_q8_0(blocks(bytes, n / QK)?, out),
        GgmlType::Q8_1 => deq_q8_1(blocks(bytes, n / QK)?, out),
        GgmlType::Q4_K => deq_q4_k(blocks(bytes, n / QK_K)?, out),
        GgmlType::Q5_K => deq_q5_k(blocks(bytes, n / QK_K)?, out),
        GgmlType::Q6_K => deq_q6_k(blocks(bytes, n / QK_K)?, out),
        GgmlType::Q8_K => deq_q8_k(blocks(bytes, n / QK_K)?, out),
        _ => {
            return Err(QuantError::Unsupported {
                ty,
                op: "dequantize",
            });
        }
    }
    Ok(())
}

fn deq_q4_0(b: &[[u8; Q4_0_BYTES]], out: &mut [f32]) {
    for (blk, y) in b.iter().zip(out.as_chunks_mut::<QK>().0) {
        let d = f16_to_f32(blk[0], blk[1]);
        for j in 0..16 {
            let q = blk[2 + j];
            y[j] = ((q & 0x0f) as i32 - 8) as f32 * d;
            y[j + 16] = ((q >> 4) as i32 - 8) as f32 * d;
        }
    }
}

fn deq_q4_1(b: &[[u8; Q4_1_BYTES]], out: &mut [f32]) {
    for (blk, y) in b.iter().zip(out.as_chunks_mut::<QK>().0) {
        let d = f16_to_f32(blk[0], blk[1]);
        let m = f16_to_f32(blk[2], blk[3]);
        for j in 0..16 {
            let q = blk[4 + j];
            y[j] = (q & 0x0f) as f32 * d + m;
            y[j + 16] = (q >> 4) as f32 * d + m;
        }
    }
}

#[inline]
fn q5_high(qh: u32, j: usize) -> (u8, u8) {
    let h0 = (((qh >> j) << 4) & 0x10) as u8;
    let h1 = ((qh >> (j + 12)) & 0x10) as u8;
    (h0, h1)
}

fn deq_q5_0(b: &[[u8; Q5_0_BYTES]], out: &mut [f32]) {
    for (blk, y) in b.iter().zip(out.as_chunks_mut::<QK>().0) {
        let d = f16_to_f32(blk[0], blk[1]);
        let qh = u32::from_le_bytes([blk[2], blk[3], blk[4], blk[5]]);
        for j in 0..16 {
            let q = blk[6 + j];
            let (h0, h1) = q5_high(qh, j);
            y[j] = (((q & 0x0f) | h0) as i32 - 16) as f32 * d;
            y[j + 16] = (((q >> 4) | h1) as i32 - 16) as f32 * d;
        }
    }
}

fn deq_q5_1(b: &[[u8; Q5_1_BYTES]], out: &mut [f32]) {
    for (blk, y) in b.iter().zip(out.as_chunks_mut::<QK>().0) {
        let d = f16_to_f32(blk[0], blk[1]);
        let m = f16_to_f32(blk[2], blk[3]);
        let qh = u32::from_le_bytes([blk[4], blk[5], blk[6], blk[7]]);
        for j in 0..16 {
            let q = blk[8 + j];
            let (h0, h1) = q5_high(qh, j);
            y[j] = ((q & 0x0f) | h0) as f32 * d + m;
            y[j + 16] = ((q >> 4) | h1) as f32 * d + m;
        }
    }
}

fn deq_q8_0(b: &[[u8; Q8_0_BYTES]], out: &mut [f32]) {
    for (blk, y) in b.iter().zip(out.as_chunks_mut::<QK>().0) {
        let d = f16_to_f32(blk[0], blk[1]);
        for j in 0..QK {
            y[j] = (blk[2 + j] as i8) as f32 * d;
        }
    }
}

fn deq_q8_1(b: &[[u8; Q8_1_BYTES]], out: &mut [f32]) {
    for (blk, y) in b.iter().zip(out.as_chunks_mut::<QK>().0) {
        let d = f16_to_f32(blk[0], blk[1]);
        for j in 0..QK {
            y[j] = (blk[4 + j] as i8) as f32 * d;
        }
    }
}

/// ggml's `get_scale_min_k4`: the 6-bit scale and min of sub-block `j` (0..8).
#[inline]
pub(crate) fn scale_min_k4(j: usize, q: &[u8; 12]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// Unpacks the 12 packed scale bytes of a Q4_K/Q5_K super-block into 8 scales and 8 mins.
#[inline]
pub(crate) fn unpack_scales_k4(blk: &[u8]) -> ([u8; 8], [u8; 8]) {
    let mut q = [0u8; 12];
    if let Some(s) = blk.get(4..16) {
        q.copy_from_slice(s);
    }
    let mut sc = [0u8; 8];
    let mut mn = [0u8; 8];
    for j in 0..8 {
        let (s, m) = scale_min_k4(j, &q);
        sc[j] = s;
        mn[j] = m;
    }
    (sc, mn)
}

fn deq_q4_k(b: &[[u8; Q4_K_BYTES]], out: &mut [f32]) {
    for (blk, y) in b.iter().zip(out.as_chunks_mut::<QK_K>().0) {
        let d = f16_to_f32(blk[0], blk[1]);
        let min = f16_to_f32(blk[2], blk[3]);
        let (sc, mn) = unpack_scales_k4(blk);
        for g in 0..4 {
            let d1 = d * sc[2 * g] as f32;
            let m1 = min * mn[2 * g] as f32;
            let d2 = d * sc[2 * g + 1] as f32;
            let m2 = min * mn[2 * g + 1] as f32;
            for l in 0..32 {
                let q = blk[16 + 32 * g + l];
                y[64 * g + l] = d1 * (q & 0x0f) as f32 - m1;
                y[64 * g + 32 + l] = d2 * (q >> 4) as f32 - m2;
            }
        }
    }
}

fn deq_q5_k(b: &[[u8; Q5_K_BYTES]], out: &mut [f32]) {
    for (blk, y) in b.iter().zip(out.as_chunks_mut::<QK_K>().0) {
        let d = f16_to_f32(blk[0], blk[1]);
        let min = f16_to_f32(blk[2], blk[3]);
        let (sc, mn) = unpack_scales_k4(blk);
        for g in 0..4 {
            let d1 = d * sc[2 * g] as f32;
            let m1 = min * mn[2 * g] as f32;
            let d2 = d * sc[2 * g + 1] as f32;
            let m2 = min * mn[2 * g + 1] as f32;
            let u1 = 1u8 << (2 * g);
            let u2 = 2u8 << (2 * g);
            for l in 0..32 {
                let q = blk[48 + 32 * g + l];
                let h = blk[16 + l];
                let h1 = if h & u1 != 0 { 16 } else { 0 };
                let h2 = if h & u2 != 0 { 16 } else { 0 };
                y[64 * g + l] = d1 * ((q & 0x0f) + h1) as f32 - m1;
                y[64 * g + 32 + l] = d2 * ((q >> 4) + h2) as f32 - m2;
            }
        }
    }
}

fn deq_q6_k(b: &[[u8; Q6_K_BYTES]], out: &mut [f32]) {
    for (blk, y) in b.iter().zip(out.as_chunks_mut::<QK_K>().0) {
        let d = f16_to_f32(blk[208], blk[209]);
        for half in 0..2 {
            let ql = 64 * half;
            let qh = 128 + 32 * half;
            let sc = 192 + 8 * half;
            let yo = 128 * half;
            for l in 0..32 {
                let is = l / 16;
                let h = blk[qh + l];
                let q1 = ((blk[ql + l] & 0x0f) | ((h & 3) << 4)) as i32 - 32;
                let q2 = ((blk[ql + l + 32] & 0x0f) | (((h >> 2) & 3) << 4)) as i32 - 32;
                let q3 = ((blk[ql + l] >> 4) | (((h >> 4) & 3) << 4)) as i32 - 32;
                let q4 = ((blk[ql + l + 32] >> 4) | (((h >> 6) & 3) << 4)) as i32 - 32;
                let s = |k: usize| (blk[sc + is + k] as i8) as f32;
                y[yo + l] = d * s(0) * q1 as f32;
                y[yo + l + 32] = d * s(2) * q2 as f32;
                y[yo + l + 64] = d * s(4) * q3 as f32;
                y[yo + l + 96] = d * s(6) * q4 as f32;
            }
        }
    }
}

fn deq_q8_k(b: &[[u8; Q8_K_BYTES]], out: &mut [f32]) {
    for (blk, y) in b.iter().zip(out.as_chunks_mut::<QK_K>().0) {
        let d = f32::from_le_bytes([blk[0], blk[1], blk[2], blk[3]]);
        for j in 0..QK_K {
            y[j] = d * (blk[4 + j] as i8) as f32;
        }
    }
}

// ------------------------------------------------------------------------------------------
// Reference quantizers (ggml's `quantize_row_*_ref`).
// ------------------------------------------------------------------------------------------

/// Quantizes one row of `src` to `ty`, appending the blocks to `out` (ggml's reference
/// quantizers: `quantize_row_q8_0_ref` etc.). Supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0,
/// Q5_1, Q8_0, Q8_1, Q8_K.
pub fn quantize_row_into(ty: GgmlType, src: &[f32], out: &mut Vec<u8>) -> Result<(), QuantError> {
    let rb = row_bytes(ty, src.len())?;
    if !matches!(
        ty,
        GgmlType::F32
            | GgmlType::F16
            | GgmlType::BF16
            | GgmlType::Q4_0
            | GgmlType::Q4_1
            | GgmlType::Q5_0
            | GgmlType::Q5_1
            | GgmlType::Q8_0
            | GgmlType::Q8_1
            | GgmlType::Q8_K
    ) {
        return Err(QuantError::Unsupported { ty, op: "quantize" });
    }
    out.reserve(rb);
    match ty {
        GgmlType::F32 => src
            .iter()
            .for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
        GgmlType::F16 => src
            .iter()
            .for_each(|v| out.extend_from_slice(&f32_to_f16_bytes(*v))),
        GgmlType::BF16 => src
            .iter()
            .for_each(|v| out.extend_from_slice(&bf16::from_f32(*v).to_bits().to_le_bytes())),
        GgmlType::Q4_0 => src
            .as_chunks::<QK>()
            .0
            .iter()
            .for_each(|x| q4_0_block(x, out)),
        GgmlType::Q4_1 => src
            .as_chunks::<QK>()
            .0
            .iter()
            .for_each(|x| q4_1_block(x, out)),
        GgmlType::Q5_0 => src
            .as_chunks::<QK>()
            .0
            .iter()
            .for_each(|x| q5_0_block(x, out)),
        GgmlType::Q5_1 => src
            .as_chunks::<QK>()
            .0
            .iter()
            .for_each(|x| q5_1_block(x, out)),
        GgmlType::Q8_0 => src.as_chunks::<QK>().0.iter().for_each(|x| {
            let (d, qs) = q8_0_values(x);
            out.extend_from_slice(&f32_to_f16_bytes(d));
            out.extend(qs.iter().map(|&q| q as u8));
        }),
        GgmlType::Q8_1 => src.as_chunks::<QK>().0.iter().for_each(|x| {
            let (d, qs) = q8_0_values(x);
            let sum: i32 = qs.iter().map(|&q| q as i32).sum();
            out.extend_from_slice(&f32_to_f16_bytes(d));
            out.extend_from_slice(&f32_to_f16_bytes(sum as f32 * d));
            out.extend(qs.iter().map(|&q| q as u8));
        }),
        GgmlType::Q8_K => src.as_chunks::<QK_K>().0.iter().for_each(|x| {
            let (d, qs, bsums) = q8_k_values(x);
            out.extend_from_slice(&d.to_le_bytes());
            out.extend(qs.iter().map(|&q| q as u8));
            bsums
                .iter()
                .for_each(|s| out.extend_from_slice(&s.to_le_bytes()));
        }),
        _ => {}
    }
    Ok(())
}

/// Quantizes a row-major `n_rows × (src.len() / n_rows)` matrix to `ty` (see
/// [`quantize_row_into`]).
pub fn quantize(ty: GgmlType, src: &[f32], n_cols: usize) -> Result<Vec<u8>, QuantError> {
    if n_cols == 0 || !src.len().is_multiple_of(n_cols) {
        return Err(QuantError::Length {
            what: "matrix elements (a multiple of n_cols)",
            expected: src.len().next_multiple_of(n_cols.max(1)),
            got: src.len(),
        });
    }
    let mut out = Vec::new();
    for row in src.chunks_exact(n_cols) {
        quantize_row_into(ty, row, &mut out)?;
    }
    Ok(out)
}

/// `quantize_row_q8_0_ref` for one block: the f32 scale `d` (stored as f16) and the quants.
#[inline]
pub(crate) fn q8_0_values(x: &[f32; QK]) -> (f32, [i8; QK]) {
    let amax = x.iter().fold(0.0f32, |a, v| a.max(v.abs()));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let mut qs = [0i8; QK];
    for (q, v) in qs.iter_mut().zip(x) {
        *q = (v * id).round() as i8;
    }
    (d, qs)
}

/// `quantize_row_q8_K_ref` for one super-block: `d` (f32), quants, sums of 16.
#[inline]
pub(crate) fn q8_k_values(x: &[f32; QK_K]) -> (f32, [i8; QK_K], [i16; QK_K / 16]) {
    let mut max = 0.0f32;
    let mut amax = 0.0f32;
    for &v in x {
        let ax = v.abs();
        if ax > amax {
            amax = ax;
            max = v;
        }
    }
    let mut qs = [0i8; QK_K];
    let mut bsums = [0i16; QK_K / 16];
    if amax == 0.0 {
        return (0.0, qs, bsums);
    }
    let iscale = -127.0 / max;
    for (q, v) in qs.iter_mut().zip(x) {
        *q = nearest_int(iscale * v).min(127) as i8;
    }
    for (s, g) in bsums.iter_mut().zip(qs.as_chunks::<16>().0) {
        *s = g.iter().map(|&q| q as i16).sum();
    }
    (1.0 / iscale, qs, bsums)
}

fn absmax_signed(x: &[f32; QK]) -> f32 {
    let mut amax = 0.0f32;
    let mut max = 0.0f32;
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    max
}

fn q4_0_block(x: &[f32; QK], out: &mut Vec<u8>) {
    let max = absmax_signed(x);
    let d = max / -8.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    out.extend_from_slice(&f32_to_f16_bytes(d));
    for j in 0..16 {
        let x0 = x[j] * id;
        let x1 = x[j + 16] * id;
        let xi0 = ((x0 + 8.5) as i8).min(15) as u8;
        let xi1 = ((x1 + 8.5) as i8).min(15) as u8;
        out.push(xi0 | (xi1 << 4));
    }
}

fn min_max(x: &[f32; QK]) -> (f32, f32) {
    let mut min = f32::MAX;
    let mut max = -f32::MAX;
    for &v in x {
        if v < min {
            min = v;
        }
        if v > max {
            max = v;
        }
    }
    (min, max)
}

fn q4_1_block(x: &[f32; QK], out: &mut Vec<u8>) {
    let (min, max) = min_max(x);
    let d = (max - min) / 15.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    out.extend_from_slice(&f32_to_f16_bytes(d));
    out.extend_from_slice(&f32_to_f16_bytes(min));
    for j in 0..16 {
        let x0 = (x[j] - min) * id;
        let x1 = (x[j + 16] - min) * id;
        let xi0 = ((x0 + 0.5) as i8).min(15) as u8;
        let xi1 = ((x1 + 0.5) as i8).min(15) as u8;
        out.push(xi0 | (xi1 << 4));
    }
}

fn q5_0_block(x: &[f32; QK], out: &mut Vec<u8>) {
    let max = absmax_signed(x);
    let d = max / -16.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    out.extend_from_slice(&f32_to_f16_bytes(d));
    let mut qh = 0u32;
    let mut qs = [0u8; 16];
    for j in 0..16 {
        let x0 = x[j] * id;
        let x1 = x[j + 16] * id;
        let xi0 = ((x0 + 16.5) as i8).min(31) as u8;
        let xi1 = ((x1 + 16.5) as i8).min(31) as u8;
        qs[j] = (xi0 & 0x0f) | ((xi1 & 0x0f) << 4);
        qh |= (((xi0 & 0x10) >> 4) as u32) << j;
        qh |= (((xi1 & 0x10) >> 4) as u32) << (j + 16);
    }
    out.extend_from_slice(&qh.to_le_bytes());
    out.extend_from_slice(&qs);
}

fn q5_1_block(x: &[f32; QK], out: &mut Vec<u8>) {
    let (min, max) = min_max(x);
    let d = (max - min) / 31.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    out.extend_from_slice(&f32_to_f16_bytes(d));
    out.extend_from_slice(&f32_to_f16_bytes(min));
    let mut qh = 0u32;
    let mut qs = [0u8; 16];
    for j in 0..16 {
        let x0 = (x[j] - min) * id;
        let x1 = (x[j + 16] - min) * id;
        let xi0 = (x0 + 0.5) as u8;
        let xi1 = (x1 + 0.5) as u8;
        qs[j] = (xi0 & 0x0f) | ((xi1 & 0x0f) << 4);
        qh |= (((xi0 & 0x10) >> 4) as u32) << j;
        qh |= (((xi1 & 0x10) >> 4) as u32) << (j + 16);
    }
    out.extend_from_slice(&qh.to_le_bytes());
    out.extend_from_slice(&qs);
}
