//! `nmk serve` under load: 32 concurrent streaming clients for 60 s against SmolLM2 on
//! loopback (`--max-queue 64`, the server's default number of lanes). Each client loops over a
//! mix of requests (about a third routable to a primitive, the rest free questions with
//! `max_tokens` 32) and reads every event stream to its end. 429 and 503 are the documented
//! back-pressure: their `Retry-After` is honoured and they are counted. Anything else (another
//! status, a broken or truncated stream, an error object in the stream, a final chunk without
//! `nmk` or without its ledger entry) fails the test. After a graceful SIGTERM every
//! acknowledged answer's ledger entries are looked up in the ledger on disk and
//! `nmk ledger verify` must pass; the contrast is the same lookup reporting an entry that was
//! never written. A summary is printed and, when `NMK_LOAD_REPORT` names a path, written
//! there as JSON (`bench/serve_load/run.sh`). `NMK_LOAD_SECONDS` shortens the run while
//! developing; the default is the acceptance figure, 60 s.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::server::{
    MODEL, Server, ledger_hashes_on_disk, missing_entries, never_written_hash, post_chat, quantile,
    read_chat_stream, user,
};

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

const CLIENTS: usize = 32;
const MAX_QUEUE: &str = "64";
const FREE_MAX_TOKENS: u64 = 32;
/// Longest a refused client waits before retrying, whatever `Retry-After` says.
const MAX_RETRY_WAIT_S: u64 = 10;

const FREE_QUESTIONS: [&str; 8] = [
    "Name the capital city of France.",
    "Why is the sky blue?",
    "Write one sentence about the sea.",
    "What do bees make?",
    "Give a tip for learning to cook.",
    "Describe a cat in a few words.",
    "What is a good name for a dog?",
    "Say something kind about Mondays.",
];

/// One acknowledged answer, as its client measured it.
#[derive(Debug, Clone)]
struct Answer {
    route_kind: String,
    asked_primitive: bool,
    primitive: bool,
    committed: bool,
    first_chunk_s: f64,
    total_s: f64,
    tokens: u64,
    entries: Vec<String>,
}

#[derive(Default)]
struct Tally {
    answers: Vec<Answer>,
    back_pressure: BTreeMap<u16, u64>,
    failures: Vec<String>,
}

/// The ledger entries an answer names; all three must be there for it to count as
/// acknowledged.
fn named_entries(nmk: &Value) -> Result<Vec<String>, String> {
    ["ledger_entry", "memory_entry", "decision_entry"]
        .iter()
        .map(|f| {
            nmk[f]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| format!("final chunk's nmk has no {f}: {nmk}"))
        })
        .collect()
}

/// One streamed request: `Ok(Some(answer))`, `Ok(None)` after back-pressure (counted and
/// waited out), or the failure.
fn one_request(
    addr: &str,
    body: &Value,
    asked_primitive: bool,
    tally: &Mutex<Tally>,
) -> Result<Option<Answer>, String> {
    let t0 = Instant::now();
    let open = post_chat(addr, body, Duration::from_secs(170))?;
    match open.status {
        200 => {}
        429 | 503 => {
            let status = open.status;
            let wait = open
                .headers
                .get("retry-after")
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or_else(|| format!("{status} without a numeric Retry-After"))?;
            let _ = open.finish();
            *tally
                .lock()
                .unwrap()
                .back_pressure
                .entry(status)
                .or_default() += 1;
            std::thread::sleep(Duration::from_secs(wait.min(MAX_RETRY_WAIT_S)));
            return Ok(None);
        }
        other => {
            let body = open.finish().map(|r| r.body).unwrap_or_default();
            return Err(format!("status {other}: {body}"));
        }
    }
    let out = read_chat_stream(open, t0)?;
    let nmk = &out.last["nmk"];
    let tokens = out.last["usage"]["completion_tokens"].as_u64().unwrap_or(0);
    let primitive = nmk["primitive"]
        .as_bool()
        .ok_or_else(|| format!("nmk.primitive missing: {nmk}"))?;
    if primitive && tokens != 0 {
        return Err(format!("a primitive spent {tokens} tokens: {nmk}"));
    }
    if !primitive && !(1..=FREE_MAX_TOKENS).contains(&tokens) {
        return Err(format!(
            "a model answer of {tokens} tokens (cap {FREE_MAX_TOKENS}): {nmk}"
        ));
    }
    Ok(Some(Answer {
        route_kind: nmk["route_kind"].as_str().unwrap_or("?").to_owned(),
        asked_primitive,
        primitive,
        committed: nmk["committed"] == true,
        first_chunk_s: out.first_chunk.unwrap_or(out.total).as_secs_f64(),
        total_s: out.total.as_secs_f64(),
        tokens,
        entries: named_entries(nmk)?,
    }))
}

fn client(addr: String, index: usize, until: Instant, tally: Arc<Mutex<Tally>>) {
    let mut k = 0usize;
    while Instant::now() < until {
        let asked_primitive = (index + k).is_multiple_of(3);
        let body = if asked_primitive {
            user(
                &format!("what is the gcd of {} and {}", 6 * (index + 2), 4 * (k + 3)),
                16,
                true,
            )
        } else {
            user(
                FREE_QUESTIONS[(index + k) % FREE_QUESTIONS.len()],
                FREE_MAX_TOKENS,
                true,
            )
        };
        k += 1;
        match one_request(&addr, &body, asked_primitive, &tally) {
            Ok(Some(a)) => tally.lock().unwrap().answers.push(a),
            Ok(None) => {}
            Err(e) => tally
                .lock()
                .unwrap()
                .failures
                .push(format!("client {index}: {e}")),
        }
    }
}

fn figures(answers: &[&Answer]) -> Value {
    let lat: Vec<f64> = answers.iter().map(|a| a.total_s).collect();
    let ttfc: Vec<f64> = answers.iter().map(|a| a.first_chunk_s).collect();
    json!({
        "requests": answers.len(),
        "tokens": answers.iter().map(|a| a.tokens).sum::<u64>(),
        "committed": answers.iter().filter(|a| a.committed).count(),
        "latency_s": { "p50": quantile(&lat, 0.5), "p99": quantile(&lat, 0.99) },
        "first_chunk_s": { "p50": quantile(&ttfc, 0.5), "p99": quantile(&ttfc, 0.99) },
    })
}

#[test]
fn thirty_two_streaming_clients_for_a_minute_lose_nothing() {
    let run_s: u64 = std::env::var("NMK_LOAD_SECONDS")
        .ok()
        .map(|s| s.parse().expect("NMK_LOAD_SECONDS must be a whole number"))
        .unwrap_or(60);
    let home = tempfile::tempdir().unwrap();
    let mut srv = Server::start(home.path(), &["--max-queue", MAX_QUEUE]);
    let tally = Arc::new(Mutex::new(Tally::default()));
    let t0 = Instant::now();
    let until = t0 + Duration::from_secs(run_s);
    let handles: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let (addr, tally) = (srv.addr.clone(), tally.clone());
            std::thread::spawn(move || client(addr, i, until, tally))
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let wall_s = t0.elapsed().as_secs_f64();
    let exit = srv.stop_gracefully();
    let tally = std::mem::take(&mut *tally.lock().unwrap());

    let all: Vec<&Answer> = tally.answers.iter().collect();
    let mut by_kind: BTreeMap<String, Vec<&Answer>> = BTreeMap::new();
    for a in &all {
        by_kind.entry(a.route_kind.clone()).or_default().push(a);
    }
    let tokens: u64 = all.iter().map(|a| a.tokens).sum();
    let ledger = ledger_hashes_on_disk(home.path());
    let missing = missing_entries(&ledger, all.iter().flat_map(|a| &a.entries));
    let report = json!({
        "test": "serve_load",
        "unix_time": SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs(),
        "model": MODEL,
        "clients": CLIENTS,
        "run_s": run_s,
        "wall_s": wall_s,
        "server_args": ["--max-queue", MAX_QUEUE],
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "requests_ok": all.len(),
        "asked_primitive": all.iter().filter(|a| a.asked_primitive).count(),
        "answered_by_primitive": all.iter().filter(|a| a.primitive).count(),
        "back_pressure": tally.back_pressure.iter().map(|(s, n)| (s.to_string(), json!(n))).collect::<serde_json::Map<_, _>>(),
        "failures": tally.failures.len(),
        "req_per_s": all.len() as f64 / wall_s,
        "generated_tokens": tokens,
        "generated_tok_per_s": tokens as f64 / wall_s,
        "all": figures(&all),
        "by_route_kind": by_kind.iter().map(|(k, v)| (k.clone(), figures(v))).collect::<serde_json::Map<_, _>>(),
        "ledger_entries": ledger.len(),
        "acknowledged_entries_missing": missing.len(),
        "server_exit": exit.code(),
    });
    let pretty = serde_json::to_string_pretty(&report).unwrap();
    eprintln!("serve load summary:\n{pretty}");
    if let Some(path) = std::env::var_os("NMK_LOAD_REPORT") {
        std::fs::write(&path, format!("{pretty}\n")).unwrap();
    }

    assert!(
        tally.failures.is_empty(),
        "{} failed requests, first ones: {:#?}",
        tally.failures.len(),
        &tally.failures[..tally.failures.len().min(10)]
    );
    // The run did real work on both paths.
    assert!(all.iter().any(|a| a.primitive), "no primitive answered");
    assert!(all.iter().any(|a| !a.primitive), "no model answer");
    assert_eq!(exit.code(), Some(0), "graceful stop");
    assert!(
        missing.is_empty(),
        "acknowledged but not in the ledger: {missing:?}"
    );
    // Contrast: the same presence check does report an entry that was never written.
    let fake = never_written_hash();
    assert_eq!(missing_entries(&ledger, [&fake]), vec![fake.clone()]);
}
