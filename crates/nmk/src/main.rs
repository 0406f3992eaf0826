//! `nmk` — the command line of the nmk runtime.
//!
//! Owns argument parsing, output formatting (human tables or `--json`), logging set-up and exit
//! codes. It wires the planes together and is the only place `anyhow` is used.

mod account;
mod commands;
mod config;
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

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

/// nmk: a language-model runtime behind a small trusted kernel. The model proposes; the kernel
/// disposes: nothing reaches you before a deterministic validator has judged it, and every
/// judgement lands in a hash-chained proof ledger.
#[derive(Debug, Parser)]
#[command(name = "nmk", version, about, long_about = None, after_help = TOP_LEVEL_HELP)]
struct Cli {
    /// Kernel home (ledger database and state). Default: $NMK_HOME, else ~/.local/share/nmk.
    #[arg(long, global = true, env = "NMK_HOME", display_order = 900)]
    home: Option<PathBuf>,
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true, display_order = 901)]
    json: bool,
    /// Config file. Default: $NMK_CONFIG, else <home>/nmk.toml (a missing home config means
    /// built-in defaults).
    #[arg(long, global = true, value_name = "PATH", display_order = 902)]
    config: Option<PathBuf>,
    /// More log output on stderr when RUST_LOG is unset: -v info, -vv debug.
    #[arg(short, long, global = true, action = clap::ArgAction::Count, display_order = 903)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The first thing to run: a short tour of the kernel, then 16 mixed requests through the
    /// kernel and through the bare model (route, verification, tokens, latency, correct or
    /// not), the totals side by side, and the ledger verified.
    #[command(after_help = "Examples:
  nmk demo
  nmk demo --json | jq '.kernel_pass.totals'
  nmk demo --no-model
  nmk demo --model qwen2.5-coder-0.5b-instruct

Exit codes: 0 the ledger verified and every primitive's answer was correct, 1 a check failed, 3 a runtime error.")]
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
        after_help = "Examples:\n  nmk serve\n  nmk serve --port 0 --max-tokens 128\n  NMK_API_KEY=secret nmk serve --host 0.0.0.0 --port 8080 --max-queue 32 --max-lanes 4\n  curl -s localhost:8080/v1/chat/completions -H 'content-type: application/json' \\\n    -d '{\"model\":\"smollm2-135m-instruct\",\"messages\":[{\"role\":\"user\",\"content\":\"what is the gcd of 12 and 18\"}]}'\n  curl -s localhost:8080/v1/nmk/ledger?limit=5\n  curl -s localhost:8080/v1/nmk/proofs\n\nEndpoints: GET /v1/models, POST /v1/chat/completions, POST /v1/completions, GET /v1/nmk/ledger?limit=N, GET /v1/nmk/ledger/verify, GET /v1/nmk/primitives, GET /v1/nmk/proofs[/{entry}], POST /v1/nmk/gaps, GET /v1/nmk/gaps[/{id}], GET /v1/nmk/memory, GET /v1/nmk/memory/{key}.\nLanes: up to --max-lanes model requests are decoded at once, sharing each pass over the weights; primitives never wait for the model.\nStreaming: streamed text passed the per-token gate; the commit trap's whole-answer verdict arrives in the last chunk's `nmk` object."
    )]
    Serve(serve::ServeArgs),
    /// Chat in the terminal through the kernel: each message is answered by a proven primitive
    /// (zero model tokens) or by the model with the conversation's history, streamed as the
    /// per-token gate accepts it and judged whole by the commit trap; one status line per
    /// answer (route, verification, tokens, latency, ledger entry).
    #[command(
        after_help = "Examples:\n  nmk chat\n  nmk chat --system \"Answer in one sentence.\" --max-tokens 128\n  printf 'what is the gcd of 12 and 18\\nName the capital city of France.\\n' | nmk chat --json\n\nIn the chat: /help, /reset (forget the conversation), /history, /quit (or end of input).\nWith --json: one JSON object per line on stdout (kind: answer, history, reset, help, error)."
    )]
    Chat(commands::chat::ChatArgs),
    /// Show the config file in use and the effective settings (flag > env > file > default).
    #[command(subcommand)]
    Config(commands::config::ConfigCommand),
}

const TOP_LEVEL_HELP: &str = "Examples:
  nmk demo
  nmk model pull smollm2-135m-instruct
  nmk run \"Name the capital city of France.\"
  nmk run \"what is the gcd of 12 and 18\"
  nmk run --raw --max-tokens 8 \"The capital of France is\"
  nmk tokenize --json \"Hello, world\"
  nmk ledger verify
  nmk ledger show --limit 5 --json
  nmk gate examples/gaps/gcd.toml my_gcd.py --register
  nmk learn examples/gaps/*.toml
  nmk primitives call gcd \"[12, 18]\"
  nmk memory put city Paris
  nmk config show
  nmk serve --port 8080

Configuration: settings come from a command-line flag, else an environment variable, else the
config file (--config PATH, else $NMK_CONFIG, else <home>/nmk.toml), else the built-in default.
`nmk config show` prints each setting with its source; `nmk config path` the file read.
  nmk.toml keys          environment           flag
  model                  NMK_MODEL             --model (run, tokenize, bench, train-head, prove, demo, chat, serve)
  threads                NMK_THREADS           --threads
  run.max_tokens         NMK_RUN_MAX_TOKENS    nmk run --max-tokens
  run.temperature        NMK_RUN_TEMPERATURE   nmk run --temp
  run.seed               NMK_RUN_SEED          nmk run --seed
  learn.model            NMK_LEARN_MODEL       nmk learn --model
  serve.host|port|max_queue|max_tokens|deadline_s
                         NMK_SERVE_HOST, NMK_SERVE_PORT, NMK_SERVE_MAX_QUEUE, NMK_SERVE_MAX_TOKENS,
                         NMK_SERVE_DEADLINE_S
  The server's API key is read only from NMK_API_KEY or --api-key, never from the file.
Other environment: NMK_HOME (kernel home), NMK_CONFIG (config file), RUST_LOG (log filter,
e.g. RUST_LOG=nmk=debug; -v/-vv are shorthands when it is unset).

Exit codes (scripts may rely on them):
  0  success
  1  a check failed (a broken or tampered ledger, a refused program, a failed battery or
     demo, a memory key that is not there)
  2  usage error (unknown flag or bad value, a missing or malformed input file, a bad config
     file or key, a bad value in an NMK_* variable)
  3  runtime error (I/O, database, model fetch or load)
  141  stdout closed early (e.g. piped into head)";

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
    let invocation = config::Invocation::scan(std::env::args_os());
    let settings = match config::Settings::load(&invocation) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::Code::Usage.into();
        }
    };
    let matches = settings.layer(Cli::command()).get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    init_tracing(cli.verbose);
    tracing::debug!(
        path = %settings.path().display(),
        source = settings.path_source().as_str(),
        exists = settings.present(),
        "config file"
    );
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
        Command::Config(cmd) => commands::config::run(&settings, &out, cmd, &Cli::command()),
    };
    match result {
        Ok(code) => code.into(),
        Err(err) => {
            eprintln!("error: {err:#}");
            exit::Code::RuntimeError.into()
        }
    }
}

/// RUST_LOG when set; otherwise warnings, or more with -v (info) and -vv (debug).
fn init_tracing(verbose: u8) {
    let fallback = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(fallback));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}
