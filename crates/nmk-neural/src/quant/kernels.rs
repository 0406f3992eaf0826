//! Kernel selection: which dot-product implementation runs for a weight type on this CPU.
//!
//! The ISA is detected once per process ([`Isa::detect`], cached in a `OnceLock`) and every
//! [`QMatrix`](super::QMatrix) picks its row-dot function from it at construction, so every
//! call on a machine takes the same path.

use std::sync::OnceLock;

use super::act::QActRef;
use super::scalar;
use crate::gguf::GgmlType;

/// Row-dot signature shared by all kernels: one weight row (exactly `row_bytes`), the f32
/// activation row (used by float weights) and its quantized form (used by quantized weights).
/// Callers guarantee the lengths; kernels never read past the slices either way.
pub(crate) type RowDot = fn(&[u8], &[f32], QActRef<'_>) -> f32;

/// Several-rows signature: every weight row of `w` (rows of the given byte length) against
/// `acts` (quantized activation rows); `out` is `rows × acts.len()` row-major. Each output is
/// bitwise equal to the matching [`RowDot`] on that activation row: only the weight decoding
/// is shared between activation rows, every row keeps its own accumulators and reduction
/// order. Only quantized types have one.
pub(crate) type MultiDot = fn(&[u8], usize, &[QActRef<'_>], &mut [f32]);

/// The most activation rows a [`MultiDot`] gets at once: the AVX-512 kernels keep 8 rows of
/// accumulators in registers (two rows per register for 32-element types), so one weight
/// decode serves 8 rows; kernels with wider per-row state split the group themselves.
pub(crate) const MULTI_ROWS: usize = 8;

/// Runs a one-weight-row kernel `f` over every row of `w` (rows of `row_bytes`), writing the
/// outputs of row `k` to `out[k·m .. (k+1)·m]`, `m = acts.len()`.
pub(crate) fn over_rows(
    w: &[u8],
    row_bytes: usize,
    acts: &[QActRef<'_>],
    out: &mut [f32],
    f: impl Fn(&[u8], &[QActRef<'_>], &mut [f32]),
) {
    let m = acts.len();
    if row_bytes == 0 || m == 0 {
        return;
    }
    for (wr, o) in w.chunks_exact(row_bytes).zip(out.chunks_exact_mut(m)) {
        f(wr, acts, o);
    }
}

/// The fallback of every [`MultiDot`]: one single-row call per activation row.
pub(crate) fn per_row(dot: RowDot, w: &[u8], acts: &[QActRef<'_>], out: &mut [f32]) {
    for (o, a) in out.iter_mut().zip(acts) {
        *o = dot(w, &[], *a);
    }
}

/// Copies a kernel's per-row results into `out`.
#[inline]
pub(crate) fn put<const N: usize>(out: &mut [f32], v: [f32; N]) {
    for (o, x) in out.iter_mut().zip(v) {
        *o = x;
    }
}

/// An instruction-set level for the dot kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Isa {
    /// Portable Rust, no intrinsics.
    Scalar,
    /// AVX2 + FMA + F16C.
    Avx2,
    /// AVX-512 F/BW/VL + VNNI (on top of AVX2, FMA, F16C).
    Avx512,
}

static DETECTED: OnceLock<Isa> = OnceLock::new();

impl Isa {
    /// The best level this CPU supports (detected once, then cached).
    pub fn detect() -> Isa {
        *DETECTED.get_or_init(|| {
            if Isa::Avx512.is_available() {
                Isa::Avx512
            } else if Isa::Avx2.is_available() {
                Isa::Avx2
            } else {
                Isa::Scalar
            }
        })
    }

    /// Whether this CPU can run kernels of this level.
    pub fn is_available(self) -> bool {
        match self {
            Isa::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => super::x86::has_avx2(),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => super::x86::has_avx512(),
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// Every level, lowest first.
    pub const ALL: [Isa; 3] = [Isa::Scalar, Isa::Avx2, Isa::Avx512];
}

fn f32_dot(w: &[u8], x: &[f32], _: QActRef<'_>) -> f32 {
    scalar::dot_f32(w, x)
}
fn f16_dot(w: &[u8], x: &[f32], _: QActRef<'_>) -> f32 {
    scalar::dot_f16(w, x)
}
fn bf16_dot(w: &[u8], x: &[f32], _: QActRef<'_>) -> f32 {
    scalar::dot_bf16(w, x)
}
macro_rules! q_wrap {
    ($name:ident, $f:path) => {
        fn $name(w: &[u8], _: &[f32], a: QActRef<'_>) -> f32 {
            $f(w, a)
        }
    };
}
q_wrap!(q4_0_dot, scalar::dot_q4_0);
q_wrap!(q4_1_dot, scalar::dot_q4_1);
q_wrap!(q5_0_dot, scalar::dot_q5_0);
q_wrap!(q5_1_dot, scalar::dot_q5_1);
q_wrap!(q8_0_dot, scalar::dot_q8_0);
q_wrap!(q4_k_dot, scalar::dot_q4_k);
q_wrap!(q5_k_dot, scalar::dot_q5_k);
q_wrap!(q6_k_dot, scalar::dot_q6_k);

/// The scalar row-dot for `ty`, or `None` if `ty` has no dot product (Q8_1, Q8_K, integers).
pub(crate) fn scalar_dot(ty: GgmlType) -> Option<RowDot> {
    Some(match ty {
        GgmlType::F32 => f32_dot,
        GgmlType::F16 => f16_dot,
        GgmlType::BF16 => bf16_dot,
        GgmlType::Q4_0 => q4_0_dot,
        GgmlType::Q4_1 => q4_1_dot,
        GgmlType::Q5_0 => q5_0_dot,
        GgmlType::Q5_1 => q5_1_dot,
        GgmlType::Q8_0 => q8_0_dot,
        GgmlType::Q4_K => q4_k_dot,
        GgmlType::Q5_K => q5_k_dot,
        GgmlType::Q6_K => q6_k_dot,
        _ => return None,
    })
}

/// The row-dot for `ty` at level `isa` (falling back to a lower level where a type has no
/// kernel at `isa`), or `None` if `ty` has no dot product.
pub(crate) fn row_dot(ty: GgmlType, isa: Isa) -> Option<RowDot> {
    let base = scalar_dot(ty)?;
    #[cfg(target_arch = "x86_64")]
    {
        if isa == Isa::Avx512
            && let Some(f) = super::x86::avx512_dot(ty)
        {
            return Some(f);
        }
        if matches!(isa, Isa::Avx512 | Isa::Avx2)
            && let Some(f) = super::x86::avx2_dot(ty)
        {
            return Some(f);
        }
    }
    let _ = isa;
    Some(base)
}

/// The several-rows kernel matching [`row_dot`]`(ty, isa)` bit for bit, or `None` where that
/// level has none for `ty` (callers then loop over [`row_dot`]). It mirrors `row_dot`'s
/// fallbacks, so it never pairs with a row-dot of another level.
pub(crate) fn row_multi(ty: GgmlType, isa: Isa) -> Option<MultiDot> {
    #[cfg(target_arch = "x86_64")]
    {
        if isa == Isa::Avx512 && super::x86::avx512_dot(ty).is_some() {
            return super::x86::avx512_multi(ty);
        }
        if isa == Isa::Avx512
            && super::x86::avx2_dot(ty).is_some()
            && let Some(f) = super::x86::avx512_multi_for_avx2_dot(ty)
        {
            return Some(f);
        }
        if matches!(isa, Isa::Avx512 | Isa::Avx2) && super::x86::avx2_dot(ty).is_some() {
            return super::x86::avx2_multi(ty);
        }
    }
    let _ = (ty, isa);
    None
}

/// Which level actually runs `ty` when `isa` is requested (after fallbacks).
pub fn effective_isa(ty: GgmlType, isa: Isa) -> Isa {
    #[cfg(target_arch = "x86_64")]
    {
        if isa == Isa::Avx512 && super::x86::avx512_dot(ty).is_some() {
            return Isa::Avx512;
        }
        if matches!(isa, Isa::Avx512 | Isa::Avx2) && super::x86::avx2_dot(ty).is_some() {
            return Isa::Avx2;
        }
    }
    let _ = (ty, isa);
    Isa::Scalar
}
