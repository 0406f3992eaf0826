//! `nmk bench --fact-loop`: the fact-loop A/B on a generated count-then-add task set.
//!
//! Each item asks the model to count a letter in a word, add a number, and reply with the
//! result. Half the items are easy (a short word, the letter once, a small addend), half hard
//! (a long word, the letter two to four times, a larger addend). The trusted fact is the count
//! (`count_letter`, the built-in primitive); the deterministic check is "the last integer of the
//! answer equals count + addend". Four arms over the same items, greedy:
//!
//! - `base`: the bare answer;
//! - `always`: always grounded (facts block, re-prefilled), one generation;
//! - `governed`: the governed fact loop, grounding by re-prefill when the check fails;
//! - `governed_mid_stream`: the same loop, grounding mid-stream (parked session + fact tokens).
//!
//! Reported per arm: accuracy with a Wilson 95 % interval (overall, easy, hard), mean
//! generations, generated tokens and prefilled positions per item. The governed arms read the
//! cost as 0.0 (an idle machine) so that the A/B isolates the decision on the check; the cost
//! veto is covered by the kernel's tests.

use anyhow::{Result, anyhow};
use nmk_det::Value;
use nmk_kernel::fact_loop::{Fact, FactLane, FactLoopConfig, Grounding, governed_fact_loop};
use nmk_kernel::k_policy::CostSource;
use nmk_neural::text::TextModel;

use crate::fact_lane::NeuralFactLane;

/// Words for hard items (letters repeated) and easy items (short).
const HARD: [(&str, char); 16] = [
    ("strawberry", 'r'),
    ("mississippi", 's'),
    ("bookkeeper", 'e'),
    ("banana", 'a'),
    ("committee", 't'),
    ("assessment", 's'),
    ("cinnamon", 'n'),
    ("parallel", 'l'),
    ("tomorrow", 'o'),
    ("successful", 's'),
    ("referrer", 'r'),
    ("excellence", 'e'),
    ("possession", 's'),
    ("balloon", 'l'),
    ("coffee", 'f'),
    ("pepper", 'p'),
];
const EASY: [(&str, char); 16] = [
    ("cat", 'c'),
    ("dog", 'g'),
    ("sun", 'u'),
    ("map", 'm'),
    ("fish", 'h'),
    ("lamp", 'l'),
    ("road", 'r'),
    ("milk", 'k'),
    ("tree", 't'),
    ("bird", 'b'),
    ("cup", 'p'),
    ("hat", 'h'),
    ("pen", 'n'),
    ("box", 'x'),
    ("car", 'a'),
    ("sky", 'y'),
];

/// One item.
#[derive(Debug, Clone)]
pub struct Item {
    word: &'static str,
    letter: char,
    add: i64,
    hard: bool,
}

impl Item {
    fn prompt(&self) -> String {
        format!(
            "Count how many times the letter '{}' appears in the word '{}', then add {} to that \
             count. Reply with only the final number.",
            self.letter, self.word, self.add
        )
    }
}

/// `n` items from `seed`, alternating hard and easy.
pub fn items(n: usize, seed: u64) -> Vec<Item> {
    let mut rng = nmk_det::gate::Rng::new(seed);
    (0..n)
        .map(|i| {
            let hard = i % 2 == 0;
            let pool: &[(&'static str, char)] = if hard { &HARD } else { &EASY };
            let (word, letter) = rng.choose(pool).copied().unwrap_or(("cat", 'c'));
            let add = if hard {
                rng.range_i64(4, 9)
            } else {
                rng.range_i64(1, 3)
            };
            Item {
                word,
                letter,
                add,
                hard,
            }
        })
        .collect()
}

/// The trusted count, from the built-in primitive.
fn count(item: &Item) -> Result<i64> {
    let p = nmk_det::primitives::find("count_letter").ok_or_else(|| anyhow!("no count_letter"))?;
    let v = p
        .call(&[Value::str(item.word), Value::str(item.letter.to_string())])
        .map_err(|e| anyhow!("count_letter: {e}"))?;
    v.as_i64()
        .ok_or_else(|| anyhow!("count_letter returned {v:?}"))
}

/// The last integer in `text` (digits not adjacent to other digits), if any.
fn last_integer(text: &str) -> Option<i64> {
    let mut last = None;
    let mut cur = String::new();
    for c in text.chars().chain(std::iter::once(' ')) {
        if c.is_ascii_digit() {
            cur.push(c);
        } else if !cur.is_empty() {
            last = cur.parse().ok();
            cur.clear();
        }
    }
    last
}

#[derive(Debug, Default, Clone)]
struct Tally {
    right: usize,
    n: usize,
    right_easy: usize,
    n_easy: usize,
    right_hard: usize,
    n_hard: usize,
    generations: u64,
    tokens: u64,
    prefilled: u64,
}

impl Tally {
    fn add(&mut self, hard: bool, ok: bool, generations: u32, tokens: u32) {
        self.n += 1;
        self.right += usize::from(ok);
        if hard {
            self.n_hard += 1;
            self.right_hard += usize::from(ok);
        } else {
            self.n_easy += 1;
            self.right_easy += usize::from(ok);
        }
        self.generations += u64::from(generations);
        self.tokens += u64::from(tokens);
    }

    fn json(&self) -> serde_json::Value {
        let n = self.n.max(1) as f64;
        serde_json::json!({
            "accuracy": wilson(self.right, self.n),
            "easy": wilson(self.right_easy, self.n_easy),
            "hard": wilson(self.right_hard, self.n_hard),
            "mean_generations": self.generations as f64 / n,
            "mean_generated_tokens": self.tokens as f64 / n,
            "mean_prefilled_positions": self.prefilled as f64 / n,
        })
    }
}

/// Proportion with its Wilson 95 % interval.
pub(crate) fn wilson(k: usize, n: usize) -> serde_json::Value {
    if n == 0 {
        return serde_json::json!({"k": 0, "n": 0});
    }
    let (kf, nf, z) = (k as f64, n as f64, 1.959_964);
    let p = kf / nf;
    let den = 1.0 + z * z / nf;
    let centre = (p + z * z / (2.0 * nf)) / den;
    let half = z * ((p * (1.0 - p) / nf + z * z / (4.0 * nf * nf)).sqrt()) / den;
    serde_json::json!({"k": k, "n": n, "p": p, "ci95": [centre - half, centre + half]})
}

/// Runs the A/B on `n` items.
pub fn run(m: &TextModel, n: usize, seed: u64, max_tokens: usize) -> Result<serde_json::Value> {
    let items = items(n, seed);
    let mut base = Tally::default();
    let mut always = Tally::default();
    let mut governed = Tally::default();
    let mut mid = Tally::default();
    let config = FactLoopConfig::default();
    for item in &items {
        let c = count(item)?;
        let expected = c + item.add;
        let facts = vec![Fact {
            label: format!("count_letter('{}', '{}')", item.word, item.letter),
            value: c.to_string(),
        }];
        let check = |a: &str| -> Result<bool, String> { Ok(last_integer(a) == Some(expected)) };
        let prompt = item.prompt();

        let mut lane = NeuralFactLane::new(m, Grounding::Reprefill, max_tokens);
        let a = lane.answer(&prompt)?;
        base.add(item.hard, check(&a.text).unwrap_or(false), 1, a.tokens);
        base.prefilled += lane.prefilled;

        let mut lane = NeuralFactLane::new(m, Grounding::Reprefill, max_tokens);
        let g = lane.grounded(&prompt, &facts)?;
        always.add(item.hard, check(&g.text).unwrap_or(false), 1, g.tokens);
        always.prefilled += lane.prefilled;

        for (mode, tally) in [
            (Grounding::Reprefill, &mut governed),
            (Grounding::MidStream, &mut mid),
        ] {
            let mut lane = NeuralFactLane::new(m, mode, max_tokens);
            let o = governed_fact_loop(
                &mut lane,
                &prompt,
                &mut |_| facts.clone(),
                &check,
                &CostSource::Given(0.0),
                &config,
            )?;
            tally.add(item.hard, o.audit.final_validated, o.generations, o.tokens);
            tally.prefilled += lane.prefilled;
        }
    }
    Ok(serde_json::json!({
        "items": n,
        "seed": seed,
        "task": "count a letter in a word, add a number, reply with the result",
        "arms": {
            "base": base.json(),
            "always": always.json(),
            "governed": governed.json(),
            "governed_mid_stream": mid.json(),
        },
    }))
}

/// Prints the A/B as a table.
pub fn print(r: &serde_json::Value) {
    println!(
        "fact-loop A/B: {} items (half easy, half hard), seed {}",
        r["items"], r["seed"]
    );
    println!(
        "{:<20} {:>9} {:>17} {:>7} {:>7} {:>6} {:>8} {:>9}",
        "arm", "accuracy", "95% CI", "easy", "hard", "gens", "tokens", "prefill"
    );
    for arm in ["base", "always", "governed", "governed_mid_stream"] {
        let a = &r["arms"][arm];
        let p = |v: &serde_json::Value| v["p"].as_f64().unwrap_or(0.0);
        let ci = |i: usize| a["accuracy"]["ci95"][i].as_f64().unwrap_or(0.0);
        println!(
            "{:<20} {:>9.3} {:>8.3}–{:<8.3} {:>7.3} {:>7.3} {:>6.2} {:>8.1} {:>9.1}",
            arm,
            p(&a["accuracy"]),
            ci(0),
            ci(1),
            p(&a["easy"]),
            p(&a["hard"]),
            a["mean_generations"].as_f64().unwrap_or(0.0),
            a["mean_generated_tokens"].as_f64().unwrap_or(0.0),
            a["mean_prefilled_positions"].as_f64().unwrap_or(0.0),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_alternate_and_counts_are_right() {
        let it = items(8, 3);
        assert!(it.iter().step_by(2).all(|i| i.hard));
        assert!(it.iter().skip(1).step_by(2).all(|i| !i.hard));
        let s = Item {
            word: "strawberry",
            letter: 'r',
            add: 4,
            hard: true,
        };
        assert_eq!(count(&s).unwrap(), 3);
    }

    #[test]
    fn last_integer_and_wilson() {
        assert_eq!(last_integer("3 + 4 = 7."), Some(7));
        assert_eq!(last_integer("none"), None);
        let w = wilson(50, 100);
        let ci = w["ci95"].as_array().unwrap();
        assert!((ci[0].as_f64().unwrap() - 0.4038).abs() < 1e-3);
        assert!((ci[1].as_f64().unwrap() - 0.5962).abs() < 1e-3);
    }
}
