//! The conversation of one `nmk chat` session: an optional system message and the exchanges
//! the kernel released, rendered for the model and trimmed to its context. Owns only the turns
//! and their bounds; it never routes, generates or judges anything.

use nmk_neural::tokenizer::ChatMessage;

/// Most exchanges kept even when none is ever rendered (primitive answers only): memory stays
/// bounded whatever the session length.
pub const MAX_EXCHANGES: usize = 512;

/// One question and the answer the kernel released for it.
#[derive(Debug, Clone)]
pub struct Exchange {
    /// What the user asked.
    pub user: String,
    /// What was released (a primitive's answer or the model's committed text).
    pub assistant: String,
    /// Which route answered.
    pub route: String,
}

/// Why a request cannot be put to the model at all.
#[derive(Debug)]
pub enum FitError<E> {
    /// The request alone (with the system message) is larger than the prompt budget.
    TooLong {
        /// Prompt tokens of the request alone.
        tokens: usize,
        /// Prompt tokens allowed.
        budget: usize,
    },
    /// Rendering or encoding the conversation failed.
    Render(E),
}

// Spelled out by hand: the binary crate keeps to anyhow and does not depend on thiserror.
impl<E: std::fmt::Display> std::fmt::Display for FitError<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FitError::TooLong { tokens, budget } => write!(
                f,
                "this message needs {tokens} prompt tokens even without history; the budget is \
                 {budget} (the context minus --max-tokens)"
            ),
            FitError::Render(e) => write!(f, "rendering the conversation: {e}"),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for FitError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            FitError::TooLong { .. } => None,
            FitError::Render(e) => Some(e),
        }
    }
}

/// A rendered prompt that fits, and how many of the oldest exchanges were left out for it.
#[derive(Debug)]
pub struct Fitted {
    /// The prompt token ids.
    pub ids: Vec<u32>,
    /// Exchanges dropped from the history (oldest first) to fit.
    pub dropped: usize,
}

/// The system message and the released exchanges, oldest first.
#[derive(Debug, Default)]
pub struct History {
    system: Option<String>,
    exchanges: Vec<Exchange>,
}

impl History {
    /// An empty history with an optional system message (kept through `/reset` and trimming).
    pub fn new(system: Option<String>) -> History {
        History {
            system,
            exchanges: Vec::new(),
        }
    }

    /// The exchanges, oldest first.
    pub fn exchanges(&self) -> &[Exchange] {
        &self.exchanges
    }

    /// The system message, if any.
    pub fn system(&self) -> Option<&str> {
        self.system.as_deref()
    }

    /// Keeps a released exchange; past [`MAX_EXCHANGES`] the oldest one goes.
    pub fn push(&mut self, exchange: Exchange) {
        if self.exchanges.len() >= MAX_EXCHANGES {
            self.exchanges.remove(0);
        }
        self.exchanges.push(exchange);
    }

    /// Forgets every exchange (the system message stays); returns how many there were.
    pub fn reset(&mut self) -> usize {
        std::mem::take(&mut self.exchanges).len()
    }

    /// The messages the model reads for `request`: system, every exchange, then `request`.
    pub fn messages(&self, request: &str) -> Vec<ChatMessage> {
        let mut messages = Vec::with_capacity(2 * self.exchanges.len() + 2);
        if let Some(s) = &self.system {
            messages.push(ChatMessage::new("system", s.as_str()));
        }
        for e in &self.exchanges {
            messages.push(ChatMessage::new("user", e.user.as_str()));
            messages.push(ChatMessage::new("assistant", e.assistant.as_str()));
        }
        messages.push(ChatMessage::new("user", request));
        messages
    }

    /// Renders `request` after the history with `encode` and, while the prompt is longer than
    /// `budget` tokens, drops the oldest exchange (whole, so user and assistant keep
    /// alternating; the system message is never dropped). Fails, with the history untouched,
    /// when the request does not fit even alone.
    pub fn fit<E>(
        &mut self,
        request: &str,
        budget: usize,
        encode: impl Fn(&[ChatMessage]) -> Result<Vec<u32>, E>,
    ) -> Result<Fitted, FitError<E>> {
        // Count how many exchanges must go before touching the history, so a request that
        // cannot fit leaves it as it was.
        let mut skip = 0;
        loop {
            let ids = encode(&self.messages_from(skip, request)).map_err(FitError::Render)?;
            if ids.len() <= budget {
                self.exchanges.drain(..skip);
                return Ok(Fitted { ids, dropped: skip });
            }
            if skip == self.exchanges.len() {
                return Err(FitError::TooLong {
                    tokens: ids.len(),
                    budget,
                });
            }
            skip += 1;
        }
    }

    fn messages_from(&self, skip: usize, request: &str) -> Vec<ChatMessage> {
        let mut messages = self.messages(request);
        let first = usize::from(self.system.is_some());
        messages.drain(first..first + 2 * skip);
        messages
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    /// One token per word of every message plus one per message: enough to make sizes move.
    fn words(messages: &[ChatMessage]) -> Result<Vec<u32>, std::fmt::Error> {
        let n: usize = messages
            .iter()
            .map(|m| 1 + m.content.split_whitespace().count())
            .sum();
        Ok(vec![0; n])
    }

    fn exchange(user: &str, assistant: &str) -> Exchange {
        Exchange {
            user: user.into(),
            assistant: assistant.into(),
            route: "model".into(),
        }
    }

    #[test]
    fn fitting_drops_the_oldest_exchanges_only_when_over_budget() {
        let mut h = History::new(Some("be brief".into()));
        h.push(exchange("one two", "three four"));
        h.push(exchange("five", "six"));
        // system 3 + (3 + 3) + (2 + 2) + request 2 = 15 tokens.
        let roomy = h.fit("seven", 15, words).unwrap();
        assert_eq!((roomy.ids.len(), roomy.dropped), (15, 0));
        assert_eq!(h.exchanges().len(), 2);
        // One token less: the oldest exchange goes, the system message stays.
        let tight = h.fit("seven", 14, words).unwrap();
        assert_eq!((tight.ids.len(), tight.dropped), (9, 1));
        assert_eq!(h.exchanges()[0].user, "five");
        assert_eq!(h.system(), Some("be brief"));
    }

    #[test]
    fn a_request_too_long_alone_fails_and_leaves_the_history() {
        let mut h = History::new(None);
        h.push(exchange("a", "b"));
        match h.fit("far too many words here", 3, words) {
            Err(FitError::TooLong { tokens, budget }) => assert_eq!((tokens, budget), (6, 3)),
            other => panic!("expected TooLong, got {other:?}"),
        }
        assert_eq!(h.exchanges().len(), 1);
    }

    #[test]
    fn the_history_is_bounded_and_reset_keeps_the_system_message() {
        let mut h = History::new(Some("sys".into()));
        for i in 0..MAX_EXCHANGES + 3 {
            h.push(exchange(&i.to_string(), "x"));
        }
        assert_eq!(h.exchanges().len(), MAX_EXCHANGES);
        assert_eq!(h.exchanges()[0].user, "3");
        assert_eq!(h.reset(), MAX_EXCHANGES);
        assert_eq!(h.messages("q").len(), 2);
    }
}
