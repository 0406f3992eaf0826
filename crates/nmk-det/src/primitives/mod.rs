//! The built-in primitive library: small deterministic computations written in Rust, callable by
//! name with `&[Value]` arguments, each paired with an independent oracle.
//!
//! # Why each primitive carries an oracle
//!
//! A built-in is trusted code, but "trusted" must still be earned. Every computation in the
//! [`catalog`] ships three functions: the primitive itself (the fast, production algorithm), an
//! oracle (a *different* algorithm for the same contract, written separately, allowed to be slow)
//! and a generator (seeded random instances that reach the edge cases). [`self_check`] runs the
//! primitive against its oracle in process on `n` generated instances and compares results with
//! [`strict_equal`]; when the primitive errors the oracle must error too (any error matches any
//! error: they must agree the input is unacceptable, not on the wording). This is how a built-in
//! proves itself; model-written code is judged by the sandbox gate instead ([`crate::gate`]).
//!
//! # Hostile arguments
//!
//! Arguments are hostile input. Every primitive checks arity and types first
//! ([`PrimitiveError::Arity`], [`PrimitiveError::Type`]), bounds every size that drives work
//! ([`PrimitiveError::TooLarge`]: string lengths, sieve bound, graph size, regex size and matching
//! work), rejects values outside its domain ([`PrimitiveError::OutOfRange`]) and malformed input
//! ([`PrimitiveError::Invalid`]: a bad date, a bad regex, a bad shape). No primitive panics,
//! overflows or takes super-linear time in an attacker-chosen size beyond its documented caps; the
//! regex primitive in particular is a Pike VM, linear in the text.
//!
//! # The catalogue
//!
//! | name | module | primitive | oracle |
//! |---|---|---|---|
//! | `count_letter` | [`text`] | `chars()` filter | substring count of the UTF-8 encoding |
//! | `count_byte` | [`text`] | filter count | 256-bucket histogram |
//! | `gcd` | [`arith`] | Euclid | Stein (binary GCD) |
//! | `is_prime` | [`arith`] | deterministic Miller–Rabin | trial division by 6k±1 |
//! | `primes_up_to` | [`arith`] | Eratosthenes sieve | incremental trial division by found primes |
//! | `shortest_path` | [`graph`] | Dijkstra with a binary heap | Bellman–Ford |
//! | `sort_unique` | [`sort`] | sort + dedup | binary-search insertion into a sorted vector |
//! | `parse_date` | [`date`] | fixed-position byte parser | split on `-`, month table |
//! | `days_between` | [`date`] | closed-form days-from-civil | year and month table summation |
//! | `add_days` | [`date`] | days-from-civil / civil-from-days | month-by-month stepping |
//! | `json_shape_ok` | [`json_shape`] | recursive walk over `serde_json` values | work-stack walk over [`Value`]s |
//! | `regex_match` | [`regex`] | Thompson NFA, Pike VM simulation | memoised end-position sets over a separately parsed tree |
//! | `grapheme_count` | [`grapheme`] | `unicode-segmentation` (UAX #29) | hand-written rule set on a restricted domain |
//!
//! Three more entries are the text-output *lane validators* of [`crate::oracles`]
//! (`evidence_cited`, `format_contract_ok`, `no_secret_or_raw_cot`). They fit the call shape
//! (values in, a boolean out) and are callable here, but they are judgements, not computations:
//! there is no second algorithm for "is this evidence cited", so they have [`Kind::Validator`], no
//! oracle and no generator, and [`self_check`] refuses them with [`PrimitiveError::NoOracle`]
//! rather than pretend.

pub mod arith;
pub mod date;
pub mod graph;
pub mod grapheme;
pub mod json_shape;
pub mod regex;
pub mod sort;
pub mod text;
pub mod validators;

mod args;

use crate::gate::Rng;
use crate::oracles::strict_equal;
use crate::value::Value;

/// A primitive's (or an oracle's) calling convention: positional arguments in, a value out.
pub type PrimitiveFn = fn(&[Value]) -> Result<Value, PrimitiveError>;

/// A generator of random argument lists, driven by the host's seeded [`Rng`].
pub type GeneratorFn = fn(&mut Rng) -> Vec<Value>;

/// Why a primitive refused its arguments. Every refusal is typed; none is a panic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrimitiveError {
    /// The wrong number of arguments.
    #[error("takes {expected} argument(s), got {got}")]
    Arity {
        /// How many the signature declares.
        expected: usize,
        /// How many were passed.
        got: usize,
    },
    /// An argument of the wrong type.
    #[error("parameter `{param}` must be {expected}, got {got}")]
    Type {
        /// The parameter's name in the signature.
        param: &'static str,
        /// The type the signature declares.
        expected: &'static str,
        /// The type actually received ([`Value::type_name`]).
        got: &'static str,
    },
    /// A value outside the primitive's domain (a negative weight, a byte above 255, a result
    /// date past year 9999, an integer too big for the primitive).
    #[error("parameter `{param}` is out of range: {detail}")]
    OutOfRange {
        /// The parameter's name in the signature.
        param: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// An input above a work cap.
    #[error("parameter `{param}` is too large: {size} exceeds the cap of {cap}")]
    TooLarge {
        /// The parameter's name in the signature.
        param: &'static str,
        /// The measured size.
        size: u64,
        /// The cap.
        cap: u64,
    },
    /// A malformed input: a bad date, a bad regex, a bad shape.
    #[error("parameter `{param}` is invalid: {detail}")]
    Invalid {
        /// The parameter's name in the signature.
        param: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// [`self_check`] was asked to check an entry that has no independent oracle.
    #[error("`{name}` has no independent oracle to check against")]
    NoOracle {
        /// The entry's name.
        name: &'static str,
    },
}

/// What a catalogue entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A computation with an independent oracle and a generator; [`self_check`] applies.
    Computation,
    /// A lane validator from [`crate::oracles`]: callable, but with no second algorithm.
    Validator,
}

/// The oracle and generator that let a computation prove itself.
#[derive(Debug, Clone, Copy)]
struct Proof {
    oracle: PrimitiveFn,
    generate: GeneratorFn,
}

/// One catalogue entry.
#[derive(Debug, Clone, Copy)]
pub struct Primitive {
    /// The name it is called by.
    pub name: &'static str,
    /// Python-style signature, e.g. `gcd(a: int, b: int) -> int`.
    pub signature: &'static str,
    /// What it computes, its domain and its caps.
    pub description: &'static str,
    kind: Kind,
    call: PrimitiveFn,
    proof: Option<Proof>,
}

impl Primitive {
    /// Calls the primitive. Never panics; every refusal is a [`PrimitiveError`].
    pub fn call(&self, args: &[Value]) -> Result<Value, PrimitiveError> {
        (self.call)(args)
    }

    /// Whether this is a computation or a validator.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Calls the independent oracle, when there is one. Oracles are meant for generated
    /// instances: they are allowed to be slow on large inputs.
    pub fn oracle(&self, args: &[Value]) -> Option<Result<Value, PrimitiveError>> {
        self.proof.map(|p| (p.oracle)(args))
    }

    /// Draws one random argument list from the entry's generator, when there is one.
    pub fn generate(&self, rng: &mut Rng) -> Option<Vec<Value>> {
        self.proof.map(|p| (p.generate)(rng))
    }

    /// Checks an arbitrary implementation of this entry's contract against its oracle on `n`
    /// generated instances. [`self_check`] is this with the primitive itself; tests use it with
    /// deliberately wrong implementations to show the check can fail.
    pub fn check_implementation(
        &self,
        implementation: PrimitiveFn,
        n: usize,
        seed: u64,
    ) -> Result<CheckReport, PrimitiveError> {
        let proof = self
            .proof
            .ok_or(PrimitiveError::NoOracle { name: self.name })?;
        let mut rng = Rng::new(seed);
        for index in 0..n {
            let args = (proof.generate)(&mut rng);
            let got = implementation(&args);
            let want = (proof.oracle)(&args);
            let agree = match (&got, &want) {
                (Ok(a), Ok(b)) => strict_equal(a, b),
                (Err(_), Err(_)) => true,
                _ => false,
            };
            if !agree {
                return Ok(CheckReport {
                    passed: false,
                    n,
                    first_fail: Some(Mismatch {
                        index,
                        args,
                        primitive: got,
                        oracle: want,
                    }),
                });
            }
        }
        Ok(CheckReport {
            passed: true,
            n,
            first_fail: None,
        })
    }
}

/// The outcome of a [`self_check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckReport {
    /// Whether every instance agreed.
    pub passed: bool,
    /// How many instances were requested.
    pub n: usize,
    /// The first disagreement, if any (checking stops there).
    pub first_fail: Option<Mismatch>,
}

/// One instance on which a primitive and its oracle disagreed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// The instance's position in the generated sequence.
    pub index: usize,
    /// The generated arguments.
    pub args: Vec<Value>,
    /// What the implementation under check returned.
    pub primitive: Result<Value, PrimitiveError>,
    /// What the oracle returned.
    pub oracle: Result<Value, PrimitiveError>,
}

const fn computation(
    name: &'static str,
    signature: &'static str,
    description: &'static str,
    call: PrimitiveFn,
    oracle: PrimitiveFn,
    generate: GeneratorFn,
) -> Primitive {
    Primitive {
        name,
        signature,
        description,
        kind: Kind::Computation,
        call,
        proof: Some(Proof { oracle, generate }),
    }
}

const fn validator(
    name: &'static str,
    signature: &'static str,
    description: &'static str,
    call: PrimitiveFn,
) -> Primitive {
    Primitive {
        name,
        signature,
        description,
        kind: Kind::Validator,
        call,
        proof: None,
    }
}

static CATALOG: [Primitive; 16] = [
    computation(
        "count_letter",
        "count_letter(text: str, letter: str) -> int",
        "How many times the single character `letter` occurs in `text` (case-sensitive, by \
         Unicode scalar value; `letter` must be exactly one character). Text up to 1 MiB.",
        text::count_letter,
        text::count_letter_oracle,
        text::count_letter_generate,
    ),
    computation(
        "count_byte",
        "count_byte(data: bytes, byte: int) -> int",
        "How many bytes of `data` equal `byte` (0..=255). Data up to 16 MiB.",
        text::count_byte,
        text::count_byte_oracle,
        text::count_byte_generate,
    ),
    computation(
        "gcd",
        "gcd(a: int, b: int) -> int",
        "The non-negative greatest common divisor of two 64-bit integers, as Python's math.gcd \
         (gcd(0, 0) == 0; signs ignored, so gcd(-2**63, 0) == 2**63).",
        arith::gcd,
        arith::gcd_oracle,
        arith::gcd_generate,
    ),
    computation(
        "is_prime",
        "is_prime(n: int) -> bool",
        "Whether a 64-bit integer is prime (n < 2 is not). Deterministic Miller-Rabin.",
        arith::is_prime,
        arith::is_prime_oracle,
        arith::is_prime_generate,
    ),
    computation(
        "primes_up_to",
        "primes_up_to(n: int) -> list[int]",
        "The primes p <= n in increasing order (empty for n < 2). n at most 10_000_000.",
        arith::primes_up_to,
        arith::primes_up_to_oracle,
        arith::primes_up_to_generate,
    ),
    computation(
        "shortest_path",
        "shortest_path(n: int, edges: list[tuple[int, int, int]], src: int, dst: int) -> int | None",
        "The least total weight of a directed path from `src` to `dst` over nodes 0..n, edges \
         (from, to, weight) with weights 0..=10**12; None when unreachable. At most 10_000 nodes \
         and 100_000 edges.",
        graph::shortest_path,
        graph::shortest_path_oracle,
        graph::shortest_path_generate,
    ),
    computation(
        "sort_unique",
        "sort_unique(items: list[int]) -> list[int]",
        "The distinct 64-bit integers of `items` (a list, tuple or set) in increasing order. At \
         most 1_000_000 items.",
        sort::sort_unique,
        sort::sort_unique_oracle,
        sort::sort_unique_generate,
    ),
    computation(
        "parse_date",
        "parse_date(text: str) -> tuple[int, int, int]",
        "Parses a strict ISO `YYYY-MM-DD` Gregorian date (years 0001..9999) into (year, month, \
         day); anything else, including 2023-02-29, is invalid.",
        date::parse_date,
        date::parse_date_oracle,
        date::parse_date_generate,
    ),
    computation(
        "days_between",
        "days_between(a: str, b: str) -> int",
        "The number of days from date `a` to date `b` (negative when b is earlier); both strict \
         ISO `YYYY-MM-DD`.",
        date::days_between,
        date::days_between_oracle,
        date::days_between_generate,
    ),
    computation(
        "add_days",
        "add_days(date: str, days: int) -> str",
        "The ISO date `days` days after `date` (before, when negative); the result must lie in \
         0001-01-01..=9999-12-31.",
        date::add_days,
        date::add_days_oracle,
        date::add_days_generate,
    ),
    computation(
        "json_shape_ok",
        "json_shape_ok(text: str, shape: str | list | tuple | dict) -> bool",
        "Whether `text` is JSON of the given shape. Shapes: a type name (\"null\", \"bool\", \
         \"int\", \"float\", \"number\", \"str\", \"list\", \"dict\", \"any\"); [S] for an array \
         whose items all match S; a tuple (S1, ..., Sk) for an array of exactly k items matching \
         position by position; {\"key\": S, \"opt?\": S} for an object with exactly those keys \
         (a key ending in `?` is optional). Text that is not JSON is simply not ok; a malformed \
         shape is an error. Text up to 1 MiB, shape depth up to 32.",
        json_shape::json_shape_ok,
        json_shape::json_shape_ok_oracle,
        json_shape::json_shape_ok_generate,
    ),
    computation(
        "regex_match",
        "regex_match(pattern: str, text: str) -> bool",
        "Whether the whole of `text` matches `pattern`. Syntax: literal characters, `.` (any \
         character), postfix `*` `+` `?`, `|`, parentheses, classes `[abc]` `[a-z]` `[^...]`, and \
         `\\` before one of \\.*+?|()[]^- to make it literal. No anchors, no counted repetition, \
         no backreferences. Pattern up to 1000 characters, text up to 100_000; matching is \
         linear in the text.",
        regex::regex_match,
        regex::regex_match_oracle,
        regex::regex_match_generate,
    ),
    computation(
        "grapheme_count",
        "grapheme_count(text: str) -> int",
        "The number of extended grapheme clusters (Unicode UAX #29) in `text`: what a reader \
         counts as characters. Text up to 1 MiB.",
        grapheme::grapheme_count,
        grapheme::grapheme_count_oracle,
        grapheme::grapheme_count_generate,
    ),
    validator(
        "evidence_cited",
        "evidence_cited(output: any) -> bool",
        "Lane validator: does an answer point at checkable evidence (or honestly abstain) rather \
         than merely assert? See crate::oracles::evidence_cited. A validator: no independent \
         oracle.",
        validators::evidence_cited,
    ),
    validator(
        "format_contract_ok",
        "format_contract_ok(output: any, contract: any) -> bool",
        "Lane validator: does an output honour the format its task's contract declares? See \
         crate::oracles::format_contract_ok. A validator: no independent oracle.",
        validators::format_contract_ok,
    ),
    validator(
        "no_secret_or_raw_cot",
        "no_secret_or_raw_cot(output: any) -> bool",
        "Lane validator: does an output carry neither a credential nor raw chain-of-thought? \
         See crate::oracles::no_secret_or_raw_cot. A validator: no independent oracle.",
        validators::no_secret_or_raw_cot,
    ),
];

/// Every built-in entry, computations first, in a fixed order.
pub fn catalog() -> &'static [Primitive] {
    &CATALOG
}

/// The entry called `name`, if there is one.
pub fn find(name: &str) -> Option<&'static Primitive> {
    CATALOG.iter().find(|p| p.name == name)
}

/// Runs `p` against its independent oracle on `n` instances drawn from its generator seeded
/// with `seed`. Fails with [`PrimitiveError::NoOracle`] for a [`Kind::Validator`].
pub fn self_check(p: &Primitive, n: usize, seed: u64) -> Result<CheckReport, PrimitiveError> {
    p.check_implementation(p.call, n, seed)
}
