//! Reading the residual after block `L`: on the request's own prefill ([`prefill_with_tap`]:
//! the session goes on to decode), or as a partial forward that stops after the deepest block
//! wanted ([`partial_residuals`]: training features, and the reference the live tap is checked
//! against).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::engine::{EngineError, HookError, PostBlockHook, Residual, Session};
use crate::text::{TextError, TextModel};

/// The message with which a partial forward stops itself.
const STOP: &str = "entry tap: partial forward complete";

/// A residual row and its absolute position.
#[derive(Debug, Clone, PartialEq)]
pub struct TapReading {
    /// Position of the row.
    pub position: u64,
    /// The residual (f32, width `n_embd`).
    pub row: Vec<f32>,
}

type Slots = Arc<Mutex<BTreeMap<usize, TapReading>>>;

/// A post-block hook keeping the last row of every batch after each wanted block; with
/// `stop_at`, it ends the forward once the deepest wanted block has produced that position.
#[derive(Debug, Clone)]
pub struct EntryTap {
    layers: Vec<usize>,
    slots: Slots,
    stop_at: Option<u64>,
}

impl EntryTap {
    /// A tap after each of `layers`.
    pub fn new(layers: &[usize]) -> EntryTap {
        EntryTap {
            layers: layers.to_vec(),
            slots: Arc::new(Mutex::new(BTreeMap::new())),
            stop_at: None,
        }
    }

    /// The reading after `layer`, if one was taken.
    pub fn reading(&self, layer: usize) -> Option<TapReading> {
        self.slots.lock().ok()?.get(&layer).cloned()
    }
}

impl PostBlockHook for EntryTap {
    fn wants(&self, layer: usize) -> bool {
        self.layers.contains(&layer)
    }

    fn post_block(&mut self, layer: usize, residual: &mut Residual<'_>) -> Result<(), HookError> {
        let Some(last) = residual.rows().checked_sub(1) else {
            return Ok(());
        };
        let position = residual.position(last);
        let row = residual
            .row(last)
            .ok_or_else(|| HookError("entry tap: residual row missing".into()))?
            .to_vec();
        self.slots
            .lock()
            .map_err(|_| HookError("entry tap lock poisoned".into()))?
            .insert(layer, TapReading { position, row });
        let deepest = self.layers.iter().copied().max();
        if self.stop_at == Some(position) && deepest == Some(layer) {
            return Err(HookError(STOP.into()));
        }
        Ok(())
    }
}

/// A session prefilled with the request and the head's residual read on the way.
#[derive(Debug)]
pub struct TappedPrefill {
    /// The session, ready to decode (the tap stays installed; it only copies rows).
    pub session: Session,
    /// The last prompt token's residual after the tapped block.
    pub residual: Vec<f32>,
    /// Prefill time in seconds.
    pub prefill_s: f64,
}

fn tap_error(reason: impl Into<String>) -> TextError {
    TextError::Engine(EngineError::Hook {
        site: "post_block",
        reason: reason.into(),
    })
}

/// Prefills `ids` on a fresh session of `model` with a tap after block `layer`, and returns
/// the session (to decode from, no second prefill) with the last prompt token's residual.
pub fn prefill_with_tap(
    model: &TextModel,
    ids: &[u32],
    seed: u64,
    layer: usize,
) -> Result<TappedPrefill, TextError> {
    check_layer(model, layer)?;
    let mut session = model.session(seed)?;
    let tap = EntryTap::new(&[layer]);
    session.hooks_mut().add_post_block(Box::new(tap.clone()));
    let t0 = Instant::now();
    session.prefill(ids)?;
    let _ = session.logits()?;
    let prefill_s = t0.elapsed().as_secs_f64();
    let last = (ids.len() as u64).checked_sub(1);
    match tap.reading(layer) {
        Some(r) if Some(r.position) == last => Ok(TappedPrefill {
            session,
            residual: r.row,
            prefill_s,
        }),
        _ => Err(tap_error(
            "entry tap read no residual at the last prompt position",
        )),
    }
}

fn check_layer(model: &TextModel, layer: usize) -> Result<(), TextError> {
    let n = model.model().config().n_layer;
    if layer >= n {
        return Err(tap_error(format!(
            "entry tap layer {layer} beyond the model's {n} blocks"
        )));
    }
    Ok(())
}

/// The last token's residual after each of `layers` for `ids`, from a fresh session whose
/// forward stops after the deepest of them (nothing is decoded).
pub fn partial_residuals(
    model: &TextModel,
    ids: &[u32],
    layers: &[usize],
) -> Result<BTreeMap<usize, Vec<f32>>, TextError> {
    for &l in layers {
        check_layer(model, l)?;
    }
    let Some(last) = (ids.len() as u64).checked_sub(1) else {
        return Err(tap_error("no prompt tokens"));
    };
    let mut session = model.session(0)?;
    let mut tap = EntryTap::new(layers);
    tap.stop_at = Some(last);
    session.hooks_mut().add_post_block(Box::new(tap.clone()));
    match session.prefill(ids) {
        Ok(()) => {}
        Err(EngineError::Hook { reason, .. }) if reason == STOP => {}
        Err(e) => return Err(e.into()),
    }
    let mut out = BTreeMap::new();
    for &l in layers {
        match tap.reading(l) {
            Some(r) if r.position == last => {
                out.insert(l, r.row);
            }
            _ => return Err(tap_error(format!("no residual after block {l}"))),
        }
    }
    Ok(out)
}
