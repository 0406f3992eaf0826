//! Known-answer dequantization tests, quantizer round trips, hostile lengths, and every dot
//! kernel (each ISA this CPU has) against the scalar reference and against the f64 dot of the
//! dequantized operands.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::needless_range_loop
)]

use half::f16;
use nmk_neural::gguf::GgmlType;
use nmk_neural::quant::{
    ActFormat, Isa, QMatrix, QuantError, Threads, dequantize_row, effective_isa, quantize,
    quantize_row_into, row_bytes,
};

fn h(v: f32) -> [u8; 2] {
    f16::from_f32(v).to_bits().to_le_bytes()
}

fn deq(ty: GgmlType, bytes: &[u8], n: usize) -> Vec<f32> {
    let mut out = vec![f32::NAN; n];
    dequantize_row(ty, bytes, &mut out).unwrap();
    out
}

/// Small deterministic PRNG (xorshift64*).
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
    fn byte(&mut self) -> u8 {
        (self.next() >> 56) as u8
    }
}

// ---------------------------------------------------------------- known answers ----------

#[test]
fn float_types_known_answers() {
    let vals = [0.0f32, 1.5, -2.25, 65504.0, 1.0e-3];
    let mut b = Vec::new();
    vals.iter()
        .for_each(|v| b.extend_from_slice(&v.to_le_bytes()));
    assert_eq!(deq(GgmlType::F32, &b, 5), vals);
    let b: Vec<u8> = [0x3c00u16, 0xc000, 0x7bff, 0x0001]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    assert_eq!(
        deq(GgmlType::F16, &b, 4),
        [1.0, -2.0, 65504.0, 5.960_464_5e-8]
    );
    let b: Vec<u8> = [0x3f80u16, 0xc040, 0x4049]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    assert_eq!(deq(GgmlType::BF16, &b, 3), [1.0, -3.0, 3.140_625]);
}

#[test]
fn q4_0_known_answer() {
    let mut b = h(0.5).to_vec();
    for j in 0..16u8 {
        b.push(j | ((15 - j) << 4));
    }
    let y = deq(GgmlType::Q4_0, &b, 32);
    for j in 0..16 {
        assert_eq!(y[j], (j as f32 - 8.0) * 0.5);
        assert_eq!(y[j + 16], (7.0 - j as f32) * 0.5);
    }
}

#[test]
fn q4_1_known_answer() {
    let mut b = h(0.25).to_vec();
    b.extend_from_slice(&h(-1.0));
    for j in 0..16u8 {
        b.push(j | ((15 - j) << 4));
    }
    let y = deq(GgmlType::Q4_1, &b, 32);
    for j in 0..16 {
        assert_eq!(y[j], j as f32 * 0.25 - 1.0);
        assert_eq!(y[j + 16], (15 - j) as f32 * 0.25 - 1.0);
    }
}

/// Element `i` of a Q5 block: low nibble from byte `i % 16` (low half for i < 16), fifth bit
/// from bit `i` of `qh`.
fn q5_elem(qs: &[u8; 16], qh: u32, i: usize) -> u32 {
    let nib = if i < 16 { qs[i] & 15 } else { qs[i - 16] >> 4 } as u32;
    nib + 16 * ((qh >> i) & 1)
}

#[test]
fn q5_0_and_q5_1_known_answers() {
    let mut qs = [0u8; 16];
    for (j, q) in qs.iter_mut().enumerate() {
        *q = (j as u8 * 7) & 15 | (((j as u8 * 3) & 15) << 4);
    }
    let qh: u32 = 0xA5C3_0F96;
    let mut b0 = h(2.0).to_vec();
    b0.extend_from_slice(&qh.to_le_bytes());
    b0.extend_from_slice(&qs);
    let y0 = deq(GgmlType::Q5_0, &b0, 32);
    let mut b1 = h(0.5).to_vec();
    b1.extend_from_slice(&h(3.0));
    b1.extend_from_slice(&qh.to_le_bytes());
    b1.extend_from_slice(&qs);
    let y1 = deq(GgmlType::Q5_1, &b1, 32);
    for i in 0..32 {
        let v = q5_elem(&qs, qh, i);
        assert_eq!(y0[i], (v as f32 - 16.0) * 2.0, "q5_0 {i}");
        assert_eq!(y1[i], v as f32 * 0.5 + 3.0, "q5_1 {i}");
    }
}

#[test]
fn q8_0_q8_1_q8_k_known_answers() {
    let mut b = h(2.0).to_vec();
    (0..32).for_each(|j| b.push((j as i8 - 16) as u8));
    let y = deq(GgmlType::Q8_0, &b, 32);
    (0..32).for_each(|j| assert_eq!(y[j], 2.0 * (j as f32 - 16.0)));

    let mut b = h(0.125).to_vec();
    b.extend_from_slice(&h(99.0));
    (0..32).for_each(|j| b.push((127 - 8 * j) as i8 as u8));
    let y = deq(GgmlType::Q8_1, &b, 32);
    (0..32usize).for_each(|j| assert_eq!(y[j], 0.125 * (127 - 8 * j as i32) as f32));

    let mut b = 0.01f32.to_le_bytes().to_vec();
    (0..256).for_each(|j| b.push((j - 128) as i8 as u8));
    b.extend(std::iter::repeat_n(0u8, 32));
    let y = deq(GgmlType::Q8_K, &b, 256);
    (0..256).for_each(|j| assert_eq!(y[j], 0.01 * (j as f32 - 128.0)));
}

/// 6-bit scale and min of sub-block `s` of a Q4_K/Q5_K super-block, read bit by bit from the
/// 12-byte packed field (layout from ggml's `get_scale_min_k4`, written independently).
fn k4_scale_min(p: &[u8], s: usize) -> (u32, u32) {
    let bits = |byte: usize, lo: u32, n: u32| ((p[byte] as u32) >> lo) & ((1 << n) - 1);
    if s < 4 {
        (bits(s, 0, 6), bits(s + 4, 0, 6))
    } else {
        (
            bits(s + 4, 0, 4) + (bits(s - 4, 6, 2) << 4),
            bits(s + 4, 4, 4) + (bits(s, 6, 2) << 4),
        )
    }
}

fn k_block_header(rng: &mut Rng, d: f32, dmin: f32) -> Vec<u8> {
    let mut b = h(d).to_vec();
    b.extend_from_slice(&h(dmin));
    (0..12).for_each(|_| b.push(rng.byte()));
    b
}

#[test]
fn q4_k_known_answer() {
    let mut rng = Rng(7);
    let mut b = k_block_header(&mut rng, 0.5, 0.25);
    let qs: Vec<u8> = (0..128).map(|_| rng.byte()).collect();
    b.extend_from_slice(&qs);
    let y = deq(GgmlType::Q4_K, &b, 256);
    for i in 0..256 {
        let s = i / 32; // sub-block of 32
        let byte = qs[(i / 64) * 32 + i % 32];
        let q = if s % 2 == 0 { byte & 15 } else { byte >> 4 } as f32;
        let (sc, mn) = k4_scale_min(&b[4..16], s);
        let want = (0.5 * sc as f32) * q - 0.25 * mn as f32;
        assert_eq!(y[i], want, "element {i}");
    }
}

#[test]
fn q5_k_known_answer() {
    let mut rng = Rng(11);
    let mut b = k_block_header(&mut rng, 0.75, 0.125);
    let qh: Vec<u8> = (0..32).map(|_| rng.byte()).collect();
    let qs: Vec<u8> = (0..128).map(|_| rng.byte()).collect();
    b.extend_from_slice(&qh);
    b.extend_from_slice(&qs);
    let y = deq(GgmlType::Q5_K, &b, 256);
    for i in 0..256 {
        let s = i / 32;
        let byte = qs[(i / 64) * 32 + i % 32];
        let lo = if s % 2 == 0 { byte & 15 } else { byte >> 4 } as u32;
        let hi = ((qh[i % 32] >> s) & 1) as u32;
        let (sc, mn) = k4_scale_min(&b[4..16], s);
        let want = (0.75 * sc as f32) * (lo + 16 * hi) as f32 - 0.125 * mn as f32;
        assert_eq!(y[i], want, "element {i}");
    }
}

#[test]
fn q6_k_known_answer() {
    let mut rng = Rng(13);
    let ql: Vec<u8> = (0..128).map(|_| rng.byte()).collect();
    let qh: Vec<u8> = (0..64).map(|_| rng.byte()).collect();
    let sc: Vec<i8> = (0..16).map(|_| rng.byte() as i8).collect();
    let mut b = ql.clone();
    b.extend_from_slice(&qh);
    b.extend(sc.iter().map(|&s| s as u8));
    b.extend_from_slice(&h(0.0625));
    let y = deq(GgmlType::Q6_K, &b, 256);
    for i in 0..256 {
        let half = i / 128;
        let k = i % 128; // position in the half
        let quarter = k / 32; // which of the four 32-runs
        let l = k % 32;
        let lbyte = ql[64 * half + l + 32 * (quarter % 2)];
        let low = if quarter < 2 { lbyte & 15 } else { lbyte >> 4 } as i32;
        let high = ((qh[32 * half + l] >> (2 * quarter)) & 3) as i32;
        let q = low + 16 * high - 32;
        let scale = sc[8 * half + 2 * quarter + l / 16] as f32;
        assert_eq!(y[i], 0.0625 * scale * q as f32, "element {i}");
    }
}

// ---------------------------------------------------------------- quantizers ----------

fn random_row(rng: &mut Rng, n: usize, scale: f32) -> Vec<f32> {
    (0..n).map(|_| rng.f() * scale).collect()
}

#[test]
fn quantizers_round_trip_within_half_a_step() {
    let mut rng = Rng(42);
    let n = 512;
    for &(ty, steps) in &[
        (GgmlType::Q8_0, 127.0f32),
        (GgmlType::Q8_1, 127.0),
        (GgmlType::Q4_0, 8.0),
        (GgmlType::Q5_0, 16.0),
        (GgmlType::Q4_1, 7.5),
        (GgmlType::Q5_1, 15.5),
        (GgmlType::Q8_K, 127.0),
    ] {
        for scale in [1.0f32, 1e-3, 300.0] {
            let x = random_row(&mut rng, n, scale);
            let mut b = Vec::new();
            quantize_row_into(ty, &x, &mut b).unwrap();
            assert_eq!(b.len(), row_bytes(ty, n).unwrap());
            let y = deq(ty, &b, n);
            let blk = if ty == GgmlType::Q8_K { 256 } else { 32 };
            for (xb, yb) in x.chunks(blk).zip(y.chunks(blk)) {
                let amax = xb.iter().fold(0.0f32, |a, v| a.max(v.abs()));
                // one step is amax/steps (range/(2·steps) for the _1 types); allow half a step
                // plus the f16 rounding of the scale.
                let step = amax / steps;
                // Q4_0/Q5_0 map the signed max to -8/-16, so the opposite extreme clamps at
                // +7/+15: up to a full step there.
                let half = if matches!(ty, GgmlType::Q4_0 | GgmlType::Q5_0) {
                    1.0
                } else {
                    0.5
                };
                for (a, b) in xb.iter().zip(yb) {
                    assert!(
                        // (the f16 scale may be subnormal: absolute error up to 2^-25 per unit)
                        (a - b).abs() <= half * step + amax * 2e-3 + 2f32.powi(-17),
                        "{ty} {a} vs {b} (step {step})"
                    );
                }
            }
        }
    }
}

#[test]
fn quantizers_reproduce_grid_values_exactly() {
    // Values on the quantization grid with a power-of-two scale survive exactly.
    let x: Vec<f32> = (0..32).map(|j| (j as f32 - 16.0) * 0.25).collect();
    for ty in [
        GgmlType::Q8_0,
        GgmlType::Q8_1,
        GgmlType::F16,
        GgmlType::BF16,
        GgmlType::F32,
    ] {
        let mut b = Vec::new();
        quantize_row_into(ty, &x, &mut b).unwrap();
        let y = deq(ty, &b, 32);
        let scale_ok = ty != GgmlType::Q8_0 && ty != GgmlType::Q8_1;
        if scale_ok {
            assert_eq!(y, x, "{ty}");
        } else {
            for (a, b) in x.iter().zip(&y) {
                assert!((a - b).abs() <= 4.0 / 127.0 / 2.0 + 1e-6, "{ty}");
            }
        }
    }
    // Q4_0: values -8..7 times d with max = -8·d give d back (d = max / -8).
    let x: Vec<f32> = (0..32).map(|j| ((j % 16) as f32 - 8.0) * 0.5).collect();
    let mut b = Vec::new();
    quantize_row_into(GgmlType::Q4_0, &x, &mut b).unwrap();
    assert_eq!(deq(GgmlType::Q4_0, &b, 32), x);
    // Q4_1: min 0, max 15 → d = 1 exactly.
    let x: Vec<f32> = (0..32).map(|j| (j % 16) as f32).collect();
    let mut b = Vec::new();
    quantize_row_into(GgmlType::Q4_1, &x, &mut b).unwrap();
    assert_eq!(deq(GgmlType::Q4_1, &b, 32), x);
    // Q5_0: -16..15 with max -16 → d = 1.
    let x: Vec<f32> = (0..32).map(|j| j as f32 - 16.0).collect();
    let mut b = Vec::new();
    quantize_row_into(GgmlType::Q5_0, &x, &mut b).unwrap();
    assert_eq!(deq(GgmlType::Q5_0, &b, 32), x);
    // Q5_1: 0..31 → d = 1, m = 0.
    let x: Vec<f32> = (0..32).map(|j| j as f32).collect();
    let mut b = Vec::new();
    quantize_row_into(GgmlType::Q5_1, &x, &mut b).unwrap();
    assert_eq!(deq(GgmlType::Q5_1, &b, 32), x);
}

#[test]
fn q8_k_quantizer_matches_ggml_reference_details() {
    // ggml: iscale = -127/max (max = the signed value of largest magnitude), d = 1/iscale,
    // round half to even, clamp at 127, bsums of 16.
    let mut x = vec![0.0f32; 256];
    x[0] = 127.0; // max → iscale = -1, d = -1
    x[1] = 0.5; // -0.5 rounds to even: 0
    x[2] = 1.5; // -1.5 → -2
    x[3] = -2.5; // 2.5 → 2
    x[16] = 3.0;
    let mut b = Vec::new();
    quantize_row_into(GgmlType::Q8_K, &x, &mut b).unwrap();
    let d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    assert_eq!(d, -1.0);
    assert_eq!(b[4] as i8, -127);
    assert_eq!(b[5] as i8, 0);
    assert_eq!(b[6] as i8, -2);
    assert_eq!(b[7] as i8, 2);
    let bsum = |j: usize| i16::from_le_bytes([b[4 + 256 + 2 * j], b[5 + 256 + 2 * j]]);
    assert_eq!(bsum(0), -127);
    assert_eq!(bsum(1), -3);
}

#[test]
fn zero_rows_quantize_to_zero() {
    let x = vec![0.0f32; 256];
    for ty in [
        GgmlType::Q8_0,
        GgmlType::Q8_1,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q8_K,
    ] {
        let mut b = Vec::new();
        quantize_row_into(ty, &x, &mut b).unwrap();
        assert!(deq(ty, &b, 256).iter().all(|v| *v == 0.0), "{ty}");
    }
}

// ---------------------------------------------------------------- hostile lengths ----------

#[test]
fn bad_lengths_are_errors_not_panics() {
    let bytes = vec![0u8; 2000];
    for ty in [
        GgmlType::F32,
        GgmlType::F16,
        GgmlType::BF16,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q8_0,
        GgmlType::Q8_1,
        GgmlType::Q4_K,
        GgmlType::Q5_K,
        GgmlType::Q6_K,
        GgmlType::Q8_K,
    ] {
        let n = 256;
        let rb = row_bytes(ty, n).unwrap();
        let mut out = vec![0.0f32; n];
        for len in [0, 1, rb - 1, rb + 1] {
            assert!(
                matches!(
                    dequantize_row(ty, &bytes[..len], &mut out),
                    Err(QuantError::Length { .. })
                ),
                "{ty} len {len}"
            );
        }
        assert!(dequantize_row(ty, &bytes[..rb], &mut out).is_ok());
        if ty.block_elems() > 1 {
            let mut odd = vec![0.0f32; 255];
            assert!(matches!(
                dequantize_row(ty, &bytes[..rb], &mut odd),
                Err(QuantError::RowLength { .. })
            ));
        }
    }
    assert!(matches!(
        dequantize_row(GgmlType::Q2_K, &bytes[..84], &mut [0.0; 256]),
        Err(QuantError::Unsupported { .. })
    ));
    assert!(matches!(
        quantize_row_into(GgmlType::Q6_K, &[0.0; 256], &mut Vec::new()),
        Err(QuantError::Unsupported { .. })
    ));
    assert!(quantize(GgmlType::Q8_0, &[0.0; 40], 32).is_err());
}

#[test]
fn matrix_rejects_bad_shapes() {
    let t = Threads::single();
    assert!(QMatrix::from_bytes(vec![0; 33], GgmlType::Q8_0, 1, 32).is_err());
    assert!(QMatrix::from_bytes(vec![0; 34], GgmlType::Q8_0, 1, 33).is_err());
    assert!(QMatrix::from_bytes(vec![0; 292], GgmlType::Q8_K, 1, 256).is_err());
    let m = QMatrix::from_f32(GgmlType::Q8_0, 2, 32, &[0.5; 64]).unwrap();
    assert!(m.matvec(&[0.0; 31], &mut [0.0; 2], &t).is_err());
    assert!(m.matvec(&[0.0; 32], &mut [0.0; 3], &t).is_err());
    assert!(m.matmul(&[0.0; 96], &mut [0.0; 4], &t).is_err());
    assert!(m.dequantize_row(2, &mut [0.0; 32]).is_err());
    assert!(m.dequantize_row(0, &mut [0.0; 31]).is_err());
    assert!(m.sub_rows(1, 2).is_err());
    assert_eq!(m.sub_rows(1, 1).unwrap().n_rows(), 1);
    assert!(matches!(
        QMatrix::new(
            std::sync::Arc::new(vec![0u8; 60]),
            10,
            GgmlType::Q8_0,
            2,
            32
        ),
        Err(QuantError::ShortBuffer { .. })
    ));
}

// ---------------------------------------------------------------- dot kernels ----------

const ALL_DOT_TYPES: [GgmlType; 11] = [
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

/// Random bytes for a k-quant row with sane f16 scales.
fn random_k_row(rng: &mut Rng, ty: GgmlType, n: usize) -> Vec<u8> {
    let bb = ty.block_bytes() as usize;
    let mut out = Vec::new();
    for _ in 0..n / 256 {
        let mut b: Vec<u8> = (0..bb).map(|_| rng.byte()).collect();
        let d = h(0.001 + 0.01 * rng.f().abs());
        let dmin = h(0.001 + 0.01 * rng.f().abs());
        match ty {
            GgmlType::Q6_K => b[208..210].copy_from_slice(&d),
            _ => {
                b[0..2].copy_from_slice(&d);
                b[2..4].copy_from_slice(&dmin);
            }
        }
        out.extend_from_slice(&b);
    }
    out
}

/// A random `rows × cols` matrix of `ty`.
fn random_matrix(rng: &mut Rng, ty: GgmlType, rows: usize, cols: usize) -> QMatrix {
    match ty {
        GgmlType::Q4_K | GgmlType::Q5_K | GgmlType::Q6_K => {
            let mut b = Vec::new();
            for _ in 0..rows {
                b.extend(random_k_row(rng, ty, cols));
            }
            QMatrix::from_bytes(b, ty, rows, cols).unwrap()
        }
        _ => {
            let x = random_row(rng, rows * cols, 0.1);
            QMatrix::from_f32(ty, rows, cols, &x).unwrap()
        }
    }
}

/// The activation as the kernel sees it: quantized then dequantized (f32 stays as is).
fn act_round_trip(fmt: ActFormat, x: &[f32]) -> Vec<f32> {
    let ty = match fmt {
        ActFormat::F32 => return x.to_vec(),
        ActFormat::Q8_0 => GgmlType::Q8_0,
        ActFormat::Q8_1 => GgmlType::Q8_1,
        ActFormat::Q8_K => GgmlType::Q8_K,
    };
    let mut b = Vec::new();
    quantize_row_into(ty, x, &mut b).unwrap();
    deq(ty, &b, x.len())
}

#[test]
fn every_kernel_matches_scalar_reference_and_dequantized_dot() {
    let mut rng = Rng(2024);
    let t = Threads::single();
    for ty in ALL_DOT_TYPES {
        // 32-element types: 96 (only a tail of blocks), 576 (groups of 8 plus a tail), 4864.
        let cols_list: &[usize] = if ty.block_elems() == 256 {
            &[256, 512, 1536]
        } else {
            &[96, 256, 576, 1536, 4864]
        };
        for &cols in cols_list {
            let rows = 37;
            let m = random_matrix(&mut rng, ty, rows, cols);
            let x = random_row(&mut rng, cols, 2.0);
            let reference = m.clone().with_isa(Isa::Scalar).unwrap();
            let mut y_ref = vec![0.0f32; rows];
            reference.matvec(&x, &mut y_ref, &t).unwrap();

            // Scalar reference vs the f64 dot of the dequantized operands.
            let xq = act_round_trip(m.act_format(), &x);
            let w = m.dequantize().unwrap();
            for r in 0..rows {
                let wr = &w[r * cols..(r + 1) * cols];
                let exact: f64 = wr.iter().zip(&xq).map(|(a, b)| *a as f64 * *b as f64).sum();
                let mag: f64 = wr
                    .iter()
                    .zip(&xq)
                    .map(|(a, b)| (*a as f64 * *b as f64).abs())
                    .sum();
                let err = (y_ref[r] as f64 - exact).abs();
                // Q4_1/Q5_1 use ggml's s = f16(d·Σq) for the min term: up to 2^-11 relative
                // error on each block's m·s (that is the format, not kernel rounding).
                let mut s_tol = 0.0f64;
                if m.act_format() == ActFormat::Q8_1 {
                    let bb = ty.block_bytes() as usize;
                    for (b, xb) in m.row(r).unwrap().chunks(bb).zip(xq.chunks(32)) {
                        let mn = f16::from_bits(u16::from_le_bytes([b[2], b[3]])).to_f32() as f64;
                        let sy: f64 = xb.iter().map(|v| *v as f64).sum();
                        s_tol += (mn * sy).abs() * 2f64.powi(-10);
                    }
                }
                assert!(
                    err <= 1e-5 * mag + s_tol + 1e-30,
                    "{ty} cols {cols} row {r}: {} vs {exact} (mag {mag})",
                    y_ref[r]
                );
            }

            for isa in Isa::ALL {
                if !isa.is_available() {
                    continue;
                }
                let k = m.clone().with_isa(isa).unwrap();
                let mut y = vec![0.0f32; rows];
                k.matvec(&x, &mut y, &t).unwrap();
                let eff = effective_isa(ty, isa);
                let bitwise = eff == Isa::Scalar || !matches!(ty.block_elems(), 32);
                for r in 0..rows {
                    if bitwise {
                        assert_eq!(
                            y[r].to_bits(),
                            y_ref[r].to_bits(),
                            "{ty} {isa:?} ({eff:?}) cols {cols} row {r}: {} vs {}",
                            y[r],
                            y_ref[r]
                        );
                    } else {
                        let wr = &w[r * cols..(r + 1) * cols];
                        let mag: f32 = wr.iter().zip(&xq).map(|(a, b)| (a * b).abs()).sum();
                        assert!(
                            (y[r] - y_ref[r]).abs() <= 1e-5 * mag,
                            "{ty} {isa:?} cols {cols} row {r}: {} vs {}",
                            y[r],
                            y_ref[r]
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn float_kernels_handle_any_length() {
    let mut rng = Rng(5);
    let t = Threads::single();
    for ty in [GgmlType::F32, GgmlType::F16, GgmlType::BF16] {
        for cols in [1usize, 7, 15, 16, 17, 33, 100] {
            let m = random_matrix(&mut rng, ty, 3, cols);
            let x = random_row(&mut rng, cols, 1.0);
            let mut y0 = vec![0.0f32; 3];
            m.clone()
                .with_isa(Isa::Scalar)
                .unwrap()
                .matvec(&x, &mut y0, &t)
                .unwrap();
            for isa in Isa::ALL.into_iter().filter(|i| i.is_available()) {
                let mut y = vec![0.0f32; 3];
                m.clone()
                    .with_isa(isa)
                    .unwrap()
                    .matvec(&x, &mut y, &t)
                    .unwrap();
                assert_eq!(y, y0, "{ty} {isa:?} cols {cols}");
            }
        }
    }
}

#[test]
fn detected_isa_is_available_and_used_by_default() {
    let isa = Isa::detect();
    assert!(isa.is_available());
    assert_eq!(Isa::detect(), isa);
    let m = QMatrix::from_f32(GgmlType::Q8_0, 1, 32, &[1.0; 32]).unwrap();
    assert_eq!(m.isa(), isa);
}
