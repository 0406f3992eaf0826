//! Counting in text and bytes: `count_letter` and `count_byte`.
//!
//! Counting "letters" is the classic thing a language model gets wrong (it sees tokens, not
//! characters), so it is worth a primitive. A letter is one Unicode scalar value, compared exactly
//! (case-sensitive, no normalisation: `é` precomposed and `e` + U+0301 are different).

use super::PrimitiveError;
use super::args::{arity, bytes_capped, int, invalid, out_of_range, str_capped};
use crate::gate::Rng;
use crate::value::Value;

/// The largest text `count_letter` reads, in bytes.
pub const MAX_TEXT_BYTES: usize = 1 << 20;
/// The largest data `count_byte` reads, in bytes.
pub const MAX_DATA_BYTES: usize = 16 << 20;

/// `count_letter(text: str, letter: str) -> int`.
pub fn count_letter(args: &[Value]) -> Result<Value, PrimitiveError> {
    arity(args, 2)?;
    let text = str_capped(args, 0, "text", MAX_TEXT_BYTES)?;
    let letter = str_capped(args, 1, "letter", MAX_TEXT_BYTES)?;
    let mut chars = letter.chars();
    let c = match (chars.next(), chars.next()) {
        (Some(c), None) => c,
        _ => return Err(invalid("letter", "must be exactly one character")),
    };
    Ok(Value::int(text.chars().filter(|&x| x == c).count()))
}

/// Oracle for `count_letter`: counts non-overlapping occurrences of the letter's UTF-8 encoding
/// as a substring. UTF-8 is self-synchronising, so a scalar's encoding can only match at a
/// character boundary: the byte-level count equals the character count.
pub fn count_letter_oracle(args: &[Value]) -> Result<Value, PrimitiveError> {
    arity(args, 2)?;
    let text = str_capped(args, 0, "text", MAX_TEXT_BYTES)?;
    let letter = str_capped(args, 1, "letter", MAX_TEXT_BYTES)?;
    if letter.chars().count() != 1 {
        return Err(invalid("letter", "must be exactly one character"));
    }
    Ok(Value::int(text.matches(letter).count()))
}

/// Generator for `count_letter`: texts over a small alphabet mixing case, precomposed and
/// decomposed accents and astral-plane characters; letters that are empty, two characters, absent
/// or a combining mark on its own; now and then a non-string argument.
pub fn count_letter_generate(rng: &mut Rng) -> Vec<Value> {
    const ALPHABET: [&str; 10] = ["a", "A", "b", "é", "e", "\u{301}", "🍓", "r", " ", "ß"];
    let len = rng.below(25) as usize;
    let text: String = (0..len)
        .filter_map(|_| rng.choose(&ALPHABET).copied())
        .collect();
    let letter = match rng.below(10) {
        0 => String::new(),
        1 => "ab".to_owned(),
        2 => "z".to_owned(),
        3 => "e\u{301}".to_owned(),
        _ => rng.choose(&ALPHABET).copied().unwrap_or("a").to_owned(),
    };
    match rng.below(40) {
        0 => vec![Value::Bytes(text.into_bytes()), Value::str(letter)],
        1 => vec![Value::str(text)],
        _ => vec![Value::str(text), Value::str(letter)],
    }
}

/// `count_byte(data: bytes, byte: int) -> int`.
pub fn count_byte(args: &[Value]) -> Result<Value, PrimitiveError> {
    arity(args, 2)?;
    let data = bytes_capped(args, 0, "data", MAX_DATA_BYTES)?;
    let byte = int(args, 1, "byte")?;
    let b = u8::try_from(byte).map_err(|_| out_of_range("byte", "must be in 0..=255"))?;
    Ok(Value::int(data.iter().filter(|&&x| x == b).count()))
}

/// Oracle for `count_byte`: builds the full 256-bucket histogram, then reads one bucket.
pub fn count_byte_oracle(args: &[Value]) -> Result<Value, PrimitiveError> {
    arity(args, 2)?;
    let data = bytes_capped(args, 0, "data", MAX_DATA_BYTES)?;
    let byte = int(args, 1, "byte")?;
    if !(0..=255).contains(&byte) {
        return Err(out_of_range("byte", "must be in 0..=255"));
    }
    let mut histogram = [0usize; 256];
    for &x in data {
        if let Some(slot) = histogram.get_mut(usize::from(x)) {
            *slot += 1;
        }
    }
    let count = usize::try_from(byte)
        .ok()
        .and_then(|i| histogram.get(i).copied())
        .unwrap_or(0);
    Ok(Value::int(count))
}

/// Generator for `count_byte`: short data dense in a few byte values (so counts are non-trivial),
/// bytes at the 0 and 255 edges, and out-of-range bytes (-1, 256) that both sides must refuse.
pub fn count_byte_generate(rng: &mut Rng) -> Vec<Value> {
    const DENSE: [u8; 5] = [0, 1, 0x7f, 0x80, 0xff];
    let len = rng.below(40) as usize;
    let data: Vec<u8> = (0..len)
        .map(|_| {
            if rng.coin() {
                rng.choose(&DENSE).copied().unwrap_or(0)
            } else {
                rng.below(256) as u8
            }
        })
        .collect();
    let byte = match rng.below(12) {
        0 => -1,
        1 => 256,
        2 => 0,
        3 => 255,
        _ => i64::from(rng.choose(&DENSE).copied().unwrap_or(0)),
    };
    match rng.below(40) {
        0 => vec![Value::Bytes(data), Value::Bool(true)],
        _ => vec![Value::Bytes(data), Value::int(byte)],
    }
}
