#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Our tokenizer against llama.cpp on the vocabulary-only GGUFs that llama.cpp tests itself with
//! (`models/ggml-vocab-*.gguf`): Llama 3 (`llama-bpe`), Llama 2 (SentencePiece, `llama-spm`),
//! Qwen2, GPT-2, StarCoder, Refact, DeepSeek-Coder, Falcon, MPT and Command-R.
//!
//! The files ship inside the llama-cpp-python 0.3.36 source distribution on PyPI; the first run
//! downloads it once (77 MB, SHA-256 pinned), extracts the vocabularies into the nmk model cache
//! (`<cache>/llama-cpp-python-0.3.36-vocab/`, each file checked against the SHA-256 recorded in
//! its fixture) and later runs use the cache. The expected ids were made by the real llama.cpp
//! with `bench/llama_peer/tokenize.py` on the shared corpus.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use nmk_neural::gguf::GgufFile;
use nmk_neural::models::default_cache_dir;
use nmk_neural::tokenizer::{Tokenizer, VocabKind};
use serde_json::Value;
use sha2::{Digest, Sha256};

const SDIST_URL: &str = "https://files.pythonhosted.org/packages/ec/e9/e7de2b0463ea3ffbf0ede6cb21b58c1258a8f6521aae45ca773a59fe7cf3/llama_cpp_python-0.3.36.tar.gz";
const SDIST_SHA256: &str = "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e";
const SDIST_SIZE: u64 = 76_589_250;

/// (vocabulary, pre-tokenizer family we expect, vocabulary kind)
const VOCABS: [(&str, Option<&str>, VocabKind); 10] = [
    ("llama-bpe", Some("llama3"), VocabKind::Bpe),
    ("llama-spm", None, VocabKind::Spm),
    ("qwen2", Some("qwen2"), VocabKind::Bpe),
    ("gpt-2", Some("gpt2"), VocabKind::Bpe),
    ("starcoder", Some("smollm"), VocabKind::Bpe),
    ("refact", Some("smollm"), VocabKind::Bpe),
    ("deepseek-coder", Some("deepseek-coder"), VocabKind::Bpe),
    ("falcon", Some("falcon"), VocabKind::Bpe),
    ("mpt", Some("gpt2"), VocabKind::Bpe),
    ("command-r", Some("smollm"), VocabKind::Bpe),
];

fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/tokenizer")
}

fn fixture(name: &str) -> Value {
    let path = data_dir().join(format!("expected-vocab-{name}.json"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn sha256_of(path: &Path) -> Option<String> {
    std::fs::read(path).ok().map(|b| hex(&Sha256::digest(&b)))
}

fn download_sdist() -> Vec<u8> {
    let tls = ureq::tls::TlsConfig::builder()
        .root_certs(ureq::tls::RootCerts::PlatformVerifier)
        .build();
    let agent = ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_per_read(Some(Duration::from_secs(120)))
        .tls_config(tls)
        .build()
        .new_agent();
    let mut last_err = String::new();
    for _attempt in 0..3 {
        match agent.get(SDIST_URL).call() {
            Ok(resp) => {
                let mut body = Vec::with_capacity(usize::try_from(SDIST_SIZE).unwrap());
                match resp
                    .into_body()
                    .into_reader()
                    .take(SDIST_SIZE + 1)
                    .read_to_end(&mut body)
                {
                    Ok(_) if hex(&Sha256::digest(&body)) == SDIST_SHA256 => return body,
                    Ok(n) => last_err = format!("{n} bytes with the wrong SHA-256"),
                    Err(e) => last_err = e.to_string(),
                }
            }
            Err(e) => last_err = e.to_string(),
        }
    }
    panic!("could not download {SDIST_URL}: {last_err}");
}

/// Reads a (pax/ustar) tar stream and returns the files whose path ends in one of `wanted`.
fn extract(tar_gz: &[u8], wanted: &[String]) -> Vec<(String, Vec<u8>)> {
    let mut tar = Vec::new();
    flate2::read::GzDecoder::new(tar_gz)
        .read_to_end(&mut tar)
        .unwrap();
    let field = |h: &[u8]| {
        let end = h.iter().position(|&b| b == 0).unwrap_or(h.len());
        String::from_utf8_lossy(&h[..end]).into_owned()
    };
    let mut out = Vec::new();
    let mut pos = 0;
    let mut pax_path: Option<String> = None;
    while pos + 512 <= tar.len() {
        let h = &tar[pos..pos + 512];
        if h.iter().all(|&b| b == 0) {
            break;
        }
        let size_field = field(&h[124..136]);
        let size = usize::from_str_radix(size_field.trim(), 8).unwrap();
        let mut name = field(&h[0..100]);
        let prefix = field(&h[345..500]);
        if &h[257..262] == b"ustar" && !prefix.is_empty() {
            name = format!("{prefix}/{name}");
        }
        let body = &tar[pos + 512..pos + 512 + size];
        match h[156] {
            b'x' => {
                // pax records: "<len> key=value\n"
                for rec in String::from_utf8_lossy(body).split('\n') {
                    if let Some(p) = rec
                        .split_once(' ')
                        .and_then(|(_, kv)| kv.strip_prefix("path="))
                    {
                        pax_path = Some(p.to_owned());
                    }
                }
            }
            b'0' | 0 => {
                let path = pax_path.take().unwrap_or(name);
                if wanted
                    .iter()
                    .any(|w| path.ends_with(&format!("/models/{w}")))
                {
                    out.push((path.rsplit('/').next().unwrap().to_owned(), body.to_vec()));
                }
            }
            _ => {
                pax_path = None;
            }
        }
        pos += 512 + size.div_ceil(512) * 512;
    }
    out
}

/// The directory holding every vocabulary, downloading and extracting once when needed.
fn vocab_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = default_cache_dir()
            .unwrap()
            .join("llama-cpp-python-0.3.36-vocab");
        let want: Vec<(String, String)> = VOCABS
            .iter()
            .map(|(v, _, _)| {
                let sha = fixture(v)["model_sha256"].as_str().unwrap().to_owned();
                (format!("ggml-vocab-{v}.gguf"), sha)
            })
            .collect();
        let missing: Vec<String> = want
            .iter()
            .filter(|(f, sha)| sha256_of(&dir.join(f)).as_deref() != Some(sha.as_str()))
            .map(|(f, _)| f.clone())
            .collect();
        if !missing.is_empty() {
            std::fs::create_dir_all(&dir).unwrap();
            let sdist = download_sdist();
            for (file, bytes) in extract(&sdist, &missing) {
                let tmp = dir.join(format!("{file}.part"));
                std::fs::write(&tmp, &bytes).unwrap();
                std::fs::rename(&tmp, dir.join(&file)).unwrap();
            }
            for (f, sha) in &want {
                assert_eq!(
                    sha256_of(&dir.join(f)).as_deref(),
                    Some(sha.as_str()),
                    "{f} from the sdist differs from the fixture's file"
                );
            }
        }
        dir
    })
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| u32::try_from(x.as_u64().unwrap()).unwrap())
        .collect()
}

/// Every corpus case, three ways, on ten vocabularies, equals llama.cpp; so do the special ids,
/// the BOS policy and the end-of-generation set.
#[test]
fn ids_equal_llama_cpp_on_llama_cpp_test_vocabularies() {
    let dir = vocab_dir();
    let mut failures = Vec::new();
    for (name, family, kind) in VOCABS {
        let file = GgufFile::open(dir.join(format!("ggml-vocab-{name}.gguf"))).unwrap();
        let tok = Tokenizer::from_gguf(&file).unwrap();
        assert_eq!(tok.kind(), kind, "{name}");
        assert_eq!(tok.pre_tokenizer(), family, "{name}");
        let fx = fixture(name);
        assert_eq!(fx["llama_cpp_python_version"], "0.3.36");
        let v = &fx["vocab"];
        let opt = |x: &Value| x.as_u64().map(|n| u32::try_from(n).unwrap());
        assert_eq!(tok.bos_id(), opt(&v["bos"]), "{name} bos");
        assert_eq!(tok.eos_id(), opt(&v["eos"]), "{name} eos");
        assert_eq!(
            tok.add_bos(),
            v["add_bos"].as_bool().unwrap(),
            "{name} add_bos"
        );
        assert_eq!(
            tok.add_eos(),
            v["add_eos"].as_bool().unwrap(),
            "{name} add_eos"
        );
        assert_eq!(
            tok.eos_ids().iter().copied().collect::<Vec<_>>(),
            ids(&v["eog"]),
            "{name} eog"
        );
        for case in fx["cases"].as_array().unwrap() {
            let text = case["text"].as_str().unwrap();
            for (key, add_special, parse_special) in [
                ("plain", false, false),
                ("parsed", false, true),
                ("full", true, true),
            ] {
                let want = ids(&case[key]);
                let got = tok.encode(text, add_special, parse_special);
                if got != want {
                    failures.push(format!(
                        "{name} {} {key}: {text:?}\n   want {want:?}\n    got {got:?}",
                        case["id"]
                    ));
                }
            }
            // Where llama.cpp does no space clean-up, its detokenizer equals our decode.
            if matches!(name, "llama-spm" | "qwen2" | "deepseek-coder" | "command-r") {
                assert_eq!(
                    tok.decode(&ids(&case["parsed"])),
                    case["detokenized"].as_str().unwrap(),
                    "{name} {}",
                    case["id"]
                );
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
