//! AVX2 + FMA + F16C dot kernels for every weight type.
//!
//! - F32/F16/BF16: two 8-lane accumulators = the scalar reference's 16 lanes, the tail and the
//!   final tree done exactly as the scalar code: bitwise equal to it.
//! - 32-element block types: per block a 32-byte unpack, `maddubs`/`madd` to 8 i32 lanes, then
//!   `acc = fma(float(lanes), dx·dy, acc)` (ggml's AVX2 scheme); the min term of Q4_1/Q5_1 is a
//!   scalar sum. Not bitwise equal to the scalar code (lane-wise float sums).
//! - k-quants: exact integer sums per super-block, reduced to scalars, then the scalar code's
//!   float update: bitwise equal to it.
//!
//! - Several activation rows (`multi_*`, prefill): the same per-row operations with the weight
//!   unpack done once for up to 4 rows: bitwise equal to the row kernels above.
//!
//! Every public function checks the CPU features and the slice lengths, falling back to the
//! scalar kernel when either check fails; inner functions only read through references to
//! fixed-size arrays obtained by safe slicing.
#![allow(unsafe_code)]

use std::arch::x86_64::*;

use super::super::act::QActRef;
use super::super::blocks::{
    Q4_0_BYTES, Q4_1_BYTES, Q4_K_BYTES, Q5_0_BYTES, Q5_1_BYTES, Q5_K_BYTES, Q6_K_BYTES, Q8_0_BYTES,
    QK, QK_K, unpack_scales_k4,
};
use super::super::kernels::{per_row, put};
use super::super::scalar::{self, k_mins, k_update, reduce16};
use super::has_avx2;

// ------------------------------------------------------------------ loads (sound anywhere)

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn ld128(b: &[u8], off: usize) -> __m128i {
    match b.get(off..).and_then(<[u8]>::first_chunk::<16>) {
        // SAFETY: `c` is exactly 16 readable bytes; the load is unaligned.
        Some(c) => unsafe { _mm_loadu_si128(c.as_ptr().cast()) },
        None => _mm_setzero_si128(),
    }
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn ld256(b: &[u8], off: usize) -> __m256i {
    match b.get(off..).and_then(<[u8]>::first_chunk::<32>) {
        // SAFETY: `c` is exactly 32 readable bytes; the load is unaligned.
        Some(c) => unsafe { _mm256_loadu_si256(c.as_ptr().cast()) },
        None => _mm256_setzero_si256(),
    }
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn ld256_i8(b: &[i8], off: usize) -> __m256i {
    match b.get(off..).and_then(<[i8]>::first_chunk::<32>) {
        // SAFETY: `c` is exactly 32 readable bytes; the load is unaligned.
        Some(c) => unsafe { _mm256_loadu_si256(c.as_ptr().cast()) },
        None => _mm256_setzero_si256(),
    }
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn ld_ps(b: &[f32], off: usize) -> __m256 {
    match b.get(off..).and_then(<[f32]>::first_chunk::<8>) {
        // SAFETY: `c` is exactly 8 readable f32; the load is unaligned.
        Some(c) => unsafe { _mm256_loadu_ps(c.as_ptr()) },
        None => _mm256_setzero_ps(),
    }
}

/// f16 → f32 with F16C (`vcvtph2ps`); exact, same value as `half`'s conversion.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn half_to_f32(lo: u8, hi: u8) -> f32 {
    let bits = u16::from_le_bytes([lo, hi]) as i32;
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits)))
}

// ------------------------------------------------------------------ float weights

/// F32 weights: 16 lanes as in `scalar::dot_f32`.
pub(crate) fn dot_f32(w: &[u8], x: &[f32], _: QActRef<'_>) -> f32 {
    if !has_avx2() || w.len() != x.len() * 4 {
        return scalar::dot_f32(w, x);
    }
    // SAFETY: AVX2, FMA and F16C were detected at run time just above.
    unsafe { f32_inner(w, x) }
}

#[target_feature(enable = "avx2,fma,f16c")]
fn f32_inner(w: &[u8], x: &[f32]) -> f32 {
    let (wc, wt) = w.as_chunks::<64>();
    let (xc, xt) = x.as_chunks::<16>();
    let mut a0 = _mm256_setzero_ps();
    let mut a1 = _mm256_setzero_ps();
    for (wb, xb) in wc.iter().zip(xc) {
        let w0 = _mm256_castsi256_ps(ld256(wb, 0));
        let w1 = _mm256_castsi256_ps(ld256(wb, 32));
        let (x0, x1) = (ld_ps(xb, 0), ld_ps(xb, 8));
        a0 = _mm256_fmadd_ps(w0, x0, a0);
        a1 = _mm256_fmadd_ps(w1, x1, a1);
    }
    let mut acc = store16(a0, a1);
    for (i, (c, xv)) in wt.as_chunks::<4>().0.iter().zip(xt).enumerate() {
        acc[i] = f32::from_le_bytes(*c).mul_add(*xv, acc[i]);
    }
    reduce16(acc)
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn store16(a0: __m256, a1: __m256) -> [f32; 16] {
    let mut acc = [0.0f32; 16];
    let (lo, hi) = acc.split_at_mut(8);
    // SAFETY: each half is exactly 8 f32; unaligned stores.
    unsafe {
        _mm256_storeu_ps(lo.as_mut_ptr(), a0);
        _mm256_storeu_ps(hi.as_mut_ptr(), a1);
    }
    acc
}

/// F16 weights.
pub(crate) fn dot_f16(w: &[u8], x: &[f32], _: QActRef<'_>) -> f32 {
    if !has_avx2() || w.len() != x.len() * 2 {
        return scalar::dot_f16(w, x);
    }
    // SAFETY: AVX2, FMA and F16C were detected at run time just above.
    unsafe { f16_inner(w, x) }
}

#[target_feature(enable = "avx2,fma,f16c")]
fn f16_inner(w: &[u8], x: &[f32]) -> f32 {
    let (wc, wt) = w.as_chunks::<32>();
    let (xc, xt) = x.as_chunks::<16>();
    let mut a0 = _mm256_setzero_ps();
    let mut a1 = _mm256_setzero_ps();
    for (wb, xb) in wc.iter().zip(xc) {
        let w0 = _mm256_cvtph_ps(ld128(wb, 0));
        let w1 = _mm256_cvtph_ps(ld128(wb, 16));
        let (x0, x1) = (ld_ps(xb, 0), ld_ps(xb, 8));
        a0 = _mm256_fmadd_ps(w0, x0, a0);
        a1 = _mm256_fmadd_ps(w1, x1, a1);
    }
    let mut acc = store16(a0, a1);
    for (i, (c, xv)) in wt.as_chunks::<2>().0.iter().zip(xt).enumerate() {
        acc[i] = half_to_f32(c[0], c[1]).mul_add(*xv, acc[i]);
    }
    reduce16(acc)
}

/// BF16 weights.
pub(crate) fn dot_bf16(w: &[u8], x: &[f32], _: QActRef<'_>) -> f32 {
    if !has_avx2() || w.len() != x.len() * 2 {
        return scalar::dot_bf16(w, x);
    }
    // SAFETY: AVX2, FMA and F16C were detected at run time just above.
    unsafe { bf16_inner(w, x) }
}

#[target_feature(enable = "avx2,fma,f16c")]
fn bf16_inner(w: &[u8], x: &[f32]) -> f32 {
    let (wc, wt) = w.as_chunks::<32>();
    let (xc, xt) = x.as_chunks::<16>();
    let mut a0 = _mm256_setzero_ps();
    let mut a1 = _mm256_setzero_ps();
    for (wb, xb) in wc.iter().zip(xc) {
        let w0 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(ld128(wb, 0)), 16));
        let w1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(ld128(wb, 16)), 16));
        let (x0, x1) = (ld_ps(xb, 0), ld_ps(xb, 8));
        a0 = _mm256_fmadd_ps(w0, x0, a0);
        a1 = _mm256_fmadd_ps(w1, x1, a1);
    }
    let mut acc = store16(a0, a1);
    for (i, (c, xv)) in wt.as_chunks::<2>().0.iter().zip(xt).enumerate() {
        let wv = f32::from_bits((u16::from_le_bytes(*c) as u32) << 16);
        acc[i] = wv.mul_add(*xv, acc[i]);
    }
    reduce16(acc)
}

// ------------------------------------------------------------------ 32-element blocks

/// ggml's `bytes_from_bits_32`: byte `j` = 0xFF where bit `j` of `x` is set.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn bytes_from_bits(x: u32) -> __m256i {
    {
        let shuf = _mm256_set_epi64x(
            0x0303_0303_0303_0303,
            0x0202_0202_0202_0202,
            0x0101_0101_0101_0101,
            0,
        );
        let bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(x as i32), shuf);
        let bit_mask = _mm256_set1_epi64x(0x7fbf_dfef_f7fb_fdfe);
        _mm256_cmpeq_epi8(_mm256_or_si256(bytes, bit_mask), _mm256_set1_epi64x(-1))
    }
}

/// 16 packed nibble bytes → 32 bytes (low nibbles first, then high nibbles).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn nibbles(q: __m128i) -> __m256i {
    {
        let hi = _mm_srli_epi16(q, 4);
        _mm256_and_si256(_mm256_set_m128i(hi, q), _mm256_set1_epi8(0x0f))
    }
}

/// Sum of unsigned × signed byte products in 8 i32 lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn mul_us(x: __m256i, y: __m256i) -> __m256i {
    _mm256_madd_epi16(_mm256_maddubs_epi16(x, y), _mm256_set1_epi16(1))
}

/// Sum of signed × signed byte products in 8 i32 lanes (sign moved onto `y`).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn mul_ss(x: __m256i, y: __m256i) -> __m256i {
    mul_us(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x))
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn hsum8(v: __m256) -> f32 {
    let mut a = [0.0f32; 8];
    // SAFETY: 8 f32 store into `a`.
    unsafe { _mm256_storeu_ps(a.as_mut_ptr(), v) };
    ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]))
}

macro_rules! block_kernel {
    (
        $pub_name:ident, $inner:ident, $multi_name:ident, $multi_inner:ident, $scalar:path,
        $bytes:expr, has_min: $has_min:expr, |$b:ident| $unpack:expr, $mul:ident
    ) => {
        pub(crate) fn $pub_name(w: &[u8], _: &[f32], a: QActRef<'_>) -> f32 {
            let nb = w.len() / $bytes;
            let ok = w.len() == nb * $bytes
                && a.qs.len() >= nb * QK
                && a.d.len() >= nb
                && (!$has_min || a.s.len() >= nb);
            if !has_avx2() || !ok {
                return $scalar(w, a);
            }
            // SAFETY: AVX2, FMA and F16C were detected at run time just above.
            unsafe { $inner(w, a) }
        }

        /// One weight row against several activation rows; each output is bitwise equal to
        /// the single-row kernel on that activation row.
        pub(crate) fn $multi_name(w: &[u8], acts: &[QActRef<'_>], out: &mut [f32]) {
            let nb = w.len() / $bytes;
            let ok = w.len() == nb * $bytes
                && acts.len() == out.len()
                && acts.iter().all(|a| {
                    a.qs.len() >= nb * QK && a.d.len() >= nb && (!$has_min || a.s.len() >= nb)
                });
            if !has_avx2() || !ok {
                return per_row($pub_name, w, acts, out);
            }
            // SAFETY: AVX2, FMA and F16C were detected at run time just above, and every
            // activation row holds at least `nb` blocks.
            unsafe {
                // The kernels keep at most 4 rows of accumulators in registers.
                for (acts, out) in acts.chunks(4).zip(out.chunks_mut(4)) {
                    match *acts {
                        [a0, a1, a2, a3] => put(out, $multi_inner(w, [a0, a1, a2, a3])),
                        [a0, a1, a2] => put(out, $multi_inner(w, [a0, a1, a2])),
                        [a0, a1] => put(out, $multi_inner(w, [a0, a1])),
                        _ => per_row($pub_name, w, acts, out),
                    }
                }
            }
        }

        /// The single-row loop of `$inner` with the weight unpack hoisted out of the rows: per
        /// row the same integer lanes, the same `fma` sequence and the same final `hsum8`.
        #[target_feature(enable = "avx2,fma,f16c")]
        fn $multi_inner<const N: usize>(w: &[u8], a: [QActRef<'_>; N]) -> [f32; N] {
            let mut acc = [_mm256_setzero_ps(); N];
            let mut summs = [0.0f32; N];
            for (i, $b) in w.as_chunks::<$bytes>().0.iter().enumerate() {
                let qx: __m256i = $unpack;
                let dx = half_to_f32($b[0], $b[1]);
                let mx = if $has_min {
                    half_to_f32($b[2], $b[3])
                } else {
                    0.0
                };
                for r in 0..N {
                    let qy = ld256_i8(a[r].qs, i * QK);
                    let p = _mm256_cvtepi32_ps($mul(qx, qy));
                    let dy = a[r].d.get(i).copied().unwrap_or(0.0);
                    let dxy = dx * dy;
                    acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(dxy), p, acc[r]);
                    if $has_min && let Some(sy) = a[r].s.get(i) {
                        summs[r] += mx * sy;
                    }
                }
            }
            let mut out = [0.0f32; N];
            for r in 0..N {
                out[r] = hsum8(acc[r]) + summs[r];
            }
            out
        }

        #[target_feature(enable = "avx2,fma,f16c")]
        fn $inner(w: &[u8], a: QActRef<'_>) -> f32 {
            let mut acc = _mm256_setzero_ps();
            let mut summs = 0.0f32;
            let ys = a.qs.as_chunks::<QK>().0;
            let zero_s = [0.0f32; 0];
            let ss: &[f32] = if $has_min { a.s } else { &zero_s };
            for (i, (($b, y), dy)) in w
                .as_chunks::<$bytes>()
                .0
                .iter()
                .zip(ys)
                .zip(a.d)
                .enumerate()
            {
                let qx: __m256i = $unpack;
                let qy = ld256_i8(y, 0);
                let p = _mm256_cvtepi32_ps($mul(qx, qy));
                let dxy = half_to_f32($b[0], $b[1]) * dy;
                acc = _mm256_fmadd_ps(_mm256_set1_ps(dxy), p, acc);
                if $has_min && let Some(sy) = ss.get(i) {
                    summs += half_to_f32($b[2], $b[3]) * sy;
                }
            }
            hsum8(acc) + summs
        }
    };
}

block_kernel!(dot_q4_0, q4_0_inner, multi_q4_0, q4_0_multi, scalar::dot_q4_0, Q4_0_BYTES, has_min: false,
    |b| _mm256_sub_epi8(nibbles(ld128(b, 2)), _mm256_set1_epi8(8)), mul_ss);

block_kernel!(dot_q4_1, q4_1_inner, multi_q4_1, q4_1_multi, scalar::dot_q4_1, Q4_1_BYTES, has_min: true,
    |b| nibbles(ld128(b, 4)), mul_us);

block_kernel!(dot_q5_0, q5_0_inner, multi_q5_0, q5_0_multi, scalar::dot_q5_0, Q5_0_BYTES, has_min: false,
    |b| {
        let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
        let hi = _mm256_andnot_si256(bytes_from_bits(qh), _mm256_set1_epi8(0xf0u8 as i8));
        _mm256_or_si256(nibbles(ld128(b, 6)), hi)
    }, mul_ss);

block_kernel!(dot_q5_1, q5_1_inner, multi_q5_1, q5_1_multi, scalar::dot_q5_1, Q5_1_BYTES, has_min: true,
    |b| {
        let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
        let hi = _mm256_and_si256(bytes_from_bits(qh), _mm256_set1_epi8(0x10));
        _mm256_or_si256(nibbles(ld128(b, 8)), hi)
    }, mul_us);

block_kernel!(dot_q8_0, q8_0_inner, multi_q8_0, q8_0_multi, scalar::dot_q8_0, Q8_0_BYTES, has_min: false,
    |b| ld256(b, 2), mul_ss);

// ------------------------------------------------------------------ k-quants

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn hsum_i32(v: __m256i) -> i32 {
    let mut a = [0i32; 8];
    // SAFETY: 8 i32 store into `a`.
    unsafe { _mm256_storeu_si256(a.as_mut_ptr().cast(), v) };
    a.iter().fold(0i32, |s, x| s.wrapping_add(*x))
}

fn k_ok(w: &[u8], bytes: usize, a: &QActRef<'_>) -> bool {
    let nb = w.len() / bytes;
    w.len() == nb * bytes && a.qs.len() >= nb * QK_K && a.d.len() >= nb && a.bsums.len() >= nb * 16
}

/// Q4_K weights (bitwise equal to the scalar kernel).
pub(crate) fn dot_q4_k(w: &[u8], _: &[f32], a: QActRef<'_>) -> f32 {
    if !has_avx2() || !k_ok(w, Q4_K_BYTES, &a) {
        return scalar::dot_q4_k(w, a);
    }
    // SAFETY: AVX2, FMA and F16C were detected at run time just above.
    unsafe { q4_k_inner(w, a) }
}

#[target_feature(enable = "avx2,fma,f16c")]
fn q4_k_inner(w: &[u8], a: QActRef<'_>) -> f32 {
    let mut sumf = 0.0f32;
    let it = w
        .as_chunks::<Q4_K_BYTES>()
        .0
        .iter()
        .zip(a.qs.as_chunks::<QK_K>().0)
        .zip(a.d.iter().zip(a.bsums.as_chunks::<16>().0));
    let m4 = _mm256_set1_epi8(0x0f);
    for ((b, y), (dy, bsums)) in it {
        let (sc, mn) = unpack_scales_k4(b);
        let mut isum = _mm256_setzero_si256();
        for g in 0..4 {
            let q = ld256(b, 16 + 32 * g);
            let lo = _mm256_and_si256(q, m4);
            let hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
            let p0 = mul_us(lo, ld256_i8(y, 64 * g));
            let p1 = mul_us(hi, ld256_i8(y, 64 * g + 32));
            let s0 = _mm256_mullo_epi32(p0, _mm256_set1_epi32(sc[2 * g] as i32));
            let s1 = _mm256_mullo_epi32(p1, _mm256_set1_epi32(sc[2 * g + 1] as i32));
            isum = _mm256_add_epi32(isum, _mm256_add_epi32(s0, s1));
        }
        let imin = k_mins(bsums, &mn);
        sumf = k_update(
            sumf,
            half_to_f32(b[0], b[1]),
            half_to_f32(b[2], b[3]),
            *dy,
            hsum_i32(isum),
            imin,
        );
    }
    sumf
}

/// Sum of unsigned × signed byte products, pairs of i16 lanes weighted by `sc` (i16 lanes),
/// in 8 i32 lanes: the same integers as `mullo(mul_us(x, y), sc)` when `sc` is constant per
/// i32 lane, without overflow for 6-bit × 8-bit × 8-bit inputs, and cheaper than `mullo`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn mul_us_scaled(x: __m256i, y: __m256i, sc: __m256i) -> __m256i {
    _mm256_madd_epi16(_mm256_maddubs_epi16(x, y), sc)
}

/// Q4_K weights against several activation rows (each bitwise equal to [`dot_q4_k`]).
pub(crate) fn multi_q4_k(w: &[u8], acts: &[QActRef<'_>], out: &mut [f32]) {
    let ok = acts.len() == out.len() && acts.iter().all(|a| k_ok(w, Q4_K_BYTES, a));
    if !has_avx2() || !ok {
        return per_row(dot_q4_k, w, acts, out);
    }
    // SAFETY: AVX2, FMA and F16C were detected at run time just above; lengths checked.
    unsafe {
        // The kernels keep at most 4 rows of accumulators in registers.
        for (acts, out) in acts.chunks(4).zip(out.chunks_mut(4)) {
            match *acts {
                [a0, a1, a2, a3] => put(out, q4_k_multi(w, [a0, a1, a2, a3])),
                [a0, a1, a2] => put(out, q4_k_multi(w, [a0, a1, a2])),
                [a0, a1] => put(out, q4_k_multi(w, [a0, a1])),
                _ => per_row(dot_q4_k, w, acts, out),
            }
        }
    }
}

/// Per super-block the same exact integers as `q4_k_inner` (wrapping i32 sums, so any
/// grouping gives the same value) and the same `k_update`, row by row.
#[target_feature(enable = "avx2,fma,f16c")]
fn q4_k_multi<const N: usize>(w: &[u8], a: [QActRef<'_>; N]) -> [f32; N] {
    let mut sumf = [0.0f32; N];
    let m4 = _mm256_set1_epi8(0x0f);
    for (j, b) in w.as_chunks::<Q4_K_BYTES>().0.iter().enumerate() {
        let (sc, mn) = unpack_scales_k4(b);
        let d = half_to_f32(b[0], b[1]);
        let dmin = half_to_f32(b[2], b[3]);
        let mut isum = [_mm256_setzero_si256(); N];
        for g in 0..4 {
            let q = ld256(b, 16 + 32 * g);
            let lo = _mm256_and_si256(q, m4);
            let hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
            let sc0 = _mm256_set1_epi16(sc[2 * g] as i16);
            let sc1 = _mm256_set1_epi16(sc[2 * g + 1] as i16);
            for r in 0..N {
                let yo = j * QK_K + 64 * g;
                let s0 = mul_us_scaled(lo, ld256_i8(a[r].qs, yo), sc0);
                let s1 = mul_us_scaled(hi, ld256_i8(a[r].qs, yo + 32), sc1);
                isum[r] = _mm256_add_epi32(isum[r], _mm256_add_epi32(s0, s1));
            }
        }
        for r in 0..N {
            let bsums = a[r].bsums.get(16 * j..16 * j + 16).unwrap_or(&[]);
            let imin = k_mins(bsums, &mn);
            let dy = a[r].d.get(j).copied().unwrap_or(0.0);
            sumf[r] = k_update(sumf[r], d, dmin, dy, hsum_i32(isum[r]), imin);
        }
    }
    sumf
}

/// Q6_K weights against several activation rows (each bitwise equal to [`dot_q6_k`]).
pub(crate) fn multi_q6_k(w: &[u8], acts: &[QActRef<'_>], out: &mut [f32]) {
    let ok = acts.len() == out.len() && acts.iter().all(|a| k_ok(w, Q6_K_BYTES, a));
    if !has_avx2() || !ok {
        return per_row(dot_q6_k, w, acts, out);
    }
    // SAFETY: AVX2, FMA and F16C were detected at run time just above; lengths checked.
    unsafe {
        // The kernels keep at most 4 rows of accumulators in registers.
        for (acts, out) in acts.chunks(4).zip(out.chunks_mut(4)) {
            match *acts {
                [a0, a1, a2, a3] => put(out, q6_k_multi(w, [a0, a1, a2, a3])),
                [a0, a1, a2] => put(out, q6_k_multi(w, [a0, a1, a2])),
                [a0, a1] => put(out, q6_k_multi(w, [a0, a1])),
                _ => per_row(dot_q6_k, w, acts, out),
            }
        }
    }
}

/// Per super-block the same exact integer total as `q6_k_inner` and the same float update.
#[target_feature(enable = "avx2,fma,f16c")]
fn q6_k_multi<const N: usize>(w: &[u8], a: [QActRef<'_>; N]) -> [f32; N] {
    let mut sumf = [0.0f32; N];
    let m4 = _mm256_set1_epi8(0x0f);
    let m2 = _mm256_set1_epi8(3);
    for (j, b) in w.as_chunks::<Q6_K_BYTES>().0.iter().enumerate() {
        let mut isum = [_mm256_setzero_si256(); N];
        for half in 0..2 {
            let ql0 = ld256(b, 64 * half);
            let ql1 = ld256(b, 64 * half + 32);
            let qh = ld256(b, 128 + 32 * half);
            let u = [
                _mm256_or_si256(
                    _mm256_and_si256(ql0, m4),
                    _mm256_slli_epi16(_mm256_and_si256(qh, m2), 4),
                ),
                _mm256_or_si256(
                    _mm256_and_si256(ql1, m4),
                    _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2), m2), 4),
                ),
                _mm256_or_si256(
                    _mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4),
                    _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 4), m2), 4),
                ),
                _mm256_or_si256(
                    _mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4),
                    _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 6), m2), 4),
                ),
            ];
            for (k, uk) in u.iter().enumerate() {
                // i16 lanes 0..7 come from elements 0..15 (scale 2k), lanes 8..15 from 16..31.
                let s0 = (b[192 + 8 * half + 2 * k] as i8) as i16;
                let s1 = (b[192 + 8 * half + 2 * k + 1] as i8) as i16;
                let scv = _mm256_setr_epi16(
                    s0, s0, s0, s0, s0, s0, s0, s0, s1, s1, s1, s1, s1, s1, s1, s1,
                );
                for r in 0..N {
                    let y = ld256_i8(a[r].qs, j * QK_K + 128 * half + 32 * k);
                    isum[r] = _mm256_add_epi32(isum[r], mul_us_scaled(*uk, y, scv));
                }
            }
        }
        let d = half_to_f32(b[208], b[209]);
        for r in 0..N {
            let mut off = 0i32;
            if let Some(bsums) = a[r].bsums.get(16 * j..16 * j + 16) {
                for g in 0..16 {
                    off += (b[192 + g] as i8) as i32 * bsums[g] as i32;
                }
            }
            let total = hsum_i32(isum[r]).wrapping_sub(off.wrapping_mul(32));
            let dy = a[r].d.get(j).copied().unwrap_or(0.0);
            sumf[r] += (d * dy) * total as f32;
        }
    }
    sumf
}

/// Q5_K weights (bitwise equal to the scalar kernel).
pub(crate) fn dot_q5_k(w: &[u8], _: &[f32], a: QActRef<'_>) -> f32 {
    if !has_avx2() || !k_ok(w, Q5_K_BYTES, &a) {
        return scalar::dot_q5_k(w, a);
    }
    // SAFETY: AVX2, FMA and F16C were detected at run time just above.
    unsafe { q5_k_inner(w, a) }
}

#[target_feature(enable = "avx2,fma,f16c")]
fn q5_k_inner(w: &[u8], a: QActRef<'_>) -> f32 {
    let mut sumf = 0.0f32;
    let it = w
        .as_chunks::<Q5_K_BYTES>()
        .0
        .iter()
        .zip(a.qs.as_chunks::<QK_K>().0)
        .zip(a.d.iter().zip(a.bsums.as_chunks::<16>().0));
    let m4 = _mm256_set1_epi8(0x0f);
    let one = _mm256_set1_epi8(1);
    for ((b, y), (dy, bsums)) in it {
        let (sc, mn) = unpack_scales_k4(b);
        let qh = ld256(b, 16);
        let mut isum = _mm256_setzero_si256();
        for g in 0..4 {
            let q = ld256(b, 48 + 32 * g);
            let sh0 = _mm_cvtsi32_si128(2 * g as i32);
            let sh1 = _mm_cvtsi32_si128(2 * g as i32 + 1);
            let h0 = _mm256_and_si256(_mm256_srl_epi16(qh, sh0), one);
            let h1 = _mm256_and_si256(_mm256_srl_epi16(qh, sh1), one);
            let lo = _mm256_or_si256(_mm256_and_si256(q, m4), _mm256_slli_epi16(h0, 4));
            let hi = _mm256_or_si256(
                _mm256_and_si256(_mm256_srli_epi16(q, 4), m4),
                _mm256_slli_epi16(h1, 4),
            );
            let p0 = mul_us(lo, ld256_i8(y, 64 * g));
            let p1 = mul_us(hi, ld256_i8(y, 64 * g + 32));
            let s0 = _mm256_mullo_epi32(p0, _mm256_set1_epi32(sc[2 * g] as i32));
            let s1 = _mm256_mullo_epi32(p1, _mm256_set1_epi32(sc[2 * g + 1] as i32));
            isum = _mm256_add_epi32(isum, _mm256_add_epi32(s0, s1));
        }
        let imin = k_mins(bsums, &mn);
        sumf = k_update(
            sumf,
            half_to_f32(b[0], b[1]),
            half_to_f32(b[2], b[3]),
            *dy,
            hsum_i32(isum),
            imin,
        );
    }
    sumf
}

/// Q6_K weights (bitwise equal to the scalar kernel).
pub(crate) fn dot_q6_k(w: &[u8], _: &[f32], a: QActRef<'_>) -> f32 {
    if !has_avx2() || !k_ok(w, Q6_K_BYTES, &a) {
        return scalar::dot_q6_k(w, a);
    }
    // SAFETY: AVX2, FMA and F16C were detected at run time just above.
    unsafe { q6_k_inner(w, a) }
}

#[target_feature(enable = "avx2,fma,f16c")]
fn q6_k_inner(w: &[u8], a: QActRef<'_>) -> f32 {
    let mut sumf = 0.0f32;
    let it = w
        .as_chunks::<Q6_K_BYTES>()
        .0
        .iter()
        .zip(a.qs.as_chunks::<QK_K>().0)
        .zip(a.d.iter().zip(a.bsums.as_chunks::<16>().0));
    let m4 = _mm256_set1_epi8(0x0f);
    let m2 = _mm256_set1_epi8(3);
    for ((b, y), (dy, bsums)) in it {
        let mut isum = _mm256_setzero_si256();
        for half in 0..2 {
            let ql0 = ld256(b, 64 * half);
            let ql1 = ld256(b, 64 * half + 32);
            let qh = ld256(b, 128 + 32 * half);
            // unsigned 6-bit values u = q + 32 for the four 32-runs of this half
            let u = [
                _mm256_or_si256(
                    _mm256_and_si256(ql0, m4),
                    _mm256_slli_epi16(_mm256_and_si256(qh, m2), 4),
                ),
                _mm256_or_si256(
                    _mm256_and_si256(ql1, m4),
                    _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2), m2), 4),
                ),
                _mm256_or_si256(
                    _mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4),
                    _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 4), m2), 4),
                ),
                _mm256_or_si256(
                    _mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4),
                    _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 6), m2), 4),
                ),
            ];
            for (k, uk) in u.iter().enumerate() {
                // i32 lanes 0..3 come from elements 0..15 (scale 2k), lanes 4..7 from 16..31.
                let p = mul_us(*uk, ld256_i8(y, 128 * half + 32 * k));
                let s0 = (b[192 + 8 * half + 2 * k] as i8) as i32;
                let s1 = (b[192 + 8 * half + 2 * k + 1] as i8) as i32;
                let scv = _mm256_setr_epi32(s0, s0, s0, s0, s1, s1, s1, s1);
                isum = _mm256_add_epi32(isum, _mm256_mullo_epi32(p, scv));
            }
        }
        // Σ (u − 32)·y·sc = Σ u·y·sc − 32·Σ_g sc_g·bsum_g
        let mut off = 0i32;
        for g in 0..16 {
            off += (b[192 + g] as i8) as i32 * bsums[g] as i32;
        }
        let total = hsum_i32(isum).wrapping_sub(off.wrapping_mul(32));
        sumf += (half_to_f32(b[208], b[209]) * dy) * total as f32;
    }
    sumf
}
