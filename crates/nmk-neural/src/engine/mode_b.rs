//! The Mode-B injector (research): a small adapter that writes a result vector into the
//! residual stream after one block, so the model can read a value it was never given as tokens.
//!
//! `x ← x + scale · up(silu(down(rmsnorm(x)) + proj(r)))` for every row of the batch, where `r`
//! is the result vector (broadcast over positions), `down` is `n_embd → bottleneck`, `proj` is
//! `result_dim → bottleneck` and `up` is `bottleneck → n_embd`. `up` starts at zero, so an armed
//! injector is the identity until it is trained or set; a disarmed one reads and writes nothing.
//! An element of the delta that is exactly zero is not added at all, so the zero-`up` identity
//! holds bit for bit even on a `−0.0` residual element (`−0 + +0 = +0` would flip its sign).
//!
//! It is a [`PostBlockHook`] like any trap writer and is exercised by `nmk prove --research`.
//! What it does not claim: that a model can compute with an injected value (the original's
//! reported fact use through this path was nil); it is an instrument, off by default.

use super::hooks::{HookError, PostBlockHook, Residual};
use super::sampling::Rng;

/// Default bottleneck width.
pub const DEFAULT_BOTTLENECK: usize = 64;
/// Default result-vector width.
pub const DEFAULT_RESULT_DIM: usize = 16;
const NORM_EPS: f32 = 1e-6;

/// The injector (see the module documentation).
#[derive(Debug, Clone)]
pub struct ModeBInjector {
    /// The block after which it writes.
    pub layer: usize,
    /// When false it reads and writes nothing.
    pub armed: bool,
    /// Output scale.
    pub scale: f32,
    n_embd: usize,
    bottleneck: usize,
    result_dim: usize,
    /// `bottleneck × n_embd`, row-major.
    down: Vec<f32>,
    /// `bottleneck × result_dim`, row-major.
    proj: Vec<f32>,
    /// `n_embd × bottleneck`, row-major (zero at construction).
    up: Vec<f32>,
    result: Vec<f32>,
    hidden: Vec<f32>,
    normed: Vec<f32>,
}

/// Normal(0, std) samples from our PRNG (Box–Muller), so weights are reproducible per seed.
fn normals(rng: &mut Rng, n: usize, std: f32) -> Vec<f32> {
    (0..n)
        .map(|_| {
            let u1 = rng.next_f64().max(f64::MIN_POSITIVE);
            let u2 = rng.next_f64();
            let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
            (z * f64::from(std)) as f32
        })
        .collect()
}

impl ModeBInjector {
    /// An armed injector after block `layer` of a model of width `n_embd`, with `down` and
    /// `proj` drawn from Normal(0, 0.02) with `seed`, `up` zero, scale 1 and a zero result.
    pub fn new(layer: usize, n_embd: usize, seed: u64) -> ModeBInjector {
        ModeBInjector::with_dims(layer, n_embd, DEFAULT_BOTTLENECK, DEFAULT_RESULT_DIM, seed)
    }

    /// As [`ModeBInjector::new`] with explicit bottleneck and result widths.
    pub fn with_dims(
        layer: usize,
        n_embd: usize,
        bottleneck: usize,
        result_dim: usize,
        seed: u64,
    ) -> ModeBInjector {
        let mut rng = Rng::new(seed);
        ModeBInjector {
            layer,
            armed: true,
            scale: 1.0,
            n_embd,
            bottleneck,
            result_dim,
            down: normals(&mut rng, bottleneck * n_embd, 0.02),
            proj: normals(&mut rng, bottleneck * result_dim, 0.02),
            up: vec![0.0; n_embd * bottleneck],
            result: vec![0.0; result_dim],
            hidden: vec![0.0; bottleneck],
            normed: vec![0.0; n_embd],
        }
    }

    /// Sets the result vector (exactly `result_dim` values).
    pub fn set_result(&mut self, result: &[f32]) -> Result<(), HookError> {
        if result.len() != self.result_dim {
            return Err(HookError(format!(
                "Mode-B result has {} values, the injector takes {}",
                result.len(),
                self.result_dim
            )));
        }
        self.result.copy_from_slice(result);
        Ok(())
    }

    /// Draws `up` from Normal(0, std) (a live, untrained injector: the liveness contrast).
    pub fn randomize_up(&mut self, seed: u64, std: f32) {
        let mut rng = Rng::new(seed);
        self.up = normals(&mut rng, self.n_embd * self.bottleneck, std);
    }

    /// Sets `up` to zero (the identity).
    pub fn zero_up(&mut self) {
        self.up.fill(0.0);
    }

    fn inject(&mut self, row: &[f32], delta: &mut [f32]) {
        let n = self.n_embd;
        let ms = row.iter().map(|v| v * v).sum::<f32>() / n.max(1) as f32;
        let inv = 1.0 / (ms + NORM_EPS).sqrt();
        for (o, &v) in self.normed.iter_mut().zip(row) {
            *o = v * inv;
        }
        for (j, h) in self.hidden.iter_mut().enumerate() {
            let d = &self.down[j * n..(j + 1) * n];
            let p = &self.proj[j * self.result_dim..(j + 1) * self.result_dim];
            let mut a: f32 = d.iter().zip(&self.normed).map(|(w, x)| w * x).sum();
            a += p.iter().zip(&self.result).map(|(w, x)| w * x).sum::<f32>();
            *h = a / (1.0 + (-a).exp());
        }
        for (i, o) in delta.iter_mut().enumerate() {
            let u = &self.up[i * self.bottleneck..(i + 1) * self.bottleneck];
            *o = self.scale * u.iter().zip(&self.hidden).map(|(w, h)| w * h).sum::<f32>();
        }
    }
}

impl PostBlockHook for ModeBInjector {
    fn wants(&self, layer: usize) -> bool {
        self.armed && layer == self.layer
    }

    fn post_block(&mut self, _layer: usize, residual: &mut Residual<'_>) -> Result<(), HookError> {
        if residual.width() != self.n_embd {
            return Err(HookError(format!(
                "Mode-B injector built for width {}, the residual is {}",
                self.n_embd,
                residual.width()
            )));
        }
        let mut delta = vec![0f32; self.n_embd];
        for i in 0..residual.rows() {
            let Some(row) = residual.row(i) else {
                continue;
            };
            let row = row.to_vec();
            self.inject(&row, &mut delta);
            residual.add_nonzero(i, &delta)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(inj: &mut ModeBInjector, data: &mut [f32]) -> Result<(), HookError> {
        let mut r = Residual::new(data, 4, 0);
        inj.post_block(1, &mut r)
    }

    #[test]
    fn zero_up_is_the_identity_even_on_negative_zero() {
        let mut inj = ModeBInjector::with_dims(1, 4, 8, 2, 3);
        inj.set_result(&[1.0, 1.0]).unwrap();
        let mut data = [-0.0f32, 1.5, -2.0, 0.0, 3.0, -0.0, 0.25, 7.0];
        let before: Vec<u32> = data.iter().map(|v| v.to_bits()).collect();
        run(&mut inj, &mut data).unwrap();
        let after: Vec<u32> = data.iter().map(|v| v.to_bits()).collect();
        assert_eq!(before, after);
        // Liveness: a random `up` writes.
        inj.randomize_up(5, 0.02);
        run(&mut inj, &mut data).unwrap();
        let live: Vec<u32> = data.iter().map(|v| v.to_bits()).collect();
        assert_ne!(before, live);
    }

    #[test]
    fn the_result_vector_changes_what_is_written() {
        let mut a = ModeBInjector::with_dims(1, 4, 8, 2, 3);
        a.randomize_up(5, 0.02);
        let mut b = a.clone();
        a.set_result(&[1.0, 0.0]).unwrap();
        b.set_result(&[0.0, 1.0]).unwrap();
        let (mut x, mut y) = ([1.0f32, 2.0, 3.0, 4.0], [1.0f32, 2.0, 3.0, 4.0]);
        run(&mut a, &mut x).unwrap();
        run(&mut b, &mut y).unwrap();
        assert_ne!(x, y);
    }

    #[test]
    fn wrong_widths_are_errors_not_panics() {
        let mut inj = ModeBInjector::with_dims(1, 4, 8, 2, 3);
        assert!(inj.set_result(&[1.0]).is_err());
        let mut inj = ModeBInjector::with_dims(1, 5, 8, 2, 3);
        assert!(run(&mut inj, &mut [0.0; 8]).is_err());
        assert!(
            !ModeBInjector {
                armed: false,
                ..inj
            }
            .wants(1)
        );
    }
}
