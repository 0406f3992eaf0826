//! The fact loop as a scheduler op (spec §5.6 `register_fact_loop_executor`): a task of op
//! `fact_loop` runs governed fact dispatch on its prompt, and a validator re-checks the released
//! answer.
//!
//! Owns the op's executor ([`FactLoopExecutor`]), its validator ([`FactLoopValidator`],
//! registered as `<op>_validated`) and their registration. The op is an ordinary (not syscall)
//! op that requires capability `fact:<op>` (default) at admission, declared or not; dispatch
//! then runs without a grant set, since admission already gated it.
//!
//! The prompt is the task's input `prompt`, else the job prompt given at registration; a task
//! with neither (or a prompt over [`MAX_PROMPT_BYTES`]) produces a result with `ok: false` and
//! zero generations, which the validator fails.
//!
//! The verdict is the validator's, never the executor's: it routes the prompt again with the same
//! fact router and judges the released answer with the spec's own deterministic check. Since
//! the loop releases the base answer when it passed and the grounded one otherwise, that is
//! exactly base_validated ∨ (used_facts ∧ final_validated). A prompt no fact route owns is a
//! pass-through: nothing checks it, so the validator says [`Verdict::Unjudged`] and the task
//! is kept at JUDGMENT — never VALIDATED (the original's D24).
//!
//! What it may not touch: a model other than through the [`FactLane`] it was given, the grant
//! set (registration grants nothing), and facts (those come from the router's specs).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use nmk_det::{ValidationLevel, Value};

use super::dispatch::{FactRouter, Routed, dispatch};
use super::{FactLane, FactLoopConfig};
use crate::capability::Capability;
use crate::k_policy::CostSource;
use crate::ledger::ValidatorId;
use crate::ops::{
    ExecCall, ExecError, ExecOutcome, Executor, OpSpec, ValidationCall, Validator, Verdict,
};
use crate::scheduler::{Scheduler, SchedulerError};

/// The default op name.
pub const FACT_LOOP_OP: &str = "fact_loop";

/// Version of the op and its validator, written to the ledger.
pub const FACT_LOOP_OP_VERSION: &str = "1";

/// Longest prompt the executor will hand to the model.
pub const MAX_PROMPT_BYTES: usize = 16 * 1024;

/// `routed` in a result when no fact route owns the prompt.
pub const ROUTED_NONE: &str = "none";

/// Where the executor reads the machine's load (any failure reads as cost 1.0).
pub type CostProbe = Arc<dyn Fn() -> Result<f64, String> + Send + Sync>;

/// How to register the op.
#[derive(Clone)]
pub struct FactLoopOptions {
    /// Op name (default [`FACT_LOOP_OP`]); the validator is `<op>_validated`.
    pub op: String,
    /// Capability the op requires (default `fact:<op>`).
    pub capability: Option<String>,
    /// Level a checked pass certifies (default PROPERTY).
    pub level: ValidationLevel,
    /// The fact routes.
    pub router: FactRouter,
    /// The governed loop's policy, importance and budget.
    pub config: FactLoopConfig,
    /// The machine's load.
    pub cost: CostProbe,
    /// The job's prompt, used when a task has no `prompt` input.
    pub job_prompt: Option<String>,
}

impl Default for FactLoopOptions {
    fn default() -> FactLoopOptions {
        FactLoopOptions {
            op: FACT_LOOP_OP.to_owned(),
            capability: None,
            level: ValidationLevel::Property,
            router: FactRouter::default(),
            config: FactLoopConfig::default(),
            cost: Arc::new(|| Err("no cost probe configured".to_owned())),
            job_prompt: None,
        }
    }
}

impl std::fmt::Debug for FactLoopOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FactLoopOptions")
            .field("op", &self.op)
            .field("capability", &self.capability)
            .field("level", &self.level)
            .finish()
    }
}

/// What the registration installed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FactLoopRegistration {
    /// The op name.
    pub op: String,
    /// The capability it requires (not granted by registration).
    pub capability: String,
    /// The validator's registered name.
    pub validator: String,
    /// The level tasks should declare.
    pub level: ValidationLevel,
}

impl FactLoopRegistration {
    /// A task of this op, with its validator and level, declaring the capability.
    pub fn task(&self, id: &str) -> crate::task::TaskSpec {
        crate::task::TaskSpec::new(id, self.op.clone())
            .validated_by(&self.validator, self.level.as_str())
            .needs(&self.capability)
    }
}

/// The executor of the fact-loop op.
pub struct FactLoopExecutor {
    lane: Mutex<Box<dyn FactLane + Send>>,
    router: FactRouter,
    config: FactLoopConfig,
    cost: CostProbe,
    job_prompt: Option<String>,
}

fn flag(m: &mut BTreeMap<String, Value>, k: &str, b: bool) {
    m.insert(k.to_owned(), Value::Bool(b));
}

impl FactLoopExecutor {
    fn prompt<'c>(&'c self, call: &'c ExecCall<'_>) -> Result<&'c str, String> {
        let prompt = match call.inputs.get("prompt") {
            Some(Value::Str(p)) => p.as_str(),
            Some(_) => return Err("input prompt is not text".to_owned()),
            None => self
                .job_prompt
                .as_deref()
                .ok_or_else(|| "no prompt: neither a prompt input nor a job prompt".to_owned())?,
        };
        if prompt.trim().is_empty() {
            return Err("empty prompt".to_owned());
        }
        if prompt.len() > MAX_PROMPT_BYTES {
            return Err(format!(
                "prompt of {} bytes exceeds {MAX_PROMPT_BYTES}",
                prompt.len()
            ));
        }
        Ok(prompt)
    }
}

impl Executor for FactLoopExecutor {
    fn execute(&self, call: &ExecCall<'_>) -> Result<ExecOutcome, ExecError> {
        let mut m: BTreeMap<String, Value> = BTreeMap::new();
        let prompt = match self.prompt(call) {
            Ok(p) => p,
            Err(why) => {
                flag(&mut m, "ok", false);
                m.insert("error".into(), Value::str(why));
                m.insert("generations".into(), Value::int(0u64));
                return Ok(ExecOutcome::Done(Value::Map(m)));
            }
        };
        let mut lane = self
            .lane
            .lock()
            .map_err(|_| ExecError("fact lane lock poisoned".into()))?;
        let probe = &*self.cost;
        let d = dispatch(
            lane.as_mut(),
            prompt,
            &self.router,
            None,
            &CostSource::Probe(probe),
            &self.config,
        )
        .map_err(|e| ExecError(e.to_string()))?;
        flag(&mut m, "ok", true);
        m.insert("prompt".into(), Value::str(prompt));
        m.insert("answer".into(), Value::str(d.answer.clone()));
        let routed = match d.routed {
            Routed::Spec(name) => name,
            // Dispatch ran without grants, so a denial cannot happen; recorded if it ever does.
            Routed::CapDenied(name) => name,
            Routed::None => ROUTED_NONE,
        };
        m.insert("routed".into(), Value::str(routed));
        m.insert("generations".into(), Value::int(u64::from(d.generations)));
        m.insert("tokens".into(), Value::int(u64::from(d.tokens)));
        if let Some(r) = &d.refusal {
            m.insert("refusal".into(), Value::str(r.clone()));
        }
        let (used, base, fin, k, facts, grounding, note) = match &d.outcome {
            Some(o) => (
                o.used_facts,
                o.audit.base_validated,
                o.audit.final_validated,
                o.k,
                o.facts
                    .iter()
                    .map(|f| {
                        Value::map([
                            ("label", Value::str(f.label.clone())),
                            ("value", Value::str(f.value.clone())),
                        ])
                    })
                    .collect(),
                o.grounding.map(|g| g.as_str()),
                Some(o.audit.note.clone()),
            ),
            None => (false, false, false, 0, Vec::new(), None, None),
        };
        flag(&mut m, "used_facts", used);
        // The loop's own view; the task's verdict is the validator's re-check.
        flag(&mut m, "base_validated", base);
        flag(&mut m, "final_validated", fin);
        m.insert("k".into(), Value::int(u64::from(k)));
        m.insert("facts".into(), Value::List(facts));
        m.insert(
            "grounding".into(),
            grounding.map_or(Value::Null, Value::str),
        );
        m.insert("note".into(), note.map_or(Value::Null, Value::str));
        Ok(ExecOutcome::Done(Value::Map(m)))
    }
}

/// The validator `<op>_validated`: re-routes the result's prompt and checks its answer.
pub struct FactLoopValidator {
    name: String,
    router: FactRouter,
}

impl FactLoopValidator {
    /// The validator registered as `name`, judging with `router`'s specs.
    pub fn new(name: &str, router: FactRouter) -> FactLoopValidator {
        FactLoopValidator {
            name: name.to_owned(),
            router,
        }
    }
}

impl Validator for FactLoopValidator {
    fn id(&self) -> ValidatorId {
        ValidatorId::new(&self.name, FACT_LOOP_OP_VERSION)
    }

    fn validate(&self, result: &Value, call: &ValidationCall<'_>) -> Result<bool, String> {
        Ok(self.verdict(result, call)? == Verdict::Pass)
    }

    fn verdict(&self, result: &Value, _call: &ValidationCall<'_>) -> Result<Verdict, String> {
        if result.get("ok") != Some(&Value::Bool(true)) {
            return Ok(Verdict::Fail);
        }
        let text = |k: &str| result.get(k).and_then(Value::as_str);
        let (Some(prompt), Some(answer), Some(routed)) =
            (text("prompt"), text("answer"), text("routed"))
        else {
            return Ok(Verdict::Fail);
        };
        if prompt.len() > MAX_PROMPT_BYTES {
            return Ok(Verdict::Fail);
        }
        match self.router.route(prompt) {
            // Nothing to check; but a result claiming a route the prompt does not have is wrong.
            None if routed == ROUTED_NONE => Ok(Verdict::Unjudged),
            None => Ok(Verdict::Fail),
            Some(spec) if spec.name != routed => Ok(Verdict::Fail),
            Some(spec) => Ok(if spec.ground(prompt).check(answer) {
                Verdict::Pass
            } else {
                Verdict::Fail
            }),
        }
    }
}

/// Registers the fact-loop op (its executor over `lane`) and its validator `<op>_validated`.
/// The op requires its capability (default `fact:<op>`) at admission; nothing is granted here.
pub fn register_fact_loop_executor(
    scheduler: &mut Scheduler,
    lane: Box<dyn FactLane + Send>,
    options: FactLoopOptions,
) -> Result<FactLoopRegistration, SchedulerError> {
    let cap_text = options
        .capability
        .clone()
        .unwrap_or_else(|| format!("fact:{}", options.op));
    let capability =
        Capability::parse(&cap_text).map_err(|e| SchedulerError::Registration(e.to_string()))?;
    if options.level >= ValidationLevel::Proven {
        return Err(SchedulerError::Registration(
            "a model's grounded answer cannot certify PROVEN".to_owned(),
        ));
    }
    let validator = format!("{}_validated", options.op);
    let executor = FactLoopExecutor {
        lane: Mutex::new(lane),
        router: options.router.clone(),
        config: options.config.clone(),
        cost: options.cost.clone(),
        job_prompt: options.job_prompt.clone(),
    };
    scheduler.register_op(
        OpSpec::pure(&options.op, FACT_LOOP_OP_VERSION, executor).requiring(capability),
    )?;
    scheduler.register_validator(
        &validator,
        Arc::new(FactLoopValidator::new(&validator, options.router)),
    );
    Ok(FactLoopRegistration {
        op: options.op,
        capability: cap_text,
        validator,
        level: options.level,
    })
}
