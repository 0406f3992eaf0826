//! The mixture-of-experts feed-forward network: routing, expert dispatch, shared expert.
//!
//! Per position (llama.cpp's `build_moe_ffn`, softmax gating):
//!
//! 1. router logits `ffn_gate_inp · x` (one per expert);
//! 2. probabilities: softmax over all experts (max-subtracted, exponentials summed in expert
//!    order);
//! 3. selection: experts forbidden by the [`ExpertMask`] get −∞ as selection score, then the
//!    top `n_expert_used` by probability, ties to the LOWER expert index; forbidden experts are
//!    never chosen (fewer than `k` are used when fewer are allowed; none at all gives a zero FFN
//!    output);
//! 4. mixing weights: the chosen experts' probabilities, renormalised to sum 1 when
//!    [`MoeConfig::norm_topk`](super::MoeConfig::norm_topk);
//! 5. output `Σ w_e · down_e(silu(gate_e x) · up_e x)`, accumulated per position in increasing
//!    expert index (the first term is `w_e · y_e`, not `0 + w_e · y_e`), plus for Qwen2-MoE
//!    `sigmoid(ffn_gate_inp_shexp · x) · shared(x)`.
//!
//! Batch and thread invariance: the router and experts are [`Linear`] matrices (each output
//! element is one fixed-order row reduction whatever the batch or thread count); the positions
//! routed to an expert are gathered and run as one batch, and every position's sum runs in expert
//! index order, so the bits of a position do not depend on what else is in its batch.
//!
//! Hooks: the [`RouterObserver`]s get a [`LayerRoute`] per layer and position (built only when
//! some observer is installed); the route of the last position of a batch is always kept for
//! [`super::Session::routes`].

use super::error::{EngineError, Result};
use super::hooks::{HookSet, LayerRoute};
use super::linear::{Linear, Threads};
use super::ops;

/// One SwiGLU expert (views into the merged `ffn_*_exps` tensors).
#[derive(Debug)]
pub struct Expert {
    /// Gate projection (`n_embd → n_ff_exp`).
    pub gate: Linear,
    /// Up projection.
    pub up: Linear,
    /// Down projection (`n_ff_exp → n_embd`).
    pub down: Linear,
}

/// Qwen2-MoE's always-on expert, gated by `sigmoid(gate_inp · x)`.
#[derive(Debug)]
pub struct SharedExpert {
    /// The expert (`ffn_{gate,up,down}_shexp`).
    pub expert: Expert,
    /// The gate vector (`ffn_gate_inp_shexp`, `n_embd` values).
    pub gate_inp: Vec<f32>,
}

/// A block's mixture-of-experts FFN.
#[derive(Debug)]
pub struct MoeFfn {
    /// Router (`ffn_gate_inp`, `n_embd → n_expert`).
    pub router: Linear,
    /// The routed experts, by index.
    pub experts: Vec<Expert>,
    /// The shared expert, if any.
    pub shared: Option<SharedExpert>,
}

/// Reusable buffers of the MoE forward.
#[derive(Debug, Clone, Default)]
pub(crate) struct MoeScratch {
    logits: Vec<f32>,
    probs: Vec<f32>,
    scores: Vec<f32>,
    /// Per position: chosen `(expert, weight)` in selection order (`k` slots, unused ones
    /// `u32::MAX`).
    chosen: Vec<(u32, f32)>,
    rows: Vec<(usize, f32)>,
    xs: Vec<f32>,
    gate: Vec<f32>,
    up: Vec<f32>,
    ys: Vec<f32>,
    started: Vec<bool>,
    /// Routes of the last position of the last batch, per MoE layer.
    pub(crate) last_routes: Vec<LayerRoute>,
}

/// Routing parameters of one layer.
pub(crate) struct Routing {
    pub layer: usize,
    pub first_pos: u64,
    pub k: usize,
    pub norm_topk: bool,
}

/// Softmax in place with max subtraction; exponentials summed in index order.
fn softmax(v: &mut [f32]) {
    let max = v.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0f32;
    for x in v.iter_mut() {
        *x = (*x - max).exp();
        sum += *x;
    }
    for x in v.iter_mut() {
        *x /= sum;
    }
}

/// Top-`k` of `scores` into `out`: highest first, ties to the lower index; `−∞` and NaN scores
/// are never chosen (the remaining slots get `u32::MAX`).
pub(crate) fn top_k(scores: &[f32], k: usize, out: &mut [(u32, f32)]) {
    for j in 0..k.min(out.len()) {
        let mut best: Option<(usize, f32)> = None;
        for (e, &s) in scores.iter().enumerate() {
            if s > f32::NEG_INFINITY
                && out[..j].iter().all(|&(c, _)| c as usize != e)
                && best.is_none_or(|(_, b)| s > b)
            {
                best = Some((e, s));
            }
        }
        out[j] = match best {
            Some((e, s)) => (e as u32, s),
            None => (u32::MAX, 0.0),
        };
    }
}

/// Entropy in nats of a probability vector.
fn entropy(p: &[f32]) -> f32 {
    let mut h = 0f64;
    for &x in p {
        if x > 0.0 {
            h -= f64::from(x) * f64::from(x).ln();
        }
    }
    h as f32
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

impl MoeFfn {
    /// The FFN output of `m` normalised rows `xn` (width `d`) into `out` (`m × d`).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn forward(
        &self,
        xn: &[f32],
        m: usize,
        d: usize,
        out: &mut [f32],
        r: &Routing,
        hooks: &mut HookSet,
        s: &mut MoeScratch,
        threads: &Threads,
    ) -> Result<()> {
        let ne = self.experts.len();
        let k = r.k.min(ne);
        s.logits.resize(m * ne, 0.0);
        self.router.matmul(xn, m, &mut s.logits, threads)?;
        s.chosen.clear();
        s.chosen.resize(m * k, (u32::MAX, 0.0));
        let observe = hooks.has_router_observers();
        for i in 0..m {
            let pos = r.first_pos + i as u64;
            // The mask acts on the router logits, before the softmax: a forbidden expert's
            // exp(−∞) is +0, which adds exactly to the sum and cannot be the maximum, so the
            // probabilities of the permitted experts are bit for bit those of a model whose
            // file never held the forbidden ones (the rewritten-GGUF isolation tests).
            s.probs.clear();
            s.probs.extend_from_slice(&s.logits[i * ne..(i + 1) * ne]);
            let mut any_allowed = true;
            if let Some(mask) = hooks.expert_mask() {
                any_allowed = false;
                for (e, l) in s.probs.iter_mut().enumerate() {
                    if mask.allowed(r.layer, pos, e as u32) {
                        any_allowed = true;
                    } else {
                        *l = f32::NEG_INFINITY;
                    }
                }
            }
            s.scores.clear();
            if any_allowed {
                s.scores.extend_from_slice(&s.probs);
                softmax(&mut s.probs);
                // Selection ranks probabilities but never a forbidden expert, even where a
                // permitted one's probability underflowed to the same +0.
                for (sc, &p) in s.scores.iter_mut().zip(&s.probs) {
                    if *sc > f32::NEG_INFINITY {
                        *sc = p;
                    }
                }
            } else {
                s.probs.fill(0.0);
                s.scores.resize(ne, f32::NEG_INFINITY);
            }
            let ch = &mut s.chosen[i * k..(i + 1) * k];
            top_k(&s.scores, k, ch);
            if r.norm_topk {
                let mut sum = 0f32;
                for &(e, w) in ch.iter() {
                    if e != u32::MAX {
                        sum += w;
                    }
                }
                if sum > 0.0 {
                    for c in ch.iter_mut() {
                        c.1 /= sum;
                    }
                }
            }
            let last = i + 1 == m;
            if observe || last {
                let route = LayerRoute {
                    layer: r.layer,
                    position: pos,
                    probs: s.probs.clone(),
                    chosen: ch.iter().copied().filter(|c| c.0 != u32::MAX).collect(),
                    entropy: entropy(&s.probs),
                };
                if observe {
                    hooks.observe_route(&route);
                }
                if last {
                    s.last_routes.push(route);
                }
            }
        }

        // Dispatch: experts in index order; each runs the positions routed to it as one batch.
        s.started.clear();
        s.started.resize(m, false);
        let ff = self.experts.first().map_or(0, |e| e.gate.n_out());
        for (e, ex) in self.experts.iter().enumerate() {
            s.rows.clear();
            for i in 0..m {
                if let Some(&(_, w)) = s.chosen[i * k..(i + 1) * k]
                    .iter()
                    .find(|c| c.0 as usize == e)
                {
                    s.rows.push((i, w));
                }
            }
            let n = s.rows.len();
            if n == 0 {
                continue;
            }
            s.xs.clear();
            for &(i, _) in &s.rows {
                s.xs.extend_from_slice(&xn[i * d..(i + 1) * d]);
            }
            s.gate.resize(n * ff, 0.0);
            s.up.resize(n * ff, 0.0);
            s.ys.resize(n * d, 0.0);
            swiglu_ffn(ex, &s.xs, n, &mut s.gate, &mut s.up, &mut s.ys, threads)?;
            for (j, &(i, w)) in s.rows.iter().enumerate() {
                let y = &s.ys[j * d..(j + 1) * d];
                let o = &mut out[i * d..(i + 1) * d];
                if s.started[i] {
                    ops::axpy(o, w, y);
                } else {
                    for (o, &y) in o.iter_mut().zip(y) {
                        *o = w * y;
                    }
                    s.started[i] = true;
                }
            }
        }
        for i in 0..m {
            if !s.started[i] {
                out[i * d..(i + 1) * d].fill(0.0);
            }
        }

        if let Some(sh) = &self.shared {
            let sff = sh.expert.gate.n_out();
            s.gate.resize(m * sff, 0.0);
            s.up.resize(m * sff, 0.0);
            s.ys.resize(m * d, 0.0);
            swiglu_ffn(
                &sh.expert,
                xn,
                m,
                &mut s.gate,
                &mut s.up,
                &mut s.ys,
                threads,
            )?;
            for i in 0..m {
                let g = sigmoid(ops::dot(&sh.gate_inp, &xn[i * d..(i + 1) * d]));
                ops::axpy(&mut out[i * d..(i + 1) * d], g, &s.ys[i * d..(i + 1) * d]);
            }
        }
        Ok(())
    }
}

/// `ys = down(silu(gate xs) · up xs)` for `n` rows.
fn swiglu_ffn(
    ex: &Expert,
    xs: &[f32],
    n: usize,
    gate: &mut [f32],
    up: &mut [f32],
    ys: &mut [f32],
    threads: &Threads,
) -> Result<()> {
    let ff = ex.gate.n_out();
    if ex.up.n_out() != ff || ex.down.n_in() != ff {
        return Err(EngineError::State {
            reason: "expert projections disagree on the hidden width".to_owned(),
        });
    }
    ex.gate.matmul(xs, n, gate, threads)?;
    ex.up.matmul(xs, n, up, threads)?;
    ops::swiglu(&mut gate[..n * ff], &up[..n * ff]);
    ex.down.matmul(gate, n, ys, threads)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_ties_go_to_the_lower_index() {
        let mut out = [(0u32, 0f32); 2];
        top_k(&[0.25, 0.25, 0.25, 0.25], 2, &mut out);
        assert_eq!(out, [(0, 0.25), (1, 0.25)]);
        top_k(&[0.1, 0.3, 0.3, 0.3], 2, &mut out);
        assert_eq!(out, [(1, 0.3), (2, 0.3)]);
        top_k(&[f32::NEG_INFINITY, 0.5, f32::NEG_INFINITY], 2, &mut out);
        assert_eq!(out, [(1, 0.5), (u32::MAX, 0.0)]);
    }

    #[test]
    fn softmax_uniform_and_entropy() {
        let mut v = [0.0f32; 4];
        softmax(&mut v);
        assert_eq!(v, [0.25; 4]);
        assert!((entropy(&v) - 4f32.ln()).abs() < 1e-6);
    }
}
