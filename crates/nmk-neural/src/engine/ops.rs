//! Small f32 kernels of the forward pass: dot product, RMSNorm, SiLU gating, residual adds.
//!
//! Every reduction here has a fixed order that depends only on the length of its inputs (never
//! on the batch, the chunking or the thread count), which is what the determinism contract
//! needs. No fused multiply-add is introduced implicitly (Rust does not contract `a * b + c`),
//! so the same inputs give the same bits whichever caller inlines these.

/// Lanes of the fixed-order dot product.
const LANES: usize = 16;

/// Dot product over the common prefix of `a` and `b`, reduced in a fixed order: `LANES`
/// independent partial sums (element `i` goes to lane `i % LANES`), then a fixed pairwise tree
/// (lane `l` with `l + 8`, then with `l + 4`, then `(0 + 2) + (1 + 3)`).
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    // acc[k][c] is lane 4k + c.
    let mut acc = [[0f32; 4]; 4];
    let mut ca = a.chunks_exact(LANES);
    let mut cb = b.chunks_exact(LANES);
    for (x, y) in (&mut ca).zip(&mut cb) {
        // Fixed-size views let the compiler vectorize the lanes without bounds checks.
        if let (Ok(x), Ok(y)) = (<&[f32; LANES]>::try_from(x), <&[f32; LANES]>::try_from(y)) {
            for k in 0..4 {
                for c in 0..4 {
                    acc[k][c] += x[4 * k + c] * y[4 * k + c];
                }
            }
        }
    }
    for (l, (x, y)) in ca.remainder().iter().zip(cb.remainder()).enumerate() {
        acc[l / 4][l % 4] += x * y;
    }
    let mut s4 = [0f32; 4];
    for c in 0..4 {
        s4[c] = (acc[0][c] + acc[2][c]) + (acc[1][c] + acc[3][c]);
    }
    (s4[0] + s4[2]) + (s4[1] + s4[3])
}

/// `out = x / rms(x) · w` with `rms(x) = sqrt(mean(x²) + eps)`; the sum of squares is
/// accumulated sequentially in f64.
pub fn rms_norm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let mut ss = 0f64;
    for &v in x {
        ss += f64::from(v) * f64::from(v);
    }
    let n = x.len().max(1) as f64;
    let scale = (1.0 / (ss / n + f64::from(eps)).sqrt()) as f32;
    for ((o, &v), &g) in out.iter_mut().zip(x).zip(w) {
        *o = v * scale * g;
    }
}

/// SwiGLU gating in place: `gate[i] = silu(gate[i]) · up[i]`.
#[inline]
pub fn swiglu(gate: &mut [f32], up: &[f32]) {
    for (g, &u) in gate.iter_mut().zip(up) {
        let x = *g;
        *g = x / (1.0 + (-x).exp()) * u;
    }
}

/// `dst[i] += src[i]`.
#[inline]
pub fn add_assign(dst: &mut [f32], src: &[f32]) {
    for (d, &s) in dst.iter_mut().zip(src) {
        *d += s;
    }
}

/// `dst[i] += a · src[i]`.
#[inline]
pub fn axpy(dst: &mut [f32], a: f32, src: &[f32]) {
    for (d, &s) in dst.iter_mut().zip(src) {
        *d += a * s;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_matches_naive_on_small_ints() {
        let a: Vec<f32> = (0..37).map(|i| i as f32).collect();
        let b: Vec<f32> = (0..37).map(|i| (i % 5) as f32).collect();
        let naive: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert_eq!(dot(&a, &b), naive);
    }

    #[test]
    fn rms_norm_unit() {
        let x = [3.0f32, 4.0];
        let mut o = [0f32; 2];
        rms_norm(&x, &[1.0, 2.0], 0.0, &mut o);
        let r = (12.5f32).sqrt();
        assert!((o[0] - 3.0 / r).abs() < 1e-6 && (o[1] - 8.0 / r).abs() < 1e-6);
    }
}
