//! Plan memory: what past jobs taught the orchestrator, persisted as one JSON file.
//!
//! It owns three maps — `details{scope:{key:value}}`, `templates{job_type:{template:{runs,
//! passes}}}` and `learnings{job_type:[…]}` (de-duplicated) — plus the job counters the
//! dashboard reads. Saving is atomic (§9 D12): the JSON goes to a temporary file in the same
//! directory, is flushed to disk, and is renamed over the old file, so a failed or interrupted
//! save leaves the previous file whole. Loading tolerates a missing file (empty memory) and
//! refuses a corrupt or oversized one with a typed error. It may not touch the ledger or judge
//! anything: it only remembers outcomes the scheduler already decided.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value as Json, json};

/// Largest plan-memory file read.
pub const MAX_FILE_BYTES: u64 = 8 << 20;
/// Most learnings kept per job type (the oldest are dropped first).
pub const MAX_LEARNINGS_PER_TYPE: usize = 200;
/// Longest scope, key, detail value or learning kept, in characters.
pub const MAX_TEXT_CHARS: usize = 2000;

/// Why plan memory could not be loaded or saved.
#[derive(Debug, thiserror::Error)]
pub enum PlanMemoryError {
    /// Reading or writing failed.
    #[error("plan memory {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The failure.
        source: io::Error,
    },
    /// The file is not plan memory.
    #[error("plan memory {path} is corrupt: {why}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The file is larger than [`MAX_FILE_BYTES`].
    #[error("plan memory {path} is {bytes} bytes, over the cap of {MAX_FILE_BYTES}")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        bytes: u64,
    },
}

/// Runs and passes of one template for one job type.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TemplateRecord {
    /// Jobs run with it.
    pub runs: u64,
    /// Of those, jobs whose root committed.
    pub passes: u64,
}

impl TemplateRecord {
    fn pass_rate(self) -> f64 {
        if self.runs == 0 {
            0.0
        } else {
            self.passes as f64 / self.runs as f64
        }
    }
}

/// What past jobs taught the orchestrator.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PlanMemory {
    /// Remembered facts by scope.
    pub details: BTreeMap<String, BTreeMap<String, String>>,
    /// Template outcomes by job type.
    pub templates: BTreeMap<String, BTreeMap<String, TemplateRecord>>,
    /// Lessons by job type, de-duplicated, oldest first.
    pub learnings: BTreeMap<String, Vec<String>>,
    /// Jobs submitted.
    pub jobs_total: u64,
    /// Jobs whose root committed.
    pub committed_total: u64,
    /// Jobs per job type.
    pub by_type: BTreeMap<String, u64>,
    /// The last job's id.
    pub last_job: Option<String>,
}

fn clip(s: &str) -> String {
    s.chars().take(MAX_TEXT_CHARS).collect()
}

impl PlanMemory {
    /// Remembers `key = value` in `scope`.
    pub fn remember(&mut self, scope: &str, key: &str, value: &str) {
        self.details
            .entry(clip(scope))
            .or_default()
            .insert(clip(key), clip(value));
    }

    /// A remembered detail.
    pub fn recall(&self, scope: &str, key: &str) -> Option<&str> {
        self.details
            .get(scope)
            .and_then(|m| m.get(key))
            .map(String::as_str)
    }

    /// Records one run of `template` for `job_type`.
    pub fn record_run(&mut self, job_type: &str, template: &str, passed: bool) {
        let rec = self
            .templates
            .entry(clip(job_type))
            .or_default()
            .entry(clip(template))
            .or_default();
        rec.runs = rec.runs.saturating_add(1);
        if passed {
            rec.passes = rec.passes.saturating_add(1);
        }
    }

    /// Adds a lesson for `job_type` unless it is already known.
    pub fn learn(&mut self, job_type: &str, lesson: &str) {
        let lesson = clip(lesson);
        let list = self.learnings.entry(clip(job_type)).or_default();
        if !list.contains(&lesson) {
            list.push(lesson);
            if list.len() > MAX_LEARNINGS_PER_TYPE {
                list.remove(0);
            }
        }
    }

    /// The template with the highest pass rate for `job_type`, ties broken by more runs (then by
    /// name, so the choice is deterministic). `None` when nothing is recorded.
    pub fn best_template(&self, job_type: &str) -> Option<&str> {
        let records = self.templates.get(job_type)?;
        records
            .iter()
            .filter(|(_, r)| r.runs > 0)
            .max_by(|(na, a), (nb, b)| {
                a.pass_rate()
                    .total_cmp(&b.pass_rate())
                    .then(a.runs.cmp(&b.runs))
                    .then(nb.cmp(na))
            })
            .map(|(name, _)| name.as_str())
    }

    /// Job types with a best template that has passed at least once, with that template.
    pub fn proven_templates(&self) -> BTreeMap<String, String> {
        self.templates
            .keys()
            .filter_map(|jt| {
                let best = self.best_template(jt)?;
                let passes = self.templates.get(jt)?.get(best)?.passes;
                (passes > 0).then(|| (jt.clone(), best.to_owned()))
            })
            .collect()
    }

    /// The memory as JSON.
    pub fn to_json(&self) -> Json {
        let templates: Map<String, Json> = self
            .templates
            .iter()
            .map(|(jt, recs)| {
                let recs: Map<String, Json> = recs
                    .iter()
                    .map(|(t, r)| (t.clone(), json!({"runs": r.runs, "passes": r.passes})))
                    .collect();
                (jt.clone(), Json::Object(recs))
            })
            .collect();
        json!({
            "details": self.details,
            "templates": templates,
            "learnings": self.learnings,
            "jobs_total": self.jobs_total,
            "committed_total": self.committed_total,
            "by_type": self.by_type,
            "last_job": self.last_job,
        })
    }

    /// Reads memory from JSON; anything not shaped like plan memory is an error naming what.
    pub fn from_json(v: &Json) -> Result<PlanMemory, String> {
        let obj = v.as_object().ok_or("top level is not an object")?;
        let mut mem = PlanMemory::default();
        let section = |name: &str| -> Result<Option<&Map<String, Json>>, String> {
            match obj.get(name) {
                None | Some(Json::Null) => Ok(None),
                Some(Json::Object(m)) => Ok(Some(m)),
                Some(_) => Err(format!("{name} is not an object")),
            }
        };
        for (scope, kv) in section("details")?.into_iter().flatten() {
            let kv = kv
                .as_object()
                .ok_or_else(|| format!("details.{scope} is not an object"))?;
            for (k, val) in kv {
                let val = val
                    .as_str()
                    .ok_or_else(|| format!("details.{scope}.{k} is not a string"))?;
                mem.remember(scope, k, val);
            }
        }
        for (jt, recs) in section("templates")?.into_iter().flatten() {
            let recs = recs
                .as_object()
                .ok_or_else(|| format!("templates.{jt} is not an object"))?;
            for (t, r) in recs {
                let count = |field: &str| {
                    r.get(field)
                        .and_then(Json::as_u64)
                        .ok_or_else(|| format!("templates.{jt}.{t}.{field} is not a count"))
                };
                let (runs, passes) = (count("runs")?, count("passes")?);
                if passes > runs {
                    return Err(format!("templates.{jt}.{t} has more passes than runs"));
                }
                mem.templates
                    .entry(clip(jt))
                    .or_default()
                    .insert(clip(t), TemplateRecord { runs, passes });
            }
        }
        for (jt, list) in section("learnings")?.into_iter().flatten() {
            let list = list
                .as_array()
                .ok_or_else(|| format!("learnings.{jt} is not a list"))?;
            for item in list {
                let text = item
                    .as_str()
                    .ok_or_else(|| format!("learnings.{jt} holds a non-string"))?;
                mem.learn(jt, text);
            }
        }
        let count = |name: &str| match obj.get(name) {
            None => Ok(0),
            Some(v) => v.as_u64().ok_or_else(|| format!("{name} is not a count")),
        };
        mem.jobs_total = count("jobs_total")?;
        mem.committed_total = count("committed_total")?;
        for (jt, n) in section("by_type")?.into_iter().flatten() {
            let n = n
                .as_u64()
                .ok_or_else(|| format!("by_type.{jt} is not a count"))?;
            mem.by_type.insert(clip(jt), n);
        }
        mem.last_job = obj.get("last_job").and_then(Json::as_str).map(clip);
        Ok(mem)
    }

    /// Loads memory from `path`: a missing file is empty memory; a corrupt or oversized one is
    /// refused.
    pub fn load(path: &Path) -> Result<PlanMemory, PlanMemoryError> {
        let io_err = |source| PlanMemoryError::Io {
            path: path.to_owned(),
            source,
        };
        let meta = match fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(PlanMemory::default()),
            Err(e) => return Err(io_err(e)),
        };
        if meta.len() > MAX_FILE_BYTES {
            return Err(PlanMemoryError::TooLarge {
                path: path.to_owned(),
                bytes: meta.len(),
            });
        }
        let text = fs::read_to_string(path).map_err(io_err)?;
        let corrupt = |why: String| PlanMemoryError::Corrupt {
            path: path.to_owned(),
            why,
        };
        let json: Json = serde_json::from_str(&text).map_err(|e| corrupt(e.to_string()))?;
        PlanMemory::from_json(&json).map_err(corrupt)
    }

    /// Saves memory to `path` atomically: temp file in the same directory, fsync, rename. On
    /// any failure the file at `path` is exactly what it was before.
    pub fn save(&self, path: &Path) -> Result<(), PlanMemoryError> {
        let text =
            serde_json::to_string_pretty(&self.to_json()).map_err(|e| PlanMemoryError::Io {
                path: path.to_owned(),
                source: io::Error::other(e),
            })?;
        write_atomic(path, text.as_bytes()).map_err(|source| PlanMemoryError::Io {
            path: path.to_owned(),
            source,
        })
    }
}

/// The temporary file a save of `path` writes before renaming: same directory (a rename
/// across file systems would not be atomic), named after the target and this process.
pub fn temp_path_for(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "plan_memory.json".into());
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = temp_path_for(path);
    let written = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if written.is_err() && tmp.is_file() {
        // Best effort: a stale temp file is harmless, the target is untouched either way.
        let _ = fs::remove_file(&tmp);
    }
    written?;
    // Persist the rename itself; not every platform lets a directory be opened for syncing.
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && let Ok(d) = File::open(dir)
    {
        let _ = d.sync_all();
    }
    Ok(())
}
