//! Scalar dot kernels: the reference every SIMD kernel is tested against, and the fallback on
//! CPUs without AVX2.
//!
//! Reduction orders (the SIMD kernels follow the same structure where stated):
//! - F32/F16/BF16: 16 lane accumulators (element `i` goes to lane `i % 16`, fused multiply-add),
//!   then a fixed tree `l += l+8`, `l += l+4`, `l += l+2`, `l += l+1`. The AVX2 and AVX-512
//!   kernels do exactly this, so their results are bitwise equal to this code.
//! - 32-element blocks: per block an exact integer dot `sumi`, then
//!   `sumf += sumi·(dx·dy)` (`+ mx·sy` for the `_1` types) block after block. SIMD kernels
//!   accumulate in float lanes instead (different rounding, within a few ulps of the sum).
//! - k-quants: per super-block exact integer sums, then one float update per super-block
//!   (`sumf += dx·dy·isum − dmin·dy·imin`). SIMD kernels compute the same integers and do the
//!   same float operations in the same order: bitwise equal to this code.

use super::act::QActRef;
use super::blocks::{
    Q4_0_BYTES, Q4_1_BYTES, Q4_K_BYTES, Q5_0_BYTES, Q5_1_BYTES, Q5_K_BYTES, Q6_K_BYTES, Q8_0_BYTES,
    QK, QK_K, f16_to_f32, unpack_scales_k4,
};

/// Reduces 16 lane accumulators in the fixed tree shared with the SIMD kernels.
#[inline]
pub(crate) fn reduce16(mut acc: [f32; 16]) -> f32 {
    for step in [8usize, 4, 2, 1] {
        for l in 0..step {
            acc[l] += acc[l + step];
        }
    }
    acc[0]
}

/// Dot of f32 weights (little-endian bytes) with `x`.
pub(crate) fn dot_f32(w: &[u8], x: &[f32]) -> f32 {
    let mut acc = [0.0f32; 16];
    for (i, (c, xv)) in w.as_chunks::<4>().0.iter().zip(x).enumerate() {
        let l = i % 16;
        acc[l] = f32::from_le_bytes(*c).mul_add(*xv, acc[l]);
    }
    reduce16(acc)
}

/// Dot of f16 weights with `x`.
pub(crate) fn dot_f16(w: &[u8], x: &[f32]) -> f32 {
    let mut acc = [0.0f32; 16];
    for (i, (c, xv)) in w.as_chunks::<2>().0.iter().zip(x).enumerate() {
        let l = i % 16;
        acc[l] = f16_to_f32(c[0], c[1]).mul_add(*xv, acc[l]);
    }
    reduce16(acc)
}

/// Dot of bf16 weights with `x`.
pub(crate) fn dot_bf16(w: &[u8], x: &[f32]) -> f32 {
    let mut acc = [0.0f32; 16];
    for (i, (c, xv)) in w.as_chunks::<2>().0.iter().zip(x).enumerate() {
        let l = i % 16;
        let wv = f32::from_bits((u16::from_le_bytes(*c) as u32) << 16);
        acc[l] = wv.mul_add(*xv, acc[l]);
    }
    reduce16(acc)
}

#[inline]
fn q8_blocks<'a>(a: &QActRef<'a>) -> &'a [[i8; QK]] {
    a.qs.as_chunks::<QK>().0
}

pub(crate) fn dot_q4_0(w: &[u8], a: QActRef<'_>) -> f32 {
    let mut sumf = 0.0f32;
    for ((b, y), dy) in w
        .as_chunks::<Q4_0_BYTES>()
        .0
        .iter()
        .zip(q8_blocks(&a))
        .zip(a.d)
    {
        let mut sumi = 0i32;
        for j in 0..16 {
            let q = b[2 + j];
            sumi += ((q & 0x0f) as i32 - 8) * y[j] as i32;
            sumi += ((q >> 4) as i32 - 8) * y[j + 16] as i32;
        }
        sumf += sumi as f32 * (f16_to_f32(b[0], b[1]) * dy);
    }
    sumf
}

pub(crate) fn dot_q4_1(w: &[u8], a: QActRef<'_>) -> f32 {
    let mut sumf = 0.0f32;
    let it = w.as_chunks::<Q4_1_BYTES>().0.iter().zip(q8_blocks(&a));
    for (((b, y), dy), sy) in it.zip(a.d).zip(a.s) {
        let mut sumi = 0i32;
        for j in 0..16 {
            let q = b[4 + j];
            sumi += (q & 0x0f) as i32 * y[j] as i32;
            sumi += (q >> 4) as i32 * y[j + 16] as i32;
        }
        sumf += sumi as f32 * (f16_to_f32(b[0], b[1]) * dy) + f16_to_f32(b[2], b[3]) * sy;
    }
    sumf
}

#[inline]
fn q5_vals(qh: u32, q: u8, j: usize) -> (i32, i32) {
    let h0 = (((qh >> j) << 4) & 0x10) as u8;
    let h1 = ((qh >> (j + 12)) & 0x10) as u8;
    (((q & 0x0f) | h0) as i32, ((q >> 4) | h1) as i32)
}

pub(crate) fn dot_q5_0(w: &[u8], a: QActRef<'_>) -> f32 {
    let mut sumf = 0.0f32;
    for ((b, y), dy) in w
        .as_chunks::<Q5_0_BYTES>()
        .0
        .iter()
        .zip(q8_blocks(&a))
        .zip(a.d)
    {
        let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
        let mut sumi = 0i32;
        for j in 0..16 {
            let (v0, v1) = q5_vals(qh, b[6 + j], j);
            sumi += (v0 - 16) * y[j] as i32 + (v1 - 16) * y[j + 16] as i32;
        }
        sumf += sumi as f32 * (f16_to_f32(b[0], b[1]) * dy);
    }
    sumf
}

pub(crate) fn dot_q5_1(w: &[u8], a: QActRef<'_>) -> f32 {
    let mut sumf = 0.0f32;
    let it = w.as_chunks::<Q5_1_BYTES>().0.iter().zip(q8_blocks(&a));
    for (((b, y), dy), sy) in it.zip(a.d).zip(a.s) {
        let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
        let mut sumi = 0i32;
        for j in 0..16 {
            let (v0, v1) = q5_vals(qh, b[8 + j], j);
            sumi += v0 * y[j] as i32 + v1 * y[j + 16] as i32;
        }
        sumf += sumi as f32 * (f16_to_f32(b[0], b[1]) * dy) + f16_to_f32(b[2], b[3]) * sy;
    }
    sumf
}

pub(crate) fn dot_q8_0(w: &[u8], a: QActRef<'_>) -> f32 {
    let mut sumf = 0.0f32;
    for ((b, y), dy) in w
        .as_chunks::<Q8_0_BYTES>()
        .0
        .iter()
        .zip(q8_blocks(&a))
        .zip(a.d)
    {
        let mut sumi = 0i32;
        for j in 0..QK {
            sumi += (b[2 + j] as i8) as i32 * y[j] as i32;
        }
        sumf += sumi as f32 * (f16_to_f32(b[0], b[1]) * dy);
    }
    sumf
}

/// The float update of one k-quant super-block, shared by every ISA (bitwise equal results).
#[inline]
pub(crate) fn k_update(sumf: f32, d: f32, dmin: f32, dy: f32, isum: i32, imin: i32) -> f32 {
    sumf + ((d * dy) * isum as f32 - (dmin * dy) * imin as f32)
}

/// Integer mins term of a Q4_K/Q5_K super-block: `Σ_j bsums[j]·mins[j/2]`.
#[inline]
pub(crate) fn k_mins(bsums: &[i16], mn: &[u8; 8]) -> i32 {
    bsums
        .iter()
        .take(16)
        .enumerate()
        .map(|(j, &s)| s as i32 * mn[j / 2] as i32)
        .sum()
}

/// One super-block of weights and activations: (weights, quants), (scale, sums of 16).
type KItem<'a, const N: usize> = ((&'a [u8; N], &'a [i8; QK_K]), (&'a f32, &'a [i16; 16]));

#[inline]
fn k_iter<'a, const N: usize>(w: &'a [u8], a: &QActRef<'a>) -> impl Iterator<Item = KItem<'a, N>> {
    w.as_chunks::<N>()
        .0
        .iter()
        .zip(a.qs.as_chunks::<QK_K>().0)
        .zip(a.d.iter().zip(a.bsums.as_chunks::<16>().0))
}

pub(crate) fn dot_q4_k(w: &[u8], a: QActRef<'_>) -> f32 {
    let mut sumf = 0.0f32;
    for ((b, y), (dy, bsums)) in k_iter::<Q4_K_BYTES>(w, &a) {
        let (sc, mn) = unpack_scales_k4(b);
        let mut isum = 0i32;
        for g in 0..4 {
            let (mut s0, mut s1) = (0i32, 0i32);
            for l in 0..32 {
                let q = b[16 + 32 * g + l];
                s0 += (q & 0x0f) as i32 * y[64 * g + l] as i32;
                s1 += (q >> 4) as i32 * y[64 * g + 32 + l] as i32;
            }
            isum += s0 * sc[2 * g] as i32 + s1 * sc[2 * g + 1] as i32;
        }
        let imin = k_mins(bsums, &mn);
        sumf = k_update(
            sumf,
            f16_to_f32(b[0], b[1]),
            f16_to_f32(b[2], b[3]),
            *dy,
            isum,
            imin,
        );
    }
    sumf
}

pub(crate) fn dot_q5_k(w: &[u8], a: QActRef<'_>) -> f32 {
    let mut sumf = 0.0f32;
    for ((b, y), (dy, bsums)) in k_iter::<Q5_K_BYTES>(w, &a) {
        let (sc, mn) = unpack_scales_k4(b);
        let mut isum = 0i32;
        for g in 0..4 {
            let (mut s0, mut s1) = (0i32, 0i32);
            for l in 0..32 {
                let q = b[48 + 32 * g + l];
                let h = b[16 + l];
                let v0 = (q & 0x0f) as i32 + (((h >> (2 * g)) & 1) as i32) * 16;
                let v1 = (q >> 4) as i32 + (((h >> (2 * g + 1)) & 1) as i32) * 16;
                s0 += v0 * y[64 * g + l] as i32;
                s1 += v1 * y[64 * g + 32 + l] as i32;
            }
            isum += s0 * sc[2 * g] as i32 + s1 * sc[2 * g + 1] as i32;
        }
        let imin = k_mins(bsums, &mn);
        sumf = k_update(
            sumf,
            f16_to_f32(b[0], b[1]),
            f16_to_f32(b[2], b[3]),
            *dy,
            isum,
            imin,
        );
    }
    sumf
}

pub(crate) fn dot_q6_k(w: &[u8], a: QActRef<'_>) -> f32 {
    let mut sumf = 0.0f32;
    for ((b, y), (dy, _)) in k_iter::<Q6_K_BYTES>(w, &a) {
        let mut isum = 0i32;
        for half in 0..2 {
            let ql = 64 * half;
            let qh = 128 + 32 * half;
            let sc = 192 + 8 * half;
            let yo = 128 * half;
            // 8 groups of 16: (quarter k, sixteen s) → scale index sc + 2k + s.
            let mut gs = [0i32; 8];
            for l in 0..32 {
                let h = b[qh + l];
                let q1 = ((b[ql + l] & 0x0f) | ((h & 3) << 4)) as i32 - 32;
                let q2 = ((b[ql + l + 32] & 0x0f) | (((h >> 2) & 3) << 4)) as i32 - 32;
                let q3 = ((b[ql + l] >> 4) | (((h >> 4) & 3) << 4)) as i32 - 32;
                let q4 = ((b[ql + l + 32] >> 4) | (((h >> 6) & 3) << 4)) as i32 - 32;
                let s = l / 16;
                gs[s] += q1 * y[yo + l] as i32;
                gs[2 + s] += q2 * y[yo + l + 32] as i32;
                gs[4 + s] += q3 * y[yo + l + 64] as i32;
                gs[6 + s] += q4 * y[yo + l + 96] as i32;
            }
            for (k, g) in gs.iter().enumerate() {
                isum += g * (b[sc + k] as i8) as i32;
            }
        }
        sumf += (f16_to_f32(b[208], b[209]) * dy) * isum as f32;
    }
    sumf
}
