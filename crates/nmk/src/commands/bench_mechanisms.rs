//! `nmk bench --mechanisms`: what the engine's mechanisms cost, each as a median over
//! repetitions in one process, against a baseline measured in the same process:
//!
//! - hooks: decode with every hook type installed as a no-op (post-block hook wanting every
//!   layer, router observer, allow-all expert mask, identity logit mask) against bare decode,
//!   interleaved run by run; the logits of every step are compared bit for bit;
//! - park: `Session::snapshot` / `Session::restore` (park to memory) and
//!   `SessionSnapshot::to_bytes` / `from_bytes` (park to bytes), per 1k tokens of context;
//! - speculation: `speculative_greedy` with prompt-lookup drafts on an input-grounded prompt
//!   (repeat a paragraph) against plain greedy decoding of the same tokens.

use std::time::Instant;

use anyhow::{Result, bail};
use nmk_neural::engine::speculate::{PromptLookup, SpeculativeParams, speculative_greedy};
use nmk_neural::engine::{
    ExpertMask, GenerateParams, HookError, LayerRoute, LogitMask, PostBlockHook, Residual,
    RouterObserver, SamplingParams, Session,
};
use nmk_neural::text::{PromptMode, TextModel};

/// Repetition counts and sizes of the mechanism measurements.
#[derive(Debug, Clone, Copy)]
pub struct MechanismParams {
    /// Repetitions of each measurement (the median is reported).
    pub runs: usize,
    /// Prompt tokens before the hooked/bare decode.
    pub prompt_tokens: usize,
    /// Tokens decoded per hooked/bare run.
    pub gen_tokens: usize,
    /// Context length of the parked session.
    pub park_tokens: usize,
    /// Most tokens produced by the speculation comparison.
    pub spec_tokens: usize,
    /// Draft tokens verified per speculative round.
    pub spec_k: usize,
}

const PARAGRAPH: &str = "The old lighthouse stood at the end of a narrow spit of rock, its white \
paint peeling in long strips after decades of salt wind. Every evening the keeper climbed the \
ninety-two steps to light the lamp, and every morning he wrote the weather in a leather book. \
Ships no longer needed his light, but he kept it burning anyway, because the village children \
liked to watch it turn.";

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs.get(xs.len() / 2).copied().unwrap_or(0.0)
}

struct NoopPostBlock;

impl PostBlockHook for NoopPostBlock {
    fn post_block(&mut self, _layer: usize, _residual: &mut Residual<'_>) -> Result<(), HookError> {
        Ok(())
    }
}

struct NoopRouter;

impl RouterObserver for NoopRouter {
    fn observe(&mut self, _route: &LayerRoute) {}
}

struct AllowAll;

impl ExpertMask for AllowAll {
    fn allowed(&self, _layer: usize, _position: u64, _expert: u32) -> bool {
        true
    }
}

struct IdentityMask;

impl LogitMask for IdentityMask {
    fn apply(&mut self, _position: u64, _logits: &mut [f32]) {}
}

fn install_empty_hooks(s: &mut Session) {
    s.hooks_mut()
        .add_post_block(Box::new(NoopPostBlock))
        .add_router_observer(Box::new(NoopRouter))
        .set_expert_mask(Some(Box::new(AllowAll)))
        .add_logit_mask(Box::new(IdentityMask));
}

/// Seconds of one decode: wall clock, and CPU time of this thread (less disturbed by other
/// processes on a busy machine: time spent descheduled is not counted).
#[derive(Debug, Clone, Copy)]
struct DecodeTime {
    wall: f64,
    cpu: f64,
}

/// Prefills `ids`, then decodes `n` greedy tokens; returns the decode times and the bits of
/// every step's logits (the prompt's last position first).
fn decode_run(
    m: &TextModel,
    ids: &[u32],
    n: usize,
    hooked: bool,
    keep_bits: bool,
) -> Result<(DecodeTime, Vec<u32>)> {
    let mut s = m.session(0)?;
    if hooked {
        install_empty_hooks(&mut s);
    }
    s.prefill(ids)?;
    let mut bits = Vec::new();
    let first = s.logits()?;
    if keep_bits {
        bits.extend(first.iter().map(|x| x.to_bits()));
    }
    let greedy = SamplingParams::greedy();
    let t = Instant::now();
    let c = cpu_time::ThreadTime::now();
    for _ in 0..n {
        let tok = s.sample(&greedy)?;
        s.feed(tok)?;
        let l = s.logits()?;
        if keep_bits {
            bits.extend(l.iter().map(|x| x.to_bits()));
        }
    }
    let time = DecodeTime {
        wall: t.elapsed().as_secs_f64(),
        cpu: c.elapsed().as_secs_f64(),
    };
    Ok((time, bits))
}

fn hooks_section(m: &TextModel, ids: &[u32], p: &MechanismParams) -> Result<serde_json::Value> {
    // Correctness first (logits kept), outside the timed runs.
    let (_, bare_bits) = decode_run(m, ids, p.gen_tokens, false, true)?;
    let (_, hooked_bits) = decode_run(m, ids, p.gen_tokens, true, true)?;
    let identical = bare_bits == hooked_bits;
    let mut bare = Vec::new();
    let mut hooked = Vec::new();
    let mut ratios = Vec::new();
    let mut cpu_ratios = Vec::new();
    for i in 0..p.runs {
        // Alternate which goes first so drift does not favour one side.
        let (b, h) = if i % 2 == 0 {
            let b = decode_run(m, ids, p.gen_tokens, false, false)?.0;
            (b, decode_run(m, ids, p.gen_tokens, true, false)?.0)
        } else {
            let h = decode_run(m, ids, p.gen_tokens, true, false)?.0;
            (decode_run(m, ids, p.gen_tokens, false, false)?.0, h)
        };
        bare.push(b.wall);
        hooked.push(h.wall);
        ratios.push(h.wall / b.wall.max(1e-9));
        cpu_ratios.push(h.cpu / b.cpu.max(1e-9));
    }
    let n = p.gen_tokens as f64;
    Ok(serde_json::json!({
        "installed": ["post_block (wants every layer, no-op)", "router_observer (no-op)",
                      "expert_mask (allows all)", "logit_mask (identity)"],
        "decode_tokens": p.gen_tokens,
        "bare_decode_tokens_per_s": n / median(bare.clone()).max(1e-9),
        "hooked_decode_tokens_per_s": n / median(hooked.clone()).max(1e-9),
        "time_ratio": median(ratios),
        "cpu_time_ratio": median(cpu_ratios),
        "identical": identical,
    }))
}

fn park_section(m: &TextModel, p: &MechanismParams) -> Result<serde_json::Value> {
    let ids = super::bench::prompt_ids(m, p.park_tokens);
    let mut s = m.session(0)?;
    s.prefill(&ids)?;
    let _ = s.logits()?;
    let binding = nmk_neural::engine::ParkBinding::of(m.model())?;
    let mut target = m.session(0)?;
    let (mut snap_t, mut restore_t, mut to_t, mut from_t) = (vec![], vec![], vec![], vec![]);
    let mut bytes_len = 0usize;
    let mut roundtrip = true;
    for _ in 0..p.runs {
        let t = Instant::now();
        let snap = s.snapshot()?;
        snap_t.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        target.restore(&snap)?;
        restore_t.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        let bytes = snap.to_bytes(&binding);
        to_t.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        let back = nmk_neural::engine::SessionSnapshot::from_bytes(&bytes, &binding)?;
        from_t.push(t.elapsed().as_secs_f64());
        bytes_len = bytes.len();
        roundtrip &= back == snap;
        target.reset();
    }
    let ctx = ids.len() as f64;
    let per_1k_ms = |xs: Vec<f64>| median(xs) * 1e3 * 1000.0 / ctx.max(1.0);
    Ok(serde_json::json!({
        "context_tokens": ids.len(),
        "snapshot_ms_per_1k_tokens": per_1k_ms(snap_t),
        "restore_ms_per_1k_tokens": per_1k_ms(restore_t),
        "to_bytes_ms_per_1k_tokens": per_1k_ms(to_t),
        "from_bytes_ms_per_1k_tokens": per_1k_ms(from_t),
        "bytes_per_1k_tokens": bytes_len as f64 * 1000.0 / ctx.max(1.0),
        "bytes_roundtrip_identical": roundtrip,
    }))
}

fn speculation_section(m: &TextModel, p: &MechanismParams) -> Result<serde_json::Value> {
    let prompt = format!("Repeat this paragraph exactly: {PARAGRAPH}");
    let ids = m.encode(&prompt, PromptMode::Chat)?;
    let gen_params = GenerateParams {
        max_tokens: p.spec_tokens,
        stop_tokens: m.stop_tokens().to_vec(),
        sampling: SamplingParams::greedy(),
    };
    let spec_params = SpeculativeParams::from_generate(&gen_params, p.spec_k);
    let (mut greedy_t, mut spec_t, mut ratios) = (vec![], vec![], vec![]);
    let mut same = true;
    let mut last = None;
    let mut n_tokens = 0usize;
    for _ in 0..p.runs {
        let mut s = m.session(0)?;
        s.prefill(&ids)?;
        let _ = s.logits()?;
        let t = Instant::now();
        let g = s.generate(&gen_params)?;
        let gt = t.elapsed().as_secs_f64();

        let mut s = m.session(0)?;
        s.prefill(&ids)?;
        let _ = s.logits()?;
        let mut drafter = PromptLookup::default();
        let t = Instant::now();
        let o = speculative_greedy(&mut s, &spec_params, &mut drafter)?;
        let st = t.elapsed().as_secs_f64();

        same &= o.tokens == g.tokens && o.stop == g.stop;
        n_tokens = g.tokens.len();
        greedy_t.push(gt);
        spec_t.push(st);
        ratios.push(gt / st.max(1e-9));
        last = Some(o);
    }
    let Some(o) = last else {
        bail!("no speculation run");
    };
    let n = n_tokens as f64;
    Ok(serde_json::json!({
        "prompt_tokens": ids.len(),
        "output_tokens": n_tokens,
        "k": p.spec_k,
        "drafted": o.drafted,
        "accepted": o.accepted,
        "acceptance_rate": o.acceptance_rate(),
        "tokens_per_forward": o.tokens_per_forward(),
        "greedy_tokens_per_s": n / median(greedy_t).max(1e-9),
        "speculative_tokens_per_s": n / median(spec_t).max(1e-9),
        "speedup": median(ratios),
        "tokens_equal_greedy": same,
    }))
}

/// Runs the three measurements; returns the JSON section.
pub fn measure(m: &TextModel, p: &MechanismParams) -> Result<serde_json::Value> {
    let p = MechanismParams {
        runs: p.runs.max(1),
        ..*p
    };
    let ids = super::bench::prompt_ids(m, p.prompt_tokens);
    let _ = decode_run(m, &ids, 4, false, false)?; // warm-up: page in the weights
    Ok(serde_json::json!({
        "runs": p.runs,
        "hooks": hooks_section(m, &ids, &p)?,
        "park": park_section(m, &p)?,
        "speculation": speculation_section(m, &p)?,
    }))
}

fn f(v: &serde_json::Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

/// Prints the section as a small table.
pub fn print(r: &serde_json::Value) {
    let (h, k, s) = (&r["hooks"], &r["park"], &r["speculation"]);
    println!("mechanisms (median of {} runs each)", r["runs"]);
    println!(
        "  hooks (all types, empty)  bare {:.1} tok/s  hooked {:.1} tok/s  time ratio {:.4} (thread CPU time {:.4})  identical {}",
        f(&h["bare_decode_tokens_per_s"]),
        f(&h["hooked_decode_tokens_per_s"]),
        f(&h["time_ratio"]),
        f(&h["cpu_time_ratio"]),
        h["identical"]
    );
    println!(
        "  park ({} ctx tokens), per 1k tokens: snapshot {:.3} ms  restore {:.3} ms  to_bytes {:.3} ms  from_bytes {:.3} ms  {:.2} MiB",
        k["context_tokens"],
        f(&k["snapshot_ms_per_1k_tokens"]),
        f(&k["restore_ms_per_1k_tokens"]),
        f(&k["to_bytes_ms_per_1k_tokens"]),
        f(&k["from_bytes_ms_per_1k_tokens"]),
        f(&k["bytes_per_1k_tokens"]) / (1 << 20) as f64
    );
    println!(
        "  speculation (k={}, {} tokens)  acceptance {:.2}  tokens/forward {:.2}  greedy {:.1} tok/s  speculative {:.1} tok/s  speed-up {:.2}x  same tokens {}",
        s["k"],
        s["output_tokens"],
        f(&s["acceptance_rate"]),
        f(&s["tokens_per_forward"]),
        f(&s["greedy_tokens_per_s"]),
        f(&s["speculative_tokens_per_s"]),
        f(&s["speedup"]),
        s["tokens_equal_greedy"]
    );
}
