//! [`QMatrix`]: a quantized 2-D weight over shared bytes, with matvec/matmul.

use std::fmt;
use std::sync::Arc;

use super::QuantError;
use super::act::{ActFormat, QAct, QActRef};
use super::blocks::{self, row_bytes};
use super::kernels::{Isa, MULTI_ROWS, MultiDot, RowDot, row_dot, row_multi};
use super::threads::Threads;
use crate::gguf::{GgmlType, GgufFile};

/// Bytes a [`QMatrix`] can live on: an owned buffer, a memory map, a whole GGUF file.
/// The matrix keeps an `Arc` of its store, so the store lives as long as any matrix on it.
pub trait ByteStore: Send + Sync {
    /// All bytes of the store.
    fn bytes(&self) -> &[u8];
}

impl ByteStore for Vec<u8> {
    fn bytes(&self) -> &[u8] {
        self
    }
}

impl ByteStore for Box<[u8]> {
    fn bytes(&self) -> &[u8] {
        self
    }
}

impl ByteStore for memmap2::Mmap {
    fn bytes(&self) -> &[u8] {
        self
    }
}

impl ByteStore for GgufFile {
    fn bytes(&self) -> &[u8] {
        GgufFile::bytes(self)
    }
}

/// Output rows per work unit when splitting across threads (and per tile in `matmul`).
const ROW_TILE: usize = 16;

/// A quantized weight matrix `n_rows × n_cols` (output features × input features), row-major
/// in ggml's layout: row `r` is `row_bytes` bytes at `offset + r·row_bytes` of the store.
///
/// Cloning is cheap (an `Arc` and a few integers); no quantized byte is ever copied.
#[derive(Clone)]
pub struct QMatrix {
    store: Arc<dyn ByteStore>,
    offset: usize,
    ty: GgmlType,
    n_rows: usize,
    n_cols: usize,
    row_bytes: usize,
    act: ActFormat,
    isa: Isa,
    dot: RowDot,
    multi: Option<MultiDot>,
}

impl fmt::Debug for QMatrix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QMatrix")
            .field("ty", &self.ty)
            .field("n_rows", &self.n_rows)
            .field("n_cols", &self.n_cols)
            .field("offset", &self.offset)
            .field("isa", &self.isa)
            .finish()
    }
}

impl QMatrix {
    /// A matrix over `store` starting at byte `offset`. Fails if the type has no dot product,
    /// `n_cols` is not a whole number of blocks, or the rows do not fit in the store.
    pub fn new(
        store: Arc<dyn ByteStore>,
        offset: usize,
        ty: GgmlType,
        n_rows: usize,
        n_cols: usize,
    ) -> Result<QMatrix, QuantError> {
        let act = ActFormat::for_weights(ty).ok_or(QuantError::Unsupported { ty, op: "matrix" })?;
        let rb = row_bytes(ty, n_cols)?;
        let total = rb.checked_mul(n_rows).ok_or(QuantError::Overflow)?;
        let end = offset.checked_add(total).ok_or(QuantError::Overflow)?;
        let have = store.bytes().len();
        if end > have {
            return Err(QuantError::ShortBuffer { need: end, have });
        }
        let isa = Isa::detect();
        let dot = row_dot(ty, isa).ok_or(QuantError::Unsupported { ty, op: "matrix" })?;
        let multi = row_multi(ty, isa);
        Ok(QMatrix {
            store,
            offset,
            ty,
            n_rows,
            n_cols,
            row_bytes: rb,
            act,
            isa,
            dot,
            multi,
        })
    }

    /// A matrix owning `bytes` (exactly `n_rows` rows of `ty`).
    pub fn from_bytes(
        bytes: Vec<u8>,
        ty: GgmlType,
        n_rows: usize,
        n_cols: usize,
    ) -> Result<QMatrix, QuantError> {
        let need = row_bytes(ty, n_cols)?
            .checked_mul(n_rows)
            .ok_or(QuantError::Overflow)?;
        if bytes.len() != need {
            return Err(QuantError::Length {
                what: "matrix bytes",
                expected: need,
                got: bytes.len(),
            });
        }
        QMatrix::new(Arc::new(bytes), 0, ty, n_rows, n_cols)
    }

    /// Quantizes a row-major `n_rows × n_cols` f32 matrix to `ty` (types with a quantizer:
    /// see [`quantize_row_into`](super::quantize_row_into)).
    pub fn from_f32(
        ty: GgmlType,
        n_rows: usize,
        n_cols: usize,
        data: &[f32],
    ) -> Result<QMatrix, QuantError> {
        let n = n_rows.checked_mul(n_cols).ok_or(QuantError::Overflow)?;
        if data.len() != n {
            return Err(QuantError::Length {
                what: "matrix elements",
                expected: n,
                got: data.len(),
            });
        }
        let bytes = if n_cols == 0 {
            Vec::new()
        } else {
            blocks::quantize(ty, data, n_cols)?
        };
        QMatrix::from_bytes(bytes, ty, n_rows, n_cols)
    }

    /// The tensor `name` of a shared GGUF file, without copying: `dims[0]` is `n_cols`, the
    /// product of the other dims is `n_rows` (a 3-D expert tensor is `n_expert · n_ff` rows;
    /// take one expert with [`QMatrix::sub_rows`]).
    pub fn from_gguf(file: &Arc<GgufFile>, name: &str) -> Result<QMatrix, QuantError> {
        let info = file.tensor(name)?;
        let data = file.tensor_bytes(info)?;
        let dims = info.dims();
        let n_cols = dims.first().copied().ok_or(QuantError::Shape {
            name: name.to_owned(),
        })?;
        let n_rows = dims
            .iter()
            .skip(1)
            .try_fold(1u64, |a, &d| a.checked_mul(d))
            .ok_or(QuantError::Overflow)?;
        let n_cols = usize::try_from(n_cols).map_err(|_| QuantError::Overflow)?;
        let n_rows = usize::try_from(n_rows).map_err(|_| QuantError::Overflow)?;
        // The tensor's offset in the file, from the two slices' addresses (no unsafe needed).
        let offset = (data.as_ptr() as usize)
            .checked_sub(file.bytes().as_ptr() as usize)
            .ok_or(QuantError::Overflow)?;
        let store: Arc<dyn ByteStore> = file.clone();
        let m = QMatrix::new(store, offset, info.ggml_type(), n_rows, n_cols)?;
        if m.row_bytes.checked_mul(n_rows) != Some(data.len()) {
            return Err(QuantError::Length {
                what: "tensor bytes",
                expected: m.row_bytes.saturating_mul(n_rows),
                got: data.len(),
            });
        }
        Ok(m)
    }

    /// Rows `start..start + count` as a matrix on the same store (e.g. one expert of a merged
    /// `ffn_*_exps` tensor).
    pub fn sub_rows(&self, start: usize, count: usize) -> Result<QMatrix, QuantError> {
        let end = start.checked_add(count).ok_or(QuantError::Overflow)?;
        if end > self.n_rows {
            return Err(QuantError::RowOutOfRange {
                row: end,
                n_rows: self.n_rows,
            });
        }
        let mut m = self.clone();
        m.offset = start
            .checked_mul(self.row_bytes)
            .and_then(|o| o.checked_add(self.offset))
            .ok_or(QuantError::Overflow)?;
        m.n_rows = count;
        Ok(m)
    }

    /// The same matrix running the kernels of `isa` (for tests and benchmarks; the default is
    /// [`Isa::detect`]). Fails if this CPU cannot run `isa`.
    pub fn with_isa(mut self, isa: Isa) -> Result<QMatrix, QuantError> {
        if !isa.is_available() {
            return Err(QuantError::IsaUnavailable { isa });
        }
        self.dot = row_dot(self.ty, isa).ok_or(QuantError::Unsupported {
            ty: self.ty,
            op: "matrix",
        })?;
        self.multi = row_multi(self.ty, isa);
        self.isa = isa;
        Ok(self)
    }

    /// The weight type.
    pub fn ggml_type(&self) -> GgmlType {
        self.ty
    }
    /// Output features.
    pub fn n_rows(&self) -> usize {
        self.n_rows
    }
    /// Input features (row length in elements).
    pub fn n_cols(&self) -> usize {
        self.n_cols
    }
    /// Bytes per row.
    pub fn row_bytes(&self) -> usize {
        self.row_bytes
    }
    /// The ISA level whose kernels this matrix calls.
    pub fn isa(&self) -> Isa {
        self.isa
    }
    /// The activation format activations are quantized to.
    pub fn act_format(&self) -> ActFormat {
        self.act
    }

    /// All rows' bytes.
    pub fn bytes(&self) -> &[u8] {
        let len = self.row_bytes.saturating_mul(self.n_rows);
        self.store
            .bytes()
            .get(self.offset..self.offset.saturating_add(len))
            .unwrap_or(&[])
    }

    /// The bytes of row `r`.
    pub fn row(&self, r: usize) -> Result<&[u8], QuantError> {
        if r >= self.n_rows {
            return Err(QuantError::RowOutOfRange {
                row: r,
                n_rows: self.n_rows,
            });
        }
        let start = self.offset + r * self.row_bytes;
        self.store
            .bytes()
            .get(start..start + self.row_bytes)
            .ok_or(QuantError::ShortBuffer {
                need: start + self.row_bytes,
                have: self.store.bytes().len(),
            })
    }

    /// Dequantizes row `r` into `out` (`out.len() == n_cols`).
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) -> Result<(), QuantError> {
        if out.len() != self.n_cols {
            return Err(QuantError::Length {
                what: "output row",
                expected: self.n_cols,
                got: out.len(),
            });
        }
        blocks::dequantize_row(self.ty, self.row(r)?, out)
    }

    /// The whole matrix as row-major f32.
    pub fn dequantize(&self) -> Result<Vec<f32>, QuantError> {
        let n = self
            .n_rows
            .checked_mul(self.n_cols)
            .ok_or(QuantError::Overflow)?;
        let mut out = vec![0.0f32; n];
        if self.n_cols > 0 {
            for (r, o) in out.chunks_exact_mut(self.n_cols).enumerate() {
                self.dequantize_row(r, o)?;
            }
        }
        Ok(out)
    }

    /// `y = W·x`: `x.len() == n_cols`, `y.len() == n_rows`. Each `y[r]` is one call of the row
    /// kernel on the quantized `x`, bitwise identical to row `i` of any [`QMatrix::matmul`]
    /// whose `xs` row `i` equals `x`, whatever `threads`.
    pub fn matvec(&self, x: &[f32], y: &mut [f32], threads: &Threads) -> Result<(), QuantError> {
        self.matmul(x, y, threads)
    }

    /// `ys = xs·Wᵀ`: `xs` is `m × n_cols` row-major, `ys` is `m × n_rows` row-major. Every
    /// activation row is quantized on its own; every output element is one row-kernel call,
    /// or one lane of a several-rows kernel that is bitwise equal to it (the weight row is
    /// decoded once for up to [`MULTI_ROWS`] activation rows).
    pub fn matmul(&self, xs: &[f32], ys: &mut [f32], threads: &Threads) -> Result<(), QuantError> {
        if self.n_rows == 0 {
            return if ys.is_empty() {
                Ok(())
            } else {
                Err(QuantError::Length {
                    what: "output",
                    expected: 0,
                    got: ys.len(),
                })
            };
        }
        if self.n_cols == 0 || !xs.len().is_multiple_of(self.n_cols) {
            return Err(QuantError::Length {
                what: "input (a multiple of n_cols)",
                expected: xs.len().next_multiple_of(self.n_cols.max(1)),
                got: xs.len(),
            });
        }
        let m = xs.len() / self.n_cols;
        let out_len = m.checked_mul(self.n_rows).ok_or(QuantError::Overflow)?;
        if ys.len() != out_len {
            return Err(QuantError::Length {
                what: "output (m × n_rows)",
                expected: out_len,
                got: ys.len(),
            });
        }
        let w = self.bytes();
        if w.len() != self.row_bytes * self.n_rows {
            return Err(QuantError::ShortBuffer {
                need: self.offset + self.row_bytes * self.n_rows,
                have: self.store.bytes().len(),
            });
        }
        let acts: Vec<QAct> = xs
            .chunks_exact(self.n_cols)
            .map(|x| {
                let mut a = QAct::default();
                a.quantize(self.act, x);
                a
            })
            .collect();
        let job = RowJob {
            w,
            row_bytes: self.row_bytes,
            n_cols: self.n_cols,
            n_rows: self.n_rows,
            xs,
            acts: &acts,
            dot: self.dot,
            multi: self.multi,
        };
        if threads.count() == 1 || self.n_rows < 2 * ROW_TILE {
            job.run(0..self.n_rows, ys);
            return Ok(());
        }
        let out = SharedOut::new(ys);
        threads.run(&|part| {
            let range = threads.split(self.n_rows, part, ROW_TILE);
            let mut local = vec![0.0f32; m * range.len()];
            job.run_into(range.clone(), &mut local);
            out.write(range, m, self.n_rows, &local);
        });
        Ok(())
    }
}

/// Everything one part of a matmul needs.
struct RowJob<'a> {
    w: &'a [u8],
    row_bytes: usize,
    n_cols: usize,
    n_rows: usize,
    xs: &'a [f32],
    acts: &'a [QAct],
    dot: RowDot,
    multi: Option<MultiDot>,
}

impl RowJob<'_> {
    /// Computes rows `range` for all activation rows straight into `ys` (m × n_rows).
    fn run(&self, range: std::ops::Range<usize>, ys: &mut [f32]) {
        let n_rows = self.n_rows;
        self.compute(range, |i, r, v| {
            if let Some(o) = ys.get_mut(i * n_rows + r) {
                *o = v;
            }
        });
    }

    /// Computes rows `range` into `local` laid out `m × range.len()`.
    fn run_into(&self, range: std::ops::Range<usize>, local: &mut [f32]) {
        let (start, n) = (range.start, range.len());
        self.compute(range, |i, r, v| {
            if let Some(o) = local.get_mut(i * n + (r - start)) {
                *o = v;
            }
        });
    }

    /// Calls `put(i, r, y)` for every activation row `i` and weight row `r` in `range`. Tiles
    /// of `ROW_TILE` weight rows stay in cache while groups of `MULTI_ROWS` activation rows go
    /// through them; the tiling changes which values are computed together, never how.
    fn compute(&self, range: std::ops::Range<usize>, mut put: impl FnMut(usize, usize, f32)) {
        let views: Vec<QActRef<'_>> = self.acts.iter().map(QAct::view).collect();
        let m = views.len();
        let mut buf = [0.0f32; MULTI_ROWS * ROW_TILE];
        let mut r0 = range.start;
        while r0 < range.end {
            let r1 = (r0 + ROW_TILE).min(range.end);
            let tile = self
                .w
                .get(r0 * self.row_bytes..r1 * self.row_bytes)
                .unwrap_or(&[]);
            let mut i0 = 0;
            while i0 < m {
                let i1 = (i0 + MULTI_ROWS).min(m);
                let group = views.get(i0..i1).unwrap_or(&[]);
                let g = group.len();
                let out = buf.get_mut(..g * (r1 - r0)).unwrap_or(&mut []);
                match self.multi {
                    Some(f) if g > 1 => f(tile, self.row_bytes, group, out),
                    _ => {
                        let rows = tile.chunks_exact(self.row_bytes.max(1));
                        for (wr, o) in rows.zip(out.chunks_exact_mut(g.max(1))) {
                            for (k, (o, a)) in o.iter_mut().zip(group).enumerate() {
                                let x0 = (i0 + k) * self.n_cols;
                                let x = self.xs.get(x0..x0 + self.n_cols).unwrap_or(&[]);
                                *o = (self.dot)(wr, x, *a);
                            }
                        }
                    }
                }
                for (dr, o) in out.chunks_exact(g.max(1)).enumerate() {
                    for (k, v) in o.iter().enumerate() {
                        put(i0 + k, r0 + dr, *v);
                    }
                }
                i0 = i1;
            }
            r0 = r1;
        }
    }
}

/// The output buffer shared by the parts of a job; each part writes only its own rows.
struct SharedOut<'a> {
    ys: std::sync::Mutex<&'a mut [f32]>,
}

impl<'a> SharedOut<'a> {
    fn new(ys: &'a mut [f32]) -> Self {
        SharedOut {
            ys: std::sync::Mutex::new(ys),
        }
    }

    fn write(&self, range: std::ops::Range<usize>, m: usize, n_rows: usize, local: &[f32]) {
        let n = range.len();
        let mut ys = self
            .ys
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for i in 0..m {
            let dst = ys.get_mut(i * n_rows + range.start..i * n_rows + range.end);
            let src = local.get(i * n..(i + 1) * n);
            if let (Some(d), Some(s)) = (dst, src) {
                d.copy_from_slice(s);
            }
        }
    }
}
