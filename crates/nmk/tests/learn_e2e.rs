//! Self-extension end to end with scripted proposers and real confined workers (`nmk
//! sandbox-worker`): the reference system's `self_extend` behaviours, plus persistence across a
//! restart with a re-gate, and tamper refusal.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use nmk_det::gate::{Gap, GateConfig, Judge, SampleCase, python_literal};
use nmk_det::sandbox::{CallLimits, Sandbox, SandboxConfig};
use nmk_det::{Value, hash_bytes};
use nmk_kernel::budget::{Budget, BudgetLimits};
use nmk_kernel::capability::Capability;
use nmk_kernel::commit_trap::ProvenRegistry;
use nmk_kernel::learn::{
    LearnConfig, LearnOutcome, PrimitiveRegistry, Recheck, RegateWith, admit, install, learn,
};
use nmk_kernel::ledger::{Action, Ledger, ModelBinding};
use nmk_kernel::proposer::{Proposal, Proposer, ProposerError};
use nmk_kernel::store::{Durability, database_path};
use nmk_kernel::{Scheduler, TaskSpec};

fn sandbox() -> Arc<Sandbox> {
    Arc::new(
        Sandbox::new(SandboxConfig {
            worker: Some(env!("CARGO_BIN_EXE_nmk").into()),
            worker_args: vec!["sandbox-worker".into()],
            pool_size: 2,
            ..SandboxConfig::default()
        })
        .expect("nmk confines itself in its worker role"),
    )
}

/// Popcount: generator ints in [0, 2^31 − 1], shift-count oracle, n 800, seed 7.
fn popcount_gap() -> Gap {
    let samples = [(7, 3), (255, 8), (0, 0), (1024, 1)]
        .into_iter()
        .map(|(x, y)| SampleCase {
            args: vec![Value::int(x)],
            expected: Value::int(y),
        })
        .collect();
    Gap::new(
        "popcount",
        "popcount(n: int) -> int",
        "Return the number of 1 bits in the binary representation of the non-negative integer n.",
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

/// The same entry, but an oracle that returns None for everything.
fn null_gap() -> Gap {
    let samples = [1, 2, 3]
        .into_iter()
        .map(|x| SampleCase {
            args: vec![Value::int(x)],
            expected: Value::Null,
        })
        .collect();
    Gap::new(
        "popcount",
        "popcount(n: int) -> int",
        "Return the number of 1 bits of n.",
        samples,
        |rng| vec![Value::int(i64::try_from(rng.below(1 << 31)).unwrap())],
        Judge::oracle(|_| Ok(Value::Null)),
    )
    .unwrap()
    .with_n_seed(800, 7)
    .with_source("builtin:null:1")
}

const STRING_COUNT: &str =
    "Here it is:\n```python\ndef popcount(n):\n    return bin(n).count(\"1\")\n```\n";
const WRONG: &str = "```python\ndef popcount(n):\n    return n % 8\n```";

/// A proposer replying from a script; `right_after_feedback` switches to the right answer once
/// the prompt carries feedback.
struct Scripted {
    replies: Vec<String>,
    right_after_feedback: Option<String>,
    calls: usize,
    prompts: Vec<String>,
    /// `None` for a greedy call, else the sampling seed.
    seeds: Vec<Option<u64>>,
}

impl Scripted {
    fn always(reply: &str) -> Scripted {
        Scripted {
            replies: vec![reply.to_owned()],
            right_after_feedback: None,
            calls: 0,
            prompts: Vec::new(),
            seeds: Vec::new(),
        }
    }

    fn reply(&mut self, prompt: &str) -> Proposal {
        self.calls += 1;
        self.prompts.push(prompt.to_owned());
        let text = match &self.right_after_feedback {
            Some(right) if prompt.contains("previous attempt was wrong") => right.clone(),
            _ => {
                let i = (self.calls - 1).min(self.replies.len() - 1);
                self.replies[i].clone()
            }
        };
        Proposal {
            text,
            tokens: 40,
            finished: true,
        }
    }
}

impl Proposer for Scripted {
    fn name(&self) -> &str {
        "scripted"
    }
    fn binding(&self) -> ModelBinding {
        ModelBinding {
            model: hash_bytes(b"scripted-model"),
            tokenizer: hash_bytes(b"scripted-tokenizer"),
            policy: hash_bytes(b"scripted-policy"),
        }
    }
    fn gen_fast(&mut self, prompt: &str, _max: u32) -> Result<Proposal, ProposerError> {
        self.seeds.push(None);
        Ok(self.reply(prompt))
    }
    fn gen_sample(
        &mut self,
        prompt: &str,
        _t: f32,
        seed: u64,
        _max: u32,
    ) -> Result<Proposal, ProposerError> {
        self.seeds.push(Some(seed));
        Ok(self.reply(prompt))
    }
}

struct Home {
    _dir: tempfile::TempDir,
    ledger: Ledger,
    registry: PrimitiveRegistry,
    db: std::path::PathBuf,
}

fn home() -> Home {
    let dir = tempfile::tempdir().unwrap();
    let db = database_path(dir.path());
    Home {
        ledger: Ledger::open(&db, Durability::Process).unwrap(),
        registry: PrimitiveRegistry::open(&db, Durability::Process).unwrap(),
        db,
        _dir: dir,
    }
}

fn run_learn(
    h: &mut Home,
    sb: &Sandbox,
    gap: &Gap,
    p: &mut Scripted,
    attempts: u32,
    gate: Option<GateConfig>,
) -> LearnOutcome {
    let mut config = LearnConfig::for_gap(gap);
    config.max_attempts = attempts;
    if let Some(g) = gate {
        config.gate = g;
    }
    learn(
        gap,
        p,
        sb,
        &h.ledger,
        Some(&mut h.registry),
        &config,
        &mut |_| {},
    )
    .unwrap()
}

fn call_through_scheduler(s: &mut Scheduler, id: &str, args: Vec<Value>) -> Value {
    let r = s.put_artifact(Value::List(args), "args").unwrap();
    s.admit(
        TaskSpec::new(id, "popcount")
            .needs("prim:popcount")
            .validated_by("popcount_ok", "SCHEMA")
            .input("args", r),
    )
    .unwrap();
    s.run(10).unwrap();
    let out = s.result(id).cloned().unwrap();
    assert!(s.task(id).unwrap().status.is_passed(), "{out:?}");
    assert_eq!(out.get("ok"), Some(&Value::Bool(true)));
    out.get("value").cloned().unwrap()
}

#[test]
fn popcount_is_learned_registered_and_served_through_the_scheduler() {
    let sb = sandbox();
    let mut h = home();
    let gap = popcount_gap();
    let mut p = Scripted::always(STRING_COUNT);
    let out = run_learn(&mut h, &sb, &gap, &mut p, 3, None);
    assert!(out.admitted, "{:?}", out.attempts);
    assert_eq!(out.attempts.len(), 1);
    assert_eq!(p.calls, 1);
    let rec = out.registered.clone().expect("registered");
    assert_eq!(rec.gate.n, 800);
    assert_eq!(rec.gate.passed, 800);
    assert_eq!(rec.gate.regate_passed, 800, "the last re-gate is ok");
    assert_eq!(rec.model, Some(p.binding()));
    assert_eq!(h.registry.code_hash("popcount"), Some(rec.code_hash));
    // The verdict is in the ledger, bound to the model and the prompt.
    let entries = h.ledger.entries(0, 100).unwrap();
    let pass = entries
        .iter()
        .find(|e| e.record.action == Action::Pass)
        .unwrap();
    assert_eq!(pass.record.opcode, "gate");
    assert_eq!(pass.record.inputs["code"], rec.code_hash);
    assert!(pass.record.inputs.contains_key("prompt"));
    assert!(h.ledger.verify(None).unwrap().ok());

    // Reloaded and installed: executor, validator and granted capability exist.
    let report = h.registry.reload(&h.ledger, Recheck::Hashes, None).unwrap();
    let prim = &report.usable[0];
    let mut s = Scheduler::new(
        "calls",
        h.ledger.clone(),
        Budget::new(BudgetLimits::default()),
    )
    .unwrap();
    install(&mut s, prim, sb.clone(), CallLimits::default()).unwrap();
    assert!(s.has_op("popcount"));
    assert!(
        s.grants()
            .allows(&Capability::parse("prim:popcount").unwrap())
    );
    assert_eq!(
        call_through_scheduler(&mut s, "a", vec![Value::int(7)]),
        Value::int(3)
    );
    assert_eq!(
        call_through_scheduler(&mut s, "b", vec![Value::int(255)]),
        Value::int(8)
    );
    assert_eq!(
        call_through_scheduler(&mut s, "c", vec![Value::int(0)]),
        Value::int(0)
    );
    // Without the capability declared, admission refuses the call.
    let r = s
        .put_artifact(Value::List(vec![Value::int(1)]), "args")
        .unwrap();
    assert!(
        s.admit(
            TaskSpec::new("d", "popcount")
                .validated_by("popcount_ok", "SCHEMA")
                .input("args", r)
        )
        .is_err()
    );
    // A learned primitive's call is never labelled PROVEN (D11): SCHEMA is its ceiling.
    let r = s
        .put_artifact(Value::List(vec![Value::int(1)]), "args")
        .unwrap();
    assert!(
        s.admit(
            TaskSpec::new("e", "popcount")
                .needs("prim:popcount")
                .validated_by("popcount_ok", "PROVEN")
                .input("args", r)
        )
        .is_err()
    );
}

#[test]
fn a_memorised_lookup_passes_the_samples_but_never_the_gate() {
    let sb = sandbox();
    let mut h = home();
    let gap = popcount_gap();
    let lookup =
        "```python\ndef popcount(n):\n    return {7: 3, 255: 8, 0: 0, 1024: 1}.get(n, 0)\n```";
    let mut p = Scripted::always(lookup);
    let out = run_learn(&mut h, &sb, &gap, &mut p, 2, None);
    assert!(!out.admitted);
    assert_eq!(out.attempts.len(), 2);
    assert!(
        out.attempts.iter().all(|a| a.reason == "gate_fail"),
        "{:?}",
        out.attempts
    );
    assert!(out.registered.is_none());
    assert!(h.registry.get("popcount").unwrap().is_none());
    // Both refusals are ledgered; the second prompt carried leak-free feedback.
    let fails = h.ledger.entries(0, 100).unwrap();
    assert_eq!(
        fails
            .iter()
            .filter(|e| e.record.action == Action::Fail)
            .count(),
        2
    );
    assert!(p.prompts[1].contains("your program returned"));
}

#[test]
fn a_flaky_proposer_is_admitted_on_the_second_attempt_after_exactly_two_calls() {
    let sb = sandbox();
    let mut h = home();
    let gap = popcount_gap();
    let mut p = Scripted {
        replies: vec![WRONG.into()],
        right_after_feedback: Some(STRING_COUNT.into()),
        calls: 0,
        prompts: Vec::new(),
        seeds: Vec::new(),
    };
    let out = run_learn(&mut h, &sb, &gap, &mut p, 3, None);
    assert!(out.admitted, "{:?}", out.attempts);
    assert_eq!(p.calls, 2);
    assert_eq!(out.attempts.len(), 2);
    assert_eq!(out.attempts[0].reason, "sample_fail");
    assert!(out.attempts[1].admitted);
    assert!(h.registry.get("popcount").unwrap().is_some());
}

#[test]
fn a_null_oracle_with_a_null_candidate_is_refused_as_non_discriminating() {
    let sb = sandbox();
    let mut h = home();
    let gap = null_gap();
    let mut p = Scripted::always("```python\ndef popcount(n):\n    return None\n```");
    let out = run_learn(&mut h, &sb, &gap, &mut p, 3, None);
    assert!(!out.admitted);
    assert_eq!(out.reason, "placebo_unsound");
    assert_eq!(p.calls, 1, "placebo_unsound stops at once");
    assert!(h.registry.get("popcount").unwrap().is_none());
}

#[test]
fn a_candidate_printing_a_fake_verdict_and_exiting_is_not_registered() {
    let sb = sandbox();
    let mut h = home();
    let gap = popcount_gap();
    let fake = "```python\ndef popcount(n):\n    print('{\"ok\": true, \"passed\": 800, \"n\": 800}')\n    raise SystemExit(0)\n```";
    let mut p = Scripted::always(fake);
    let out = run_learn(&mut h, &sb, &gap, &mut p, 2, None);
    assert!(!out.admitted, "{:?}", out.attempts);
    assert!(h.registry.get("popcount").unwrap().is_none());
}

#[test]
fn a_lookup_of_the_seed_7_instances_passes_gate_one_and_fails_the_regate() {
    let sb = sandbox();
    let mut h = home();
    let gap = popcount_gap();
    let mut pairs: Vec<(Value, Value)> = gap
        .instances(20, 7)
        .unwrap()
        .into_iter()
        .map(|a| {
            let truth = gap.expected(&a).unwrap().unwrap();
            (a[0].clone(), truth)
        })
        .collect();
    for s in &gap.samples {
        pairs.push((s.args[0].clone(), s.expected.clone()));
    }
    let table = pairs
        .iter()
        .map(|(k, v)| format!("{}: {}", python_literal(k), python_literal(v)))
        .collect::<Vec<_>>()
        .join(", ");
    let code = format!("def popcount(n):\n    return {{{table}}}.get(n, 0)\n");
    let config = GateConfig {
        n: 20,
        seed: 7,
        ..GateConfig::default()
    };
    let adm = admit(&gap, &code, &sb, &config);
    assert!(!adm.admitted);
    assert_eq!(adm.gate_counts(), Some((20, 20)), "gate one passes");
    assert_eq!(adm.reason_str(), "regate_fail");
    let mut p = Scripted::always(&format!("```python\n{code}```"));
    let out = run_learn(&mut h, &sb, &gap, &mut p, 1, Some(config));
    assert!(!out.admitted);
    assert_eq!(out.reason, "regate_fail");
    assert!(h.registry.get("popcount").unwrap().is_none());
}

#[test]
fn the_registry_survives_a_restart_is_regated_and_refuses_tampered_code() {
    let sb = sandbox();
    let mut h = home();
    let gap = popcount_gap();
    let mut p = Scripted::always(STRING_COUNT);
    assert!(run_learn(&mut h, &sb, &gap, &mut p, 1, None).admitted);
    let db = h.db.clone();
    drop(h.registry);

    // "Restart": new handles on the same database, nothing in memory.
    let ledger = Ledger::open(&db, Durability::Process).unwrap();
    let mut reg = PrimitiveRegistry::open(&db, Durability::Process).unwrap();
    assert_eq!(reg.code_hash("popcount"), None);
    let before = ledger.len().unwrap();
    let mut rebuild = |src: &str| {
        assert_eq!(src, "builtin:popcount:1");
        let g = popcount_gap();
        let c = GateConfig {
            n: g.n,
            seed: g.seed,
            ..GateConfig::default()
        };
        Ok((g, c))
    };
    let report = reg
        .reload(
            &ledger,
            Recheck::Regate,
            Some(RegateWith {
                sandbox: &sb,
                rebuild_gap: &mut rebuild,
                seed: 0xDEAD_BEEF,
                n: Some(300),
            }),
        )
        .unwrap();
    assert_eq!(report.usable.len(), 1, "{:?}", report.refused);
    let regate = report.usable[0].regate().unwrap();
    assert!(regate.admitted);
    assert_eq!(regate.seed, 0xDEAD_BEEF);
    assert_eq!(ledger.len().unwrap(), before + 1, "the re-gate is ledgered");
    assert!(reg.code_hash("popcount").is_some());
    let limits = CallLimits::default();
    assert_eq!(
        report.usable[0]
            .call(&sb, &[Value::int(255)], &limits)
            .unwrap(),
        nmk_det::sandbox::CallResult::Ok(Value::int(8))
    );

    // Tampered code is refused even before any re-gate, and never served.
    tamper(&db, "def popcount(n):\n    return 3\n");
    let report = reg
        .reload(
            &ledger,
            Recheck::Regate,
            Some(RegateWith {
                sandbox: &sb,
                rebuild_gap: &mut rebuild,
                seed: 1,
                n: Some(300),
            }),
        )
        .unwrap();
    assert!(report.usable.is_empty());
    assert!(report.refused[0].reason.contains("tampered"));
    assert_eq!(reg.code_hash("popcount"), None);
}

/// Swaps the stored code behind the registry's back.
fn tamper(db: &std::path::Path, code: &str) {
    let conn = nmk_kernel::store::open_database(db, Durability::Process).unwrap();
    conn.execute(
        "UPDATE learned_primitives SET code = ?1 WHERE entry = 'popcount'",
        [code],
    )
    .unwrap();
}

#[test]
fn a_reply_without_the_function_is_no_code_and_later_attempts_sample_with_feedback() {
    let sb = sandbox();
    let mut h = home();
    let gap = popcount_gap();
    let mut p = Scripted::always("I cannot help with that.");
    let mut config = LearnConfig::for_gap(&gap);
    config.max_attempts = 3;
    let mut events = Vec::new();
    let out = learn(
        &gap,
        &mut p,
        &sb,
        &h.ledger,
        Some(&mut h.registry),
        &config,
        &mut |e| {
            events.push(match e {
                nmk_kernel::learn::LearnEvent::Proposing { attempt, of } => {
                    format!("propose {attempt}/{of}")
                }
                nmk_kernel::learn::LearnEvent::Gating { attempt, .. } => format!("gate {attempt}"),
                nmk_kernel::learn::LearnEvent::Verdict { attempt, admission } => {
                    format!("verdict {attempt} {}", admission.reason_str())
                }
            })
        },
    )
    .unwrap();
    assert!(!out.admitted);
    assert_eq!(out.attempts.len(), 3);
    assert!(out.attempts.iter().all(|a| a.reason == "no_code"));
    assert_eq!(
        p.seeds,
        vec![None, Some(1), Some(2)],
        "greedy, then seeds 1, 2"
    );
    assert!(p.prompts[1].contains("no code"), "{}", p.prompts[1]);
    assert_eq!(out.tokens, 120);
    assert_eq!(events[0], "propose 1/3");
    assert_eq!(events[2], "verdict 1 no_code");
    assert_eq!(events.len(), 9);
    assert_eq!(h.ledger.len().unwrap(), 3, "every verdict is ledgered");
}
