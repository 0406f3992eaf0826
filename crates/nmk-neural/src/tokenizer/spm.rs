//! SentencePiece-style (`tokenizer.ggml.model == "llama"`) encoding.
//!
//! Spaces are written `▁`; the text starts as one symbol per character; the adjacent pair whose
//! concatenation is a vocabulary token with the highest score (the leftmost among equals) is
//! merged until no pair is a token. A final symbol that is not a token is spelled with byte
//! tokens `<0xXX>`, one per UTF-8 byte (falling back to a one-character token, then to `unk`).

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

/// Bigram candidate: higher score first, then the leftmost.
#[derive(Debug, Clone, Copy)]
struct Cand {
    score: f32,
    left: usize,
    right: usize,
    size: usize,
}

impl PartialEq for Cand {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Cand {}
impl PartialOrd for Cand {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Cand {
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then_with(|| other.left.cmp(&self.left))
    }
}

struct Sym {
    start: usize,
    len: usize,
    prev: usize,
    next: usize,
}

const NONE: usize = usize::MAX;

/// The byte-fallback table of a SentencePiece vocabulary.
#[derive(Debug)]
pub(crate) struct Spm {
    byte_tokens: [Option<u32>; 256],
    unk: Option<u32>,
}

impl Spm {
    pub(crate) fn new(text_to_id: &HashMap<String, u32>, unk: Option<u32>) -> Spm {
        let mut byte_tokens = [None; 256];
        for (b, slot) in byte_tokens.iter_mut().enumerate() {
            *slot = text_to_id
                .get(&format!("<0x{b:02X}>"))
                .copied()
                .or_else(|| {
                    u8::try_from(b)
                        .ok()
                        .filter(u8::is_ascii)
                        .and_then(|b| text_to_id.get(&char::from(b).to_string()).copied())
                });
        }
        Spm { byte_tokens, unk }
    }

    /// Encodes one fragment that is already escaped (`▁` for spaces).
    pub(crate) fn encode(
        &self,
        text: &str,
        text_to_id: &HashMap<String, u32>,
        scores: &[f32],
        out: &mut Vec<u32>,
    ) {
        let mut syms: Vec<Sym> = Vec::with_capacity(text.len());
        for (i, (start, c)) in text.char_indices().enumerate() {
            syms.push(Sym {
                start,
                len: c.len_utf8(),
                prev: if i == 0 { NONE } else { i - 1 },
                next: i + 1,
            });
        }
        if let Some(last) = syms.last_mut() {
            last.next = NONE;
        }
        let mut heap = BinaryHeap::new();
        let try_add = |heap: &mut BinaryHeap<Cand>, syms: &[Sym], l: usize, r: usize| {
            if l == NONE || r == NONE {
                return;
            }
            let (a, b) = (&syms[l], &syms[r]);
            let size = a.len + b.len;
            let Some(s) = text.get(a.start..a.start + size) else {
                return;
            };
            if let Some(&id) = text_to_id.get(s) {
                let score = usize::try_from(id)
                    .ok()
                    .and_then(|i| scores.get(i))
                    .copied()
                    .unwrap_or(0.0);
                heap.push(Cand {
                    score,
                    left: l,
                    right: r,
                    size,
                });
            }
        };
        for i in 1..syms.len() {
            try_add(&mut heap, &syms, i - 1, i);
        }
        while let Some(c) = heap.pop() {
            let (ln, rn) = (syms[c.left].len, syms[c.right].len);
            if ln == 0 || rn == 0 || ln + rn != c.size {
                continue;
            }
            syms[c.left].len += rn;
            syms[c.right].len = 0;
            let next = syms[c.right].next;
            syms[c.left].next = next;
            if next != NONE {
                syms[next].prev = c.left;
            }
            let prev = syms[c.left].prev;
            try_add(&mut heap, &syms, prev, c.left);
            try_add(&mut heap, &syms, c.left, next);
        }
        let mut i = if syms.is_empty() { NONE } else { 0 };
        while i != NONE {
            let s = &syms[i];
            let piece = text.get(s.start..s.start + s.len).unwrap_or("");
            match text_to_id.get(piece) {
                Some(&id) => out.push(id),
                None => {
                    for &b in piece.as_bytes() {
                        if let Some(id) = self.byte_tokens[usize::from(b)].or(self.unk) {
                            out.push(id);
                        }
                    }
                }
            }
            i = s.next;
        }
    }
}
