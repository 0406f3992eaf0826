//! The batteries: each runs a mechanism's identity variants against the plain baseline and one
//! deliberately non-identity variant (the liveness contrast), and becomes a [`BatteryReport`].

use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::report::{BatteryReport, Status};
use super::trace::{Cmp, Trace, token_hash};
use super::{Fault, ProveOptions};
use crate::engine::{
    AcceptAll, Drafter, EngineError, ExpertMask, ForbiddenIds, GenerateParams, LaneScheduler,
    LayerRoute, ModeBInjector, Model, ParkBinding, PromptLookup, ResidualAdd, ResidualRecorder,
    RouterObserver, SamplingParams, Session, SessionOptions, SessionSnapshot, SpeculativeParams,
    speculative_greedy,
};

/// A battery's failure to run at all (it becomes a [`Status::Fail`] with this reason).
#[derive(Debug, thiserror::Error)]
enum BatteryError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("{0}: {1}")]
    Io(String, #[source] std::io::Error),
}

type BResult<T> = std::result::Result<T, BatteryError>;

/// Shared inputs: the model, prompts, options and the plain baseline of every prompt.
pub(crate) struct Ctx<'a> {
    model: Arc<Model>,
    prompts: &'a [Vec<u32>],
    opts: &'a ProveOptions,
    binding: ParkBinding,
    /// Plain greedy run of each prompt: fresh session, default options, one thread.
    baselines: Vec<Trace>,
}

impl<'a> Ctx<'a> {
    /// Runs the baselines.
    pub(crate) fn new(
        model: Arc<Model>,
        prompts: &'a [Vec<u32>],
        opts: &'a ProveOptions,
        binding: ParkBinding,
    ) -> Result<Ctx<'a>, EngineError> {
        let mut ctx = Ctx {
            model,
            prompts,
            opts,
            binding,
            baselines: Vec::new(),
        };
        for p in prompts {
            let mut s = ctx.session(|_| {})?;
            let t = Trace::run(&mut s, p, opts.steps)?;
            ctx.baselines.push(t);
        }
        Ok(ctx)
    }

    fn base_opts(&self) -> SessionOptions {
        SessionOptions {
            threads: 1,
            batch: self.opts.batch,
            ..SessionOptions::default()
        }
    }

    fn session(&self, edit: impl FnOnce(&mut SessionOptions)) -> Result<Session, EngineError> {
        let mut o = self.base_opts();
        edit(&mut o);
        Session::new(self.model.clone(), &o)
    }

    fn steps(&self) -> usize {
        self.opts.steps
    }

    fn n_vocab(&self) -> usize {
        self.model.config().n_vocab
    }

    /// The first prompt (the input-grounded one) and its baseline.
    fn primary(&self) -> (&[u32], &Trace) {
        match (self.prompts.first(), self.baselines.first()) {
            (Some(p), Some(b)) => (p, b),
            // `run_batteries` refuses empty prompt lists before a `Ctx` exists.
            _ => (&[], &EMPTY_TRACE),
        }
    }

    /// `prompt` with its last token replaced: the input of most liveness contrasts.
    fn altered(&self, prompt: &[u32]) -> Vec<u32> {
        let mut p = prompt.to_vec();
        let v = self.n_vocab() as u32;
        if let Some(last) = p.last_mut() {
            *last = (*last + 1) % v.max(1);
        }
        p
    }
}

static EMPTY_TRACE: Trace = Trace {
    tokens: Vec::new(),
    rows: Vec::new(),
};

/// What a battery that ran found.
struct Outcome {
    baseline: String,
    mechanism: String,
    prompts: Vec<Vec<u32>>,
    positions: Vec<u64>,
    ident: Cmp,
    liveness: String,
    live: Cmp,
    /// A contrast that counts as live without a logit delta (e.g. refused); the reported
    /// liveness Δ is then infinite.
    live_by_refusal: bool,
    hashes: Vec<String>,
    notes: Vec<String>,
    /// Checks other than logits that failed.
    problems: Vec<String>,
}

impl Outcome {
    fn new(baseline: &str, mechanism: &str, liveness: &str) -> Outcome {
        Outcome {
            baseline: baseline.to_owned(),
            mechanism: mechanism.to_owned(),
            prompts: Vec::new(),
            positions: Vec::new(),
            ident: Cmp::default(),
            liveness: liveness.to_owned(),
            live: Cmp::default(),
            live_by_refusal: false,
            hashes: Vec::new(),
            notes: Vec::new(),
            problems: Vec::new(),
        }
    }

    fn into_report(self, name: &str, steps: usize) -> BatteryReport {
        let live_delta = if self.live_by_refusal {
            f64::INFINITY
        } else {
            self.live.max
        };
        let mut why = self.problems;
        if !self.ident.identical || self.ident.max != 0.0 {
            why.push(format!(
                "identity variant differs from the baseline: {}",
                self.ident.mismatches.join("; ")
            ));
        }
        if live_delta.is_nan() || live_delta <= 0.0 {
            why.push("liveness contrast did not change the logits (dead mechanism)".to_owned());
        }
        let status = if why.is_empty() {
            Status::Pass
        } else {
            Status::Fail
        };
        BatteryReport {
            name: name.to_owned(),
            status,
            baseline: self.baseline,
            mechanism: self.mechanism,
            prompts: self.prompts,
            positions: self.positions,
            steps,
            rows_compared: self.ident.rows,
            max_abs_delta: self.ident.max,
            liveness: self.liveness,
            liveness_delta: live_delta,
            token_hashes: self.hashes,
            reason: (!why.is_empty()).then(|| why.join("; ")),
            notes: self.notes,
            elapsed_s: 0.0,
        }
    }
}

/// A battery's result before timing.
enum Ran {
    Done(Box<Outcome>),
    Skip(Status, String),
}

type Battery = fn(&Ctx<'_>) -> BResult<Ran>;

/// Runs every battery in a fixed order.
pub(crate) fn run_all(ctx: &Ctx<'_>) -> Vec<BatteryReport> {
    let list: [(&str, Battery); 12] = [
        ("repeat_runs", repeat_runs),
        ("threads_1_vs_2", threads),
        ("chunked_prefill", chunked_prefill),
        ("trap_plane", trap_plane),
        ("park_resume", park_resume),
        ("speculate_rollback", speculate),
        ("interrupt_logit_mask", interrupt),
        ("ring_rollback", ring_rollback),
        ("expert_mask", expert_mask),
        ("router_tap", router_tap),
        ("lane_interleaving", lanes),
        ("mode_b_injector", mode_b),
    ];
    list.iter()
        .map(|(name, f)| {
            let t = Instant::now();
            let mut r = match f(ctx) {
                Ok(Ran::Done(o)) => o.into_report(name, ctx.steps()),
                Ok(Ran::Skip(status, reason)) => BatteryReport::skipped(name, status, reason),
                Err(e) => BatteryReport::skipped(name, Status::Fail, format!("error: {e}")),
            };
            r.elapsed_s = t.elapsed().as_secs_f64();
            r
        })
        .collect()
}

// ---------------------------------------------------------------- determinism

fn repeat_runs(ctx: &Ctx<'_>) -> BResult<Ran> {
    let mut o = Outcome::new(
        "first greedy run of each prompt in a fresh session",
        "a second identical run in another fresh session",
        "the first prompt with its last token changed",
    );
    for (p, base) in ctx.prompts.iter().zip(&ctx.baselines) {
        let mut s = ctx.session(|_| {})?;
        let again = Trace::run(&mut s, p, ctx.steps())?;
        o.ident.rows("repeat", &base.rows, &again.rows);
        o.ident.tokens("repeat", &base.tokens, &again.tokens);
        o.prompts.push(p.clone());
        o.hashes.push(token_hash(&base.tokens));
    }
    let (p, base) = ctx.primary();
    let mut s = ctx.session(|_| {})?;
    let alt = Trace::run(&mut s, &ctx.altered(p), ctx.steps())?;
    o.live.rows("altered prompt", &base.rows, &alt.rows);
    Ok(Ran::Done(Box::new(o)))
}

fn threads(ctx: &Ctx<'_>) -> BResult<Ran> {
    let mut o = Outcome::new(
        "greedy run with 1 thread",
        "the same run with 2 threads",
        "2 threads on the first prompt with its last token changed",
    );
    for (p, base) in ctx.prompts.iter().zip(&ctx.baselines) {
        let mut s = ctx.session(|o| o.threads = 2)?;
        let two = Trace::run(&mut s, p, ctx.steps())?;
        o.ident.rows("2 threads", &base.rows, &two.rows);
        o.ident.tokens("2 threads", &base.tokens, &two.tokens);
        o.prompts.push(p.clone());
        o.hashes.push(token_hash(&two.tokens));
    }
    let (p, base) = ctx.primary();
    let mut s = ctx.session(|o| o.threads = 2)?;
    let alt = Trace::run(&mut s, &ctx.altered(p), ctx.steps())?;
    o.live.rows("altered prompt", &base.rows, &alt.rows);
    Ok(Ran::Done(Box::new(o)))
}

fn chunked_prefill(ctx: &Ctx<'_>) -> BResult<Ran> {
    let (p, base) = ctx.primary();
    let mut o = Outcome::new(
        "whole-prompt prefill (every prompt position's logits) then greedy decode",
        &format!(
            "caller chunks of {:?} tokens, and internal forward batches of the same sizes",
            ctx.opts.chunk_sizes
        ),
        "chunks of 3 over the prompt with its middle token changed",
    );
    o.prompts.push(p.to_vec());
    o.positions = (0..p.len() as u64).collect();
    let nv = ctx.n_vocab();
    let mut s = ctx.session(|_| {})?;
    let whole = s.prefill_all_logits(p)?;
    let mut whole_trace = Trace::default();
    whole_trace.decode(&mut s, ctx.steps())?;
    whole_trace.finish(&mut s)?;
    o.ident.rows("whole prefill", &base.rows, &whole_trace.rows);
    o.hashes.push(token_hash(&base.tokens));
    for &c in &ctx.opts.chunk_sizes {
        // The caller splits the prompt.
        let mut s = ctx.session(|_| {})?;
        let mut all = Vec::with_capacity(whole.len());
        for chunk in p.chunks(c) {
            all.extend(s.prefill_all_logits(chunk)?);
        }
        o.ident.flat(&format!("chunks of {c}"), &whole, &all, nv);
        let mut t = Trace::default();
        t.decode(&mut s, ctx.steps())?;
        t.finish(&mut s)?;
        o.ident
            .rows(&format!("decode after chunks of {c}"), &base.rows, &t.rows);
        o.ident
            .tokens(&format!("chunks of {c}"), &base.tokens, &t.tokens);
        // The engine splits the prompt into internal batches.
        let mut s = ctx.session(|o| o.batch = c)?;
        let all = s.prefill_all_logits(p)?;
        o.ident.flat(&format!("batch {c}"), &whole, &all, nv);
        let mut t = Trace::default();
        t.decode(&mut s, ctx.steps())?;
        t.finish(&mut s)?;
        o.ident
            .rows(&format!("decode after batch {c}"), &base.rows, &t.rows);
        o.ident
            .tokens(&format!("batch {c}"), &base.tokens, &t.tokens);
    }
    let mut alt = p.to_vec();
    if let Some(m) = alt.get_mut(p.len() / 2) {
        *m = (*m + 1) % nv as u32;
    }
    let mut s = ctx.session(|_| {})?;
    let mut all = Vec::new();
    for chunk in alt.chunks(3) {
        all.extend(s.prefill_all_logits(chunk)?);
    }
    o.live.flat("altered prompt", &whole, &all, nv);
    Ok(Ran::Done(Box::new(o)))
}

// ---------------------------------------------------------------- trap plane

fn trap_plane(ctx: &Ctx<'_>) -> BResult<Ran> {
    let (p, base) = ctx.primary();
    let cfg = ctx.model.config();
    let sites = match ctx.opts.trap_sites.layers(cfg.n_layer) {
        Ok(s) if !s.is_empty() => s,
        Ok(_) => {
            return Ok(Ran::Skip(
                Status::Fail,
                "no trap site in this model".to_owned(),
            ));
        }
        Err(e) => return Ok(Ran::Skip(Status::Fail, e.to_string())),
    };
    let d = cfg.n_embd;
    let mut o = Outcome::new(
        "greedy run without hooks",
        &format!(
            "post-block trap sites after blocks {sites:?}: disarmed writers (delta 1.0, \
             armed=false); armed zero writers with residual readers at every site"
        ),
        "an armed writer adding 0.25 to every residual element after the first site",
    );
    o.prompts.push(p.to_vec());
    let n_pos = (p.len() + ctx.steps()) as u64;
    o.positions = (0..n_pos).collect();

    let mut s = ctx.session(|_| {})?;
    for &l in &sites {
        s.hooks_mut().add_post_block(Box::new(ResidualAdd {
            layer: l,
            delta: vec![1.0; d],
            armed: false,
        }));
    }
    let t = Trace::run(&mut s, p, ctx.steps())?;
    o.ident.rows("disarmed", &base.rows, &t.rows);
    o.ident.tokens("disarmed", &base.tokens, &t.tokens);

    let mut s = ctx.session(|_| {})?;
    let mut readers = Vec::new();
    for &l in &sites {
        s.hooks_mut().add_post_block(Box::new(ResidualAdd {
            layer: l,
            delta: vec![0.0; d],
            armed: true,
        }));
        let rows = Arc::new(Mutex::new(Vec::new()));
        s.hooks_mut().add_post_block(Box::new(ResidualRecorder {
            layer: l,
            rows: rows.clone(),
        }));
        readers.push((l, rows));
    }
    let t = Trace::run(&mut s, p, ctx.steps())?;
    o.ident.rows("armed at zero", &base.rows, &t.rows);
    o.ident.tokens("armed at zero", &base.tokens, &t.tokens);
    o.hashes.push(token_hash(&t.tokens));
    // The readers must have seen every forwarded position exactly once, prefill included.
    for (l, rows) in readers {
        let rows = rows.lock().map(|r| r.clone()).unwrap_or_default();
        let positions: Vec<u64> = rows.iter().map(|r| r.0).collect();
        let widths_ok = rows.iter().all(|r| r.1.len() == d);
        if positions != (0..n_pos).collect::<Vec<_>>() || !widths_ok {
            o.problems.push(format!(
                "reader after block {l} saw {} rows (positions {:?}…), expected positions \
                 0..{n_pos} of width {d}",
                rows.len(),
                positions.iter().take(4).collect::<Vec<_>>()
            ));
        }
    }
    o.notes.push(format!(
        "readers at {} sites saw all {n_pos} positions (prefill and decode)",
        sites.len()
    ));

    let mut s = ctx.session(|_| {})?;
    s.hooks_mut().add_post_block(Box::new(ResidualAdd {
        layer: sites.first().copied().unwrap_or(0),
        delta: vec![0.25; d],
        armed: true,
    }));
    let live = Trace::run(&mut s, p, ctx.steps())?;
    o.live.rows("armed live", &base.rows, &live.rows);
    Ok(Ran::Done(Box::new(o)))
}

// ---------------------------------------------------------------- park / resume

/// Offset of the first KV value in a parked snapshot: magic, version, model id, then five
/// `u64` KV header fields (see `engine::park`).
const PARK_KV_DATA: usize = 8 + 4 + 32 + 32 + 5 * 8;

/// Alters the first KV values of parked `bytes` and recomputes the checksum, so the format
/// accepts it and only the content is wrong.
fn corrupt_and_reseal(bytes: &[u8]) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let mut body = bytes
        .get(..bytes.len().saturating_sub(32))
        .unwrap_or(&[])
        .to_vec();
    for i in 0..16 {
        let at = PARK_KV_DATA + 4 * i;
        if let Some(w) = body.get_mut(at..at + 4) {
            let v = f32::from_le_bytes([w[0], w[1], w[2], w[3]]) + 1.0;
            w.copy_from_slice(&v.to_le_bytes());
        }
    }
    let sum = Sha256::digest(&body);
    body.extend_from_slice(&sum);
    body
}

fn park_path(ctx: &Ctx<'_>, tag: usize) -> std::path::PathBuf {
    let dir = ctx.opts.park_dir.clone().unwrap_or_else(std::env::temp_dir);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    dir.join(format!(
        "nmk-prove-{}-{nanos}-{tag}.park",
        std::process::id()
    ))
}

/// Writes `bytes` to a fresh file and reads them back (the file is removed).
fn disk_round_trip(ctx: &Ctx<'_>, bytes: &[u8], tag: usize) -> BResult<Vec<u8>> {
    let path = park_path(ctx, tag);
    let shown = path.display().to_string();
    std::fs::write(&path, bytes).map_err(|e| BatteryError::Io(format!("writing {shown}"), e))?;
    let back = std::fs::read(&path).map_err(|e| BatteryError::Io(format!("reading {shown}"), e));
    let _ = std::fs::remove_file(&path);
    back
}

fn park_resume(ctx: &Ctx<'_>) -> BResult<Ran> {
    let (p, base) = ctx.primary();
    let n = ctx.steps();
    let mut o = Outcome::new(
        "greedy run straight through",
        "snapshot after j decoded tokens, diverge, restore in memory and continue; and park \
         to bytes bound to the model hash, write a file, read it, resume in a fresh session",
        "a parked file whose first KV values were altered (checksum recomputed) is resumed",
    );
    o.prompts.push(p.to_vec());
    let mut js = vec![0, n / 3, 2 * n / 3, n];
    js.dedup();
    for &j in &js {
        o.positions.push((p.len() + j) as u64);
        // In memory.
        let mut s = ctx.session(|_| {})?;
        s.prefill(p)?;
        let mut t = Trace::default();
        t.decode(&mut s, j)?;
        let snap = s.snapshot()?;
        let wrong = base
            .tokens
            .get(j)
            .map_or(0, |&x| (x + 1) % ctx.n_vocab() as u32);
        s.feed(wrong)?;
        let _ = s.logits()?;
        s.restore(&snap)?;
        t.decode(&mut s, n - j)?;
        t.finish(&mut s)?;
        o.ident
            .rows(&format!("memory at +{j}"), &base.rows, &t.rows);
        o.ident
            .tokens(&format!("memory at +{j}"), &base.tokens, &t.tokens);

        // On disk, resumed by a fresh session.
        let mut s = ctx.session(|_| {})?;
        s.prefill(p)?;
        let mut head = Trace::default();
        head.decode(&mut s, j)?;
        let mut bytes = s.snapshot()?.to_bytes(&ctx.binding);
        drop(s);
        if ctx.opts.fault == Some(Fault::CorruptRestoredSnapshot) {
            bytes = corrupt_and_reseal(&bytes);
        }
        let back = disk_round_trip(ctx, &bytes, j)?;
        let snap = SessionSnapshot::from_bytes(&back, &ctx.binding)?;
        let mut r = ctx.session(|_| {})?;
        r.restore(&snap)?;
        let mut t = Trace::default();
        t.decode(&mut r, n - j)?;
        t.finish(&mut r)?;
        o.ident.rows(
            &format!("disk at +{j}"),
            base.rows.get(j..).unwrap_or(&[]),
            &t.rows,
        );
        o.ident.tokens(
            &format!("disk at +{j}"),
            base.tokens.get(j..).unwrap_or(&[]),
            &t.tokens,
        );
    }
    o.hashes.push(token_hash(&base.tokens));

    // Contrasts at the first position: damaged bytes and another model's id are refused; a
    // content corruption that passes the format changes the output (or is refused).
    let mut s = ctx.session(|_| {})?;
    s.prefill(p)?;
    let bytes = s.snapshot()?.to_bytes(&ctx.binding);
    let mut flipped = bytes.clone();
    if let Some(b) = flipped.get_mut(PARK_KV_DATA) {
        *b ^= 0x10;
    }
    match SessionSnapshot::from_bytes(&flipped, &ctx.binding) {
        Err(e) => o.notes.push(format!("flipped byte refused: {e}")),
        Ok(_) => o
            .problems
            .push("a parked file with a flipped byte was accepted".to_owned()),
    }
    let mut other_model = ctx.binding;
    other_model.model[0] ^= 1;
    let mut other_tokenizer = ctx.binding;
    other_tokenizer.tokenizer[0] ^= 1;
    for (what, other) in [("model", other_model), ("tokenizer", other_tokenizer)] {
        match SessionSnapshot::from_bytes(&bytes, &other) {
            Err(e) => o.notes.push(format!("other {what} refused: {e}")),
            Ok(_) => o
                .problems
                .push(format!("a parked file was accepted for another {what}")),
        }
    }
    let bad = corrupt_and_reseal(&bytes);
    let restored = SessionSnapshot::from_bytes(&bad, &ctx.binding).and_then(|snap| {
        let mut r = ctx.session(|_| {})?;
        r.restore(&snap)?;
        Ok(r)
    });
    match restored {
        Ok(mut r) => {
            let mut t = Trace::default();
            t.decode(&mut r, n)?;
            t.finish(&mut r)?;
            o.live.rows("corrupted KV resumed", &base.rows, &t.rows);
        }
        Err(e) => {
            o.live_by_refusal = true;
            o.notes.push(format!("corrupted KV refused: {e}"));
        }
    }
    Ok(Ran::Done(Box::new(o)))
}

// ---------------------------------------------------------------- speculation

fn greedy_params(max_tokens: usize, k: usize) -> SpeculativeParams {
    SpeculativeParams {
        max_tokens,
        k,
        stop_tokens: Vec::new(),
        sampling: SamplingParams::greedy(),
    }
}

/// Drafts the true greedy continuation (known from the baseline) with its last token made
/// wrong: every round accepts some drafts and must roll the wrong one back.
struct NearlyRight {
    truth: Vec<u32>,
    n_vocab: u32,
}

impl Drafter for NearlyRight {
    fn draft(&mut self, history: &[u32], k: usize) -> Vec<u32> {
        if k == 0 || !self.truth.starts_with(history) {
            return Vec::new();
        }
        let end = (history.len() + k).min(self.truth.len());
        let mut d = self.truth.get(history.len()..end).unwrap_or(&[]).to_vec();
        if let Some(last) = d.last_mut() {
            *last = (*last + 1) % self.n_vocab.max(1);
        }
        d
    }
}

fn speculate(ctx: &Ctx<'_>) -> BResult<Ran> {
    let (p, base) = ctx.primary();
    let n = ctx.steps();
    let mut o = Outcome::new(
        "plain greedy decoding: tokens and the next-step logits after the last one",
        &format!(
            "speculative_greedy with prompt-lookup drafts (k in {:?}) from several positions, \
             plus drafts of the true continuation with a wrong last token, verified in one batched \
             forward, rejected drafts rolled back",
            ctx.opts.speculate_ks
        ),
        "a forced wrong draft accepted without verification (rollback skipped)",
    );
    o.prompts.push(p.to_vec());
    let (mut drafted, mut accepted, mut trims, mut restores) = (0, 0, 0, 0);
    for j in [0, n / 2] {
        o.positions.push((p.len() + j) as u64);
        // Prompt lookup at each k, then the nearly-right drafter at the largest k.
        let k_max = ctx
            .opts
            .speculate_ks
            .iter()
            .copied()
            .max()
            .unwrap_or(1)
            .max(2);
        let runs = ctx
            .opts
            .speculate_ks
            .iter()
            .map(|&k| (k, false))
            .chain([(k_max, true)]);
        for (k, nearly_right) in runs {
            let mut s = ctx.session(|_| {})?;
            s.prefill(p)?;
            let mut head = Trace::default();
            head.decode(&mut s, j)?;
            let params = greedy_params(n - j, k);
            let out = if nearly_right {
                let mut d = NearlyRight {
                    truth: [p, base.tokens.as_slice()].concat(),
                    n_vocab: ctx.n_vocab() as u32,
                };
                speculative_greedy(&mut s, &params, &mut d)?
            } else {
                speculative_greedy(&mut s, &params, &mut PromptLookup::default())?
            };
            drafted += out.drafted;
            accepted += out.accepted;
            trims += out.trims;
            restores += out.restores;
            let mut tokens = head.tokens.clone();
            tokens.extend_from_slice(&out.tokens);
            let what = if nearly_right {
                format!("from +{j} k={k} nearly-right drafts")
            } else {
                format!("from +{j} k={k}")
            };
            o.ident.tokens(&what, &base.tokens, &tokens);
            let next = s.logits()?.to_vec();
            o.ident
                .row(&what, base.rows.last().map_or(&[], |r| r), &next);
            let mut want = p.to_vec();
            want.extend_from_slice(&base.tokens);
            if s.tokens() != want.as_slice() {
                o.problems
                    .push(format!("{what}: session history differs from plain greedy"));
            }
        }
    }
    o.hashes.push(token_hash(&base.tokens));
    o.notes.push(format!(
        "drafted {drafted}, accepted {accepted}, rollbacks by trim {trims}, by restore {restores}"
    ));
    if drafted == accepted {
        o.problems.push(format!(
            "no draft was rejected ({drafted} drafted): the rollback path was not exercised; \
             the nearly-right drafter should have forced rejections"
        ));
    }
    // Broken rollback: keep a wrong token as if verified.
    let mut s = ctx.session(|_| {})?;
    s.prefill(p)?;
    let mut t = Trace::default();
    t.decode(&mut s, 1)?;
    let wrong = base
        .tokens
        .get(1)
        .map_or(0, |&x| (x + 1) % ctx.n_vocab() as u32);
    s.feed(wrong)?;
    t.tokens.push(wrong);
    t.decode(&mut s, n - 2)?;
    t.finish(&mut s)?;
    o.live.row(
        "next-step logits",
        base.rows.last().map_or(&[], |r| r),
        t.rows.last().map_or(&[], |r| r),
    );
    o.live.tokens("tokens", &base.tokens, &t.tokens);
    Ok(Ran::Done(Box::new(o)))
}

// ---------------------------------------------------------------- interrupt

fn interrupt(ctx: &Ctx<'_>) -> BResult<Ran> {
    let (p, base) = ctx.primary();
    let mut o = Outcome::new(
        "greedy run without logit masks",
        "an empty forbidden-id mask applied before selection at every step",
        "forbidding the baseline's first greedy token (compared on the finite logits)",
    );
    o.prompts.push(p.to_vec());
    o.positions = (p.len() as u64..(p.len() + ctx.steps() + 1) as u64).collect();
    let empty: Vec<u32> = if ctx.opts.fault == Some(Fault::LeakyEmptyMask) {
        vec![ctx.n_vocab().saturating_sub(1) as u32]
    } else {
        Vec::new()
    };
    let mut s = ctx.session(|_| {})?;
    s.hooks_mut()
        .add_logit_mask(Box::new(ForbiddenIds::new(empty)));
    let t = Trace::run(&mut s, p, ctx.steps())?;
    o.ident.rows("empty mask", &base.rows, &t.rows);
    o.ident.tokens("empty mask", &base.tokens, &t.tokens);
    o.hashes.push(token_hash(&t.tokens));

    let Some(&first) = base.tokens.first() else {
        return Ok(Ran::Skip(
            Status::Fail,
            "baseline produced no token".to_owned(),
        ));
    };
    let mut s = ctx.session(|_| {})?;
    s.hooks_mut()
        .add_logit_mask(Box::new(ForbiddenIds::new([first])));
    let mut live = Cmp::finite_only();
    let t = Trace::run(&mut s, p, ctx.steps())?;
    live.rows("mask", &base.rows, &t.rows);
    o.live = live;
    o.hashes.push(token_hash(&t.tokens));
    if t.tokens.first() == Some(&first) {
        o.problems
            .push(format!("token {first} was forbidden but chosen"));
    }
    if t.rows.iter().any(|r| {
        r.get(first as usize)
            .is_none_or(|&x| x != f32::NEG_INFINITY)
    }) {
        o.problems
            .push(format!("forbidden token {first} kept a finite logit"));
    }
    o.notes.push(format!(
        "forbidding {first} changed the first choice to {:?}",
        t.tokens.first()
    ));
    Ok(Ran::Done(Box::new(o)))
}

// ---------------------------------------------------------------- ring

fn ring_rollback(ctx: &Ctx<'_>) -> BResult<Ran> {
    let (p, base) = ctx.primary();
    let n = ctx.steps();
    // The ring wraps halfway through the decode, so rollbacks land before, after and across.
    let w = p.len() + n / 2;
    let before = p.len();
    let after = n * 3 / 4;
    let mut o = Outcome::new(
        &format!(
            "greedy run straight through a forced {w}-position KV ring (SessionOptions::window)"
        ),
        "snapshot/restore before the wrap, after it, and across it; a trim after the wrap; \
         speculative decoding crossing the wrap",
        "the same ring against a full cache (logits must differ once the ring has wrapped)",
    );
    o.prompts.push(p.to_vec());
    o.positions = vec![
        before as u64,
        w as u64,
        (p.len() + after) as u64,
        (p.len() + n - 1) as u64,
    ];
    let ring = |o: &mut SessionOptions| o.window = Some(w);
    let mut s = ctx.session(ring)?;
    let rt = Trace::run(&mut s, p, n)?;
    o.hashes.push(token_hash(&rt.tokens));
    // Before the wrap the ring must equal the full cache.
    let pre = n / 2 + 1;
    o.ident.rows(
        "ring before the wrap vs full cache",
        base.rows.get(..pre).unwrap_or(&[]),
        rt.rows.get(..pre).unwrap_or(&[]),
    );
    o.live.rows(
        "ring after the wrap vs full cache",
        base.rows.get(pre..).unwrap_or(&[]),
        rt.rows.get(pre..).unwrap_or(&[]),
    );

    // Snapshot at `at` decoded tokens, decode `ahead` more, restore and finish.
    let mut rollback = |what: &str, at: usize, ahead: usize| -> BResult<()> {
        let mut s = ctx.session(ring)?;
        s.prefill(p)?;
        let mut t = Trace::default();
        t.decode(&mut s, at)?;
        let snap = s.snapshot()?;
        let mut scratch = Trace::default();
        scratch.decode(&mut s, ahead)?;
        scratch.finish(&mut s)?;
        s.restore(&snap)?;
        t.decode(&mut s, n - at)?;
        t.finish(&mut s)?;
        o.ident.rows(what, &rt.rows, &t.rows);
        o.ident.tokens(what, &rt.tokens, &t.tokens);
        Ok(())
    };
    rollback("restore before the wrap", 0, 1.min(n / 2))?;
    rollback("restore across the wrap", 0, n)?;
    rollback("restore after the wrap", after, n - after)?;

    // Trim after the wrap: the re-run of the new last position needs the entry the ring
    // overwrote last, so the engine refuses (speculation restores a snapshot instead); if it
    // ever accepts, the continuation must be exact.
    let mut s = ctx.session(ring)?;
    let _ = Trace::run(&mut s, p, n)?;
    if !s.cache().has_wrapped() {
        o.problems.push("the ring did not wrap".to_owned());
    }
    match s.trim(p.len() + n - 1) {
        Err(e) => o
            .notes
            .push(format!("trim by one after the wrap refused: {e}")),
        Ok(()) => {
            let mut t = Trace::default();
            t.decode(&mut s, 1)?;
            t.finish(&mut s)?;
            o.ident.rows(
                "trim after the wrap",
                rt.rows.get(n - 1..).unwrap_or(&[]),
                &t.rows,
            );
            o.ident.tokens(
                "trim after the wrap",
                rt.tokens.get(n - 1..).unwrap_or(&[]),
                &t.tokens,
            );
        }
    }
    // A trim back before the wrap needs overwritten entries: refused, or else exact.
    match s.trim(before) {
        Err(e) => o
            .notes
            .push(format!("trim back across the wrap refused: {e}")),
        Ok(()) => {
            let mut t = Trace::default();
            t.decode(&mut s, n)?;
            t.finish(&mut s)?;
            o.ident.rows("trim back across the wrap", &rt.rows, &t.rows);
        }
    }

    // Speculation whose verify batches cross the wrap.
    let (mut trims, mut restores) = (0, 0);
    for &k in &ctx.opts.speculate_ks {
        let mut s = ctx.session(ring)?;
        s.prefill(p)?;
        let out = speculative_greedy(&mut s, &greedy_params(n, k), &mut PromptLookup::default())?;
        trims += out.trims;
        restores += out.restores;
        let what = format!("speculation k={k} on the ring");
        o.ident.tokens(&what, &rt.tokens, &out.tokens);
        let next = s.logits()?.to_vec();
        o.ident.row(&what, rt.rows.last().map_or(&[], |r| r), &next);
    }
    o.notes.push(format!(
        "ring speculation rollbacks: {trims} by trim, {restores} by restore"
    ));
    Ok(Ran::Done(Box::new(o)))
}

// ---------------------------------------------------------------- MoE

/// Allows every expert, or (for the fault) forbids expert 0 in `layer`.
struct Allow {
    leak_layer: Option<usize>,
}

impl ExpertMask for Allow {
    fn allowed(&self, layer: usize, _position: u64, expert: u32) -> bool {
        !(self.leak_layer == Some(layer) && expert == 0)
    }
}

/// Forbids one expert in one layer at every position.
struct Forbid {
    layer: usize,
    expert: u32,
}

impl ExpertMask for Forbid {
    fn allowed(&self, layer: usize, _position: u64, expert: u32) -> bool {
        !(layer == self.layer && expert == self.expert)
    }
}

/// Collects routes.
struct Tap(Arc<Mutex<Vec<LayerRoute>>>);

impl RouterObserver for Tap {
    fn observe(&mut self, route: &LayerRoute) {
        if let Ok(mut v) = self.0.lock() {
            v.push(route.clone());
        }
    }
}

fn dense_skip(ctx: &Ctx<'_>) -> Option<Ran> {
    ctx.model.config().moe.is_none().then(|| {
        Ran::Skip(
            Status::NotApplicable,
            "dense model: no experts or router".to_owned(),
        )
    })
}

fn expert_mask(ctx: &Ctx<'_>) -> BResult<Ran> {
    if let Some(skip) = dense_skip(ctx) {
        return Ok(skip);
    }
    let (p, base) = ctx.primary();
    let mut o = Outcome::new(
        "greedy run without an expert mask",
        "an expert mask that allows every expert",
        "forbidding, in the first MoE layer, the expert the router chose first for the last \
         prompt token",
    );
    o.prompts.push(p.to_vec());
    let leak = (ctx.opts.fault == Some(Fault::LeakyEmptyExpertMask)).then_some(0);
    let mut s = ctx.session(|_| {})?;
    s.hooks_mut()
        .set_expert_mask(Some(Box::new(Allow { leak_layer: leak })));
    let t = Trace::run(&mut s, p, ctx.steps())?;
    o.ident.rows("allow-all mask", &base.rows, &t.rows);
    o.ident.tokens("allow-all mask", &base.tokens, &t.tokens);
    o.hashes.push(token_hash(&t.tokens));

    let mut s = ctx.session(|_| {})?;
    s.prefill(p)?;
    let Some((layer, expert)) = s
        .routes()
        .first()
        .and_then(|r| r.chosen.first().map(|c| (r.layer, c.0)))
    else {
        return Ok(Ran::Skip(
            Status::Fail,
            "the MoE model reported no routes after prefill".to_owned(),
        ));
    };
    o.positions = (0..(p.len() + ctx.steps()) as u64).collect();
    let mut s = ctx.session(|_| {})?;
    let seen = Arc::new(Mutex::new(Vec::new()));
    s.hooks_mut()
        .set_expert_mask(Some(Box::new(Forbid { layer, expert })))
        .add_router_observer(Box::new(Tap(seen.clone())));
    let t = Trace::run(&mut s, p, ctx.steps())?;
    o.live.rows("expert masked", &base.rows, &t.rows);
    let routes = seen.lock().map(|r| r.clone()).unwrap_or_default();
    if routes
        .iter()
        .any(|r| r.layer == layer && r.chosen.iter().any(|c| c.0 == expert))
    {
        o.problems.push(format!(
            "forbidden expert {expert} of layer {layer} was still chosen"
        ));
    }
    o.notes.push(format!(
        "masked expert {expert} of layer {layer}; never chosen in {} routes",
        routes.len()
    ));
    isolation_against_rewrite(ctx, p, expert, &mut o)?;
    Ok(Ran::Done(Box::new(o)))
}

/// Largest model file the expert-mask battery rewrites in memory for the isolation check.
const REWRITE_CAP_BYTES: usize = 2 << 30;

/// Forbids one expert in every layer.
struct ForbidEverywhere(u32);

impl ExpertMask for ForbidEverywhere {
    fn allowed(&self, _layer: usize, _position: u64, expert: u32) -> bool {
        expert != self.0
    }
}

/// Isolation, independently witnessed: the model with `expert` forbidden in every layer must
/// give, step for step, the logits of the same file rewritten without that expert.
fn isolation_against_rewrite(
    ctx: &Ctx<'_>,
    prompt: &[u32],
    expert: u32,
    o: &mut Outcome,
) -> BResult<()> {
    let file = ctx.model.file();
    if file.bytes().len() > REWRITE_CAP_BYTES {
        o.notes.push(format!(
            "isolation against a rewritten file skipped: the model file is over {} GiB",
            REWRITE_CAP_BYTES >> 30
        ));
        return Ok(());
    }
    let bytes = if ctx.opts.fault == Some(Fault::RewriteKeepsExpert) {
        // The deliberate fault: the "independent" model still holds every expert.
        file.bytes().to_vec()
    } else {
        crate::gguf::rewrite::without_experts(file, &[expert]).map_err(EngineError::from)?
    };
    let rewritten = crate::gguf::GgufFile::from_bytes(bytes).map_err(EngineError::from)?;
    let rewritten = Arc::new(Model::from_file(Arc::new(rewritten))?);
    let mut s = ctx.session(|_| {})?;
    s.hooks_mut()
        .set_expert_mask(Some(Box::new(ForbidEverywhere(expert))));
    let masked = Trace::run(&mut s, prompt, ctx.steps())?;
    let mut s = Session::new(rewritten, &ctx.base_opts())?;
    let iso = Trace::run(&mut s, prompt, ctx.steps())?;
    o.ident.rows(
        "masked everywhere vs file without the expert",
        &masked.rows,
        &iso.rows,
    );
    o.ident.tokens(
        "masked everywhere vs file without the expert",
        &masked.tokens,
        &iso.tokens,
    );
    o.hashes.push(token_hash(&masked.tokens));
    o.notes.push(format!(
        "isolation: expert {expert} forbidden in every layer equals the file rewritten without it"
    ));
    Ok(())
}

/// The Mode-B injector (research, `--research`): after the middle block, armed with a zero
/// `up` and a result vector of ones, and disarmed with a random `up`, it is the identity; armed
/// with a random `up` it changes the logits.
fn mode_b(ctx: &Ctx<'_>) -> BResult<Ran> {
    if !ctx.opts.research {
        return Ok(Ran::Skip(
            Status::NotApplicable,
            "research mechanism: run with --research".to_owned(),
        ));
    }
    let (p, base) = ctx.primary();
    let cfg = ctx.model.config();
    let layer = cfg.n_layer / 2;
    let mut o = Outcome::new(
        "greedy run without hooks",
        &format!(
            "Mode-B injector after block {layer} (bottleneck 64, result 16): armed with up = 0 \
             and result = ones; disarmed with up ~ N(0, 0.02)"
        ),
        "armed with up ~ N(0, 0.02) and result = ones",
    );
    o.prompts.push(p.to_vec());
    o.positions = (0..(p.len() + ctx.steps()) as u64).collect();
    let injector = |up: bool, armed: bool| -> BResult<ModeBInjector> {
        let mut inj = ModeBInjector::new(layer, cfg.n_embd, 7);
        inj.set_result(&[1.0; crate::engine::mode_b::DEFAULT_RESULT_DIM])
            .map_err(|e| EngineError::Hook {
                site: "mode_b",
                reason: e.0,
            })?;
        if up {
            inj.randomize_up(11, 0.02);
        }
        inj.armed = armed;
        Ok(inj)
    };
    let mut zero = injector(false, true)?;
    if ctx.opts.fault == Some(Fault::ModeBUpNotZero) {
        zero.randomize_up(11, 0.02);
    }
    for (label, inj) in [
        ("armed, up = 0", zero),
        ("disarmed, up random", injector(true, false)?),
    ] {
        let mut s = ctx.session(|_| {})?;
        s.hooks_mut().add_post_block(Box::new(inj));
        let t = Trace::run(&mut s, p, ctx.steps())?;
        o.ident.rows(label, &base.rows, &t.rows);
        o.ident.tokens(label, &base.tokens, &t.tokens);
    }
    let mut s = ctx.session(|_| {})?;
    s.hooks_mut()
        .add_post_block(Box::new(injector(true, true)?));
    let live = Trace::run(&mut s, p, ctx.steps())?;
    o.live.rows("armed, up random", &base.rows, &live.rows);
    o.hashes.push(token_hash(&live.tokens));
    Ok(Ran::Done(Box::new(o)))
}

fn router_tap(ctx: &Ctx<'_>) -> BResult<Ran> {
    if let Some(skip) = dense_skip(ctx) {
        return Ok(skip);
    }
    let (p, base) = ctx.primary();
    let mut o = Outcome::new(
        "greedy run without a router observer",
        "a router observer recording every layer's route of every position",
        "the tap's gate probabilities for the last prompt token of an altered prompt differ",
    );
    o.prompts.push(p.to_vec());
    let n_pos = (p.len() + ctx.steps()) as u64;
    o.positions = (0..n_pos).collect();
    let tap = |prompt: &[u32]| -> BResult<(Trace, Vec<LayerRoute>)> {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut s = ctx.session(|_| {})?;
        s.hooks_mut()
            .add_router_observer(Box::new(Tap(seen.clone())));
        let t = Trace::run(&mut s, prompt, ctx.steps())?;
        let routes = seen.lock().map(|r| r.clone()).unwrap_or_default();
        Ok((t, routes))
    };
    let (t, routes) = tap(p)?;
    o.ident.rows("tap on", &base.rows, &t.rows);
    o.ident.tokens("tap on", &base.tokens, &t.tokens);
    o.hashes.push(token_hash(&t.tokens));
    let n_expert = ctx.model.config().moe.as_ref().map_or(0, |m| m.n_expert);
    let mut layers: Vec<usize> = routes.iter().map(|r| r.layer).collect();
    layers.sort_unstable();
    layers.dedup();
    let complete = layers.iter().all(|&l| {
        let mut ps: Vec<u64> = routes
            .iter()
            .filter(|r| r.layer == l)
            .map(|r| r.position)
            .collect();
        ps.sort_unstable();
        ps == (0..n_pos).collect::<Vec<_>>()
    });
    let sane = routes.iter().all(|r| {
        let h = r.normalized_entropy();
        r.probs.len() == n_expert && !r.chosen.is_empty() && (0.0..=1.0 + 1e-4).contains(&h)
    });
    if routes.is_empty() || !complete || !sane {
        o.problems.push(format!(
            "router tap reported {} routes over layers {layers:?}: expected one per MoE layer \
             and position 0..{n_pos}, with {n_expert} probabilities and entropy in [0, 1]",
            routes.len()
        ));
    }
    o.notes.push(format!(
        "{} routes over {} MoE layers and {n_pos} positions",
        routes.len(),
        layers.len()
    ));
    let last = p.len() as u64 - 1;
    let probs_at = |rs: &[LayerRoute]| {
        rs.iter()
            .find(|r| r.position == last)
            .map(|r| r.probs.clone())
            .unwrap_or_default()
    };
    let (_, alt_routes) = tap(&ctx.altered(p))?;
    o.live.row(
        "gate probabilities at the last prompt token",
        &probs_at(&routes),
        &probs_at(&alt_routes),
    );
    Ok(Ran::Done(Box::new(o)))
}

// ---------------------------------------------------------------- lanes

fn lanes(ctx: &Ctx<'_>) -> BResult<Ran> {
    let mut o = Outcome::new(
        "each prompt decoded alone in its own session",
        "one session per prompt advanced round-robin, one greedy step per lane per turn",
        "lane 0's logits against lane 1's (the lanes must not be trivially equal)",
    );
    let mut prompts: Vec<Vec<u32>> = ctx.prompts.to_vec();
    let mut alone: Vec<Trace> = ctx.baselines.clone();
    if prompts.len() < 2 {
        // A second lane from the altered first prompt, run alone first.
        let (p, _) = ctx.primary();
        let q = ctx.altered(p);
        let mut s = ctx.session(|_| {})?;
        alone.push(Trace::run(&mut s, &q, ctx.steps())?);
        prompts.push(q);
    }
    let mut sessions = Vec::with_capacity(prompts.len());
    for p in &prompts {
        let mut s = ctx.session(|_| {})?;
        s.prefill(p)?;
        sessions.push((s, Trace::default()));
    }
    for _ in 0..ctx.steps() {
        for (s, t) in &mut sessions {
            t.decode(s, 1)?;
        }
    }
    for (s, t) in &mut sessions {
        t.finish(s)?;
    }
    for (i, ((_, t), a)) in sessions.iter().zip(&alone).enumerate() {
        o.ident.rows(&format!("lane {i}"), &a.rows, &t.rows);
        o.ident.tokens(&format!("lane {i}"), &a.tokens, &t.tokens);
        o.hashes.push(token_hash(&t.tokens));
    }
    if let (Some((_, a)), Some((_, b))) = (sessions.first(), sessions.get(1)) {
        o.live.rows("lane 0 vs lane 1", &a.rows, &b.rows);
    }
    // The engine's scheduler: the same lanes through `LaneScheduler` rounds (gated, one token
    // per lane per round): same tokens and the same next-step logits as each lane alone.
    let mut sched = LaneScheduler::new();
    for p in &prompts {
        let mut s = ctx.session(|_| {})?;
        s.prefill(p)?;
        let params = GenerateParams {
            max_tokens: ctx.steps(),
            stop_tokens: Vec::new(),
            sampling: SamplingParams::greedy(),
        };
        sched.add(s, params, Box::new(AcceptAll));
    }
    sched.run();
    let mut finished = sched.take_finished();
    finished.sort_by_key(|f| f.id);
    for (f, a) in finished.iter_mut().zip(&alone) {
        let label = format!("scheduler lane {}", f.id);
        match &f.result {
            Ok(g) => o.ident.tokens(&label, &a.tokens, &g.tokens),
            Err(e) => o.problems.push(format!("{label} failed: {e}")),
        }
        let last = f.session.logits()?.to_vec();
        o.ident.rows(
            &label,
            a.rows.last().map(std::slice::from_ref).unwrap_or(&[]),
            &[last],
        );
    }
    o.notes.push(format!(
        "{} lanes through LaneScheduler: {} rounds, one token per lane per round",
        finished.len(),
        sched.rounds()
    ));
    o.prompts = prompts;
    Ok(Ran::Done(Box::new(o)))
}
