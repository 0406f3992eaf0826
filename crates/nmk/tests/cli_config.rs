//! `nmk.toml` and its layering: a flag beats an environment variable, which beats the config
//! file, which beats the built-in default — seen both in `nmk config show` (which names the
//! source) and in what `nmk run` actually does (the model it loads, the tokens it generates).
//! Where the file is looked up (`--config`, `$NMK_CONFIG`, `<home>/nmk.toml`), and that a bad
//! file, an unknown key or a secret in the file is a usage error naming the file and key.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::{Command, Output};

/// Every variable that could leak settings into a test from the caller's environment.
const SETTING_VARS: &[&str] = &[
    "NMK_CONFIG",
    "NMK_MODEL",
    "NMK_THREADS",
    "NMK_RUN_MAX_TOKENS",
    "NMK_RUN_TEMPERATURE",
    "NMK_RUN_SEED",
    "NMK_LEARN_MODEL",
    "NMK_SERVE_HOST",
    "NMK_SERVE_PORT",
    "NMK_SERVE_MAX_QUEUE",
    "NMK_SERVE_MAX_TOKENS",
    "NMK_SERVE_DEADLINE_S",
    "RUST_LOG",
    "NMK_SANDBOX_WORKER",
];

/// Runs `nmk args…` on `home` with only the given setting variables set.
fn nmk_with(home: &Path, envs: &[(&str, &str)], args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_nmk"));
    cmd.args(args).env("NMK_HOME", home);
    for v in SETTING_VARS {
        cmd.env_remove(v);
    }
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The (value, source) `nmk config show --json [-- command…]` reports for `key`.
fn shown(home: &Path, envs: &[(&str, &str)], command: &[&str], key: &str) -> (String, String) {
    let mut args = vec!["config", "show", "--json"];
    if !command.is_empty() {
        args.push("--");
        args.extend_from_slice(command);
    }
    let out = nmk_with(home, envs, &args);
    assert!(out.status.success(), "{}", stderr(&out));
    let v = json(&out);
    let s = v["settings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["key"] == key)
        .unwrap_or_else(|| panic!("{key} missing from {v}"));
    (
        s["value"].as_str().unwrap().to_owned(),
        s["source"].as_str().unwrap().to_owned(),
    )
}

fn pair(value: &str, source: &str) -> (String, String) {
    (value.to_owned(), source.to_owned())
}

#[test]
fn config_show_names_the_source_of_each_layer() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    // No file: the built-in default.
    assert_eq!(
        shown(h, &[], &[], "model"),
        pair("smollm2-135m-instruct", "default")
    );
    std::fs::write(
        h.join("nmk.toml"),
        "model = \"file-model\"\nthreads = 3\n[run]\nmax_tokens = 7\n",
    )
    .unwrap();
    assert_eq!(shown(h, &[], &[], "model"), pair("file-model", "file"));
    assert_eq!(shown(h, &[], &[], "threads"), pair("3", "file"));
    // A setting the file leaves out keeps its built-in default.
    assert_eq!(shown(h, &[], &[], "run.seed"), pair("0", "default"));
    let env = [("NMK_MODEL", "env-model"), ("NMK_RUN_MAX_TOKENS", "9")];
    assert_eq!(shown(h, &env, &[], "model"), pair("env-model", "env"));
    assert_eq!(shown(h, &env, &[], "run.max_tokens"), pair("9", "env"));
    // With a command line, its flags win over both; what it does not pass stays env/file.
    let line = ["run", "--model", "flag-model", "hello"];
    assert_eq!(shown(h, &env, &line, "model"), pair("flag-model", "flag"));
    assert_eq!(shown(h, &env, &line, "run.max_tokens"), pair("9", "env"));
    assert_eq!(shown(h, &env, &line, "threads"), pair("3", "file"));
    let line = ["run", "--threads", "2", "hello"];
    assert_eq!(shown(h, &env, &line, "threads"), pair("2", "flag"));
    // The server's and learn's arguments are layered the same way (seen without starting
    // either: the command line is only parsed).
    std::fs::write(
        h.join("nmk.toml"),
        "[serve]\nport = 9100\nmax_queue = 4\n[learn]\nmodel = \"file-coder\"\n",
    )
    .unwrap();
    let env = [("NMK_SERVE_PORT", "9200"), ("NMK_LEARN_MODEL", "env-coder")];
    assert_eq!(
        shown(h, &[], &["serve"], "serve.port"),
        pair("9100", "file")
    );
    assert_eq!(
        shown(h, &env, &["serve"], "serve.port"),
        pair("9200", "env")
    );
    assert_eq!(
        shown(h, &env, &["serve", "--port", "9300"], "serve.port"),
        pair("9300", "flag")
    );
    assert_eq!(
        shown(h, &env, &["serve"], "serve.max_queue"),
        pair("4", "file")
    );
    assert_eq!(
        shown(h, &env, &["serve"], "serve.deadline_s"),
        pair("120", "default")
    );
    assert_eq!(
        shown(h, &[], &["learn", "g.toml"], "learn.model"),
        pair("file-coder", "file")
    );
    assert_eq!(
        shown(h, &env, &["learn", "g.toml"], "learn.model"),
        pair("env-coder", "env")
    );
    std::fs::write(h.join("nmk.toml"), "model = \"file-model\"\n").unwrap();
    // The file's value is also what `--help` now shows as the default.
    let help = nmk_with(h, &[], &["run", "--help"]);
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(text.contains("[default: file-model]"), "{text}");
    assert!(text.contains("NMK_MODEL"), "{text}");
}

#[test]
fn run_loads_the_model_each_layer_names() {
    // Each layer names a model file that does not exist; the error names the one `nmk run`
    // tried to load, so each contrast shows which layer won in the command itself.
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let missing = |name: &str| h.join(format!("{name}.gguf")).display().to_string();
    std::fs::write(
        h.join("nmk.toml"),
        format!("model = {:?}\n", missing("file-model")),
    )
    .unwrap();
    let prompt = "Tell me a story about a lighthouse.";
    let tried = |envs: &[(&str, &str)], extra: &[&str]| {
        let mut args = vec!["run", "--no-head"];
        args.extend_from_slice(extra);
        args.push(prompt);
        let out = nmk_with(h, envs, &args);
        assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
        stderr(&out)
    };
    let e = tried(&[], &[]);
    assert!(e.contains("file-model.gguf"), "{e}");
    let env_model = missing("env-model");
    let e = tried(&[("NMK_MODEL", &env_model)], &[]);
    assert!(
        e.contains("env-model.gguf") && !e.contains("file-model"),
        "{e}"
    );
    let flag_model = missing("flag-model");
    let e = tried(&[("NMK_MODEL", &env_model)], &["--model", &flag_model]);
    assert!(
        e.contains("flag-model.gguf") && !e.contains("env-model"),
        "{e}"
    );
    // A primitive answers without any model: the configured (missing) model is never loaded.
    let out = nmk_with(h, &[], &["run", "--json", "what is the gcd of 12 and 18"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json(&out)["tokens"], 0);
}

#[test]
fn run_generates_as_many_tokens_as_the_winning_layer_allows() {
    // The real SmolLM2 (fetched into the cache by `nmk run` if needed); --raw skips the
    // template, and a max of a few tokens is reached before any natural end.
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    std::fs::write(h.join("nmk.toml"), "[run]\nmax_tokens = 3\n").unwrap();
    let tokens = |envs: &[(&str, &str)], extra: &[&str]| {
        let mut args = vec!["run", "--json", "--raw", "--no-route"];
        args.extend_from_slice(extra);
        args.push("Once upon a time, in a faraway land, there lived");
        let out = nmk_with(h, envs, &args);
        assert!(out.status.success(), "{}", stderr(&out));
        let v = json(&out);
        assert_eq!(v["model"], "smollm2-135m-instruct");
        v["tokens"].as_u64().unwrap()
    };
    assert_eq!(tokens(&[], &[]), 3, "the file's run.max_tokens");
    assert_eq!(
        tokens(&[("NMK_RUN_MAX_TOKENS", "5")], &[]),
        5,
        "env over file"
    );
    assert_eq!(
        tokens(&[("NMK_RUN_MAX_TOKENS", "5")], &["--max-tokens", "2"]),
        2,
        "flag over env"
    );
}

#[test]
fn the_file_is_found_by_flag_then_env_then_home() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let other = tempfile::tempdir().unwrap();
    let by_flag = other.path().join("flag.toml");
    let by_env = other.path().join("env.toml");
    std::fs::write(&by_flag, "model = \"from-flag-file\"\n").unwrap();
    std::fs::write(&by_env, "model = \"from-env-file\"\n").unwrap();
    std::fs::write(h.join("nmk.toml"), "model = \"from-home-file\"\n").unwrap();
    let path = |envs: &[(&str, &str)], extra: &[&str]| {
        let mut args = extra.to_vec();
        args.extend_from_slice(&["config", "path", "--json"]);
        let out = nmk_with(h, envs, &args);
        assert!(out.status.success(), "{}", stderr(&out));
        let v = json(&out);
        (
            v["path"].as_str().unwrap().to_owned(),
            v["source"].as_str().unwrap().to_owned(),
        )
    };
    let env_s = by_env.to_str().unwrap();
    let flag_s = by_flag.to_str().unwrap();
    assert_eq!(
        path(&[], &[]),
        pair(h.join("nmk.toml").to_str().unwrap(), "default")
    );
    assert_eq!(path(&[("NMK_CONFIG", env_s)], &[]), pair(env_s, "env"));
    assert_eq!(
        path(&[("NMK_CONFIG", env_s)], &["--config", flag_s]),
        pair(flag_s, "flag")
    );
    // And the settings come from that file.
    assert_eq!(shown(h, &[], &[], "model").0, "from-home-file");
    assert_eq!(
        shown(h, &[("NMK_CONFIG", env_s)], &[], "model").0,
        "from-env-file"
    );
    let out = nmk_with(h, &[], &["--config", flag_s, "config", "show", "--json"]);
    let v = json(&out);
    assert_eq!(v["settings"][0]["key"], "model");
    assert_eq!(v["settings"][0]["value"], "from-flag-file");
}

#[test]
fn a_missing_home_file_means_defaults_but_a_named_missing_file_is_an_error() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let out = nmk_with(h, &[], &["config", "path", "--json"]);
    assert!(out.status.success());
    assert_eq!(json(&out)["exists"], false);
    let out = nmk_with(h, &[], &["memory", "stats"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let named = h.join("absent.toml");
    let out = nmk_with(
        h,
        &[],
        &["--config", named.to_str().unwrap(), "memory", "stats"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("absent.toml"), "{}", stderr(&out));
}

#[test]
fn a_bad_file_is_a_usage_error_naming_the_file_and_key() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let file = h.join("nmk.toml");
    // Contrast: a valid file lets the command run.
    std::fs::write(&file, "threads = 2\n[serve]\nport = 9000\n").unwrap();
    let out = nmk_with(h, &[], &["memory", "stats"]);
    assert!(out.status.success(), "{}", stderr(&out));
    for (text, must_name) in [
        ("[run]\nmax_tokenz = 3\n", "max_tokenz"),
        ("colour = \"blue\"\n", "colour"),
        ("threads = \"four\"\n", "threads"),
        ("this is not toml\n", "line 1"),
    ] {
        std::fs::write(&file, text).unwrap();
        let out = nmk_with(h, &[], &["memory", "stats"]);
        assert_eq!(out.status.code(), Some(2), "{text}: {}", stderr(&out));
        let e = stderr(&out);
        assert!(
            e.contains("nmk.toml") && e.contains(must_name),
            "{text}: {e}"
        );
    }
    // The API key is refused from the file, with the way to give it instead.
    std::fs::write(&file, "[serve]\napi_key = \"hunter2\"\n").unwrap();
    let out = nmk_with(h, &[], &["memory", "stats"]);
    assert_eq!(out.status.code(), Some(2));
    let e = stderr(&out);
    assert!(
        e.contains("serve.api_key") && e.contains("NMK_API_KEY") && !e.contains("hunter2"),
        "{e}"
    );
}

#[test]
fn a_bad_environment_value_is_a_usage_error() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let line = ["run", "what is the gcd of 12 and 18"];
    let out = nmk_with(h, &[("NMK_THREADS", "many")], &line);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("many"), "{}", stderr(&out));
    let out = nmk_with(h, &[("NMK_THREADS", "2")], &line);
    assert!(out.status.success(), "{}", stderr(&out));
}
