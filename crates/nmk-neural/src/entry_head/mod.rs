//! The entry-trap head (spec §6.4.10, fixed per §9 D37): a small classifier over the
//! last-token residual after block `L`, read during the request's own prefill.
//!
//! Owns the head file ([`HeadFile`]: format, bounds-checked loading, the binding to one model
//! file and one prompt-encoding template), inference in plain f32 Rust (RMSNorm → Linear(d, h)
//! → GELU → Linear(h, C) over the z-scored residual, softmax confidence), and the post-block
//! hook that taps the residual ([`EntryTap`]) on the session that goes on to decode.
//!
//! What it may not touch: the decision. A head only proposes a class and a confidence; the
//! kernel disposes (threshold, capability, extraction, lexical fallback). Training lives in
//! the binary (`nmk train-head`), which writes files this module reads.

mod format;
mod tap;

pub use format::{
    HEAD_MAGIC, HEAD_VERSION, HeadError, HeadFile, HeadWeights, MAX_CLASSES, MAX_HIDDEN, MAX_WIDTH,
    RMS_EPS, SD_EPS,
};
pub use tap::{EntryTap, TapReading, TappedPrefill, partial_residuals, prefill_with_tap};

/// The prompt-encoding template a head is trained on and must be read with: one user turn
/// through the model's chat template with the generation prompt, exactly what `nmk run`
/// prefills (the request's own prefill, §9 D37).
pub const CHAT_TEMPLATE_ID: &str = "chat-user-turn-v1";

/// GELU, tanh form (the form the trainer uses).
pub fn gelu(x: f32) -> f32 {
    const C: f32 = 0.797_884_6; // sqrt(2/pi)
    0.5 * x * (1.0 + (C * (x + 0.044_715 * x * x * x)).tanh())
}
