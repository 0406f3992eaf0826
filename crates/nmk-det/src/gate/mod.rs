//! The hold-out gate: the only way a model-written program is ever called correct.
//!
//! A [`Gap`] is what the program must do: an entry name, a signature, a description, visible
//! sample cases, and a trusted generator and judge (an oracle written with a different
//! algorithm, or a `verify(instance, output)` check). [`holdout_gate`] runs a candidate in the
//! [`crate::sandbox`] and decides, in this process, from canonical values:
//!
//! 1. the visible samples must all pass (`sample_fail`);
//! 2. `n` held-out instances from the seed (n = 0 never passes; at least `novelty_fraction · n`
//!    must be distinct), each under per-instance limits, each run twice in two different
//!    worker processes (`nondeterministic` if the runs differ, `timeout` if any overran), all
//!    judged with type-strict equality ([`crate::oracles::strict_equal`]: bool is not int, tuple
//!    is not list, floats by bits, NaN never arrives) (`gate_fail`);
//! 3. the same on a second seed, `seed XOR 0x9E3779B9` (`regate_fail`);
//! 4. a placebo set that must **all fail** on the held-out instances: constant `None`, the
//!    constant most frequent output, an echo of the first argument, a memoriser of the visible
//!    samples, and the candidate's own outputs perturbed (same type, different value). A passing
//!    placebo means the judge does not discriminate (`placebo_unsound`).
//!
//! If no confined worker can be had, the verdict is `unsandboxed`: nothing runs unconfined.
//! A gap whose trusted code fails (a [`gapfile`] generator or oracle that raises, overruns or
//! returns something that is not an instance) fails the gate closed as `gap_unsound`: the
//! candidate is not admitted, and the report says the gap, not the candidate, is at fault.
//! Feedback is leak-free: for a held-out instance it names the instance and what the program
//! itself returned or raised, never the oracle's expected value.

mod gap;
pub mod gapfile;
mod placebo;
pub mod rng;

use std::fmt;
use std::time::{Duration, Instant};

pub(crate) use gap::Truths;
pub use gap::{
    Gap, GapError, Generation, Generator, Judge, OracleFn, SANITY_DRAWS, SANITY_MIN_DISTINCT,
    SampleCase, SanityReport, TrustedProgram, VerifyFn, first_difference, is_identifier,
};
use placebo::placebo_programs;
pub use placebo::{perturb, python_literal};
pub use rng::Rng;

use crate::canonical::encode;
use crate::hash::{ContentHash, hash_bytes, hash_value};
use crate::sandbox::{CallLimits, CallResult, Sandbox, SandboxError};
use crate::value::Value;

/// Why a candidate was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureReason {
    /// A visible sample failed (or there was no code).
    SampleFail,
    /// A held-out instance failed, or the instances were not novel enough, or n = 0.
    GateFail,
    /// A held-out instance of the second seed failed.
    RegateFail,
    /// A placebo passed: the judge does not discriminate.
    PlaceboUnsound,
    /// No confined worker could be had.
    Unsandboxed,
    /// An instance ran past its limit.
    Timeout,
    /// Two runs of the same instance, in two workers, differed.
    Nondeterministic,
    /// The gap's own trusted code (generator, oracle, verify) failed: the gate fails closed
    /// and the gap, not the candidate, needs fixing.
    GapUnsound,
}

impl FailureReason {
    /// The reason code.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::SampleFail => "sample_fail",
            FailureReason::GateFail => "gate_fail",
            FailureReason::RegateFail => "regate_fail",
            FailureReason::PlaceboUnsound => "placebo_unsound",
            FailureReason::Unsandboxed => "unsandboxed",
            FailureReason::Timeout => "timeout",
            FailureReason::Nondeterministic => "nondeterministic",
            FailureReason::GapUnsound => "gap_unsound",
        }
    }
}

impl fmt::Display for FailureReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Gate settings.
#[derive(Debug, Clone)]
pub struct GateConfig {
    /// Held-out instances per seed.
    pub n: usize,
    /// The first seed.
    pub seed: u64,
    /// Distinct instances must be at least this fraction of n.
    pub novelty_fraction: f64,
    /// Per-instance limits.
    pub limits: CallLimits,
    /// Instances each placebo runs on (at most n).
    pub placebo_n: usize,
    /// Run every gate instance twice, in two workers.
    pub check_determinism: bool,
}

impl Default for GateConfig {
    fn default() -> Self {
        GateConfig {
            n: 2000,
            seed: 0,
            novelty_fraction: 0.5,
            limits: CallLimits {
                per_call: Duration::from_secs(1),
                stop_on_timeout: true,
                ..CallLimits::default()
            },
            placebo_n: 300,
            check_determinism: true,
        }
    }
}

/// The second seed: `seed XOR 0x9E3779B9`, or 1 when that is zero.
pub fn second_seed(seed: u64) -> u64 {
    match seed ^ 0x9E37_79B9 {
        0 => 1,
        s => s,
    }
}

/// The first instance a stage failed on, with the program's own behaviour only.
#[derive(Debug, Clone, PartialEq)]
pub struct FirstFailure {
    /// Position in the stage's instance list.
    pub index: usize,
    /// The instance's arguments.
    pub args: Vec<Value>,
    /// What the program did (returned or raised); never the expected value of a held-out
    /// instance.
    pub got: String,
}

/// One stage's counts and hashes.
#[derive(Debug, Clone, PartialEq)]
pub struct StageReport {
    /// The seed (0 for the sample stage).
    pub seed: u64,
    /// Instances asked for.
    pub n: usize,
    /// Instances judged correct.
    pub passed: usize,
    /// Distinct instances.
    pub distinct: usize,
    /// The first failure, if any.
    pub first_fail: Option<FirstFailure>,
    /// Hash of the instance list.
    pub instances_hash: ContentHash,
    /// Hash of the program's outputs.
    pub outputs_hash: ContentHash,
    /// A note (novelty, n = 0).
    pub note: Option<String>,
}

/// One placebo's result; every placebo must fail.
#[derive(Debug, Clone, PartialEq)]
pub struct PlaceboReport {
    /// Which placebo.
    pub name: &'static str,
    /// Instances it got right.
    pub matched: usize,
    /// Instances it ran on.
    pub n: usize,
    /// Whether it passed (which makes the gate unsound).
    pub passed: bool,
}

/// The gate's verdict and evidence.
#[derive(Debug, Clone, PartialEq)]
pub struct GateReport {
    /// Whether the candidate is admitted.
    pub passed: bool,
    /// Why not.
    pub reason: Option<FailureReason>,
    /// Hash of the candidate's code.
    pub code_hash: ContentHash,
    /// The visible samples.
    pub sample: Option<StageReport>,
    /// The held-out instances at the first seed.
    pub gate: Option<StageReport>,
    /// The held-out instances at the second seed.
    pub regate: Option<StageReport>,
    /// The placebo set.
    pub placebos: Vec<PlaceboReport>,
    /// Whether the two runs of every gate instance agreed (`None` if not checked).
    pub deterministic: Option<bool>,
    /// Leak-free feedback for a repair.
    pub feedback: String,
    /// Wall time.
    pub elapsed: Duration,
}

fn outcome_key(r: &CallResult) -> String {
    match r {
        CallResult::Ok(v) => encode(v),
        CallResult::Raised(e) => format!("raised:{e}"),
        CallResult::Timeout => "timeout".into(),
        CallResult::Crashed(_) => "crashed".into(),
        CallResult::Protocol(_) => "protocol".into(),
        CallResult::NotRun => "not_run".into(),
    }
}

fn outputs_hash(results: &[CallResult]) -> ContentHash {
    hash_value(&Value::List(
        results
            .iter()
            .map(|r| match r {
                CallResult::Ok(v) => Value::List(vec![Value::str("ok"), v.clone()]),
                other => Value::List(vec![Value::str("err"), Value::str(outcome_key(other))]),
            })
            .collect(),
    ))
}

fn instances_value(instances: &[Vec<Value>]) -> Value {
    Value::List(instances.iter().map(|a| Value::Tuple(a.clone())).collect())
}

pub(super) fn distinct(instances: &[Vec<Value>]) -> usize {
    let mut keys: Vec<String> = instances
        .iter()
        .map(|a| encode(&Value::List(a.clone())))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    keys.len()
}

/// Judges results against the gap; returns (passed, first failing index).
fn judge_all(
    gap: &Gap,
    instances: &[Vec<Value>],
    results: &[CallResult],
    truths: &Truths,
) -> Result<(usize, Option<usize>), GapError> {
    let outputs: Vec<Option<&Value>> = (0..instances.len())
        .map(|i| results.get(i).and_then(CallResult::value))
        .collect();
    let accepted = gap.judge_outputs(instances, &outputs, truths)?;
    let passed = accepted.iter().filter(|ok| **ok).count();
    Ok((passed, accepted.iter().position(|ok| !ok)))
}

/// Why the stages stopped before a verdict.
enum StageError {
    /// No confined worker for the candidate.
    Sandbox(SandboxError),
    /// The gap's trusted code failed (or could not run).
    Gap(GapError),
}

impl From<SandboxError> for StageError {
    fn from(e: SandboxError) -> Self {
        StageError::Sandbox(e)
    }
}

impl From<GapError> for StageError {
    fn from(e: GapError) -> Self {
        StageError::Gap(e)
    }
}

fn describe_at(results: &[CallResult], i: usize) -> String {
    results
        .get(i)
        .map_or_else(|| "was not run".into(), CallResult::describe)
}

/// The outcome of one held-out stage.
struct Stage {
    report: StageReport,
    reason: Option<FailureReason>,
    deterministic: Option<bool>,
    results: Vec<CallResult>,
    instances: Vec<Vec<Value>>,
    truths: Option<Truths>,
}

fn run_stage(
    sandbox: &Sandbox,
    code: &str,
    gap: &Gap,
    config: &GateConfig,
    seed: u64,
    fail_reason: FailureReason,
    twice: bool,
) -> Result<Stage, StageError> {
    let n = config.n;
    let instances = gap.instances(n, seed)?;
    let n_distinct = distinct(&instances);
    let mut report = StageReport {
        seed,
        n,
        passed: 0,
        distinct: n_distinct,
        first_fail: None,
        instances_hash: hash_value(&instances_value(&instances)),
        outputs_hash: hash_value(&Value::List(Vec::new())),
        note: None,
    };
    let fail = |mut report: StageReport, note: String| Stage {
        report: {
            report.note = Some(note);
            report
        },
        reason: Some(fail_reason),
        deterministic: None,
        results: Vec::new(),
        instances: Vec::new(),
        truths: None,
    };
    if n == 0 {
        return Ok(fail(report, "n = 0 never passes".into()));
    }
    let floor = ((config.novelty_fraction.clamp(0.0, 1.0) * n as f64).ceil() as usize).max(1);
    if n_distinct < floor {
        return Ok(fail(
            report,
            format!("only {n_distinct} distinct of {n} instances (floor {floor})"),
        ));
    }
    let (results, second) = if twice {
        let (a, b) = sandbox.run_twice(code, &gap.entry, &instances, &config.limits)?;
        (a, Some(b))
    } else {
        let rotate = usize::from(seed & 1 == 1);
        (
            sandbox.run_parallel(code, &gap.entry, &instances, &config.limits, rotate)?,
            None,
        )
    };
    report.outputs_hash = outputs_hash(&results);
    let first_failure = |i: usize, got: String| FirstFailure {
        index: i,
        args: instances.get(i).cloned().unwrap_or_default(),
        got,
    };
    // Timeouts first: a program near its limit is refused, not flaky.
    let timeout = results
        .iter()
        .chain(second.iter().flatten())
        .position(CallResult::is_timeout);
    if let Some(pos) = timeout {
        let i = pos % n;
        report.first_fail = Some(first_failure(i, "ran past its time limit".into()));
        return Ok(Stage {
            report,
            reason: Some(FailureReason::Timeout),
            deterministic: None,
            results,
            instances,
            truths: None,
        });
    }
    let mut deterministic = None;
    if let Some(b) = &second {
        let differs = results
            .iter()
            .zip(b)
            .position(|(x, y)| outcome_key(x) != outcome_key(y));
        deterministic = Some(differs.is_none());
        if let Some(i) = differs {
            report.first_fail = Some(first_failure(
                i,
                format!(
                    "two runs differ: {} / {}",
                    describe_at(&results, i),
                    describe_at(b, i)
                ),
            ));
            return Ok(Stage {
                report,
                reason: Some(FailureReason::Nondeterministic),
                deterministic,
                results,
                instances,
                truths: None,
            });
        }
    }
    // All truths of the stage in one batch (one sandbox batch for a program oracle).
    let truths = gap.truths(&instances)?;
    let (passed, first) = judge_all(gap, &instances, &results, &truths)?;
    report.passed = passed;
    let reason = if let Some(i) = first {
        report.first_fail = Some(first_failure(i, describe_at(&results, i)));
        Some(fail_reason)
    } else {
        None
    };
    Ok(Stage {
        report,
        reason,
        deterministic,
        results,
        instances,
        truths: Some(truths),
    })
}

fn finish(mut report: GateReport, started: Instant) -> GateReport {
    report.elapsed = started.elapsed();
    report.passed = report.reason.is_none();
    report
}

/// Runs the whole gate on `candidate` (program text defining `gap.entry`).
pub fn holdout_gate(
    sandbox: &Sandbox,
    candidate: &str,
    gap: &Gap,
    config: &GateConfig,
) -> GateReport {
    let started = Instant::now();
    let mut report = GateReport {
        passed: false,
        reason: None,
        code_hash: hash_bytes(candidate.as_bytes()),
        sample: None,
        gate: None,
        regate: None,
        placebos: Vec::new(),
        deterministic: None,
        feedback: String::new(),
        elapsed: Duration::ZERO,
    };
    match gate_stages(sandbox, candidate, gap, config, &mut report) {
        Ok(()) => {}
        Err(StageError::Sandbox(e)) => {
            report.reason = Some(FailureReason::Unsandboxed);
            report.feedback = e.to_string();
        }
        Err(StageError::Gap(GapError::Unsandboxed(e))) => {
            report.reason = Some(FailureReason::Unsandboxed);
            report.feedback = format!("the gap's trusted code could not run: {e}");
        }
        Err(StageError::Gap(e)) => {
            report.reason = Some(FailureReason::GapUnsound);
            report.feedback = format!("the gap is unsound, not the candidate: {e}");
        }
    }
    finish(report, started)
}

fn gate_stages(
    sandbox: &Sandbox,
    candidate: &str,
    gap: &Gap,
    config: &GateConfig,
    report: &mut GateReport,
) -> Result<(), StageError> {
    // 1. Visible samples.
    let sample_args: Vec<Vec<Value>> = gap.samples.iter().map(|s| s.args.clone()).collect();
    let sample_results = if candidate.trim().is_empty() {
        vec![CallResult::Raised("SyntaxError: no code".into()); sample_args.len()]
    } else {
        sandbox.run_batch_on(0, candidate, &gap.entry, &sample_args, &config.limits)?
    };
    let mut sample = StageReport {
        seed: 0,
        n: sample_args.len(),
        passed: 0,
        distinct: distinct(&sample_args),
        first_fail: None,
        instances_hash: hash_value(&instances_value(&sample_args)),
        outputs_hash: outputs_hash(&sample_results),
        note: None,
    };
    // An oracle gap's samples are judged by their expected values (the oracle was checked to
    // agree with them when the gap was built); a verify gap's by the verify judge.
    let sample_truths = match gap.judge {
        Judge::Oracle(_) | Judge::ProgramOracle(_) => {
            Truths::Expected(gap.samples.iter().map(|s| Ok(s.expected.clone())).collect())
        }
        Judge::Verify(_) | Judge::ProgramVerify(_) => Truths::Verify,
    };
    let (passed, first) = judge_all(gap, &sample_args, &sample_results, &sample_truths)?;
    sample.passed = passed;
    if let Some((i, s)) = first.and_then(|i| gap.samples.get(i).map(|s| (i, s))) {
        let got = describe_at(&sample_results, i);
        report.feedback = format!(
            "visible sample {i}: {}({}) should return {}, your program {got}",
            gap.entry,
            s.args.iter().map(encode).collect::<Vec<_>>().join(", "),
            encode(&s.expected)
        );
        sample.first_fail = Some(FirstFailure {
            index: i,
            args: s.args.clone(),
            got,
        });
        report.reason = Some(if sample_results.iter().any(CallResult::is_timeout) {
            FailureReason::Timeout
        } else {
            FailureReason::SampleFail
        });
        report.sample = Some(sample);
        return Ok(());
    }
    report.sample = Some(sample);

    // 2. Held-out gate at the first seed, every instance twice in two workers.
    let gate = run_stage(
        sandbox,
        candidate,
        gap,
        config,
        config.seed,
        FailureReason::GateFail,
        config.check_determinism,
    )?;
    report.deterministic = gate.deterministic;
    let gate_results = gate.results;
    let gate_instances = gate.instances;
    report.gate = Some(gate.report.clone());
    if let Some(reason) = gate.reason {
        report.reason = Some(reason);
        report.feedback = stage_feedback("held-out", &gap.entry, &gate.report);
        return Ok(());
    }

    // 3. Second seed.
    let regate = run_stage(
        sandbox,
        candidate,
        gap,
        config,
        second_seed(config.seed),
        FailureReason::RegateFail,
        false,
    )?;
    report.regate = Some(regate.report.clone());
    if let Some(reason) = regate.reason {
        report.reason = Some(reason);
        report.feedback = stage_feedback("second-seed", &gap.entry, &regate.report);
        return Ok(());
    }

    // 4. Placebos: all must fail.
    let k = config.placebo_n.min(gate_instances.len()).max(1);
    let instances = &gate_instances[..k.min(gate_instances.len())];
    // The gate stage's truths, reused: the placebos run on its first k instances.
    let truths = match &gate.truths {
        Some(t) => t.prefix(instances.len()),
        None => gap.truths(instances)?,
    };
    let placebo_limits = CallLimits {
        stop_on_timeout: false,
        ..config.limits
    };
    for (name, code) in placebo_programs(gap, &gate_results) {
        let results = sandbox.run_parallel(&code, &gap.entry, instances, &placebo_limits, 0)?;
        let (matched, _) = judge_all(gap, instances, &results, &truths)?;
        report.placebos.push(PlaceboReport {
            name,
            matched,
            n: instances.len(),
            passed: matched == instances.len(),
        });
    }
    let perturbed: Vec<CallResult> = gate_results[..instances.len()]
        .iter()
        .map(|r| match r {
            CallResult::Ok(v) => CallResult::Ok(perturb(v)),
            other => other.clone(),
        })
        .collect();
    let (matched, _) = judge_all(gap, instances, &perturbed, &truths)?;
    report.placebos.push(PlaceboReport {
        name: "perturbed_candidate",
        matched,
        n: instances.len(),
        passed: matched == instances.len(),
    });
    if let Some(p) = report.placebos.iter().find(|p| p.passed) {
        report.reason = Some(FailureReason::PlaceboUnsound);
        report.feedback = format!(
            "placebo {} passed {} of {}: the gap's judge does not discriminate",
            p.name, p.matched, p.n
        );
    }
    Ok(())
}

fn stage_feedback(stage: &str, entry: &str, r: &StageReport) -> String {
    match &r.first_fail {
        Some(f) => format!(
            "{stage} instance {} of {}: {entry}({}) — your program {}",
            f.index,
            r.n,
            f.args.iter().map(encode).collect::<Vec<_>>().join(", "),
            f.got
        ),
        None => format!(
            "{stage} stage failed: {}",
            r.note.as_deref().unwrap_or("no instance passed")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perturbation_keeps_the_type_and_changes_the_value() {
        for v in [
            Value::Bool(true),
            Value::int(i64::MAX),
            Value::float(1e300).unwrap_or(Value::Null),
            Value::float(-0.0).unwrap_or(Value::Null),
            Value::str(""),
            Value::List(vec![]),
            Value::Tuple(vec![Value::int(1)]),
            Value::set([Value::int(1)]),
            Value::map([("a", Value::int(1))]),
        ] {
            let p = perturb(&v);
            assert_ne!(p, v);
            assert_eq!(p.type_name(), v.type_name());
        }
    }

    #[test]
    fn literals_are_python() {
        assert_eq!(python_literal(&Value::Tuple(vec![Value::int(1)])), "(1,)");
        assert_eq!(
            python_literal(&Value::List(vec![Value::int(-5), Value::Null])),
            "[-5, None]"
        );
        assert_eq!(python_literal(&Value::str("a\"é")), "\"a\\\"\\U000000e9\"");
        assert_eq!(second_seed(0x9E37_79B9), 1);
    }

    #[test]
    fn a_gap_needs_samples_an_identifier_and_a_judge_that_agrees() {
        let judge = || Judge::oracle(|a: &[Value]| Ok(a[0].clone()));
        let s = vec![SampleCase {
            args: vec![Value::int(1)],
            expected: Value::int(1),
        }];
        assert!(Gap::new("f", "", "", s.clone(), |_| vec![], judge()).is_ok());
        assert_eq!(
            Gap::new("f", "", "", vec![], |_| vec![], judge()).err(),
            Some(GapError::NoSamples)
        );
        assert!(Gap::new("f x", "", "", s.clone(), |_| vec![], judge()).is_err());
        let wrong = vec![SampleCase {
            args: vec![Value::int(1)],
            expected: Value::Bool(true),
        }];
        assert_eq!(
            Gap::new("f", "", "", wrong, |_| vec![], judge()).err(),
            Some(GapError::JudgeRejectsSample(0))
        );
    }
}
