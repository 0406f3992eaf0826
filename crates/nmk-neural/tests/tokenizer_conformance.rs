#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Our tokenizer against llama.cpp's, on the real SmolLM2 and Qwen2.5 GGUFs.
//!
//! The expected ids are fixtures made by the real llama.cpp (llama-cpp-python 0.3.36, through
//! `bench/llama_peer/tokenize.py`); `bench/llama_peer/check_tokenizer.sh` regenerates them and
//! diffs. The models come from the cache (`resolve_model` downloads them when missing).

use std::path::PathBuf;

use nmk_neural::gguf::GgufFile;
use nmk_neural::models::{find_model, resolve_model};
use nmk_neural::tokenizer::{ChatMessage, Tokenizer};
use serde_json::Value;
use sha2::{Digest, Sha256};

const MODELS: [&str; 2] = ["smollm2-135m-instruct", "qwen2.5-coder-0.5b-instruct"];

fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/tokenizer")
}

fn fixture(model: &str) -> Value {
    let path = data_dir().join(format!("expected-{model}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    serde_json::from_str(&text).unwrap()
}

fn tokenizer(model: &str) -> Tokenizer {
    let path = resolve_model(model, &mut |_| {}).unwrap();
    let file = GgufFile::open(&path).unwrap();
    Tokenizer::from_gguf(&file).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| u32::try_from(x.as_u64().unwrap()).unwrap())
        .collect()
}

fn corpus() -> Vec<(String, String)> {
    std::fs::read_to_string(data_dir().join("corpus.jsonl"))
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (
                v["id"].as_str().unwrap().to_owned(),
                v["text"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn fixtures_are_for_the_registered_models_and_this_corpus() {
    let corpus_bytes = std::fs::read(data_dir().join("corpus.jsonl")).unwrap();
    let corpus_sha = hex(&Sha256::digest(&corpus_bytes));
    assert!(corpus().len() >= 60);
    for model in MODELS {
        let fx = fixture(model);
        assert_eq!(fx["llama_cpp_python_version"], "0.3.36", "{model}");
        assert_eq!(
            fx["model_sha256"].as_str().unwrap(),
            find_model(model).unwrap().sha256,
            "{model}: fixture made from another file"
        );
        assert_eq!(
            fx["corpus_sha256"].as_str().unwrap(),
            corpus_sha,
            "{model}: corpus changed since the fixture was made; run bench/llama_peer/check_tokenizer.sh --update"
        );
        assert_eq!(fx["cases"].as_array().unwrap().len(), corpus().len());
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Every corpus case, three ways (plain; special tokens parsed; BOS/EOS added), equals llama.cpp.
#[test]
fn ids_equal_llama_cpp_on_the_corpus() {
    for model in MODELS {
        let tok = tokenizer(model);
        let fx = fixture(model);
        let mut failures = Vec::new();
        let mut checked = 0;
        for case in fx["cases"].as_array().unwrap() {
            let text = case["text"].as_str().unwrap();
            for (key, add_special, parse_special) in [
                ("plain", false, false),
                ("parsed", false, true),
                ("full", true, true),
            ] {
                let want = ids(&case[key]);
                let got = tok.encode(text, add_special, parse_special);
                checked += 1;
                if got != want {
                    failures.push(format!(
                        "{model} {} {key}: {text:?}\n   want {want:?}\n    got {got:?}",
                        case["id"]
                    ));
                }
            }
        }
        assert!(
            failures.is_empty(),
            "{} of {checked} differ:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }
}

#[test]
fn smollm2_capital_of_france() {
    let tok = tokenizer("smollm2-135m-instruct");
    assert_eq!(
        tok.encode("The capital of France is", false, false),
        [504, 3575, 282, 4649, 314]
    );
    assert_eq!(tok.pre_tokenizer(), Some("smollm"));
}

/// Special ids, BOS/EOS policy, end-of-generation set, token attributes and every token's
/// piece equal llama.cpp's.
#[test]
fn vocabulary_facts_equal_llama_cpp() {
    for model in MODELS {
        let tok = tokenizer(model);
        let v = &fixture(model)["vocab"];
        let opt = |x: &Value| x.as_u64().map(|n| u32::try_from(n).unwrap());
        assert_eq!(tok.vocab_size() as u64, v["n_vocab"].as_u64().unwrap());
        assert_eq!(tok.bos_id(), opt(&v["bos"]), "{model} bos");
        assert_eq!(tok.eos_id(), opt(&v["eos"]), "{model} eos");
        assert_eq!(tok.pad_id(), opt(&v["pad"]), "{model} pad");
        assert_eq!(tok.add_bos(), v["add_bos"].as_bool().unwrap(), "{model}");
        assert_eq!(tok.add_eos(), v["add_eos"].as_bool().unwrap(), "{model}");
        let eog: Vec<u32> = ids(&v["eog"]);
        assert_eq!(
            tok.eos_ids().iter().copied().collect::<Vec<_>>(),
            eog,
            "{model} eog"
        );
        // llama.cpp picks the end-of-turn token among several candidates in hash-map order; we
        // prefer `<|im_end|>`. Either way it is one of the end-of-generation tokens.
        assert!(
            tok.eos_ids().contains(&tok.eot_id().unwrap()),
            "{model} eot"
        );
        assert!(
            tok.eos_ids().contains(&opt(&v["eot"]).unwrap()),
            "{model} eot"
        );

        let attrs = v["attrs"].as_object().unwrap();
        for id in 0..u32::try_from(tok.vocab_size()).unwrap() {
            let want = attrs
                .get(&id.to_string())
                .map_or(4, |a| u32::try_from(a.as_u64().unwrap()).unwrap());
            assert_eq!(tok.attr(id).unwrap().0, want, "{model} attr of {id}");
            assert_eq!(
                tok.is_special(id),
                want & (8 | 16 | 1) != 0,
                "{model} is_special({id})"
            );
        }

        let mut h = Sha256::new();
        for id in 0..u32::try_from(tok.vocab_size()).unwrap() {
            let p = tok.token_to_piece(id);
            h.update(u32::try_from(p.len()).unwrap().to_le_bytes());
            h.update(&p);
        }
        assert_eq!(
            hex(&h.finalize()),
            v["pieces_sha256"].as_str().unwrap(),
            "{model} pieces"
        );
    }
}

/// decode(encode(x)) == x, decode equals llama.cpp's detokenizer, and the streaming decoder
/// equals the full decode (also token by token for ids that split characters).
#[test]
fn decode_round_trips_and_streams() {
    for model in MODELS {
        let tok = tokenizer(model);
        for case in fixture(model)["cases"].as_array().unwrap() {
            let text = case["text"].as_str().unwrap();
            for parse_special in [false, true] {
                let ids = tok.encode(text, false, parse_special);
                let full = tok.decode(&ids);
                assert_eq!(full, text, "{model} {}", case["id"]);
                let mut d = tok.decoder();
                let mut streamed = String::new();
                for &id in &ids {
                    let part = d.push(id);
                    streamed.push_str(&part);
                }
                streamed.push_str(&d.finish());
                assert_eq!(streamed, full, "{model} {} streamed", case["id"]);
            }
            let parsed = ids(&case["parsed"]);
            assert_eq!(
                tok.decode(&parsed),
                case["detokenized"].as_str().unwrap(),
                "{model} {} detokenize",
                case["id"]
            );
        }
    }
}

#[test]
fn streaming_decoder_holds_partial_characters() {
    let tok = tokenizer("smollm2-135m-instruct");
    // A 4-byte emoji is split over byte tokens: nothing is emitted until it is complete.
    let ids = tok.encode("🍕!", false, false);
    assert!(ids.len() >= 2, "{ids:?}");
    let mut d = tok.decoder();
    let mut seen = Vec::new();
    for &id in &ids {
        seen.push(d.push(id));
    }
    assert!(seen.iter().all(|s| !s.contains('\u{FFFD}')), "{seen:?}");
    assert_eq!(seen.concat(), "🍕!");
    assert!(d.pending().is_empty());
    // A dangling lead byte is flushed as U+FFFD at the end, like the full decode.
    let lead = ids[0];
    let mut d = tok.decoder();
    let first = d.push(lead);
    let rest = d.finish();
    assert_eq!(format!("{first}{rest}"), tok.decode(&[lead]));
    // Ids outside the vocabulary contribute nothing.
    assert_eq!(tok.decode(&[u32::MAX]), "");
    assert!(tok.token_to_piece(u32::MAX).is_empty());
}

fn messages(case: &Value) -> Vec<ChatMessage> {
    case["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| ChatMessage::new(m["role"].as_str().unwrap(), m["content"].as_str().unwrap()))
        .collect()
}

/// The chat template renders what llama.cpp renders, and `encode_chat` gives llama.cpp's ids.
/// llama.cpp's `llama_chat_apply_template` is its built-in ChatML formatter; it agrees with the
/// Jinja template whenever the conversation has a system message. Without one, both templates
/// insert a default system prompt, which the built-in formatter does not: checked separately.
#[test]
fn chat_template_matches_llama_cpp() {
    for model in MODELS {
        let tok = tokenizer(model);
        let tmpl = tok.chat_template().unwrap();
        for case in fixture(model)["chat"].as_array().unwrap() {
            let msgs = messages(case);
            let add = case["add_generation_prompt"].as_bool().unwrap();
            let rendered = tmpl.render(&msgs, add).unwrap();
            if case["name"] == "user_only" {
                continue;
            }
            assert_eq!(
                rendered,
                case["rendered"].as_str().unwrap(),
                "{model} {}",
                case["name"]
            );
            assert_eq!(
                tok.encode_chat(&msgs, add).unwrap(),
                ids(&case["ids"]),
                "{model} {}",
                case["name"]
            );
        }
    }
}

#[test]
fn chat_template_known_chatml_forms() {
    let sys_user = [
        ChatMessage::new("system", "You are helpful."),
        ChatMessage::new("user", "Hi!"),
    ];
    let want = "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n";
    let user = [ChatMessage::new("user", "Hi!")];
    for (model, default_system) in [
        (
            "smollm2-135m-instruct",
            "You are a helpful AI assistant named SmolLM, trained by Hugging Face",
        ),
        (
            "qwen2.5-coder-0.5b-instruct",
            "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.",
        ),
    ] {
        let tok = tokenizer(model);
        let tmpl = tok.chat_template().unwrap();
        assert_eq!(tmpl.render(&sys_user, true).unwrap(), want, "{model}");
        assert_eq!(
            tmpl.render(&user, true).unwrap(),
            format!(
                "<|im_start|>system\n{default_system}<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n"
            ),
            "{model}"
        );
        // Without the generation prompt the text ends after the last turn.
        assert!(
            tmpl.render(&user, false)
                .unwrap()
                .ends_with("Hi!<|im_end|>\n")
        );
        // encode_chat: no BOS for these models (add_bos_token = false), markers are single ids.
        let ids = tok.encode_chat(&sys_user, true).unwrap();
        let im_start = tok.token_id("<|im_start|>").unwrap();
        assert_eq!(ids[0], im_start, "{model}");
        assert_eq!(ids.iter().filter(|&&i| i == im_start).count(), 3, "{model}");
        assert_eq!(tok.decode(&ids), want, "{model}");
    }
}

#[test]
fn qwen_tool_template_uses_python_style_tojson() {
    let tok = tokenizer("qwen2.5-coder-0.5b-instruct");
    let tmpl = tok.chat_template().unwrap();
    let msgs = serde_json::json!([{"role": "user", "content": "weather?"}]);
    let tools = serde_json::json!([{"type": "function", "function": {"name": "get_weather", "parameters": {"city": "string"}}}]);
    let out = tmpl.render_json(&msgs, Some(&tools), true).unwrap();
    // Python's separators and no HTML escaping; keys come out sorted (maps here do not keep
    // insertion order).
    assert!(
        out.contains(r#"{"function": {"name": "get_weather", "parameters": {"city": "string"}}, "type": "function"}"#),
        "{out}"
    );
    assert!(out.ends_with("<|im_start|>assistant\n"));
}
