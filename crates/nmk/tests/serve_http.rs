//! `nmk serve` end to end: the binary is started on a temporary kernel home with `--port 0`
//! and driven over plain HTTP/1.1 (a std `TcpStream`, so status codes, headers and the SSE
//! stream are read exactly as sent). The real SmolLM2 answers the model lane (fetched into the
//! cache by the binary if needed). Each mechanism has its contrast: a primitive's zero-token
//! answer against the same request with a system turn (model lane); the body cap against a
//! body under it; the token cap against a request under it; a wrong or missing key against the
//! right one; a queue of 1 (some 429) against a queue of 8 (none); SIGTERM mid-request (the
//! request completes, exit 0, the ledger verifies) against a connection after shutdown.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::nmk;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::server::{MODEL, Resp, Server, request};
use serde_json::{Value, json};

const FREE_QUESTION: &str = "Name the capital city of France.";

fn get(addr: &str, path: &str) -> Resp {
    request(addr, "GET", path, &[], "")
}

fn chat(addr: &str, body: &Value) -> Resp {
    request(addr, "POST", "/v1/chat/completions", &[], &body.to_string())
}

fn user(text: &str, max_tokens: u64) -> Value {
    common::server::user(text, max_tokens, false)
}

fn ledger_hashes(addr: &str) -> Vec<String> {
    let r = get(addr, "/v1/nmk/ledger?limit=1000");
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["hash"].as_str().unwrap().to_owned())
        .collect()
}

fn assert_error(r: &Resp, status: u16, code: &str) {
    assert_eq!(r.status, status, "{}", r.body);
    let v = r.json();
    assert_eq!(v["error"]["code"], code, "{}", r.body);
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
    );
    assert!(v["error"]["type"].is_string());
}

#[test]
fn openai_endpoints_answer_through_the_kernel() {
    let home = tempfile::tempdir().unwrap();
    let srv = Server::start(
        home.path(),
        &["--max-tokens", "32", "--max-body-bytes", "4096"],
    );
    let a = srv.addr.as_str();

    let models = get(a, "/v1/models");
    assert_eq!(models.status, 200);
    assert_eq!(models.json()["object"], "list");
    assert_eq!(models.json()["data"][0]["id"], MODEL);

    // A primitive answers: zero tokens, a ledger entry the ledger endpoint knows.
    let r = chat(a, &user("what is the gcd of 12 and 18", 16));
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["content"], "6");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["nmk"]["primitive"], true);
    assert_eq!(v["nmk"]["route"], "builtin:gcd");
    assert_eq!(v["nmk"]["verification"], "verified");
    assert_eq!(v["usage"]["completion_tokens"], 0);
    let entry = v["nmk"]["ledger_entry"].as_str().unwrap().to_owned();
    assert!(ledger_hashes(a).contains(&entry));

    // Contrast: the same request after a system turn goes to the model, which spends tokens.
    let mut with_system = user("what is the gcd of 12 and 18", 8);
    with_system["messages"] = json!([
        { "role": "system", "content": "You are terse." },
        { "role": "user", "content": "what is the gcd of 12 and 18" },
    ]);
    let v = chat(a, &with_system).json();
    assert_eq!(v["nmk"]["primitive"], false, "{v}");
    assert_eq!(v["nmk"]["route"], "model_lane");
    assert_eq!(v["nmk"]["route_reason"], "conversation_context");
    assert!(v["usage"]["completion_tokens"].as_u64().unwrap() > 0);

    // A free question: SmolLM2 through the gate and the commit trap.
    let r = chat(a, &user(FREE_QUESTION, 12));
    assert_eq!(r.status, 200, "{}", r.body);
    let whole = r.json();
    assert_eq!(whole["nmk"]["route"], "model_lane");
    assert_eq!(whole["nmk"]["primitive"], false);
    let tokens = whole["usage"]["completion_tokens"].as_u64().unwrap();
    assert!(tokens > 0 && tokens <= 12, "{whole}");
    assert!(whole["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
    let trap_entry = whole["nmk"]["ledger_entry"].as_str().unwrap().to_owned();
    assert!(ledger_hashes(a).contains(&trap_entry));
    let committed = whole["nmk"]["committed"].as_bool().unwrap();
    let content = &whole["choices"][0]["message"]["content"];
    if committed {
        assert!(!content.as_str().unwrap().is_empty());
    } else {
        assert!(content.is_null());
        assert_eq!(whole["choices"][0]["finish_reason"], "content_filter");
    }

    // The same request streamed: chunks, a final chunk with the decision, then [DONE].
    let mut streamed = user(FREE_QUESTION, 12);
    streamed["stream"] = json!(true);
    let r = chat(a, &streamed);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.headers["content-type"].starts_with("text/event-stream"),
        "{:?}",
        r.headers
    );
    let events: Vec<&str> = r
        .body
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    assert_eq!(events.last(), Some(&"[DONE]"), "{}", r.body);
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert!(chunks.len() >= 2, "{}", r.body);
    let (last, deltas) = chunks.split_last().unwrap();
    assert!(
        deltas
            .iter()
            .all(|c| c["object"] == "chat.completion.chunk")
    );
    let text: String = deltas
        .iter()
        .map(|c| c["choices"][0]["delta"]["content"].as_str().unwrap())
        .collect();
    assert_eq!(last["nmk"]["committed"], whole["nmk"]["committed"]);
    assert_eq!(last["usage"]["completion_tokens"], tokens);
    assert!(last["choices"][0]["finish_reason"].is_string());
    if committed {
        assert_eq!(text, content.as_str().unwrap());
    }

    // Raw text completion.
    let r = request(
        a,
        "POST",
        "/v1/completions",
        &[],
        &json!({ "model": MODEL, "prompt": "The capital of France is", "max_tokens": 4 })
            .to_string(),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["object"], "text_completion");
    assert_eq!(v["nmk"]["route"], "model_lane");
    assert!(v["usage"]["completion_tokens"].as_u64().unwrap() > 0);

    // Bad input: clear OpenAI-style errors.
    let r = request(a, "POST", "/v1/chat/completions", &[], "{not json");
    assert_error(&r, 400, "invalid_request");
    let r = chat(a, &json!({ "model": MODEL }));
    assert_error(&r, 400, "invalid_request");
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("messages")
    );
    let r = chat(a, &user("what is the gcd of 12 and 18", 33));
    assert_error(&r, 400, "invalid_request");
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cap")
    );
    let r = chat(a, &user("what is the gcd of 12 and 18", 32));
    assert_eq!(r.status, 200, "at the cap: {}", r.body);
    let mut other = user("hi", 4);
    other["model"] = json!("gpt-4o");
    assert_error(&chat(a, &other), 404, "model_not_found");

    // The body cap (4096 bytes here): above is 413, below is served.
    let pad = |n: usize| {
        let mut v = user("what is the gcd of 12 and 18", 4);
        v["padding"] = json!("x".repeat(n));
        v.to_string()
    };
    let r = request(a, "POST", "/v1/chat/completions", &[], &pad(8000));
    assert_error(&r, 413, "request_too_large");
    let r = request(a, "POST", "/v1/chat/completions", &[], &pad(3000));
    assert_eq!(r.status, 200, "{}", r.body);

    // Kernel endpoints.
    let v = get(a, "/v1/nmk/ledger/verify").json();
    assert_eq!(v["ok"], true, "{v}");
    assert!(v["entries"].as_u64().unwrap() >= 6);
    let v = get(a, "/v1/nmk/primitives").json();
    assert!(
        v["builtin"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "gcd")
    );
    let v = get(a, "/v1/nmk/memory").json();
    assert!(v["stats"]["max_bytes"].as_u64().unwrap() > 0, "{v}");
    assert_error(&get(a, "/v1/nmk/memory/no-such-key"), 404, "not_found");
    assert_error(&get(a, "/v1/no-such-endpoint"), 404, "not_found");
    assert_error(
        &request(a, "POST", "/v1/models", &[], "{}"),
        405,
        "method_not_allowed",
    );
    assert_error(&get(a, "/v1/nmk/ledger?limit=5000"), 400, "invalid_request");
    assert_eq!(
        get(a, "/v1/nmk/ledger?limit=2")
            .json()
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn a_bearer_token_is_required_when_configured() {
    let home = tempfile::tempdir().unwrap();
    let srv = Server::start(home.path(), &["--api-key", "s3cret"]);
    let a = srv.addr.as_str();
    assert_error(&get(a, "/v1/models"), 401, "invalid_api_key");
    let wrong = request(
        a,
        "GET",
        "/v1/models",
        &[("Authorization", "Bearer nope")],
        "",
    );
    assert_error(&wrong, 401, "invalid_api_key");
    let body = user("what is the gcd of 12 and 18", 4).to_string();
    let r = request(a, "POST", "/v1/chat/completions", &[], &body);
    assert_error(&r, 401, "invalid_api_key");
    let auth = [("Authorization", "Bearer s3cret")];
    assert_eq!(request(a, "GET", "/v1/models", &auth, "").status, 200);
    let r = request(a, "POST", "/v1/chat/completions", &auth, &body);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["choices"][0]["message"]["content"], "6");
}

/// Fires `n` slow model requests at once; returns their statuses and Retry-After headers.
fn burst(addr: &str, n: usize) -> Vec<(u16, Option<String>)> {
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let addr = addr.to_owned();
            std::thread::spawn(move || {
                let body = user(&format!("Write a short poem about the number {i}."), 40);
                let r = chat(&addr, &body);
                (r.status, r.headers.get("retry-after").cloned())
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

#[test]
fn a_full_queue_refuses_with_429_and_a_larger_one_serves_all() {
    let home = tempfile::tempdir().unwrap();
    // One lane, so the burst cannot be absorbed by lanes decoding side by side.
    let small = Server::start(
        home.path(),
        &["--max-queue", "1", "--max-lanes", "1", "--max-tokens", "40"],
    );
    let statuses = burst(&small.addr, 4);
    let refused = statuses.iter().filter(|(s, _)| *s == 429).count();
    let served = statuses.iter().filter(|(s, _)| *s == 200).count();
    assert!(refused >= 1, "{statuses:?}");
    assert!(served >= 1, "{statuses:?}");
    assert_eq!(refused + served, 4, "{statuses:?}");
    assert!(
        statuses
            .iter()
            .filter(|(s, _)| *s == 429)
            .all(|(_, ra)| ra.as_deref() == Some("1"))
    );
    drop(small);

    let home = tempfile::tempdir().unwrap();
    let large = Server::start(
        home.path(),
        &["--max-queue", "8", "--max-lanes", "1", "--max-tokens", "40"],
    );
    let statuses = burst(&large.addr, 4);
    assert!(statuses.iter().all(|(s, _)| *s == 200), "{statuses:?}");
}

#[test]
fn sigterm_finishes_the_request_in_flight_and_exits_cleanly() {
    let home = tempfile::tempdir().unwrap();
    let mut srv = Server::start(home.path(), &["--max-tokens", "64"]);
    // A streamed request: its first chunk proves it is being decoded when the signal lands.
    let mut body = user("Write a short poem about rain.", 64);
    body["stream"] = json!(true);
    let body = body.to_string();
    let mut s = TcpStream::connect(&srv.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(170))).unwrap();
    write!(
        s,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut reader = BufReader::new(s);
    let mut seen = String::new();
    while !seen.contains("data: {") {
        let mut line = String::new();
        assert!(reader.read_line(&mut line).unwrap() > 0, "{seen}");
        seen.push_str(&line);
    }
    let pid = srv.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let mut rest = String::new();
    reader.read_to_string(&mut rest).unwrap();
    let all = seen + &rest;
    assert!(all.starts_with("HTTP/1.1 200"), "{all}");
    assert!(all.contains("data: [DONE]"), "{all}");
    let last: Value = all
        .lines()
        .filter_map(|l| l.strip_prefix("data: {").map(|j| format!("{{{j}")))
        .map(|j| serde_json::from_str(&j).unwrap())
        .next_back()
        .unwrap();
    assert!(
        last["usage"]["completion_tokens"].as_u64().unwrap() > 1,
        "{last}"
    );
    let entry = last["nmk"]["ledger_entry"].as_str().unwrap().to_owned();
    let status = srv.child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    // Contrast: once stopped, nothing is served.
    assert!(TcpStream::connect(&srv.addr).is_err());
    assert_eq!(
        nmk(home.path(), &["ledger", "verify"]).status.code(),
        Some(0)
    );
    let shown = nmk(
        home.path(),
        &["ledger", "show", "--tail", "--limit", "50", "--json"],
    );
    assert!(String::from_utf8_lossy(&shown.stdout).contains(&entry));
}

/// Two long answers at once (the second waits behind the first).
fn long_burst(addr: &str) -> Vec<Resp> {
    let handles: Vec<_> = (0..2)
        .map(|i| {
            let addr = addr.to_owned();
            std::thread::spawn(move || {
                chat(
                    &addr,
                    &user(&format!("Write a long story about the number {i}."), 256),
                )
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

#[test]
fn a_request_past_its_deadline_gets_504_and_its_generation_is_cut() {
    let home = tempfile::tempdir().unwrap();
    let srv = Server::start(home.path(), &["--deadline-s", "1", "--max-tokens", "256"]);
    let t0 = std::time::Instant::now();
    let replies = long_burst(&srv.addr);
    let cut_s = t0.elapsed().as_secs_f64();
    let statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
    let late: Vec<&Resp> = replies.iter().filter(|r| r.status == 504).collect();
    assert!(!late.is_empty(), "{statuses:?}");
    for r in late {
        assert_error(r, 504, "deadline_exceeded");
    }
    // The model is free again at once: the cut generations did not run on to their end (if
    // they had, this short request would wait seconds behind them and miss its deadline).
    let t1 = std::time::Instant::now();
    let r = chat(&srv.addr, &user("Say hello.", 4));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["nmk"]["route"], "model_lane");
    let short_s = t1.elapsed().as_secs_f64();
    drop(srv);
    assert_eq!(
        nmk(home.path(), &["ledger", "verify"]).status.code(),
        Some(0)
    );

    // Contrast: the same burst with the default deadline is answered in full, and takes
    // clearly longer than the cut one.
    let home = tempfile::tempdir().unwrap();
    let srv = Server::start(home.path(), &["--max-tokens", "256"]);
    let t0 = std::time::Instant::now();
    let replies = long_burst(&srv.addr);
    let full_s = t0.elapsed().as_secs_f64();
    assert!(
        replies.iter().all(|r| r.status == 200),
        "{:?}",
        replies.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    let generated: u64 = replies
        .iter()
        .map(|r| r.json()["usage"]["completion_tokens"].as_u64().unwrap())
        .sum();
    eprintln!(
        "deadline burst {cut_s:.2} s (then a short model request in {short_s:.3} s); full burst {full_s:.2} s, {generated} tokens"
    );
    assert!(short_s < 1.0, "{short_s}");
    assert!(
        full_s > 1.5 * cut_s,
        "cut {cut_s:.2} s vs full {full_s:.2} s"
    );
}

#[test]
fn a_primitive_answers_at_once_while_the_model_decodes() {
    let home = tempfile::tempdir().unwrap();
    // One lane: the contrast below is a model request that must wait for the decode.
    let srv = Server::start(home.path(), &["--max-tokens", "256", "--max-lanes", "1"]);
    let addr = srv.addr.clone();
    let long = std::thread::spawn(move || {
        chat(&addr, &user("Write a long story about a lighthouse.", 256))
    });
    std::thread::sleep(Duration::from_millis(300));
    let t = std::time::Instant::now();
    let r = chat(&srv.addr, &user("what is the gcd of 12 and 18", 4));
    let primitive_s = t.elapsed().as_secs_f64();
    assert_eq!(r.json()["choices"][0]["message"]["content"], "6");
    // Contrast: a model request waits for the decode in progress.
    let t = std::time::Instant::now();
    let r = chat(&srv.addr, &user("Say hello.", 4));
    let model_s = t.elapsed().as_secs_f64();
    assert_eq!(r.status, 200, "{}", r.body);
    let long = long.join().unwrap();
    assert_eq!(long.status, 200, "{}", long.body);
    let long_tokens = long.json()["usage"]["completion_tokens"].as_u64().unwrap();
    eprintln!(
        "during a {long_tokens}-token decode: primitive {primitive_s:.3} s, model request {model_s:.2} s"
    );
    assert!(long_tokens > 64, "{}", long.body);
    assert!(primitive_s < 0.25, "{primitive_s}");
    assert!(
        model_s > 4.0 * primitive_s.max(0.05),
        "{model_s} vs {primitive_s}"
    );
}

/// Starts a long model request on `addr`, then (300 ms later) two short ones at once; returns
/// the replies and when each finished, in seconds from the start: `(long, short_a, short_b)`.
fn short_ones_during_a_long_one(addr: &str, a: &Value, b: &Value) -> [(Resp, f64); 3] {
    let t0 = std::time::Instant::now();
    let spawn = |body: Value, delay_ms: u64| {
        let addr = addr.to_owned();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(delay_ms));
            let r = chat(&addr, &body);
            (r, t0.elapsed().as_secs_f64())
        })
    };
    let long = spawn(user("Write a long story about a lighthouse.", 256), 0);
    let short_a = spawn(a.clone(), 300);
    let short_b = spawn(b.clone(), 300);
    [long, short_a, short_b].map(|h| h.join().unwrap())
}

#[test]
fn lanes_interleave_fairly_and_each_decodes_as_if_alone() {
    let a = user("Write a short poem about rain.", 48);
    let b = user("Name three colours.", 24);
    let text = |r: &Resp| {
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let home = tempfile::tempdir().unwrap();
    let srv = Server::start(home.path(), &["--max-tokens", "256"]);
    let (alone_a, alone_b) = (text(&chat(&srv.addr, &a)), text(&chat(&srv.addr, &b)));
    let [(long, long_s), (ra, a_s), (rb, b_s)] = short_ones_during_a_long_one(&srv.addr, &a, &b);
    let long_tokens = long.json()["usage"]["completion_tokens"].as_u64().unwrap();
    eprintln!(
        "lanes: a {long_tokens}-token answer finished at {long_s:.2} s, the short ones (sent at 0.3 s) at {a_s:.2} s and {b_s:.2} s"
    );
    assert!(long_tokens > 64, "{}", long.body);
    // Fair: the short requests did not wait for the long one.
    assert!(a_s < long_s && b_s < long_s, "{a_s} {b_s} vs {long_s}");
    // Interleaving changes nothing in an answer: each equals the same request decoded alone.
    assert_eq!(text(&ra), alone_a);
    assert_eq!(text(&rb), alone_b);
    drop(srv);
    assert_eq!(
        nmk(home.path(), &["ledger", "verify"]).status.code(),
        Some(0)
    );

    // Contrast: with one lane the short requests wait until the long answer is done.
    let home = tempfile::tempdir().unwrap();
    let srv = Server::start(home.path(), &["--max-tokens", "256", "--max-lanes", "1"]);
    let [(long, long_s), (ra, a_s), (rb, b_s)] = short_ones_during_a_long_one(&srv.addr, &a, &b);
    assert_eq!(long.status, 200, "{}", long.body);
    assert!(a_s > long_s && b_s > long_s, "{a_s} {b_s} vs {long_s}");
    assert_eq!(text(&ra), alone_a);
    assert_eq!(text(&rb), alone_b);
}

fn post(addr: &str, path: &str, body: &Value) -> Resp {
    request(
        addr,
        "POST",
        path,
        &[("Content-Type", "application/json")],
        &body.to_string(),
    )
}

#[test]
fn a_gap_submitted_over_http_is_gated_and_its_primitive_answers_from_then_on() {
    let gap = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/gaps/count_vowels.toml"),
    )
    .unwrap();
    let wrong = "def count_vowels(s):\n    return sum(1 for c in s if c in 'aeiou')\n";
    let right = "def count_vowels(s):\n    return sum(1 for c in s.lower() if c in 'aeiou')\n";
    let ask = user("Count the vowels in \"Hello World\".", 8);
    let home = tempfile::tempdir().unwrap();
    let srv = Server::start(home.path(), &[]);
    let a = srv.addr.as_str();

    // Before: no primitive owns the request.
    let before = chat(a, &ask).json();
    assert_eq!(before["nmk"]["route"], "model_lane", "{before}");
    assert_eq!(get(a, "/v1/nmk/proofs").json()["data"], json!([]));

    // Hostile or malformed submissions are the client's 400, and nothing is queued.
    for bad in [
        json!({ "gap": "entry = 3", "program": right }),
        json!({ "gap": gap, "program": right, "colour": "red" }),
        json!({ "gap": gap, "program": right, "n": 0 }),
        json!({ "gap": gap, "program": "" }),
    ] {
        assert_error(&post(a, "/v1/nmk/gaps", &bad), 400, "invalid_request");
    }
    assert_eq!(get(a, "/v1/nmk/gaps").json()["data"], json!([]));

    // A wrong program is refused (with the instance it got wrong) and routes nothing.
    let refused = post(
        a,
        "/v1/nmk/gaps",
        &json!({ "gap": gap, "program": wrong, "n": 300, "wait": true }),
    );
    assert_eq!(refused.status, 200, "{}", refused.body);
    let refused = refused.json();
    assert_eq!(refused["status"], "refused", "{refused}");
    assert_eq!(refused["result"]["registered"], false);
    assert!(
        refused["result"]["feedback"]
            .as_str()
            .unwrap()
            .contains("AEIOU")
    );
    assert_eq!(chat(a, &ask).json()["nmk"]["route"], "model_lane");

    // Queued without waiting: 202 at once, then polled to its verdict.
    let queued = post(
        a,
        "/v1/nmk/gaps",
        &json!({ "gap": gap, "program": right, "n": 300 }),
    );
    assert_eq!(queued.status, 202, "{}", queued.body);
    let id = queued.json()["id"].as_str().unwrap().to_owned();
    let mut admitted = Value::Null;
    for _ in 0..600 {
        admitted = get(a, &format!("/v1/nmk/gaps/{id}")).json();
        if admitted["status"] != "queued" && admitted["status"] != "running" {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(admitted["status"], "admitted", "{admitted}");
    assert_eq!(admitted["result"]["registered"], true);
    assert_eq!(admitted["result"]["gate"]["passed"], 300);
    let seq = admitted["result"]["ledger_seq"].as_u64().unwrap();
    assert_eq!(
        get(a, "/v1/nmk/gaps").json()["data"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_error(&get(a, "/v1/nmk/gaps/gap-99"), 404, "not_found");

    // From then on the primitive answers, with zero model tokens, on the same server.
    let after = chat(a, &ask).json();
    assert_eq!(after["nmk"]["route"], "learned:count_vowels", "{after}");
    assert_eq!(after["nmk"]["primitive"], true);
    assert_eq!(after["usage"]["completion_tokens"], 0);
    assert_eq!(after["choices"][0]["message"]["content"], "3");

    // Its proof: the admission entry read back from the chain is the one the record names.
    let proofs = get(a, "/v1/nmk/proofs").json();
    let list = proofs["data"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{proofs}");
    assert_eq!(list[0]["entry"], "count_vowels");
    assert_eq!(list[0]["ledger"]["seq"], seq);
    assert_eq!(list[0]["admission_entry_matches"], true);
    assert_eq!(list[0]["admission_entry"]["seq"], seq);
    let one = get(a, "/v1/nmk/proofs/count_vowels").json();
    assert_eq!(one["code"], right);
    assert_error(&get(a, "/v1/nmk/proofs/nope"), 404, "not_found");
    assert_eq!(get(a, "/v1/nmk/ledger/verify").json()["ok"], true);
}

#[test]
fn a_gap_submitted_without_a_program_is_written_by_the_learning_model() {
    let gap = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/gaps/count_vowels.toml"),
    )
    .unwrap();
    let home = tempfile::tempdir().unwrap();
    let srv = Server::start(
        home.path(),
        &[
            "--learn-model",
            "qwen2.5-coder-0.5b-instruct",
            "--deadline-s",
            "600",
        ],
    );
    let a = srv.addr.as_str();
    let r = post(
        a,
        "/v1/nmk/gaps",
        &json!({ "gap": gap, "n": 300, "wait": true }),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["source"], "model", "{v}");
    let result = &v["result"];
    assert_eq!(result["model"], "qwen2.5-coder-0.5b-instruct");
    let attempts = result["attempts"].as_array().unwrap();
    assert!(!attempts.is_empty(), "{v}");
    assert!(result["tokens"].as_u64().unwrap() > 0, "{v}");
    // Every attempt the model made was judged by the gate and ledgered, admitted or not.
    let ledger = ledger_hashes(a).len() as u64;
    for att in attempts {
        assert!(att["ledger_seq"].as_u64().unwrap() < ledger, "{att}");
    }
    let ask = user("Count the vowels in \"Hello World\".", 8);
    let routed = chat(a, &ask).json();
    if v["status"] == "admitted" {
        assert_eq!(routed["nmk"]["route"], "learned:count_vowels", "{routed}");
        assert_eq!(routed["choices"][0]["message"]["content"], "3");
    } else {
        assert_eq!(v["status"], "refused", "{v}");
        assert_eq!(routed["nmk"]["route"], "model_lane", "{routed}");
    }
    eprintln!(
        "model-written gap: {} after {} attempt(s), {} tokens, {} ms",
        v["status"],
        attempts.len(),
        result["tokens"],
        result["elapsed_ms"]
    );
    assert_eq!(get(a, "/v1/nmk/ledger/verify").json()["ok"], true);
}

/// Streams a long answer and, once it is under way, sends a request with a long prompt;
/// returns the longest pause between the stream's events while the long prompt joined, and
/// the stream's own token count.
fn longest_pause_while_a_long_prompt_joins(addr: &str) -> (f64, u64) {
    use common::server::send;
    let mut stream_body = user("Write a long story about a lighthouse.", 256);
    stream_body["stream"] = json!(true);
    let mut open = send(
        addr,
        "POST",
        "/v1/chat/completions",
        &[],
        &stream_body.to_string(),
        Duration::from_secs(170),
    )
    .unwrap();
    assert_eq!(open.status, 200);
    for _ in 0..8 {
        open.next_event().unwrap().unwrap();
    }
    // About 550 prompt tokens.
    let long = format!(
        "{} Summarise the text above in one word.",
        "The quick brown fox jumps over the lazy dog near the river bank. ".repeat(40)
    );
    let addr2 = addr.to_owned();
    let joining = std::thread::spawn(move || chat(&addr2, &user(&long, 4)));
    let mut last = std::time::Instant::now();
    let mut longest = 0.0f64;
    let mut tokens = 0;
    while let Some(data) = open.next_event().unwrap() {
        longest = longest.max(last.elapsed().as_secs_f64());
        last = std::time::Instant::now();
        if data != "[DONE]" {
            let v: Value = serde_json::from_str(&data).unwrap();
            if let Some(n) = v["usage"]["completion_tokens"].as_u64() {
                tokens = n;
            }
        }
    }
    let joined = joining.join().unwrap();
    assert_eq!(joined.status, 200, "{}", joined.body);
    assert!(joined.json()["usage"]["prompt_tokens"].as_u64().unwrap() > 400);
    (longest, tokens)
}

#[test]
fn a_long_prompt_joins_the_lanes_without_stalling_the_others() {
    let home = tempfile::tempdir().unwrap();
    let srv = Server::start(home.path(), &["--max-tokens", "256"]);
    let (chunked, tokens) = longest_pause_while_a_long_prompt_joins(&srv.addr);
    drop(srv);
    // Contrast: the same prompt prefilled in one piece holds every other lane for its whole
    // prefill.
    let home = tempfile::tempdir().unwrap();
    let srv = Server::start(
        home.path(),
        &["--max-tokens", "256", "--prefill-chunk", "100000"],
    );
    let (whole, _) = longest_pause_while_a_long_prompt_joins(&srv.addr);
    eprintln!(
        "longest pause of a {tokens}-token stream while a ~550-token prompt joined: {chunked:.2} s chunked by 32, {whole:.2} s in one piece"
    );
    assert!(
        tokens > 64,
        "the stream ended before the long prompt joined"
    );
    assert!(whole > 1.0, "{whole}");
    assert!(chunked < 0.5 * whole, "{chunked} vs {whole}");
}
