//! Deterministic validators that judge outputs without executing anything.
//!
//! This module owns the three *lane oracles* a scheduler can register as validators
//! ([`evidence_cited`], [`format_contract_ok`], [`no_secret_or_raw_cot`], found by name through
//! [`lane_oracle`]) and the *form checks* the commit trap's ladder climbs for data outputs
//! ([`form`]: type detection, fenced-block extraction, JSON and canonical parsing, required keys
//! and substrings, XML well-formedness, and the one type-strict comparison). Everything here is a
//! pure function of its arguments: no I/O, no clock, no randomness, and no panics on any input.
//! Anything malformed or unexpected fails closed.

pub mod contract;
pub mod evidence;
pub mod form;
pub mod secrets;
pub mod xml;

pub use contract::format_contract_ok;
pub use evidence::evidence_cited;
pub use form::{
    FormError, FormPass, OutputType, UnknownOutputType, check_form, detect_type, extract_fenced,
    missing_keys, missing_substrings, parse_json_text, parse_structured, same_shape, strict_equal,
    truthy,
};
pub use secrets::no_secret_or_raw_cot;
pub use xml::{XmlError, xml_well_formed};

use crate::value::Value;

/// A lane oracle as a scheduler registers it: `(output, contract) → passes`. Oracles that need
/// no contract ignore the second argument.
pub type LaneOracle = fn(&Value, &Value) -> bool;

/// The registered names of the lane oracles, in a fixed order.
pub const LANE_ORACLE_NAMES: [&str; 3] = [
    "evidence_cited",
    "format_contract_ok",
    "no_secret_or_raw_cot",
];

fn evidence_cited_oracle(output: &Value, _contract: &Value) -> bool {
    evidence_cited(output)
}

fn no_secret_oracle(output: &Value, _contract: &Value) -> bool {
    no_secret_or_raw_cot(output)
}

/// The lane oracle registered under `name`, if there is one.
pub fn lane_oracle(name: &str) -> Option<LaneOracle> {
    match name {
        "evidence_cited" => Some(evidence_cited_oracle),
        "format_contract_ok" => Some(format_contract_ok),
        "no_secret_or_raw_cot" => Some(no_secret_oracle),
        _ => None,
    }
}
