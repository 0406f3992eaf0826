//! `sandbox_exec`: run code on visible cases in a confined worker, as a syscall-tier op.
//!
//! Inputs (task input names): `code` (str), `entry` (str), `cases` (a list of
//! `{"args": [...], "expected": v}` maps or `[args, expected]` pairs), and optional
//! `timeout_s` / `memory_mb`, which are clamped ([`nmk_det::sandbox::cases`]). The result is
//! the case report as a map; the op's validator `sandbox_exec_ok` passes iff `ok` is true. The
//! op needs the capability `op:sandbox_exec` and is capped at PROPERTY: visible cases are tests,
//! not a hold-out proof.
//!
//! [`SandboxCodeChecker`] gives the commit trap the same runner, so model-written code in a
//! contract is judged by running it confined, never in this process.

use std::sync::Arc;

use nmk_det::sandbox::cases::{Case, clamped_limits, run_cases};
use nmk_det::sandbox::{CallLimits, CallResult, Sandbox};
use nmk_det::{ValidationLevel, Value};

use crate::capability::Capability;
use crate::commit_trap::checker::{CodeChecker, Signature, parse_params};
use crate::commit_trap::contract::Case as ContractCase;
use crate::ops::{ExecCall, ExecError, ExecOutcome, Executor, FnValidator, OpSpec};
use crate::scheduler::{Scheduler, SchedulerError};

/// The op name.
pub const SANDBOX_EXEC_OP: &str = "sandbox_exec";

/// The most cases one task may carry.
pub const MAX_CASES: usize = 1000;

/// The largest program accepted, in bytes.
pub const MAX_CODE_BYTES: usize = 64 * 1024;

/// The executor of `sandbox_exec`.
pub struct SandboxExec {
    sandbox: Arc<Sandbox>,
}

impl SandboxExec {
    /// An executor running on `sandbox`.
    pub fn new(sandbox: Arc<Sandbox>) -> SandboxExec {
        SandboxExec { sandbox }
    }
}

fn str_input<'a>(call: &'a ExecCall<'_>, name: &str) -> Result<&'a str, ExecError> {
    match call.inputs.get(name) {
        Some(Value::Str(s)) => Ok(s),
        Some(_) => Err(ExecError(format!("input {name:?} must be a string"))),
        None => Err(ExecError(format!("missing input {name:?}"))),
    }
}

fn args_of(v: &Value) -> Option<Vec<Value>> {
    match v {
        Value::List(a) | Value::Tuple(a) => Some(a.clone()),
        _ => None,
    }
}

/// Reads the `cases` input: `{"args": [...], "expected": v}` maps or `[args, expected]` pairs.
pub fn parse_cases(v: &Value) -> Result<Vec<Case>, ExecError> {
    let items = match v {
        Value::List(items) | Value::Tuple(items) => items,
        _ => return Err(ExecError("input \"cases\" must be a list".into())),
    };
    if items.len() > MAX_CASES {
        return Err(ExecError(format!(
            "{} cases is over the cap of {MAX_CASES}",
            items.len()
        )));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let pair = match item {
                Value::Map(m) => m.get("args").zip(m.get("expected")),
                Value::List(p) | Value::Tuple(p) if p.len() == 2 => p.first().zip(p.get(1)),
                _ => None,
            };
            let (args, expected) =
                pair.ok_or_else(|| ExecError(format!("case {i} is not {{args, expected}}")))?;
            let args =
                args_of(args).ok_or_else(|| ExecError(format!("case {i}: args must be a list")))?;
            Ok(Case {
                args,
                expected: expected.clone(),
            })
        })
        .collect()
}

impl Executor for SandboxExec {
    fn execute(&self, call: &ExecCall<'_>) -> Result<ExecOutcome, ExecError> {
        let code = str_input(call, "code")?;
        if code.len() > MAX_CODE_BYTES {
            return Err(ExecError(format!(
                "code of {} bytes is over the cap of {MAX_CODE_BYTES}",
                code.len()
            )));
        }
        let entry = str_input(call, "entry")?;
        let cases = parse_cases(call.inputs.get("cases").unwrap_or(&Value::Null))?;
        let limits = clamped_limits(call.inputs.get("timeout_s"), call.inputs.get("memory_mb"));
        let report = run_cases(&self.sandbox, code, entry, &cases, &limits)
            .map_err(|e| ExecError(e.to_string()))?;
        Ok(ExecOutcome::Done(report.to_value()))
    }
}

/// Whether a `sandbox_exec` result says every case passed: `ok` must be exactly `true`.
pub fn sandbox_exec_ok(result: &Value) -> bool {
    matches!(result, Value::Map(m) if m.get("ok") == Some(&Value::Bool(true)))
}

/// Registers op `sandbox_exec` (syscall tier, capability `op:sandbox_exec`, ceiling PROPERTY)
/// and its validator `sandbox_exec_ok`. The capability is not granted here: the caller grants
/// it to the runs that may use it.
pub fn register_sandbox_exec(
    scheduler: &mut Scheduler,
    sandbox: Arc<Sandbox>,
) -> Result<(), SchedulerError> {
    let capability = Capability::parse("op:sandbox_exec")
        .map_err(|e| SchedulerError::Registration(e.to_string()))?;
    scheduler.register_op(OpSpec::syscall(
        SANDBOX_EXEC_OP,
        "v1",
        capability,
        ValidationLevel::Property,
        SandboxExec::new(sandbox),
    ))?;
    scheduler.register_validator(
        "sandbox_exec_ok",
        Arc::new(FnValidator::new(
            "sandbox_exec_ok",
            "v1",
            |result: &Value, _call: &_| Ok(sandbox_exec_ok(result)),
        )),
    );
    Ok(())
}

/// The commit trap's code checker: signatures read from the source text, cases run in the
/// sandbox.
pub struct SandboxCodeChecker {
    sandbox: Arc<Sandbox>,
    limits: CallLimits,
}

impl SandboxCodeChecker {
    /// A checker on `sandbox` with the default per-call limits.
    pub fn new(sandbox: Arc<Sandbox>) -> SandboxCodeChecker {
        SandboxCodeChecker {
            sandbox,
            limits: CallLimits::default(),
        }
    }
}

impl CodeChecker for SandboxCodeChecker {
    fn parse(&self, code: &str, entry: &str) -> Result<Signature, String> {
        let head = format!("def {entry}(");
        let start = code
            .lines()
            .map(str::trim_start)
            .find(|l| l.starts_with(&head))
            .ok_or_else(|| format!("no `def {entry}(` in the code"))?;
        let params = start
            .get(head.len()..)
            .and_then(|rest| rest.rfind(')').and_then(|end| rest.get(..end)))
            .and_then(parse_params)
            .ok_or_else(|| format!("cannot read the parameters of {entry}"))?;
        Ok(Signature {
            name: entry.to_owned(),
            params,
        })
    }

    fn run_cases(
        &self,
        code: &str,
        entry: &str,
        cases: &[ContractCase],
    ) -> Result<Vec<Result<Value, String>>, String> {
        if cases.iter().any(|c| !c.kwargs.is_empty()) {
            return Err("the sandbox passes positional arguments only".into());
        }
        let calls: Vec<Vec<Value>> = cases.iter().map(|c| c.args.clone()).collect();
        let results = self
            .sandbox
            .run_batch_on(0, code, entry, &calls, &self.limits)
            .map_err(|e| e.to_string())?;
        Ok(results
            .into_iter()
            .map(|r| match r {
                CallResult::Ok(v) => Ok(v),
                other => Err(other.describe()),
            })
            .collect())
    }
}
