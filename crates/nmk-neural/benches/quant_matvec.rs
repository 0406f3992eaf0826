//! Matvec throughput (GB/s of weight bytes) per weight type on realistic shapes, with the
//! scalar kernel as the in-run baseline, 1 and 2 threads; plus one decode step's worth of
//! SmolLM2-135M matvecs (every 2-D weight of the cached model once) when the model is cached.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use nmk_neural::gguf::{GgmlType, GgufFile};
use nmk_neural::quant::{Isa, QMatrix, Threads, effective_isa};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn f(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }
}

fn matrix(rng: &mut Rng, ty: GgmlType, rows: usize, cols: usize) -> QMatrix {
    if ty.block_elems() == 256 {
        let bb = ty.block_bytes() as usize;
        let mut b: Vec<u8> = (0..rows * cols / 256 * bb)
            .map(|_| (rng.next() >> 56) as u8)
            .collect();
        for blk in b.chunks_mut(bb) {
            let d = half::f16::from_f32(0.01).to_bits().to_le_bytes();
            if ty == GgmlType::Q6_K {
                blk[208..210].copy_from_slice(&d);
            } else {
                blk[0..2].copy_from_slice(&d);
                blk[2..4].copy_from_slice(&d);
            }
        }
        return QMatrix::from_bytes(b, ty, rows, cols).unwrap();
    }
    let w: Vec<f32> = (0..rows * cols).map(|_| rng.f() * 0.1).collect();
    QMatrix::from_f32(ty, rows, cols, &w).unwrap()
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_millis(1200))
}

fn matvec(c: &mut Criterion) {
    let types = [
        GgmlType::Q4_1,
        GgmlType::Q8_0,
        GgmlType::Q4_K,
        GgmlType::Q6_K,
        GgmlType::Q5_0,
        GgmlType::Q4_0,
        GgmlType::Q5_1,
        GgmlType::Q5_K,
        GgmlType::F16,
        GgmlType::BF16,
        GgmlType::F32,
    ];
    // (n_rows, n_cols): SmolLM2 down, up/gate, output head; Qwen2.5-0.5B down.
    let shapes = [
        (576usize, 1536usize),
        (1536, 576),
        (49152, 576),
        (896, 4864),
    ];
    let filter = std::env::var("QUANT_BENCH_TYPES").ok();
    let one = Threads::single();
    let two = Threads::new(2);
    let mut rng = Rng(1);
    for ty in types {
        if let Some(f) = &filter
            && !f.split(',').any(|t| t.eq_ignore_ascii_case(ty.name()))
        {
            continue;
        }
        let mut g = c.benchmark_group(format!("matvec_{}", ty.name()));
        for &(rows, cols) in &shapes {
            if cols % ty.block_elems() as usize != 0 {
                continue;
            }
            let m = matrix(&mut rng, ty, rows, cols);
            let x: Vec<f32> = (0..cols).map(|_| rng.f()).collect();
            let mut y = vec![0.0f32; rows];
            g.throughput(Throughput::Bytes(m.bytes().len() as u64));
            let shape = format!("{rows}x{cols}");
            let best = Isa::detect();
            let isa_name = format!("{:?}", effective_isa(ty, best));
            let fast = m.clone();
            g.bench_function(BenchmarkId::new(format!("{isa_name}_1t"), &shape), |b| {
                b.iter(|| fast.matvec(black_box(&x), &mut y, &one).unwrap())
            });
            g.bench_function(BenchmarkId::new(format!("{isa_name}_2t"), &shape), |b| {
                b.iter(|| fast.matvec(black_box(&x), &mut y, &two).unwrap())
            });
            let scalar = m.with_isa(Isa::Scalar).unwrap();
            g.bench_function(BenchmarkId::new("Scalar_1t", &shape), |b| {
                b.iter(|| scalar.matvec(black_box(&x), &mut y, &one).unwrap())
            });
        }
        g.finish();
    }
}

/// One decode step's worth of matvecs over every 2-D weight of the cached SmolLM2 file.
fn smollm2_token(c: &mut Criterion) {
    let Some(home) = std::env::var_os("HOME") else {
        return;
    };
    let path =
        std::path::Path::new(&home).join(".cache/nmk/models/SmolLM2-135M-Instruct.Q4_1.gguf");
    let Ok(file) = GgufFile::open(&path) else {
        eprintln!(
            "SmolLM2 not cached at {}: skipping the token bench",
            path.display()
        );
        return;
    };
    let file = Arc::new(file);
    let mut mats = Vec::new();
    for t in file.tensors() {
        if t.dims().len() == 2 && t.ggml_type() != GgmlType::F32 {
            mats.push(QMatrix::from_gguf(&file, t.name()).unwrap());
        }
    }
    let bytes: usize = mats.iter().map(|m| m.bytes().len()).sum();
    let mut rng = Rng(2);
    let xs: Vec<Vec<f32>> = mats
        .iter()
        .map(|m| (0..m.n_cols()).map(|_| rng.f()).collect())
        .collect();
    let mut ys: Vec<Vec<f32>> = mats.iter().map(|m| vec![0.0; m.n_rows()]).collect();
    let mut g = c.benchmark_group("smollm2_token_matvecs");
    g.throughput(Throughput::Bytes(bytes as u64));
    for (name, t) in [("1t", Threads::single()), ("2t", Threads::new(2))] {
        g.bench_function(name, |b| {
            b.iter(|| {
                for ((m, x), y) in mats.iter().zip(&xs).zip(ys.iter_mut()) {
                    m.matvec(black_box(x), y, &t).unwrap();
                }
            })
        });
    }
    g.finish();
}

/// CPU seconds used by the calling thread so far (utime + stime from /proc, 10 ms ticks).
fn thread_cpu_secs() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    let rest = s.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ut: f64 = f.get(11)?.parse().ok()?;
    let st: f64 = f.get(12)?.parse().ok()?;
    Some((ut + st) / 100.0)
}

/// With `QUANT_CPU_REPORT=1`: 1-thread GB/s per *CPU second* of the benchmarking thread, which
/// stays meaningful when other processes load the machine (wall-clock numbers then mostly
/// measure the scheduler). Runs each case for about 2 s of CPU.
fn cpu_report(_: &mut Criterion) {
    if std::env::var_os("QUANT_CPU_REPORT").is_none() {
        return;
    }
    let mut rng = Rng(3);
    let one = Threads::single();
    let cases = [
        (GgmlType::Q4_1, 1536usize, 576usize),
        (GgmlType::Q4_1, 49152, 576),
        (GgmlType::Q8_0, 1536, 576),
        (GgmlType::Q8_0, 49152, 576),
        (GgmlType::Q4_K, 896, 4864),
        (GgmlType::Q6_K, 896, 4864),
        (GgmlType::Q5_0, 896, 4864),
        (GgmlType::F16, 896, 4864),
        (GgmlType::F32, 1536, 576),
    ];
    for (ty, rows, cols) in cases {
        let m = matrix(&mut rng, ty, rows, cols);
        let x: Vec<f32> = (0..cols).map(|_| rng.f()).collect();
        let mut y = vec![0.0f32; rows];
        for (label, mm) in [
            (format!("{:?}", effective_isa(ty, Isa::detect())), m.clone()),
            (
                "Scalar".to_owned(),
                m.clone().with_isa(Isa::Scalar).unwrap(),
            ),
        ] {
            let Some(t0) = thread_cpu_secs() else { return };
            let mut n = 0u64;
            let budget = if label == "Scalar" { 0.5 } else { 2.0 };
            loop {
                for _ in 0..8 {
                    mm.matvec(black_box(&x), &mut y, &one).unwrap();
                }
                n += 8;
                let t = thread_cpu_secs().unwrap_or(t0) - t0;
                if t >= budget {
                    let gbs = (mm.bytes().len() as f64 * n as f64) / t / 1e9;
                    eprintln!(
                        "cpu-time {} {rows}x{cols} {label}: {gbs:.2} GB/s per CPU-second ({:.1} us/matvec)",
                        ty.name(),
                        t / n as f64 * 1e6
                    );
                    break;
                }
            }
        }
    }
}

/// Prefill-sized matmuls (64 activation rows, Qwen2.5-0.5B FFN shapes, 1 thread): the
/// several-rows kernels against the same matrix computed row by row (`matvec` per row) in the
/// same run.
fn prefill_matmul(c: &mut Criterion) {
    let mut rng = Rng(5);
    let one = Threads::single();
    let m = 64;
    let mut g = c.benchmark_group("prefill_matmul");
    for (ty, rows, cols) in [
        (GgmlType::Q5_0, 4864usize, 896usize),
        (GgmlType::Q8_0, 4864, 896),
        (GgmlType::Q4_1, 4864, 896),
        (GgmlType::Q4_K, 896, 4864),
        (GgmlType::Q6_K, 896, 4864),
    ] {
        let mat = matrix(&mut rng, ty, rows, cols);
        let xs: Vec<f32> = (0..m * cols).map(|_| rng.f()).collect();
        let mut ys = vec![0.0f32; m * rows];
        g.throughput(Throughput::Elements((m * rows * cols) as u64));
        g.bench_function(BenchmarkId::new(format!("{}/matmul", ty.name()), m), |b| {
            b.iter(|| mat.matmul(black_box(&xs), &mut ys, &one).unwrap())
        });
        g.bench_function(BenchmarkId::new(format!("{}/rows", ty.name()), m), |b| {
            b.iter(|| {
                for (x, y) in xs.chunks_exact(cols).zip(ys.chunks_exact_mut(rows)) {
                    mat.matvec(black_box(x), y, &one).unwrap();
                }
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = cpu_report, smollm2_token, matvec, prefill_matmul
}
criterion_main!(benches);
