//! `nmk train-head`: trains the entry-trap head on residuals of generated prompts, measures it
//! against the lexical router on held-out and adversarial prompts with a shuffled-label
//! placebo, and writes the head file for the model (in the nmk home, keyed by the model's
//! hash, or `--out`).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use nmk_kernel::k_policy::CostSource;
use nmk_kernel::router::{HeadPolicy, HeadProposal, HeadReading, Router, RouterConfig};
use nmk_neural::engine::ParkBinding;
use nmk_neural::entry_head::{CHAT_TEMPLATE_ID, HeadFile, partial_residuals};
use nmk_neural::text::{PromptMode, TextModel};

use super::Output;
use super::run::{ModelArgs, load};
use crate::exit::Code;
use crate::head_prompts::{self, CLASSES, Labelled, NONE, Split};
use crate::head_trainer::{TrainConfig, train};

/// Options of `nmk train-head`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  nmk train-head\n  nmk train-head --layers 9,15 --epochs 200 --json\n  nmk train-head --model smollm2-135m-instruct --out my-model.head"
)]
pub struct TrainHeadArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Blocks to try (comma-separated); the one with the best validation accuracy is kept
    /// (validation: the prompts of every fifth training template, held back, so a layer is
    /// chosen on paraphrases it was not fitted on).
    #[arg(long, value_delimiter = ',', default_values_t = [3usize, 9, 15, 21, 27])]
    layers: Vec<usize>,
    /// Training prompts per class.
    #[arg(long, default_value_t = 40)]
    per_class: usize,
    /// Held-out prompts per class (from templates never trained on).
    #[arg(long, default_value_t = 12)]
    held_out_per_class: usize,
    /// Full-batch Adam epochs.
    #[arg(long, default_value_t = 300)]
    epochs: usize,
    /// Seed of the prompts, the initial weights and the placebo's permutation.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Confidence threshold of the kernel's disposal in the report.
    #[arg(long, default_value_t = 0.5)]
    threshold: f32,
    /// Where to write the head (default: the nmk home, keyed by the model's hash).
    #[arg(long)]
    out: Option<PathBuf>,
}

/// Where the head of the model with `binding` lives in `home`.
pub fn default_head_path(home: &Path, binding: &ParkBinding) -> PathBuf {
    let hex: String = binding.model.iter().map(|b| format!("{b:02x}")).collect();
    home.join("heads").join(format!("{hex}.head"))
}

struct Features {
    rows: Vec<std::collections::BTreeMap<usize, Vec<f32>>>,
    labels: Vec<u32>,
    prompts: Vec<Labelled>,
}

fn class_index(c: &str) -> Result<u32> {
    CLASSES
        .iter()
        .position(|k| *k == c)
        .map(|i| i as u32)
        .with_context(|| format!("unknown class {c}"))
}

fn features(m: &TextModel, set: Vec<Labelled>, layers: &[usize]) -> Result<Features> {
    let mut rows = Vec::with_capacity(set.len());
    let mut labels = Vec::with_capacity(set.len());
    for l in &set {
        let ids = m.encode(&l.prompt, PromptMode::Chat)?;
        rows.push(partial_residuals(m, &ids, layers)?);
        labels.push(class_index(l.class)?);
    }
    Ok(Features {
        rows,
        labels,
        prompts: set,
    })
}

fn at_layer(f: &Features, layer: usize, pick: impl Fn(usize) -> bool) -> (Vec<Vec<f32>>, Vec<u32>) {
    let mut x = Vec::new();
    let mut y = Vec::new();
    for (i, (r, &l)) in f.rows.iter().zip(&f.labels).enumerate() {
        if let (true, Some(row)) = (pick(i), r.get(&layer)) {
            x.push(row.clone());
            y.push(l);
        }
    }
    (x, y)
}

fn head_of(
    binding: ParkBinding,
    layer: usize,
    x: &[Vec<f32>],
    y: &[u32],
    cfg: TrainConfig,
) -> Result<HeadFile> {
    let w = train(x, y, CLASSES.len(), cfg)?;
    Ok(HeadFile::new(
        binding,
        CHAT_TEMPLATE_ID,
        layer,
        CLASSES.iter().map(|c| (*c).to_owned()).collect(),
        w,
    )?)
}

fn accuracy(head: &HeadFile, x: &[Vec<f32>], y: &[u32]) -> Result<f64> {
    let mut ok = 0usize;
    for (row, &l) in x.iter().zip(y) {
        let (class, _) = head.predict(row)?;
        if class == CLASSES[l as usize] {
            ok += 1;
        }
    }
    Ok(ok as f64 / x.len().max(1) as f64)
}

/// Figures of one evaluation set.
fn evaluate(
    router: &Router,
    head: &HeadFile,
    f: &Features,
    threshold: f32,
) -> Result<serde_json::Value> {
    let (x, _) = at_layer(f, head.layer(), |_| true);
    let policy = HeadPolicy {
        threshold,
        ..HeadPolicy::granting_all(router)
    };
    let veto = HeadPolicy {
        none_vetoes_fallback: true,
        ..policy.clone()
    };
    let ids = router.route_ids();
    let name = |chosen: Option<usize>| chosen.map_or(NONE.to_owned(), |i| ids[i].clone());
    let cost = CostSource::Given(0.0);
    let (mut head_ok, mut lex_ok, mut disp_ok, mut veto_ok) = (0usize, 0usize, 0usize, 0usize);
    let (mut nones, mut head_trap, mut lex_trap, mut disp_trap, mut veto_trap) =
        (0usize, 0usize, 0usize, 0usize, 0usize);
    let mut counts = vec![0usize; CLASSES.len()];
    let mut rows = Vec::new();
    for (l, row) in f.prompts.iter().zip(&x) {
        let (class, conf) = head.predict(row)?;
        let lex = name(router.decide(&l.prompt, &cost, false).chosen.map(|c| c.0));
        let reading = HeadReading {
            proposal: Ok(HeadProposal {
                class: class.clone(),
                confidence: conf,
            }),
            head_hash: String::new(),
        };
        let d = router.dispose_head(&l.prompt, Some(&reading), &policy, &cost, false);
        let disp = name(d.decision.chosen.map(|c| c.0));
        let vetoed = name(
            router
                .dispose_head(&l.prompt, Some(&reading), &veto, &cost, false)
                .decision
                .chosen
                .map(|c| c.0),
        );
        veto_ok += usize::from(vetoed == l.class);
        head_ok += usize::from(class == l.class);
        lex_ok += usize::from(lex == l.class);
        disp_ok += usize::from(disp == l.class);
        if l.class == NONE {
            nones += 1;
            head_trap += usize::from(class != NONE && conf >= threshold);
            lex_trap += usize::from(lex != NONE);
            disp_trap += usize::from(disp != NONE);
            veto_trap += usize::from(vetoed != NONE);
        }
        if let Ok(i) = class_index(l.class) {
            counts[i as usize] += 1;
        }
        rows.push(serde_json::json!({
            "prompt": l.prompt, "label": l.class, "head": class, "confidence": conf,
            "lexical": lex, "disposal": disp, "disposal_none_veto": vetoed, "verdict": d.verdict.as_str(),
        }));
    }
    let n = f.prompts.len().max(1) as f64;
    let rate = |k: usize, of: usize| {
        if of == 0 {
            serde_json::Value::Null
        } else {
            serde_json::json!(k as f64 / of as f64)
        }
    };
    Ok(serde_json::json!({
        "n": f.prompts.len(),
        "head_accuracy": head_ok as f64 / n,
        "lexical_accuracy": lex_ok as f64 / n,
        "disposal_accuracy": disp_ok as f64 / n,
        "disposal_none_veto_accuracy": veto_ok as f64 / n,
        "none_prompts": nones,
        "head_false_trap_rate": rate(head_trap, nones),
        "lexical_false_trap_rate": rate(lex_trap, nones),
        "disposal_false_trap_rate": rate(disp_trap, nones),
        "disposal_none_veto_false_trap_rate": rate(veto_trap, nones),
        "chance_majority": counts.iter().copied().max().unwrap_or(0) as f64 / n,
        "chance_uniform": 1.0 / CLASSES.len() as f64,
        "prompts": rows,
    }))
}

/// A seeded Fisher–Yates permutation of `y`.
fn shuffled(y: &[u32], seed: u64) -> Vec<u32> {
    let mut out = y.to_vec();
    let mut rng = nmk_det::gate::Rng::new(seed ^ 0x9e37_79b9_7f4a_7c15);
    for i in (1..out.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        out.swap(i, j);
    }
    out
}

/// Runs `nmk train-head`.
pub fn run(home: &Path, out: &Output, args: &TrainHeadArgs) -> Result<Code> {
    // candle's kernels are run on one thread (engine facts: more threads under load are slower
    // and only one thread is reproducible run to run); the setting is read from the
    // environment, so the command re-runs itself with it when it is missing.
    if std::env::var("RAYON_NUM_THREADS").as_deref() != Ok("1") {
        let status = std::process::Command::new(std::env::current_exe()?)
            .args(std::env::args_os().skip(1))
            .env("RAYON_NUM_THREADS", "1")
            .env("CANDLE_NUM_THREADS", "1")
            .status()
            .context("re-running train-head on one thread")?;
        return Ok(if status.success() {
            Code::Success
        } else {
            Code::RuntimeError
        });
    }
    if args.layers.is_empty() || args.per_class < 5 || args.held_out_per_class == 0 {
        bail!("need at least one layer, 5 training prompts per class and 1 held-out prompt");
    }
    let t0 = std::time::Instant::now();
    let m = load(&args.model, out.json)?;
    let binding = ParkBinding::of(m.model())?;
    let layers = &args.layers;
    let hide = super::progress::hidden(out.json);
    let reading = super::progress::spinner("reading the prompts' activations".into(), hide);
    let train_set = features(
        &m,
        head_prompts::generate(Split::Train, args.per_class, args.seed),
        layers,
    )?;
    let held = features(
        &m,
        head_prompts::generate(Split::HeldOut, args.held_out_per_class, args.seed),
        layers,
    )?;
    let adv = features(&m, head_prompts::adversarial(), layers)?;
    reading.finish_and_clear();
    let features_s = t0.elapsed().as_secs_f64();
    let cfg = TrainConfig {
        epochs: args.epochs,
        lr: 1e-3,
        seed: args.seed,
    };
    // Layer choice on held-back training templates (unseen paraphrases for the fitted head);
    // the held-out templates are only reported, never chosen on.
    let mut sweep = Vec::new();
    let mut best: Option<(usize, f64)> = None;
    let bar = super::progress::bar(layers.len() as u64, "layers", hide);
    for &layer in layers {
        bar.set_message(format!("training at block {layer}"));
        let validation = |i: usize| train_set.prompts[i].template % 5 == 4;
        let (xf, yf) = at_layer(&train_set, layer, |i| !validation(i));
        let (xv, yv) = at_layer(&train_set, layer, validation);
        let h = head_of(binding, layer, &xf, &yf, cfg)?;
        let val = accuracy(&h, &xv, &yv)?;
        let (xh, yh) = at_layer(&held, layer, |_| true);
        let held_acc = accuracy(&h, &xh, &yh)?;
        sweep.push(serde_json::json!({"layer": layer, "validation_accuracy": val, "held_out_accuracy": held_acc}));
        if best.is_none_or(|(_, b)| val > b) {
            best = Some((layer, val));
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let Some((layer, _)) = best else {
        bail!("no layer trained");
    };
    let (x, y) = at_layer(&train_set, layer, |_| true);
    let head = head_of(binding, layer, &x, &y, cfg)?;
    let train_acc = accuracy(&head, &x, &y)?;
    let placebo = head_of(binding, layer, &x, &shuffled(&y, args.seed), cfg)?;
    let (xh, yh) = at_layer(&held, layer, |_| true);
    let placebo_held = accuracy(&placebo, &xh, &yh)?;
    let (xa, ya) = at_layer(&adv, layer, |_| true);
    let placebo_adv = accuracy(&placebo, &xa, &ya)?;
    let router = Router::with_builtins(RouterConfig::default());
    for c in CLASSES {
        if c != NONE && !router.route_ids().iter().any(|r| r == c) {
            bail!("class {c} names no route of the router");
        }
    }
    let held_report = evaluate(&router, &head, &held, args.threshold)?;
    let adv_report = evaluate(&router, &head, &adv, args.threshold)?;
    let path = args
        .out
        .clone()
        .unwrap_or_else(|| default_head_path(home, &binding));
    head.save(&path)?;
    let report = serde_json::json!({
        "model": args.model.model,
        "head_file": path.display().to_string(),
        "head_hash": head.hash_hex(),
        "layer": layer,
        "layers_tried": sweep,
        "classes": CLASSES,
        "train_prompts": x.len(),
        "train_accuracy": train_acc,
        "epochs": args.epochs,
        "seed": args.seed,
        "threshold": args.threshold,
        "held_out": held_report,
        "adversarial": adv_report,
        "placebo": {
            "held_out_accuracy": placebo_held,
            "adversarial_accuracy": placebo_adv,
            "chance_uniform": 1.0 / CLASSES.len() as f64,
        },
        "features_s": features_s,
        "total_s": t0.elapsed().as_secs_f64(),
    });
    if out.json {
        out.print_json(&report);
    } else {
        print_text(&report);
    }
    Ok(Code::Success)
}

fn print_text(r: &serde_json::Value) {
    let f = |v: &serde_json::Value| {
        v.as_f64()
            .map_or("-".to_owned(), |x| format!("{:.1}%", x * 100.0))
    };
    println!(
        "head written to {} (layer {}, hash {})",
        r["head_file"].as_str().unwrap_or("?"),
        r["layer"],
        r["head_hash"].as_str().unwrap_or("?")
    );
    for l in r["layers_tried"].as_array().into_iter().flatten() {
        println!(
            "  layer {:>2}: validation {}  held-out {}",
            l["layer"],
            f(&l["validation_accuracy"]),
            f(&l["held_out_accuracy"])
        );
    }
    for set in ["held_out", "adversarial"] {
        let s = &r[set];
        println!(
            "{set} (n {}): head {}  lexical {}  head+kernel {}  false traps: head {} lexical {} head+kernel {}  chance {} (uniform {})",
            s["n"],
            f(&s["head_accuracy"]),
            f(&s["lexical_accuracy"]),
            f(&s["disposal_accuracy"]),
            f(&s["head_false_trap_rate"]),
            f(&s["lexical_false_trap_rate"]),
            f(&s["disposal_false_trap_rate"]),
            f(&s["chance_majority"]),
            f(&s["chance_uniform"]),
        );
    }
    println!(
        "placebo (shuffled labels): held-out {}  adversarial {}  (chance {})",
        f(&r["placebo"]["held_out_accuracy"]),
        f(&r["placebo"]["adversarial_accuracy"]),
        f(&r["placebo"]["chance_uniform"])
    );
}
