//! `nmk ledger verify|show|export|head`.

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use nmk_kernel::ledger::{Head, Ledger, LedgerEntry, VerifyReport, verify_jsonl};
use nmk_kernel::store::{Durability, database_path};

use super::Output;
use crate::exit::Code;

/// Ledger subcommands.
#[derive(Debug, Subcommand)]
#[command(
    after_help = "Examples:\n  nmk ledger verify\n  nmk ledger show --tail --limit 5\n  nmk ledger head\n  nmk ledger export --out ledger.jsonl"
)]
pub enum LedgerCommand {
    /// Verify the chain: every seal, every link, no gaps; with --head, also that the entry you
    /// last trusted is still there (detects a truncated tail).
    #[command(
        after_help = "Examples:\n  nmk ledger verify\n  nmk ledger verify --json\n  nmk ledger verify --head \"$(nmk ledger head)\"\n  nmk ledger export --out ledger.jsonl && nmk ledger verify --file ledger.jsonl"
    )]
    Verify {
        /// Verify an exported JSONL file instead of the kernel's database.
        #[arg(long)]
        file: Option<PathBuf>,
        /// The last head you trusted, as SEQ:HASH (from `nmk ledger head`).
        #[arg(long)]
        head: Option<String>,
    },
    /// Print entries.
    #[command(
        after_help = "Examples:\n  nmk ledger show\n  nmk ledger show --from 10 --limit 5\n  nmk ledger show --tail --limit 3 --json"
    )]
    Show {
        /// First sequence number to print.
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// How many entries to print.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Print the last LIMIT entries instead.
        #[arg(long)]
        tail: bool,
    },
    /// Export every entry as canonical JSON lines.
    #[command(
        after_help = "Examples:\n  nmk ledger export > ledger.jsonl\n  nmk ledger export --out ledger.jsonl --json"
    )]
    Export {
        /// Write to this file (atomically) instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Print the current head as SEQ:HASH, to keep for a later `verify --head`.
    #[command(after_help = "Examples:\n  nmk ledger head\n  nmk ledger head --json")]
    Head,
}

/// Runs a ledger subcommand.
pub fn run(home: &Path, out: &Output, cmd: LedgerCommand) -> Result<Code> {
    match cmd {
        LedgerCommand::Verify { file, head } => {
            // A malformed --head is a usage error, not a failed check or a runtime fault.
            let known = match head.as_deref().map(parse_head).transpose() {
                Ok(k) => k,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    return Ok(Code::Usage);
                }
            };
            let (report, source) = match file {
                Some(path) => {
                    let f =
                        File::open(&path).with_context(|| format!("opening {}", path.display()))?;
                    (
                        verify_jsonl(BufReader::new(f), known)?,
                        path.display().to_string(),
                    )
                }
                None => {
                    let db = database_path(home);
                    let ledger = open_existing(&db)?;
                    (ledger.verify(known)?, db.display().to_string())
                }
            };
            print_report(out, &source, &report);
            Ok(if report.ok() {
                Code::Success
            } else {
                Code::CheckFailed
            })
        }
        LedgerCommand::Show { from, limit, tail } => {
            let ledger = open_existing(&database_path(home))?;
            let from = if tail {
                ledger.len()?.saturating_sub(limit as u64)
            } else {
                from
            };
            let entries = ledger.entries(from, limit)?;
            if out.json {
                let list: Vec<serde_json::Value> =
                    entries.iter().map(entry_json).collect::<Result<_>>()?;
                out.print_json(&serde_json::Value::Array(list));
            } else {
                for e in &entries {
                    print_entry(e);
                }
                if entries.is_empty() {
                    println!("(no entries)");
                }
            }
            Ok(Code::Success)
        }
        LedgerCommand::Export { out: path } => {
            let ledger = open_existing(&database_path(home))?;
            let to_stdout = path.is_none();
            let n = match path {
                None => {
                    let stdout = std::io::stdout();
                    let mut lock = stdout.lock();
                    ledger.export_jsonl(&mut lock)?
                }
                Some(path) => export_atomically(&ledger, &path)?,
            };
            match (out.json, to_stdout) {
                // The entries on stdout are already JSON Lines; a summary object would break
                // the stream, so the count goes to stderr as in text mode.
                (true, false) => out.print_json(&serde_json::json!({ "exported": n })),
                _ => eprintln!("exported {n} entries"),
            }
            Ok(Code::Success)
        }
        LedgerCommand::Head => {
            let ledger = open_existing(&database_path(home))?;
            match ledger.head()? {
                None => {
                    if out.json {
                        out.print_json(&serde_json::json!({ "head": null }));
                    } else {
                        println!("(empty ledger)");
                    }
                }
                Some(h) => {
                    if out.json {
                        out.print_json(&serde_json::json!({ "seq": h.seq, "hash": h.hash.to_hex(), "head": format_head(&h) }));
                    } else {
                        println!("{}", format_head(&h));
                    }
                }
            }
            Ok(Code::Success)
        }
    }
}

fn open_existing(db: &Path) -> Result<Ledger> {
    if !db.exists() {
        bail!(
            "no ledger at {} (run `nmk demo` first, or pass --home)",
            db.display()
        );
    }
    Ok(Ledger::open(db, Durability::Process)?)
}

/// `SEQ:HASH`.
pub fn format_head(h: &Head) -> String {
    format!("{}:{}", h.seq, h.hash.to_hex())
}

fn parse_head(text: &str) -> Result<Head> {
    let (seq, hash) = text.split_once(':').context("--head must be SEQ:HASH")?;
    Ok(Head {
        seq: seq.parse().context("--head: SEQ is not a number")?,
        hash: hash
            .parse()
            .context("--head: HASH is not 64 lower-case hex digits")?,
    })
}

fn export_atomically(ledger: &Ledger, path: &Path) -> Result<u64> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("ledger")
    ));
    let file = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let mut writer = BufWriter::new(file);
    let n = ledger.export_jsonl(&mut writer)?;
    let file = writer.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming into {}", path.display()))?;
    Ok(n)
}

fn entry_json(e: &LedgerEntry) -> Result<serde_json::Value> {
    Ok(serde_json::from_str(&e.to_canonical())?)
}

fn print_entry(e: &LedgerEntry) {
    let r = &e.record;
    let validator = r
        .validator
        .as_ref()
        .map(|v| format!("{}@{}", v.name, v.version))
        .unwrap_or_else(|| "-".into());
    println!(
        "#{:<5} t={:<5} {:<7} {:<22} {:<9} {:<10} {:<24} {}",
        e.seq,
        r.logical_time,
        r.action.as_str(),
        truncate(&r.opcode, 22),
        r.level.as_str(),
        r.verification.as_str(),
        truncate(&validator, 24),
        e.hash.short(16)
    );
    if let Some(reason) = r.detail.get("reason").and_then(|v| v.as_str()) {
        println!("        reason: {reason}");
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        s.chars().take(n.saturating_sub(1)).chain(['…']).collect()
    }
}

fn print_report(out: &Output, source: &str, report: &VerifyReport) {
    if out.json {
        out.print_json(&serde_json::json!({
            "source": source,
            "ok": report.ok(),
            "entries": report.entries,
            "head": report.head.as_ref().map(format_head),
            "problems": report.problems.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
        }));
        return;
    }
    if report.ok() {
        let head = report
            .head
            .as_ref()
            .map(format_head)
            .unwrap_or_else(|| "(empty)".into());
        println!(
            "ledger OK: {} entries, head {head}\n  ({source})",
            report.entries
        );
    } else {
        println!(
            "ledger BROKEN: {} problem(s) in {} rows ({source})",
            report.problems.len(),
            report.entries
        );
        for p in &report.problems {
            println!("  - {p}");
        }
    }
    let _ = std::io::stdout().flush();
}
