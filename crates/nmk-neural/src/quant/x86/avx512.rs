//! AVX-512 (F/BW/VL + VNNI `vpdpbusd`) dot kernels for the hottest 32-element block types.
//!
//! Groups of 8 blocks: the 8 weight scales are converted at once (`vcvtph2ps`), two blocks go
//! through one `vpdpbusd` (16 i32 lanes: 8 per block), and each lane is scaled by its block's
//! `dx·dy` (a lane permute) into a 16-lane float accumulator. Blocks past the last full group
//! go one at a time through 256-bit VNNI into an 8-lane accumulator. The final reduction is a
//! fixed tree. Float rounding differs from the scalar reference (lane-wise sums).
//!
//! Several-rows kernels for prefill: each output is bitwise equal to the row-dot this level
//! runs for its type (the AVX-512 one for Q4_1/Q8_0, the AVX2 one for Q4_0/Q5_0/Q4_K/Q6_K);
//! they only share the weight decoding between activation rows and use wider integer
//! instructions where the integers are exact.
#![allow(unsafe_code)]

use std::arch::x86_64::*;

use super::super::act::QActRef;
use super::super::blocks::{
    Q4_0_BYTES, Q4_1_BYTES, Q4_K_BYTES, Q5_0_BYTES, Q6_K_BYTES, Q8_0_BYTES, QK, QK_K,
    unpack_scales_k4,
};
use super::super::kernels::{over_rows, per_row, put};
use super::super::scalar::{self, k_update};
use super::avx2::{self, bytes_from_bits, half_to_f32 as f16_to_f32, hsum8, nibbles};
use super::has_avx512;

const FEATURES_OK: fn() -> bool = has_avx512;

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn ld128(b: &[u8], off: usize) -> __m128i {
    match b.get(off..).and_then(<[u8]>::first_chunk::<16>) {
        // SAFETY: `c` is exactly 16 readable bytes; the load is unaligned.
        Some(c) => unsafe { _mm_loadu_si128(c.as_ptr().cast()) },
        None => _mm_setzero_si128(),
    }
}

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn ld256(b: &[u8], off: usize) -> __m256i {
    match b.get(off..).and_then(<[u8]>::first_chunk::<32>) {
        // SAFETY: `c` is exactly 32 readable bytes; the load is unaligned.
        Some(c) => unsafe { _mm256_loadu_si256(c.as_ptr().cast()) },
        None => _mm256_setzero_si256(),
    }
}

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn ld256_i8(b: &[i8], off: usize) -> __m256i {
    match b.get(off..).and_then(<[i8]>::first_chunk::<32>) {
        // SAFETY: `c` is exactly 32 readable bytes; the load is unaligned.
        Some(c) => unsafe { _mm256_loadu_si256(c.as_ptr().cast()) },
        None => _mm256_setzero_si256(),
    }
}

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn ld512_i8(b: &[i8], off: usize) -> __m512i {
    match b.get(off..).and_then(<[i8]>::first_chunk::<64>) {
        // SAFETY: `c` is exactly 64 readable bytes; the load is unaligned.
        Some(c) => unsafe { _mm512_loadu_si512(c.as_ptr().cast()) },
        None => _mm512_setzero_si512(),
    }
}

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn ld_ps8(b: &[f32], off: usize) -> __m256 {
    match b.get(off..).and_then(<[f32]>::first_chunk::<8>) {
        // SAFETY: `c` is exactly 8 readable f32; the load is unaligned.
        Some(c) => unsafe { _mm256_loadu_ps(c.as_ptr()) },
        None => _mm256_setzero_ps(),
    }
}

/// Fixed-tree sum of 16 lanes (high 8 onto low 8, then 4, 2, 1) plus an 8-lane vector added
/// after the first step.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn reduce(acc: __m512, tail: __m256) -> f32 {
    let lo = _mm512_castps512_ps256(acc);
    let hi = _mm256_castsi256_ps(_mm512_extracti64x4_epi64::<1>(_mm512_castps_si512(acc)));
    let v = _mm256_add_ps(_mm256_add_ps(lo, hi), tail);
    let v4 = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let v2 = _mm_add_ps(v4, _mm_movehl_ps(v4, v4));
    let v1 = _mm_add_ss(v2, _mm_shuffle_ps::<1>(v2, v2));
    _mm_cvtss_f32(v1)
}

/// Lane-permute indices broadcasting scale `2k` to lanes 0..8 and `2k+1` to lanes 8..16.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn pair_idx(k: i32) -> __m512i {
    let a = 2 * k;
    let b = 2 * k + 1;
    _mm512_setr_epi32(a, a, a, a, a, a, a, a, b, b, b, b, b, b, b, b)
}

/// 8 f16 values (as u16) → 8 f32.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn halves8(h: [u16; 8]) -> __m256 {
    let v = _mm_setr_epi16(
        h[0] as i16,
        h[1] as i16,
        h[2] as i16,
        h[3] as i16,
        h[4] as i16,
        h[5] as i16,
        h[6] as i16,
        h[7] as i16,
    );
    _mm256_cvtph_ps(v)
}

// ------------------------------------------------------------------ Q4_1 · Q8_1

/// Q4_1 weights · Q8_1 activations.
pub(crate) fn dot_q4_1(w: &[u8], _: &[f32], a: QActRef<'_>) -> f32 {
    let nb = w.len() / Q4_1_BYTES;
    let ok =
        w.len() == nb * Q4_1_BYTES && a.qs.len() >= nb * QK && a.d.len() >= nb && a.s.len() >= nb;
    if !FEATURES_OK() || !ok {
        return scalar::dot_q4_1(w, a);
    }
    // SAFETY: the AVX-512 F/BW/VL/VNNI, AVX2, FMA and F16C features were detected just above.
    unsafe { q4_1_inner(w, a) }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn q4_1_inner(w: &[u8], a: QActRef<'_>) -> f32 {
    const G: usize = 8 * Q4_1_BYTES;
    let m4 = _mm512_set1_epi8(0x0f);
    // 128-bit lanes 1 and 3 shift right by 4 (high nibbles), lanes 0 and 2 keep the low ones.
    let k4 = 0x0004_0004_0004_0004i64;
    let shifts = _mm512_set_epi64(k4, k4, 0, 0, k4, k4, 0, 0);
    let dup = _mm512_set_epi64(3, 2, 3, 2, 1, 0, 1, 0);
    let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 0, 0, 0, 0, 0, 0, 0, 0);
    let odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 0, 0, 0, 0, 0, 0, 0, 0);
    let idx = [pair_idx(0), pair_idx(1), pair_idx(2), pair_idx(3)];
    let mut acc = _mm512_setzero_ps();
    let mut accm = _mm256_setzero_ps();
    let (groups, tail) = w.as_chunks::<G>();
    let ng = groups.len();
    for (g, wg) in groups.iter().enumerate() {
        let mut dm = [0u32; 8];
        for (k, v) in dm.iter_mut().enumerate() {
            let o = k * Q4_1_BYTES;
            *v = u32::from_le_bytes([wg[o], wg[o + 1], wg[o + 2], wg[o + 3]]);
        }
        // [d0 m0 d1 m1 … d7 m7] as 16 halves → 16 floats
        let dmv = _mm512_cvtph_ps(_mm256_setr_epi32(
            dm[0] as i32,
            dm[1] as i32,
            dm[2] as i32,
            dm[3] as i32,
            dm[4] as i32,
            dm[5] as i32,
            dm[6] as i32,
            dm[7] as i32,
        ));
        let dx = _mm512_castps512_ps256(_mm512_permutexvar_ps(even, dmv));
        let mx = _mm512_castps512_ps256(_mm512_permutexvar_ps(odd, dmv));
        let dy = ld_ps8(a.d, 8 * g);
        let sy = ld_ps8(a.s, 8 * g);
        accm = _mm256_fmadd_ps(mx, sy, accm);
        let dxy = _mm512_castps256_ps512(_mm256_mul_ps(dx, dy));
        for (k, ik) in idx.iter().enumerate() {
            let q0 = ld128(wg, 2 * k * Q4_1_BYTES + 4);
            let q1 = ld128(wg, (2 * k + 1) * Q4_1_BYTES + 4);
            let v = _mm256_inserti128_si256::<1>(_mm256_castsi128_si256(q0), q1);
            let z = _mm512_permutexvar_epi64(dup, _mm512_castsi256_si512(v));
            let z = _mm512_and_si512(_mm512_srlv_epi16(z, shifts), m4);
            let y = ld512_i8(a.qs, (8 * g + 2 * k) * QK);
            let p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), z, y);
            let sc = _mm512_permutexvar_ps(*ik, dxy);
            acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), sc, acc);
        }
    }
    let m4y = _mm256_set1_epi8(0x0f);
    let mut acct = _mm256_setzero_ps();
    let mut summs = 0.0f32;
    for (j, b) in tail.as_chunks::<Q4_1_BYTES>().0.iter().enumerate() {
        let i = 8 * ng + j;
        let q = ld128(b, 4);
        let v = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q, 4), q), m4y);
        let y = ld256_i8(a.qs, i * QK);
        let p = _mm256_dpbusd_epi32(_mm256_setzero_si256(), v, y);
        let dy = a.d.get(i).copied().unwrap_or(0.0);
        let sy = a.s.get(i).copied().unwrap_or(0.0);
        let dxy = f16_to_f32(b[0], b[1]) * dy;
        acct = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(dxy), acct);
        summs += f16_to_f32(b[2], b[3]) * sy;
    }
    reduce(acc, _mm256_add_ps(acct, accm)) + summs
}

// ------------------------------------------------------------------ Q8_0 · Q8_0

/// Q8_0 weights · Q8_0 activations.
pub(crate) fn dot_q8_0(w: &[u8], _: &[f32], a: QActRef<'_>) -> f32 {
    let nb = w.len() / Q8_0_BYTES;
    let ok = w.len() == nb * Q8_0_BYTES && a.qs.len() >= nb * QK && a.d.len() >= nb;
    if !FEATURES_OK() || !ok {
        return scalar::dot_q8_0(w, a);
    }
    // SAFETY: the AVX-512 F/BW/VL/VNNI, AVX2, FMA and F16C features were detected just above.
    unsafe { q8_0_inner(w, a) }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn q8_0_inner(w: &[u8], a: QActRef<'_>) -> f32 {
    const G: usize = 8 * Q8_0_BYTES;
    let idx = [pair_idx(0), pair_idx(1), pair_idx(2), pair_idx(3)];
    let zero = _mm512_setzero_si512();
    let mut acc = _mm512_setzero_ps();
    let (groups, tail) = w.as_chunks::<G>();
    let ng = groups.len();
    for (g, wg) in groups.iter().enumerate() {
        let mut hs = [0u16; 8];
        for (k, v) in hs.iter_mut().enumerate() {
            let o = k * Q8_0_BYTES;
            *v = u16::from_le_bytes([wg[o], wg[o + 1]]);
        }
        let dx = halves8(hs);
        let dy = ld_ps8(a.d, 8 * g);
        let dxy = _mm512_castps256_ps512(_mm256_mul_ps(dx, dy));
        for (k, ik) in idx.iter().enumerate() {
            let x0 = ld256(wg, 2 * k * Q8_0_BYTES + 2);
            let x1 = ld256(wg, (2 * k + 1) * Q8_0_BYTES + 2);
            let x = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(x0), x1);
            let y = ld512_i8(a.qs, (8 * g + 2 * k) * QK);
            // |x| as unsigned bytes, the sign of x moved onto y
            let neg = _mm512_movepi8_mask(x);
            let ax = _mm512_abs_epi8(x);
            let sy = _mm512_mask_sub_epi8(y, neg, zero, y);
            let p = _mm512_dpbusd_epi32(zero, ax, sy);
            let sc = _mm512_permutexvar_ps(*ik, dxy);
            acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), sc, acc);
        }
    }
    let mut acct = _mm256_setzero_ps();
    for (j, b) in tail.as_chunks::<Q8_0_BYTES>().0.iter().enumerate() {
        let i = 8 * ng + j;
        let x = ld256(b, 2);
        let y = ld256_i8(a.qs, i * QK);
        let ax = _mm256_abs_epi8(x);
        let sy = _mm256_sign_epi8(y, x);
        let p = _mm256_dpbusd_epi32(_mm256_setzero_si256(), ax, sy);
        let dy = a.d.get(i).copied().unwrap_or(0.0);
        let dxy = f16_to_f32(b[0], b[1]) * dy;
        acct = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(dxy), acct);
    }
    reduce(acc, acct)
}

// ------------------------------------------------------------------ several activation rows

/// Q4_1 weights against several activation rows (each bitwise equal to [`dot_q4_1`]).
pub(crate) fn multi_q4_1(w: &[u8], acts: &[QActRef<'_>], out: &mut [f32]) {
    let nb = w.len() / Q4_1_BYTES;
    let ok = w.len() == nb * Q4_1_BYTES
        && acts.len() == out.len()
        && acts
            .iter()
            .all(|a| a.qs.len() >= nb * QK && a.d.len() >= nb && a.s.len() >= nb);
    if !FEATURES_OK() || !ok {
        return per_row(dot_q4_1, w, acts, out);
    }
    // SAFETY: the AVX-512 F/BW/VL/VNNI, AVX2, FMA and F16C features were detected just above.
    unsafe {
        // The kernels keep at most 4 rows of accumulators in registers.
        for (acts, out) in acts.chunks(4).zip(out.chunks_mut(4)) {
            match *acts {
                [a0, a1, a2, a3] => put(out, q4_1_multi(w, [a0, a1, a2, a3])),
                [a0, a1, a2] => put(out, q4_1_multi(w, [a0, a1, a2])),
                [a0, a1] => put(out, q4_1_multi(w, [a0, a1])),
                _ => per_row(dot_q4_1, w, acts, out),
            }
        }
    }
}

/// `q4_1_inner` with the weight unpack shared by the rows; per row the same lanes, the same
/// `fma` sequence and the same final reduction.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn q4_1_multi<const N: usize>(w: &[u8], a: [QActRef<'_>; N]) -> [f32; N] {
    const G: usize = 8 * Q4_1_BYTES;
    let m4 = _mm512_set1_epi8(0x0f);
    let k4 = 0x0004_0004_0004_0004i64;
    let shifts = _mm512_set_epi64(k4, k4, 0, 0, k4, k4, 0, 0);
    let dup = _mm512_set_epi64(3, 2, 3, 2, 1, 0, 1, 0);
    let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 0, 0, 0, 0, 0, 0, 0, 0);
    let odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 0, 0, 0, 0, 0, 0, 0, 0);
    let idx = [pair_idx(0), pair_idx(1), pair_idx(2), pair_idx(3)];
    let mut acc = [_mm512_setzero_ps(); N];
    let mut accm = [_mm256_setzero_ps(); N];
    let (groups, tail) = w.as_chunks::<G>();
    let ng = groups.len();
    for (g, wg) in groups.iter().enumerate() {
        let mut dm = [0u32; 8];
        for (k, v) in dm.iter_mut().enumerate() {
            let o = k * Q4_1_BYTES;
            *v = u32::from_le_bytes([wg[o], wg[o + 1], wg[o + 2], wg[o + 3]]);
        }
        let dmv = _mm512_cvtph_ps(_mm256_setr_epi32(
            dm[0] as i32,
            dm[1] as i32,
            dm[2] as i32,
            dm[3] as i32,
            dm[4] as i32,
            dm[5] as i32,
            dm[6] as i32,
            dm[7] as i32,
        ));
        let dx = _mm512_castps512_ps256(_mm512_permutexvar_ps(even, dmv));
        let mx = _mm512_castps512_ps256(_mm512_permutexvar_ps(odd, dmv));
        let mut dxy = [_mm512_setzero_ps(); N];
        for r in 0..N {
            let dy = ld_ps8(a[r].d, 8 * g);
            let sy = ld_ps8(a[r].s, 8 * g);
            accm[r] = _mm256_fmadd_ps(mx, sy, accm[r]);
            dxy[r] = _mm512_castps256_ps512(_mm256_mul_ps(dx, dy));
        }
        for (k, ik) in idx.iter().enumerate() {
            let q0 = ld128(wg, 2 * k * Q4_1_BYTES + 4);
            let q1 = ld128(wg, (2 * k + 1) * Q4_1_BYTES + 4);
            let v = _mm256_inserti128_si256::<1>(_mm256_castsi128_si256(q0), q1);
            let z = _mm512_permutexvar_epi64(dup, _mm512_castsi256_si512(v));
            let z = _mm512_and_si512(_mm512_srlv_epi16(z, shifts), m4);
            for r in 0..N {
                let y = ld512_i8(a[r].qs, (8 * g + 2 * k) * QK);
                let p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), z, y);
                let sc = _mm512_permutexvar_ps(*ik, dxy[r]);
                acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), sc, acc[r]);
            }
        }
    }
    let m4y = _mm256_set1_epi8(0x0f);
    let mut acct = [_mm256_setzero_ps(); N];
    let mut summs = [0.0f32; N];
    for (j, b) in tail.as_chunks::<Q4_1_BYTES>().0.iter().enumerate() {
        let i = 8 * ng + j;
        let q = ld128(b, 4);
        let v = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q, 4), q), m4y);
        let dx = f16_to_f32(b[0], b[1]);
        let mx = f16_to_f32(b[2], b[3]);
        for r in 0..N {
            let y = ld256_i8(a[r].qs, i * QK);
            let p = _mm256_dpbusd_epi32(_mm256_setzero_si256(), v, y);
            let dy = a[r].d.get(i).copied().unwrap_or(0.0);
            let sy = a[r].s.get(i).copied().unwrap_or(0.0);
            let dxy = dx * dy;
            acct[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(dxy), acct[r]);
            summs[r] += mx * sy;
        }
    }
    let mut out = [0.0f32; N];
    for r in 0..N {
        out[r] = reduce(acc[r], _mm256_add_ps(acct[r], accm[r])) + summs[r];
    }
    out
}

/// Q8_0 weights against several activation rows (each bitwise equal to [`dot_q8_0`]).
pub(crate) fn multi_q8_0(w: &[u8], acts: &[QActRef<'_>], out: &mut [f32]) {
    let nb = w.len() / Q8_0_BYTES;
    let ok = w.len() == nb * Q8_0_BYTES
        && acts.len() == out.len()
        && acts
            .iter()
            .all(|a| a.qs.len() >= nb * QK && a.d.len() >= nb);
    if !FEATURES_OK() || !ok {
        return per_row(dot_q8_0, w, acts, out);
    }
    // SAFETY: the AVX-512 F/BW/VL/VNNI, AVX2, FMA and F16C features were detected just above.
    unsafe {
        // The kernels keep at most 4 rows of accumulators in registers.
        for (acts, out) in acts.chunks(4).zip(out.chunks_mut(4)) {
            match *acts {
                [a0, a1, a2, a3] => put(out, q8_0_multi(w, [a0, a1, a2, a3])),
                [a0, a1, a2] => put(out, q8_0_multi(w, [a0, a1, a2])),
                [a0, a1] => put(out, q8_0_multi(w, [a0, a1])),
                _ => per_row(dot_q8_0, w, acts, out),
            }
        }
    }
}

/// `q8_0_inner` with |x| and the sign mask shared by the rows; per row the same lanes, the
/// same `fma` sequence and the same final reduction.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn q8_0_multi<const N: usize>(w: &[u8], a: [QActRef<'_>; N]) -> [f32; N] {
    const G: usize = 8 * Q8_0_BYTES;
    let idx = [pair_idx(0), pair_idx(1), pair_idx(2), pair_idx(3)];
    let zero = _mm512_setzero_si512();
    let mut acc = [_mm512_setzero_ps(); N];
    let (groups, tail) = w.as_chunks::<G>();
    let ng = groups.len();
    for (g, wg) in groups.iter().enumerate() {
        let mut hs = [0u16; 8];
        for (k, v) in hs.iter_mut().enumerate() {
            let o = k * Q8_0_BYTES;
            *v = u16::from_le_bytes([wg[o], wg[o + 1]]);
        }
        let dx = halves8(hs);
        let mut dxy = [_mm512_setzero_ps(); N];
        for r in 0..N {
            let dy = ld_ps8(a[r].d, 8 * g);
            dxy[r] = _mm512_castps256_ps512(_mm256_mul_ps(dx, dy));
        }
        for (k, ik) in idx.iter().enumerate() {
            let x0 = ld256(wg, 2 * k * Q8_0_BYTES + 2);
            let x1 = ld256(wg, (2 * k + 1) * Q8_0_BYTES + 2);
            let x = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(x0), x1);
            let neg = _mm512_movepi8_mask(x);
            let ax = _mm512_abs_epi8(x);
            for r in 0..N {
                let y = ld512_i8(a[r].qs, (8 * g + 2 * k) * QK);
                let sy = _mm512_mask_sub_epi8(y, neg, zero, y);
                let p = _mm512_dpbusd_epi32(zero, ax, sy);
                let sc = _mm512_permutexvar_ps(*ik, dxy[r]);
                acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), sc, acc[r]);
            }
        }
    }
    let mut acct = [_mm256_setzero_ps(); N];
    for (j, b) in tail.as_chunks::<Q8_0_BYTES>().0.iter().enumerate() {
        let i = 8 * ng + j;
        let x = ld256(b, 2);
        let ax = _mm256_abs_epi8(x);
        let dx = f16_to_f32(b[0], b[1]);
        for r in 0..N {
            let y = ld256_i8(a[r].qs, i * QK);
            let sy = _mm256_sign_epi8(y, x);
            let p = _mm256_dpbusd_epi32(_mm256_setzero_si256(), ax, sy);
            let dy = a[r].d.get(i).copied().unwrap_or(0.0);
            let dxy = dx * dy;
            acct[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(dxy), acct[r]);
        }
    }
    let mut out = [0.0f32; N];
    for r in 0..N {
        out[r] = reduce(acc[r], acct[r]);
    }
    out
}

// ------------------------------------------------ AVX2-equal kernels, two rows per register

/// Lane-permute indices broadcasting lane `k` to lanes 0..8 and lane `8 + k` to lanes 8..16.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn half_idx(k: i32) -> __m512i {
    let b = 8 + k;
    _mm512_setr_epi32(k, k, k, k, k, k, k, k, b, b, b, b, b, b, b, b)
}

/// `lo` in lanes 0..8, `hi` in lanes 8..16 (AVX-512F only, no DQ).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn join_ps(lo: __m256, hi: __m256) -> __m512 {
    _mm512_castsi512_ps(_mm512_inserti64x4::<1>(
        _mm512_castsi256_si512(_mm256_castps_si256(lo)),
        _mm256_castps_si256(hi),
    ))
}

/// Raw row pointers of several activation rows, for loads whose bounds the entry function
/// checked once (the hot loops would otherwise spend a third of their instructions on them).
#[derive(Clone, Copy)]
struct RowPtrs {
    qs: *const i8,
    d: *const f32,
}

impl RowPtrs {
    fn of(a: &QActRef<'_>) -> RowPtrs {
        RowPtrs {
            qs: a.qs.as_ptr(),
            d: a.d.as_ptr(),
        }
    }
}

/// Row pointers of activation rows `i0 .. i0 + 2P` in pairs (the caller checked `2P` rows
/// are left).
fn pair_ptrs<const P: usize>(acts: &[QActRef<'_>], i0: usize) -> [[RowPtrs; 2]; P] {
    std::array::from_fn(|p| {
        [
            RowPtrs::of(&acts[i0 + 2 * p]),
            RowPtrs::of(&acts[i0 + 2 * p + 1]),
        ]
    })
}

/// Writes pair results to `out[at ..]` in activation order.
#[inline]
fn put_pairs<const P: usize>(out: &mut [f32], at: usize, v: [[f32; 2]; P]) {
    if let Some(o) = out.get_mut(at..at + 2 * P) {
        for (o, x) in o.iter_mut().zip(v.as_flattened()) {
            *o = *x;
        }
    }
}

/// Whether every activation row holds at least `nb` blocks of `per_block` quants.
fn rows_hold(acts: &[QActRef<'_>], nb: usize, per_block: usize) -> bool {
    acts.iter()
        .all(|a| a.qs.len() >= nb * per_block && a.d.len() >= nb)
}

/// Kernels bitwise equal to the AVX2 row-dot of a signed 32-element block type (whose weights
/// fit in 5 bits, so AVX2's `maddubs` never saturates), for several activation rows. Where
/// AVX2 gets each i32 lane from `maddubs` + `madd`, `vpdpbusd` gets the same lane (the sum of
/// the same 4 byte products) in one instruction; two rows share one 512-bit register, and
/// per lane the float steps are AVX2's: `dxy = dx·dy`, `acc = fma(dxy, float(lane), acc)`
/// block after block, then `hsum8(acc) + 0.0` per row.
macro_rules! vnni_pair_kernel {
    ($multi:ident, $inner:ident, $avx2_dot:path, $bytes:expr, |$b:ident| $unpack:expr) => {
        /// Every row of `w` (rows of `rb` bytes) against every activation row; `out` is
        /// `rows × acts` row-major. Checks and row pointers are set up once per call, not once
        /// per weight row.
        pub(crate) fn $multi(w: &[u8], rb: usize, acts: &[QActRef<'_>], out: &mut [f32]) {
            let m = acts.len();
            let nb = rb / $bytes;
            let ok = rb > 0
                && rb == nb * $bytes
                && w.len() % rb == 0
                && out.len() == w.len() / rb * m
                && rows_hold(acts, nb, QK);
            if !FEATURES_OK() || !ok {
                return over_rows(w, rb, acts, out, |wr, a, o| per_row($avx2_dot, wr, a, o));
            }
            let rows = w.chunks_exact(rb).enumerate();
            let mut i0 = 0;
            while i0 < m {
                let left = m - i0;
                if left >= 8 {
                    let p = pair_ptrs::<4>(acts, i0);
                    for (k, wr) in rows.clone() {
                        // SAFETY: the AVX-512 F/BW/VL/VNNI, AVX2, FMA and F16C features were
                        // detected just above, `wr` is whole blocks and every activation row
                        // holds at least `nb` blocks.
                        put_pairs(out, k * m + i0, unsafe { $inner(wr, &p) });
                    }
                    i0 += 8;
                } else if left >= 4 {
                    let p = pair_ptrs::<2>(acts, i0);
                    for (k, wr) in rows.clone() {
                        // SAFETY: as above.
                        put_pairs(out, k * m + i0, unsafe { $inner(wr, &p) });
                    }
                    i0 += 4;
                } else if left >= 2 {
                    let p = pair_ptrs::<1>(acts, i0);
                    for (k, wr) in rows.clone() {
                        // SAFETY: as above.
                        put_pairs(out, k * m + i0, unsafe { $inner(wr, &p) });
                    }
                    i0 += 2;
                } else {
                    for (k, wr) in rows.clone() {
                        if let (Some(o), Some(a)) = (out.get_mut(k * m + i0), acts.get(i0)) {
                            *o = $avx2_dot(wr, &[], *a);
                        }
                    }
                    i0 += 1;
                }
            }
        }

        /// # Safety
        /// The CPU has this module's features, `w` is whole blocks and every row pointer
        /// addresses at least as many blocks of quants and scales as `w` has.
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
        unsafe fn $inner<const P: usize>(w: &[u8], a: &[[RowPtrs; 2]; P]) -> [[f32; 2]; P] {
            const G: usize = 8 * $bytes;
            let idx = [
                half_idx(0),
                half_idx(1),
                half_idx(2),
                half_idx(3),
                half_idx(4),
                half_idx(5),
                half_idx(6),
                half_idx(7),
            ];
            let zero = _mm512_setzero_si512();
            let mut acc = [_mm512_setzero_ps(); P];
            let (groups, tail) = w.as_chunks::<G>();
            let ng = groups.len();
            for (g, wg) in groups.iter().enumerate() {
                let mut hs = [0u16; 8];
                for (k, v) in hs.iter_mut().enumerate() {
                    let o = k * $bytes;
                    *v = u16::from_le_bytes([wg[o], wg[o + 1]]);
                }
                let dx = halves8(hs);
                let mut dxy = [_mm512_setzero_ps(); P];
                for p in 0..P {
                    // SAFETY: scales 8g..8g+8 are below the block count of `w`.
                    let (ya, yb) = unsafe {
                        (
                            _mm256_loadu_ps(a[p][0].d.add(8 * g)),
                            _mm256_loadu_ps(a[p][1].d.add(8 * g)),
                        )
                    };
                    dxy[p] = join_ps(_mm256_mul_ps(dx, ya), _mm256_mul_ps(dx, yb));
                }
                for (k, ($b, ik)) in wg.as_chunks::<$bytes>().0.iter().zip(&idx).enumerate() {
                    let qx: __m256i = $unpack;
                    let qx2 = _mm512_broadcast_i64x4(qx);
                    let ax = _mm512_abs_epi8(qx2);
                    let neg = _mm512_movepi8_mask(qx2);
                    let off = (8 * g + k) * QK;
                    for p in 0..P {
                        // SAFETY: block 8g+k is below the block count of `w`.
                        let y = unsafe { ld_pair_ptr(a[p][0].qs.add(off), a[p][1].qs.add(off)) };
                        let sy = _mm512_mask_sub_epi8(y, neg, zero, y);
                        let q = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(zero, ax, sy));
                        let sc = _mm512_permutexvar_ps(*ik, dxy[p]);
                        acc[p] = _mm512_fmadd_ps(sc, q, acc[p]);
                    }
                }
            }
            for (j, $b) in tail.as_chunks::<$bytes>().0.iter().enumerate() {
                let i = 8 * ng + j;
                let qx: __m256i = $unpack;
                let qx2 = _mm512_broadcast_i64x4(qx);
                let ax = _mm512_abs_epi8(qx2);
                let neg = _mm512_movepi8_mask(qx2);
                let dx = f16_to_f32($b[0], $b[1]);
                for p in 0..P {
                    // SAFETY: block `i` is below the block count of `w`.
                    let (y, da, db) = unsafe {
                        (
                            ld_pair_ptr(a[p][0].qs.add(i * QK), a[p][1].qs.add(i * QK)),
                            *a[p][0].d.add(i),
                            *a[p][1].d.add(i),
                        )
                    };
                    let sy = _mm512_mask_sub_epi8(y, neg, zero, y);
                    let q = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(zero, ax, sy));
                    let sc = join_ps(_mm256_set1_ps(dx * da), _mm256_set1_ps(dx * db));
                    acc[p] = _mm512_fmadd_ps(sc, q, acc[p]);
                }
            }
            let mut out = [[0.0f32; 2]; P];
            for p in 0..P {
                let lo = _mm512_castps512_ps256(acc[p]);
                let hi = _mm256_castsi256_ps(_mm512_extracti64x4_epi64::<1>(_mm512_castps_si512(
                    acc[p],
                )));
                // `+ 0.0` as AVX2's `hsum8(acc) + summs` with no min term: it turns −0 into +0.
                out[p] = [hsum8(lo) + 0.0, hsum8(hi) + 0.0];
            }
            out
        }
    };
}

/// Two 32-byte loads side by side in one register.
///
/// # Safety
/// `ya` and `yb` each address 32 readable bytes.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn ld_pair_ptr(ya: *const i8, yb: *const i8) -> __m512i {
    // SAFETY: the caller guarantees 32 readable bytes at each pointer; loads are unaligned.
    unsafe {
        _mm512_inserti64x4::<1>(
            _mm512_castsi256_si512(_mm256_loadu_si256(ya.cast())),
            _mm256_loadu_si256(yb.cast()),
        )
    }
}

vnni_pair_kernel!(
    multi_q5_0_vnni,
    q5_0_pairs,
    avx2::dot_q5_0,
    Q5_0_BYTES,
    |b| {
        let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
        let hi = _mm256_andnot_si256(bytes_from_bits(qh), _mm256_set1_epi8(0xf0u8 as i8));
        _mm256_or_si256(nibbles(ld128(b, 6)), hi)
    }
);

vnni_pair_kernel!(
    multi_q4_0_vnni,
    q4_0_pairs,
    avx2::dot_q4_0,
    Q4_0_BYTES,
    |b| _mm256_sub_epi8(nibbles(ld128(b, 2)), _mm256_set1_epi8(8))
);

// ------------------------------------------- k-quants, AVX2-equal (exact integers per block)

/// Whether every row holds `nb` Q8_K super-blocks (quants, scales, sums of 16).
fn k_rows_hold(acts: &[QActRef<'_>], nb: usize) -> bool {
    acts.iter()
        .all(|a| a.qs.len() >= nb * QK_K && a.d.len() >= nb && a.bsums.len() >= nb * 16)
}

/// The wrapping sums of the 16 lanes of `a` and of the 8 lanes of `b` (exact integers, so
/// any order gives the values of the AVX2 kernels' sums).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn sum_pair(a: __m512i, b: __m256i) -> (i32, i32) {
    let a8 = _mm256_add_epi32(_mm512_castsi512_si256(a), _mm512_extracti64x4_epi64::<1>(a));
    let h = _mm256_hadd_epi32(a8, b);
    let h = _mm256_hadd_epi32(h, h);
    let s = _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256::<1>(h));
    (_mm_cvtsi128_si32(s), _mm_extract_epi32::<1>(s))
}

/// Sum of the 8 i32 lanes (wrapping; exact for the kernels' values).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn hsum_i32(v: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
    let s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<1>(s));
    _mm_cvtsi128_si32(s)
}

/// Calls `inner` on groups of up to 8 rows (one 512-bit accumulator per row, so all of them
/// stay in registers).
macro_rules! k_groups {
    ($inner:ident, $w:expr, $acts:expr, $out:expr, $fallback:path) => {
        for (acts, out) in $acts.chunks(8).zip($out.chunks_mut(8)) {
            // SAFETY (all arms): the entry function detected the features and checked that
            // `w` is whole super-blocks and that every row holds as many.
            match *acts {
                [a0, a1, a2, a3, a4, a5, a6, a7] => {
                    put(out, unsafe { $inner($w, [a0, a1, a2, a3, a4, a5, a6, a7]) })
                }
                [a0, a1, a2, a3, a4, a5, a6] => {
                    put(out, unsafe { $inner($w, [a0, a1, a2, a3, a4, a5, a6]) })
                }
                [a0, a1, a2, a3, a4, a5] => {
                    put(out, unsafe { $inner($w, [a0, a1, a2, a3, a4, a5]) })
                }
                [a0, a1, a2, a3, a4] => put(out, unsafe { $inner($w, [a0, a1, a2, a3, a4]) }),
                [a0, a1, a2, a3] => put(out, unsafe { $inner($w, [a0, a1, a2, a3]) }),
                [a0, a1, a2] => put(out, unsafe { $inner($w, [a0, a1, a2]) }),
                [a0, a1] => put(out, unsafe { $inner($w, [a0, a1]) }),
                _ => per_row($fallback, $w, acts, out),
            }
        }
    };
}

/// Q4_K weights against several activation rows, bitwise equal to AVX2's row-dot (which is
/// bitwise equal to the scalar one): the same exact integer sums per super-block — here one
/// 64-byte `maddubs` and one `vpdpwssd` (sub-block scale) per 64 quants — and the same
/// `k_update`.
pub(crate) fn multi_q4_k(w: &[u8], acts: &[QActRef<'_>], out: &mut [f32]) {
    let nb = w.len() / Q4_K_BYTES;
    let ok = w.len() == nb * Q4_K_BYTES && acts.len() == out.len() && k_rows_hold(acts, nb);
    if !FEATURES_OK() || !ok {
        return per_row(avx2::dot_q4_k, w, acts, out);
    }
    k_groups!(q4_k_rows, w, acts, out, avx2::dot_q4_k);
}

/// # Safety
/// The CPU has this module's features, `w` is whole super-blocks and every row holds as many.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn q4_k_rows<const N: usize>(w: &[u8], a: [QActRef<'_>; N]) -> [f32; N] {
    let qp = a.map(|r| r.qs.as_ptr());
    let bp = a.map(|r| r.bsums.as_ptr());
    let mut sumf = [0.0f32; N];
    let m4 = _mm512_set1_epi8(0x0f);
    // 16-bit shifts: 0 for the low 256 bits (low nibbles), 4 for the high 256 (high nibbles).
    let k4 = 0x0004_0004_0004_0004i64;
    let shifts = _mm512_set_epi64(k4, k4, k4, k4, 0, 0, 0, 0);
    for (j, b) in w.as_chunks::<Q4_K_BYTES>().0.iter().enumerate() {
        let (sc, mn) = unpack_scales_k4(b);
        let d = f16_to_f32(b[0], b[1]);
        let dmin = f16_to_f32(b[2], b[3]);
        let mut isum = [_mm512_setzero_si512(); N];
        for g in 0..4 {
            let q = _mm512_broadcast_i64x4(ld256(b, 16 + 32 * g));
            let z = _mm512_and_si512(_mm512_srlv_epi16(q, shifts), m4);
            let (s0, s1) = (sc[2 * g] as i16, sc[2 * g + 1] as i16);
            let scv = _mm512_inserti64x4::<1>(
                _mm512_castsi256_si512(_mm256_set1_epi16(s0)),
                _mm256_set1_epi16(s1),
            );
            for r in 0..N {
                // SAFETY: quants j·256 + 64g .. +64 are inside row `r` (checked by the caller).
                let y = unsafe { _mm512_loadu_si512(qp[r].add(j * QK_K + 64 * g).cast()) };
                isum[r] = _mm512_dpwssd_epi32(isum[r], _mm512_maddubs_epi16(z, y), scv);
            }
        }
        // mins[j/2] for the 16 sums of 16 quants, as i16 lanes
        let mn8 = _mm_cvtsi64_si128(i64::from_le_bytes(mn));
        let mn16 = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(mn8, mn8));
        for r in 0..N {
            // SAFETY: sums 16j..16j+16 are inside row `r` (checked by the caller).
            let bs = unsafe { _mm256_loadu_si256(bp[r].add(16 * j).cast()) };
            let (total, imin) = sum_pair(isum[r], _mm256_madd_epi16(bs, mn16));
            let dy = a[r].d.get(j).copied().unwrap_or(0.0);
            sumf[r] = k_update(sumf[r], d, dmin, dy, total, imin);
        }
    }
    sumf
}

/// Q6_K weights against several activation rows, bitwise equal to AVX2's row-dot: the same
/// exact integer total per super-block (`maddubs` of 6-bit values never saturates, the
/// sub-block scales go in with `vpdpwssd`) and the same float update.
pub(crate) fn multi_q6_k(w: &[u8], acts: &[QActRef<'_>], out: &mut [f32]) {
    let nb = w.len() / Q6_K_BYTES;
    let ok = w.len() == nb * Q6_K_BYTES && acts.len() == out.len() && k_rows_hold(acts, nb);
    if !FEATURES_OK() || !ok {
        return per_row(avx2::dot_q6_k, w, acts, out);
    }
    k_groups!(q6_k_rows, w, acts, out, avx2::dot_q6_k);
}

/// # Safety
/// The CPU has this module's features, `w` is whole super-blocks and every row holds as many.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn q6_k_rows<const N: usize>(w: &[u8], a: [QActRef<'_>; N]) -> [f32; N] {
    let qp = a.map(|r| r.qs.as_ptr());
    let bp = a.map(|r| r.bsums.as_ptr());
    let mut sumf = [0.0f32; N];
    let m4 = _mm256_set1_epi8(0x0f);
    let m2 = _mm256_set1_epi8(3);
    // i16 lane l takes scale l / 8 (one scale per 16 quants).
    let spread = _mm512_set_epi16(
        3, 3, 3, 3, 3, 3, 3, 3, 2, 2, 2, 2, 2, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0,
        0, 0,
    );
    let join = |lo: __m256i, hi: __m256i| _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi);
    for (j, b) in w.as_chunks::<Q6_K_BYTES>().0.iter().enumerate() {
        let mut isum = [_mm512_setzero_si512(); N];
        for half in 0..2 {
            let ql0 = ld256(b, 64 * half);
            let ql1 = ld256(b, 64 * half + 32);
            let qh = ld256(b, 128 + 32 * half);
            let u0 = _mm256_or_si256(
                _mm256_and_si256(ql0, m4),
                _mm256_slli_epi16(_mm256_and_si256(qh, m2), 4),
            );
            let u1 = _mm256_or_si256(
                _mm256_and_si256(ql1, m4),
                _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2), m2), 4),
            );
            let u2 = _mm256_or_si256(
                _mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4),
                _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 4), m2), 4),
            );
            let u3 = _mm256_or_si256(
                _mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4),
                _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 6), m2), 4),
            );
            let (u01, u23) = (join(u0, u1), join(u2, u3));
            // The 8 signed scales of this half as i16: 0..4 for u0|u1, 4..8 for u2|u3.
            let o = 192 + 8 * half;
            let s8 = i64::from_le_bytes([
                b[o],
                b[o + 1],
                b[o + 2],
                b[o + 3],
                b[o + 4],
                b[o + 5],
                b[o + 6],
                b[o + 7],
            ]);
            let s16 = _mm512_castsi128_si512(_mm_cvtepi8_epi16(_mm_cvtsi64_si128(s8)));
            let sc01 = _mm512_permutexvar_epi16(spread, s16);
            let sc23 =
                _mm512_permutexvar_epi16(_mm512_add_epi16(spread, _mm512_set1_epi16(4)), s16);
            for r in 0..N {
                let yo = j * QK_K + 128 * half;
                // SAFETY: quants yo .. yo+128 are inside row `r` (checked by the caller).
                let (y01, y23) = unsafe {
                    (
                        _mm512_loadu_si512(qp[r].add(yo).cast()),
                        _mm512_loadu_si512(qp[r].add(yo + 64).cast()),
                    )
                };
                isum[r] = _mm512_dpwssd_epi32(isum[r], _mm512_maddubs_epi16(u01, y01), sc01);
                isum[r] = _mm512_dpwssd_epi32(isum[r], _mm512_maddubs_epi16(u23, y23), sc23);
            }
        }
        let d = f16_to_f32(b[208], b[209]);
        let sc16 = _mm256_cvtepi8_epi16(ld128(b, 192));
        for r in 0..N {
            // SAFETY: sums 16j..16j+16 are inside row `r` (checked by the caller).
            let bs = unsafe { _mm256_loadu_si256(bp[r].add(16 * j).cast()) };
            // Σ (u − 32)·y·sc = Σ u·y·sc − 32·Σ_g sc_g·bsum_g, all exact in i32
            let off = _mm256_slli_epi32::<5>(_mm256_madd_epi16(bs, sc16));
            let i8 = _mm256_add_epi32(
                _mm512_castsi512_si256(isum[r]),
                _mm512_extracti64x4_epi64::<1>(isum[r]),
            );
            let total = hsum_i32(_mm256_sub_epi32(i8, off));
            let dy = a[r].d.get(j).copied().unwrap_or(0.0);
            sumf[r] += (d * dy) * total as f32;
        }
    }
    sumf
}
