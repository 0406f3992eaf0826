//! Deterministic validators (lane oracles) that judge text outputs without executing anything.
