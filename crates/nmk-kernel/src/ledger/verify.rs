//! Chain verification over stored or exported entries: detects an edited, deleted, reordered or
//! inserted entry, and a truncated tail when the last known head is given.

use std::fmt;

use nmk_det::ContentHash;

use super::entry::{Head, LedgerEntry};

/// One thing wrong with a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The row at `index` is not a well-formed entry.
    Malformed {
        /// Position of the row in the stored order (from 0).
        index: u64,
        /// What is wrong.
        why: String,
    },
    /// The row's position and the entry's own sequence number disagree (deletion, insertion or
    /// reordering).
    OutOfSequence {
        /// Expected sequence number.
        expected: u64,
        /// Found.
        found: u64,
    },
    /// The stored hash is not the seal of the entry's fields (an edit).
    SealBroken {
        /// The entry.
        seq: u64,
    },
    /// The entry's `prev` is not the previous entry's hash.
    LinkBroken {
        /// The entry.
        seq: u64,
    },
    /// The known head is beyond the end of the chain: the tail was truncated.
    Truncated {
        /// The known head's sequence number.
        head_seq: u64,
        /// Entries present.
        entries: u64,
    },
    /// The entry at the known head's position has another hash: history was rewritten.
    HeadMismatch {
        /// The known head's sequence number.
        seq: u64,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Malformed { index, why } => write!(f, "row {index}: {why}"),
            Problem::OutOfSequence { expected, found } => {
                write!(
                    f,
                    "expected entry {expected}, found entry {found} (deleted, inserted or reordered)"
                )
            }
            Problem::SealBroken { seq } => {
                write!(f, "entry {seq}: hash does not match its fields (edited)")
            }
            Problem::LinkBroken { seq } => {
                write!(f, "entry {seq}: prev is not the previous entry's hash")
            }
            Problem::Truncated { head_seq, entries } => {
                write!(
                    f,
                    "known head is entry {head_seq} but only {entries} entries remain (tail truncated)"
                )
            }
            Problem::HeadMismatch { seq } => write!(f, "entry {seq} differs from the known head"),
        }
    }
}

/// The outcome of verifying a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Rows examined.
    pub entries: u64,
    /// The last entry's head, if any.
    pub head: Option<Head>,
    /// Everything found wrong; empty when the chain verifies.
    pub problems: Vec<Problem>,
}

impl VerifyReport {
    /// Whether the chain verified.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Incremental verifier: feed rows in stored order, then [`ChainVerifier::finish`].
#[derive(Debug, Default)]
pub struct ChainVerifier {
    index: u64,
    prev: Option<ContentHash>,
    head: Option<Head>,
    known_head: Option<Head>,
    known_head_matched: Option<bool>,
    problems: Vec<Problem>,
}

/// Problems past this many are not recorded (the count of rows still is).
const MAX_PROBLEMS: usize = 1000;

impl ChainVerifier {
    /// A verifier expecting entry 0 first; `known_head` is the last head the reader trusted, if
    /// any, so that a truncated or rewritten tail is detected.
    pub fn new(known_head: Option<Head>) -> Self {
        ChainVerifier {
            known_head,
            ..ChainVerifier::default()
        }
    }

    /// A verifier for the entries after `start` (a head already trusted): the first row fed
    /// must be entry `start.seq + 1`, chained to `start.hash`.
    pub fn after(start: Head) -> Self {
        ChainVerifier {
            index: start.seq + 1,
            prev: Some(start.hash),
            ..ChainVerifier::default()
        }
    }

    fn problem(&mut self, p: Problem) {
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push(p);
        }
    }

    /// Checks the next stored row. `stored_hash` is the hash kept beside the body, if the store
    /// keeps one (SQLite does; JSONL does not).
    pub fn push(&mut self, body: &str, stored_hash: Option<&str>) {
        let index = self.index;
        self.index += 1;
        let entry = match LedgerEntry::from_canonical(body) {
            Ok(entry) => entry,
            Err(e) => {
                self.problem(Problem::Malformed {
                    index,
                    why: e.to_string(),
                });
                self.prev = None;
                if self.known_head.is_some_and(|k| k.seq == index) {
                    self.known_head_matched = Some(false);
                }
                return;
            }
        };
        if let Some(known) = self.known_head.filter(|k| k.seq == index) {
            self.known_head_matched = Some(known == entry.head());
        }
        if entry.seq != index {
            self.problem(Problem::OutOfSequence {
                expected: index,
                found: entry.seq,
            });
        }
        // The seal covers the decoded fields; requiring the stored text to be exactly their
        // canonical encoding leaves no byte of it unbound.
        let exact = entry.to_canonical() == body;
        if !exact || !entry.seal_holds() || stored_hash.is_some_and(|h| h != entry.hash.to_hex()) {
            self.problem(Problem::SealBroken { seq: entry.seq });
        }
        let expected_prev = if index == 0 {
            Some(ContentHash::ZERO)
        } else {
            self.prev
        };
        if expected_prev != Some(entry.prev) {
            self.problem(Problem::LinkBroken { seq: entry.seq });
        }
        self.prev = Some(entry.hash);
        self.head = Some(entry.head());
    }

    /// Closes the report, checking the known head against what was seen.
    pub fn finish(mut self) -> VerifyReport {
        if let Some(known) = self.known_head {
            if known.seq >= self.index {
                self.problem(Problem::Truncated {
                    head_seq: known.seq,
                    entries: self.index,
                });
            } else if self.known_head_matched != Some(true) {
                self.problem(Problem::HeadMismatch { seq: known.seq });
            }
        }
        VerifyReport {
            entries: self.index,
            head: self.head,
            problems: self.problems,
        }
    }
}

/// Verifies entries given in stored order as `(body, stored_hash)`, against an optional known
/// head.
pub fn verify_rows<'a>(
    rows: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
    known_head: Option<Head>,
) -> VerifyReport {
    let mut verifier = ChainVerifier::new(known_head);
    for (body, stored) in rows {
        verifier.push(body, stored);
    }
    verifier.finish()
}
