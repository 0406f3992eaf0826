//! Greedy runs recorded row by row, and the bitwise comparison of two runs.
//!
//! A [`Trace`] holds the full-vocabulary logits the session handed out before each greedy choice
//! and after the last one, so two traces compare every step's logits, not only the tokens.

use sha2::{Digest, Sha256};

use crate::engine::{Result, SamplingParams, Session};

/// The tokens chosen greedily and the logits rows they were chosen from.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Trace {
    /// Tokens chosen, in order.
    pub tokens: Vec<u32>,
    /// Logits rows: row `i` is what token `i` was chosen from; a finished trace has one more
    /// row, the next-step logits after the last token.
    pub rows: Vec<Vec<f32>>,
}

impl Trace {
    /// Decodes `steps` greedy tokens from `s`, recording each step's logits.
    pub fn decode(&mut self, s: &mut Session, steps: usize) -> Result<()> {
        let greedy = SamplingParams::greedy();
        for _ in 0..steps {
            self.rows.push(s.logits()?.to_vec());
            let t = s.sample(&greedy)?;
            self.tokens.push(t);
            s.feed(t)?;
        }
        Ok(())
    }

    /// Records the next-step logits (forwarding the last fed token).
    pub fn finish(&mut self, s: &mut Session) -> Result<()> {
        self.rows.push(s.logits()?.to_vec());
        Ok(())
    }

    /// Prefills `prompt` into `s`, decodes `steps` tokens and finishes.
    pub fn run(s: &mut Session, prompt: &[u32], steps: usize) -> Result<Trace> {
        let mut t = Trace::default();
        s.prefill(prompt)?;
        t.decode(s, steps)?;
        t.finish(s)?;
        Ok(t)
    }
}

/// SHA-256 (hex) of token ids as little-endian `u32`s.
pub(crate) fn token_hash(ids: &[u32]) -> String {
    let mut h = Sha256::new();
    for id in ids {
        h.update(id.to_le_bytes());
    }
    hex(&h.finalize())
}

/// Lower-case hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// An accumulating comparison: the largest |Δ| seen, whether every bit matched, and what did
/// not.
#[derive(Debug, Clone)]
pub(crate) struct Cmp {
    /// Largest |Δ| over compared values (infinite for non-finite or shape differences).
    pub max: f64,
    /// True while every compared bit pattern (and token) matched.
    pub identical: bool,
    /// Logit rows compared.
    pub rows: usize,
    /// Descriptions of the first few mismatches.
    pub mismatches: Vec<String>,
    /// Ignore entries where either side is non-finite (masked logits).
    finite_only: bool,
}

impl Default for Cmp {
    fn default() -> Cmp {
        Cmp {
            max: 0.0,
            identical: true,
            rows: 0,
            mismatches: Vec::new(),
            finite_only: false,
        }
    }
}

impl Cmp {
    /// A comparison that skips entries where either side is ±∞ or NaN (for liveness contrasts
    /// whose mask sets logits to −∞: the finite rest tells whether anything else moved).
    pub fn finite_only() -> Cmp {
        Cmp {
            finite_only: true,
            ..Cmp::default()
        }
    }

    fn note(&mut self, what: String) {
        self.identical = false;
        if self.mismatches.len() < 8 {
            self.mismatches.push(what);
        }
    }

    /// Compares two logit rows bit for bit.
    pub fn row(&mut self, what: &str, a: &[f32], b: &[f32]) {
        self.rows += 1;
        if a.len() != b.len() {
            self.max = f64::INFINITY;
            self.note(format!("{what}: {} vs {} logits", a.len(), b.len()));
            return;
        }
        let mut row_max = 0.0f64;
        let mut differs = false;
        for (&x, &y) in a.iter().zip(b) {
            if x.to_bits() == y.to_bits() {
                continue;
            }
            if self.finite_only && !(x.is_finite() && y.is_finite()) {
                continue;
            }
            differs = true;
            let d = (f64::from(x) - f64::from(y)).abs();
            row_max = row_max.max(if d.is_nan() { f64::INFINITY } else { d });
        }
        if differs {
            self.max = self.max.max(row_max);
            self.note(format!("{what}: max |Δ| {row_max:e}"));
        }
    }

    /// Compares two sequences of rows.
    pub fn rows(&mut self, what: &str, a: &[Vec<f32>], b: &[Vec<f32>]) {
        if a.len() != b.len() {
            self.max = f64::INFINITY;
            self.note(format!("{what}: {} vs {} rows", a.len(), b.len()));
        }
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            self.row(&format!("{what} row {i}"), x, y);
        }
    }

    /// Compares flat `rows × n_vocab` logits.
    pub fn flat(&mut self, what: &str, a: &[f32], b: &[f32], n_vocab: usize) {
        if a.len() != b.len() {
            self.max = f64::INFINITY;
            self.note(format!("{what}: {} vs {} values", a.len(), b.len()));
        }
        for (i, (x, y)) in a
            .chunks(n_vocab.max(1))
            .zip(b.chunks(n_vocab.max(1)))
            .enumerate()
        {
            self.row(&format!("{what} position {i}"), x, y);
        }
    }

    /// Compares token streams (a difference makes the comparison non-identical, and for a
    /// liveness contrast counts as a change even if no logit row was compared).
    pub fn tokens(&mut self, what: &str, a: &[u32], b: &[u32]) {
        if a != b {
            let at = a.iter().zip(b).position(|(x, y)| x != y);
            self.note(format!(
                "{what}: token streams differ (first at {at:?}, lengths {} and {})",
                a.len(),
                b.len()
            ));
        }
    }
}
