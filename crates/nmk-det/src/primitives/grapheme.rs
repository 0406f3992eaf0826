//! `grapheme_count`: how many user-perceived characters (extended grapheme clusters, Unicode
//! UAX #29) a text has.
//!
//! The primitive is the `unicode-segmentation` crate, which carries the full Unicode property
//! tables. The oracle is a hand-written implementation of the UAX #29 break rules that carries its
//! own, tiny property table; it is honest only on the generator's restricted domain, and the
//! generator draws from exactly that domain: ASCII printable characters, CR and LF, combining
//! marks U+0300–U+036F, variation selector 16, skin-tone modifiers, zero-width joiner, regional
//! indicators, a handful of Extended_Pictographic emoji, and Hangul jamo and syllables.

use unicode_segmentation::UnicodeSegmentation;

use super::PrimitiveError;
use super::args::{arity, str_capped};
use crate::gate::Rng;
use crate::value::Value;

/// The largest text looked at, in bytes.
pub const MAX_TEXT_BYTES: usize = 1 << 20;

/// `grapheme_count(text: str) -> int`.
pub fn grapheme_count(args: &[Value]) -> Result<Value, PrimitiveError> {
    arity(args, 1)?;
    let text = str_capped(args, 0, "text", MAX_TEXT_BYTES)?;
    Ok(Value::int(text.graphemes(true).count()))
}

/// Grapheme_Cluster_Break classes, as far as the oracle's domain needs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Cr,
    Lf,
    Extend,
    Zwj,
    RegionalIndicator,
    Pictographic,
    L,
    V,
    T,
    Lv,
    Lvt,
    Other,
}

const EMOJI: [char; 6] = ['😀', '👍', '👩', '👨', '👧', '❤'];

fn classify(c: char) -> Class {
    let u = u32::from(c);
    match u {
        0x0D => Class::Cr,
        0x0A => Class::Lf,
        0x0300..=0x036F | 0xFE0F | 0x1F3FB..=0x1F3FF => Class::Extend,
        0x200D => Class::Zwj,
        0x1F1E6..=0x1F1FF => Class::RegionalIndicator,
        0x1100..=0x115F => Class::L,
        0x1160..=0x11A7 => Class::V,
        0x11A8..=0x11FF => Class::T,
        // A precomposed syllable is LV when it has no final consonant: every 28th from U+AC00.
        0xAC00..=0xD7A3 if (u - 0xAC00) % 28 == 0 => Class::Lv,
        0xAC00..=0xD7A3 => Class::Lvt,
        _ if EMOJI.contains(&c) => Class::Pictographic,
        _ => Class::Other,
    }
}

/// Oracle for `grapheme_count`: one left-to-right pass deciding, between every two characters,
/// whether the rules GB3–GB13 forbid a break, with two bits of carried state (the run of
/// regional indicators, and whether the text so far ends in `ExtPict Extend*` or
/// `ExtPict Extend* ZWJ`).
pub fn grapheme_count_oracle(args: &[Value]) -> Result<Value, PrimitiveError> {
    arity(args, 1)?;
    let text = str_capped(args, 0, "text", MAX_TEXT_BYTES)?;
    let mut clusters = 0usize;
    let mut prev: Option<Class> = None;
    let mut ri_run = 0usize; // regional indicators ending at `prev`
    let mut pict_tail = false; // text so far ends in ExtPict Extend*
    let mut zwj_armed = false; // text so far ends in ExtPict Extend* ZWJ
    for c in text.chars() {
        let cur = classify(c);
        let joins = match prev {
            None => false,
            Some(p) => {
                use Class::*;
                let gb3 = p == Cr && cur == Lf;
                // GB4, GB5: always break after and before a control, CR LF aside.
                let control = matches!(p, Cr | Lf) || matches!(cur, Cr | Lf);
                let gb6 = p == L && matches!(cur, L | V | Lv | Lvt);
                let gb7 = matches!(p, Lv | V) && matches!(cur, V | T);
                let gb8 = matches!(p, Lvt | T) && cur == T;
                let gb9 = matches!(cur, Extend | Zwj);
                let gb11 = zwj_armed && cur == Pictographic;
                // GB12, GB13: pair regional indicators from the start of their run.
                let gb12 = p == RegionalIndicator && cur == RegionalIndicator && ri_run % 2 == 1;
                gb3 || (!control && (gb6 || gb7 || gb8 || gb9 || gb11 || gb12))
            }
        };
        if !joins {
            clusters += 1;
        }
        zwj_armed = cur == Class::Zwj && pict_tail;
        pict_tail = match cur {
            Class::Pictographic => true,
            Class::Extend => pict_tail,
            _ => false,
        };
        ri_run = if cur == Class::RegionalIndicator {
            ri_run + 1
        } else {
            0
        };
        prev = Some(cur);
    }
    Ok(Value::int(clusters))
}

/// Generator for `grapheme_count`: sequences of up to 16 pieces from the oracle's domain,
/// weighted towards the interesting joins: CR LF, stacked combining marks, flags and odd runs of
/// regional indicators, ZWJ families, skin tones, VS16, jamo runs, marks after controls, and a
/// ZWJ between non-emoji. Now and then a non-string.
pub fn grapheme_count_generate(rng: &mut Rng) -> Vec<Value> {
    if rng.below(60) == 0 {
        return vec![Value::Bytes(b"abc".to_vec())];
    }
    const PIECES: [&str; 22] = [
        "a",
        "Z",
        " ",
        "\r",
        "\n",
        "\r\n",
        "\u{200D}",
        "\u{FE0F}",
        "\u{1F3FB}",
        "\u{1F3FF}",
        "😀",
        "👍",
        "👩",
        "👨",
        "👧",
        "❤",
        "\u{1100}",
        "\u{1161}",
        "\u{11A8}",
        "가",
        "각",
        "\u{1160}",
    ];
    let len = rng.below(17);
    let mut text = String::new();
    for _ in 0..len {
        match rng.below(6) {
            0 => {
                let mark = char::from_u32(0x300 + rng.below(0x70) as u32).unwrap_or('\u{301}');
                text.push(mark);
            }
            1 => {
                let ri = char::from_u32(0x1F1E6 + rng.below(26) as u32).unwrap_or('\u{1F1E6}');
                text.push(ri);
            }
            _ => text.push_str(rng.choose(&PIECES).copied().unwrap_or("a")),
        }
    }
    vec![Value::str(text)]
}
