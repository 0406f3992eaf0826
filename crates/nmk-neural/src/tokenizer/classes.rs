//! Unicode character classes for the hand-written pre-tokenizers: `\p{L}`, `\p{N}` and `\s`.
//!
//! The tables are taken once, on first use, from the same regex engine the reference path uses
//! (every scalar value is run through `\p{L}+`, `\p{N}+` and `\s+`), so the fast splitters and
//! the expressions can never disagree about a character. ASCII is answered without a table.

use std::sync::OnceLock;

use fancy_regex::Regex;

struct Tables {
    letter: Vec<(u32, u32)>,
    number: Vec<(u32, u32)>,
    space: Vec<(u32, u32)>,
}

fn ranges(pattern: &str, all: &str) -> Vec<(u32, u32)> {
    let Ok(re) = Regex::new(pattern) else {
        return Vec::new();
    };
    let mut out: Vec<(u32, u32)> = Vec::new();
    for m in re.find_iter(all).flatten() {
        let mut cs = m.as_str().chars();
        let (Some(first), Some(last)) = (cs.next(), m.as_str().chars().next_back()) else {
            continue;
        };
        let (lo, hi) = (u32::from(first), u32::from(last));
        match out.last_mut() {
            // The string skips the surrogate gap, so runs across it join.
            Some(prev) if prev.1 + 1 == lo || (prev.1 == 0xD7FF && lo == 0xE000) => prev.1 = hi,
            _ => out.push((lo, hi)),
        }
    }
    out
}

fn tables() -> &'static Tables {
    static TABLES: OnceLock<Tables> = OnceLock::new();
    TABLES.get_or_init(|| {
        let all: String = (0x80u32..=0x10FFFF).filter_map(char::from_u32).collect();
        Tables {
            letter: ranges(r"\p{L}+", &all),
            number: ranges(r"\p{N}+", &all),
            space: ranges(r"\s+", &all),
        }
    })
}

fn in_ranges(table: &[(u32, u32)], c: char) -> bool {
    let c = u32::from(c);
    let i = table.partition_point(|&(_, hi)| hi < c);
    table.get(i).is_some_and(|&(lo, _)| lo <= c)
}

/// `\p{L}`: a letter (general category L*).
pub(crate) fn is_letter(c: char) -> bool {
    if c.is_ascii() {
        c.is_ascii_alphabetic()
    } else {
        in_ranges(&tables().letter, c)
    }
}

/// `\p{N}`: a number (general category N*).
pub(crate) fn is_number(c: char) -> bool {
    if c.is_ascii() {
        c.is_ascii_digit()
    } else {
        in_ranges(&tables().number, c)
    }
}

/// `\s`: Unicode white space.
pub(crate) fn is_whitespace(c: char) -> bool {
    if c.is_ascii() {
        matches!(c, ' ' | '\t' | '\n' | '\x0B' | '\x0C' | '\r')
    } else {
        in_ranges(&tables().space, c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_agree_with_known_characters() {
        for c in ['a', 'Z', 'é', 'Ж', 'ش', 'न', '中', 'ア', '한'] {
            assert!(is_letter(c), "{c:?}");
        }
        for c in ['0', '9', '٣', '१', '①', 'Ⅻ', '²'] {
            assert!(is_number(c), "{c:?}");
        }
        for c in [
            ' ', '\t', '\n', '\r', '\u{85}', '\u{a0}', '\u{2009}', '\u{3000}',
        ] {
            assert!(is_whitespace(c), "{c:?}");
        }
        for c in ['\u{200b}', '\u{301}', '🍕', '!', '\u{200d}'] {
            assert!(!is_letter(c) && !is_number(c) && !is_whitespace(c), "{c:?}");
        }
        // Vowel signs are marks, not letters, although Rust calls them alphabetic.
        assert!(!is_letter('\u{93e}'));
    }
}
