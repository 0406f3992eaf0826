//! SHA-256 content hashes over canonical encodings.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

use crate::canonical;
use crate::value::Value;

/// A SHA-256 digest, shown and stored as 64 lower-case hex digits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ContentHash(pub [u8; 32]);

impl ContentHash {
    /// The all-zero hash: the `prev` of a ledger's first entry.
    pub const ZERO: ContentHash = ContentHash([0; 32]);

    /// Lower-case hex.
    pub fn to_hex(&self) -> String {
        let mut out = String::with_capacity(64);
        for b in self.0 {
            out.push(hex_digit(b >> 4));
            out.push(hex_digit(b & 0x0f));
        }
        out
    }

    /// The first `n` hex digits, for display.
    pub fn short(&self, n: usize) -> String {
        let mut hex = self.to_hex();
        hex.truncate(n.min(64));
        hex
    }
}

fn hex_digit(nibble: u8) -> char {
    char::from(b"0123456789abcdef"[usize::from(nibble & 0x0f)])
}

impl fmt::Display for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentHash({})", self.short(16))
    }
}

/// Text that is not 64 lower-case hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a content hash (64 lower-case hex digits): {0:?}")]
pub struct HashParseError(pub String);

impl FromStr for ContentHash {
    type Err = HashParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || HashParseError(s.chars().take(80).collect());
        let bytes = s.as_bytes();
        if bytes.len() != 64 {
            return Err(err());
        }
        let mut out = [0u8; 32];
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            let hi = nibble(pair[0]).ok_or_else(err)?;
            let lo = nibble(pair[1]).ok_or_else(err)?;
            out[i] = (hi << 4) | lo;
        }
        Ok(ContentHash(out))
    }
}

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// SHA-256 of raw bytes.
pub fn hash_bytes(bytes: &[u8]) -> ContentHash {
    ContentHash(Sha256::digest(bytes).into())
}

/// SHA-256 of the canonical encoding of `value`: the content address of a value.
pub fn hash_value(value: &Value) -> ContentHash {
    hash_bytes(canonical::encode(value).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digest_of_the_empty_input() {
        assert_eq!(
            hash_bytes(b"").to_hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn hex_round_trips_and_rejects_upper_case_or_short_text() {
        let h = hash_value(&Value::str("x"));
        assert_eq!(h.to_hex().parse::<ContentHash>(), Ok(h));
        assert!(h.to_hex().to_uppercase().parse::<ContentHash>().is_err());
        assert!("abc".parse::<ContentHash>().is_err());
    }

    #[test]
    fn equal_values_hash_equal_and_types_hash_apart() {
        let a = Value::map([("x", Value::int(1)), ("y", Value::int(2))]);
        let b = Value::map([("y", Value::int(2)), ("x", Value::int(1))]);
        assert_eq!(hash_value(&a), hash_value(&b));
        assert_ne!(hash_value(&Value::int(1)), hash_value(&Value::Bool(true)));
        assert_ne!(
            hash_value(&Value::int(1)),
            hash_value(&Value::float(1.0).unwrap())
        );
    }
}
