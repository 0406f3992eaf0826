//! Admission: the fail-closed gate every task (repairs included) passes before it may run.

use std::collections::{BTreeMap, HashSet};

use nmk_det::ValidationLevel;

use crate::capability::Capability;
use crate::ops::OpTier;
use crate::task::{Task, TaskSpec, TaskStatus};
use crate::verification::Verification;

/// Why a task or plan was refused. Nothing of a refused plan is admitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Reject {
    /// The op is not registered.
    #[error("unsupported op: {0:?}")]
    UnsupportedOp(String),
    /// A declared capability is not well-formed.
    #[error("malformed capability: {0:?}")]
    MalformedCapability(String),
    /// A declared capability is not granted.
    #[error("missing capability: {0:?}")]
    MissingCapability(String),
    /// The named validator is not registered.
    #[error("unknown validator: {0:?}")]
    UnknownValidator(String),
    /// The task has no validator and its op is not registered as judgment-only.
    #[error("no validator for op {0:?} (register it as judgment-only to run it without one)")]
    NoValidator(String),
    /// The declared level is not a level.
    #[error("malformed level: {0:?}")]
    MalformedLevel(String),
    /// A syscall-tier task does not declare its op's capability itself.
    #[error("syscall op {op:?} requires the task to declare {cap:?}")]
    SyscallCapabilityNotDeclared {
        /// The op.
        op: String,
        /// Its capability.
        cap: String,
    },
    /// A syscall-tier task without a validator.
    #[error("syscall op {0:?} requires a validator")]
    SyscallNeedsValidator(String),
    /// A syscall-tier task claims more than its op's ceiling.
    #[error("syscall op {op:?} claims {level}, above its ceiling {ceiling}")]
    LevelAboveCeiling {
        /// The op.
        op: String,
        /// Declared level.
        level: ValidationLevel,
        /// The op's ceiling.
        ceiling: ValidationLevel,
    },
    /// A dependency names no admitted or co-admitted task.
    #[error("task {task:?} depends on unknown task {dep:?}")]
    UnknownDependency {
        /// The task.
        task: String,
        /// The unknown id.
        dep: String,
    },
    /// The plan's dependencies form a cycle.
    #[error("dependency cycle through {0:?}")]
    Cycle(Vec<String>),
    /// The id is already taken.
    #[error("duplicate task id {0:?}")]
    DuplicateTask(String),
    /// A second root.
    #[error("task {0:?} is a second root")]
    SecondRoot(String),
    /// An input names content the store does not hold.
    #[error("task {task:?} input {input:?} names no stored artifact")]
    UnknownArtifact {
        /// The task.
        task: String,
        /// The input name.
        input: String,
    },
    /// An input name equals a dependency id (dependency results are keyed by id).
    #[error("task {task:?} input {input:?} clashes with a dependency of the same id")]
    InputNameClash {
        /// The task.
        task: String,
        /// The clashing name.
        input: String,
    },
    /// A task id that is empty, too long, or has characters other than `[A-Za-z0-9_.:/-]`.
    #[error("malformed task id {0:?}")]
    MalformedId(String),
}

/// What the admission checks need to know about the kernel.
pub(crate) struct AdmissionView<'a> {
    pub ops: &'a BTreeMap<String, crate::ops::OpSpec>,
    pub validators: &'a HashSet<String>,
    pub grants: &'a crate::capability::Grants,
    pub existing: &'a HashSet<String>,
    pub has_root: bool,
    pub artifact_exists: &'a dyn Fn(&crate::artifact::ArtifactRef) -> bool,
}

fn id_ok(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 200
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '/' | '-'))
}

/// Checks a whole plan; on success returns the admitted tasks in plan order (status still
/// `New`: the scheduler sets READY or BLOCKED).
pub(crate) fn admit_plan(view: &AdmissionView<'_>, plan: &[TaskSpec]) -> Result<Vec<Task>, Reject> {
    let mut batch_ids: HashSet<&str> = HashSet::new();
    for spec in plan {
        if !id_ok(&spec.id) {
            return Err(Reject::MalformedId(spec.id.chars().take(100).collect()));
        }
        if view.existing.contains(&spec.id) || !batch_ids.insert(&spec.id) {
            return Err(Reject::DuplicateTask(spec.id.clone()));
        }
    }
    let mut roots = usize::from(view.has_root);
    let mut admitted = Vec::with_capacity(plan.len());
    for spec in plan {
        if spec.is_root {
            roots += 1;
            if roots > 1 {
                return Err(Reject::SecondRoot(spec.id.clone()));
            }
        }
        admitted.push(admit_one(view, &batch_ids, spec)?);
    }
    check_acyclic(plan)?;
    Ok(admitted)
}

fn admit_one(
    view: &AdmissionView<'_>,
    batch: &HashSet<&str>,
    spec: &TaskSpec,
) -> Result<Task, Reject> {
    // 1. The op exists.
    let op = view
        .ops
        .get(&spec.kind)
        .ok_or_else(|| Reject::UnsupportedOp(spec.kind.clone()))?;
    // 2. Capabilities are well-formed and granted.
    let mut caps = Vec::with_capacity(spec.capabilities.len());
    for text in &spec.capabilities {
        let cap = Capability::parse(text).map_err(|_| Reject::MalformedCapability(text.clone()))?;
        if !view.grants.allows(&cap) {
            return Err(Reject::MissingCapability(text.clone()));
        }
        caps.push(cap);
    }
    // 2b. The op's own capability, declared or not.
    if let Some(required) = &op.required_capability
        && !view.grants.allows(required)
    {
        return Err(Reject::MissingCapability(required.to_string()));
    }
    // 3. A registered validator with a well-formed level, or an explicitly judgment-only op.
    let validator = match &spec.validator {
        Some(v) => {
            let level: ValidationLevel = v
                .level
                .parse()
                .map_err(|_| Reject::MalformedLevel(v.level.clone()))?;
            if !view.validators.contains(&v.name) {
                return Err(Reject::UnknownValidator(v.name.clone()));
            }
            Some((v.name.clone(), level))
        }
        None => {
            if op.tier != OpTier::JudgmentOnly {
                return Err(Reject::NoValidator(spec.kind.clone()));
            }
            None
        }
    };
    // 4. Syscall tier: own capability, mandatory validator, level within the ceiling.
    if let OpTier::Syscall {
        capability,
        ceiling,
    } = &op.tier
    {
        if !caps.contains(capability) {
            return Err(Reject::SyscallCapabilityNotDeclared {
                op: spec.kind.clone(),
                cap: capability.to_string(),
            });
        }
        let Some((_, level)) = &validator else {
            return Err(Reject::SyscallNeedsValidator(spec.kind.clone()));
        };
        if level > ceiling {
            return Err(Reject::LevelAboveCeiling {
                op: spec.kind.clone(),
                level: *level,
                ceiling: *ceiling,
            });
        }
    }
    // 5. Dependencies name known tasks; inputs name stored content and do not clash.
    for dep in &spec.dependencies {
        if !view.existing.contains(dep) && !batch.contains(dep.as_str()) {
            return Err(Reject::UnknownDependency {
                task: spec.id.clone(),
                dep: dep.clone(),
            });
        }
    }
    for (name, r) in &spec.input_refs {
        if !(view.artifact_exists)(r) {
            return Err(Reject::UnknownArtifact {
                task: spec.id.clone(),
                input: name.clone(),
            });
        }
        if spec.dependencies.contains(name) {
            return Err(Reject::InputNameClash {
                task: spec.id.clone(),
                input: name.clone(),
            });
        }
    }
    Ok(Task {
        id: spec.id.clone(),
        kind: spec.kind.clone(),
        owner: spec.owner.clone(),
        reopen: None,
        status: TaskStatus::New,
        input_refs: spec.input_refs.clone(),
        contract: spec.contract.clone(),
        validator,
        capabilities: caps,
        budget: spec.budget,
        dependencies: spec.dependencies.clone(),
        result_ref: None,
        proof: None,
        verification: Verification::Unverified,
        level: ValidationLevel::None,
        retries: 0,
        abort_reason: None,
        is_root: spec.is_root,
        failed_results: Vec::new(),
    })
}

/// Kahn's algorithm over the plan's own edges (dependencies on already admitted tasks cannot
/// close a cycle: those tasks cannot depend on new ones).
fn check_acyclic(plan: &[TaskSpec]) -> Result<(), Reject> {
    let ids: HashSet<&str> = plan.iter().map(|s| s.id.as_str()).collect();
    let mut indegree: BTreeMap<&str, usize> = plan.iter().map(|s| (s.id.as_str(), 0)).collect();
    let mut dependents: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for spec in plan {
        for dep in spec
            .dependencies
            .iter()
            .filter(|d| ids.contains(d.as_str()))
        {
            *indegree.entry(spec.id.as_str()).or_insert(0) += 1;
            dependents
                .entry(dep.as_str())
                .or_default()
                .push(spec.id.as_str());
        }
    }
    let mut ready: Vec<&str> = indegree
        .iter()
        .filter(|(_, n)| **n == 0)
        .map(|(id, _)| *id)
        .collect();
    let mut seen = 0usize;
    while let Some(id) = ready.pop() {
        seen += 1;
        for next in dependents.get(id).into_iter().flatten() {
            if let Some(n) = indegree.get_mut(next) {
                *n -= 1;
                if *n == 0 {
                    ready.push(next);
                }
            }
        }
    }
    if seen == plan.len() {
        Ok(())
    } else {
        let stuck = indegree
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .map(|(id, _)| id.to_owned())
            .collect();
        Err(Reject::Cycle(stuck))
    }
}
