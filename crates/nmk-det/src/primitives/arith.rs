//! Number theory on 64-bit integers: `gcd`, `is_prime`, `primes_up_to`.
//!
//! Everything works on `u64` magnitudes or `u128` products, so nothing can overflow: `gcd` of
//! `i64::MIN` is `2**63`, which is returned as a big integer rather than wrapped.

use super::PrimitiveError;
use super::args::{arity, int, int_list, too_large};
use crate::gate::Rng;
use crate::value::{Integer, Value};

/// The largest bound `primes_up_to` sieves to (the sieve holds one byte per number).
pub const MAX_SIEVE: i64 = 10_000_000;

/// `gcd(a: int, b: int) -> int`, by Euclid's remainder algorithm on magnitudes.
pub fn gcd(args: &[Value]) -> Result<Value, PrimitiveError> {
    arity(args, 2)?;
    let mut a = int(args, 0, "a")?.unsigned_abs();
    let mut b = int(args, 1, "b")?.unsigned_abs();
    while b != 0 {
        (a, b) = (b, a % b);
    }
    Ok(Value::int(a))
}

/// Oracle for `gcd`: Stein's binary algorithm (shifts and subtractions, no division).
pub fn gcd_oracle(args: &[Value]) -> Result<Value, PrimitiveError> {
    arity(args, 2)?;
    let a = int(args, 0, "a")?.unsigned_abs();
    let b = int(args, 1, "b")?.unsigned_abs();
    Ok(Value::int(stein(a, b)))
}

fn stein(mut a: u64, mut b: u64) -> u64 {
    if a == 0 {
        return b;
    }
    if b == 0 {
        return a;
    }
    let shift = (a | b).trailing_zeros();
    a >>= a.trailing_zeros();
    loop {
        b >>= b.trailing_zeros();
        if a > b {
            std::mem::swap(&mut a, &mut b);
        }
        b -= a;
        if b == 0 {
            return a << shift;
        }
    }
}

/// Generator for `gcd`: zeros, equal arguments, shared factors, negatives, the `i64` extremes,
/// and now and then a big integer or a float that both sides must refuse.
pub fn gcd_generate(rng: &mut Rng) -> Vec<Value> {
    let pick = |rng: &mut Rng| -> i64 {
        match rng.below(10) {
            0 => 0,
            1 => i64::MIN,
            2 => i64::MAX,
            3 => rng.range_i64(-20, 20),
            4 => rng.range_i64(i64::MIN, i64::MAX),
            _ => rng.range_i64(-1_000_000, 1_000_000),
        }
    };
    let (a, b) = match rng.below(5) {
        0 => {
            let x = pick(rng);
            (x, x)
        }
        1 => {
            // A common factor makes the answer non-trivial.
            let g = rng.range_i64(1, 100_000);
            let x = rng.range_i64(-50_000, 50_000);
            let y = rng.range_i64(-50_000, 50_000);
            (g * x, g * y)
        }
        _ => (pick(rng), pick(rng)),
    };
    match rng.below(50) {
        0 => vec![
            Value::Int(Integer::Big("99999999999999999999".into())),
            Value::int(b),
        ],
        1 => vec![Value::int(a), Value::float(2.0).unwrap_or(Value::Null)],
        2 => vec![Value::int(a)],
        _ => vec![Value::int(a), Value::int(b)],
    }
}

/// `is_prime(n: int) -> bool`: deterministic Miller–Rabin. The first twelve primes as bases are
/// a proven witness set for every n below 3.3 * 10**24, which covers all of `u64`.
pub fn is_prime(args: &[Value]) -> Result<Value, PrimitiveError> {
    arity(args, 1)?;
    let n = int(args, 0, "n")?;
    Ok(Value::Bool(u64::try_from(n).is_ok_and(miller_rabin)))
}

const WITNESSES: [u64; 12] = [2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37];

fn mul_mod(a: u64, b: u64, m: u64) -> u64 {
    // The product of two values below m < 2**64 fits in u128; the remainder fits back in u64.
    ((u128::from(a) * u128::from(b)) % u128::from(m)) as u64
}

fn pow_mod(mut base: u64, mut exp: u64, m: u64) -> u64 {
    let mut acc = 1 % m;
    base %= m;
    while exp > 0 {
        if exp & 1 == 1 {
            acc = mul_mod(acc, base, m);
        }
        base = mul_mod(base, base, m);
        exp >>= 1;
    }
    acc
}

fn miller_rabin(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    for p in WITNESSES {
        if n.is_multiple_of(p) {
            return n == p;
        }
    }
    let s = (n - 1).trailing_zeros();
    let d = (n - 1) >> s;
    'witness: for a in WITNESSES {
        let mut x = pow_mod(a, d, n);
        if x == 1 || x == n - 1 {
            continue;
        }
        for _ in 1..s {
            x = mul_mod(x, x, n);
            if x == n - 1 {
                continue 'witness;
            }
        }
        return false;
    }
    true
}

/// Oracle for `is_prime`: trial division by 2, 3 and every 6k ± 1 up to the square root. Only
/// cheap on the generator's domain (n below about 2**34); that is all it is used for.
pub fn is_prime_oracle(args: &[Value]) -> Result<Value, PrimitiveError> {
    arity(args, 1)?;
    let n = int(args, 0, "n")?;
    Ok(Value::Bool(trial_division(n)))
}

fn trial_division(n: i64) -> bool {
    if n < 2 {
        return false;
    }
    if n < 4 {
        return true;
    }
    if n % 2 == 0 || n % 3 == 0 {
        return false;
    }
    let mut i: i64 = 5;
    // `i <= n / i` is `i * i <= n` without the overflow.
    while i <= n / i {
        if n % i == 0 || n % (i + 2) == 0 {
            return false;
        }
        i += 6;
    }
    true
}

/// Generator for `is_prime`: small and negative numbers, Carmichael numbers and strong
/// pseudoprimes to small bases (which fool weaker tests), squares and products of nearby primes,
/// known large primes, and random numbers below 2**34.
pub fn is_prime_generate(rng: &mut Rng) -> Vec<Value> {
    const TRICKY: [i64; 16] = [
        561,
        1105,
        1729,
        2465,
        2821,
        6601,
        8911,
        41041,
        825_265,
        2047,
        1_373_653,
        25_326_001,
        3_215_031_751,
        2_147_483_647,
        4_294_967_291,
        4_294_967_297,
    ];
    const NEAR_PRIMES: [i64; 6] = [65_521, 65_537, 99_991, 104_729, 131_071, 9_973];
    let n = match rng.below(8) {
        0 => rng.range_i64(-10, 10),
        1 => rng.range_i64(0, 1_000),
        2 => TRICKY.get(rng.below(16) as usize).copied().unwrap_or(0),
        3 => {
            let p = NEAR_PRIMES.get(rng.below(6) as usize).copied().unwrap_or(2);
            let q = NEAR_PRIMES.get(rng.below(6) as usize).copied().unwrap_or(2);
            p * q
        }
        4 => rng.range_i64(i64::MIN, -1),
        _ => rng.range_i64(0, 1 << 34),
    };
    match rng.below(60) {
        0 => vec![Value::str("7")],
        1 => vec![],
        _ => vec![Value::int(n)],
    }
}

/// `primes_up_to(n: int) -> list[int]`: the sieve of Eratosthenes.
pub fn primes_up_to(args: &[Value]) -> Result<Value, PrimitiveError> {
    arity(args, 1)?;
    let n = int(args, 0, "n")?;
    if n > MAX_SIEVE {
        return Err(too_large("n", n as usize, MAX_SIEVE as usize));
    }
    let Ok(n) = usize::try_from(n) else {
        return Ok(Value::List(Vec::new()));
    };
    if n < 2 {
        return Ok(Value::List(Vec::new()));
    }
    let mut composite = vec![false; n + 1];
    let mut p = 2usize;
    while p * p <= n {
        if !composite.get(p).copied().unwrap_or(true) {
            for slot in composite.iter_mut().skip(p * p).step_by(p) {
                *slot = true;
            }
        }
        p += 1;
    }
    let primes = composite
        .iter()
        .enumerate()
        .skip(2)
        .filter(|(_, c)| !**c)
        .map(|(i, _)| i as i64);
    Ok(int_list(primes))
}

/// Oracle for `primes_up_to`: tests each number in turn by trial division with the primes found
/// so far (no sieve array at all).
pub fn primes_up_to_oracle(args: &[Value]) -> Result<Value, PrimitiveError> {
    arity(args, 1)?;
    let n = int(args, 0, "n")?;
    if n > MAX_SIEVE {
        return Err(too_large("n", n as usize, MAX_SIEVE as usize));
    }
    let mut found: Vec<i64> = Vec::new();
    let mut m: i64 = 2;
    while m <= n {
        let divisible = found
            .iter()
            .take_while(|&&p| p * p <= m)
            .any(|&p| m % p == 0);
        if !divisible {
            found.push(m);
        }
        m += 1;
    }
    Ok(int_list(found))
}

/// Generator for `primes_up_to`: the edges 0, 1, 2, 3 and negatives, bounds around prime squares,
/// random bounds up to 3000, and a bound just over the cap that both sides must refuse.
pub fn primes_up_to_generate(rng: &mut Rng) -> Vec<Value> {
    let n = match rng.below(10) {
        0 => rng.range_i64(-5, 3),
        1 => {
            let p = [2i64, 3, 5, 7, 11, 13, 31, 47]
                .get(rng.below(8) as usize)
                .copied()
                .unwrap_or(2);
            p * p + rng.range_i64(-1, 1)
        }
        2 if rng.below(4) == 0 => MAX_SIEVE + 1,
        3 => i64::MIN,
        _ => rng.range_i64(0, 3000),
    };
    vec![Value::int(n)]
}
