//! The escalation ladder judged by the real admission pipeline in the confined sandbox (`nmk`
//! is its own worker): a wrong greedy program and a wrong sample are refused by the real gate,
//! the repair is told what the real gate saw (the failing held-out instance and what the program
//! did, never the oracle's answer) and wins at tier 3.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};

use nmk_det::gate::{Gap, Judge, SampleCase};
use nmk_det::sandbox::{Sandbox, SandboxConfig};
use nmk_det::{Value, hash_bytes};
use nmk_kernel::capability::Grants;
use nmk_kernel::k_policy::CostSource;
use nmk_kernel::learn::escalate::{EscalateConfig, Escalation, escalate};
use nmk_kernel::ledger::{Ledger, ModelBinding};
use nmk_kernel::proposer::{Proposal, Proposer, ProposerError};

/// Replies in order; records every prompt.
struct Scripted {
    replies: Vec<String>,
    prompts: Arc<Mutex<Vec<String>>>,
}

impl Scripted {
    fn reply(&mut self, prompt: &str) -> Result<Proposal, ProposerError> {
        let mut p = self.prompts.lock().unwrap();
        let text = self
            .replies
            .get(p.len())
            .cloned()
            .unwrap_or_else(|| "no code".to_owned());
        p.push(prompt.to_owned());
        Ok(Proposal {
            text,
            tokens: 10,
            finished: true,
        })
    }
}

impl Proposer for Scripted {
    fn name(&self) -> &str {
        "scripted"
    }
    fn binding(&self) -> ModelBinding {
        ModelBinding {
            model: hash_bytes(b"m"),
            tokenizer: hash_bytes(b"t"),
            policy: hash_bytes(b"p"),
        }
    }
    fn gen_fast(&mut self, prompt: &str, _max: u32) -> Result<Proposal, ProposerError> {
        self.reply(prompt)
    }
    fn gen_sample(
        &mut self,
        prompt: &str,
        _temp: f32,
        _seed: u64,
        _max: u32,
    ) -> Result<Proposal, ProposerError> {
        self.reply(prompt)
    }
}

#[test]
fn with_the_real_gate_the_repair_sees_leak_free_feedback_and_wins() {
    let sandbox = Sandbox::new(SandboxConfig {
        worker: Some(env!("CARGO_BIN_EXE_nmk").into()),
        worker_args: vec!["sandbox-worker".into()],
        pool_size: 2,
        ..SandboxConfig::default()
    })
    .expect("nmk confines itself in its worker role");
    let samples = [(1, 2), (5, 10)]
        .into_iter()
        .map(|(x, y)| SampleCase {
            args: vec![Value::int(x)],
            expected: Value::int(y),
        })
        .collect();
    let g = Gap::new(
        "double_it",
        "double_it(n: int) -> int",
        "Return twice n.",
        samples,
        |rng| {
            vec![Value::int(
                1000 + i64::try_from(rng.below(1_000_000)).unwrap(),
            )]
        },
        Judge::oracle(|a: &[Value]| Ok(Value::int(a[0].as_i64().ok_or("not an int")? * 2))),
    )
    .unwrap()
    .with_n_seed(200, 3)
    .with_source("test:double_it:2");
    let mut config = EscalateConfig::for_gap(&g);
    config.fixed_k = 1;
    let wrong = "```python\ndef double_it(n):\n    return n * 2 if n < 10 else 0\n```";
    let good = "```python\ndef double_it(n):\n    return n + n\n```";
    let prompts = Arc::new(Mutex::new(Vec::new()));
    let mut p = Scripted {
        replies: vec![wrong.into(), wrong.into(), good.into()],
        prompts: prompts.clone(),
    };
    let ledger = Ledger::in_memory();
    let grants = Grants::none();
    let mut ctx = Escalation {
        proposer: &mut p,
        gate: &sandbox,
        ledger: &ledger,
        registry: None,
        cost: CostSource::Given(0.0),
        research: None,
        grants: &grants,
    };
    let r = escalate(&g, &mut ctx, &config, &mut |_| {}).unwrap();
    let tags: Vec<String> = r.log.iter().map(|e| e.tag.clone()).collect();
    assert_eq!(tags, ["t1-greedy", "t2-div0", "t3-repair0"]);
    assert!(r.solved, "{:?}", r.log);
    assert_eq!(r.tier, Some(3));
    assert_eq!(r.log[1].reason, "gate_fail");
    assert_eq!(r.log[1].sample, Some((2, 2)));
    assert_eq!(r.log[2].gate, Some((200, 200)));
    assert_eq!(ledger.len().unwrap(), 3);
    let fb = &r.log[1].feedback;
    let x: i64 = fb
        .split("double_it(")
        .nth(1)
        .and_then(|t| t.split(')').next())
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("feedback names the instance: {fb}"));
    let truth = (2 * x).to_string();
    let prompts = prompts.lock().unwrap().clone();
    assert!(prompts[2].contains(fb.as_str()));
    assert!(prompts[2].contains(&x.to_string()));
    for c in &prompts {
        assert!(!c.contains(&truth), "held-out truth {truth} leaked");
    }
}
