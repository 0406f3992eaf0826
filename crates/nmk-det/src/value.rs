//! The data model of everything nmk judges, hashes and ledgers.
//!
//! A [`Value`] is close to Python's plain data (the language model-written programs are in):
//! null, booleans, exact integers of any size, finite floats, strings, bytes, lists, tuples, sets
//! and dictionaries. Its constructors keep every value in one normal form (sets sorted and
//! de-duplicated, dictionaries with only string keys stored as [`Value::Map`], big integers only
//! when they leave the `i64` range), so structural equality is canonical equality and every value
//! has exactly one encoding (see [`crate::canonical`]).

use std::collections::BTreeMap;
use std::fmt;

use crate::canonical;

/// A finite `f64`. NaN and the infinities cannot be constructed, so they can never be hashed,
/// ledgered or compared equal to anything.
#[derive(Debug, Clone, Copy)]
pub struct Finite(f64);

impl Finite {
    /// Wraps `x` if it is finite.
    pub fn new(x: f64) -> Option<Finite> {
        x.is_finite().then_some(Finite(x))
    }

    /// The wrapped number.
    pub fn get(self) -> f64 {
        self.0
    }
}

/// Bitwise equality: `0.0` and `-0.0` are different values with different encodings.
impl PartialEq for Finite {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_bits() == other.0.to_bits()
    }
}
impl Eq for Finite {}

/// An exact integer of any size, kept in normal form: `Small` whenever it fits an `i64`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Integer {
    /// Fits in an `i64`.
    Small(i64),
    /// Outside the `i64` range; the canonical decimal digits (optional `-`, no leading zeros).
    Big(String),
}

impl Integer {
    /// Parses decimal digits (optional leading `-`, no `+`, no leading zeros, no `-0`).
    pub fn from_decimal(text: &str) -> Option<Integer> {
        let digits = text.strip_prefix('-').unwrap_or(text);
        let well_formed = !digits.is_empty()
            && digits.bytes().all(|b| b.is_ascii_digit())
            && (digits == "0" || !digits.starts_with('0'))
            && !(text.starts_with('-') && digits == "0");
        if !well_formed {
            return None;
        }
        Some(match text.parse::<i64>() {
            Ok(small) => Integer::Small(small),
            Err(_) => Integer::Big(text.to_owned()),
        })
    }

    /// The value as an `i64`, when it fits.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Integer::Small(v) => Some(*v),
            Integer::Big(_) => None,
        }
    }
}

impl From<i64> for Integer {
    fn from(v: i64) -> Self {
        Integer::Small(v)
    }
}

impl From<i32> for Integer {
    fn from(v: i32) -> Self {
        Integer::Small(i64::from(v))
    }
}

impl From<u64> for Integer {
    fn from(v: u64) -> Self {
        Integer::from(i128::from(v))
    }
}

impl From<usize> for Integer {
    fn from(v: usize) -> Self {
        // usize is at most 64 bits on every supported target.
        Integer::from(v as u64)
    }
}

impl From<i128> for Integer {
    fn from(v: i128) -> Self {
        match i64::try_from(v) {
            Ok(small) => Integer::Small(small),
            Err(_) => Integer::Big(v.to_string()),
        }
    }
}

impl fmt::Display for Integer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Integer::Small(v) => write!(f, "{v}"),
            Integer::Big(digits) => f.write_str(digits),
        }
    }
}

/// A judged, hashed or ledgered piece of data. Build containers through the constructors
/// ([`Value::set`], [`Value::dict`], [`Value::map`]) so the normal form holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// Python `None`, JSON `null`.
    Null,
    /// A boolean; never equal to an integer.
    Bool(bool),
    /// An exact integer.
    Int(Integer),
    /// A finite float; never equal to an integer, even when integral.
    Float(Finite),
    /// A UTF-8 string.
    Str(String),
    /// Raw bytes.
    Bytes(Vec<u8>),
    /// An ordered, mutable sequence (Python `list`).
    List(Vec<Value>),
    /// An ordered, immutable sequence (Python `tuple`); never equal to a list.
    Tuple(Vec<Value>),
    /// A set: elements sorted by their canonical encoding, without duplicates.
    Set(Vec<Value>),
    /// A dictionary whose keys are all strings, sorted.
    Map(BTreeMap<String, Value>),
    /// A dictionary with at least one non-string key: pairs sorted by the key's canonical
    /// encoding, keys unique.
    Dict(Vec<(Value, Value)>),
}

impl Value {
    /// An integer value.
    pub fn int(v: impl Into<Integer>) -> Value {
        Value::Int(v.into())
    }

    /// A float value, or `None` for NaN and the infinities.
    pub fn float(x: f64) -> Option<Value> {
        Finite::new(x).map(Value::Float)
    }

    /// A string value.
    pub fn str(s: impl Into<String>) -> Value {
        Value::Str(s.into())
    }

    /// A set in normal form: sorted by canonical encoding, duplicates dropped.
    pub fn set(items: impl IntoIterator<Item = Value>) -> Value {
        let mut keyed: Vec<(String, Value)> = items
            .into_iter()
            .map(|item| (canonical::encode(&item), item))
            .collect();
        keyed.sort_by(|a, b| a.0.cmp(&b.0));
        keyed.dedup_by(|a, b| a.0 == b.0);
        Value::Set(keyed.into_iter().map(|(_, item)| item).collect())
    }

    /// A string-keyed map.
    pub fn map<K: Into<String>>(pairs: impl IntoIterator<Item = (K, Value)>) -> Value {
        Value::Map(pairs.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }

    /// A dictionary in normal form. Later duplicates of a key replace earlier ones (as in
    /// Python); a dictionary whose keys are all strings becomes a [`Value::Map`].
    pub fn dict(pairs: impl IntoIterator<Item = (Value, Value)>) -> Value {
        let mut by_key: BTreeMap<String, (Value, Value)> = BTreeMap::new();
        for (k, v) in pairs {
            by_key.insert(canonical::encode(&k), (k, v));
        }
        if by_key.values().all(|(k, _)| matches!(k, Value::Str(_))) {
            let map = by_key
                .into_values()
                .filter_map(|(k, v)| match k {
                    Value::Str(s) => Some((s, v)),
                    _ => None,
                })
                .collect();
            return Value::Map(map);
        }
        Value::Dict(by_key.into_values().collect())
    }

    /// The name of this value's type, as reports show it (`"int"`, `"tuple"`, …).
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Bytes(_) => "bytes",
            Value::List(_) => "list",
            Value::Tuple(_) => "tuple",
            Value::Set(_) => "set",
            Value::Map(_) | Value::Dict(_) => "dict",
        }
    }

    /// Looks up a string key in a map.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Map(map) => map.get(key),
            _ => None,
        }
    }

    /// The string inside a [`Value::Str`].
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The integer inside a [`Value::Int`], when it fits an `i64`.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => i.as_i64(),
            _ => None,
        }
    }

    /// Converts parsed JSON. Object keys become map keys; numbers keep their exactness
    /// (integers stay integers, floats stay floats).
    pub fn from_json(json: &serde_json::Value) -> Value {
        match json {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::Bool(*b),
            serde_json::Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    Value::int(i)
                } else if let Some(u) = n.as_u64() {
                    Value::int(i128::from(u))
                } else {
                    // serde_json never holds a non-finite number; `Null` is unreachable in practice.
                    n.as_f64().and_then(Value::float).unwrap_or(Value::Null)
                }
            }
            serde_json::Value::String(s) => Value::Str(s.clone()),
            serde_json::Value::Array(items) => {
                Value::List(items.iter().map(Value::from_json).collect())
            }
            serde_json::Value::Object(obj) => Value::Map(
                obj.iter()
                    .map(|(k, v)| (k.clone(), Value::from_json(v)))
                    .collect(),
            ),
        }
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}
impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::int(v)
    }
}
impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Str(s.to_owned())
    }
}
impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Str(s)
    }
}

/// Displays the canonical encoding.
impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&canonical::encode(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_take_the_small_form_whenever_they_fit() {
        assert_eq!(Integer::from(5i128), Integer::Small(5));
        assert_eq!(
            Integer::from_decimal("-9223372036854775808"),
            Some(Integer::Small(i64::MIN))
        );
        assert_eq!(
            Integer::from_decimal("9223372036854775808"),
            Some(Integer::Big("9223372036854775808".into()))
        );
        for bad in ["", "-", "01", "-0", "+1", "1.0", " 1"] {
            assert_eq!(Integer::from_decimal(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn non_finite_floats_cannot_be_built() {
        assert!(Value::float(f64::NAN).is_none());
        assert!(Value::float(f64::INFINITY).is_none());
        assert!(Value::float(f64::NEG_INFINITY).is_none());
        assert!(Value::float(1.5).is_some());
    }

    #[test]
    fn types_stay_distinct() {
        assert_ne!(Value::Bool(true), Value::int(1));
        assert_ne!(Value::int(1), Value::float(1.0).unwrap());
        assert_ne!(
            Value::List(vec![Value::int(1)]),
            Value::Tuple(vec![Value::int(1)])
        );
    }

    #[test]
    fn sets_are_normalised() {
        let a = Value::set([Value::int(3), Value::int(1), Value::int(3)]);
        let b = Value::set([Value::int(1), Value::int(3)]);
        assert_eq!(a, b);
        assert_eq!(a, Value::Set(vec![Value::int(1), Value::int(3)]));
    }

    #[test]
    fn string_keyed_dicts_become_maps_and_later_keys_win() {
        let d = Value::dict([
            (Value::str("b"), Value::int(1)),
            (Value::str("b"), Value::int(2)),
        ]);
        assert_eq!(d, Value::map([("b", Value::int(2))]));
        let mixed = Value::dict([(Value::int(2), Value::Null), (Value::int(1), Value::Null)]);
        assert_eq!(
            mixed,
            Value::Dict(vec![
                (Value::int(1), Value::Null),
                (Value::int(2), Value::Null)
            ])
        );
    }
}
