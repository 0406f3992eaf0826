//! The `format_contract_ok` lane oracle: does an output honour the format its task's contract
//! declares?

use crate::value::Value;

use super::form::{OutputType, dict_get, is_dict, missing_substrings, parse_json_text, truthy};
use super::xml::xml_well_formed;

/// Contract keys naming required fields of a dictionary output (any of them may be used).
pub const REQUIRED_FIELD_KEYS: [&str; 3] = ["required_fields", "required_keys", "required"];

/// Whether `output` honours `contract`.
///
/// * No contract (`null`) or a contract that is not a dictionary: passes (nothing declared).
/// * An empty dictionary: passes.
/// * Otherwise every declared constraint must hold, and at least one must be understood:
///   - required fields (`required_fields`, `required_keys` or `required`: a list, tuple or set of
///     strings): the output is a dictionary, or a string holding a JSON object (fenced blocks
///     accepted), with every field;
///   - `must_include` (a string or a list of strings): each is a substring of the output's text
///     (a string output itself, any other output's canonical encoding);
///   - `type` (or `otype`): `json`/`object`/`structured` → the output is, or parses to, a
///     dictionary; `xml` → a well-formed XML string; `text` → passes. An unknown type (and
///     `python`, which needs a code checker) is not a constraint: it neither passes nor fails a
///     contract on its own.
/// * A non-empty contract with no understood constraint fails, and so does a malformed one
///   (a non-string or unhashable item, a string where a list is expected, a non-string type).
pub fn format_contract_ok(output: &Value, contract: &Value) -> bool {
    if !is_dict(contract) {
        return true;
    }
    if !truthy(contract) {
        return true;
    }
    let mut understood = false;
    for key in REQUIRED_FIELD_KEYS {
        if let Some(spec) = dict_get(contract, key) {
            if !truthy(spec) {
                continue;
            }
            understood = true;
            let Some(fields) = string_items(spec) else {
                return false;
            };
            if !has_fields(output, &fields) {
                return false;
            }
        }
    }
    if let Some(spec) = dict_get(contract, "must_include")
        && truthy(spec)
    {
        understood = true;
        let needles = match spec {
            Value::Str(s) => vec![s.clone()],
            other => match string_items(other) {
                Some(items) => items,
                None => return false,
            },
        };
        if !missing_substrings(&output_text(output), &needles).is_empty() {
            return false;
        }
    }
    let declared = dict_get(contract, "type").or_else(|| dict_get(contract, "otype"));
    if let Some(spec) = declared {
        let Some(name) = spec.as_str() else {
            return false;
        };
        match OutputType::from_name(name) {
            Some(OutputType::Json) => {
                understood = true;
                if !as_object(output).is_some_and(|v| is_dict(&v)) {
                    return false;
                }
            }
            Some(OutputType::Xml) => {
                understood = true;
                if output.as_str().is_none_or(|s| xml_well_formed(s).is_err()) {
                    return false;
                }
            }
            Some(OutputType::Text) => understood = true,
            Some(OutputType::Python) | None => {}
        }
    }
    understood
}

/// The strings of a list, tuple or set whose items are all strings; `None` otherwise.
fn string_items(spec: &Value) -> Option<Vec<String>> {
    match spec {
        Value::List(items) | Value::Tuple(items) | Value::Set(items) => items
            .iter()
            .map(|item| item.as_str().map(str::to_owned))
            .collect(),
        _ => None,
    }
}

/// The output as a dictionary: itself, or the JSON document a string holds.
fn as_object(output: &Value) -> Option<Value> {
    match output {
        Value::Map(_) | Value::Dict(_) => Some(output.clone()),
        Value::Str(text) => parse_json_text(text).ok(),
        _ => None,
    }
}

fn has_fields(output: &Value, fields: &[String]) -> bool {
    as_object(output)
        .is_some_and(|obj| is_dict(&obj) && fields.iter().all(|f| dict_get(&obj, f).is_some()))
}

fn output_text(output: &Value) -> String {
    match output {
        Value::Str(s) => s.clone(),
        other => crate::canonical::encode(other),
    }
}
