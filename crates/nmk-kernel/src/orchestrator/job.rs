//! Jobs: what a caller submits to the orchestrator. Untrusted: read from JSON with every field
//! bounded, never executed or judged here.

use std::collections::BTreeMap;

use nmk_det::Value;
use serde_json::Value as Json;

/// Longest job id, in characters.
pub const MAX_ID_CHARS: usize = 128;
/// Longest job text, in bytes.
pub const MAX_TEXT_BYTES: usize = 64 * 1024;
/// Most named inputs a job may carry.
pub const MAX_INPUTS: usize = 64;
/// Longest input name, in characters.
pub const MAX_INPUT_NAME_CHARS: usize = 64;
/// Largest trap budget a job may ask for.
pub const MAX_BUDGET: u32 = 10_000;
/// The trap budget of a job that names none.
pub const DEFAULT_BUDGET: u32 = 64;

/// Why a job was refused before anything ran.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    /// A field is missing, mistyped or out of bounds.
    #[error("bad job: {0}")]
    Invalid(String),
}

/// A job: a prompt, an optional declared type, named inputs and an optional trap budget.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    /// The caller's id for the job.
    pub id: String,
    /// What is asked.
    pub text: String,
    /// The job type the caller declares (wins over the matchers).
    pub declared_type: Option<String>,
    /// Named inputs (become artifacts of the run).
    pub inputs: BTreeMap<String, Value>,
    /// The request's trap budget (default [`DEFAULT_BUDGET`]).
    pub budget: Option<u32>,
}

fn id_ok(id: &str) -> bool {
    !id.is_empty()
        && id.chars().count() <= MAX_ID_CHARS
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

fn input_name_ok(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('_')
        && name.chars().count() <= MAX_INPUT_NAME_CHARS
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
}

impl Job {
    /// A job with no declared type, inputs or budget.
    pub fn new(id: &str, text: &str) -> Job {
        Job {
            id: id.to_owned(),
            text: text.to_owned(),
            declared_type: None,
            inputs: BTreeMap::new(),
            budget: None,
        }
    }

    /// Declares the job type.
    pub fn declared(mut self, job_type: &str) -> Job {
        self.declared_type = Some(job_type.to_owned());
        self
    }

    /// Adds a named input.
    pub fn input(mut self, name: &str, value: Value) -> Job {
        self.inputs.insert(name.to_owned(), value);
        self
    }

    /// Sets the trap budget.
    pub fn with_budget(mut self, budget: u32) -> Job {
        self.budget = Some(budget);
        self
    }

    /// The trap budget the job runs under.
    pub fn trap_budget(&self) -> u32 {
        self.budget.unwrap_or(DEFAULT_BUDGET)
    }

    /// Checks every bound; the orchestrator refuses a job that fails this.
    pub fn check(&self) -> Result<(), JobError> {
        let bad = |s: String| Err(JobError::Invalid(s));
        if !id_ok(&self.id) {
            return bad(format!(
                "id must be 1–{MAX_ID_CHARS} characters of [A-Za-z0-9_.-]"
            ));
        }
        if self.text.len() > MAX_TEXT_BYTES {
            return bad(format!("text is over {MAX_TEXT_BYTES} bytes"));
        }
        if self.inputs.len() > MAX_INPUTS {
            return bad(format!("more than {MAX_INPUTS} inputs"));
        }
        if let Some(name) = self.inputs.keys().find(|k| !input_name_ok(k)) {
            return bad(format!(
                "input name {:?} must be 1–{MAX_INPUT_NAME_CHARS} characters of [A-Za-z0-9_-], not starting with _",
                name.chars().take(80).collect::<String>()
            ));
        }
        if self.budget.is_some_and(|b| b > MAX_BUDGET) {
            return bad(format!("budget is over {MAX_BUDGET}"));
        }
        if self
            .declared_type
            .as_ref()
            .is_some_and(|t| t.chars().count() > MAX_INPUT_NAME_CHARS)
        {
            return bad("declared type is too long".into());
        }
        Ok(())
    }

    /// Reads a job from JSON: `{"id", "prompt" (or "text"), "type"?, "inputs"?, "budget"?}`.
    pub fn from_json(v: &Json) -> Result<Job, JobError> {
        let bad = |s: &str| JobError::Invalid(s.to_owned());
        let obj = v.as_object().ok_or_else(|| bad("a job is a JSON object"))?;
        let id = obj
            .get("id")
            .and_then(Json::as_str)
            .ok_or_else(|| bad("\"id\" must be a string"))?;
        let text = match (obj.get("prompt"), obj.get("text")) {
            (Some(Json::String(s)), _) | (None, Some(Json::String(s))) => s.as_str(),
            (None, None) => "",
            _ => return Err(bad("\"prompt\" must be a string")),
        };
        let mut job = Job::new(id, text);
        match obj.get("type") {
            None | Some(Json::Null) => {}
            Some(Json::String(t)) => job.declared_type = Some(t.clone()),
            Some(_) => return Err(bad("\"type\" must be a string")),
        }
        match obj.get("inputs") {
            None | Some(Json::Null) => {}
            Some(Json::Object(m)) => {
                if m.len() > MAX_INPUTS {
                    return Err(bad("too many inputs"));
                }
                for (k, val) in m {
                    job.inputs.insert(k.clone(), Value::from_json(val));
                }
            }
            Some(_) => return Err(bad("\"inputs\" must be an object")),
        }
        match obj.get("budget") {
            None | Some(Json::Null) => {}
            Some(b) => {
                let n = b
                    .as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| bad("\"budget\" must be a non-negative integer"))?;
                job.budget = Some(n);
            }
        }
        job.check()?;
        Ok(job)
    }
}
