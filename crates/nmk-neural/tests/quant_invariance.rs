//! Batch and thread invariance: `matmul` of any `m` equals per-row `matvec` bit for bit, on 1,
//! 2 and 3 threads, for every weight type and every ISA level this CPU has.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::needless_range_loop
)]

mod common;
use common::quant::{Rng, random_matrix};
use nmk_neural::gguf::GgmlType;
use nmk_neural::quant::{Isa, QMatrix, Threads};

const TYPES: [GgmlType; 11] = [
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::Q4_K,
    GgmlType::Q5_K,
    GgmlType::Q6_K,
];

fn matrix(rng: &mut Rng, ty: GgmlType, rows: usize, cols: usize) -> QMatrix {
    random_matrix(rng, ty, rows, cols, &[])
}

#[test]
fn matmul_rows_equal_matvec_bitwise_for_any_batch_and_thread_count() {
    let mut rng = Rng(99);
    let pools = [Threads::single(), Threads::new(2), Threads::new(3)];
    // 133 rows: not a multiple of the 16-row tile, and enough rows to use every thread.
    let (rows, cols) = (133, 512);
    for ty in TYPES {
        for isa in Isa::ALL.into_iter().filter(|i| i.is_available()) {
            let m = matrix(&mut rng, ty, rows, cols).with_isa(isa).unwrap();
            let xs: Vec<f32> = (0..7 * cols).map(|_| rng.f() * 3.0).collect();
            // Per-row reference: matvec, 1 thread.
            let mut refs = vec![0.0f32; 7 * rows];
            for i in 0..7 {
                m.matvec(
                    &xs[i * cols..(i + 1) * cols],
                    &mut refs[i * rows..(i + 1) * rows],
                    &pools[0],
                )
                .unwrap();
            }
            assert!(refs.iter().all(|v| v.is_finite()));
            assert!(refs.iter().any(|v| *v != 0.0));
            for t in &pools {
                for mm in 1..=7 {
                    // Any window of mm consecutive rows, starting at different offsets.
                    for start in [0, 7 - mm] {
                        let x = &xs[start * cols..(start + mm) * cols];
                        let mut ys = vec![f32::NAN; mm * rows];
                        m.matmul(x, &mut ys, t).unwrap();
                        let want = &refs[start * rows..(start + mm) * rows];
                        let same = ys.iter().zip(want).all(|(a, b)| a.to_bits() == b.to_bits());
                        assert!(
                            same,
                            "{ty} {isa:?} threads {} m {mm} start {start}",
                            t.count()
                        );
                    }
                }
                let mut y = vec![f32::NAN; rows];
                m.matvec(&xs[..cols], &mut y, t).unwrap();
                assert!(
                    y.iter()
                        .zip(&refs[..rows])
                        .all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{ty} {isa:?} matvec threads {}",
                    t.count()
                );
            }
        }
    }
}

#[test]
fn sub_rows_equal_the_rows_of_the_whole_matrix() {
    let mut rng = Rng(3);
    let m = matrix(&mut rng, GgmlType::Q4_1, 64, 256);
    let x: Vec<f32> = (0..256).map(|_| rng.f()).collect();
    let mut y = vec![0.0f32; 64];
    m.matvec(&x, &mut y, &Threads::single()).unwrap();
    let part = m.sub_rows(16, 32).unwrap();
    let mut yp = vec![0.0f32; 32];
    part.matvec(&x, &mut yp, &Threads::new(2)).unwrap();
    assert_eq!(&y[16..48], &yp[..]);
}

#[test]
fn a_busy_pool_still_gives_the_same_results() {
    // Two callers share one pool: one of them runs inline; results must not change.
    let mut rng = Rng(8);
    let m = matrix(&mut rng, GgmlType::Q8_0, 256, 1024);
    let x: Vec<f32> = (0..1024).map(|_| rng.f()).collect();
    let mut want = vec![0.0f32; 256];
    m.matvec(&x, &mut want, &Threads::single()).unwrap();
    let t = Threads::new(2);
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                for _ in 0..200 {
                    let mut y = vec![0.0f32; 256];
                    m.matvec(&x, &mut y, &t).unwrap();
                    assert_eq!(y, want);
                }
            });
        }
    });
}
