//! A regular-expression shape check over a growing byte prefix: can the output still become a
//! whole match of the pattern, and is it one now?
//!
//! The pattern is compiled once into an anchored DFA for `(?:pattern)$`, so the whole output
//! must match; a prefix is viable while the DFA is not in its dead state, complete when the
//! end-of-input transition reaches a match. The DFA's state is one integer, copied to try a
//! candidate piece.

use std::sync::Arc;

use regex_automata::dfa::{Automaton, StartKind, dense};
use regex_automata::util::primitives::StateID;
use regex_automata::{Anchored, Input};

use super::{CheckState, IncrementalCheck};

/// Largest DFA (bytes of transition table) a pattern may compile to.
pub const MAX_DFA_BYTES: usize = 8 << 20;

/// A pattern that cannot serve as a shape check.
#[derive(Debug, thiserror::Error)]
#[error("regex shape {pattern:?}: {reason}")]
pub struct RegexShapeError {
    /// The pattern.
    pub pattern: String,
    /// Why it was refused.
    pub reason: String,
}

/// The regex shape check (see the module documentation).
#[derive(Debug, Clone)]
pub struct RegexShape {
    dfa: Arc<dense::DFA<Vec<u32>>>,
    state: StateID,
}

impl RegexShape {
    /// Compiles `pattern` (the syntax of the `regex` crate; the whole output must match it).
    pub fn new(pattern: &str) -> Result<RegexShape, RegexShapeError> {
        let err = |reason: String| RegexShapeError {
            pattern: pattern.to_owned(),
            reason,
        };
        let dfa = dense::Builder::new()
            .configure(
                dense::DFA::config()
                    .start_kind(StartKind::Anchored)
                    .dfa_size_limit(Some(MAX_DFA_BYTES))
                    .determinize_size_limit(Some(MAX_DFA_BYTES)),
            )
            .build(&format!("(?:{pattern})$"))
            .map_err(|e| err(e.to_string()))?;
        let state = dfa
            .start_state_forward(&Input::new("").anchored(Anchored::Yes))
            .map_err(|e| err(e.to_string()))?;
        Ok(RegexShape {
            dfa: Arc::new(dfa),
            state,
        })
    }

    fn run(&self, mut state: StateID, piece: &[u8]) -> Option<StateID> {
        for &b in piece {
            state = self.dfa.next_state(state, b);
            if self.dfa.is_dead_state(state) || self.dfa.is_quit_state(state) {
                return None;
            }
        }
        Some(state)
    }

    fn matches_at_end(&self, state: StateID) -> bool {
        self.dfa.is_match_state(self.dfa.next_eoi_state(state))
    }
}

impl IncrementalCheck for RegexShape {
    fn name(&self) -> &'static str {
        "regex_shape"
    }

    fn try_piece(&self, piece: &[u8]) -> CheckState {
        match self.run(self.state, piece) {
            None => CheckState::Dead,
            Some(s) if self.matches_at_end(s) => CheckState::Complete,
            Some(_) => CheckState::Viable,
        }
    }

    fn accept(&mut self, piece: &[u8]) {
        if let Some(s) = self.run(self.state, piece) {
            self.state = s;
        }
    }

    fn may_end(&self) -> bool {
        self.matches_at_end(self.state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_output_must_match() {
        let r = RegexShape::new("[0-9]+( apples)?").unwrap();
        assert_eq!(r.try_piece(b""), CheckState::Viable);
        assert_eq!(r.try_piece(b"12"), CheckState::Complete);
        assert_eq!(r.try_piece(b"12 app"), CheckState::Viable);
        assert_eq!(r.try_piece(b"12 apples"), CheckState::Complete);
        assert_eq!(r.try_piece(b"12a"), CheckState::Dead);
        assert_eq!(r.try_piece(b"x"), CheckState::Dead);
        assert_eq!(r.try_piece(b"12 apples!"), CheckState::Dead);
    }

    #[test]
    fn accept_moves_the_state() {
        let mut r = RegexShape::new("yes|no").unwrap();
        assert!(!r.may_end());
        r.accept(b"n");
        assert!(!r.may_end());
        assert_eq!(r.try_piece(b"o"), CheckState::Complete);
        assert_eq!(r.try_piece(b"e"), CheckState::Dead);
        r.accept(b"o");
        assert!(r.may_end());
    }

    #[test]
    fn bad_patterns_are_refused() {
        assert!(RegexShape::new("(").is_err());
        assert!(RegexShape::new("[0-9]{1000}{1000}").is_err());
    }
}
