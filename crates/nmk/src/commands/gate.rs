//! `nmk gate GAP_FILE PROGRAM_FILE`: the whole admission pipeline on a program a user wrote —
//! stage 0, samples, held-out gate, second-seed re-gate, placebos — with the verdict recorded in
//! the ledger and, with `--register`, the program stored as a learned primitive.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use clap::Args;
use nmk_det::gate::gapfile::GapFileError;

use super::Output;
use super::learned::{self, admission_json, fmt_counts};
use crate::exit::Code;

/// Options of `nmk gate`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  nmk gate examples/gaps/gcd.toml my_gcd.py\n  nmk gate examples/gaps/gcd.toml my_gcd.py --register\n  nmk gate examples/gaps/is_palindrome.toml pal.py --n 50 --seed 7 --json"
)]
pub struct GateArgs {
    /// The gap file (TOML: entry, signature, description, samples, generator, oracle).
    gap: PathBuf,
    /// The program to gate (Python defining the gap's entry).
    program: PathBuf,
    /// Held-out instances per seed (default: the gap file's n).
    #[arg(long)]
    n: Option<usize>,
    /// The first seed (default: the gap file's seed).
    #[arg(long)]
    seed: Option<u64>,
    /// Store the program as a learned primitive if it is admitted.
    #[arg(long)]
    register: bool,
}

/// Runs `nmk gate`.
pub fn run(home: &std::path::Path, out: &Output, args: &GateArgs) -> Result<Code> {
    let started = Instant::now();
    let code = match std::fs::read_to_string(&args.program) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {}: {e}", args.program.display());
            return Ok(Code::Usage);
        }
    };
    let file = match learned::read_gap(&args.gap) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(Code::Usage);
        }
    };
    let sandbox = Arc::new(crate::sandbox::start()?);
    let gap = match file.build(sandbox.clone()) {
        Ok(g) => g,
        Err(e @ GapFileError::Unsound { .. }) => {
            // The gap's own trusted code failed its sanity check: nothing can be admitted.
            report_unsound(out, &file.entry, &e.to_string());
            return Ok(Code::CheckFailed);
        }
        Err(e) => return Err(anyhow::anyhow!("building the gap: {e}")),
    };
    let mut config = file.gate_config();
    if let Some(n) = args.n {
        config.n = n;
    }
    if let Some(seed) = args.seed {
        config.seed = seed;
    }
    let mut kernel = learned::open(home)?;
    let spinner = super::progress::spinner(
        format!(
            "gating {} ({} held-out instances per seed)",
            file.entry, config.n
        ),
        super::progress::hidden(out.json),
    );
    let gated =
        learned::gate_user_program(&mut kernel, &sandbox, &gap, &code, &config, args.register);
    spinner.finish_and_clear();
    let learned::Gated {
        admission: adm,
        entry,
        registered,
    } = gated?;
    let elapsed = started.elapsed();
    if out.json {
        let mut v = admission_json(&adm);
        if let Some(obj) = v.as_object_mut() {
            obj.insert("ledger_seq".into(), entry.seq.into());
            obj.insert("ledger_hash".into(), entry.hash.to_hex().into());
            obj.insert("registered".into(), registered.is_some().into());
            obj.insert(
                "total_elapsed_ms".into(),
                (elapsed.as_millis() as u64).into(),
            );
        }
        out.print_json(&v);
    } else {
        let (pf, pn) = adm.placebo_counts();
        println!(
            "{}: {} ({})",
            adm.entry,
            if adm.admitted { "ADMITTED" } else { "REFUSED" },
            adm.reason_str()
        );
        println!(
            "  samples {}  gate {} (seed {})  re-gate {} (seed {})  placebos failed {pf}/{pn}",
            fmt_counts(adm.sample_counts()),
            fmt_counts(adm.gate_counts()),
            adm.seed,
            fmt_counts(adm.regate_counts()),
            adm.seed2,
        );
        if !adm.admitted && !adm.feedback.is_empty() {
            println!("  {}", adm.feedback);
        }
        println!(
            "  ledger entry {}:{}  elapsed {:.2}s{}",
            entry.seq,
            entry.hash.short(12),
            elapsed.as_secs_f64(),
            if registered.is_some() {
                "  registered as a learned primitive"
            } else {
                ""
            }
        );
    }
    Ok(if adm.admitted {
        Code::Success
    } else {
        Code::CheckFailed
    })
}

fn report_unsound(out: &Output, entry: &str, why: &str) {
    if out.json {
        out.print_json(&serde_json::json!({
            "entry": entry,
            "admitted": false,
            "reason": "gap_unsound",
            "feedback": why,
        }));
    } else {
        println!("{entry}: REFUSED (gap_unsound)\n  {why}");
    }
}
