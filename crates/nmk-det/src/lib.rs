//! # nmk-det — the deterministic plane
//!
//! The only plane allowed to call a result correct. It owns the data model every verdict is
//! stated in ([`Value`]), the one canonical encoding and content hash of that data
//! ([`canonical`], [`ContentHash`]), the ordered [`ValidationLevel`]s a validator can certify, and
//! the deterministic validators themselves ([`oracles`]).
//!
//! What it may not touch: the model. This crate never depends on `nmk-neural`, holds no handle on
//! a session, and does no I/O of its own; everything it judges is handed to it as data.

pub mod canonical;
pub mod hash;
pub mod level;
pub mod oracles;
pub mod value;

pub use canonical::{CanonicalError, decode, encode};
pub use hash::{ContentHash, HashParseError, hash_bytes, hash_value};
pub use level::{LevelParseError, ValidationLevel};
pub use value::{Finite, Integer, Value};
