//! The one canonical encoding of a [`Value`]: what every content hash and ledger entry is
//! computed over.
//!
//! The encoding is JSON text with these rules (also in `docs/canonical-encoding.md`):
//!
//! * UTF-8, no whitespace anywhere outside strings.
//! * `null`, `true`, `false`.
//! * Integers: exact decimal digits of any size, `-` for negatives, no leading zeros, no `-0`.
//! * Floats: finite only (non-finite values cannot be built); the shortest digits that round-trip,
//!   always with a `.` or an exponent so a float never reads as an integer (`1.0`, `0.1`,
//!   `1e300`, `-0.0`).
//! * Strings: `"` … `"`; only `"` `\` and control characters are escaped (`\"` `\\` `\b` `\f`
//!   `\n` `\r` `\t`, otherwise `\u00xx` in lower-case hex, also for DEL); everything else is raw
//!   UTF-8, never `\u`-escaped.
//! * Lists: `[a,b]`.
//! * String-keyed maps: `{"k":v}` with keys sorted by their UTF-8 bytes. A key that starts with
//!   `$` is written with one more `$` in front, so the tags below cannot be forged by data.
//! * Types JSON lacks are single-key tagged objects: `{"$bytes":"<lower-case hex>"}`,
//!   `{"$tuple":[…]}`, `{"$set":[…]}` (elements sorted by their encoding, no duplicates) and
//!   `{"$dict":[[k,v],…]}` for dictionaries with a non-string key (pairs sorted by the key's
//!   encoding, keys unique).
//!
//! [`decode`] accepts exactly the encodings [`encode`] produces and rejects everything else, so
//! `encode(decode(text)?) == text` whenever decoding succeeds: one value, one text, one hash.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::value::{Finite, Integer, Value};

const TAG_BYTES: &str = "$bytes";
const TAG_TUPLE: &str = "$tuple";
const TAG_SET: &str = "$set";
const TAG_DICT: &str = "$dict";

/// Nesting deeper than this is refused by [`decode`], so hostile input cannot exhaust the stack.
pub const MAX_DEPTH: usize = 256;

/// The canonical text of `value`.
pub fn encode(value: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, value);
    out
}

fn write_value(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Value::Float(f) => write_float(out, *f),
        Value::Str(s) => write_string(out, s),
        Value::Bytes(bytes) => {
            out.push('{');
            write_string(out, TAG_BYTES);
            out.push_str(":\"");
            for b in bytes {
                let _ = write!(out, "{b:02x}");
            }
            out.push_str("\"}");
        }
        Value::List(items) => write_seq(out, items),
        Value::Tuple(items) => write_tagged_seq(out, TAG_TUPLE, items),
        Value::Set(items) => write_tagged_seq(out, TAG_SET, items),
        Value::Map(map) => {
            out.push('{');
            for (i, (k, v)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                if k.starts_with('$') {
                    write_string(out, &format!("${k}"));
                } else {
                    write_string(out, k);
                }
                out.push(':');
                write_value(out, v);
            }
            out.push('}');
        }
        Value::Dict(pairs) => {
            out.push('{');
            write_string(out, TAG_DICT);
            out.push_str(":[");
            for (i, (k, v)) in pairs.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push('[');
                write_value(out, k);
                out.push(',');
                write_value(out, v);
                out.push(']');
            }
            out.push_str("]}");
        }
    }
}

fn write_seq(out: &mut String, items: &[Value]) {
    out.push('[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_value(out, item);
    }
    out.push(']');
}

fn write_tagged_seq(out: &mut String, tag: &str, items: &[Value]) {
    out.push('{');
    write_string(out, tag);
    out.push(':');
    write_seq(out, items);
    out.push('}');
}

fn write_float(out: &mut String, f: Finite) {
    // `{:?}` prints the shortest digits that round-trip, switching to an exponent for very large
    // and very small magnitudes; it always shows a `.` or an `e`.
    let text = format!("{:?}", f.get());
    out.push_str(&text);
}

fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Why a text is not a canonical encoding.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CanonicalError {
    /// The text ended inside a value.
    #[error("canonical text ends early at byte {0}")]
    UnexpectedEnd(usize),
    /// A byte that cannot start or continue a value here.
    #[error("unexpected byte {byte:#04x} at {at} in canonical text")]
    UnexpectedByte {
        /// Offset of the byte.
        at: usize,
        /// The byte.
        byte: u8,
    },
    /// Text after the value.
    #[error("trailing bytes after the value at {0}")]
    Trailing(usize),
    /// Nested deeper than [`MAX_DEPTH`].
    #[error("nesting deeper than {MAX_DEPTH}")]
    TooDeep,
    /// A number that is not in canonical form (or not finite).
    #[error("non-canonical number {0:?}")]
    Number(String),
    /// A string with a non-canonical or invalid escape, or invalid UTF-8.
    #[error("non-canonical string at byte {0}")]
    String(usize),
    /// Keys out of order or repeated, a set or dict out of normal form, or a malformed tag.
    #[error("not in canonical form: {0}")]
    NotNormal(String),
}

/// Parses a canonical text. Anything [`encode`] would not have produced is an error.
pub fn decode(text: &str) -> Result<Value, CanonicalError> {
    let mut parser = Parser {
        bytes: text.as_bytes(),
        pos: 0,
    };
    let value = parser.value(0)?;
    if parser.pos != parser.bytes.len() {
        return Err(CanonicalError::Trailing(parser.pos));
    }
    Ok(value)
}

struct Parser<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Result<u8, CanonicalError> {
        self.bytes
            .get(self.pos)
            .copied()
            .ok_or(CanonicalError::UnexpectedEnd(self.pos))
    }

    fn expect(&mut self, byte: u8) -> Result<(), CanonicalError> {
        let got = self.peek()?;
        if got != byte {
            return Err(CanonicalError::UnexpectedByte {
                at: self.pos,
                byte: got,
            });
        }
        self.pos += 1;
        Ok(())
    }

    fn literal(&mut self, word: &str, value: Value) -> Result<Value, CanonicalError> {
        for &b in word.as_bytes() {
            self.expect(b)?;
        }
        Ok(value)
    }

    fn value(&mut self, depth: usize) -> Result<Value, CanonicalError> {
        if depth > MAX_DEPTH {
            return Err(CanonicalError::TooDeep);
        }
        match self.peek()? {
            b'n' => self.literal("null", Value::Null),
            b't' => self.literal("true", Value::Bool(true)),
            b'f' => self.literal("false", Value::Bool(false)),
            b'"' => Ok(Value::Str(self.string()?)),
            b'[' => Ok(Value::List(self.seq(depth)?)),
            b'{' => self.object(depth),
            b'-' | b'0'..=b'9' => self.number(),
            byte => Err(CanonicalError::UnexpectedByte { at: self.pos, byte }),
        }
    }

    fn number(&mut self) -> Result<Value, CanonicalError> {
        let start = self.pos;
        while let Some(&b) = self.bytes.get(self.pos) {
            if b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E') {
                self.pos += 1;
            } else {
                break;
            }
        }
        let token = std::str::from_utf8(&self.bytes[start..self.pos])
            .map_err(|_| CanonicalError::Number(String::new()))?;
        let bad = || CanonicalError::Number(token.to_owned());
        if token.contains(['.', 'e', 'E']) {
            let x: f64 = token.parse().map_err(|_| bad())?;
            let finite = Finite::new(x).ok_or_else(bad)?;
            let mut again = String::new();
            write_float(&mut again, finite);
            if again != token {
                return Err(bad());
            }
            Ok(Value::Float(finite))
        } else {
            Integer::from_decimal(token).map(Value::Int).ok_or_else(bad)
        }
    }

    fn string(&mut self) -> Result<String, CanonicalError> {
        let start = self.pos;
        self.expect(b'"')?;
        let mut raw: Vec<u8> = Vec::new();
        loop {
            let at = self.pos;
            let b = self.peek()?;
            self.pos += 1;
            match b {
                b'"' => break,
                b'\\' => {
                    let esc = self.peek()?;
                    self.pos += 1;
                    let decoded: u8 = match esc {
                        b'"' => b'"',
                        b'\\' => b'\\',
                        b'b' => 0x08,
                        b'f' => 0x0c,
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'u' => {
                            let hex = self
                                .bytes
                                .get(self.pos..self.pos + 4)
                                .ok_or(CanonicalError::String(at))?;
                            self.pos += 4;
                            let hex =
                                std::str::from_utf8(hex).map_err(|_| CanonicalError::String(at))?;
                            if hex.bytes().any(|h| h.is_ascii_uppercase()) {
                                return Err(CanonicalError::String(at));
                            }
                            let code = u8::from_str_radix(hex.get(2..).unwrap_or(""), 16)
                                .ok()
                                .filter(|_| hex.starts_with("00"))
                                .ok_or(CanonicalError::String(at))?;
                            // Only characters without a short escape use \u.
                            let needs_u = (code < 0x20 || code == 0x7f)
                                && !matches!(code, 0x08 | 0x0c | b'\n' | b'\r' | b'\t');
                            if !needs_u {
                                return Err(CanonicalError::String(at));
                            }
                            code
                        }
                        _ => return Err(CanonicalError::String(at)),
                    };
                    raw.push(decoded);
                }
                b if b < 0x20 || b == 0x7f => return Err(CanonicalError::String(at)),
                b => raw.push(b),
            }
        }
        String::from_utf8(raw).map_err(|_| CanonicalError::String(start))
    }

    fn seq(&mut self, depth: usize) -> Result<Vec<Value>, CanonicalError> {
        self.expect(b'[')?;
        let mut items = Vec::new();
        if self.peek()? == b']' {
            self.pos += 1;
            return Ok(items);
        }
        loop {
            items.push(self.value(depth + 1)?);
            match self.peek()? {
                b',' => self.pos += 1,
                b']' => {
                    self.pos += 1;
                    return Ok(items);
                }
                byte => return Err(CanonicalError::UnexpectedByte { at: self.pos, byte }),
            }
        }
    }

    fn object(&mut self, depth: usize) -> Result<Value, CanonicalError> {
        let start = self.pos;
        self.expect(b'{')?;
        if self.peek()? == b'}' {
            self.pos += 1;
            return Ok(Value::Map(BTreeMap::new()));
        }
        let first_key = self.string()?;
        self.expect(b':')?;
        if !first_key.starts_with("$$") && first_key.starts_with('$') {
            let tagged = self.tagged(&first_key, depth)?;
            self.expect(b'}')?;
            return Ok(tagged);
        }
        let mut map = BTreeMap::new();
        let mut previous: Option<String> = None;
        let mut key = first_key;
        loop {
            if previous
                .as_ref()
                .is_some_and(|p| p.as_bytes() >= key.as_bytes())
            {
                return Err(CanonicalError::NotNormal(format!(
                    "map keys out of order at byte {start}"
                )));
            }
            let value = self.value(depth + 1)?;
            let stored = match key.strip_prefix('$') {
                Some(rest) => rest.to_owned(),
                None => key.clone(),
            };
            map.insert(stored, value);
            previous = Some(key);
            match self.peek()? {
                b',' => {
                    self.pos += 1;
                    key = self.string()?;
                    if key.starts_with('$') && !key.starts_with("$$") {
                        return Err(CanonicalError::NotNormal(format!(
                            "unescaped $ key {key:?}"
                        )));
                    }
                    self.expect(b':')?;
                }
                b'}' => {
                    self.pos += 1;
                    return Ok(Value::Map(map));
                }
                byte => return Err(CanonicalError::UnexpectedByte { at: self.pos, byte }),
            }
        }
    }

    fn tagged(&mut self, tag: &str, depth: usize) -> Result<Value, CanonicalError> {
        match tag {
            TAG_BYTES => {
                let at = self.pos;
                let hex = self.string()?;
                if hex.len() % 2 != 0
                    || hex.bytes().any(|h| !matches!(h, b'0'..=b'9' | b'a'..=b'f'))
                {
                    return Err(CanonicalError::NotNormal(format!(
                        "bad $bytes at byte {at}"
                    )));
                }
                let bytes = (0..hex.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&hex[i..i + 2], 16))
                    .collect::<Result<Vec<u8>, _>>()
                    .map_err(|_| CanonicalError::NotNormal(format!("bad $bytes at byte {at}")))?;
                Ok(Value::Bytes(bytes))
            }
            TAG_TUPLE => Ok(Value::Tuple(self.seq(depth + 1)?)),
            TAG_SET => {
                let items = self.seq(depth + 1)?;
                let normal = Value::set(items.clone());
                if normal != Value::Set(items.clone()) {
                    return Err(CanonicalError::NotNormal(
                        "$set not sorted and unique".into(),
                    ));
                }
                Ok(Value::Set(items))
            }
            TAG_DICT => {
                let rows = self.seq(depth + 1)?;
                let mut pairs = Vec::with_capacity(rows.len());
                for row in rows {
                    match row {
                        Value::List(mut kv) if kv.len() == 2 => {
                            let v = kv.pop().unwrap_or(Value::Null);
                            let k = kv.pop().unwrap_or(Value::Null);
                            pairs.push((k, v));
                        }
                        _ => {
                            return Err(CanonicalError::NotNormal(
                                "$dict rows must be [k,v]".into(),
                            ));
                        }
                    }
                }
                let normal = Value::dict(pairs.clone());
                if normal != Value::Dict(pairs.clone()) {
                    return Err(CanonicalError::NotNormal("$dict not in normal form".into()));
                }
                Ok(Value::Dict(pairs))
            }
            other => Err(CanonicalError::NotNormal(format!("unknown tag {other:?}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(v: &Value) -> String {
        let text = encode(v);
        assert_eq!(decode(&text).as_ref(), Ok(v), "round trip of {text}");
        text
    }

    #[test]
    fn scalars_have_their_documented_form() {
        assert_eq!(round_trip(&Value::Null), "null");
        assert_eq!(round_trip(&Value::Bool(true)), "true");
        assert_eq!(round_trip(&Value::int(-42)), "-42");
        assert_eq!(round_trip(&Value::float(1.0).unwrap()), "1.0");
        assert_eq!(round_trip(&Value::float(0.1).unwrap()), "0.1");
        assert_eq!(round_trip(&Value::float(1e300).unwrap()), "1e300");
        assert_eq!(round_trip(&Value::float(-0.0).unwrap()), "-0.0");
        let big = Value::Int(Integer::from_decimal("123456789012345678901234567890").unwrap());
        assert_eq!(round_trip(&big), "123456789012345678901234567890");
    }

    #[test]
    fn strings_escape_only_what_json_requires() {
        assert_eq!(
            round_trip(&Value::str("a\"b\\c\n\u{1}\u{7f}é😀")),
            "\"a\\\"b\\\\c\\n\\u0001\\u007fé😀\""
        );
    }

    #[test]
    fn maps_sort_keys_and_escape_dollar_keys() {
        let v = Value::map([
            ("b", Value::int(1)),
            ("a", Value::Null),
            ("$set", Value::Bool(false)),
        ]);
        assert_eq!(round_trip(&v), "{\"$$set\":false,\"a\":null,\"b\":1}");
    }

    #[test]
    fn tagged_types_round_trip() {
        let v = Value::List(vec![
            Value::Bytes(vec![0, 255]),
            Value::Tuple(vec![Value::int(1)]),
            Value::set([Value::str("b"), Value::str("a")]),
            Value::dict([
                (Value::int(2), Value::str("x")),
                (Value::str("k"), Value::Null),
            ]),
        ]);
        assert_eq!(
            round_trip(&v),
            "[{\"$bytes\":\"00ff\"},{\"$tuple\":[1]},{\"$set\":[\"a\",\"b\"]},{\"$dict\":[[\"k\",null],[2,\"x\"]]}]"
        );
    }

    #[test]
    fn non_canonical_texts_are_rejected() {
        for bad in [
            " null",
            "null ",
            "[1, 2]",
            "01",
            "-0",
            "1.50",
            "1E5",
            "1e+5",
            "NaN",
            "Infinity",
            "1e400",
            "{\"b\":1,\"a\":2}",
            "{\"a\":1,\"a\":1}",
            "\"\\u0041\"",
            "\"\\u000A\"",
            "\"\\/\"",
            "{\"$set\":[2,1]}",
            "{\"$set\":[1,1]}",
            "{\"$dict\":[[\"a\",1]]}",
            "{\"$bytes\":\"0F\"}",
            "{\"$nope\":1}",
            "{\"$tuple\":[],\"x\":1}",
            "{\"a\":1,\"$set\":[]}",
            "[",
            "\"abc",
            "tru",
        ] {
            assert!(decode(bad).is_err(), "{bad:?} decoded");
        }
    }

    #[test]
    fn hostile_nesting_is_refused_not_overflowed() {
        let deep = "[".repeat(100_000);
        assert_eq!(decode(&deep), Err(CanonicalError::TooDeep));
    }
}
