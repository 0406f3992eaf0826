//! What a program must do: [`Gap`], its trusted generator and [`Judge`] (native closures or
//! [`TrustedProgram`]s run in the sandbox), its visible samples, and the gap sanity check.

use std::fmt;
use std::sync::Arc;

use super::{Rng, distinct};
use crate::canonical::encode;
use crate::hash::{ContentHash, hash_value};
use crate::oracles::strict_equal;
use crate::sandbox::{CallLimits, CallResult, Sandbox};
use crate::value::Value;

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
pub(crate) enum Truths {
    /// The oracle's value (or a native oracle's error, which is a miss) per instance.
    Expected(Vec<Result<Value, String>>),
    /// A verify judge: nothing to precompute.
    Verify,
}

impl Truths {
    pub(super) fn prefix(&self, k: usize) -> Truths {
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
    pub(super) judge: Judge,
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
    pub(super) fn truths(&self, instances: &[Vec<Value>]) -> Result<Truths, GapError> {
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
    pub(super) fn judge_outputs(
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
