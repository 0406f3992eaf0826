//! Cost of one proof-ledger `append`: the SQLite backend in a temp dir with the default
//! `Durability::Process` (WAL, `synchronous=NORMAL`; the issue requires a median under 1 ms) and
//! with `Durability::PowerLoss` (an fsync per commit), and the in-memory backend as a baseline.
//! The record is realistic: three input hashes, a validator, a model binding and a detail map.
//!
//! Run with `cargo bench -p nmk-kernel --bench ledger_append`; medians are in
//! `$CARGO_TARGET_DIR/criterion/ledger_append/*/new/estimates.json`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::Criterion;
use nmk_det::{ValidationLevel, Value, hash_value};
use nmk_kernel::Verification;
use nmk_kernel::ledger::{Action, Ledger, LedgerRecord, ModelBinding, ValidatorId};
use nmk_kernel::store::Durability;

fn record() -> LedgerRecord {
    let h = |s: &str| hash_value(&Value::str(s));
    LedgerRecord {
        opcode: "run_tests".into(),
        op_version: "tg1".into(),
        inputs: BTreeMap::from([
            ("code".to_string(), h("def f(x): return x")),
            ("cases".to_string(), h("[[1, 1], [2, 2]]")),
            ("dep:parse".to_string(), h("parsed ast")),
        ]),
        result: h("{\"passed\": 2, \"failed\": 0}"),
        contract: h("contract: f(x) == x"),
        validator: Some(ValidatorId::new("run_tests_ok", "1")),
        level: ValidationLevel::Oracle,
        verification: Verification::Verified,
        action: Action::Pass,
        logical_time: 42,
        model: Some(ModelBinding {
            model: h("model.gguf"),
            tokenizer: h("tokenizer"),
            policy: h("greedy, max 512"),
        }),
        detail: Value::map([
            ("reason", Value::str("all visible cases pass")),
            ("cases", Value::int(2)),
            ("route", Value::str("model_lane")),
            (
                "timings",
                Value::map([
                    ("validate_us", Value::int(812)),
                    ("run_us", Value::int(3120)),
                ]),
            ),
        ]),
    }
}

fn bench_append(c: &mut Criterion) {
    let rec = record();
    let dir = tempfile::tempdir().unwrap();
    let mut group = c.benchmark_group("ledger_append");
    group
        .measurement_time(Duration::from_secs(5))
        .warm_up_time(Duration::from_secs(1))
        .sample_size(50);

    for (name, durability) in [
        ("sqlite_process", Durability::Process),
        ("sqlite_powerloss", Durability::PowerLoss),
    ] {
        let ledger = Ledger::open(&dir.path().join(format!("{name}.sqlite")), durability).unwrap();
        group.bench_function(name, |b| {
            b.iter(|| black_box(ledger.append(black_box(rec.clone())).unwrap()));
        });
        // The chain the benchmark built is sound.
        assert!(ledger.verify(None).unwrap().ok());
    }

    // Baseline: sealing and chaining without storage. A fresh ledger per sample keeps memory
    // bounded.
    group.bench_function("memory", |b| {
        b.iter_custom(|iters| {
            let ledger = Ledger::in_memory();
            let start = Instant::now();
            for _ in 0..iters {
                black_box(ledger.append(black_box(rec.clone())).unwrap());
            }
            start.elapsed()
        });
    });
    group.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench_append(&mut c);
    c.final_summary();
}
