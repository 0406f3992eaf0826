//! Per-request budgets, charged before work runs: traps (total and per op), disabled ops, model
//! tokens and a wall-clock deadline.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::{Duration, Instant};

/// Default ceiling on charged ops per request.
pub const DEFAULT_MAX_TRAPS: u32 = 64;
/// Default ceiling on charges of one op per request.
pub const DEFAULT_MAX_SAME_OP: u32 = 8;

/// Why a charge was refused. The display form is the reason recorded on the task and ledger
/// (`op_disabled:<op>`, `max_traps:<n>`, `max_same_op:<op>:<n>`, `tokens:<asked>><left>`,
/// `deadline`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BudgetRefusal {
    /// The op was disabled for this request (its validator crashed).
    #[error("op_disabled:{0}")]
    OpDisabled(String),
    /// The request's trap ceiling is reached.
    #[error("max_traps:{0}")]
    MaxTraps(u32),
    /// The per-op ceiling is reached.
    #[error("max_same_op:{op}:{max}")]
    MaxSameOp {
        /// The op.
        op: String,
        /// Its ceiling.
        max: u32,
    },
    /// Not enough model tokens left for what the work may spend.
    #[error("tokens:{asked}>{left}")]
    Tokens {
        /// Tokens the work asked to reserve.
        asked: u64,
        /// Tokens left.
        left: u64,
    },
    /// The request's wall-clock deadline has passed.
    #[error("deadline")]
    Deadline,
}

/// A source of monotonic time, so deadlines can be tested without sleeping.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Time elapsed since an arbitrary fixed origin.
    fn now(&self) -> Duration;
}

/// The process's monotonic clock.
#[derive(Debug)]
pub struct SystemClock(Instant);

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock(Instant::now())
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        self.0.elapsed()
    }
}

/// The limits of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetLimits {
    /// Ops charged in total.
    pub max_traps: u32,
    /// Charges of any one op.
    pub max_same_op: u32,
    /// Model tokens the request may spend (`None`: unlimited).
    pub tokens: Option<u64>,
    /// Wall-clock time the request may take from the budget's creation (`None`: no deadline).
    pub wall: Option<Duration>,
}

impl Default for BudgetLimits {
    fn default() -> Self {
        BudgetLimits {
            max_traps: DEFAULT_MAX_TRAPS,
            max_same_op: DEFAULT_MAX_SAME_OP,
            tokens: None,
            wall: None,
        }
    }
}

/// One request's budget and what has been charged against it.
#[derive(Debug)]
pub struct Budget {
    limits: BudgetLimits,
    clock: Box<dyn Clock>,
    started: Duration,
    n_traps: u32,
    per_op: BTreeMap<String, u32>,
    disabled: BTreeSet<String>,
    tokens_spent: u64,
}

impl Budget {
    /// A budget on the system clock.
    pub fn new(limits: BudgetLimits) -> Budget {
        Budget::with_clock(limits, Box::new(SystemClock::default()))
    }

    /// A budget on a given clock; the deadline counts from now on that clock.
    pub fn with_clock(limits: BudgetLimits, clock: Box<dyn Clock>) -> Budget {
        let started = clock.now();
        Budget {
            limits,
            clock,
            started,
            n_traps: 0,
            per_op: BTreeMap::new(),
            disabled: BTreeSet::new(),
            tokens_spent: 0,
        }
    }

    /// The limits.
    pub fn limits(&self) -> &BudgetLimits {
        &self.limits
    }

    /// Whether `op` may be charged now, reserving `tokens` model tokens; checks in order:
    /// disabled op, deadline, trap ceiling, per-op ceiling, tokens.
    pub fn can_charge(&self, op: &str, tokens: u64) -> Result<(), BudgetRefusal> {
        if self.disabled.contains(op) {
            return Err(BudgetRefusal::OpDisabled(op.to_owned()));
        }
        if self.deadline_passed() {
            return Err(BudgetRefusal::Deadline);
        }
        if self.n_traps >= self.limits.max_traps {
            return Err(BudgetRefusal::MaxTraps(self.limits.max_traps));
        }
        if self.per_op.get(op).copied().unwrap_or(0) >= self.limits.max_same_op {
            return Err(BudgetRefusal::MaxSameOp {
                op: op.to_owned(),
                max: self.limits.max_same_op,
            });
        }
        if let Some(left) = self.tokens_left()
            && tokens > left
        {
            return Err(BudgetRefusal::Tokens {
                asked: tokens,
                left,
            });
        }
        Ok(())
    }

    /// Charges one trap of `op` and reserves `tokens`, or refuses without charging anything.
    pub fn charge(&mut self, op: &str, tokens: u64) -> Result<(), BudgetRefusal> {
        self.can_charge(op, tokens)?;
        self.n_traps += 1;
        *self.per_op.entry(op.to_owned()).or_insert(0) += 1;
        self.tokens_spent = self.tokens_spent.saturating_add(tokens);
        Ok(())
    }

    /// Returns unspent reserved tokens after the work reported what it really used.
    pub fn refund_tokens(&mut self, reserved: u64, used: u64) {
        self.tokens_spent = self
            .tokens_spent
            .saturating_sub(reserved.saturating_sub(used));
    }

    /// Refuses `op` for the rest of the request.
    pub fn disable(&mut self, op: &str) {
        self.disabled.insert(op.to_owned());
    }

    /// Whether `op` was disabled.
    pub fn is_disabled(&self, op: &str) -> bool {
        self.disabled.contains(op)
    }

    /// Traps charged so far.
    pub fn n_traps(&self) -> u32 {
        self.n_traps
    }

    /// Charges of `op` so far.
    pub fn charges_of(&self, op: &str) -> u32 {
        self.per_op.get(op).copied().unwrap_or(0)
    }

    /// Traps left before the ceiling.
    pub fn remaining(&self) -> u32 {
        self.limits.max_traps.saturating_sub(self.n_traps)
    }

    /// Model tokens left, if the request has a token budget.
    pub fn tokens_left(&self) -> Option<u64> {
        self.limits
            .tokens
            .map(|cap| cap.saturating_sub(self.tokens_spent))
    }

    /// Whether the wall-clock deadline has passed.
    pub fn deadline_passed(&self) -> bool {
        self.limits
            .wall
            .is_some_and(|wall| self.clock.now().saturating_sub(self.started) >= wall)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[derive(Debug, Clone, Default)]
    struct ManualClock(Arc<AtomicU64>);
    impl Clock for ManualClock {
        fn now(&self) -> Duration {
            Duration::from_millis(self.0.load(Ordering::SeqCst))
        }
    }

    #[test]
    fn trap_ceiling_refuses_without_charging() {
        let mut b = Budget::new(BudgetLimits {
            max_traps: 2,
            ..BudgetLimits::default()
        });
        assert!(b.charge("a", 0).is_ok());
        assert!(b.charge("b", 0).is_ok());
        assert_eq!(b.charge("c", 0), Err(BudgetRefusal::MaxTraps(2)));
        assert_eq!(b.n_traps(), 2);
        assert_eq!(b.remaining(), 0);
        assert_eq!(BudgetRefusal::MaxTraps(2).to_string(), "max_traps:2");
    }

    #[test]
    fn per_op_ceiling_and_disabling() {
        let mut b = Budget::new(BudgetLimits {
            max_same_op: 1,
            ..BudgetLimits::default()
        });
        assert!(b.charge("commit", 0).is_ok());
        assert_eq!(
            b.charge("commit", 0).unwrap_err().to_string(),
            "max_same_op:commit:1"
        );
        b.disable("danger");
        assert_eq!(
            b.charge("danger", 0).unwrap_err().to_string(),
            "op_disabled:danger"
        );
        assert_eq!(b.charges_of("danger"), 0);
    }

    #[test]
    fn tokens_are_reserved_before_and_refunded_after() {
        let mut b = Budget::new(BudgetLimits {
            tokens: Some(100),
            ..BudgetLimits::default()
        });
        assert!(b.charge("gen", 80).is_ok());
        assert_eq!(
            b.charge("gen", 30),
            Err(BudgetRefusal::Tokens {
                asked: 30,
                left: 20
            })
        );
        b.refund_tokens(80, 50);
        assert_eq!(b.tokens_left(), Some(50));
        assert!(b.charge("gen", 30).is_ok());
    }

    #[test]
    fn deadline_refuses_once_passed() {
        let clock = ManualClock::default();
        let mut b = Budget::with_clock(
            BudgetLimits {
                wall: Some(Duration::from_millis(100)),
                ..BudgetLimits::default()
            },
            Box::new(clock.clone()),
        );
        assert!(b.charge("a", 0).is_ok());
        clock.0.store(150, Ordering::SeqCst);
        assert_eq!(b.charge("a", 0), Err(BudgetRefusal::Deadline));
    }
}
