//! The real SmolLM2-135M file (fetched into the model cache if missing): dequantized rows are
//! finite and plausibly sized, and matvec equals the dot of dequantized rows with the
//! quantized-then-dequantized activation.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use nmk_neural::gguf::{GgmlType, GgufFile};
use nmk_neural::quant::{QMatrix, Threads, dequantize_row, quantize_row_into};

fn smollm2() -> Arc<GgufFile> {
    let path = nmk_neural::models::resolve_model("smollm2-135m-instruct", &mut |_| {}).unwrap();
    Arc::new(GgufFile::open(path).unwrap())
}

fn act_round_trip(ty: GgmlType, x: &[f32]) -> Vec<f32> {
    let mut b = Vec::new();
    quantize_row_into(ty, x, &mut b).unwrap();
    let mut out = vec![0.0f32; x.len()];
    dequantize_row(ty, &b, &mut out).unwrap();
    out
}

#[test]
fn smollm2_weights_dequantize_and_matvec_agrees_with_dequantized_dot() {
    let file = smollm2();
    let emb = QMatrix::from_gguf(&file, "token_embd.weight").unwrap();
    assert!(
        matches!(emb.ggml_type(), GgmlType::Q8_0 | GgmlType::Q4_1),
        "{}",
        emb.ggml_type()
    );
    assert_eq!(emb.n_cols(), 576);
    assert_eq!(emb.n_rows(), 49152);
    let gate = QMatrix::from_gguf(&file, "blk.0.ffn_gate.weight").unwrap();
    assert_eq!(gate.ggml_type(), GgmlType::Q4_1);
    assert_eq!((gate.n_rows(), gate.n_cols()), (1536, 576));

    // Embedding rows: finite, not all zero, plausible magnitudes.
    let mut row = vec![0.0f32; 576];
    for r in [0usize, 1, 504, 12345, 49151] {
        emb.dequantize_row(r, &mut row).unwrap();
        assert!(row.iter().all(|v| v.is_finite()), "row {r}");
        let rms = (row.iter().map(|v| v * v).sum::<f32>() / 576.0).sqrt();
        let amax = row.iter().fold(0.0f32, |a, v| a.max(v.abs()));
        assert!(rms > 1e-3 && rms < 10.0, "token_embd row {r} rms {rms}");
        assert!(amax < 100.0, "token_embd row {r} amax {amax}");
    }
    // Distinct tokens have distinct embeddings.
    let mut other = vec![0.0f32; 576];
    emb.dequantize_row(1, &mut other).unwrap();
    emb.dequantize_row(2, &mut row).unwrap();
    assert_ne!(row, other);

    let mut g = vec![0.0f32; 576];
    gate.dequantize_row(7, &mut g).unwrap();
    assert!(g.iter().all(|v| v.is_finite()));
    let rms = (g.iter().map(|v| v * v).sum::<f32>() / 576.0).sqrt();
    assert!(rms > 1e-3 && rms < 10.0, "ffn_gate row rms {rms}");

    // matvec vs the f64 dot of dequantized rows with the round-tripped activation, for the
    // Q4_1 gate and the Q8_0 (or whatever the file has) embedding used as output head.
    let x: Vec<f32> = (0..576)
        .map(|i| ((i * 37 % 101) as f32 / 50.0 - 1.0) * 1.5)
        .collect();
    for m in [&gate, &emb.sub_rows(1000, 300).unwrap()] {
        let act_ty = match m.ggml_type() {
            GgmlType::Q4_1 | GgmlType::Q5_1 => GgmlType::Q8_1,
            GgmlType::Q4_0 | GgmlType::Q5_0 | GgmlType::Q8_0 => GgmlType::Q8_0,
            GgmlType::Q4_K | GgmlType::Q5_K | GgmlType::Q6_K => GgmlType::Q8_K,
            _ => GgmlType::F32,
        };
        let xq = act_round_trip(act_ty, &x);
        let mut y = vec![0.0f32; m.n_rows()];
        m.matvec(&x, &mut y, &Threads::single()).unwrap();
        let mut y2 = vec![0.0f32; m.n_rows()];
        m.matvec(&x, &mut y2, &Threads::new(2)).unwrap();
        assert_eq!(y, y2, "thread invariance on the real file");
        let w = m.dequantize().unwrap();
        for r in 0..m.n_rows() {
            let wr = &w[r * 576..(r + 1) * 576];
            let exact: f64 = wr.iter().zip(&xq).map(|(a, b)| *a as f64 * *b as f64).sum();
            let mag: f64 = wr
                .iter()
                .zip(&xq)
                .map(|(a, b)| (*a as f64 * *b as f64).abs())
                .sum();
            // Q4_1's min term uses ggml's f16 s = f16(d·Σq): up to 2^-11 relative error on
            // each block's m·s (the format), on top of float rounding.
            let mut s_tol = 0.0f64;
            if act_ty == GgmlType::Q8_1 {
                let bb = m.ggml_type().block_bytes() as usize;
                for (b, xb) in m.row(r).unwrap().chunks(bb).zip(xq.chunks(32)) {
                    let mn = half::f16::from_bits(u16::from_le_bytes([b[2], b[3]])).to_f32() as f64;
                    let sy: f64 = xb.iter().map(|v| *v as f64).sum();
                    s_tol += (mn * sy).abs() * 2f64.powi(-10);
                }
            }
            let tol = 1e-5 * mag + s_tol;
            assert!(
                (y[r] as f64 - exact).abs() <= tol,
                "{} row {r}: {} vs {exact} (mag {mag})",
                m.ggml_type(),
                y[r]
            );
        }
    }
}
