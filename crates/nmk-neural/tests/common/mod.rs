//! Helpers shared by the engine tests.
#![allow(dead_code)]

pub mod reference;
pub mod synthetic;

/// Deterministic pseudo-random weights.
pub struct Lcg(pub u64);
impl Lcg {
    pub fn next(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    pub fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.next() * scale).collect()
    }
}

/// Every logit of `got` (positions × vocab, row-major) within `rel` × the position's largest
/// reference magnitude (at least 1e-3) of `want`.
pub fn assert_close_to_reference(what: &str, got: &[f32], want: &[Vec<f64>], rel: f64) {
    for (p, w) in want.iter().enumerate() {
        let scale = w.iter().fold(1e-3f64, |a, v| a.max(v.abs()));
        for (i, &wv) in w.iter().enumerate() {
            let g = f64::from(got[p * w.len() + i]);
            assert!(
                (g - wv).abs() <= rel * scale,
                "{what} position {p} logit {i}: engine {g} reference {wv}"
            );
        }
    }
}
