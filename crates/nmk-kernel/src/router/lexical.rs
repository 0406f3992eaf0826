//! Lexical scoring of a request against a route's names (spec §4.7, our own implementation).
//!
//! Owns tokenisation and the score. It only ranks candidates: a high score never answers a
//! request by itself (extraction and the route's validator still decide), so a lexical false
//! positive costs one refused extraction, never a wrong answer.

use std::collections::BTreeSet;

/// Longest request (bytes) the router scores; longer requests go to the model lane, so the
/// quadratic similarity below never sees a hostile length.
pub const MAX_REQUEST_BYTES: usize = 4096;

/// Tokens of a text: camelCase split, lower-cased, runs of `[a-z0-9]` of length two or more.
pub fn tokens(text: &str) -> Vec<String> {
    let mut spaced = String::with_capacity(text.len() + 8);
    let mut prev_lower = false;
    for c in text.chars() {
        // A lower-to-upper step is a word boundary (`isPrime` → `is prime`).
        if c.is_ascii_uppercase() && prev_lower {
            spaced.push(' ');
        }
        prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        spaced.push(c.to_ascii_lowercase());
    }
    spaced
        .split(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit()))
        .filter(|t| t.len() >= 2)
        .map(str::to_owned)
        .collect()
}

/// Ratcliff–Obershelp similarity `2·M / (|a| + |b|)`, M the characters in matching blocks
/// found by repeatedly taking the longest common substring (no junk heuristic).
pub fn similarity(a: &str, b: &str) -> f64 {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let total = a.len() + b.len();
    if total == 0 {
        return 1.0;
    }
    2.0 * matched(&a, &b) as f64 / total as f64
}

fn matched(a: &[char], b: &[char]) -> usize {
    if a.is_empty() || b.is_empty() {
        return 0;
    }
    // Longest common substring by dynamic programming over one row.
    let mut row = vec![0usize; b.len() + 1];
    let (mut best, mut at_a, mut at_b) = (0usize, 0usize, 0usize);
    for (i, ca) in a.iter().enumerate() {
        let mut diag = 0usize;
        for (j, cb) in b.iter().enumerate() {
            let up = row[j + 1];
            row[j + 1] = if ca == cb { diag + 1 } else { 0 };
            if row[j + 1] > best {
                best = row[j + 1];
                at_a = i + 1 - best;
                at_b = j + 1 - best;
            }
            diag = up;
        }
    }
    if best == 0 {
        return 0;
    }
    best + matched(&a[..at_a], &b[..at_b]) + matched(&a[at_a + best..], &b[at_b + best..])
}

/// The score of request tokens against one name's tokens, in [0, 1]:
/// `min(1, 0.4·similarity(sorted request, sorted name) + 0.6·|A∩B|/min(|A|,|B|) + 0.2·[A∩B ≠ ∅])`.
pub fn score(request: &[String], name: &[String]) -> f64 {
    let a: BTreeSet<&str> = request.iter().map(String::as_str).collect();
    let b: BTreeSet<&str> = name.iter().map(String::as_str).collect();
    if a.is_empty() || b.is_empty() {
        return 0.0;
    }
    let common = a.intersection(&b).count();
    let overlap = common as f64 / a.len().min(b.len()) as f64;
    let joined = |s: &BTreeSet<&str>| s.iter().copied().collect::<Vec<_>>().join(" ");
    let ratio = similarity(&joined(&a), &joined(&b));
    let bonus = if common > 0 { 0.2 } else { 0.0 };
    (0.4 * ratio + 0.6 * overlap + bonus).min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_split_camel_case_and_drop_short_runs() {
        assert_eq!(tokens("isPrime of 7 r's"), vec!["is", "prime", "of"]);
        assert_eq!(tokens("count_letter"), vec!["count", "letter"]);
    }

    #[test]
    fn similarity_is_the_matching_blocks_ratio() {
        assert!((similarity("abcd", "bcde") - 0.75).abs() < 1e-12);
        assert_eq!(similarity("", ""), 1.0);
        assert_eq!(similarity("abc", "xyz"), 0.0);
    }

    #[test]
    fn a_shared_name_token_scores_above_the_floor_and_gibberish_below() {
        let q = tokens("what is the gcd of 12 and 18");
        assert!(score(&q, &tokens("gcd")) >= 0.8);
        assert!(score(&tokens("zzqx blorp"), &tokens("gcd")) < 0.55);
    }
}
