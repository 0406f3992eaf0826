//! Rotary position embedding at absolute positions.
//!
//! [`Rope`] holds the inverse frequencies (computed once, in f64); [`Rope::fill`] writes the
//! cos/sin table for a set of positions, and [`Rope::apply`] rotates the heads of one row of
//! queries or keys. The angle for pair `i` at position `p` is `p · scale · base^(−2i/n_rot)`,
//! evaluated in f64 and rounded once to f32, so a position's rotation does not depend on which
//! chunk it was computed in.

use super::config::{ModelConfig, RopeStyle};

/// Rotary embedding parameters of a model.
#[derive(Debug, Clone)]
pub struct Rope {
    style: RopeStyle,
    head_dim: usize,
    n_rot: usize,
    inv_freq: Vec<f64>,
}

impl Rope {
    /// Builds the frequency table from a validated configuration.
    pub fn new(cfg: &ModelConfig) -> Rope {
        let half = cfg.n_rot / 2;
        let base = f64::from(cfg.rope_freq_base);
        let scale = f64::from(cfg.rope_freq_scale);
        let inv_freq = (0..half)
            .map(|i| scale * base.powf(-2.0 * i as f64 / cfg.n_rot as f64))
            .collect();
        Rope {
            style: cfg.rope_style,
            head_dim: cfg.head_dim,
            n_rot: cfg.n_rot,
            inv_freq,
        }
    }

    /// Number of (cos, sin) pairs per position.
    pub fn pairs(&self) -> usize {
        self.inv_freq.len()
    }

    /// Writes `cos[j·pairs + i]`, `sin[j·pairs + i]` for each position `positions[j]`. The
    /// buffers are resized as needed (no allocation once they are large enough).
    pub fn fill(
        &self,
        positions: impl Iterator<Item = u64>,
        cos: &mut Vec<f32>,
        sin: &mut Vec<f32>,
    ) {
        cos.clear();
        sin.clear();
        for p in positions {
            let p = p as f64;
            for &f in &self.inv_freq {
                let theta = p * f;
                cos.push(theta.cos() as f32);
                sin.push(theta.sin() as f32);
            }
        }
    }

    /// Rotates every head of `row` (a concatenation of heads of `head_dim`) with the table
    /// entries `cos`, `sin` of one position (`pairs()` values each).
    pub fn apply(&self, row: &mut [f32], cos: &[f32], sin: &[f32]) {
        let half = self.n_rot / 2;
        for head in row.chunks_exact_mut(self.head_dim) {
            match self.style {
                RopeStyle::Normal => {
                    for ((pair, &c), &s) in head[..self.n_rot]
                        .chunks_exact_mut(2)
                        .zip(cos.iter())
                        .zip(sin.iter())
                    {
                        let (x0, x1) = (pair[0], pair[1]);
                        pair[0] = x0 * c - x1 * s;
                        pair[1] = x0 * s + x1 * c;
                    }
                }
                RopeStyle::Neox => {
                    let (lo, hi) = head[..self.n_rot].split_at_mut(half);
                    for (((a, b), &c), &s) in lo
                        .iter_mut()
                        .zip(hi.iter_mut())
                        .zip(cos.iter())
                        .zip(sin.iter())
                    {
                        let (x0, x1) = (*a, *b);
                        *a = x0 * c - x1 * s;
                        *b = x0 * s + x1 * c;
                    }
                }
            }
        }
    }
}
