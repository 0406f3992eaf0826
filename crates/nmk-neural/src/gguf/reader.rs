//! The bounds-checked GGUF parser over a byte slice.
//!
//! Owns the file layout: header, metadata key–values, tensor infos, alignment and the placement
//! of tensor data. Every length, count, offset and size read from the input is checked with
//! checked arithmetic against the bytes that remain and against [`Limits`] *before* anything is
//! allocated, so a truncated, oversized or lying file yields a [`GgufError`], never a panic or an
//! out-of-memory abort.

use std::collections::HashMap;
use std::ops::Range;

use super::error::GgufError;
use super::types::GgmlType;
use super::value::{Array, Metadata, Value, ValueType};

/// The four magic bytes at the start of every GGUF file.
pub const GGUF_MAGIC: [u8; 4] = *b"GGUF";
/// Alignment of the data section and tensor offsets when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// The metadata key that sets the alignment.
pub const ALIGNMENT_KEY: &str = "general.alignment";
/// Largest number of dimensions a tensor may have.
pub const MAX_DIMS: u32 = 4;

/// Caps applied while parsing, so that a hostile file cannot make the parser allocate without
/// bound. The defaults accept every real model file we know of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Longest metadata string value (and string array element), in bytes.
    pub max_string_len: u64,
    /// Longest metadata key, in bytes.
    pub max_key_len: u64,
    /// Longest tensor name, in bytes.
    pub max_tensor_name_len: u64,
    /// Most metadata key–value pairs.
    pub max_kv_count: u64,
    /// Most tensors.
    pub max_tensor_count: u64,
    /// Most elements in one metadata array.
    pub max_array_len: u64,
    /// Deepest nesting of metadata arrays (an array of scalars has depth 1).
    pub max_array_depth: usize,
    /// Most bytes of memory the parsed metadata may take (an estimate that counts containers).
    pub max_metadata_bytes: u64,
    /// Largest accepted `general.alignment`.
    pub max_alignment: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_string_len: 1 << 20,
            max_key_len: 1 << 16,
            max_tensor_name_len: 1 << 12,
            max_kv_count: 1 << 20,
            max_tensor_count: 1 << 20,
            max_array_len: 1 << 26,
            max_array_depth: 4,
            max_metadata_bytes: 512 << 20,
            max_alignment: 1 << 16,
        }
    }
}

/// One tensor's description: name, shape, type and where its bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    name: String,
    dims: Vec<u64>,
    ggml_type: GgmlType,
    offset: u64,
    n_elements: u64,
    n_bytes: u64,
    data_start: usize,
}

impl TensorInfo {
    /// The tensor name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The shape in ggml order: `dims()[0]` is the row length (innermost, contiguous).
    pub fn dims(&self) -> &[u64] {
        &self.dims
    }

    /// The element type.
    pub fn ggml_type(&self) -> GgmlType {
        self.ggml_type
    }

    /// The data offset relative to the start of the data section, as stored in the file.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Number of elements.
    pub fn n_elements(&self) -> u64 {
        self.n_elements
    }

    /// Number of data bytes.
    pub fn n_bytes(&self) -> u64 {
        self.n_bytes
    }

    /// The absolute byte range of the data in the file (validated to lie inside it).
    pub fn data_range(&self) -> Range<usize> {
        // n_bytes fits in usize and start + n_bytes <= file length: checked when parsing.
        let len = usize::try_from(self.n_bytes).unwrap_or(usize::MAX);
        self.data_start..self.data_start.saturating_add(len)
    }
}

/// The parsed, validated structure of a GGUF file (everything but the tensor bytes).
#[derive(Debug, Clone, PartialEq)]
pub struct GgufContent {
    version: u32,
    alignment: u64,
    metadata: Metadata,
    tensors: Vec<TensorInfo>,
    tensor_index: HashMap<String, usize>,
    data_offset: usize,
    file_len: usize,
}

impl GgufContent {
    /// Parses and validates `bytes` with the default [`Limits`].
    pub fn parse(bytes: &[u8]) -> Result<GgufContent, GgufError> {
        GgufContent::parse_with_limits(bytes, &Limits::default())
    }

    /// Parses and validates `bytes` with the given limits.
    pub fn parse_with_limits(bytes: &[u8], limits: &Limits) -> Result<GgufContent, GgufError> {
        Parser {
            cur: Cursor {
                data: bytes,
                pos: 0,
            },
            limits,
            metadata_budget: limits.max_metadata_bytes,
        }
        .parse()
    }

    /// The file format version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The alignment in force (from `general.alignment`, default 32).
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// The metadata table.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// All tensor infos in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// The info of a tensor by name.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.get(*self.tensor_index.get(name)?)
    }

    /// Absolute offset of the (aligned) data section.
    pub fn data_offset(&self) -> usize {
        self.data_offset
    }

    /// Length of the parsed input.
    pub fn file_len(&self) -> usize {
        self.file_len
    }

    /// The data bytes of `info` inside `bytes`, which must be the buffer this was parsed from.
    pub fn tensor_data<'a>(
        &self,
        bytes: &'a [u8],
        info: &TensorInfo,
    ) -> Result<&'a [u8], GgufError> {
        let range = info.data_range();
        bytes
            .get(range.clone())
            .ok_or_else(|| GgufError::TensorOutOfBounds {
                name: info.name.clone(),
                start: range.start as u64,
                end: range.end as u64,
                file_len: bytes.len(),
            })
    }
}

/// A read position over the input; every read is bounds-checked.
struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> usize {
        self.data.len().saturating_sub(self.pos)
    }

    fn take(&mut self, n: u64, what: &'static str) -> Result<&'a [u8], GgufError> {
        let truncated = || GgufError::Truncated {
            what,
            offset: self.pos,
            needed: n,
            available: self.remaining(),
        };
        let n_usize = usize::try_from(n).map_err(|_| truncated())?;
        let end = self.pos.checked_add(n_usize).ok_or_else(truncated)?;
        let slice = self.data.get(self.pos..end).ok_or_else(truncated)?;
        self.pos = end;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], GgufError> {
        let offset = self.pos;
        let s = self.take(N as u64, what)?;
        <[u8; N]>::try_from(s).map_err(|_| GgufError::Truncated {
            what,
            offset,
            needed: N as u64,
            available: s.len(),
        })
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, GgufError> {
        Ok(u8::from_le_bytes(self.array(what)?))
    }
    fn i8(&mut self, what: &'static str) -> Result<i8, GgufError> {
        Ok(i8::from_le_bytes(self.array(what)?))
    }
    fn u16(&mut self, what: &'static str) -> Result<u16, GgufError> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }
    fn i16(&mut self, what: &'static str) -> Result<i16, GgufError> {
        Ok(i16::from_le_bytes(self.array(what)?))
    }
    fn u32(&mut self, what: &'static str) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }
    fn i32(&mut self, what: &'static str) -> Result<i32, GgufError> {
        Ok(i32::from_le_bytes(self.array(what)?))
    }
    fn f32(&mut self, what: &'static str) -> Result<f32, GgufError> {
        Ok(f32::from_le_bytes(self.array(what)?))
    }
    fn u64(&mut self, what: &'static str) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }
    fn i64(&mut self, what: &'static str) -> Result<i64, GgufError> {
        Ok(i64::from_le_bytes(self.array(what)?))
    }
    fn f64(&mut self, what: &'static str) -> Result<f64, GgufError> {
        Ok(f64::from_le_bytes(self.array(what)?))
    }
    fn bool(&mut self, what: &'static str) -> Result<bool, GgufError> {
        let offset = self.pos;
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            value => Err(GgufError::InvalidBool { value, offset }),
        }
    }

    /// A GGUF string: u64 length then UTF-8 bytes, the length capped at `max`.
    fn string(&mut self, what: &'static str, max: u64) -> Result<String, GgufError> {
        let offset = self.pos;
        let len = self.u64(what)?;
        if len > max {
            return Err(GgufError::StringTooLong {
                what,
                len,
                max,
                offset,
            });
        }
        let start = self.pos;
        let bytes = self.take(len, what)?;
        let s = std::str::from_utf8(bytes).map_err(|_| GgufError::InvalidUtf8 {
            what,
            offset: start,
        })?;
        Ok(s.to_owned())
    }
}

struct Parser<'a, 'l> {
    cur: Cursor<'a>,
    limits: &'l Limits,
    metadata_budget: u64,
}

/// Smallest file size of one key–value pair (empty key, type id, one-byte value).
const MIN_KV_BYTES: u64 = 8 + 4 + 1;
/// Smallest file size of one tensor info (empty name, n_dims, one dim, type, offset).
const MIN_TENSOR_INFO_BYTES: u64 = 8 + 4 + 8 + 4 + 8;

impl Parser<'_, '_> {
    fn parse(mut self) -> Result<GgufContent, GgufError> {
        let magic = self.cur.array::<4>("magic")?;
        if magic != GGUF_MAGIC {
            return Err(GgufError::BadMagic { found: magic });
        }
        let version = self.cur.u32("version")?;
        if version != 2 && version != 3 {
            return Err(GgufError::UnsupportedVersion { version });
        }
        let tensor_count_at = self.cur.pos;
        let tensor_count = self.cur.u64("tensor count")?;
        let kv_count_at = self.cur.pos;
        let kv_count = self.cur.u64("metadata kv count")?;
        self.check_count(
            "tensor",
            tensor_count,
            self.limits.max_tensor_count,
            MIN_TENSOR_INFO_BYTES,
            tensor_count_at,
        )?;
        self.check_count(
            "metadata kv",
            kv_count,
            self.limits.max_kv_count,
            MIN_KV_BYTES,
            kv_count_at,
        )?;

        let mut metadata = Metadata::new();
        for _ in 0..kv_count {
            let key_at = self.cur.pos;
            let key = self.cur.string("metadata key", self.limits.max_key_len)?;
            let cost = (key.len() as u64)
                .saturating_mul(2)
                .saturating_add(std::mem::size_of::<(String, Value)>() as u64 + 64);
            self.charge(cost, key_at)?;
            let type_at = self.cur.pos;
            let type_id = self.cur.u32("metadata value type")?;
            let vt = ValueType::from_id(type_id).ok_or(GgufError::UnknownValueType {
                type_id,
                offset: type_at,
            })?;
            let value = self.value(vt)?;
            metadata.insert(key, value)?;
        }

        let alignment = match metadata.get(ALIGNMENT_KEY) {
            None => DEFAULT_ALIGNMENT,
            Some(v) => {
                let n = v.as_integer().ok_or_else(|| GgufError::WrongType {
                    key: ALIGNMENT_KEY.to_owned(),
                    expected: "u32",
                    found: v.describe(),
                })?;
                let max = self.limits.max_alignment;
                let bad = || GgufError::BadAlignment {
                    value: u64::try_from(n).unwrap_or(0),
                    max,
                };
                let a = u64::try_from(n).map_err(|_| bad())?;
                if a == 0 || !a.is_power_of_two() || a > max {
                    return Err(bad());
                }
                a
            }
        };

        // Re-check the tensor count against what is actually left after the metadata.
        self.check_count(
            "tensor",
            tensor_count,
            self.limits.max_tensor_count,
            MIN_TENSOR_INFO_BYTES,
            tensor_count_at,
        )?;
        let n_tensors = usize::try_from(tensor_count).map_err(|_| GgufError::CountTooLarge {
            what: "tensor",
            count: tensor_count,
            max: self.limits.max_tensor_count,
            offset: tensor_count_at,
        })?;
        let mut raw = Vec::with_capacity(n_tensors);
        let mut tensor_index = HashMap::with_capacity(n_tensors);
        for i in 0..n_tensors {
            let t = self.tensor_info()?;
            if tensor_index.insert(t.name.clone(), i).is_some() {
                return Err(GgufError::DuplicateTensor { name: t.name });
            }
            raw.push(t);
        }

        let file_len = self.cur.data.len();
        let end_of_infos = self.cur.pos as u64;
        let data_offset_u64 =
            align_up(end_of_infos, alignment).ok_or(GgufError::DataSectionOutOfBounds {
                start: u64::MAX,
                file_len,
            })?;
        let data_offset = match usize::try_from(data_offset_u64) {
            Ok(d) if d <= file_len => d,
            // A file without tensors may end right after its metadata.
            _ if raw.is_empty() => file_len,
            _ => {
                return Err(GgufError::DataSectionOutOfBounds {
                    start: data_offset_u64,
                    file_len,
                });
            }
        };

        for t in &mut raw {
            if t.offset % alignment != 0 {
                return Err(GgufError::MisalignedTensor {
                    name: t.name.clone(),
                    offset: t.offset,
                    alignment,
                });
            }
            let start = (data_offset as u64).checked_add(t.offset);
            let end = start.and_then(|s| s.checked_add(t.n_bytes));
            match (start, end) {
                (Some(s), Some(e)) if e <= file_len as u64 => {
                    t.data_start = usize::try_from(s).map_err(|_| GgufError::SizeOverflow {
                        name: t.name.clone(),
                    })?;
                }
                _ => {
                    return Err(GgufError::TensorOutOfBounds {
                        name: t.name.clone(),
                        start: start.unwrap_or(u64::MAX),
                        end: end.unwrap_or(u64::MAX),
                        file_len,
                    });
                }
            }
        }

        let mut order: Vec<&TensorInfo> = raw.iter().collect();
        order.sort_by_key(|t| (t.offset, t.n_bytes));
        for pair in order.windows(2) {
            if let [a, b] = pair {
                // Sizes are non-zero (zero dimensions are rejected), so offsets must strictly
                // separate the ranges.
                if a.offset.saturating_add(a.n_bytes) > b.offset {
                    return Err(GgufError::OverlappingTensors {
                        first: a.name.clone(),
                        second: b.name.clone(),
                    });
                }
            }
        }

        Ok(GgufContent {
            version,
            alignment,
            metadata,
            tensors: raw,
            tensor_index,
            data_offset,
            file_len,
        })
    }

    /// Rejects a count above `max` or above what the remaining bytes could encode.
    fn check_count(
        &self,
        what: &'static str,
        count: u64,
        max: u64,
        min_item_bytes: u64,
        offset: usize,
    ) -> Result<(), GgufError> {
        let fit = (self.cur.remaining() as u64) / min_item_bytes.max(1);
        let cap = max.min(fit);
        if count > cap {
            return Err(GgufError::CountTooLarge {
                what,
                count,
                max: cap,
                offset,
            });
        }
        Ok(())
    }

    /// Charges `bytes` against the metadata memory budget.
    fn charge(&mut self, bytes: u64, offset: usize) -> Result<(), GgufError> {
        self.metadata_budget =
            self.metadata_budget
                .checked_sub(bytes)
                .ok_or(GgufError::MetadataTooLarge {
                    max: self.limits.max_metadata_bytes,
                    offset,
                })?;
        Ok(())
    }

    fn value(&mut self, vt: ValueType) -> Result<Value, GgufError> {
        let c = &mut self.cur;
        Ok(match vt {
            ValueType::U8 => Value::U8(c.u8("u8 value")?),
            ValueType::I8 => Value::I8(c.i8("i8 value")?),
            ValueType::U16 => Value::U16(c.u16("u16 value")?),
            ValueType::I16 => Value::I16(c.i16("i16 value")?),
            ValueType::U32 => Value::U32(c.u32("u32 value")?),
            ValueType::I32 => Value::I32(c.i32("i32 value")?),
            ValueType::F32 => Value::F32(c.f32("f32 value")?),
            ValueType::Bool => Value::Bool(c.bool("bool value")?),
            ValueType::U64 => Value::U64(c.u64("u64 value")?),
            ValueType::I64 => Value::I64(c.i64("i64 value")?),
            ValueType::F64 => Value::F64(c.f64("f64 value")?),
            ValueType::String => {
                let at = c.pos;
                let s = c.string("string value", self.limits.max_string_len)?;
                self.charge(s.len() as u64, at)?;
                Value::String(s)
            }
            ValueType::Array => Value::Array(self.array(1)?),
        })
    }

    /// An array header and its elements; `depth` is 1 for a top-level array.
    fn array(&mut self, depth: usize) -> Result<Array, GgufError> {
        let at = self.cur.pos;
        if depth > self.limits.max_array_depth {
            return Err(GgufError::ArrayTooDeep {
                max: self.limits.max_array_depth,
                offset: at,
            });
        }
        let type_at = self.cur.pos;
        let type_id = self.cur.u32("array element type")?;
        let et = ValueType::from_id(type_id).ok_or(GgufError::UnknownValueType {
            type_id,
            offset: type_at,
        })?;
        let count_at = self.cur.pos;
        let count = self.cur.u64("array length")?;
        let (min_file, mem) = match et {
            ValueType::String => (8u64, std::mem::size_of::<String>() as u64),
            ValueType::Array => (12u64, std::mem::size_of::<Array>() as u64),
            other => {
                let s = other.fixed_size().unwrap_or(1) as u64;
                (s, s)
            }
        };
        self.check_count(
            "array element",
            count,
            self.limits.max_array_len,
            min_file,
            count_at,
        )?;
        self.charge(count.saturating_mul(mem), count_at)?;
        let n = usize::try_from(count).map_err(|_| GgufError::CountTooLarge {
            what: "array element",
            count,
            max: usize::MAX as u64,
            offset: count_at,
        })?;

        macro_rules! fixed {
            ($variant:ident, $read:ident, $what:literal) => {{
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    v.push(self.cur.$read($what)?);
                }
                Array::$variant(v)
            }};
        }

        Ok(match et {
            ValueType::U8 => Array::U8(self.cur.take(count, "u8 array")?.to_vec()),
            ValueType::I8 => fixed!(I8, i8, "i8 array element"),
            ValueType::U16 => fixed!(U16, u16, "u16 array element"),
            ValueType::I16 => fixed!(I16, i16, "i16 array element"),
            ValueType::U32 => fixed!(U32, u32, "u32 array element"),
            ValueType::I32 => fixed!(I32, i32, "i32 array element"),
            ValueType::F32 => fixed!(F32, f32, "f32 array element"),
            ValueType::Bool => fixed!(Bool, bool, "bool array element"),
            ValueType::U64 => fixed!(U64, u64, "u64 array element"),
            ValueType::I64 => fixed!(I64, i64, "i64 array element"),
            ValueType::F64 => fixed!(F64, f64, "f64 array element"),
            ValueType::String => {
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    let at = self.cur.pos;
                    let s = self
                        .cur
                        .string("string array element", self.limits.max_string_len)?;
                    self.charge(s.len() as u64, at)?;
                    v.push(s);
                }
                Array::String(v)
            }
            ValueType::Array => {
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    v.push(self.array(depth + 1)?);
                }
                Array::Array(v)
            }
        })
    }

    fn tensor_info(&mut self) -> Result<TensorInfo, GgufError> {
        let name = self
            .cur
            .string("tensor name", self.limits.max_tensor_name_len)?;
        let n_dims = self.cur.u32("tensor n_dims")?;
        if n_dims == 0 || n_dims > MAX_DIMS {
            return Err(GgufError::BadDimensionCount { name, n_dims });
        }
        let mut dims = Vec::with_capacity(MAX_DIMS as usize);
        for _ in 0..n_dims {
            dims.push(self.cur.u64("tensor dimension")?);
        }
        let type_id = self.cur.u32("tensor type")?;
        let offset = self.cur.u64("tensor offset")?;
        if let Some(index) = dims.iter().position(|&d| d == 0) {
            return Err(GgufError::ZeroDimension { name, index });
        }
        let n_elements = dims
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .filter(|&n| n <= i64::MAX as u64 && dims.iter().all(|&d| d <= i64::MAX as u64));
        let Some(n_elements) = n_elements else {
            return Err(GgufError::SizeOverflow { name });
        };
        let Some(ggml_type) = GgmlType::from_id(type_id) else {
            return Err(GgufError::UnknownTensorType { name, type_id });
        };
        let row = dims.first().copied().unwrap_or(0);
        if row % ggml_type.block_elems() != 0 {
            return Err(GgufError::RowNotBlockMultiple {
                name,
                row,
                block: ggml_type.block_elems(),
                ggml_type,
            });
        }
        let Some(n_bytes) = ggml_type
            .tensor_bytes(&dims)
            .filter(|&b| usize::try_from(b).is_ok())
        else {
            return Err(GgufError::SizeOverflow { name });
        };
        Ok(TensorInfo {
            name,
            dims,
            ggml_type,
            offset,
            n_elements,
            n_bytes,
            data_start: 0,
        })
    }
}

/// `x` rounded up to a multiple of `align` (a power of two), `None` on overflow.
pub(crate) fn align_up(x: u64, align: u64) -> Option<u64> {
    let mask = align.checked_sub(1)?;
    Some(x.checked_add(mask)? & !mask)
}
