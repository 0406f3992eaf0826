//! `nmk demo`: what a newcomer runs first.
//!
//! A short tour of the kernel on its own, then a mixed workload (counting, gcd, primality,
//! dates, free-form questions) answered twice by the default model: once through the kernel
//! (a primitive answers what it owns with zero model tokens; the rest goes through the
//! per-token gate and the commit trap) and once by the bare model. Each answer is judged
//! against the demo's own deterministic check where one exists; the totals are set side by
//! side and the ledger is verified, and a tampered export of it caught.
//!
//! Owns the options, the order of the steps and the exit code; the steps live in
//! `kernel_tour`, `workload`, `passes` and `table`. It may not make a kernel decision itself.

mod kernel_tour;
mod passes;
mod table;
mod workload;

use std::path::Path;

use anyhow::Result;
use clap::Args;
use nmk_kernel::ledger::{Ledger, verify_jsonl};
use nmk_kernel::store::{Durability, database_path};

use super::Output;
use super::ledger::format_head;
use super::model::resolve_with_progress;
use crate::exit::Code;
use crate::proposer::NeuralProposer;
use crate::route_lane::Front;
use passes::{Row, Totals};
use table::LedgerReport;

/// Options of `nmk demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// fsync every ledger append of the demo (survives power loss, slower).
    #[arg(long)]
    durable: bool,
    /// Only the kernel tour: no model is fetched or run.
    #[arg(long)]
    no_model: bool,
    /// The model to fetch and run (a registered name or a path to a .gguf file).
    #[arg(long, default_value = "smollm2-135m-instruct")]
    model: String,
}

/// The two passes over the workload.
struct Passes {
    kernel: Vec<Row>,
    bare: Vec<Row>,
}

impl Passes {
    /// Whether every request phrased for a primitive was answered by one, and every
    /// primitive's checkable answer was correct (the kernel's promise; the model lane's
    /// answers are shown, not promised).
    fn primitives_kept_their_promise(&self) -> bool {
        self.kernel.iter().all(|r| {
            (r.by_primitive || !r.request.primitive_phrasing)
                && (!r.by_primitive || r.correct != Some(false))
        })
    }
}

fn run_passes(home: &Path, ledger: &Ledger, args: &DemoArgs, out: &Output) -> Result<Passes> {
    let path = resolve_with_progress(&args.model, out.json)?;
    let proposer = NeuralProposer::load(&args.model, &path, 1)?;
    let mut front = Front::open(home)?;
    for (entry, why) in &front.refused {
        tracing::warn!("learned primitive {entry} not routed: {why}");
    }
    // One handle for the whole demo, so that `--durable` covers the routed requests too.
    front.ledger = ledger.clone();
    let requests = workload::workload();
    let text = !out.json;
    let printer = |title: &str| {
        if text {
            table::print_pass_header(title);
        }
        let mut n = 0;
        move |r: &Row| {
            if text {
                table::print_row(n, r);
                n += 1;
            }
        }
    };
    let kernel = passes::kernel_pass(
        &mut front,
        &proposer,
        &requests,
        &mut printer(&format!(
            "through the kernel ({}; a primitive first, else the model lane: gate + commit trap, ≤ {} tokens)",
            args.model,
            passes::MAX_TOKENS
        )),
    )?;
    let bare = passes::bare_pass(
        &proposer,
        &requests,
        &mut printer(&format!(
            "the bare model ({}; same requests, greedy, ≤ {} tokens, nothing checks or records it)",
            args.model,
            passes::MAX_TOKENS
        )),
    )?;
    Ok(Passes { kernel, bare })
}

/// Verifies the ledger, then changes one byte of an exported copy and checks that
/// verification catches it.
fn check_ledger(ledger: &Ledger, db: &Path, before: u64) -> Result<LedgerReport> {
    let report = ledger.verify(None)?;
    let mut buf = Vec::new();
    ledger.export_jsonl(&mut buf)?;
    let clean = verify_jsonl(buf.as_slice(), report.head)?.ok();
    // The byte changed sits inside a verification level every run records.
    let target = buf.windows(8).position(|w| w == b"\"ORACLE\"");
    if let Some(pos) = target {
        buf[pos + 1] = b'P';
    }
    let tamper_caught =
        clean && target.is_some() && !verify_jsonl(buf.as_slice(), report.head)?.ok();
    Ok(LedgerReport {
        path: db.display().to_string(),
        ok: report.ok(),
        entries: report.entries,
        added: report.entries.saturating_sub(before),
        head: report.head.as_ref().map(format_head),
        tamper_caught,
    })
}

/// Runs the demo.
pub fn run(home: &Path, out: &Output, args: &DemoArgs) -> Result<Code> {
    let db = database_path(home);
    let durability = if args.durable {
        Durability::PowerLoss
    } else {
        Durability::Process
    };
    let ledger = Ledger::open(&db, durability)?;
    let before = ledger.len()?;

    if !out.json {
        println!("nmk — the model proposes, the kernel disposes\n");
    }
    let tour = kernel_tour::run(&ledger, &db)?;
    if !out.json {
        table::print_tour(&tour);
    }
    let passes = if args.no_model {
        None
    } else {
        Some(run_passes(home, &ledger, args, out)?)
    };
    let checked = check_ledger(&ledger, &db, before)?;
    let ok = checked.ok
        && checked.tamper_caught
        && tour.as_expected()
        && passes
            .as_ref()
            .is_none_or(Passes::primitives_kept_their_promise);

    if out.json {
        out.print_json(&serde_json::json!({
            "model": (!args.no_model).then_some(&args.model),
            "max_tokens": passes::MAX_TOKENS,
            "kernel_tour": table::tour_json(&tour),
            "kernel_pass": passes.as_ref().map(|p| table::pass_json(&p.kernel)),
            "bare_model_pass": passes.as_ref().map(|p| table::pass_json(&p.bare)),
            "primitives_kept_their_promise": passes.as_ref().map(Passes::primitives_kept_their_promise),
            "ledger": table::ledger_json(&checked),
            "tampered_export_caught": checked.tamper_caught,
            "ok": ok,
        }));
    } else {
        match &passes {
            Some(p) => table::print_totals(&Totals::of(&p.kernel), &Totals::of(&p.bare)),
            None => println!("\nmodel passes skipped (--no-model)."),
        }
        table::print_ledger(&checked);
        if !ok {
            println!(
                "\nA CHECK FAILED: the ledger, the tour, or a request phrased for a primitive (route or answer) is not as it should be."
            );
        }
        println!(
            "\nnext: `nmk run \"is 97 prime\"`, `nmk ledger show --tail` to read the decisions, `nmk ledger verify` to check them."
        );
    }
    Ok(if ok { Code::Success } else { Code::CheckFailed })
}
