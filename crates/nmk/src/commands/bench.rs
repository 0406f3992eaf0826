//! `nmk bench`: prefill and decode speed of a model (median of runs, 1 and 2 threads), peak RSS,
//! and the roofline fraction: weight bytes read per decoded token × tokens/s against a memory
//! bandwidth measured in the same process. With `--mechanisms`, the costs of the engine's
//! mechanisms instead (see [`super::bench_mechanisms`]).

use std::path::Path;
use std::time::Instant;

use anyhow::Result;
use clap::Args;
use nmk_neural::engine::SamplingParams;
use nmk_neural::text::TextModel;

use super::Output;
use super::bench_mechanisms::{self, MechanismParams};
use super::run::{ModelArgs, load};
use crate::exit::Code;

/// Options of `nmk bench`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  nmk bench\n  nmk bench --runs 3 --thread-counts 1,2,4 --json\n  nmk bench --mechanisms\n  nmk bench --fact-loop --fact-items 40\n  nmk bench --recurring --requests 200 --json"
)]
pub struct BenchArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Prompt tokens to prefill.
    #[arg(long, default_value_t = 64)]
    prompt_tokens: usize,
    /// Tokens to decode (end-of-sequence ignored).
    #[arg(long, default_value_t = 64)]
    gen_tokens: usize,
    /// Runs per thread count (the median is reported).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Thread counts to measure.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    thread_counts: Vec<usize>,
    /// Measure the mechanisms' overheads INSTEAD of the speed table (the speed options above
    /// are then ignored except --prompt-tokens and --gen-tokens, used by the hooks run): decode
    /// with every hook type installed empty vs bare (time ratio; logits checked bit-identical),
    /// park/resume to memory and to bytes per 1k tokens of context, and speculative decoding
    /// (prompt lookup) vs plain greedy on a "repeat this paragraph" prompt. Each is the median
    /// of --mech-runs repetitions against a baseline run in the same process; --threads applies.
    #[arg(long)]
    mechanisms: bool,
    /// Repetitions of each mechanism measurement.
    #[arg(long, default_value_t = 5)]
    mech_runs: usize,
    /// Context tokens of the parked session (--mechanisms).
    #[arg(long, default_value_t = 512)]
    park_tokens: usize,
    /// Most tokens produced by the speculation comparison (--mechanisms).
    #[arg(long, default_value_t = 96)]
    spec_tokens: usize,
    /// Draft tokens verified per speculative round (--mechanisms).
    #[arg(long, default_value_t = 8)]
    spec_k: usize,
    /// Run the fact-loop A/B INSTEAD of the speed table: a generated count-then-add task set,
    /// answered bare, always grounded, by the governed fact loop (re-prefill) and by the
    /// governed loop grounding mid-stream; accuracy with 95 % intervals, generations and tokens.
    #[arg(long)]
    fact_loop: bool,
    /// Items of the fact-loop A/B (half easy, half hard).
    #[arg(long, default_value_t = 200)]
    fact_items: usize,
    /// Seed of the fact-loop task set.
    #[arg(long, default_value_t = 0)]
    fact_seed: u64,
    /// Most tokens per answer in the fact-loop A/B.
    #[arg(long, default_value_t = 24)]
    fact_max_tokens: usize,
    /// Serve a recurring workload through the kernel INSTEAD of the speed table: requests from
    /// a few task families (four a learned primitive can own, one control family), each routed
    /// as `nmk run` routes it; tokens, latency and accuracy per family. Run it before and after
    /// `nmk learn` (bench/recurring/run.sh).
    #[arg(long)]
    recurring: bool,
    /// Requests of the recurring workload.
    #[arg(long, default_value_t = 1000)]
    requests: usize,
    /// Seed of the recurring workload.
    #[arg(long, default_value_t = 0)]
    recurring_seed: u64,
    /// Most tokens per model answer in the recurring workload.
    #[arg(long, default_value_t = 32)]
    recurring_max_tokens: usize,
}

const FILLER: &str = "The quick brown fox jumps over the lazy dog while the sun sets slowly \
behind the hills, and the river carries the last light of the day towards the distant sea. ";

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs.get(xs.len() / 2).copied().unwrap_or(0.0)
}

/// Prompt ids of exactly `n` tokens (filler text, repeated as needed).
pub(crate) fn prompt_ids(m: &TextModel, n: usize) -> Vec<u32> {
    let mut ids = m
        .tokenizer()
        .encode(&FILLER.repeat(1 + n / 16), true, false);
    ids.truncate(n.max(1));
    ids
}

struct Measured {
    prefill_tps: f64,
    decode_tps: f64,
}

fn one_run(m: &TextModel, ids: &[u32], n_gen: usize) -> Result<Measured> {
    let mut s = m.session(0)?;
    let t0 = Instant::now();
    s.prefill(ids)?;
    let _ = s.logits()?;
    let prefill = t0.elapsed().as_secs_f64();
    let greedy = SamplingParams::greedy();
    let t1 = Instant::now();
    for _ in 0..n_gen {
        let t = s.sample(&greedy)?;
        s.feed(t)?;
        let _ = s.logits()?;
    }
    let decode = t1.elapsed().as_secs_f64();
    Ok(Measured {
        prefill_tps: ids.len() as f64 / prefill.max(1e-9),
        decode_tps: n_gen as f64 / decode.max(1e-9),
    })
}

/// Streaming read bandwidth in GB/s (best of 3 passes over 256 MiB).
fn memory_bandwidth() -> f64 {
    let words = (256usize << 20) / 8;
    let buf: Vec<u64> = (0..words as u64).collect();
    let mut best = 0.0f64;
    for _ in 0..3 {
        let t = Instant::now();
        let mut lanes = [0u64; 8];
        for c in buf.chunks_exact(8) {
            for (l, &x) in lanes.iter_mut().zip(c) {
                *l = l.wrapping_add(x);
            }
        }
        let sum = lanes.iter().fold(0u64, |a, &x| a.wrapping_add(x));
        let secs = t.elapsed().as_secs_f64();
        std::hint::black_box(sum);
        best = best.max((words * 8) as f64 / secs.max(1e-9) / 1e9);
    }
    best
}

fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Bytes of weights read to decode one token: every tensor once, except the embedding table, of
/// which one row is read (unless it doubles as the output head).
fn weight_bytes_per_token(m: &TextModel) -> u64 {
    let file = m.model().file();
    let tied = m.model().config().tied_output;
    let mut bytes = 0u64;
    for t in file.tensors() {
        if t.name() == "token_embd.weight" && !tied {
            let rows = t.dims().iter().skip(1).product::<u64>().max(1);
            bytes += t.n_bytes() / rows;
        } else {
            bytes += t.n_bytes();
        }
    }
    bytes
}

fn run_mechanisms(out: &Output, args: &BenchArgs, m: &TextModel) -> Result<Code> {
    let params = MechanismParams {
        runs: args.mech_runs,
        prompt_tokens: args.prompt_tokens,
        gen_tokens: args.gen_tokens,
        park_tokens: args.park_tokens,
        spec_tokens: args.spec_tokens,
        spec_k: args.spec_k,
    };
    let mech = bench_mechanisms::measure(m, &params)?;
    if out.json {
        out.print_json(&serde_json::json!({
            "model": args.model.model,
            "threads": args.model.threads,
            "peak_rss_mib": peak_rss_mib(),
            "mechanisms": mech,
        }));
    } else {
        println!("{} ({} thread(s))", args.model.model, args.model.threads);
        bench_mechanisms::print(&mech);
    }
    Ok(Code::Success)
}

/// Runs `nmk bench`.
pub fn run(home: &Path, out: &Output, args: &BenchArgs) -> Result<Code> {
    if args.recurring {
        let r = super::bench_recurring::run(
            home,
            &super::bench_recurring::Options {
                model: &args.model.model,
                threads: args.model.threads,
                requests: args.requests,
                seed: args.recurring_seed,
                max_tokens: args.recurring_max_tokens,
                progress: !super::progress::hidden(out.json),
            },
        )?;
        if out.json {
            out.print_json(&r);
        } else {
            super::bench_recurring::print(&r);
        }
        return Ok(Code::Success);
    }
    let mut m = load(&args.model, out.json)?;
    if args.mechanisms {
        return run_mechanisms(out, args, &m);
    }
    if args.fact_loop {
        let r =
            super::bench_fact_loop::run(&m, args.fact_items, args.fact_seed, args.fact_max_tokens)?;
        if out.json {
            out.print_json(&serde_json::json!({"model": args.model.model, "fact_loop": r}));
        } else {
            super::bench_fact_loop::print(&r);
        }
        return Ok(Code::Success);
    }
    let ids = prompt_ids(&m, args.prompt_tokens);
    let bytes_per_token = weight_bytes_per_token(&m);
    let bandwidth = memory_bandwidth();
    let mut rows = Vec::new();
    let bar = super::progress::bar(
        (args.thread_counts.len() * args.runs.max(1)) as u64,
        "runs",
        super::progress::hidden(out.json),
    );
    for &threads in &args.thread_counts {
        m.set_threads(threads);
        bar.set_message(format!("{threads} thread(s)"));
        let _ = one_run(&m, &ids, 4)?; // warm-up: page in the weights
        let mut prefill = Vec::new();
        let mut decode = Vec::new();
        for _ in 0..args.runs.max(1) {
            let r = one_run(&m, &ids, args.gen_tokens)?;
            prefill.push(r.prefill_tps);
            decode.push(r.decode_tps);
            bar.inc(1);
        }
        let (p, d) = (median(prefill), median(decode));
        let achieved = bytes_per_token as f64 * d / 1e9;
        rows.push(serde_json::json!({
            "threads": threads,
            "prefill_tokens_per_s": p,
            "decode_tokens_per_s": d,
            "weight_gb_per_s": achieved,
            "roofline_fraction": achieved / bandwidth.max(1e-9),
        }));
    }
    bar.finish_and_clear();
    let report = serde_json::json!({
        "model": args.model.model,
        "prompt_tokens": ids.len(),
        "prompt_ids": ids,
        "gen_tokens": args.gen_tokens,
        "runs": args.runs,
        "weight_bytes_per_token": bytes_per_token,
        "memory_bandwidth_gb_per_s": bandwidth,
        "peak_rss_mib": peak_rss_mib(),
        "results": rows,
    });
    if out.json {
        out.print_json(&report);
    } else {
        println!(
            "{}: {} prompt tokens, {} decoded, median of {} runs",
            args.model.model,
            ids.len(),
            args.gen_tokens,
            args.runs
        );
        println!(
            "weights read per token {:.1} MiB; measured read bandwidth {:.1} GB/s; peak RSS {:.0} MiB",
            bytes_per_token as f64 / (1 << 20) as f64,
            bandwidth,
            peak_rss_mib().unwrap_or(0.0)
        );
        println!(
            "{:>7} {:>14} {:>13} {:>10} {:>9}",
            "threads", "prefill tok/s", "decode tok/s", "weight GB/s", "roofline"
        );
        for r in &rows {
            println!(
                "{:>7} {:>14.1} {:>13.1} {:>10.2} {:>8.0}%",
                r["threads"],
                r["prefill_tokens_per_s"].as_f64().unwrap_or(0.0),
                r["decode_tokens_per_s"].as_f64().unwrap_or(0.0),
                r["weight_gb_per_s"].as_f64().unwrap_or(0.0),
                100.0 * r["roofline_fraction"].as_f64().unwrap_or(0.0)
            );
        }
    }
    Ok(Code::Success)
}
