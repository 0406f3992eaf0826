//! A parsed GGUF file together with its bytes: a read-only memory map of a file on disk, or an
//! owned in-memory buffer.
//!
//! Owns the storage and hands out tensor data views (`&[u8]` slices that borrow the file). The
//! only `unsafe` of the crate, the `memmap2::Mmap::map` call, lives in the private `mmap` module.

use std::fs::File;
use std::path::{Path, PathBuf};

use super::error::GgufError;
use super::reader::{GgufContent, Limits, TensorInfo};
use super::types::GgmlType;
use super::value::Metadata;

#[allow(unsafe_code)]
mod mmap {
    //! The single place that maps a file into memory.
    use std::fs::File;

    /// Maps `file` read-only.
    pub(super) fn map(file: &File) -> std::io::Result<memmap2::Mmap> {
        // SAFETY: the map is read-only and private to this process. The soundness hazard of any
        // file mapping is another process truncating or rewriting the file while it is mapped;
        // nmk only maps model files it treats as immutable (the model cache renames complete,
        // hash-verified files into place and never writes them again), and every byte read
        // through the map is still bounds-checked against the length captured here.
        unsafe { memmap2::Mmap::map(file) }
    }
}

enum Storage {
    Mapped(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl Storage {
    fn bytes(&self) -> &[u8] {
        match self {
            Storage::Mapped(m) => m,
            Storage::Owned(v) => v,
        }
    }
}

/// A validated GGUF file and its bytes.
pub struct GgufFile {
    storage: Storage,
    content: GgufContent,
    path: Option<PathBuf>,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("len", &self.storage.bytes().len())
            .field("version", &self.content.version())
            .field("tensors", &self.content.tensors().len())
            .field("metadata_keys", &self.content.metadata().len())
            .finish()
    }
}

impl GgufFile {
    /// Memory-maps the file at `path` and parses it with the default limits.
    pub fn open(path: impl AsRef<Path>) -> Result<GgufFile, GgufError> {
        GgufFile::open_with_limits(path, &Limits::default())
    }

    /// Memory-maps the file at `path` and parses it with the given limits.
    pub fn open_with_limits(
        path: impl AsRef<Path>,
        limits: &Limits,
    ) -> Result<GgufFile, GgufError> {
        let path = path.as_ref();
        let io = |source| GgufError::Io {
            path: path.to_owned(),
            source,
        };
        let file = File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        // Mapping an empty file fails on Linux; an empty buffer gives the proper parse error.
        let storage = if len == 0 {
            Storage::Owned(Vec::new())
        } else {
            Storage::Mapped(mmap::map(&file).map_err(io)?)
        };
        let content = GgufContent::parse_with_limits(storage.bytes(), limits)?;
        Ok(GgufFile {
            storage,
            content,
            path: Some(path.to_owned()),
        })
    }

    /// Parses an in-memory buffer with the default limits.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<GgufFile, GgufError> {
        GgufFile::from_bytes_with_limits(bytes, &Limits::default())
    }

    /// Parses an in-memory buffer with the given limits.
    pub fn from_bytes_with_limits(bytes: Vec<u8>, limits: &Limits) -> Result<GgufFile, GgufError> {
        let content = GgufContent::parse_with_limits(&bytes, limits)?;
        Ok(GgufFile {
            storage: Storage::Owned(bytes),
            content,
            path: None,
        })
    }

    /// The path the file was opened from, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// All bytes of the file.
    pub fn bytes(&self) -> &[u8] {
        self.storage.bytes()
    }

    /// The parsed structure.
    pub fn content(&self) -> &GgufContent {
        &self.content
    }

    /// The format version (2 or 3).
    pub fn version(&self) -> u32 {
        self.content.version()
    }

    /// The metadata table.
    pub fn metadata(&self) -> &Metadata {
        self.content.metadata()
    }

    /// All tensor infos in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        self.content.tensors()
    }

    /// A tensor info by name, or [`GgufError::TensorNotFound`].
    pub fn tensor(&self, name: &str) -> Result<&TensorInfo, GgufError> {
        self.content
            .tensor(name)
            .ok_or_else(|| GgufError::TensorNotFound {
                name: name.to_owned(),
            })
    }

    /// The raw data bytes of a tensor by name (a view into the map or buffer).
    pub fn tensor_data(&self, name: &str) -> Result<&[u8], GgufError> {
        let info = self.tensor(name)?;
        self.content.tensor_data(self.bytes(), info)
    }

    /// The raw data bytes of a tensor.
    pub fn tensor_bytes(&self, info: &TensorInfo) -> Result<&[u8], GgufError> {
        self.content.tensor_data(self.bytes(), info)
    }

    /// The elements of an F32, F16 or BF16 tensor converted to `f32` (row-major in ggml order).
    pub fn tensor_to_f32(&self, name: &str) -> Result<Vec<f32>, GgufError> {
        let info = self.tensor(name)?;
        let data = self.tensor_bytes(info)?;
        let out = match info.ggml_type() {
            GgmlType::F32 => data
                .chunks_exact(4)
                .map(|c| <[u8; 4]>::try_from(c).map(f32::from_le_bytes))
                .collect::<Result<Vec<f32>, _>>(),
            GgmlType::F16 => data
                .chunks_exact(2)
                .map(|c| <[u8; 2]>::try_from(c).map(|b| half::f16::from_le_bytes(b).to_f32()))
                .collect(),
            GgmlType::BF16 => data
                .chunks_exact(2)
                .map(|c| <[u8; 2]>::try_from(c).map(|b| half::bf16::from_le_bytes(b).to_f32()))
                .collect(),
            other => {
                return Err(GgufError::InvalidTensor {
                    name: name.to_owned(),
                    reason: format!("type {other} is not a plain float type"),
                });
            }
        };
        out.map_err(|_| GgufError::InvalidTensor {
            name: name.to_owned(),
            reason: "data length is not a whole number of elements".to_owned(),
        })
    }
}
