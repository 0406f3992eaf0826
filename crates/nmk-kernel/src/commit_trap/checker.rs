//! The trap's pluggable judges of code and of proof: the [`CodeChecker`] that parses and runs
//! candidate programs (the sandboxed one arrives with the deterministic plane; until one is
//! installed, code fails closed), the [`ProvenRegistry`] of hold-out-proven primitives, and the
//! [`Signature`] both sides of a signature check are stated in.

use nmk_det::{ContentHash, Value};

use super::contract::Case;

/// An entry function's signature: its name and its parameters as written, with annotations and
/// defaults stripped and `*`/`**` prefixes kept (`def f(a, b: int = 1, *rest)` → `f`,
/// `["a", "b", "*rest"]`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Signature {
    /// The function's name.
    pub name: String,
    /// Parameter names in order.
    pub params: Vec<String>,
}

/// Parses and runs candidate code. Implementations must be deterministic and must not let the
/// candidate touch the host; the kernel computes every verdict from what they return.
pub trait CodeChecker: Send {
    /// Parses `code` and returns the signature of the function `entry` it defines; `Err` (with a
    /// short reason) when the code does not parse or does not define `entry`.
    fn parse(&self, code: &str, entry: &str) -> Result<Signature, String>;

    /// Runs `entry` on every case, returning one result per case in order: `Ok(value)` for a
    /// returned value, `Err(reason)` for a case that raised or exceeded its limits. The outer
    /// `Err` means the checker itself failed (not the candidate).
    fn run_cases(
        &self,
        code: &str,
        entry: &str,
        cases: &[Case],
    ) -> Result<Vec<Result<Value, String>>, String>;
}

/// The hold-out-proven primitives the trap may answer PROVEN for.
pub trait ProvenRegistry: Send {
    /// The recorded content hash of the proven code registered for `entry`, if there is one.
    /// The trap grants PROVEN only to a candidate whose own content hash equals it.
    fn code_hash(&self, entry: &str) -> Option<ContentHash>;
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_alphabetic() || c == '_')
        && chars.all(|c| c.is_alphanumeric() || c == '_')
}

/// Splits at top-level commas (outside brackets and quotes).
fn split_top_level(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    let mut start = 0usize;
    for (i, c) in text.char_indices() {
        match (quote, c) {
            (Some(q), _) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '(' | '[' | '{') => depth += 1,
            (None, ')' | ']' | '}') => depth = depth.saturating_sub(1),
            (None, ',') if depth == 0 => {
                parts.push(text.get(start..i).unwrap_or_default());
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(text.get(start..).unwrap_or_default());
    parts
}

/// The text between the `(` at `open` and its matching `)`.
fn balanced_params(text: &str, open: usize) -> Option<&str> {
    let mut depth = 0usize;
    for (i, c) in text.get(open..)?.char_indices() {
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return text.get(open + 1..open + i);
                }
            }
            _ => {}
        }
    }
    None
}

/// Reads one parameter list; `None` if any parameter is not a (possibly starred) identifier or a
/// bare `*` or `/` marker.
pub fn parse_params(list: &str) -> Option<Vec<String>> {
    let mut params = Vec::new();
    for raw in split_top_level(list) {
        let raw = raw.trim();
        if raw.is_empty() {
            continue;
        }
        let name = raw.split([':', '=']).next().unwrap_or_default().trim();
        let bare = name.trim_start_matches('*');
        let stars = name.len() - bare.len();
        let ok = match stars {
            0 => is_identifier(bare) || name == "/",
            1 => bare.is_empty() || is_identifier(bare),
            2 => is_identifier(bare),
            _ => false,
        };
        if !ok {
            return None;
        }
        params.push(name.to_owned());
    }
    Some(params)
}

/// The signature of `entry` stated in a prompt: the first `def entry(…)`, else the first
/// `entry(…)` whose parenthesis holds a parameter list (so `add(2, 3)` in an example is
/// skipped). `None` when the prompt states no signature for the entry.
pub fn prompt_signature(prompt: &str, entry: &str) -> Option<Signature> {
    if !is_identifier(entry) {
        return None;
    }
    let pattern = format!("{entry}(");
    let starts: Vec<usize> = prompt
        .match_indices(&pattern)
        .map(|(i, _)| i)
        .filter(|&i| {
            prompt
                .get(..i)
                .and_then(|before| before.chars().next_back())
                .is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == '.'))
        })
        .collect();
    let is_def = |i: usize| {
        prompt
            .get(..i)
            .is_some_and(|before| before.trim_end().ends_with("def"))
    };
    let ordered = starts
        .iter()
        .filter(|&&i| is_def(i))
        .chain(starts.iter().filter(|&&i| !is_def(i)));
    for &start in ordered {
        let open = start + entry.len();
        if let Some(params) = balanced_params(prompt, open).and_then(parse_params) {
            return Some(Signature {
                name: entry.to_owned(),
                params,
            });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sig(name: &str, params: &[&str]) -> Option<Signature> {
        Some(Signature {
            name: name.into(),
            params: params.iter().map(|p| (*p).to_owned()).collect(),
        })
    }

    #[test]
    fn prompt_signatures_are_read_from_def_or_call_forms() {
        assert_eq!(
            prompt_signature("Write def add(a, b) returning the sum.", "add"),
            sig("add", &["a", "b"])
        );
        assert_eq!(
            prompt_signature(
                "e.g. add(2, 3) == 5. Implement add(x: int, y: int = 0) -> int.",
                "add"
            ),
            sig("add", &["x", "y"])
        );
        assert_eq!(
            prompt_signature("gcd(a, b, *rest, **kw)", "gcd"),
            sig("gcd", &["a", "b", "*rest", "**kw"])
        );
        assert_eq!(
            prompt_signature("f(xs: list[int] = [1, 2], /, *, k)", "f"),
            sig("f", &["xs", "/", "*", "k"])
        );
        assert_eq!(prompt_signature("Call readd(a) or add(1, 2).", "add"), None);
        assert_eq!(prompt_signature("Add two numbers.", "add"), None);
        assert_eq!(prompt_signature("def add(a, b", "add"), None);
    }
}
