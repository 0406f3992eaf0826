//! The placebo set: programs that must all fail a sound gate (constant, echo, most frequent
//! output, sample memoriser), and the perturbation of the candidate's own outputs.

use std::collections::HashMap;

use crate::canonical::encode;
use crate::sandbox::CallResult;
use crate::value::{Integer, Value};

use super::Gap;

/// A Python literal for a value, in ASCII: the constants of placebo programs and the examples
/// in a synthesis prompt (`True`, `None`, `(1,)`, `{1, 2}`, `b"\x00"`, at every depth).
pub fn python_literal(v: &Value) -> String {
    let seq = |items: &[Value]| {
        items
            .iter()
            .map(python_literal)
            .collect::<Vec<_>>()
            .join(", ")
    };
    match v {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => format!("{:?}", f.get()),
        Value::Str(s) => {
            let mut out = String::from("\"");
            for c in s.chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    ' '..='~' => out.push(c),
                    c => out.push_str(&format!("\\U{:08x}", u32::from(c))),
                }
            }
            out.push('"');
            out
        }
        Value::Bytes(b) => {
            let mut out = String::from("b\"");
            for byte in b {
                out.push_str(&format!("\\x{byte:02x}"));
            }
            out.push('"');
            out
        }
        Value::List(items) => format!("[{}]", seq(items)),
        Value::Tuple(items) if items.len() == 1 => format!("({},)", seq(items)),
        Value::Tuple(items) => format!("({})", seq(items)),
        Value::Set(items) if items.is_empty() => "set()".into(),
        Value::Set(items) => format!("{{{}}}", seq(items)),
        Value::Map(m) => format!(
            "{{{}}}",
            m.iter()
                .map(|(k, v)| format!(
                    "{}: {}",
                    python_literal(&Value::str(k.clone())),
                    python_literal(v)
                ))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Value::Dict(pairs) => format!(
            "{{{}}}",
            pairs
                .iter()
                .map(|(k, v)| format!("{}: {}", python_literal(k), python_literal(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// The same type, a different value: what the "perturbed candidate" placebo returns.
pub fn perturb(v: &Value) -> Value {
    match v {
        Value::Null => Value::int(0),
        Value::Bool(b) => Value::Bool(!b),
        Value::Int(Integer::Small(x)) => Value::int(x.checked_add(1).unwrap_or(x - 1)),
        Value::Int(Integer::Big(_)) => Value::int(0),
        Value::Float(f) => {
            let x = f.get();
            let bits = x.to_bits();
            let up = f64::from_bits(bits.wrapping_add(1));
            Value::float(up)
                .or_else(|| Value::float(f64::from_bits(bits.wrapping_sub(1))))
                .unwrap_or(Value::Null)
        }
        Value::Str(s) => Value::Str(format!("{s}\u{0}")),
        Value::Bytes(b) => {
            let mut b = b.clone();
            b.push(0);
            Value::Bytes(b)
        }
        Value::List(items) => {
            let mut items = items.clone();
            items.push(Value::Null);
            Value::List(items)
        }
        Value::Tuple(items) => {
            let mut items = items.clone();
            items.push(Value::Null);
            Value::Tuple(items)
        }
        Value::Set(items) => {
            let mut items = items.clone();
            items.push(Value::str("\u{0}perturbed"));
            Value::set(items)
        }
        Value::Map(m) => {
            let mut m = m.clone();
            m.insert("\u{0}perturbed".into(), Value::Null);
            Value::Map(m)
        }
        Value::Dict(pairs) => {
            let mut pairs = pairs.clone();
            pairs.push((Value::str("\u{0}perturbed"), Value::Null));
            Value::dict(pairs)
        }
    }
}

fn most_frequent(results: &[CallResult]) -> Option<Value> {
    let mut counts: HashMap<String, (usize, &Value)> = HashMap::new();
    for v in results.iter().filter_map(CallResult::value) {
        counts.entry(encode(v)).or_insert((0, v)).0 += 1;
    }
    counts
        .into_iter()
        .max_by(|a, b| a.1.0.cmp(&b.1.0).then_with(|| b.0.cmp(&a.0)))
        .map(|(_, (_, v))| v.clone())
}

/// The placebo programs run in the sandbox: (name, code).
pub(super) fn placebo_programs(
    gap: &Gap,
    gate_results: &[CallResult],
) -> Vec<(&'static str, String)> {
    let e = &gap.entry;
    let mut out = vec![
        (
            "constant_none",
            format!("def {e}(*args):\n    return None\n"),
        ),
        (
            "echo_first_argument",
            format!("def {e}(*args):\n    return args[0] if args else None\n"),
        ),
    ];
    if let Some(v) = most_frequent(gate_results) {
        out.push((
            "constant_most_frequent_output",
            format!("def {e}(*args):\n    return {}\n", python_literal(&v)),
        ));
    }
    let cases = gap
        .samples
        .iter()
        .map(|s| {
            format!(
                "({}, {})",
                python_literal(&Value::Tuple(s.args.clone())),
                python_literal(&s.expected)
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    out.push((
        "sample_memoriser",
        format!(
            "def {e}(*args):\n    for a, r in [{cases}]:\n        if a == args:\n            return r\n    return None\n"
        ),
    ));
    out
}
