//! Governed verification: k of N checks, with k from the policy, the cost and the budget.
//!
//! Owns the run-exactly-k discipline: the first k checks run in order, every one of them even
//! after a failure (no short-circuit, so the audit shows every verdict), and a check that errs
//! or panics counts as failed. The verdict is `k > 0 ∧ all k passed`; zero checks never pass.
//! It may not judge an item itself: the checks do.

use std::panic::{AssertUnwindSafe, catch_unwind};

use super::cost::{CostModel, LoadSensor, QueueDepth};
use super::{BudgetNote, KPolicy, KReason, KSignals, charge_budget, decide};

/// The body of a [`Check`].
type CheckFn<'a, T> = Box<dyn Fn(&T) -> Result<bool, String> + 'a>;

/// One named check of an item: `Ok(true)` passes, `Ok(false)` fails, `Err` fails with a reason.
pub struct Check<'a, T: ?Sized> {
    /// Name shown in the audit.
    pub name: String,
    run: CheckFn<'a, T>,
}

impl<'a, T: ?Sized> Check<'a, T> {
    /// A check.
    pub fn new(name: impl Into<String>, run: impl Fn(&T) -> Result<bool, String> + 'a) -> Self {
        Check {
            name: name.into(),
            run: Box::new(run),
        }
    }
}

impl<T: ?Sized> std::fmt::Debug for Check<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Check({})", self.name)
    }
}

/// Where the cost comes from. Every failure (error, panic, non-finite value, no source) reads
/// as cost 1.0.
pub enum CostSource<'a> {
    /// A cost the caller already measured.
    Given(f64),
    /// A cost function, e.g. a cached reading.
    Probe(&'a dyn Fn() -> Result<f64, String>),
    /// A host sensor through a cost model, with the kernel's queue.
    Sensor {
        /// The sensor.
        sensor: &'a dyn LoadSensor,
        /// The cost model.
        model: &'a CostModel,
        /// The kernel's queue depth.
        queue: Option<QueueDepth>,
    },
    /// No cost information: treated as fully loaded.
    Unknown,
}

impl CostSource<'_> {
    /// The cost in [0, 1], and why it is 1.0 when a probe failed.
    pub fn read(&self) -> (f64, Option<String>) {
        let finite = |c: f64| {
            if c.is_finite() {
                (c.clamp(0.0, 1.0), None)
            } else {
                (1.0, Some(format!("non-finite cost {c}")))
            }
        };
        match self {
            CostSource::Given(c) => finite(*c),
            CostSource::Probe(f) => match catch_unwind(AssertUnwindSafe(f)) {
                Ok(Ok(c)) => finite(c),
                Ok(Err(e)) => (1.0, Some(format!("cost probe failed: {e}"))),
                Err(_) => (1.0, Some("cost probe panicked".into())),
            },
            CostSource::Sensor {
                sensor,
                model,
                queue,
            } => {
                let reading = model.read(*sensor, *queue);
                let why = (!reading.failures.is_empty()).then(|| reading.failures.join("; "));
                (reading.cost, why)
            }
            CostSource::Unknown => (1.0, Some("no cost source".into())),
        }
    }
}

/// The signals of a verification request other than cost.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VerifyRequest {
    /// Risk of the item.
    pub risk: f64,
    /// Proposer uncertainty.
    pub uncertainty: f64,
    /// Whether that uncertainty is calibrated.
    pub calibrated: bool,
    /// Independent disagreement.
    pub disagreement: Option<f64>,
    /// Importance (default 0.5).
    pub importance: f64,
    /// Budget units left (`None`: no budget).
    pub budget: Option<f64>,
}

impl Default for VerifyRequest {
    fn default() -> Self {
        VerifyRequest {
            risk: 0.0,
            uncertainty: 0.0,
            calibrated: false,
            disagreement: None,
            importance: 0.5,
            budget: None,
        }
    }
}

/// What one check did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckOutcome {
    /// The check's name.
    pub name: String,
    /// Whether it passed.
    pub passed: bool,
    /// Its error or panic message, when it did not return a verdict.
    pub error: Option<String>,
}

/// The audit record of one governed verification.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifyAudit {
    /// `k > 0` and every one of the k checks passed.
    pub verdict: bool,
    /// Checks run (= decided k, clamped by the budget and the number of checks).
    pub k: u32,
    /// k as decided, before the budget and the check count.
    pub decided_k: u32,
    /// Checks available.
    pub available: usize,
    /// The step-1 signal label.
    pub used_signal: KReason,
    /// The decision's label.
    pub reason: KReason,
    /// The cost used.
    pub cost: f64,
    /// Why the cost was forced to 1.0, if it was.
    pub cost_failure: Option<String>,
    /// The risk signal.
    pub risk: f64,
    /// Risk-forced verification width.
    pub verify_k: u32,
    /// Exploration width.
    pub explore_k: u32,
    /// The budget note.
    pub budget_note: BudgetNote,
    /// Each check run, in order.
    pub outcomes: Vec<CheckOutcome>,
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        format!("panicked: {s}")
    } else if let Some(s) = payload.downcast_ref::<String>() {
        format!("panicked: {s}")
    } else {
        "panicked".into()
    }
}

/// Verifies `item` with the first k of `checks` (spec §5.4 item 3): decide k from the policy and
/// the signals, charge the budget, clamp to the number of checks, run exactly that many in order
/// without short-circuit. An erring or panicking check is a failed check.
pub fn governed_verify<T: ?Sized>(
    item: &T,
    checks: &[Check<'_, T>],
    policy: &KPolicy,
    request: &VerifyRequest,
    cost: &CostSource<'_>,
) -> VerifyAudit {
    let (cost_value, cost_failure) = cost.read();
    let signals = KSignals {
        uncertainty: request.uncertainty,
        uncertainty_calibrated: request.calibrated,
        disagreement: request.disagreement,
        cost: cost_value,
        risk: request.risk,
        importance: request.importance,
    };
    let decision = decide(policy, &signals);
    let charge = charge_budget(&decision, request.budget, policy.unit_cost());
    let k = usize::try_from(charge.admitted_k)
        .unwrap_or(usize::MAX)
        .min(checks.len());
    let mut outcomes = Vec::with_capacity(k);
    for check in checks.iter().take(k) {
        let outcome = match catch_unwind(AssertUnwindSafe(|| (check.run)(item))) {
            Ok(Ok(passed)) => CheckOutcome {
                name: check.name.clone(),
                passed,
                error: None,
            },
            Ok(Err(e)) => CheckOutcome {
                name: check.name.clone(),
                passed: false,
                error: Some(e),
            },
            Err(payload) => CheckOutcome {
                name: check.name.clone(),
                passed: false,
                error: Some(panic_message(payload.as_ref())),
            },
        };
        outcomes.push(outcome);
    }
    let verdict = k > 0 && outcomes.iter().all(|o| o.passed);
    VerifyAudit {
        verdict,
        k: u32::try_from(k).unwrap_or(u32::MAX),
        decided_k: decision.k,
        available: checks.len(),
        used_signal: decision.used_signal,
        reason: decision.reason,
        cost: decision.cost,
        cost_failure,
        risk: request.risk,
        verify_k: decision.verify_k,
        explore_k: decision.explore_k,
        budget_note: charge.note,
        outcomes,
    }
}
