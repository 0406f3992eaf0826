//! Pre-tokenizers: the regular expressions that cut text into words before BPE.
//!
//! Each `tokenizer.ggml.pre` value names a list of expressions, applied in order: the first cuts
//! the text into pieces (matches and the gaps between them both become pieces), each later one
//! cuts every piece again on its own, so a later expression never sees across an earlier cut.
//! This is the behaviour of llama.cpp's BPE pre-tokenizer; the expressions are written here in
//! Rust regex syntax (Unicode `\s`, `\p{L}`, `\p{N}`) and matched with `fancy-regex` for the
//! look-ahead `(?!\S)`.
//!
//! The three families used by the models nmk runs (`smollm`, `qwen2`, `llama-bpe`) also have a
//! hand-written splitter ([`fast`]) that gives the same cuts an order of magnitude faster; the
//! regex path stays as the reference for every pre-tokenizer and is cross-checked against the fast
//! splitters in the tests.

use fancy_regex::Regex;

use super::TokenizerError;
use super::classes::{is_letter, is_number, is_whitespace};

/// GPT-2's expression (without the final `\s+`, which llama.cpp leaves to the gap rule).
const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";
/// Llama 3's expression, with case-insensitive contractions spelled out.
const LLAMA3: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen2's expression: like Llama 3's but one digit per word.
const QWEN2: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen3.5's expression: letter runs also take combining marks.
const QWEN35: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// What the pre-tokenizer name implies besides its expressions.
#[derive(Debug, Clone)]
pub(crate) struct PreSpec {
    /// The canonical family name (for messages and tests).
    pub(crate) family: &'static str,
    /// The expressions, applied in order.
    pub(crate) patterns: &'static [&'static str],
    /// A word found whole in the vocabulary is one token, without merges (Llama 3).
    pub(crate) ignore_merges: bool,
    /// Whether BOS is added by default (before `tokenizer.ggml.add_bos_token` overrides it).
    pub(crate) add_bos: bool,
    /// The hand-written splitter, where one exists.
    pub(crate) fast: Option<Fast>,
}

/// The hand-written splitters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fast {
    /// `\p{N}` then GPT-2 (SmolLM2, StarCoder).
    DigitsThenGpt2,
    /// GPT-2 alone.
    Gpt2,
    /// Llama 3 / Qwen2 style, with at most this many digits per number word.
    Llama3 { max_digits: usize },
}

/// The specification for a `tokenizer.ggml.pre` value (an absent value means `default`).
pub(crate) fn spec_for(pre: &str) -> Result<PreSpec, TokenizerError> {
    let s = |family, patterns, ignore_merges, add_bos, fast| PreSpec {
        family,
        patterns,
        ignore_merges,
        add_bos,
        fast,
    };
    Ok(match pre {
        "" | "default" => s(
            "default",
            &[r"[\p{P}\$\+<=>\^~\|]+", GPT2, r"\p{N}+", "[0-9][0-9][0-9]"],
            false,
            false,
            None,
        ),
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0"
        | "lfm2" | "jina-v5-nano" => s(
            "llama3",
            &[LLAMA3],
            true,
            true,
            Some(Fast::Llama3 { max_digits: 3 }),
        ),
        "dbrx" | "smaug-bpe" => s(
            "llama3",
            &[LLAMA3],
            false,
            false,
            Some(Fast::Llama3 { max_digits: 3 }),
        ),
        "qwen2" | "deepseek-r1-qwen" | "kormo" | "f2llmv2" | "stablelm2" => s(
            "qwen2",
            &[QWEN2],
            false,
            false,
            Some(Fast::Llama3 { max_digits: 1 }),
        ),
        "qwen35" => s("qwen35", &[QWEN35], false, false, None),
        "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" | "exaone" | "minerva"
        | "mellum2" => s(
            "smollm",
            &[r"\p{N}", GPT2],
            false,
            false,
            Some(Fast::DigitsThenGpt2),
        ),
        "gpt-2" | "phi-2" | "jina-es" | "jina-de" | "gigachat" | "jina-v2-es" | "jina-v2-de"
        | "a.x-4.0" | "mellum" | "modern-bert" | "mpt" | "olmo" | "jais" | "trillion"
        | "granite-docling" => s("gpt2", &[GPT2], false, false, Some(Fast::Gpt2)),
        "falcon" => s(
            "falcon",
            &[r"[\p{P}\$\+<=>\^~\|`]+", GPT2, "[0-9][0-9][0-9]"],
            false,
            false,
            None,
        ),
        "deepseek-coder" => s(
            "deepseek-coder",
            &[
                "[\r\n]",
                r"\s?\p{L}+",
                r"\s?\p{P}+",
                "[一-龥ࠀ-一가-퟿]+",
                r"\p{N}",
            ],
            false,
            false,
            None,
        ),
        other => {
            return Err(TokenizerError::UnsupportedPreTokenizer {
                pre: other.to_owned(),
            });
        }
    })
}

/// A compiled pre-tokenizer.
#[derive(Debug)]
pub(crate) struct PreTokenizer {
    regexes: Vec<Regex>,
    fast: Option<Fast>,
}

impl PreTokenizer {
    /// Compiles the expressions of a specification.
    pub(crate) fn new(spec: &PreSpec) -> Result<PreTokenizer, TokenizerError> {
        let regexes = spec
            .patterns
            .iter()
            .map(|p| {
                Regex::new(p).map_err(|e| TokenizerError::Regex {
                    pattern: (*p).to_owned(),
                    message: e.to_string(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(PreTokenizer {
            regexes,
            fast: spec.fast,
        })
    }

    /// Cuts `text` into words, appending them to `out`.
    pub(crate) fn split<'a>(
        &self,
        text: &'a str,
        out: &mut Vec<&'a str>,
    ) -> Result<(), TokenizerError> {
        match self.fast {
            Some(fast) => {
                split_fast(fast, text, out);
                Ok(())
            }
            None => self.split_regex(text, out),
        }
    }

    /// Cuts `text` with the regular expressions (the reference path).
    pub(crate) fn split_regex<'a>(
        &self,
        text: &'a str,
        out: &mut Vec<&'a str>,
    ) -> Result<(), TokenizerError> {
        if text.is_empty() {
            return Ok(());
        }
        let mut pieces = vec![text];
        let mut next = Vec::new();
        for re in &self.regexes {
            next.clear();
            for &piece in &pieces {
                let mut last = 0;
                for m in re.find_iter(piece) {
                    let m = m.map_err(|e| TokenizerError::RegexRuntime {
                        message: e.to_string(),
                    })?;
                    if m.start() > last {
                        next.push(&piece[last..m.start()]);
                    }
                    if m.end() > m.start() {
                        next.push(m.as_str());
                    }
                    last = m.end();
                }
                if last < piece.len() {
                    next.push(&piece[last..]);
                }
            }
            std::mem::swap(&mut pieces, &mut next);
        }
        out.extend(pieces);
        Ok(())
    }
}

/// Runs a hand-written splitter.
pub(crate) fn split_fast<'a>(fast: Fast, text: &'a str, out: &mut Vec<&'a str>) {
    match fast {
        Fast::Gpt2 => gpt2(text, out),
        Fast::DigitsThenGpt2 => {
            // `\p{N}`: every number character is its own piece; the text between is cut by GPT-2.
            let mut last = 0;
            for (i, c) in text.char_indices() {
                if is_number(c) {
                    if i > last {
                        gpt2(&text[last..i], out);
                    }
                    let end = i + c.len_utf8();
                    out.push(&text[i..end]);
                    last = end;
                }
            }
            if last < text.len() {
                gpt2(&text[last..], out);
            }
        }
        Fast::Llama3 { max_digits } => llama3(text, max_digits, out),
    }
}

/// The characters of a piece with their byte offsets, and look-ups that answer "none" past
/// the end.
struct Chars {
    cs: Vec<(usize, char)>,
    len: usize,
}

impl Chars {
    fn new(text: &str) -> Chars {
        Chars {
            cs: text.char_indices().collect(),
            len: text.len(),
        }
    }
    fn at(&self, i: usize) -> Option<char> {
        self.cs.get(i).map(|&(_, c)| c)
    }
    fn offset(&self, i: usize) -> usize {
        self.cs.get(i).map_or(self.len, |&(o, _)| o)
    }
    fn is(&self, i: usize, f: impl Fn(char) -> bool) -> bool {
        self.at(i).is_some_and(f)
    }
}

fn is_other(c: char) -> bool {
    !is_whitespace(c) && !is_letter(c) && !is_number(c)
}

fn contraction_len(cs: &Chars, i: usize, fold: bool) -> usize {
    if cs.at(i) != Some('\'') {
        return 0;
    }
    let low = |c: Option<char>| c.map(|c| if fold { c.to_ascii_lowercase() } else { c });
    match (low(cs.at(i + 1)), low(cs.at(i + 2))) {
        (Some('s' | 't' | 'm' | 'd'), _) => 2,
        (Some('r'), Some('e')) | (Some('v'), Some('e')) | (Some('l'), Some('l')) => 3,
        _ => 0,
    }
}

/// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)`, gaps as pieces.
fn gpt2<'a>(text: &'a str, out: &mut Vec<&'a str>) {
    let cs = Chars::new(text);
    let n = cs.cs.len();
    let mut i = 0;
    while i < n {
        let start = i;
        let c = cs.at(i).unwrap_or(' ');
        let k = contraction_len(&cs, i, false);
        if k > 0 {
            i += k;
        } else {
            let j = if c == ' ' { i + 1 } else { i };
            let class_run = |f: fn(char) -> bool, mut p: usize| {
                while cs.is(p, f) {
                    p += 1;
                }
                p
            };
            if cs.is(j, is_letter) {
                i = class_run(is_letter, j);
            } else if cs.is(j, is_number) {
                i = class_run(is_number, j);
            } else if cs.is(j, is_other) {
                i = class_run(is_other, j);
            } else {
                // Whitespace: a run followed by a non-space keeps its last character for the
                // next word; a run at the end is taken whole.
                let mut e = i;
                while cs.is(e, is_whitespace) {
                    e += 1;
                }
                i = if e < n && e - i > 1 {
                    e - 1
                } else {
                    e.max(i + 1)
                };
            }
        }
        out.push(&text[cs.offset(start)..cs.offset(i)]);
    }
}

/// Llama 3 (`max_digits` = 3) and Qwen2 (`max_digits` = 1) expressions, gaps as pieces.
fn llama3<'a>(text: &'a str, max_digits: usize, out: &mut Vec<&'a str>) {
    let cs = Chars::new(text);
    let n = cs.cs.len();
    let mut i = 0;
    while i < n {
        let start = i;
        let c = cs.at(i).unwrap_or(' ');
        let k = contraction_len(&cs, i, true);
        if k > 0 {
            i += k;
        } else if !matches!(c, '\r' | '\n')
            && !is_number(c)
            && (is_letter(c) || cs.is(i + 1, is_letter))
        {
            // [^\r\n\p{L}\p{N}]?\p{L}+
            i += 1;
            while cs.is(i, is_letter) {
                i += 1;
            }
        } else if is_number(c) {
            // \p{N}{1,max}
            i += 1;
            while i - start < max_digits && cs.is(i, is_number) {
                i += 1;
            }
        } else if is_other(c) || (c == ' ' && cs.is(i + 1, is_other)) {
            // ` ?[^\s\p{L}\p{N}]+[\r\n]*`
            if c == ' ' {
                i += 1;
            }
            while cs.is(i, is_other) {
                i += 1;
            }
            while cs.is(i, |c| matches!(c, '\r' | '\n')) {
                i += 1;
            }
        } else {
            // Whitespace: `\s*[\r\n]+` up to the last line break of the run, else
            // `\s+(?!\S)` / `\s+`.
            let mut e = i;
            let mut last_break = None;
            while let Some(w) = cs.at(e).filter(|&w| is_whitespace(w)) {
                e += 1;
                if matches!(w, '\r' | '\n') {
                    last_break = Some(e);
                }
            }
            i = match last_break {
                Some(b) => b,
                None if e < n && e - i > 1 => e - 1,
                None => e.max(i + 1),
            };
        }
        out.push(&text[cs.offset(start)..cs.offset(i)]);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const ALPHABET: &[char] = &[
        ' ', ' ', ' ', '\t', '\n', '\r', '\x0B', 'a', 'b', 'Z', 's', 't', 'm', 'd', 'r', 'e', 'v',
        'l', 'S', 'T', 'L', 'E', '\'', '\'', '1', '2', '3', '0', '٣', '①', '!', '.', ',', '(', '$',
        '<', '|', 'é', 'ß', 'Ж', '中', 'ア', '🍕', '\u{200d}', '\u{301}', '\u{93e}', '\u{a0}',
        '\u{85}', '\u{2009}', '\u{3000}', '\u{200b}',
    ];

    fn text() -> impl Strategy<Value = String> {
        proptest::collection::vec(proptest::sample::select(ALPHABET), 0..40)
            .prop_map(|v| v.into_iter().collect())
    }

    fn compiled(pre: &str) -> &'static (PreSpec, PreTokenizer) {
        static ALL: std::sync::OnceLock<Vec<(&'static str, (PreSpec, PreTokenizer))>> =
            std::sync::OnceLock::new();
        let all = ALL.get_or_init(|| {
            ["smollm", "gpt-2", "qwen2", "llama-bpe"]
                .into_iter()
                .map(|name| {
                    let spec = spec_for(name).unwrap();
                    let p = PreTokenizer::new(&spec).unwrap();
                    (name, (spec, p))
                })
                .collect()
        });
        &all.iter().find(|(n, _)| *n == pre).unwrap().1
    }

    fn both(pre: &str, s: &str) -> (Vec<String>, Vec<String>) {
        let (spec, p) = compiled(pre);
        let mut fast = Vec::new();
        split_fast(spec.fast.unwrap(), s, &mut fast);
        let mut slow = Vec::new();
        p.split_regex(s, &mut slow).unwrap();
        (
            fast.into_iter().map(str::to_owned).collect(),
            slow.into_iter().map(str::to_owned).collect(),
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]
        /// The hand-written splitters cut exactly where the expressions do.
        #[test]
        fn fast_splitters_equal_the_expressions(s in text()) {
            for pre in ["smollm", "gpt-2", "qwen2", "llama-bpe"] {
                let (fast, slow) = both(pre, &s);
                prop_assert_eq!(&fast, &slow, "{} on {:?}", pre, s);
                prop_assert_eq!(fast.concat(), s.clone());
            }
        }
    }

    #[test]
    fn known_cuts() {
        let cut = |pre: &str, s: &str| both(pre, s).0;
        assert_eq!(cut("smollm", "The 123"), ["The", " ", "1", "2", "3"]);
        assert_eq!(cut("gpt-2", "a   b  "), ["a", "  ", " b", "  "]);
        assert_eq!(
            cut("qwen2", "x1234 I'M"),
            ["x", "1", "2", "3", "4", " I", "'M"]
        );
        assert_eq!(
            cut("llama-bpe", "1234567 \n\n x"),
            ["123", "456", "7", " \n\n", " x"]
        );
        assert_eq!(cut("llama-bpe", "((hi!!\n"), ["((", "hi", "!!\n"]);
    }

    #[test]
    fn unknown_pre_tokenizer_is_refused() {
        assert!(matches!(
            spec_for("no-such-thing"),
            Err(TokenizerError::UnsupportedPreTokenizer { .. })
        ));
    }
}
