//! The key/value cache: per layer, with an explicit length, absolute positions and an optional
//! ring (sliding window).
//!
//! The cache holds the rotated keys and the values of a contiguous run of absolute positions
//! `base_pos .. base_pos + len`. Without a window it grows as tokens arrive. With a window of
//! `W` positions it is a ring of `W` slots: a query at position `p` attends to positions
//! `p+1−W ..= p`, and appending beyond `W` entries overwrites the oldest one.
//!
//! Rollback: [`KvCache::snapshot`] deep-copies the live entries into a [`KvSnapshot`],
//! [`KvCache::restore`] puts them back, and [`KvCache::trim`] drops the newest positions. A ring
//! that has already overwritten positions a trimmed cache would need refuses the trim.
//!
//! The forward pass writes position `p` of every layer before it commits the batch with
//! [`KvCache::commit`]; a forward abandoned half-way (a hook error) leaves a ring unusable until
//! it is restored from a snapshot or cleared, which [`KvCache::check_usable`] reports.

use std::ops::Range;

use super::error::{EngineError, Result};

#[derive(Debug, Clone, Default)]
struct LayerKv {
    k: Vec<f32>,
    v: Vec<f32>,
}

/// Key/value cache of all layers of one sequence.
#[derive(Debug, Clone)]
pub struct KvCache {
    kv_dim: usize,
    window: Option<usize>,
    layers: Vec<LayerKv>,
    /// Entries held.
    len: usize,
    /// Ring slot of the oldest entry (0 without a window).
    start: usize,
    /// Absolute position of the oldest entry.
    base_pos: u64,
    /// A forward has written entries it has not committed.
    in_flight: bool,
}

/// A deep copy of a [`KvCache`]'s live entries.
#[derive(Debug, Clone, PartialEq)]
pub struct KvSnapshot {
    kv_dim: usize,
    window: Option<usize>,
    base_pos: u64,
    len: usize,
    /// Per layer: keys then values of the live entries, oldest first.
    layers: Vec<(Vec<f32>, Vec<f32>)>,
}

impl KvSnapshot {
    /// Absolute positions held.
    pub fn positions(&self) -> Range<u64> {
        self.base_pos..self.base_pos + self.len as u64
    }

    /// Bytes of key/value data held.
    pub fn data_bytes(&self) -> usize {
        self.layers
            .iter()
            .map(|(k, v)| (k.len() + v.len()) * 4)
            .sum()
    }
}

impl KvSnapshot {
    /// Appends the park encoding (see [`super::park`]).
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        use super::park::{put_f32s, put_u64};
        put_u64(out, self.kv_dim as u64);
        put_u64(out, self.layers.len() as u64);
        put_u64(out, self.window.map_or(0, |w| w as u64));
        put_u64(out, self.base_pos);
        put_u64(out, self.len as u64);
        for (k, v) in &self.layers {
            put_f32s(out, k);
            put_f32s(out, v);
        }
    }

    /// Reads the park encoding; shapes are checked against the bytes, not trusted.
    pub(crate) fn decode(r: &mut super::park::Reader<'_>) -> Result<KvSnapshot> {
        use super::park::park_err;
        let kv_dim = r.count()?;
        let n_layer = r.count()?;
        let window = match r.count()? {
            0 => None,
            w => Some(w),
        };
        let base_pos = r.u64()?;
        let len = r.count()?;
        // Bounds that no model reaches; they keep a lying header from looping or allocating.
        if n_layer > 4096 || kv_dim > 1 << 20 {
            return Err(park_err(format!("{n_layer} layers of kv dim {kv_dim}")));
        }
        if window.is_some_and(|w| len > w) {
            return Err(park_err("more KV entries than the ring holds"));
        }
        if base_pos.checked_add(len as u64).is_none() {
            return Err(park_err("positions overflow"));
        }
        let per = len
            .checked_mul(kv_dim)
            .ok_or_else(|| park_err("KV size overflows"))?;
        let mut layers = Vec::new();
        for _ in 0..n_layer {
            let k = r.f32s(per)?;
            let v = r.f32s(per)?;
            layers.push((k, v));
        }
        Ok(KvSnapshot {
            kv_dim,
            window,
            base_pos,
            len,
            layers,
        })
    }
}

impl KvCache {
    /// An empty cache for `n_layer` layers of `kv_dim` floats per position (keys and values
    /// each), with an optional sliding window of `window` positions (at least 1).
    pub fn new(n_layer: usize, kv_dim: usize, window: Option<usize>) -> Result<KvCache> {
        if window == Some(0) {
            return Err(EngineError::State {
                reason: "a KV ring needs a window of at least one position".to_owned(),
            });
        }
        Ok(KvCache {
            kv_dim,
            window,
            layers: vec![LayerKv::default(); n_layer],
            len: 0,
            start: 0,
            base_pos: 0,
            in_flight: false,
        })
    }

    /// Number of layers.
    pub fn n_layer(&self) -> usize {
        self.layers.len()
    }

    /// Floats per position and layer (keys or values).
    pub fn kv_dim(&self) -> usize {
        self.kv_dim
    }

    /// The sliding window, if this is a ring.
    pub fn window(&self) -> Option<usize> {
        self.window
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no entries are held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Absolute positions held (`base_pos .. next_pos`).
    pub fn positions(&self) -> Range<u64> {
        self.base_pos..self.next_pos()
    }

    /// The absolute position the next token will take.
    pub fn next_pos(&self) -> u64 {
        self.base_pos + self.len as u64
    }

    /// True when a ring has overwritten (evicted) positions.
    pub fn has_wrapped(&self) -> bool {
        self.base_pos > 0
    }

    /// Drops everything.
    pub fn clear(&mut self) {
        for l in &mut self.layers {
            l.k.clear();
            l.v.clear();
        }
        self.len = 0;
        self.start = 0;
        self.base_pos = 0;
        self.in_flight = false;
    }

    /// Errors if an abandoned forward has left a ring with overwritten entries. A cache without
    /// a window recovers by itself (the stray entries lie past `len` and get overwritten).
    pub fn check_usable(&self) -> Result<()> {
        if self.in_flight && self.window.is_some() {
            return Err(EngineError::State {
                reason: "an aborted forward pass left the KV ring inconsistent; restore a \
                         snapshot or clear the cache"
                    .to_owned(),
            });
        }
        Ok(())
    }

    /// The lowest position a query at `pos` attends to.
    pub(crate) fn window_start(&self, pos: u64) -> u64 {
        match self.window {
            Some(w) => (pos + 1).saturating_sub(w as u64),
            None => 0,
        }
    }

    fn slot(&self, pos: u64) -> Option<usize> {
        let rel = usize::try_from(pos.checked_sub(self.base_pos)?).ok()?;
        Some(match self.window {
            Some(w) => (self.start + rel) % w,
            None => rel,
        })
    }

    /// Marks the start of a forward pass over positions `next_pos ..`.
    pub(crate) fn begin(&mut self) {
        self.in_flight = true;
    }

    /// Writes the key and value rows of position `pos` in `layer`. Positions of one layer must
    /// be written in increasing order from `next_pos()`.
    pub(crate) fn write(&mut self, layer: usize, pos: u64, k: &[f32], v: &[f32]) -> Result<()> {
        let kvd = self.kv_dim;
        let slot = self.slot(pos).ok_or_else(|| EngineError::State {
            reason: format!(
                "KV write at position {pos} below the cache base {}",
                self.base_pos
            ),
        })?;
        let n_layer = self.layers.len();
        let l = self
            .layers
            .get_mut(layer)
            .ok_or_else(|| EngineError::State {
                reason: format!("KV write to layer {layer} of {n_layer}"),
            })?;
        let at = slot * kvd;
        let (Some(k), Some(v)) = (k.get(..kvd), v.get(..kvd)) else {
            return Err(EngineError::State {
                reason: "KV row shorter than the kv dimension".to_owned(),
            });
        };
        if at == l.k.len() {
            l.k.extend_from_slice(k);
            l.v.extend_from_slice(v);
        } else if let (Some(dk), Some(dv)) = (l.k.get_mut(at..at + kvd), l.v.get_mut(at..at + kvd))
        {
            dk.copy_from_slice(k);
            dv.copy_from_slice(v);
        } else {
            return Err(EngineError::State {
                reason: format!("KV write at position {pos} leaves a gap"),
            });
        }
        Ok(())
    }

    /// The key and value rows of position `pos` in `layer` (written, committed or not).
    #[inline]
    pub(crate) fn read(&self, layer: usize, pos: u64) -> Option<(&[f32], &[f32])> {
        let at = self.slot(pos)? * self.kv_dim;
        let l = self.layers.get(layer)?;
        Some((
            l.k.get(at..at + self.kv_dim)?,
            l.v.get(at..at + self.kv_dim)?,
        ))
    }

    /// The key and value rows of positions `lo ..= hi` in `layer`, in position order, as at
    /// most two contiguous runs of whole rows (a ring's run may wrap around once). `None` if
    /// some position is not held.
    pub(crate) fn span(&self, layer: usize, lo: u64, hi: u64) -> Option<[(&[f32], &[f32]); 2]> {
        let kvd = self.kv_dim;
        let l = self.layers.get(layer)?;
        let n = usize::try_from(hi.checked_sub(lo)?).ok()?.checked_add(1)?;
        let s0 = self.slot(lo)?;
        let first = match self.window {
            Some(w) if n > w => return None,
            Some(w) => n.min(w - s0),
            None => n,
        };
        let rest = n - first;
        let run = |from: usize, count: usize| -> Option<(&[f32], &[f32])> {
            let r = from * kvd..(from + count) * kvd;
            Some((l.k.get(r.clone())?, l.v.get(r)?))
        };
        Some([run(s0, first)?, run(0, rest)?])
    }

    /// Commits `m` positions written by a finished forward pass.
    pub(crate) fn commit(&mut self, m: usize) {
        let total = self.len + m;
        match self.window {
            Some(w) if total > w => {
                let drop = total - w;
                self.base_pos += drop as u64;
                self.start = (self.start + drop) % w;
                self.len = w;
            }
            _ => self.len = total,
        }
        if self.window.is_none() {
            let keep = self.len * self.kv_dim;
            for l in &mut self.layers {
                l.k.truncate(keep);
                l.v.truncate(keep);
            }
        }
        self.in_flight = false;
    }

    /// Drops every position at or after `to`, so that the next token takes position `to`.
    /// A ring refuses when it has already overwritten positions that a query at `to` needs.
    pub fn trim(&mut self, to: u64) -> Result<()> {
        self.check_usable()?;
        let next = self.next_pos();
        if to > next {
            return Err(EngineError::Trim {
                to,
                reason: format!("the cache only reaches position {next}"),
            });
        }
        if to < self.base_pos || (self.has_wrapped() && self.window_start(to) < self.base_pos) {
            return Err(EngineError::Trim {
                to,
                reason: format!(
                    "the ring has overwritten positions below {} that position {to} needs",
                    self.base_pos
                ),
            });
        }
        // to >= base_pos, so the difference fits: it is at most len.
        self.len = (to - self.base_pos) as usize;
        if self.window.is_none() {
            let keep = self.len * self.kv_dim;
            for l in &mut self.layers {
                l.k.truncate(keep);
                l.v.truncate(keep);
            }
        }
        Ok(())
    }

    /// Whether [`KvCache::trim`] to `to` would still succeed after `appended` more positions are
    /// committed. Speculative decoding asks this before a verify batch: a ring that the batch
    /// wraps past the window can no longer drop the batch's rejected tail, so the caller takes a
    /// snapshot first. Mirrors the conditions of [`KvCache::trim`] on the committed shape.
    pub fn can_trim_after(&self, appended: usize, to: u64) -> bool {
        let total = self.len.saturating_add(appended);
        let next = self.next_pos().saturating_add(appended as u64);
        let len = match self.window {
            Some(w) => total.min(w),
            None => total,
        };
        let base = next - len as u64;
        if to > next || to < base {
            return false;
        }
        // As in `trim`: once entries were evicted, every key a query at `to` reads must remain.
        !(base > 0 && self.window_start(to) < base)
    }

    /// A deep copy of the live entries.
    pub fn snapshot(&self) -> Result<KvSnapshot> {
        self.check_usable()?;
        let kvd = self.kv_dim;
        let mut layers = Vec::with_capacity(self.layers.len());
        for li in 0..self.layers.len() {
            let mut k = Vec::with_capacity(self.len * kvd);
            let mut v = Vec::with_capacity(self.len * kvd);
            for pos in self.positions() {
                let (kr, vr) = self.read(li, pos).ok_or_else(|| EngineError::State {
                    reason: format!("KV entry for position {pos} missing"),
                })?;
                k.extend_from_slice(kr);
                v.extend_from_slice(vr);
            }
            layers.push((k, v));
        }
        Ok(KvSnapshot {
            kv_dim: kvd,
            window: self.window,
            base_pos: self.base_pos,
            len: self.len,
            layers,
        })
    }

    /// Replaces the contents with a snapshot taken from a cache of the same shape.
    pub fn restore(&mut self, snap: &KvSnapshot) -> Result<()> {
        if snap.kv_dim != self.kv_dim
            || snap.window != self.window
            || snap.layers.len() != self.layers.len()
        {
            return Err(EngineError::SnapshotMismatch {
                reason: format!(
                    "snapshot has {} layers × {} (window {:?}), cache has {} × {} (window {:?})",
                    snap.layers.len(),
                    snap.kv_dim,
                    snap.window,
                    self.layers.len(),
                    self.kv_dim,
                    self.window
                ),
            });
        }
        let want = snap.len * snap.kv_dim;
        if snap
            .layers
            .iter()
            .any(|(k, v)| k.len() != want || v.len() != want)
        {
            return Err(EngineError::SnapshotMismatch {
                reason: "snapshot data length differs from its entry count".to_owned(),
            });
        }
        for (dst, (k, v)) in self.layers.iter_mut().zip(&snap.layers) {
            dst.k.clear();
            dst.k.extend_from_slice(k);
            dst.v.clear();
            dst.v.extend_from_slice(v);
        }
        self.len = snap.len;
        self.start = 0;
        self.base_pos = snap.base_pos;
        self.in_flight = false;
        Ok(())
    }
}
