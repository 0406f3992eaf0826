//! `nmk learn GAP_FILE...`: the model writes a program for each gap, the kernel admits or
//! refuses it (every verdict a ledger entry), and admitted programs become learned primitives
//! that later answer with zero model tokens.
//!
//! With `--escalate` each gap climbs the escalation ladder instead (greedy, k diverse samples
//! with k from the dynamic-k policy on live host load, repairs, research when `--research` is
//! given and `net:fetch` granted, then an honest abstention), printing every rung.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use nmk_det::gate::gapfile::GapFileError;
use nmk_kernel::capability::{Capability, Grants};
use nmk_kernel::k_policy::{CostModel, CostSource, KPolicy, QueueDepth};
use nmk_kernel::learn::escalate::{
    EscalateConfig, EscalateEvent, Escalation, EscalationReport, escalate,
};
use nmk_kernel::learn::{LearnConfig, LearnEvent, learn};
use nmk_kernel::research::{FetchPolicy, NET_FETCH, Research};

use super::Output;
use super::learned;
use crate::exit::Code;

/// Options of `nmk learn`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  nmk learn examples/gaps/gcd.toml\n  nmk learn examples/gaps/*.toml --attempts 5\n  nmk learn --escalate --budget 8 examples/gaps/is_palindrome.toml\n  nmk learn --json --no-register examples/gaps/count_vowels.toml"
)]
pub struct LearnArgs {
    /// Gap files (TOML), one program learned per gap.
    #[arg(required = true)]
    gaps: Vec<PathBuf>,
    /// The model that proposes programs (registry name or .gguf path).
    #[arg(long, default_value = "qwen2.5-coder-0.5b-instruct")]
    model: String,
    /// Attempts per gap (the first greedy, later ones sampled with feedback).
    #[arg(long, default_value_t = 3)]
    attempts: u32,
    /// Most tokens one attempt may generate.
    #[arg(long, default_value_t = 384)]
    max_tokens: u32,
    /// Sampling temperature of attempts after the first.
    #[arg(long, default_value_t = 0.8)]
    temperature: f32,
    /// Decode threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Held-out instances per seed (default: each gap file's n).
    #[arg(long)]
    n: Option<usize>,
    /// Do not store admitted programs as learned primitives.
    #[arg(long)]
    no_register: bool,
    /// Climb the escalation ladder (greedy, diverse samples, repairs, research, abstain)
    /// instead of the plain attempt loop; --attempts and --temperature do not apply.
    #[arg(long)]
    escalate: bool,
    /// With --escalate: a fixed tier-2 width instead of the dynamic-k policy.
    #[arg(long, requires = "escalate")]
    fixed_k: Option<u32>,
    /// With --escalate: importance of the gaps for the k decision, in [0, 1].
    #[arg(long, default_value_t = 0.5, requires = "escalate")]
    importance: f64,
    /// With --escalate: budget units for each gap's tier 2 (default: none).
    #[arg(long, requires = "escalate")]
    budget: Option<f64>,
    /// With --escalate: configure tier-4 research over HTTP (it runs only if `net:fetch` is
    /// also granted with --grant net:fetch).
    #[arg(long, requires = "escalate")]
    research: bool,
    /// Search URL template for --research; `{q}` is replaced by the query.
    #[arg(long, default_value = crate::research::DEFAULT_SEARCH_URL, requires = "research")]
    research_url: String,
    /// Capabilities granted to the run (only `net:fetch` is used, by --research).
    #[arg(long = "grant", value_name = "CAP")]
    grants: Vec<String>,
}

struct GapResult {
    json: serde_json::Value,
    admitted: bool,
}

/// Runs `nmk learn`.
pub fn run(home: &std::path::Path, out: &Output, args: &LearnArgs) -> Result<Code> {
    let started = Instant::now();
    let quiet = out.json || !std::io::stderr().is_terminal();
    // Parse every gap file first: a typo in the last one should not cost a model load.
    let mut files = Vec::new();
    for path in &args.gaps {
        match learned::read_gap(path) {
            Ok(f) => files.push((path.clone(), f)),
            Err(e) => {
                eprintln!("error: {e}");
                return Ok(Code::Usage);
            }
        }
    }
    let mut grants = Grants::none();
    for g in &args.grants {
        match Capability::parse(g) {
            Ok(c) => grants.grant(c),
            Err(e) => {
                eprintln!("error: --grant: {e}");
                return Ok(Code::Usage);
            }
        }
    }
    if args.research && !args.grants.iter().any(|g| g == NET_FETCH) {
        eprintln!(
            "warning: --research without --grant {NET_FETCH}: the kernel will not run research"
        );
    }
    let model_path = super::model::resolve_with_progress(&args.model, quiet)?;
    let mut proposer =
        crate::proposer::NeuralProposer::load(&args.model, &model_path, args.threads)?;
    let sandbox = Arc::new(crate::sandbox::start()?);
    let mut kernel = learned::open(home)?;

    let attempts = args.attempts.max(1);
    let bar = if quiet {
        ProgressBar::hidden()
    } else {
        let b = ProgressBar::with_draw_target(
            Some(files.len() as u64 * u64::from(attempts)),
            ProgressDrawTarget::stderr(),
        );
        b.set_style(
            ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        b.enable_steady_tick(Duration::from_millis(200));
        b
    };
    let mut results = Vec::new();
    for (gi, (path, file)) in files.iter().enumerate() {
        let base = gi as u64 * u64::from(attempts);
        bar.set_position(base);
        bar.set_message(format!(
            "{} ({}/{}): building the gap",
            file.entry,
            gi + 1,
            files.len()
        ));
        let t0 = Instant::now();
        let gap = match file.build(sandbox.clone()) {
            Ok(g) => g,
            Err(e) => {
                let reason = match e {
                    GapFileError::Unsound { .. } => "gap_unsound",
                    _ => "gap_error",
                };
                results.push(GapResult {
                    json: serde_json::json!({
                        "gap": path.display().to_string(),
                        "entry": file.entry,
                        "admitted": false,
                        "reason": reason,
                        "detail": e.to_string(),
                        "attempts": [],
                        "tokens": 0,
                        "elapsed_ms": t0.elapsed().as_millis() as u64,
                    }),
                    admitted: false,
                });
                continue;
            }
        };
        let mut gate = file.gate_config();
        if let Some(n) = args.n {
            gate.n = n;
        }
        if args.escalate {
            let report = escalate_gap(
                &gap,
                gate,
                args,
                &grants,
                &mut proposer,
                &sandbox,
                &mut kernel,
                &bar,
            )?;
            results.push(GapResult {
                admitted: report.solved,
                json: escalation_json(path, &report),
            });
            continue;
        }
        let config = LearnConfig {
            max_attempts: attempts,
            max_tokens: args.max_tokens,
            temperature: args.temperature,
            gate,
        };
        let entry = file.entry.clone();
        let (gi1, total) = (gi + 1, files.len());
        let mut on_event = |e: LearnEvent<'_>| match e {
            LearnEvent::Proposing { attempt, of } => {
                bar.set_position(base + u64::from(attempt - 1));
                bar.set_message(format!(
                    "{entry} ({gi1}/{total}): attempt {attempt}/{of}, the model is writing"
                ));
            }
            LearnEvent::Gating { attempt, tokens } => bar.set_message(format!(
                "{entry} ({gi1}/{total}): attempt {attempt}, {tokens} tokens, gating"
            )),
            LearnEvent::Verdict { attempt, admission } => {
                bar.set_position(base + u64::from(attempt));
                bar.println(format!(
                    "  {entry} attempt {attempt}: {}",
                    if admission.admitted {
                        "admitted".to_owned()
                    } else {
                        format!("refused ({})", admission.reason_str())
                    }
                ));
            }
        };
        let registry = if args.no_register {
            None
        } else {
            Some(&mut kernel.registry)
        };
        let outcome = learn(
            &gap,
            &mut proposer,
            &sandbox,
            &kernel.ledger,
            registry,
            &config,
            &mut on_event,
        )?;
        let mut json = learned::outcome_json(&outcome);
        if let Some(obj) = json.as_object_mut() {
            obj.insert("gap".into(), path.display().to_string().into());
        }
        results.push(GapResult {
            json,
            admitted: outcome.admitted,
        });
    }
    bar.finish_and_clear();
    let admitted = results.iter().filter(|r| r.admitted).count();
    if out.json {
        out.print_json(&serde_json::json!({
            "model": args.model,
            "admitted": admitted,
            "gaps": results.len(),
            "results": results.iter().map(|r| r.json.clone()).collect::<Vec<_>>(),
            "elapsed_ms": started.elapsed().as_millis() as u64,
        }));
    } else {
        println!(
            "{:<20} {:<9} {:>8} {:<18} {:>7} {:>8}",
            "gap", "verdict", "attempts", "reason", "tokens", "time"
        );
        for r in &results {
            let j = &r.json;
            if let Some(log) = j["log"].as_array() {
                print_escalation(j, log);
                continue;
            }
            println!(
                "{:<20} {:<9} {:>8} {:<18} {:>7} {:>7.1}s",
                j["entry"].as_str().unwrap_or(""),
                if r.admitted { "admitted" } else { "refused" },
                j["attempts"].as_array().map_or(0, Vec::len),
                j["reason"].as_str().unwrap_or(""),
                j["tokens"].as_u64().unwrap_or(0),
                j["elapsed_ms"].as_u64().unwrap_or(0) as f64 / 1000.0,
            );
        }
        println!(
            "{admitted} of {} gaps {} in {:.1}s; every verdict is in the ledger ({}).",
            results.len(),
            if args.escalate { "solved" } else { "admitted" },
            started.elapsed().as_secs_f64(),
            kernel.db.display()
        );
    }
    Ok(if admitted == results.len() {
        Code::Success
    } else {
        Code::CheckFailed
    })
}

/// Runs the escalation ladder on one gap.
#[allow(clippy::too_many_arguments)]
fn escalate_gap(
    gap: &nmk_det::gate::Gap,
    gate: nmk_det::gate::GateConfig,
    args: &LearnArgs,
    grants: &Grants,
    proposer: &mut crate::proposer::NeuralProposer,
    sandbox: &nmk_det::sandbox::Sandbox,
    kernel: &mut learned::Kernel,
    bar: &ProgressBar,
) -> Result<EscalationReport> {
    let mut config = EscalateConfig::for_gap(gap);
    config.gate = gate;
    config.max_tokens = args.max_tokens;
    config.importance = args.importance;
    config.budget = args.budget;
    match args.fixed_k {
        Some(k) => {
            config.policy = None;
            config.fixed_k = k.max(1);
        }
        None => config.policy = Some(KPolicy::default()),
    }
    // Live host load; a sensor that cannot start counts as fully loaded (cost 1.0).
    let sensor = crate::sensors::SysinfoSensor::new(crate::sensors::GpuProbe::CpuOnly);
    let model = CostModel::default();
    let cost = match &sensor {
        Ok(s) => CostSource::Sensor {
            sensor: s,
            model: &model,
            queue: Some(QueueDepth::default()),
        },
        Err(_) => CostSource::Unknown,
    };
    let http = args.research.then(|| {
        crate::research::HttpResearch::new(&args.research_url, FetchPolicy::public_only())
    });
    let research: Option<&dyn Research> = http.as_ref().map(|h| h as &dyn Research);
    let registry = if args.no_register {
        None
    } else {
        Some(&mut kernel.registry)
    };
    let mut ctx = Escalation {
        proposer,
        gate: sandbox,
        ledger: &kernel.ledger,
        registry,
        cost,
        research,
        grants,
    };
    let entry = gap.entry.clone();
    let mut on_event = |e: EscalateEvent<'_>| match e {
        EscalateEvent::Proposing { tier, index } => bar.set_message(format!(
            "{entry}: {}, the model is writing",
            tier.tag(index)
        )),
        EscalateEvent::Width(k) => bar.println(format!(
            "  {entry} tier 2: k {} (severity {:.3}, cost {:.3}{}, {})",
            k.k,
            k.severity,
            k.cost,
            if k.cost_failure.is_some() {
                " fail-closed"
            } else {
                ""
            },
            k.reason.map_or("fixed", |r| r.as_str())
        )),
        EscalateEvent::Research(r) => bar.println(format!(
            "  {entry} research: {}",
            r.error
                .clone()
                .unwrap_or_else(|| format!("{} documents", r.urls.len()))
        )),
        EscalateEvent::Verdict(t) => bar.println(format!(
            "  {entry} {}: {}",
            t.tag,
            if t.admitted {
                "admitted".to_owned()
            } else {
                format!("refused ({})", t.reason)
            }
        )),
    };
    Ok(escalate(gap, &mut ctx, &config, &mut on_event)?)
}

fn counts_json(c: Option<(usize, usize)>) -> serde_json::Value {
    c.map_or(
        serde_json::Value::Null,
        |(p, n)| serde_json::json!({"passed": p, "n": n}),
    )
}

/// The JSON view of one gap's ladder.
fn escalation_json(path: &std::path::Path, r: &EscalationReport) -> serde_json::Value {
    let log: Vec<serde_json::Value> = r
        .log
        .iter()
        .map(|e| {
            serde_json::json!({
                "tier": e.tier.number(),
                "tag": e.tag,
                "attempt": e.attempt,
                "temperature": e.temperature,
                "seed": e.seed,
                "reason": e.reason,
                "admitted": e.admitted,
                "sample": counts_json(e.sample),
                "gate": counts_json(e.gate),
                "regate": counts_json(e.regate),
                "tokens": e.tokens,
                "code_hash": e.code_hash.map(|h| h.to_hex()),
                "prompt_hash": e.prompt_hash.to_hex(),
                "ledger_seq": e.ledger.map(|h| h.seq),
                "feedback": e.feedback,
                "elapsed_ms": e.elapsed.as_millis() as u64,
            })
        })
        .collect();
    let k = r.k.as_ref().map(|k| {
        serde_json::json!({
            "policy": k.policy,
            "k": k.k,
            "severity": k.severity,
            "cost": k.cost,
            "cost_failure": k.cost_failure,
            "decided_k": k.decided_k,
            "admitted_k": k.admitted_k,
            "used_signal": k.used_signal.map(|s| s.as_str()),
            "reason": k.reason.map(|s| s.as_str()),
            "budget_note": k.budget_note.map(|b| b.as_str()),
            "budget_left": k.budget_left,
        })
    });
    serde_json::json!({
        "gap": path.display().to_string(),
        "entry": r.entry,
        "solved": r.solved,
        "admitted": r.solved,
        "tier": r.tier,
        "abstain": r.abstain,
        "unsound": r.unsound,
        "reason": match (&r.tier, &r.unsound) {
            (Some(t), _) => format!("tier {t}"),
            (None, Some(u)) => u.clone(),
            (None, None) => "abstain".to_owned(),
        },
        "registered": r.registered.is_some(),
        "log": log,
        "k": k,
        "research": {
            "configured": r.research.configured,
            "granted": r.research.granted,
            "ran": r.research.ran,
            "query": r.research.query,
            "urls": r.research.urls,
            "reference_chars": r.research.reference_chars,
            "error": r.research.error,
        },
        "tokens": r.tokens,
        "code": r.code,
        "elapsed_ms": r.elapsed.as_millis() as u64,
    })
}

/// Prints one gap's ladder as a table of rungs.
fn print_escalation(j: &serde_json::Value, log: &[serde_json::Value]) {
    let counts = |v: &serde_json::Value| match (v["passed"].as_u64(), v["n"].as_u64()) {
        (Some(p), Some(n)) => format!("{p}/{n}"),
        _ => "-".to_owned(),
    };
    println!(
        "{}: {}",
        j["entry"].as_str().unwrap_or(""),
        if j["solved"].as_bool() == Some(true) {
            format!("solved at tier {}", j["tier"])
        } else if let Some(u) = j["unsound"].as_str() {
            format!("stopped: {u} (the gap or the environment cannot judge)")
        } else {
            format!("abstained: {}", j["abstain"].as_str().unwrap_or(""))
        }
    );
    if let Some(k) = j["k"].as_object() {
        println!(
            "  k decision: k {} (decided {}, admitted {}), severity {:.3}, cost {:.3}{}, {}",
            k["k"],
            k["decided_k"],
            k["admitted_k"],
            k["severity"].as_f64().unwrap_or(0.0),
            k["cost"].as_f64().unwrap_or(0.0),
            if k["cost_failure"].is_null() {
                ""
            } else {
                " (sensor failed: counted 1.0)"
            },
            k["reason"].as_str().unwrap_or("fixed k")
        );
    }
    println!(
        "  {:<14} {:<16} {:>9} {:>11} {:>11} {:>7}",
        "rung", "verdict", "samples", "gate", "regate", "tokens"
    );
    for e in log {
        println!(
            "  {:<14} {:<16} {:>9} {:>11} {:>11} {:>7}",
            e["tag"].as_str().unwrap_or(""),
            e["reason"].as_str().unwrap_or(""),
            counts(&e["sample"]),
            counts(&e["gate"]),
            counts(&e["regate"]),
            e["tokens"].as_u64().unwrap_or(0),
        );
    }
    let r = &j["research"];
    if r["configured"].as_bool() == Some(true) {
        println!(
            "  research: {}",
            if r["ran"].as_bool() == Some(true) {
                format!(
                    "{} documents, {} reference chars{}",
                    r["urls"].as_array().map_or(0, Vec::len),
                    r["reference_chars"],
                    r["error"]
                        .as_str()
                        .map(|e| format!(" ({e})"))
                        .unwrap_or_default()
                )
            } else {
                format!("not run: {}", r["error"].as_str().unwrap_or(""))
            }
        );
    }
}
