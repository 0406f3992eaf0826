//! The job classifier: which job type a job is, which template plans it, and what it is
//! granted. Rules in order — coding, cyber, structured output — then the `generic` fallback;
//! a declared type wins over the matchers; plan memory may swap the template for one the job
//! type's policy can run (never the grants, which are that policy alone, §9 D22). It reads
//! text and input names only.

use crate::capability::Grants;
use crate::plan::Template;

use super::job::Job;
use super::plan_memory::PlanMemory;

/// The kinds of job the orchestrator knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobType {
    /// Write code that passes tests.
    Coding,
    /// Triage a security alert.
    Cyber,
    /// Produce JSON that fits a schema.
    StructuredOutput,
    /// Anything else (planned as structured output).
    Generic,
}

/// Words that make a job a cyber job (matched as whole words, case-insensitively).
pub const CYBER_WORDS: &[&str] = &[
    "alert", "ioc", "beacon", "malware", "incident", "mitre", "soc", "forensic", "cve",
];

impl JobType {
    /// The type's name (`coding`, `cyber`, `structured_output`, `generic`).
    pub fn name(self) -> &'static str {
        match self {
            JobType::Coding => "coding",
            JobType::Cyber => "cyber",
            JobType::StructuredOutput => "structured_output",
            JobType::Generic => "generic",
        }
    }

    /// Reads a declared type: a type name or its template's name.
    pub fn parse(s: &str) -> Option<JobType> {
        match s.trim().to_ascii_lowercase().as_str() {
            "coding" | "code_gen" => Some(JobType::Coding),
            "cyber" | "cyber_alert" => Some(JobType::Cyber),
            "structured_output" => Some(JobType::StructuredOutput),
            "generic" => Some(JobType::Generic),
            _ => None,
        }
    }

    /// The template the type is planned with unless memory knows better.
    pub fn default_template(self) -> Template {
        match self {
            JobType::Coding => Template::CodeGen,
            JobType::Cyber => Template::CyberAlert,
            JobType::StructuredOutput | JobType::Generic => Template::StructuredOutput,
        }
    }

    /// The type's policy: the only capabilities any of its plans may use.
    pub fn policy(self) -> Grants {
        self.default_template().grants()
    }
}

/// How a job was classified.
#[derive(Debug, Clone, PartialEq)]
pub struct Classification {
    /// The job type.
    pub job_type: JobType,
    /// The template that plans it.
    pub template: Template,
    /// What decided the type: `declared`, `matched` or `fallback`.
    pub rule: &'static str,
    /// Whether plan memory chose the template.
    pub template_from_memory: bool,
    /// The trap budget.
    pub budget: u32,
}

fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
}

fn has_python_def(text: &str) -> bool {
    text.match_indices("def ").any(|(at, _)| {
        let boundary = text[..at]
            .chars()
            .next_back()
            .is_none_or(|c| c.is_whitespace() || c == ':' || c == ';');
        let rest = text[at + 4..].trim_start();
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        boundary && !name.is_empty() && rest[name.len()..].trim_start().starts_with('(')
    })
}

fn is_coding(job: &Job) -> bool {
    let lower = job.text.to_lowercase();
    has_python_def(&job.text)
        || (lower.contains("function") && lower.contains("return"))
        || job.inputs.contains_key("entry")
        || job.inputs.contains_key("cases")
}

fn is_cyber(job: &Job) -> bool {
    words(&job.text).any(|w| CYBER_WORDS.contains(&w.as_str()))
}

fn is_structured(job: &Job) -> bool {
    let lower = job.text.to_lowercase();
    lower.contains("json") || lower.contains("schema") || job.inputs.contains_key("schema")
}

/// Classifies `job`, letting `memory` pick the template of its type.
pub fn classify(job: &Job, memory: &PlanMemory) -> Classification {
    let (job_type, rule) = match &job.declared_type {
        Some(declared) => match JobType::parse(declared) {
            Some(t) => (t, "declared"),
            None => (JobType::Generic, "fallback"),
        },
        None => {
            if is_coding(job) {
                (JobType::Coding, "matched")
            } else if is_cyber(job) {
                (JobType::Cyber, "matched")
            } else if is_structured(job) {
                (JobType::StructuredOutput, "matched")
            } else {
                (JobType::Generic, "fallback")
            }
        }
    };
    // A remembered template the type's policy cannot run is ignored: following it would only
    // be refused (§9 D22), and a template that never runs could never lose its place in memory.
    let policy = job_type.policy();
    let remembered = memory
        .best_template(job_type.name())
        .and_then(Template::by_name)
        .filter(|t| t.grants().iter().all(|cap| policy.allows(cap)));
    Classification {
        job_type,
        template: remembered.unwrap_or(job_type.default_template()),
        rule,
        template_from_memory: remembered.is_some(),
        budget: job.trap_budget(),
    }
}
