//! `json_shape_ok`: is a text JSON of an expected shape?
//!
//! # The shape language
//!
//! A shape is itself a [`Value`]:
//!
//! * a type name string: `"null"`, `"bool"`, `"int"` (a JSON number written without fraction or
//!   exponent that fits 64 bits), `"float"` (any other JSON number), `"number"` (either), `"str"`,
//!   `"list"` (any array), `"dict"` (any object), `"any"` (anything);
//! * a one-item list `[S]`: an array whose every item matches `S` (the empty array included);
//! * a tuple `(S1, …, Sk)`: an array of exactly `k` items, item `i` matching `Si`;
//! * a string-keyed dictionary `{"k": S, "opt?": T}`: an object with exactly these keys, each
//!   value matching its shape; a key ending in `?` names an optional key (without the `?`).
//!
//! Anything else is a malformed shape and an error (an unknown type name, a list of zero or two
//! items, a non-string key, both `"k"` and `"k?"`, nesting deeper than [`MAX_SHAPE_DEPTH`]); the
//! whole shape is validated before the text is looked at, so the error does not depend on the
//! text. A text that is not JSON at all is simply not of the shape: `false`, not an error.
//!
//! Both sides parse JSON with `serde_json` (a shared trusted parser: what is under test is the
//! shape logic, not JSON syntax). The primitive walks `serde_json` values recursively; the oracle
//! converts to [`Value`]s and drains an explicit work list of (shape, value) obligations, checking
//! objects from the data's side rather than the shape's.

use std::collections::BTreeMap;

use super::PrimitiveError;
use super::args::{any, arity, invalid, str_capped, too_large};
use crate::gate::Rng;
use crate::value::Value;

/// The largest text looked at, in bytes.
pub const MAX_TEXT_BYTES: usize = 1 << 20;
/// The deepest shape accepted (a bare type name has depth 1).
pub const MAX_SHAPE_DEPTH: usize = 32;

const TYPE_NAMES: [&str; 9] = [
    "null", "bool", "int", "float", "number", "str", "list", "dict", "any",
];

/// Validates a whole shape, recursively, refusing before the recursion gets deep.
fn check_shape(shape: &Value, depth: usize) -> Result<(), PrimitiveError> {
    if depth > MAX_SHAPE_DEPTH {
        return Err(too_large("shape", depth, MAX_SHAPE_DEPTH));
    }
    match shape {
        Value::Str(name) if TYPE_NAMES.contains(&name.as_str()) => Ok(()),
        Value::Str(name) => Err(invalid("shape", format!("unknown type name {name:?}"))),
        Value::List(items) => match items.as_slice() {
            [item] => check_shape(item, depth + 1),
            _ => Err(invalid(
                "shape",
                "a list shape holds exactly one item shape",
            )),
        },
        Value::Tuple(items) => items.iter().try_for_each(|s| check_shape(s, depth + 1)),
        Value::Map(fields) => {
            for (key, s) in fields {
                if let Some(name) = key.strip_suffix('?')
                    && fields.contains_key(name)
                {
                    return Err(invalid(
                        "shape",
                        format!("key {name:?} is both required and optional"),
                    ));
                }
                check_shape(s, depth + 1)?;
            }
            Ok(())
        }
        other => Err(invalid(
            "shape",
            format!("a {} is not a shape", other.type_name()),
        )),
    }
}

fn matches(shape: &Value, json: &serde_json::Value) -> bool {
    use serde_json::Value as J;
    match shape {
        Value::Str(name) => match name.as_str() {
            "null" => json.is_null(),
            "bool" => json.is_boolean(),
            "int" => json.is_i64() || json.is_u64(),
            "float" => json.is_f64(),
            "number" => json.is_number(),
            "str" => json.is_string(),
            "list" => json.is_array(),
            "dict" => json.is_object(),
            "any" => true,
            _ => false,
        },
        Value::List(item) => match (item.as_slice(), json) {
            ([s], J::Array(xs)) => xs.iter().all(|x| matches(s, x)),
            _ => false,
        },
        Value::Tuple(shapes) => match json {
            J::Array(xs) => {
                xs.len() == shapes.len() && shapes.iter().zip(xs).all(|(s, x)| matches(s, x))
            }
            _ => false,
        },
        Value::Map(fields) => {
            let J::Object(obj) = json else {
                return false;
            };
            let mut seen = 0usize;
            for (key, s) in fields {
                let (name, optional) = match key.strip_suffix('?') {
                    Some(name) => (name, true),
                    None => (key.as_str(), false),
                };
                match obj.get(name) {
                    Some(x) => {
                        if !matches(s, x) {
                            return false;
                        }
                        seen += 1;
                    }
                    None if optional => {}
                    None => return false,
                }
            }
            // Every object key was claimed by some field exactly when the counts agree.
            seen == obj.len()
        }
        _ => false,
    }
}

/// `json_shape_ok(text: str, shape) -> bool`.
pub fn json_shape_ok(args: &[Value]) -> Result<Value, PrimitiveError> {
    arity(args, 2)?;
    let text = str_capped(args, 0, "text", MAX_TEXT_BYTES)?;
    let shape = any(args, 1)?;
    check_shape(shape, 1)?;
    let ok = serde_json::from_str::<serde_json::Value>(text).is_ok_and(|j| matches(shape, &j));
    Ok(Value::Bool(ok))
}

/// Oracle for `json_shape_ok`: shape validation and matching both drain explicit work lists
/// over [`Value`]s; objects are checked key by key from the data's side.
pub fn json_shape_ok_oracle(args: &[Value]) -> Result<Value, PrimitiveError> {
    arity(args, 2)?;
    let text = str_capped(args, 0, "text", MAX_TEXT_BYTES)?;
    let shape = any(args, 1)?;
    let mut pending: Vec<(&Value, usize)> = vec![(shape, 1)];
    while let Some((s, depth)) = pending.pop() {
        if depth > MAX_SHAPE_DEPTH {
            return Err(invalid("shape", "too deep"));
        }
        match s {
            Value::Str(name) => {
                if !TYPE_NAMES.iter().any(|t| t == name) {
                    return Err(invalid("shape", "unknown type"));
                }
            }
            Value::List(items) => {
                if items.len() != 1 {
                    return Err(invalid("shape", "list shape arity"));
                }
                pending.extend(items.iter().map(|i| (i, depth + 1)));
            }
            Value::Tuple(items) => pending.extend(items.iter().map(|i| (i, depth + 1))),
            Value::Map(fields) => {
                let optional_names = fields.keys().filter_map(|k| k.strip_suffix('?'));
                if optional_names.clone().any(|n| fields.contains_key(n)) {
                    return Err(invalid("shape", "conflicting keys"));
                }
                pending.extend(fields.values().map(|v| (v, depth + 1)));
            }
            _ => return Err(invalid("shape", "not a shape")),
        }
    }
    let Ok(json) = serde_json::from_str::<serde_json::Value>(text) else {
        return Ok(Value::Bool(false));
    };
    let data = Value::from_json(&json);
    let mut obligations: Vec<(&Value, &Value)> = vec![(shape, &data)];
    while let Some((s, v)) = obligations.pop() {
        let holds = match (s, v) {
            (Value::Str(t), _) => match t.as_str() {
                "any" => true,
                "null" => *v == Value::Null,
                "bool" => matches!(v, Value::Bool(_)),
                "int" => matches!(v, Value::Int(_)),
                "float" => matches!(v, Value::Float(_)),
                "number" => matches!(v, Value::Int(_) | Value::Float(_)),
                "str" => matches!(v, Value::Str(_)),
                "list" => matches!(v, Value::List(_)),
                "dict" => matches!(v, Value::Map(_) | Value::Dict(_)),
                _ => false,
            },
            (Value::List(item), Value::List(xs)) => {
                if let Some(s0) = item.first() {
                    obligations.extend(xs.iter().map(|x| (s0, x)));
                }
                true
            }
            (Value::Tuple(shapes), Value::List(xs)) if shapes.len() == xs.len() => {
                obligations.extend(shapes.iter().zip(xs));
                true
            }
            (Value::Map(fields), Value::Map(obj)) => {
                object_obligations(fields, obj, &mut obligations)
            }
            _ => false,
        };
        if !holds {
            return Ok(Value::Bool(false));
        }
    }
    Ok(Value::Bool(true))
}

/// Claims each data key with its field (exact name, else the optional `name?`), then checks that
/// every required field was claimed.
fn object_obligations<'a>(
    fields: &'a BTreeMap<String, Value>,
    obj: &'a BTreeMap<String, Value>,
    obligations: &mut Vec<(&'a Value, &'a Value)>,
) -> bool {
    for (key, x) in obj {
        // A data key `k` is claimed by the required field `k` (a shape key ending in `?` is
        // never required) or by the optional field `k?`.
        let field = fields
            .get(key)
            .filter(|_| !key.ends_with('?'))
            .or_else(|| fields.get(&format!("{key}?")));
        match field {
            Some(s) => obligations.push((s, x)),
            None => return false,
        }
    }
    fields
        .keys()
        .filter(|k| !k.ends_with('?'))
        .all(|k| obj.contains_key(k))
}

// ---- Generator ----

fn random_scalar(rng: &mut Rng) -> serde_json::Value {
    use serde_json::Value as J;
    match rng.below(7) {
        0 => J::Null,
        1 => J::Bool(rng.coin()),
        2 => J::from(rng.range_i64(-5, 5)),
        3 => J::from(0.5 + rng.range_i64(-3, 3) as f64),
        4 => J::from(["", "a", "str", "1"][rng.below(4) as usize % 4]),
        5 => J::Array(vec![J::from(1)]),
        _ => J::Object(serde_json::Map::new()),
    }
}

fn random_shape(rng: &mut Rng, depth: usize) -> Value {
    let leaf = depth >= 3 || rng.below(3) == 0;
    if leaf {
        let name = TYPE_NAMES
            .get(rng.below(TYPE_NAMES.len() as u64) as usize)
            .copied()
            .unwrap_or("any");
        return Value::str(name);
    }
    match rng.below(3) {
        0 => Value::List(vec![random_shape(rng, depth + 1)]),
        1 => {
            let k = rng.below(3) as usize;
            Value::Tuple((0..k).map(|_| random_shape(rng, depth + 1)).collect())
        }
        _ => {
            let k = rng.below(4) as usize;
            let keys = ["a", "b?", "name", "tags?"];
            Value::map(
                keys.iter()
                    .take(k)
                    .map(|key| (*key, random_shape(rng, depth + 1))),
            )
        }
    }
}

/// A JSON value of `shape`, except that each node is replaced by a random value with
/// probability 1 / `corrupt` (0: never), and objects may gain or lose keys.
fn conforming(shape: &Value, rng: &mut Rng, corrupt: u64) -> serde_json::Value {
    use serde_json::Value as J;
    if corrupt > 0 && rng.below(corrupt) == 0 {
        return random_scalar(rng);
    }
    match shape {
        Value::Str(name) => match name.as_str() {
            "null" => J::Null,
            "bool" => J::Bool(rng.coin()),
            "int" => J::from(rng.range_i64(-100, 100)),
            "float" => J::from(rng.range_i64(-100, 100) as f64 + 0.25),
            "number" if rng.coin() => J::from(rng.range_i64(-9, 9)),
            "number" => J::from(1.5),
            "str" => J::from("text"),
            "list" => J::Array((0..rng.below(3)).map(|_| random_scalar(rng)).collect()),
            "dict" => {
                let mut m = serde_json::Map::new();
                if rng.coin() {
                    m.insert("k".into(), random_scalar(rng));
                }
                J::Object(m)
            }
            _ => random_scalar(rng),
        },
        Value::List(item) => match item.first() {
            Some(s) => J::Array(
                (0..rng.below(4))
                    .map(|_| conforming(s, rng, corrupt))
                    .collect(),
            ),
            None => J::Array(Vec::new()),
        },
        Value::Tuple(shapes) => {
            let mut xs: Vec<J> = shapes.iter().map(|s| conforming(s, rng, corrupt)).collect();
            if corrupt > 0 && rng.below(corrupt) == 0 {
                xs.push(J::Null);
            }
            J::Array(xs)
        }
        Value::Map(fields) => {
            let mut obj = serde_json::Map::new();
            for (key, s) in fields {
                let (name, optional) = match key.strip_suffix('?') {
                    Some(n) => (n, true),
                    None => (key.as_str(), false),
                };
                let drop = (optional && rng.coin()) || (corrupt > 0 && rng.below(corrupt) == 0);
                if !drop {
                    obj.insert(name.to_owned(), conforming(s, rng, corrupt));
                }
            }
            if corrupt > 0 && rng.below(corrupt) == 0 {
                obj.insert("extra".into(), J::Null);
            }
            J::Object(obj)
        }
        _ => random_scalar(rng),
    }
}

/// Generator for `json_shape_ok`: random shapes up to depth 3 with data that conforms, data with
/// random corruptions (wrong types, missing and extra keys, wrong tuple lengths), texts that are
/// not JSON, and malformed shapes (unknown names, bad list arity, non-string keys, conflicting
/// optional keys, a non-shape value) that both sides must refuse.
pub fn json_shape_ok_generate(rng: &mut Rng) -> Vec<Value> {
    let shape = match rng.below(25) {
        0 => Value::str("string"),
        1 => Value::List(Vec::new()),
        2 => Value::List(vec![Value::str("int"), Value::str("int")]),
        3 => Value::dict([(Value::int(1), Value::str("int"))]),
        4 => Value::map([("a", Value::str("int")), ("a?", Value::str("str"))]),
        5 => Value::map([("deep", Value::List(vec![Value::int(3)]))]),
        _ => random_shape(rng, 0),
    };
    let text = match rng.below(12) {
        0 => {
            ["", "{", "nul", "[1,]", "1 2", "{\"a\":}", "'a'"][rng.below(7) as usize % 7].to_owned()
        }
        1..=4 => conforming(&shape, rng, 0).to_string(),
        _ => conforming(&shape, rng, 4).to_string(),
    };
    vec![Value::str(text), shape]
}
