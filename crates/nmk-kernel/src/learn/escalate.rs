//! The escalation ladder: when one greedy attempt at a gap fails, spend more, rung by rung, and
//! abstain honestly when nothing passes.
//!
//! | tier | tag | what |
//! |---|---|---|
//! | 1 | `t1-greedy` | one greedy attempt |
//! | 2 | `t2-div<i>` | k samples at T 0.8, seeds 0..k−1; k from the [`KPolicy`] (signal: the severity of tier 1's failure, the machine's cost, the budget), or a fixed k |
//! | 3 | `t3-repair<i>` | one repair of each tier-2 attempt, from that attempt's leak-free feedback, asking for a general algorithm |
//! | 4 | `t4-research<s>` | only with a [`Research`] provider *and* capability `net:fetch`: references shape the prompt, seed 0 greedy and seed 1 at T 0.6 |
//! | 5 | — | abstain with [`ABSTAIN_MESSAGE`] |
//!
//! Owns the order of rungs, the k decision and its audit, and the prompts of repairs and
//! research attempts. It may not judge: every program goes through the same [`Gatekeeper`]
//! (production: [`super::admit`] in the sandbox) and every verdict is written to the ledger by
//! [`record_admission`] before the ladder acts on it. A terminal refusal (`unsandboxed`,
//! `placebo_unsound`, `gap_unsound`) says the environment or the gap cannot judge, so the ladder
//! stops at once rather than burn the remaining rungs. Feedback handed to a repair is the
//! admission's own leak-free text (the failing program's behaviour and the visible samples, never
//! a held-out truth). A cost that cannot be read counts as 1.0 (fail closed).

use std::time::{Duration, Instant};

use nmk_det::gate::{Gap, GateConfig};
use nmk_det::sandbox::Sandbox;
use nmk_det::{ContentHash, hash_bytes};

use super::pipeline::{Admission, LearnError, Provenance, Purpose, admit};
use super::pipeline::{gate_config, record_admission};
use super::registry::{PrimitiveRecord, PrimitiveRegistry};
use super::synthesis::{auto_import, extract_code, prompt};
use crate::capability::{Capability, Grants};
use crate::k_policy::{BudgetNote, CostSource, KPolicy, KReason, KSignals, charge_budget, decide};
use crate::ledger::{Head, Ledger, LedgerEntry};
use crate::proposer::{Proposal, Proposer, ProposerError};
use crate::research::{NET_FETCH, Research, ResearchLimits, references_block};

/// What the ladder says when no rung produced an admitted program.
pub const ABSTAIN_MESSAGE: &str = "I'm sorry, I don't know how to do that.";

/// Longest previous program quoted back to the model in a repair prompt.
const MAX_QUOTED_CODE_CHARS: usize = 2000;

/// The judge of every rung: the admission pipeline.
pub trait Gatekeeper {
    /// Runs the admission pipeline on `code` for `gap`.
    fn admit(&self, gap: &Gap, code: &str, config: &GateConfig) -> Admission;
}

impl Gatekeeper for Sandbox {
    fn admit(&self, gap: &Gap, code: &str, config: &GateConfig) -> Admission {
        admit(gap, code, self, config)
    }
}

/// A rung of the ladder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Tier {
    /// One greedy attempt.
    Greedy,
    /// k temperature-diverse samples.
    Diverse,
    /// One repair per diverse sample.
    Repair,
    /// Attempts shaped by research.
    Research,
}

impl Tier {
    /// 1, 2, 3 or 4.
    pub fn number(self) -> u8 {
        match self {
            Tier::Greedy => 1,
            Tier::Diverse => 2,
            Tier::Repair => 3,
            Tier::Research => 4,
        }
    }

    /// The tag of attempt `i` of this tier (`t1-greedy`, `t2-div0`, `t3-repair1`, …).
    pub fn tag(self, i: u32) -> String {
        match self {
            Tier::Greedy => "t1-greedy".into(),
            Tier::Diverse => format!("t2-div{i}"),
            Tier::Repair => format!("t3-repair{i}"),
            Tier::Research => format!("t4-research{i}"),
        }
    }
}

/// Settings of the ladder.
#[derive(Debug, Clone)]
pub struct EscalateConfig {
    /// Most tokens one attempt may generate.
    pub max_tokens: u32,
    /// Temperature of tier 2 and tier 3 (default 0.8).
    pub temperature: f32,
    /// Temperature of the second research attempt (default 0.6; the first is greedy).
    pub research_temperature: f32,
    /// Tier-2 width without a policy (default 3).
    pub fixed_k: u32,
    /// The dynamic-k policy; `None` uses `fixed_k`.
    pub policy: Option<KPolicy>,
    /// Importance of the request (default 0.5).
    pub importance: f64,
    /// Budget units left for tier 2 (`None`: no budget).
    pub budget: Option<f64>,
    /// Seed of the first repair (repair i uses `repair_seed + i`; default 300).
    pub repair_seed: u64,
    /// Research caps.
    pub research_limits: ResearchLimits,
    /// The gate's settings.
    pub gate: GateConfig,
}

impl EscalateConfig {
    /// Defaults for `gap`: 512 tokens, T 0.8, research T 0.6, fixed k 3, no policy, importance
    /// 0.5, no budget, repair seeds from 300, the gap's own n and seed.
    pub fn for_gap(gap: &Gap) -> EscalateConfig {
        EscalateConfig {
            max_tokens: 512,
            temperature: 0.8,
            research_temperature: 0.6,
            fixed_k: 3,
            policy: None,
            importance: 0.5,
            budget: None,
            repair_seed: 300,
            research_limits: ResearchLimits::default(),
            gate: gate_config(gap),
        }
    }
}

/// Everything the ladder works with besides the gap and its settings.
pub struct Escalation<'a> {
    /// The model.
    pub proposer: &'a mut dyn Proposer,
    /// The judge (the sandbox's admission pipeline).
    pub gate: &'a dyn Gatekeeper,
    /// Where every verdict is written.
    pub ledger: &'a Ledger,
    /// Where a winner is registered, if anywhere.
    pub registry: Option<&'a mut PrimitiveRegistry>,
    /// The machine's cost for the tier-2 decision (failures read as 1.0).
    pub cost: CostSource<'a>,
    /// The research provider, if one is configured.
    pub research: Option<&'a dyn Research>,
    /// The request's grants (`net:fetch` is needed for research).
    pub grants: &'a Grants,
}

/// Progress of a ladder run, for a progress display.
#[derive(Debug, Clone, Copy)]
pub enum EscalateEvent<'a> {
    /// An attempt starts; the model is asked.
    Proposing {
        /// The rung.
        tier: Tier,
        /// Index within the rung.
        index: u32,
    },
    /// The tier-2 width was decided.
    Width(&'a KAudit),
    /// Research was consulted (or refused).
    Research(&'a ResearchAudit),
    /// The gate decided on an attempt.
    Verdict(&'a TierEntry),
}

/// One attempt of the ladder.
#[derive(Debug, Clone)]
pub struct TierEntry {
    /// The rung.
    pub tier: Tier,
    /// `t1-greedy`, `t2-div<i>`, `t3-repair<i>`, `t4-research<i>`.
    pub tag: String,
    /// Attempt number over the whole run, from 1.
    pub attempt: u32,
    /// Sampling temperature (0 = greedy).
    pub temperature: f32,
    /// Sampling seed (`None` when greedy).
    pub seed: Option<u64>,
    /// Tokens generated.
    pub tokens: u32,
    /// `ok`, a refusal reason, or `proposer_error`.
    pub reason: String,
    /// Whether the program was admitted.
    pub admitted: bool,
    /// `(passed, n)` of the visible samples.
    pub sample: Option<(usize, usize)>,
    /// `(passed, n)` of the held-out gate.
    pub gate: Option<(usize, usize)>,
    /// `(passed, n)` of the second-seed re-gate.
    pub regate: Option<(usize, usize)>,
    /// Hash of the program gated (`None` if the proposer failed).
    pub code_hash: Option<ContentHash>,
    /// Hash of the prompt.
    pub prompt_hash: ContentHash,
    /// The verdict's ledger entry (`None` if the proposer failed: no program, no verdict).
    pub ledger: Option<Head>,
    /// The leak-free feedback of the verdict (or the proposer's error).
    pub feedback: String,
    /// Wall time of generation and gate.
    pub elapsed: Duration,
}

/// The audit of the tier-2 width decision.
#[derive(Debug, Clone, PartialEq)]
pub struct KAudit {
    /// Whether a policy decided (else the fixed k was used).
    pub policy: bool,
    /// The k used: `max(1, admitted)` under a policy, else the fixed k.
    pub k: u32,
    /// Severity of tier 1: `1 − passed/n` of its held-out gate, 1.0 if no gate ran.
    pub severity: f64,
    /// The cost decided on (1.0 when the source failed).
    pub cost: f64,
    /// Why the cost is 1.0, when its source failed.
    pub cost_failure: Option<String>,
    /// k as decided, before the budget.
    pub decided_k: u32,
    /// k the budget admitted.
    pub admitted_k: u32,
    /// The signal the decision used.
    pub used_signal: Option<KReason>,
    /// The decision's label.
    pub reason: Option<KReason>,
    /// How the budget charge went.
    pub budget_note: Option<BudgetNote>,
    /// Budget left after the charge.
    pub budget_left: Option<f64>,
}

/// What happened to research.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResearchAudit {
    /// A provider was configured.
    pub configured: bool,
    /// `net:fetch` was granted.
    pub granted: bool,
    /// The provider was called.
    pub ran: bool,
    /// The query sent.
    pub query: Option<String>,
    /// URLs of the documents used.
    pub urls: Vec<String>,
    /// Characters of reference text put in the prompt.
    pub reference_chars: usize,
    /// Why research brought nothing.
    pub error: Option<String>,
}

/// What the ladder achieved.
#[derive(Debug, Clone)]
pub struct EscalationReport {
    /// The gap's entry.
    pub entry: String,
    /// Whether a program was admitted.
    pub solved: bool,
    /// The rung that solved it (1–4).
    pub tier: Option<u8>,
    /// [`ABSTAIN_MESSAGE`] when every rung ran and none solved it.
    pub abstain: Option<String>,
    /// The terminal refusal that stopped the ladder (`unsandboxed`, `placebo_unsound`,
    /// `gap_unsound`): the environment or the gap cannot judge, so no answer and no abstention
    /// is claimed.
    pub unsound: Option<String>,
    /// Every attempt, in order.
    pub log: Vec<TierEntry>,
    /// The tier-2 width decision (`None` if tier 2 was not reached).
    pub k: Option<KAudit>,
    /// What research did.
    pub research: ResearchAudit,
    /// The admitted program.
    pub code: Option<String>,
    /// The registry's record of it.
    pub registered: Option<PrimitiveRecord>,
    /// Tokens generated over all attempts.
    pub tokens: u64,
    /// Wall time.
    pub elapsed: Duration,
}

/// Severity of a failed attempt: `1 − passed/n` of its held-out gate; 1.0 when no gate ran (no
/// code, a visible sample failed, the proposer failed) or the gate had no instances.
pub fn severity(adm: Option<&Admission>) -> f64 {
    match adm.and_then(Admission::gate_counts) {
        Some((passed, n)) if n > 0 => (1.0 - passed as f64 / n as f64).clamp(0.0, 1.0),
        _ => 1.0,
    }
}

/// Decides the tier-2 width (spec §4.8, §5.4): without a policy the fixed k; with one,
/// disagreement = `severity`, cost from `cost` (a failure reads 1.0), the budget charged, and
/// `k = max(1, admitted)`.
pub fn tier2_width(
    policy: Option<&KPolicy>,
    fixed_k: u32,
    severity: f64,
    cost: &CostSource<'_>,
    importance: f64,
    budget: Option<f64>,
) -> KAudit {
    let Some(policy) = policy else {
        return KAudit {
            policy: false,
            k: fixed_k.max(1),
            severity,
            cost: 0.0,
            cost_failure: None,
            decided_k: fixed_k.max(1),
            admitted_k: fixed_k.max(1),
            used_signal: None,
            reason: None,
            budget_note: None,
            budget_left: budget,
        };
    };
    let (cost, cost_failure) = cost.read();
    let signals = KSignals {
        disagreement: Some(severity),
        cost,
        importance,
        ..KSignals::default()
    };
    let decision = decide(policy, &signals);
    let charge = charge_budget(&decision, budget, policy.unit_cost());
    KAudit {
        policy: true,
        k: charge.admitted_k.max(1),
        severity,
        cost,
        cost_failure,
        decided_k: decision.k,
        admitted_k: charge.admitted_k,
        used_signal: Some(decision.used_signal),
        reason: Some(decision.reason),
        budget_note: Some(charge.note),
        budget_left: charge.remaining,
    }
}

/// The prompt of a repair: the task, the previous program and its leak-free feedback, and a
/// request for a general algorithm.
pub fn repair_prompt(gap: &Gap, previous_code: Option<&str>, feedback: &str) -> String {
    let mut p = prompt(gap, Some(feedback));
    if let Some(code) = previous_code.map(str::trim).filter(|c| !c.is_empty()) {
        let code: String = code.chars().take(MAX_QUOTED_CODE_CHARS).collect();
        p.push_str(&format!(
            "\nThe previous attempt was:\n```python\n{code}\n```\n"
        ));
    }
    p.push_str(
        "Think about the general rule behind the task and implement a general algorithm that \
         handles every valid input, including edge cases; do not hard-code answers.\n",
    );
    p
}

/// The prompt of a research attempt: the task, then the reference block.
pub fn research_prompt(gap: &Gap, references: &str) -> String {
    let mut p = prompt(gap, None);
    if !references.is_empty() {
        p.push('\n');
        p.push_str(references);
        p.push_str(
            "Use the reference only to understand the task; write your own function with the \
             required name and signature.\n",
        );
    }
    p
}

/// The research query for `gap`: its entry's words, then "algorithm specification python".
pub fn research_query(gap: &Gap) -> String {
    let words = gap
        .entry
        .split(|c: char| c == '_' || !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    format!("{words} algorithm specification python")
}

/// One planned attempt.
struct Ask<'p> {
    tier: Tier,
    index: u32,
    prompt: &'p str,
    /// `None`: greedy.
    sample: Option<(f32, u64)>,
}

/// The result of one attempt, for the ladder's control flow.
struct Tried {
    admission: Option<Admission>,
    code: String,
}

struct Run<'a, 'b> {
    gap: &'b Gap,
    ctx: &'b mut Escalation<'a>,
    config: &'b EscalateConfig,
    on_event: &'b mut dyn FnMut(EscalateEvent<'_>),
    report: EscalationReport,
    winner: Option<(String, Admission, LedgerEntry, Provenance)>,
    stop: bool,
}

impl Run<'_, '_> {
    fn attempt(&mut self, ask: Ask<'_>) -> Result<Tried, LearnError> {
        let t0 = Instant::now();
        (self.on_event)(EscalateEvent::Proposing {
            tier: ask.tier,
            index: ask.index,
        });
        let prompt_hash = hash_bytes(ask.prompt.as_bytes());
        let attempt = u32::try_from(self.report.log.len() + 1).unwrap_or(u32::MAX);
        let max = self.config.max_tokens;
        let proposal: Result<Proposal, ProposerError> = match ask.sample {
            None => self.ctx.proposer.gen_fast(ask.prompt, max),
            Some((t, seed)) => self.ctx.proposer.gen_sample(ask.prompt, t, seed, max),
        };
        let (temperature, seed) = ask.sample.map_or((0.0, None), |(t, s)| (t, Some(s)));
        let mut entry = TierEntry {
            tier: ask.tier,
            tag: ask.tier.tag(ask.index),
            attempt,
            temperature,
            seed,
            tokens: 0,
            reason: "proposer_error".into(),
            admitted: false,
            sample: None,
            gate: None,
            regate: None,
            code_hash: None,
            prompt_hash,
            ledger: None,
            feedback: String::new(),
            elapsed: Duration::ZERO,
        };
        let proposal = match proposal {
            Ok(p) => p,
            Err(e) => {
                // A failed generation is not a verdict on any program: nothing to ledger.
                entry.feedback = e.to_string();
                entry.elapsed = t0.elapsed();
                (self.on_event)(EscalateEvent::Verdict(&entry));
                self.report.log.push(entry);
                return Ok(Tried {
                    admission: None,
                    code: String::new(),
                });
            }
        };
        self.report.tokens += u64::from(proposal.tokens);
        entry.tokens = proposal.tokens;
        let (code, extract_note) = match extract_code(&proposal.text, &self.gap.entry) {
            Ok(c) => (auto_import(&c), None),
            Err(e) => (String::new(), Some(e.to_string())),
        };
        let mut adm = self.ctx.gate.admit(self.gap, &code, &self.config.gate);
        if let Some(note) = extract_note {
            adm.feedback = format!("{note}; reply with one ```python block defining the function");
        }
        let provenance = Provenance {
            proposer: self.ctx.proposer.name().to_owned(),
            model: Some(self.ctx.proposer.binding()),
            prompt_hash: Some(prompt_hash),
            attempt,
        };
        let ledgered = record_admission(
            self.ctx.ledger,
            self.gap,
            &adm,
            &self.config.gate,
            &provenance,
            Purpose::Admit,
        )?;
        entry.reason = adm.reason_str().to_owned();
        entry.admitted = adm.admitted;
        entry.sample = adm.sample_counts();
        entry.gate = adm.gate_counts();
        entry.regate = adm.regate_counts();
        entry.code_hash = Some(adm.code_hash);
        entry.ledger = Some(ledgered.head());
        entry.feedback = adm.feedback.clone();
        entry.elapsed = t0.elapsed();
        (self.on_event)(EscalateEvent::Verdict(&entry));
        let tier = ask.tier.number();
        self.report.log.push(entry);
        if adm.admitted {
            self.report.solved = true;
            self.report.tier = Some(tier);
            self.winner = Some((code.clone(), adm.clone(), ledgered, provenance));
            self.stop = true;
        } else if let Some(r) = adm.reason.filter(|r| r.is_terminal()) {
            self.report.unsound = Some(r.as_str().to_owned());
            self.stop = true;
        }
        Ok(Tried {
            admission: Some(adm),
            code,
        })
    }
}

/// Runs the ladder on `gap`. Every verdict is a ledger entry; a winner is registered in
/// `ctx.registry` when one is given. A refusal is not an error; only a ledger or registry
/// failure is.
pub fn escalate(
    gap: &Gap,
    ctx: &mut Escalation<'_>,
    config: &EscalateConfig,
    on_event: &mut dyn FnMut(EscalateEvent<'_>),
) -> Result<EscalationReport, LearnError> {
    let started = Instant::now();
    let granted = Capability::parse(NET_FETCH).is_ok_and(|c| ctx.grants.allows(&c));
    let report = EscalationReport {
        entry: gap.entry.clone(),
        solved: false,
        tier: None,
        abstain: None,
        unsound: None,
        log: Vec::new(),
        k: None,
        research: ResearchAudit {
            configured: ctx.research.is_some(),
            granted,
            ..ResearchAudit::default()
        },
        code: None,
        registered: None,
        tokens: 0,
        elapsed: Duration::ZERO,
    };
    let mut run = Run {
        gap,
        ctx,
        config,
        on_event,
        report,
        winner: None,
        stop: false,
    };
    ladder(&mut run)?;

    let Run {
        ctx,
        mut report,
        winner,
        ..
    } = run;
    if let Some((code, adm, entry, provenance)) = winner {
        if let Some(reg) = ctx.registry.as_deref_mut() {
            report.registered = Some(reg.register(gap, &code, &adm, &entry, &provenance)?);
        }
        report.code = Some(code);
    } else if report.unsound.is_none() {
        report.abstain = Some(ABSTAIN_MESSAGE.to_owned());
    }
    report.elapsed = started.elapsed();
    Ok(report)
}

fn ladder(run: &mut Run<'_, '_>) -> Result<(), LearnError> {
    let gap = run.gap;
    let base = prompt(gap, None);

    // Tier 1: greedy.
    let t1 = run.attempt(Ask {
        tier: Tier::Greedy,
        index: 0,
        prompt: &base,
        sample: None,
    })?;
    if run.stop {
        return Ok(());
    }

    // Tier 2: k diverse samples; k from the policy on tier 1's severity.
    let audit = tier2_width(
        run.config.policy.as_ref(),
        run.config.fixed_k,
        severity(t1.admission.as_ref()),
        &run.ctx.cost,
        run.config.importance,
        run.config.budget,
    );
    (run.on_event)(EscalateEvent::Width(&audit));
    let k = audit.k;
    run.report.k = Some(audit);
    let mut tier2 = Vec::new();
    for i in 0..k {
        let tried = run.attempt(Ask {
            tier: Tier::Diverse,
            index: i,
            prompt: &base,
            sample: Some((run.config.temperature, u64::from(i))),
        })?;
        if run.stop {
            return Ok(());
        }
        tier2.push(tried);
    }

    // Tier 3: one repair per tier-2 attempt, from that attempt's own leak-free feedback.
    for (i, tried) in tier2.iter().enumerate() {
        let i = u32::try_from(i).unwrap_or(u32::MAX);
        let feedback = tried.admission.as_ref().map_or_else(
            || "the previous attempt produced no program".to_owned(),
            |a| a.feedback.clone(),
        );
        let code = (!tried.code.is_empty()).then_some(tried.code.as_str());
        let p = repair_prompt(gap, code, &feedback);
        run.attempt(Ask {
            tier: Tier::Repair,
            index: i,
            prompt: &p,
            sample: Some((
                run.config.temperature,
                run.config.repair_seed + u64::from(i),
            )),
        })?;
        if run.stop {
            return Ok(());
        }
    }

    // Tier 4: research, only when configured and granted.
    let Some(research) = run.ctx.research else {
        return Ok(());
    };
    if !run.report.research.granted {
        run.report.research.error = Some(format!("capability {NET_FETCH} not granted"));
        (run.on_event)(EscalateEvent::Research(&run.report.research));
        return Ok(());
    }
    let query = research_query(gap);
    let limits = run.config.research_limits;
    run.report.research.ran = true;
    run.report.research.query = Some(query.clone());
    let docs = match research.search(&query, &limits) {
        Ok(d) => d,
        Err(e) => {
            run.report.research.error = Some(e.to_string());
            (run.on_event)(EscalateEvent::Research(&run.report.research));
            return Ok(());
        }
    };
    // The provider's caps are not trusted: cut again here.
    let docs: Vec<_> = docs
        .into_iter()
        .take(limits.max_documents)
        .map(|mut d| {
            d.text = d.text.chars().take(limits.max_doc_chars).collect();
            d
        })
        .collect();
    let refs = references_block(&docs, limits.max_total_chars);
    run.report.research.urls = docs.iter().map(|d| d.url.clone()).collect();
    run.report.research.reference_chars = docs
        .iter()
        .map(|d| d.text.trim().chars().count())
        .sum::<usize>()
        .min(limits.max_total_chars);
    if refs.is_empty() {
        run.report.research.error = Some("research returned no text".into());
        (run.on_event)(EscalateEvent::Research(&run.report.research));
        return Ok(());
    }
    (run.on_event)(EscalateEvent::Research(&run.report.research));
    let p = research_prompt(gap, &refs);
    for (s, sample) in [
        (0u32, None),
        (1, Some((run.config.research_temperature, 1))),
    ] {
        run.attempt(Ask {
            tier: Tier::Research,
            index: s,
            prompt: &p,
            sample,
        })?;
        if run.stop {
            return Ok(());
        }
    }
    Ok(())
}
