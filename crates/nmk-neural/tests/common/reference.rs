//! The one naive reference forward of the engine tests: f64 accumulation, full attention
//! recompute, llama.cpp's per-architecture semantics, over f32 weights read by GGUF tensor name.
//! Dense models are the case without `ffn_gate_inp`. Optional parts are recognised by the
//! presence of their tensors (Q/K/V biases, Q/K norms per head or over the whole projection,
//! untied `output.weight`, Qwen2-MoE's shared expert), so the reference decides nothing from the
//! engine's own config parsing beyond the numbers handed to it in [`Config`].
#![allow(dead_code)]

/// Weights by GGUF tensor name, as f32 in ggml order (`None`: the tensor is absent).
pub trait Weights {
    fn tensor(&self, name: &str) -> Option<&[f32]>;

    /// A tensor the model cannot do without.
    fn req(&self, name: &str) -> &[f32] {
        self.tensor(name)
            .unwrap_or_else(|| panic!("reference: missing tensor {name}"))
    }
}

/// The dense fixtures' tensors: (name, ggml dims, data).
impl Weights for [(String, Vec<u64>, Vec<f32>)] {
    fn tensor(&self, name: &str) -> Option<&[f32]> {
        self.iter().find(|t| t.0 == name).map(|t| &t.2[..])
    }
}

/// The MoE fixture's tensors: (name, ggml dims, data, is a matrix).
impl Weights for [(String, Vec<u64>, Vec<f32>, bool)] {
    fn tensor(&self, name: &str) -> Option<&[f32]> {
        self.iter().find(|t| t.0 == name).map(|t| &t.2[..])
    }
}

/// Routing of an MoE model.
#[derive(Clone, Copy, Debug)]
pub struct Routing {
    /// Experts used per token.
    pub n_used: usize,
    /// Whether the chosen probabilities are renormalised to sum 1.
    pub norm_topk: bool,
}

/// The numbers the reference needs besides the tensors.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    pub n_layer: usize,
    pub n_embd: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
    pub n_vocab: usize,
    pub rms_eps: f64,
    pub rope_base: f64,
    /// RoPE rotates (i, i + head_dim/2) pairs (NeoX) rather than adjacent ones.
    pub neox: bool,
    /// Granite's scalars (1, 1, 1/√head_dim, 1 elsewhere).
    pub embedding_scale: f64,
    pub residual_scale: f64,
    pub attention_scale: f64,
    pub logit_scale: f64,
    /// `None`: a dense SwiGLU FFN.
    pub moe: Option<Routing>,
}

impl Config {
    /// A dense model without Granite scalars.
    #[allow(clippy::too_many_arguments)]
    pub fn dense(
        n_layer: usize,
        n_embd: usize,
        n_head: usize,
        n_head_kv: usize,
        head_dim: usize,
        n_vocab: usize,
        rms_eps: f64,
        rope_base: f64,
        neox: bool,
    ) -> Config {
        Config {
            n_layer,
            n_embd,
            n_head,
            n_head_kv,
            head_dim,
            n_vocab,
            rms_eps,
            rope_base,
            neox,
            embedding_scale: 1.0,
            residual_scale: 1.0,
            attention_scale: 1.0 / (head_dim as f64).sqrt(),
            logit_scale: 1.0,
            moe: None,
        }
    }
}

/// Per-position logits of `ids`.
pub fn logits(c: &Config, w: &(impl Weights + ?Sized), ids: &[u32]) -> Vec<Vec<f64>> {
    logits_masked(c, w, ids, &|_, _, _| true)
}

/// [`logits`] rounded to f32.
pub fn logits_f32(c: &Config, w: &(impl Weights + ?Sized), ids: &[u32]) -> Vec<Vec<f32>> {
    let l = logits(c, w, ids);
    l.iter()
        .map(|r| r.iter().map(|&v| v as f32).collect())
        .collect()
}

/// Per-position logits with an expert mask `allowed(layer, position, expert)` applied as the
/// engine documents: forbidden experts are removed before the softmax (it runs over the allowed
/// ones only) and the top-k (fewer than `n_used` when fewer are allowed, none: no routed output).
pub fn logits_masked(
    c: &Config,
    w: &(impl Weights + ?Sized),
    ids: &[u32],
    allowed: &dyn Fn(usize, usize, usize) -> bool,
) -> Vec<Vec<f64>> {
    let (d, hd) = (c.n_embd, c.head_dim);
    let (qd, kvd) = (c.n_head * hd, c.n_head_kv * hd);
    let rms = |x: &[f64], g: &[f32]| -> Vec<f64> {
        let ms = x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64;
        let r = 1.0 / (ms + c.rms_eps).sqrt();
        x.iter()
            .zip(g)
            .map(|(v, g)| v * r * f64::from(*g))
            .collect()
    };
    // ggml dims [n_in, n_out]: row o is m[o*n_in..].
    let mv = |m: &[f32], x: &[f64], n_out: usize| -> Vec<f64> {
        let n_in = x.len();
        (0..n_out)
            .map(|o| (0..n_in).map(|i| f64::from(m[o * n_in + i]) * x[i]).sum())
            .collect()
    };
    let rope = |x: &mut [f64], pos: usize| {
        for h in x.chunks_mut(hd) {
            for i in 0..hd / 2 {
                let th = pos as f64 * c.rope_base.powf(-2.0 * i as f64 / hd as f64);
                let (a, b) = if c.neox {
                    (i, i + hd / 2)
                } else {
                    (2 * i, 2 * i + 1)
                };
                let (x0, x1) = (h[a], h[b]);
                h[a] = x0 * th.cos() - x1 * th.sin();
                h[b] = x0 * th.sin() + x1 * th.cos();
            }
        }
    };
    let swiglu = |g: &[f32], u: &[f32], dn: &[f32], xn: &[f64], ff: usize| -> Vec<f64> {
        let (a, b) = (mv(g, xn, ff), mv(u, xn, ff));
        let h: Vec<f64> = a
            .iter()
            .zip(&b)
            .map(|(a, b)| a / (1.0 + (-a).exp()) * b)
            .collect();
        mv(dn, &h, d)
    };
    let add_bias = |x: &mut [f64], name: &str| {
        if let Some(b) = w.tensor(name) {
            for (a, b) in x.iter_mut().zip(b) {
                *a += f64::from(*b);
            }
        }
    };
    // Per head when the norm is head_dim wide (Qwen3), else over the whole projection (OLMoE).
    let qk_norm = |x: Vec<f64>, name: &str| -> Vec<f64> {
        match w.tensor(name) {
            None => x,
            Some(g) if g.len() == hd => x.chunks(hd).flat_map(|h| rms(h, g)).collect(),
            Some(g) => rms(&x, g),
        }
    };
    let emb = w.req("token_embd.weight");
    let mut xs: Vec<Vec<f64>> = ids
        .iter()
        .map(|&id| {
            let r = id as usize * d;
            emb[r..r + d]
                .iter()
                .map(|&v| f64::from(v) * c.embedding_scale)
                .collect()
        })
        .collect();
    for l in 0..c.n_layer {
        let n = |x: &str| format!("blk.{l}.{x}");
        let (mut qs, mut ks, mut vs) = (Vec::new(), Vec::new(), Vec::new());
        let (wq, wk, wv) = (
            w.req(&n("attn_q.weight")),
            w.req(&n("attn_k.weight")),
            w.req(&n("attn_v.weight")),
        );
        for (p, x) in xs.iter().enumerate() {
            let xn = rms(x, w.req(&n("attn_norm.weight")));
            let (mut q, mut k, mut v) = (mv(wq, &xn, qd), mv(wk, &xn, kvd), mv(wv, &xn, kvd));
            add_bias(&mut q, &n("attn_q.bias"));
            add_bias(&mut k, &n("attn_k.bias"));
            add_bias(&mut v, &n("attn_v.bias"));
            q = qk_norm(q, &n("attn_q_norm.weight"));
            k = qk_norm(k, &n("attn_k_norm.weight"));
            rope(&mut q, p);
            rope(&mut k, p);
            qs.push(q);
            ks.push(k);
            vs.push(v);
        }
        let group = c.n_head / c.n_head_kv;
        for p in 0..xs.len() {
            let mut att = vec![0f64; qd];
            for h in 0..c.n_head {
                let g = h / group;
                let sc: Vec<f64> = (0..=p)
                    .map(|j| {
                        (0..hd)
                            .map(|i| qs[p][h * hd + i] * ks[j][g * hd + i])
                            .sum::<f64>()
                            * c.attention_scale
                    })
                    .collect();
                let mx = sc.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = sc.iter().map(|v| (v - mx).exp()).collect();
                let z: f64 = e.iter().sum();
                for j in 0..=p {
                    for i in 0..hd {
                        att[h * hd + i] += e[j] / z * vs[j][g * hd + i];
                    }
                }
            }
            let o = mv(w.req(&n("attn_output.weight")), &att, d);
            for (a, b) in xs[p].iter_mut().zip(o) {
                *a += b * c.residual_scale;
            }
            let xn = rms(&xs[p], w.req(&n("ffn_norm.weight")));
            let y = match c.moe {
                None => {
                    let g = w.req(&n("ffn_gate.weight"));
                    let ff = g.len() / d;
                    let (u, dn) = (w.req(&n("ffn_up.weight")), w.req(&n("ffn_down.weight")));
                    swiglu(g, u, dn, &xn, ff)
                }
                Some(r) => {
                    // Softmax over the allowed experts, top-k among them (ties to the lower
                    // index), optional renormalisation, then Qwen2-MoE's gated shared expert.
                    let router = w.req(&n("ffn_gate_inp.weight"));
                    let ne = router.len() / d;
                    let lg = mv(router, &xn, ne);
                    let ok: Vec<bool> = (0..ne).map(|e| allowed(l, p, e)).collect();
                    let mx = (0..ne)
                        .filter(|&e| ok[e])
                        .map(|e| lg[e])
                        .fold(f64::NEG_INFINITY, f64::max);
                    let z: f64 = (0..ne).filter(|&e| ok[e]).map(|e| (lg[e] - mx).exp()).sum();
                    let pr: Vec<f64> = (0..ne)
                        .map(|e| if ok[e] { (lg[e] - mx).exp() / z } else { 0.0 })
                        .collect();
                    let mut order: Vec<usize> = (0..ne).filter(|&e| ok[e]).collect();
                    order.sort_by(|&a, &b| pr[b].total_cmp(&pr[a]).then(a.cmp(&b)));
                    let chosen = &order[..r.n_used.min(order.len())];
                    let sel: f64 = chosen.iter().map(|&e| pr[e]).sum();
                    let (ge, ue, de) = (
                        w.req(&n("ffn_gate_exps.weight")),
                        w.req(&n("ffn_up_exps.weight")),
                        w.req(&n("ffn_down_exps.weight")),
                    );
                    let ff = ge.len() / (ne * d);
                    let mut y = vec![0f64; d];
                    for &e in chosen {
                        let wt = if r.norm_topk { pr[e] / sel } else { pr[e] };
                        let s = e * ff * d..(e + 1) * ff * d;
                        let out = swiglu(&ge[s.clone()], &ue[s.clone()], &de[s], &xn, ff);
                        for (a, b) in y.iter_mut().zip(out) {
                            *a += wt * b;
                        }
                    }
                    if let Some(gi) = w.tensor(&n("ffn_gate_inp_shexp.weight")) {
                        let g = w.req(&n("ffn_gate_shexp.weight"));
                        let (u, dn) = (
                            w.req(&n("ffn_up_shexp.weight")),
                            w.req(&n("ffn_down_shexp.weight")),
                        );
                        let out = swiglu(g, u, dn, &xn, g.len() / d);
                        let dot: f64 = gi.iter().zip(&xn).map(|(a, b)| f64::from(*a) * b).sum();
                        let gate = 1.0 / (1.0 + (-dot).exp());
                        for (a, b) in y.iter_mut().zip(out) {
                            *a += gate * b;
                        }
                    }
                    y
                }
            };
            for (a, b) in xs[p].iter_mut().zip(y) {
                *a += b * c.residual_scale;
            }
        }
    }
    let out = w
        .tensor("output.weight")
        .unwrap_or_else(|| w.req("token_embd.weight"));
    let on = w.req("output_norm.weight");
    xs.iter()
        .map(|x| {
            mv(out, &rms(x, on), c.n_vocab)
                .iter()
                .map(|v| v / c.logit_scale)
                .collect()
        })
        .collect()
}
