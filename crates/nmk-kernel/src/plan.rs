//! Plans: the deterministic templates the kernel knows, and the normalisation of plans a model
//! proposes. Grants come from the job type's policy, never from what a plan declares: a
//! proposed capability outside the job's grants removes the task, it is never added to the grants.

use crate::capability::{Capability, Grants};
use crate::task::TaskSpec;

/// A deterministic plan template, by job type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Template {
    /// draft → syntax → schema → commit.
    StructuredOutput,
    /// draft → parse → tests → commit.
    CodeGen,
    /// extract → normalize → checks → note → verify → commit.
    CyberAlert,
}

impl Template {
    /// The template's name (`structured_output`, `code_gen`, `cyber_alert`).
    pub fn name(self) -> &'static str {
        match self {
            Template::StructuredOutput => "structured_output",
            Template::CodeGen => "code_gen",
            Template::CyberAlert => "cyber_alert",
        }
    }

    /// Looks a template up by name.
    pub fn by_name(name: &str) -> Option<Template> {
        [
            Template::StructuredOutput,
            Template::CodeGen,
            Template::CyberAlert,
        ]
        .into_iter()
        .find(|t| t.name() == name)
    }

    /// The capabilities a job of this type is granted: exactly those its template's nodes need.
    pub fn grants(self) -> Grants {
        let mut grants = Grants::none();
        for spec in self.tasks() {
            for cap in spec
                .capabilities
                .iter()
                .filter_map(|c| Capability::parse(c).ok())
            {
                grants.grant(cap);
            }
        }
        grants
    }

    /// The template's tasks, in order, the last one the root. Ops and validators named here must
    /// be registered by whoever runs the plan; admission refuses the plan otherwise.
    pub fn tasks(self) -> Vec<TaskSpec> {
        let draft = TaskSpec::new("draft", "draft").owned_by("model_lane");
        match self {
            Template::StructuredOutput => vec![
                draft,
                TaskSpec::new("syntax", "validate_syntax")
                    .after("draft")
                    .validated_by("is_json", "SYNTAX"),
                TaskSpec::new("schema", "validate_schema")
                    .after("syntax")
                    .validated_by("schema_ok", "SCHEMA")
                    .needs("op:validate_schema"),
                TaskSpec::new("commit", "commit")
                    .after("schema")
                    .root()
                    .owned_by("commit_trap"),
            ],
            Template::CodeGen => vec![
                draft,
                TaskSpec::new("parse", "ast_parse")
                    .after("draft")
                    .validated_by("compiles", "SYNTAX")
                    .needs("op:ast_parse"),
                TaskSpec::new("tests", "run_tests")
                    .after("parse")
                    .validated_by("tests_pass", "ORACLE")
                    .needs("op:run_tests"),
                TaskSpec::new("commit", "commit")
                    .after("tests")
                    .root()
                    .owned_by("commit_trap"),
            ],
            Template::CyberAlert => vec![
                TaskSpec::new("extract", "extract_observables").owned_by("model_lane"),
                TaskSpec::new("normalize", "normalize_iocs")
                    .after("extract")
                    .validated_by("iocs_ok", "PROPERTY"),
                TaskSpec::new("checks", "det_checks")
                    .after("normalize")
                    .validated_by("checks_ran", "ORACLE")
                    .needs("op:det_checks")
                    .owned_by("primitive:cyber"),
                TaskSpec::new("note", "draft_note")
                    .after("checks")
                    .owned_by("model_lane"),
                TaskSpec::new("verify", "verify_claims")
                    .after("note")
                    .validated_by("claims_grounded", "PROPERTY"),
                TaskSpec::new("commit", "commit")
                    .after("verify")
                    .root()
                    .owned_by("commit_trap"),
            ],
        }
    }
}

/// The outcome of normalising a proposed plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Normalized {
    /// Tasks kept, in the proposed order, owners defaulted to `model_lane`.
    pub kept: Vec<TaskSpec>,
    /// One line per removed task, naming it and why (`<id>:<kind> (unsupported op)`, …).
    pub rejected: Vec<String>,
}

/// Normalises a plan a model proposed: unknown ops and capabilities outside the job's grants are
/// removed (and named), empty owners become `model_lane`. Nothing here grants anything; the kept
/// tasks still go through admission.
pub fn normalize_proposed(
    proposals: Vec<TaskSpec>,
    op_exists: &dyn Fn(&str) -> bool,
    job_grants: &Grants,
) -> Normalized {
    let mut out = Normalized {
        kept: Vec::new(),
        rejected: Vec::new(),
    };
    for mut spec in proposals {
        if !op_exists(&spec.kind) {
            out.rejected
                .push(format!("{}:{} (unsupported op)", spec.id, spec.kind));
            continue;
        }
        let outside = spec.capabilities.iter().find(|c| {
            Capability::parse(c)
                .map(|cap| !job_grants.allows(&cap))
                .unwrap_or(true)
        });
        if let Some(cap) = outside {
            out.rejected.push(format!(
                "{}:{} (capability {cap} not granted to this job)",
                spec.id, spec.kind
            ));
            continue;
        }
        if spec.owner.is_empty() || spec.owner == "scheduler" {
            spec.owner = "model_lane".into();
        }
        out.kept.push(spec);
    }
    out
}
