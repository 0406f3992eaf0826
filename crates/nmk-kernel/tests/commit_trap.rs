//! Acceptance behaviours of the commit trap (spec §6.4.2, §7 "commit_trap"), adapted to the
//! port's fixes: PROVEN binds the candidate's hash (D39), structured candidates are parsed
//! before comparison (D39), code without a checker or without a stated signature fails closed,
//! and a decision whose ledger entry cannot be written releases nothing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use nmk_det::oracles::OutputType;
use nmk_det::{ContentHash, ValidationLevel, Value, hash_value};
use nmk_kernel::budget::{Budget, BudgetLimits};
use nmk_kernel::commit_trap::{
    Case, CodeChecker, CommitTrap, Contract, Decision, ProvenRegistry, Signature, candidate_hash,
    ladder_validator, parse_params,
};
use nmk_kernel::ledger::{Head, LedgerBackend, LedgerError, StoredRow};
use nmk_kernel::{Action, Ledger, LedgerRecord, Verification};

// ---------------------------------------------------------------------------------------------
// Test doubles

/// Test double for the code checker: a tiny deterministic evaluator that understands only
/// functions of the form `def name(p, q): return p <op> q` (the `return` may be on the next
/// line) with `op` one of `+ - * ==`, over integer arguments. It never executes the candidate;
/// it reads the return expression. The real sandboxed checker (monty in a confined worker)
/// arrives with the deterministic-plane issue; this one only lets the ladder's rungs be
/// exercised.
struct ToyChecker;

struct ToyFunction {
    signature: Signature,
    lhs: String,
    op: String,
    rhs: String,
}

fn toy_parse(code: &str, entry: &str) -> Result<ToyFunction, String> {
    let header = format!("def {entry}(");
    let lines: Vec<&str> = code.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.trim_start().starts_with(&header))
        .ok_or_else(|| format!("entry {entry} not defined"))?;
    let line = lines[at].trim_start();
    let close = line.find(')').ok_or("SyntaxError: unclosed '('")?;
    let params = parse_params(&line[header.len()..close]).ok_or("SyntaxError: bad parameters")?;
    let after = line[close + 1..].trim_start();
    let rest = after
        .strip_prefix(':')
        .ok_or("SyntaxError: expected ':'")?
        .trim();
    let body = if rest.is_empty() {
        lines
            .get(at + 1)
            .map(|l| l.trim())
            .ok_or("SyntaxError: missing body")?
    } else {
        rest
    };
    let expr = body
        .strip_prefix("return ")
        .ok_or("SyntaxError: expected return")?;
    let parts: Vec<&str> = expr.split_whitespace().collect();
    let [lhs, op, rhs] = parts.as_slice() else {
        return Err("SyntaxError: unsupported expression".into());
    };
    if !["+", "-", "*", "=="].contains(op)
        || !params.iter().any(|p| p == lhs)
        || !params.iter().any(|p| p == rhs)
    {
        return Err("SyntaxError: unsupported expression".into());
    }
    Ok(ToyFunction {
        signature: Signature {
            name: entry.to_owned(),
            params,
        },
        lhs: (*lhs).to_owned(),
        op: (*op).to_owned(),
        rhs: (*rhs).to_owned(),
    })
}

impl CodeChecker for ToyChecker {
    fn parse(&self, code: &str, entry: &str) -> Result<Signature, String> {
        toy_parse(code, entry).map(|f| f.signature)
    }

    fn run_cases(
        &self,
        code: &str,
        entry: &str,
        cases: &[Case],
    ) -> Result<Vec<Result<Value, String>>, String> {
        let f = toy_parse(code, entry)?;
        Ok(cases
            .iter()
            .map(|case| {
                let mut bound: BTreeMap<&str, &Value> = BTreeMap::new();
                for (name, value) in f.signature.params.iter().zip(&case.args) {
                    bound.insert(name, value);
                }
                for (name, value) in &case.kwargs {
                    bound.insert(name, value);
                }
                let arg = |name: &str| {
                    bound
                        .get(name)
                        .and_then(|v| v.as_i64())
                        .ok_or_else(|| format!("TypeError: {name}"))
                };
                let (a, b) = (arg(&f.lhs)?, arg(&f.rhs)?);
                match f.op.as_str() {
                    "+" => a.checked_add(b).map(Value::int),
                    "-" => a.checked_sub(b).map(Value::int),
                    "*" => a.checked_mul(b).map(Value::int),
                    _ => Some(Value::Bool(a == b)),
                }
                .ok_or_else(|| "OverflowError".to_owned())
            })
            .collect())
    }
}

/// A checker whose sandbox always fails to run.
struct BrokenSandbox;

impl CodeChecker for BrokenSandbox {
    fn parse(&self, code: &str, entry: &str) -> Result<Signature, String> {
        ToyChecker.parse(code, entry)
    }
    fn run_cases(
        &self,
        _: &str,
        _: &str,
        _: &[Case],
    ) -> Result<Vec<Result<Value, String>>, String> {
        Err("worker died".into())
    }
}

/// A checker that returns fewer results than cases.
struct ShortChecker;

impl CodeChecker for ShortChecker {
    fn parse(&self, code: &str, entry: &str) -> Result<Signature, String> {
        ToyChecker.parse(code, entry)
    }
    fn run_cases(
        &self,
        _: &str,
        _: &str,
        _: &[Case],
    ) -> Result<Vec<Result<Value, String>>, String> {
        Ok(vec![Ok(Value::int(3))])
    }
}

/// A checker that panics while running cases.
struct PanickingChecker;

impl CodeChecker for PanickingChecker {
    fn parse(&self, code: &str, entry: &str) -> Result<Signature, String> {
        ToyChecker.parse(code, entry)
    }
    fn run_cases(
        &self,
        _: &str,
        _: &str,
        _: &[Case],
    ) -> Result<Vec<Result<Value, String>>, String> {
        panic!("checker bug")
    }
}

/// Proven primitives by entry, with their recorded code hashes.
struct Registry(BTreeMap<String, ContentHash>);

impl ProvenRegistry for Registry {
    fn code_hash(&self, entry: &str) -> Option<ContentHash> {
        self.0.get(entry).copied()
    }
}

/// A ledger backend whose every write fails.
struct FailingBackend;

impl LedgerBackend for FailingBackend {
    fn append(&mut self, _record: LedgerRecord) -> Result<nmk_kernel::LedgerEntry, LedgerError> {
        Err(LedgerError::Io(std::io::Error::other("disk full")))
    }
    fn tail(&mut self) -> Result<Option<Head>, LedgerError> {
        Ok(None)
    }
    fn count(&mut self) -> Result<u64, LedgerError> {
        Ok(0)
    }
    fn scan(&mut self, _: u64, _: &mut dyn FnMut(StoredRow) -> bool) -> Result<(), LedgerError> {
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Fixtures

const GOOD_ADD: &str = "def add(a, b):\n    return a + b\n";
const WRONG_ADD: &str = "def add(a, b):\n    return a - b\n";
const BROKEN_ADD: &str = "def add(a, b) return a +";

fn trap() -> CommitTrap {
    CommitTrap::new(Ledger::in_memory(), Budget::new(BudgetLimits::default()))
}

fn trap_with(limits: BudgetLimits) -> CommitTrap {
    CommitTrap::new(Ledger::in_memory(), Budget::new(limits))
}

fn checked_trap() -> CommitTrap {
    trap().with_code_checker(Box::new(ToyChecker))
}

fn add_contract() -> Contract {
    Contract {
        otype: Some(OutputType::Python),
        prompt: "Write a Python function def add(a, b) that returns the sum of a and b.".into(),
        cases: vec![
            Case::positional(vec![Value::int(2), Value::int(3)], Value::int(5)),
            Case::positional(vec![Value::int(7), Value::int(0)], Value::int(7)),
        ],
        ..Contract::new("add")
    }
}

fn json_contract(keys: &[&str]) -> Contract {
    Contract {
        required_keys: keys.iter().map(|k| (*k).to_owned()).collect(),
        ..Contract::new("plan")
    }
}

fn assert_not_released(d: &Decision) {
    assert_ne!(d.action, Action::Emit, "{d:?}");
    assert!(d.output.is_none(), "{d:?}");
    assert!(!d.committed());
    assert_eq!(d.verification, Verification::Unverified);
}

fn entry(d: &Decision) -> &nmk_kernel::LedgerEntry {
    d.ledger_entry.as_ref().expect("a ledger entry")
}

// ---------------------------------------------------------------------------------------------
// Ladder and actions

#[test]
fn fenced_json_with_required_keys_emits_at_schema() {
    let mut t = trap();
    let candidate = "Here is the plan:\n```json\n{\"steps\": [1, 2], \"owner\": \"ops\"}\n```\n";
    let d = t.commit(
        candidate,
        &json_contract(&["steps", "owner"]),
        1,
        ValidationLevel::Schema,
    );
    assert_eq!(d.action, Action::Emit);
    assert_eq!(d.level, ValidationLevel::Schema);
    assert_eq!(d.output.as_deref(), Some(candidate));
    assert!(d.committed());
    assert_eq!(d.verification, Verification::Checked);
    assert_eq!(entry(&d).record.action, Action::Emit);
    assert_eq!(t.ledger().len().unwrap(), 1);
}

#[test]
fn json_missing_a_required_key_is_not_emitted() {
    let d = trap().commit(
        r#"{"steps": []}"#,
        &json_contract(&["steps", "owner"]),
        1,
        ValidationLevel::Schema,
    );
    assert_eq!(d.level, ValidationLevel::None);
    assert_eq!(d.reason, "form_invalid:missing_keys:owner");
    assert_eq!(d.action, Action::Repair);
    assert_not_released(&d);
}

#[test]
fn python_add_passing_its_cases_emits_at_oracle() {
    let d = checked_trap().commit(GOOD_ADD, &add_contract(), 1, ValidationLevel::Oracle);
    assert_eq!(d.action, Action::Emit);
    assert_eq!(d.level, ValidationLevel::Oracle);
    assert_eq!(d.reason, "oracle_pass:2/2");
    assert_eq!(d.output.as_deref(), Some(GOOD_ADD));
    assert_eq!(d.verification, Verification::Verified);
}

#[test]
fn fenced_python_is_judged_by_its_code() {
    let candidate = format!("Sure:\n```python\n{GOOD_ADD}```\n");
    let d = checked_trap().commit(&candidate, &add_contract(), 1, ValidationLevel::Oracle);
    assert_eq!(d.level, ValidationLevel::Oracle, "{d:?}");
    assert_eq!(d.output.as_deref(), Some(candidate.as_str()));
}

#[test]
fn broken_python_repairs_without_output_at_none() {
    let d = checked_trap().commit(BROKEN_ADD, &add_contract(), 1, ValidationLevel::Oracle);
    assert_eq!(d.action, Action::Repair);
    assert_eq!(d.level, ValidationLevel::None);
    assert!(d.reason.starts_with("form_invalid:python:"), "{}", d.reason);
    assert_not_released(&d);
}

#[test]
fn wrong_add_repairs_at_property() {
    let d = checked_trap().commit(WRONG_ADD, &add_contract(), 1, ValidationLevel::Oracle);
    assert_eq!(d.action, Action::Repair);
    assert_eq!(d.level, ValidationLevel::Property);
    // add(7, 0) is 7 either way; add(2, 3) is -1, not 5.
    assert_eq!(d.reason, "oracle_fail:1/2");
    assert_not_released(&d);
}

#[test]
fn wrong_compiling_code_is_emitted_at_min_level_syntax() {
    // The always-accept control: the threshold, not the ladder, decides release.
    let d = checked_trap().commit(WRONG_ADD, &add_contract(), 1, ValidationLevel::Syntax);
    assert_eq!(d.action, Action::Emit);
    assert_eq!(d.level, ValidationLevel::Property);
    assert_eq!(d.verification, Verification::Validated);
}

#[test]
fn invalid_json_is_not_emitted() {
    let contract = Contract {
        otype: Some(OutputType::Json),
        ..Contract::new("plan")
    };
    for min in [ValidationLevel::Syntax, ValidationLevel::None] {
        let d = trap().commit("{\"steps\": [1, 2,}", &contract, 1, min);
        assert_eq!(d.level, ValidationLevel::None);
        assert!(d.reason.starts_with("form_invalid:json:"), "{}", d.reason);
        assert_not_released(&d);
    }
}

#[test]
fn text_without_cases_or_substrings_bails_at_the_default_threshold() {
    let d = trap().commit(
        "The capital of France is Paris.",
        &Contract::new("answer"),
        1,
        ValidationLevel::Oracle,
    );
    assert_eq!(d.level, ValidationLevel::Syntax);
    assert_eq!(d.action, Action::Bail);
    assert_not_released(&d);
    let with_substring = Contract {
        must_include: vec!["Paris".into()],
        ..Contract::new("answer")
    };
    let d = trap().commit(
        "The capital of France is Paris.",
        &with_substring,
        1,
        ValidationLevel::Oracle,
    );
    assert_eq!(d.level, ValidationLevel::Schema);
    assert_eq!(d.action, Action::Bail);
}

#[test]
fn xml_is_checked_for_well_formedness() {
    let contract = Contract {
        otype: Some(OutputType::Xml),
        ..Contract::new("report")
    };
    let good = trap().commit("<r><a x='1'/></r>", &contract, 1, ValidationLevel::Syntax);
    assert_eq!(good.action, Action::Emit);
    assert_eq!(good.level, ValidationLevel::Syntax);
    let bad = trap().commit("<r><a></r>", &contract, 1, ValidationLevel::Syntax);
    assert_eq!(bad.level, ValidationLevel::None);
    assert!(
        bad.reason.starts_with("form_invalid:xml:"),
        "{}",
        bad.reason
    );
    assert_not_released(&bad);
}

#[test]
fn a_none_verdict_is_never_emitted_even_at_min_level_none() {
    let contract = Contract {
        otype: Some(OutputType::Json),
        ..Contract::new("plan")
    };
    let d = trap().commit("not json", &contract, 1, ValidationLevel::None);
    assert_eq!(d.action, Action::Repair);
    assert_not_released(&d);
}

// ---------------------------------------------------------------------------------------------
// Code fails closed

#[test]
fn python_is_never_emitted_without_a_code_checker() {
    for min in [
        ValidationLevel::Oracle,
        ValidationLevel::Syntax,
        ValidationLevel::None,
    ] {
        let d = trap().commit(GOOD_ADD, &add_contract(), 1, min);
        assert_eq!(d.level, ValidationLevel::None);
        assert_eq!(d.reason, "no_code_checker");
        assert_not_released(&d);
    }
    // Detected (undeclared) Python fails closed the same way.
    let undeclared = Contract {
        otype: None,
        ..add_contract()
    };
    let d = trap().commit(GOOD_ADD, &undeclared, 1, ValidationLevel::Syntax);
    assert_eq!(d.reason, "no_code_checker");
    assert_not_released(&d);
}

#[test]
fn python_without_a_stated_signature_never_reaches_property() {
    let contract = Contract {
        prompt: "Add two numbers.".into(),
        ..add_contract()
    };
    let d = checked_trap().commit(GOOD_ADD, &contract, 1, ValidationLevel::Property);
    assert_eq!(d.level, ValidationLevel::Schema);
    assert_eq!(d.reason, "signature_unknown");
    assert_eq!(d.action, Action::Bail);
    assert_not_released(&d);
}

#[test]
fn python_with_a_mismatched_signature_stops_at_schema() {
    let candidate = "def add(x, y):\n    return x + y\n";
    let d = checked_trap().commit(candidate, &add_contract(), 1, ValidationLevel::Oracle);
    assert_eq!(d.level, ValidationLevel::Schema);
    assert_eq!(d.reason, "signature_mismatch");
    assert_eq!(d.action, Action::Bail);
}

#[test]
fn python_without_cases_tops_out_at_property() {
    let contract = Contract {
        cases: vec![],
        ..add_contract()
    };
    let d = checked_trap().commit(GOOD_ADD, &contract, 1, ValidationLevel::Oracle);
    assert_eq!(d.level, ValidationLevel::Property);
    assert_eq!(d.reason, "signature_ok_no_cases");
    assert_eq!(d.action, Action::Repair);
}

#[test]
fn python_results_compare_type_strictly() {
    let same = |expected: Value| Contract {
        prompt: "Implement same(a, b).".into(),
        cases: vec![Case::positional(
            vec![Value::int(7), Value::int(7)],
            expected,
        )],
        ..Contract {
            otype: Some(OutputType::Python),
            ..Contract::new("same")
        }
    };
    let code = "def same(a, b): return a == b";
    let as_int = checked_trap().commit(code, &same(Value::int(1)), 1, ValidationLevel::Oracle);
    assert_eq!(as_int.level, ValidationLevel::Property, "True is not 1");
    let as_bool = checked_trap().commit(code, &same(Value::Bool(true)), 1, ValidationLevel::Oracle);
    assert_eq!(as_bool.level, ValidationLevel::Oracle);
}

#[test]
fn keyword_cases_are_passed_by_name() {
    let contract = Contract {
        cases: vec![Case {
            args: vec![Value::int(10)],
            kwargs: [("b".to_owned(), Value::int(5))].into_iter().collect(),
            expected: Value::int(15),
        }],
        ..add_contract()
    };
    let d = checked_trap().commit(GOOD_ADD, &contract, 1, ValidationLevel::Oracle);
    assert_eq!(d.level, ValidationLevel::Oracle, "{d:?}");
}

// ---------------------------------------------------------------------------------------------
// Data candidates with cases: parse first, compare type-strictly

fn expecting(otype: Option<OutputType>, expected: Value) -> Contract {
    Contract {
        otype,
        cases: vec![Case::positional(vec![], expected)],
        ..Contract::new("value")
    }
}

#[test]
fn structured_candidates_are_parsed_not_compared_as_text() {
    let expected = Value::map([("a", Value::int(1)), ("b", Value::List(vec![]))]);
    let spaced = "{ \"b\" : [ ],\n  \"a\": 1 }";
    let d = trap().commit(
        spaced,
        &expecting(None, expected),
        1,
        ValidationLevel::Oracle,
    );
    assert_eq!(d.level, ValidationLevel::Oracle, "{d:?}");
    assert_eq!(d.action, Action::Emit);
    let number = trap().commit(
        " 42\n",
        &expecting(Some(OutputType::Text), Value::int(42)),
        1,
        ValidationLevel::Oracle,
    );
    assert_eq!(number.level, ValidationLevel::Oracle);
}

#[test]
fn data_comparison_is_type_strict() {
    let cases = [
        ("true", Value::int(1)),
        ("1", Value::Bool(true)),
        ("1.0", Value::int(1)),
        ("[1, 2]", Value::Tuple(vec![Value::int(1), Value::int(2)])),
        ("NaN", Value::float(1.0).unwrap()),
        ("\"5\"", Value::int(5)),
    ];
    for (candidate, expected) in cases {
        let d = trap().commit(
            candidate,
            &expecting(Some(OutputType::Text), expected.clone()),
            1,
            ValidationLevel::Oracle,
        );
        assert!(
            d.level < ValidationLevel::Oracle,
            "{candidate} ~ {expected}"
        );
        assert_not_released(&d);
    }
    // A canonical text states the tuple exactly and passes.
    let d = trap().commit(
        r#"{"$tuple":[1,2]}"#,
        &expecting(None, Value::Tuple(vec![Value::int(1), Value::int(2)])),
        1,
        ValidationLevel::Oracle,
    );
    assert_eq!(d.level, ValidationLevel::Oracle);
}

#[test]
fn matching_shape_with_wrong_values_is_property_and_wrong_shape_is_not() {
    let expected = Value::map([("a", Value::int(1))]);
    let d = trap().commit(
        r#"{"a": 2}"#,
        &expecting(None, expected.clone()),
        1,
        ValidationLevel::Oracle,
    );
    assert_eq!(d.level, ValidationLevel::Property);
    assert_eq!(d.reason, "value_mismatch:0/1");
    assert_eq!(d.action, Action::Repair);
    let d = trap().commit(
        r#"{"b": 1}"#,
        &expecting(None, expected),
        1,
        ValidationLevel::Oracle,
    );
    assert_eq!(d.level, ValidationLevel::Syntax);
    assert_eq!(d.reason, "struct_mismatch:0/1");
    assert_eq!(d.action, Action::Bail);
}

// ---------------------------------------------------------------------------------------------
// PROVEN binds the candidate

fn proven_contract() -> Contract {
    Contract {
        proven: true,
        ..add_contract()
    }
}

fn registry_for(code: &str) -> Box<Registry> {
    Box::new(Registry(
        [("add".to_owned(), candidate_hash(code))]
            .into_iter()
            .collect(),
    ))
}

#[test]
fn proven_primitive_with_the_candidates_hash_emits_at_proven() {
    // No checker and no cases needed: the hold-out gate already proved this exact code.
    let mut t = trap().with_proven_registry(registry_for(GOOD_ADD));
    let d = t.commit(GOOD_ADD, &proven_contract(), 1, ValidationLevel::Oracle);
    assert_eq!(d.action, Action::Emit);
    assert_eq!(d.level, ValidationLevel::Proven);
    assert_eq!(d.reason, "proven:add");
    assert_eq!(d.verification, Verification::Verified);
}

#[test]
fn proven_is_refused_when_the_candidate_differs_from_the_primitive() {
    let mut t = trap().with_proven_registry(registry_for(GOOD_ADD));
    let d = t.commit(WRONG_ADD, &proven_contract(), 1, ValidationLevel::Oracle);
    assert_ne!(d.level, ValidationLevel::Proven);
    assert!(
        d.reason.ends_with("|proven_refused:hash_mismatch"),
        "{}",
        d.reason
    );
    assert_not_released(&d);
    // With a checker the different candidate still climbs on its own merits, never to PROVEN.
    let mut t = checked_trap().with_proven_registry(registry_for(GOOD_ADD));
    let other_good = "def add(a, b):\n    return b + a\n";
    let d = t.commit(other_good, &proven_contract(), 1, ValidationLevel::Oracle);
    assert_eq!(d.level, ValidationLevel::Oracle);
    assert_eq!(d.reason, "oracle_pass:2/2|proven_refused:hash_mismatch");
}

#[test]
fn proven_needs_a_registered_primitive_and_the_contract_flag() {
    let d = trap().commit(GOOD_ADD, &proven_contract(), 1, ValidationLevel::Oracle);
    assert_eq!(d.reason, "no_code_checker|proven_refused:no_registry");
    let mut t = trap().with_proven_registry(Box::new(Registry(BTreeMap::new())));
    let d = t.commit(GOOD_ADD, &proven_contract(), 1, ValidationLevel::Oracle);
    assert_eq!(d.reason, "no_code_checker|proven_refused:no_primitive");
    // The registry alone is not enough: the contract must allow a proven answer.
    let mut t = trap().with_proven_registry(registry_for(GOOD_ADD));
    let d = t.commit(GOOD_ADD, &add_contract(), 1, ValidationLevel::Oracle);
    assert_eq!(d.level, ValidationLevel::None);
}

// ---------------------------------------------------------------------------------------------
// Budget

#[test]
fn max_traps_allows_two_emits_then_rejects() {
    let mut t = trap_with(BudgetLimits {
        max_traps: 2,
        ..BudgetLimits::default()
    })
    .with_code_checker(Box::new(ToyChecker));
    for time in 1..=2 {
        let d = t.commit(GOOD_ADD, &add_contract(), time, ValidationLevel::Oracle);
        assert_eq!(d.action, Action::Emit);
    }
    let d = t.commit(GOOD_ADD, &add_contract(), 3, ValidationLevel::Oracle);
    assert_eq!(d.action, Action::Reject);
    assert!(d.reason.contains("max_traps"), "{}", d.reason);
    assert_eq!(d.reason, "budget:max_traps:2");
    assert_not_released(&d);
    assert_eq!(t.budget().n_traps(), 2);
}

#[test]
fn max_same_op_rejects_the_second_commit_of_an_op() {
    let mut t = trap_with(BudgetLimits {
        max_same_op: 1,
        ..BudgetLimits::default()
    });
    let contract = json_contract(&["a"]);
    let first = t.commit(r#"{"a": 1}"#, &contract, 1, ValidationLevel::Schema);
    assert_eq!(first.action, Action::Emit);
    let second = t.commit(r#"{"a": 1}"#, &contract, 2, ValidationLevel::Schema);
    assert_eq!(second.action, Action::Reject);
    assert!(second.reason.contains("max_same_op"), "{}", second.reason);
    // Another op still has budget.
    let other = t.commit(
        r#"{"a": 1}"#,
        &Contract::new("other"),
        3,
        ValidationLevel::Syntax,
    );
    assert_eq!(other.action, Action::Emit);
}

#[test]
fn budget_refusal_writes_a_reject_entry_and_releases_nothing() {
    let mut t = trap_with(BudgetLimits {
        max_traps: 0,
        ..BudgetLimits::default()
    });
    let d = t.commit(
        r#"{"a": 1}"#,
        &json_contract(&["a"]),
        9,
        ValidationLevel::Schema,
    );
    assert_eq!(d.action, Action::Reject);
    assert_not_released(&d);
    let e = entry(&d);
    assert_eq!(e.record.action, Action::Reject);
    assert_eq!(e.record.level, ValidationLevel::None);
    assert_eq!(e.record.result, hash_value(&Value::Null));
    assert_eq!(e.record.validator, None, "the ladder never ran");
    assert_eq!(
        e.record.detail,
        Value::map([("reason", Value::str("budget:max_traps:0"))])
    );
    assert_eq!(t.ledger().len().unwrap(), 1);
}

#[test]
fn a_disabled_op_is_rejected() {
    let mut t = trap();
    t.budget_mut().disable("danger");
    let d = t.commit("fine", &Contract::new("danger"), 1, ValidationLevel::Syntax);
    assert_eq!(d.action, Action::Reject);
    assert!(d.reason.contains("op_disabled"), "{}", d.reason);
    assert_not_released(&d);
}

#[test]
fn a_validation_step_that_errors_disables_the_op_and_rejects() {
    let mut t = trap().with_code_checker(Box::new(BrokenSandbox));
    let d = t.commit(GOOD_ADD, &add_contract(), 1, ValidationLevel::Oracle);
    assert_eq!(d.action, Action::Reject);
    assert_eq!(d.reason, "handler_error:run_cases:worker died");
    assert_not_released(&d);
    assert_eq!(entry(&d).record.validator, Some(ladder_validator()));
    assert!(t.budget().is_disabled("add"));
    let again = t.commit(GOOD_ADD, &add_contract(), 2, ValidationLevel::Oracle);
    assert_eq!(again.reason, "budget:op_disabled:add");

    let mut short = trap().with_code_checker(Box::new(ShortChecker));
    let d = short.commit(GOOD_ADD, &add_contract(), 1, ValidationLevel::Oracle);
    assert_eq!(d.reason, "handler_error:case_count:2!=1");
    assert_not_released(&d);
}

#[test]
fn a_panicking_checker_is_a_handler_error_not_a_crash() {
    let mut t = trap().with_code_checker(Box::new(PanickingChecker));
    let d = t.commit(GOOD_ADD, &add_contract(), 1, ValidationLevel::Oracle);
    assert_eq!(d.action, Action::Reject);
    assert_eq!(d.reason, "handler_error:panic:checker bug");
    assert_not_released(&d);
    assert!(t.budget().is_disabled("add"));
}

// ---------------------------------------------------------------------------------------------
// Ledger

#[test]
fn the_entry_seals_every_binding() {
    let contract = Contract {
        op_version: "v3".into(),
        ..add_contract()
    };
    let mut t = checked_trap();
    let d = t.commit(GOOD_ADD, &contract, 500, ValidationLevel::Oracle);
    let e = entry(&d);
    let r = &e.record;
    assert_eq!(r.opcode, "add");
    assert_eq!(r.op_version, "v3");
    assert_eq!(r.level.as_str(), "ORACLE");
    assert_eq!(r.action.as_str(), "emit");
    assert_eq!(r.logical_time, 500);
    assert_eq!(r.verification, Verification::Verified);
    assert_eq!(r.validator, Some(ladder_validator()));
    assert_eq!(
        r.validator
            .as_ref()
            .map(|v| (v.name.as_str(), v.version.as_str())),
        Some(("commit_trap.ladder", "1"))
    );
    assert_eq!(
        r.inputs,
        [("candidate".to_owned(), candidate_hash(GOOD_ADD))]
            .into_iter()
            .collect()
    );
    assert_eq!(r.result, hash_value(&Value::str(GOOD_ADD)));
    assert_eq!(r.contract, hash_value(&contract.to_value()));
    assert_eq!(
        r.detail,
        Value::map([("reason", Value::str("oracle_pass:2/2"))])
    );
    assert!(e.seal_holds());
    assert!(t.ledger().verify(None).unwrap().ok());
}

#[test]
fn a_non_emitted_entry_binds_null_as_its_result_and_is_unverified() {
    let mut t = checked_trap();
    let d = t.commit(WRONG_ADD, &add_contract(), 1, ValidationLevel::Oracle);
    let r = &entry(&d).record;
    assert_eq!(r.result, hash_value(&Value::Null));
    assert_eq!(r.verification, Verification::Unverified);
    assert_eq!(r.level, ValidationLevel::Property);
    assert_eq!(r.action, Action::Repair);
}

#[test]
fn editing_the_level_breaks_the_seal() {
    let d = checked_trap().commit(GOOD_ADD, &add_contract(), 500, ValidationLevel::Oracle);
    let mut forged = entry(&d).clone();
    assert!(forged.seal_holds());
    forged.record.level = ValidationLevel::Proven;
    assert!(!forged.seal_holds());
}

#[test]
fn same_inputs_and_time_on_fresh_traps_give_the_same_entry_hash() {
    let a = checked_trap().commit(GOOD_ADD, &add_contract(), 500, ValidationLevel::Oracle);
    let b = checked_trap().commit(GOOD_ADD, &add_contract(), 500, ValidationLevel::Oracle);
    assert_eq!(entry(&a).hash, entry(&b).hash);
    let later = checked_trap().commit(GOOD_ADD, &add_contract(), 501, ValidationLevel::Oracle);
    assert_ne!(entry(&a).hash, entry(&later).hash);
}

#[test]
fn the_ledger_verifies_after_a_sequence_of_decisions() {
    let mut t = trap_with(BudgetLimits {
        max_traps: 6,
        ..BudgetLimits::default()
    })
    .with_code_checker(Box::new(ToyChecker));
    let candidates = [
        GOOD_ADD, WRONG_ADD, BROKEN_ADD, "prose", GOOD_ADD, GOOD_ADD, GOOD_ADD,
    ];
    let mut actions = Vec::new();
    for (time, candidate) in candidates.iter().enumerate() {
        let d = t.commit(
            candidate,
            &add_contract(),
            time as u64,
            ValidationLevel::Oracle,
        );
        assert!(d.ledger_entry.is_some());
        actions.push(d.action);
    }
    assert_eq!(
        actions,
        [
            Action::Emit,
            Action::Repair,
            Action::Repair,
            Action::Repair,
            Action::Emit,
            Action::Emit,
            Action::Reject
        ]
    );
    // Exactly one entry per decision, chained and verifiable.
    assert_eq!(t.ledger().len().unwrap(), candidates.len() as u64);
    let report = t.ledger().verify(None).unwrap();
    assert!(report.ok(), "{:?}", report.problems);
    let entries = t.ledger().entries(0, 100).unwrap();
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(e.seq, i as u64);
        assert_eq!(e.record.logical_time, i as u64);
    }
}

#[test]
fn a_failing_ledger_write_never_releases_output() {
    let mut t = CommitTrap::new(
        Ledger::with_backend(Box::new(FailingBackend)),
        Budget::new(BudgetLimits::default()),
    )
    .with_code_checker(Box::new(ToyChecker));
    let d = t.commit(GOOD_ADD, &add_contract(), 1, ValidationLevel::Oracle);
    assert_eq!(d.action, Action::Reject);
    assert!(d.output.is_none());
    assert!(d.ledger_entry.is_none());
    assert_eq!(d.verification, Verification::Unverified);
    assert!(d.reason.starts_with("ledger_write:"), "{}", d.reason);
    assert!(d.reason.contains("disk full"), "{}", d.reason);
}

// ---------------------------------------------------------------------------------------------
// Contract hashing

#[test]
fn contracts_differing_only_in_cases_hash_differently() {
    let a = add_contract();
    let mut b = add_contract();
    b.cases[0].expected = Value::int(6);
    assert_ne!(a.hash(), b.hash());
    let mut c = add_contract();
    c.cases.reverse();
    assert_ne!(a.hash(), c.hash(), "case order is bound");
    assert_eq!(a.hash(), add_contract().hash());
    assert_eq!(a.hash(), hash_value(&a.to_value()));
}

#[test]
fn set_valued_parts_hash_independently_of_order() {
    let a = Contract {
        required_keys: vec!["x".into(), "y".into()],
        must_include: vec!["p".into(), "q".into()],
        ..Contract::new("op")
    };
    let b = Contract {
        required_keys: vec!["y".into(), "x".into()],
        must_include: vec!["q".into(), "p".into()],
        ..Contract::new("op")
    };
    assert_eq!(a.hash(), b.hash());
    let with_set = |items: [i64; 3]| Contract {
        cases: vec![Case::positional(
            vec![],
            Value::set(items.into_iter().map(Value::int)),
        )],
        ..Contract::new("op")
    };
    assert_eq!(with_set([3, 1, 2]).hash(), with_set([1, 2, 3]).hash());
    let typed = Contract {
        otype: Some(OutputType::Json),
        ..Contract::new("op")
    };
    assert_ne!(typed.hash(), Contract::new("op").hash());
}

#[test]
fn an_unusable_contract_fails_closed() {
    let contract = Contract {
        entry: String::new(),
        ..Contract::new("op")
    };
    let d = trap().commit("text", &contract, 1, ValidationLevel::Syntax);
    assert_eq!(d.reason, "contract_invalid:empty_entry");
    assert_not_released(&d);
}

#[test]
fn an_oversized_candidate_is_rejected_before_any_check_and_ledgered() {
    use nmk_kernel::commit_trap::MAX_CANDIDATE_BYTES;
    let mut t = trap();
    let huge = format!(
        "```json\n{{\"a\": \"{}\"}}\n```",
        "x".repeat(MAX_CANDIDATE_BYTES)
    );
    let d = t.commit(&huge, &json_contract(&["a"]), 1, ValidationLevel::Schema);
    assert_eq!(d.action, Action::Reject);
    assert!(d.reason.starts_with("candidate_too_large:"), "{}", d.reason);
    assert_not_released(&d);
    assert!(d.ledger_entry.is_some());
    // Liveness: the same shape under the cap is emitted.
    let d = t.commit(
        "```json\n{\"a\": \"x\"}\n```",
        &json_contract(&["a"]),
        2,
        ValidationLevel::Schema,
    );
    assert_eq!(d.action, Action::Emit);
}

#[test]
fn decisions_on_model_proposals_bind_the_model() {
    use nmk_kernel::ledger::ModelBinding;
    let binding = ModelBinding {
        model: hash_value(&Value::str("model")),
        tokenizer: hash_value(&Value::str("tokenizer")),
        policy: hash_value(&Value::str("greedy")),
    };
    let mut bound = trap().with_model(binding.clone());
    let d = bound.commit(
        "```json\n{\"a\": 1}\n```",
        &json_contract(&["a"]),
        1,
        ValidationLevel::Schema,
    );
    assert_eq!(entry(&d).record.model.as_ref(), Some(&binding));
    // Liveness: an unbound trap records no model, and the two entries differ.
    let mut unbound = trap();
    let e = unbound.commit(
        "```json\n{\"a\": 1}\n```",
        &json_contract(&["a"]),
        1,
        ValidationLevel::Schema,
    );
    assert_eq!(entry(&e).record.model, None);
    assert_ne!(entry(&d).hash, entry(&e).hash);
}
