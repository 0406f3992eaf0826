//! Sandbox and gate costs on real worker processes: a warm single call, a batched call, and a
//! whole 2000-instance hold-out gate (samples, gate run twice in two workers, second seed,
//! placebo set) on a simple primitive.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use nmk_det::Value;
use nmk_det::gate::{Gap, GateConfig, Judge, Rng, SampleCase, holdout_gate};
use nmk_det::sandbox::{CallLimits, Sandbox, SandboxConfig};

const GCD: &str = "def gcd(a, b):\n    while b:\n        a, b = b, a % b\n    return a\n";

fn sandbox() -> Sandbox {
    Sandbox::new(SandboxConfig {
        worker: Some(env!("CARGO_BIN_EXE_nmk-sandbox-worker").into()),
        ..SandboxConfig::default()
    })
    .unwrap()
}

fn gcd_gap() -> Gap {
    fn euclid_free_gcd(a: i64, b: i64) -> i64 {
        // Subtraction-free binary gcd: a different algorithm from the candidate's.
        let (mut a, mut b) = (a.unsigned_abs(), b.unsigned_abs());
        if a == 0 || b == 0 {
            return (a | b) as i64;
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
                return (a << shift) as i64;
            }
        }
    }
    Gap::new(
        "gcd",
        "gcd(a: int, b: int) -> int",
        "greatest common divisor",
        vec![SampleCase {
            args: vec![Value::int(12), Value::int(18)],
            expected: Value::int(6),
        }],
        |rng: &mut Rng| {
            vec![
                Value::int(rng.range_i64(1, 1_000_000_000)),
                Value::int(rng.range_i64(1, 1_000_000_000)),
            ]
        },
        Judge::oracle(|a: &[Value]| {
            let x = a.first().and_then(Value::as_i64).ok_or("a")?;
            let y = a.get(1).and_then(Value::as_i64).ok_or("b")?;
            Ok(Value::int(euclid_free_gcd(x, y)))
        }),
    )
    .unwrap()
}

fn bench(c: &mut Criterion) {
    let sb = sandbox();
    let limits = CallLimits::default();
    let args = [Value::int(1_071), Value::int(462)];
    c.bench_function("warm_call_gcd", |b| {
        b.iter(|| sb.call(GCD, "gcd", &args, &limits).unwrap())
    });
    let calls: Vec<Vec<Value>> = (0..1000)
        .map(|i| vec![Value::int(1_000_003 + i), Value::int(462 + 7 * i)])
        .collect();
    let mut g = c.benchmark_group("batched_gcd");
    g.throughput(Throughput::Elements(calls.len() as u64));
    g.bench_function("1000_calls_one_worker", |b| {
        b.iter(|| sb.run_batch_on(0, GCD, "gcd", &calls, &limits).unwrap())
    });
    g.finish();
    let gap = gcd_gap();
    let config = GateConfig {
        n: 2000,
        seed: 7,
        ..GateConfig::default()
    };
    let mut g = c.benchmark_group("holdout_gate");
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    g.bench_function("gcd_n2000_full", |b| {
        b.iter(|| {
            let r = holdout_gate(&sb, GCD, &gap, &config);
            assert!(r.passed);
            r
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
