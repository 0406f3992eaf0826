//! `nmk model list|pull|info`: the models nmk can fetch, fetching them, and what is inside a GGUF.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use nmk_neural::gguf::GgufFile;
use nmk_neural::models::{self, Fetcher, MODELS, Phase, Progress};

use super::Output;
use crate::exit::Code;

/// Model subcommands.
#[derive(Debug, Subcommand)]
#[command(
    after_help = "Examples:\n  nmk model list\n  nmk model pull smollm2-135m-instruct\n  nmk model info qwen2.5-coder-0.5b-instruct"
)]
pub enum ModelCommand {
    /// The models nmk can fetch, and whether each is cached.
    #[command(after_help = "Examples:\n  nmk model list\n  nmk model list --json")]
    List,
    /// Fetch a model into the cache (resumable, hash-verified). A cached, verified model needs
    /// no network.
    #[command(
        after_help = "Examples:\n  nmk model pull smollm2-135m-instruct\n  nmk model pull qwen2.5-coder-0.5b-instruct --json"
    )]
    Pull {
        /// A registered name (see `nmk model list`).
        name: String,
    },
    /// Architecture, shapes, quantization mix, tokenizer and chat template of a model.
    #[command(
        after_help = "Examples:\n  nmk model info smollm2-135m-instruct\n  nmk model info ./model.gguf --json"
    )]
    Info {
        /// A registered name or a path to a .gguf file.
        model: String,
    },
    /// Write a small random-weight Mixture-of-Experts GGUF (no tokenizer) to prove the MoE
    /// mechanisms on (`nmk prove --gguf FILE`): no pretrained MoE can be fetched here.
    #[command(
        after_help = "Examples:\n  nmk model synth --out /tmp/tiny-moe.gguf\n  nmk model synth --arch mixtral --out /tmp/mixtral.gguf --json"
    )]
    Synth {
        /// Architecture: mixtral, qwen2moe, qwen3moe, olmoe or granitemoe.
        #[arg(long, default_value = "qwen2moe")]
        arch: String,
        /// Where to write the file.
        #[arg(long)]
        out: std::path::PathBuf,
    },
}

/// Runs a model subcommand.
pub fn run(out: &Output, cmd: ModelCommand) -> Result<Code> {
    match cmd {
        ModelCommand::List => list(out),
        ModelCommand::Pull { name } => {
            let path = resolve_with_progress(&name, out.json)?;
            if out.json {
                out.print_json(
                    &serde_json::json!({ "model": name, "path": path.display().to_string() }),
                );
            } else {
                println!("{name}: {}", path.display());
            }
            Ok(Code::Success)
        }
        ModelCommand::Info { model } => info(out, &model),
        ModelCommand::Synth { arch, out: path } => synth(out, &arch, &path),
    }
}

fn list(out: &Output) -> Result<Code> {
    let fetcher = Fetcher::new(models::default_cache_dir()?);
    let mut rows = Vec::new();
    for entry in MODELS {
        let path = fetcher.cached_path(entry);
        rows.push(serde_json::json!({
            "name": entry.name,
            "cached": path.is_file(),
            "path": path.display().to_string(),
            "sha256": entry.sha256,
            "packages": entry.parts.iter().map(|p| format!("{}=={}", p.package, p.version)).collect::<Vec<_>>(),
        }));
    }
    if out.json {
        out.print_json(&serde_json::Value::Array(rows));
    } else {
        for r in &rows {
            let cached = if r["cached"] == true {
                "cached"
            } else {
                "not cached"
            };
            println!(
                "{:<30} {:<11} {}",
                r["name"].as_str().unwrap_or(""),
                cached,
                r["path"].as_str().unwrap_or("")
            );
        }
    }
    Ok(Code::Success)
}

/// Resolves a model spec to a local file, drawing a progress bar on stderr unless `quiet`.
pub fn resolve_with_progress(spec: &str, quiet: bool) -> Result<std::path::PathBuf> {
    let bar = ProgressBar::hidden();
    if !quiet {
        bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    }
    bar.set_style(
        ProgressStyle::with_template(
            "{msg:>24} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    let mut on_progress = |p: &Progress<'_>| {
        let phase = match p.phase {
            Phase::Verify => "verifying",
            Phase::Lookup => "looking up",
            Phase::Download => "downloading",
            Phase::Extract => "extracting",
        };
        bar.set_message(format!("{phase} {}", p.item));
        if let Some(total) = p.total {
            bar.set_length(total);
        }
        bar.set_position(p.done);
    };
    let path =
        models::resolve_model(spec, &mut on_progress).with_context(|| format!("model {spec}"))?;
    bar.finish_and_clear();
    Ok(path)
}

fn info(out: &Output, spec: &str) -> Result<Code> {
    let path = resolve_with_progress(spec, out.json)?;
    let file = GgufFile::open(&path).with_context(|| format!("reading {}", path.display()))?;
    let meta = file.metadata();
    let arch = meta
        .get_str("general.architecture")
        .unwrap_or("?")
        .to_owned();
    let key = |k: &str| format!("{arch}.{k}");
    let num = |k: &str| meta.get_u64(&key(k)).ok();
    let mut quant_mix: BTreeMap<String, (usize, u64)> = BTreeMap::new();
    for t in file.tensors() {
        let e = quant_mix
            .entry(t.ggml_type().name().to_owned())
            .or_insert((0, 0));
        e.0 += 1;
        e.1 += t.n_bytes();
    }
    let template = meta.get_str("tokenizer.chat_template").ok();
    let report = serde_json::json!({
        "path": path.display().to_string(),
        "gguf_version": file.version(),
        "name": meta.get_str("general.name").ok(),
        "architecture": arch,
        "blocks": num("block_count"),
        "embedding_length": num("embedding_length"),
        "feed_forward_length": num("feed_forward_length"),
        "heads": num("attention.head_count"),
        "kv_heads": num("attention.head_count_kv"),
        "context_length": num("context_length"),
        "experts": num("expert_count"),
        "experts_used": num("expert_used_count"),
        "tensors": file.tensors().len(),
        "quant_mix": quant_mix.iter().map(|(k, (n, b))| (k.clone(), serde_json::json!({"tensors": n, "bytes": b}))).collect::<serde_json::Map<_, _>>(),
        "tokenizer": {
            "model": meta.get_str("tokenizer.ggml.model").ok(),
            "pre": meta.get_str("tokenizer.ggml.pre").ok(),
            "vocab_size": meta.get_str_array("tokenizer.ggml.tokens").map(|t| t.len()).ok(),
            "bos": meta.get_u32("tokenizer.ggml.bos_token_id").ok(),
            "eos": meta.get_u32("tokenizer.ggml.eos_token_id").ok(),
        },
        "chat_template": template.map(|t| t.chars().take(200).collect::<String>()),
    });
    if out.json {
        out.print_json(&report);
        return Ok(Code::Success);
    }
    print_info(&path, &report);
    Ok(Code::Success)
}

fn print_info(path: &Path, r: &serde_json::Value) {
    let s = |v: &serde_json::Value| match v {
        serde_json::Value::Null => "-".to_owned(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    println!("{}", path.display());
    println!("  name          {}", s(&r["name"]));
    println!(
        "  architecture  {} (GGUF v{})",
        s(&r["architecture"]),
        s(&r["gguf_version"])
    );
    println!(
        "  shape         {} blocks, d={}, ffn={}, heads {}/{} (q/kv), context {}",
        s(&r["blocks"]),
        s(&r["embedding_length"]),
        s(&r["feed_forward_length"]),
        s(&r["heads"]),
        s(&r["kv_heads"]),
        s(&r["context_length"])
    );
    if !r["experts"].is_null() {
        println!(
            "  experts       {} ({} used per token)",
            s(&r["experts"]),
            s(&r["experts_used"])
        );
    }
    println!("  tensors       {}", s(&r["tensors"]));
    if let Some(mix) = r["quant_mix"].as_object() {
        for (k, v) in mix {
            let mib = v["bytes"].as_u64().unwrap_or(0) as f64 / (1 << 20) as f64;
            println!(
                "    {:<6} {:>4} tensors {:>9.1} MiB",
                k,
                s(&v["tensors"]),
                mib
            );
        }
    }
    let t = &r["tokenizer"];
    println!(
        "  tokenizer     {} / pre {} / vocab {} / bos {} eos {}",
        s(&t["model"]),
        s(&t["pre"]),
        s(&t["vocab_size"]),
        s(&t["bos"]),
        s(&t["eos"])
    );
    match r["chat_template"].as_str() {
        Some(tpl) => println!(
            "  chat template {}…",
            tpl.replace('\n', "⏎").chars().take(80).collect::<String>()
        ),
        None => println!("  chat template (none)"),
    }
}

/// Runs `nmk model synth`.
fn synth(out: &Output, arch: &str, path: &std::path::Path) -> Result<Code> {
    use nmk_neural::models::synthetic_moe::{MoeSpec, write};
    let Some(spec) = MoeSpec::named(arch) else {
        eprintln!(
            "error: unknown MoE architecture {arch:?} (mixtral, qwen2moe, qwen3moe, olmoe, granitemoe)"
        );
        return Ok(Code::Usage);
    };
    let bytes = write(&spec)?;
    std::fs::write(path, &bytes).with_context(|| format!("writing {}", path.display()))?;
    if out.json {
        out.print_json(&serde_json::json!({
            "arch": spec.arch,
            "path": path.display().to_string(),
            "bytes": bytes.len(),
            "n_expert": spec.n_expert,
            "n_expert_used": spec.n_used,
        }));
    } else {
        println!(
            "{}: {} ({} bytes, {} experts, {} per token, random weights, no tokenizer)",
            arch,
            path.display(),
            bytes.len(),
            spec.n_expert,
            spec.n_used
        );
    }
    Ok(Code::Success)
}
