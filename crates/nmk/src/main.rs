//! `nmk` — the command line of the nmk runtime.
//!
//! Owns argument parsing, output formatting (human tables or `--json`), logging set-up and exit
//! codes. It wires the planes together and is the only place `anyhow` is used.

mod commands;
mod exit;
mod fact_lane;
mod head_lane;
mod head_prompts;
mod head_trainer;
mod model_lane;
mod proposer;
mod research;
mod route_lane;
mod sandbox;
mod sensors;
mod serve;
mod token_gate;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// nmk: a language-model runtime behind a small trusted kernel. The model proposes; the kernel
/// disposes: nothing reaches you before a deterministic validator has judged it, and every
/// judgement lands in a hash-chained proof ledger.
#[derive(Debug, Parser)]
#[command(name = "nmk", version, about, long_about = None, after_help = "Examples:\n  nmk demo\n  nmk model pull smollm2-135m-instruct\n  nmk model info qwen2.5-coder-0.5b-instruct\n  nmk run \"Name the capital city of France.\"\n  nmk run \"what is the gcd of 12 and 18\"\n  nmk run --no-route \"is 97 prime\"\n  nmk run --raw --max-tokens 8 \"The capital of France is\"\n  nmk run --shape-json \"Give a JSON object with keys name and age.\"\n  nmk tokenize --json \"Hello, world\"\n  nmk ledger verify\n  nmk ledger show --limit 5 --json\n  nmk ledger export --out ledger.jsonl\n  nmk ledger verify --file ledger.jsonl --head 41:3f…\n  nmk gate examples/gaps/gcd.toml my_gcd.py --register\n  nmk learn examples/gaps/*.toml\n  nmk primitives list\n  nmk primitives call gcd \"[12, 18]\"\n  nmk memory put city Paris\n  nmk memory consult --json\n  nmk serve --port 8080\n\nExit codes: 0 success, 1 a check failed (broken ledger, failed demo), 2 usage error, 3 runtime error.\nLogging: set RUST_LOG (e.g. RUST_LOG=nmk=debug).")]
struct Cli {
    /// Kernel home (ledger database and state). Default: $NMK_HOME, else ~/.local/share/nmk.
    #[arg(long, global = true, env = "NMK_HOME")]
    home: Option<PathBuf>,
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a walkthrough of the trusted kernel: plans admitted or refused, validators judging,
    /// a repair, a budget refusal, commits, and the ledger verified.
    Demo(commands::demo::DemoArgs),
    /// Read, verify and export the proof ledger.
    #[command(subcommand)]
    Ledger(commands::ledger::LedgerCommand),
    /// Answer a request through the kernel: memory consulted, then a proven primitive (zero
    /// model tokens) or the model, each token judged by the kernel's gate (forbidden ids, a
    /// JSON or regex shape) and the answer by the commit trap; prints the route, verification,
    /// tokens and ledger entry.
    Run(commands::run::RunArgs),
    /// Measure prefill and decode speed, peak memory and the roofline fraction.
    Bench(commands::bench::BenchArgs),
    /// Print the token ids of a text.
    Tokenize(commands::run::TokenizeArgs),
    /// List, fetch and inspect models.
    #[command(subcommand)]
    Model(commands::model::ModelCommand),
    /// Run the admission pipeline (samples, hold-out gate, re-gate, placebos) on a program for
    /// a gap file; exit 0 if admitted, 1 if refused.
    Gate(commands::gate::GateArgs),
    /// Have the model write a program for each gap file; admitted programs become learned
    /// primitives.
    Learn(commands::learn::LearnArgs),
    /// List, show and call primitives (learned ones are re-checked first; zero model tokens).
    #[command(subcommand)]
    Primitives(commands::primitives::PrimitivesCommand),
    /// Run every forward-pass mechanism battery on a model (bit-exact logits, liveness
    /// contrasts); exit 0 if all applicable batteries passed, 1 if one failed.
    Prove(commands::prove::ProveArgs),
    /// Read and write the kernel's memory store (writes supersede, deletes leave tombstones,
    /// every change is ledgered).
    #[command(subcommand)]
    Memory(commands::memory::MemoryCommand),
    /// Submit a job to the orchestrator (classify, plan, admit, run, commit) or show the
    /// dashboard of past jobs.
    #[command(subcommand)]
    Job(commands::job::JobCommand),
    /// Train the entry-trap head on generated prompts and report it against the lexical
    /// router (held-out, adversarial, shuffled-label placebo).
    TrainHead(commands::train_head::TrainHeadArgs),
    /// Serve an OpenAI-compatible HTTP API in front of the kernel (chat and text completions,
    /// streamed or whole, with the kernel's route, verification and ledger entry in an extra
    /// `nmk` object), plus kernel read endpoints; one line `listening on http://HOST:PORT`.
    #[command(
        after_help = "Examples:\n  nmk serve\n  nmk serve --port 0 --max-tokens 128\n  NMK_API_KEY=secret nmk serve --host 0.0.0.0 --port 8080 --max-queue 32\n  curl -s localhost:8080/v1/chat/completions -H 'content-type: application/json' \\\n    -d '{\"model\":\"smollm2-135m-instruct\",\"messages\":[{\"role\":\"user\",\"content\":\"what is the gcd of 12 and 18\"}]}'\n  curl -s localhost:8080/v1/nmk/ledger?limit=5\n\nEndpoints: GET /v1/models, POST /v1/chat/completions, POST /v1/completions, GET /v1/nmk/ledger?limit=N, GET /v1/nmk/ledger/verify, GET /v1/nmk/primitives, GET /v1/nmk/memory, GET /v1/nmk/memory/{key}.\nStreaming: streamed text passed the per-token gate; the commit trap's whole-answer verdict arrives in the last chunk's `nmk` object."
    )]
    Serve(serve::ServeArgs),
    /// Chat in the terminal through the kernel: each message is answered by a proven primitive
    /// (zero model tokens) or by the model with the conversation's history, streamed as the
    /// per-token gate accepts it and judged whole by the commit trap; one status line per
    /// answer (route, verification, tokens, latency, ledger entry).
    #[command(
        after_help = "Examples:\n  nmk chat\n  nmk chat --system \"Answer in one sentence.\" --max-tokens 128\n  printf 'what is the gcd of 12 and 18\\nName the capital city of France.\\n' | nmk chat --json\n\nCommands: /help, /reset (forget the conversation), /history, /quit (or end of input).\nWith --json: one JSON object per line on stdout (kind: answer, history, reset, help, error)."
    )]
    Chat(commands::chat::ChatArgs),
}

/// Counts every allocation so the sandbox worker role's memory limit holds (the limit is only
/// set inside a worker; elsewhere this is a plain counting allocator).
#[global_allocator]
static ALLOCATOR: monty_alloc::LimitedAllocator = monty_alloc::LimitedAllocator;

fn main() -> ExitCode {
    // The worker role runs before anything else (no logging, no threads), exactly as the
    // dedicated worker binary does, so confinement sees a bare process.
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == sandbox::WORKER_ARG)
    {
        std::process::exit(nmk_sandbox::worker_main(None));
    }
    exit::quiet_on_broken_pipe();
    let cli = Cli::parse();
    init_tracing();
    let home = cli
        .home
        .clone()
        .unwrap_or_else(nmk_kernel::store::default_home);
    let out = commands::Output { json: cli.json };
    let result = match cli.command {
        Command::Demo(args) => commands::demo::run(&home, &out, &args),
        Command::Ledger(cmd) => commands::ledger::run(&home, &out, cmd),
        Command::Model(cmd) => commands::model::run(&out, cmd),
        Command::Run(args) => commands::run::run(&home, &out, &args),
        Command::Tokenize(args) => commands::run::tokenize(&out, &args),
        Command::Bench(args) => commands::bench::run(&home, &out, &args),
        Command::Gate(args) => commands::gate::run(&home, &out, &args),
        Command::Learn(args) => commands::learn::run(&home, &out, &args),
        Command::Primitives(cmd) => commands::primitives::run(&home, &out, cmd),
        Command::Prove(args) => commands::prove::run(&out, &args),
        Command::Memory(cmd) => commands::memory::run(&home, &out, cmd),
        Command::Job(cmd) => commands::job::run(&home, &out, cmd),
        Command::TrainHead(args) => commands::train_head::run(&home, &out, &args),
        Command::Serve(args) => serve::run(&home, &args),
        Command::Chat(args) => commands::chat::run(&home, &out, &args),
    };
    match result {
        Ok(code) => code.into(),
        Err(err) => {
            eprintln!("error: {err:#}");
            exit::Code::RuntimeError.into()
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
