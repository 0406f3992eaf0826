//! # nmk-det — the deterministic plane
//!
//! The only plane allowed to call a result correct. It owns the data model every verdict is
//! stated in ([`Value`]), the one canonical encoding and content hash of that data
//! ([`canonical`], [`ContentHash`]), the ordered [`ValidationLevel`]s a validator can certify, and
//! the deterministic validators themselves ([`oracles`]).
//!
//! It also runs model-written programs, but never in this process: [`sandbox`] drives confined
//! worker processes (the `nmk-sandbox` crate, the only one that links the interpreter) and
//! [`gate`] judges what they return against trusted generators and oracles.
//!
//! What it may not touch: the model. This crate never depends on `nmk-neural` or on the
//! interpreter, holds no handle on a session, and its only I/O is talking to sandbox workers;
//! everything it judges is handed to it as data.

pub mod canonical;
pub mod gate;
pub mod hash;
pub mod level;
pub mod oracles;
pub mod primitives;
pub mod sandbox;
pub mod value;

pub use canonical::{CanonicalError, decode, encode};
pub use hash::{ContentHash, HashParseError, hash_bytes, hash_value};
pub use level::{LevelParseError, ValidationLevel};
pub use value::{Finite, Integer, Value};
