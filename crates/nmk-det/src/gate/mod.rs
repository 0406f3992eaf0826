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
//! Feedback is leak-free: for a held-out instance it names the instance and what the program
//! itself returned or raised, never the oracle's expected value.

pub mod rng;

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant};

pub use rng::Rng;

use crate::canonical::encode;
use crate::hash::{ContentHash, hash_bytes, hash_value};
use crate::oracles::strict_equal;
use crate::sandbox::{CallLimits, CallResult, Sandbox, SandboxError};
use crate::value::{Integer, Value};

/// A trusted generator: draws one instance (the argument list) from the host's RNG.
pub type Generator = Box<dyn Fn(&mut Rng) -> Vec<Value> + Send + Sync>;

/// A trusted oracle: the expected value for an instance.
pub type OracleFn = Box<dyn Fn(&[Value]) -> Result<Value, String> + Send + Sync>;

/// A trusted check of `(instance, output)`.
pub type VerifyFn = Box<dyn Fn(&[Value], &Value) -> bool + Send + Sync>;

/// How a gap judges an output.
pub enum Judge {
    /// The trusted expected value for an instance (an independent algorithm).
    Oracle(OracleFn),
    /// A trusted check of `(instance, output)`, for self-checking outputs.
    Verify(VerifyFn),
}

impl Judge {
    /// An oracle judge.
    pub fn oracle(f: impl Fn(&[Value]) -> Result<Value, String> + Send + Sync + 'static) -> Judge {
        Judge::Oracle(Box::new(f))
    }

    /// A verify judge.
    pub fn verify(f: impl Fn(&[Value], &Value) -> bool + Send + Sync + 'static) -> Judge {
        Judge::Verify(Box::new(f))
    }
}

/// A visible example: arguments and the expected result.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleCase {
    /// Positional arguments.
    pub args: Vec<Value>,
    /// The expected result.
    pub expected: Value,
}

/// Why a gap cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GapError {
    /// The entry is not a plain identifier.
    #[error("entry {0:?} is not an identifier")]
    BadEntry(String),
    /// A gap needs at least one visible sample.
    #[error("a gap needs at least one sample case")]
    NoSamples,
    /// The trusted judge rejects one of the gap's own samples.
    #[error("the judge rejects sample {0}")]
    JudgeRejectsSample(usize),
}

/// What a program must do, with the trusted means to check it.
pub struct Gap {
    /// The function name the program must define.
    pub entry: String,
    /// Its signature, for the prompt (`gcd(a: int, b: int) -> int`).
    pub signature: String,
    /// What it must do, for the prompt.
    pub description: String,
    /// Visible examples.
    pub samples: Vec<SampleCase>,
    /// Held-out instances the gate draws by default.
    pub n: usize,
    /// The gate's default first seed.
    pub seed: u64,
    /// Where the trusted generator and judge come from (a gap file's text, or a built-in's
    /// name and version): part of [`Gap::spec_hash`], so a changed oracle is a different gap.
    source: String,
    generate: Generator,
    judge: Judge,
}

impl fmt::Debug for Gap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gap")
            .field("entry", &self.entry)
            .field("signature", &self.signature)
            .field("samples", &self.samples.len())
            .finish_non_exhaustive()
    }
}

/// Whether `name` is a plain ASCII identifier.
pub fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

impl Gap {
    /// Builds a gap; the entry must be an identifier, there must be samples, and the judge must
    /// accept every sample.
    pub fn new(
        entry: impl Into<String>,
        signature: impl Into<String>,
        description: impl Into<String>,
        samples: Vec<SampleCase>,
        generate: impl Fn(&mut Rng) -> Vec<Value> + Send + Sync + 'static,
        judge: Judge,
    ) -> Result<Gap, GapError> {
        let entry = entry.into();
        if !is_identifier(&entry) {
            return Err(GapError::BadEntry(entry));
        }
        if samples.is_empty() {
            return Err(GapError::NoSamples);
        }
        let gap = Gap {
            entry,
            signature: signature.into(),
            description: description.into(),
            samples,
            n: 2000,
            seed: 0,
            source: String::new(),
            generate: Box::new(generate),
            judge,
        };
        for (i, s) in gap.samples.iter().enumerate() {
            if !gap.accepts(&s.args, &s.expected, None) {
                return Err(GapError::JudgeRejectsSample(i));
            }
        }
        Ok(gap)
    }

    /// Sets the default instance count and seed.
    pub fn with_n_seed(mut self, n: usize, seed: u64) -> Gap {
        self.n = n;
        self.seed = seed;
        self
    }

    /// Names where the trusted generator and judge come from (a gap file's full text, or
    /// `builtin:<name>:<version>`).
    pub fn with_source(mut self, source: impl Into<String>) -> Gap {
        self.source = source.into();
        self
    }

    /// The source set by [`Gap::with_source`].
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The gap's identity: entry, signature, description, samples, default n and seed, and the
    /// source of its trusted code. A learned primitive is bound to this hash.
    pub fn spec_hash(&self) -> ContentHash {
        let samples = self
            .samples
            .iter()
            .map(|s| Value::List(vec![Value::Tuple(s.args.clone()), s.expected.clone()]))
            .collect();
        hash_value(&Value::List(vec![
            Value::str("nmk-gap-v1"),
            Value::str(self.entry.clone()),
            Value::str(self.signature.clone()),
            Value::str(self.description.clone()),
            Value::List(samples),
            Value::int(self.n as u64),
            Value::int(self.seed),
            Value::str(self.source.clone()),
        ]))
    }

    /// The `n` instances of `seed`.
    pub fn instances(&self, n: usize, seed: u64) -> Vec<Vec<Value>> {
        let mut rng = Rng::new(seed);
        (0..n).map(|_| (self.generate)(&mut rng)).collect()
    }

    /// The trusted expected value (oracle judges only).
    pub fn expected(&self, args: &[Value]) -> Option<Result<Value, String>> {
        match &self.judge {
            Judge::Oracle(f) => Some(f(args)),
            Judge::Verify(_) => None,
        }
    }

    fn accepts(&self, args: &[Value], got: &Value, truth: Option<&Result<Value, String>>) -> bool {
        match &self.judge {
            Judge::Oracle(f) => match truth {
                Some(Ok(t)) => strict_equal(got, t),
                Some(Err(_)) => false,
                None => f(args).is_ok_and(|t| strict_equal(got, &t)),
            },
            Judge::Verify(f) => f(args, got),
        }
    }
}

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

fn distinct(instances: &[Vec<Value>]) -> usize {
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
    truths: Option<&[Result<Value, String>]>,
) -> (usize, Option<usize>) {
    let mut passed = 0;
    let mut first = None;
    for (i, (args, r)) in instances.iter().zip(results).enumerate() {
        let ok = match r {
            CallResult::Ok(v) => gap.accepts(args, v, truths.and_then(|t| t.get(i))),
            _ => false,
        };
        if ok {
            passed += 1;
        } else if first.is_none() {
            first = Some(i);
        }
    }
    if results.len() < instances.len() && first.is_none() {
        first = Some(results.len());
    }
    (passed, first)
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
}

fn run_stage(
    sandbox: &Sandbox,
    code: &str,
    gap: &Gap,
    config: &GateConfig,
    seed: u64,
    fail_reason: FailureReason,
    twice: bool,
) -> Result<Stage, SandboxError> {
    let n = config.n;
    let instances = gap.instances(n, seed);
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
            });
        }
    }
    let truths: Option<Vec<Result<Value, String>>> = match gap.judge {
        Judge::Oracle(_) => Some(
            instances
                .iter()
                .map(|a| gap.expected(a).unwrap_or_else(|| Err("no oracle".into())))
                .collect(),
        ),
        Judge::Verify(_) => None,
    };
    let (passed, first) = judge_all(gap, &instances, &results, truths.as_deref());
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
    })
}

/// A Python literal for a value (used to build constant placebos).
pub fn python_literal(v: &Value) -> String {
    let seq = |items: &[Value]| {
        items
            .iter()
            .map(python_literal)
            .collect::<Vec<_>>()
            .join(", ")
    };
    match v {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Int(i) => format!("({i})"),
        Value::Float(f) => format!("({:?})", f.get()),
        Value::Str(s) => {
            let mut out = String::from("\"");
            for c in s.chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    ' '..='~' => out.push(c),
                    c => out.push_str(&format!("\\U{:08x}", u32::from(c))),
                }
            }
            out.push('"');
            out
        }
        Value::Bytes(b) => {
            let mut out = String::from("b\"");
            for byte in b {
                out.push_str(&format!("\\x{byte:02x}"));
            }
            out.push('"');
            out
        }
        Value::List(items) => format!("[{}]", seq(items)),
        Value::Tuple(items) if items.len() == 1 => format!("({},)", seq(items)),
        Value::Tuple(items) => format!("({})", seq(items)),
        Value::Set(items) if items.is_empty() => "set()".into(),
        Value::Set(items) => format!("{{{}}}", seq(items)),
        Value::Map(m) => format!(
            "{{{}}}",
            m.iter()
                .map(|(k, v)| format!(
                    "{}: {}",
                    python_literal(&Value::str(k.clone())),
                    python_literal(v)
                ))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Value::Dict(pairs) => format!(
            "{{{}}}",
            pairs
                .iter()
                .map(|(k, v)| format!("{}: {}", python_literal(k), python_literal(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// The same type, a different value: what the "perturbed candidate" placebo returns.
pub fn perturb(v: &Value) -> Value {
    match v {
        Value::Null => Value::int(0),
        Value::Bool(b) => Value::Bool(!b),
        Value::Int(Integer::Small(x)) => Value::int(x.checked_add(1).unwrap_or(x - 1)),
        Value::Int(Integer::Big(_)) => Value::int(0),
        Value::Float(f) => {
            let x = f.get();
            let bits = x.to_bits();
            let up = f64::from_bits(bits.wrapping_add(1));
            Value::float(up)
                .or_else(|| Value::float(f64::from_bits(bits.wrapping_sub(1))))
                .unwrap_or(Value::Null)
        }
        Value::Str(s) => Value::Str(format!("{s}\u{0}")),
        Value::Bytes(b) => {
            let mut b = b.clone();
            b.push(0);
            Value::Bytes(b)
        }
        Value::List(items) => {
            let mut items = items.clone();
            items.push(Value::Null);
            Value::List(items)
        }
        Value::Tuple(items) => {
            let mut items = items.clone();
            items.push(Value::Null);
            Value::Tuple(items)
        }
        Value::Set(items) => {
            let mut items = items.clone();
            items.push(Value::str("\u{0}perturbed"));
            Value::set(items)
        }
        Value::Map(m) => {
            let mut m = m.clone();
            m.insert("\u{0}perturbed".into(), Value::Null);
            Value::Map(m)
        }
        Value::Dict(pairs) => {
            let mut pairs = pairs.clone();
            pairs.push((Value::str("\u{0}perturbed"), Value::Null));
            Value::dict(pairs)
        }
    }
}

fn most_frequent(results: &[CallResult]) -> Option<Value> {
    let mut counts: HashMap<String, (usize, &Value)> = HashMap::new();
    for v in results.iter().filter_map(CallResult::value) {
        counts.entry(encode(v)).or_insert((0, v)).0 += 1;
    }
    counts
        .into_iter()
        .max_by(|a, b| a.1.0.cmp(&b.1.0).then_with(|| b.0.cmp(&a.0)))
        .map(|(_, (_, v))| v.clone())
}

/// The placebo programs run in the sandbox: (name, code).
fn placebo_programs(gap: &Gap, gate_results: &[CallResult]) -> Vec<(&'static str, String)> {
    let e = &gap.entry;
    let mut out = vec![
        (
            "constant_none",
            format!("def {e}(*args):\n    return None\n"),
        ),
        (
            "echo_first_argument",
            format!("def {e}(*args):\n    return args[0] if args else None\n"),
        ),
    ];
    if let Some(v) = most_frequent(gate_results) {
        out.push((
            "constant_most_frequent_output",
            format!("def {e}(*args):\n    return {}\n", python_literal(&v)),
        ));
    }
    let cases = gap
        .samples
        .iter()
        .map(|s| {
            format!(
                "({}, {})",
                python_literal(&Value::Tuple(s.args.clone())),
                python_literal(&s.expected)
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    out.push((
        "sample_memoriser",
        format!(
            "def {e}(*args):\n    for a, r in [{cases}]:\n        if a == args:\n            return r\n    return None\n"
        ),
    ));
    out
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
        Err(e) => {
            report.reason = Some(FailureReason::Unsandboxed);
            report.feedback = e.to_string();
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
) -> Result<(), SandboxError> {
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
    let mut first = None;
    for (i, (s, r)) in gap.samples.iter().zip(&sample_results).enumerate() {
        let ok = r.value().is_some_and(|v| gap.accepts(&s.args, v, None))
            && r.value().is_some_and(|v| {
                strict_equal(v, &s.expected) || matches!(gap.judge, Judge::Verify(_))
            });
        if ok {
            sample.passed += 1;
        } else if first.is_none() {
            first = Some(i);
        }
    }
    if let Some(i) = first {
        let s = &gap.samples[i];
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
    let truths: Option<Vec<Result<Value, String>>> = match gap.judge {
        Judge::Oracle(_) => Some(
            instances
                .iter()
                .map(|a| gap.expected(a).unwrap_or_else(|| Err("no oracle".into())))
                .collect(),
        ),
        Judge::Verify(_) => None,
    };
    let placebo_limits = CallLimits {
        stop_on_timeout: false,
        ..config.limits
    };
    for (name, code) in placebo_programs(gap, &gate_results) {
        let results = sandbox.run_parallel(&code, &gap.entry, instances, &placebo_limits, 0)?;
        let (matched, _) = judge_all(gap, instances, &results, truths.as_deref());
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
    let (matched, _) = judge_all(gap, instances, &perturbed, truths.as_deref());
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
        assert_eq!(python_literal(&Value::Tuple(vec![Value::int(1)])), "((1),)");
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
