//! The escalation ladder with a scripted proposer and a stub gatekeeper (no sandbox worker in
//! this crate's tests): which rung solves, how wide tier 2 is and why, what a repair is told,
//! when research may run, the exact abstention, the stop on an unsound gap, the fail-closed cost,
//! and a ledger entry for every verdict. Plus the SSRF address policy over many addresses.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::cell::Cell;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nmk_det::gate::{
    FailureReason, FirstFailure, Gap, GateConfig, GateReport, Judge, SampleCase, StageReport,
};
use nmk_det::{Value, hash_bytes};
use nmk_kernel::capability::{Capability, Grants};
use nmk_kernel::k_policy::{
    BudgetNote, CostModel, CostSource, GpuReading, HostLoad, KPolicy, KReason, LoadSensor,
    QueueDepth, SensorError,
};
use nmk_kernel::learn::escalate::{
    ABSTAIN_MESSAGE, EscalateConfig, Escalation, EscalationReport, Gatekeeper, Tier, escalate,
};
use nmk_kernel::learn::{Admission, PrimitiveRegistry, RefusalReason};
use nmk_kernel::ledger::{Action, Ledger, ModelBinding};
use nmk_kernel::proposer::{Proposal, Proposer, ProposerError};
use nmk_kernel::research::{
    Document, FetchPolicy, NET_FETCH, Research, ResearchError, ResearchLimits, SsrfRefusal,
    host_name_refusal, ip_refusal,
};
use nmk_kernel::store::{Durability, database_path};

/// The oracle's answer on the stub gate's failing held-out instance. It must never reach a
/// prompt.
const HELD_OUT_TRUTH: &str = "TRUTH-4242-never-shown";

fn gap() -> Gap {
    let samples = [(1, 2), (5, 10)]
        .into_iter()
        .map(|(x, y)| SampleCase {
            args: vec![Value::int(x)],
            expected: Value::int(y),
        })
        .collect();
    Gap::new(
        "double_it",
        "double_it(n: int) -> int",
        "Return twice n.",
        samples,
        |rng| vec![Value::int(i64::try_from(rng.below(1000)).unwrap())],
        Judge::oracle(|a: &[Value]| Ok(Value::int(a[0].as_i64().ok_or("not an int")? * 2))),
    )
    .unwrap()
    .with_n_seed(1000, 3)
    .with_source("test:double_it:1")
}

/// A program whose body says how the stub gate should judge it.
fn program(marker: &str) -> String {
    format!("```python\ndef double_it(n):\n    return n  # {marker}\n```")
}

fn stage(n: usize, passed: usize, first_fail: Option<FirstFailure>) -> StageReport {
    StageReport {
        seed: 3,
        n,
        passed,
        distinct: n,
        first_fail,
        instances_hash: hash_bytes(b"i"),
        outputs_hash: hash_bytes(b"o"),
        note: None,
    }
}

/// Judges by marker (empty code: `no_code`, as stage 0 does): `GOOD` passes; `PLACEBO`/`GAPBAD`/`NOBOX` are terminal; `SAMPLE` fails a
/// visible sample (no gate ran); `CLOSE` fails 10 of 1000 held-out instances; anything else
/// fails all of them. Held-out feedback is written the way the real gate writes it: the
/// instance and what the program did, with the attempt's own marker as "what it returned".
#[derive(Default)]
struct StubGate {
    calls: Cell<u32>,
}

impl Gatekeeper for StubGate {
    fn admit(&self, gap: &Gap, code: &str, config: &GateConfig) -> Admission {
        self.calls.set(self.calls.get() + 1);
        if code.trim().is_empty() {
            // Stage 0, as the real pipeline does it.
            return Admission {
                entry: gap.entry.clone(),
                admitted: false,
                reason: Some(RefusalReason::NoCode),
                gap_spec_hash: gap.spec_hash(),
                code_hash: hash_bytes(code.as_bytes()),
                n: config.n,
                seed: config.seed,
                seed2: nmk_det::gate::second_seed(config.seed),
                report: None,
                feedback: "no code".into(),
                elapsed: Duration::ZERO,
            };
        }
        let marker = code
            .split("# ")
            .nth(1)
            .map(|m| m.trim().to_owned())
            .unwrap_or_default();
        let mut report = GateReport {
            passed: false,
            reason: None,
            code_hash: hash_bytes(code.as_bytes()),
            sample: Some(stage(2, 2, None)),
            gate: None,
            regate: None,
            placebos: Vec::new(),
            deterministic: Some(true),
            feedback: String::new(),
            elapsed: Duration::ZERO,
        };
        let held_out_fail = |passed: usize| {
            stage(
                config.n,
                passed,
                Some(FirstFailure {
                    index: 3,
                    args: vec![Value::int(77)],
                    got: format!("returned {marker:?}"),
                }),
            )
        };
        let reason = if marker == "GOOD" {
            report.gate = Some(stage(config.n, config.n, None));
            report.regate = Some(stage(config.n, config.n, None));
            None
        } else if marker == "SAMPLE" {
            report.sample = Some(stage(2, 1, None));
            report.feedback =
                "visible sample 1: double_it(5) should return 10, your program returned 5".into();
            Some(FailureReason::SampleFail)
        } else if marker == "PLACEBO" {
            report.gate = Some(stage(config.n, config.n, None));
            report.regate = Some(stage(config.n, config.n, None));
            report.feedback = "placebo echo passed 300 of 300".into();
            Some(FailureReason::PlaceboUnsound)
        } else if marker == "GAPBAD" {
            report.feedback = "the gap is unsound, not the candidate".into();
            Some(FailureReason::GapUnsound)
        } else if marker == "NOBOX" {
            report.feedback = "no confinement".into();
            Some(FailureReason::Unsandboxed)
        } else {
            let passed = if marker == "CLOSE" { config.n - 10 } else { 0 };
            report.gate = Some(held_out_fail(passed));
            report.feedback = format!(
                "held-out instance 3 of {}: double_it(77) — your program returned {marker:?}",
                config.n
            );
            Some(FailureReason::GateFail)
        };
        report.passed = reason.is_none();
        report.reason = reason;
        Admission {
            entry: gap.entry.clone(),
            admitted: reason.is_none(),
            reason: reason.map(RefusalReason::Gate),
            gap_spec_hash: gap.spec_hash(),
            code_hash: hash_bytes(code.as_bytes()),
            n: config.n,
            seed: config.seed,
            seed2: nmk_det::gate::second_seed(config.seed),
            feedback: report.feedback.clone(),
            report: Some(report),
            elapsed: Duration::ZERO,
        }
    }
}

/// One call the proposer saw.
#[derive(Debug, Clone)]
struct Call {
    prompt: String,
    temp: f32,
    seed: Option<u64>,
}

/// Replies in order; once the script runs out, a wrong program marked with its call number.
struct Scripted {
    replies: Vec<Result<String, String>>,
    calls: Arc<Mutex<Vec<Call>>>,
}

impl Scripted {
    fn new(replies: &[&str]) -> (Scripted, Arc<Mutex<Vec<Call>>>) {
        let calls = Arc::new(Mutex::new(Vec::new()));
        (
            Scripted {
                replies: replies.iter().map(|r| Ok(program(r))).collect(),
                calls: calls.clone(),
            },
            calls,
        )
    }

    fn reply(&mut self, call: Call) -> Result<Proposal, ProposerError> {
        let mut calls = self.calls.lock().unwrap();
        let i = calls.len();
        calls.push(call);
        match self.replies.get(i) {
            Some(Ok(text)) => Ok(Proposal {
                text: text.clone(),
                tokens: 10,
                finished: true,
            }),
            Some(Err(e)) => Err(ProposerError(e.clone())),
            None => Ok(Proposal {
                text: program(&format!("wrong{i}")),
                tokens: 10,
                finished: true,
            }),
        }
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
        self.reply(Call {
            prompt: prompt.to_owned(),
            temp: 0.0,
            seed: None,
        })
    }
    fn gen_sample(
        &mut self,
        prompt: &str,
        temp: f32,
        seed: u64,
        _max: u32,
    ) -> Result<Proposal, ProposerError> {
        self.reply(Call {
            prompt: prompt.to_owned(),
            temp,
            seed: Some(seed),
        })
    }
}

/// Research that returns one long document and counts its calls.
struct FakeResearch {
    calls: Cell<u32>,
    text: String,
}

impl FakeResearch {
    fn new() -> FakeResearch {
        FakeResearch {
            calls: Cell::new(0),
            text: format!("Doubling: multiply by two. {}", "filler ".repeat(2000)),
        }
    }
}

impl Research for FakeResearch {
    fn name(&self) -> &str {
        "fake"
    }
    fn search(&self, query: &str, limits: &ResearchLimits) -> Result<Vec<Document>, ResearchError> {
        self.calls.set(self.calls.get() + 1);
        assert!(query.contains("double it"), "{query}");
        // Deliberately ignores the caps: the ladder must cut again.
        Ok((0..limits.max_documents + 2)
            .map(|i| Document {
                url: format!("https://example.org/{i}"),
                text: self.text.clone(),
            })
            .collect())
    }
}

struct Setup {
    ledger: Ledger,
    gate: StubGate,
    grants: Grants,
    config: EscalateConfig,
}

fn setup() -> Setup {
    let g = gap();
    let mut config = EscalateConfig::for_gap(&g);
    config.gate.n = 1000;
    Setup {
        ledger: Ledger::in_memory(),
        gate: StubGate::default(),
        grants: Grants::none(),
        config,
    }
}

fn run_with(
    s: &Setup,
    proposer: &mut dyn Proposer,
    cost: CostSource<'_>,
    research: Option<&dyn Research>,
    registry: Option<&mut PrimitiveRegistry>,
) -> EscalationReport {
    let mut ctx = Escalation {
        proposer,
        gate: &s.gate,
        ledger: &s.ledger,
        registry,
        cost,
        research,
        grants: &s.grants,
    };
    escalate(&gap(), &mut ctx, &s.config, &mut |_| {}).unwrap()
}

fn run(s: &Setup, replies: &[&str]) -> (EscalationReport, Vec<Call>) {
    let (mut p, calls) = Scripted::new(replies);
    let r = run_with(s, &mut p, CostSource::Given(0.0), None, None);
    let calls = calls.lock().unwrap().clone();
    (r, calls)
}

fn tags(r: &EscalationReport) -> Vec<String> {
    r.log.iter().map(|e| e.tag.clone()).collect()
}

fn policy() -> KPolicy {
    KPolicy::with_k(1, 5, 0.5).unwrap()
}

#[test]
fn tier_1_greedy_wins_and_is_registered() {
    let s = setup();
    let dir = tempfile::tempdir().unwrap();
    let db = database_path(dir.path());
    let mut reg = PrimitiveRegistry::open(&db, Durability::Process).unwrap();
    let (mut p, calls) = Scripted::new(&["GOOD"]);
    let r = run_with(&s, &mut p, CostSource::Given(0.0), None, Some(&mut reg));
    assert!(r.solved);
    assert_eq!(r.tier, Some(1));
    assert_eq!(r.abstain, None);
    assert_eq!(tags(&r), ["t1-greedy"]);
    assert_eq!(r.log[0].temperature, 0.0);
    assert_eq!(calls.lock().unwrap()[0].seed, None, "tier 1 is greedy");
    assert!(r.k.is_none(), "tier 2 never reached");
    let rec = r.registered.as_ref().expect("the winner is registered");
    assert_eq!(rec.entry, "double_it");
    assert_eq!(rec.code, r.code.clone().unwrap());
    assert_eq!(rec.ledger, r.log[0].ledger.unwrap());
    assert!(reg.contains("double_it").unwrap());
    assert_eq!(s.ledger.len().unwrap(), 1);
}

#[test]
fn tier_2_wins_on_a_temperature_sample() {
    let s = setup();
    let (r, calls) = run(&s, &["bad", "bad", "GOOD"]);
    assert!(r.solved);
    assert_eq!(r.tier, Some(2));
    assert_eq!(tags(&r), ["t1-greedy", "t2-div0", "t2-div1"]);
    assert_eq!((calls[1].temp, calls[1].seed), (0.8, Some(0)));
    assert_eq!((calls[2].temp, calls[2].seed), (0.8, Some(1)));
    let k = r.k.unwrap();
    assert!(!k.policy);
    assert_eq!(k.k, 3, "the fixed k without a policy");
}

/// Runs an all-wrong ladder and returns the tier-2 audit and how many tier-2 attempts ran.
fn width(first: &str, cost: CostSource<'_>, importance: f64, budget: Option<f64>) -> (u32, usize) {
    let mut s = setup();
    s.config.policy = Some(policy());
    s.config.importance = importance;
    s.config.budget = budget;
    let (mut p, _) = Scripted::new(&[first]);
    let r = run_with(&s, &mut p, cost, None, None);
    let n2 = r.log.iter().filter(|e| e.tier == Tier::Diverse).count();
    let k = r.k.unwrap();
    assert!(k.policy);
    assert_eq!(k.k as usize, n2, "exactly k samples run");
    (k.k, n2)
}

#[test]
fn tier_2_width_follows_the_policy_severity_cost_and_budget() {
    // Calm: tier 1 was close (10 of 1000 wrong → severity 0.01): no reason to widen.
    let mut s = setup();
    s.config.policy = Some(policy());
    s.config.importance = 1.0;
    let (mut p, _) = Scripted::new(&["CLOSE"]);
    let r = run_with(&s, &mut p, CostSource::Given(0.0), None, None);
    let k = r.k.unwrap();
    assert!((k.severity - 0.01).abs() < 1e-9, "{}", k.severity);
    assert_eq!(k.k, 1);
    assert_eq!(k.reason, Some(KReason::ThinDefault));

    // Severe (every held-out instance wrong) on an idle machine: wide.
    let (k_severe, _) = width("bad", CostSource::Given(0.0), 1.0, None);
    assert_eq!(k_severe, 5);
    // No gate ran (a visible sample failed): severity 1.0, also wide.
    let mut s = setup();
    s.config.policy = Some(policy());
    s.config.importance = 1.0;
    let (mut p, _) = Scripted::new(&["SAMPLE"]);
    let r = run_with(&s, &mut p, CostSource::Given(0.0), None, None);
    assert_eq!(r.k.as_ref().unwrap().severity, 1.0);
    assert_eq!(
        r.k.as_ref().unwrap().used_signal,
        Some(KReason::IndependentDisagreement)
    );
    assert_eq!(r.k.unwrap().k, 5);
    // Same severity on a saturated machine: cost brakes exploration to k_min.
    let (k_busy, _) = width("bad", CostSource::Given(1.0), 1.0, None);
    assert_eq!(k_busy, 1);
    // A budget of 2 clamps.
    let mut s = setup();
    s.config.policy = Some(policy());
    s.config.importance = 1.0;
    s.config.budget = Some(2.0);
    let (mut p, _) = Scripted::new(&["bad"]);
    let r = run_with(&s, &mut p, CostSource::Given(0.0), None, None);
    let k = r.k.unwrap();
    assert_eq!((k.decided_k, k.k), (5, 2));
    assert_eq!(k.budget_note, Some(BudgetNote::Clamped));
    // An exhausted budget still runs one sample (k = max(1, admitted)).
    let (k_zero, _) = width("bad", CostSource::Given(0.0), 1.0, Some(0.0));
    assert_eq!(k_zero, 1);
    // Lower importance widens less.
    let (k_low, _) = width("bad", CostSource::Given(0.0), 0.2, None);
    assert!(k_low < k_severe, "{k_low} < {k_severe}");
}

struct FailingSensor;
impl LoadSensor for FailingSensor {
    fn read(&self) -> Result<HostLoad, SensorError> {
        Err(SensorError("no /proc".into()))
    }
}

struct IdleSensor;
impl LoadSensor for IdleSensor {
    fn read(&self) -> Result<HostLoad, SensorError> {
        Ok(HostLoad {
            load1: Some(0.0),
            cpu_count: Some(2),
            memory_pct: Some(10.0),
            gpu: GpuReading::NoGpu,
        })
    }
}

#[test]
fn a_failing_cost_sensor_counts_as_cost_one() {
    let model = CostModel::default();
    let queue = Some(QueueDepth::default());
    let idle = CostSource::Sensor {
        sensor: &IdleSensor,
        model: &model,
        queue,
    };
    let (k_idle, _) = width("bad", idle, 1.0, None);
    assert_eq!(k_idle, 5, "a working idle sensor lets tier 2 widen");

    let mut s = setup();
    s.config.policy = Some(policy());
    s.config.importance = 1.0;
    let (mut p, _) = Scripted::new(&["bad"]);
    let failing = CostSource::Sensor {
        sensor: &FailingSensor,
        model: &model,
        queue,
    };
    let r = run_with(&s, &mut p, failing, None, None);
    let k = r.k.unwrap();
    assert_eq!(k.cost, 1.0);
    assert!(k.cost_failure.as_deref().unwrap().contains("no /proc"));
    assert_eq!(k.k, 1, "never the widest k on a broken probe (D30)");
    assert_eq!(k.reason, Some(KReason::CostBraked));

    // A probe that errs, and no source at all, fail closed too.
    let probe = || Err::<f64, String>("timeout".into());
    let (k_probe, _) = width("bad", CostSource::Probe(&probe), 1.0, None);
    assert_eq!(k_probe, 1);
    let (k_unknown, _) = width("bad", CostSource::Unknown, 1.0, None);
    assert_eq!(k_unknown, 1);
}

#[test]
fn tier_3_repairs_each_sample_from_its_own_leak_free_feedback() {
    let s = setup();
    let (r, calls) = run(&s, &["t1", "d0", "d1", "d2", "GOOD"]);
    assert!(r.solved);
    assert_eq!(r.tier, Some(3));
    assert_eq!(
        tags(&r),
        ["t1-greedy", "t2-div0", "t2-div1", "t2-div2", "t3-repair0"]
    );
    let repair = &calls[4];
    assert_eq!((repair.temp, repair.seed), (0.8, Some(300)));
    // The repair quotes sample 0's feedback and program, not another attempt's.
    assert!(
        repair.prompt.contains(&r.log[1].feedback),
        "{}",
        repair.prompt
    );
    assert!(repair.prompt.contains("# d0"));
    assert!(!repair.prompt.contains("\"d1\""));
    assert!(repair.prompt.contains("general algorithm"));
    // No prompt ever carries the held-out truth.
    for c in &calls {
        assert!(!c.prompt.contains(HELD_OUT_TRUTH));
        assert!(!c.prompt.contains("154"), "2 × 77 is the held-out truth");
    }

    // All wrong without research: three repairs, seeds 300..302, each from its own sample.
    let (r, calls) = run(&s, &[]);
    assert!(!r.solved);
    let repairs: Vec<&Call> = calls[4..7].iter().collect();
    for (i, c) in repairs.iter().enumerate() {
        assert_eq!(c.seed, Some(300 + i as u64));
        assert!(c.prompt.contains(&r.log[1 + i].feedback));
        assert!(c.prompt.contains(&format!("# wrong{}", 1 + i)));
    }
}

#[test]
fn tier_4_research_shapes_the_prompt_only_when_granted() {
    let mut s = setup();
    s.grants.grant(Capability::parse(NET_FETCH).unwrap());
    let research = FakeResearch::new();
    let mut script = vec!["bad"; 7];
    script.push("GOOD");
    let (mut p, calls) = Scripted::new(&script);
    let r = run_with(&s, &mut p, CostSource::Given(0.0), Some(&research), None);
    assert!(r.solved);
    assert_eq!(r.tier, Some(4));
    assert_eq!(r.log.last().unwrap().tag, "t4-research0");
    assert_eq!(research.calls.get(), 1);
    assert!(r.research.ran && r.research.granted && r.research.configured);
    assert_eq!(r.research.urls.len(), 2, "capped to two documents");
    assert!(r.research.reference_chars <= 3500);
    let calls = calls.lock().unwrap().clone();
    let last = calls.last().unwrap();
    assert_eq!(last.seed, None, "the first research attempt is greedy");
    assert!(last.prompt.contains("do not copy verbatim"));
    assert!(last.prompt.contains("multiply by two"));
    let filler = last.prompt.matches("filler").count() * "filler ".len();
    assert!(filler <= 3500, "reference text capped: {filler}");
    // The second research attempt samples at T 0.6, seed 1.
    let (mut p, calls) = Scripted::new(&["bad"; 9]);
    let r = run_with(&s, &mut p, CostSource::Given(0.0), Some(&research), None);
    assert_eq!(r.abstain.as_deref(), Some(ABSTAIN_MESSAGE));
    let calls = calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 9);
    assert_eq!((calls[8].temp, calls[8].seed), (0.6, Some(1)));

    // Configured but not granted: research never runs.
    let s = setup();
    let research = FakeResearch::new();
    let (mut p, calls) = Scripted::new(&["bad"; 7]);
    let r = run_with(&s, &mut p, CostSource::Given(0.0), Some(&research), None);
    assert_eq!(research.calls.get(), 0);
    assert!(r.research.configured && !r.research.granted && !r.research.ran);
    assert!(r.research.error.as_deref().unwrap().contains(NET_FETCH));
    assert_eq!(calls.lock().unwrap().len(), 7);
    assert_eq!(r.abstain.as_deref(), Some(ABSTAIN_MESSAGE));
}

#[test]
fn every_rung_failing_abstains_with_the_exact_message() {
    let s = setup();
    let (r, calls) = run(&s, &[]);
    assert!(!r.solved);
    assert_eq!(r.tier, None);
    assert_eq!(r.unsound, None);
    assert_eq!(
        r.abstain.as_deref(),
        Some("I'm sorry, I don't know how to do that.")
    );
    assert_eq!(calls.len(), 1 + 3 + 3);
    assert!(r.code.is_none() && r.registered.is_none());
}

#[test]
fn every_verdict_has_its_own_ledger_entry_and_a_failed_generation_none() {
    let s = setup();
    let (mut p, _) = Scripted::new(&[]);
    p.replies = vec![
        Ok(program("bad")),
        Err("out of memory".into()),
        Ok("no code at all".into()),
    ];
    let r = run_with(&s, &mut p, CostSource::Given(0.0), None, None);
    assert_eq!(r.log.len(), 7);
    let gated: Vec<_> = r
        .log
        .iter()
        .filter(|e| e.reason != "proposer_error")
        .collect();
    assert_eq!(gated.len(), 6);
    assert_eq!(s.ledger.len().unwrap(), 6, "one entry per verdict");
    let mut seqs: Vec<u64> = gated.iter().map(|e| e.ledger.unwrap().seq).collect();
    seqs.dedup();
    assert_eq!(seqs.len(), 6);
    let failed = &r.log[1];
    assert_eq!(failed.reason, "proposer_error");
    assert!(failed.ledger.is_none());
    assert_eq!(r.log[2].reason, "no_code");
    assert!(s.ledger.verify(None).unwrap().ok());
    for e in &gated {
        let rec = s
            .ledger
            .entries(e.ledger.unwrap().seq, 1)
            .unwrap()
            .remove(0)
            .record;
        assert_eq!(rec.opcode, "gate");
        assert_eq!(rec.action, Action::Fail);
        assert_eq!(rec.inputs["prompt"], e.prompt_hash);
    }
    // The repair of the failed generation still runs, told only that there was no program.
    assert_eq!(r.log[5].tag, "t3-repair1");
}

#[test]
fn an_unsound_gap_or_environment_stops_the_ladder_at_once() {
    for (marker, reason) in [
        ("PLACEBO", "placebo_unsound"),
        ("GAPBAD", "gap_unsound"),
        ("NOBOX", "unsandboxed"),
    ] {
        let s = setup();
        let (r, calls) = run(&s, &[marker]);
        assert_eq!(calls.len(), 1, "{marker}: no rung burnt");
        assert!(!r.solved);
        assert_eq!(r.unsound.as_deref(), Some(reason));
        assert_eq!(
            r.abstain, None,
            "an unsound judge is reported, not abstained on"
        );
        assert_eq!(s.ledger.len().unwrap(), 1, "the verdict is still ledgered");
    }
    // Mid-ladder too: a terminal verdict in tier 2 stops before the next sample.
    let s = setup();
    let (r, calls) = run(&s, &["bad", "bad", "GAPBAD"]);
    assert_eq!(calls.len(), 3);
    assert_eq!(r.unsound.as_deref(), Some("gap_unsound"));
    assert!(r.k.is_some());
}

// ---- SSRF address policy ----

fn refused(ip: &str) -> Option<SsrfRefusal> {
    ip_refusal(ip.parse::<IpAddr>().unwrap())
}

#[test]
fn non_public_addresses_are_refused() {
    use SsrfRefusal::*;
    let cases: &[(&str, SsrfRefusal)] = &[
        ("0.0.0.0", Unspecified),
        ("0.1.2.3", Unspecified),
        ("127.0.0.1", Loopback),
        ("127.0.0.2", Loopback),
        ("127.255.255.254", Loopback),
        ("10.0.0.1", Private),
        ("10.255.255.255", Private),
        ("172.16.0.1", Private),
        ("172.31.255.255", Private),
        ("192.168.1.1", Private),
        ("100.64.0.1", Shared),
        ("100.127.255.255", Shared),
        ("169.254.0.1", LinkLocal),
        ("169.254.169.254", Metadata),
        ("100.100.100.200", Metadata),
        ("224.0.0.1", Multicast),
        ("239.255.255.250", Multicast),
        ("255.255.255.255", Reserved),
        ("240.0.0.1", Reserved),
        ("192.0.2.1", Reserved),
        ("198.51.100.7", Reserved),
        ("203.0.113.9", Reserved),
        ("198.18.0.1", Reserved),
        ("::", Unspecified),
        ("::1", Loopback),
        ("::ffff:127.0.0.1", Loopback),
        ("::ffff:10.1.2.3", Private),
        ("::ffff:169.254.169.254", Metadata),
        ("::ffff:0.0.0.0", Unspecified),
        ("::127.0.0.1", Loopback),
        ("::8.8.8.8", Reserved),
        ("64:ff9b::7f00:1", Loopback),
        ("64:ff9b::a9fe:a9fe", Metadata),
        ("2002:7f00:1::", Loopback),
        ("2002:c0a8:101::1", Private),
        ("fc00::1", Private),
        ("fd12:3456::1", Private),
        ("fd00:ec2::254", Metadata),
        ("fe80::1", LinkLocal),
        ("febf::1", LinkLocal),
        ("fec0::1", Private),
        ("ff02::1", Multicast),
        ("ff05::2", Multicast),
        ("2001:db8::1", Reserved),
        ("2001:0:4136:e378::1", Reserved),
        ("100::1", Reserved),
        ("::2", Unspecified),
        ("::808:808", Reserved),
    ];
    for (ip, why) in cases {
        assert_eq!(refused(ip), Some(*why), "{ip}");
    }
}

#[test]
fn public_addresses_pass() {
    for ip in [
        "8.8.8.8",
        "1.1.1.1",
        "93.184.215.14",
        "172.15.255.255",
        "172.32.0.1",
        "100.63.255.255",
        "100.128.0.1",
        "169.253.1.1",
        "192.169.0.1",
        "11.0.0.1",
        "2606:4700:4700::1111",
        "2a00:1450:4001:81c::200e",
        "::ffff:8.8.8.8",
        "64:ff9b::808:808",
        "2002:808:808::1",
    ] {
        assert_eq!(refused(ip), None, "{ip}");
    }
}

#[test]
fn local_host_names_are_refused_before_resolution() {
    for h in [
        "localhost",
        "LOCALHOST",
        "localhost.",
        "foo.localhost",
        "a.b.localhost",
        "localhost.localdomain",
        "ip6-localhost",
    ] {
        assert_eq!(host_name_refusal(h), Some(SsrfRefusal::LoopbackName), "{h}");
    }
    for h in ["metadata.google.internal", "metadata"] {
        assert_eq!(host_name_refusal(h), Some(SsrfRefusal::Metadata), "{h}");
    }
    for h in [
        "intranet",
        "printer.local",
        "db.internal",
        "router.lan",
        "nas.home.arpa",
        "2130706433",
        "0x7f.1",
        "127.1",
        "1.0.0.127.in-addr.arpa",
    ] {
        assert_eq!(host_name_refusal(h), Some(SsrfRefusal::LocalName), "{h}");
    }
    for h in ["", "a..b", "exa mple.org", "ex_ample.org", "ünï.org"] {
        assert_eq!(host_name_refusal(h), Some(SsrfRefusal::BadHost), "{h:?}");
    }
    for h in [
        "example.org",
        "docs.python.org",
        "en.wikipedia.org",
        "a-b.example.com.",
    ] {
        assert_eq!(host_name_refusal(h), None, "{h}");
    }
}

#[test]
fn urls_are_checked_for_scheme_host_and_literal_addresses() {
    let p = FetchPolicy::public_only();
    assert_eq!(
        p.check_url("https://docs.python.org/3/library/"),
        Ok(("docs.python.org".into(), 443))
    );
    assert_eq!(
        p.check_url("http://Example.ORG:8080/x?q=1"),
        Ok(("example.org".into(), 8080))
    );
    assert_eq!(p.check_url("ftp://example.org/"), Err(SsrfRefusal::Scheme));
    assert_eq!(p.check_url("file:///etc/passwd"), Err(SsrfRefusal::Scheme));
    assert_eq!(p.check_url("example.org"), Err(SsrfRefusal::Scheme));
    assert_eq!(
        p.check_url("http://localhost:8000/"),
        Err(SsrfRefusal::LoopbackName)
    );
    assert_eq!(p.check_url("http://127.0.0.1/"), Err(SsrfRefusal::Loopback));
    assert_eq!(p.check_url("http://[::1]:80/"), Err(SsrfRefusal::Loopback));
    assert_eq!(
        p.check_url("http://[::ffff:169.254.169.254]/latest/meta-data"),
        Err(SsrfRefusal::Metadata)
    );
    assert_eq!(
        p.check_url("http://169.254.169.254/latest/meta-data"),
        Err(SsrfRefusal::Metadata)
    );
    assert_eq!(
        p.check_url("http://user@example.org/"),
        Err(SsrfRefusal::BadHost)
    );
    assert_eq!(
        p.check_url("http://example.org:0/"),
        Err(SsrfRefusal::BadHost)
    );
    assert_eq!(
        p.check_url("http://example.org:99999/"),
        Err(SsrfRefusal::BadHost)
    );
    assert_eq!(p.check_url("http:///x"), Err(SsrfRefusal::BadHost));
}

#[test]
fn the_test_allowance_covers_one_loopback_port_by_address_only() {
    let p = FetchPolicy::allowing_loopback_port(4321);
    let at = |ip: &str, port: u16| p.check_addr(SocketAddr::new(ip.parse().unwrap(), port));
    assert_eq!(at("127.0.0.1", 4321), Ok(()));
    assert_eq!(at("::1", 4321), Ok(()));
    assert_eq!(at("127.0.0.1", 4322), Err(SsrfRefusal::Loopback));
    assert_eq!(at("127.0.0.2", 4321), Err(SsrfRefusal::Loopback));
    assert_eq!(at("::ffff:127.0.0.1", 4321), Err(SsrfRefusal::Loopback));
    assert_eq!(at("10.0.0.1", 4321), Err(SsrfRefusal::Private));
    assert_eq!(at("169.254.169.254", 4321), Err(SsrfRefusal::Metadata));
    assert_eq!(
        p.check_url("http://localhost:4321/"),
        Err(SsrfRefusal::LoopbackName),
        "never by name"
    );
    assert_eq!(
        p.check_url("http://127.0.0.1:4321/doc"),
        Ok(("127.0.0.1".into(), 4321))
    );
    let strict = FetchPolicy::public_only();
    assert_eq!(
        strict.check_addr(SocketAddr::new("127.0.0.1".parse().unwrap(), 4321)),
        Err(SsrfRefusal::Loopback)
    );
}
