//! The lane validators of [`crate::oracles`] under the primitive call shape.
//!
//! They take values and return a boolean, so they can be called like any primitive, but they are
//! judgements with no second algorithm to check them against; the catalogue marks them
//! [`super::Kind::Validator`] and [`super::self_check`] refuses them. Their own tests live with
//! them in [`crate::oracles`].

use super::PrimitiveError;
use super::args::{any, arity};
use crate::oracles;
use crate::value::Value;

/// `evidence_cited(output: any) -> bool`.
pub fn evidence_cited(args: &[Value]) -> Result<Value, PrimitiveError> {
    arity(args, 1)?;
    Ok(Value::Bool(oracles::evidence_cited(any(args, 0)?)))
}

/// `format_contract_ok(output: any, contract: any) -> bool`.
pub fn format_contract_ok(args: &[Value]) -> Result<Value, PrimitiveError> {
    arity(args, 2)?;
    Ok(Value::Bool(oracles::format_contract_ok(
        any(args, 0)?,
        any(args, 1)?,
    )))
}

/// `no_secret_or_raw_cot(output: any) -> bool`.
pub fn no_secret_or_raw_cot(args: &[Value]) -> Result<Value, PrimitiveError> {
    arity(args, 1)?;
    Ok(Value::Bool(oracles::no_secret_or_raw_cot(any(args, 0)?)))
}
