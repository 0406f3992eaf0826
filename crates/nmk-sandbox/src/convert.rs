//! Conversions between the interpreter's objects and nmk's [`Value`].
//!
//! Only plain data crosses: `None`, `bool`, `int` (any size), finite `float`, `str`, `bytes`,
//! `list`, `tuple`, `dict`, `set` and `frozenset`. Anything else a program returns (a class
//! instance such as an "always equal" object, a function, a NaN, a cycle, a date) is reported as
//! an error string, so it can never be compared equal to a trusted value.

use monty_types::MontyObject;
use nmk_det::{Integer, Value};

/// Deepest nesting converted; deeper results are refused (frames are decoded with a depth cap).
pub const MAX_DEPTH: usize = 200;

/// Converts an argument for the interpreter.
pub fn to_monty(v: &Value) -> Result<MontyObject, String> {
    Ok(match v {
        Value::Null => MontyObject::None,
        Value::Bool(b) => MontyObject::Bool(*b),
        Value::Int(Integer::Small(i)) => MontyObject::Int(*i),
        Value::Int(Integer::Big(digits)) => MontyObject::BigInt(
            digits
                .parse()
                .map_err(|_| format!("bad big integer {digits}"))?,
        ),
        Value::Float(f) => MontyObject::Float(f.get()),
        Value::Str(s) => MontyObject::String(s.clone()),
        Value::Bytes(b) => MontyObject::Bytes(b.clone()),
        Value::List(items) => {
            MontyObject::List(items.iter().map(to_monty).collect::<Result<_, _>>()?)
        }
        Value::Tuple(items) => {
            MontyObject::Tuple(items.iter().map(to_monty).collect::<Result<_, _>>()?)
        }
        Value::Set(items) => {
            MontyObject::Set(items.iter().map(to_monty).collect::<Result<_, _>>()?)
        }
        Value::Map(map) => MontyObject::dict(
            map.iter()
                .map(|(k, v)| Ok((MontyObject::String(k.clone()), to_monty(v)?)))
                .collect::<Result<Vec<_>, String>>()?,
        ),
        Value::Dict(pairs) => MontyObject::dict(
            pairs
                .iter()
                .map(|(k, v)| Ok((to_monty(k)?, to_monty(v)?)))
                .collect::<Result<Vec<_>, String>>()?,
        ),
    })
}

/// Converts a result; `Err` carries `"<Type>: message"` for what cannot be plain data.
pub fn from_monty(o: &MontyObject) -> Result<Value, String> {
    from_monty_at(o, 0)
}

fn from_monty_at(o: &MontyObject, depth: usize) -> Result<Value, String> {
    if depth > MAX_DEPTH {
        return Err(format!(
            "UnsupportedResult: nesting deeper than {MAX_DEPTH}"
        ));
    }
    let seq = |items: &[MontyObject]| -> Result<Vec<Value>, String> {
        items.iter().map(|i| from_monty_at(i, depth + 1)).collect()
    };
    Ok(match o {
        MontyObject::None => Value::Null,
        MontyObject::Bool(b) => Value::Bool(*b),
        MontyObject::Int(i) => Value::int(*i),
        MontyObject::BigInt(b) => {
            let text = b.to_string();
            Value::Int(
                Integer::from_decimal(&text)
                    .ok_or_else(|| "UnsupportedResult: malformed integer".to_owned())?,
            )
        }
        MontyObject::Float(f) => {
            Value::float(*f).ok_or_else(|| format!("UnsupportedResult: non-finite float {f}"))?
        }
        MontyObject::String(s) => Value::Str(s.clone()),
        MontyObject::Bytes(b) => Value::Bytes(b.clone()),
        MontyObject::List(items) => Value::List(seq(items)?),
        MontyObject::Tuple(items) => Value::Tuple(seq(items)?),
        MontyObject::Set(items) | MontyObject::FrozenSet(items) => Value::set(seq(items)?),
        MontyObject::Dict(pairs) => Value::dict(
            pairs
                .iter()
                .map(|(k, v)| Ok((from_monty_at(k, depth + 1)?, from_monty_at(v, depth + 1)?)))
                .collect::<Result<Vec<_>, String>>()?,
        ),
        other => {
            return Err(format!(
                "UnsupportedResult: a {} is not plain data",
                other.type_name()
            ));
        }
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn plain_data_round_trips() {
        let v = Value::List(vec![
            Value::Null,
            Value::Bool(true),
            Value::int(-3),
            Value::Int(Integer::from_decimal("123456789012345678901234567890").unwrap()),
            Value::float(0.5).unwrap(),
            Value::str("é"),
            Value::Bytes(vec![0, 255]),
            Value::Tuple(vec![Value::int(1)]),
            Value::set([Value::int(2), Value::int(1)]),
            Value::map([("a", Value::int(1))]),
            Value::dict([(Value::int(1), Value::str("x"))]),
        ]);
        assert_eq!(from_monty(&to_monty(&v).unwrap()).unwrap(), v);
    }

    #[test]
    fn nan_and_objects_are_not_plain_data() {
        assert!(from_monty(&MontyObject::Float(f64::NAN)).is_err());
        assert!(from_monty(&MontyObject::Repr("<obj>".into())).is_err());
    }
}
