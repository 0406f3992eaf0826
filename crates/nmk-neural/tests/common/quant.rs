//! Random quantized matrices for the kernel tests.

use half::f16;
use nmk_neural::gguf::GgmlType;
use nmk_neural::quant::QMatrix;

/// A xorshift generator: the tests need reproducible noise, nothing more.
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A float in [-1, 1).
    pub fn f(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }
}

/// A `rows` × `cols` matrix of type `ty`: random bytes with sane scales for the k-quants (every
/// scale and quant pattern), quantized random floats for the others; the rows in `zero_rows`
/// are all zero (they give ±0 outputs).
pub fn random_matrix(
    rng: &mut Rng,
    ty: GgmlType,
    rows: usize,
    cols: usize,
    zero_rows: &[usize],
) -> QMatrix {
    if ty.block_elems() == 256 {
        let bb = ty.block_bytes() as usize;
        let mut b: Vec<u8> = (0..rows * cols / 256 * bb)
            .map(|_| (rng.next() >> 56) as u8)
            .collect();
        for blk in b.chunks_mut(bb) {
            let d = f16::from_f32(0.002 + 0.01 * rng.f().abs())
                .to_bits()
                .to_le_bytes();
            if ty == GgmlType::Q6_K {
                blk[208..210].copy_from_slice(&d);
            } else {
                blk[0..2].copy_from_slice(&d);
                blk[2..4].copy_from_slice(&d);
            }
        }
        return QMatrix::from_bytes(b, ty, rows, cols).unwrap();
    }
    let mut w: Vec<f32> = (0..rows * cols).map(|_| rng.f() * 0.2).collect();
    for &r in zero_rows {
        w[r * cols..(r + 1) * cols].fill(0.0);
    }
    QMatrix::from_f32(ty, rows, cols, &w).unwrap()
}
