//! A JSON shape check over a growing byte prefix: is this a prefix of some single JSON value
//! (RFC 8259, surrounding whitespace allowed), and is it a complete one?
//!
//! A pushdown recogniser fed one byte at a time; its state is small and cloned to try a
//! candidate piece without committing it.

use super::{CheckState, IncrementalCheck};

/// Deepest nesting of arrays and objects accepted (deeper output is refused, not parsed).
pub const MAX_DEPTH: usize = 128;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Frame {
    Array,
    Object,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Num {
    Minus,
    Zero,
    Int,
    Dot,
    Frac,
    Exp,
    ExpSign,
    ExpDigits,
}

impl Num {
    /// Whether a number may end in this state.
    fn terminal(self) -> bool {
        matches!(self, Num::Zero | Num::Int | Num::Frac | Num::ExpDigits)
    }

    fn next(self, b: u8) -> Option<Num> {
        let digit = b.is_ascii_digit();
        Some(match (self, b) {
            (Num::Minus, b'0') => Num::Zero,
            (Num::Minus, _) if digit => Num::Int,
            (Num::Int, _) if digit => Num::Int,
            (Num::Zero | Num::Int, b'.') => Num::Dot,
            (Num::Dot | Num::Frac, _) if digit => Num::Frac,
            (Num::Zero | Num::Int | Num::Frac, b'e' | b'E') => Num::Exp,
            (Num::Exp, b'+' | b'-') => Num::ExpSign,
            (Num::Exp | Num::ExpSign | Num::ExpDigits, _) if digit => Num::ExpDigits,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Esc {
    No,
    Backslash,
    /// Hex digits of a `\u` escape still expected.
    Hex(u8),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// A value is expected (top level, after `:` or after `,` in an array).
    Value,
    /// Just after `[`: a value or `]`.
    ArrayFirst,
    /// Just after `{`: a key or `}`.
    ObjectFirst,
    /// After `,` in an object: a key.
    Key,
    /// Inside a string (a key when `key`).
    Str { key: bool, esc: Esc },
    /// After a key: `:`.
    Colon,
    /// After a complete value.
    After,
    /// Inside a number.
    Number(Num),
    /// Inside `true`, `false` or `null`: `at` bytes of `word` seen.
    Literal { word: &'static [u8], at: u8 },
    /// No continuation can be JSON.
    Dead,
}

/// The JSON shape check (see the module documentation).
#[derive(Debug, Clone)]
pub struct JsonShape {
    stack: Vec<Frame>,
    state: State,
}

impl Default for JsonShape {
    fn default() -> JsonShape {
        JsonShape::new()
    }
}

impl JsonShape {
    /// Nothing seen yet.
    pub fn new() -> JsonShape {
        JsonShape {
            stack: Vec::new(),
            state: State::Value,
        }
    }

    fn close_value(&mut self) {
        self.state = State::After;
    }

    fn open(&mut self, frame: Frame) {
        if self.stack.len() >= MAX_DEPTH {
            self.state = State::Dead;
            return;
        }
        self.stack.push(frame);
        self.state = match frame {
            Frame::Array => State::ArrayFirst,
            Frame::Object => State::ObjectFirst,
        };
    }

    fn start_value(&mut self, b: u8) {
        self.state = match b {
            b'{' => return self.open(Frame::Object),
            b'[' => return self.open(Frame::Array),
            b'"' => State::Str {
                key: false,
                esc: Esc::No,
            },
            b'-' => State::Number(Num::Minus),
            b'0' => State::Number(Num::Zero),
            b'1'..=b'9' => State::Number(Num::Int),
            b't' => State::Literal {
                word: b"true",
                at: 1,
            },
            b'f' => State::Literal {
                word: b"false",
                at: 1,
            },
            b'n' => State::Literal {
                word: b"null",
                at: 1,
            },
            _ => State::Dead,
        };
    }

    /// Feeds one byte.
    fn push(&mut self, b: u8) {
        let ws = matches!(b, b' ' | b'\t' | b'\n' | b'\r');
        match self.state {
            State::Dead => {}
            State::Value if ws => {}
            State::Value => self.start_value(b),
            State::ArrayFirst if ws => {}
            State::ArrayFirst if b == b']' => {
                self.stack.pop();
                self.close_value();
            }
            State::ArrayFirst => self.start_value(b),
            State::ObjectFirst | State::Key if ws => {}
            State::ObjectFirst if b == b'}' => {
                self.stack.pop();
                self.close_value();
            }
            State::ObjectFirst | State::Key if b == b'"' => {
                self.state = State::Str {
                    key: true,
                    esc: Esc::No,
                };
            }
            State::ObjectFirst | State::Key => self.state = State::Dead,
            State::Str { key, esc } => {
                self.state = match (esc, b) {
                    (Esc::No, b'"') if key => State::Colon,
                    (Esc::No, b'"') => State::After,
                    (Esc::No, b'\\') => State::Str {
                        key,
                        esc: Esc::Backslash,
                    },
                    (Esc::No, 0..=0x1f) => State::Dead,
                    (Esc::No, _) => State::Str { key, esc: Esc::No },
                    (Esc::Backslash, b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                        State::Str { key, esc: Esc::No }
                    }
                    (Esc::Backslash, b'u') => State::Str {
                        key,
                        esc: Esc::Hex(4),
                    },
                    (Esc::Hex(n), _) if b.is_ascii_hexdigit() => State::Str {
                        key,
                        esc: if n > 1 { Esc::Hex(n - 1) } else { Esc::No },
                    },
                    _ => State::Dead,
                };
            }
            State::Colon if ws => {}
            State::Colon if b == b':' => self.state = State::Value,
            State::Colon => self.state = State::Dead,
            State::Number(n) => match n.next(b) {
                Some(n) => self.state = State::Number(n),
                None if n.terminal() => {
                    self.close_value();
                    self.push(b);
                }
                None => self.state = State::Dead,
            },
            State::Literal { word, at } => {
                let at = usize::from(at);
                if word.get(at) == Some(&b) {
                    if at + 1 == word.len() {
                        self.close_value();
                    } else {
                        self.state = State::Literal {
                            word,
                            at: (at + 1) as u8,
                        };
                    }
                } else {
                    self.state = State::Dead;
                }
            }
            State::After if ws => {}
            State::After => match (self.stack.last(), b) {
                (Some(Frame::Array), b',') => self.state = State::Value,
                (Some(Frame::Object), b',') => self.state = State::Key,
                (Some(Frame::Array), b']') | (Some(Frame::Object), b'}') => {
                    self.stack.pop();
                    self.close_value();
                }
                _ => self.state = State::Dead,
            },
        }
    }

    fn complete(&self) -> bool {
        self.stack.is_empty()
            && match self.state {
                State::After => true,
                State::Number(n) => n.terminal(),
                _ => false,
            }
    }
}

impl IncrementalCheck for JsonShape {
    fn name(&self) -> &'static str {
        "json_shape"
    }

    fn try_piece(&self, piece: &[u8]) -> CheckState {
        let mut next = self.clone();
        for &b in piece {
            next.push(b);
            if next.state == State::Dead {
                return CheckState::Dead;
            }
        }
        if next.complete() {
            CheckState::Complete
        } else {
            CheckState::Viable
        }
    }

    fn accept(&mut self, piece: &[u8]) {
        for &b in piece {
            self.push(b);
        }
    }

    fn may_end(&self) -> bool {
        self.complete()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state_of(text: &str) -> CheckState {
        JsonShape::new().try_piece(text.as_bytes())
    }

    #[test]
    fn prefixes_of_valid_json_stay_viable_and_complete_at_the_end() {
        for doc in [
            r#"{"a": [1, 2.5e-3, -0, true, false, null, "x\"y\u00e9"], "b": {}}"#,
            "[]",
            " 42 ",
            r#""é ✓""#,
            "[[[]],[{}]]",
            "-12.0E+7",
        ] {
            let bytes = doc.as_bytes();
            for cut in 0..bytes.len() {
                assert_ne!(
                    JsonShape::new().try_piece(&bytes[..cut]),
                    CheckState::Dead,
                    "{doc:?} cut at {cut}"
                );
            }
            assert_eq!(state_of(doc), CheckState::Complete, "{doc:?}");
        }
    }

    #[test]
    fn invalid_json_dies_at_the_first_bad_byte() {
        for bad in [
            "[1,]",
            "{,",
            "{\"a\" 1}",
            "01",
            "[1.]",
            "1.e",
            "tru e",
            "nul1",
            "[1 2]",
            "{}}",
            "\"\t\"",
            "\"\\x\"",
            "--1",
            "{1:2}",
            "] ",
            "x",
        ] {
            assert_eq!(state_of(bad), CheckState::Dead, "{bad:?}");
        }
        // Incomplete but viable.
        for open in ["{", "[1,", "\"abc", "tr", "-", "1e", "{\"a\":"] {
            assert_eq!(state_of(open), CheckState::Viable, "{open:?}");
        }
    }

    #[test]
    fn depth_is_capped() {
        let deep = "[".repeat(MAX_DEPTH);
        assert_eq!(state_of(&deep), CheckState::Viable);
        assert_eq!(state_of(&"[".repeat(MAX_DEPTH + 1)), CheckState::Dead);
    }

    #[test]
    fn accept_then_try_continues_where_it_left() {
        let mut j = JsonShape::new();
        j.accept(b"{\"n\": 1");
        assert!(!j.may_end());
        assert_eq!(j.try_piece(b"2}"), CheckState::Complete);
        assert_eq!(j.try_piece(b"x"), CheckState::Dead);
        j.accept(b"}");
        assert!(j.may_end());
    }
}
