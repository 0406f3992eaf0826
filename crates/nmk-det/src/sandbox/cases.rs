//! Running a program on visible cases: the sandboxed "run these tests" tool.
//!
//! The caller gives code, an entry name and cases with their expected values (all visible, so a
//! failure may show the expectation); the worker returns raw values and this module judges them
//! with type-strict equality. Limits come from untrusted task inputs, so they are clamped:
//! wall time to [0.1, 120] s (default 10), memory to [16, 4096] MiB (default 512); anything
//! non-numeric falls back to the default.

use std::time::{Duration, Instant};

use super::{CallLimits, CallResult, Sandbox, SandboxError};
use crate::oracles::strict_equal;
use crate::value::Value;

/// The most failures a report lists.
pub const MAX_LISTED_FAILURES: usize = 10;

/// Default wall-clock limit of a call, in seconds.
pub const DEFAULT_TIMEOUT_S: f64 = 10.0;
/// Bounds of the wall-clock limit, in seconds.
pub const TIMEOUT_RANGE_S: (f64, f64) = (0.1, 120.0);
/// Default memory limit, in MiB.
pub const DEFAULT_MEMORY_MB: u64 = 512;
/// Bounds of the memory limit, in MiB.
pub const MEMORY_RANGE_MB: (u64, u64) = (16, 4096);

fn number(raw: Option<&Value>) -> Option<f64> {
    match raw? {
        Value::Int(i) => i.to_string().parse::<f64>().ok(),
        Value::Float(f) => Some(f.get()),
        _ => None,
    }
    .filter(|x| x.is_finite())
}

/// The per-call wall-clock limit asked for by `raw` (seconds), clamped.
pub fn clamp_timeout(raw: Option<&Value>) -> Duration {
    let s = number(raw)
        .unwrap_or(DEFAULT_TIMEOUT_S)
        .clamp(TIMEOUT_RANGE_S.0, TIMEOUT_RANGE_S.1);
    Duration::from_secs_f64(s)
}

/// The memory limit asked for by `raw` (MiB), clamped, in bytes.
pub fn clamp_memory(raw: Option<&Value>) -> u64 {
    let mb = number(raw).map_or(DEFAULT_MEMORY_MB, |x| {
        // In range after the clamp, so the cast is exact enough and cannot wrap.
        x.clamp(MEMORY_RANGE_MB.0 as f64, MEMORY_RANGE_MB.1 as f64) as u64
    });
    mb.clamp(MEMORY_RANGE_MB.0, MEMORY_RANGE_MB.1) << 20
}

/// Limits for a case run from untrusted `timeout_s` and `memory_mb` inputs.
pub fn clamped_limits(timeout_s: Option<&Value>, memory_mb: Option<&Value>) -> CallLimits {
    CallLimits {
        per_call: clamp_timeout(timeout_s),
        memory: clamp_memory(memory_mb),
        ..CallLimits::default()
    }
}

/// One visible case.
#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    /// Positional arguments.
    pub args: Vec<Value>,
    /// The expected result.
    pub expected: Value,
}

/// A failed case.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseFailure {
    /// The case's position.
    pub index: usize,
    /// What the program did (returned or raised).
    pub got: String,
    /// The raised exception, `"<Type>: message"`, when it raised.
    pub error: Option<String>,
    /// What was expected (cases are visible, so this leaks nothing).
    pub expected: Value,
}

/// The outcome of a case run.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseReport {
    /// Every case passed, there was at least one, and there was code.
    pub ok: bool,
    /// Cases passed.
    pub passed: usize,
    /// Cases given.
    pub total: usize,
    /// The first failures (at most [`MAX_LISTED_FAILURES`]).
    pub failures: Vec<CaseFailure>,
    /// Why nothing ran, if so (`no code`, `no cases`).
    pub note: Option<String>,
    /// Whether a call ran past its time limit (stopped by the interpreter or the watchdog).
    pub timed_out: bool,
    /// Whether a worker had to be killed and replaced (overrun, crash, protocol break).
    pub killed: bool,
    /// The worker process that ran the cases (never the caller's).
    pub worker_pid: Option<u32>,
    /// Wall time.
    pub elapsed: Duration,
}

impl CaseReport {
    fn refused(total: usize, note: &str) -> CaseReport {
        CaseReport {
            ok: false,
            passed: 0,
            total,
            failures: Vec::new(),
            note: Some(note.into()),
            timed_out: false,
            killed: false,
            worker_pid: None,
            elapsed: Duration::ZERO,
        }
    }

    /// The report as a value (what the sandbox tool returns to the kernel).
    pub fn to_value(&self) -> Value {
        let failures = self
            .failures
            .iter()
            .map(|f| {
                let mut m = std::collections::BTreeMap::new();
                m.insert("index".into(), Value::int(f.index as u64));
                m.insert("got".into(), Value::str(f.got.clone()));
                m.insert(
                    "error".into(),
                    f.error.clone().map_or(Value::Null, Value::str),
                );
                m.insert("expected".into(), f.expected.clone());
                Value::Map(m)
            })
            .collect();
        let mut m = std::collections::BTreeMap::new();
        m.insert("ok".into(), Value::Bool(self.ok));
        m.insert("passed".into(), Value::int(self.passed as u64));
        m.insert("total".into(), Value::int(self.total as u64));
        m.insert("failures".into(), Value::List(failures));
        m.insert(
            "note".into(),
            self.note.clone().map_or(Value::Null, Value::str),
        );
        m.insert("timed_out".into(), Value::Bool(self.timed_out));
        m.insert("killed".into(), Value::Bool(self.killed));
        m.insert("sandboxed".into(), Value::Bool(true));
        m.insert(
            "elapsed_ms".into(),
            Value::int(u64::try_from(self.elapsed.as_millis()).unwrap_or(u64::MAX)),
        );
        Value::Map(m)
    }
}

/// Runs `entry` on every case in one confined worker and judges the results type-strictly.
/// Empty code or no cases is never ok. `Err` only when no confined worker can be had.
pub fn run_cases(
    sandbox: &Sandbox,
    code: &str,
    entry: &str,
    cases: &[Case],
    limits: &CallLimits,
) -> Result<CaseReport, SandboxError> {
    if code.trim().is_empty() {
        return Ok(CaseReport::refused(cases.len(), "no code"));
    }
    if cases.is_empty() {
        return Ok(CaseReport::refused(0, "no cases"));
    }
    let started = Instant::now();
    let calls: Vec<Vec<Value>> = cases.iter().map(|c| c.args.clone()).collect();
    let spawns_before = sandbox.spawns();
    let results = sandbox.run_batch_on(0, code, entry, &calls, limits)?;
    let killed = sandbox.spawns() > spawns_before
        || results.iter().any(|r| {
            matches!(
                r,
                CallResult::Timeout | CallResult::Crashed(_) | CallResult::Protocol(_)
            )
        });
    let mut passed = 0;
    let mut failures = Vec::new();
    for (index, case) in cases.iter().enumerate() {
        let result = results.get(index).unwrap_or(&CallResult::NotRun);
        if result
            .value()
            .is_some_and(|v| strict_equal(v, &case.expected))
        {
            passed += 1;
        } else if failures.len() < MAX_LISTED_FAILURES {
            failures.push(CaseFailure {
                index,
                got: result.describe(),
                error: match result {
                    CallResult::Raised(e) => Some(e.clone()),
                    _ => None,
                },
                expected: case.expected.clone(),
            });
        }
    }
    Ok(CaseReport {
        ok: passed == cases.len(),
        passed,
        total: cases.len(),
        failures,
        note: None,
        timed_out: results.iter().any(CallResult::is_timeout),
        killed,
        worker_pid: sandbox.worker_pids().first().copied().flatten(),
        elapsed: started.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_clamped_and_junk_falls_back_to_the_default() {
        let t = |v: Value| clamp_timeout(Some(&v));
        assert_eq!(
            t(Value::int(1_000_000_000_000i64)),
            Duration::from_secs(120)
        );
        assert_eq!(t(Value::str("abc")), Duration::from_secs(10));
        assert_eq!(t(Value::str("NaN")), Duration::from_secs(10));
        assert_eq!(clamp_timeout(None), Duration::from_secs(10));
        assert_eq!(t(Value::int(-5)), Duration::from_millis(100));
        assert_eq!(t(Value::float(2.5).unwrap()), Duration::from_millis(2500));
        let m = |v: Value| clamp_memory(Some(&v)) >> 20;
        assert_eq!(m(Value::int(1)), 16);
        assert_eq!(m(Value::int(1i64 << 40)), 4096);
        assert_eq!(m(Value::Null), 512);
        assert_eq!(m(Value::int(300)), 300);
    }
}
