//! The head file and inference.
//!
//! Layout (little-endian): magic `NMKHEAD\0`, version `u32`, the [`ParkBinding`] (SHA-256 of
//! the model file, SHA-256 of its tokenizer definition), the template id (`u32` length +
//! UTF-8), layer, width `d`, hidden `h`, class count `C` (`u32` each), the classes (`u32`
//! length + UTF-8 each), then f32 arrays: RMSNorm weight `[d]`, `w1 [h×d]`, `b1 [h]`,
//! `w2 [C×h]`, `b2 [C]`, `mu [d]`, `sd [d]`, and a SHA-256 of everything before it. Loading
//! treats the bytes as hostile: checksum first, every size capped and checked against the
//! bytes that remain before anything is allocated, every float finite, `sd` positive.

use sha2::{Digest, Sha256};

use super::gelu;
use crate::engine::ParkBinding;

/// First bytes of a head file.
pub const HEAD_MAGIC: [u8; 8] = *b"NMKHEAD\0";
/// Version of the format written.
pub const HEAD_VERSION: u32 = 1;
/// Largest residual width accepted.
pub const MAX_WIDTH: usize = 16_384;
/// Largest hidden width accepted.
pub const MAX_HIDDEN: usize = 4_096;
/// Most classes accepted.
pub const MAX_CLASSES: usize = 64;
/// Longest class name or template id, in bytes.
const MAX_NAME: usize = 128;
/// Largest layer index accepted.
const MAX_LAYER: usize = 4_096;
/// RMSNorm epsilon.
pub const RMS_EPS: f32 = 1e-5;
/// Added to the stored standard deviation before dividing.
pub const SD_EPS: f32 = 1e-6;

/// Errors of the head file and inference.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum HeadError {
    /// Reading or writing the file failed.
    #[error("head file I/O: {0}")]
    Io(String),
    /// The bytes end before the named part.
    #[error("head file truncated at {0}")]
    Truncated(&'static str),
    /// Not a head file, or another version.
    #[error("not an nmk head file of version {HEAD_VERSION}: {0}")]
    Format(String),
    /// The checksum does not match the bytes.
    #[error("head file checksum mismatch")]
    Checksum,
    /// A size is zero or beyond its cap.
    #[error("head file size out of range: {what} = {value} (allowed 1..={max})")]
    Size {
        /// Which size.
        what: &'static str,
        /// Its value.
        value: u64,
        /// The cap.
        max: u64,
    },
    /// Arrays whose lengths do not agree with the declared shapes.
    #[error("head shapes do not agree: {0}")]
    Shape(String),
    /// A weight, mean or deviation that is NaN, infinite or (for `sd`) not positive.
    #[error("head file holds a non-finite or invalid value in {0}")]
    NonFinite(&'static str),
    /// The head was trained on another model or tokenizer.
    #[error("head file is bound to another model (model {file}, loaded {loaded})")]
    WrongModel {
        /// Model hash in the file (hex prefix).
        file: String,
        /// Model hash of the loaded model (hex prefix).
        loaded: String,
    },
    /// The head reads another prompt template than the caller encodes with.
    #[error("head file expects template {file:?}, the caller encodes with {caller:?}")]
    WrongTemplate {
        /// Template in the file.
        file: String,
        /// Template of the caller.
        caller: String,
    },
    /// The residual given does not fit the head.
    #[error("residual has {got} values, the head reads {want}")]
    Residual {
        /// Values given.
        got: usize,
        /// Width of the head.
        want: usize,
    },
    /// The residual holds a NaN or infinity.
    #[error("residual holds a non-finite value")]
    ResidualNonFinite,
}

/// The trained parameters (row-major, out × in).
#[derive(Debug, Clone, PartialEq)]
pub struct HeadWeights {
    /// RMSNorm weight `[d]`.
    pub norm: Vec<f32>,
    /// First layer `[h × d]`.
    pub w1: Vec<f32>,
    /// First bias `[h]`.
    pub b1: Vec<f32>,
    /// Second layer `[C × h]`.
    pub w2: Vec<f32>,
    /// Second bias `[C]`.
    pub b2: Vec<f32>,
    /// Feature mean `[d]`.
    pub mu: Vec<f32>,
    /// Feature standard deviation `[d]`.
    pub sd: Vec<f32>,
}

/// A loaded, checked head.
#[derive(Debug, Clone, PartialEq)]
pub struct HeadFile {
    binding: ParkBinding,
    template: String,
    layer: usize,
    d: usize,
    hidden: usize,
    classes: Vec<String>,
    weights: HeadWeights,
}

fn check_size(what: &'static str, value: usize, max: usize) -> Result<(), HeadError> {
    if value == 0 || value > max {
        return Err(HeadError::Size {
            what,
            value: value as u64,
            max: max as u64,
        });
    }
    Ok(())
}

fn check_name(what: &'static str, s: &str) -> Result<(), HeadError> {
    check_size(what, s.len(), MAX_NAME)
}

impl HeadFile {
    /// A head from its parts, checked as a loaded file is.
    pub fn new(
        binding: ParkBinding,
        template: &str,
        layer: usize,
        classes: Vec<String>,
        weights: HeadWeights,
    ) -> Result<HeadFile, HeadError> {
        check_name("template length", template)?;
        check_size("layer + 1", layer.saturating_add(1), MAX_LAYER)?;
        let d = weights.norm.len();
        check_size("width", d, MAX_WIDTH)?;
        let hidden = weights.b1.len();
        check_size("hidden", hidden, MAX_HIDDEN)?;
        check_size("classes", classes.len(), MAX_CLASSES)?;
        for c in &classes {
            check_name("class name length", c)?;
        }
        let n = classes.len();
        let want = [
            ("w1", weights.w1.len(), hidden * d),
            ("w2", weights.w2.len(), n * hidden),
            ("b2", weights.b2.len(), n),
            ("mu", weights.mu.len(), d),
            ("sd", weights.sd.len(), d),
        ];
        for (name, got, want) in want {
            if got != want {
                return Err(HeadError::Shape(format!(
                    "{name} has {got} values, want {want}"
                )));
            }
        }
        let arrays: [(&'static str, &[f32]); 7] = [
            ("norm", &weights.norm),
            ("w1", &weights.w1),
            ("b1", &weights.b1),
            ("w2", &weights.w2),
            ("b2", &weights.b2),
            ("mu", &weights.mu),
            ("sd", &weights.sd),
        ];
        for (name, a) in arrays {
            if a.iter().any(|x| !x.is_finite()) {
                return Err(HeadError::NonFinite(name));
            }
        }
        if weights.sd.iter().any(|&s| s < 0.0) {
            return Err(HeadError::NonFinite("sd"));
        }
        Ok(HeadFile {
            binding,
            template: template.to_owned(),
            layer,
            d,
            hidden,
            classes,
            weights,
        })
    }

    /// The block whose output the head reads.
    pub fn layer(&self) -> usize {
        self.layer
    }

    /// The residual width.
    pub fn width(&self) -> usize {
        self.d
    }

    /// The class names, in output order.
    pub fn classes(&self) -> &[String] {
        &self.classes
    }

    /// The model binding.
    pub fn binding(&self) -> &ParkBinding {
        &self.binding
    }

    /// The prompt-encoding template id.
    pub fn template(&self) -> &str {
        &self.template
    }

    /// The parameters.
    pub fn weights(&self) -> &HeadWeights {
        &self.weights
    }

    /// Refuses a head trained on another model or read with another template.
    pub fn check_binding(&self, loaded: &ParkBinding, template: &str) -> Result<(), HeadError> {
        if self.binding != *loaded {
            return Err(HeadError::WrongModel {
                file: hex(&self.binding.model[..8]),
                loaded: hex(&loaded.model[..8]),
            });
        }
        if self.template != template {
            return Err(HeadError::WrongTemplate {
                file: self.template.clone(),
                caller: template.to_owned(),
            });
        }
        Ok(())
    }

    /// Logits of every class for one residual row.
    pub fn logits(&self, residual: &[f32]) -> Result<Vec<f32>, HeadError> {
        if residual.len() != self.d {
            return Err(HeadError::Residual {
                got: residual.len(),
                want: self.d,
            });
        }
        if residual.iter().any(|x| !x.is_finite()) {
            return Err(HeadError::ResidualNonFinite);
        }
        let w = &self.weights;
        let z: Vec<f32> = residual
            .iter()
            .zip(w.mu.iter().zip(&w.sd))
            .map(|(x, (m, s))| (x - m) / (s + SD_EPS))
            .collect();
        let ms = z.iter().map(|v| v * v).sum::<f32>() / self.d as f32;
        let inv = 1.0 / (ms + RMS_EPS).sqrt();
        let xn: Vec<f32> = z.iter().zip(&w.norm).map(|(v, g)| v * inv * g).collect();
        let h: Vec<f32> =
            w.w1.chunks_exact(self.d)
                .zip(&w.b1)
                .map(|(row, b)| gelu(dot(row, &xn) + b))
                .collect();
        Ok(w.w2
            .chunks_exact(self.hidden)
            .zip(&w.b2)
            .map(|(row, b)| dot(row, &h) + b)
            .collect())
    }

    /// The most likely class and its softmax probability.
    pub fn predict(&self, residual: &[f32]) -> Result<(String, f32), HeadError> {
        let logits = self.logits(residual)?;
        let (best, top) =
            logits
                .iter()
                .enumerate()
                .fold((0usize, f32::NEG_INFINITY), |(bi, bv), (i, &v)| {
                    if v > bv { (i, v) } else { (bi, bv) }
                });
        let sum: f32 = logits.iter().map(|&l| (l - top).exp()).sum();
        let class = self
            .classes
            .get(best)
            .cloned()
            .ok_or_else(|| HeadError::Shape("no class".into()))?;
        let conf = 1.0 / sum;
        if !conf.is_finite() {
            return Err(HeadError::ResidualNonFinite);
        }
        Ok((class, conf))
    }

    /// SHA-256 of the encoded file (hex): what a ledger entry binds.
    pub fn hash_hex(&self) -> String {
        hex(&Sha256::digest(self.to_bytes()))
    }

    /// The file's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&HEAD_MAGIC);
        out.extend_from_slice(&HEAD_VERSION.to_le_bytes());
        out.extend_from_slice(&self.binding.model);
        out.extend_from_slice(&self.binding.tokenizer);
        put_str(&mut out, &self.template);
        for v in [self.layer, self.d, self.hidden, self.classes.len()] {
            out.extend_from_slice(&(v as u32).to_le_bytes());
        }
        for c in &self.classes {
            put_str(&mut out, c);
        }
        let w = &self.weights;
        for a in [&w.norm, &w.w1, &w.b1, &w.w2, &w.b2, &w.mu, &w.sd] {
            for x in a.iter() {
                out.extend_from_slice(&x.to_bits().to_le_bytes());
            }
        }
        let sum = Sha256::digest(&out);
        out.extend_from_slice(&sum);
        out
    }

    /// Decodes and checks a head file.
    pub fn from_bytes(bytes: &[u8]) -> Result<HeadFile, HeadError> {
        if bytes.len() < HEAD_MAGIC.len() + 4 + 32 {
            return Err(HeadError::Truncated("header"));
        }
        let (body, sum) = bytes.split_at(bytes.len() - 32);
        if body.get(..8) != Some(&HEAD_MAGIC[..]) {
            return Err(HeadError::Format("bad magic".into()));
        }
        if Sha256::digest(body).as_slice() != sum {
            return Err(HeadError::Checksum);
        }
        let mut r = Reader { rest: &body[8..] };
        let version = r.u32("version")?;
        if version != HEAD_VERSION {
            return Err(HeadError::Format(format!("version {version}")));
        }
        let model = r.array32("model binding")?;
        let tokenizer = r.array32("tokenizer binding")?;
        let template = r.string("template")?;
        let layer = r.u32("layer")? as usize;
        let d = r.u32("width")? as usize;
        let hidden = r.u32("hidden")? as usize;
        let n = r.u32("class count")? as usize;
        check_size("layer + 1", layer.saturating_add(1), MAX_LAYER)?;
        check_size("width", d, MAX_WIDTH)?;
        check_size("hidden", hidden, MAX_HIDDEN)?;
        check_size("classes", n, MAX_CLASSES)?;
        let mut classes = Vec::with_capacity(n);
        for _ in 0..n {
            classes.push(r.string("class")?);
        }
        // Sizes are capped above, so this product cannot overflow.
        let floats = 3 * d + hidden * d + hidden + n * hidden + n;
        if r.rest.len() != floats * 4 {
            return Err(if r.rest.len() < floats * 4 {
                HeadError::Truncated("weights")
            } else {
                HeadError::Shape(format!(
                    "{} weight bytes, the shapes need {}",
                    r.rest.len(),
                    floats * 4
                ))
            });
        }
        let norm = r.floats(d, "norm")?;
        let w1 = r.floats(hidden * d, "w1")?;
        let b1 = r.floats(hidden, "b1")?;
        let w2 = r.floats(n * hidden, "w2")?;
        let b2 = r.floats(n, "b2")?;
        let mu = r.floats(d, "mu")?;
        let sd = r.floats(d, "sd")?;
        HeadFile::new(
            ParkBinding { model, tokenizer },
            &template,
            layer,
            classes,
            HeadWeights {
                norm,
                w1,
                b1,
                w2,
                b2,
                mu,
                sd,
            },
        )
    }

    /// Reads and checks the head file at `path` (at most 512 MiB).
    pub fn load(path: &std::path::Path) -> Result<HeadFile, HeadError> {
        let meta = std::fs::metadata(path).map_err(|e| HeadError::Io(e.to_string()))?;
        if meta.len() > 512 << 20 {
            return Err(HeadError::Size {
                what: "file bytes",
                value: meta.len(),
                max: 512 << 20,
            });
        }
        let bytes = std::fs::read(path).map_err(|e| HeadError::Io(e.to_string()))?;
        HeadFile::from_bytes(&bytes)
    }

    /// Writes the head file to `path`.
    pub fn save(&self, path: &std::path::Path) -> Result<(), HeadError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| HeadError::Io(e.to_string()))?;
        }
        std::fs::write(path, self.to_bytes()).map_err(|e| HeadError::Io(e.to_string()))
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// Lowercase hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], HeadError> {
        if self.rest.len() < n {
            return Err(HeadError::Truncated(what));
        }
        let (a, b) = self.rest.split_at(n);
        self.rest = b;
        Ok(a)
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, HeadError> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn array32(&mut self, what: &'static str) -> Result<[u8; 32], HeadError> {
        let mut a = [0u8; 32];
        a.copy_from_slice(self.take(32, what)?);
        Ok(a)
    }

    fn string(&mut self, what: &'static str) -> Result<String, HeadError> {
        let n = self.u32(what)? as usize;
        check_size("name length", n, MAX_NAME)?;
        let b = self.take(n, what)?;
        String::from_utf8(b.to_vec()).map_err(|_| HeadError::Format(format!("{what} is not UTF-8")))
    }

    fn floats(&mut self, n: usize, what: &'static str) -> Result<Vec<f32>, HeadError> {
        let b = self.take(n * 4, what)?;
        Ok(b.chunks_exact(4)
            .map(|c| f32::from_bits(u32::from_le_bytes([c[0], c[1], c[2], c[3]])))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn binding(x: u8) -> ParkBinding {
        ParkBinding {
            model: [x; 32],
            tokenizer: [7; 32],
        }
    }

    fn toy() -> HeadFile {
        let (d, h, c) = (4, 3, 2);
        let seq = |n: usize, k: f32| (0..n).map(|i| ((i as f32) * k).sin()).collect::<Vec<_>>();
        HeadFile::new(
            binding(1),
            super::super::CHAT_TEMPLATE_ID,
            2,
            vec!["none".into(), "builtin:gcd".into()],
            HeadWeights {
                norm: vec![1.0; d],
                w1: seq(h * d, 0.7),
                b1: seq(h, 0.3),
                w2: seq(c * h, 1.1),
                b2: vec![0.0; c],
                mu: vec![0.1; d],
                sd: vec![2.0; d],
            },
        )
        .unwrap()
    }

    /// Rewrites the checksum so a test reaches the check after it.
    fn reseal(mut b: Vec<u8>) -> Vec<u8> {
        let n = b.len() - 32;
        let sum = Sha256::digest(&b[..n]);
        b[n..].copy_from_slice(&sum);
        b
    }

    #[test]
    fn round_trip_is_exact_and_predicts_the_same() {
        let h = toy();
        let back = HeadFile::from_bytes(&h.to_bytes()).unwrap();
        assert_eq!(back, h);
        let x = [0.5, -1.0, 2.0, 0.0];
        assert_eq!(back.predict(&x).unwrap(), h.predict(&x).unwrap());
        let (_, conf) = h.predict(&x).unwrap();
        assert!((0.5..=1.0).contains(&conf));
    }

    #[test]
    fn inference_follows_the_formula() {
        let h = toy();
        let x = [0.5f32, -1.0, 2.0, 0.0];
        let w = h.weights();
        let z: Vec<f32> = x.iter().map(|v| (v - 0.1) / (2.0 + SD_EPS)).collect();
        let rms = (z.iter().map(|v| v * v).sum::<f32>() / 4.0 + RMS_EPS).sqrt();
        let hid: Vec<f32> = (0..3)
            .map(|j| gelu((0..4).map(|i| w.w1[j * 4 + i] * z[i] / rms).sum::<f32>() + w.b1[j]))
            .collect();
        let want: Vec<f32> = (0..2)
            .map(|k| (0..3).map(|j| w.w2[k * 3 + j] * hid[j]).sum::<f32>())
            .collect();
        let got = h.logits(&x).unwrap();
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-5, "{got:?} vs {want:?}");
        }
        // A different input gives different logits (the head reads its input).
        assert_ne!(h.logits(&[0.0, 0.0, 0.0, 3.0]).unwrap(), got);
    }

    #[test]
    fn truncated_files_are_refused() {
        let b = toy().to_bytes();
        for cut in [0, 5, 20, 60, b.len() - 40, b.len() - 1] {
            let r = HeadFile::from_bytes(&b[..cut]);
            assert!(r.is_err(), "cut at {cut}");
        }
        // Truncated but resealed: reaches the structural check.
        let short = reseal(b[..b.len() - 36].to_vec());
        assert_eq!(
            HeadFile::from_bytes(&short),
            Err(HeadError::Truncated("weights"))
        );
    }

    #[test]
    fn a_flipped_byte_fails_the_checksum() {
        let mut b = toy().to_bytes();
        let i = b.len() / 2;
        b[i] ^= 1;
        assert_eq!(HeadFile::from_bytes(&b), Err(HeadError::Checksum));
    }

    #[test]
    fn absurd_sizes_are_refused_before_allocation() {
        let b = toy().to_bytes();
        // The width field sits after magic, version, two hashes, template and layer.
        let t = super::super::CHAT_TEMPLATE_ID.len();
        let width_at = 8 + 4 + 64 + 4 + t + 4;
        let mut bad = b.clone();
        bad[width_at..width_at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        let r = HeadFile::from_bytes(&reseal(bad));
        assert!(
            matches!(r, Err(HeadError::Size { what: "width", .. })),
            "{r:?}"
        );
        let classes_at = width_at + 8;
        let mut bad = b.clone();
        bad[classes_at..classes_at + 4].copy_from_slice(&1000u32.to_le_bytes());
        let r = HeadFile::from_bytes(&reseal(bad));
        assert!(
            matches!(
                r,
                Err(HeadError::Size {
                    what: "classes",
                    ..
                })
            ),
            "{r:?}"
        );
    }

    #[test]
    fn wrong_shapes_are_refused() {
        let mut w = toy().weights().clone();
        w.w1.pop();
        let r = HeadFile::new(binding(1), "t", 2, vec!["a".into(), "b".into()], w);
        assert!(matches!(r, Err(HeadError::Shape(_))), "{r:?}");
        // A file whose declared hidden width disagrees with its bytes.
        let b = toy().to_bytes();
        let t = super::super::CHAT_TEMPLATE_ID.len();
        let hidden_at = 8 + 4 + 64 + 4 + t + 8;
        let mut bad = b.clone();
        bad[hidden_at..hidden_at + 4].copy_from_slice(&2u32.to_le_bytes());
        assert!(HeadFile::from_bytes(&reseal(bad)).is_err());
        assert!(toy().logits(&[1.0, 2.0]).is_err());
    }

    #[test]
    fn non_finite_weights_and_residuals_are_refused() {
        for bad in [f32::NAN, f32::INFINITY] {
            let mut w = toy().weights().clone();
            w.w2[1] = bad;
            let r = HeadFile::new(binding(1), "t", 2, vec!["a".into(), "b".into()], w);
            assert_eq!(r, Err(HeadError::NonFinite("w2")));
        }
        // The same corruption through the bytes: the last sd value becomes NaN.
        let mut b = toy().to_bytes();
        let at = b.len() - 32 - 4;
        b[at..at + 4].copy_from_slice(&f32::NAN.to_bits().to_le_bytes());
        assert_eq!(
            HeadFile::from_bytes(&reseal(b)),
            Err(HeadError::NonFinite("sd"))
        );
        assert_eq!(
            toy().predict(&[0.0, f32::NAN, 0.0, 0.0]),
            Err(HeadError::ResidualNonFinite)
        );
    }

    #[test]
    fn another_model_or_template_is_refused() {
        let h = toy();
        assert!(
            h.check_binding(&binding(1), super::super::CHAT_TEMPLATE_ID)
                .is_ok()
        );
        assert!(matches!(
            h.check_binding(&binding(2), super::super::CHAT_TEMPLATE_ID),
            Err(HeadError::WrongModel { .. })
        ));
        assert!(matches!(
            h.check_binding(&binding(1), "raw"),
            Err(HeadError::WrongTemplate { .. })
        ));
    }
}
