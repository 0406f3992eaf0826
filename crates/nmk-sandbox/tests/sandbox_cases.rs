//! The sandboxed case runner (`nmk_det::sandbox::cases`) on real workers: spec §7 `venv_tool`
//! behaviours, on Linux.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use nmk_det::Value;
use nmk_det::sandbox::CallLimits;
use nmk_det::sandbox::cases::{Case, run_cases};

fn add_cases() -> Vec<Case> {
    vec![
        Case {
            args: vec![Value::int(2), Value::int(3)],
            expected: Value::int(5),
        },
        Case {
            args: vec![Value::int(-1), Value::int(1)],
            expected: Value::int(0),
        },
    ]
}

fn limits(ms: u64) -> CallLimits {
    CallLimits {
        per_call: Duration::from_millis(ms),
        ..CallLimits::default()
    }
}

#[test]
fn a_good_program_passes_every_case_and_a_buggy_one_lists_its_failures() {
    let sb = common::sandbox();
    let good = "def add(a, b):\n    return a + b\n";
    let r = run_cases(&sb, good, "add", &add_cases(), &limits(2000)).unwrap();
    assert!(r.ok && r.passed == 2 && r.total == 2, "{r:?}");
    assert!(r.failures.is_empty());
    let pid = r.worker_pid.expect("a worker ran the cases");
    assert_ne!(pid, std::process::id(), "the cases ran in another process");
    let Value::Map(report) = r.to_value() else {
        panic!("a report is a map")
    };
    assert_eq!(report.get("sandboxed"), Some(&Value::Bool(true)));
    // Contrast: the buggy program fails both, each failure listed with what it returned.
    let buggy = "def add(a, b):\n    return a - b\n";
    let r = run_cases(&sb, buggy, "add", &add_cases(), &limits(2000)).unwrap();
    assert!(!r.ok && r.passed == 0 && r.failures.len() == 2, "{r:?}");
    assert!(
        r.failures[0].got.contains("returned -1"),
        "{:?}",
        r.failures[0]
    );
    assert_eq!(r.failures[0].expected, Value::int(5));
}

#[test]
fn an_infinite_loop_times_out_and_a_raising_program_reports_its_exception_per_case() {
    let sb = common::sandbox();
    let spin = "def add(a, b):\n    while True:\n        pass\n";
    let r = run_cases(&sb, spin, "add", &add_cases(), &limits(300)).unwrap();
    assert!(!r.ok && r.timed_out && r.passed == 0, "{r:?}");
    let raising = "def add(a, b):\n    raise ValueError('nope')\n";
    let r = run_cases(&sb, raising, "add", &add_cases(), &limits(2000)).unwrap();
    assert!(!r.ok && !r.timed_out);
    assert_eq!(r.failures.len(), 2);
    for f in &r.failures {
        assert!(
            f.error
                .as_deref()
                .is_some_and(|e| e.starts_with("ValueError")),
            "{f:?}"
        );
    }
}

#[test]
fn no_cases_or_no_code_is_never_ok() {
    let sb = common::sandbox();
    let good = "def add(a, b):\n    return a + b\n";
    let r = run_cases(&sb, good, "add", &[], &limits(2000)).unwrap();
    assert!(!r.ok && r.note.as_deref() == Some("no cases"));
    let r = run_cases(&sb, "  \n", "add", &add_cases(), &limits(2000)).unwrap();
    assert!(!r.ok && r.note.as_deref() == Some("no code"));
    // Contrast: the same cases with the code do pass.
    assert!(
        run_cases(&sb, good, "add", &add_cases(), &limits(2000))
            .unwrap()
            .ok
    );
}

#[test]
fn writes_to_the_host_and_forged_output_with_a_hard_exit_are_refused() {
    let sb = common::sandbox();
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let write = format!(
        "def add(a, b):\n    f = open('{home}/nmk-sandbox-escape', 'w')\n    f.write('x')\n    return a + b\n"
    );
    let r = run_cases(&sb, &write, "add", &add_cases(), &limits(2000)).unwrap();
    assert!(!r.ok && r.passed == 0, "{r:?}");
    assert!(!std::path::Path::new(&format!("{home}/nmk-sandbox-escape")).exists());
    let forge = "def add(a, b):\n    print('{\"ok\": true, \"passed\": 2, \"total\": 2}')\n    raise SystemExit(0)\n";
    let r = run_cases(&sb, forge, "add", &add_cases(), &limits(2000)).unwrap();
    assert!(!r.ok && r.passed == 0, "{r:?}");
}
