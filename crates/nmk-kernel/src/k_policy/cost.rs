//! The machine-cost model: one number in [0, 1] from host load, memory, the kernel's queue and
//! GPU use, and [`decide_with_cost`] which feeds it to [`super::decide`] and charges the budget.
//!
//! Owns the arithmetic only. Probing the host is a [`LoadSensor`]'s job, implemented outside the
//! kernel (the binary's `sensors` module), so the trusted crate needs no system-information
//! dependency. Fails closed: a sensor that errs or panics, a missing probe, or a non-finite
//! reading makes that component (and so the cost) 1.0 — never 0, which would read a broken probe
//! as an idle machine and buy the widest k (spec §9 D30).

use std::panic::{AssertUnwindSafe, catch_unwind};

use super::{Charge, KDecision, KPolicy, KSignals, charge_budget, decide};

/// GPU utilisation as a sensor saw it.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum GpuReading {
    /// Not probed, or the probe failed: counts as saturated.
    #[default]
    Unknown,
    /// The sensor established that there is no GPU to load: contributes 0.
    NoGpu,
    /// Utilisation in percent.
    Util(f64),
}

/// What a [`LoadSensor`] reads from the host. `None` = the probe is missing and counts as
/// saturated (cost 1.0 for that component).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct HostLoad {
    /// One-minute load average.
    pub load1: Option<f64>,
    /// Logical CPUs.
    pub cpu_count: Option<u32>,
    /// Memory in use, percent of total.
    pub memory_pct: Option<f64>,
    /// GPU utilisation.
    pub gpu: GpuReading,
}

/// The kernel's own queue: tasks ready to run and tasks held (blocked, waiting, repairing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueDepth {
    /// Ready tasks.
    pub ready: u64,
    /// Held tasks.
    pub held: u64,
}

/// Everything the cost is computed from. `queue: None` = the caller did not say: saturated.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LoadSnapshot {
    /// Host load as sensed.
    pub host: HostLoad,
    /// The kernel's queue.
    pub queue: Option<QueueDepth>,
}

/// A sensor that could not read the host.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("load sensor failed: {0}")]
pub struct SensorError(pub String);

/// Reads host load. Implemented outside the kernel (e.g. on `sysinfo` in the binary).
pub trait LoadSensor {
    /// One reading of the host.
    fn read(&self) -> Result<HostLoad, SensorError>;
}

/// The per-component costs, each in [0, 1], rounded to 3 decimals.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct CostBreakdown {
    /// Load average per CPU, over `load_saturate`.
    pub load: f64,
    /// Memory use above `mem_floor`, scaled to [0, 1].
    pub memory: f64,
    /// `(ready + held) / queue_soft_cap`.
    pub queue: f64,
    /// GPU utilisation over `gpu_saturate`.
    pub gpu: f64,
}

/// A cost with its breakdown and what was missing.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CostReading {
    /// The largest component (3 decimals).
    pub cost: f64,
    /// Each component.
    pub breakdown: CostBreakdown,
    /// Components that were missing or unreadable and so counted as 1.0; or the sensor's error.
    pub failures: Vec<String>,
}

impl CostReading {
    /// A reading for a sensor that failed outright: cost 1.0 everywhere.
    pub fn failed(why: impl Into<String>) -> CostReading {
        CostReading {
            cost: 1.0,
            breakdown: CostBreakdown {
                load: 1.0,
                memory: 1.0,
                queue: 1.0,
                gpu: 1.0,
            },
            failures: vec![why.into()],
        }
    }
}

/// Turns a [`LoadSnapshot`] into a cost in [0, 1].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CostModel {
    /// Queue length (ready + held) at which the queue component saturates.
    pub queue_soft_cap: u64,
    /// Load average per CPU at which the load component saturates.
    pub load_saturate: f64,
    /// Memory fraction below which memory costs nothing.
    pub mem_floor: f64,
    /// GPU utilisation fraction at which the GPU component saturates.
    pub gpu_saturate: f64,
}

impl Default for CostModel {
    /// Queue 8, load 1.0 per CPU, memory from 50 %, GPU at 85 %.
    fn default() -> Self {
        CostModel {
            queue_soft_cap: 8,
            load_saturate: 1.0,
            mem_floor: 0.5,
            gpu_saturate: 0.85,
        }
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// A component in [0, 1]; `None` (missing, non-finite or a degenerate model) is 1.0.
fn component(x: Option<f64>) -> Option<f64> {
    x.filter(|v| v.is_finite())
        .map(|v| round3(v.clamp(0.0, 1.0)))
}

impl CostModel {
    /// Cost and breakdown of one snapshot. Missing probes count as 1.0 and are named in
    /// `failures`.
    pub fn cost(&self, snap: &LoadSnapshot) -> CostReading {
        let mut failures = Vec::new();
        let mut take = |name: &str, v: Option<f64>| match component(v) {
            Some(c) => c,
            None => {
                failures.push(format!("{name}: missing or unreadable"));
                1.0
            }
        };
        let host = &snap.host;
        let load = take(
            "load",
            match (host.load1, host.cpu_count) {
                (Some(l), Some(n)) if n > 0 && self.load_saturate > 0.0 => {
                    Some(l / f64::from(n) / self.load_saturate)
                }
                _ => None,
            },
        );
        let memory = take(
            "memory",
            host.memory_pct
                .filter(|_| self.mem_floor < 1.0)
                .map(|p| (p / 100.0 - self.mem_floor) / (1.0 - self.mem_floor)),
        );
        let queue = take(
            "queue",
            snap.queue.and_then(|q| {
                (self.queue_soft_cap > 0)
                    .then(|| q.ready.saturating_add(q.held) as f64 / self.queue_soft_cap as f64)
            }),
        );
        let gpu = take(
            "gpu",
            match host.gpu {
                GpuReading::NoGpu => Some(0.0),
                GpuReading::Util(u) if self.gpu_saturate > 0.0 => {
                    Some(u / 100.0 / self.gpu_saturate)
                }
                _ => None,
            },
        );
        let breakdown = CostBreakdown {
            load,
            memory,
            queue,
            gpu,
        };
        CostReading {
            cost: load.max(memory).max(queue).max(gpu),
            breakdown,
            failures,
        }
    }

    /// Reads `sensor` and computes the cost; a sensor that errs or panics gives cost 1.0.
    pub fn read(&self, sensor: &dyn LoadSensor, queue: Option<QueueDepth>) -> CostReading {
        match catch_unwind(AssertUnwindSafe(|| sensor.read())) {
            Ok(Ok(host)) => self.cost(&LoadSnapshot { host, queue }),
            Ok(Err(e)) => CostReading::failed(e.to_string()),
            Err(_) => CostReading::failed("load sensor panicked"),
        }
    }
}

/// The outcome of [`decide_with_cost`].
#[derive(Debug, Clone, PartialEq)]
pub struct CostedDecision {
    /// The signals decided on (the caller's, with the measured cost).
    pub signals: KSignals,
    /// The decision.
    pub decision: KDecision,
    /// The budget charge.
    pub charge: Charge,
    /// The k to use: what the budget admitted.
    pub k: u32,
    /// The cost reading.
    pub cost: CostReading,
    /// `k · unit_cost` of the admitted k.
    pub est_cost: f64,
}

/// Measures the cost through `sensor` (failures → 1.0), decides with the caller's other signals
/// and charges `remaining` (spec §5.3). The caller's `signals.cost` is replaced by the measured
/// cost.
pub fn decide_with_cost(
    policy: &KPolicy,
    model: &CostModel,
    sensor: &dyn LoadSensor,
    queue: Option<QueueDepth>,
    signals: KSignals,
    remaining: Option<f64>,
) -> CostedDecision {
    let cost = model.read(sensor, queue);
    let signals = KSignals {
        cost: cost.cost,
        ..signals
    };
    let decision = decide(policy, &signals);
    let charge = charge_budget(&decision, remaining, policy.unit_cost());
    CostedDecision {
        signals,
        decision,
        k: charge.admitted_k,
        est_cost: f64::from(charge.admitted_k) * policy.unit_cost(),
        charge,
        cost,
    }
}
