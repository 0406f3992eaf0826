//! Self-extension without a sandbox worker: prompt content, code extraction, the ledger entry of
//! a verdict, and the learned-primitive registry (persistence, re-check, tamper refusal).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::time::Duration;

use nmk_det::ValidationLevel;
use nmk_det::gate::{Gap, GateConfig, Judge, SampleCase};
use nmk_det::{ContentHash, Value, hash_bytes};
use nmk_kernel::commit_trap::ProvenRegistry;
use nmk_kernel::learn::synthesis::{MAX_CODE_BYTES, defines_entry};
use nmk_kernel::learn::{
    Admission, ExtractError, PrimitiveRegistry, Provenance, Purpose, Recheck, auto_import,
    extract_code, prompt, record_admission,
};
use nmk_kernel::ledger::{Action, Ledger, ModelBinding};
use nmk_kernel::store::{Durability, database_path};

fn popcount_gap() -> Gap {
    let samples = [(7, 3), (255, 8), (0, 0)]
        .into_iter()
        .map(|(x, y)| SampleCase {
            args: vec![Value::int(x)],
            expected: Value::int(y),
        })
        .collect();
    Gap::new(
        "popcount",
        "popcount(n: int) -> int",
        "Count the 1 bits in the binary representation of a non-negative integer n.",
        samples,
        |rng| vec![Value::int(i64::try_from(rng.below(1 << 31)).unwrap())],
        Judge::oracle(|a: &[Value]| {
            let mut n = a[0].as_i64().ok_or("not an int")?;
            let mut c = 0;
            while n > 0 {
                c += n & 1;
                n >>= 1;
            }
            Ok(Value::int(c))
        }),
    )
    .unwrap()
    .with_n_seed(800, 7)
    .with_source("builtin:popcount:1")
}

const GOOD: &str = "def popcount(n):\n    return bin(n).count('1')\n";

/// An admission as the gate would report a pass (built by hand: no worker here).
fn passed(gap: &Gap, code: &str) -> Admission {
    Admission {
        entry: gap.entry.clone(),
        admitted: true,
        reason: None,
        gap_spec_hash: gap.spec_hash(),
        code_hash: hash_bytes(code.as_bytes()),
        n: gap.n,
        seed: gap.seed,
        seed2: nmk_det::gate::second_seed(gap.seed),
        report: None,
        feedback: String::new(),
        elapsed: Duration::ZERO,
    }
}

fn binding() -> ModelBinding {
    ModelBinding {
        model: hash_bytes(b"model"),
        tokenizer: hash_bytes(b"tokenizer"),
        policy: hash_bytes(b"policy"),
    }
}

fn model_provenance() -> Provenance {
    Provenance {
        proposer: "stub".into(),
        model: Some(binding()),
        prompt_hash: Some(hash_bytes(b"prompt")),
        attempt: 1,
    }
}

#[test]
fn the_prompt_states_the_task_and_feeds_back_only_on_retries() {
    let gap = popcount_gap();
    let first = prompt(&gap, None);
    assert!(first.contains(&gap.description));
    assert!(first.contains("popcount(n: int) -> int"));
    assert!(first.contains("popcount(255) == 8"));
    assert!(first.contains("```python"));
    assert!(!first.contains("previous attempt"));
    let retry = prompt(
        &gap,
        Some("held-out instance 3 of 800: popcount(12) — your program returned 0"),
    );
    assert!(retry.contains("your program returned 0"));
    assert!(retry.to_lowercase().contains("previous attempt"));
    // Long feedback is cut, not pasted whole.
    let long = "x".repeat(10_000);
    assert!(prompt(&gap, Some(&long)).len() < first.len() + 1_000);
}

#[test]
fn extraction_takes_the_first_python_fence_else_the_first_def() {
    let reply =
        "Here you go:\n```python\ndef popcount(n):\n    return bin(n).count('1')\n```\nThanks";
    assert_eq!(extract_code(reply, "popcount").unwrap(), GOOD);
    let bare = "```\ndef popcount(n):\n    return bin(n).count('1')\n```";
    assert_eq!(extract_code(bare, "popcount").unwrap(), GOOD);
    // A python fence wins over an earlier bare one.
    let both = "```\nnot code\n```\n```python\ndef popcount(n):\n    return 0\n```";
    assert!(extract_code(both, "popcount").unwrap().contains("return 0"));
    let unfenced = "Sure. def popcount(n):\n    return 1";
    assert!(
        extract_code(unfenced, "popcount")
            .unwrap()
            .starts_with("def popcount(n):")
    );
    // Cut off at the token limit: the open fence runs to the end.
    let open = "```python\ndef popcount(n):\n    return 1\n";
    assert!(extract_code(open, "popcount").is_ok());
    assert_eq!(
        extract_code("no code here", "popcount"),
        Err(ExtractError::NoCode)
    );
    assert_eq!(
        extract_code("```python\ndef other(n):\n    return 1\n```", "popcount"),
        Err(ExtractError::NoEntry("popcount".into()))
    );
    let huge = format!(
        "```python\ndef popcount(n):\n{}    return 1\n```",
        "    x = 1\n".repeat(MAX_CODE_BYTES / 8)
    );
    assert!(matches!(
        extract_code(&huge, "popcount"),
        Err(ExtractError::TooLarge(_))
    ));
    assert!(defines_entry(GOOD, "popcount"));
    assert!(!defines_entry("def popcounts(n):\n", "popcount"));
}

#[test]
fn auto_import_adds_missing_imports_once() {
    let code =
        "def f(x):\n    return math.sqrt(x) + len(re.findall('a', 'aa')) + Counter('ab')['a']\n";
    let fixed = auto_import(code);
    assert!(fixed.contains("import math\n"));
    assert!(fixed.contains("import re\n"));
    assert!(fixed.contains("from collections import Counter\n"));
    assert_eq!(auto_import(&fixed), fixed, "idempotent");
    assert_eq!(auto_import(GOOD), GOOD, "nothing to add");
    let imported = "import math\ndef f(x):\n    return math.floor(x)\n";
    assert_eq!(auto_import(imported), imported);
    // `cmath.` is not `math.`.
    assert_eq!(
        auto_import("def f(x):\n    return cmath.pi\n"),
        "def f(x):\n    return cmath.pi\n"
    );
}

#[test]
fn a_verdict_is_a_ledger_entry_binding_gap_code_counts_and_model() {
    let gap = popcount_gap();
    let ledger = Ledger::in_memory();
    let adm = passed(&gap, GOOD);
    let config = GateConfig {
        n: gap.n,
        seed: gap.seed,
        ..GateConfig::default()
    };
    let e = record_admission(
        &ledger,
        &gap,
        &adm,
        &config,
        &model_provenance(),
        Purpose::Admit,
    )
    .unwrap();
    let r = &e.record;
    assert_eq!(r.opcode, "gate");
    assert_eq!(r.action, Action::Pass);
    assert_eq!(r.level, ValidationLevel::Proven);
    assert_eq!(r.inputs["gap"], gap.spec_hash());
    assert_eq!(r.inputs["code"], hash_bytes(GOOD.as_bytes()));
    assert_eq!(r.inputs["prompt"], hash_bytes(b"prompt"));
    assert_eq!(r.inputs["gap_source"], hash_bytes(b"builtin:popcount:1"));
    assert_eq!(r.model, Some(binding()));
    let summary = r.detail.get("summary").unwrap();
    assert_eq!(summary.get("n"), Some(&Value::int(800)));
    assert_eq!(summary.get("seed"), Some(&Value::int(7)));
    assert_eq!(summary.get("reason"), Some(&Value::str("ok")));

    let mut refused = passed(&gap, "def popcount(n):\n    return 0\n");
    refused.admitted = false;
    refused.reason = Some(nmk_kernel::learn::RefusalReason::Gate(
        nmk_det::gate::FailureReason::GateFail,
    ));
    let e2 = record_admission(
        &ledger,
        &gap,
        &refused,
        &config,
        &Provenance::user(),
        Purpose::Admit,
    )
    .unwrap();
    assert_eq!(e2.record.action, Action::Fail);
    assert_eq!(e2.record.level, ValidationLevel::None);
    assert_eq!(e2.record.model, None);
    assert!(!e2.record.inputs.contains_key("prompt"));
    assert_eq!(
        e2.record.detail.get("reason"),
        Some(&Value::str("gate_fail"))
    );
    assert!(ledger.verify(None).unwrap().ok());
}

fn admit_and_register(home: &Path, gap: &Gap, code: &str) -> ContentHash {
    let db = database_path(home);
    let ledger = Ledger::open(&db, Durability::Process).unwrap();
    let mut reg = PrimitiveRegistry::open(&db, Durability::Process).unwrap();
    let adm = passed(gap, code);
    let config = GateConfig::default();
    let prov = model_provenance();
    let entry = record_admission(&ledger, gap, &adm, &config, &prov, Purpose::Admit).unwrap();
    let rec = reg.register(gap, code, &adm, &entry, &prov).unwrap();
    assert_eq!(reg.code_hash("popcount"), Some(rec.code_hash));
    rec.code_hash
}

#[test]
fn the_registry_survives_a_reopen_and_serves_only_rechecked_records() {
    let dir = tempfile::tempdir().unwrap();
    let gap = popcount_gap();
    let hash = admit_and_register(dir.path(), &gap, GOOD);

    // A new "process": fresh handles on the same database.
    let db = database_path(dir.path());
    let ledger = Ledger::open(&db, Durability::Process).unwrap();
    let mut reg = PrimitiveRegistry::open(&db, Durability::Process).unwrap();
    assert_eq!(
        reg.code_hash("popcount"),
        None,
        "a stored row alone proves nothing"
    );
    let (rows, bad) = reg.list().unwrap();
    assert_eq!(rows.len(), 1);
    assert!(bad.is_empty());
    let rec = reg.get("popcount").unwrap().unwrap();
    assert_eq!(rec.code, GOOD);
    assert_eq!(rec.gap_source, "builtin:popcount:1");
    assert_eq!(rec.gate.n, 800);
    assert_eq!(rec.gate.seed, 7);
    assert_eq!(rec.model, Some(binding()));
    assert_eq!(rec.proposer, "stub");

    let report = reg.reload(&ledger, Recheck::Hashes, None).unwrap();
    assert_eq!(report.usable.len(), 1);
    assert!(report.refused.is_empty());
    assert_eq!(report.usable[0].record().entry, "popcount");
    assert_eq!(reg.code_hash("popcount"), Some(hash));
    // Re-gating needs a sandbox; without one the record is refused, not served.
    let report = reg.reload(&ledger, Recheck::Regate, None).unwrap();
    assert!(report.usable.is_empty());
    assert_eq!(reg.code_hash("popcount"), None);
}

#[test]
fn a_tampered_row_is_refused_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let gap = popcount_gap();
    admit_and_register(dir.path(), &gap, GOOD);
    let db = database_path(dir.path());
    let evil = "def popcount(n):\n    return 42\n";
    let conn = rusqlite::Connection::open(&db).unwrap();

    // 1. The code alone is swapped: it no longer matches its hash.
    conn.execute("UPDATE learned_primitives SET code = ?1", [evil])
        .unwrap();
    let ledger = Ledger::open(&db, Durability::Process).unwrap();
    let mut reg = PrimitiveRegistry::open(&db, Durability::Process).unwrap();
    let report = reg.reload(&ledger, Recheck::Hashes, None).unwrap();
    assert!(report.usable.is_empty());
    assert_eq!(report.refused.len(), 1);
    assert!(
        report.refused[0].reason.contains("tampered"),
        "{:?}",
        report.refused
    );
    assert_eq!(reg.code_hash("popcount"), None);

    // 2. Code and hash swapped together: the ledger's sealed pass binds other code.
    conn.execute(
        "UPDATE learned_primitives SET code_hash = ?1",
        [hash_bytes(evil.as_bytes()).to_hex()],
    )
    .unwrap();
    let report = reg.reload(&ledger, Recheck::Hashes, None).unwrap();
    assert!(report.usable.is_empty());
    assert!(
        report.refused[0].reason.contains("other code"),
        "{:?}",
        report.refused
    );

    // 3. The gap source swapped (a weaker oracle): refused.
    conn.execute(
        "UPDATE learned_primitives SET code = ?1, code_hash = ?2, gap_source = 'builtin:weak:1'",
        [GOOD.to_owned(), hash_bytes(GOOD.as_bytes()).to_hex()],
    )
    .unwrap();
    let report = reg.reload(&ledger, Recheck::Hashes, None).unwrap();
    assert!(report.usable.is_empty());
    assert!(
        report.refused[0].reason.contains("gap source"),
        "{:?}",
        report.refused
    );

    // 4. Pointing at another ledger entry: refused.
    conn.execute(
        "UPDATE learned_primitives SET gap_source = 'builtin:popcount:1', ledger_seq = 5",
        [],
    )
    .unwrap();
    let report = reg.reload(&ledger, Recheck::Hashes, None).unwrap();
    assert!(report.usable.is_empty());

    // 5. A malformed row is reported, not a crash.
    conn.execute(
        "UPDATE learned_primitives SET ledger_seq = 0, code_hash = 'nope'",
        [],
    )
    .unwrap();
    let report = reg.reload(&ledger, Recheck::Hashes, None).unwrap();
    assert!(
        report.refused[0].reason.contains("malformed"),
        "{:?}",
        report.refused
    );
}

#[test]
fn only_an_admitted_program_with_its_own_pass_can_be_registered() {
    let dir = tempfile::tempdir().unwrap();
    let db = database_path(dir.path());
    let gap = popcount_gap();
    let ledger = Ledger::open(&db, Durability::Process).unwrap();
    let mut reg = PrimitiveRegistry::open(&db, Durability::Process).unwrap();
    let config = GateConfig::default();
    let prov = Provenance::user();

    let mut refused = passed(&gap, GOOD);
    refused.admitted = false;
    let e = record_admission(&ledger, &gap, &refused, &config, &prov, Purpose::Admit).unwrap();
    assert!(reg.register(&gap, GOOD, &refused, &e, &prov).is_err());

    // A pass of other code does not register this code.
    let adm = passed(&gap, GOOD);
    let e = record_admission(&ledger, &gap, &adm, &config, &prov, Purpose::Admit).unwrap();
    assert!(
        reg.register(&gap, "def popcount(n):\n    return 1\n", &adm, &e, &prov)
            .is_err()
    );
    // The right pass registers; a user-proposed record carries no model.
    let rec = reg.register(&gap, GOOD, &adm, &e, &prov).unwrap();
    assert_eq!(rec.model, None);
    assert_eq!(rec.prompt_hash, None);
    assert!(reg.contains("popcount").unwrap());
    assert!(reg.remove("popcount").unwrap());
    assert!(reg.get("popcount").unwrap().is_none());
}
