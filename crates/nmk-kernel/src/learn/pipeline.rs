//! The admission pipeline ([`admit`]), its ledger entries ([`record_admission`]), and the
//! self-extension loop ([`learn`]).
//!
//! Stage 0 refuses a program that is empty or does not define the entry (`no_code`); then
//! [`nmk_det::gate::holdout_gate`] runs the samples, the held-out gate, the second-seed re-gate
//! and the placebo set in the sandbox. Every verdict, admitted or refused, is one ledger entry
//! binding the gap's spec hash, the code's hash, the counts and seeds, and — when a model
//! proposed the code — the model binding and the prompt's hash.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use nmk_det::gate::{FailureReason, Gap, GateConfig, GateReport, StageReport, holdout_gate};
use nmk_det::sandbox::Sandbox;
use nmk_det::{ContentHash, ValidationLevel, Value, hash_bytes, hash_value};

use super::registry::{PrimitiveRecord, PrimitiveRegistry, RegistryError};
use super::synthesis::{auto_import, defines_entry, extract_code, prompt};
use crate::ledger::{Action, Ledger, LedgerEntry, LedgerError, LedgerRecord, ModelBinding};
use crate::ledger::{Head, ValidatorId};
use crate::proposer::Proposer;
use crate::verification::Verification;

/// The opcode of gate verdicts in the ledger.
pub const GATE_OPCODE: &str = "gate";

/// Version of the admission pipeline's logic (stage 0 plus the hold-out gate).
pub const GATE_VERSION: &str = "1";

/// Why a program was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalReason {
    /// Stage 0: no code, or no definition of the entry.
    NoCode,
    /// A stage of the hold-out gate.
    Gate(FailureReason),
}

impl RefusalReason {
    /// The reason code (`no_code`, `sample_fail`, `gate_fail`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalReason::NoCode => "no_code",
            RefusalReason::Gate(r) => r.as_str(),
        }
    }

    /// Whether a further attempt is pointless: the machine cannot confine (`unsandboxed`), the
    /// gap's judge does not discriminate (`placebo_unsound`) or its trusted code fails
    /// (`gap_unsound`).
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            RefusalReason::Gate(
                FailureReason::Unsandboxed
                    | FailureReason::PlaceboUnsound
                    | FailureReason::GapUnsound
            )
        )
    }
}

impl std::fmt::Display for RefusalReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The verdict on one program, with its evidence.
#[derive(Debug, Clone)]
pub struct Admission {
    /// The entry function.
    pub entry: String,
    /// Whether the program is admitted.
    pub admitted: bool,
    /// Why not.
    pub reason: Option<RefusalReason>,
    /// The gap's identity.
    pub gap_spec_hash: ContentHash,
    /// Hash of the program text as gated.
    pub code_hash: ContentHash,
    /// Held-out instances per seed.
    pub n: usize,
    /// The first seed.
    pub seed: u64,
    /// The re-gate's seed.
    pub seed2: u64,
    /// The gate's report (`None` when stage 0 refused).
    pub report: Option<GateReport>,
    /// Leak-free feedback for a next attempt (the program's own behaviour, never a held-out
    /// truth).
    pub feedback: String,
    /// Wall time of the whole pipeline.
    pub elapsed: Duration,
}

fn stage_value(s: Option<&StageReport>) -> Value {
    match s {
        None => Value::Null,
        Some(s) => Value::map([
            ("seed", Value::int(s.seed)),
            ("n", Value::int(s.n as u64)),
            ("passed", Value::int(s.passed as u64)),
            ("distinct", Value::int(s.distinct as u64)),
            ("instances", Value::str(s.instances_hash.to_hex())),
            ("outputs", Value::str(s.outputs_hash.to_hex())),
        ]),
    }
}

impl Admission {
    /// The reason code, or `ok`.
    pub fn reason_str(&self) -> &'static str {
        self.reason.map_or("ok", RefusalReason::as_str)
    }

    /// `(passed, n)` of the visible samples.
    pub fn sample_counts(&self) -> Option<(usize, usize)> {
        self.report
            .as_ref()
            .and_then(|r| r.sample.as_ref())
            .map(|s| (s.passed, s.n))
    }

    /// `(passed, n)` at the first seed.
    pub fn gate_counts(&self) -> Option<(usize, usize)> {
        self.report
            .as_ref()
            .and_then(|r| r.gate.as_ref())
            .map(|s| (s.passed, s.n))
    }

    /// `(passed, n)` at the second seed.
    pub fn regate_counts(&self) -> Option<(usize, usize)> {
        self.report
            .as_ref()
            .and_then(|r| r.regate.as_ref())
            .map(|s| (s.passed, s.n))
    }

    /// `(placebos that failed as they must, placebos run)`.
    pub fn placebo_counts(&self) -> (usize, usize) {
        self.report.as_ref().map_or((0, 0), |r| {
            (
                r.placebos.iter().filter(|p| !p.passed).count(),
                r.placebos.len(),
            )
        })
    }

    /// The verdict's evidence as a canonical value: reason, seeds, per-stage counts and hashes,
    /// placebos, determinism and the leak-free first failure. No wall time, so the same program
    /// on the same gap gives the same summary.
    pub fn summary(&self) -> Value {
        let r = self.report.as_ref();
        let placebos = r.map_or_else(Vec::new, |r| {
            r.placebos
                .iter()
                .map(|p| {
                    Value::map([
                        ("name", Value::str(p.name)),
                        ("matched", Value::int(p.matched as u64)),
                        ("n", Value::int(p.n as u64)),
                        ("passed", Value::Bool(p.passed)),
                    ])
                })
                .collect()
        });
        Value::map([
            ("entry", Value::str(self.entry.clone())),
            ("admitted", Value::Bool(self.admitted)),
            ("reason", Value::str(self.reason_str())),
            ("n", Value::int(self.n as u64)),
            ("seed", Value::int(self.seed)),
            ("seed2", Value::int(self.seed2)),
            ("sample", stage_value(r.and_then(|r| r.sample.as_ref()))),
            ("gate", stage_value(r.and_then(|r| r.gate.as_ref()))),
            ("regate", stage_value(r.and_then(|r| r.regate.as_ref()))),
            ("placebos", Value::List(placebos)),
            (
                "deterministic",
                r.and_then(|r| r.deterministic)
                    .map_or(Value::Null, Value::Bool),
            ),
            ("feedback", Value::str(self.feedback.clone())),
        ])
    }
}

/// The gate settings for `gap` at its own default n and seed.
pub fn gate_config(gap: &Gap) -> GateConfig {
    GateConfig {
        n: gap.n,
        seed: gap.seed,
        ..GateConfig::default()
    }
}

/// Runs the admission pipeline on `code`: stage 0 (`no_code`), then the hold-out gate.
pub fn admit(gap: &Gap, code: &str, sandbox: &Sandbox, config: &GateConfig) -> Admission {
    let started = Instant::now();
    let mut adm = Admission {
        entry: gap.entry.clone(),
        admitted: false,
        reason: None,
        gap_spec_hash: gap.spec_hash(),
        code_hash: hash_bytes(code.as_bytes()),
        n: config.n,
        seed: config.seed,
        seed2: nmk_det::gate::second_seed(config.seed),
        report: None,
        feedback: String::new(),
        elapsed: Duration::ZERO,
    };
    if code.trim().is_empty() || !defines_entry(code, &gap.entry) {
        adm.reason = Some(RefusalReason::NoCode);
        adm.feedback = format!(
            "no code: the reply must define `def {}(` at the start of a line",
            gap.entry
        );
        adm.elapsed = started.elapsed();
        return adm;
    }
    let report = holdout_gate(sandbox, code, gap, config);
    adm.admitted = report.passed;
    adm.reason = report.reason.map(RefusalReason::Gate);
    adm.feedback = report.feedback.clone();
    adm.report = Some(report);
    adm.elapsed = started.elapsed();
    adm
}

/// Who proposed a program, for the ledger and the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provenance {
    /// The proposer's name (`qwen2.5-coder-0.5b-instruct`, `user`).
    pub proposer: String,
    /// Model, tokenizer and policy hashes, when a model proposed.
    pub model: Option<ModelBinding>,
    /// Hash of the prompt the model answered.
    pub prompt_hash: Option<ContentHash>,
    /// Attempt number (from 1) within a `learn` run; 0 outside one.
    pub attempt: u32,
}

impl Provenance {
    /// A program handed in by a user (no model involved).
    pub fn user() -> Provenance {
        Provenance {
            proposer: "user".into(),
            model: None,
            prompt_hash: None,
            attempt: 0,
        }
    }
}

/// Why a verdict is being recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Admitting a new program.
    Admit,
    /// Re-gating a stored primitive before it is served again.
    Reload,
}

impl Purpose {
    fn as_str(self) -> &'static str {
        match self {
            Purpose::Admit => "admit",
            Purpose::Reload => "reload",
        }
    }
}

/// Appends the verdict to the ledger: opcode `gate`, inputs `gap` (spec hash), `gap_source`
/// (hash of the gap's trusted source text), `code` and, when a model proposed, `prompt`; the
/// result is the hash of [`Admission::summary`], the contract the hash of the gate settings.
/// A pass certifies PROVEN (the hold-out gate is what PROVEN means); a refusal certifies NONE.
pub fn record_admission(
    ledger: &Ledger,
    gap: &Gap,
    adm: &Admission,
    config: &GateConfig,
    provenance: &Provenance,
    purpose: Purpose,
) -> Result<LedgerEntry, LedgerError> {
    let mut inputs = BTreeMap::new();
    inputs.insert("gap".to_owned(), adm.gap_spec_hash);
    inputs.insert("gap_source".to_owned(), hash_bytes(gap.source().as_bytes()));
    inputs.insert("code".to_owned(), adm.code_hash);
    if let Some(p) = provenance.prompt_hash {
        inputs.insert("prompt".to_owned(), p);
    }
    let summary = adm.summary();
    let contract = hash_value(&Value::map([
        ("n", Value::int(config.n as u64)),
        ("seed", Value::int(config.seed)),
        (
            "novelty_fraction",
            Value::str(config.novelty_fraction.to_string()),
        ),
        ("placebo_n", Value::int(config.placebo_n as u64)),
        ("check_determinism", Value::Bool(config.check_determinism)),
        (
            "per_call_ms",
            Value::int(u64::try_from(config.limits.per_call.as_millis()).unwrap_or(u64::MAX)),
        ),
    ]));
    let (level, verification, action) = if adm.admitted {
        (
            ValidationLevel::Proven,
            Verification::Verified,
            Action::Pass,
        )
    } else {
        (
            ValidationLevel::None,
            Verification::Unverified,
            Action::Fail,
        )
    };
    // The ledger's own length is the logical time: deterministic and monotone without a
    // wall clock.
    let t = ledger.len()?;
    let detail = Value::map([
        ("purpose", Value::str(purpose.as_str())),
        ("entry", Value::str(adm.entry.clone())),
        ("reason", Value::str(adm.reason_str())),
        ("proposer", Value::str(provenance.proposer.clone())),
        ("attempt", Value::int(u64::from(provenance.attempt))),
        ("summary", summary.clone()),
    ]);
    ledger.append(LedgerRecord {
        opcode: GATE_OPCODE.into(),
        op_version: GATE_VERSION.into(),
        inputs,
        result: hash_value(&summary),
        contract,
        validator: Some(ValidatorId::new("holdout_gate", GATE_VERSION)),
        level,
        verification,
        action,
        logical_time: t,
        model: provenance.model.clone(),
        detail,
    })
}

/// Settings of [`learn`].
#[derive(Debug, Clone)]
pub struct LearnConfig {
    /// Attempts before giving up (default 3).
    pub max_attempts: u32,
    /// Most tokens one attempt may generate.
    pub max_tokens: u32,
    /// Sampling temperature of attempts after the first (the first is greedy).
    pub temperature: f32,
    /// The gate's settings.
    pub gate: GateConfig,
}

impl LearnConfig {
    /// Defaults for `gap`: 3 attempts, 512 tokens, T 0.8, the gap's own n and seed.
    pub fn for_gap(gap: &Gap) -> LearnConfig {
        LearnConfig {
            max_attempts: 3,
            max_tokens: 512,
            temperature: 0.8,
            gate: gate_config(gap),
        }
    }
}

/// Progress of a [`learn`] run, for a progress bar.
#[derive(Debug, Clone, Copy)]
pub enum LearnEvent<'a> {
    /// Attempt `attempt` of `of` starts; the model is asked.
    Proposing {
        /// Attempt number, from 1.
        attempt: u32,
        /// Attempts allowed.
        of: u32,
    },
    /// The model answered; the program goes to the gate.
    Gating {
        /// Attempt number.
        attempt: u32,
        /// Tokens the model generated.
        tokens: u32,
    },
    /// The gate decided.
    Verdict {
        /// Attempt number.
        attempt: u32,
        /// The verdict.
        admission: &'a Admission,
    },
}

/// One attempt of a [`learn`] run.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    /// Attempt number, from 1.
    pub attempt: u32,
    /// Tokens the model generated.
    pub tokens: u32,
    /// `ok`, a refusal reason, or `proposer_error`.
    pub reason: String,
    /// Whether this attempt was admitted.
    pub admitted: bool,
    /// Hash of the program gated (`None` if the proposer failed).
    pub code_hash: Option<ContentHash>,
    /// Hash of the prompt.
    pub prompt_hash: ContentHash,
    /// The ledger entry of the verdict (`None` if the proposer failed).
    pub ledger: Option<Head>,
    /// Leak-free feedback the next attempt saw.
    pub feedback: String,
    /// Wall time of the attempt (generation and gate).
    pub elapsed: Duration,
}

/// What [`learn`] achieved.
#[derive(Debug, Clone)]
pub struct LearnOutcome {
    /// The gap's entry.
    pub entry: String,
    /// Whether a program was admitted (and registered, when a registry was given).
    pub admitted: bool,
    /// The last reason (`ok` when admitted).
    pub reason: String,
    /// Every attempt, in order.
    pub attempts: Vec<AttemptRecord>,
    /// The admitted program.
    pub code: Option<String>,
    /// The registry's record of it.
    pub registered: Option<PrimitiveRecord>,
    /// Tokens generated over all attempts.
    pub tokens: u64,
    /// Wall time.
    pub elapsed: Duration,
}

/// Why [`learn`] stopped with an error (a refusal is not an error).
#[derive(Debug, thiserror::Error)]
pub enum LearnError {
    /// A verdict could not be recorded; nothing was registered.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// The admitted program could not be stored.
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

/// Has `proposer` write a program for `gap` and admits it: up to `config.max_attempts`
/// attempts, the first greedy, later ones sampled (seeds 1, 2, …) with the previous attempt's
/// leak-free feedback. `unsandboxed` and `placebo_unsound` stop at once. Every verdict is a
/// ledger entry; an admitted program is registered in `registry` when one is given.
pub fn learn(
    gap: &Gap,
    proposer: &mut dyn Proposer,
    sandbox: &Sandbox,
    ledger: &Ledger,
    registry: Option<&mut PrimitiveRegistry>,
    config: &LearnConfig,
    on_event: &mut dyn FnMut(LearnEvent<'_>),
) -> Result<LearnOutcome, LearnError> {
    let started = Instant::now();
    let mut out = LearnOutcome {
        entry: gap.entry.clone(),
        admitted: false,
        reason: "no_attempt".into(),
        attempts: Vec::new(),
        code: None,
        registered: None,
        tokens: 0,
        elapsed: Duration::ZERO,
    };
    let mut feedback: Option<String> = None;
    let binding = proposer.binding();
    let mut winner: Option<(String, Admission, LedgerEntry, Provenance)> = None;
    for attempt in 1..=config.max_attempts.max(1) {
        let t0 = Instant::now();
        on_event(LearnEvent::Proposing {
            attempt,
            of: config.max_attempts.max(1),
        });
        let text = prompt(gap, feedback.as_deref());
        let prompt_hash = hash_bytes(text.as_bytes());
        let proposal = if attempt == 1 {
            proposer.gen_fast(&text, config.max_tokens)
        } else {
            proposer.gen_sample(
                &text,
                config.temperature,
                u64::from(attempt - 1),
                config.max_tokens,
            )
        };
        let proposal = match proposal {
            Ok(p) => p,
            Err(e) => {
                // A failed generation is not a verdict on any program: nothing to ledger.
                out.attempts.push(AttemptRecord {
                    attempt,
                    tokens: 0,
                    reason: "proposer_error".into(),
                    admitted: false,
                    code_hash: None,
                    prompt_hash,
                    ledger: None,
                    feedback: e.to_string(),
                    elapsed: t0.elapsed(),
                });
                out.reason = "proposer_error".into();
                continue;
            }
        };
        out.tokens += u64::from(proposal.tokens);
        on_event(LearnEvent::Gating {
            attempt,
            tokens: proposal.tokens,
        });
        let (code, extract_note) = match extract_code(&proposal.text, &gap.entry) {
            Ok(c) => (auto_import(&c), None),
            Err(e) => (String::new(), Some(e.to_string())),
        };
        let mut adm = admit(gap, &code, sandbox, &config.gate);
        if let Some(note) = extract_note {
            adm.feedback = format!("{note}; reply with one ```python block defining the function");
        }
        let provenance = Provenance {
            proposer: proposer.name().to_owned(),
            model: Some(binding.clone()),
            prompt_hash: Some(prompt_hash),
            attempt,
        };
        let entry = record_admission(ledger, gap, &adm, &config.gate, &provenance, Purpose::Admit)?;
        on_event(LearnEvent::Verdict {
            attempt,
            admission: &adm,
        });
        out.reason = adm.reason_str().to_owned();
        out.attempts.push(AttemptRecord {
            attempt,
            tokens: proposal.tokens,
            reason: adm.reason_str().to_owned(),
            admitted: adm.admitted,
            code_hash: Some(adm.code_hash),
            prompt_hash,
            ledger: Some(entry.head()),
            feedback: adm.feedback.clone(),
            elapsed: t0.elapsed(),
        });
        if adm.admitted {
            winner = Some((code, adm, entry, provenance));
            break;
        }
        if adm.reason.is_some_and(RefusalReason::is_terminal) {
            break;
        }
        feedback = Some(adm.feedback.clone());
    }
    if let Some((code, adm, entry, provenance)) = winner {
        out.admitted = true;
        if let Some(reg) = registry {
            out.registered = Some(reg.register(gap, &code, &adm, &entry, &provenance)?);
        }
        out.code = Some(code);
    }
    out.elapsed = started.elapsed();
    Ok(out)
}
