//! `nmk serve` killed with SIGKILL under load loses no acknowledged answer. Eight clients send
//! a mix of primitive and model requests, streamed and whole; every complete response (with its
//! `nmk` ledger entries) is recorded as acknowledged. After a few seconds the server is killed
//! while requests are in flight (asserted: at least one was). Then `nmk ledger verify` on the
//! home passes and every acknowledged entry is in the ledger; the contrast is the same presence
//! check reporting an entry that was never written. Finally the server restarts on the same
//! home, serves, and appends: the chain continues past the entries written before the kill and
//! still verifies.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::server::{
    Server, ledger_hashes_on_disk, missing_entries, never_written_hash, post_chat,
    read_chat_stream, request, user, verify_on_disk,
};

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

const CLIENTS: usize = 8;
/// How long the clients run before the kill (the kill waits for a request in flight).
const LOAD_FOR: Duration = Duration::from_secs(4);

#[derive(Default)]
struct Shared {
    killed: AtomicBool,
    in_flight: AtomicUsize,
    cut_by_kill: AtomicUsize,
    acknowledged: Mutex<Vec<Ack>>,
    failures_before_kill: Mutex<Vec<String>>,
}

#[derive(Debug, Clone)]
struct Ack {
    streamed: bool,
    primitive: bool,
    seq: u64,
    entries: Vec<String>,
}

fn ack_of(nmk: &Value, streamed: bool) -> Result<Ack, String> {
    let entries = ["ledger_entry", "memory_entry", "decision_entry"]
        .iter()
        .map(|f| {
            nmk[f]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| format!("no {f} in {nmk}"))
        })
        .collect::<Result<_, _>>()?;
    Ok(Ack {
        streamed,
        primitive: nmk["primitive"] == true,
        seq: nmk["ledger_seq"]
            .as_u64()
            .ok_or_else(|| format!("no ledger_seq in {nmk}"))?,
        entries,
    })
}

/// One request to its complete response, or why it is not one.
fn exchange(addr: &str, body: &Value, streamed: bool) -> Result<Ack, String> {
    let t0 = Instant::now();
    let open = post_chat(addr, body, Duration::from_secs(120))?;
    if open.status != 200 {
        let status = open.status;
        let body = open.finish().map(|r| r.body).unwrap_or_default();
        return Err(format!("status {status}: {body}"));
    }
    if streamed {
        let out = read_chat_stream(open, t0)?;
        ack_of(&out.last["nmk"], true)
    } else {
        let r = open.finish().map_err(|e| format!("broken body: {e}"))?;
        let v: Value = serde_json::from_str(&r.body)
            .map_err(|e| format!("body not JSON ({e}): {}", r.body))?;
        ack_of(&v["nmk"], false)
    }
}

fn client(addr: String, index: usize, shared: Arc<Shared>) {
    let mut k = 0usize;
    while !shared.killed.load(Ordering::SeqCst) {
        let primitive = (index + k).is_multiple_of(3);
        let streamed = (index + k).is_multiple_of(2);
        let body = if primitive {
            user(
                &format!("what is the gcd of {} and {}", 6 * (index + 2), 4 * (k + 3)),
                8,
                streamed,
            )
        } else {
            user(
                &format!("Write a sentence about the number {}.", index * 100 + k),
                24,
                streamed,
            )
        };
        k += 1;
        shared.in_flight.fetch_add(1, Ordering::SeqCst);
        let result = exchange(&addr, &body, streamed);
        shared.in_flight.fetch_sub(1, Ordering::SeqCst);
        match result {
            Ok(ack) => shared.acknowledged.lock().unwrap().push(ack),
            // A request cut by the kill is not acknowledged; before the kill nothing may fail.
            Err(_) if shared.killed.load(Ordering::SeqCst) => {
                shared.cut_by_kill.fetch_add(1, Ordering::SeqCst);
                return;
            }
            Err(e) => shared
                .failures_before_kill
                .lock()
                .unwrap()
                .push(format!("client {index}: {e}")),
        }
    }
}

#[test]
fn sigkill_under_load_loses_no_acknowledged_answer_and_the_chain_continues() {
    let home = tempfile::tempdir().unwrap();
    let mut srv = Server::start(home.path(), &[]);
    let shared = Arc::new(Shared::default());
    let t0 = Instant::now();
    let handles: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let (addr, shared) = (srv.addr.clone(), shared.clone());
            std::thread::spawn(move || client(addr, i, shared))
        })
        .collect();

    // Kill once the load ran its time, some answers are acknowledged and requests are in flight.
    let give_up = t0 + Duration::from_secs(60);
    let in_flight_at_kill = loop {
        let in_flight = shared.in_flight.load(Ordering::SeqCst);
        // Both kinds acknowledged: with lanes, model answers arrive together, later.
        let (prim, model) = {
            let acked = shared.acknowledged.lock().unwrap();
            (
                acked.iter().filter(|a| a.primitive).count(),
                acked.iter().filter(|a| !a.primitive).count(),
            )
        };
        if t0.elapsed() >= LOAD_FOR && prim > 0 && model > 0 && in_flight > 0 {
            shared.killed.store(true, Ordering::SeqCst);
            srv.signal("KILL");
            break in_flight;
        }
        assert!(Instant::now() < give_up, "no answer acknowledged in 60 s");
        std::thread::sleep(Duration::from_millis(5));
    };
    let status = srv.child.wait().unwrap();
    for h in handles {
        h.join().unwrap();
    }
    use std::os::unix::process::ExitStatusExt as _;
    assert_eq!(status.signal(), Some(9), "{status:?}");
    // Requests were in flight, and the kill really cut some of them short.
    let cut = shared.cut_by_kill.load(Ordering::SeqCst);
    assert!(in_flight_at_kill >= 1, "nothing was in flight at the kill");
    assert!(cut >= 1, "no request was cut by the kill");
    let failures = shared.failures_before_kill.lock().unwrap().clone();
    assert!(failures.is_empty(), "failed before the kill: {failures:?}");
    let acked = shared.acknowledged.lock().unwrap().clone();
    eprintln!(
        "acknowledged before the kill: {} ({} primitive, {} streamed); {in_flight_at_kill} in flight at the kill after {:.2} s, {cut} cut by it",
        acked.len(),
        acked.iter().filter(|a| a.primitive).count(),
        acked.iter().filter(|a| a.streamed).count(),
        t0.elapsed().as_secs_f64()
    );
    assert!(acked.iter().any(|a| a.primitive), "no primitive answered");
    assert!(acked.iter().any(|a| !a.primitive), "no model answer");

    // Durability: the chain verifies and holds every acknowledged entry.
    let before = verify_on_disk(home.path())["entries"].as_u64().unwrap();
    let ledger = ledger_hashes_on_disk(home.path());
    let missing = missing_entries(&ledger, acked.iter().flat_map(|a| &a.entries));
    assert!(missing.is_empty(), "acknowledged but lost: {missing:?}");
    // Contrast: the same check reports an entry that was never written.
    let fake = never_written_hash();
    assert_eq!(missing_entries(&ledger, [&fake]), vec![fake.clone()]);
    let last_acked_seq = acked.iter().map(|a| a.seq).max().unwrap();
    assert!(last_acked_seq < before, "seq {last_acked_seq} of {before}");

    // Restart on the same home: it serves and appends after what the killed server wrote.
    let mut srv = Server::start(home.path(), &[]);
    let mut after = Vec::new();
    for (body, primitive) in [
        (user("what is the gcd of 12 and 18", 8, false), true),
        (user("Name the capital city of France.", 12, false), false),
    ] {
        let r = request(
            &srv.addr,
            "POST",
            "/v1/chat/completions",
            &[],
            &body.to_string(),
        );
        assert_eq!(r.status, 200, "{}", r.body);
        let ack = ack_of(&r.json()["nmk"], false).unwrap();
        assert_eq!(ack.primitive, primitive, "{}", r.body);
        assert!(
            ack.seq >= before,
            "seq {} does not continue past {before}",
            ack.seq
        );
        after.push(ack);
    }
    assert_eq!(srv.stop_gracefully().code(), Some(0));
    let grown = verify_on_disk(home.path())["entries"].as_u64().unwrap();
    assert!(
        grown > before,
        "{grown} entries after the restart vs {before}"
    );
    let ledger = ledger_hashes_on_disk(home.path());
    let missing = missing_entries(&ledger, acked.iter().chain(&after).flat_map(|a| &a.entries));
    assert!(missing.is_empty(), "lost across the restart: {missing:?}");
    eprintln!("ledger: {before} entries after the kill, {grown} after the restart");
}
