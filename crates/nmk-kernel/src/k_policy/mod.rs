//! Dynamic k: how many branches, lanes or checks one decision may spend.
//!
//! Owns the policy ([`KPolicy`]), the signals it reads ([`KSignals`]), the decision rule
//! ([`decide`]), the entropy helper ([`normalized_entropy`]), the budget charge
//! ([`charge_budget`]), the load-based cost model ([`cost`]) and governed verification
//! ([`verify`]). Everything here is pure arithmetic over numbers handed in; the only outside
//! input is a [`cost::LoadSensor`], a trait the binary implements (the kernel itself reads no
//! operating-system probe and depends on no system-information crate).
//!
//! What it may not touch: verdicts. k says how much checking to *buy*; whether an item passes is
//! decided only by the checks the caller supplies. It never lowers the risk floor for cost, and
//! it fails closed: a missing, failing or non-finite cost reading counts as cost 1.0 (fully
//! loaded), which vetoes every discretionary spend (exploration), never the risk floor.

pub mod cost;
pub mod verify;

pub use cost::{
    CostBreakdown, CostModel, CostReading, CostedDecision, GpuReading, HostLoad, LoadSensor,
    LoadSnapshot, QueueDepth, SensorError, decide_with_cost,
};
pub use verify::{Check, CheckOutcome, CostSource, VerifyAudit, VerifyRequest, governed_verify};

/// Slack subtracted before rounding up, so `ceil(2.0000000001)` from float noise stays 2.
const EPS: f64 = 1e-9;

/// Clamps to [0, 1]; a NaN becomes `nan_as`.
fn clamp01_or(x: f64, nan_as: f64) -> f64 {
    if x.is_nan() {
        nan_as
    } else {
        x.clamp(0.0, 1.0)
    }
}

/// What a decision reads. Out-of-range values are clamped to [0, 1]. A NaN cost or risk reads
/// as 1.0 (fail closed: no discretionary spend, full risk floor); a NaN uncertainty,
/// disagreement or importance reads as 0.0 (no reason to spend).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KSignals {
    /// The proposer's own uncertainty (e.g. a normalized entropy), in [0, 1].
    pub uncertainty: f64,
    /// Whether `uncertainty` has been shown to track error. Uncalibrated uncertainty is not
    /// trusted when the policy requires calibration.
    pub uncertainty_calibrated: bool,
    /// An independent disagreement signal (e.g. between proposers), always trusted.
    pub disagreement: Option<f64>,
    /// Machine cost in [0, 1] (see [`cost::CostModel`]); 1.0 = saturated or unknown.
    pub cost: f64,
    /// Risk of the item in [0, 1]; above the policy's floor it buys verification that cost
    /// cannot remove.
    pub risk: f64,
    /// How much this item matters, in [0, 1]; scales exploration.
    pub importance: f64,
}

impl Default for KSignals {
    fn default() -> Self {
        KSignals {
            uncertainty: 0.0,
            uncertainty_calibrated: false,
            disagreement: None,
            cost: 0.0,
            risk: 0.0,
            importance: 0.5,
        }
    }
}

/// A policy whose fields do not satisfy the invariants of [`KPolicy::new`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum KPolicyError {
    /// `k_min > k_max`.
    #[error("k_min {k_min} exceeds k_max {k_max}")]
    KOrder {
        /// The lower bound given.
        k_min: u32,
        /// The upper bound given.
        k_max: u32,
    },
    /// A field outside its allowed range.
    #[error("{field} = {value} is outside {range}")]
    OutOfRange {
        /// Which field.
        field: &'static str,
        /// The value given.
        value: f64,
        /// The allowed range, as text.
        range: &'static str,
    },
}

/// The dynamic-k policy. Build with [`KPolicy::new`] or [`KPolicy::default`]; derive a modified
/// copy with the `with_*` methods (each re-validates), so a caller never changes a shared one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KPolicy {
    k_min: u32,
    k_max: u32,
    widen_threshold: f64,
    require_calibrated: bool,
    cost_brake: f64,
    risk_floor_at: f64,
    unit_cost: f64,
}

impl Default for KPolicy {
    /// k 1..=4, widen above 0.5, calibration required, brake above cost 0.6, risk floor above
    /// 0.5, unit cost 1.
    fn default() -> Self {
        KPolicy {
            k_min: 1,
            k_max: 4,
            widen_threshold: 0.5,
            require_calibrated: true,
            cost_brake: 0.6,
            risk_floor_at: 0.5,
            unit_cost: 1.0,
        }
    }
}

fn in_range(
    field: &'static str,
    value: f64,
    ok: bool,
    range: &'static str,
) -> Result<(), KPolicyError> {
    if ok && value.is_finite() {
        Ok(())
    } else {
        Err(KPolicyError::OutOfRange {
            field,
            value,
            range,
        })
    }
}

impl KPolicy {
    /// A validated policy: `k_min ≤ k_max`; `0 ≤ widen_threshold < 1`; `0 ≤ cost_brake < 1`
    /// (so cost 1.0 always brakes exploration to zero); `0 ≤ risk_floor_at < 1`;
    /// `unit_cost ≥ 0`; all finite.
    pub fn new(
        k_min: u32,
        k_max: u32,
        widen_threshold: f64,
        require_calibrated: bool,
        cost_brake: f64,
        risk_floor_at: f64,
        unit_cost: f64,
    ) -> Result<KPolicy, KPolicyError> {
        if k_min > k_max {
            return Err(KPolicyError::KOrder { k_min, k_max });
        }
        in_range(
            "widen_threshold",
            widen_threshold,
            (0.0..1.0).contains(&widen_threshold),
            "[0, 1)",
        )?;
        in_range(
            "cost_brake",
            cost_brake,
            (0.0..1.0).contains(&cost_brake),
            "[0, 1)",
        )?;
        in_range(
            "risk_floor_at",
            risk_floor_at,
            (0.0..1.0).contains(&risk_floor_at),
            "[0, 1)",
        )?;
        in_range("unit_cost", unit_cost, unit_cost >= 0.0, "[0, ∞)")?;
        Ok(KPolicy {
            k_min,
            k_max,
            widen_threshold,
            require_calibrated,
            cost_brake,
            risk_floor_at,
            unit_cost,
        })
    }

    /// The default policy with other k bounds and widening threshold.
    pub fn with_k(k_min: u32, k_max: u32, widen_threshold: f64) -> Result<KPolicy, KPolicyError> {
        let d = KPolicy::default();
        KPolicy::new(
            k_min,
            k_max,
            widen_threshold,
            d.require_calibrated,
            d.cost_brake,
            d.risk_floor_at,
            d.unit_cost,
        )
    }

    /// A copy with other k bounds.
    pub fn with_bounds(&self, k_min: u32, k_max: u32) -> Result<KPolicy, KPolicyError> {
        KPolicy::new(
            k_min,
            k_max,
            self.widen_threshold,
            self.require_calibrated,
            self.cost_brake,
            self.risk_floor_at,
            self.unit_cost,
        )
    }

    /// A copy that does (or does not) require calibrated uncertainty.
    pub fn with_require_calibrated(&self, require: bool) -> KPolicy {
        KPolicy {
            require_calibrated: require,
            ..*self
        }
    }

    /// A copy with another unit cost.
    pub fn with_unit_cost(&self, unit_cost: f64) -> Result<KPolicy, KPolicyError> {
        KPolicy::new(
            self.k_min,
            self.k_max,
            self.widen_threshold,
            self.require_calibrated,
            self.cost_brake,
            self.risk_floor_at,
            unit_cost,
        )
    }

    /// Least k.
    pub fn k_min(&self) -> u32 {
        self.k_min
    }
    /// Greatest k.
    pub fn k_max(&self) -> u32 {
        self.k_max
    }
    /// Effective uncertainty above which exploration starts.
    pub fn widen_threshold(&self) -> f64 {
        self.widen_threshold
    }
    /// Whether uncalibrated uncertainty is ignored.
    pub fn require_calibrated(&self) -> bool {
        self.require_calibrated
    }
    /// Cost above which exploration is braked (linearly to zero at cost 1).
    pub fn cost_brake(&self) -> f64 {
        self.cost_brake
    }
    /// Risk above which verification is forced.
    pub fn risk_floor_at(&self) -> f64 {
        self.risk_floor_at
    }
    /// Budget units one unit of k costs.
    pub fn unit_cost(&self) -> f64 {
        self.unit_cost
    }
}

/// Why a decision came out as it did (highest priority first in [`decide`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KReason {
    /// Risk forced verification at least as large as the exploration.
    RiskFloor,
    /// Cost cut the exploration below what the uncertainty asked for.
    CostBraked,
    /// An independent disagreement signal drove exploration.
    IndependentDisagreement,
    /// The proposer's uncertainty (calibrated, or trusted by the policy) drove exploration.
    CalibratedUncertainty,
    /// High uncertainty was ignored because it is not calibrated: stay thin.
    UncalibratedHeld,
    /// Nothing asked for more than the minimum.
    ThinDefault,
}

impl KReason {
    /// The snake-case label used in audits and ledgers.
    pub fn as_str(self) -> &'static str {
        match self {
            KReason::RiskFloor => "risk_floor",
            KReason::CostBraked => "cost_braked",
            KReason::IndependentDisagreement => "independent_disagreement",
            KReason::CalibratedUncertainty => "calibrated_uncertainty",
            KReason::UncalibratedHeld => "uncalibrated_held",
            KReason::ThinDefault => "thin_default",
        }
    }
}

impl std::fmt::Display for KReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The outcome of [`decide`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KDecision {
    /// Total width: `min(k_max, k_min + explore_k + verify_k)`.
    pub k: u32,
    /// The policy's mandatory base (`k_min`).
    pub base_k: u32,
    /// Discretionary extra width bought by uncertainty, after the cost brake.
    pub explore_k: u32,
    /// Extra verification forced by risk; cost never reduces it.
    pub verify_k: u32,
    /// Which signal drove the effective uncertainty (the step-1 label).
    pub used_signal: KReason,
    /// The final label (priority: risk floor, cost braked, signal, held, thin).
    pub reason: KReason,
    /// `k · unit_cost`.
    pub est_cost: f64,
    /// The effective uncertainty used.
    pub effective_uncertainty: f64,
    /// The cost as read (after clamping; NaN read as 1).
    pub cost: f64,
}

impl KDecision {
    /// The width an *optional* spend may use (a re-prefill, extra lanes, a fact lookup): the
    /// part of k above the base that a signal asked for, i.e. the risk-forced verification plus
    /// the exploration that survived the cost brake, within `k - base_k`. Under the default
    /// policy this is 0 at cost 1.0 unless risk forces verification (spec §9 D31: with
    /// `k_min = 1`, plain `k` can never be vetoed by cost, so optional spends must use this).
    pub fn optional_k(&self) -> u32 {
        (self.explore_k + self.verify_k).min(self.k.saturating_sub(self.base_k))
    }
}

/// Normalized Shannon entropy of a weight vector, in [0, 1]: negative, zero and non-finite
/// entries count as zero weight; the positive ones are renormalized; H is divided by
/// `ln(n)` with `n` = all entries, zeros included. Fewer than two entries, or a total weight
/// at or below 1e-12, give 0.
pub fn normalized_entropy(p: &[f64]) -> f64 {
    let n = p.len();
    if n <= 1 {
        return 0.0;
    }
    let weight = |x: f64| if x.is_finite() && x > 0.0 { x } else { 0.0 };
    let total: f64 = p.iter().map(|&x| weight(x)).sum();
    if total.is_nan() || total <= 1e-12 || !total.is_finite() {
        return 0.0;
    }
    let h: f64 = p
        .iter()
        .map(|&x| weight(x) / total)
        .filter(|&q| q > 0.0)
        .map(|q| -q * q.ln())
        .sum();
    // `n` is a slice length, at least 2 here; the conversion is exact for any realistic length.
    let ln_n = (n as f64).ln();
    clamp01_or(h / ln_n, 0.0)
}

fn ceil_count(x: f64) -> u32 {
    let c = (x - EPS).ceil();
    if c.is_nan() || c <= 0.0 {
        0
    } else if c >= f64::from(u32::MAX) {
        u32::MAX
    } else {
        // In range and integral: the cast is exact.
        c as u32
    }
}

/// Decides k for one item (spec §5.2; thr = widen threshold, span = k_max − k_min).
///
/// 1. Effective uncertainty: the independent disagreement (always trusted) and the proposer's
///    uncertainty (trusted only if calibrated or calibration is not required); both → the larger;
///    none trusted → 0 (`uncalibrated_held` if the untrusted one exceeded thr).
/// 2. Exploration: 0 unless span > 0 and eff > thr; else `(eff − thr)/(1 − thr) · span ·
///    importance`.
/// 3. Cost brake (exploration only): factor 1 up to `cost_brake`, falling linearly to 0 at cost 1;
///    `explore_k = clamp(ceil(explore · brake), 0, span)`.
/// 4. Risk floor: above `risk_floor_at`, `verify_k = min(span, max(1, ceil(scaled risk · span)))`,
///    independent of cost.
/// 5. `k = min(k_max, k_min + explore_k + verify_k)`; `est_cost = k · unit_cost`.
pub fn decide(policy: &KPolicy, signals: &KSignals) -> KDecision {
    let thr = policy.widen_threshold;
    let span = policy.k_max - policy.k_min;
    let span_f = f64::from(span);

    // 1. Effective uncertainty.
    let dis = signals.disagreement.map(|d| clamp01_or(d, 0.0));
    let raw = clamp01_or(signals.uncertainty, 0.0);
    let raw_trusted = signals.uncertainty_calibrated || !policy.require_calibrated;
    let (eff, used_signal) = match (dis, raw_trusted) {
        (Some(d), true) => {
            if d >= raw {
                (d, KReason::IndependentDisagreement)
            } else {
                (raw, KReason::CalibratedUncertainty)
            }
        }
        (Some(d), false) => (d, KReason::IndependentDisagreement),
        (None, true) => (raw, KReason::CalibratedUncertainty),
        (None, false) => {
            let label = if raw > thr {
                KReason::UncalibratedHeld
            } else {
                KReason::ThinDefault
            };
            (0.0, label)
        }
    };

    // 2. Exploration.
    let importance = clamp01_or(signals.importance, 0.0);
    let explore = if span == 0 || eff <= thr {
        0.0
    } else {
        (eff - thr) / (1.0 - thr) * span_f * importance
    };

    // 3. Cost brake. A NaN cost is unknown: treat it as saturated.
    let cost = clamp01_or(signals.cost, 1.0);
    let brake = if cost <= policy.cost_brake {
        1.0
    } else {
        ((1.0 - cost) / (1.0 - policy.cost_brake)).clamp(0.0, 1.0)
    };
    let explore_k = ceil_count(explore * brake).min(span);
    let wanted = ceil_count(explore).min(span);
    let braked = explore > 0.0 && brake < 1.0 && explore_k < wanted;

    // 4. Risk floor (cost plays no part). A NaN risk is unknown: treat it as maximal.
    let risk = clamp01_or(signals.risk, 1.0);
    let rfa = policy.risk_floor_at;
    let verify_k = if span == 0 || risk <= rfa {
        0
    } else {
        ceil_count((risk - rfa) / (1.0 - rfa) * span_f)
            .max(1)
            .min(span)
    };

    // 5. Width.
    let k = policy.k_max.min(
        policy
            .k_min
            .saturating_add(explore_k)
            .saturating_add(verify_k),
    );
    let est_cost = f64::from(k) * policy.unit_cost;

    // 6. Label.
    let reason = if verify_k > 0 && verify_k >= explore_k {
        KReason::RiskFloor
    } else if braked {
        KReason::CostBraked
    } else if explore_k > 0 {
        used_signal
    } else if used_signal == KReason::UncalibratedHeld {
        KReason::UncalibratedHeld
    } else {
        KReason::ThinDefault
    };

    KDecision {
        k,
        base_k: policy.k_min,
        explore_k,
        verify_k,
        used_signal,
        reason,
        est_cost,
        effective_uncertainty: eff,
        cost,
    }
}

/// How a budget charge went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BudgetNote {
    /// No budget was given: k admitted as decided.
    NoBudget,
    /// The whole k fit.
    Ok,
    /// Only part of k fit.
    Clamped,
    /// Nothing fit.
    Exhausted,
}

impl BudgetNote {
    /// The label used in audits (`no-budget`, `ok`, `budget-clamped`, `budget-exhausted`).
    pub fn as_str(self) -> &'static str {
        match self {
            BudgetNote::NoBudget => "no-budget",
            BudgetNote::Ok => "ok",
            BudgetNote::Clamped => "budget-clamped",
            BudgetNote::Exhausted => "budget-exhausted",
        }
    }
}

/// The outcome of [`charge_budget`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Charge {
    /// The k the budget admits.
    pub admitted_k: u32,
    /// The k decided.
    pub requested_k: u32,
    /// `admitted_k · unit_cost`.
    pub spent: f64,
    /// Budget left after the charge (`None`: no budget).
    pub remaining: Option<f64>,
    /// How it went.
    pub note: BudgetNote,
}

/// Charges `decision.k` units of `unit_cost` against `remaining` (spec §5.3): no budget admits k;
/// otherwise `admitted = min(k, floor(remaining / unit_cost))`. A budget is a hard limit: it can
/// cut k below the risk floor (the caller then verifies less and must not pass the item on
/// fewer checks than it needed — see [`governed_verify`]). A NaN or negative budget admits
/// nothing; a zero unit cost admits all of k.
pub fn charge_budget(decision: &KDecision, remaining: Option<f64>, unit_cost: f64) -> Charge {
    let requested_k = decision.k;
    let Some(left) = remaining else {
        return Charge {
            admitted_k: requested_k,
            requested_k,
            spent: f64::from(requested_k) * unit_cost.max(0.0),
            remaining: None,
            note: BudgetNote::NoBudget,
        };
    };
    let left = if left.is_nan() { 0.0 } else { left.max(0.0) };
    let unit = if unit_cost.is_nan() {
        f64::INFINITY
    } else {
        unit_cost.max(0.0)
    };
    let affordable = if unit == 0.0 {
        u32::MAX
    } else {
        let units = (left / unit + EPS).floor();
        if units >= f64::from(u32::MAX) {
            u32::MAX
        } else if units <= 0.0 || units.is_nan() {
            0
        } else {
            units as u32
        }
    };
    let admitted_k = requested_k.min(affordable);
    let spent = f64::from(admitted_k) * if unit.is_finite() { unit } else { 0.0 };
    let note = if admitted_k == requested_k {
        BudgetNote::Ok
    } else if admitted_k == 0 {
        BudgetNote::Exhausted
    } else {
        BudgetNote::Clamped
    };
    Charge {
        admitted_k,
        requested_k,
        spent,
        remaining: Some((left - spent).max(0.0)),
        note,
    }
}

/// Lane width for `n_lanes` lanes (spec §5.4 item 2): a copy of `policy` with k in 1..=n (the
/// caller's policy is untouched), independent disagreement `1 − cost` (an idle machine invites
/// width, a loaded one forbids it) and that cost; `W = clamp(k, 1, n)`. A NaN cost reads as 1.0
/// (one lane). No lanes gives 0.
pub fn dynamic_width(policy: &KPolicy, cost: f64, n_lanes: u32, importance: f64) -> u32 {
    if n_lanes == 0 {
        return 0;
    }
    let cost = clamp01_or(cost, 1.0);
    let lanes = KPolicy {
        k_min: 1,
        k_max: n_lanes,
        ..*policy
    };
    let signals = KSignals {
        disagreement: Some(1.0 - cost),
        cost,
        importance,
        ..KSignals::default()
    };
    decide(&lanes, &signals).k.clamp(1, n_lanes)
}
