//! The forward pass and decode loop: model configuration from GGUF metadata, weights, layers
//! (dense and mixture-of-experts: [`moe`]), KV cache, sampling, hooks and the [`Session`].
//!
//! We own the loop because the kernel hooks every forward: post-block trap sites (residual
//! read/write), router taps and expert masks (MoE), logit masks, KV park and rollback.
//!
//! Determinism (ARCHITECTURE §3): per-position logits are bitwise identical across repeated
//! runs, thread counts, any chunking of a prefill (down to token by token), and
//! snapshot/restore/trim versus straight-through decoding. The design that gives this: every
//! reduction runs in a fixed order per output element (never split by batch or thread), and
//! attention visits keys in position order. Sampling uses our own PRNG ([`Rng`]), whose state is
//! part of a [`SessionSnapshot`].
//!
//! Modules: [`config`] (hyper-parameters), [`linear`] (weight matrices), [`weights`], [`rope`],
//! [`attention`], [`kv_cache`], [`model`] (the forward), [`hooks`], [`sampling`], [`session`], [`park`] (the byte
//! format of a parked session).
//! [`speculate`]: speculative greedy decoding (prompt-lookup drafts, batched verify, rollback).
//! [`token_gate`]: the commit gate per token (accept, mask-and-resample, stop).
//! [`mode_b`]: the research residual injector. [`lanes`]: many sessions, fair round-robin.

pub mod attention;
pub mod config;
pub mod error;
pub mod hooks;
pub mod kv_cache;
pub mod lanes;
pub mod linear;
pub mod mode_b;
pub mod model;
pub mod moe;
pub mod ops;
pub mod park;
pub mod rope;
pub mod sampling;
pub mod session;
pub mod speculate;
pub mod token_gate;
pub mod trap_sites;
pub mod weights;

pub use config::{Arch, ModelConfig, MoeConfig, RopeStyle, Scales};
pub use error::{EngineError, Result};
pub use hooks::{
    ExpertMask, ForbiddenIds, HookError, HookSet, LayerRoute, LogitMask, PostBlockHook, Residual,
    ResidualAdd, ResidualRecorder, RouterObserver,
};
pub use kv_cache::{KvCache, KvSnapshot};
pub use lanes::{FinishedLane, LaneEvent, LaneId, LaneScheduler};
pub use mode_b::ModeBInjector;
pub use model::{LogitsWanted, Model, Scratch};
pub use park::{PARK_MAGIC, PARK_VERSION, ParkBinding};
pub use sampling::{Rng, Sampler, SamplingParams, argmax};
pub use session::{
    GatedGeneration, GenerateParams, Generated, MAX_BATCH, Session, SessionOptions,
    SessionSnapshot, StepOut, StopReason,
};
pub use speculate::{
    Drafter, PromptLookup, SpeculativeOutput, SpeculativeParams, speculative_greedy,
};
pub use token_gate::{AcceptAll, DEFAULT_MAX_RESAMPLES, GateCounts, TokenGate, TokenVerdict};
pub use trap_sites::{TrapSites, TrapSitesError};
