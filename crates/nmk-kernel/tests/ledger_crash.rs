//! Crash safety of the SQLite proof ledger: a child process appends entries and is killed with
//! SIGKILL mid-stream; on reopen the ledger verifies and holds every entry whose append had
//! returned (the child prints `seq hash` after each returned append), and accepts further
//! appends chained after the recovered tail. Runs several rounds for both durability settings.
//!
//! This target has `harness = false`: `main` is the parent by default and the appending child
//! when `NMK_LEDGER_CRASH_CHILD` names a database.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use nmk_det::{ContentHash, ValidationLevel, Value, hash_value};
use nmk_kernel::Verification;
use nmk_kernel::ledger::{Action, Head, Ledger, LedgerRecord, ValidatorId};
use nmk_kernel::store::Durability;

const CHILD_ENV: &str = "NMK_LEDGER_CRASH_CHILD";
const DURABILITY_ENV: &str = "NMK_LEDGER_CRASH_DURABILITY";
const ROUNDS_PER_SETTING: u64 = 5;

fn record(i: u64) -> LedgerRecord {
    LedgerRecord {
        opcode: "commit_trap".into(),
        op_version: "1".into(),
        inputs: BTreeMap::from([
            ("candidate".to_string(), hash_value(&Value::int(i))),
            ("contract".to_string(), hash_value(&Value::str("c"))),
        ]),
        result: hash_value(&Value::map([("i", Value::int(i))])),
        contract: hash_value(&Value::str("contract")),
        validator: Some(ValidatorId::new("emit_ok", "1")),
        level: ValidationLevel::Schema,
        verification: Verification::Checked,
        action: Action::Emit,
        logical_time: i,
        model: None,
        detail: Value::map([("i", Value::int(i)), ("pad", Value::str("x".repeat(200)))]),
    }
}

/// Child: append forever, reporting each entry once its append has returned.
fn child(path: &Path, durability: Durability) -> ExitCode {
    let ledger = Ledger::open(path, durability).unwrap();
    let start = ledger.len().unwrap();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for i in start.. {
        let entry = ledger.append(record(i)).unwrap();
        if writeln!(out, "{} {}", entry.seq, entry.hash.to_hex())
            .and_then(|()| out.flush())
            .is_err()
        {
            break;
        }
    }
    ExitCode::FAILURE
}

/// A small deterministic LCG (Knuth's MMIX constants), seeded per round.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
}

struct RoundResult {
    read_before_kill: usize,
    reported: usize,
    recovered: u64,
}

fn round(durability: Durability, seed: u64) -> Result<RoundResult, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let path = dir.path().join("crash.sqlite");
    let mut lcg = Lcg(seed);
    lcg.next(); // let nearby seeds drift apart before drawing
    let target = usize::try_from(1 + lcg.next() % 300).unwrap();
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut child = Command::new(exe)
        .env(CHILD_ENV, &path)
        .env(DURABILITY_ENV, format!("{durability:?}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("spawn: {e}"))?;
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut reported: Vec<(u64, ContentHash)> = Vec::new();
    let parse = |line: &str| -> Result<(u64, ContentHash), String> {
        let (seq, hash) = line
            .split_once(' ')
            .ok_or_else(|| format!("bad child line {line:?}"))?;
        Ok((
            seq.parse().map_err(|_| format!("bad seq in {line:?}"))?,
            hash.parse().map_err(|_| format!("bad hash in {line:?}"))?,
        ))
    };
    while reported.len() < target {
        match lines.next() {
            Some(Ok(line)) => reported.push(parse(&line)?),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "child stopped after {} entries, before being killed",
                    reported.len()
                ));
            }
        }
    }
    // SIGKILL on Unix: no destructor, no SQLite close, mid-append with high probability.
    child.kill().map_err(|e| format!("kill: {e}"))?;
    let status = child.wait().map_err(|e| format!("wait: {e}"))?;
    if status.success() {
        return Err(format!("child exited normally ({status}) instead of dying"));
    }
    let read_before_kill = reported.len();
    // Whatever the child printed before dying also reports appends that had returned. A line
    // cut short by the kill has no newline and does not parse; it is not counted.
    for line in lines {
        match line {
            Ok(line) => match parse(&line) {
                Ok(pair) => reported.push(pair),
                Err(_) => break,
            },
            Err(_) => break,
        }
    }

    let ledger = Ledger::open(&path, durability).map_err(|e| format!("reopen: {e}"))?;
    let report = ledger.verify(None).map_err(|e| format!("verify: {e}"))?;
    if !report.ok() {
        return Err(format!(
            "recovered chain does not verify: {:?}",
            report.problems
        ));
    }
    let (last_seq, last_hash) = *reported.last().unwrap();
    let report = ledger
        .verify(Some(Head {
            seq: last_seq,
            hash: last_hash,
        }))
        .map_err(|e| format!("verify: {e}"))?;
    if !report.ok() {
        return Err(format!(
            "last reported head not in the chain: {:?}",
            report.problems
        ));
    }
    let stored: BTreeMap<u64, ContentHash> = ledger
        .entries(0, usize::MAX)
        .map_err(|e| format!("entries: {e}"))?
        .into_iter()
        .map(|e| (e.seq, e.hash))
        .collect();
    for (i, (seq, hash)) in reported.iter().enumerate() {
        if *seq != i as u64 {
            return Err(format!("child reported seq {seq} at position {i}"));
        }
        match stored.get(seq) {
            Some(h) if h == hash => {}
            Some(h) => return Err(format!("entry {seq} has hash {h:?}, child saw {hash:?}")),
            None => return Err(format!("entry {seq} whose append returned was lost")),
        }
    }
    let recovered = ledger.len().map_err(|e| e.to_string())?;
    if recovered < reported.len() as u64 {
        return Err(format!(
            "{recovered} entries recovered, {} reported",
            reported.len()
        ));
    }
    // The recovered ledger keeps growing on the recovered tail.
    let tail = ledger.head().map_err(|e| e.to_string())?.unwrap();
    let next = ledger
        .append(record(recovered))
        .map_err(|e| format!("append after recovery: {e}"))?;
    if next.seq != tail.seq + 1 || next.prev != tail.hash {
        return Err(format!(
            "append after recovery did not chain: seq {} prev {:?}, tail {tail:?}",
            next.seq, next.prev
        ));
    }
    let report = ledger
        .verify(Some(next.head()))
        .map_err(|e| format!("verify: {e}"))?;
    if !report.ok() || report.entries != recovered + 1 {
        return Err(format!(
            "chain after recovery append: {} entries, {:?}",
            report.entries, report.problems
        ));
    }
    Ok(RoundResult {
        read_before_kill,
        reported: reported.len(),
        recovered,
    })
}

fn main() -> ExitCode {
    if let Some(path) = std::env::var_os(CHILD_ENV) {
        let durability = match std::env::var(DURABILITY_ENV).as_deref() {
            Ok("PowerLoss") => Durability::PowerLoss,
            _ => Durability::Process,
        };
        return child(Path::new(&path), durability);
    }
    // `cargo test -- --list` and filters: this target is one test.
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        println!("sigkill_mid_append_keeps_every_returned_entry: test");
        return ExitCode::SUCCESS;
    }
    let started = Instant::now();
    println!("\nrunning 1 test");
    let mut failure = None;
    let mut total_recovered = 0;
    'rounds: for durability in [Durability::Process, Durability::PowerLoss] {
        for r in 0..ROUNDS_PER_SETTING {
            let seed = 0x6e6d_6b00
                + r
                + if durability == Durability::PowerLoss {
                    100
                } else {
                    0
                };
            match round(durability, seed) {
                Ok(res) => {
                    total_recovered += res.recovered;
                    println!(
                        "  round {r} {durability:?}: killed after reading {} lines; {} appends \
                         reported, {} entries recovered, chain verifies",
                        res.read_before_kill, res.reported, res.recovered
                    );
                }
                Err(why) => {
                    failure = Some(format!("round {r} {durability:?}: {why}"));
                    break 'rounds;
                }
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    match failure {
        None => {
            println!(
                "test sigkill_mid_append_keeps_every_returned_entry ... ok ({} rounds, {total_recovered} entries recovered)",
                2 * ROUNDS_PER_SETTING
            );
            println!("finished in {secs:.2}s\n");
            println!("test result: ok. 1 passed; 0 failed");
            ExitCode::SUCCESS
        }
        Some(why) => {
            println!("test sigkill_mid_append_keeps_every_returned_entry ... FAILED");
            println!("  {why}");
            println!("finished in {secs:.2}s\n");
            println!("test result: FAILED. 0 passed; 1 failed");
            ExitCode::FAILURE
        }
    }
}
