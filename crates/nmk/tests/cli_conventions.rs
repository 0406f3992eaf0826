//! Conventions every command keeps: `--help` ends in working examples, `--json` prints JSON a
//! script can parse (text without it), exit codes mean what `nmk --help` says (0 success,
//! 1 a check failed, 2 usage, 3 runtime), and `-v`/`-vv` raise logging only when RUST_LOG is
//! unset.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::nmk;

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The subcommand names a help text lists under "Commands:" (without `help`).
fn listed_subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect()
}

/// Whether a help text has an examples block starting with an invocation.
fn has_examples(help: &str) -> bool {
    ["nmk ", "echo ", "NMK_"]
        .iter()
        .any(|start| help.contains(&format!("\nExamples:\n  {start}")))
}

fn help_of(home: &Path, path: &[&str]) -> String {
    let mut args = path.to_vec();
    args.push("--help");
    let out = nmk(home, &args);
    assert!(out.status.success(), "{path:?}: {}", stderr(&out));
    stdout(&out)
}

#[test]
fn every_command_help_ends_in_examples() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let top = help_of(h, &[]);
    assert!(top.contains("Examples:"), "{top}");
    let mut checked = Vec::new();
    let mut missing = Vec::new();
    for name in listed_subcommands(&top) {
        let help = help_of(h, &[&name]);
        let mut paths = vec![vec![name.clone()]];
        for sub in listed_subcommands(&help) {
            paths.push(vec![name.clone(), sub]);
        }
        for path in paths {
            let p: Vec<&str> = path.iter().map(String::as_str).collect();
            let text = help_of(h, &p);
            if !has_examples(&text) {
                missing.push(path.join(" "));
            }
            checked.push(path.join(" "));
        }
    }
    assert!(missing.is_empty(), "no Examples: in {missing:?}");
    // The walk really reached the nested commands (not just an empty list).
    for expected in [
        "ledger verify",
        "memory put",
        "model pull",
        "config show",
        "demo",
        "chat",
        "serve",
        "run",
        "learn",
    ] {
        assert!(
            checked.iter().any(|c| c == expected),
            "{expected} not walked: {checked:?}"
        );
    }
    // Contrast: text without an examples block fails the same check.
    let version = stdout(&nmk(h, &["--version"]));
    assert!(version.starts_with("nmk "), "{version}");
    assert!(!has_examples(&version));
}

#[test]
fn top_level_help_documents_exit_codes_and_configuration() {
    let home = tempfile::tempdir().unwrap();
    let help = help_of(home.path(), &[]);
    for needle in [
        "Exit codes",
        "0  success",
        "1  a check failed",
        "2  usage error",
        "3  runtime error",
        "NMK_CONFIG",
        "NMK_MODEL",
        "NMK_THREADS",
        "NMK_RUN_MAX_TOKENS",
        "NMK_SERVE_PORT",
        "nmk.toml",
        "RUST_LOG",
    ] {
        assert!(help.contains(needle), "{needle} not in nmk --help:\n{help}");
    }
}

/// Runs `args` with and without `--json`; the first must parse as a JSON object or array, the
/// second must not (it is the human report; a bare value such as a primitive's result may be
/// valid JSON, but it is not a report object).
fn json_and_text(home: &Path, args: &[&str]) {
    let mut with = args.to_vec();
    with.push("--json");
    let out = nmk(home, &with);
    assert!(
        out.status.code() == Some(0) || out.status.code() == Some(1),
        "{args:?}: {}",
        stderr(&out)
    );
    let text = stdout(&out);
    let report = |t: &str| {
        serde_json::from_str::<serde_json::Value>(t).is_ok_and(|v| v.is_object() || v.is_array())
    };
    assert!(report(&text), "{args:?} --json printed no JSON:\n{text}");
    let out = nmk(home, args);
    let text = stdout(&out);
    assert!(
        !report(&text),
        "{args:?} without --json printed a JSON report:\n{text}"
    );
}

fn gcd_program(dir: &Path) -> PathBuf {
    let p = dir.join("gcd.py");
    std::fs::write(
        &p,
        "def gcd(a, b):\n    while b:\n        a, b = b, a % b\n    return abs(a)\n",
    )
    .unwrap();
    p
}

fn examples(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/gaps")
        .join(name)
        .display()
        .to_string()
}

#[test]
fn every_report_has_a_json_form() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let program = gcd_program(h);
    let program = program.to_str().unwrap();
    let job = h.join("job.json");
    std::fs::write(
        &job,
        serde_json::json!({
            "id": "j1",
            "prompt": "Give a JSON object describing the person.",
            "inputs": {"draft": "{\"name\": \"Ada\", \"age\": 36}",
                       "schema": {"required": ["name", "age"]}},
        })
        .to_string(),
    )
    .unwrap();
    let synth = h.join("tiny.gguf");
    let synth = synth.to_str().unwrap();
    let export = h.join("ledger.jsonl");
    let export = export.to_str().unwrap();
    let gcd_gap = examples("gcd.toml");
    // Writes first (each run writes again: fine, every write is a fresh version).
    json_and_text(h, &["memory", "put", "city", "Paris"]);
    for args in [
        vec!["memory", "get", "city"],
        vec!["memory", "list"],
        vec!["memory", "history", "city"],
        vec!["memory", "stats"],
        vec!["memory", "consult"],
        vec!["ledger", "show"],
        vec!["ledger", "verify"],
        vec!["ledger", "head"],
        vec!["ledger", "export", "--out", export],
        vec!["primitives", "list"],
        vec!["primitives", "show", "gcd"],
        vec!["primitives", "call", "gcd", "[12, 18]"],
        vec!["run", "what is the gcd of 12 and 18"],
        vec!["gate", &gcd_gap, program],
        vec!["job", "submit", job.to_str().unwrap()],
        vec!["job", "dashboard"],
        vec!["model", "list"],
        vec!["model", "synth", "--out", synth],
        vec!["model", "info", synth],
        vec!["config", "show"],
        vec!["config", "path"],
    ] {
        json_and_text(h, &args);
    }
    json_and_text(h, &["memory", "delete", "city"]);
    // The export stream on stdout is JSON Lines under --json too (no summary object mixed in).
    let out = nmk(h, &["ledger", "export", "--json"]);
    assert!(out.status.success());
    let text = stdout(&out);
    assert!(text.lines().count() > 3, "{text}");
    for line in text.lines() {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
    }
}

#[test]
fn usage_errors_exit_2() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    // Contrast: the same command with known flags succeeds.
    assert_eq!(nmk(h, &["memory", "stats"]).status.code(), Some(0));
    assert_eq!(
        nmk(h, &["memory", "stats", "--no-such-flag"]).status.code(),
        Some(2)
    );
    assert_eq!(nmk(h, &["no-such-command"]).status.code(), Some(2));
    assert_eq!(
        nmk(h, &["ledger", "show", "--limit", "many"]).status.code(),
        Some(2)
    );
    // A malformed input file is a usage error too.
    let bad_gap = h.join("bad.toml");
    std::fs::write(&bad_gap, "entry = [\n").unwrap();
    let program = gcd_program(h);
    let out = nmk(
        h,
        &["gate", bad_gap.to_str().unwrap(), program.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    // So is a malformed --head, and a job file that is not there.
    assert!(nmk(h, &["memory", "put", "a", "1"]).status.success());
    let out = nmk(h, &["ledger", "verify", "--head", "not-a-head"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let absent = h.join("absent-job.json");
    let out = nmk(h, &["job", "submit", absent.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    // A garbage config file as well.
    std::fs::write(h.join("nmk.toml"), "\u{0}\u{1}garbage").unwrap();
    let out = nmk(h, &["memory", "stats"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
fn a_failed_check_exits_1() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    assert!(nmk(h, &["memory", "put", "city", "Paris"]).status.success());
    let export = h.join("ledger.jsonl");
    let e = export.to_str().unwrap();
    assert!(nmk(h, &["ledger", "export", "--out", e]).status.success());
    // Contrast: the untouched export verifies.
    assert_eq!(
        nmk(h, &["ledger", "verify", "--file", e]).status.code(),
        Some(0)
    );
    let text = std::fs::read_to_string(&export).unwrap();
    assert!(text.contains("city"), "{text}");
    std::fs::write(&export, text.replacen("city", "citz", 1)).unwrap();
    let out = nmk(h, &["ledger", "verify", "--file", e]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    // A wrong program refused by the gate is a failed check, too.
    let wrong = h.join("wrong.py");
    std::fs::write(&wrong, "def gcd(a, b):\n    return 1\n").unwrap();
    let out = nmk(h, &["gate", &examples("gcd.toml"), wrong.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
}

#[test]
fn runtime_errors_exit_3() {
    let dir = tempfile::tempdir().unwrap();
    let not_a_dir = dir.path().join("plain-file");
    std::fs::write(&not_a_dir, "x").unwrap();
    // Contrast: a real directory as home works.
    assert_eq!(nmk(dir.path(), &["memory", "stats"]).status.code(), Some(0));
    let out = nmk(&not_a_dir, &["memory", "stats"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("plain-file"), "{}", stderr(&out));
    // A model file that does not exist is a runtime error.
    let out = nmk(
        dir.path(),
        &[
            "model",
            "info",
            dir.path().join("absent.gguf").to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
}

#[test]
fn verbose_raises_logging_only_without_rust_log() {
    let home = tempfile::tempdir().unwrap();
    let run = |args: &[&str], rust_log: Option<&str>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_nmk"));
        cmd.args(args)
            .env("NMK_HOME", home.path())
            .env_remove("NMK_CONFIG")
            .env_remove("RUST_LOG");
        if let Some(v) = rust_log {
            cmd.env("RUST_LOG", v);
        }
        stderr(&cmd.output().unwrap())
    };
    // The config file in use is logged at debug level.
    assert!(run(&["-vv", "memory", "stats"], None).contains("config file"));
    assert!(!run(&["-v", "memory", "stats"], None).contains("config file"));
    assert!(!run(&["memory", "stats"], None).contains("config file"));
    // RUST_LOG, when set, wins over -vv.
    assert!(!run(&["-vv", "memory", "stats"], Some("warn")).contains("config file"));
    assert!(run(&["memory", "stats"], Some("nmk=debug")).contains("config file"));
}
