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

pub mod gapfile;
pub mod rng;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
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

/// Trusted code in the sandbox's Python subset (a gap file's generator, oracle or verify),
/// run in the confined workers: its results are trusted data, but it never runs in this
/// process.
pub struct TrustedProgram {
    /// The full program text (for a generator, with the RNG prelude and the per-instance
    /// wrapper already in place).
    pub code: String,
    /// The function the host calls.
    pub entry: String,
    /// The pool the program runs in.
    pub sandbox: Arc<Sandbox>,
    /// Per-call limits.
    pub limits: CallLimits,
}

impl fmt::Debug for TrustedProgram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrustedProgram")
            .field("entry", &self.entry)
            .field("code_bytes", &self.code.len())
            .finish_non_exhaustive()
    }
}

impl TrustedProgram {
    /// Runs `entry(*args)` for every call, spread over the pool (`rotate` shifts which worker
    /// gets which chunk), and checks that there is one result per call.
    fn run(&self, calls: &[Vec<Value>], rotate: usize) -> Result<Vec<CallResult>, GapError> {
        if calls.is_empty() {
            return Ok(Vec::new());
        }
        let results = self
            .sandbox
            .run_parallel(&self.code, &self.entry, calls, &self.limits, rotate)
            .map_err(|e| GapError::Unsandboxed(e.to_string()))?;
        if results.len() != calls.len() {
            return Err(GapError::Unsandboxed(format!(
                "the sandbox answered {} of {} calls of the gap's {}",
                results.len(),
                calls.len(),
                self.entry
            )));
        }
        Ok(results)
    }
}

/// Where a gap's instances come from.
pub enum Generation {
    /// A native closure over the host's RNG.
    Native(Generator),
    /// A gap file's generator in the sandbox: the host draws one `u64` seed per instance from
    /// its own [`Rng`] and the program's `__nmk_generate_one(seed)` returns the argument list.
    Program(TrustedProgram),
}

/// How a gap judges an output.
pub enum Judge {
    /// The trusted expected value for an instance (an independent algorithm).
    Oracle(OracleFn),
    /// A trusted check of `(instance, output)`, for self-checking outputs.
    Verify(VerifyFn),
    /// A gap file's `oracle(*args)` in the sandbox; all truths of a stage in one batch.
    ProgramOracle(TrustedProgram),
    /// A gap file's `verify(instance, output)` in the sandbox (`instance` is the argument
    /// list); only an exact `True` accepts.
    ProgramVerify(TrustedProgram),
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

/// Why a gap cannot be built, or why its trusted code failed.
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
    /// No confined worker could run the gap's trusted code.
    #[error("the gap's trusted code could not run: {0}")]
    Unsandboxed(String),
    /// The trusted generator raised, overran or crashed on an instance.
    #[error("the generator failed on instance {index}: it {what}")]
    GeneratorFailed {
        /// The instance's position.
        index: usize,
        /// What the generator did.
        what: String,
    },
    /// The trusted generator returned something that is not a list or tuple of arguments.
    #[error(
        "the generator's instance {index} is a {got}, not a list or tuple of positional arguments"
    )]
    GeneratorShape {
        /// The instance's position.
        index: usize,
        /// The type it returned.
        got: &'static str,
    },
    /// A generated instance has a different number of arguments than the samples.
    #[error("the generator's instance {index} has {got} arguments; the samples have {want}")]
    GeneratorArity {
        /// The instance's position.
        index: usize,
        /// Its argument count.
        got: usize,
        /// The samples' argument count.
        want: usize,
    },
    /// Two draws of the same seed, in two workers, differ.
    #[error("the generator is not deterministic: two draws of instance {index} differ")]
    GeneratorNondeterministic {
        /// The first differing instance.
        index: usize,
    },
    /// The generator yields too few distinct instances.
    #[error(
        "the generator yields only {distinct} distinct instances in {draws} draws (more than {floor} required)"
    )]
    TooFewDistinct {
        /// Distinct instances seen.
        distinct: usize,
        /// Draws made.
        draws: usize,
        /// The count that must be exceeded.
        floor: usize,
    },
    /// The trusted oracle raised, overran or crashed on an instance.
    #[error("the oracle failed on instance {index}: it {what}")]
    OracleFailed {
        /// The instance's position.
        index: usize,
        /// What the oracle did.
        what: String,
    },
}

/// What the gap sanity check saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SanityReport {
    /// Generator draws made.
    pub draws: usize,
    /// Distinct instances among them.
    pub distinct: usize,
}

/// Draws the sanity check makes, and the distinct count it must exceed (spec §4.1).
pub const SANITY_DRAWS: usize = 200;
/// See [`SANITY_DRAWS`].
pub const SANITY_MIN_DISTINCT: usize = 50;

/// What the judge needs for a list of instances, computed in one batch.
enum Truths {
    /// The oracle's value (or a native oracle's error, which is a miss) per instance.
    Expected(Vec<Result<Value, String>>),
    /// A verify judge: nothing to precompute.
    Verify,
}

impl Truths {
    fn prefix(&self, k: usize) -> Truths {
        match self {
            Truths::Expected(t) => Truths::Expected(t.iter().take(k).cloned().collect()),
            Truths::Verify => Truths::Verify,
        }
    }
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
    generate: Generation,
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
            generate: Generation::Native(Box::new(generate)),
            judge,
        };
        for (i, s) in gap.samples.iter().enumerate() {
            if !gap.native_accepts(&s.args, &s.expected) {
                return Err(GapError::JudgeRejectsSample(i));
            }
        }
        Ok(gap)
    }

    /// Builds a gap whose generator and judge are trusted programs in the sandbox (a gap
    /// file). Nothing runs here: call [`Gap::sanity_check`] before using it.
    pub fn from_programs(
        entry: impl Into<String>,
        signature: impl Into<String>,
        description: impl Into<String>,
        samples: Vec<SampleCase>,
        generate: TrustedProgram,
        judge: Judge,
    ) -> Result<Gap, GapError> {
        let entry = entry.into();
        if !is_identifier(&entry) {
            return Err(GapError::BadEntry(entry));
        }
        if samples.is_empty() {
            return Err(GapError::NoSamples);
        }
        Ok(Gap {
            entry,
            signature: signature.into(),
            description: description.into(),
            samples,
            n: 2000,
            seed: 0,
            source: String::new(),
            generate: Generation::Program(generate),
            judge,
        })
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

    /// The `n` instances of `seed`. A program generator runs in one parallel sandbox batch;
    /// it fails if the generator raises, overruns, or returns anything but a list or tuple.
    pub fn instances(&self, n: usize, seed: u64) -> Result<Vec<Vec<Value>>, GapError> {
        self.instances_rotated(n, seed, 0)
    }

    /// [`Gap::instances`] with the worker assignment rotated (so a second draw of the same
    /// seed runs each instance in another worker process).
    fn instances_rotated(
        &self,
        n: usize,
        seed: u64,
        rotate: usize,
    ) -> Result<Vec<Vec<Value>>, GapError> {
        let mut rng = Rng::new(seed);
        match &self.generate {
            Generation::Native(g) => Ok((0..n).map(|_| g(&mut rng)).collect()),
            Generation::Program(p) => {
                let calls: Vec<Vec<Value>> =
                    (0..n).map(|_| vec![Value::int(rng.next_u64())]).collect();
                p.run(&calls, rotate)?
                    .into_iter()
                    .enumerate()
                    .map(|(index, r)| match r {
                        CallResult::Ok(Value::List(args) | Value::Tuple(args)) => Ok(args),
                        CallResult::Ok(other) => Err(GapError::GeneratorShape {
                            index,
                            got: other.type_name(),
                        }),
                        other => Err(GapError::GeneratorFailed {
                            index,
                            what: other.describe(),
                        }),
                    })
                    .collect()
            }
        }
    }

    /// The trusted expected value (oracle judges only; a program oracle makes one sandbox
    /// call).
    pub fn expected(&self, args: &[Value]) -> Option<Result<Value, String>> {
        match &self.judge {
            Judge::Oracle(f) => Some(f(args)),
            Judge::ProgramOracle(_) => Some(match self.truths(&[args.to_vec()]) {
                Ok(Truths::Expected(mut t)) => t.pop().unwrap_or_else(|| Err("no truth".into())),
                Ok(Truths::Verify) => Err("no oracle".into()),
                Err(e) => Err(e.to_string()),
            }),
            Judge::Verify(_) | Judge::ProgramVerify(_) => None,
        }
    }

    /// Whether a native judge accepts `got` (program judges are checked in batches).
    fn native_accepts(&self, args: &[Value], got: &Value) -> bool {
        match &self.judge {
            Judge::Oracle(f) => f(args).is_ok_and(|t| strict_equal(got, &t)),
            Judge::Verify(f) => f(args, got),
            Judge::ProgramOracle(_) | Judge::ProgramVerify(_) => false,
        }
    }

    /// The oracle's values for `instances`, in one batch. A native oracle's error is kept as
    /// a miss (as before gap files); a program oracle that fails on any instance is a gap
    /// error, so the gate fails closed as `gap_unsound`.
    fn truths(&self, instances: &[Vec<Value>]) -> Result<Truths, GapError> {
        match &self.judge {
            Judge::Oracle(f) => Ok(Truths::Expected(instances.iter().map(|a| f(a)).collect())),
            Judge::ProgramOracle(p) => p
                .run(instances, 0)?
                .into_iter()
                .enumerate()
                .map(|(index, r)| match r {
                    CallResult::Ok(v) => Ok(Ok(v)),
                    other => Err(GapError::OracleFailed {
                        index,
                        what: other.describe(),
                    }),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Truths::Expected),
            Judge::Verify(_) | Judge::ProgramVerify(_) => Ok(Truths::Verify),
        }
    }

    /// Which outputs the judge accepts (`None` = the program did not return). A program
    /// verify runs once over all returned outputs; anything but an exact `True` (False, a
    /// non-bool, a raise, a timeout on a hostile output) rejects.
    fn judge_outputs(
        &self,
        instances: &[Vec<Value>],
        outputs: &[Option<&Value>],
        truths: &Truths,
    ) -> Result<Vec<bool>, GapError> {
        let mut accepted = vec![false; outputs.len()];
        match (truths, &self.judge) {
            (Truths::Expected(t), _) => {
                for (i, out) in outputs.iter().enumerate() {
                    accepted[i] =
                        matches!((out, t.get(i)), (Some(v), Some(Ok(t))) if strict_equal(v, t));
                }
            }
            (Truths::Verify, Judge::Verify(f)) => {
                for (i, out) in outputs.iter().enumerate() {
                    accepted[i] = match (out, instances.get(i)) {
                        (Some(v), Some(args)) => f(args, v),
                        _ => false,
                    };
                }
            }
            (Truths::Verify, Judge::ProgramVerify(p)) => {
                let mut which = Vec::new();
                let mut calls = Vec::new();
                for (i, out) in outputs.iter().enumerate() {
                    if let (Some(v), Some(args)) = (out, instances.get(i)) {
                        which.push(i);
                        calls.push(vec![Value::List(args.clone()), (*v).clone()]);
                    }
                }
                let results = p.run(&calls, 0)?;
                for (i, r) in which.into_iter().zip(results) {
                    accepted[i] = matches!(r, CallResult::Ok(Value::Bool(true)));
                }
            }
            // A verify truth with an oracle judge cannot be built; reject everything.
            (Truths::Verify, _) => {}
        }
        Ok(accepted)
    }

    /// The gap sanity check (spec §4.1), run before a gap file's gap is used: the judge
    /// accepts every visible sample; the generator is deterministic (two draws of
    /// [`SANITY_DRAWS`] instances from the gap's seed, each instance in two different worker
    /// processes, agree), returns lists of as many arguments as the samples have, and yields
    /// more than [`SANITY_MIN_DISTINCT`] distinct instances; the oracle answers every draw.
    pub fn sanity_check(&self) -> Result<SanityReport, GapError> {
        let sample_args: Vec<Vec<Value>> = self.samples.iter().map(|s| s.args.clone()).collect();
        let truths = self.truths(&sample_args)?;
        let expected: Vec<Option<&Value>> =
            self.samples.iter().map(|s| Some(&s.expected)).collect();
        let accepted = self.judge_outputs(&sample_args, &expected, &truths)?;
        if let Some(i) = accepted.iter().position(|ok| !ok) {
            return Err(GapError::JudgeRejectsSample(i));
        }
        let a = self.instances_rotated(SANITY_DRAWS, self.seed, 0)?;
        // The rotation puts each instance in the other worker; a one-worker pool gets a fresh
        // worker process instead.
        if let Generation::Program(p) = &self.generate
            && p.sandbox.pool_size() == 1
        {
            p.sandbox.replace(0);
        }
        let b = self.instances_rotated(SANITY_DRAWS, self.seed, 1)?;
        if let Some(index) = first_difference(&a, &b) {
            return Err(GapError::GeneratorNondeterministic { index });
        }
        let arity = self.samples.first().map(|s| s.args.len());
        if let Some(want) = arity
            && self.samples.iter().all(|s| s.args.len() == want)
            && let Some(index) = a.iter().position(|x| x.len() != want)
        {
            return Err(GapError::GeneratorArity {
                index,
                got: a.get(index).map_or(0, Vec::len),
                want,
            });
        }
        let n_distinct = distinct(&a);
        if n_distinct <= SANITY_MIN_DISTINCT {
            return Err(GapError::TooFewDistinct {
                distinct: n_distinct,
                draws: SANITY_DRAWS,
                floor: SANITY_MIN_DISTINCT,
            });
        }
        if let Truths::Expected(t) = self.truths(&a)?
            && let Some(index) = t.iter().position(Result::is_err)
        {
            let what = match t.get(index) {
                Some(Err(e)) => format!("raised {e}"),
                _ => "failed".into(),
            };
            return Err(GapError::OracleFailed { index, what });
        }
        Ok(SanityReport {
            draws: SANITY_DRAWS,
            distinct: n_distinct,
        })
    }
}

/// The first index at which two instance lists differ (by canonical encoding), if any.
pub fn first_difference(a: &[Vec<Value>], b: &[Vec<Value>]) -> Option<usize> {
    let differs = a
        .iter()
        .zip(b)
        .position(|(x, y)| encode(&Value::List(x.clone())) != encode(&Value::List(y.clone())));
    differs.or_else(|| (a.len() != b.len()).then(|| a.len().min(b.len())))
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
