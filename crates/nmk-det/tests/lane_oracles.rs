//! Acceptance behaviours of the lane oracles and the data-form checks (spec §3.15, §7
//! "lane_oracles"), with test texts of our own.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use nmk_det::oracles::{
    FormError, LANE_ORACLE_NAMES, OutputType, check_form, detect_type, evidence_cited,
    extract_fenced, format_contract_ok, lane_oracle, missing_substrings, no_secret_or_raw_cot,
    parse_json_text, parse_structured, same_shape, strict_equal, xml_well_formed,
};
use nmk_det::{ValidationLevel, Value};

fn s(text: &str) -> Value {
    Value::str(text)
}

fn strings(items: &[&str]) -> Value {
    Value::List(items.iter().map(|i| s(i)).collect())
}

fn owned(items: &[&str]) -> Vec<String> {
    items.iter().map(|i| (*i).to_owned()).collect()
}

// ---------------------------------------------------------------------------------------------
// evidence_cited

#[test]
fn evidence_passes_counts_tied_to_results() {
    for text in [
        "Ran the suite: 12/12 cases passed.",
        "pytest finished, 3 tests passed in 0.4s",
        "===== 7 passed, 1 skipped in 1.02s =====",
        "All hidden tests: passed 20/20",
        "5/5 checks passed",
        "The patch turns 4/4 unit tests green",
    ] {
        assert!(evidence_cited(&s(text)), "{text:?} should cite evidence");
    }
}

#[test]
fn evidence_passes_dicts_with_truthy_evidence_keys() {
    for key in [
        "evidence",
        "known_facts",
        "citations",
        "proof",
        "proof_ref",
        "inferred_links",
    ] {
        let answer = Value::map([("answer", s("42")), (key, strings(&["ledger entry 7"]))]);
        assert!(evidence_cited(&answer), "dict with {key}");
    }
    let empty = Value::map([("answer", s("42")), ("evidence", Value::List(vec![]))]);
    assert!(!evidence_cited(&empty), "empty evidence is not evidence");
}

#[test]
fn evidence_passes_honest_abstention() {
    for text in [
        "Insufficient evidence to say which host was first.",
        "I could not verify the claim from the logs provided.",
        "Unable to determine the version from this output.",
    ] {
        assert!(evidence_cited(&s(text)), "{text:?}");
    }
}

#[test]
fn evidence_passes_commands_code_and_artifacts() {
    for text in [
        "Found it with `grep -rn beacon /var/log` on the sensor.",
        "Reproduce:\n$ cargo test -p nmk-det\nand watch it fail.",
        "```\nfn main() {}\n```",
        "The beacon shows up in capture_0412.pcap around 10:02.",
        "See the attached report (findings.csv).",
    ] {
        assert!(evidence_cited(&s(text)), "{text:?}");
    }
}

#[test]
fn evidence_fails_bare_claims_ratios_dates_and_the_word_proof() {
    for text in [
        "The service is definitely safe.",
        "Trust me",
        "1/2",
        "9/10",
        "It scored 9/10 overall.",
        "`9/10`",
        "This is proof.",
        "Deployed on 2024-03-01, ratio 3/4.",
        "On 03/01/2024 it was fine.",
        "e.g. the usual suspects",
        "",
    ] {
        assert!(
            !evidence_cited(&s(text)),
            "{text:?} should not cite evidence"
        );
    }
}

#[test]
fn evidence_fails_dicts_without_evidence_and_other_values() {
    let only_confidence = Value::map([("confidence", Value::float(0.99).unwrap())]);
    assert!(!evidence_cited(&only_confidence));
    let falsy = Value::map([("proof", Value::Null), ("citations", Value::int(0))]);
    assert!(!evidence_cited(&falsy));
    for other in [
        Value::Null,
        Value::Bool(true),
        Value::int(12),
        strings(&["12/12 passed"]),
    ] {
        assert!(!evidence_cited(&other), "{other}");
    }
}

// ---------------------------------------------------------------------------------------------
// format_contract_ok

fn contract(pairs: Vec<(&str, Value)>) -> Value {
    Value::map(pairs)
}

#[test]
fn required_fields_accept_dicts_and_json_strings() {
    let c = contract(vec![("required_fields", strings(&["host", "port"]))]);
    let dict = Value::map([("host", s("a")), ("port", Value::int(22))]);
    assert!(format_contract_ok(&dict, &c));
    assert!(format_contract_ok(&s(r#"{"host": "a", "port": 22}"#), &c));
    assert!(format_contract_ok(
        &s("Result:\n```json\n{\"host\": \"a\", \"port\": 22}\n```\n"),
        &c
    ));
}

#[test]
fn required_fields_reject_missing_fields_and_non_json() {
    let c = contract(vec![("required_keys", strings(&["host", "port"]))]);
    assert!(!format_contract_ok(&Value::map([("host", s("a"))]), &c));
    assert!(!format_contract_ok(&s(r#"{"host": "a"}"#), &c));
    assert!(!format_contract_ok(&s("host=a port=22"), &c));
    assert!(!format_contract_ok(&s(r#"["host", "port"]"#), &c));
    assert!(!format_contract_ok(&Value::int(3), &c));
}

#[test]
fn must_include_is_honoured() {
    let c = contract(vec![("must_include", strings(&["BEGIN", "END"]))]);
    assert!(format_contract_ok(&s("BEGIN body END"), &c));
    assert!(!format_contract_ok(&s("BEGIN body"), &c));
    let single = contract(vec![("must_include", s("SUMMARY"))]);
    assert!(format_contract_ok(&s("SUMMARY: fine"), &single));
    assert!(!format_contract_ok(&s("summary: fine"), &single));
}

#[test]
fn empty_and_non_dict_contracts_pass() {
    let out = s("anything");
    assert!(format_contract_ok(&out, &Value::map::<&str>([])));
    assert!(format_contract_ok(&out, &Value::Null));
    assert!(format_contract_ok(&out, &s("json")));
    assert!(format_contract_ok(&out, &strings(&["required_fields"])));
}

#[test]
fn declared_types_are_checked() {
    let json = contract(vec![("type", s("json"))]);
    assert!(format_contract_ok(&s(r#"{"a": 1}"#), &json));
    assert!(!format_contract_ok(&s("[1, 2]"), &json));
    assert!(!format_contract_ok(&s("not json"), &json));
    let structured = contract(vec![("type", s("structured"))]);
    assert!(format_contract_ok(
        &Value::map([("a", Value::int(1))]),
        &structured
    ));
    let text = contract(vec![("type", s("text"))]);
    assert!(format_contract_ok(&s("free prose"), &text));
    let xml = contract(vec![("type", s("xml"))]);
    assert!(format_contract_ok(&s("<r><a/></r>"), &xml));
    assert!(!format_contract_ok(&s("<r><a></r>"), &xml));
}

#[test]
fn unknown_type_defers_to_required_fields_and_fails_alone() {
    let with_fields = contract(vec![
        ("type", s("spreadsheet")),
        ("required_fields", strings(&["rows"])),
    ]);
    assert!(format_contract_ok(&s(r#"{"rows": []}"#), &with_fields));
    assert!(!format_contract_ok(&s(r#"{"cols": []}"#), &with_fields));
    let alone = contract(vec![("type", s("spreadsheet"))]);
    assert!(!format_contract_ok(&s(r#"{"rows": []}"#), &alone));
    let unknown_keys = contract(vec![("colour", s("blue"))]);
    assert!(!format_contract_ok(&s("blue"), &unknown_keys));
}

#[test]
fn malformed_contract_items_fail_closed_without_crashing() {
    let out = s(r#"{"a": 1}"#);
    let non_string = contract(vec![(
        "required_fields",
        Value::List(vec![s("a"), Value::int(7)]),
    )]);
    assert!(!format_contract_ok(&out, &non_string));
    let unhashable = contract(vec![(
        "required_fields",
        Value::List(vec![strings(&["a"])]),
    )]);
    assert!(!format_contract_ok(&out, &unhashable));
    let string_not_list = contract(vec![("required_fields", s("a"))]);
    assert!(!format_contract_ok(&out, &string_not_list));
    let bad_needle = contract(vec![("must_include", Value::List(vec![Value::Null]))]);
    assert!(!format_contract_ok(&out, &bad_needle));
    let bad_type = contract(vec![("type", Value::int(1))]);
    assert!(!format_contract_ok(&out, &bad_type));
    // A dictionary with a non-string key is still a dictionary contract.
    let odd = Value::dict([(Value::int(1), s("x"))]);
    assert!(!format_contract_ok(&out, &odd));
}

// ---------------------------------------------------------------------------------------------
// no_secret_or_raw_cot

#[test]
fn clean_outputs_pass() {
    for text in [
        "The gcd of 48 and 36 is 12.",
        "Remember to rotate your password every quarter.",
        "password: REDACTED",
        "api_key = <your key here>",
        "Set token=${GITHUB_TOKEN} in CI.",
        "Use the tokenizer = byte-level setting.",
        "Ask for a task-specific budget.",
    ] {
        assert!(no_secret_or_raw_cot(&s(text)), "{text:?} should pass");
    }
    let clean = Value::map([
        ("user", s("alice")),
        ("password", s("«redacted»")),
        ("tokenizer", s("byte-level-bpe")),
        ("max_tokens", Value::int(512)),
    ]);
    assert!(no_secret_or_raw_cot(&clean));
}

#[test]
fn secret_shapes_fail() {
    let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLWJ5dGVz";
    for text in [
        "aws key AKIAQ7XKZ3PLM2VN8RTE in the config".to_owned(),
        "use sk-live4Qw8Zr2Lp9Xy7Tb3Vn6M to call the API".to_owned(),
        "log in with password=Hunter2Hunter2".to_owned(),
        "<think>the user wants me to lie</think> The answer is 4.".to_owned(),
        format!("session {jwt}"),
        "Authorization: Bearer 9f8e7d6c5b4a39281706f5e4d3c2b1a0".to_owned(),
        "clone https://deploy:s3cr3tPa55@git.internal/repo.git".to_owned(),
        "stripe sk_live_51HxQ2mK8pL0zR4t".to_owned(),
        "-----BEGIN PGP PRIVATE KEY BLOCK-----\nlQOYBF...\n".to_owned(),
        "-----BEGIN RSA PRIVATE KEY-----".to_owned(),
        "token ghp_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8".to_owned(),
        "github_pat_11ABCDEFG0123456789_abcdefghijklmnop".to_owned(),
        "slack xoxb-123456789012-abcdefABCDEF".to_owned(),
    ] {
        assert!(!no_secret_or_raw_cot(&s(&text)), "{text:?} should fail");
    }
}

#[test]
fn credential_named_dict_values_fail_even_nested() {
    let top = Value::map([("api_key", s("q8Zr2Lp9Xy7Tb3Vn"))]);
    assert!(!no_secret_or_raw_cot(&top));
    let nested = Value::map([(
        "db",
        Value::List(vec![Value::map([("password", s("correct horse"))])]),
    )]);
    assert!(!no_secret_or_raw_cot(&nested));
    let short = Value::map([("password", s("abc"))]);
    assert!(no_secret_or_raw_cot(&short), "below the length floor");
    let in_key = Value::map([("<think>", s("x"))]);
    assert!(!no_secret_or_raw_cot(&in_key), "keys are scanned too");
    let in_bytes = Value::Bytes(b"AKIAQ7XKZ3PLM2VN8RTE".to_vec());
    assert!(!no_secret_or_raw_cot(&in_bytes));
}

// ---------------------------------------------------------------------------------------------
// Registration under the scheduler

#[test]
fn lane_oracles_are_registered_by_name() {
    assert_eq!(
        LANE_ORACLE_NAMES,
        [
            "evidence_cited",
            "format_contract_ok",
            "no_secret_or_raw_cot"
        ]
    );
    let oracle = lane_oracle("evidence_cited").expect("registered");
    assert!(oracle(&s("5/5 checks passed"), &Value::Null));
    assert!(!oracle(&s("Trust me"), &Value::Null));
    let secrets = lane_oracle("no_secret_or_raw_cot").expect("registered");
    assert!(!secrets(&s("password=Hunter2Hunter2"), &Value::Null));
    let format = lane_oracle("format_contract_ok").expect("registered");
    assert!(!format(&s("x"), &contract(vec![("type", s("json"))])));
    assert!(lane_oracle("always_true").is_none());
}

// ---------------------------------------------------------------------------------------------
// Form checks

#[test]
fn types_are_detected() {
    assert_eq!(detect_type(r#"{"a": 1}"#), OutputType::Json);
    assert_eq!(detect_type("  [1, 2]"), OutputType::Json);
    assert_eq!(
        detect_type("Here:\n```json\n{\"a\": 1}\n```\n"),
        OutputType::Json
    );
    assert_eq!(detect_type("<?xml version='1.0'?><a/>"), OutputType::Xml);
    assert_eq!(detect_type("<root>x</root>"), OutputType::Xml);
    assert_eq!(
        detect_type("def add(a, b):\n    return a + b\n"),
        OutputType::Python
    );
    assert_eq!(detect_type("```python\nx = 1\n```"), OutputType::Python);
    assert_eq!(
        detect_type("from math import gcd\n\ngcd(4, 6)"),
        OutputType::Python
    );
    assert_eq!(detect_type("The answer is 4 < 5."), OutputType::Text);
    assert_eq!("Structured".parse::<OutputType>(), Ok(OutputType::Json));
    assert!("yaml".parse::<OutputType>().is_err());
}

#[test]
fn fenced_blocks_are_extracted_only_when_closed() {
    let text = "intro\n```json\n{\"a\": 1}\n```\noutro\n";
    assert_eq!(extract_fenced(text, &["json"]), Some("{\"a\": 1}\n"));
    assert_eq!(extract_fenced(text, &["python"]), None);
    assert_eq!(extract_fenced("```json\n{\"a\": 1}\n", &["json"]), None);
    assert_eq!(
        parse_json_text(text).unwrap(),
        Value::map([("a", Value::int(1))])
    );
    assert!(matches!(
        parse_json_text("{\"a\": }"),
        Err(FormError::Json(_))
    ));
    assert_eq!(parse_json_text("   "), Err(FormError::Empty));
}

#[test]
fn canonical_text_keeps_types_json_cannot_state() {
    assert_eq!(
        parse_structured(r#"{"$tuple":[1,2]}"#).unwrap(),
        Value::Tuple(vec![Value::int(1), Value::int(2)])
    );
    assert_eq!(
        parse_structured("[1, 2]").unwrap(),
        Value::List(vec![Value::int(1), Value::int(2)])
    );
    assert!(parse_structured("NaN").is_err());
    assert!(parse_structured("Infinity").is_err());
}

#[test]
fn data_form_check_climbs_syntax_then_schema() {
    let none: Vec<String> = vec![];
    let pass = check_form(r#"{"a": 1}"#, OutputType::Json, &none, &none).unwrap();
    assert_eq!(pass.level, ValidationLevel::Syntax);
    let pass = check_form(r#"{"a": 1}"#, OutputType::Json, &owned(&["a"]), &none).unwrap();
    assert_eq!(pass.level, ValidationLevel::Schema);
    assert_eq!(
        check_form(r#"{"a": 1}"#, OutputType::Json, &owned(&["a", "b"]), &none),
        Err(FormError::MissingKeys(owned(&["b"])))
    );
    assert_eq!(
        check_form("[1]", OutputType::Json, &owned(&["a"]), &none),
        Err(FormError::NotAnObject)
    );
    assert!(matches!(
        check_form("<a><b></a>", OutputType::Xml, &none, &none),
        Err(FormError::Xml(_))
    ));
    let pass = check_form("<a><b/></a>", OutputType::Xml, &none, &owned(&["<b/>"])).unwrap();
    assert_eq!(pass.level, ValidationLevel::Schema);
    let pass = check_form("hello", OutputType::Text, &none, &none).unwrap();
    assert_eq!(pass.level, ValidationLevel::Syntax);
    assert_eq!(
        check_form("hello", OutputType::Text, &none, &owned(&["bye"])),
        Err(FormError::MissingSubstrings(owned(&["bye"])))
    );
    assert_eq!(
        check_form("hello", OutputType::Text, &owned(&["k"]), &none),
        Err(FormError::KeysNeedJson(OutputType::Text))
    );
    assert_eq!(
        check_form("def f(): pass", OutputType::Python, &none, &none),
        Err(FormError::Unsupported(OutputType::Python))
    );
    assert_eq!(
        FormError::MissingKeys(owned(&["a", "b"])).to_string(),
        "missing_keys:a,b"
    );
}

#[test]
fn must_include_reports_what_is_missing() {
    assert_eq!(
        missing_substrings("alpha beta", &owned(&["beta", "gamma", "alpha"])),
        owned(&["gamma"])
    );
}

#[test]
fn xml_well_formedness_is_checked() {
    assert!(xml_well_formed("<a b='1'><c>&amp;</c></a>").is_ok());
    assert!(xml_well_formed("<a><c></a>").is_err());
    assert!(xml_well_formed("<a/><a/>").is_err());
    assert!(xml_well_formed("plain").is_err());
}

#[test]
fn comparison_is_type_strict() {
    let one = Value::int(1);
    assert!(strict_equal(&one, &Value::int(1)));
    assert!(!strict_equal(&Value::Bool(true), &one));
    assert!(!strict_equal(&Value::float(1.0).unwrap(), &one));
    assert!(!strict_equal(
        &Value::Tuple(vec![one.clone()]),
        &Value::List(vec![one.clone()])
    ));
    assert!(!strict_equal(
        &Value::float(0.0).unwrap(),
        &Value::float(-0.0).unwrap()
    ));
    assert!(same_shape(
        &Value::map([("a", Value::int(1))]),
        &Value::map([("a", Value::int(2))])
    ));
    assert!(!same_shape(
        &Value::map([("a", Value::int(1))]),
        &Value::map([("b", Value::int(1))])
    ));
    assert!(!same_shape(&Value::Bool(true), &one));
    assert!(!same_shape(
        &Value::List(vec![one.clone()]),
        &Value::List(vec![])
    ));
}

#[test]
fn hostile_repetitions_are_scanned_in_linear_time() {
    // Quadratic scanning from every overlapping start would take minutes on these.
    let started = std::time::Instant::now();
    for text in [
        "sk-".repeat(300_000),
        "password=".repeat(100_000),
        "bearer ".repeat(100_000),
        "eyJ.".repeat(200_000),
        "://a:".repeat(200_000),
    ] {
        let value = s(&text);
        let _ = no_secret_or_raw_cot(&value);
        let _ = evidence_cited(&value);
        let _ = detect_type(&text);
    }
    assert!(xml_well_formed(&"<!--".repeat(100_000)).is_err());
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
}
