//! `nmk bench --recurring`: a recurring workload through the kernel's front door, as `nmk run`
//! serves it. Requests are drawn from a few task families — four that a learned primitive can
//! own (count the vowels, palindrome, reverse the words, sum of digits) and one control family
//! that no primitive owns (capital cities) — and each goes through memory consultation, the
//! router, and either a primitive (zero model tokens) or the model lane (the per-token gate and
//! the commit trap). Run it once on a home with nothing learned and once after `nmk learn`
//! admitted the primitives (`bench/recurring/run.sh` does both) to see tokens, latency and
//! accuracy move.
//!
//! Accuracy is judged here by the bench's own deterministic check of each family (written
//! independently of any primitive): a primitive's value must equal it exactly; a released model
//! answer must state it (the first standalone integer, the palindrome polarity, the reversed
//! words, the capital's name). A withheld model answer counts as not correct.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use anyhow::{Result, bail};
use nmk_det::Value;
use nmk_det::gate::Rng;
use nmk_kernel::output_gate::OutputGate;
use nmk_kernel::router::Outcome;
use nmk_neural::engine::SamplingParams;
use nmk_neural::text::PromptMode;

use super::bench_fact_loop::wilson;
use super::model::resolve_with_progress;
use crate::model_lane::{LaneRequest, answer};
use crate::proposer::NeuralProposer;
use crate::route_lane::Front;

/// The task families of the workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Family {
    /// Count the vowels of a quoted string.
    CountVowels,
    /// Whether a quoted string is a palindrome.
    IsPalindrome,
    /// Reverse the words of a quoted string.
    ReverseWords,
    /// The sum of the decimal digits of an integer.
    SumOfDigits,
    /// The capital of a country (control: no primitive owns it).
    Capital,
}

impl Family {
    const ALL: [Family; 5] = [
        Family::CountVowels,
        Family::IsPalindrome,
        Family::ReverseWords,
        Family::SumOfDigits,
        Family::Capital,
    ];

    fn name(self) -> &'static str {
        match self {
            Family::CountVowels => "count_vowels",
            Family::IsPalindrome => "is_palindrome",
            Family::ReverseWords => "reverse_words",
            Family::SumOfDigits => "sum_of_digits",
            Family::Capital => "capital (control)",
        }
    }
}

/// What a correct answer is.
#[derive(Debug, Clone, PartialEq)]
enum Expected {
    Int(i64),
    Bool(bool),
    Words(String),
    Capital(&'static str),
}

/// One request of the workload.
#[derive(Debug, Clone)]
pub struct Request {
    family: Family,
    text: String,
    expected: Expected,
}

const WORDS: [&str; 24] = [
    "apple", "river", "stone", "window", "garden", "music", "orange", "cloud", "pencil", "tiger",
    "yellow", "bridge", "ocean", "summer", "planet", "forest", "silver", "candle", "engine",
    "island", "rhythm", "sky", "umbrella", "violet",
];

const PALINDROMES: [&str; 8] = [
    "racecar",
    "Never odd or even",
    "Was it a car or a cat I saw",
    "level",
    "Step on no pets",
    "A man, a plan, a canal: Panama",
    "noon",
    "Madam, in Eden, I'm Adam",
];

const CAPITALS: [(&str, &str); 12] = [
    ("France", "Paris"),
    ("Japan", "Tokyo"),
    ("Italy", "Rome"),
    ("Germany", "Berlin"),
    ("Spain", "Madrid"),
    ("Egypt", "Cairo"),
    ("Canada", "Ottawa"),
    ("Kenya", "Nairobi"),
    ("Peru", "Lima"),
    ("Norway", "Oslo"),
    ("Greece", "Athens"),
    ("Portugal", "Lisbon"),
];

fn phrase(rng: &mut Rng, lo: i64, hi: i64) -> String {
    let n = rng.range_i64(lo, hi);
    (0..n)
        .map(|_| *rng.choose(&WORDS).unwrap_or(&"apple"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn pick(rng: &mut Rng, templates: &[&str]) -> String {
    (*rng.choose(templates).unwrap_or(&"{}")).to_owned()
}

fn vowels(s: &str) -> i64 {
    s.chars().filter(|c| "aeiouAEIOU".contains(*c)).count() as i64
}

fn palindrome(s: &str) -> bool {
    let kept: Vec<char> = s
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    kept.iter().eq(kept.iter().rev())
}

fn digit_sum(n: i64) -> i64 {
    n.to_string()
        .chars()
        .filter_map(|c| c.to_digit(10))
        .map(i64::from)
        .sum()
}

fn request(family: Family, rng: &mut Rng) -> Request {
    let (text, expected) = match family {
        Family::CountVowels => {
            let s = phrase(rng, 1, 3);
            let t = pick(
                rng,
                &[
                    "Count the vowels in \"{}\".",
                    "How many vowels does \"{}\" have? Count them.",
                    "Please count the vowels of \"{}\".",
                ],
            );
            (t.replace("{}", &s), Expected::Int(vowels(&s)))
        }
        Family::IsPalindrome => {
            let s = if rng.coin() {
                (*rng.choose(&PALINDROMES).unwrap_or(&"level")).to_owned()
            } else {
                phrase(rng, 1, 3)
            };
            let t = pick(
                rng,
                &[
                    "Is \"{}\" a palindrome?",
                    "Tell me whether \"{}\" is a palindrome.",
                    "Palindrome check: \"{}\"",
                ],
            );
            let p = palindrome(&s);
            (t.replace("{}", &s), Expected::Bool(p))
        }
        Family::ReverseWords => {
            let s = phrase(rng, 2, 5);
            let t = pick(
                rng,
                &[
                    "Reverse the words of \"{}\".",
                    "Reverse the order of the words in \"{}\".",
                    "Give me \"{}\" with its words reversed.",
                ],
            );
            let rev = s.split_whitespace().rev().collect::<Vec<_>>().join(" ");
            (t.replace("{}", &s), Expected::Words(rev))
        }
        Family::SumOfDigits => {
            let n = rng.range_i64(10, 9_999_999);
            let t = pick(
                rng,
                &[
                    "What is the sum of the digits of {}?",
                    "Sum the digits of {}.",
                    "Compute the digit sum of {}: add up its digits.",
                ],
            );
            (t.replace("{}", &n.to_string()), Expected::Int(digit_sum(n)))
        }
        Family::Capital => {
            let (country, capital) = *rng.choose(&CAPITALS).unwrap_or(&("France", "Paris"));
            let t = pick(
                rng,
                &["What is the capital of {}?", "Name the capital city of {}."],
            );
            (t.replace("{}", country), Expected::Capital(capital))
        }
    };
    Request {
        family,
        text,
        expected,
    }
}

/// `n` requests from `seed`: each family equally likely, drawn independently.
pub fn workload(n: usize, seed: u64) -> Vec<Request> {
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|_| {
            let f = *rng.choose(&Family::ALL).unwrap_or(&Family::Capital);
            request(f, &mut rng)
        })
        .collect()
}

/// The first integer of `text` that is not part of a longer run of digits (a leading minus
/// sign included).
fn first_integer(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_digit() {
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            let neg = start > 0 && b[start - 1] == b'-';
            let digits = text.get(start..i)?;
            let v: i64 = digits.parse().ok()?;
            return Some(if neg { -v } else { v });
        }
        i += 1;
    }
    None
}

fn words_of(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric() && c != '\'')
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// Whether a released model answer states `expected`.
fn model_text_correct(text: &str, expected: &Expected) -> bool {
    match expected {
        Expected::Int(v) => first_integer(text) == Some(*v),
        Expected::Bool(v) => {
            let w = words_of(text);
            let has = |x: &str| w.iter().any(|y| y == x);
            let negative = has("not") || has("isn't") || has("no") || has("false");
            let positive = has("yes") || has("true") || (has("palindrome") && !negative);
            if *v {
                positive && !negative
            } else {
                negative && !has("yes") && !has("true")
            }
        }
        Expected::Words(s) => text
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .contains(s),
        Expected::Capital(c) => text.to_lowercase().contains(&c.to_lowercase()),
    }
}

/// Whether a primitive's value equals `expected`.
fn value_correct(value: &Value, expected: &Expected) -> bool {
    match (value, expected) {
        (Value::Int(_), Expected::Int(v)) => *value == Value::int(*v),
        (Value::Bool(b), Expected::Bool(v)) => b == v,
        (Value::Str(s), Expected::Words(v)) => s == v,
        _ => false,
    }
}

/// What one request cost and whether it was right.
#[derive(Debug, Clone)]
struct Served {
    family: Family,
    route: String,
    correct: bool,
    released: bool,
    prompt_tokens: usize,
    generated_tokens: usize,
    latency_ms: f64,
}

/// Options of the run.
#[derive(Debug, Clone)]
pub struct Options<'a> {
    /// The model of the model lane.
    pub model: &'a str,
    /// Decode threads.
    pub threads: usize,
    /// Requests.
    pub requests: usize,
    /// Seed of the workload.
    pub seed: u64,
    /// Most tokens per model answer.
    pub max_tokens: usize,
    /// Print a line per 100 requests on stderr.
    pub progress: bool,
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn summary(served: &[&Served]) -> serde_json::Value {
    let n = served.len();
    let correct = served.iter().filter(|s| s.correct).count();
    let mut lat: Vec<f64> = served.iter().map(|s| s.latency_ms).collect();
    lat.sort_by(f64::total_cmp);
    let generated: usize = served.iter().map(|s| s.generated_tokens).sum();
    let prompt: usize = served.iter().map(|s| s.prompt_tokens).sum();
    let mut routes: BTreeMap<&str, usize> = BTreeMap::new();
    for s in served {
        *routes.entry(s.route.as_str()).or_default() += 1;
    }
    let by_primitive = served
        .iter()
        .filter(|s| s.route != nmk_kernel::router::MODEL_LANE)
        .count();
    let nf = n.max(1) as f64;
    serde_json::json!({
        "requests": n,
        "accuracy": wilson(correct, n),
        "released": served.iter().filter(|s| s.released).count(),
        "answered_by_primitive": by_primitive,
        "primitive_generated_tokens": served
            .iter()
            .filter(|s| s.route != nmk_kernel::router::MODEL_LANE)
            .map(|s| s.generated_tokens + s.prompt_tokens)
            .sum::<usize>(),
        "generated_tokens": generated,
        "prompt_tokens": prompt,
        "mean_generated_tokens": generated as f64 / nf,
        "latency_ms": {
            "median": percentile(&lat, 0.5),
            "p90": percentile(&lat, 0.9),
            "p99": percentile(&lat, 0.99),
            "mean": lat.iter().sum::<f64>() / nf,
            "total_s": lat.iter().sum::<f64>() / 1000.0,
        },
        "routes": routes,
    })
}

/// Serves the workload through the kernel of `home` and reports it.
pub fn run(home: &Path, opts: &Options<'_>) -> Result<serde_json::Value> {
    if opts.requests == 0 {
        bail!("--requests must be at least 1");
    }
    let mut front = Front::open(home)?;
    let learned: Vec<String> = front
        .router
        .route_ids()
        .into_iter()
        .filter(|id| id.starts_with("learned:"))
        .collect();
    let mut proposer: Option<NeuralProposer> = None;
    let mut served = Vec::with_capacity(opts.requests);
    let started = Instant::now();
    let bar = super::progress::bar(opts.requests as u64, "requests", !opts.progress);
    for req in &workload(opts.requests, opts.seed) {
        let t0 = Instant::now();
        let routed = front.route(&req.text, false)?;
        let s = match &routed.outcome {
            Outcome::Answered(a) => Served {
                family: req.family,
                route: a.route.clone(),
                correct: value_correct(&a.value, &req.expected),
                released: true,
                prompt_tokens: 0,
                generated_tokens: 0,
                latency_ms: t0.elapsed().as_secs_f64() * 1000.0,
            },
            Outcome::ModelLane { .. } => {
                let route_ms = t0.elapsed().as_secs_f64() * 1000.0;
                // Loading the model once is not a request's latency.
                let p = match proposer.take() {
                    Some(p) => p,
                    None => {
                        let path = resolve_with_progress(opts.model, true)?;
                        NeuralProposer::load(opts.model, &path, opts.threads)?
                    }
                };
                let t1 = Instant::now();
                let lane = answer(
                    &front.ledger,
                    &p,
                    &LaneRequest {
                        prompt: &req.text,
                        mode: PromptMode::Chat,
                        sampling: SamplingParams::greedy(),
                        seed: 0,
                        max_tokens: opts.max_tokens,
                        forbid_ids: &[],
                        shape_json: false,
                    },
                    OutputGate::new(),
                    None,
                )?;
                proposer = Some(p);
                let released = lane.decision.output.clone();
                Served {
                    family: req.family,
                    route: nmk_kernel::router::MODEL_LANE.to_owned(),
                    correct: released
                        .as_deref()
                        .is_some_and(|t| model_text_correct(t, &req.expected)),
                    released: released.is_some(),
                    prompt_tokens: lane.completion.prompt_ids.len(),
                    generated_tokens: lane.completion.ids.len(),
                    latency_ms: route_ms + t1.elapsed().as_secs_f64() * 1000.0,
                }
            }
        };
        served.push(s);
        bar.inc(1);
    }
    bar.finish_and_clear();
    let verify = front.ledger.verify(None)?;
    let all: Vec<&Served> = served.iter().collect();
    let mut families = serde_json::Map::new();
    for f in Family::ALL {
        let of: Vec<&Served> = served.iter().filter(|s| s.family == f).collect();
        families.insert(f.name().to_owned(), summary(&of));
    }
    Ok(serde_json::json!({
        "model": opts.model,
        "seed": opts.seed,
        "max_tokens": opts.max_tokens,
        "learned_routes": learned,
        "overall": summary(&all),
        "families": families,
        "wall_s": started.elapsed().as_secs_f64(),
        "ledger_verified": verify.ok(),
        "ledger_entries": verify.entries,
    }))
}

/// Prints the report as a table.
pub fn print(r: &serde_json::Value) {
    println!(
        "recurring workload: {} requests, seed {}, learned routes {}",
        r["overall"]["requests"], r["seed"], r["learned_routes"]
    );
    println!(
        "{:<20} {:>6} {:>8} {:>17} {:>10} {:>10} {:>10}",
        "family", "n", "by prim", "accuracy [95%]", "gen tok", "p50 ms", "p90 ms"
    );
    let row = |name: &str, s: &serde_json::Value| {
        let a = &s["accuracy"];
        let ci = &a["ci95"];
        println!(
            "{:<20} {:>6} {:>8} {:>5.3} [{:.2},{:.2}] {:>10} {:>10.1} {:>10.1}",
            name,
            s["requests"].as_u64().unwrap_or(0),
            s["answered_by_primitive"].as_u64().unwrap_or(0),
            a["p"].as_f64().unwrap_or(0.0),
            ci[0].as_f64().unwrap_or(0.0),
            ci[1].as_f64().unwrap_or(0.0),
            s["generated_tokens"].as_u64().unwrap_or(0),
            s["latency_ms"]["median"].as_f64().unwrap_or(0.0),
            s["latency_ms"]["p90"].as_f64().unwrap_or(0.0),
        );
    };
    if let Some(fams) = r["families"].as_object() {
        for (name, s) in fams {
            row(name, s);
        }
    }
    row("all", &r["overall"]);
    println!(
        "primitive answers used {} model tokens; ledger {} ({} entries); wall {:.0} s",
        r["overall"]["primitive_generated_tokens"],
        if r["ledger_verified"].as_bool().unwrap_or(false) {
            "verified"
        } else {
            "NOT VERIFIED"
        },
        r["ledger_entries"],
        r["wall_s"].as_f64().unwrap_or(0.0)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_workload_is_fixed_by_its_seed_and_covers_every_family() {
        let a = workload(200, 3);
        let b = workload(200, 3);
        let c = workload(200, 4);
        assert_eq!(
            a.iter().map(|r| &r.text).collect::<Vec<_>>(),
            b.iter().map(|r| &r.text).collect::<Vec<_>>()
        );
        assert_ne!(
            a.iter().map(|r| &r.text).collect::<Vec<_>>(),
            c.iter().map(|r| &r.text).collect::<Vec<_>>()
        );
        for f in Family::ALL {
            assert!(a.iter().filter(|r| r.family == f).count() > 20, "{f:?}");
        }
        let pal = a
            .iter()
            .filter(|r| r.family == Family::IsPalindrome)
            .map(|r| r.expected == Expected::Bool(true))
            .collect::<Vec<_>>();
        assert!(pal.iter().any(|&p| p) && pal.iter().any(|&p| !p));
    }

    #[test]
    fn the_checks_accept_the_right_answer_and_refuse_a_wrong_one() {
        assert!(model_text_correct("It has 4 vowels.", &Expected::Int(4)));
        assert!(!model_text_correct("It has 14 vowels.", &Expected::Int(4)));
        assert!(!model_text_correct("No idea.", &Expected::Int(4)));
        assert!(model_text_correct(
            "Yes, it is a palindrome.",
            &Expected::Bool(true)
        ));
        assert!(!model_text_correct(
            "No, it is not a palindrome.",
            &Expected::Bool(true)
        ));
        assert!(model_text_correct(
            "No, it is not a palindrome.",
            &Expected::Bool(false)
        ));
        assert!(model_text_correct(
            "Here: ocean  river apple",
            &Expected::Words("ocean river apple".into())
        ));
        assert!(!model_text_correct(
            "apple river ocean",
            &Expected::Words("ocean river apple".into())
        ));
        assert!(model_text_correct(
            "The capital is Paris.",
            &Expected::Capital("Paris")
        ));
        assert!(value_correct(&Value::int(4), &Expected::Int(4)));
        assert!(!value_correct(&Value::int(5), &Expected::Int(4)));
        assert!(!value_correct(&Value::Bool(true), &Expected::Int(1)));
        assert!(value_correct(&Value::Bool(false), &Expected::Bool(false)));
        assert_eq!(vowels("Umbrella sky"), 3);
        assert!(palindrome("A man, a plan, a canal: Panama"));
        assert!(!palindrome("apple river"));
        assert_eq!(digit_sum(9_081), 18);
        assert_eq!(first_integer("x -12 y 3"), Some(-12));
    }
}
