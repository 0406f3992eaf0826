//! Deterministic argument extraction: how a free-text request becomes a primitive's arguments.
//!
//! Owns the extraction specs ([`ArgSpec`]) and the cue rules ([`Cues`]). Every spec is strict:
//! it takes exactly the arguments a signature needs, in order of mention, and refuses — with a
//! reason, never a guess — when the text holds fewer, more, or glued ones (`3rd`, `x2`, `1.5`,
//! an unbalanced quote). A refusal is not an error: the request falls through to the next
//! candidate or the model lane. It may not call a primitive or judge an answer.

use nmk_det::Value;

/// How a primitive's arguments are read from the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgSpec {
    /// Exactly `n` standalone integers (`-`? digits, not glued to a letter, not a decimal),
    /// in order of mention; digits inside ISO dates do not count.
    Ints(usize),
    /// Exactly `n` quoted strings ('…', "…", ‘…’ or “…”), in order of mention. An apostrophe
    /// inside a word (`what's`) is not a quote.
    Quoted(usize),
    /// `(text, letter)`: exactly one letter (`r's`, `letter r`, or a quoted single character)
    /// and exactly one text (a quoted string, or the single word closing the request after
    /// `in` / `in the word`).
    LetterInText,
    /// Exactly `n` ISO dates `YYYY-MM-DD`, in order of mention.
    Dates(usize),
    /// `(date, days)`: exactly one ISO date and exactly one other integer; the sign comes from
    /// the wording (after/add/plus/later: +; before/minus/subtract/earlier/ago: −; both or
    /// neither: refused).
    DateAndDays,
}

/// Words a request must (and must not) contain for a route to own its shape. Each group of
/// `all_of` needs one of its phrases; no phrase of `none_of` may appear. Phrases match whole
/// lower-cased words.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cues {
    /// Groups of alternatives; every group must be matched.
    pub all_of: Vec<Vec<String>>,
    /// Phrases that disown the request.
    pub none_of: Vec<String>,
}

impl Cues {
    /// Cues from static phrase lists.
    pub fn new(all_of: &[&[&str]], none_of: &[&str]) -> Cues {
        Cues {
            all_of: all_of
                .iter()
                .map(|g| g.iter().map(|p| (*p).to_owned()).collect())
                .collect(),
            none_of: none_of.iter().map(|p| (*p).to_owned()).collect(),
        }
    }

    /// `Ok` when the request carries the cues, else why not.
    pub fn check(&self, request: &str) -> Result<(), String> {
        let w = words(request);
        for group in &self.all_of {
            if !group.iter().any(|p| has_phrase(&w, p)) {
                return Err(format!("cue absent: none of {group:?}"));
            }
        }
        if let Some(p) = self.none_of.iter().find(|p| has_phrase(&w, p)) {
            return Err(format!("contrary cue present: {p:?}"));
        }
        Ok(())
    }
}

/// Lower-cased runs of letters and digits (single characters included).
pub fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

fn has_phrase(words: &[String], phrase: &str) -> bool {
    let p: Vec<String> = self::words(phrase);
    !p.is_empty() && words.windows(p.len()).any(|w| w == p.as_slice())
}

/// A character span of the request, in char indices `[start, end)`.
type Span = (usize, usize);

fn quote_pair(c: char) -> Option<char> {
    match c {
        '\'' => Some('\''),
        '"' => Some('"'),
        '\u{2018}' => Some('\u{2019}'),
        '\u{201c}' => Some('\u{201d}'),
        _ => None,
    }
}

/// The quoted strings of `chars` with their spans (quotes excluded from the content).
fn quoted(chars: &[char]) -> Result<Vec<(String, Span)>, String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let Some(close) = quote_pair(c) else {
            i += 1;
            continue;
        };
        let glued_before = i > 0 && chars[i - 1].is_alphanumeric();
        if c == '\'' && glued_before {
            // An apostrophe inside or after a word (`r's`, `what's`), not an opening quote.
            i += 1;
            continue;
        }
        let mut j = i + 1;
        let mut end = None;
        while j < chars.len() {
            let glued_after = chars.get(j + 1).is_some_and(|n| n.is_alphanumeric());
            if chars[j] == close && !(close == '\'' && glued_after) {
                end = Some(j);
                break;
            }
            j += 1;
        }
        let Some(j) = end else {
            return Err("unbalanced quote".into());
        };
        out.push((chars[i + 1..j].iter().collect(), (i, j + 1)));
        i = j + 1;
    }
    Ok(out)
}

fn is_date_at(chars: &[char], i: usize) -> bool {
    let pat = "dddd-dd-dd";
    if i + pat.len() > chars.len() {
        return false;
    }
    let shape_ok = pat.chars().enumerate().all(|(k, p)| {
        let c = chars[i + k];
        if p == 'd' { c.is_ascii_digit() } else { c == p }
    });
    let free_before = i == 0 || !chars[i - 1].is_alphanumeric();
    let free_after = chars
        .get(i + pat.len())
        .is_none_or(|c| !c.is_alphanumeric());
    shape_ok && free_before && free_after
}

fn dates(chars: &[char]) -> Vec<(String, Span)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if is_date_at(chars, i) {
            out.push((chars[i..i + 10].iter().collect(), (i, i + 10)));
            i += 10;
        } else {
            i += 1;
        }
    }
    out
}

fn inside(spans: &[Span], i: usize) -> bool {
    spans.iter().any(|&(s, e)| i >= s && i < e)
}

/// Standalone integers outside `skip` spans; refuses glued or decimal numbers.
fn integers(chars: &[char], skip: &[Span]) -> Result<Vec<i64>, String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if inside(skip, i) || !chars[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        while i < chars.len() && chars[i].is_ascii_digit() {
            i += 1;
        }
        let digits: String = chars[start..i].iter().collect();
        let before = start.checked_sub(1).map(|k| chars[k]);
        let negative = before == Some('-') && (start < 2 || !chars[start - 2].is_alphanumeric());
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_')
            || before == Some('-') && !negative
        {
            return Err(format!("number {digits} is glued to the text before it"));
        }
        if before == Some('.') && start >= 2 && chars[start - 2].is_ascii_digit() {
            return Err(format!("number {digits} is part of a decimal"));
        }
        let after = chars.get(i).copied();
        if after.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            return Err(format!("number {digits} is glued to the text after it"));
        }
        if after == Some('.') && chars.get(i + 1).is_some_and(char::is_ascii_digit) {
            return Err(format!("number {digits} is a decimal, not an integer"));
        }
        let text = if negative {
            format!("-{digits}")
        } else {
            digits
        };
        let n = text
            .parse::<i64>()
            .map_err(|_| format!("integer {text} is outside the 64-bit range"))?;
        out.push(n);
    }
    Ok(out)
}

fn exactly<T>(items: Vec<T>, n: usize, what: &str) -> Result<Vec<T>, String> {
    if items.len() == n {
        Ok(items)
    } else {
        Err(format!(
            "ambiguous: found {} {what}, the signature takes exactly {n}",
            items.len()
        ))
    }
}

/// The letter of a `LetterInText` request: `X's` / `Xs` after a counting word, `letter X`,
/// `character X`, or a quoted single character. All distinct findings must agree.
fn letters(chars: &[char], quotes: &[(String, Span)]) -> Vec<char> {
    let mut found = Vec::new();
    for (q, _) in quotes {
        let mut it = q.chars();
        if let (Some(c), None) = (it.next(), it.next()) {
            found.push(c);
        }
    }
    // `r's`: one alphanumeric character standing alone before an apostrophe-s.
    for i in 0..chars.len() {
        let alone = (i == 0 || !chars[i - 1].is_alphanumeric()) && chars[i].is_alphabetic();
        let apostrophe = matches!(chars.get(i + 1), Some('\'' | '\u{2019}'));
        let s_end =
            chars.get(i + 2) == Some(&'s') && chars.get(i + 3).is_none_or(|c| !c.is_alphanumeric());
        if alone && apostrophe && s_end {
            found.push(chars[i]);
        }
    }
    let text: String = chars.iter().collect();
    let w: Vec<&str> = text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|s| !s.is_empty())
        .collect();
    for pair in w.windows(2) {
        let lead = pair[0].to_lowercase();
        let mut it = pair[1].chars();
        if (lead == "letter" || lead == "character")
            && let (Some(c), None) = (it.next(), it.next())
        {
            found.push(c);
        }
    }
    found.sort_unstable();
    found.dedup();
    found
}

/// The text of a `LetterInText` request: the multi-character quoted strings, else the single
/// word that closes the request after `in` (or `in the word`).
fn texts(request: &str, quotes: &[(String, Span)]) -> Result<Vec<String>, String> {
    let long: Vec<String> = quotes
        .iter()
        .filter(|(q, _)| q.chars().count() != 1)
        .map(|(q, _)| q.clone())
        .collect();
    if !long.is_empty() {
        return Ok(long);
    }
    let trimmed = request.trim_end_matches(|c: char| c.is_whitespace() || ".?!".contains(c));
    let parts: Vec<&str> = trimmed.split_whitespace().collect();
    let n = parts.len();
    let lower = |k: usize| parts.get(k).map(|s| s.to_lowercase());
    let word = match n {
        _ if n >= 2 && lower(n - 2).as_deref() == Some("in") => parts[n - 1],
        _ if n >= 4
            && lower(n - 4).as_deref() == Some("in")
            && lower(n - 3).as_deref() == Some("the")
            && lower(n - 2).as_deref() == Some("word") =>
        {
            parts[n - 1]
        }
        _ => return Err("no text: quote it, or end the request with `in <word>`".into()),
    };
    if !word.chars().all(char::is_alphanumeric) {
        return Err(format!("the word {word:?} is not plain letters; quote it"));
    }
    Ok(vec![word.to_owned()])
}

/// Extracts the arguments `spec` describes from `request`, or says why it refuses.
pub fn extract(spec: ArgSpec, request: &str) -> Result<Vec<Value>, String> {
    let chars: Vec<char> = request.chars().collect();
    match spec {
        ArgSpec::Ints(n) => {
            let skip: Vec<Span> = dates(&chars).into_iter().map(|(_, s)| s).collect();
            let ints = exactly(integers(&chars, &skip)?, n, "integers")?;
            Ok(ints.into_iter().map(Value::int).collect())
        }
        ArgSpec::Quoted(n) => {
            let q = exactly(quoted(&chars)?, n, "quoted strings")?;
            Ok(q.into_iter().map(|(s, _)| Value::str(s)).collect())
        }
        ArgSpec::LetterInText => {
            let quotes = quoted(&chars)?;
            let letter = exactly(letters(&chars, &quotes), 1, "letters to count")?;
            let text = exactly(texts(request, &quotes)?, 1, "texts to count in")?;
            Ok(vec![
                Value::str(text[0].clone()),
                Value::str(letter[0].to_string()),
            ])
        }
        ArgSpec::Dates(n) => {
            let d = exactly(dates(&chars), n, "ISO dates")?;
            Ok(d.into_iter().map(|(s, _)| Value::str(s)).collect())
        }
        ArgSpec::DateAndDays => {
            let found = dates(&chars);
            let skip: Vec<Span> = found.iter().map(|(_, s)| *s).collect();
            let d = exactly(found, 1, "ISO dates")?;
            let days = exactly(integers(&chars, &skip)?, 1, "day counts")?;
            let w = words(request);
            let forward = ["after", "add", "plus", "later"]
                .iter()
                .any(|p| w.iter().any(|x| x == p));
            let backward = ["before", "minus", "subtract", "earlier", "ago"]
                .iter()
                .any(|p| w.iter().any(|x| x == p));
            let sign = match (forward, backward) {
                (true, false) => 1,
                (false, true) => -1,
                _ => return Err("ambiguous direction: say after/add or before/subtract".into()),
            };
            let days = days[0]
                .checked_mul(sign)
                .ok_or("day count outside the 64-bit range")?;
            Ok(vec![Value::str(d[0].0.clone()), Value::int(days)])
        }
    }
}

/// The spec a learned primitive's signature allows, or why it has none: all-integer
/// parameters read integers, a single string parameter reads one quoted string; anything else
/// is not routable from free text.
pub fn spec_for_signature(signature: &str) -> Result<ArgSpec, String> {
    let open = signature
        .find('(')
        .ok_or("signature has no parameter list")?;
    let close = signature[open..]
        .find(')')
        .map(|k| open + k)
        .ok_or("signature has no closing parenthesis")?;
    let params: Vec<&str> = signature[open + 1..close]
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    let types: Vec<String> = params
        .iter()
        .map(|p| {
            p.split_once(':')
                .map(|(_, t)| t.trim().to_owned())
                .unwrap_or_default()
        })
        .collect();
    if !types.is_empty() && types.iter().all(|t| t == "int") {
        return Ok(ArgSpec::Ints(types.len()));
    }
    if types.len() == 1 && types[0] == "str" {
        return Ok(ArgSpec::Quoted(1));
    }
    Err(format!(
        "no extraction spec for parameters {types:?} (only all-int, or one str)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_in_order_and_glued_ones_refused() {
        assert_eq!(
            extract(ArgSpec::Ints(2), "gcd of 12 and -18?"),
            Ok(vec![Value::int(12), Value::int(-18)])
        );
        assert!(extract(ArgSpec::Ints(1), "is the 3rd prime 5").is_err());
        assert!(extract(ArgSpec::Ints(1), "is 1.5 prime").is_err());
        assert!(extract(ArgSpec::Ints(2), "gcd of 1, 2 and 3").is_err());
    }

    #[test]
    fn quotes_ignore_apostrophes() {
        assert_eq!(
            extract(ArgSpec::Quoted(1), "what's the reverse of 'a b c'"),
            Ok(vec![Value::str("a b c")])
        );
        assert!(extract(ArgSpec::Quoted(1), "reverse 'a' and 'b'").is_err());
        assert!(extract(ArgSpec::Quoted(1), "reverse 'a b").is_err());
    }

    #[test]
    fn letter_and_word() {
        let want = Ok(vec![Value::str("strawberry"), Value::str("r")]);
        assert_eq!(
            extract(ArgSpec::LetterInText, "count the r's in strawberry"),
            want
        );
        assert_eq!(
            extract(
                ArgSpec::LetterInText,
                "How many times does the letter r appear in 'strawberry'?"
            ),
            want
        );
        assert!(extract(ArgSpec::LetterInText, "count the r's and e's in strawberry").is_err());
    }

    #[test]
    fn learned_signatures() {
        assert_eq!(
            spec_for_signature("reverse_words(s: str) -> str"),
            Ok(ArgSpec::Quoted(1))
        );
        assert_eq!(
            spec_for_signature("gcd(a: int, b: int) -> int"),
            Ok(ArgSpec::Ints(2))
        );
        assert!(spec_for_signature("f(xs: list[int]) -> int").is_err());
    }
}
