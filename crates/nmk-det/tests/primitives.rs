//! The built-in primitive library: every computation agrees with its independent oracle on
//! seeded random instances, the check can fail, known answers hold, and hostile arguments are
//! refused with the right typed error.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use nmk_det::gate::Rng;
use nmk_det::primitives::{
    self, Kind, Primitive, PrimitiveError, catalog, find, regex, self_check,
};
use nmk_det::{Integer, Value};
use proptest::prelude::*;

fn call(name: &str, args: Vec<Value>) -> Result<Value, PrimitiveError> {
    find(name)
        .unwrap_or_else(|| panic!("no primitive {name}"))
        .call(&args)
}

fn s(x: &str) -> Value {
    Value::str(x)
}

fn i(x: i64) -> Value {
    Value::int(x)
}

fn ints(xs: &[i64]) -> Value {
    Value::List(xs.iter().copied().map(Value::int).collect())
}

fn edge(a: i64, b: i64, w: i64) -> Value {
    Value::Tuple(vec![i(a), i(b), i(w)])
}

// ---- The catalogue and self checks ----

#[test]
fn every_computation_agrees_with_its_oracle_on_2000_instances() {
    for p in catalog().iter().filter(|p| p.kind() == Kind::Computation) {
        for seed in [1u64, 0xDEAD_BEEF] {
            let report = self_check(p, 2000, seed).unwrap();
            assert!(
                report.passed,
                "{} failed at seed {seed}: {:?}",
                p.name, report.first_fail
            );
            assert_eq!(report.n, 2000);
        }
    }
}

#[test]
fn the_catalogue_is_complete_named_uniquely_and_findable() {
    let names: Vec<&str> = catalog().iter().map(|p| p.name).collect();
    for want in [
        "count_letter",
        "count_byte",
        "gcd",
        "is_prime",
        "primes_up_to",
        "shortest_path",
        "sort_unique",
        "parse_date",
        "days_between",
        "add_days",
        "json_shape_ok",
        "regex_match",
        "grapheme_count",
        "evidence_cited",
        "format_contract_ok",
        "no_secret_or_raw_cot",
    ] {
        assert!(names.contains(&want), "{want} missing");
        let p = find(want).unwrap();
        assert!(
            p.signature.starts_with(&format!("{want}(")),
            "{}",
            p.signature
        );
        assert!(!p.description.is_empty());
    }
    let mut sorted = names.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), names.len());
    assert!(find("no_such_primitive").is_none());
}

#[test]
fn generators_are_deterministic_and_exercise_both_outcomes() {
    for p in catalog().iter().filter(|p| p.kind() == Kind::Computation) {
        let a: Vec<_> = {
            let mut r = Rng::new(9);
            (0..50).map(|_| p.generate(&mut r).unwrap()).collect()
        };
        let b: Vec<_> = {
            let mut r = Rng::new(9);
            (0..50).map(|_| p.generate(&mut r).unwrap()).collect()
        };
        assert_eq!(a, b, "{}", p.name);
        // Every generator reaches at least one refused instance and several accepted ones, so the
        // error-agreement path and the value path are both exercised.
        let mut r = Rng::new(3);
        let outcomes: Vec<bool> = (0..2000)
            .map(|_| p.call(&p.generate(&mut r).unwrap()).is_ok())
            .collect();
        assert!(outcomes.iter().any(|ok| !ok), "{} never errs", p.name);
        assert!(
            outcomes.iter().filter(|ok| **ok).count() > 500,
            "{} mostly errs",
            p.name
        );
    }
}

#[test]
fn boolean_primitives_see_both_answers() {
    for name in ["is_prime", "json_shape_ok", "regex_match"] {
        let p = find(name).unwrap();
        let mut r = Rng::new(5);
        let answers: Vec<Value> = (0..2000)
            .filter_map(|_| p.call(&p.generate(&mut r).unwrap()).ok())
            .collect();
        let trues = answers.iter().filter(|v| **v == Value::Bool(true)).count();
        let falses = answers.iter().filter(|v| **v == Value::Bool(false)).count();
        assert!(
            trues > 50 && falses > 50,
            "{name}: {trues} true, {falses} false"
        );
    }
}

#[test]
fn validators_are_callable_but_refuse_a_self_check() {
    for name in [
        "evidence_cited",
        "format_contract_ok",
        "no_secret_or_raw_cot",
    ] {
        let p = find(name).unwrap();
        assert_eq!(p.kind(), Kind::Validator);
        assert_eq!(
            self_check(p, 10, 1),
            Err(PrimitiveError::NoOracle { name: p.name })
        );
        assert!(p.oracle(&[]).is_none());
        assert!(p.generate(&mut Rng::new(1)).is_none());
    }
    assert_eq!(
        call("no_secret_or_raw_cot", vec![s("<think>hmm</think> 4")]),
        Ok(Value::Bool(false))
    );
    assert_eq!(
        call("no_secret_or_raw_cot", vec![s("the answer is 4")]),
        Ok(Value::Bool(true))
    );
    assert_eq!(
        call(
            "format_contract_ok",
            vec![
                Value::map([("a", i(1))]),
                Value::map([("required_fields", Value::List(vec![s("a")]))])
            ]
        ),
        Ok(Value::Bool(true))
    );
    assert!(matches!(
        call("evidence_cited", vec![]),
        Err(PrimitiveError::Arity {
            expected: 1,
            got: 0
        })
    ));
}

// ---- Liveness: the check can fail ----

fn wrong_gcd(args: &[Value]) -> Result<Value, PrimitiveError> {
    let a = args.first().and_then(Value::as_i64).unwrap_or(0);
    let b = args.get(1).and_then(Value::as_i64).unwrap_or(0);
    Ok(Value::int(i128::from(a) + i128::from(b)))
}

fn regex_off_by_one_star(args: &[Value]) -> Result<Value, PrimitiveError> {
    // The real matcher, except that it refuses to match the empty text: a subtle perturbation
    // that only instances like ("a*", "") expose.
    let real = find("regex_match").unwrap().call(args)?;
    if args.get(1) == Some(&Value::str("")) {
        return Ok(Value::Bool(false));
    }
    Ok(real)
}

fn lax_dates(args: &[Value]) -> Result<Value, PrimitiveError> {
    // Accepts 29 February in every year.
    if let Some(Value::Str(t)) = args.first()
        && t.ends_with("-02-29")
        && t.len() == 10
    {
        let y: i64 = t[..4].parse().unwrap_or(1);
        return Ok(Value::Tuple(vec![i(y), i(2), i(29)]));
    }
    find("parse_date").unwrap().call(args)
}

fn dijkstra_ignoring_zero_weights(args: &[Value]) -> Result<Value, PrimitiveError> {
    // Drops zero-weight edges: wrong exactly when a zero edge matters.
    let mut args = args.to_vec();
    if let Some(Value::List(edges)) = args.get_mut(1) {
        edges.retain(|e| match e {
            Value::Tuple(t) | Value::List(t) => t.get(2) != Some(&i(0)),
            _ => true,
        });
    }
    find("shortest_path").unwrap().call(&args)
}

fn errs_never(args: &[Value]) -> Result<Value, PrimitiveError> {
    // Swallows every refusal: agreement on errors is checked too.
    Ok(find("primes_up_to")
        .unwrap()
        .call(args)
        .unwrap_or(Value::List(Vec::new())))
}

#[test]
fn the_check_catches_wrong_implementations() {
    let cases: [(&str, primitives::PrimitiveFn); 5] = [
        ("gcd", wrong_gcd),
        ("regex_match", regex_off_by_one_star),
        ("parse_date", lax_dates),
        ("shortest_path", dijkstra_ignoring_zero_weights),
        ("primes_up_to", errs_never),
    ];
    for (name, imp) in cases {
        let p: &Primitive = find(name).unwrap();
        let report = p.check_implementation(imp, 2000, 1).unwrap();
        assert!(!report.passed, "{name}: the wrong implementation passed");
        let fail = report.first_fail.unwrap();
        assert_ne!(
            (fail.primitive.is_ok(), fail.primitive.as_ref().ok()),
            (fail.oracle.is_ok(), fail.oracle.as_ref().ok()),
        );
    }
}

// ---- Arity and types ----

#[test]
fn arity_and_type_errors_name_the_parameter() {
    assert_eq!(
        call("gcd", vec![i(1)]),
        Err(PrimitiveError::Arity {
            expected: 2,
            got: 1
        })
    );
    assert_eq!(
        call("gcd", vec![i(1), s("2")]),
        Err(PrimitiveError::Type {
            param: "b",
            expected: "int",
            got: "str"
        })
    );
    assert_eq!(
        call("is_prime", vec![Value::Bool(true)]),
        Err(PrimitiveError::Type {
            param: "n",
            expected: "int",
            got: "bool"
        })
    );
    assert_eq!(
        call("count_letter", vec![Value::Bytes(vec![1]), s("a")]),
        Err(PrimitiveError::Type {
            param: "text",
            expected: "str",
            got: "bytes"
        })
    );
    assert_eq!(
        call("sort_unique", vec![Value::List(vec![i(1), s("x")])]),
        Err(PrimitiveError::Type {
            param: "items",
            expected: "int",
            got: "str"
        })
    );
    assert!(matches!(
        call("gcd", vec![Value::Int(Integer::Big("1".repeat(30))), i(1)]),
        Err(PrimitiveError::OutOfRange { param: "a", .. })
    ));
    assert!(matches!(
        call("regex_match", vec![s("a"), s("a"), s("a")]),
        Err(PrimitiveError::Arity {
            expected: 2,
            got: 3
        })
    ));
    // Every entry refuses an empty argument list (none takes zero arguments) without panicking.
    for p in catalog() {
        assert!(
            matches!(p.call(&[]), Err(PrimitiveError::Arity { got: 0, .. })),
            "{}",
            p.name
        );
    }
}

// ---- Known answers and errors per primitive ----

#[test]
fn counting() {
    assert_eq!(
        call("count_letter", vec![s("strawberry"), s("r")]),
        Ok(i(3))
    );
    assert_eq!(call("count_letter", vec![s("Rr"), s("r")]), Ok(i(1)));
    assert_eq!(call("count_letter", vec![s(""), s("r")]), Ok(i(0)));
    assert_eq!(call("count_letter", vec![s("🍓🍓x"), s("🍓")]), Ok(i(2)));
    // Precomposed é is one letter; e + U+0301 is an `e` and a mark.
    assert_eq!(
        call("count_letter", vec![s("é e\u{301}"), s("é")]),
        Ok(i(1))
    );
    assert_eq!(
        call("count_letter", vec![s("é e\u{301}"), s("e")]),
        Ok(i(1))
    );
    for bad in ["", "ab", "e\u{301}"] {
        assert!(matches!(
            call("count_letter", vec![s("abc"), s(bad)]),
            Err(PrimitiveError::Invalid {
                param: "letter",
                ..
            })
        ));
    }
    let huge = "a".repeat(primitives::text::MAX_TEXT_BYTES + 1);
    assert!(matches!(
        call("count_letter", vec![s(&huge), s("a")]),
        Err(PrimitiveError::TooLarge { param: "text", .. })
    ));
    assert_eq!(
        call("count_byte", vec![Value::Bytes(vec![0, 1, 0, 255]), i(0)]),
        Ok(i(2))
    );
    assert_eq!(
        call("count_byte", vec![Value::Bytes(vec![0, 1, 0, 255]), i(255)]),
        Ok(i(1))
    );
    for bad in [-1, 256, i64::MIN] {
        assert!(matches!(
            call("count_byte", vec![Value::Bytes(vec![]), i(bad)]),
            Err(PrimitiveError::OutOfRange { param: "byte", .. })
        ));
    }
}

#[test]
fn gcd_known_answers() {
    assert_eq!(call("gcd", vec![i(0), i(0)]), Ok(i(0)));
    assert_eq!(call("gcd", vec![i(0), i(7)]), Ok(i(7)));
    assert_eq!(call("gcd", vec![i(12), i(18)]), Ok(i(6)));
    assert_eq!(call("gcd", vec![i(-12), i(18)]), Ok(i(6)));
    assert_eq!(call("gcd", vec![i(17), i(17)]), Ok(i(17)));
    assert_eq!(call("gcd", vec![i(i64::MAX), i(i64::MAX - 1)]), Ok(i(1)));
    // 2**63 does not fit an i64: it comes back as a big integer, not a wrapped negative.
    assert_eq!(
        call("gcd", vec![i(i64::MIN), i(0)]),
        Ok(Value::Int(Integer::Big("9223372036854775808".into())))
    );
    assert_eq!(call("gcd", vec![i(i64::MIN), i(6)]), Ok(i(2)));
}

#[test]
fn primality_known_answers() {
    let prime = |n: i64| call("is_prime", vec![i(n)]).unwrap() == Value::Bool(true);
    for p in [
        2,
        3,
        5,
        97,
        65_537,
        2_147_483_647,
        1_000_000_007,
        (1 << 61) - 1,
    ] {
        assert!(prime(p), "{p}");
    }
    for c in [
        -7,
        0,
        1,
        4,
        561,
        2047,
        3_215_031_751,
        // The strong pseudoprime to bases 2..=37 is beyond u64; this one fools bases 2..=23.
        3_825_123_056_546_413_051,
        i64::MAX,
        i64::MIN,
    ] {
        assert!(!prime(c), "{c}");
    }
    // The largest prime an i64 can hold: 2**63 - 25.
    assert!(prime(9_223_372_036_854_775_783));
}

#[test]
fn sieve() {
    assert_eq!(call("primes_up_to", vec![i(1)]), Ok(ints(&[])));
    assert_eq!(call("primes_up_to", vec![i(-5)]), Ok(ints(&[])));
    assert_eq!(call("primes_up_to", vec![i(2)]), Ok(ints(&[2])));
    assert_eq!(
        call("primes_up_to", vec![i(30)]),
        Ok(ints(&[2, 3, 5, 7, 11, 13, 17, 19, 23, 29]))
    );
    let Value::List(big) = call("primes_up_to", vec![i(1_000_000)]).unwrap() else {
        panic!()
    };
    assert_eq!(big.len(), 78_498);
    assert!(matches!(
        call("primes_up_to", vec![i(10_000_001)]),
        Err(PrimitiveError::TooLarge { param: "n", .. })
    ));
    assert!(matches!(
        call("primes_up_to", vec![i(i64::MAX)]),
        Err(PrimitiveError::TooLarge { param: "n", .. })
    ));
}

#[test]
fn shortest_paths() {
    let edges = Value::List(vec![
        edge(0, 1, 4),
        edge(0, 2, 1),
        edge(2, 1, 2),
        edge(1, 3, 1),
        edge(3, 3, 0),
    ]);
    let sp = |src: i64, dst: i64| call("shortest_path", vec![i(5), edges.clone(), i(src), i(dst)]);
    assert_eq!(sp(0, 3), Ok(i(4)));
    assert_eq!(sp(0, 0), Ok(i(0)));
    assert_eq!(sp(3, 0), Ok(Value::Null)); // directed
    assert_eq!(sp(0, 4), Ok(Value::Null)); // isolated node
    assert!(matches!(
        call(
            "shortest_path",
            vec![i(2), Value::List(vec![edge(0, 1, -1)]), i(0), i(1)]
        ),
        Err(PrimitiveError::OutOfRange { param: "edges", .. })
    ));
    assert!(matches!(
        call(
            "shortest_path",
            vec![i(2), Value::List(vec![edge(0, 2, 1)]), i(0), i(1)]
        ),
        Err(PrimitiveError::OutOfRange { param: "edges", .. })
    ));
    assert!(matches!(
        call("shortest_path", vec![i(2), Value::List(vec![]), i(0), i(2)]),
        Err(PrimitiveError::OutOfRange { param: "dst", .. })
    ));
    assert!(matches!(
        call(
            "shortest_path",
            vec![i(20_000), Value::List(vec![]), i(0), i(1)]
        ),
        Err(PrimitiveError::TooLarge { param: "n", .. })
    ));
    let many = Value::List((0..100_001).map(|_| edge(0, 0, 0)).collect());
    assert!(matches!(
        call("shortest_path", vec![i(1), many, i(0), i(0)]),
        Err(PrimitiveError::TooLarge { param: "edges", .. })
    ));
    // A long chain of maximal weights still sums exactly.
    let chain = Value::List(
        (0..9_999)
            .map(|k| edge(k, k + 1, 1_000_000_000_000))
            .collect(),
    );
    assert_eq!(
        call("shortest_path", vec![i(10_000), chain, i(0), i(9_999)]),
        Ok(i(9_999_000_000_000_000))
    );
}

#[test]
fn sorting() {
    assert_eq!(
        call("sort_unique", vec![ints(&[3, 1, 3, -2, i64::MIN, 1])]),
        Ok(ints(&[i64::MIN, -2, 1, 3]))
    );
    assert_eq!(call("sort_unique", vec![ints(&[])]), Ok(ints(&[])));
    assert_eq!(
        call("sort_unique", vec![Value::Tuple(vec![i(2), i(1)])]),
        Ok(ints(&[1, 2]))
    );
    assert!(matches!(
        call("sort_unique", vec![s("321")]),
        Err(PrimitiveError::Type { param: "items", .. })
    ));
}

#[test]
fn dates() {
    let t = |y: i64, m: i64, d: i64| Value::Tuple(vec![i(y), i(m), i(d)]);
    assert_eq!(
        call("parse_date", vec![s("2024-02-29")]),
        Ok(t(2024, 2, 29))
    );
    assert_eq!(
        call("parse_date", vec![s("2000-02-29")]),
        Ok(t(2000, 2, 29))
    );
    assert_eq!(call("parse_date", vec![s("0001-01-01")]), Ok(t(1, 1, 1)));
    for bad in [
        "1900-02-29",
        "2023-02-29",
        "2024-04-31",
        "2024-13-01",
        "2024-00-10",
        "0000-01-01",
        "2024-1-01",
        "2024/01/01",
        " 2024-01-01",
        "",
    ] {
        assert!(
            matches!(
                call("parse_date", vec![s(bad)]),
                Err(PrimitiveError::Invalid { .. })
            ),
            "{bad}"
        );
    }
    let between = |a: &str, b: &str| call("days_between", vec![s(a), s(b)]);
    assert_eq!(between("2024-01-01", "2024-12-31"), Ok(i(365)));
    assert_eq!(between("2023-01-01", "2023-12-31"), Ok(i(364)));
    assert_eq!(between("1900-02-28", "1900-03-01"), Ok(i(1)));
    assert_eq!(between("2000-02-28", "2000-03-01"), Ok(i(2)));
    assert_eq!(between("1970-01-01", "2000-01-01"), Ok(i(10_957)));
    assert_eq!(between("2000-01-01", "1970-01-01"), Ok(i(-10_957)));
    assert_eq!(between("0001-01-01", "9999-12-31"), Ok(i(3_652_058)));
    let add = |d: &str, n: i64| call("add_days", vec![s(d), i(n)]);
    assert_eq!(add("2024-02-28", 1), Ok(s("2024-02-29")));
    assert_eq!(add("2023-02-28", 1), Ok(s("2023-03-01")));
    assert_eq!(add("2000-03-01", -1), Ok(s("2000-02-29")));
    assert_eq!(add("1900-03-01", -1), Ok(s("1900-02-28")));
    assert_eq!(add("2024-12-31", 1), Ok(s("2025-01-01")));
    assert_eq!(add("0001-01-01", 3_652_058), Ok(s("9999-12-31")));
    for (d, n) in [
        ("9999-12-31", 1),
        ("0001-01-01", -1),
        ("2024-01-01", i64::MAX),
        ("2024-01-01", i64::MIN),
    ] {
        assert!(
            matches!(
                add(d, n),
                Err(PrimitiveError::OutOfRange { param: "days", .. })
            ),
            "{d} {n}"
        );
    }
}

#[test]
fn json_shapes() {
    let shape = Value::map([
        ("name", s("str")),
        ("tags", Value::List(vec![s("str")])),
        ("age?", s("int")),
    ]);
    let ok = |text: &str, shape: &Value| call("json_shape_ok", vec![s(text), shape.clone()]);
    assert_eq!(
        ok(r#"{"name":"x","tags":["a","b"]}"#, &shape),
        Ok(Value::Bool(true))
    );
    assert_eq!(
        ok(r#"{"name":"x","tags":[],"age":3}"#, &shape),
        Ok(Value::Bool(true))
    );
    assert_eq!(
        ok(r#"{"name":"x","tags":[1]}"#, &shape),
        Ok(Value::Bool(false))
    );
    assert_eq!(ok(r#"{"name":"x"}"#, &shape), Ok(Value::Bool(false)));
    assert_eq!(
        ok(r#"{"name":"x","tags":[],"extra":1}"#, &shape),
        Ok(Value::Bool(false))
    );
    assert_eq!(
        ok(r#"{"name":"x","tags":[],"age":3.5}"#, &shape),
        Ok(Value::Bool(false))
    );
    assert_eq!(ok("not json", &shape), Ok(Value::Bool(false)));
    let pair = Value::Tuple(vec![s("int"), s("number")]);
    assert_eq!(ok("[1, 2.5]", &pair), Ok(Value::Bool(true)));
    assert_eq!(ok("[1, 2.5, 3]", &pair), Ok(Value::Bool(false)));
    assert_eq!(ok("1.0", &s("float")), Ok(Value::Bool(true)));
    assert_eq!(ok("1", &s("float")), Ok(Value::Bool(false)));
    for bad in [
        s("string"),
        Value::List(vec![]),
        i(1),
        Value::map([("a", s("int")), ("a?", s("int"))]),
        Value::dict([(i(1), s("int"))]),
    ] {
        assert!(
            matches!(
                call("json_shape_ok", vec![s("{}"), bad.clone()]),
                Err(PrimitiveError::Invalid { param: "shape", .. })
            ),
            "{bad}"
        );
    }
    // A hostile, deeply nested shape is refused before it is walked.
    let mut deep = s("int");
    for _ in 0..1_000 {
        deep = Value::List(vec![deep]);
    }
    assert!(matches!(
        call("json_shape_ok", vec![s("[]"), deep]),
        Err(PrimitiveError::TooLarge { param: "shape", .. })
    ));
}

#[test]
fn regexes() {
    let m = |p: &str, t: &str| call("regex_match", vec![s(p), s(t)]);
    let yes = |p: &str, t: &str| assert_eq!(m(p, t), Ok(Value::Bool(true)), "{p} ~ {t}");
    let no = |p: &str, t: &str| assert_eq!(m(p, t), Ok(Value::Bool(false)), "{p} !~ {t}");
    yes("", "");
    no("", "a");
    yes("abc", "abc");
    no("abc", "abcd"); // full match, not search
    no("bc", "abc");
    yes("a*", "");
    yes("a+b?", "aaab");
    no("a+", "");
    yes("(ab|cd)*", "abcdab");
    no("(ab|cd)*", "abc");
    yes("[a-c]+", "cab");
    no("[a-c]+", "cad");
    yes("[^a]", "é");
    yes(".", "é");
    no(".", "");
    yes("a|", "");
    yes("\\.\\*", ".*");
    no("\\.", "a");
    yes("[-a]*", "-a-");
    yes("[a-]", "-");
    yes("[\\]]", "]");
    yes("x^$y", "x^$y");
    for bad in [
        "*a", "a**", "a+?", "(a", "a)", "[", "[]", "[z-a]", "a\\", "\\d", "]",
    ] {
        assert!(
            matches!(
                m(bad, "a"),
                Err(PrimitiveError::Invalid {
                    param: "pattern",
                    ..
                })
            ),
            "{bad}"
        );
    }
    let deep = "(".repeat(101) + &")".repeat(101);
    assert!(matches!(m(&deep, ""), Err(PrimitiveError::Invalid { .. })));
    let ok_deep = "(".repeat(100) + "a" + &")".repeat(100);
    yes(&ok_deep, "a");
    assert!(matches!(
        m(&"a".repeat(1001), ""),
        Err(PrimitiveError::TooLarge {
            param: "pattern",
            ..
        })
    ));
    assert!(matches!(
        m("a*", &"a".repeat(100_001)),
        Err(PrimitiveError::TooLarge { param: "text", .. })
    ));
    assert!(matches!(
        m(&"a*".repeat(400), &"a".repeat(90_000)),
        Err(PrimitiveError::TooLarge { param: "text", .. })
    ));
}

#[test]
fn pathological_regexes_stay_linear() {
    let m = find("regex_match").unwrap();
    let started = Instant::now();
    for (pattern, text, want) in [
        ("(a*)*b", "a".repeat(30), false),
        ("(a*)*b", "a".repeat(30) + "b", true),
        ("(a|a)*b", "a".repeat(30), false),
        ("(a|aa)*c", "a".repeat(30), false),
        ("(a?){30}a{30}", "a".repeat(30), false), // braces are literals here
        ("(a*)*(b*)*c", "ab".repeat(5_000), false),
    ] {
        assert_eq!(
            m.call(&[s(pattern), s(&text)]),
            Ok(Value::Bool(want)),
            "{pattern}"
        );
    }
    let evil = "a?".repeat(30) + &"a".repeat(30);
    assert_eq!(
        m.call(&[s(&evil), s(&"a".repeat(30))]),
        Ok(Value::Bool(true))
    );
    // The work cap's worst case: a near-maximal pattern against a near-maximal text.
    let big_pattern = "(a|b)*".repeat(160);
    let big_text = "ab".repeat(50_000);
    assert_eq!(
        m.call(&[s(&big_pattern), s(&big_text)]),
        Err(PrimitiveError::TooLarge {
            param: "text",
            size: 961 * 100_001,
            cap: regex::MAX_WORK as u64
        })
    );
    let fits = "(a|b)*".repeat(30);
    assert_eq!(
        m.call(&[s(&fits), s(&"ab".repeat(50_000))]),
        Ok(Value::Bool(true))
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn graphemes() {
    let g = |t: &str| call("grapheme_count", vec![s(t)]);
    assert_eq!(g(""), Ok(i(0)));
    assert_eq!(g("abc"), Ok(i(3)));
    assert_eq!(g("e\u{301}\u{302}"), Ok(i(1)));
    assert_eq!(g("\r\n"), Ok(i(1)));
    assert_eq!(g("\n\r"), Ok(i(2)));
    assert_eq!(g("🇫🇷🇩🇪"), Ok(i(2)));
    assert_eq!(g("🇫🇷🇩"), Ok(i(2)));
    assert_eq!(g("👩\u{200D}👩\u{200D}👧"), Ok(i(1)));
    assert_eq!(g("👍\u{1F3FD}"), Ok(i(1)));
    assert_eq!(g("a\u{200D}👍"), Ok(i(2)));
    assert_eq!(g("\u{1100}\u{1161}\u{11A8}"), Ok(i(1)));
    assert_eq!(g("각\u{11A8}"), Ok(i(1)));
}

// ---- The oracles agree with the primitives on independent seeds, as proptests ----

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn self_check_passes_for_any_seed(seed in any::<u64>(), which in 0usize..13) {
        let p = &catalog()[which];
        prop_assert_eq!(p.kind(), Kind::Computation);
        let report = self_check(p, 100, seed).unwrap();
        prop_assert!(report.passed, "{}: {:?}", p.name, report.first_fail);
    }

    #[test]
    fn gcd_divides_both_and_sorting_is_idempotent(a in any::<i64>(), b in any::<i64>(),
                                                  xs in proptest::collection::vec(any::<i64>(), 0..50)) {
        let g = call("gcd", vec![i(a), i(b)]).unwrap();
        if let Some(g) = g.as_i64() {
            if g != 0 {
                prop_assert_eq!(a % g, 0);
                prop_assert_eq!(b % g, 0);
            } else {
                prop_assert!(a == 0 && b == 0);
            }
        }
        let once = call("sort_unique", vec![ints(&xs)]).unwrap();
        let twice = call("sort_unique", vec![once.clone()]).unwrap();
        prop_assert_eq!(once, twice);
    }

    #[test]
    fn add_days_inverts_days_between(n in -1_000_000i64..1_000_000) {
        let start = "2000-02-29";
        if let Ok(Value::Str(end)) = call("add_days", vec![s(start), i(n)]) {
            prop_assert_eq!(call("days_between", vec![s(start), s(&end)]).unwrap(), i(n));
        }
    }

    #[test]
    fn primitives_never_panic_on_junk(text in ".{0,40}", n in any::<i64>()) {
        for p in catalog() {
            let _ = p.call(&[s(&text), i(n)]);
            let _ = p.call(&[s(&text), s(&text)]);
            let _ = p.call(&[i(n)]);
            let _ = p.call(&[s(&text)]);
            let _ = p.call(&[i(n), ints(&[n]), i(n), i(n)]);
        }
    }
}

// ---- Exhaustive agreement on tiny domains: the two regex parsers and the grapheme rules ----

/// Every string of length up to `max` over `alphabet`.
fn all_strings(alphabet: &[char], max: usize) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut layer = vec![String::new()];
    for _ in 0..max {
        layer = layer
            .iter()
            .flat_map(|p| alphabet.iter().map(move |c| format!("{p}{c}")))
            .collect();
        out.extend(layer.iter().cloned());
    }
    out
}

#[test]
fn regex_parsers_and_matchers_agree_on_every_tiny_pattern() {
    // Every pattern of up to four characters over the metacharacters and two letters: the two
    // independently written parsers must accept and refuse exactly the same patterns, and the
    // matchers must agree on every short text.
    let p = find("regex_match").unwrap();
    let patterns = all_strings(
        &[
            'a', 'b', '*', '+', '?', '|', '(', ')', '[', ']', '-', '^', '\\', '.',
        ],
        4,
    );
    let texts = all_strings(&['a', 'b', '-'], 2);
    let mut accepted = 0;
    for pattern in &patterns {
        for text in &texts {
            let args = [s(pattern), s(text)];
            let got = p.call(&args);
            let want = p.oracle(&args).unwrap();
            match (&got, &want) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "{pattern:?} on {text:?}"),
                (Err(_), Err(_)) => {}
                _ => panic!("{pattern:?} on {text:?}: {got:?} vs {want:?}"),
            }
            accepted += usize::from(got.is_ok());
        }
    }
    assert!(accepted > 10_000, "{accepted}");
}

#[test]
fn grapheme_rules_agree_on_every_short_sequence() {
    let p = find("grapheme_count").unwrap();
    let domain = [
        'a',
        '\r',
        '\n',
        '\u{301}',
        '\u{200D}',
        '\u{FE0F}',
        '\u{1F3FB}',
        '👩',
        '❤',
        '\u{1F1EB}',
        '\u{1F1F7}',
        '\u{1100}',
        '\u{1161}',
        '\u{11A8}',
        '가',
        '각',
    ];
    for text in all_strings(&domain, 3) {
        let args = [s(&text)];
        assert_eq!(p.call(&args), p.oracle(&args).unwrap(), "{text:?}");
    }
}
