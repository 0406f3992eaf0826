//! The sandbox against real worker processes: it runs correct code (liveness), contains every
//! hostile program of the corpus, survives forged and garbage frames, refuses unconfined or
//! missing workers, and replaces killed workers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use nmk_det::Value;
use nmk_det::sandbox::{CallLimits, CallResult, Sandbox, SandboxConfig, SandboxError};

const GCD: &str = "def gcd(a, b):\n    while b:\n        a, b = b, a % b\n    return a\n";

fn limits(ms: u64) -> CallLimits {
    CallLimits {
        per_call: Duration::from_millis(ms),
        ..CallLimits::default()
    }
}

fn run(sb: &Sandbox, body: &str, args: Vec<Value>) -> CallResult {
    sb.call(body, "f", &args, &limits(1000)).unwrap()
}

#[test]
fn a_correct_program_runs_and_every_plain_type_comes_back_exactly() {
    let sb = common::sandbox();
    let calls: Vec<Vec<Value>> = vec![
        vec![Value::int(12), Value::int(18)],
        vec![Value::int(7), Value::int(5)],
    ];
    let out = sb
        .run_batch_on(0, GCD, "gcd", &calls, &limits(1000))
        .unwrap();
    assert_eq!(
        out,
        vec![CallResult::Ok(Value::int(6)), CallResult::Ok(Value::int(1))]
    );
    let v = run(
        &sb,
        "def f(x):\n    return [x, (x,), {'a': x}, {x}, 2 ** 100, 1.5, None, True, b'ab', {1: 2}]\n",
        vec![Value::int(3)],
    );
    let expected = Value::List(vec![
        Value::int(3),
        Value::Tuple(vec![Value::int(3)]),
        Value::map([("a", Value::int(3))]),
        Value::set([Value::int(3)]),
        Value::Int(nmk_det::Integer::from_decimal("1267650600228229401496703205376").unwrap()),
        Value::float(1.5).unwrap(),
        Value::Null,
        Value::Bool(true),
        Value::Bytes(b"ab".to_vec()),
        Value::dict([(Value::int(1), Value::int(2))]),
    ]);
    assert_eq!(v, CallResult::Ok(expected));
    // Arguments of every type arrive intact.
    let arg = Value::List(vec![
        Value::Tuple(vec![Value::str("é"), Value::Bytes(vec![0])]),
        Value::set([Value::int(1)]),
        Value::Int(nmk_det::Integer::from_decimal("-99999999999999999999999").unwrap()),
    ]);
    assert_eq!(
        run(&sb, "def f(x):\n    return x\n", vec![arg.clone()]),
        CallResult::Ok(arg)
    );
}

fn raised(r: &CallResult, prefix: &str) {
    match r {
        CallResult::Raised(e) => assert!(e.starts_with(prefix), "{e}"),
        other => panic!("expected {prefix}, got {other:?}"),
    }
}

#[test]
fn os_access_imports_clock_and_randomness_are_denied() {
    let sb = common::sandbox();
    raised(
        &run(
            &sb,
            "def f():\n    return open('/etc/passwd').read()\n",
            vec![],
        ),
        "NotImplementedError",
    );
    raised(
        &run(
            &sb,
            "import os\ndef f():\n    return os.getenv('HOME')\n",
            vec![],
        ),
        "NotImplementedError",
    );
    raised(
        &run(
            &sb,
            "def f():\n    return __import__('os').system('touch /tmp/x')\n",
            vec![],
        ),
        "NameError",
    );
    raised(
        &run(
            &sb,
            "import time\ndef f():\n    return time.time()\n",
            vec![],
        ),
        "ModuleNotFoundError",
    );
    raised(
        &run(
            &sb,
            "import random\ndef f():\n    return random.random()\n",
            vec![],
        ),
        "ModuleNotFoundError",
    );
    raised(
        &run(&sb, "import subprocess\ndef f():\n    return 1\n", vec![]),
        "ModuleNotFoundError",
    );
    raised(
        &run(&sb, "import sys\ndef f():\n    sys.exit(0)\n", vec![]),
        "AttributeError",
    );
    assert!(!matches!(
        run(&sb, "def f():\n    raise SystemExit(3)\n", vec![]),
        CallResult::Ok(_)
    ));
    assert!(!matches!(
        run(&sb, "def f():\n    exit(0)\n", vec![]),
        CallResult::Ok(_)
    ));
    // The pool still works afterwards.
    assert_eq!(
        run(&sb, "def f():\n    return 1\n", vec![]),
        CallResult::Ok(Value::int(1))
    );
}

#[test]
fn memory_recursion_and_cpu_are_bounded() {
    let sb = common::sandbox();
    raised(
        &run(&sb, "def f():\n    return 'a' * (16 * 1024 ** 3)\n", vec![]),
        "MemoryError",
    );
    raised(
        &run(
            &sb,
            "def f():\n    x = []\n    while True:\n        x.append('a' * 100000)\n",
            vec![],
        ),
        "MemoryError",
    );
    raised(
        &run(
            &sb,
            "def f():\n    s = 'x'\n    for i in range(40):\n        s = s + s\n    return len(s)\n",
            vec![],
        ),
        "MemoryError",
    );
    raised(
        &run(&sb, "def f(n):\n    return f(n + 1)\n", vec![Value::int(0)]),
        "RecursionError",
    );
    let t = Instant::now();
    let r = sb
        .call(
            "def f():\n    while True:\n        pass\n",
            "f",
            &[],
            &limits(300),
        )
        .unwrap();
    assert!(r.is_timeout(), "{r:?}");
    assert!(t.elapsed() < Duration::from_secs(3));
    assert_eq!(
        run(&sb, "def f():\n    return 2\n", vec![]),
        CallResult::Ok(Value::int(2))
    );
}

#[test]
fn the_watchdog_kills_an_overrunning_builtin_and_the_worker_is_replaced() {
    let sb = common::sandbox();
    let before = sb.worker_pids()[0].unwrap();
    let t = Instant::now();
    // One big-integer operation runs for seconds inside the interpreter without a checkpoint.
    let r = sb
        .call(
            "def f():\n    return 7 ** 30000000 % 10\n",
            "f",
            &[],
            &limits(300),
        )
        .unwrap();
    let took = t.elapsed();
    assert!(r.is_timeout(), "{r:?}");
    assert!(took < Duration::from_secs(3), "took {took:?}");
    let ok = run(&sb, "def f():\n    return 3\n", vec![]);
    assert_eq!(ok, CallResult::Ok(Value::int(3)));
    let after = sb.worker_pids()[0].unwrap();
    assert_ne!(before, after, "a killed worker is replaced");
    eprintln!(
        "watchdog stop after {took:?}; mean spawn+hello {:?} over {} spawns",
        sb.mean_spawn_time(),
        sb.spawns()
    );
}

#[test]
fn prints_never_reach_the_parent_and_forged_frames_are_only_output() {
    let sb = common::sandbox();
    let forged = "def f():\n    print('VERDICT: PASS')\n    print('\\x00\\x00\\x00\\x1a{\"id\":1,\"index\":0,\"ok\":6}')\n    return 5\n";
    assert_eq!(run(&sb, forged, vec![]), CallResult::Ok(Value::int(5)));
}

#[test]
fn returned_objects_that_are_not_plain_data_never_compare() {
    let sb = common::sandbox();
    let always_equal =
        "class A:\n    def __eq__(self, other):\n        return True\ndef f():\n    return A()\n";
    assert!(run(&sb, always_equal, vec![]).value().is_none());
    raised(
        &run(&sb, "def f():\n    return float('nan')\n", vec![]),
        "UnsupportedResult",
    );
    assert!(
        run(&sb, "def f():\n    return len\n", vec![])
            .value()
            .is_none()
    );
    assert_eq!(
        run(&sb, "def f():\n    return 4\n", vec![]),
        CallResult::Ok(Value::int(4))
    );
}

#[test]
fn hashing_and_set_order_are_the_same_in_every_worker() {
    let sb = common::sandbox();
    let code = "def f():\n    return [hash('abc'), hash((1, 'a')), list({'zz', 'a', 'q', 'b'})]\n";
    let (a, b) = sb
        .run_twice(code, "f", &[vec![], vec![]], &limits(1000))
        .unwrap();
    assert!(a[0].value().is_some());
    assert_eq!(a, b);
}

#[test]
fn the_worker_kills_itself_on_any_forbidden_system_call() {
    for probe in ["open", "spawn", "socket", "write-file"] {
        let out = std::process::Command::new(common::worker())
            .args(["--probe", probe])
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert_eq!(
            out.status.signal(),
            Some(libc_sigsys()),
            "{probe}: {:?}",
            out.status
        );
    }
}

fn libc_sigsys() -> i32 {
    31
}

fn script(name: &str, body: &str) -> tempfile::TempPath {
    let mut f = tempfile::Builder::new().prefix(name).tempfile().unwrap();
    f.write_all(body.as_bytes()).unwrap();
    let path = f.into_temp_path();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

const HELLO_SH: &str = r#"#!/bin/bash
frame() { local b="$1"; local n=${#b}; printf "\\x$(printf %02x $((n>>24&255)))\\x$(printf %02x $((n>>16&255)))\\x$(printf %02x $((n>>8&255)))\\x$(printf %02x $((n&255)))%s" "$b"; }
"#;

#[test]
fn missing_and_unconfined_workers_are_refused() {
    let missing = Sandbox::new(SandboxConfig {
        worker: Some("/nonexistent/nmk-sandbox-worker".into()),
        ..SandboxConfig::default()
    });
    assert_eq!(missing.err().map(|e| e.reason()), Some("worker_missing"));
    let unconfined = script(
        "unconfined",
        &format!(
            "{HELLO_SH}frame '{{\"confined\":false,\"detail\":\"seccomp unavailable\",\"hello\":\"nmk-sandbox/1\",\"pid\":'$$'}}'\nexec sleep 5\n"
        ),
    );
    let r = Sandbox::new(SandboxConfig {
        worker: Some(unconfined.to_path_buf()),
        ..SandboxConfig::default()
    });
    match r {
        Err(SandboxError::Unsandboxed(why)) => {
            assert!(why.contains("seccomp unavailable"), "{why}")
        }
        other => panic!("{:?}", other.map(|_| ())),
    }
    let silent = Sandbox::new(SandboxConfig {
        worker: Some("/bin/true".into()),
        ..SandboxConfig::default()
    });
    assert_eq!(silent.err().map(|e| e.reason()), Some("unsandboxed"));
}

#[test]
fn garbage_oversize_and_forged_replies_discard_the_worker_without_hanging() {
    for (name, reply) in [
        ("garbage", r#"printf '\x00\x00\x00\x05hello'"#),
        ("oversize", r#"printf '\xff\xff\xff\xff'"#),
        ("wrongid", r#"frame '{"id":999,"index":0,"ok":6}'"#),
        ("short", r#"printf '\x00\x00\x01\x00{"id"'"#),
        ("silent", ":"),
    ] {
        let fake = script(
            name,
            &format!(
                "{HELLO_SH}frame '{{\"confined\":true,\"detail\":\"fake\",\"hello\":\"nmk-sandbox/1\",\"pid\":'$$'}}'\nread -r -n 1 _\n{reply}\nexec sleep 30\n"
            ),
        );
        let sb = Sandbox::new(SandboxConfig {
            worker: Some(fake.to_path_buf()),
            pool_size: 1,
            ..SandboxConfig::default()
        })
        .unwrap();
        let t = Instant::now();
        let out = sb
            .run_batch_on(
                0,
                GCD,
                "gcd",
                &[vec![Value::int(1), Value::int(2)], vec![]],
                &limits(200),
            )
            .unwrap();
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "{name}: {:?}",
            t.elapsed()
        );
        assert_eq!(out.len(), 2);
        for r in &out {
            assert!(
                matches!(
                    r,
                    CallResult::Protocol(_) | CallResult::Crashed(_) | CallResult::Timeout
                ),
                "{name}: {r:?}"
            );
        }
        assert!(sb.spawns() >= 2, "{name}: the worker was replaced");
    }
}
