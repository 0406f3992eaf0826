//! x86-64 SIMD dot kernels (AVX2 + FMA + F16C, and AVX-512 with VNNI), selected at run time.

use std::sync::OnceLock;

mod avx2;
mod avx512;

use super::kernels::{MultiDot, RowDot, over_rows};
use crate::gguf::GgmlType;

static AVX2: OnceLock<bool> = OnceLock::new();
static AVX512: OnceLock<bool> = OnceLock::new();

/// AVX2, FMA and F16C (detected once).
pub(crate) fn has_avx2() -> bool {
    *AVX2.get_or_init(|| {
        is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c")
    })
}

/// AVX-512 F/BW/VL/VNNI on top of [`has_avx2`] (detected once).
pub(crate) fn has_avx512() -> bool {
    *AVX512.get_or_init(|| {
        has_avx2()
            && is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vl")
            && is_x86_feature_detected!("avx512vnni")
    })
}

/// The AVX2 kernel for `ty`, if there is one.
pub(crate) fn avx2_dot(ty: GgmlType) -> Option<RowDot> {
    Some(match ty {
        GgmlType::F32 => avx2::dot_f32,
        GgmlType::F16 => avx2::dot_f16,
        GgmlType::BF16 => avx2::dot_bf16,
        GgmlType::Q4_0 => avx2::dot_q4_0,
        GgmlType::Q4_1 => avx2::dot_q4_1,
        GgmlType::Q5_0 => avx2::dot_q5_0,
        GgmlType::Q5_1 => avx2::dot_q5_1,
        GgmlType::Q8_0 => avx2::dot_q8_0,
        GgmlType::Q4_K => avx2::dot_q4_k,
        GgmlType::Q5_K => avx2::dot_q5_k,
        GgmlType::Q6_K => avx2::dot_q6_k,
        _ => return None,
    })
}

/// The AVX-512 kernel for `ty`, if there is one.
pub(crate) fn avx512_dot(ty: GgmlType) -> Option<RowDot> {
    Some(match ty {
        GgmlType::Q4_1 => avx512::dot_q4_1,
        GgmlType::Q8_0 => avx512::dot_q8_0,
        _ => return None,
    })
}

/// [`MultiDot`]s from one-weight-row kernels.
macro_rules! tiles {
    ($($name:ident = $f:path;)*) => {
        $(fn $name(w: &[u8], rb: usize, acts: &[super::act::QActRef<'_>], out: &mut [f32]) {
            over_rows(w, rb, acts, out, $f);
        })*
    };
}

tiles! {
    avx2_q4_0 = avx2::multi_q4_0;
    avx2_q4_1 = avx2::multi_q4_1;
    avx2_q5_0 = avx2::multi_q5_0;
    avx2_q5_1 = avx2::multi_q5_1;
    avx2_q8_0 = avx2::multi_q8_0;
    avx2_q4_k = avx2::multi_q4_k;
    avx2_q6_k = avx2::multi_q6_k;
    avx512_q4_1 = avx512::multi_q4_1;
    avx512_q8_0 = avx512::multi_q8_0;
    avx512_q4_k = avx512::multi_q4_k;
    avx512_q6_k = avx512::multi_q6_k;
}

/// The AVX2 several-activation-rows kernel for `ty`, matching [`avx2_dot`] bit for bit.
pub(crate) fn avx2_multi(ty: GgmlType) -> Option<MultiDot> {
    Some(match ty {
        GgmlType::Q4_0 => avx2_q4_0,
        GgmlType::Q4_1 => avx2_q4_1,
        GgmlType::Q5_0 => avx2_q5_0,
        GgmlType::Q5_1 => avx2_q5_1,
        GgmlType::Q8_0 => avx2_q8_0,
        GgmlType::Q4_K => avx2_q4_k,
        GgmlType::Q6_K => avx2_q6_k,
        _ => return None,
    })
}

/// The AVX-512 several-activation-rows kernel for `ty`, matching [`avx512_dot`] bit for bit.
pub(crate) fn avx512_multi(ty: GgmlType) -> Option<MultiDot> {
    Some(match ty {
        GgmlType::Q4_1 => avx512_q4_1,
        GgmlType::Q8_0 => avx512_q8_0,
        _ => return None,
    })
}

/// Several-rows kernels that use AVX-512 VNNI yet are bitwise equal to the AVX2 row-dot of
/// `ty` (for the types whose AVX-512 level runs the AVX2 row-dot).
pub(crate) fn avx512_multi_for_avx2_dot(ty: GgmlType) -> Option<MultiDot> {
    Some(match ty {
        GgmlType::Q4_0 => avx512::multi_q4_0_vnni,
        GgmlType::Q5_0 => avx512::multi_q5_0_vnni,
        GgmlType::Q4_K => avx512_q4_k,
        GgmlType::Q6_K => avx512_q6_k,
        _ => return None,
    })
}
