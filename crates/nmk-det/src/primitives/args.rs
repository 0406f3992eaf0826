//! Argument unpacking shared by primitives and oracles: arity and type checks that name the
//! parameter, so every entry reports bad calls the same way.

use super::PrimitiveError;
use crate::value::{Integer, Value};

/// Checks that exactly `expected` arguments were passed.
pub(crate) fn arity(args: &[Value], expected: usize) -> Result<(), PrimitiveError> {
    if args.len() == expected {
        Ok(())
    } else {
        Err(PrimitiveError::Arity {
            expected,
            got: args.len(),
        })
    }
}

fn arg(args: &[Value], i: usize) -> Result<&Value, PrimitiveError> {
    // Callers check arity first; this keeps a missing argument an error rather than a panic.
    args.get(i).ok_or(PrimitiveError::Arity {
        expected: i + 1,
        got: args.len(),
    })
}

fn type_error(param: &'static str, expected: &'static str, got: &Value) -> PrimitiveError {
    PrimitiveError::Type {
        param,
        expected,
        got: got.type_name(),
    }
}

/// The `i`-th argument as an `i64` (a big integer is out of range, anything else a type error).
pub(crate) fn int(args: &[Value], i: usize, param: &'static str) -> Result<i64, PrimitiveError> {
    int_value(arg(args, i)?, param)
}

/// A value as an `i64`, with the same errors as [`int`].
pub(crate) fn int_value(v: &Value, param: &'static str) -> Result<i64, PrimitiveError> {
    match v {
        Value::Int(Integer::Small(x)) => Ok(*x),
        Value::Int(Integer::Big(_)) => Err(PrimitiveError::OutOfRange {
            param,
            detail: "outside the 64-bit integer range".into(),
        }),
        other => Err(type_error(param, "int", other)),
    }
}

/// The `i`-th argument as a string of at most `cap` bytes.
pub(crate) fn str_capped<'a>(
    args: &'a [Value],
    i: usize,
    param: &'static str,
    cap: usize,
) -> Result<&'a str, PrimitiveError> {
    match arg(args, i)? {
        Value::Str(s) => {
            if s.len() > cap {
                Err(too_large(param, s.len(), cap))
            } else {
                Ok(s)
            }
        }
        other => Err(type_error(param, "str", other)),
    }
}

/// The `i`-th argument as bytes, at most `cap` of them.
pub(crate) fn bytes_capped<'a>(
    args: &'a [Value],
    i: usize,
    param: &'static str,
    cap: usize,
) -> Result<&'a [u8], PrimitiveError> {
    match arg(args, i)? {
        Value::Bytes(b) => {
            if b.len() > cap {
                Err(too_large(param, b.len(), cap))
            } else {
                Ok(b)
            }
        }
        other => Err(type_error(param, "bytes", other)),
    }
}

/// The `i`-th argument as a sequence (list, tuple or set) of at most `cap` items.
pub(crate) fn seq_capped<'a>(
    args: &'a [Value],
    i: usize,
    param: &'static str,
    cap: usize,
) -> Result<&'a [Value], PrimitiveError> {
    seq_value(arg(args, i)?, param, cap)
}

/// A value as a sequence (list, tuple or set) of at most `cap` items.
pub(crate) fn seq_value<'a>(
    v: &'a Value,
    param: &'static str,
    cap: usize,
) -> Result<&'a [Value], PrimitiveError> {
    match v {
        Value::List(items) | Value::Tuple(items) | Value::Set(items) => {
            if items.len() > cap {
                Err(too_large(param, items.len(), cap))
            } else {
                Ok(items)
            }
        }
        other => Err(type_error(param, "list", other)),
    }
}

/// The `i`-th argument, whatever its type.
pub(crate) fn any(args: &[Value], i: usize) -> Result<&Value, PrimitiveError> {
    arg(args, i)
}

/// A [`PrimitiveError::TooLarge`].
pub(crate) fn too_large(param: &'static str, size: usize, cap: usize) -> PrimitiveError {
    PrimitiveError::TooLarge {
        param,
        size: size as u64,
        cap: cap as u64,
    }
}

/// A [`PrimitiveError::OutOfRange`].
pub(crate) fn out_of_range(param: &'static str, detail: impl Into<String>) -> PrimitiveError {
    PrimitiveError::OutOfRange {
        param,
        detail: detail.into(),
    }
}

/// A [`PrimitiveError::Invalid`].
pub(crate) fn invalid(param: &'static str, detail: impl Into<String>) -> PrimitiveError {
    PrimitiveError::Invalid {
        param,
        detail: detail.into(),
    }
}

/// A list of integers as a value.
pub(crate) fn int_list(items: impl IntoIterator<Item = i64>) -> Value {
    Value::List(items.into_iter().map(Value::int).collect())
}
