//! The content-addressed artifact store: tasks pass refs, never blobs.
//!
//! A ref is the SHA-256 of the value's canonical encoding, so putting the same content twice
//! yields the same ref (de-duplicated), and a ref names exactly one content.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use nmk_det::{ContentHash, Value, canonical, hash_bytes};

/// A reference to stored content: `artifact:<sha256 hex>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ArtifactRef(pub ContentHash);

impl ArtifactRef {
    /// The content hash the ref names.
    pub fn hash(&self) -> ContentHash {
        self.0
    }
}

impl fmt::Display for ArtifactRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "artifact:{}", self.0)
    }
}

impl FromStr for ArtifactRef {
    type Err = ArtifactError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.strip_prefix("artifact:")
            .and_then(|hex| hex.parse().ok())
            .map(ArtifactRef)
            .ok_or_else(|| ArtifactError::BadRef(s.chars().take(100).collect()))
    }
}

/// What the store knows about an artifact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactMeta {
    /// The ref.
    pub reference: ArtifactRef,
    /// The kind given at the first put (`blob`, `result:<op>`, …).
    pub kind: String,
    /// Size of the canonical encoding in bytes.
    pub bytes: usize,
}

/// Artifact store errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArtifactError {
    /// Text that is not `artifact:<hex>`.
    #[error("malformed artifact ref {0:?}")]
    BadRef(String),
    /// Storing the value would pass the store's byte cap.
    #[error("artifact store full: {needed} bytes needed, {left} left of {cap}")]
    Full {
        /// Bytes of the new value.
        needed: usize,
        /// Bytes left.
        left: usize,
        /// The cap.
        cap: usize,
    },
}

/// Default byte cap of a store (the sum of canonical encodings).
pub const DEFAULT_CAP_BYTES: usize = 256 << 20;

/// Values by content hash, with a byte cap.
#[derive(Debug)]
pub struct ArtifactStore {
    items: HashMap<ContentHash, (Value, ArtifactMeta)>,
    bytes: usize,
    cap: usize,
}

impl Default for ArtifactStore {
    fn default() -> Self {
        ArtifactStore::with_cap(DEFAULT_CAP_BYTES)
    }
}

impl ArtifactStore {
    /// An empty store holding at most `cap` bytes of canonical encodings.
    pub fn with_cap(cap: usize) -> Self {
        ArtifactStore {
            items: HashMap::new(),
            bytes: 0,
            cap,
        }
    }

    /// Stores `value` (or finds it already stored) and returns its ref.
    pub fn put(&mut self, value: Value, kind: &str) -> Result<ArtifactRef, ArtifactError> {
        let text = canonical::encode(&value);
        let hash = hash_bytes(text.as_bytes());
        let reference = ArtifactRef(hash);
        if self.items.contains_key(&hash) {
            return Ok(reference);
        }
        let left = self.cap.saturating_sub(self.bytes);
        if text.len() > left {
            return Err(ArtifactError::Full {
                needed: text.len(),
                left,
                cap: self.cap,
            });
        }
        self.bytes += text.len();
        let meta = ArtifactMeta {
            reference,
            kind: kind.to_owned(),
            bytes: text.len(),
        };
        self.items.insert(hash, (value, meta));
        Ok(reference)
    }

    /// The value a ref names.
    pub fn get(&self, reference: &ArtifactRef) -> Option<&Value> {
        self.items.get(&reference.0).map(|(v, _)| v)
    }

    /// Whether the ref names stored content.
    pub fn has(&self, reference: &ArtifactRef) -> bool {
        self.items.contains_key(&reference.0)
    }

    /// Metadata of a stored artifact.
    pub fn meta(&self, reference: &ArtifactRef) -> Option<&ArtifactMeta> {
        self.items.get(&reference.0).map(|(_, m)| m)
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Number of distinct artifacts.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_content_gets_one_ref() {
        let mut store = ArtifactStore::default();
        let a = store.put(Value::str("x"), "blob").unwrap();
        let b = store.put(Value::str("x"), "other").unwrap();
        assert_eq!(a, b);
        assert_eq!(store.len(), 1);
        assert_eq!(store.meta(&a).unwrap().kind, "blob");
        let c = store.put(Value::str("y"), "blob").unwrap();
        assert_ne!(a, c);
        assert_eq!(store.get(&c), Some(&Value::str("y")));
    }

    #[test]
    fn refs_round_trip_as_text() {
        let mut store = ArtifactStore::default();
        let r = store.put(Value::int(7), "blob").unwrap();
        assert_eq!(r.to_string().parse::<ArtifactRef>(), Ok(r));
        assert!("artifact:zz".parse::<ArtifactRef>().is_err());
        assert!("a-1".parse::<ArtifactRef>().is_err());
    }

    #[test]
    fn the_byte_cap_refuses_what_does_not_fit() {
        let mut store = ArtifactStore::with_cap(10);
        assert!(store.put(Value::str("abc"), "blob").is_ok());
        let err = store.put(Value::str("0123456789"), "blob").unwrap_err();
        assert!(matches!(err, ArtifactError::Full { .. }));
        assert_eq!(store.len(), 1);
    }
}
