//! Token selection: greedy and seeded sampling (temperature, top-k, top-p, repetition penalty)
//! on our own PRNG.
//!
//! [`Rng`] is xoshiro256** seeded through SplitMix64: a fixed, documented algorithm whose whole
//! state is four `u64`s, kept in the session and in its snapshots, so a restored session draws
//! the same tokens. Selection is deterministic given the logits and the RNG state: candidates
//! are ordered by (logit descending, id ascending), sums run in that order in f64.

use super::error::{EngineError, Result};

/// xoshiro256** pseudo-random generator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    /// Seeds the state with SplitMix64 from `seed`.
    pub fn new(seed: u64) -> Rng {
        let mut x = seed;
        let mut next = || {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        Rng {
            s: [next(), next(), next(), next()],
        }
    }

    /// The raw state (for parking a session).
    pub fn state(&self) -> [u64; 4] {
        self.s
    }

    /// Rebuilds a generator from a raw state (an all-zero state is replaced by `Rng::new(0)`,
    /// since xoshiro never leaves it).
    pub fn from_state(s: [u64; 4]) -> Rng {
        if s == [0; 4] { Rng::new(0) } else { Rng { s } }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// A uniform float in `[0, 1)` with 53 random bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// How to choose the next token.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// 0 (or below) selects greedily (argmax, ties to the lowest id).
    pub temperature: f32,
    /// Keep only the `top_k` most likely tokens (0 = no limit).
    pub top_k: usize,
    /// Keep the smallest set of most likely tokens whose probability reaches `top_p`
    /// (1.0 = no limit).
    pub top_p: f32,
    /// Penalty for tokens among the last `repeat_last_n` (1.0 = none): a positive logit is
    /// divided by it, a negative one multiplied (llama.cpp's rule).
    pub repeat_penalty: f32,
    /// How many recent tokens the repetition penalty looks at.
    pub repeat_last_n: usize,
}

impl SamplingParams {
    /// Greedy selection, no penalty.
    pub fn greedy() -> SamplingParams {
        SamplingParams {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
        }
    }

    /// Sampling at `temperature` with top-k 40, top-p 0.95, no penalty.
    pub fn with_temperature(temperature: f32) -> SamplingParams {
        SamplingParams {
            temperature,
            top_k: 40,
            top_p: 0.95,
            ..SamplingParams::greedy()
        }
    }

    /// Checks the ranges.
    pub fn validate(&self) -> Result<()> {
        let bad = |name, reason: String| Err(EngineError::InvalidSampling { name, reason });
        if !self.temperature.is_finite() {
            return bad("temperature", format!("{} is not finite", self.temperature));
        }
        if !(self.top_p.is_finite() && self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad("top_p", format!("{} is not in (0, 1]", self.top_p));
        }
        if !(self.repeat_penalty.is_finite() && self.repeat_penalty > 0.0) {
            return bad(
                "repeat_penalty",
                format!("{} is not a positive number", self.repeat_penalty),
            );
        }
        Ok(())
    }
}

impl Default for SamplingParams {
    fn default() -> SamplingParams {
        SamplingParams::greedy()
    }
}

/// Reusable buffers for selection.
#[derive(Debug, Clone, Default)]
pub struct Sampler {
    logits: Vec<f32>,
    cand: Vec<(u32, f32)>,
    probs: Vec<f64>,
}

/// Index of the largest value (ties to the lowest index; NaN never wins). `None` when every
/// value is −∞ or NaN.
pub fn argmax(logits: &[f32]) -> Option<u32> {
    let mut best: Option<(usize, f32)> = None;
    for (i, &v) in logits.iter().enumerate() {
        if v.is_nan() || v == f32::NEG_INFINITY {
            continue;
        }
        match best {
            Some((_, b)) if v <= b => {}
            _ => best = Some((i, v)),
        }
    }
    best.and_then(|(i, _)| u32::try_from(i).ok())
}

impl Sampler {
    /// A sampler with empty buffers.
    pub fn new() -> Sampler {
        Sampler::default()
    }

    /// Chooses a token from `logits` (already masked). `recent` are the previous tokens, for the
    /// repetition penalty. Errors when no token is selectable (all −∞ or NaN).
    pub fn select(
        &mut self,
        logits: &[f32],
        params: &SamplingParams,
        recent: &[u32],
        rng: &mut Rng,
    ) -> Result<u32> {
        params.validate()?;
        let penalise = params.repeat_penalty != 1.0 && params.repeat_last_n > 0;
        let logits: &[f32] = if penalise {
            self.logits.clear();
            self.logits.extend_from_slice(logits);
            let from = recent.len().saturating_sub(params.repeat_last_n);
            let window = recent.get(from..).unwrap_or(&[]);
            for (i, &t) in window.iter().enumerate() {
                // Penalise each id once (its first occurrence in the window).
                if window.get(..i).is_some_and(|before| before.contains(&t)) {
                    continue;
                }
                if let Some(l) = self.logits.get_mut(t as usize) {
                    *l = if *l > 0.0 {
                        *l / params.repeat_penalty
                    } else {
                        *l * params.repeat_penalty
                    };
                }
            }
            &self.logits
        } else {
            logits
        };
        let none = || EngineError::State {
            reason: "no selectable token (every logit is masked)".to_owned(),
        };
        if params.temperature <= 0.0 {
            return argmax(logits).ok_or_else(none);
        }
        // Candidates in the total order (logit desc, id asc).
        self.cand.clear();
        for (i, &l) in logits.iter().enumerate() {
            if l.is_nan() || l == f32::NEG_INFINITY {
                continue;
            }
            if let Ok(id) = u32::try_from(i) {
                self.cand.push((id, l));
            }
        }
        if self.cand.is_empty() {
            return Err(none());
        }
        let order = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        if params.top_k > 0 && params.top_k < self.cand.len() {
            self.cand.select_nth_unstable_by(params.top_k - 1, order);
            self.cand.truncate(params.top_k);
        }
        self.cand.sort_unstable_by(order);
        let max = self.cand.first().map_or(0.0, |c| c.1);
        let inv_t = 1.0 / f64::from(params.temperature);
        self.probs.clear();
        let mut total = 0f64;
        for &(_, l) in &self.cand {
            let p = ((f64::from(l) - f64::from(max)) * inv_t).exp();
            total += p;
            self.probs.push(p);
        }
        // Top-p: the shortest prefix whose mass reaches top_p.
        let mut keep = self.probs.len();
        if params.top_p < 1.0 {
            let target = f64::from(params.top_p) * total;
            let mut acc = 0f64;
            for (i, &p) in self.probs.iter().enumerate() {
                acc += p;
                if acc >= target {
                    keep = i + 1;
                    break;
                }
            }
        }
        let kept: f64 = self.probs.iter().take(keep).sum();
        let mut u = rng.next_f64() * kept;
        for (i, &p) in self.probs.iter().take(keep).enumerate() {
            if u < p {
                return self.cand.get(i).map(|c| c.0).ok_or_else(none);
            }
            u -= p;
        }
        // Rounding left `u` at the end: the last kept candidate.
        self.cand
            .get(keep.saturating_sub(1))
            .map(|c| c.0)
            .ok_or_else(none)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xoshiro_reference_values() {
        // Reference: xoshiro256** with state [1, 2, 3, 4] yields 11520, 0, 1509978240, ...
        let mut r = Rng { s: [1, 2, 3, 4] };
        assert_eq!(r.next_u64(), 11520);
        assert_eq!(r.next_u64(), 0);
        assert_eq!(r.next_u64(), 1_509_978_240);
    }

    #[test]
    fn greedy_ties_go_low() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0]), Some(1));
        assert_eq!(argmax(&[f32::NEG_INFINITY, f32::NAN]), None);
    }
}
