//! Speculative greedy decoding: draft a few tokens cheaply, verify them in one batched forward,
//! keep the longest prefix the model agrees with, roll back the rest.
//!
//! The output is bitwise identical to plain greedy decoding ([`Session::generate`] with a greedy
//! [`SamplingParams`]): same tokens, same stop reason, and afterwards the same token history and
//! bit-identical logits for the next step. Three engine properties give this:
//!
//! - batch invariance: the logits of every position of a verify batch equal those sequential
//!   decoding computes for that position (see [`super::model`]);
//! - selection reuse: each draft is checked with the engine's own [`Sampler::select`] on the
//!   history up to that position, the very call [`Session::sample`] makes, so ties and the
//!   repetition penalty resolve the same way;
//! - exact rollback: rejected positions are dropped with a KV trim, or, when the batch has
//!   carried a sliding-window ring past entries the kept positions still need (a trim would be
//!   refused), by restoring a snapshot taken before the batch and re-queuing the kept tokens.
//!
//! One round: `t0` is selected from the pending logits (exactly as plain greedy does), the
//! drafter proposes `d1..dm`, and `[t0, d1..dm]` is forwarded at once. Row `j` of the batch's
//! logits predicts the token after `batch[j]`; `d(j+1)` is kept while it equals that
//! prediction. The first disagreeing prediction is not emitted in this round: the pending logits
//! are rewound to the row that produced it, and the next round's `t0` selects it again — from
//! the same bits, so it is the same token. Every round yields at least `t0`.

use super::error::{EngineError, Result};
use super::sampling::{Sampler, SamplingParams};
use super::session::{GenerateParams, Session, StopReason};

/// Proposes draft tokens to continue a token history.
pub trait Drafter {
    /// Up to `k` tokens that might follow `history` (prompt and generated tokens, newest last).
    /// May return fewer, or none. Any output is safe: wrong drafts only cost speed.
    fn draft(&mut self, history: &[u32], k: usize) -> Vec<u32>;
}

/// Prompt-lookup drafting: finds the most recent earlier occurrence of the history's last `n`
/// tokens (longest `n` first, from `max_ngram` down to `min_ngram`) and proposes the tokens that
/// followed it. Effective when the output copies its input (quoting, editing, code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PromptLookup {
    /// Shortest suffix matched (values below 1 act as 1).
    pub min_ngram: usize,
    /// Longest suffix matched first.
    pub max_ngram: usize,
}

impl Default for PromptLookup {
    fn default() -> PromptLookup {
        PromptLookup {
            min_ngram: 1,
            max_ngram: 3,
        }
    }
}

impl PromptLookup {
    /// Matching suffixes of `min_ngram ..= max_ngram` tokens.
    pub fn new(min_ngram: usize, max_ngram: usize) -> PromptLookup {
        PromptLookup {
            min_ngram,
            max_ngram,
        }
    }
}

impl Drafter for PromptLookup {
    fn draft(&mut self, history: &[u32], k: usize) -> Vec<u32> {
        let len = history.len();
        if k == 0 || len < 2 {
            return Vec::new();
        }
        // A zero-length suffix would match everywhere and propose arbitrary text.
        let lo = self.min_ngram.max(1);
        let hi = self.max_ngram.min(len - 1);
        for n in (lo..=hi).rev() {
            let suffix = history.get(len - n..).unwrap_or(&[]);
            // Earlier occurrences start at s with s + n < len, so a continuation token exists;
            // scanning s downwards finds the most recent one first.
            for s in (0..len - n).rev() {
                if history.get(s..s + n) == Some(suffix) {
                    let end = (s + n).saturating_add(k).min(len);
                    return history.get(s + n..end).unwrap_or(&[]).to_vec();
                }
            }
        }
        Vec::new()
    }
}

/// Parameters of [`speculative_greedy`].
#[derive(Debug, Clone, PartialEq)]
pub struct SpeculativeParams {
    /// Most tokens to produce.
    pub max_tokens: usize,
    /// Most draft tokens verified per round (0 degenerates to plain greedy decoding).
    pub k: usize,
    /// Tokens that end generation (not emitted, not fed), as in [`GenerateParams`].
    pub stop_tokens: Vec<u32>,
    /// Selection rule; must be greedy (temperature ≤ 0). A repetition penalty is allowed.
    pub sampling: SamplingParams,
}

impl SpeculativeParams {
    /// The speculative counterpart of greedy `params`, with `k` drafts per round.
    pub fn from_generate(params: &GenerateParams, k: usize) -> SpeculativeParams {
        SpeculativeParams {
            max_tokens: params.max_tokens,
            k,
            stop_tokens: params.stop_tokens.clone(),
            sampling: params.sampling.clone(),
        }
    }
}

/// The result of [`speculative_greedy`] and its statistics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpeculativeOutput {
    /// Tokens produced (stop token excluded): identical to plain greedy decoding.
    pub tokens: Vec<u32>,
    /// Why it stopped.
    pub stop: StopReason,
    /// Draft tokens forwarded in verify batches.
    pub drafted: usize,
    /// Draft tokens kept.
    pub accepted: usize,
    /// Batched verify forwards (rounds with at least one draft token).
    pub verify_calls: usize,
    /// Rounds without a draft (one token fed, as plain decoding does).
    pub plain_steps: usize,
    /// Rollbacks done by trimming the KV cache.
    pub trims: usize,
    /// Rollbacks done by restoring a snapshot (a ring carried past its window).
    pub restores: usize,
}

impl SpeculativeOutput {
    /// Fraction of drafted tokens accepted (0 when nothing was drafted).
    pub fn acceptance_rate(&self) -> f64 {
        if self.drafted == 0 {
            0.0
        } else {
            self.accepted as f64 / self.drafted as f64
        }
    }

    /// Tokens produced per forward pass of the decode loop (verify batches and plain steps).
    pub fn tokens_per_forward(&self) -> f64 {
        let forwards = self.verify_calls + self.plain_steps;
        if forwards == 0 {
            0.0
        } else {
            self.tokens.len() as f64 / forwards as f64
        }
    }
}

/// Greedy decoding of up to `params.max_tokens` tokens with drafts from `drafter`, bitwise
/// identical to [`Session::generate`] with the same greedy parameters (see the module docs).
///
/// The session must hold at least one token (pending logits or queued tokens) and no hooks:
/// verify batches forward positions that may be rolled back, which hooks would observe, and
/// logit masks would be applied at positions plain decoding never asks about. Errors are those
/// of the session's own calls, plus [`EngineError::InvalidSampling`] for non-greedy parameters
/// and [`EngineError::State`] for installed hooks.
pub fn speculative_greedy(
    session: &mut Session,
    params: &SpeculativeParams,
    drafter: &mut dyn Drafter,
) -> Result<SpeculativeOutput> {
    params.sampling.validate()?;
    if params.sampling.temperature > 0.0 {
        return Err(EngineError::InvalidSampling {
            name: "temperature",
            reason: format!(
                "speculative decoding is greedy; {} is above 0",
                params.sampling.temperature
            ),
        });
    }
    if !session.hooks_mut().is_empty() {
        return Err(EngineError::State {
            reason: "speculative decoding refuses sessions with hooks installed (rolled-back \
                     positions would reach them)"
                .to_owned(),
        });
    }
    let n_vocab = session.model().config().n_vocab;
    let mut sampler = Sampler::new();
    let mut out = SpeculativeOutput {
        tokens: Vec::with_capacity(params.max_tokens),
        stop: StopReason::MaxTokens,
        drafted: 0,
        accepted: 0,
        verify_calls: 0,
        plain_steps: 0,
        trims: 0,
        restores: 0,
    };
    // The token history, kept alongside the session's so drafting and selection see the
    // tokens of positions not yet (or no longer) in the session.
    let mut history: Vec<u32> = Vec::new();
    while out.tokens.len() < params.max_tokens {
        // The same call plain greedy makes: runs anything queued, applies the engine's rule.
        let t0 = session.sample(&params.sampling)?;
        if params.stop_tokens.contains(&t0) {
            out.stop = StopReason::StopToken(t0);
            return Ok(out);
        }
        history.clear();
        history.extend_from_slice(session.tokens());
        let base = history.len();
        history.push(t0);

        // Drafts past `max_tokens` or the context limit could never be emitted.
        let mut room = params.max_tokens - out.tokens.len() - 1;
        if let Some(limit) = session.context_limit() {
            let left = limit.saturating_sub(base as u64 + 1);
            room = room.min(usize::try_from(left).unwrap_or(usize::MAX));
        }
        let mut draft = drafter.draft(&history, params.k.min(room));
        draft.truncate(params.k.min(room));
        // A foreign drafter's out-of-vocabulary token ends the usable draft.
        if let Some(bad) = draft.iter().position(|&t| t as usize >= n_vocab) {
            draft.truncate(bad);
        }
        if draft.is_empty() {
            session.feed(t0)?;
            out.tokens.push(t0);
            out.plain_steps += 1;
            continue;
        }

        let mut batch = Vec::with_capacity(draft.len() + 1);
        batch.push(t0);
        batch.extend_from_slice(&draft);
        // Worst case keeps only t0: if even that trim would be refused after the batch (a ring
        // carried past its window), roll back through a snapshot instead.
        let snap = if session.cache().can_trim_after(batch.len(), base as u64 + 1) {
            None
        } else {
            Some(session.snapshot()?)
        };
        let rows = session.prefill_all_logits(&batch)?;
        out.verify_calls += 1;
        out.drafted += draft.len();
        out.tokens.push(t0);

        let mut kept = 0;
        for (j, &d) in draft.iter().enumerate() {
            let row =
                rows.get(j * n_vocab..(j + 1) * n_vocab)
                    .ok_or_else(|| EngineError::State {
                        reason: format!("verify batch returned no logits for row {j}"),
                    })?;
            // `history` is exactly the tokens up to batch[j]: what `sample` would pass.
            let mut rng = session.rng();
            let want = sampler.select(row, &params.sampling, &history, &mut rng)?;
            // A stop token is never emitted nor fed: rewinding to here lets the next round
            // select it from the same logits and stop as plain decoding does.
            if want != d || params.stop_tokens.contains(&want) {
                break;
            }
            history.push(d);
            out.tokens.push(d);
            kept += 1;
        }
        out.accepted += kept;
        if kept == draft.len() {
            // Everything kept: the session's pending logits are those of the last row.
            continue;
        }
        // Keep t0 and `kept` drafts; the pending logits are those of the last kept position.
        let n = base + 1 + kept;
        match snap {
            None => {
                let row = rows
                    .get(kept * n_vocab..(kept + 1) * n_vocab)
                    .ok_or_else(|| EngineError::State {
                        reason: format!("verify batch returned no logits for row {kept}"),
                    })?;
                session.rewind_with_logits(n, row)?;
                out.trims += 1;
            }
            Some(snap) => {
                session.restore(&snap)?;
                // Queued, they are forwarded by the next `sample`: batch invariance makes that
                // forward's logits those of the rolled-back batch.
                for &t in history.get(base..n).unwrap_or(&[]) {
                    session.feed(t)?;
                }
                out.restores += 1;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::kv_cache::KvCache;
    use super::*;

    /// Appends `m` positions to every layer of `c`, as a forward pass does.
    fn append(c: &mut KvCache, m: usize) {
        let row = vec![0.5f32; c.kv_dim()];
        c.begin();
        let next = c.next_pos();
        for l in 0..c.n_layer() {
            for p in next..next + m as u64 {
                assert!(c.write(l, p, &row, &row).is_ok());
            }
        }
        c.commit(m);
    }

    #[test]
    fn can_trim_after_predicts_trim_exactly() {
        // The snapshot decision of `speculative_greedy` rests on this prediction: compare it
        // with the real trim over small rings and a plain cache, every shape.
        for window in [None, Some(1), Some(2), Some(3), Some(5)] {
            for held in 0..9 {
                for appended in 0..7 {
                    let Ok(mut c) = KvCache::new(2, 3, window) else {
                        panic!("cache");
                    };
                    append(&mut c, held);
                    let predicted: Vec<bool> = (0..held as u64 + appended as u64 + 2)
                        .map(|to| c.can_trim_after(appended, to))
                        .collect();
                    append(&mut c, appended);
                    for (to, &p) in predicted.iter().enumerate() {
                        let mut t = c.clone();
                        assert_eq!(
                            t.trim(to as u64).is_ok(),
                            p,
                            "window {window:?} held {held} appended {appended} to {to}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn prompt_lookup_prefers_longest_then_latest() {
        let mut d = PromptLookup::default();
        // "1 2 3" occurs once earlier (followed by 9); "3" alone most recently by 7.
        let h = [1, 2, 3, 9, 8, 3, 7, 5, 1, 2, 3];
        assert_eq!(d.draft(&h, 2), vec![9, 8]);
        let mut one = PromptLookup::new(1, 1);
        assert_eq!(one.draft(&h, 2), vec![7, 5]);
    }
}
