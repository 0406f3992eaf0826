//! Several-activation-rows kernels: `matmul` of `m` rows equals `m` single-row `matvec`s bit
//! for bit, for every type with a several-rows kernel, every ISA level this CPU has, batch
//! sizes around the 4-row groups (1, 2, 3, 4, 5, 17), block counts with odd tails (not a
//! multiple of the 8-block groups of the AVX-512 kernels), awkward activations (zeros, −0
//! results, extreme values), and 1 or 2 threads.
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

const TYPES: [GgmlType; 8] = [
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
    random_matrix(rng, ty, rows, cols, &[1, rows / 2])
}

fn activations(rng: &mut Rng, m: usize, cols: usize) -> Vec<f32> {
    let mut xs: Vec<f32> = (0..m * cols).map(|_| rng.f() * 3.0).collect();
    // One all-zero row, one with a huge outlier (quants of ±127/−128 around it).
    if m > 2 {
        xs[cols..2 * cols].fill(0.0);
        xs[2 * cols + 5] = -1.0e4;
    }
    xs
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn several_rows_equal_single_rows_bitwise() {
    let mut rng = Rng(0x5eed);
    let pools = [Threads::single(), Threads::new(2)];
    for ty in TYPES {
        let block = ty.block_elems() as usize;
        // 3 and 11 blocks of 32 (tails after 8-block groups), 19 for the model's 4864 columns;
        // 1 and 3 super-blocks of 256.
        let widths: &[usize] = if block == 256 { &[1, 3] } else { &[3, 11, 19] };
        for &nb in widths {
            let cols = nb * block;
            // 37 rows: two full 16-row tiles and a partial one, split across 2 threads.
            let rows = 37;
            for isa in Isa::ALL.into_iter().filter(|i| i.is_available()) {
                let mat = matrix(&mut rng, ty, rows, cols).with_isa(isa).unwrap();
                for m in [1usize, 2, 3, 4, 5, 17] {
                    let xs = activations(&mut rng, m, cols);
                    let mut want = vec![0.0f32; m * rows];
                    for i in 0..m {
                        mat.matvec(
                            &xs[i * cols..(i + 1) * cols],
                            &mut want[i * rows..(i + 1) * rows],
                            &pools[0],
                        )
                        .unwrap();
                    }
                    assert!(want.iter().all(|v| v.is_finite()));
                    for t in &pools {
                        let mut got = vec![f32::NAN; m * rows];
                        mat.matmul(&xs, &mut got, t).unwrap();
                        assert_eq!(
                            bits(&got),
                            bits(&want),
                            "{ty} {isa:?} cols {cols} m {m} threads {}",
                            t.count()
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn a_row_gives_the_same_bits_in_every_batch_position() {
    // The same activation row at every position of a 9-row batch (so in each lane of a
    // 4-row group and in the 1-row remainder) gives the same outputs as alone.
    let mut rng = Rng(77);
    for ty in TYPES {
        let cols = 2 * 256;
        let mat = matrix(&mut rng, ty, 20, cols);
        let x: Vec<f32> = (0..cols).map(|_| rng.f()).collect();
        let mut alone = vec![0.0f32; 20];
        mat.matvec(&x, &mut alone, &Threads::single()).unwrap();
        let mut xs = activations(&mut rng, 9, cols);
        for pos in 0..9 {
            let saved: Vec<f32> = xs[pos * cols..(pos + 1) * cols].to_vec();
            xs[pos * cols..(pos + 1) * cols].copy_from_slice(&x);
            let mut ys = vec![0.0f32; 9 * 20];
            mat.matmul(&xs, &mut ys, &Threads::single()).unwrap();
            assert_eq!(
                bits(&ys[pos * 20..(pos + 1) * 20]),
                bits(&alone),
                "{ty} pos {pos}"
            );
            xs[pos * cols..(pos + 1) * cols].copy_from_slice(&saved);
        }
    }
}
