//! The tokenizer built from GGUF metadata, and chat templates.
//!
//! [`Tokenizer::from_gguf`] reads `tokenizer.ggml.*` and reproduces llama.cpp's tokenizer, so
//! that ids equal llama.cpp's for the same text (checked against fixtures made by the real
//! llama.cpp, see `bench/llama_peer/`):
//!
//! - **`gpt2` vocabularies** (byte-level BPE): the pre-tokenizer named by `tokenizer.ggml.pre`
//!   (`smollm`, `qwen2`, `llama-bpe` and their aliases, `gpt-2`, `default`, `falcon`,
//!   `deepseek-coder`, `qwen35`; see [`pretok`]) cuts text into words, each word is encoded by the
//!   merges of `tokenizer.ggml.merges` (lowest rank first, leftmost among equals), with a
//!   per-word cache.
//! - **`llama` vocabularies** (SentencePiece): score-driven merges over characters with `▁` for
//!   spaces, a leading space, and `<0xXX>` byte fallback.
//! - **Special tokens**: control (type 3), user-defined (4) and unknown (2) tokens are found as
//!   whole strings in the input, longest first, before any pre-tokenization; control and unknown
//!   ones only when `parse_special` is on, user-defined ones always (llama.cpp's rule).
//!   Tokens named like end-of-turn markers (`<|im_end|>`, `<|eot_id|>`, `<|endoftext|>`, …) are
//!   treated as control tokens and end generation, as in llama.cpp.
//! - **BOS/EOS**: added by `encode(…, add_special = true)` according to
//!   `tokenizer.ggml.add_bos_token` / `add_eos_token`, with llama.cpp's defaults per vocabulary
//!   type and pre-tokenizer when the keys are absent (BPE: no BOS except the Llama 3 family;
//!   SentencePiece: BOS).
//!
//! Decoding concatenates token pieces (special tokens as their text), dropping SentencePiece's
//! added leading space like `llama_detokenize`; it does not apply llama.cpp's optional
//! `clean_spaces` post-processing (which would break `decode(encode(x)) == x`). [`Decoder`]
//! streams the same bytes and only ever emits complete UTF-8. Encoding caches token ids per
//! pre-token word; a thread that finds the cache busy encodes without it rather than waiting. [`ChatTemplate`] renders
//! `tokenizer.chat_template` with minijinja.
//!
//! Not reproduced from llama.cpp: per-model `lstrip`/`rstrip` attributes (set there by model
//! name for Phi-3 and a few BERT models), the o200k/Gemma-4 EOG tweaks, and pre-tokenizers not
//! listed above (they are refused with [`TokenizerError::UnsupportedPreTokenizer`]).

mod bpe;
mod bytes;
mod chat;
mod classes;
mod error;
mod pretok;
mod spm;

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

pub use chat::{ChatMessage, ChatTemplate};
pub use error::TokenizerError;

use crate::gguf::{GgufFile, Metadata};
use bpe::Bpe;
use bytes::ByteMap;
use pretok::{PreSpec, PreTokenizer};
use spm::Spm;

/// Token attributes, with llama.cpp's bit values (`llama_token_attr`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TokenAttr(pub u32);

impl TokenAttr {
    /// No type known.
    pub const UNDEFINED: u32 = 0;
    /// The unknown token.
    pub const UNKNOWN: u32 = 1 << 0;
    /// An unused slot.
    pub const UNUSED: u32 = 1 << 1;
    /// An ordinary token.
    pub const NORMAL: u32 = 1 << 2;
    /// A control token (BOS, EOS, chat markers).
    pub const CONTROL: u32 = 1 << 3;
    /// A user-defined token, matched as a whole string even without `parse_special`.
    pub const USER_DEFINED: u32 = 1 << 4;
    /// A byte token (`<0x0A>`).
    pub const BYTE: u32 = 1 << 5;

    /// Whether any of `bits` is set.
    pub fn has(self, bits: u32) -> bool {
        self.0 & bits != 0
    }

    fn from_token_type(t: i32) -> TokenAttr {
        TokenAttr(match t {
            1 => Self::NORMAL,
            2 => Self::UNKNOWN,
            3 => Self::CONTROL,
            4 => Self::USER_DEFINED,
            5 => Self::UNUSED,
            6 => Self::BYTE,
            _ => Self::UNDEFINED,
        })
    }
}

/// The vocabulary type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VocabKind {
    /// Byte-level BPE (`tokenizer.ggml.model == "gpt2"`).
    Bpe,
    /// SentencePiece (`tokenizer.ggml.model == "llama"`).
    Spm,
}

#[derive(Debug)]
enum Engine {
    Bpe {
        bpe: Box<Bpe>,
        pre: PreTokenizer,
        family: &'static str,
    },
    Spm {
        spm: Box<Spm>,
        scores: Vec<f32>,
        add_space_prefix: bool,
    },
}

/// Words cached per tokenizer before the cache is cleared.
const WORD_CACHE_CAP: usize = 1 << 16;

/// A tokenizer built from GGUF metadata. Cheap to share between threads (`Send + Sync`).
#[derive(Debug)]
pub struct Tokenizer {
    engine: Engine,
    tokens: Vec<String>,
    attrs: Vec<TokenAttr>,
    text_to_id: HashMap<String, u32>,
    pieces: Vec<Vec<u8>>,
    /// Special-token ids in matching order (longest text first).
    specials: Vec<u32>,
    bytes: ByteMap,
    bos: Option<u32>,
    eos: Option<u32>,
    eot: Option<u32>,
    eom: Option<u32>,
    pad: Option<u32>,
    unk: Option<u32>,
    eog: BTreeSet<u32>,
    add_bos: bool,
    add_eos: bool,
    /// Decoding drops one leading space of the first token (SentencePiece's added prefix).
    strip_first_space: bool,
    chat_template: Option<String>,
    cache: Mutex<HashMap<Box<str>, Box<[u32]>>>,
}

/// Names llama.cpp recognises as end-of-turn tokens, in the order we prefer them.
const EOT_NAMES: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "<｜end▁of▁sentence｜>",
    "<end_of_utterance>",
];
const EOM_NAMES: &[&str] = &["<|eom_id|>"];
const FIM_PRE_NAMES: &[&str] = &[
    "<|fim_prefix|>",
    "<fim-prefix>",
    "<fim_prefix>",
    "<｜fim▁begin｜>",
    "<PRE>",
    "▁<PRE>",
    "<|code_prefix|>",
    "<|prefix|>",
];
const FIM_SUF_NAMES: &[&str] = &[
    "<|fim_suffix|>",
    "<fim-suffix>",
    "<fim_suffix>",
    "<｜fim▁hole｜>",
    "<SUF>",
    "▁<SUF>",
    "<|code_suffix|>",
    "<|suffix|>",
];
const FIM_MID_NAMES: &[&str] = &[
    "<|fim_middle|>",
    "<fim-middle>",
    "<fim_middle>",
    "<｜fim▁end｜>",
    "<MID>",
    "▁<MID>",
    "<|code_middle|>",
    "<|middle|>",
];
const FIM_PAD_NAMES: &[&str] = &["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"];
const FIM_REP_NAMES: &[&str] = &[
    "<|fim_repo|>",
    "<|repo_name|>",
    "<fim-repo>",
    "<REPO>",
    "<reponame>",
];
const FIM_SEP_NAMES: &[&str] = &["<|file_sep|>"];
/// Names that end generation (llama.cpp's list).
const EOG_NAMES: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<｜end▁of▁sentence｜>",
    "[e~[",
];

/// One piece of input after special-token matching.
#[derive(Debug, Clone, Copy)]
enum Fragment {
    Text(usize, usize),
    Token(u32),
}

fn optional_id(md: &Metadata, key: &'static str, n: usize) -> Result<Option<u32>, TokenizerError> {
    let Some(v) = md.get(key) else {
        return Ok(None);
    };
    let raw = v.as_integer().ok_or_else(|| {
        TokenizerError::Metadata(crate::gguf::GgufError::WrongType {
            key: key.to_owned(),
            expected: "integer",
            found: v.describe(),
        })
    })?;
    match u32::try_from(raw) {
        Ok(id) if usize::try_from(id).is_ok_and(|i| i < n) => Ok(Some(id)),
        _ => Err(TokenizerError::TokenIdOutOfRange {
            key,
            id: raw,
            vocab_size: n,
        }),
    }
}

impl Tokenizer {
    /// Builds the tokenizer of a GGUF file.
    pub fn from_gguf(file: &GgufFile) -> Result<Tokenizer, TokenizerError> {
        Tokenizer::from_metadata(file.metadata())
    }

    /// Builds the tokenizer from a metadata table (the `tokenizer.*` keys).
    pub fn from_metadata(md: &Metadata) -> Result<Tokenizer, TokenizerError> {
        let model = md.get_str("tokenizer.ggml.model")?;
        let raw_tokens = md.get_str_array("tokenizer.ggml.tokens")?;
        let n = raw_tokens.len();
        if n == 0 {
            return Err(TokenizerError::EmptyVocab);
        }
        let n_u32 = u32::try_from(n)
            .ok()
            .filter(|&v| v < u32::MAX / 2)
            .ok_or(TokenizerError::VocabTooLarge { len: n })?;

        let mut attrs = vec![TokenAttr(TokenAttr::NORMAL); n];
        if md.contains("tokenizer.ggml.token_type") {
            let types = md.get_i32_array("tokenizer.ggml.token_type")?;
            if types.len() < n {
                return Err(TokenizerError::LengthMismatch {
                    key: "tokenizer.ggml.token_type",
                    expected: n,
                    found: types.len(),
                });
            }
            for (a, &t) in attrs.iter_mut().zip(&types) {
                *a = TokenAttr::from_token_type(t);
            }
        }
        let scores: Vec<f32> = if md.contains("tokenizer.ggml.scores") {
            let s = match md.get_f32_array("tokenizer.ggml.scores") {
                Ok(s) => s.to_vec(),
                Err(_) => md
                    .get_i32_array("tokenizer.ggml.scores")?
                    .into_iter()
                    .map(|v| v as f32)
                    .collect(),
            };
            if s.len() < n {
                return Err(TokenizerError::LengthMismatch {
                    key: "tokenizer.ggml.scores",
                    expected: n,
                    found: s.len(),
                });
            }
            s
        } else {
            vec![0.0; n]
        };

        let mut tokens = Vec::with_capacity(n);
        let mut text_to_id = HashMap::with_capacity(n);
        for (i, t) in raw_tokens.iter().enumerate() {
            let text = if t.is_empty() {
                format!("[EMPTY_{i}]")
            } else {
                t.clone()
            };
            // The last of duplicate texts wins, as in llama.cpp.
            text_to_id.insert(text.clone(), u32::try_from(i).unwrap_or(u32::MAX));
            tokens.push(text);
        }

        let bytes = ByteMap::new();
        let (kind, mut bos, mut eos, mut unk, mut add_bos, mut add_eos) = match model {
            "gpt2" => (VocabKind::Bpe, Some(11), Some(11), None, false, false),
            "llama" => (VocabKind::Spm, Some(1), Some(2), Some(0), true, false),
            other => {
                return Err(TokenizerError::UnsupportedModel {
                    model: other.to_owned(),
                });
            }
        };
        let clamp = |id: Option<u32>| id.filter(|&i| i < n_u32);
        (bos, eos, unk) = (clamp(bos), clamp(eos), clamp(unk));

        let engine = match kind {
            VocabKind::Bpe => {
                let pre_name = md.opt_str("tokenizer.ggml.pre")?.unwrap_or("default");
                let spec: PreSpec = pretok::spec_for(pre_name)?;
                add_bos = spec.add_bos;
                let merges = md.get_str_array("tokenizer.ggml.merges")?;
                let bpe = Bpe::new(merges, &text_to_id, n_u32, &bytes, spec.ignore_merges)?;
                Engine::Bpe {
                    bpe: Box::new(bpe),
                    pre: PreTokenizer::new(&spec)?,
                    family: spec.family,
                }
            }
            VocabKind::Spm => Engine::Spm {
                spm: Box::new(Spm::new(&text_to_id, unk)),
                scores: scores.clone(),
                add_space_prefix: md
                    .opt_bool("tokenizer.ggml.add_space_prefix")?
                    .unwrap_or(true),
            },
        };
        let strip_first_space = md
            .opt_bool("tokenizer.ggml.add_space_prefix")?
            .unwrap_or(kind == VocabKind::Spm);

        let keyed =
            |key: &'static str, default: Option<u32>| -> Result<Option<u32>, TokenizerError> {
                Ok(optional_id(md, key, n)?.or(default))
            };
        bos = keyed("tokenizer.ggml.bos_token_id", bos)?;
        eos = keyed("tokenizer.ggml.eos_token_id", eos)?;
        unk = keyed("tokenizer.ggml.unknown_token_id", unk)?;
        let mut eot = keyed("tokenizer.ggml.eot_token_id", None)?;
        let mut eom = keyed("tokenizer.ggml.eom_token_id", None)?;
        let pad = keyed("tokenizer.ggml.padding_token_id", None)?;
        keyed("tokenizer.ggml.seperator_token_id", None)?;
        let mut fim_pre = keyed("tokenizer.ggml.fim_pre_token_id", None)?;
        let mut fim_suf = keyed("tokenizer.ggml.fim_suf_token_id", None)?;
        let mut fim_mid = keyed("tokenizer.ggml.fim_mid_token_id", None)?;
        let mut fim_pad = keyed("tokenizer.ggml.fim_pad_token_id", None)?;
        let mut fim_rep = keyed("tokenizer.ggml.fim_rep_token_id", None)?;
        let mut fim_sep = keyed("tokenizer.ggml.fim_sep_token_id", None)?;
        if let Some(v) = md.opt_bool("tokenizer.ggml.add_bos_token")? {
            add_bos = v;
        }
        if let Some(v) = md.opt_bool("tokenizer.ggml.add_eos_token")? {
            add_eos = v;
        }
        if add_bos && bos.is_none() {
            add_bos = false;
        }
        if add_eos && eos.is_none() {
            add_eos = false;
        }

        // Recognise marker tokens by their text, and make them control tokens.
        let find = |slot: &mut Option<u32>, names: &[&str], attrs: &mut [TokenAttr]| {
            if slot.is_some() {
                return;
            }
            for name in names {
                if let Some(&id) = text_to_id.get(*name) {
                    *slot = Some(id);
                    if let Some(a) = attrs.get_mut(id as usize) {
                        a.0 |= TokenAttr::CONTROL;
                    }
                    return;
                }
            }
        };
        find(&mut eot, EOT_NAMES, &mut attrs);
        find(&mut eom, EOM_NAMES, &mut attrs);
        find(&mut fim_pre, FIM_PRE_NAMES, &mut attrs);
        find(&mut fim_suf, FIM_SUF_NAMES, &mut attrs);
        find(&mut fim_mid, FIM_MID_NAMES, &mut attrs);
        find(&mut fim_pad, FIM_PAD_NAMES, &mut attrs);
        find(&mut fim_rep, FIM_REP_NAMES, &mut attrs);
        find(&mut fim_sep, FIM_SEP_NAMES, &mut attrs);
        // Control tokens named "unused" are unused.
        for (a, t) in attrs.iter_mut().zip(&tokens) {
            if a.has(TokenAttr::CONTROL) && t.contains("unused") {
                a.0 |= TokenAttr::UNUSED;
            }
        }
        let mut eog: BTreeSet<u32> = [fim_pad, fim_rep, fim_sep].into_iter().flatten().collect();
        for name in EOG_NAMES {
            if let Some(&id) = text_to_id.get(*name) {
                eog.insert(id);
                if let Some(a) = attrs.get_mut(id as usize) {
                    a.0 |= TokenAttr::CONTROL;
                }
            }
        }
        // gpt-oss: these markers are always rendered.
        for name in ["<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"] {
            if let Some(&id) = text_to_id.get(name)
                && let Some(a) = attrs.get_mut(id as usize)
            {
                *a = TokenAttr(TokenAttr::USER_DEFINED);
            }
        }
        eog.extend([eos, eot, eom].into_iter().flatten());

        let mut specials: Vec<u32> = (0..n_u32)
            .filter(|&i| {
                attrs[i as usize]
                    .has(TokenAttr::CONTROL | TokenAttr::USER_DEFINED | TokenAttr::UNKNOWN)
            })
            .collect();
        specials.sort_by(|&a, &b| {
            tokens[b as usize]
                .len()
                .cmp(&tokens[a as usize].len())
                .then(a.cmp(&b))
        });

        let mut tok = Tokenizer {
            engine,
            tokens,
            attrs,
            text_to_id,
            pieces: Vec::new(),
            specials,
            bytes,
            bos,
            eos,
            eot,
            eom,
            pad,
            unk,
            eog,
            add_bos,
            add_eos,
            strip_first_space,
            chat_template: md.opt_str("tokenizer.chat_template")?.map(str::to_owned),
            cache: Mutex::new(HashMap::new()),
        };
        tok.pieces = (0..n).map(|i| tok.compute_piece(i)).collect();
        Ok(tok)
    }

    fn compute_piece(&self, i: usize) -> Vec<u8> {
        let (Some(text), Some(attr)) = (self.tokens.get(i), self.attrs.get(i)) else {
            return Vec::new();
        };
        if attr.has(TokenAttr::UNKNOWN | TokenAttr::CONTROL | TokenAttr::USER_DEFINED) {
            return text.as_bytes().to_vec();
        }
        match &self.engine {
            Engine::Bpe { .. } => {
                if attr.has(TokenAttr::NORMAL) {
                    let mut out = Vec::with_capacity(text.len());
                    self.bytes.decode(text, &mut out);
                    out
                } else if attr.has(TokenAttr::BYTE) {
                    let mut out = Vec::new();
                    self.bytes.decode(text, &mut out);
                    out.truncate(1);
                    out
                } else {
                    Vec::new()
                }
            }
            Engine::Spm { .. } => {
                if attr.has(TokenAttr::NORMAL) {
                    text.replace('▁', " ").into_bytes()
                } else if attr.has(TokenAttr::BYTE) {
                    text.strip_prefix("<0x")
                        .and_then(|h| h.strip_suffix('>'))
                        .and_then(|h| u8::from_str_radix(h, 16).ok())
                        .map(|b| vec![b])
                        .unwrap_or_default()
                } else {
                    Vec::new()
                }
            }
        }
    }

    /// The vocabulary type.
    pub fn kind(&self) -> VocabKind {
        match self.engine {
            Engine::Bpe { .. } => VocabKind::Bpe,
            Engine::Spm { .. } => VocabKind::Spm,
        }
    }

    /// The pre-tokenizer family (`"smollm"`, `"qwen2"`, `"llama3"`, …); `None` for SentencePiece.
    pub fn pre_tokenizer(&self) -> Option<&'static str> {
        match &self.engine {
            Engine::Bpe { family, .. } => Some(family),
            Engine::Spm { .. } => None,
        }
    }

    /// Number of tokens in the vocabulary.
    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    /// The stored text of a token (byte-level alphabet for BPE, `▁` for SentencePiece).
    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(String::as_str)
    }

    /// The id of a token text, if it is in the vocabulary.
    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.text_to_id.get(text).copied()
    }

    /// The attributes of a token (llama.cpp's bits), `None` out of range.
    pub fn attr(&self, id: u32) -> Option<TokenAttr> {
        self.attrs.get(id as usize).copied()
    }

    /// Whether a token is special: control, user-defined or unknown.
    pub fn is_special(&self, id: u32) -> bool {
        self.attr(id).is_some_and(|a| {
            a.has(TokenAttr::CONTROL | TokenAttr::USER_DEFINED | TokenAttr::UNKNOWN)
        })
    }

    /// Beginning-of-sequence token.
    pub fn bos_id(&self) -> Option<u32> {
        self.bos
    }
    /// End-of-sequence token.
    pub fn eos_id(&self) -> Option<u32> {
        self.eos
    }
    /// End-of-turn token (from metadata, else recognised by its text).
    pub fn eot_id(&self) -> Option<u32> {
        self.eot
    }
    /// End-of-message token (`<|eom_id|>`).
    pub fn eom_id(&self) -> Option<u32> {
        self.eom
    }
    /// Padding token.
    pub fn pad_id(&self) -> Option<u32> {
        self.pad
    }
    /// Unknown token.
    pub fn unk_id(&self) -> Option<u32> {
        self.unk
    }
    /// Whether `encode(…, add_special = true)` adds BOS.
    pub fn add_bos(&self) -> bool {
        self.add_bos
    }
    /// Whether `encode(…, add_special = true)` adds EOS.
    pub fn add_eos(&self) -> bool {
        self.add_eos
    }
    /// The tokens that end generation: EOS, end-of-turn and the other markers llama.cpp treats
    /// as end of generation.
    pub fn eos_ids(&self) -> &BTreeSet<u32> {
        &self.eog
    }
    /// Whether a token ends generation.
    pub fn is_eog(&self, id: u32) -> bool {
        self.eog.contains(&id)
    }
    /// The raw `tokenizer.chat_template`, if any.
    pub fn chat_template_source(&self) -> Option<&str> {
        self.chat_template.as_deref()
    }

    /// The bytes a token stands for (special tokens as their text; unused slots and ids
    /// outside the vocabulary as nothing).
    pub fn token_to_piece(&self, id: u32) -> Vec<u8> {
        self.piece(id).to_vec()
    }

    fn piece(&self, id: u32) -> &[u8] {
        self.pieces.get(id as usize).map_or(&[], Vec::as_slice)
    }

    /// Decodes ids to text: the concatenated pieces (special tokens as their text), invalid
    /// UTF-8 replaced by U+FFFD; ids outside the vocabulary contribute nothing. Where the
    /// vocabulary adds a leading space when encoding (SentencePiece), one leading space of the
    /// first token is dropped, as llama.cpp's `llama_detokenize` does; no other clean-up.
    pub fn decode(&self, ids: &[u32]) -> String {
        let mut bytes = Vec::new();
        for (i, &id) in ids.iter().enumerate() {
            bytes.extend_from_slice(self.piece_at(id, i == 0));
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }

    fn piece_at(&self, id: u32, first: bool) -> &[u8] {
        let p = self.piece(id);
        if first && self.strip_first_space {
            p.strip_prefix(b" ").unwrap_or(p)
        } else {
            p
        }
    }

    /// A streaming decoder over this vocabulary.
    pub fn decoder(&self) -> Decoder<'_> {
        Decoder {
            tok: self,
            pending: Vec::new(),
            first: true,
        }
    }

    /// Encodes text. `add_special` adds BOS/EOS as the vocabulary asks; `parse_special` lets
    /// control-token texts in the input become those tokens (user-defined tokens always do).
    pub fn encode(&self, text: &str, add_special: bool, parse_special: bool) -> Vec<u32> {
        let mut out = Vec::with_capacity(text.len() / 3 + 2);
        if add_special && self.add_bos {
            out.extend(self.bos);
        }
        if !text.is_empty() {
            let fragments = self.partition(text, parse_special);
            match &self.engine {
                Engine::Bpe { bpe, pre, .. } => {
                    self.encode_bpe(text, &fragments, bpe, pre, &mut out);
                }
                Engine::Spm {
                    spm,
                    scores,
                    add_space_prefix,
                } => {
                    let mut prev_special = true;
                    for f in &fragments {
                        match *f {
                            Fragment::Token(id) => {
                                out.push(id);
                                prev_special = true;
                            }
                            Fragment::Text(s, e) => {
                                let mut t = String::with_capacity(e - s + 3);
                                if *add_space_prefix && prev_special {
                                    t.push('▁');
                                }
                                t.push_str(&text[s..e].replace(' ', "▁"));
                                spm.encode(&t, &self.text_to_id, scores, &mut out);
                                prev_special = false;
                            }
                        }
                    }
                }
            }
        }
        if add_special && self.add_eos {
            out.extend(self.eos);
        }
        out
    }

    fn encode_bpe(
        &self,
        text: &str,
        fragments: &[Fragment],
        bpe: &Bpe,
        pre: &PreTokenizer,
        out: &mut Vec<u32>,
    ) {
        let mut words = Vec::new();
        let mut encoded = String::new();
        // Another thread encoding at the same time does not wait: it works without the cache.
        let mut guard = match self.cache.try_lock() {
            Ok(g) => Some(g),
            Err(std::sync::TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        };
        for f in fragments {
            match *f {
                Fragment::Token(id) => out.push(id),
                Fragment::Text(s, e) => {
                    words.clear();
                    if pre.split(&text[s..e], &mut words).is_err() {
                        // The regex engine gave up (backtrack limit): fall back to one word per
                        // whitespace-separated run rather than losing the text.
                        words.clear();
                        words.push(&text[s..e]);
                    }
                    for w in &words {
                        if let Some(ids) = guard.as_ref().and_then(|c| c.get(*w)) {
                            out.extend_from_slice(ids);
                            continue;
                        }
                        encoded.clear();
                        self.bytes.encode(w.as_bytes(), &mut encoded);
                        let start = out.len();
                        bpe.encode_word(w.as_bytes(), &encoded, &self.text_to_id, out);
                        if let Some(cache) = guard.as_mut() {
                            if cache.len() >= WORD_CACHE_CAP {
                                cache.clear();
                            }
                            cache.insert((*w).into(), out[start..].into());
                        }
                    }
                }
            }
        }
    }

    /// Splits the input at special-token texts: for each special token, longest first, every
    /// remaining text fragment is cut at its occurrences (left to right, non-overlapping).
    fn partition(&self, text: &str, parse_special: bool) -> Vec<Fragment> {
        let mut frags = vec![Fragment::Text(0, text.len())];
        for &id in &self.specials {
            let attr = self.attrs[id as usize];
            if !parse_special && attr.has(TokenAttr::CONTROL | TokenAttr::UNKNOWN) {
                continue;
            }
            let needle = self.tokens[id as usize].as_str();
            if !text.contains(needle) {
                continue;
            }
            let mut next = Vec::with_capacity(frags.len() + 2);
            for f in &frags {
                let Fragment::Text(mut s, e) = *f else {
                    next.push(*f);
                    continue;
                };
                while let Some(p) = text[s..e].find(needle) {
                    if p > 0 {
                        next.push(Fragment::Text(s, s + p));
                    }
                    next.push(Fragment::Token(id));
                    s += p + needle.len();
                }
                if s < e {
                    next.push(Fragment::Text(s, e));
                }
            }
            frags = next;
        }
        frags
    }

    /// Renders a conversation with the model's chat template and encodes it the way
    /// llama.cpp's server does: special tokens parsed, BOS added when the vocabulary asks for it
    /// (a BOS text the template already wrote at the start is removed first, so there is one).
    pub fn encode_chat(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<Vec<u32>, TokenizerError> {
        let template = self.chat_template()?;
        let mut prompt = template.render(messages, add_generation_prompt)?;
        if self.add_bos
            && let Some(bos) = self.bos.and_then(|b| self.tokens.get(b as usize))
            && prompt.starts_with(bos.as_str())
        {
            prompt.drain(..bos.len());
        }
        if self.add_eos
            && let Some(eos) = self.eos.and_then(|e| self.tokens.get(e as usize))
            && prompt.ends_with(eos.as_str())
        {
            prompt.truncate(prompt.len() - eos.len());
        }
        Ok(self.encode(&prompt, true, true))
    }

    /// The model's chat template, compiled, with this vocabulary's BOS/EOS texts.
    pub fn chat_template(&self) -> Result<ChatTemplate, TokenizerError> {
        let source = self
            .chat_template
            .as_deref()
            .ok_or(TokenizerError::NoChatTemplate)?;
        let text = |id: Option<u32>| {
            id.map(|i| String::from_utf8_lossy(self.piece(i)).into_owned())
                .unwrap_or_default()
        };
        ChatTemplate::new(source, &text(self.bos), &text(self.eos))
    }
}

/// Streaming detokenizer: feed ids one at a time, get text as soon as it is complete UTF-8.
/// Bytes of a character split across tokens are held until the character is complete; invalid
/// bytes become U+FFFD exactly where [`Tokenizer::decode`] puts them, so the concatenated output
/// (after [`Decoder::finish`]) equals `decode` of all ids.
#[derive(Debug)]
pub struct Decoder<'a> {
    tok: &'a Tokenizer,
    pending: Vec<u8>,
    first: bool,
}

impl Decoder<'_> {
    /// Adds one token; returns the text that became complete (possibly empty).
    pub fn push(&mut self, id: u32) -> String {
        self.pending
            .extend_from_slice(self.tok.piece_at(id, self.first));
        self.first = false;
        let mut out = String::new();
        let mut start = 0;
        loop {
            match std::str::from_utf8(&self.pending[start..]) {
                Ok(s) => {
                    out.push_str(s);
                    start = self.pending.len();
                    break;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    out.push_str(
                        std::str::from_utf8(&self.pending[start..start + valid]).unwrap_or(""),
                    );
                    start += valid;
                    match e.error_len() {
                        Some(bad) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            start += bad;
                        }
                        None => break,
                    }
                }
            }
        }
        self.pending.drain(..start);
        out
    }

    /// Bytes held back, waiting for the rest of a character.
    pub fn pending(&self) -> &[u8] {
        &self.pending
    }

    /// Flushes held bytes (an incomplete character becomes U+FFFD).
    pub fn finish(&mut self) -> String {
        let out = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        out
    }
}
