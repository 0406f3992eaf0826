//! The forward pass and decode loop: model configuration from GGUF metadata, weights, layers
//! (dense and MoE), KV cache, sampling, hooks and the `Session`.
