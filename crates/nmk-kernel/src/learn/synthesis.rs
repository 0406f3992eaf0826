//! Synthesis: the prompt that asks a model for a program, and the extraction of that program
//! from the model's reply.
//!
//! Everything here handles model output, which is hostile input: the reply is only searched for
//! a code block, the code is capped in size and must define the gap's entry, and nothing in it is
//! interpreted in this process (the sandbox runs it; the gate judges it).

use nmk_det::gate::{Gap, python_literal};

/// The largest program accepted from a model, in bytes. A gap's function is a few dozen lines;
/// anything far larger is runaway generation, not a program worth gating.
pub const MAX_CODE_BYTES: usize = 16 * 1024;

/// How many visible samples the prompt shows (a gap may carry more; the gate checks them all).
const PROMPT_SAMPLES: usize = 6;

/// Longest feedback line quoted back to the model.
const MAX_FEEDBACK_CHARS: usize = 600;

/// Why no program could be taken from a reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExtractError {
    /// The reply holds neither a fenced block nor a `def`.
    #[error("the reply contains no code")]
    NoCode,
    /// The code does not define the entry function.
    #[error("the code does not define `def {0}(`")]
    NoEntry(String),
    /// The code is larger than [`MAX_CODE_BYTES`].
    #[error("the code is {0} bytes, over the {MAX_CODE_BYTES}-byte limit")]
    TooLarge(usize),
}

/// The prompt for one attempt at `gap`. `feedback` is the previous attempt's leak-free feedback
/// (what that program itself did on a failing instance), if there was a previous attempt.
pub fn prompt(gap: &Gap, feedback: Option<&str>) -> String {
    let mut p = String::new();
    p.push_str("Write one Python function.\n\n");
    p.push_str(&format!("Task: {}\n", gap.description.trim()));
    p.push_str(&format!("Signature: {}\n", gap.signature.trim()));
    p.push_str(&format!(
        "The function must be named `{}`.\n\nExamples:\n",
        gap.entry
    ));
    for s in gap.samples.iter().take(PROMPT_SAMPLES) {
        let args = s
            .args
            .iter()
            .map(python_literal)
            .collect::<Vec<_>>()
            .join(", ");
        p.push_str(&format!(
            "    {}({args}) == {}\n",
            gap.entry,
            python_literal(&s.expected)
        ));
    }
    if let Some(fb) = feedback.map(str::trim).filter(|f| !f.is_empty()) {
        let fb: String = fb.chars().take(MAX_FEEDBACK_CHARS).collect();
        p.push_str(&format!(
            "\nA previous attempt was wrong. What it did: {fb}\nFix the mistake; do not special-case the examples.\n"
        ));
    }
    p.push_str(
        "\nRules: Python standard library only (math, re, json, itertools, collections are fine). \
         No input(), no print(), no files, no network. It must work for every valid input, \
         not only the examples.\n\
         Reply with only the function inside one ```python code block, nothing else.\n",
    );
    p
}

/// Takes the program out of a model's reply: the first ```python (or bare ```) block, else
/// everything from the first `def`; it must define `def <entry>(` and be at most
/// [`MAX_CODE_BYTES`].
pub fn extract_code(reply: &str, entry: &str) -> Result<String, ExtractError> {
    let code = fenced_block(reply)
        .or_else(|| reply.find("def ").map(|i| reply[i..].to_owned()))
        .ok_or(ExtractError::NoCode)?;
    let code = code.trim_matches('\n').to_owned();
    if code.trim().is_empty() {
        return Err(ExtractError::NoCode);
    }
    if code.len() > MAX_CODE_BYTES {
        return Err(ExtractError::TooLarge(code.len()));
    }
    if !defines_entry(&code, entry) {
        return Err(ExtractError::NoEntry(entry.to_owned()));
    }
    Ok(format!("{code}\n"))
}

/// The first fenced block: a ```python / ```py fence, else the first bare ``` fence. An
/// unterminated fence runs to the end of the reply (generation may stop at the token limit).
fn fenced_block(reply: &str) -> Option<String> {
    let mut fences = Vec::new();
    let mut pos = 0;
    while let Some(i) = reply[pos..].find("```") {
        fences.push(pos + i);
        pos += i + 3;
    }
    let body_after = |start: usize| {
        let rest = &reply[start + 3..];
        let line_end = rest.find('\n').unwrap_or(rest.len());
        let lang = rest[..line_end].trim().to_ascii_lowercase();
        let body_start = (line_end + 1).min(rest.len());
        let body = &rest[body_start..];
        let body = body.find("```").map_or(body, |j| &body[..j]);
        (lang, body.to_owned())
    };
    // Openers are the even-numbered fences (0, 2, …); odd ones close.
    let openers: Vec<(String, String)> = fences.iter().step_by(2).map(|&f| body_after(f)).collect();
    openers
        .iter()
        .find(|(lang, _)| lang == "python" || lang == "py" || lang == "python3")
        .or_else(|| openers.iter().find(|(lang, _)| lang.is_empty()))
        .map(|(_, body)| body.clone())
}

/// Whether a line of `code` starts (at column 0) with `def <entry>(`.
pub fn defines_entry(code: &str, entry: &str) -> bool {
    let head = format!("def {entry}(");
    code.lines().any(|l| l.starts_with(&head))
}

/// Modules the sandbox's interpreter provides that models often use without importing.
const AUTO_MODULES: &[&str] = &[
    "math",
    "re",
    "json",
    "itertools",
    "functools",
    "collections",
];

/// Names models use bare that live in `collections`.
const AUTO_COLLECTIONS: &[&str] = &["Counter", "defaultdict", "deque"];

/// Prepends `import m` for each module in a small list that the code uses as `m.` but never
/// imports, and `from collections import X` for `Counter`/`defaultdict`/`deque` used bare. A
/// cheap text check (no parse): a false positive only adds a harmless import. Idempotent.
pub fn auto_import(code: &str) -> String {
    let mut lines = Vec::new();
    for m in AUTO_MODULES {
        if uses_word(code, &format!("{m}.")) && !imports_module(code, m) {
            lines.push(format!("import {m}"));
        }
    }
    for name in AUTO_COLLECTIONS {
        if uses_word(code, &format!("{name}(")) && !binds_name(code, name) {
            lines.push(format!("from collections import {name}"));
        }
    }
    if lines.is_empty() {
        return code.to_owned();
    }
    format!("{}\n{code}", lines.join("\n"))
}

/// `needle` occurs in `code` not preceded by an identifier character or a dot.
fn uses_word(code: &str, needle: &str) -> bool {
    code.match_indices(needle).any(|(i, _)| {
        code[..i]
            .chars()
            .next_back()
            .is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == '.'))
    })
}

fn imports_module(code: &str, m: &str) -> bool {
    code.lines().any(|l| {
        let l = l.trim();
        l.strip_prefix("import ").is_some_and(|rest| {
            rest.split(',')
                .any(|part| part.split_whitespace().next() == Some(m))
        })
    })
}

fn binds_name(code: &str, name: &str) -> bool {
    code.lines().any(|l| {
        let l = l.trim();
        (l.starts_with("from ") && l.contains(" import ") && uses_word(l, name))
            || l.starts_with(&format!("def {name}("))
            || l.starts_with(&format!("class {name}"))
            || l.starts_with(&format!("{name} ="))
            || l.starts_with(&format!("{name}="))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use nmk_det::Value;

    #[test]
    fn examples_are_spelled_as_python_at_every_depth() {
        let v = Value::List(vec![
            Value::Bool(true),
            Value::Null,
            Value::Tuple(vec![Value::int(1)]),
            Value::str("a\"b"),
            Value::map([("k", Value::Bool(false))]),
            Value::Bytes(vec![0, 255]),
        ]);
        assert_eq!(
            python_literal(&v),
            r#"[True, None, (1,), "a\"b", {"k": False}, b"\x00\xff"]"#
        );
    }
}
