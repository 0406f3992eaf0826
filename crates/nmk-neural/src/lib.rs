//! # nmk-neural — the neural plane (untrusted proposer)
//!
//! Owns everything that runs the language model: GGUF loading, the tokenizer and chat template,
//! the forward pass (dense and MoE), the decode loop, the KV cache, hooks and sampling, and the
//! entry-trap head (its file, the prefill tap that feeds it, its inference — never its verdict).
//!
//! What it may not touch: any other nmk crate. It holds no handle on a verdict, a capability or
//! the ledger; the kernel reaches it only through its own `Proposer` trait, implemented by the
//! binary. A test (`crates/nmk/tests/dependency_rule.rs`) enforces this.

pub mod engine;
pub mod entry_head;
pub mod gguf;
pub mod models;
pub mod prove;
pub mod quant;
pub mod text;
pub mod tokenizer;
