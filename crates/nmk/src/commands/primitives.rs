//! `nmk primitives list|show|call`: the learned primitives (re-checked before they are listed as
//! usable or called) and the built-in catalogue. A learned primitive is called through a
//! one-task graph on the scheduler: capability `prim:<entry>`, the sandboxed executor, the
//! validator `<entry>_ok`, and a ledger entry for the verdict — zero model tokens.

use std::sync::Arc;

use anyhow::Result;
use clap::Subcommand;
use nmk_det::Value;
use nmk_det::primitives;
use nmk_det::sandbox::CallLimits;
use nmk_kernel::budget::{Budget, BudgetLimits};
use nmk_kernel::learn::registry::{capability_name, validator_name};
use nmk_kernel::learn::{Recheck, RegateWith, VerifiedPrimitive, install};
use nmk_kernel::memory::{MemoryConfig, MemoryStore};
use nmk_kernel::{Scheduler, TaskSpec};

use super::Output;
use super::learned::{self, Kernel, record_json, value_json};
use crate::exit::Code;

/// `nmk primitives …`
#[derive(Debug, Subcommand)]
#[command(
    after_help = "Examples:\n  nmk primitives list\n  nmk primitives show gcd\n  nmk primitives call gcd \"[12, 18]\""
)]
pub enum PrimitivesCommand {
    /// Learned primitives (after their re-check) and the built-in catalogue.
    #[command(
        after_help = "Examples:\n  nmk primitives list\n  nmk primitives list --regate --json"
    )]
    List {
        /// Re-gate every learned primitive under a fresh seed (slower), not only its hashes.
        #[arg(long)]
        regate: bool,
    },
    /// A primitive's code, hashes, gate counts and provenance.
    #[command(
        after_help = "Examples:\n  nmk primitives show gcd\n  nmk primitives show is_prime --json"
    )]
    Show {
        /// The entry name.
        entry: String,
    },
    /// Calls a primitive with a JSON array of arguments and prints the result as JSON.
    #[command(
        after_help = "Examples:\n  nmk primitives call gcd \"[12, 18]\"\n  nmk primitives call count_letter '[\"banana\", \"a\"]' --json\n  nmk primitives call my_learned_entry \"[7]\" --regate"
    )]
    Call {
        /// The entry name.
        entry: String,
        /// The arguments, as a JSON array (`[7]`, `["a b", 2]`).
        args_json: String,
        /// Re-gate the learned primitive under a fresh seed before calling it.
        #[arg(long)]
        regate: bool,
    },
}

/// Runs `nmk primitives`.
pub fn run(home: &std::path::Path, out: &Output, cmd: PrimitivesCommand) -> Result<Code> {
    match cmd {
        PrimitivesCommand::List { regate } => list(home, out, regate),
        PrimitivesCommand::Show { entry } => show(home, out, &entry),
        PrimitivesCommand::Call {
            entry,
            args_json,
            regate,
        } => call(home, out, &entry, &args_json, regate),
    }
}

fn recheck(regate: bool) -> Recheck {
    if regate {
        Recheck::Regate
    } else {
        Recheck::Hashes
    }
}

fn list(home: &std::path::Path, out: &Output, regate: bool) -> Result<Code> {
    let mut kernel = learned::open(home)?;
    let report = if regate {
        let sandbox = Arc::new(crate::sandbox::start()?);
        let mut rebuild = learned::rebuilder(sandbox.clone());
        kernel.registry.reload(
            &kernel.ledger,
            Recheck::Regate,
            Some(RegateWith {
                sandbox: &sandbox,
                rebuild_gap: &mut rebuild,
                seed: learned::fresh_seed(),
                n: None,
            }),
        )?
    } else {
        kernel
            .registry
            .reload(&kernel.ledger, Recheck::Hashes, None)?
    };
    let builtins = primitives::catalog();
    if out.json {
        out.print_json(&serde_json::json!({
            "learned": report.usable.iter().map(|p| {
                let mut v = record_json(p.record(), false);
                if let (Some(obj), Some(adm)) = (v.as_object_mut(), p.regate()) {
                    obj.insert("regate".into(), learned::admission_json(adm));
                }
                v
            }).collect::<Vec<_>>(),
            "refused": report.refused.iter().map(|r| serde_json::json!({
                "entry": r.entry, "reason": r.reason,
            })).collect::<Vec<_>>(),
            "recheck": if regate { "regate" } else { "hashes" },
            "builtin": builtins.iter().map(|p| serde_json::json!({
                "name": p.name,
                "signature": p.signature,
                "kind": format!("{:?}", p.kind()).to_lowercase(),
            })).collect::<Vec<_>>(),
        }));
    } else {
        println!(
            "learned ({} usable, {} refused; re-check: {}):",
            report.usable.len(),
            report.refused.len(),
            if regate {
                "re-gated now"
            } else {
                "hashes and ledger"
            }
        );
        for p in &report.usable {
            let r = p.record();
            println!(
                "  {:<20} {:<40} gate {}/{} seed {}  by {}  {}",
                r.entry,
                r.signature,
                r.gate.passed,
                r.gate.n,
                r.gate.seed,
                r.proposer,
                r.code_hash.short(12)
            );
        }
        for r in &report.refused {
            println!("  {:<20} REFUSED: {}", r.entry, r.reason);
        }
        println!("built-in ({}):", builtins.len());
        for p in builtins {
            println!("  {:<20} {}", p.name, p.signature);
        }
    }
    Ok(if report.refused.is_empty() {
        Code::Success
    } else {
        Code::CheckFailed
    })
}

fn show(home: &std::path::Path, out: &Output, entry: &str) -> Result<Code> {
    let mut kernel = learned::open(home)?;
    let Some(rec) = kernel.registry.get(entry)? else {
        return show_builtin(out, entry);
    };
    let status = kernel
        .registry
        .reload_one(entry, &kernel.ledger, Recheck::Hashes, None)?;
    let refused = match &status {
        Some(Err(r)) => Some(r.reason.clone()),
        _ => None,
    };
    if out.json {
        let mut v = record_json(&rec, true);
        if let Some(obj) = v.as_object_mut() {
            obj.insert("usable".into(), refused.is_none().into());
            obj.insert("refused".into(), refused.clone().into());
            obj.insert("source".into(), "learned".into());
        }
        out.print_json(&v);
    } else {
        println!("{}  (learned)", rec.signature);
        println!("  {}", rec.description);
        match &refused {
            None => println!("  status: usable (code hash and ledger pass re-checked)"),
            Some(r) => println!("  status: REFUSED: {r}"),
        }
        println!("  code hash: {}", rec.code_hash.to_hex());
        println!("  gap spec hash: {}", rec.gap_spec_hash.to_hex());
        println!(
            "  gate: {}/{} at seed {}, re-gate {}/{} at seed {}",
            rec.gate.passed,
            rec.gate.n,
            rec.gate.seed,
            rec.gate.regate_passed,
            rec.gate.n,
            rec.gate.regate_seed
        );
        println!("  proposed by: {}", rec.proposer);
        if let Some(m) = &rec.model {
            println!(
                "  model {}  tokenizer {}  policy {}",
                m.model.short(12),
                m.tokenizer.short(12),
                m.policy.short(12)
            );
        }
        if let Some(p) = rec.prompt_hash {
            println!("  prompt hash: {}", p.to_hex());
        }
        println!(
            "  admitted by ledger entry {}:{}",
            rec.ledger.seq,
            rec.ledger.hash.to_hex()
        );
        println!("--- code ---\n{}", rec.code.trim_end());
    }
    Ok(if refused.is_none() {
        Code::Success
    } else {
        Code::CheckFailed
    })
}

fn show_builtin(out: &Output, entry: &str) -> Result<Code> {
    let Some(p) = primitives::find(entry) else {
        eprintln!("error: no primitive named {entry:?}");
        return Ok(Code::Usage);
    };
    if out.json {
        out.print_json(&serde_json::json!({
            "entry": p.name,
            "signature": p.signature,
            "description": p.description,
            "kind": format!("{:?}", p.kind()).to_lowercase(),
            "source": "builtin",
        }));
    } else {
        println!("{}  (built-in)\n  {}", p.signature, p.description);
    }
    Ok(Code::Success)
}

fn parse_args(text: &str) -> Option<Vec<Value>> {
    match serde_json::from_str::<serde_json::Value>(text).ok()? {
        serde_json::Value::Array(items) => Some(items.iter().map(Value::from_json).collect()),
        _ => None,
    }
}

fn call(
    home: &std::path::Path,
    out: &Output,
    entry: &str,
    args_json: &str,
    regate: bool,
) -> Result<Code> {
    let Some(args) = parse_args(args_json) else {
        eprintln!("error: ARGS_JSON must be a JSON array, e.g. [7]");
        return Ok(Code::Usage);
    };
    let mut kernel = learned::open(home)?;
    if !kernel.registry.contains(entry)? {
        return call_builtin(out, entry, &args);
    }
    let sandbox = Arc::new(crate::sandbox::start()?);
    let status = if regate {
        let mut rebuild = learned::rebuilder(sandbox.clone());
        kernel.registry.reload_one(
            entry,
            &kernel.ledger,
            recheck(true),
            Some(RegateWith {
                sandbox: &sandbox,
                rebuild_gap: &mut rebuild,
                seed: learned::fresh_seed(),
                n: None,
            }),
        )?
    } else {
        kernel
            .registry
            .reload_one(entry, &kernel.ledger, recheck(false), None)?
    };
    let primitive = match status {
        Some(Ok(p)) => p,
        Some(Err(r)) => {
            eprintln!("refused: {entry}: {}", r.reason);
            return Ok(Code::CheckFailed);
        }
        None => {
            eprintln!("error: no primitive named {entry:?}");
            return Ok(Code::Usage);
        }
    };
    call_learned(&kernel, out, &primitive, sandbox, args)
}

/// One task on the scheduler: admitted under `prim:<entry>`, run in the sandbox, judged by
/// `<entry>_ok`, committed, each decision in the ledger.
fn call_learned(
    kernel: &Kernel,
    out: &Output,
    primitive: &VerifiedPrimitive,
    sandbox: Arc<nmk_det::sandbox::Sandbox>,
    args: Vec<Value>,
) -> Result<Code> {
    let entry = primitive.record().entry.clone();
    let mut s = Scheduler::new(
        &format!("call:{entry}"),
        kernel.ledger.clone(),
        Budget::new(BudgetLimits::default()),
    )?;
    // The kernel consults memory before the call; the trace and the ledger record it.
    s.attach_memory(Box::new(MemoryStore::open(
        &kernel.db,
        MemoryConfig::default(),
        kernel.ledger.clone(),
    )?));
    install(&mut s, primitive, sandbox, CallLimits::default())?;
    s.classify("primitive_call");
    let args_ref = s.put_artifact(Value::List(args), "args")?;
    s.admit(
        TaskSpec::new("call", entry.as_str())
            .owned_by(&format!("primitive:{entry}"))
            .needs(&capability_name(&entry))
            .validated_by(&validator_name(&entry), "SCHEMA")
            .input("args", args_ref)
            .root(),
    )
    .map_err(|e| anyhow::anyhow!("the call was not admitted: {e}"))?;
    let summary = s.run(4)?;
    let result = s.result("call").cloned().unwrap_or(Value::Null);
    let ok = summary.committed && matches!(result.get("ok"), Some(Value::Bool(true)));
    let value = result.get("value").cloned().unwrap_or(Value::Null);
    if out.json {
        out.print_json(&serde_json::json!({
            "entry": entry,
            "ok": ok,
            "result": value_json(&value),
            "error": result.get("error").and_then(Value::as_str),
            "source": "learned",
            "code_hash": primitive.record().code_hash.to_hex(),
            "gate_entry": primitive.record().ledger.hash.to_hex(),
            "committed": summary.committed,
            "verification": summary.verification.get("call").map(|v| v.as_str()),
            "model_tokens": 0,
        }));
    } else if ok {
        println!("{}", value_json(&value));
    } else {
        eprintln!(
            "{entry} failed: {}",
            result
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("not committed")
        );
    }
    Ok(if ok { Code::Success } else { Code::CheckFailed })
}

fn call_builtin(out: &Output, entry: &str, args: &[Value]) -> Result<Code> {
    let Some(p) = primitives::find(entry) else {
        eprintln!("error: no primitive named {entry:?}");
        return Ok(Code::Usage);
    };
    match p.call(args) {
        Ok(v) => {
            if out.json {
                out.print_json(&serde_json::json!({
                    "entry": entry, "ok": true, "result": value_json(&v),
                    "source": "builtin", "model_tokens": 0,
                }));
            } else {
                println!("{}", value_json(&v));
            }
            Ok(Code::Success)
        }
        Err(e) => {
            if out.json {
                out.print_json(&serde_json::json!({
                    "entry": entry, "ok": false, "error": e.to_string(), "source": "builtin",
                }));
            } else {
                eprintln!("{entry} refused: {e}");
            }
            Ok(Code::CheckFailed)
        }
    }
}
