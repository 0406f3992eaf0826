//! Parking a session: the versioned byte format of a [`SessionSnapshot`], bound to the
//! identity of the model it was taken on.
//!
//! Layout (little-endian): magic `NMKPARK\0`, version `u32`, the [`ParkBinding`] (32-byte
//! SHA-256 of the model file, 32-byte SHA-256 of its tokenizer definition), the KV part
//! (kv dim, layers, window or 0, base position, entry count, then per layer the keys and values
//! as f32), the token history (`u64` count, `u32` ids), the logits position (`u64::MAX` = none)
//! and logits (`u64` count, f32), the four `u64` words of the PRNG state, and a SHA-256 of
//! everything before it. Floats are stored as their bits, so a resumed session continues bit
//! for bit. Decoding treats the bytes as hostile: checksum first, then every count is checked
//! against the bytes that remain before anything is allocated.

use sha2::{Digest, Sha256};

use super::error::{EngineError, Result};

/// First bytes of a parked session.
pub const PARK_MAGIC: [u8; 8] = *b"NMKPARK\0";
/// Version of the format written.
pub const PARK_VERSION: u32 = 2;

/// What a parked session is bound to: the model file and its tokenizer. A snapshot is refused
/// by a session of any other model or tokenizer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParkBinding {
    /// SHA-256 of the GGUF file's bytes.
    pub model: [u8; 32],
    /// SHA-256 of the tokenizer definition: the file's `tokenizer.*` metadata, GGUF-encoded
    /// in file order.
    pub tokenizer: [u8; 32],
}

impl ParkBinding {
    /// The binding of `model` (hashes the whole file: compute it once per model).
    pub fn of(model: &super::Model) -> Result<ParkBinding> {
        let file = model.file();
        let model_hash: [u8; 32] = Sha256::digest(file.bytes()).into();
        let mut w = crate::gguf::GgufWriter::new();
        for (k, v) in file.metadata().entries() {
            if k.starts_with("tokenizer.") {
                w.add(k.clone(), v.clone())?;
            }
        }
        let tokenizer: [u8; 32] = Sha256::digest(w.to_bytes()?).into();
        Ok(ParkBinding {
            model: model_hash,
            tokenizer,
        })
    }
}

pub(crate) fn park_err(reason: impl Into<String>) -> EngineError {
    EngineError::Park {
        reason: reason.into(),
    }
}

/// Appends the header.
pub(crate) fn write_header(out: &mut Vec<u8>, binding: &ParkBinding) {
    out.extend_from_slice(&PARK_MAGIC);
    out.extend_from_slice(&PARK_VERSION.to_le_bytes());
    out.extend_from_slice(&binding.model);
    out.extend_from_slice(&binding.tokenizer);
}

pub(crate) fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

pub(crate) fn put_f32s(out: &mut Vec<u8>, v: &[f32]) {
    out.reserve(v.len() * 4);
    for x in v {
        out.extend_from_slice(&x.to_bits().to_le_bytes());
    }
}

/// Appends the checksum of everything written so far.
pub(crate) fn seal(out: &mut Vec<u8>) {
    let digest = Sha256::digest(out.as_slice());
    out.extend_from_slice(&digest);
}

/// A bounds-checked reader over a sealed, header-checked payload.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Checks the checksum, magic, version and binding; returns a reader over the body.
    pub(crate) fn open(bytes: &'a [u8], binding: &ParkBinding) -> Result<Reader<'a>> {
        let body_len = bytes
            .len()
            .checked_sub(32)
            .ok_or_else(|| park_err("shorter than a checksum"))?;
        let (body, sum) = bytes.split_at(body_len);
        if Sha256::digest(body).as_slice() != sum {
            return Err(park_err("checksum mismatch (corrupt or truncated)"));
        }
        let mut r = Reader { bytes: body };
        if r.take(8)? != PARK_MAGIC {
            return Err(park_err("not a parked nmk session (bad magic)"));
        }
        let version = r.u32()?;
        if version != PARK_VERSION {
            return Err(park_err(format!(
                "format version {version}, this build reads {PARK_VERSION}"
            )));
        }
        if r.take(32)? != binding.model {
            return Err(park_err("parked on a different model"));
        }
        if r.take(32)? != binding.tokenizer {
            return Err(park_err("parked with a different tokenizer"));
        }
        Ok(r)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if n > self.bytes.len() {
            return Err(park_err(format!(
                "truncated: {n} bytes needed, {} left",
                self.bytes.len()
            )));
        }
        let (a, b) = self.bytes.split_at(n);
        self.bytes = b;
        Ok(a)
    }

    fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes(
            b.try_into().map_err(|_| park_err("short u32"))?,
        ))
    }

    pub(crate) fn u64(&mut self) -> Result<u64> {
        let b = self.take(8)?;
        Ok(u64::from_le_bytes(
            b.try_into().map_err(|_| park_err("short u64"))?,
        ))
    }

    /// A `u64` count that must fit `usize`.
    pub(crate) fn count(&mut self) -> Result<usize> {
        usize::try_from(self.u64()?).map_err(|_| park_err("count overflows"))
    }

    /// `n` values of `width` bytes must remain.
    fn check_room(&self, n: usize, width: usize) -> Result<usize> {
        let need = n
            .checked_mul(width)
            .ok_or_else(|| park_err("size overflows"))?;
        if need > self.bytes.len() {
            return Err(park_err(format!(
                "truncated: {need} bytes needed, {} left",
                self.bytes.len()
            )));
        }
        Ok(need)
    }

    pub(crate) fn f32s(&mut self, n: usize) -> Result<Vec<f32>> {
        let need = self.check_room(n, 4)?;
        let b = self.take(need)?;
        Ok(b.chunks_exact(4)
            .map(|c| f32::from_bits(u32::from_le_bytes([c[0], c[1], c[2], c[3]])))
            .collect())
    }

    pub(crate) fn u32s(&mut self, n: usize) -> Result<Vec<u32>> {
        let need = self.check_room(n, 4)?;
        let b = self.take(need)?;
        Ok(b.chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }

    /// Errors unless every byte was consumed.
    pub(crate) fn finish(self) -> Result<()> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(park_err(format!("{} trailing bytes", self.bytes.len())))
        }
    }
}
