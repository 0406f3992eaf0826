//! # nmk-kernel — the scheduler plane
