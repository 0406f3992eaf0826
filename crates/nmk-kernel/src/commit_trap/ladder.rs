//! The validation ladder: how high a candidate climbs, from NONE to PROVEN, and why it stopped.
//!
//! Rungs, in order: PROVEN (a proven primitive whose recorded code hash is the candidate's own
//! hash); the form check (NONE when it fails, SYNTAX when nothing more is declared, SCHEMA when
//! required keys, substrings or the entry symbol are present); PROPERTY (code: the parsed
//! signature equals the one the prompt states; data: the value has the shape of every expected
//! value); ORACLE (every case's result equals its expected value, type-strictly). Every rung
//! fails closed: no checker, no stated signature, or an unparseable candidate stops the climb.

use nmk_det::ValidationLevel;
use nmk_det::Value;
use nmk_det::oracles::{
    FormError, OutputType, check_form, detect_type, extract_fenced, missing_substrings,
    parse_structured, same_shape, strict_equal,
};

use super::candidate_hash;
use super::checker::{CodeChecker, ProvenRegistry, prompt_signature};
use super::contract::Contract;

/// A validation step that errored (as opposed to a candidate that failed). The display form is
/// recorded after `handler_error:`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandlerError {
    /// The code checker failed to run the cases.
    #[error("run_cases:{0}")]
    RunCases(String),
    /// The code checker returned a different number of results than cases.
    #[error("case_count:{expected}!={got}")]
    CaseCount {
        /// Cases given.
        expected: usize,
        /// Results returned.
        got: usize,
    },
    /// A validation step panicked.
    #[error("panic:{0}")]
    Panic(String),
}

/// Where a candidate stopped on the ladder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// The highest rung reached.
    pub level: ValidationLevel,
    /// Why it stopped there (`oracle_pass:2/2`, `form_invalid:json:…`, `signature_mismatch`, …).
    pub reason: String,
}

fn verdict(level: ValidationLevel, reason: impl Into<String>) -> Verdict {
    Verdict {
        level,
        reason: reason.into(),
    }
}

fn form_invalid(e: impl std::fmt::Display) -> Verdict {
    verdict(ValidationLevel::None, format!("form_invalid:{e}"))
}

/// Climbs the ladder for `candidate` against `contract`.
pub fn climb(
    candidate: &str,
    contract: &Contract,
    checker: Option<&dyn CodeChecker>,
    proven: Option<&dyn ProvenRegistry>,
) -> Result<Verdict, HandlerError> {
    if let Err(e) = contract.check() {
        return Ok(verdict(
            ValidationLevel::None,
            format!("contract_invalid:{e}"),
        ));
    }
    let mut refused = None;
    if contract.proven {
        match proven.map(|registry| registry.code_hash(&contract.entry)) {
            Some(Some(recorded)) if recorded == candidate_hash(candidate) => {
                return Ok(verdict(
                    ValidationLevel::Proven,
                    format!("proven:{}", contract.entry),
                ));
            }
            Some(Some(_)) => refused = Some("hash_mismatch"),
            Some(None) => refused = Some("no_primitive"),
            None => refused = Some("no_registry"),
        }
    }
    let otype = contract.otype.unwrap_or_else(|| {
        if contract.required_keys.is_empty() {
            detect_type(candidate)
        } else {
            OutputType::Json
        }
    });
    let mut found = if otype == OutputType::Python {
        code_rungs(candidate, contract, checker)?
    } else {
        data_rungs(candidate, contract, otype)
    };
    if let Some(why) = refused {
        found.reason = format!("{}|proven_refused:{why}", found.reason);
    }
    Ok(found)
}

fn code_rungs(
    candidate: &str,
    contract: &Contract,
    checker: Option<&dyn CodeChecker>,
) -> Result<Verdict, HandlerError> {
    let Some(checker) = checker else {
        return Ok(verdict(ValidationLevel::None, "no_code_checker"));
    };
    if !contract.required_keys.is_empty() {
        return Ok(form_invalid(FormError::KeysNeedJson(OutputType::Python)));
    }
    let code = extract_fenced(candidate, &["python", "py"]).unwrap_or(candidate);
    let signature = match checker.parse(code, &contract.entry) {
        Ok(signature) => signature,
        Err(e) => return Ok(form_invalid(format_args!("python:{e}"))),
    };
    if signature.name != contract.entry {
        return Ok(form_invalid("python:entry_not_defined"));
    }
    let missing = missing_substrings(candidate, &contract.must_include);
    if !missing.is_empty() {
        return Ok(form_invalid(FormError::MissingSubstrings(missing)));
    }
    // The code parses and defines the entry: SCHEMA. PROPERTY needs the prompt's signature.
    let Some(stated) = prompt_signature(&contract.prompt, &contract.entry) else {
        return Ok(verdict(ValidationLevel::Schema, "signature_unknown"));
    };
    if stated != signature {
        return Ok(verdict(ValidationLevel::Schema, "signature_mismatch"));
    }
    if contract.cases.is_empty() {
        return Ok(verdict(ValidationLevel::Property, "signature_ok_no_cases"));
    }
    let results = checker
        .run_cases(code, &contract.entry, &contract.cases)
        .map_err(HandlerError::RunCases)?;
    if results.len() != contract.cases.len() {
        return Err(HandlerError::CaseCount {
            expected: contract.cases.len(),
            got: results.len(),
        });
    }
    let passed = results
        .iter()
        .zip(&contract.cases)
        .filter(|(got, case)| {
            got.as_ref()
                .is_ok_and(|value| strict_equal(value, &case.expected))
        })
        .count();
    let n = contract.cases.len();
    Ok(if passed == n {
        verdict(ValidationLevel::Oracle, format!("oracle_pass:{n}/{n}"))
    } else {
        verdict(
            ValidationLevel::Property,
            format!("oracle_fail:{passed}/{n}"),
        )
    })
}

fn data_rungs(candidate: &str, contract: &Contract, otype: OutputType) -> Verdict {
    let form = match check_form(
        candidate,
        otype,
        &contract.required_keys,
        &contract.must_include,
    ) {
        Ok(form) => form,
        Err(e) => return form_invalid(e),
    };
    let form_reason = if form.level == ValidationLevel::Schema {
        "schema_ok"
    } else {
        "syntax_ok"
    };
    if contract.cases.is_empty() {
        return verdict(form.level, form_reason);
    }
    // Parse first: the candidate's value, never its raw text, is compared.
    let value = match parse_structured(candidate) {
        Ok(value) => value,
        Err(e) if otype == OutputType::Json => return form_invalid(e),
        Err(_) => Value::str(candidate),
    };
    let n = contract.cases.len();
    let equal = contract
        .cases
        .iter()
        .filter(|case| strict_equal(&value, &case.expected))
        .count();
    if equal == n {
        return verdict(ValidationLevel::Oracle, format!("oracle_pass:{n}/{n}"));
    }
    if contract
        .cases
        .iter()
        .all(|case| same_shape(&value, &case.expected))
    {
        return verdict(
            form.level.max(ValidationLevel::Property),
            format!("value_mismatch:{equal}/{n}"),
        );
    }
    verdict(form.level, format!("struct_mismatch:{equal}/{n}"))
}
