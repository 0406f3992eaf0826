//! The hold-out gate end to end on real worker processes: spec §7 `holdout_gate` behaviours and
//! the hostile-candidate corpus, each refused with the right reason.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use nmk_det::Value;
use nmk_det::gate::{FailureReason, Gap, GateConfig, Judge, Rng, SampleCase, holdout_gate};
use nmk_det::sandbox::CallLimits;

fn int_args(args: &[Value]) -> Vec<i64> {
    args.iter().map(|v| v.as_i64().unwrap_or(0)).collect()
}

/// Stein's binary gcd: a different algorithm from the candidates' Euclid.
fn binary_gcd(mut a: u64, mut b: u64) -> u64 {
    if a == 0 {
        return b;
    }
    if b == 0 {
        return a;
    }
    let shift = (a | b).trailing_zeros();
    a >>= a.trailing_zeros();
    loop {
        b >>= b.trailing_zeros();
        if a > b {
            std::mem::swap(&mut a, &mut b);
        }
        b -= a;
        if b == 0 {
            return a << shift;
        }
    }
}

fn sample(args: &[i64], expected: Value) -> SampleCase {
    SampleCase {
        args: args.iter().map(|&a| Value::int(a)).collect(),
        expected,
    }
}

fn gcd_gap() -> Gap {
    Gap::new(
        "gcd",
        "gcd(a: int, b: int) -> int",
        "greatest common divisor",
        vec![
            sample(&[12, 18], Value::int(6)),
            sample(&[7, 5], Value::int(1)),
            sample(&[100, 75], Value::int(25)),
        ],
        |rng: &mut Rng| {
            vec![
                Value::int(rng.range_i64(1, 1_000_000_000)),
                Value::int(rng.range_i64(1, 1_000_000_000)),
            ]
        },
        Judge::oracle(|a: &[Value]| {
            let v = int_args(a);
            Ok(Value::int(binary_gcd(v[0] as u64, v[1] as u64) as i64))
        }),
    )
    .unwrap()
}

const GCD: &str = "def gcd(a, b):\n    while b:\n        a, b = b, a % b\n    return a\n";

fn config(n: usize, seed: u64) -> GateConfig {
    GateConfig {
        n,
        seed,
        ..GateConfig::default()
    }
}

#[test]
fn euclid_passes_against_an_independent_oracle_with_sound_placebos() {
    let sb = common::sandbox();
    let r = holdout_gate(&sb, GCD, &gcd_gap(), &config(3000, 7));
    assert!(r.passed, "{r:#?}");
    let gate = r.gate.as_ref().unwrap();
    assert_eq!((gate.passed, gate.n, gate.seed), (3000, 3000, 7));
    assert_eq!(r.regate.as_ref().unwrap().passed, 3000);
    assert_eq!(r.deterministic, Some(true));
    assert!(
        r.placebos.len() >= 5 && r.placebos.iter().all(|p| !p.passed),
        "{:?}",
        r.placebos
    );
    eprintln!("gcd gate n=3000: {:?}", r.elapsed);
}

fn prime_gap() -> Gap {
    Gap::new(
        "is_prime",
        "is_prime(n: int) -> bool",
        "primality",
        vec![
            sample(&[2], Value::Bool(true)),
            sample(&[9], Value::Bool(false)),
            sample(&[0], Value::Bool(false)),
            sample(&[97], Value::Bool(true)),
        ],
        |rng: &mut Rng| vec![Value::int(rng.range_i64(0, 5000))],
        Judge::oracle(|a: &[Value]| {
            let n = int_args(a)[0];
            Ok(Value::Bool(n >= 2 && (2..n).all(|d| n % d != 0)))
        }),
    )
    .unwrap()
}

#[test]
fn wheel_primality_passes_against_brute_force() {
    let sb = common::sandbox();
    let wheel = "def is_prime(n):\n    if n < 2:\n        return False\n    if n % 2 == 0 or n % 3 == 0:\n        return n in (2, 3)\n    i = 5\n    while i * i <= n:\n        if n % i == 0 or n % (i + 2) == 0:\n            return False\n        i += 6\n    return True\n";
    let r = holdout_gate(&sb, wheel, &prime_gap(), &config(3000, 11));
    assert!(r.passed, "{r:#?}");
    // Returning 1/0 instead of True/False is refused: bool is not int.
    let ints = "def is_prime(n):\n    if n < 2:\n        return 0\n    for d in range(2, n):\n        if n % d == 0:\n            return 0\n    return 1\n";
    let r = holdout_gate(&sb, ints, &prime_gap(), &config(300, 11));
    assert_eq!(r.reason, Some(FailureReason::SampleFail), "{r:#?}");
}

fn add_gap() -> Gap {
    Gap::new(
        "add",
        "add(a: int, b: int) -> int",
        "sum",
        vec![
            sample(&[1, 2], Value::int(3)),
            sample(&[-5, 5], Value::int(0)),
        ],
        |rng: &mut Rng| {
            vec![
                Value::int(rng.range_i64(-1000, 1000)),
                Value::int(rng.range_i64(-1000, 1000)),
            ]
        },
        Judge::oracle(|a: &[Value]| {
            let v = int_args(a);
            Ok(Value::int(v[0] + v[1]))
        }),
    )
    .unwrap()
}

#[test]
fn the_placebo_set_fails_on_a_plus_b_so_the_gate_is_sound() {
    let sb = common::sandbox();
    let r = holdout_gate(
        &sb,
        "def add(a, b):\n    return a + b\n",
        &add_gap(),
        &config(1000, 3),
    );
    assert!(r.passed, "{r:#?}");
    let names: Vec<&str> = r.placebos.iter().map(|p| p.name).collect();
    for want in [
        "constant_none",
        "echo_first_argument",
        "constant_most_frequent_output",
        "sample_memoriser",
        "perturbed_candidate",
    ] {
        assert!(names.contains(&want), "{names:?}");
    }
    // Liveness of the placebo: the memoriser really ran and matched nothing held out... but the
    // sample cases it memorised are right.
    assert!(r.placebos.iter().all(|p| p.matched < p.n));
}

#[test]
fn a_constant_oracle_is_caught_as_placebo_unsound() {
    let sb = common::sandbox();
    let gap = Gap::new(
        "zero",
        "zero(a: int) -> int",
        "always zero (a wrong, non-discriminating oracle)",
        vec![sample(&[1], Value::int(0))],
        |rng: &mut Rng| vec![Value::int(rng.range_i64(0, 1_000_000))],
        Judge::oracle(|_: &[Value]| Ok(Value::int(0))),
    )
    .unwrap();
    let r = holdout_gate(
        &sb,
        "def zero(a):\n    return a * 0\n",
        &gap,
        &config(500, 1),
    );
    assert_eq!(r.reason, Some(FailureReason::PlaceboUnsound), "{r:#?}");
}

#[test]
fn a_sleeper_times_out_with_its_first_failure_recorded() {
    let sb = common::sandbox();
    // Passes the small visible samples, spins "10 s" on held-out sizes.
    let sleeper = "def gcd(a, b):\n    if a > 1000:\n        i = 0\n        while i < 10 ** 12:\n            i += 1\n    while b:\n        a, b = b, a % b\n    return a\n";
    let mut c = config(2, 5);
    c.limits = CallLimits {
        per_call: Duration::from_millis(300),
        stop_on_timeout: true,
        ..CallLimits::default()
    };
    let t = std::time::Instant::now();
    let r = holdout_gate(&sb, sleeper, &gcd_gap(), &c);
    assert_eq!(r.reason, Some(FailureReason::Timeout), "{r:#?}");
    let ff = r.gate.as_ref().unwrap().first_fail.as_ref().unwrap();
    assert_eq!(ff.got, "ran past its time limit");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
}

#[test]
fn n_zero_never_passes_and_a_constant_generator_fails_the_novelty_floor() {
    let sb = common::sandbox();
    let r = holdout_gate(&sb, GCD, &gcd_gap(), &config(0, 0));
    assert_eq!(r.reason, Some(FailureReason::GateFail));
    assert_eq!(r.gate.as_ref().unwrap().passed, 0);
    let constant = Gap::new(
        "gcd",
        "gcd(a, b)",
        "gcd",
        vec![sample(&[12, 18], Value::int(6))],
        |_: &mut Rng| vec![Value::int(12), Value::int(18)],
        Judge::oracle(|a: &[Value]| {
            let v = int_args(a);
            Ok(Value::int(binary_gcd(v[0] as u64, v[1] as u64) as i64))
        }),
    )
    .unwrap();
    let r = holdout_gate(&sb, GCD, &constant, &config(2000, 0));
    assert_eq!(r.reason, Some(FailureReason::GateFail));
    let g = r.gate.as_ref().unwrap();
    assert_eq!(g.distinct, 1);
    assert!(
        g.note
            .as_deref()
            .unwrap()
            .contains("only 1 distinct of 2000")
    );
}

#[test]
fn a_memoriser_of_the_samples_passes_them_and_fails_the_gate_without_leaking_truth() {
    let sb = common::sandbox();
    let memo =
        "def gcd(a, b):\n    return {(12, 18): 6, (7, 5): 1, (100, 75): 25}.get((a, b), 1)\n";
    let r = holdout_gate(&sb, memo, &gcd_gap(), &config(500, 9));
    assert_eq!(r.reason, Some(FailureReason::GateFail), "{r:#?}");
    assert_eq!(r.sample.as_ref().unwrap().passed, 3);
    let ff = r.gate.as_ref().unwrap().first_fail.clone().unwrap();
    assert_eq!(ff.got, "returned 1");
    let v = int_args(&ff.args);
    let truth = binary_gcd(v[0] as u64, v[1] as u64).to_string();
    assert!(
        !r.feedback.contains(&format!("should return {truth}")),
        "{}",
        r.feedback
    );
    assert!(
        r.feedback.contains("your program returned 1"),
        "{}",
        r.feedback
    );
}

#[test]
fn the_hostile_corpus_is_refused_with_the_right_reason() {
    let sb = common::sandbox();
    let gap = gcd_gap();
    let mut c = config(200, 4);
    c.limits.per_call = Duration::from_millis(300);
    // Filling 256 MiB takes ~200 ms of page faults alone, close to the time limit on a loaded
    // machine; a 48 MiB ceiling keeps "out of memory" well clear of "out of time".
    c.limits.memory = 48 << 20;
    let cases: &[(&str, &str, FailureReason)] = &[
        (
            "infinite loop",
            "def gcd(a, b):\n    while True:\n        pass\n",
            FailureReason::Timeout,
        ),
        (
            "huge bigint",
            "def gcd(a, b):\n    return 7 ** 30000000 % 10\n",
            FailureReason::Timeout,
        ),
        (
            "huge allocation",
            "def gcd(a, b):\n    return len('a' * (16 * 1024 ** 3))\n",
            FailureReason::SampleFail,
        ),
        (
            "growing allocation",
            "def gcd(a, b):\n    x = []\n    while True:\n        x.append('a' * 100000)\n",
            FailureReason::SampleFail,
        ),
        (
            "deep recursion",
            "def gcd(a, b):\n    return gcd(a + 1, b)\n",
            FailureReason::SampleFail,
        ),
        (
            "file open",
            "def gcd(a, b):\n    open('/etc/passwd').read()\n    return 1\n",
            FailureReason::SampleFail,
        ),
        (
            "env read",
            "import os\ndef gcd(a, b):\n    return int(os.getenv('X', '1'))\n",
            FailureReason::SampleFail,
        ),
        (
            "clock",
            "import time\ndef gcd(a, b):\n    return int(time.time())\n",
            FailureReason::SampleFail,
        ),
        (
            "random",
            "import random\ndef gcd(a, b):\n    return random.randint(1, 9)\n",
            FailureReason::SampleFail,
        ),
        (
            "__import__",
            "def gcd(a, b):\n    __import__('os').system('id')\n    return 1\n",
            FailureReason::SampleFail,
        ),
        (
            "fake verdict",
            "def gcd(a, b):\n    print('VERDICT: PASS')\n    print('{\"passed\": true}')\n    return 0\n",
            FailureReason::SampleFail,
        ),
        (
            "frame forgery",
            "def gcd(a, b):\n    print('\\x00\\x00\\x00\\x1a{\"id\":1,\"index\":0,\"ok\":6}')\n    return -1\n",
            FailureReason::SampleFail,
        ),
        (
            "always-equal object",
            "class E:\n    def __eq__(self, o):\n        return True\ndef gcd(a, b):\n    return E()\n",
            FailureReason::SampleFail,
        ),
        (
            "SystemExit",
            "def gcd(a, b):\n    raise SystemExit(0)\n",
            FailureReason::SampleFail,
        ),
        (
            "exit()",
            "def gcd(a, b):\n    exit(0)\n",
            FailureReason::SampleFail,
        ),
        (
            "bool for int",
            "def gcd(a, b):\n    while b:\n        a, b = b, a % b\n    return a == 1 or a\n",
            FailureReason::SampleFail,
        ),
        (
            "float for int",
            "def gcd(a, b):\n    while b:\n        a, b = b, a % b\n    return float(a)\n",
            FailureReason::SampleFail,
        ),
        (
            "hash-keyed nondeterminism attempt",
            "def gcd(a, b):\n    x, y = a, b\n    while y:\n        x, y = y, x % y\n    return x if a < 1000 or hash(str(a)) % 5 else x + 1\n",
            FailureReason::GateFail,
        ),
        (
            "set-order nondeterminism attempt",
            "def gcd(a, b):\n    x, y = a, b\n    while y:\n        x, y = y, x % y\n    return x + (list({'k', str(a)})[0].count('k') if a > 1000 else 0)\n",
            FailureReason::GateFail,
        ),
        (
            "syntax error",
            "def gcd(a, b)\n    return a\n",
            FailureReason::SampleFail,
        ),
        ("empty", "", FailureReason::SampleFail),
    ];
    for (name, code, want) in cases {
        let r = holdout_gate(&sb, code, &gap, &c);
        assert_eq!(r.reason, Some(*want), "{name}: {r:#?}");
        assert!(!r.passed, "{name}");
    }
    // The pool survived all of it.
    let r = holdout_gate(&sb, GCD, &gap, &c);
    assert!(r.passed, "{r:#?}");
}

#[test]
fn input_mutation_cannot_corrupt_the_oracle() {
    let sb = common::sandbox();
    let gap = Gap::new(
        "total",
        "total(xs: list[int]) -> int",
        "sum of a list",
        vec![SampleCase {
            args: vec![Value::List(vec![Value::int(1), Value::int(2)])],
            expected: Value::int(3),
        }],
        |rng: &mut Rng| {
            let len = rng.below(8) as usize + 1;
            vec![Value::List(
                (0..len)
                    .map(|_| Value::int(rng.range_i64(0, 100)))
                    .collect(),
            )]
        },
        Judge::oracle(|a: &[Value]| match &a[0] {
            Value::List(xs) => Ok(Value::int(xs.iter().filter_map(Value::as_i64).sum::<i64>())),
            _ => Err("not a list".into()),
        }),
    )
    .unwrap();
    // Clears its input and returns the (now empty) sum; if mutation reached the oracle it would
    // look right.
    let r = holdout_gate(
        &sb,
        "def total(xs):\n    xs.clear()\n    return sum(xs)\n",
        &gap,
        &config(200, 2),
    );
    assert_eq!(r.reason, Some(FailureReason::SampleFail), "{r:#?}");
    let ok = holdout_gate(
        &sb,
        "def total(xs):\n    s = sum(xs)\n    xs.clear()\n    return s\n",
        &gap,
        &config(200, 2),
    );
    assert!(ok.passed, "{ok:#?}");
}
