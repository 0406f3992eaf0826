//! Dynamic k (spec §5, §7 `k_policy`, `k_cost`, `k_policy_ladder`, the k parts of
//! `dynamic_k_seams`): entropy, `decide` and its reference values, policy validation, the budget
//! charge, the cost model and `decide_with_cost`, lane width and governed verification — and the
//! fixes of spec §9 D30 (a failed or missing probe is cost 1.0, never 0) and D31 (cost 1.0
//! vetoes every discretionary spend under the default policy), each with a liveness contrast.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::cell::{Cell, RefCell};

use nmk_kernel::k_policy::{
    BudgetNote, Check, CostModel, CostSource, GpuReading, HostLoad, KDecision, KPolicy,
    KPolicyError, KReason, KSignals, LoadSensor, LoadSnapshot, QueueDepth, SensorError,
    VerifyRequest, charge_budget, decide, decide_with_cost, dynamic_width, governed_verify,
    normalized_entropy,
};

fn calibrated(u: f64) -> KSignals {
    KSignals {
        uncertainty: u,
        uncertainty_calibrated: true,
        importance: 1.0,
        ..KSignals::default()
    }
}

fn disagreeing(d: f64, cost: f64) -> KSignals {
    KSignals {
        disagreement: Some(d),
        cost,
        importance: 1.0,
        ..KSignals::default()
    }
}

// ---------------------------------------------------------------- entropy

#[test]
fn entropy_of_one_hot_uniform_and_degenerate_inputs() {
    assert_eq!(normalized_entropy(&[0.0, 1.0, 0.0, 0.0]), 0.0);
    assert!((normalized_entropy(&[0.25; 4]) - 1.0).abs() < 1e-12);
    assert_eq!(normalized_entropy(&[]), 0.0);
    assert_eq!(normalized_entropy(&[1.0]), 0.0);
    assert_eq!(normalized_entropy(&[0.0, 0.0, 0.0]), 0.0);
    assert_eq!(normalized_entropy(&[1e-13, 0.0]), 0.0);
}

#[test]
fn entropy_renormalizes_and_counts_zeros_in_n() {
    // Unnormalized weights give the same entropy as their normalization.
    let a = normalized_entropy(&[2.0, 2.0, 2.0]);
    assert!((a - 1.0).abs() < 1e-12);
    // Zeros count in n: two equal halves of four entries → ln 2 / ln 4 = 0.5.
    let b = normalized_entropy(&[0.5, 0.5, 0.0, 0.0]);
    assert!((b - 0.5).abs() < 1e-12, "{b}");
    // Negative and non-finite weights are zero weight.
    let c = normalized_entropy(&[0.5, 0.5, -3.0, f64::NAN]);
    assert!((c - 0.5).abs() < 1e-12, "{c}");
}

#[test]
fn entropy_reference_points() {
    let e = normalized_entropy(&[0.7, 0.1, 0.1, 0.1]);
    assert!(e > 0.6 && e < 0.72, "{e}");
    // A gate concentrated on one expert (a "North"-like answer) is well below 0.2.
    let g = normalized_entropy(&[0.97, 0.01, 0.01, 0.01]);
    assert!(g < 0.2, "{g}");
    assert!(g > 0.0);
}

// ---------------------------------------------------------------- policy validation

#[test]
fn policy_constructor_rejects_invalid_fields_with_typed_errors() {
    let d = KPolicy::default();
    assert_eq!((d.k_min(), d.k_max()), (1, 4));
    assert_eq!(
        KPolicy::with_k(3, 2, 0.5),
        Err(KPolicyError::KOrder { k_min: 3, k_max: 2 })
    );
    for thr in [1.0, -0.1, f64::NAN, f64::INFINITY] {
        assert!(
            matches!(
                KPolicy::with_k(1, 4, thr),
                Err(KPolicyError::OutOfRange {
                    field: "widen_threshold",
                    ..
                })
            ),
            "threshold {thr} accepted"
        );
    }
    assert!(KPolicy::with_k(0, 0, 0.0).is_ok());
    assert!(KPolicy::with_k(2, 2, 0.999).is_ok());
    // A brake at 1.0 would let cost 1.0 leave exploration untouched: refused.
    assert!(matches!(
        KPolicy::new(1, 4, 0.5, true, 1.0, 0.5, 1.0),
        Err(KPolicyError::OutOfRange {
            field: "cost_brake",
            ..
        })
    ));
    assert!(matches!(
        KPolicy::new(1, 4, 0.5, true, 0.6, 1.0, 1.0),
        Err(KPolicyError::OutOfRange {
            field: "risk_floor_at",
            ..
        })
    ));
    assert!(matches!(
        KPolicy::new(1, 4, 0.5, true, 0.6, 0.5, -1.0),
        Err(KPolicyError::OutOfRange {
            field: "unit_cost",
            ..
        })
    ));
    // Derived copies are validated too and leave the original untouched.
    assert!(d.with_bounds(5, 1).is_err());
    let wide = d.with_bounds(1, 8).unwrap();
    assert_eq!(wide.k_max(), 8);
    assert_eq!(d.k_max(), 4);
}

// ---------------------------------------------------------------- decide: spec §7 k_policy

#[test]
fn low_calibrated_uncertainty_stays_thin() {
    let d = decide(&KPolicy::default(), &calibrated(0.2));
    assert_eq!((d.k, d.explore_k, d.verify_k), (1, 0, 0));
    assert_eq!(d.reason, KReason::ThinDefault);
}

#[test]
fn reference_calibrated_high_uncertainty_widens_to_four() {
    let d = decide(&KPolicy::default(), &calibrated(0.9));
    assert_eq!((d.k, d.explore_k, d.verify_k), (4, 3, 0));
    assert_eq!(d.reason, KReason::CalibratedUncertainty);
    assert_eq!(d.est_cost, 4.0);
}

#[test]
fn uncalibrated_uncertainty_is_held_unless_the_policy_trusts_it() {
    let s = KSignals {
        uncertainty: 0.95,
        uncertainty_calibrated: false,
        importance: 1.0,
        ..KSignals::default()
    };
    let held = decide(&KPolicy::default(), &s);
    assert_eq!((held.k, held.explore_k), (1, 0));
    assert_eq!(held.reason, KReason::UncalibratedHeld);
    let trusting = KPolicy::default().with_require_calibrated(false);
    let widened = decide(&trusting, &s);
    assert!(widened.k > 1 && widened.explore_k > 0, "{widened:?}");
    // Uncalibrated but below the threshold: thin, not held.
    let low = decide(
        &KPolicy::default(),
        &KSignals {
            uncertainty: 0.3,
            ..s
        },
    );
    assert_eq!(low.reason, KReason::ThinDefault);
}

#[test]
fn independent_disagreement_widens() {
    let d = decide(&KPolicy::default(), &disagreeing(0.9, 0.0));
    assert!(d.k > 1);
    assert_eq!(d.reason, KReason::IndependentDisagreement);
    // Both signals: the larger one drives and names the decision.
    let both = KSignals {
        uncertainty: 0.95,
        uncertainty_calibrated: true,
        ..disagreeing(0.7, 0.0)
    };
    assert_eq!(
        decide(&KPolicy::default(), &both).used_signal,
        KReason::CalibratedUncertainty
    );
    let both = KSignals {
        uncertainty: 0.6,
        uncertainty_calibrated: true,
        ..disagreeing(0.9, 0.0)
    };
    assert_eq!(
        decide(&KPolicy::default(), &both).used_signal,
        KReason::IndependentDisagreement
    );
}

#[test]
fn full_cost_brakes_to_k_min() {
    let d = decide(&KPolicy::default(), &disagreeing(0.9, 1.0));
    assert_eq!((d.k, d.explore_k), (1, 0));
    assert_eq!(d.reason, KReason::CostBraked);
}

#[test]
fn risk_floor_holds_at_full_cost_and_confidence_does_not_lower_it() {
    let confident = KSignals {
        uncertainty: 0.0,
        uncertainty_calibrated: true,
        cost: 1.0,
        risk: 0.9,
        ..KSignals::default()
    };
    let d = decide(&KPolicy::default(), &confident);
    assert_eq!(
        (d.verify_k, d.k),
        (3, 4),
        "reference: risk 0.9 → verify 3 → k 4"
    );
    assert_eq!(d.reason, KReason::RiskFloor);
    // The same at every cost.
    for cost in [0.0, 0.3, 0.6, 0.8, 0.99, 1.0] {
        let at = decide(&KPolicy::default(), &KSignals { cost, ..confident });
        assert_eq!((at.verify_k, at.k), (3, 4), "cost {cost}");
    }
    // Uncertain input gets the same verification as confident input.
    let uncertain = KSignals {
        uncertainty: 0.8,
        ..confident
    };
    assert_eq!(decide(&KPolicy::default(), &uncertain).verify_k, d.verify_k);
    // At or below the floor nothing is forced.
    let at_floor = KSignals {
        risk: 0.5,
        ..confident
    };
    assert_eq!(decide(&KPolicy::default(), &at_floor).verify_k, 0);
    // Just above it at least one check is forced.
    let above = KSignals {
        risk: 0.51,
        ..confident
    };
    assert_eq!(decide(&KPolicy::default(), &above).verify_k, 1);
}

#[test]
fn extremes_stay_within_bounds() {
    let maxed = KSignals {
        uncertainty: 1.0,
        uncertainty_calibrated: true,
        disagreement: Some(1.0),
        cost: 0.0,
        risk: 1.0,
        importance: 1.0,
    };
    assert_eq!(decide(&KPolicy::default(), &maxed).k, 4);
    let nothing = KSignals::default();
    assert!(decide(&KPolicy::default(), &nothing).k >= 1);
    // Out-of-range signals are clamped, not trusted.
    let wild = KSignals {
        uncertainty: 7.0,
        uncertainty_calibrated: true,
        disagreement: Some(-3.0),
        cost: -5.0,
        risk: 42.0,
        importance: 9.0,
    };
    let d = decide(&KPolicy::default(), &wild);
    assert!(d.k <= 4 && d.k >= 1);
}

#[test]
fn reference_policy_zero_to_one() {
    let p = KPolicy::with_k(0, 1, 0.5).unwrap();
    assert_eq!(decide(&p, &calibrated(0.3)).k, 0);
    assert_eq!(decide(&p, &calibrated(0.8)).k, 1);
}

#[test]
fn monotone_in_uncertainty_and_cost_and_importance() {
    let p = KPolicy::default();
    let mut last = 0;
    for step in 0..=20 {
        let k = decide(&p, &calibrated(f64::from(step) / 20.0)).k;
        assert!(k >= last, "k fell as uncertainty rose");
        last = k;
    }
    assert_eq!(last, 4);
    let mut last = u32::MAX;
    for step in 0..=20 {
        let k = decide(&p, &disagreeing(1.0, f64::from(step) / 20.0)).k;
        assert!(k <= last, "k rose with cost");
        last = k;
    }
    assert_eq!(last, 1);
    let with = |importance| {
        decide(
            &p,
            &KSignals {
                importance,
                ..disagreeing(0.8, 0.0)
            },
        )
    };
    assert!(with(1.0).k >= with(0.2).k);
    assert!(with(1.0).k > with(0.2).k, "importance has an effect");
    assert_eq!(with(0.0).explore_k, 0);
}

#[test]
fn est_cost_is_k_times_unit_cost() {
    let p = KPolicy::default().with_unit_cost(2.5).unwrap();
    let d = decide(&p, &calibrated(0.9));
    assert_eq!(d.est_cost, f64::from(d.k) * 2.5);
}

#[test]
fn grid_of_540_points_keeps_the_invariants() {
    let p = KPolicy::default();
    let mut n = 0;
    for u in [0.0, 0.2, 0.5, 0.6, 0.9, 1.0] {
        for cost in [0.0, 0.3, 0.6, 0.7, 0.9, 1.0] {
            for risk in [0.0, 0.5, 0.6, 0.9, 1.0] {
                for importance in [0.0, 0.5, 1.0] {
                    let d = decide(
                        &p,
                        &KSignals {
                            uncertainty: u,
                            uncertainty_calibrated: true,
                            cost,
                            risk,
                            importance,
                            ..KSignals::default()
                        },
                    );
                    assert!(d.k >= p.k_min() && d.k <= p.k_max());
                    assert!(d.k >= p.k_max().min(p.k_min() + d.verify_k));
                    assert_eq!(d.est_cost, f64::from(d.k) * p.unit_cost());
                    if cost >= 1.0 {
                        assert_eq!(d.explore_k, 0, "cost 1 left exploration at {u}/{risk}");
                    }
                    n += 1;
                }
            }
        }
    }
    assert_eq!(n, 540);
}

// ---------------------------------------------------------------- §9 D31: cost vetoes

#[test]
fn d31_full_cost_vetoes_every_discretionary_spend_under_the_default_policy() {
    let p = KPolicy::default();
    for d in [0.6, 0.8, 1.0] {
        for importance in [0.5, 1.0] {
            let s = KSignals {
                importance,
                uncertainty: 1.0,
                uncertainty_calibrated: true,
                ..disagreeing(d, 1.0)
            };
            let at_full = decide(&p, &s);
            assert_eq!(at_full.explore_k, 0);
            assert_eq!(at_full.optional_k(), 0, "an optional spend survived cost 1");
            // Liveness contrast: the same signals on an idle machine do spend.
            let idle = decide(&p, &KSignals { cost: 0.0, ..s });
            assert!(idle.optional_k() > 0, "the signals never asked for a spend");
        }
    }
    // An optional spend decided by plain k could never be vetoed with k_min = 1 (the defect):
    assert_eq!(decide(&p, &disagreeing(1.0, 1.0)).k, 1);
    // With k_min 0 plain k is vetoed too (the fact loop's configuration).
    let zero = KPolicy::with_k(0, 4, 0.5).unwrap();
    let vetoed = decide(&zero, &disagreeing(1.0, 1.0));
    assert_eq!(vetoed.k, 0);
    assert_eq!(vetoed.reason, KReason::CostBraked);
}

#[test]
fn d31_the_risk_floor_is_not_discretionary() {
    let s = KSignals {
        risk: 0.9,
        ..disagreeing(1.0, 1.0)
    };
    let d = decide(&KPolicy::default(), &s);
    assert_eq!(d.optional_k(), 3, "cost removed the risk floor");
    assert_eq!(d.reason, KReason::RiskFloor);
}

#[test]
fn the_brake_is_live_between_the_brake_point_and_full_cost() {
    let p = KPolicy::default();
    // Explore = 3; at cost 0.8 the brake is 0.5 → ceil(1.5) = 2 → k 3. A no-op brake gives 4.
    let d = decide(&p, &disagreeing(1.0, 0.8));
    assert_eq!((d.explore_k, d.k), (2, 3));
    assert_eq!(d.reason, KReason::CostBraked);
    // At the brake point itself nothing is braked.
    let at = decide(&p, &disagreeing(1.0, 0.6));
    assert_eq!((at.explore_k, at.k), (3, 4));
    assert_eq!(at.reason, KReason::IndependentDisagreement);
}

#[test]
fn d30_nan_cost_reads_as_full_cost_and_nan_risk_as_full_risk() {
    let p = KPolicy::default();
    let d = decide(&p, &disagreeing(1.0, f64::NAN));
    assert_eq!((d.explore_k, d.k, d.cost), (0, 1, 1.0));
    let r = decide(
        &p,
        &KSignals {
            risk: f64::NAN,
            ..KSignals::default()
        },
    );
    assert_eq!(r.verify_k, 3);
}

// ---------------------------------------------------------------- budget: spec §7 k_cost

fn four() -> KDecision {
    let d = decide(&KPolicy::default(), &calibrated(0.9));
    assert_eq!(d.k, 4);
    d
}

#[test]
fn charge_budget_reference_values() {
    let c = charge_budget(&four(), Some(10.0), 1.0);
    assert_eq!(
        (c.admitted_k, c.requested_k, c.remaining, c.note),
        (4, 4, Some(6.0), BudgetNote::Ok)
    );
    assert_eq!(c.spent, 4.0);
    let c = charge_budget(&four(), Some(2.0), 1.0);
    assert_eq!((c.admitted_k, c.note), (2, BudgetNote::Clamped));
    assert_eq!(c.note.as_str(), "budget-clamped");
    let c = charge_budget(&four(), Some(0.0), 1.0);
    assert_eq!((c.admitted_k, c.note), (0, BudgetNote::Exhausted));
    assert_eq!(c.note.as_str(), "budget-exhausted");
    let c = charge_budget(&four(), None, 1.0);
    assert_eq!(
        (c.admitted_k, c.remaining, c.note),
        (4, None, BudgetNote::NoBudget)
    );
    // Fractional budgets round down; a unit cost of 2 halves what fits.
    assert_eq!(charge_budget(&four(), Some(2.9), 1.0).admitted_k, 2);
    assert_eq!(charge_budget(&four(), Some(5.0), 2.0).admitted_k, 2);
    // A NaN or negative budget admits nothing.
    assert_eq!(charge_budget(&four(), Some(f64::NAN), 1.0).admitted_k, 0);
    assert_eq!(charge_budget(&four(), Some(-3.0), 1.0).admitted_k, 0);
}

// ---------------------------------------------------------------- cost model: spec §7 k_cost

fn snap(load1: f64, cpus: u32, mem: f64, ready: u64, gpu: GpuReading) -> LoadSnapshot {
    LoadSnapshot {
        host: HostLoad {
            load1: Some(load1),
            cpu_count: Some(cpus),
            memory_pct: Some(mem),
            gpu,
        },
        queue: Some(QueueDepth { ready, held: 0 }),
    }
}

#[test]
fn cost_of_idle_and_saturated_machines() {
    let m = CostModel::default();
    let idle = m.cost(&snap(0.1, 10, 30.0, 0, GpuReading::NoGpu));
    assert!(idle.cost < 0.1, "{idle:?}");
    assert!(idle.failures.is_empty());
    let busy = m.cost(&snap(20.0, 2, 99.0, 20, GpuReading::Util(100.0)));
    assert!(busy.cost >= 0.99, "{busy:?}");
}

#[test]
fn each_component_alone_saturates_the_cost() {
    let m = CostModel::default();
    let load = m.cost(&snap(16.0, 1, 0.0, 0, GpuReading::NoGpu));
    assert!(load.cost >= 0.99 && load.breakdown.load >= 0.99);
    assert_eq!(load.breakdown.memory, 0.0);
    let mem = m.cost(&snap(0.0, 4, 100.0, 0, GpuReading::NoGpu));
    assert!(mem.cost >= 0.99 && mem.breakdown.memory >= 0.99);
    assert_eq!(mem.breakdown.load, 0.0);
    let queue = m.cost(&snap(0.0, 4, 0.0, 8, GpuReading::NoGpu));
    assert!(queue.cost >= 0.99 && queue.breakdown.queue >= 0.99);
    let held = m.cost(&LoadSnapshot {
        queue: Some(QueueDepth { ready: 2, held: 2 }),
        ..snap(0.0, 4, 0.0, 0, GpuReading::NoGpu)
    });
    assert_eq!(held.breakdown.queue, 0.5);
    let gpu = m.cost(&snap(0.0, 4, 0.0, 0, GpuReading::Util(85.0)));
    assert!(gpu.cost >= 0.99 && gpu.breakdown.gpu >= 0.99);
    // Memory costs nothing below the floor and scales linearly above it; 3 decimals.
    let half = m.cost(&snap(0.0, 4, 75.0, 0, GpuReading::NoGpu));
    assert_eq!(half.breakdown.memory, 0.5);
    let third = m.cost(&snap(1.0, 3, 0.0, 0, GpuReading::NoGpu));
    assert_eq!(third.breakdown.load, 0.333);
}

#[test]
fn d30_empty_or_missing_probes_cost_one_not_zero() {
    let m = CostModel::default();
    // The original read an empty probe dict as an idle machine (cost 0).
    let empty = m.cost(&LoadSnapshot::default());
    assert_eq!(empty.cost, 1.0);
    assert_eq!(empty.failures.len(), 4, "{:?}", empty.failures);
    for missing in [
        LoadSnapshot {
            host: HostLoad {
                load1: None,
                ..snap(0.0, 4, 0.0, 0, GpuReading::NoGpu).host
            },
            ..snap(0.0, 4, 0.0, 0, GpuReading::NoGpu)
        },
        LoadSnapshot {
            queue: None,
            ..snap(0.0, 4, 0.0, 0, GpuReading::NoGpu)
        },
        snap(0.0, 4, 0.0, 0, GpuReading::Unknown),
        snap(f64::NAN, 4, 0.0, 0, GpuReading::NoGpu),
        snap(0.0, 0, 0.0, 0, GpuReading::NoGpu),
        snap(0.0, 4, f64::INFINITY, 0, GpuReading::NoGpu),
    ] {
        let r = m.cost(&missing);
        assert_eq!(r.cost, 1.0, "{missing:?} → {r:?}");
        assert_eq!(r.failures.len(), 1);
    }
    // Contrast: the same snapshot with every probe present is idle.
    assert_eq!(m.cost(&snap(0.0, 4, 0.0, 0, GpuReading::NoGpu)).cost, 0.0);
}

struct Fixed(Result<HostLoad, SensorError>);
impl LoadSensor for Fixed {
    fn read(&self) -> Result<HostLoad, SensorError> {
        self.0.clone()
    }
}

struct Panicking;
impl LoadSensor for Panicking {
    fn read(&self) -> Result<HostLoad, SensorError> {
        panic!("probe exploded")
    }
}

fn idle_host() -> HostLoad {
    HostLoad {
        load1: Some(0.1),
        cpu_count: Some(10),
        memory_pct: Some(30.0),
        gpu: GpuReading::NoGpu,
    }
}

fn busy_host() -> HostLoad {
    HostLoad {
        load1: Some(16.0),
        cpu_count: Some(1),
        memory_pct: Some(99.0),
        gpu: GpuReading::NoGpu,
    }
}

const IDLE_QUEUE: Option<QueueDepth> = Some(QueueDepth { ready: 0, held: 0 });

#[test]
fn decide_with_cost_idle_saturated_and_budgeted() {
    let p = KPolicy::default();
    let m = CostModel::default();
    let wide = disagreeing(1.0, 0.0);
    let idle = decide_with_cost(&p, &m, &Fixed(Ok(idle_host())), IDLE_QUEUE, wide, None);
    assert_eq!(idle.k, 4);
    assert!(idle.cost.cost < 0.1);
    assert_eq!(idle.signals.cost, idle.cost.cost);
    let busy = decide_with_cost(&p, &m, &Fixed(Ok(busy_host())), IDLE_QUEUE, wide, None);
    assert_eq!(busy.k, 1);
    assert_eq!(busy.decision.reason, KReason::CostBraked);
    let clamped = decide_with_cost(&p, &m, &Fixed(Ok(idle_host())), IDLE_QUEUE, wide, Some(2.0));
    assert_eq!((clamped.k, clamped.charge.note), (2, BudgetNote::Clamped));
    assert_eq!(clamped.decision.k, 4);
    assert_eq!(clamped.est_cost, 2.0);
}

#[test]
fn d30_a_failing_or_panicking_sensor_is_full_cost() {
    let p = KPolicy::default();
    let m = CostModel::default();
    let wide = disagreeing(1.0, 0.0);
    let failing = Fixed(Err(SensorError("no /proc".into())));
    for sensor in [&failing as &dyn LoadSensor, &Panicking] {
        let r = decide_with_cost(&p, &m, sensor, IDLE_QUEUE, wide, None);
        assert_eq!(r.cost.cost, 1.0);
        assert_eq!(r.k, 1);
        assert_eq!(r.decision.reason, KReason::CostBraked);
        assert!(!r.cost.failures.is_empty());
    }
    // A missing queue depth is a missing probe too.
    let r = decide_with_cost(&p, &m, &Fixed(Ok(idle_host())), None, wide, None);
    assert_eq!((r.cost.cost, r.k), (1.0, 1));
}

// ---------------------------------------------------------------- ladder (spec §7 k_policy_ladder)

#[test]
fn ladder_width_follows_severity_load_and_budget() {
    let p = KPolicy::with_k(1, 5, 0.5).unwrap();
    let m = CostModel::default();
    // Severity 1.0 (every visible case wrong) as the independent disagreement signal.
    let severe = |importance| KSignals {
        importance,
        ..disagreeing(1.0, 0.0)
    };
    let idle = decide_with_cost(
        &p,
        &m,
        &Fixed(Ok(idle_host())),
        IDLE_QUEUE,
        severe(1.0),
        None,
    );
    assert!(idle.k >= 3);
    assert_eq!(idle.decision.reason, KReason::IndependentDisagreement);
    let busy = decide_with_cost(
        &p,
        &m,
        &Fixed(Ok(busy_host())),
        IDLE_QUEUE,
        severe(1.0),
        None,
    );
    assert_eq!((busy.k, busy.decision.reason), (1, KReason::CostBraked));
    let budget = decide_with_cost(
        &p,
        &m,
        &Fixed(Ok(idle_host())),
        IDLE_QUEUE,
        severe(1.0),
        Some(2.0),
    );
    assert!(budget.k <= 2);
    assert!(matches!(
        budget.charge.note,
        BudgetNote::Ok | BudgetNote::Clamped
    ));
    let low = decide_with_cost(
        &p,
        &m,
        &Fixed(Ok(idle_host())),
        IDLE_QUEUE,
        severe(0.2),
        None,
    );
    assert!(idle.k >= low.k && idle.k > 1);
    // Severity 0.1 (900 of 1000 right) stays thin.
    let mild = decide(&p, &disagreeing(0.1, 0.0));
    assert_eq!(mild.k, 1);
}

// ---------------------------------------------------------------- lane width (dynamic_k_seams)

#[test]
fn lane_width_from_cost() {
    let p = KPolicy::default();
    assert_eq!(dynamic_width(&p, 0.0, 5, 1.0), 5);
    let mid = dynamic_width(&p, 0.0, 5, 0.5);
    assert!(mid > 1 && mid <= 5);
    assert_eq!(dynamic_width(&p, 1.0, 5, 0.5), 1);
    assert_eq!(dynamic_width(&p, 1.0, 5, 1.0), 1);
    assert_eq!(
        dynamic_width(&p, f64::NAN, 5, 1.0),
        1,
        "unknown cost is full cost"
    );
    assert_eq!(dynamic_width(&p, 0.0, 1, 1.0), 1);
    assert_eq!(dynamic_width(&p, 0.0, 0, 1.0), 0);
    for n in [2, 3, 4, 8] {
        let w = dynamic_width(&p, 0.0, n, 0.5);
        assert!((1..=n).contains(&w));
    }
    // The caller's policy is a value: untouched.
    assert_eq!(p, KPolicy::default());
}

// ---------------------------------------------------------------- governed verification

fn counting<'a>(
    name: &'static str,
    log: &'a RefCell<Vec<&'static str>>,
    verdict: Result<bool, String>,
) -> Check<'a, str> {
    Check::new(name, move |_item: &str| {
        log.borrow_mut().push(name);
        verdict.clone()
    })
}

fn four_checks<'a>(log: &'a RefCell<Vec<&'static str>>) -> Vec<Check<'a, str>> {
    vec![
        counting("a", log, Ok(true)),
        counting("b", log, Ok(true)),
        counting("c", log, Ok(true)),
        counting("d", log, Ok(true)),
    ]
}

#[test]
fn governed_verify_thin_runs_one_check() {
    let log = RefCell::new(Vec::new());
    let checks = four_checks(&log);
    let a = governed_verify(
        "item",
        &checks,
        &KPolicy::default(),
        &VerifyRequest::default(),
        &CostSource::Given(0.0),
    );
    assert!(a.verdict);
    assert_eq!(a.k, 1);
    assert_eq!(a.reason, KReason::ThinDefault);
    assert_eq!(*log.borrow(), ["a"]);
}

#[test]
fn governed_verify_risk_floor_survives_full_cost() {
    let log = RefCell::new(Vec::new());
    let checks = four_checks(&log);
    let risky = VerifyRequest {
        risk: 1.0,
        ..VerifyRequest::default()
    };
    let a = governed_verify(
        "item",
        &checks,
        &KPolicy::default(),
        &risky,
        &CostSource::Given(1.0),
    );
    assert!(a.k >= 2 && a.verify_k >= 1);
    assert_eq!(a.reason, KReason::RiskFloor);
    assert_eq!(log.borrow().len(), a.k as usize, "exactly k checks ran");
    assert!(a.verdict);
}

#[test]
fn governed_verify_disagreement_against_cost() {
    let log = RefCell::new(Vec::new());
    let checks = four_checks(&log);
    let req = VerifyRequest {
        disagreement: Some(1.0),
        importance: 1.0,
        ..VerifyRequest::default()
    };
    let p = KPolicy::default();
    let loaded = governed_verify("x", &checks, &p, &req, &CostSource::Given(1.0));
    assert_eq!(loaded.k, 1);
    let idle = governed_verify("x", &checks, &p, &req, &CostSource::Given(0.0));
    assert!(idle.k > 1);
    assert_eq!(idle.reason, KReason::IndependentDisagreement);
}

#[test]
fn governed_verify_holds_uncalibrated_uncertainty() {
    let log = RefCell::new(Vec::new());
    let checks = four_checks(&log);
    let req = VerifyRequest {
        uncertainty: 0.95,
        calibrated: false,
        ..VerifyRequest::default()
    };
    let a = governed_verify(
        "x",
        &checks,
        &KPolicy::default(),
        &req,
        &CostSource::Given(0.0),
    );
    assert_eq!((a.k, a.reason), (1, KReason::UncalibratedHeld));
}

#[test]
fn governed_verify_runs_exactly_k_in_order_without_short_circuit() {
    let log = RefCell::new(Vec::new());
    let checks = vec![
        counting("first-fails", &log, Ok(false)),
        counting("errs", &log, Err("validator crashed".into())),
        counting("passes", &log, Ok(true)),
        counting("never", &log, Ok(true)),
    ];
    let req = VerifyRequest {
        risk: 0.8,
        ..VerifyRequest::default()
    };
    let a = governed_verify(
        "x",
        &checks,
        &KPolicy::default(),
        &req,
        &CostSource::Given(0.0),
    );
    // risk 0.8 → verify_k = ceil(0.6 · 3) = 2 → k 3.
    assert_eq!(a.k, 3);
    assert_eq!(*log.borrow(), ["first-fails", "errs", "passes"]);
    assert!(!a.verdict);
    assert_eq!(a.outcomes.len(), 3);
    assert_eq!(a.outcomes[1].error.as_deref(), Some("validator crashed"));
    assert!(a.outcomes[2].passed);
}

#[test]
fn governed_verify_counts_a_panicking_check_as_failed() {
    let ran_after = Cell::new(false);
    let checks: Vec<Check<'_, str>> = vec![
        Check::new("boom", |_: &str| -> Result<bool, String> {
            panic!("check blew up")
        }),
        Check::new("after", |_: &str| {
            ran_after.set(true);
            Ok(true)
        }),
    ];
    let req = VerifyRequest {
        risk: 1.0,
        ..VerifyRequest::default()
    };
    let a = governed_verify(
        "x",
        &checks,
        &KPolicy::default(),
        &req,
        &CostSource::Given(0.0),
    );
    assert!(!a.verdict);
    assert_eq!(a.k, 2, "clamped to the number of checks");
    assert!(ran_after.get(), "the panic short-circuited the rest");
    let err = a.outcomes[0].error.as_deref().unwrap();
    assert!(err.contains("check blew up"), "{err}");
    // Contrast: the same two checks without the panic pass.
    let ok: Vec<Check<'_, str>> = vec![
        Check::new("fine", |_: &str| Ok(true)),
        Check::new("after", |_: &str| Ok(true)),
    ];
    assert!(governed_verify("x", &ok, &KPolicy::default(), &req, &CostSource::Given(0.0)).verdict);
}

#[test]
fn governed_verify_check_count_and_budget() {
    let log = RefCell::new(Vec::new());
    let two = vec![counting("a", &log, Ok(true)), counting("b", &log, Ok(true))];
    let risky = VerifyRequest {
        risk: 1.0,
        ..VerifyRequest::default()
    };
    let p = KPolicy::default();
    let a = governed_verify("x", &two, &p, &risky, &CostSource::Given(0.0));
    assert_eq!((a.k, a.verdict), (2, true));
    assert_eq!(a.decided_k, 4);
    // No checks: nothing can vouch for the item.
    let none: Vec<Check<'_, str>> = Vec::new();
    let a = governed_verify("x", &none, &p, &risky, &CostSource::Given(0.0));
    assert_eq!((a.k, a.verdict), (0, false));
    // Budget 2 of a decided 4: exactly 2 run, noted.
    log.borrow_mut().clear();
    let checks = four_checks(&log);
    let budgeted = VerifyRequest {
        budget: Some(2.0),
        ..risky
    };
    let a = governed_verify("x", &checks, &p, &budgeted, &CostSource::Given(0.0));
    assert_eq!((a.k, a.budget_note), (2, BudgetNote::Clamped));
    assert_eq!(log.borrow().len(), 2);
    // No budget: the full width.
    log.borrow_mut().clear();
    let a = governed_verify("x", &checks, &p, &risky, &CostSource::Given(0.0));
    assert_eq!((a.k, a.budget_note), (4, BudgetNote::NoBudget));
    assert_eq!(log.borrow().len(), 4);
    // Budget 0: no check runs and the item does not pass (fail closed).
    log.borrow_mut().clear();
    let broke = VerifyRequest {
        budget: Some(0.0),
        ..risky
    };
    let a = governed_verify("x", &checks, &p, &broke, &CostSource::Given(0.0));
    assert_eq!(
        (a.k, a.verdict, a.budget_note),
        (0, false, BudgetNote::Exhausted)
    );
    assert!(log.borrow().is_empty());
}

#[test]
fn d30_governed_verify_fails_closed_on_every_cost_failure() {
    let p = KPolicy::default();
    let req = VerifyRequest {
        disagreement: Some(1.0),
        importance: 1.0,
        ..VerifyRequest::default()
    };
    let log = RefCell::new(Vec::new());
    let checks = four_checks(&log);
    let erring = || -> Result<f64, String> { Err("sensor offline".into()) };
    let panicking = || -> Result<f64, String> { panic!("sensor panicked") };
    let failing_sensor = Fixed(Err(SensorError("no /proc".into())));
    let model = CostModel::default();
    let sources = [
        CostSource::Probe(&erring),
        CostSource::Probe(&panicking),
        CostSource::Given(f64::NAN),
        CostSource::Unknown,
        CostSource::Sensor {
            sensor: &failing_sensor,
            model: &model,
            queue: IDLE_QUEUE,
        },
    ];
    for source in &sources {
        let a = governed_verify("x", &checks, &p, &req, source);
        assert_eq!(a.cost, 1.0);
        assert_eq!(a.k, 1, "a failed cost probe widened verification");
        assert!(a.cost_failure.is_some());
    }
    // Contrast: a working idle sensor does widen.
    let idle = Fixed(Ok(idle_host()));
    let a = governed_verify(
        "x",
        &checks,
        &p,
        &req,
        &CostSource::Sensor {
            sensor: &idle,
            model: &model,
            queue: IDLE_QUEUE,
        },
    );
    assert_eq!(a.k, 4);
    assert!(a.cost_failure.is_none());
}
