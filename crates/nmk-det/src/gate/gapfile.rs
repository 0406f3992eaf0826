//! Gap files: a gap written as TOML, with its trusted generator and oracle (or verify) in the
//! sandbox's Python subset, so anyone can write a gap without Rust. The format, the RNG the
//! generator gets and the sanity-check rules are in `docs/gap-files.md`.
//!
//! ```toml
//! entry = "gcd"
//! signature = "gcd(a: int, b: int) -> int"
//! description = "Return the greatest common divisor of two positive integers."
//! n = 2000
//! seed = 7
//! generator = '''
//! def generate(rng):
//!     return [rng.randint(1, 10**9), rng.randint(1, 10**9)]
//! '''
//! oracle = '''
//! def oracle(a, b):
//!     ...
//! '''
//! [[samples]]
//! args = [12, 18]
//! expected = 6
//! ```
//!
//! The trusted code never runs in this process: [`GapFile::build`] wraps it into
//! [`TrustedProgram`]s that run in the confined workers of the given [`Sandbox`], then runs
//! the gap sanity check ([`Gap::sanity_check`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::canonical::decode;
use crate::sandbox::{CallLimits, Sandbox};
use crate::value::Value;

use super::{Gap, GapError, GateConfig, Judge, SampleCase, TrustedProgram, is_identifier};

/// The largest gap file accepted, in bytes.
pub const MAX_FILE_BYTES: usize = 1 << 20;
/// The largest generator, oracle or verify program, in bytes.
pub const MAX_CODE_BYTES: usize = 64 << 10;
/// The largest entry, signature or description, in bytes.
pub const MAX_TEXT_BYTES: usize = 16 << 10;
/// The most visible samples.
pub const MAX_SAMPLES: usize = 100;
/// The largest `n`.
pub const MAX_N: usize = 1_000_000;
/// The default `n`.
pub const DEFAULT_N: usize = 2000;

/// The RNG class and helpers prepended to every generator (`NmkRng`, SplitMix64).
pub const RNG_PRELUDE: &str = include_str!("prelude.py");

/// The function the host calls once per instance with that instance's seed.
pub const GENERATE_ENTRY: &str = "__nmk_generate_one";

/// Per-call limits of trusted code: more generous than a candidate's (the oracle may be the
/// slow, obviously-correct algorithm), still bounded so a broken gap fails instead of hanging.
/// A generator or oracle batch stops at its first timeout (one failure already makes the gap
/// unsound); a verify batch does not (a timeout there rejects one hostile output, not the gap).
pub fn trusted_limits(stop_on_timeout: bool) -> CallLimits {
    CallLimits {
        per_call: Duration::from_secs(2),
        memory: 512 << 20,
        recursion: 1000,
        batch: None,
        stop_on_timeout,
    }
}

const TOP_KEYS: &[&str] = &[
    "entry",
    "signature",
    "description",
    "n",
    "seed",
    "novelty",
    "samples",
    "generator",
    "oracle",
    "verify",
];

const SAMPLE_KEYS: &[&str] = &["args", "expected", "args_canonical", "expected_canonical"];

/// Why a gap file was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GapFileError {
    /// The file could not be read.
    #[error("{path}: cannot read: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        error: String,
    },
    /// An error in a named file.
    #[error("{path}: {error}")]
    InFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        error: Box<GapFileError>,
    },
    /// The file is over [`MAX_FILE_BYTES`].
    #[error("the gap file is {size} bytes, over the {max}-byte cap")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The cap.
        max: usize,
    },
    /// The text is not TOML.
    #[error("not valid TOML: {0}")]
    Toml(String),
    /// A key the format does not know (a typo, or a top-level key placed after `[[samples]]`).
    #[error("unknown key `{key}` in {place}{hint}")]
    UnknownKey {
        /// Where (`the gap file`, `sample 2`).
        place: String,
        /// The key.
        key: String,
        /// A hint, or empty.
        hint: String,
    },
    /// A required key is missing.
    #[error("missing required key `{0}`")]
    Missing(String),
    /// A key has the wrong type or an out-of-range value.
    #[error("`{key}` {why}")]
    BadValue {
        /// The key.
        key: String,
        /// What is wrong.
        why: String,
    },
    /// The entry is not a plain identifier, or is reserved.
    #[error("entry {0:?} is not a plain identifier (or starts with the reserved `__nmk`)")]
    BadEntry(String),
    /// A sample is malformed.
    #[error("sample {index}: {why}")]
    BadSample {
        /// Its position.
        index: usize,
        /// What is wrong.
        why: String,
    },
    /// A program field does not define its function.
    #[error("`{field}` must define `def {name}(...)`")]
    MissingFunction {
        /// The field (`generator`, `oracle`, `verify`).
        field: &'static str,
        /// The function it must define.
        name: &'static str,
    },
    /// Neither or both of `oracle` and `verify`.
    #[error("exactly one of `oracle` and `verify` is required")]
    Judge,
    /// The gap failed its sanity check (or its trusted code could not run).
    #[error("gap `{entry}` is unsound: {error}")]
    Unsound {
        /// The gap's entry.
        entry: String,
        /// What the sanity check found.
        error: GapError,
    },
}

impl GapFileError {
    /// The sanity-check error, if this is one (looking through [`GapFileError::InFile`]).
    pub fn gap_error(&self) -> Option<&GapError> {
        match self {
            GapFileError::Unsound { error, .. } => Some(error),
            GapFileError::InFile { error, .. } => error.gap_error(),
            _ => None,
        }
    }
}

/// The judge a gap file names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JudgeSource {
    /// `oracle = '''def oracle(*args): ...'''`: the expected value.
    Oracle(String),
    /// `verify = '''def verify(instance, output): ...'''`: `True` accepts.
    Verify(String),
}

/// A parsed gap file (nothing has run yet; [`GapFile::build`] runs the sanity check).
#[derive(Debug, Clone, PartialEq)]
pub struct GapFile {
    /// The function the program must define.
    pub entry: String,
    /// Its signature, Python-style.
    pub signature: String,
    /// What it must do.
    pub description: String,
    /// Held-out instances per seed (default 2000).
    pub n: usize,
    /// The first seed (default 0).
    pub seed: u64,
    /// The novelty fraction for the gate, if the file sets one.
    pub novelty: Option<f64>,
    /// The visible samples.
    pub samples: Vec<SampleCase>,
    /// The generator program (defines `generate(rng)`).
    pub generator: String,
    /// The oracle or verify program.
    pub judge: JudgeSource,
    /// The file's full text (the gap's source, part of its spec hash).
    pub source: String,
}

impl GapFile {
    /// Parses a gap file's text. Checks the format only; nothing runs.
    pub fn parse(text: &str) -> Result<GapFile, GapFileError> {
        if text.len() > MAX_FILE_BYTES {
            return Err(GapFileError::TooLarge {
                size: text.len(),
                max: MAX_FILE_BYTES,
            });
        }
        let table: toml::Table =
            toml::from_str(text).map_err(|e| GapFileError::Toml(e.to_string()))?;
        for key in table.keys() {
            if !TOP_KEYS.contains(&key.as_str()) {
                return Err(GapFileError::UnknownKey {
                    place: "the gap file".into(),
                    key: key.clone(),
                    hint: suggest(key, TOP_KEYS),
                });
            }
        }
        let entry = text_field(&table, "entry", true)?;
        if !is_identifier(&entry) || entry.starts_with("__nmk") {
            return Err(GapFileError::BadEntry(entry));
        }
        let signature = text_field(&table, "signature", true)?;
        let description = text_field(&table, "description", true)?;
        let n = match table.get("n") {
            None => DEFAULT_N,
            Some(toml::Value::Integer(i)) => usize::try_from(*i)
                .ok()
                .filter(|n| (1..=MAX_N).contains(n))
                .ok_or_else(|| bad("n", format!("must be in 1..={MAX_N}, not {i}")))?,
            Some(_) => return Err(bad("n", "must be an integer".into())),
        };
        let seed = match table.get("seed") {
            None => 0,
            Some(toml::Value::Integer(i)) => u64::try_from(*i)
                .map_err(|_| bad("seed", format!("must be a non-negative integer, not {i}")))?,
            Some(_) => return Err(bad("seed", "must be an integer".into())),
        };
        let novelty = match table.get("novelty") {
            None => None,
            Some(toml::Value::Float(f)) if (0.0..=1.0).contains(f) => Some(*f),
            Some(toml::Value::Integer(i @ (0 | 1))) => Some(*i as f64),
            Some(_) => return Err(bad("novelty", "must be a number in [0, 1]".into())),
        };
        let generator = code_field(&table, "generator", "generate")?;
        let judge = match (table.contains_key("oracle"), table.contains_key("verify")) {
            (true, false) => JudgeSource::Oracle(code_field(&table, "oracle", "oracle")?),
            (false, true) => JudgeSource::Verify(code_field(&table, "verify", "verify")?),
            _ => return Err(GapFileError::Judge),
        };
        let samples = match table.get("samples") {
            None => return Err(GapFileError::Missing("samples".into())),
            Some(toml::Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, item)| parse_sample(i, item))
                .collect::<Result<Vec<_>, _>>()?,
            Some(_) => {
                return Err(bad(
                    "samples",
                    "must be an array of tables ([[samples]])".into(),
                ));
            }
        };
        if samples.is_empty() {
            return Err(bad("samples", "needs at least one sample".into()));
        }
        if samples.len() > MAX_SAMPLES {
            return Err(bad(
                "samples",
                format!(
                    "has {} entries, over the cap of {MAX_SAMPLES}",
                    samples.len()
                ),
            ));
        }
        Ok(GapFile {
            entry,
            signature,
            description,
            n,
            seed,
            novelty,
            samples,
            generator,
            judge,
            source: text.to_owned(),
        })
    }

    /// Reads and parses a gap file; every error names the path.
    pub fn read(path: &Path) -> Result<GapFile, GapFileError> {
        let in_file = |error: GapFileError| GapFileError::InFile {
            path: path.to_owned(),
            error: Box::new(error),
        };
        // Check the size before reading, so a huge file is not loaded.
        let meta = std::fs::metadata(path).map_err(|e| GapFileError::Io {
            path: path.to_owned(),
            error: e.to_string(),
        })?;
        if meta.len() > MAX_FILE_BYTES as u64 {
            return Err(in_file(GapFileError::TooLarge {
                size: usize::try_from(meta.len()).unwrap_or(usize::MAX),
                max: MAX_FILE_BYTES,
            }));
        }
        let text = std::fs::read_to_string(path).map_err(|e| GapFileError::Io {
            path: path.to_owned(),
            error: e.to_string(),
        })?;
        GapFile::parse(&text).map_err(in_file)
    }

    /// The generator program as it runs in the sandbox: the RNG prelude, the file's
    /// generator, and the per-instance wrapper the host calls.
    pub fn generator_program(&self) -> String {
        format!(
            "{RNG_PRELUDE}\n\n{}\n\n\ndef {GENERATE_ENTRY}(seed):\n    return generate(NmkRng(seed))\n",
            self.generator
        )
    }

    /// Builds the gap (its trusted code bound to `sandbox`) and runs the gap sanity check
    /// ([`Gap::sanity_check`]); the gap's source is the file's full text, its n and seed the
    /// file's.
    pub fn build(&self, sandbox: Arc<Sandbox>) -> Result<Gap, GapFileError> {
        let unsound = |error: GapError| GapFileError::Unsound {
            entry: self.entry.clone(),
            error,
        };
        let program = |code: String, entry: &str, stop: bool| TrustedProgram {
            code,
            entry: entry.to_owned(),
            sandbox: sandbox.clone(),
            limits: trusted_limits(stop),
        };
        let judge = match &self.judge {
            JudgeSource::Oracle(code) => {
                Judge::ProgramOracle(program(code.clone(), "oracle", true))
            }
            JudgeSource::Verify(code) => {
                Judge::ProgramVerify(program(code.clone(), "verify", false))
            }
        };
        let gap = Gap::from_programs(
            self.entry.clone(),
            self.signature.clone(),
            self.description.clone(),
            self.samples.clone(),
            program(self.generator_program(), GENERATE_ENTRY, true),
            judge,
        )
        .map_err(unsound)?
        .with_n_seed(self.n, self.seed)
        .with_source(self.source.clone());
        gap.sanity_check().map_err(unsound)?;
        Ok(gap)
    }

    /// The default gate settings with this file's n, seed and (if set) novelty fraction.
    pub fn gate_config(&self) -> GateConfig {
        let mut c = GateConfig {
            n: self.n,
            seed: self.seed,
            ..GateConfig::default()
        };
        if let Some(f) = self.novelty {
            c.novelty_fraction = f;
        }
        c
    }
}

fn bad(key: &str, why: String) -> GapFileError {
    GapFileError::BadValue {
        key: key.into(),
        why,
    }
}

/// A hint for an unknown key: the known key it is closest to, or where top-level keys go.
fn suggest(key: &str, known: &[&str]) -> String {
    let close = known
        .iter()
        .map(|k| (edit_distance(key, k), *k))
        .filter(|(d, _)| *d <= 2)
        .min();
    match close {
        Some((_, k)) => format!(" (did you mean `{k}`?)"),
        None => String::new(),
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row.first().copied().unwrap_or(0);
        if let Some(first) = row.first_mut() {
            *first = i + 1;
        }
        for (j, cb) in b.iter().enumerate() {
            let cur = row.get(j + 1).copied().unwrap_or(0);
            let left = row.get(j).copied().unwrap_or(0);
            let sub = prev + usize::from(ca != *cb);
            if let Some(cell) = row.get_mut(j + 1) {
                *cell = sub.min(cur + 1).min(left + 1);
            }
            prev = cur;
        }
    }
    row.last().copied().unwrap_or(0)
}

fn text_field(table: &toml::Table, key: &str, required: bool) -> Result<String, GapFileError> {
    match table.get(key) {
        None if required => Err(GapFileError::Missing(key.into())),
        None => Ok(String::new()),
        Some(toml::Value::String(s)) if s.len() > MAX_TEXT_BYTES => Err(bad(
            key,
            format!("is {} bytes, over the {MAX_TEXT_BYTES}-byte cap", s.len()),
        )),
        Some(toml::Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(bad(key, "must be a string".into())),
    }
}

/// A program field: a string under the code cap that defines `def <name>(`.
fn code_field(
    table: &toml::Table,
    key: &'static str,
    name: &'static str,
) -> Result<String, GapFileError> {
    let code = match table.get(key) {
        None => return Err(GapFileError::Missing(key.into())),
        Some(toml::Value::String(s)) => s.clone(),
        Some(_) => return Err(bad(key, "must be a string (use '''...''')".into())),
    };
    if code.len() > MAX_CODE_BYTES {
        return Err(bad(
            key,
            format!(
                "is {} bytes, over the {MAX_CODE_BYTES}-byte cap",
                code.len()
            ),
        ));
    }
    let defines = code.lines().any(|l| {
        l.strip_prefix("def ")
            .map(str::trim_start)
            .and_then(|rest| rest.strip_prefix(name))
            .is_some_and(|rest| rest.trim_start().starts_with('('))
    });
    if !defines {
        return Err(GapFileError::MissingFunction { field: key, name });
    }
    Ok(code)
}

fn parse_sample(index: usize, item: &toml::Value) -> Result<SampleCase, GapFileError> {
    let sample_err = |why: String| GapFileError::BadSample { index, why };
    let toml::Value::Table(t) = item else {
        return Err(sample_err(
            "must be a table with `args` and `expected`".into(),
        ));
    };
    for key in t.keys() {
        if !SAMPLE_KEYS.contains(&key.as_str()) {
            let mut hint = suggest(key, SAMPLE_KEYS);
            if hint.is_empty() && TOP_KEYS.contains(&key.as_str()) {
                hint = " (top-level keys must come before the first [[samples]])".into();
            }
            return Err(GapFileError::UnknownKey {
                place: format!("sample {index}"),
                key: key.clone(),
                hint,
            });
        }
    }
    let args = match (t.get("args"), t.get("args_canonical")) {
        (Some(toml::Value::Array(items)), None) => items
            .iter()
            .map(|v| to_value(v).map_err(|e| sample_err(format!("args: {e}"))))
            .collect::<Result<Vec<_>, _>>()?,
        (Some(_), None) => return Err(sample_err("`args` must be an array".into())),
        (None, Some(toml::Value::String(text))) => match decode(text) {
            Ok(Value::List(items) | Value::Tuple(items)) => items,
            Ok(other) => {
                return Err(sample_err(format!(
                    "`args_canonical` must encode a list or tuple, not a {}",
                    other.type_name()
                )));
            }
            Err(e) => {
                return Err(sample_err(format!(
                    "`args_canonical` is not canonical: {e}"
                )));
            }
        },
        (None, Some(_)) => return Err(sample_err("`args_canonical` must be a string".into())),
        (Some(_), Some(_)) => {
            return Err(sample_err(
                "give `args` or `args_canonical`, not both".into(),
            ));
        }
        (None, None) => return Err(sample_err("missing `args`".into())),
    };
    let expected = match (t.get("expected"), t.get("expected_canonical")) {
        (Some(v), None) => to_value(v).map_err(|e| sample_err(format!("expected: {e}")))?,
        (None, Some(toml::Value::String(text))) => decode(text)
            .map_err(|e| sample_err(format!("`expected_canonical` is not canonical: {e}")))?,
        (None, Some(_)) => {
            return Err(sample_err("`expected_canonical` must be a string".into()));
        }
        (Some(_), Some(_)) => {
            return Err(sample_err(
                "give `expected` or `expected_canonical`, not both".into(),
            ));
        }
        (None, None) => return Err(sample_err("missing `expected`".into())),
    };
    Ok(SampleCase { args, expected })
}

/// A TOML value as a [`Value`]: integers, finite floats, strings, booleans, arrays (lists)
/// and tables (string-keyed maps). Dates have no Python-subset counterpart and are refused.
pub fn to_value(v: &toml::Value) -> Result<Value, String> {
    Ok(match v {
        toml::Value::String(s) => Value::str(s.clone()),
        toml::Value::Integer(i) => Value::int(*i),
        toml::Value::Float(f) => {
            Value::float(*f).ok_or_else(|| format!("{f} is not a finite float"))?
        }
        toml::Value::Boolean(b) => Value::Bool(*b),
        toml::Value::Datetime(d) => {
            return Err(format!(
                "{d}: dates are not values (use a string or *_canonical)"
            ));
        }
        toml::Value::Array(items) => {
            Value::List(items.iter().map(to_value).collect::<Result<Vec<_>, _>>()?)
        }
        toml::Value::Table(t) => Value::Map(
            t.iter()
                .map(|(k, v)| Ok((k.clone(), to_value(v)?)))
                .collect::<Result<_, String>>()?,
        ),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
entry = "add"
signature = "add(a: int, b: int) -> int"
description = "Return a + b."
generator = '''
def generate(rng):
    return [rng.randint(-100, 100), rng.randint(-100, 100)]
'''
oracle = '''
def oracle(a, b):
    return b + a
'''
[[samples]]
args = [1, 2]
expected = 3
[[samples]]
args_canonical = '[1,{"$tuple":[1]}]'
expected_canonical = 'null'
"#;

    #[test]
    fn a_good_file_parses_with_defaults_and_escapes() {
        let g = GapFile::parse(GOOD).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((g.entry.as_str(), g.n, g.seed), ("add", DEFAULT_N, 0));
        assert_eq!(g.samples.len(), 2);
        assert_eq!(g.samples[1].args[1], Value::Tuple(vec![Value::int(1)]));
        assert_eq!(g.samples[1].expected, Value::Null);
        assert!(matches!(g.judge, JudgeSource::Oracle(_)));
        assert!(
            g.generator_program()
                .contains("def __nmk_generate_one(seed)")
        );
    }

    #[test]
    fn typos_and_misplaced_keys_are_named() {
        let e = GapFile::parse(&GOOD.replace("signature =", "signatur =")).unwrap_err();
        assert!(e.to_string().contains("did you mean `signature`"), "{e}");
        let e = GapFile::parse(&format!("{GOOD}n = 5\n")).unwrap_err();
        assert!(
            e.to_string().contains("before the first [[samples]]"),
            "{e}"
        );
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
