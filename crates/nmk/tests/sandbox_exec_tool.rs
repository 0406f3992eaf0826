//! The kernel's `sandbox_exec` syscall tool and the commit trap's sandboxed code checker, run on
//! real confined workers (`nmk` in its worker role).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use nmk_det::sandbox::{Sandbox, SandboxConfig};
use nmk_det::{ValidationLevel, Value};
use nmk_kernel::budget::{Budget, BudgetLimits};
use nmk_kernel::capability::Capability;
use nmk_kernel::commit_trap::{Case, CodeChecker};
use nmk_kernel::tools::{SandboxCodeChecker, register_sandbox_exec};
use nmk_kernel::{Ledger, Reject, Scheduler, TaskSpec, TaskStatus};

fn pool() -> Arc<Sandbox> {
    Arc::new(
        Sandbox::new(SandboxConfig {
            worker: Some(env!("CARGO_BIN_EXE_nmk").into()),
            worker_args: vec!["sandbox-worker".into()],
            ..SandboxConfig::default()
        })
        .unwrap(),
    )
}

fn cases() -> Value {
    Value::List(vec![
        Value::map([
            ("args", Value::List(vec![Value::int(2), Value::int(3)])),
            ("expected", Value::int(5)),
        ]),
        Value::List(vec![
            Value::List(vec![Value::int(7), Value::int(-7)]),
            Value::int(0),
        ]),
    ])
}

/// Runs one `sandbox_exec` task on `code`; returns its final status and result.
fn run_tool(
    sandbox: &Arc<Sandbox>,
    code: &str,
    grant: bool,
) -> (Option<TaskStatus>, Option<Value>) {
    let mut s = Scheduler::new(
        "tool",
        Ledger::in_memory(),
        Budget::new(BudgetLimits::default()),
    )
    .unwrap();
    register_sandbox_exec(&mut s, sandbox.clone()).unwrap();
    if grant {
        s.grants_mut()
            .grant(Capability::parse("op:sandbox_exec").unwrap());
    }
    let code = s.put_artifact(Value::str(code), "code").unwrap();
    let entry = s.put_artifact(Value::str("add"), "entry").unwrap();
    let cases = s.put_artifact(cases(), "cases").unwrap();
    let timeout = s.put_artifact(Value::str("abc"), "timeout").unwrap();
    let admitted = s.admit(
        TaskSpec::new("t", "sandbox_exec")
            .needs("op:sandbox_exec")
            .input("code", code)
            .input("entry", entry)
            .input("cases", cases)
            .input("timeout_s", timeout)
            .validated_by("sandbox_exec_ok", "PROPERTY")
            .root(),
    );
    if let Err(reject) = admitted {
        assert!(matches!(reject, Reject::MissingCapability(_)), "{reject:?}");
        return (None, None);
    }
    s.run(10).unwrap();
    let task = s.task("t").unwrap();
    (Some(task.status), s.result("t").cloned())
}

#[test]
fn sandbox_exec_is_a_capability_gated_tool_whose_validator_passes_only_ok_reports() {
    let sandbox = pool();
    let (status, result) = run_tool(&sandbox, "def add(a, b):\n    return a + b\n", true);
    assert!(status.is_some_and(TaskStatus::is_passed), "{status:?}");
    let Some(Value::Map(report)) = result else {
        panic!("a report map")
    };
    assert_eq!(report.get("ok"), Some(&Value::Bool(true)));
    assert_eq!(report.get("passed"), Some(&Value::int(2)));
    // Contrast: a buggy program runs but its report does not pass the validator.
    let (status, _) = run_tool(&sandbox, "def add(a, b):\n    return a * b\n", true);
    assert!(status.is_some_and(|s| !s.is_passed()), "{status:?}");
    // Without the capability the task is not even admitted.
    let (status, result) = run_tool(&sandbox, "def add(a, b):\n    return a + b\n", false);
    assert_eq!((status, result), (None, None));
}

#[test]
fn the_validator_reads_ok_strictly() {
    use nmk_kernel::tools::sandbox_exec::sandbox_exec_ok;
    assert!(sandbox_exec_ok(&Value::map([("ok", Value::Bool(true))])));
    assert!(!sandbox_exec_ok(&Value::map([
        ("ok", Value::Bool(false)),
        ("passed", Value::int(1)),
    ])));
    assert!(!sandbox_exec_ok(&Value::map([("ok", Value::int(1))])));
    assert!(!sandbox_exec_ok(&Value::Null));
}

#[test]
fn the_commit_trap_checker_runs_code_confined_and_reads_signatures() {
    let checker = SandboxCodeChecker::new(pool());
    let code = "import math\n\ndef gcd(a, b: int = 0):\n    return math.gcd(a, b)\n";
    let sig = checker.parse(code, "gcd").unwrap();
    assert_eq!(sig.params, ["a", "b"]);
    assert!(checker.parse(code, "lcm").is_err());
    let cases = [
        Case::positional(vec![Value::int(12), Value::int(18)], Value::int(6)),
        Case::positional(vec![Value::int(1), Value::int(0)], Value::int(1)),
    ];
    let out = checker.run_cases(code, "gcd", &cases).unwrap();
    assert_eq!(out, vec![Ok(Value::int(6)), Ok(Value::int(1))]);
    // Contrast: code touching the host raises inside the worker; the checker reports it.
    let hostile = "def gcd(a, b):\n    return open('/etc/passwd').read()\n";
    let out = checker.run_cases(hostile, "gcd", &cases).unwrap();
    assert!(out.iter().all(Result::is_err), "{out:?}");
    assert!(ValidationLevel::Property < ValidationLevel::Oracle);
}
