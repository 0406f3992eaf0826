#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The tokenizer on metadata it did not expect: missing keys, wrong types, short arrays,
//! ids out of range, merges that do not parse, random junk (typed errors, never a panic), and
//! small synthetic vocabularies whose ids are known by hand (BPE merge order, special tokens,
//! SentencePiece with byte fallback, chat-template errors).

use nmk_neural::gguf::{Array, GgufFile, GgufWriter, Metadata, Value};
use nmk_neural::tokenizer::{ChatMessage, ChatTemplate, Tokenizer, TokenizerError};
use proptest::prelude::*;

/// GPT-2's byte → character table (printable Latin-1 stands for itself, the rest from U+0100).
fn byte_chars() -> Vec<char> {
    let mut next = 256u32;
    (0..=255u8)
        .map(|b| {
            if matches!(b, 0x21..=0x7E | 0xA1..=0xAC | 0xAE..=0xFF) {
                char::from(b)
            } else {
                next += 1;
                char::from_u32(next - 1).unwrap()
            }
        })
        .collect()
}

fn strings(v: &[&str]) -> Value {
    Value::Array(Array::String(v.iter().map(|s| (*s).to_owned()).collect()))
}

/// A byte-level BPE vocabulary: the 256 byte characters, then `extra` tokens, with `merges`.
fn bpe_md(pre: &str, extra: &[(&str, i32)], merges: &[&str]) -> Metadata {
    let mut tokens: Vec<String> = byte_chars().iter().map(char::to_string).collect();
    let mut types = vec![1i32; 256];
    for (t, ty) in extra {
        tokens.push((*t).to_owned());
        types.push(*ty);
    }
    let mut md = Metadata::new();
    md.insert("tokenizer.ggml.model".into(), Value::String("gpt2".into()))
        .unwrap();
    md.insert("tokenizer.ggml.pre".into(), Value::String(pre.into()))
        .unwrap();
    md.insert(
        "tokenizer.ggml.tokens".into(),
        Value::Array(Array::String(tokens)),
    )
    .unwrap();
    md.insert(
        "tokenizer.ggml.token_type".into(),
        Value::Array(Array::I32(types)),
    )
    .unwrap();
    md.insert("tokenizer.ggml.merges".into(), strings(merges))
        .unwrap();
    md
}

fn with(mut md: Metadata, key: &str, v: Value) -> Metadata {
    let mut out = Metadata::new();
    for (k, val) in md.entries() {
        if k != key {
            out.insert(k.clone(), val.clone()).unwrap();
        }
    }
    out.insert(key.to_owned(), v).unwrap();
    md = out;
    md
}

fn without(md: &Metadata, key: &str) -> Metadata {
    let mut out = Metadata::new();
    for (k, val) in md.entries() {
        if k != key {
            out.insert(k.clone(), val.clone()).unwrap();
        }
    }
    out
}

fn err(md: &Metadata) -> TokenizerError {
    Tokenizer::from_metadata(md).expect_err("metadata should be refused")
}

#[test]
fn tokenizer_is_shareable_between_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Tokenizer>();
    let tok = Tokenizer::from_metadata(&bpe_md("smollm", &[("ab", 1)], &["a b"])).unwrap();
    let want = tok.encode("ab ab 12 ab", false, false);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..200 {
                    assert_eq!(tok.encode("ab ab 12 ab", false, false), want);
                }
            });
        }
    });
}

#[test]
fn missing_and_mistyped_keys_are_typed_errors() {
    let good = bpe_md("gpt-2", &[], &[]);
    assert!(Tokenizer::from_metadata(&good).is_ok());
    assert!(matches!(err(&Metadata::new()), TokenizerError::Metadata(_)));
    assert!(matches!(
        err(&without(&good, "tokenizer.ggml.tokens")),
        TokenizerError::Metadata(_)
    ));
    assert!(matches!(
        err(&without(&good, "tokenizer.ggml.merges")),
        TokenizerError::Metadata(_)
    ));
    assert!(matches!(
        err(&with(
            good.clone(),
            "tokenizer.ggml.tokens",
            Value::Array(Array::U32(vec![1, 2]))
        )),
        TokenizerError::Metadata(_)
    ));
    assert!(matches!(
        err(&with(good.clone(), "tokenizer.ggml.model", Value::U32(3))),
        TokenizerError::Metadata(_)
    ));
    assert!(matches!(
        err(&with(
            good.clone(),
            "tokenizer.ggml.add_bos_token",
            Value::String("yes".into())
        )),
        TokenizerError::Metadata(_)
    ));
    assert!(matches!(
        err(&with(
            good.clone(),
            "tokenizer.ggml.bos_token_id",
            Value::String("1".into())
        )),
        TokenizerError::Metadata(_)
    ));
    assert!(matches!(
        err(&with(good.clone(), "tokenizer.ggml.tokens", strings(&[]))),
        TokenizerError::EmptyVocab
    ));
    assert!(matches!(
        err(&with(
            good.clone(),
            "tokenizer.ggml.model",
            Value::String("bert".into())
        )),
        TokenizerError::UnsupportedModel { .. }
    ));
    assert!(matches!(
        err(&with(
            good,
            "tokenizer.ggml.pre",
            Value::String("nonsense".into())
        )),
        TokenizerError::UnsupportedPreTokenizer { .. }
    ));
}

#[test]
fn short_arrays_and_out_of_range_ids_are_typed_errors() {
    let good = bpe_md("gpt-2", &[], &[]);
    assert!(matches!(
        err(&with(
            good.clone(),
            "tokenizer.ggml.token_type",
            Value::Array(Array::I32(vec![1; 10]))
        )),
        TokenizerError::LengthMismatch {
            key: "tokenizer.ggml.token_type",
            expected: 256,
            found: 10
        }
    ));
    assert!(matches!(
        err(&with(
            good.clone(),
            "tokenizer.ggml.scores",
            Value::Array(Array::F32(vec![0.0; 3]))
        )),
        TokenizerError::LengthMismatch {
            key: "tokenizer.ggml.scores",
            ..
        }
    ));
    for (key, v) in [
        ("tokenizer.ggml.bos_token_id", Value::U32(256)),
        ("tokenizer.ggml.eos_token_id", Value::I32(-1)),
        ("tokenizer.ggml.padding_token_id", Value::U64(u64::MAX)),
        ("tokenizer.ggml.eot_token_id", Value::I64(1 << 40)),
    ] {
        let e = err(&with(good.clone(), key, v));
        assert!(
            matches!(e, TokenizerError::TokenIdOutOfRange { key: k, vocab_size: 256, .. } if k == key),
            "{key}: {e}"
        );
    }
}

#[test]
fn merges_that_do_not_parse_are_typed_errors() {
    for (bad, index) in [
        (&["a b", "abc"][..], 1),
        (&["a "][..], 0),
        (&[""][..], 0),
        (&[" "][..], 0),
    ] {
        let e = err(&bpe_md("gpt-2", &[], bad));
        assert!(
            matches!(e, TokenizerError::BadMerge { index: i, .. } if i == index),
            "{bad:?}: {e}"
        );
    }
}

#[test]
fn bpe_merges_lowest_rank_first_and_leftmost_among_equals() {
    // ids: 256 "ab", 257 "abc", 258 "aa", 259 "bc"
    let md = bpe_md(
        "gpt-2",
        &[("ab", 1), ("abc", 1), ("aa", 1), ("bc", 1)],
        &["a b", "ab c", "a a", "b c"],
    );
    let tok = Tokenizer::from_metadata(&md).unwrap();
    let id = |s: &str| tok.token_id(s).unwrap();
    assert_eq!(tok.encode("abc", false, false), [257]);
    // "a a" on "aaa": the leftmost pair merges first.
    assert_eq!(tok.encode("aaa", false, false), [258, id("a")]);
    // "b c" (rank 3) loses to "a b" (rank 0): "abc", not "a" + "bc".
    assert_eq!(tok.encode("xbc", false, false), [id("x"), 259]);
    // Spaces are the byte character 'Ġ'; a word keeps its leading space.
    assert_eq!(tok.encode(" a", false, false), [id("Ġ"), id("a")]);
    assert_eq!(
        tok.decode(&tok.encode("abc aa\n", false, false)),
        "abc aa\n"
    );
    assert_eq!(tok.vocab_size(), 260);
    // No BOS by default for byte-level BPE, and the default ids 11 exist in this vocabulary.
    assert!(!tok.add_bos());
    assert_eq!(tok.encode("a", true, true), [id("a")]);
}

#[test]
fn special_tokens_control_versus_user_defined() {
    // 256 control "<|end|>", 257 user-defined "<tool>", 258 control "<|end|>x" (longer first).
    let md = bpe_md(
        "gpt-2",
        &[("<|end|>", 3), ("<tool>", 4), ("<|end|>x", 3)],
        &[],
    );
    let md = with(md, "tokenizer.ggml.add_bos_token", Value::Bool(true));
    let md = with(md, "tokenizer.ggml.bos_token_id", Value::U32(256));
    let tok = Tokenizer::from_metadata(&md).unwrap();
    let text = "a<|end|>x<|end|><tool>";
    let parsed = tok.encode(text, false, true);
    assert_eq!(parsed, [tok.token_id("a").unwrap(), 258, 256, 257]);
    // Without parse_special, control texts are plain text but user-defined ones still match.
    let plain = tok.encode(text, false, false);
    assert!(!plain.contains(&256) && !plain.contains(&258));
    assert_eq!(plain.last(), Some(&257));
    assert_eq!(tok.decode(&plain), text);
    assert_eq!(tok.encode(text, true, true)[0], 256);
    assert!(tok.is_special(256) && tok.is_special(257) && !tok.is_special(0));
    // "<|end|>" is an end-of-generation name; nothing else is.
    assert!(tok.eos_ids().contains(&256));
    assert!(tok.is_eog(256));
    assert_eq!(tok.token_to_piece(256), b"<|end|>");
}

fn spm_md() -> Metadata {
    let mut tokens = vec!["<unk>".to_owned(), "<s>".to_owned(), "</s>".to_owned()];
    let mut types = vec![2, 3, 3];
    let mut scores = vec![0.0f32, 0.0, 0.0];
    for b in 0..=255u32 {
        tokens.push(format!("<0x{b:02X}>"));
        types.push(6);
        scores.push(0.0);
    }
    for (t, s) in [
        ("▁", -1.0),
        ("a", -2.0),
        ("b", -2.0),
        ("▁a", -3.0),
        ("ab", -1.5),
        ("▁ab", -0.5),
    ] {
        tokens.push(t.to_owned());
        types.push(1);
        scores.push(s);
    }
    let mut md = Metadata::new();
    md.insert("tokenizer.ggml.model".into(), Value::String("llama".into()))
        .unwrap();
    md.insert(
        "tokenizer.ggml.tokens".into(),
        Value::Array(Array::String(tokens)),
    )
    .unwrap();
    md.insert(
        "tokenizer.ggml.token_type".into(),
        Value::Array(Array::I32(types)),
    )
    .unwrap();
    md.insert(
        "tokenizer.ggml.scores".into(),
        Value::Array(Array::F32(scores)),
    )
    .unwrap();
    md
}

#[test]
fn sentencepiece_with_byte_fallback() {
    let tok = Tokenizer::from_metadata(&spm_md()).unwrap();
    let id = |s: &str| tok.token_id(s).unwrap();
    assert!(tok.add_bos());
    assert_eq!(tok.bos_id(), Some(1));
    // Leading space added; "▁ab" has the best score.
    assert_eq!(tok.encode("ab", true, false), [1, id("▁ab")]);
    // Unknown characters become their UTF-8 bytes.
    assert_eq!(
        tok.encode("é", false, false),
        [id("▁"), id("<0xC3>"), id("<0xA9>")]
    );
    // Decoding drops the added leading space again (llama_detokenize's rule), also streamed.
    let ids = tok.encode("ab é", false, false);
    assert_eq!(tok.decode(&ids), "ab é");
    let mut d = tok.decoder();
    let streamed: String = ids.iter().map(|&i| d.push(i)).collect();
    assert_eq!(streamed + &d.finish(), "ab é");
    // A special token in the text resets the leading space.
    assert_eq!(tok.encode("a</s>ab", false, true), [id("▁a"), 2, id("▁ab")]);
    // Scores may be integers; a short score array is refused.
    let short = with(
        spm_md(),
        "tokenizer.ggml.scores",
        Value::Array(Array::F32(vec![0.0])),
    );
    assert!(matches!(err(&short), TokenizerError::LengthMismatch { .. }));
}

#[test]
fn chat_template_errors_are_typed() {
    let tok = Tokenizer::from_metadata(&bpe_md("gpt-2", &[], &[])).unwrap();
    assert!(matches!(
        tok.chat_template(),
        Err(TokenizerError::NoChatTemplate)
    ));
    assert!(matches!(
        tok.encode_chat(&[ChatMessage::new("user", "x")], true),
        Err(TokenizerError::NoChatTemplate)
    ));
    assert!(matches!(
        ChatTemplate::new("{% for %}", "", ""),
        Err(TokenizerError::Template(_))
    ));
    let strict = ChatTemplate::new(
        "{% if messages[0]['role'] != 'system' %}{{ raise_exception('need a system message') }}{% endif %}ok",
        "<s>",
        "</s>",
    )
    .unwrap();
    let e = strict
        .render(&[ChatMessage::new("user", "x")], true)
        .unwrap_err();
    assert!(e.to_string().contains("need a system message"), "{e}");
    assert_eq!(
        strict
            .render(&[ChatMessage::new("system", "x")], true)
            .unwrap(),
        "ok"
    );
    // Python-style methods, bos/eos variables, tojson and strftime_now are available.
    let t = ChatTemplate::new(
        "{{ bos_token }}{% for m in messages %}{{ m.content.strip().upper() }}|{{ m | tojson }}{% endfor %}{{ eos_token }}{{ strftime_now('%Y')|length }}",
        "<s>",
        "</s>",
    )
    .unwrap();
    assert_eq!(
        t.render(&[ChatMessage::new("user", "  hi ü ")], false)
            .unwrap(),
        "<s>HI Ü|{\"content\": \"  hi ü \", \"role\": \"user\"}</s>4"
    );
}

#[test]
fn a_tokenizer_round_trips_through_a_gguf_file() {
    let md = bpe_md("qwen2", &[("ab", 1)], &["a b"]);
    let mut w = GgufWriter::new();
    for (k, v) in md.entries() {
        w.add(k.clone(), v.clone()).unwrap();
    }
    let file = GgufFile::from_bytes(w.to_bytes().unwrap()).unwrap();
    let tok = Tokenizer::from_gguf(&file).unwrap();
    assert_eq!(tok.pre_tokenizer(), Some("qwen2"));
    assert_eq!(
        tok.encode("ab12", false, false),
        [256, tok.token_id("1").unwrap(), tok.token_id("2").unwrap()]
    );
}

fn junk_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<u32>().prop_map(Value::U32),
        any::<i32>().prop_map(Value::I32),
        any::<i64>().prop_map(Value::I64),
        any::<bool>().prop_map(Value::Bool),
        ".{0,6}".prop_map(Value::String),
        proptest::collection::vec(".{0,4}", 0..300).prop_map(|v| Value::Array(Array::String(v))),
        proptest::collection::vec(-2i32..8, 0..300).prop_map(|v| Value::Array(Array::I32(v))),
        proptest::collection::vec(any::<f32>(), 0..300).prop_map(|v| Value::Array(Array::F32(v))),
    ]
}

const KEYS: &[&str] = &[
    "tokenizer.ggml.model",
    "tokenizer.ggml.pre",
    "tokenizer.ggml.tokens",
    "tokenizer.ggml.token_type",
    "tokenizer.ggml.scores",
    "tokenizer.ggml.merges",
    "tokenizer.ggml.bos_token_id",
    "tokenizer.ggml.eos_token_id",
    "tokenizer.ggml.add_bos_token",
    "tokenizer.ggml.add_space_prefix",
    "tokenizer.chat_template",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    /// Random replacements of any tokenizer key never panic, and whatever loads encodes and
    /// decodes arbitrary text without panicking.
    #[test]
    fn junk_metadata_never_panics(
        base in prop_oneof![Just(0u8), Just(1u8)],
        edits in proptest::collection::vec((proptest::sample::select(KEYS), junk_value()), 1..4),
        text in "\\PC{0,40}",
    ) {
        let mut md = if base == 0 {
            bpe_md("llama-bpe", &[("ab", 1), ("<|x|>", 3)], &["a b"])
        } else {
            spm_md()
        };
        for (k, v) in edits {
            md = with(md, k, v);
        }
        if let Ok(tok) = Tokenizer::from_metadata(&md) {
            for (a, p) in [(false, false), (true, true)] {
                let ids = tok.encode(&text, a, p);
                let _ = tok.decode(&ids);
                let mut d = tok.decoder();
                for id in ids {
                    let _ = d.push(id);
                }
                let _ = d.finish();
            }
            let _ = tok.chat_template().map(|t| t.render(&[ChatMessage::new("user", &text)], true));
        }
    }
}
