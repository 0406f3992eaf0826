//! Rewriting a GGUF file into a new one: a Mixture-of-Experts model without some of its
//! experts, and optional edits of any tensor's raw bytes.
//!
//! This is how expert isolation is checked independently of the engine's expert mask: the
//! model run with a mask must equal, bit for bit, the model whose file no longer holds the
//! forbidden experts at all. The kept experts' bytes are copied unchanged (quantized blocks
//! included), so nothing is re-quantized.

use super::{GgufError, GgufFile, GgufWriter, Value};

/// Tensor-name suffixes whose outermost (last) ggml dimension is the expert index: the merged
/// expert FFN tensors and the router.
const STACKED_BY_EXPERT: [&str; 4] = [
    ".ffn_gate_exps.weight",
    ".ffn_up_exps.weight",
    ".ffn_down_exps.weight",
    ".ffn_gate_inp.weight",
];

/// An edit of one tensor's raw bytes: `(name, bytes)`, the length must stay the same.
pub type TensorEdit<'a> = dyn FnMut(&str, &mut Vec<u8>) -> Result<(), GgufError> + 'a;

/// `file` without the experts `drop` (indices into the original numbering): each stacked expert
/// tensor and router loses those slices, `{arch}.expert_count` is lowered and
/// `{arch}.expert_used_count` clamped to what remains. Kept experts are renumbered in their
/// original order.
pub fn without_experts(file: &GgufFile, drop: &[u32]) -> Result<Vec<u8>, GgufError> {
    rewrite(file, drop, &mut |_, _| Ok(()))
}

/// As [`without_experts`], then `edit(name, bytes)` may change any tensor's bytes in place
/// (its length must stay the same). With `drop` empty this rewrites a dense model too.
pub fn rewrite(
    file: &GgufFile,
    drop: &[u32],
    edit: &mut TensorEdit<'_>,
) -> Result<Vec<u8>, GgufError> {
    let meta = file.metadata();
    let arch = meta.get_str("general.architecture")?.to_owned();
    let count_key = format!("{arch}.expert_count");
    let used_key = format!("{arch}.expert_used_count");
    let n_expert = if drop.is_empty() {
        meta.opt_u32(&count_key)?.unwrap_or(0)
    } else {
        meta.get_u32(&count_key)?
    };
    if let Some(&bad) = drop.iter().find(|&&e| e >= n_expert) {
        return Err(GgufError::InvalidValue {
            key: count_key,
            reason: format!("cannot drop expert {bad}: the model has {n_expert}"),
        });
    }
    let mut dropped: Vec<u32> = drop.to_vec();
    dropped.sort_unstable();
    dropped.dedup();
    let kept = n_expert - dropped.len() as u32;
    if !dropped.is_empty() && kept == 0 {
        return Err(GgufError::InvalidValue {
            key: count_key,
            reason: "cannot drop every expert".to_owned(),
        });
    }

    let mut w = GgufWriter::with_alignment(file.content().alignment())?;
    for (k, v) in meta.entries() {
        let v = if dropped.is_empty() {
            v.clone()
        } else if *k == count_key {
            Value::U32(kept)
        } else if *k == used_key {
            Value::U32(meta.get_u32(&used_key)?.min(kept))
        } else {
            v.clone()
        };
        if k == super::ALIGNMENT_KEY {
            continue;
        }
        w.add(k.clone(), v)?;
    }
    for t in file.tensors() {
        let name = t.name();
        let data = file.tensor_bytes(t)?;
        let mut dims = t.dims().to_vec();
        let stacked = STACKED_BY_EXPERT.iter().any(|s| name.ends_with(s));
        let mut out = if stacked && !dropped.is_empty() {
            let outer = dims.last().copied().unwrap_or(0);
            if outer != u64::from(n_expert) || data.len() % n_expert as usize != 0 {
                return Err(GgufError::InvalidTensor {
                    name: name.to_owned(),
                    reason: format!(
                        "outermost dimension {outer} is not the expert count {n_expert}"
                    ),
                });
            }
            let per = data.len() / n_expert as usize;
            if let Some(last) = dims.last_mut() {
                *last = u64::from(kept);
            }
            let mut out = Vec::with_capacity(per * kept as usize);
            for e in (0..n_expert).filter(|e| dropped.binary_search(e).is_err()) {
                let start = e as usize * per;
                out.extend_from_slice(data.get(start..start + per).unwrap_or_default());
            }
            out
        } else {
            data.to_vec()
        };
        let before = out.len();
        edit(name, &mut out)?;
        if out.len() != before {
            return Err(GgufError::InvalidTensor {
                name: name.to_owned(),
                reason: format!("an edit changed its length from {before} to {}", out.len()),
            });
        }
        w.add_tensor_raw(name.to_owned(), &dims, t.ggml_type(), out)?;
    }
    w.to_bytes()
}
