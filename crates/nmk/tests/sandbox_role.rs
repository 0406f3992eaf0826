//! `nmk sandbox-worker`: the binary is its own confined worker, so a pool works with nothing but
//! the `nmk` executable.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use nmk_det::Value;
use nmk_det::sandbox::{CallLimits, CallResult, Sandbox, SandboxConfig};

fn pool() -> Sandbox {
    Sandbox::new(SandboxConfig {
        worker: Some(env!("CARGO_BIN_EXE_nmk").into()),
        worker_args: vec!["sandbox-worker".into()],
        pool_size: 1,
        ..SandboxConfig::default()
    })
    .expect("nmk confines itself in its worker role")
}

#[test]
fn nmk_serves_as_a_confined_worker_and_denies_the_host() {
    let sandbox = pool();
    let limits = CallLimits {
        per_call: Duration::from_secs(2),
        ..CallLimits::default()
    };
    let add = "def add(a, b):\n    return a + b\n";
    let out = sandbox
        .call(add, "add", &[Value::int(2), Value::int(40)], &limits)
        .unwrap();
    assert_eq!(out, CallResult::Ok(Value::int(42)));
    // Contrast: the same role refuses a host read, so the answer above came from a confined run.
    let open = "def f():\n    return open('/etc/passwd').read()\n";
    let refused = sandbox.call(open, "f", &[], &limits).unwrap();
    assert!(
        matches!(refused, CallResult::Raised(_) | CallResult::Crashed(_)),
        "{refused:?}"
    );
    assert_ne!(sandbox.worker_pids()[0], Some(std::process::id()));
}
