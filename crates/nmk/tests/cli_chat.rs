//! `nmk chat` with piped stdin on a fresh kernel home and the real SmolLM2 (fetched into the
//! cache if needed): a primitive answers mid-conversation with zero tokens, the model answers
//! the rest with ledgered decisions, the history grows the model's prompt (and `/reset` or
//! trimming to `--max-context` shrinks it back), and the text mode streams the answer with a
//! status line.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::{nmk, nmk_command};

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

const GCD: &str = "what is the gcd of 12 and 18";
const CAPITAL: &str = "Name the capital city of France.";
const FOLLOW_UP: &str = "What is the population of that city?";

/// Runs `nmk chat args…` on `home` with `input` on its stdin.
fn chat(home: &Path, args: &[&str], input: &str) -> Output {
    let mut child = nmk_command(home)
        .arg("chat")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "nmk chat failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The JSON Lines of a `--json` chat: every stdout line must be one object.
fn records(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| {
                panic!(
                    "stdout line is not JSON ({e}): {l}\nstderr: {}",
                    String::from_utf8_lossy(&out.stderr)
                )
            })
        })
        .collect()
}

fn ledger_hashes(home: &Path) -> Vec<String> {
    common::ledger_hashes(home, 10000)
}

fn prompt_tokens(v: &serde_json::Value) -> u64 {
    v["prompt_tokens"].as_u64().unwrap()
}

#[test]
fn a_primitive_answers_mid_conversation_and_the_model_answers_the_rest() {
    let home = tempfile::tempdir().unwrap();
    // The line after /quit must never be answered.
    let input = format!("{GCD}\n{CAPITAL}\n/history\n/quit\nis 97 prime\n");
    let out = chat(home.path(), &["--json", "--max-tokens", "24"], &input);
    let r = records(&out);
    let kinds: Vec<&str> = r.iter().map(|v| v["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["answer", "answer", "history"], "{r:#?}");

    let (gcd, model, history) = (&r[0], &r[1], &r[2]);
    assert_eq!(gcd["route"], "builtin:gcd");
    assert_eq!(gcd["tokens"], 0);
    assert_eq!(gcd["prompt_tokens"], 0);
    assert!(gcd["text"].as_str().unwrap().contains('6'), "{gcd}");
    assert_eq!(gcd["verification"], "verified");
    assert_eq!(gcd["committed"], true);

    // Contrast: the question no primitive owns takes the model lane and spends tokens.
    assert_eq!(model["route"], "model_lane");
    assert!(model["tokens"].as_u64().unwrap() > 0, "{model}");
    assert!(prompt_tokens(model) > 0, "{model}");
    assert_eq!(model["committed"], true, "{model}");
    let released = model["text"].as_str().unwrap().to_owned();
    assert!(!released.trim().is_empty());

    let known = ledger_hashes(home.path());
    for v in [gcd, model] {
        let hash = v["ledger_entry"].as_str().unwrap().to_owned();
        assert!(known.contains(&hash), "{hash} not in the ledger");
    }
    assert_eq!(
        nmk(home.path(), &["ledger", "verify"]).status.code(),
        Some(0)
    );

    let exchanges = history["exchanges"].as_array().unwrap();
    assert_eq!(exchanges.len(), 2, "{history}");
    assert_eq!(exchanges[0]["user"], GCD);
    assert_eq!(exchanges[0]["assistant"], gcd["text"]);
    assert_eq!(exchanges[0]["route"], "builtin:gcd");
    assert_eq!(exchanges[1]["user"], CAPITAL);
    assert_eq!(exchanges[1]["assistant"], released.as_str());

    // Text mode, same conversation: the answers streamed to stdout with a status line each,
    // no prompt noise on a pipe. Greedy decoding of the same prompt gives the same text.
    let out = chat(
        home.path(),
        &["--max-tokens", "24"],
        &format!("{GCD}\n{CAPITAL}\n"),
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.starts_with("6\n"), "{stdout}");
    assert!(
        stdout.contains("[route builtin:gcd · verification verified (ORACLE) · 0 tokens · "),
        "{stdout}"
    );
    assert!(stdout.contains(released.trim()), "{stdout}");
    assert!(
        stdout.contains("[route model_lane · verification "),
        "{stdout}"
    );
    assert!(stdout.contains(" · ledger #"), "{stdout}");
    assert!(!stdout.contains("you> "), "{stdout}");
    assert!(!stdout.contains('{'), "{stdout}");
}

#[test]
fn history_grows_the_prompt_and_reset_or_trimming_shrinks_it() {
    let home = tempfile::tempdir().unwrap();
    // The last line is a primitive's, asked mid-conversation: it still answers alone.
    let input = format!("{CAPITAL}\n{FOLLOW_UP}\n/reset\n{FOLLOW_UP}\n{GCD}\n");
    let r = records(&chat(
        home.path(),
        &["--json", "--max-tokens", "16"],
        &input,
    ));
    let kinds: Vec<&str> = r.iter().map(|v| v["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["answer", "answer", "reset", "answer", "answer"],
        "{r:#?}"
    );
    assert_eq!(r[4]["route"], "builtin:gcd", "{}", r[4]);
    assert_eq!(r[4]["tokens"], 0);
    assert_eq!(r[4]["history_exchanges"], 2);
    let (first, with_history, reset, alone) = (&r[0], &r[1], &r[2], &r[3]);
    for v in [first, with_history, alone] {
        assert_eq!(v["route"], "model_lane", "{v}");
        assert_eq!(v["committed"], true, "{v}");
        assert_eq!(v["history_dropped"], 0, "{v}");
    }
    // The follow-up reads the first exchange: its prompt holds the first answer's tokens too.
    let first_answer_tokens = first["tokens"].as_u64().unwrap();
    assert!(first_answer_tokens > 0);
    assert!(
        prompt_tokens(with_history) >= prompt_tokens(alone) + first_answer_tokens,
        "{with_history}\n{alone}"
    );
    assert_eq!(with_history["history_exchanges"], 2);
    assert_eq!(reset["dropped"], 2);
    assert_eq!(alone["history_exchanges"], 1);

    // Trimming: a context one token too small for the follow-up with its history drops the
    // first exchange, so the model reads the follow-up alone, exactly as after /reset.
    let limit = 16 + prompt_tokens(with_history) - 1;
    let r = records(&chat(
        home.path(),
        &[
            "--json",
            "--max-tokens",
            "16",
            "--max-context",
            &limit.to_string(),
        ],
        &format!("{CAPITAL}\n{FOLLOW_UP}\n"),
    ));
    assert_eq!(r.len(), 2, "{r:#?}");
    assert_eq!(r[0]["history_dropped"], 0);
    assert_eq!(r[0]["prompt_tokens"], first["prompt_tokens"]);
    assert_eq!(r[1]["history_dropped"], 1, "{}", r[1]);
    assert_eq!(r[1]["prompt_tokens"], alone["prompt_tokens"]);
    assert_eq!(r[1]["text"], alone["text"]);
    assert_eq!(r[1]["history_exchanges"], 1);
}

#[test]
fn a_message_that_cannot_fit_is_refused_and_the_chat_goes_on() {
    let home = tempfile::tempdir().unwrap();
    // A context too small for any question with the template: each one is refused alone, a
    // primitive still answers (it reads no prompt), unknown commands are named.
    let r = records(&chat(
        home.path(),
        &["--json", "--max-tokens", "4", "--max-context", "12"],
        &format!("{CAPITAL}\n/nonsense\n{GCD}\n/history\n"),
    ));
    let kinds: Vec<&str> = r.iter().map(|v| v["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["error", "error", "answer", "history"], "{r:#?}");
    assert_eq!(r[0]["request"], CAPITAL);
    assert!(
        r[0]["error"].as_str().unwrap().contains("budget is 8"),
        "{}",
        r[0]
    );
    assert_eq!(r[1]["request"], "/nonsense");
    assert_eq!(r[2]["route"], "builtin:gcd");
    let exchanges = r[3]["exchanges"].as_array().unwrap();
    assert_eq!(exchanges.len(), 1, "the refused question is not kept");
    assert_eq!(exchanges[0]["user"], GCD);
}

/// Sends SIGINT to `pid` through the system's `kill` (no unsafe code in the tests either).
fn interrupt(pid: u32) {
    let status = Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .expect("running kill");
    assert!(status.success(), "kill -INT {pid} failed");
}

/// Reads `stdout` on a thread and hands over each chunk as it arrives (streamed text has no
/// newline until the answer ends, so lines would come too late).
fn chunks(mut stdout: std::process::ChildStdout) -> std::sync::mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            match std::io::Read::read(&mut stdout, &mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if tx.send(buf[..n].to_vec()).is_err() {
                        return;
                    }
                }
            }
        }
    });
    rx
}

/// Waits (at most a minute) until what `rx` delivered, appended to `seen`, contains `needle`.
fn wait_for(rx: &std::sync::mpsc::Receiver<Vec<u8>>, seen: &mut Vec<u8>, needle: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !String::from_utf8_lossy(seen).contains(needle) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(chunk) => seen.extend_from_slice(&chunk),
            Err(e) => panic!(
                "no {needle:?} on stdout ({e}); got:\n{}",
                String::from_utf8_lossy(seen)
            ),
        }
    }
}

#[test]
fn ctrl_c_cuts_a_generation_unjudged_and_ends_an_idle_chat() {
    let home = tempfile::tempdir().unwrap();
    let story = "Write a long story about a dragon who learns to bake bread.";
    let mut child = nmk_command(home.path())
        .args(["chat", "--max-tokens", "200"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let rx = chunks(child.stdout.take().unwrap());
    let mut seen = Vec::new();

    // Mid-generation: the first streamed text proves decoding started; Ctrl-C cuts it, the
    // chat goes on, and the cut answer is neither released nor kept.
    writeln!(stdin, "{story}").unwrap();
    wait_for(&rx, &mut seen, " ");
    interrupt(child.id());
    wait_for(&rx, &mut seen, "]\n");
    let text = String::from_utf8_lossy(&seen).into_owned();
    assert!(
        text.contains("cut by Ctrl-C: generation cancelled before the commit trap judged it"),
        "{text}"
    );
    assert!(text.contains("no commit entry"), "{text}");
    assert!(
        text.contains(" · ? tokens · "),
        "a cut answer has no token count: {text}"
    );
    writeln!(stdin, "/history").unwrap();
    wait_for(&rx, &mut seen, "[history is empty]\n");

    // Idle (between answers): Ctrl-C ends the process with the shell's SIGINT status.
    interrupt(child.id());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{status:?}");

    // Contrast: the same request left alone runs to its end, is committed and kept.
    let out = chat(
        home.path(),
        &["--max-tokens", "200"],
        &format!("{story}\n/history\n"),
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.contains("[route model_lane · verification "),
        "{stdout}"
    );
    assert!(!stdout.contains("withheld"), "{stdout}");
    assert!(stdout.contains(&format!("you: {story}")), "{stdout}");
}
