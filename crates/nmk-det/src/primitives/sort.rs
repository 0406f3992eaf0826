//! `sort_unique`: the distinct integers of a sequence, in increasing order (Python's
//! `sorted(set(items))` restricted to 64-bit integers).

use super::PrimitiveError;
use super::args::{arity, int_list, int_value, seq_capped};
use crate::gate::Rng;
use crate::value::{Integer, Value};

/// The most items `sort_unique` accepts.
pub const MAX_ITEMS: usize = 1_000_000;

/// `sort_unique(items: list[int]) -> list[int]`: an unstable sort, then adjacent dedup.
pub fn sort_unique(args: &[Value]) -> Result<Value, PrimitiveError> {
    arity(args, 1)?;
    let items = seq_capped(args, 0, "items", MAX_ITEMS)?;
    let mut nums = items
        .iter()
        .map(|v| int_value(v, "items"))
        .collect::<Result<Vec<i64>, _>>()?;
    nums.sort_unstable();
    nums.dedup();
    Ok(int_list(nums))
}

/// Oracle for `sort_unique`: inserts each item into a growing sorted vector at the position a
/// binary search finds, skipping items already present. Quadratic moves; fine for test sizes.
pub fn sort_unique_oracle(args: &[Value]) -> Result<Value, PrimitiveError> {
    arity(args, 1)?;
    let items = seq_capped(args, 0, "items", MAX_ITEMS)?;
    let mut sorted: Vec<i64> = Vec::new();
    for item in items {
        let x = int_value(item, "items")?;
        if let Err(at) = sorted.binary_search(&x) {
            sorted.insert(at, x);
        }
    }
    Ok(int_list(sorted))
}

/// Generator for `sort_unique`: empty and one-item lists, many duplicates (a narrow value
/// range), the `i64` extremes, already sorted and reversed runs, tuples and sets as containers,
/// and the occasional non-integer or big integer that both sides must refuse.
pub fn sort_unique_generate(rng: &mut Rng) -> Vec<Value> {
    let len = match rng.below(6) {
        0 => rng.below(2) as usize,
        _ => rng.below(40) as usize,
    };
    let narrow = rng.coin();
    let mut nums: Vec<i64> = (0..len)
        .map(|_| match rng.below(12) {
            0 => i64::MIN,
            1 => i64::MAX,
            _ if narrow => rng.range_i64(-3, 3),
            _ => rng.range_i64(-1_000_000, 1_000_000),
        })
        .collect();
    match rng.below(8) {
        0 => nums.sort_unstable(),
        1 => nums.sort_unstable_by(|a, b| b.cmp(a)),
        _ => {}
    }
    let mut values: Vec<Value> = nums.into_iter().map(Value::int).collect();
    match rng.below(30) {
        0 => values.push(Value::str("3")),
        1 => values.push(Value::Bool(true)),
        2 => values.push(Value::Int(Integer::Big("-99999999999999999999".into()))),
        _ => {}
    }
    let container = match rng.below(6) {
        0 => Value::Tuple(values),
        1 => Value::set(values),
        _ => Value::List(values),
    };
    vec![container]
}
