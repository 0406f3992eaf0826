//! Training the entry-trap head with candle (CPU, full batch, Adam): RMSNorm → Linear(d, 128)
//! → GELU (tanh form) → Linear(128, C) over z-scored residuals, cross-entropy on the labels.
//!
//! Owns the optimisation only: features and labels come in, [`HeadWeights`] go out (the same
//! parameters and formula `nmk_neural::entry_head` infers with in plain f32). Deterministic for
//! a seed: the initial weights come from a seeded generator, never candle's unseeded CPU RNG,
//! and the command runs candle on one thread. May not touch the model, the router or files.

use anyhow::{Result, bail};
use candle_core::{D, DType, Device, Tensor, Var};
use candle_nn::optim::{AdamW, Optimizer, ParamsAdamW};
use nmk_det::gate::Rng;
use nmk_neural::entry_head::{HeadWeights, RMS_EPS, SD_EPS};

/// Hidden width of the head.
pub const HIDDEN: usize = 128;

/// How to train.
#[derive(Debug, Clone, Copy)]
pub struct TrainConfig {
    /// Full-batch epochs.
    pub epochs: usize,
    /// Adam learning rate.
    pub lr: f64,
    /// Seed of the initial weights.
    pub seed: u64,
}

fn uniform(rng: &mut Rng, n: usize, bound: f32) -> Vec<f32> {
    (0..n)
        .map(|_| {
            let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
            ((u * 2.0 - 1.0) as f32) * bound
        })
        .collect()
}

/// Per-dimension mean and (population) standard deviation of `x`.
pub fn moments(x: &[Vec<f32>], d: usize) -> (Vec<f32>, Vec<f32>) {
    let n = x.len().max(1) as f64;
    let mut mu = vec![0f64; d];
    for row in x {
        for (m, v) in mu.iter_mut().zip(row) {
            *m += f64::from(*v);
        }
    }
    mu.iter_mut().for_each(|m| *m /= n);
    let mut var = vec![0f64; d];
    for row in x {
        for ((s, v), m) in var.iter_mut().zip(row).zip(&mu) {
            *s += (f64::from(*v) - m).powi(2);
        }
    }
    (
        mu.iter().map(|&m| m as f32).collect(),
        var.iter().map(|&s| (s / n).sqrt() as f32).collect(),
    )
}

fn gelu(h: &Tensor) -> candle_core::Result<Tensor> {
    let cube = h.mul(h)?.mul(h)?;
    let inner = (h + cube.affine(0.044_715, 0.0)?)?.affine(0.797_884_6, 0.0)?;
    (h * 0.5)?.mul(&(inner.tanh()? + 1.0)?)
}

/// Trains a head on rows `x` (each `d` wide) with labels `y` in `0..n_classes`.
pub fn train(x: &[Vec<f32>], y: &[u32], n_classes: usize, cfg: TrainConfig) -> Result<HeadWeights> {
    let Some(d) = x.first().map(Vec::len) else {
        bail!("no training rows");
    };
    if x.len() != y.len() || x.iter().any(|r| r.len() != d) {
        bail!("training rows and labels do not agree");
    }
    if y.iter().any(|&c| c as usize >= n_classes) {
        bail!("a label is outside the classes");
    }
    let dev = Device::Cpu;
    let (mu, sd) = moments(x, d);
    let z: Vec<f32> = x
        .iter()
        .flat_map(|r| {
            r.iter()
                .zip(mu.iter().zip(&sd))
                .map(|(v, (m, s))| (v - m) / (s + SD_EPS))
        })
        .collect();
    let z = Tensor::from_vec(z, (x.len(), d), &dev)?;
    let labels = Tensor::from_vec(y.to_vec(), x.len(), &dev)?;
    let mut rng = Rng::new(cfg.seed);
    let b1 = 1.0 / (d as f32).sqrt();
    let b2 = 1.0 / (HIDDEN as f32).sqrt();
    let norm = Var::from_vec(vec![1f32; d], d, &dev)?;
    let w1 = Var::from_vec(uniform(&mut rng, HIDDEN * d, b1), (HIDDEN, d), &dev)?;
    let bias1 = Var::from_vec(uniform(&mut rng, HIDDEN, b1), HIDDEN, &dev)?;
    let w2 = Var::from_vec(
        uniform(&mut rng, n_classes * HIDDEN, b2),
        (n_classes, HIDDEN),
        &dev,
    )?;
    let bias2 = Var::from_vec(uniform(&mut rng, n_classes, b2), n_classes, &dev)?;
    let mut opt = AdamW::new(
        vec![
            norm.clone(),
            w1.clone(),
            bias1.clone(),
            w2.clone(),
            bias2.clone(),
        ],
        ParamsAdamW {
            lr: cfg.lr,
            weight_decay: 0.0,
            ..ParamsAdamW::default()
        },
    )?;
    let rms = (z.sqr()?.mean_keepdim(D::Minus1)? + f64::from(RMS_EPS))?.sqrt()?;
    let zn = z.broadcast_div(&rms)?;
    for _ in 0..cfg.epochs {
        let xn = zn.broadcast_mul(norm.as_tensor())?;
        let h = xn
            .matmul(&w1.as_tensor().t()?)?
            .broadcast_add(bias1.as_tensor())?;
        let logits = gelu(&h)?
            .matmul(&w2.as_tensor().t()?)?
            .broadcast_add(bias2.as_tensor())?;
        let loss = candle_nn::loss::cross_entropy(&logits, &labels)?;
        opt.backward_step(&loss)?;
    }
    let flat = |v: &Var| -> Result<Vec<f32>> {
        Ok(v.as_tensor()
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?)
    };
    Ok(HeadWeights {
        norm: flat(&norm)?,
        w1: flat(&w1)?,
        b1: flat(&bias1)?,
        w2: flat(&w2)?,
        b2: flat(&bias2)?,
        mu,
        sd,
    })
}
