//! Gap files end to end on real worker processes: the format's errors, the example gaps (each
//! sane, admitting a correct candidate and refusing a wrong one), the deliberately unsound
//! example caught by the placebo set, the sanity check's refusals, the worker-side RNG, and a
//! 2000-instance gate over a file gap.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use nmk_det::Value;
use nmk_det::gate::gapfile::{GapFile, GapFileError, MAX_FILE_BYTES};
use nmk_det::gate::{FailureReason, GapError, GateConfig, Rng, first_difference, holdout_gate};
use nmk_det::sandbox::Sandbox;

fn sandbox() -> Arc<Sandbox> {
    Arc::new(common::sandbox())
}

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/gaps")
}

/// A small valid gap file; tests derive broken ones from it.
const ADD: &str = r#"entry = "add"
signature = "add(a: int, b: int) -> int"
description = "Return the sum of a and b."
seed = 9
generator = '''
def generate(rng):
    return [rng.randint(-1000, 1000), rng.randint(-1000, 1000)]
'''
oracle = '''
def oracle(a, b):
    return b - (-a)
'''

[[samples]]
args = [1, 2]
expected = 3

[[samples]]
args = [-5, 5]
expected = 0
"#;

fn with_generator(body: &str) -> String {
    ADD.replace(
        "def generate(rng):\n    return [rng.randint(-1000, 1000), rng.randint(-1000, 1000)]\n",
        body,
    )
}

fn with_oracle(body: &str) -> String {
    ADD.replace("def oracle(a, b):\n    return b - (-a)\n", body)
}

fn config(n: usize, seed: u64) -> GateConfig {
    GateConfig {
        n,
        seed,
        placebo_n: 200,
        ..GateConfig::default()
    }
}

fn parse_err(text: &str) -> String {
    match GapFile::parse(text) {
        Ok(g) => panic!("parsed: {g:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn format_errors_are_typed_and_say_what_is_wrong() {
    assert!(GapFile::parse(ADD).is_ok());
    let e = parse_err(&ADD.replace("description =", "descripton ="));
    assert!(
        e.contains("unknown key `descripton`") && e.contains("did you mean `description`"),
        "{e}"
    );
    let e = parse_err(&ADD.replace("expected = 0", "expected = 0\nexpect = 1"));
    assert!(e.contains("unknown key `expect` in sample 1"), "{e}");
    let e = parse_err(&format!("{ADD}oracle_note = 'x'\n"));
    assert!(e.contains("sample 1"), "{e}");
    let e = parse_err(&ADD.replace("entry = \"add\"\n", ""));
    assert!(e.contains("missing required key `entry`"), "{e}");
    for bad in ["add x", "1add", "add-x", "__nmk_generate_one", ""] {
        let e = parse_err(&ADD.replace("entry = \"add\"", &format!("entry = {bad:?}")));
        assert!(e.contains("not a plain identifier"), "{bad}: {e}");
    }
    let big = format!("{ADD}# {}\n", "x".repeat(MAX_FILE_BYTES));
    assert!(matches!(
        GapFile::parse(&big),
        Err(GapFileError::TooLarge { .. })
    ));
    let e = parse_err(&ADD.replace("args = [1, 2]", "args_canonical = '[1,2'"));
    assert!(e.contains("sample 0") && e.contains("not canonical"), "{e}");
    let e = parse_err(&ADD.replace("args = [1, 2]", "args_canonical = '[1, 2]'"));
    assert!(e.contains("not canonical"), "{e}");
    let e = parse_err(&ADD.replace("args = [1, 2]", "args_canonical = '5'"));
    assert!(e.contains("list or tuple"), "{e}");
    let e = parse_err(&ADD.replace("expected = 3", "expected_canonical = '{\"$set\":[2,1]}'"));
    assert!(e.contains("not canonical"), "{e}");
    let e = parse_err(&ADD.replace("expected = 3", "expected = 3\nexpected_canonical = '3'"));
    assert!(e.contains("not both"), "{e}");
    let e = parse_err(&format!(
        "verify = '''\ndef verify(i, o):\n    return True\n'''\n{ADD}"
    ));
    assert!(e.contains("exactly one of `oracle` and `verify`"), "{e}");
    let e = parse_err(&ADD.replace("def oracle(a, b)", "def orakel(a, b)"));
    assert!(e.contains("must define `def oracle"), "{e}");
    let e = parse_err(&ADD.replace("seed = 9", "seed = -1"));
    assert!(e.contains("`seed`"), "{e}");
    let e = parse_err(&ADD.replace("seed = 9", "n = 0"));
    assert!(e.contains("`n`"), "{e}");
    let e = parse_err(&ADD.replace("args = [1, 2]", "args = [1, nan]"));
    assert!(e.contains("sample 0"), "{e}");
    let e = parse_err("entry = ");
    assert!(e.contains("not valid TOML"), "{e}");
    // Value mapping: arrays are lists, inline tables are string-keyed maps; escapes reach
    // tuples, None, bytes and sets.
    let g = GapFile::parse(&ADD.replace(
        "args = [1, 2]\nexpected = 3",
        "args = [[1, \"x\", true, 1.5], {k = [1]}]\nexpected_canonical = '{\"$tuple\":[null,{\"$bytes\":\"00ff\"},{\"$set\":[1,2]}]}'",
    ))
    .unwrap();
    assert_eq!(
        g.samples[0].args,
        vec![
            Value::List(vec![
                Value::int(1),
                Value::str("x"),
                Value::Bool(true),
                Value::float(1.5).unwrap()
            ]),
            Value::map([("k", Value::List(vec![Value::int(1)]))]),
        ]
    );
    assert_eq!(
        g.samples[0].expected,
        Value::Tuple(vec![
            Value::Null,
            Value::Bytes(vec![0, 255]),
            Value::set([Value::int(1), Value::int(2)])
        ])
    );
    // read() names the path.
    let missing = Path::new("/nonexistent/gap.toml");
    let e = GapFile::read(missing).unwrap_err().to_string();
    assert!(e.contains("/nonexistent/gap.toml"), "{e}");
    let dir = std::env::temp_dir().join(format!("nmk-gapfile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("typo.toml");
    std::fs::write(&path, ADD.replace("signature", "sig")).unwrap();
    let e = GapFile::read(&path).unwrap_err().to_string();
    assert!(
        e.contains("typo.toml") && e.contains("unknown key `sig`"),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// (file, a correct hand-written candidate, a wrong one).
const EXAMPLES: &[(&str, &str, &str)] = &[
    (
        "gcd.toml",
        "def gcd(a, b):\n    while b:\n        a, b = b, a % b\n    return a\n",
        "def gcd(a, b):\n    if a % b == 0:\n        return b\n    if b % a == 0:\n        return a\n    return 1\n",
    ),
    (
        "count_vowels.toml",
        "def count_vowels(s):\n    n = 0\n    for c in s:\n        if c in 'aeiouAEIOU':\n            n += 1\n    return n\n",
        "def count_vowels(s):\n    n = 0\n    for c in s:\n        if c in 'aeiou':\n            n += 1\n    return n\n",
    ),
    (
        "is_palindrome.toml",
        "def is_palindrome(s):\n    t = [c.lower() for c in s if c.isalnum()]\n    return t == t[::-1]\n",
        "def is_palindrome(s):\n    t = s.lower()\n    return t == t[::-1]\n",
    ),
    (
        "sum_of_digits.toml",
        "def sum_of_digits(n):\n    return sum(int(c) for c in str(n))\n",
        "def sum_of_digits(n):\n    return sum(int(c) for c in str(n)[:18])\n",
    ),
    (
        "reverse_words.toml",
        "def reverse_words(s):\n    return ' '.join(s.split()[::-1])\n",
        "def reverse_words(s):\n    return ' '.join(s.split(' ')[::-1])\n",
    ),
];

#[test]
fn every_example_is_sane_admits_a_correct_candidate_and_refuses_a_wrong_one() {
    let sb = sandbox();
    for (file, good, wrong) in EXAMPLES {
        let gf = GapFile::read(&examples().join(file)).unwrap_or_else(|e| panic!("{e}"));
        let gap = gf.build(sb.clone()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(gap.source(), gf.source);
        assert_eq!((gap.n, gap.seed), (gf.n, gf.seed));
        assert!((3..=5).contains(&gap.samples.len()), "{file}");
        let c = config(500, gf.seed);
        let r = holdout_gate(&sb, good, &gap, &c);
        assert!(r.passed, "{file}: {r:#?}");
        assert!(
            r.placebos.iter().all(|p| !p.passed),
            "{file}: {:?}",
            r.placebos
        );
        let r = holdout_gate(&sb, wrong, &gap, &c);
        assert!(
            matches!(
                r.reason,
                Some(FailureReason::SampleFail | FailureReason::GateFail)
            ),
            "{file}: {r:#?}"
        );
        eprintln!("{file}: wrong candidate refused as {:?}", r.reason);
    }
    // The examples directory holds exactly these five good gaps.
    let mut names: Vec<String> = std::fs::read_dir(examples())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".toml"))
        .collect();
    names.sort();
    let mut want: Vec<&str> = EXAMPLES.iter().map(|e| e.0).collect();
    want.sort();
    assert_eq!(names, want);
}

#[test]
fn the_constant_oracle_example_is_sane_but_caught_as_placebo_unsound() {
    let sb = sandbox();
    let gf = GapFile::read(&examples().join("bad/constant_oracle.toml")).unwrap();
    let gap = gf.build(sb.clone()).unwrap_or_else(|e| panic!("{e}"));
    let r = holdout_gate(
        &sb,
        "def sort_in_place(xs):\n    xs.sort()\n",
        &gap,
        &config(300, gf.seed),
    );
    assert_eq!(r.reason, Some(FailureReason::PlaceboUnsound), "{r:#?}");
    assert!(
        r.placebos
            .iter()
            .any(|p| p.name == "constant_none" && p.passed)
    );
}

fn unsound(text: &str) -> GapError {
    let gf = GapFile::parse(text).unwrap_or_else(|e| panic!("{e}"));
    let t = Instant::now();
    match gf.build(sandbox()) {
        Ok(_) => panic!("the sanity check passed"),
        Err(e) => {
            eprintln!("refused in {:?}: {e}", t.elapsed());
            e.gap_error().cloned().unwrap_or_else(|| panic!("{e}"))
        }
    }
}

#[test]
fn the_sanity_check_refuses_broken_trusted_code() {
    // A generator that raises on some instances.
    let e = unsound(&with_generator(
        "def generate(rng):\n    a = rng.randint(0, 99)\n    if a == 7:\n        raise ValueError('seven')\n    return [a, rng.randint(0, 99)]\n",
    ));
    assert!(matches!(e, GapError::GeneratorFailed { .. }), "{e}");
    assert!(e.to_string().contains("seven"), "{e}");
    // A generator that tries to be random by itself: nothing but the host's seed is allowed in.
    let e = unsound(&with_generator(
        "import random\ndef generate(rng):\n    return [random.randint(0, 9), rng.randint(0, 9)]\n",
    ));
    assert!(matches!(e, GapError::GeneratorFailed { .. }), "{e}");
    let e = unsound(&with_generator(
        "import time\ndef generate(rng):\n    return [int(time.time()), rng.randint(0, 9)]\n",
    ));
    assert!(matches!(e, GapError::GeneratorFailed { .. }), "{e}");
    // Too few distinct instances.
    let e = unsound(&with_generator(
        "def generate(rng):\n    return [rng.randint(1, 5), rng.randint(1, 5)]\n",
    ));
    assert!(
        matches!(
            e,
            GapError::TooFewDistinct {
                distinct: 25,
                draws: 200,
                ..
            }
        ),
        "{e}"
    );
    // Not a list of arguments.
    let e = unsound(&with_generator(
        "def generate(rng):\n    return rng.randint(1, 5000)\n",
    ));
    assert!(
        matches!(e, GapError::GeneratorShape { got: "int", .. }),
        "{e}"
    );
    // The wrong number of arguments.
    let e = unsound(&with_generator(
        "def generate(rng):\n    return [rng.randint(1, 5000)]\n",
    ));
    assert!(
        matches!(
            e,
            GapError::GeneratorArity {
                got: 1,
                want: 2,
                ..
            }
        ),
        "{e}"
    );
    // An oracle that disagrees with a visible sample.
    let e = unsound(&with_oracle("def oracle(a, b):\n    return a * b\n"));
    assert_eq!(e, GapError::JudgeRejectsSample(0));
    // An oracle that returns the right value with the wrong type (bool is not int).
    let e = unsound(&with_oracle("def oracle(a, b):\n    return float(a + b)\n"));
    assert_eq!(e, GapError::JudgeRejectsSample(0));
    // An oracle that raises on generated instances.
    let e = unsound(&with_oracle(
        "def oracle(a, b):\n    if a > 500:\n        raise ZeroDivisionError('boom')\n    return a + b\n",
    ));
    assert!(matches!(e, GapError::OracleFailed { .. }), "{e}");
    // An oracle that never stops.
    let e = unsound(&with_oracle(
        "def oracle(a, b):\n    if a > 980:\n        while True:\n            pass\n    return a + b\n",
    ));
    assert!(matches!(e, GapError::OracleFailed { .. }), "{e}");
    // The determinism rule itself (the interpreter offers no source of nondeterminism to a
    // generator, so it is exercised on data).
    let a = vec![vec![Value::int(1)], vec![Value::int(2)]];
    let mut b = a.clone();
    assert_eq!(first_difference(&a, &b), None);
    b[1] = vec![Value::Tuple(vec![Value::int(2)])];
    assert_eq!(first_difference(&a, &b), Some(1));
}

#[test]
fn an_oracle_that_fails_during_the_gate_fails_it_closed_as_gap_unsound() {
    let sb = sandbox();
    // Sound on the 200 sanity draws, raises on large instances only the gate draws.
    let text = ADD
        .replace(
            "rng.randint(-1000, 1000), rng.randint(-1000, 1000)",
            "rng.randint(-1000, 1000), rng.randint(-1000, 1000) if rng.random() < 0.999 else 10**6",
        )
        .replace(
            "def oracle(a, b):\n",
            "def oracle(a, b):\n    if b == 10**6:\n        raise ValueError('oracle broke')\n",
        );
    let gf = GapFile::parse(&text).unwrap();
    let gap = match gf.build(sb.clone()) {
        Ok(g) => g,
        Err(e) => panic!("sanity should not hit the rare case: {e}"),
    };
    let r = holdout_gate(
        &sb,
        "def add(a, b):\n    return a + b\n",
        &gap,
        &config(2000, 9),
    );
    assert_eq!(r.reason, Some(FailureReason::GapUnsound), "{r:#?}");
    assert_eq!(FailureReason::GapUnsound.as_str(), "gap_unsound");
    assert!(r.feedback.contains("oracle"), "{}", r.feedback);
    assert!(!r.passed);
}

#[test]
fn a_verify_gap_admits_any_valid_answer() {
    let sb = sandbox();
    let text = r#"entry = "any_divisor"
signature = "any_divisor(n: int) -> int"
description = "Return a divisor d of the composite number n with 1 < d < n."
generator = '''
def generate(rng):
    return [rng.randint(2, 3000) * rng.randint(2, 3000)]
'''
verify = '''
def verify(instance, output):
    n = instance[0]
    return type(output) == int and 1 < output and output < n and n % output == 0
'''
[[samples]]
args = [15]
expected = 3
[[samples]]
args = [49]
expected = 7
"#;
    let gap = GapFile::parse(text)
        .unwrap()
        .build(sb.clone())
        .unwrap_or_else(|e| panic!("{e}"));
    let smallest =
        "def any_divisor(n):\n    d = 2\n    while n % d:\n        d += 1\n    return d\n";
    let largest =
        "def any_divisor(n):\n    d = 2\n    while n % d:\n        d += 1\n    return n // d\n";
    for code in [smallest, largest] {
        let r = holdout_gate(&sb, code, &gap, &config(400, 0));
        assert!(r.passed, "{r:#?}");
    }
    let r = holdout_gate(
        &sb,
        "def any_divisor(n):\n    return True\n",
        &gap,
        &config(400, 0),
    );
    assert_eq!(r.reason, Some(FailureReason::SampleFail), "{r:#?}");
    let r = holdout_gate(
        &sb,
        "def any_divisor(n):\n    return 3 if n % 3 == 0 else 7\n",
        &gap,
        &config(400, 0),
    );
    assert_eq!(r.reason, Some(FailureReason::GateFail), "{r:#?}");
    // A verify that is not a bool check is refused by the sanity check.
    let e = GapFile::parse(&text.replace("return type(output)", "return 1 or type(output)"))
        .unwrap()
        .build(sb)
        .unwrap_err();
    assert_eq!(e.gap_error(), Some(&GapError::JudgeRejectsSample(0)), "{e}");
}

fn rng_gap(body: &str) -> nmk_det::gate::Gap {
    let text = format!(
        "entry = \"f\"\nsignature = \"f(x)\"\ndescription = \"d\"\ngenerator = '''\n{body}'''\noracle = '''\ndef oracle(*args):\n    return 0\n'''\n[[samples]]\nargs = [0]\nexpected = 0\n"
    );
    GapFile::parse(&text)
        .unwrap()
        .build(sandbox())
        .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn the_worker_rng_is_seeded_by_the_host_and_deterministic() {
    // The prelude's SplitMix64 is the host's: instance i's first draw is the first output of
    // Rng(seed_i), where seed_i is the host Rng(seed)'s i-th output.
    let gap = rng_gap("def generate(rng):\n    return [rng.next_u64()]\n");
    let seed = 12345;
    let got = gap.instances(300, seed).unwrap();
    let mut host = Rng::new(seed);
    for inst in &got {
        let want = Rng::new(host.next_u64()).next_u64();
        assert_eq!(inst, &vec![Value::int(want)]);
    }
    assert_eq!(gap.instances(300, seed).unwrap(), got);
    assert_ne!(gap.instances(300, seed + 1).unwrap(), got);
    // The helpers stay in range and are reproducible.
    let gap = rng_gap(
        "def generate(rng):\n    xs = [1, 2, 3, 4, 5]\n    rng.shuffle(xs)\n    return [[rng.randint(-3, 3), rng.random(), rng.choice('abc'), rng.sample(range(10), 3), xs, rng.randint(0, 10**30), rng.randrange(5, 10), rng.uniform(2.0, 3.0)]]\n",
    );
    let a = gap.instances(500, 1).unwrap();
    assert_eq!(gap.instances(500, 1).unwrap(), a);
    let mut seen = std::collections::BTreeSet::new();
    for inst in &a {
        let Value::List(inst) = &inst[0] else {
            panic!()
        };
        let r = inst[0].as_i64().unwrap();
        assert!((-3..=3).contains(&r));
        seen.insert(r);
        let Value::Float(f) = &inst[1] else { panic!() };
        assert!((0.0..1.0).contains(&f.get()));
        assert!(["a", "b", "c"].contains(&inst[2].as_str().unwrap()));
        let Value::List(s) = &inst[3] else { panic!() };
        let mut s: Vec<i64> = s.iter().map(|v| v.as_i64().unwrap()).collect();
        s.sort_unstable();
        s.dedup();
        assert!(s.len() == 3 && s.iter().all(|x| (0..10).contains(x)));
        let Value::List(p) = &inst[4] else { panic!() };
        let mut p: Vec<i64> = p.iter().map(|v| v.as_i64().unwrap()).collect();
        p.sort_unstable();
        assert_eq!(p, vec![1, 2, 3, 4, 5]);
        assert!((5..10).contains(&inst[6].as_i64().unwrap()));
        let Value::Float(u) = &inst[7] else { panic!() };
        assert!((2.0..3.0).contains(&u.get()));
    }
    assert_eq!(seen.len(), 7, "randint covers its inclusive range");
}

#[test]
fn a_2000_instance_gate_over_a_file_gap_passes_in_few_batches() {
    let sb = sandbox();
    let gf = GapFile::read(&examples().join("gcd.toml")).unwrap();
    let t = Instant::now();
    let gap = gf.build(sb.clone()).unwrap();
    let built = t.elapsed();
    let r = holdout_gate(&sb, EXAMPLES[0].1, &gap, &gf.gate_config());
    assert!(r.passed, "{r:#?}");
    assert_eq!(r.gate.as_ref().unwrap().n, 2000);
    assert_eq!(r.regate.as_ref().unwrap().passed, 2000);
    eprintln!(
        "gcd.toml: sanity check {built:?}, 2000-instance gate {:?} (total {:?})",
        r.elapsed,
        t.elapsed()
    );
}
