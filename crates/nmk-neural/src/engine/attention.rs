//! Causal grouped-query attention of one query position over the KV cache, in f32.
//!
//! For the query at position `p` the keys are positions `lo ..= p` (`lo` from the sliding
//! window, if any), visited in increasing position order: scores `q·k / √head_dim` (Granite: `q·k · attention_scale`), softmax with
//! max-subtraction (the exponentials summed in that order), then `Σ e_j v_j` accumulated in that
//! order and scaled by `1 / Σ e_j`. Nothing depends on how positions were batched.

use super::config::ModelConfig;
use super::error::{EngineError, Result};
use super::kv_cache::KvCache;
use super::ops;

/// Attention output for the query row `q` (all heads) at `pos` in `layer`, into `out` (all
/// heads). `scores` is a reusable buffer.
pub(crate) fn attend(
    cfg: &ModelConfig,
    cache: &KvCache,
    layer: usize,
    pos: u64,
    q: &[f32],
    out: &mut [f32],
    scores: &mut Vec<f32>,
) -> Result<()> {
    let hd = cfg.head_dim;
    let nh = cfg.n_head;
    let group = cfg.n_head / cfg.n_head_kv;
    let lo = cache.window_start(pos).max(cache.positions().start);
    let n = usize::try_from(pos + 1 - lo).map_err(|_| EngineError::State {
        reason: "attention span overflows".to_owned(),
    })?;
    let scale = cfg.scales.attention.unwrap_or(1.0 / (hd as f32).sqrt());
    let runs = cache
        .span(layer, lo, pos)
        .ok_or_else(|| EngineError::State {
            reason: format!("KV entries {lo}..={pos} missing in layer {layer}"),
        })?;
    let kvd = cfg.kv_dim();
    // scores[h * n + j]: head h, key j.
    scores.clear();
    scores.resize(nh * n, 0.0);
    let rows = || {
        runs.iter()
            .flat_map(move |(k, v)| k.chunks_exact(kvd).zip(v.chunks_exact(kvd)))
    };
    for (h, qh) in q.chunks_exact(hd).take(nh).enumerate() {
        let g = h / group;
        let row = &mut scores[h * n..(h + 1) * n];
        for (s, (k, _)) in row.iter_mut().zip(rows()) {
            *s = ops::dot(qh, &k[g * hd..(g + 1) * hd]) * scale;
        }
    }
    for h in 0..nh {
        let row = &mut scores[h * n..(h + 1) * n];
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        for s in row.iter_mut() {
            *s = (*s - max).exp();
        }
        out[h * hd..(h + 1) * hd].fill(0.0);
    }
    for (j, (_, v)) in rows().enumerate() {
        for h in 0..nh {
            let g = h / group;
            let e = scores[h * n + j];
            ops::axpy(&mut out[h * hd..(h + 1) * hd], e, &v[g * hd..(g + 1) * hd]);
        }
    }
    // Normalise: the sum of exponentials in key order.
    for h in 0..nh {
        let row = &scores[h * n..(h + 1) * n];
        let mut sum = 0f32;
        for &e in row {
            sum += e;
        }
        let inv = 1.0 / sum;
        for o in &mut out[h * hd..(h + 1) * hd] {
            *o *= inv;
        }
    }
    Ok(())
}
