//! The `evidence_cited` lane oracle: does an answer point at something checkable, or honestly
//! abstain, rather than merely assert?

use crate::value::Value;

use super::form::{dict_get, truthy};

/// Dictionary keys whose truthy value counts as cited evidence.
pub const EVIDENCE_KEYS: [&str; 6] = [
    "evidence",
    "known_facts",
    "citations",
    "proof",
    "proof_ref",
    "inferred_links",
];

/// Phrases of honest abstention (matched case-insensitively).
const ABSTENTIONS: [&str; 14] = [
    "insufficient evidence",
    "insufficient information",
    "not enough evidence",
    "not enough information",
    "could not verify",
    "couldn't verify",
    "cannot verify",
    "can't verify",
    "unable to verify",
    "could not be verified",
    "cannot be verified",
    "could not determine",
    "cannot determine",
    "unable to determine",
];

/// Words that tie a count to a result ("12/12 passed").
const RESULT_WORDS: [&str; 16] = [
    "passed",
    "pass",
    "passes",
    "passing",
    "failed",
    "fail",
    "fails",
    "failing",
    "succeeded",
    "ok",
    "error",
    "errors",
    "skipped",
    "green",
    "verified",
    "matched",
];

/// Nouns allowed between a count and its result word ("12/12 unit tests passed").
const COUNTED_NOUNS: [&str; 28] = [
    "unit",
    "integration",
    "hidden",
    "visible",
    "property",
    "regression",
    "test",
    "tests",
    "case",
    "cases",
    "check",
    "checks",
    "assertion",
    "assertions",
    "spec",
    "specs",
    "example",
    "examples",
    "sample",
    "samples",
    "run",
    "runs",
    "suite",
    "suites",
    "job",
    "jobs",
    "scenario",
    "scenarios",
];

/// File extensions that make a token an artifact name ("capture.pcap").
const ARTIFACT_EXTENSIONS: [&str; 46] = [
    "pcap", "pcapng", "log", "csv", "tsv", "json", "jsonl", "ndjson", "xml", "yaml", "yml", "toml",
    "txt", "md", "py", "rs", "c", "h", "cpp", "go", "java", "sh", "sql", "db", "sqlite", "html",
    "pdf", "png", "jpg", "jpeg", "svg", "zip", "gz", "tgz", "tar", "evtx", "har", "ipynb",
    "parquet", "lock", "ini", "cfg", "conf", "diff", "patch", "out",
];

/// Whether `answer` cites evidence.
///
/// A text passes when it honestly abstains ("insufficient evidence", "could not verify", …),
/// ties a count to a result word ("12/12 cases passed", "3 passed", "passed: 5/5"), contains a
/// closed code fence, a shell line (`$ cmd`), inline code of at least two tokens, or an artifact
/// file name (`trace.pcap`). Bare dates and ratios, single-token inline code and the word
/// "proof" do not count. A dictionary passes when one of [`EVIDENCE_KEYS`] holds a truthy value.
/// Anything else fails.
pub fn evidence_cited(answer: &Value) -> bool {
    match answer {
        Value::Str(text) => text_cites_evidence(text),
        Value::Map(_) | Value::Dict(_) => EVIDENCE_KEYS
            .iter()
            .any(|k| dict_get(answer, k).is_some_and(truthy)),
        _ => false,
    }
}

fn text_cites_evidence(text: &str) -> bool {
    let lower = text.to_lowercase();
    ABSTENTIONS.iter().any(|p| lower.contains(p))
        || counted_result(&lower)
        || text.matches("```").count() >= 2
        || has_shell_line(text)
        || has_multi_token_inline_code(text)
        || has_artifact_name(text)
}

fn trim_token(token: &str) -> &str {
    token.trim_matches(|c: char| !c.is_alphanumeric() && c != '/')
}

fn is_count(token: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.len() <= 9 && s.bytes().all(|b| b.is_ascii_digit());
    match token.split_once('/') {
        Some((a, b)) => digits(a) && digits(b),
        None => digits(token),
    }
}

fn counted_result(lower: &str) -> bool {
    let tokens: Vec<&str> = lower.split_whitespace().map(trim_token).collect();
    tokens.iter().enumerate().any(|(i, tok)| {
        if !is_count(tok) {
            return false;
        }
        // "passed: 12/12": a ratio right after its result word.
        if tok.contains('/') && i > 0 && tokens.get(i - 1).is_some_and(|p| RESULT_WORDS.contains(p))
        {
            return true;
        }
        // "12/12 cases passed", "3 passed": the result word after at most two counted nouns.
        let mut j = i + 1;
        while j <= i + 3 {
            match tokens.get(j) {
                Some(next) if RESULT_WORDS.contains(next) => return true,
                Some(next) if COUNTED_NOUNS.contains(next) => j += 1,
                _ => return false,
            }
        }
        false
    })
}

fn has_shell_line(text: &str) -> bool {
    text.lines().any(|line| {
        line.trim_start()
            .strip_prefix("$ ")
            .is_some_and(|cmd| !cmd.trim().is_empty())
    })
}

fn has_multi_token_inline_code(text: &str) -> bool {
    // Only single backticks delimit inline code; fences are judged separately.
    let without_fences = text.replace("```", "\u{0}");
    let mut parts = without_fences.split('`');
    parts.next();
    let mut inside = true;
    for part in parts {
        if inside && !part.contains('\u{0}') && part.split_whitespace().count() >= 2 {
            return true;
        }
        inside = !inside;
    }
    false
}

fn has_artifact_name(text: &str) -> bool {
    text.split_whitespace().any(|raw| {
        let token = raw.trim_matches(|c: char| {
            matches!(
                c,
                '"' | '\''
                    | '`'
                    | '('
                    | ')'
                    | '['
                    | ']'
                    | '<'
                    | '>'
                    | ','
                    | ';'
                    | ':'
                    | '.'
                    | '!'
                    | '?'
            )
        });
        let Some((stem, ext)) = token.rsplit_once('.') else {
            return false;
        };
        let stem_name = stem.rsplit('/').next().unwrap_or(stem);
        stem_name.chars().any(char::is_alphanumeric)
            && ARTIFACT_EXTENSIONS.contains(&ext.to_ascii_lowercase().as_str())
    })
}
