//! Byte-level BPE: merges applied to one pre-tokenized word.
//!
//! Symbols are numbered: a vocabulary string has its token id; a string that appears in the
//! merges (or as a single byte) but not in the vocabulary gets a "virtual" id past the end of the
//! vocabulary, so the merge loop works on integers and still behaves exactly like merging
//! strings. A word starts as one symbol per byte; the adjacent pair with the lowest merge rank
//! (the leftmost among equals) is merged until no pair has a rank. A final symbol that is not in
//! the vocabulary falls back to the vocabulary tokens of its single ASCII bytes, and is dropped
//! where there are none (llama.cpp's behaviour).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use super::TokenizerError;
use super::bytes::ByteMap;

/// The merge table of a vocabulary.
#[derive(Debug)]
pub(crate) struct Bpe {
    /// (left, right) → (rank, merged symbol).
    merges: HashMap<(u32, u32), (u32, u32)>,
    /// The symbol of each byte.
    byte_sym: [u32; 256],
    /// Texts of the virtual symbols, indexed by `id - n_vocab`.
    virtual_text: Vec<String>,
    n_vocab: u32,
    ignore_merges: bool,
}

struct Interner<'a> {
    text_to_id: &'a HashMap<String, u32>,
    extra: HashMap<String, u32>,
    extra_text: Vec<String>,
    n_vocab: u32,
}

impl Interner<'_> {
    fn id(&mut self, s: &str) -> Result<u32, TokenizerError> {
        if let Some(&id) = self.text_to_id.get(s) {
            return Ok(id);
        }
        if let Some(&id) = self.extra.get(s) {
            return Ok(id);
        }
        let id = u32::try_from(self.extra_text.len())
            .ok()
            .and_then(|n| self.n_vocab.checked_add(n))
            .ok_or(TokenizerError::VocabTooLarge {
                len: self.extra_text.len(),
            })?;
        self.extra.insert(s.to_owned(), id);
        self.extra_text.push(s.to_owned());
        Ok(id)
    }
}

#[derive(Clone, Copy)]
struct Sym {
    id: u32,
    prev: usize,
    next: usize,
    alive: bool,
}

const NONE: usize = usize::MAX;

/// A queued pair: (rank, left index, right index, left id, right id, merged id); the heap pops
/// the lowest rank, then the leftmost.
type Pair = (u32, usize, usize, u32, u32, u32);

impl Bpe {
    /// Builds the merge table. `merges` are `"LEFT RIGHT"` strings in rank order; the split is
    /// at the first space after the first byte, and the first occurrence of a pair keeps its rank.
    pub(crate) fn new(
        merges: &[String],
        text_to_id: &HashMap<String, u32>,
        n_vocab: u32,
        bytes: &ByteMap,
        ignore_merges: bool,
    ) -> Result<Bpe, TokenizerError> {
        let mut interner = Interner {
            text_to_id,
            extra: HashMap::new(),
            extra_text: Vec::new(),
            n_vocab,
        };
        let mut byte_sym = [0u32; 256];
        for (b, slot) in byte_sym.iter_mut().enumerate() {
            let c = bytes.char_of(u8::try_from(b).unwrap_or(0));
            let mut buf = [0u8; 4];
            *slot = interner.id(c.encode_utf8(&mut buf))?;
        }
        let mut table = HashMap::with_capacity(merges.len());
        let mut joined = String::new();
        for (index, merge) in merges.iter().enumerate() {
            let split = merge.bytes().skip(1).position(|b| b == b' ').map(|p| p + 1);
            let Some((left, right)) = split.map(|p| (&merge[..p], &merge[p + 1..])) else {
                return Err(TokenizerError::BadMerge {
                    index,
                    merge: merge.clone(),
                });
            };
            if right.is_empty() {
                return Err(TokenizerError::BadMerge {
                    index,
                    merge: merge.clone(),
                });
            }
            let rank = u32::try_from(index)
                .map_err(|_| TokenizerError::VocabTooLarge { len: merges.len() })?;
            let l = interner.id(left)?;
            let r = interner.id(right)?;
            joined.clear();
            joined.push_str(left);
            joined.push_str(right);
            let m = interner.id(&joined)?;
            table.entry((l, r)).or_insert((rank, m));
        }
        Ok(Bpe {
            merges: table,
            byte_sym,
            virtual_text: interner.extra_text,
            n_vocab,
            ignore_merges,
        })
    }

    /// Encodes one word (raw bytes; `encoded` is the same word in the byte-level alphabet).
    pub(crate) fn encode_word(
        &self,
        word: &[u8],
        encoded: &str,
        text_to_id: &HashMap<String, u32>,
        out: &mut Vec<u32>,
    ) {
        if self.ignore_merges
            && let Some(&id) = text_to_id.get(encoded)
        {
            out.push(id);
            return;
        }
        let n = word.len();
        if n == 1 {
            self.emit(self.byte_sym[usize::from(word[0])], text_to_id, out);
            return;
        }
        let mut syms: Vec<Sym> = word
            .iter()
            .enumerate()
            .map(|(i, &b)| Sym {
                id: self.byte_sym[usize::from(b)],
                prev: if i == 0 { NONE } else { i - 1 },
                next: if i + 1 == n { NONE } else { i + 1 },
                alive: true,
            })
            .collect();
        let mut heap: BinaryHeap<Reverse<Pair>> = BinaryHeap::with_capacity(n);
        let push = |heap: &mut BinaryHeap<_>, syms: &[Sym], l: usize, r: usize| {
            if l == NONE || r == NONE {
                return;
            }
            let (a, b) = (syms[l].id, syms[r].id);
            if let Some(&(rank, m)) = self.merges.get(&(a, b)) {
                heap.push(Reverse((rank, l, r, a, b, m)));
            }
        };
        for i in 1..n {
            push(&mut heap, &syms, i - 1, i);
        }
        while let Some(Reverse((_, l, r, a, b, m))) = heap.pop() {
            let (ls, rs) = (syms[l], syms[r]);
            if !ls.alive || !rs.alive || ls.id != a || rs.id != b || ls.next != r {
                continue;
            }
            syms[l].id = m;
            syms[l].next = rs.next;
            syms[r].alive = false;
            if rs.next != NONE {
                syms[rs.next].prev = l;
            }
            push(&mut heap, &syms, ls.prev, l);
            push(&mut heap, &syms, l, rs.next);
        }
        let mut i = 0;
        while i != NONE {
            self.emit(syms[i].id, text_to_id, out);
            i = syms[i].next;
        }
    }

    fn emit(&self, id: u32, text_to_id: &HashMap<String, u32>, out: &mut Vec<u32>) {
        if id < self.n_vocab {
            out.push(id);
            return;
        }
        let idx = usize::try_from(id - self.n_vocab).unwrap_or(usize::MAX);
        let Some(text) = self.virtual_text.get(idx) else {
            return;
        };
        // Not a vocabulary string: fall back to the tokens of its single ASCII bytes.
        for &b in text.as_bytes() {
            if b.is_ascii() {
                let s = char::from(b).to_string();
                if let Some(&t) = text_to_id.get(&s) {
                    out.push(t);
                }
            }
        }
    }
}
