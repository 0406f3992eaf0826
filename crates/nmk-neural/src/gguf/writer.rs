//! A GGUF v3 writer: metadata plus F32, F16 or pre-quantized tensors, laid out with alignment.
//!
//! Owns producing files that [`GgufFile`](super::GgufFile) reads back unchanged. Tests and tools
//! use it to write synthetic models (e.g. small MoE GGUFs). Every input is validated when it is
//! added, so [`GgufWriter::write_to`] only fails on I/O.
//!
//! ```
//! use nmk_neural::gguf::{GgufFile, GgufWriter, Value};
//! let mut w = GgufWriter::new();
//! w.add("general.architecture", "llama")?;
//! w.add_tensor_f32("t", &[2, 3], &[0.0, 1.0, 2.0, 3.0, 4.0, 5.0])?;
//! let f = GgufFile::from_bytes(w.to_bytes()?)?;
//! assert_eq!(f.metadata().get_str("general.architecture")?, "llama");
//! assert_eq!(f.tensor_to_f32("t")?[4], 4.0);
//! # Ok::<(), nmk_neural::gguf::GgufError>(())
//! ```

use std::collections::HashSet;
use std::io::Write;
use std::path::Path;

use super::error::GgufError;
use super::reader::{ALIGNMENT_KEY, DEFAULT_ALIGNMENT, GGUF_MAGIC, Limits, MAX_DIMS, align_up};
use super::types::GgmlType;
use super::value::{Array, Metadata, Value};

/// The GGUF version this writer produces.
pub const WRITE_VERSION: u32 = 3;

struct PendingTensor {
    name: String,
    dims: Vec<u64>,
    ggml_type: GgmlType,
    data: Vec<u8>,
}

/// Builds a GGUF v3 file in memory, then writes it out.
pub struct GgufWriter {
    alignment: u64,
    metadata: Metadata,
    tensors: Vec<PendingTensor>,
    names: HashSet<String>,
}

impl Default for GgufWriter {
    fn default() -> GgufWriter {
        GgufWriter::new()
    }
}

impl std::fmt::Debug for GgufWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufWriter")
            .field("alignment", &self.alignment)
            .field("metadata_keys", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

impl GgufWriter {
    /// A writer with the default alignment (32).
    pub fn new() -> GgufWriter {
        GgufWriter {
            alignment: DEFAULT_ALIGNMENT,
            metadata: Metadata::new(),
            tensors: Vec::new(),
            names: HashSet::new(),
        }
    }

    /// A writer with another alignment (a power of two up to 65536), recorded in the file as
    /// `general.alignment` (u32) when it is not the default.
    pub fn with_alignment(alignment: u64) -> Result<GgufWriter, GgufError> {
        let max = Limits::default().max_alignment;
        if alignment == 0 || !alignment.is_power_of_two() || alignment > max {
            return Err(GgufError::BadAlignment {
                value: alignment,
                max,
            });
        }
        let mut w = GgufWriter::new();
        w.alignment = alignment;
        if alignment != DEFAULT_ALIGNMENT {
            let v = u32::try_from(alignment).map_err(|_| GgufError::BadAlignment {
                value: alignment,
                max,
            })?;
            w.metadata.insert(ALIGNMENT_KEY.to_owned(), Value::U32(v))?;
        }
        Ok(w)
    }

    /// The alignment of the data section and tensor offsets.
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// The metadata added so far.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// Adds a metadata key. Duplicate keys and `general.alignment` (set it with
    /// [`GgufWriter::with_alignment`]) are rejected, as are strings over the reader's cap and
    /// arrays nested deeper than the reader accepts.
    pub fn add(
        &mut self,
        key: impl Into<String>,
        value: impl Into<Value>,
    ) -> Result<&mut GgufWriter, GgufError> {
        let key = key.into();
        let value = value.into();
        let limits = Limits::default();
        if key == ALIGNMENT_KEY {
            return Err(GgufError::InvalidValue {
                key,
                reason: "set the alignment with GgufWriter::with_alignment".to_owned(),
            });
        }
        if key.len() as u64 > limits.max_key_len {
            return Err(GgufError::InvalidValue {
                key,
                reason: "key too long".to_owned(),
            });
        }
        if let Err(reason) = check_value(&value, &limits) {
            return Err(GgufError::InvalidValue { key, reason });
        }
        self.metadata.insert(key, value)?;
        Ok(self)
    }

    /// Adds an F32 tensor. `dims` are in ggml order (`dims[0]` is the row length).
    pub fn add_tensor_f32(
        &mut self,
        name: impl Into<String>,
        dims: &[u64],
        data: &[f32],
    ) -> Result<&mut GgufWriter, GgufError> {
        let bytes = data.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.add_tensor_raw(name, dims, GgmlType::F32, bytes)
    }

    /// Adds an F16 tensor from `f32` values (rounded to nearest).
    pub fn add_tensor_f16(
        &mut self,
        name: impl Into<String>,
        dims: &[u64],
        data: &[f32],
    ) -> Result<&mut GgufWriter, GgufError> {
        let bytes = data
            .iter()
            .flat_map(|&x| half::f16::from_f32(x).to_le_bytes())
            .collect();
        self.add_tensor_raw(name, dims, GgmlType::F16, bytes)
    }

    /// Adds a tensor from its raw bytes in the given type (e.g. pre-quantized Q4_K blocks).
    /// The byte length must equal the size the shape and type imply.
    pub fn add_tensor_raw(
        &mut self,
        name: impl Into<String>,
        dims: &[u64],
        ggml_type: GgmlType,
        data: Vec<u8>,
    ) -> Result<&mut GgufWriter, GgufError> {
        let name = name.into();
        let invalid = |reason: String| GgufError::InvalidTensor {
            name: name.clone(),
            reason,
        };
        if name.len() as u64 > Limits::default().max_tensor_name_len {
            return Err(invalid("name too long".to_owned()));
        }
        if dims.is_empty() || dims.len() > MAX_DIMS as usize {
            return Err(invalid(format!(
                "{} dimensions (must be 1..=4)",
                dims.len()
            )));
        }
        let expected = ggml_type.tensor_bytes(dims).ok_or_else(|| {
            invalid(format!(
                "shape {dims:?} is empty, overflows, or has a row length that is not a multiple \
                 of the {ggml_type} block size {}",
                ggml_type.block_elems()
            ))
        })?;
        if data.len() as u64 != expected {
            return Err(invalid(format!(
                "{} data bytes, shape {dims:?} of {ggml_type} needs {expected}",
                data.len()
            )));
        }
        if !self.names.insert(name.clone()) {
            return Err(GgufError::DuplicateTensor { name });
        }
        self.tensors.push(PendingTensor {
            name,
            dims: dims.to_vec(),
            ggml_type,
            data,
        });
        Ok(self)
    }

    /// Writes the file to `out`; returns the number of bytes written.
    pub fn write_to<W: Write>(&self, out: &mut W) -> Result<u64, GgufError> {
        let mut w = CountingWriter { inner: out, n: 0 };
        w.put(&GGUF_MAGIC)?;
        w.put(&WRITE_VERSION.to_le_bytes())?;
        w.put(&(self.tensors.len() as u64).to_le_bytes())?;
        w.put(&(self.metadata.len() as u64).to_le_bytes())?;
        for (key, value) in self.metadata.entries() {
            put_string(&mut w, key)?;
            w.put(&value.value_type().id().to_le_bytes())?;
            put_value(&mut w, value)?;
        }
        let mut offset = 0u64;
        let mut offsets = Vec::with_capacity(self.tensors.len());
        for t in &self.tensors {
            offsets.push(offset);
            put_string(&mut w, &t.name)?;
            w.put(&(t.dims.len() as u32).to_le_bytes())?;
            for d in &t.dims {
                w.put(&d.to_le_bytes())?;
            }
            w.put(&t.ggml_type.id().to_le_bytes())?;
            w.put(&offset.to_le_bytes())?;
            offset = align_up(offset.saturating_add(t.data.len() as u64), self.alignment)
                .unwrap_or(u64::MAX);
        }
        w.pad_to(self.alignment)?;
        let data_start = w.n;
        for (t, off) in self.tensors.iter().zip(offsets) {
            w.zeros(data_start.saturating_add(off).saturating_sub(w.n))?;
            w.put(&t.data)?;
        }
        w.inner.flush().map_err(GgufError::Write)?;
        Ok(w.n)
    }

    /// The whole file as bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>, GgufError> {
        let mut v = Vec::new();
        self.write_to(&mut v)?;
        Ok(v)
    }

    /// Writes the file to `path` (through a temporary file in the same directory that is then
    /// renamed over `path`, so readers never see a partial file).
    pub fn write_file(&self, path: impl AsRef<Path>) -> Result<u64, GgufError> {
        let path = path.as_ref();
        let io = |source| GgufError::Io {
            path: path.to_owned(),
            source,
        };
        let mut tmp_name = path.as_os_str().to_owned();
        tmp_name.push(format!(".tmp{}", std::process::id()));
        let tmp = std::path::PathBuf::from(tmp_name);
        let result = (|| {
            let file = std::fs::File::create(&tmp).map_err(io)?;
            let mut buf = std::io::BufWriter::new(file);
            let n = self.write_to(&mut buf)?;
            let file = buf
                .into_inner()
                .map_err(|e| GgufError::Write(e.into_error()))?;
            file.sync_all().map_err(io)?;
            std::fs::rename(&tmp, path).map_err(io)?;
            Ok(n)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }
}

fn check_value(value: &Value, limits: &Limits) -> Result<(), String> {
    fn check_array(a: &Array, depth: usize, limits: &Limits) -> Result<(), String> {
        if depth > limits.max_array_depth {
            return Err(format!(
                "arrays nested deeper than {}",
                limits.max_array_depth
            ));
        }
        if a.len() as u64 > limits.max_array_len {
            return Err("array too long".to_owned());
        }
        match a {
            Array::String(v) if v.iter().any(|s| s.len() as u64 > limits.max_string_len) => {
                Err("string element too long".to_owned())
            }
            Array::Array(v) => v.iter().try_for_each(|x| check_array(x, depth + 1, limits)),
            _ => Ok(()),
        }
    }
    match value {
        Value::String(s) if s.len() as u64 > limits.max_string_len => {
            Err("string too long".to_owned())
        }
        Value::Array(a) => check_array(a, 1, limits),
        _ => Ok(()),
    }
}

struct CountingWriter<'a, W: Write> {
    inner: &'a mut W,
    n: u64,
}

impl<W: Write> CountingWriter<'_, W> {
    fn put(&mut self, bytes: &[u8]) -> Result<(), GgufError> {
        self.inner.write_all(bytes).map_err(GgufError::Write)?;
        self.n = self.n.saturating_add(bytes.len() as u64);
        Ok(())
    }

    fn zeros(&mut self, n: u64) -> Result<(), GgufError> {
        const ZEROS: [u8; 256] = [0; 256];
        let mut left = n;
        while left > 0 {
            let k = left.min(ZEROS.len() as u64);
            self.put(ZEROS.get(..k as usize).unwrap_or(&[]))?;
            left -= k;
        }
        Ok(())
    }

    fn pad_to(&mut self, align: u64) -> Result<(), GgufError> {
        let target = align_up(self.n, align).unwrap_or(self.n);
        self.zeros(target - self.n)
    }
}

fn put_string<W: Write>(w: &mut CountingWriter<'_, W>, s: &str) -> Result<(), GgufError> {
    w.put(&(s.len() as u64).to_le_bytes())?;
    w.put(s.as_bytes())
}

fn put_value<W: Write>(w: &mut CountingWriter<'_, W>, v: &Value) -> Result<(), GgufError> {
    match v {
        Value::U8(x) => w.put(&x.to_le_bytes()),
        Value::I8(x) => w.put(&x.to_le_bytes()),
        Value::U16(x) => w.put(&x.to_le_bytes()),
        Value::I16(x) => w.put(&x.to_le_bytes()),
        Value::U32(x) => w.put(&x.to_le_bytes()),
        Value::I32(x) => w.put(&x.to_le_bytes()),
        Value::F32(x) => w.put(&x.to_le_bytes()),
        Value::Bool(x) => w.put(&[u8::from(*x)]),
        Value::String(s) => put_string(w, s),
        Value::Array(a) => put_array(w, a),
        Value::U64(x) => w.put(&x.to_le_bytes()),
        Value::I64(x) => w.put(&x.to_le_bytes()),
        Value::F64(x) => w.put(&x.to_le_bytes()),
    }
}

fn put_array<W: Write>(w: &mut CountingWriter<'_, W>, a: &Array) -> Result<(), GgufError> {
    w.put(&a.element_type().id().to_le_bytes())?;
    w.put(&(a.len() as u64).to_le_bytes())?;
    macro_rules! each {
        ($v:expr) => {{
            for x in $v {
                w.put(&x.to_le_bytes())?;
            }
            Ok(())
        }};
    }
    match a {
        Array::U8(v) => w.put(v),
        Array::I8(v) => each!(v),
        Array::U16(v) => each!(v),
        Array::I16(v) => each!(v),
        Array::U32(v) => each!(v),
        Array::I32(v) => each!(v),
        Array::F32(v) => each!(v),
        Array::Bool(v) => {
            for x in v {
                w.put(&[u8::from(*x)])?;
            }
            Ok(())
        }
        Array::String(v) => v.iter().try_for_each(|s| put_string(w, s)),
        Array::Array(v) => v.iter().try_for_each(|x| put_array(w, x)),
        Array::U64(v) => each!(v),
        Array::I64(v) => each!(v),
        Array::F64(v) => each!(v),
    }
}

macro_rules! value_from {
    ($($t:ty => $variant:ident),* $(,)?) => {$(
        impl From<$t> for Value {
            fn from(x: $t) -> Value {
                Value::$variant(x)
            }
        }
        impl From<Vec<$t>> for Array {
            fn from(x: Vec<$t>) -> Array {
                Array::$variant(x)
            }
        }
        impl From<Vec<$t>> for Value {
            fn from(x: Vec<$t>) -> Value {
                Value::Array(Array::$variant(x))
            }
        }
    )*};
}

value_from!(
    u8 => U8, i8 => I8, u16 => U16, i16 => I16, u32 => U32, i32 => I32, f32 => F32,
    bool => Bool, String => String, u64 => U64, i64 => I64, f64 => F64,
);

impl From<&str> for Value {
    fn from(x: &str) -> Value {
        Value::String(x.to_owned())
    }
}

impl From<Vec<&str>> for Value {
    fn from(x: Vec<&str>) -> Value {
        Value::Array(Array::String(x.into_iter().map(str::to_owned).collect()))
    }
}

impl From<Array> for Value {
    fn from(x: Array) -> Value {
        Value::Array(x)
    }
}

impl From<Vec<Array>> for Value {
    fn from(x: Vec<Array>) -> Value {
        Value::Array(Array::Array(x))
    }
}
