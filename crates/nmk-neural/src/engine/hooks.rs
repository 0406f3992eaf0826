//! Hook sites of the forward pass and the decode loop.
//!
//! A [`HookSet`] is passed to every forward. It is free when empty: each site costs one
//! `is_empty` check. The kernel (another crate) installs its own implementations of the traits:
//!
//! - [`PostBlockHook`]: after block `L`, read the residual stream of every position of the
//!   batch and, when armed, add a delta to it ([`Residual::add`]). Deltas are f32, the residual
//!   dtype.
//! - [`RouterObserver`]: sees each MoE layer's routing decision for every position (built only
//!   when an observer is installed; see [`super::moe`]).
//! - [`ExpertMask`]: forbids experts per layer and position (their router logit is −∞ before
//!   the softmax and top-k, so the reported probabilities are the masked ones, forbidden = 0).
//! - [`LogitMask`]: forbids token ids (their logits become −∞ before any selection).
//!
//! Ready-made implementations: [`ForbiddenIds`], [`ResidualAdd`], [`ResidualRecorder`].

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

/// A hook's failure; it aborts the forward pass with [`super::EngineError::Hook`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct HookError(pub String);

/// The residual stream of a batch of consecutive positions, right after one block.
#[derive(Debug)]
pub struct Residual<'a> {
    data: &'a mut [f32],
    n_embd: usize,
    first_pos: u64,
}

impl<'a> Residual<'a> {
    pub(crate) fn new(data: &'a mut [f32], n_embd: usize, first_pos: u64) -> Residual<'a> {
        Residual {
            data,
            n_embd,
            first_pos,
        }
    }

    /// Number of positions (rows).
    pub fn rows(&self) -> usize {
        self.data.len().checked_div(self.n_embd).unwrap_or(0)
    }

    /// Width of one row.
    pub fn width(&self) -> usize {
        self.n_embd
    }

    /// Absolute position of row `i`.
    pub fn position(&self, i: usize) -> u64 {
        self.first_pos + i as u64
    }

    /// Row `i` (the residual at position `position(i)`).
    pub fn row(&self, i: usize) -> Option<&[f32]> {
        let n = self.n_embd;
        self.data
            .get(i.checked_mul(n)?..i.checked_mul(n)?.checked_add(n)?)
    }

    /// Adds `delta` (exactly `width()` values) to row `i`.
    pub fn add(&mut self, i: usize, delta: &[f32]) -> Result<(), HookError> {
        for (r, d) in self.row_for_delta(i, delta)?.iter_mut().zip(delta) {
            *r += *d;
        }
        Ok(())
    }

    /// Adds the non-zero elements of `delta` to row `i`; zero elements leave the residual bit
    /// for bit untouched (adding `+0.0` would turn a `−0.0` element into `+0.0`).
    pub fn add_nonzero(&mut self, i: usize, delta: &[f32]) -> Result<(), HookError> {
        for (r, d) in self.row_for_delta(i, delta)?.iter_mut().zip(delta) {
            if *d != 0.0 {
                *r += *d;
            }
        }
        Ok(())
    }

    /// Row `i`, mutable, once `delta` is known to have the row's width.
    fn row_for_delta(&mut self, i: usize, delta: &[f32]) -> Result<&mut [f32], HookError> {
        let n = self.n_embd;
        if delta.len() != n {
            return Err(HookError(format!(
                "residual delta has {} values, the residual {n}",
                delta.len()
            )));
        }
        i.checked_mul(n)
            .and_then(|s| Some(s..s.checked_add(n)?))
            .and_then(|r| self.data.get_mut(r))
            .ok_or_else(|| HookError(format!("residual row {i} out of range")))
    }
}

/// A trap site after each transformer block.
pub trait PostBlockHook: Send {
    /// Whether the hook wants block `layer` (a cheap filter; the residual is not touched for
    /// layers nobody wants).
    fn wants(&self, layer: usize) -> bool {
        let _ = layer;
        true
    }

    /// Called after block `layer` with the residual of every position of the batch.
    fn post_block(&mut self, layer: usize, residual: &mut Residual<'_>) -> Result<(), HookError>;
}

/// One MoE layer's routing decision for one position.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerRoute {
    /// Block index.
    pub layer: usize,
    /// Absolute position of the token.
    pub position: u64,
    /// Router probabilities over all experts (after the expert mask, if any: forbidden ones are 0).
    pub probs: Vec<f32>,
    /// Chosen experts and their mixing weights, in selection order.
    pub chosen: Vec<(u32, f32)>,
    /// Entropy of `probs` in nats.
    pub entropy: f32,
}

impl LayerRoute {
    /// Entropy normalised to `[0, 1]` (divided by `ln n_expert`; 0 with one expert).
    pub fn normalized_entropy(&self) -> f32 {
        let n = self.probs.len();
        if n < 2 {
            return 0.0;
        }
        self.entropy / (n as f32).ln()
    }
}

/// Observes routing decisions (MoE models only).
pub trait RouterObserver: Send {
    /// Called once per MoE layer and position.
    fn observe(&mut self, route: &LayerRoute);
}

/// Forbids experts (MoE models only).
pub trait ExpertMask: Send {
    /// Whether `expert` may be chosen in `layer` at `position`.
    fn allowed(&self, layer: usize, position: u64, expert: u32) -> bool;
}

/// Forbids tokens before selection.
pub trait LogitMask: Send {
    /// Sets forbidden ids' logits to −∞ (or otherwise edits them) for the token at `position`.
    fn apply(&mut self, position: u64, logits: &mut [f32]);
}

/// The hooks of one session.
#[derive(Default)]
pub struct HookSet {
    post_block: Vec<Box<dyn PostBlockHook>>,
    routers: Vec<Box<dyn RouterObserver>>,
    expert_mask: Option<Box<dyn ExpertMask>>,
    logit_masks: Vec<Box<dyn LogitMask>>,
}

impl std::fmt::Debug for HookSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HookSet")
            .field("post_block", &self.post_block.len())
            .field("routers", &self.routers.len())
            .field("expert_mask", &self.expert_mask.is_some())
            .field("logit_masks", &self.logit_masks.len())
            .finish()
    }
}

impl HookSet {
    /// No hooks.
    pub fn new() -> HookSet {
        HookSet::default()
    }

    /// True when no hook is installed.
    pub fn is_empty(&self) -> bool {
        self.post_block.is_empty()
            && self.routers.is_empty()
            && self.expert_mask.is_none()
            && self.logit_masks.is_empty()
    }

    /// Removes every hook.
    pub fn clear(&mut self) {
        *self = HookSet::default();
    }

    /// Installs a post-block hook (called in installation order).
    pub fn add_post_block(&mut self, hook: Box<dyn PostBlockHook>) -> &mut HookSet {
        self.post_block.push(hook);
        self
    }

    /// Installs a router observer.
    pub fn add_router_observer(&mut self, obs: Box<dyn RouterObserver>) -> &mut HookSet {
        self.routers.push(obs);
        self
    }

    /// Installs (or replaces) the expert mask.
    pub fn set_expert_mask(&mut self, mask: Option<Box<dyn ExpertMask>>) -> &mut HookSet {
        self.expert_mask = mask;
        self
    }

    /// Installs a logit mask (applied in installation order).
    pub fn add_logit_mask(&mut self, mask: Box<dyn LogitMask>) -> &mut HookSet {
        self.logit_masks.push(mask);
        self
    }

    /// True when some post-block hook wants `layer`.
    #[inline]
    pub(crate) fn wants_block(&self, layer: usize) -> bool {
        !self.post_block.is_empty() && self.post_block.iter().any(|h| h.wants(layer))
    }

    pub(crate) fn run_post_block(
        &mut self,
        layer: usize,
        residual: &mut Residual<'_>,
    ) -> Result<(), HookError> {
        for h in &mut self.post_block {
            if h.wants(layer) {
                h.post_block(layer, residual)?;
            }
        }
        Ok(())
    }

    /// True when a router observer is installed.
    pub fn has_router_observers(&self) -> bool {
        !self.routers.is_empty()
    }

    /// Hands a route to every observer.
    pub fn observe_route(&mut self, route: &LayerRoute) {
        for r in &mut self.routers {
            r.observe(route);
        }
    }

    /// The expert mask, if any.
    pub fn expert_mask(&self) -> Option<&dyn ExpertMask> {
        self.expert_mask.as_deref()
    }

    /// True when a logit mask is installed.
    pub fn has_logit_masks(&self) -> bool {
        !self.logit_masks.is_empty()
    }

    pub(crate) fn apply_logit_masks(&mut self, position: u64, logits: &mut [f32]) {
        for m in &mut self.logit_masks {
            m.apply(position, logits);
        }
    }
}

/// A logit mask forbidding a fixed set of token ids.
#[derive(Debug, Clone, Default)]
pub struct ForbiddenIds {
    ids: BTreeSet<u32>,
}

impl ForbiddenIds {
    /// Forbids `ids` (an empty set is a valid, zero-effect mask).
    pub fn new(ids: impl IntoIterator<Item = u32>) -> ForbiddenIds {
        ForbiddenIds {
            ids: ids.into_iter().collect(),
        }
    }
}

impl LogitMask for ForbiddenIds {
    fn apply(&mut self, _position: u64, logits: &mut [f32]) {
        for &id in &self.ids {
            if let Some(l) = logits.get_mut(id as usize) {
                *l = f32::NEG_INFINITY;
            }
        }
    }
}

/// Adds a fixed delta to every position's residual after one block, when armed.
#[derive(Debug, Clone)]
pub struct ResidualAdd {
    /// The block after which the delta is added.
    pub layer: usize,
    /// The delta (the residual width).
    pub delta: Vec<f32>,
    /// When false the hook reads nothing and writes nothing.
    pub armed: bool,
}

impl PostBlockHook for ResidualAdd {
    fn wants(&self, layer: usize) -> bool {
        self.armed && layer == self.layer
    }

    fn post_block(&mut self, _layer: usize, residual: &mut Residual<'_>) -> Result<(), HookError> {
        for i in 0..residual.rows() {
            residual.add(i, &self.delta)?;
        }
        Ok(())
    }
}

/// Rows recorded by a [`ResidualRecorder`]: `(position, residual)` pairs.
pub type RecordedRows = Arc<Mutex<Vec<(u64, Vec<f32>)>>>;

/// Records the residual after one block: `(position, row)` pairs, shared through an `Arc` so
/// the installer can read them while the hook lives in a [`HookSet`].
#[derive(Debug, Clone)]
pub struct ResidualRecorder {
    /// The block observed.
    pub layer: usize,
    /// The recorded rows.
    pub rows: RecordedRows,
}

impl PostBlockHook for ResidualRecorder {
    fn wants(&self, layer: usize) -> bool {
        layer == self.layer
    }

    fn post_block(&mut self, _layer: usize, residual: &mut Residual<'_>) -> Result<(), HookError> {
        let mut out = self
            .rows
            .lock()
            .map_err(|_| HookError("recorder lock poisoned".to_owned()))?;
        for i in 0..residual.rows() {
            if let Some(r) = residual.row(i) {
                out.push((residual.position(i), r.to_vec()));
            }
        }
        Ok(())
    }
}
