//! GPT-2 byte-level encoding: every byte is shown as one printable character.
//!
//! Bytes that are printable Latin-1 (`!`..`~`, `¡`..`¬`, `®`..`ÿ`) stand for themselves; the other
//! 68 bytes are given the code points 256, 257, … in increasing byte order. BPE vocabularies of the
//! `gpt2` kind store their tokens in this alphabet (`Ġ` is the space byte).

use std::collections::HashMap;

/// The byte ↔ character tables.
#[derive(Debug, Clone)]
pub(crate) struct ByteMap {
    to_char: [char; 256],
    from_char: HashMap<char, u8>,
}

fn is_self_mapped(b: u8) -> bool {
    matches!(b, 0x21..=0x7E | 0xA1..=0xAC | 0xAE..=0xFF)
}

impl ByteMap {
    pub(crate) fn new() -> ByteMap {
        let mut to_char = ['\0'; 256];
        let mut from_char = HashMap::with_capacity(256);
        let mut next = 256u32;
        for b in 0..=255u8 {
            let c = if is_self_mapped(b) {
                char::from(b)
            } else {
                let c = char::from_u32(next).unwrap_or(char::REPLACEMENT_CHARACTER);
                next += 1;
                c
            };
            to_char[usize::from(b)] = c;
            from_char.insert(c, b);
        }
        ByteMap { to_char, from_char }
    }

    /// The character standing for a byte.
    pub(crate) fn char_of(&self, b: u8) -> char {
        self.to_char[usize::from(b)]
    }

    /// Encodes raw bytes into the byte-level alphabet.
    pub(crate) fn encode(&self, bytes: &[u8], out: &mut String) {
        for &b in bytes {
            out.push(self.char_of(b));
        }
    }

    /// Decodes a token text written in the byte-level alphabet back to bytes. A character
    /// outside the alphabet (a malformed vocabulary) is kept as its own UTF-8 bytes.
    pub(crate) fn decode(&self, text: &str, out: &mut Vec<u8>) {
        for c in text.chars() {
            match self.from_char.get(&c) {
                Some(&b) => out.push(b),
                None => {
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_known_points() {
        let m = ByteMap::new();
        assert_eq!(m.char_of(b' '), 'Ġ');
        assert_eq!(m.char_of(b'\n'), 'Ċ');
        assert_eq!(m.char_of(b'a'), 'a');
        let all: Vec<u8> = (0..=255).collect();
        let mut s = String::new();
        m.encode(&all, &mut s);
        assert_eq!(s.chars().count(), 256);
        let mut back = Vec::new();
        m.decode(&s, &mut back);
        assert_eq!(back, all);
    }
}
