//! GGUF metadata values and the typed accessors over a file's key–value table.
//!
//! Owns [`Value`] (one metadata value), [`Array`] (typed, compact arrays: a `u8` array costs one
//! byte per element in memory, so memory stays proportional to the file) and [`Metadata`] (the
//! ordered key–value table with `get_*` accessors that return a typed error when a key is missing
//! or holds the wrong type).

use std::collections::HashMap;

use super::error::GgufError;

/// The GGUF metadata value type ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ValueType {
    /// 0
    U8,
    /// 1
    I8,
    /// 2
    U16,
    /// 3
    I16,
    /// 4
    U32,
    /// 5
    I32,
    /// 6
    F32,
    /// 7
    Bool,
    /// 8
    String,
    /// 9
    Array,
    /// 10
    U64,
    /// 11
    I64,
    /// 12
    F64,
}

impl ValueType {
    /// The type for an id, `None` when unknown.
    pub fn from_id(id: u32) -> Option<ValueType> {
        Some(match id {
            0 => ValueType::U8,
            1 => ValueType::I8,
            2 => ValueType::U16,
            3 => ValueType::I16,
            4 => ValueType::U32,
            5 => ValueType::I32,
            6 => ValueType::F32,
            7 => ValueType::Bool,
            8 => ValueType::String,
            9 => ValueType::Array,
            10 => ValueType::U64,
            11 => ValueType::I64,
            12 => ValueType::F64,
            _ => return None,
        })
    }

    /// The id stored in files.
    pub fn id(self) -> u32 {
        match self {
            ValueType::U8 => 0,
            ValueType::I8 => 1,
            ValueType::U16 => 2,
            ValueType::I16 => 3,
            ValueType::U32 => 4,
            ValueType::I32 => 5,
            ValueType::F32 => 6,
            ValueType::Bool => 7,
            ValueType::String => 8,
            ValueType::Array => 9,
            ValueType::U64 => 10,
            ValueType::I64 => 11,
            ValueType::F64 => 12,
        }
    }

    /// Size in the file of one value of a fixed-size type, `None` for string and array.
    pub fn fixed_size(self) -> Option<usize> {
        match self {
            ValueType::U8 | ValueType::I8 | ValueType::Bool => Some(1),
            ValueType::U16 | ValueType::I16 => Some(2),
            ValueType::U32 | ValueType::I32 | ValueType::F32 => Some(4),
            ValueType::U64 | ValueType::I64 | ValueType::F64 => Some(8),
            ValueType::String | ValueType::Array => None,
        }
    }

    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            ValueType::U8 => "u8",
            ValueType::I8 => "i8",
            ValueType::U16 => "u16",
            ValueType::I16 => "i16",
            ValueType::U32 => "u32",
            ValueType::I32 => "i32",
            ValueType::F32 => "f32",
            ValueType::Bool => "bool",
            ValueType::String => "string",
            ValueType::Array => "array",
            ValueType::U64 => "u64",
            ValueType::I64 => "i64",
            ValueType::F64 => "f64",
        }
    }
}

/// One metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// u8
    U8(u8),
    /// i8
    I8(i8),
    /// u16
    U16(u16),
    /// i16
    I16(i16),
    /// u32
    U32(u32),
    /// i32
    I32(i32),
    /// f32
    F32(f32),
    /// bool
    Bool(bool),
    /// UTF-8 string
    String(String),
    /// typed array
    Array(Array),
    /// u64
    U64(u64),
    /// i64
    I64(i64),
    /// f64
    F64(f64),
}

/// A metadata array: all elements share one type. Nested arrays are [`Array::Array`].
#[derive(Debug, Clone, PartialEq)]
pub enum Array {
    /// u8 elements
    U8(Vec<u8>),
    /// i8 elements
    I8(Vec<i8>),
    /// u16 elements
    U16(Vec<u16>),
    /// i16 elements
    I16(Vec<i16>),
    /// u32 elements
    U32(Vec<u32>),
    /// i32 elements
    I32(Vec<i32>),
    /// f32 elements
    F32(Vec<f32>),
    /// bool elements
    Bool(Vec<bool>),
    /// string elements
    String(Vec<String>),
    /// nested arrays (each may have its own element type)
    Array(Vec<Array>),
    /// u64 elements
    U64(Vec<u64>),
    /// i64 elements
    I64(Vec<i64>),
    /// f64 elements
    F64(Vec<f64>),
}

impl Value {
    /// The value's type.
    pub fn value_type(&self) -> ValueType {
        match self {
            Value::U8(_) => ValueType::U8,
            Value::I8(_) => ValueType::I8,
            Value::U16(_) => ValueType::U16,
            Value::I16(_) => ValueType::I16,
            Value::U32(_) => ValueType::U32,
            Value::I32(_) => ValueType::I32,
            Value::F32(_) => ValueType::F32,
            Value::Bool(_) => ValueType::Bool,
            Value::String(_) => ValueType::String,
            Value::Array(_) => ValueType::Array,
            Value::U64(_) => ValueType::U64,
            Value::I64(_) => ValueType::I64,
            Value::F64(_) => ValueType::F64,
        }
    }

    /// The value as an `i128` when it is an integer of any width.
    pub fn as_integer(&self) -> Option<i128> {
        Some(match *self {
            Value::U8(v) => v.into(),
            Value::I8(v) => v.into(),
            Value::U16(v) => v.into(),
            Value::I16(v) => v.into(),
            Value::U32(v) => v.into(),
            Value::I32(v) => v.into(),
            Value::U64(v) => v.into(),
            Value::I64(v) => v.into(),
            _ => return None,
        })
    }

    /// A short description of the type for error messages (`"array of string"`).
    pub fn describe(&self) -> String {
        match self {
            Value::Array(a) => format!("array of {}", a.element_type().name()),
            other => other.value_type().name().to_owned(),
        }
    }
}

impl Array {
    /// The element type.
    pub fn element_type(&self) -> ValueType {
        match self {
            Array::U8(_) => ValueType::U8,
            Array::I8(_) => ValueType::I8,
            Array::U16(_) => ValueType::U16,
            Array::I16(_) => ValueType::I16,
            Array::U32(_) => ValueType::U32,
            Array::I32(_) => ValueType::I32,
            Array::F32(_) => ValueType::F32,
            Array::Bool(_) => ValueType::Bool,
            Array::String(_) => ValueType::String,
            Array::Array(_) => ValueType::Array,
            Array::U64(_) => ValueType::U64,
            Array::I64(_) => ValueType::I64,
            Array::F64(_) => ValueType::F64,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            Array::U8(v) => v.len(),
            Array::I8(v) => v.len(),
            Array::U16(v) => v.len(),
            Array::I16(v) => v.len(),
            Array::U32(v) => v.len(),
            Array::I32(v) => v.len(),
            Array::F32(v) => v.len(),
            Array::Bool(v) => v.len(),
            Array::String(v) => v.len(),
            Array::Array(v) => v.len(),
            Array::U64(v) => v.len(),
            Array::I64(v) => v.len(),
            Array::F64(v) => v.len(),
        }
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The elements as `i128` when the element type is an integer type.
    fn integers(&self) -> Option<Vec<i128>> {
        Some(match self {
            Array::U8(v) => v.iter().map(|&x| x.into()).collect(),
            Array::I8(v) => v.iter().map(|&x| x.into()).collect(),
            Array::U16(v) => v.iter().map(|&x| x.into()).collect(),
            Array::I16(v) => v.iter().map(|&x| x.into()).collect(),
            Array::U32(v) => v.iter().map(|&x| x.into()).collect(),
            Array::I32(v) => v.iter().map(|&x| x.into()).collect(),
            Array::U64(v) => v.iter().map(|&x| x.into()).collect(),
            Array::I64(v) => v.iter().map(|&x| x.into()).collect(),
            _ => return None,
        })
    }
}

/// The metadata table of a GGUF file: keys in file order, with typed lookups.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metadata {
    entries: Vec<(String, Value)>,
    index: HashMap<String, usize>,
}

impl Metadata {
    /// An empty table.
    pub fn new() -> Metadata {
        Metadata::default()
    }

    /// Adds a key; a key already present is an error.
    pub fn insert(&mut self, key: String, value: Value) -> Result<(), GgufError> {
        if self.index.contains_key(&key) {
            return Err(GgufError::DuplicateKey { key });
        }
        self.index.insert(key.clone(), self.entries.len());
        self.entries.push((key, value));
        Ok(())
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no keys.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// All entries in file order.
    pub fn entries(&self) -> &[(String, Value)] {
        &self.entries
    }

    /// Whether the key is present.
    pub fn contains(&self, key: &str) -> bool {
        self.index.contains_key(key)
    }

    /// The raw value of a key.
    pub fn get(&self, key: &str) -> Option<&Value> {
        let i = *self.index.get(key)?;
        self.entries.get(i).map(|(_, v)| v)
    }

    /// The value of a key, or [`GgufError::MissingKey`].
    pub fn require(&self, key: &str) -> Result<&Value, GgufError> {
        self.get(key).ok_or_else(|| GgufError::MissingKey {
            key: key.to_owned(),
        })
    }

    fn integer<T: TryFrom<i128>>(&self, key: &str, expected: &'static str) -> Result<T, GgufError> {
        let v = self.require(key)?;
        let n = v.as_integer().ok_or_else(|| GgufError::WrongType {
            key: key.to_owned(),
            expected,
            found: v.describe(),
        })?;
        T::try_from(n).map_err(|_| GgufError::OutOfRange {
            key: key.to_owned(),
            expected,
            value: n.to_string(),
        })
    }

    /// An integer key as `u32` (any integer type whose value fits).
    pub fn get_u32(&self, key: &str) -> Result<u32, GgufError> {
        self.integer(key, "u32")
    }

    /// An integer key as `i32` (any integer type whose value fits).
    pub fn get_i32(&self, key: &str) -> Result<i32, GgufError> {
        self.integer(key, "i32")
    }

    /// An integer key as `u64` (any integer type whose value fits).
    pub fn get_u64(&self, key: &str) -> Result<u64, GgufError> {
        self.integer(key, "u64")
    }

    /// An integer key as `i64` (any integer type whose value fits).
    pub fn get_i64(&self, key: &str) -> Result<i64, GgufError> {
        self.integer(key, "i64")
    }

    /// An integer key as `usize` (any integer type whose value fits).
    pub fn get_usize(&self, key: &str) -> Result<usize, GgufError> {
        self.integer(key, "usize")
    }

    /// An `f32` key (an `f64` value is narrowed).
    pub fn get_f32(&self, key: &str) -> Result<f32, GgufError> {
        match self.require(key)? {
            Value::F32(v) => Ok(*v),
            #[allow(clippy::cast_possible_truncation)]
            Value::F64(v) => Ok(*v as f32),
            other => Err(GgufError::WrongType {
                key: key.to_owned(),
                expected: "f32",
                found: other.describe(),
            }),
        }
    }

    /// An `f64` key (an `f32` value is widened).
    pub fn get_f64(&self, key: &str) -> Result<f64, GgufError> {
        match self.require(key)? {
            Value::F32(v) => Ok(f64::from(*v)),
            Value::F64(v) => Ok(*v),
            other => Err(GgufError::WrongType {
                key: key.to_owned(),
                expected: "f64",
                found: other.describe(),
            }),
        }
    }

    /// A bool key.
    pub fn get_bool(&self, key: &str) -> Result<bool, GgufError> {
        match self.require(key)? {
            Value::Bool(v) => Ok(*v),
            other => Err(GgufError::WrongType {
                key: key.to_owned(),
                expected: "bool",
                found: other.describe(),
            }),
        }
    }

    /// A string key.
    pub fn get_str(&self, key: &str) -> Result<&str, GgufError> {
        match self.require(key)? {
            Value::String(v) => Ok(v),
            other => Err(GgufError::WrongType {
                key: key.to_owned(),
                expected: "string",
                found: other.describe(),
            }),
        }
    }

    /// An array key of any element type.
    pub fn get_array(&self, key: &str) -> Result<&Array, GgufError> {
        match self.require(key)? {
            Value::Array(a) => Ok(a),
            other => Err(GgufError::WrongType {
                key: key.to_owned(),
                expected: "array",
                found: other.describe(),
            }),
        }
    }

    /// An array-of-strings key.
    pub fn get_str_array(&self, key: &str) -> Result<&[String], GgufError> {
        match self.get_array(key)? {
            Array::String(v) => Ok(v),
            other => Err(GgufError::WrongType {
                key: key.to_owned(),
                expected: "array of string",
                found: format!("array of {}", other.element_type().name()),
            }),
        }
    }

    /// An array-of-f32 key.
    pub fn get_f32_array(&self, key: &str) -> Result<&[f32], GgufError> {
        match self.get_array(key)? {
            Array::F32(v) => Ok(v),
            other => Err(GgufError::WrongType {
                key: key.to_owned(),
                expected: "array of f32",
                found: format!("array of {}", other.element_type().name()),
            }),
        }
    }

    fn integer_array<T: TryFrom<i128>>(
        &self,
        key: &str,
        expected: &'static str,
    ) -> Result<Vec<T>, GgufError> {
        let a = self.get_array(key)?;
        let ints = a.integers().ok_or_else(|| GgufError::WrongType {
            key: key.to_owned(),
            expected,
            found: format!("array of {}", a.element_type().name()),
        })?;
        ints.into_iter()
            .map(|n| {
                T::try_from(n).map_err(|_| GgufError::OutOfRange {
                    key: key.to_owned(),
                    expected,
                    value: n.to_string(),
                })
            })
            .collect()
    }

    /// An integer-array key as `i32`s (any integer element type whose values fit).
    pub fn get_i32_array(&self, key: &str) -> Result<Vec<i32>, GgufError> {
        self.integer_array(key, "array of i32")
    }

    /// An integer-array key as `u32`s (any integer element type whose values fit).
    pub fn get_u32_array(&self, key: &str) -> Result<Vec<u32>, GgufError> {
        self.integer_array(key, "array of u32")
    }

    /// An integer-array key as `u64`s (any integer element type whose values fit).
    pub fn get_u64_array(&self, key: &str) -> Result<Vec<u64>, GgufError> {
        self.integer_array(key, "array of u64")
    }

    /// Like [`Metadata::get_u32`] but `Ok(None)` when the key is absent.
    pub fn opt_u32(&self, key: &str) -> Result<Option<u32>, GgufError> {
        self.optional(key, Metadata::get_u32)
    }

    /// Like [`Metadata::get_f32`] but `Ok(None)` when the key is absent.
    pub fn opt_f32(&self, key: &str) -> Result<Option<f32>, GgufError> {
        self.optional(key, Metadata::get_f32)
    }

    /// Like [`Metadata::get_bool`] but `Ok(None)` when the key is absent.
    pub fn opt_bool(&self, key: &str) -> Result<Option<bool>, GgufError> {
        self.optional(key, Metadata::get_bool)
    }

    /// Like [`Metadata::get_str`] but `Ok(None)` when the key is absent.
    pub fn opt_str(&self, key: &str) -> Result<Option<&str>, GgufError> {
        if self.contains(key) {
            self.get_str(key).map(Some)
        } else {
            Ok(None)
        }
    }

    fn optional<'a, T>(
        &'a self,
        key: &str,
        f: impl Fn(&'a Metadata, &str) -> Result<T, GgufError>,
    ) -> Result<Option<T>, GgufError> {
        if self.contains(key) {
            f(self, key).map(Some)
        } else {
            Ok(None)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn md() -> Metadata {
        let mut m = Metadata::new();
        m.insert("a.u64".into(), Value::U64(7)).unwrap();
        m.insert("a.big".into(), Value::U64(u64::MAX)).unwrap();
        m.insert("a.neg".into(), Value::I32(-3)).unwrap();
        m.insert("a.f".into(), Value::F64(0.5)).unwrap();
        m.insert("a.s".into(), Value::String("x".into())).unwrap();
        m.insert("a.ia".into(), Value::Array(Array::U32(vec![1, 2])))
            .unwrap();
        m.insert("a.sa".into(), Value::Array(Array::String(vec!["t".into()])))
            .unwrap();
        m
    }

    #[test]
    fn integer_interchange_and_range() {
        let m = md();
        assert_eq!(m.get_u32("a.u64").unwrap(), 7);
        assert_eq!(m.get_i32("a.u64").unwrap(), 7);
        assert_eq!(m.get_i64("a.neg").unwrap(), -3);
        assert!(matches!(
            m.get_u32("a.neg"),
            Err(GgufError::OutOfRange { .. })
        ));
        assert!(matches!(
            m.get_u32("a.big"),
            Err(GgufError::OutOfRange { .. })
        ));
        assert_eq!(m.get_u64("a.big").unwrap(), u64::MAX);
        assert!(matches!(m.get_u32("a.s"), Err(GgufError::WrongType { .. })));
        assert!(matches!(
            m.get_u32("nope"),
            Err(GgufError::MissingKey { .. })
        ));
        assert_eq!(m.opt_u32("nope").unwrap(), None);
        assert!(m.opt_u32("a.s").is_err());
    }

    #[test]
    fn other_accessors() {
        let m = md();
        assert_eq!(m.get_f32("a.f").unwrap(), 0.5);
        assert_eq!(m.get_str("a.s").unwrap(), "x");
        assert_eq!(m.get_i32_array("a.ia").unwrap(), vec![1, 2]);
        assert_eq!(m.get_str_array("a.sa").unwrap(), ["t".to_owned()]);
        let err = m.get_str_array("a.ia").unwrap_err();
        assert_eq!(
            err.to_string(),
            "metadata key \"a.ia\" holds array of u32, expected array of string"
        );
        assert!(matches!(
            m.clone().insert("a.s".into(), Value::Bool(true)),
            Err(GgufError::DuplicateKey { .. })
        ));
    }
}
