//! Gregorian calendar dates: `parse_date`, `days_between`, `add_days`.
//!
//! Dates are strict ISO `YYYY-MM-DD` strings in the proleptic Gregorian calendar, years 0001 to
//! 9999 (Python's `datetime.date` range): exactly ten ASCII characters, no sign, no whitespace,
//! no other separator. A year is leap when divisible by 4, except centuries not divisible by 400
//! (1900 is not leap, 2000 is).
//!
//! The primitive converts dates to day numbers with the closed-form days-from-civil and
//! civil-from-days formulas (counting in 400-year eras of 146_097 days, years starting in March so
//! the leap day is last). The oracles never use those formulas: they sum year and month lengths
//! from a table, and `add_days` walks month by month.

use super::PrimitiveError;
use super::args::{arity, int, invalid, out_of_range, str_capped};
use crate::gate::Rng;
use crate::value::{Integer, Value};

/// The longest string even looked at as a date.
const MAX_DATE_TEXT: usize = 64;

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Parses a strict `YYYY-MM-DD` by fixed byte positions.
fn parse_ymd(text: &str) -> Result<(i64, i64, i64), PrimitiveError> {
    let bad = || invalid("date", format!("{text:?} is not a valid YYYY-MM-DD date"));
    let b = text.as_bytes();
    if b.len() != 10 || b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
        return Err(bad());
    }
    let number = |range: std::ops::Range<usize>| -> Option<i64> {
        let digits = b.get(range)?;
        digits.iter().try_fold(0i64, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0'))
        })
    };
    let (Some(y), Some(m), Some(d)) = (number(0..4), number(5..7), number(8..10)) else {
        return Err(bad());
    };
    if y < 1 || !(1..=12).contains(&m) || d < 1 || d > days_in_month(y, m) {
        return Err(bad());
    }
    Ok((y, m, d))
}

/// Days since 1970-01-01 of a valid date (Hinnant's days-from-civil).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date `z` days after 1970-01-01 (Hinnant's civil-from-days).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn date_arg<'a>(
    args: &'a [Value],
    i: usize,
    param: &'static str,
) -> Result<&'a str, PrimitiveError> {
    str_capped(args, i, param, MAX_DATE_TEXT)
}

fn format_date(y: i64, m: i64, d: i64) -> Value {
    Value::str(format!("{y:04}-{m:02}-{d:02}"))
}

/// `parse_date(text: str) -> tuple[int, int, int]`.
pub fn parse_date(args: &[Value]) -> Result<Value, PrimitiveError> {
    arity(args, 1)?;
    let (y, m, d) = parse_ymd(date_arg(args, 0, "text")?)?;
    Ok(Value::Tuple(vec![
        Value::int(y),
        Value::int(m),
        Value::int(d),
    ]))
}

/// `days_between(a: str, b: str) -> int`: day number of `b` minus day number of `a`.
pub fn days_between(args: &[Value]) -> Result<Value, PrimitiveError> {
    arity(args, 2)?;
    let (ya, ma, da) = parse_ymd(date_arg(args, 0, "a")?)?;
    let (yb, mb, db) = parse_ymd(date_arg(args, 1, "b")?)?;
    Ok(Value::int(
        days_from_civil(yb, mb, db) - days_from_civil(ya, ma, da),
    ))
}

/// `add_days(date: str, days: int) -> str`.
pub fn add_days(args: &[Value]) -> Result<Value, PrimitiveError> {
    arity(args, 2)?;
    let (y, m, d) = parse_ymd(date_arg(args, 0, "date")?)?;
    let days = int(args, 1, "days")?;
    let target = days_from_civil(y, m, d)
        .checked_add(days)
        .filter(|t| (days_from_civil(1, 1, 1)..=days_from_civil(9999, 12, 31)).contains(t))
        .ok_or_else(|| out_of_range("days", "the result is outside 0001-01-01..=9999-12-31"))?;
    let (ry, rm, rd) = civil_from_days(target);
    Ok(format_date(ry, rm, rd))
}

// ---- Oracles: table-driven, no closed forms. ----

const MONTH_LENGTHS: [i64; 12] = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

fn oracle_year_length(y: i64) -> i64 {
    // Counted rather than computed by the leap rule's usual phrasing: a year is 366 days when
    // it has a 29 February, which the Gregorian rule grants on multiples of 400, and on multiples
    // of 4 that are not multiples of 100.
    let leap = if y % 400 == 0 {
        true
    } else if y % 100 == 0 {
        false
    } else {
        y % 4 == 0
    };
    365 + i64::from(leap)
}

fn oracle_month_length(y: i64, m: i64) -> i64 {
    let base = usize::try_from(m - 1)
        .ok()
        .and_then(|i| MONTH_LENGTHS.get(i).copied())
        .unwrap_or(0);
    if m == 2 {
        base + oracle_year_length(y) - 365
    } else {
        base
    }
}

fn oracle_parse(text: &str) -> Result<(i64, i64, i64), PrimitiveError> {
    let bad = || invalid("date", "not a date");
    let parts: Vec<&str> = text.split('-').collect();
    let [ys, ms, ds] = parts.as_slice() else {
        return Err(bad());
    };
    let field = |s: &str, len: usize| -> Result<i64, PrimitiveError> {
        if s.len() != len || !s.chars().all(|c| c.is_ascii_digit()) {
            return Err(bad());
        }
        s.parse::<i64>().map_err(|_| bad())
    };
    let (y, m, d) = (field(ys, 4)?, field(ms, 2)?, field(ds, 2)?);
    if y == 0 || m == 0 || m > 12 || d == 0 || d > oracle_month_length(y, m) {
        return Err(bad());
    }
    Ok((y, m, d))
}

/// 1 for 0001-01-01: every whole year before, every whole month before, then the day.
fn oracle_ordinal(y: i64, m: i64, d: i64) -> i64 {
    let years: i64 = (1..y).map(oracle_year_length).sum();
    let months: i64 = (1..m).map(|mm| oracle_month_length(y, mm)).sum();
    years + months + d
}

/// Oracle for `parse_date`: splits on `-` and checks each field against the month table.
pub fn parse_date_oracle(args: &[Value]) -> Result<Value, PrimitiveError> {
    arity(args, 1)?;
    let (y, m, d) = oracle_parse(date_arg(args, 0, "text")?)?;
    Ok(Value::Tuple(vec![
        Value::int(y),
        Value::int(m),
        Value::int(d),
    ]))
}

/// Oracle for `days_between`: the difference of table-summed ordinals.
pub fn days_between_oracle(args: &[Value]) -> Result<Value, PrimitiveError> {
    arity(args, 2)?;
    let (ya, ma, da) = oracle_parse(date_arg(args, 0, "a")?)?;
    let (yb, mb, db) = oracle_parse(date_arg(args, 1, "b")?)?;
    Ok(Value::int(
        oracle_ordinal(yb, mb, db) - oracle_ordinal(ya, ma, da),
    ))
}

/// Oracle for `add_days`: walks from the date a month (or, from 1 January / 31 December, a whole
/// year) at a time, failing as soon as it leaves years 1..=9999.
pub fn add_days_oracle(args: &[Value]) -> Result<Value, PrimitiveError> {
    arity(args, 2)?;
    let (mut y, mut m, mut d) = oracle_parse(date_arg(args, 0, "date")?)?;
    let days = int(args, 1, "days")?;
    let outside = || out_of_range("days", "left the calendar");
    // No valid instance moves more than the calendar's span; refusing larger moves up front
    // keeps the walk short and i64::MIN harmless.
    if days.unsigned_abs() > 3_652_059 {
        return Err(outside());
    }
    if days >= 0 {
        let mut left = days;
        loop {
            if m == 1 && d == 1 && left >= oracle_year_length(y) {
                left -= oracle_year_length(y);
                y += 1;
            } else {
                let room = oracle_month_length(y, m) - d;
                if left <= room {
                    d += left;
                    break;
                }
                left -= room + 1;
                d = 1;
                m += 1;
                if m == 13 {
                    m = 1;
                    y += 1;
                }
            }
            if y > 9999 {
                return Err(outside());
            }
        }
    } else {
        let mut left = -days;
        loop {
            if m == 12 && d == 31 && left >= oracle_year_length(y) {
                left -= oracle_year_length(y);
                y -= 1;
            } else {
                if left < d {
                    d -= left;
                    break;
                }
                left -= d;
                m -= 1;
                if m == 0 {
                    m = 12;
                    y -= 1;
                }
                d = oracle_month_length(y, m);
            }
            if y < 1 {
                return Err(outside());
            }
        }
    }
    Ok(Value::str(format!("{y:04}-{m:02}-{d:02}")))
}

// ---- Generators ----

const MALFORMED: [&str; 18] = [
    "",
    "2024-1-05",
    "2024/01/05",
    "20240105",
    "+2024-01-01",
    " 2024-01-01",
    "2024-01-01 ",
    "0000-01-01",
    "\u{ff12}\u{ff10}\u{ff12}\u{ff14}-01-01",
    "2024--1-01",
    "abcd-ef-gh",
    "2024-01-1a",
    "-024-01-01",
    "10000-01-01",
    "2024-001-01",
    "2024-01-01T00:00",
    "99999999999999999999999999999999999999999999999999999999999999999999",
    "2024-1-1",
];

const SPECIAL_YEARS: [i64; 10] = [1, 4, 100, 400, 1900, 2000, 2023, 2024, 2100, 9999];

/// A date string: mostly well-formed, with leap-year edges and days past the month's end
/// (which are invalid), sometimes one of a list of malformed strings.
fn gen_date(rng: &mut Rng) -> String {
    if rng.below(10) == 0 {
        return MALFORMED
            .get(rng.below(MALFORMED.len() as u64) as usize)
            .copied()
            .unwrap_or("")
            .to_owned();
    }
    let y = if rng.coin() {
        SPECIAL_YEARS
            .get(rng.below(SPECIAL_YEARS.len() as u64) as usize)
            .copied()
            .unwrap_or(2000)
    } else {
        rng.range_i64(1, 9999)
    };
    let m = match rng.below(20) {
        0 => 0,
        1 => 13,
        2..=7 => 2,
        _ => rng.range_i64(1, 12),
    };
    let d = match rng.below(6) {
        0 => rng.range_i64(28, 31),
        1 => 29,
        2 => rng.range_i64(0, 1),
        _ => rng.range_i64(1, 28),
    };
    format!("{y:04}-{m:02}-{d:02}")
}

/// Generator for `parse_date`: mostly well-formed dates with leap-year edges and days past the
/// month's end, one in ten from a list of malformed strings, now and then a non-string.
pub fn parse_date_generate(rng: &mut Rng) -> Vec<Value> {
    if rng.below(40) == 0 {
        return vec![Value::int(20240101)];
    }
    vec![Value::str(gen_date(rng))]
}

/// Generator for `days_between`: two dates, sometimes equal, sometimes a day apart across a
/// leap day.
pub fn days_between_generate(rng: &mut Rng) -> Vec<Value> {
    let a = gen_date(rng);
    let b = match rng.below(6) {
        0 => a.clone(),
        1 => ["1900-02-28", "1900-03-01", "2000-02-29", "2000-03-01"]
            .get(rng.below(4) as usize)
            .copied()
            .unwrap_or("2000-03-01")
            .to_owned(),
        _ => gen_date(rng),
    };
    vec![Value::str(a), Value::str(b)]
}

/// Generator for `add_days`: small moves across month and leap-day boundaries, large moves near
/// the ends of the calendar (some just inside, some just outside), the `i64` extremes and a big
/// integer.
pub fn add_days_generate(rng: &mut Rng) -> Vec<Value> {
    let date = match rng.below(8) {
        0 => "9999-12-01".to_owned(),
        1 => "0001-01-31".to_owned(),
        _ => gen_date(rng),
    };
    let days = match rng.below(12) {
        0 => i64::MIN,
        1 => i64::MAX,
        2 => rng.range_i64(-4_000_000, 4_000_000),
        3 => rng.range_i64(-3_652_059, 3_652_059),
        4 => rng.range_i64(25, 35) * if rng.coin() { 1 } else { -1 },
        5 => 0,
        _ => rng.range_i64(-800, 800),
    };
    match rng.below(50) {
        0 => vec![
            Value::str(date),
            Value::Int(Integer::Big("100000000000000000000".into())),
        ],
        1 => vec![Value::str(date), Value::str("1")],
        _ => vec![Value::str(date), Value::int(days)],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closed_forms_round_trip_over_the_whole_calendar() {
        let first = days_from_civil(1, 1, 1);
        let last = days_from_civil(9999, 12, 31);
        assert_eq!(last - first + 1, oracle_ordinal(9999, 12, 31));
        for z in (first..=last).step_by(997) {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
            assert_eq!(oracle_ordinal(y, m, d) - 1, z - first);
        }
        assert_eq!(days_from_civil(1970, 1, 1), 0);
    }
}
