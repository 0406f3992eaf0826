//! Helpers shared by the engine tests.
#![allow(dead_code)]

pub mod quant;
pub mod reference;
pub mod synthetic;

pub use nmk_neural::models::synthetic_moe::Lcg;

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
