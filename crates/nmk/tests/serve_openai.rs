//! `nmk serve` against the official `openai` Python client: the venv made by
//! `bench/openai_client/setup.sh` (created here if it lacks `openai`; the test fails loudly if
//! it cannot be), a server on a temporary kernel home with a bearer key and a token cap, and
//! `tests/openai_client/check_server.py`, whose one JSON summary is asserted here. The ledger
//! entries the Python client was told about are then looked up through the kernel endpoints.
//! Contrasts: a primitive's zero tokens against a free question's model tokens; the wrong key
//! (AuthenticationError) against the right one; a request over the token cap (BadRequestError)
//! against one at the cap; a named entry found in the ledger against one never written.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::server::{MODEL, Server, never_written_hash, request};

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const API_KEY: &str = "acceptance-key";
const TOKEN_CAP: u64 = 48;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn venv_python() -> PathBuf {
    let venv = std::env::var_os("NMK_OPENAI_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".venv-openai"));
    venv.join("bin/python")
}

fn has_openai(python: &Path) -> bool {
    python.exists()
        && Command::new(python)
            .args(["-c", "import openai"])
            .status()
            .is_ok_and(|s| s.success())
}

/// The venv's interpreter, with `openai` importable: made by the setup script when missing.
fn openai_python() -> PathBuf {
    let python = venv_python();
    if !has_openai(&python) {
        let script = repo_root().join("bench/openai_client/setup.sh");
        let status = Command::new("bash").arg(&script).status();
        assert!(
            status.as_ref().is_ok_and(|s| s.success()),
            "{} could not install the openai client ({status:?}); this test needs it",
            script.display()
        );
        assert!(
            has_openai(&python),
            "the setup script ran but {} still cannot import openai",
            python.display()
        );
    }
    python
}

fn ok<'a>(summary: &'a Value, call: &str) -> &'a Value {
    let v = &summary[call];
    assert!(
        v["error"].is_null(),
        "{call} raised in the openai client: {}",
        v["error"]
    );
    &v["ok"]
}

fn err<'a>(summary: &'a Value, call: &str) -> &'a Value {
    let v = &summary[call];
    assert!(
        v["ok"].is_null(),
        "{call} succeeded but should have been refused: {}",
        v["ok"]
    );
    &v["error"]
}

/// The `nmk` object the client reached; both ways of reaching it must agree.
fn nmk(of: &Value) -> &Value {
    let extra = &of["model_extra"];
    assert!(extra.is_object(), "nmk not reachable via model_extra: {of}");
    assert_eq!(
        extra, &of["model_dump"],
        "model_extra and model_dump differ"
    );
    extra
}

/// The ledger entries an answer names: its own, and the memory and route decisions before it.
fn entries(nmk: &Value) -> Vec<String> {
    ["ledger_entry", "memory_entry", "decision_entry"]
        .iter()
        .map(|field| {
            let h = nmk[field]
                .as_str()
                .unwrap_or_else(|| panic!("no {field} in {nmk}"));
            assert_eq!(h.len(), 64, "{h}");
            assert!(h.bytes().all(|b| b.is_ascii_hexdigit()), "{h}");
            h.to_owned()
        })
        .collect()
}

#[test]
fn the_official_openai_client_is_served_through_the_kernel() {
    let python = openai_python();
    let home = tempfile::tempdir().unwrap();
    let cap = TOKEN_CAP.to_string();
    let srv = Server::start(home.path(), &["--api-key", API_KEY, "--max-tokens", &cap]);
    let base_url = format!("http://{}/v1", srv.addr);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/openai_client/check_server.py");
    let out = Command::new(&python)
        .arg(&script)
        .args([&base_url, API_KEY, MODEL, &cap])
        .env_remove("OPENAI_API_KEY")
        .env_remove("OPENAI_BASE_URL")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the client script failed:\n{stderr}");
    let s: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "the client script's summary is not JSON ({e}):\n{}\n{stderr}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    eprintln!("openai {} summary: {s}", s["openai_version"]);

    let models = ok(&s, "models").as_array().unwrap();
    assert!(models.iter().any(|m| m == MODEL), "{models:?}");

    // A primitive: the answer, zero model tokens, the kernel's account via model_extra.
    let p = ok(&s, "primitive");
    assert!(p["content"].as_str().unwrap().contains('6'), "{p}");
    assert_eq!(p["completion_tokens"], 0, "{p}");
    let p_nmk = nmk(&p["nmk"]);
    assert_eq!(p_nmk["primitive"], true, "{p_nmk}");
    assert_eq!(p_nmk["committed"], true, "{p_nmk}");
    assert_eq!(p_nmk["verification"], "verified", "{p_nmk}");
    let mut named = entries(p_nmk);

    // Contrast: a free question goes to the model lane and spends tokens.
    let f = ok(&s, "free");
    let f_nmk = nmk(&f["nmk"]);
    assert_eq!(f_nmk["primitive"], false, "{f_nmk}");
    assert_eq!(f_nmk["route"], "model_lane", "{f_nmk}");
    let f_tokens = f["completion_tokens"].as_u64().unwrap();
    assert!(f_tokens > 0 && f_tokens <= 12, "{f}");
    if f_nmk["committed"] == true {
        assert!(!f["content"].as_str().unwrap().is_empty(), "{f}");
    } else {
        assert!(f["content"].is_null(), "withheld text was released: {f}");
    }
    named.extend(entries(f_nmk));

    // Streaming: the deltas concatenate to the text; only the final chunk carries nmk.
    let st = ok(&s, "stream");
    assert!(st["chunks"].as_u64().unwrap() >= 2, "{st}");
    assert_eq!(st["earlier_chunks_with_nmk"], 0, "{st}");
    let st_nmk = nmk(&st["final_nmk"]);
    assert_eq!(st_nmk["route"], "model_lane", "{st_nmk}");
    assert!(st["final_finish_reason"].is_string(), "{st}");
    assert_eq!(
        st["final_completion_tokens"], f["completion_tokens"],
        "{st}"
    );
    assert!(!st["text"].as_str().unwrap().is_empty(), "{st}");
    // Greedy decoding: the streamed text is the whole answer's text when both committed.
    if f_nmk["committed"] == true && st_nmk["committed"] == true {
        assert_eq!(st["text"], f["content"], "{st} vs {f}");
    }
    named.extend(entries(st_nmk));

    // Text completions.
    let c = ok(&s, "completion");
    let c_nmk = nmk(&c["nmk"]);
    assert_eq!(c_nmk["route"], "model_lane", "{c_nmk}");
    assert!(c["completion_tokens"].as_u64().unwrap() > 0, "{c}");
    named.extend(entries(c_nmk));

    // Refusals surface as the client's typed errors; the request at the cap is served.
    for call in ["empty_messages", "over_cap"] {
        let e = err(&s, call);
        assert_eq!(e["class"], "BadRequestError", "{call}: {e}");
        assert_eq!(e["is_bad_request"], true, "{call}: {e}");
        assert_eq!(e["status"], 400, "{call}: {e}");
    }
    assert!(
        err(&s, "over_cap")["message"]
            .as_str()
            .unwrap()
            .contains("cap"),
        "{}",
        s["over_cap"]
    );
    let at_cap = ok(&s, "at_cap");
    assert!(
        at_cap["content"].as_str().unwrap().contains('6'),
        "{at_cap}"
    );
    named.extend(entries(nmk(&at_cap["nmk"])));
    let e = err(&s, "unknown_model");
    assert_eq!(e["is_not_found"], true, "{e}");
    assert_eq!(e["status"], 404, "{e}");

    // The wrong key is refused on every endpoint; the right key (all calls above) is served.
    for call in ["wrong_key_models", "wrong_key_chat"] {
        let e = err(&s, call);
        assert_eq!(e["class"], "AuthenticationError", "{call}: {e}");
        assert_eq!(e["is_authentication"], true, "{call}: {e}");
        assert_eq!(e["status"], 401, "{call}: {e}");
    }

    // The entries the client was told about are in the ledger the server exposes.
    let bearer = format!("Bearer {API_KEY}");
    let auth = [("Authorization", bearer.as_str())];
    let r = request(&srv.addr, "GET", "/v1/nmk/ledger?limit=1000", &auth, "");
    assert_eq!(r.status, 200, "{}", r.body);
    let ledger: Vec<String> = r
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["hash"].as_str().unwrap().to_owned())
        .collect();
    for h in &named {
        assert!(
            ledger.contains(h),
            "entry {h} named to the client is not in the ledger"
        );
    }
    // Contrast: the same lookup does not find an entry that was never written.
    assert!(!ledger.contains(&never_written_hash()));
    let v = request(&srv.addr, "GET", "/v1/nmk/ledger/verify", &auth, "").json();
    assert_eq!(v["ok"], true, "{v}");
    assert!(v["entries"].as_u64().unwrap() >= ledger.len() as u64, "{v}");
    // The kernel endpoints are behind the key too.
    let r = request(&srv.addr, "GET", "/v1/nmk/ledger/verify", &[], "");
    assert_eq!(r.status, 401, "{}", r.body);
}
