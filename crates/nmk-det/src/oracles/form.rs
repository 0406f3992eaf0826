//! Form checks: does a text have the shape its contract declares?
//!
//! This module owns output-type detection ([`detect_type`]), the extraction of fenced code blocks
//! ([`extract_fenced`]), JSON and canonical-value parsing ([`parse_json_text`],
//! [`parse_structured`]), required keys and substrings, the data-form rung the commit trap climbs
//! for JSON, XML and text ([`check_form`]), and the one type-strict comparison every verdict uses
//! ([`strict_equal`], [`same_shape`]). Python is not judged here: its form needs a parser, which
//! the kernel reaches through its code-checker dependency.

use std::fmt;
use std::str::FromStr;

use crate::canonical;
use crate::level::ValidationLevel;
use crate::value::Value;

use super::xml::xml_well_formed;

/// The kind of artifact a text claims to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OutputType {
    /// A JSON document (also accepted inside a fenced ```` ```json ```` block).
    Json,
    /// An XML document.
    Xml,
    /// Python source defining an entry function.
    Python,
    /// Free text.
    Text,
}

impl OutputType {
    /// The lower-case name (`"json"`, `"xml"`, `"python"`, `"text"`).
    pub fn as_str(self) -> &'static str {
        match self {
            OutputType::Json => "json",
            OutputType::Xml => "xml",
            OutputType::Python => "python",
            OutputType::Text => "text",
        }
    }

    /// Reads a contract's type name, case-insensitively. `json`, `object` and `structured` all
    /// mean [`OutputType::Json`]; `python`/`py`/`code` mean Python; `text`/`str`/`string` mean
    /// text. Anything else is `None`, never a default.
    pub fn from_name(name: &str) -> Option<OutputType> {
        let lower = name.trim().to_ascii_lowercase();
        match lower.as_str() {
            "json" | "object" | "structured" => Some(OutputType::Json),
            "xml" => Some(OutputType::Xml),
            "python" | "py" | "code" => Some(OutputType::Python),
            "text" | "str" | "string" => Some(OutputType::Text),
            _ => None,
        }
    }
}

impl fmt::Display for OutputType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A type name that is not one of the output types.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown output type {0:?}")]
pub struct UnknownOutputType(pub String);

impl FromStr for OutputType {
    type Err = UnknownOutputType;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        OutputType::from_name(s).ok_or_else(|| UnknownOutputType(s.to_owned()))
    }
}

/// Why a text failed its form check. The display form is the reason recorded after
/// `form_invalid:` (for example `json:expected value at line 1 column 1`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormError {
    /// The text is empty or only whitespace.
    #[error("empty")]
    Empty,
    /// No JSON document could be parsed from the text.
    #[error("json:{0}")]
    Json(String),
    /// The JSON document is not an object, but keys were required.
    #[error("not_an_object")]
    NotAnObject,
    /// Required keys are absent.
    #[error("missing_keys:{}", .0.join(","))]
    MissingKeys(Vec<String>),
    /// Required substrings are absent.
    #[error("missing_substrings:{}", .0.join(","))]
    MissingSubstrings(Vec<String>),
    /// The XML is not well-formed.
    #[error("xml:{0}")]
    Xml(String),
    /// Required keys were declared for a type that has no keys.
    #[error("required_keys_need_json:{0}")]
    KeysNeedJson(OutputType),
    /// The type's form cannot be judged by this module (Python needs a code checker).
    #[error("unsupported_type:{0}")]
    Unsupported(OutputType),
}

/// What a passing data-form check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormPass {
    /// The type the text was judged as.
    pub otype: OutputType,
    /// [`ValidationLevel::Schema`] when required keys or substrings were declared and all are
    /// present, otherwise [`ValidationLevel::Syntax`].
    pub level: ValidationLevel,
}

fn starts_like_xml(trimmed: &str) -> bool {
    let mut chars = trimmed.chars();
    chars.next() == Some('<')
        && chars
            .next()
            .is_some_and(|c| c.is_alphabetic() || c == '?' || c == '!' || c == '_')
}

fn looks_like_python_line(line: &str) -> bool {
    let line = line.trim_start();
    line.starts_with("def ")
        || line.starts_with("async def ")
        || line.starts_with("class ")
        || line.starts_with("import ")
        || (line.starts_with("from ") && line.contains(" import "))
}

/// Guesses the type of an undeclared output: a fenced JSON block or a text starting with `{` or
/// `[` is JSON; a fenced Python block is Python; a text starting with a tag is XML; a text with a
/// line starting `def`, `class`, `import` or `from … import` is Python; anything else is text.
pub fn detect_type(text: &str) -> OutputType {
    if extract_fenced(text, &["json"]).is_some() {
        return OutputType::Json;
    }
    if extract_fenced(text, &["python", "py"]).is_some() {
        return OutputType::Python;
    }
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        return OutputType::Json;
    }
    if starts_like_xml(trimmed) {
        return OutputType::Xml;
    }
    if text.lines().any(looks_like_python_line) {
        return OutputType::Python;
    }
    OutputType::Text
}

/// The body of the first fenced block (a line starting with three backticks) whose info string
/// is one of `langs`, compared case-insensitively; `""` in `langs` accepts a bare fence. The
/// block ends at the next line starting with three backticks; an unclosed block is not a block.
pub fn extract_fenced<'a>(text: &'a str, langs: &[&str]) -> Option<&'a str> {
    let mut offset = 0usize;
    let mut open: Option<usize> = None;
    for line in text.split_inclusive('\n') {
        let start = offset;
        offset += line.len();
        let trimmed = line.trim();
        let Some(info) = trimmed.strip_prefix("```") else {
            continue;
        };
        match open {
            Some(body_start) => {
                if info.trim().is_empty() {
                    return text.get(body_start..start);
                }
            }
            None => {
                let lang = info.trim();
                if langs.iter().any(|l| l.eq_ignore_ascii_case(lang)) {
                    open = Some(offset);
                }
            }
        }
    }
    None
}

/// Parses a JSON document from `text`: the whole text, or else the first fenced ```` ```json ````
/// (or bare) block. Numbers keep their exactness where JSON allows (integers beyond 64 bits are
/// read as floats by the JSON reader and so never equal an exact integer).
pub fn parse_json_text(text: &str) -> Result<Value, FormError> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(FormError::Empty);
    }
    let first = match serde_json::from_str::<serde_json::Value>(trimmed) {
        Ok(json) => return Ok(Value::from_json(&json)),
        Err(e) => e,
    };
    if let Some(block) = extract_fenced(text, &["json", ""]) {
        return serde_json::from_str::<serde_json::Value>(block.trim())
            .map(|json| Value::from_json(&json))
            .map_err(|e| FormError::Json(e.to_string()));
    }
    Err(FormError::Json(first.to_string()))
}

/// Reads a text as a value: its canonical encoding when it is one (so tuples, sets and bytes can
/// be stated), else a JSON document as [`parse_json_text`] finds it.
pub fn parse_structured(text: &str) -> Result<Value, FormError> {
    match canonical::decode(text.trim()) {
        Ok(value) => Ok(value),
        Err(_) => parse_json_text(text),
    }
}

/// Looks a string key up in a dictionary value (a [`Value::Map`], or a [`Value::Dict`] that has
/// string keys among others).
pub fn dict_get<'a>(dict: &'a Value, key: &str) -> Option<&'a Value> {
    match dict {
        Value::Map(map) => map.get(key),
        Value::Dict(pairs) => pairs
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v),
        _ => None,
    }
}

/// Whether a value is a dictionary.
pub fn is_dict(value: &Value) -> bool {
    matches!(value, Value::Map(_) | Value::Dict(_))
}

/// The required keys absent from `value`, in the order given; an error when `value` is not a
/// dictionary.
pub fn missing_keys(value: &Value, keys: &[String]) -> Result<Vec<String>, FormError> {
    if !is_dict(value) {
        return Err(FormError::NotAnObject);
    }
    Ok(keys
        .iter()
        .filter(|k| dict_get(value, k).is_none())
        .cloned()
        .collect())
}

/// The required substrings absent from `text`, in the order given (case-sensitive).
pub fn missing_substrings(text: &str, needles: &[String]) -> Vec<String> {
    needles
        .iter()
        .filter(|n| !text.contains(n.as_str()))
        .cloned()
        .collect()
}

/// The data-form rung for JSON, XML and text.
///
/// JSON must parse ([`parse_json_text`]) and, if `required_keys` is non-empty, be an object with
/// every key; XML must be well-formed; text always parses. Every type must contain each of
/// `must_include`. Declaring required keys for XML or text fails (`required_keys_need_json`), and
/// Python is [`FormError::Unsupported`]: its form needs a code checker.
pub fn check_form(
    text: &str,
    otype: OutputType,
    required_keys: &[String],
    must_include: &[String],
) -> Result<FormPass, FormError> {
    match otype {
        OutputType::Python => return Err(FormError::Unsupported(otype)),
        OutputType::Json => {
            let value = parse_json_text(text)?;
            if !required_keys.is_empty() {
                let missing = missing_keys(&value, required_keys)?;
                if !missing.is_empty() {
                    return Err(FormError::MissingKeys(missing));
                }
            }
        }
        OutputType::Xml | OutputType::Text => {
            if !required_keys.is_empty() {
                return Err(FormError::KeysNeedJson(otype));
            }
            if otype == OutputType::Xml {
                xml_well_formed(text).map_err(|e| FormError::Xml(e.to_string()))?;
            } else if text.trim().is_empty() {
                return Err(FormError::Empty);
            }
        }
    }
    let missing = missing_substrings(text, must_include);
    if !missing.is_empty() {
        return Err(FormError::MissingSubstrings(missing));
    }
    let level = if required_keys.is_empty() && must_include.is_empty() {
        ValidationLevel::Syntax
    } else {
        ValidationLevel::Schema
    };
    Ok(FormPass { otype, level })
}

/// The one comparison verdicts use: type-strict structural equality. A boolean never equals an
/// integer, an integer never equals a float, a tuple never equals a list, floats compare by bits
/// (so `0.0` and `-0.0` differ), and NaN cannot occur because no [`Value`] holds it.
pub fn strict_equal(actual: &Value, expected: &Value) -> bool {
    actual == expected
}

/// Whether two values have the same shape: the same type at every position, the same key set in
/// every dictionary and the same length in every sequence; scalars' values are not compared.
pub fn same_shape(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::List(x), Value::List(y))
        | (Value::Tuple(x), Value::Tuple(y))
        | (Value::Set(x), Value::Set(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same_shape(p, q))
        }
        (Value::Map(x), Value::Map(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((kx, vx), (ky, vy))| kx == ky && same_shape(vx, vy))
        }
        (Value::Dict(x), Value::Dict(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((kx, vx), (ky, vy))| kx == ky && same_shape(vx, vy))
        }
        _ => a.type_name() == b.type_name() && !is_container(a),
    }
}

fn is_container(v: &Value) -> bool {
    matches!(
        v,
        Value::List(_) | Value::Tuple(_) | Value::Set(_) | Value::Map(_) | Value::Dict(_)
    )
}

/// Python truthiness: `null`, `false`, zero, and empty strings, bytes and containers are false.
pub fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Int(i) => i.as_i64() != Some(0),
        Value::Float(f) => f.get() != 0.0,
        Value::Str(s) => !s.is_empty(),
        Value::Bytes(b) => !b.is_empty(),
        Value::List(items) | Value::Tuple(items) | Value::Set(items) => !items.is_empty(),
        Value::Map(map) => !map.is_empty(),
        Value::Dict(pairs) => !pairs.is_empty(),
    }
}
