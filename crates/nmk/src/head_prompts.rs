//! Generated prompts for the entry-trap head: labelled requests for every built-in route the
//! router owns from free text, plus `none` (chat, code questions, arithmetic no route owns).
//!
//! Owns the templates and their split: TRAIN and HELD-OUT use disjoint templates (held-out
//! prompts are unseen paraphrases), and a fixed ADVERSARIAL set puts route keywords into
//! requests that are not that task, and real tasks without the lexical cues. Operands and
//! words are drawn from a seeded generator, so a seed gives the same prompts. May not touch the
//! model or the kernel: it only writes text and labels.

use nmk_det::gate::Rng;

/// The class of "no route".
pub const NONE: &str = "none";

/// The head's classes: the router's built-in route ids that read free text, then `none`.
pub const CLASSES: [&str; 8] = [
    "builtin:gcd",
    "builtin:is_prime",
    "builtin:count_letter",
    "builtin:primes_up_to",
    "builtin:days_between",
    "builtin:add_days",
    "builtin:grapheme_count",
    NONE,
];

/// One labelled prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct Labelled {
    /// The request.
    pub prompt: String,
    /// Its class (an entry of [`CLASSES`]).
    pub class: &'static str,
    /// Index of its template within its class and split (0 for the adversarial set).
    pub template: usize,
}

/// Which templates to draw from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// Training templates.
    Train,
    /// Held-out templates (never used in training).
    HeldOut,
}

// Placeholders: {a} {b} integers, {n} one integer, {w} a word, {l} a letter of it, {s} a
// quoted string, {d1} {d2} ISO dates, {k} a day count.
const TRAIN: &[(&str, &[&str])] = &[
    (
        "builtin:gcd",
        &[
            "what is the gcd of {a} and {b}",
            "compute the greatest common divisor of {a} and {b}",
            "gcd({a}, {b}) = ?",
            "find the highest common factor of {a} and {b}",
            "Greatest common factor of {a} and {b}?",
        ],
    ),
    (
        "builtin:is_prime",
        &[
            "is {n} prime",
            "Is {n} a prime number?",
            "check whether {n} is prime",
            "tell me if {n} is a prime",
            "{n}: prime or not?",
        ],
    ),
    (
        "builtin:count_letter",
        &[
            "how many times does the letter {l} appear in '{w}'?",
            "count the {l}'s in {w}",
            "number of occurrences of the letter {l} in the word {w}",
            "How many {l}'s are in '{w}'?",
            "count letter {l} in '{w}'",
        ],
    ),
    (
        "builtin:primes_up_to",
        &[
            "list the primes up to {n}",
            "all prime numbers up to {n}",
            "give me the primes up to {n}",
            "which numbers are primes up to {n}?",
            "primes upto {n} please",
        ],
    ),
    (
        "builtin:days_between",
        &[
            "how many days between {d1} and {d2}?",
            "number of days from {d1} to {d2}",
            "count the days between {d1} and {d2}",
            "days between {d1} and {d2}",
            "How many days are there from {d1} to {d2}?",
        ],
    ),
    (
        "builtin:add_days",
        &[
            "what date is {k} days after {d1}",
            "add {k} days to {d1}",
            "which day is {k} days after {d1}?",
            "{d1} plus {k} days is what date?",
            "the date {k} days after {d1}",
        ],
    ),
    (
        "builtin:grapheme_count",
        &[
            "how many characters are in \"{s}\"?",
            "count the characters in \"{s}\"",
            "number of characters of \"{s}\"",
            "How many characters does \"{s}\" have?",
            "character count of \"{s}\" please",
        ],
    ),
    (
        NONE,
        &[
            "tell me a short story about a {w}",
            "what is the capital of {country}?",
            "write a python function that reverses a list",
            "what is {a} plus {b}?",
            "explain how a {w} works",
            "translate 'good morning' into {lang}",
            "what is {a} times {b}?",
            "give me three tips for learning {lang}",
            "how do I sort a dictionary by value in python?",
            "write a haiku about the {w}",
        ],
    ),
];

const HELD_OUT: &[(&str, &[&str])] = &[
    (
        "builtin:gcd",
        &[
            "I need the GCD for {a} and {b}",
            "what's the greatest common divisor between {a} and {b}?",
        ],
    ),
    (
        "builtin:is_prime",
        &[
            "quick question: is the number {n} prime?",
            "determine if {n} is prime",
        ],
    ),
    (
        "builtin:count_letter",
        &[
            "in the word '{w}', how many times does the letter {l} occur?",
            "tell me how many times the letter {l} shows up in '{w}'",
        ],
    ),
    (
        "builtin:primes_up_to",
        &[
            "please list every prime up to {n}",
            "show the prime numbers up to {n}",
        ],
    ),
    (
        "builtin:days_between",
        &[
            "tell me how many days lie between {d1} and {d2}",
            "from {d1} to {d2}, how many days is that?",
        ],
    ),
    (
        "builtin:add_days",
        &[
            "if today is {d1}, what is the date {k} days after?",
            "{k} days after {d1} is which date?",
        ],
    ),
    (
        "builtin:grapheme_count",
        &[
            "tell me the number of characters in \"{s}\"",
            "how many characters long is \"{s}\"?",
        ],
    ),
    (
        NONE,
        &[
            "can you recommend a good book about {w}s?",
            "what is {a} minus {b}?",
            "why is the sky blue?",
            "write a rust function that adds two numbers",
            "how do I say thank you in {lang}?",
        ],
    ),
];

/// The adversarial set: route keywords in requests that are not that task (label `none`), and
/// real tasks phrased without the lexical cues (label their route).
pub const ADVERSARIAL: &[(&str, &str)] = &[
    ("who was the prime minister of the UK in 1990?", NONE),
    ("the gcd function in my C code segfaults, why?", NONE),
    ("count to ten in French", NONE),
    (
        "how many days until Christmas is a song title, who sang it?",
        NONE,
    ),
    ("what does prime time mean on television?", NONE),
    ("write a letter to my landlord about the heating", NONE),
    ("how many characters are in the Lord of the Rings?", NONE),
    ("what is a prime lens in photography?", NONE),
    ("explain the euclidean algorithm in simple words", NONE),
    ("how many days are in a leap year?", NONE),
    ("list three primes ministers of Canada", NONE),
    (
        "my character count is too high on twitter, any advice?",
        NONE,
    ),
    ("count the number of lines in a file with bash", NONE),
    (
        "what is the largest number that divides both 84 and 36?",
        "builtin:gcd",
    ),
    ("biggest integer dividing 120 and 45 evenly?", "builtin:gcd"),
    (
        "can 221 be divided by anything except 1 and itself?",
        "builtin:is_prime",
    ),
    (
        "does 97 have any divisors other than one and itself?",
        "builtin:is_prime",
    ),
    (
        "how often does r occur in 'strawberry'?",
        "builtin:count_letter",
    ),
    (
        "what is the length in days from 2024-02-01 to 2024-03-15?",
        "builtin:days_between",
    ),
    (
        "which date comes 45 days later than 2024-05-10?",
        "builtin:add_days",
    ),
];

const WORDS: &[&str] = &[
    "strawberry",
    "banana",
    "mississippi",
    "bookkeeper",
    "committee",
    "parallel",
    "balloon",
    "coffee",
    "pepper",
    "engineering",
    "assessment",
    "raspberry",
    "dragon",
    "robot",
    "river",
    "lantern",
];
const COUNTRIES: &[&str] = &["France", "Japan", "Kenya", "Peru", "Norway", "Canada"];
const LANGS: &[&str] = &["Spanish", "German", "Italian", "Japanese", "Swahili"];
const STRINGS: &[&str] = &[
    "hello world",
    "naïve café",
    "rust is fun",
    "good night",
    "👍🏽 ok",
    "abc def ghi",
    "the quick fox",
];

fn pick<'a>(rng: &mut Rng, xs: &[&'a str]) -> &'a str {
    xs[rng.below(xs.len() as u64) as usize]
}

fn date(rng: &mut Rng) -> String {
    format!(
        "{}-{:02}-{:02}",
        rng.range_i64(1990, 2030),
        rng.range_i64(1, 12),
        rng.range_i64(1, 28)
    )
}

fn fill(template: &str, rng: &mut Rng) -> String {
    let word = pick(rng, WORDS);
    let letters: Vec<char> = word.chars().collect();
    let letter = letters[rng.below(letters.len() as u64) as usize];
    let mut d1 = date(rng);
    let mut d2 = date(rng);
    if d2 < d1 {
        std::mem::swap(&mut d1, &mut d2);
    }
    template
        .replace("{a}", &rng.range_i64(6, 2000).to_string())
        .replace("{b}", &rng.range_i64(6, 2000).to_string())
        .replace("{n}", &rng.range_i64(2, 5000).to_string())
        .replace("{k}", &rng.range_i64(1, 400).to_string())
        .replace("{w}", word)
        .replace("{l}", &letter.to_string())
        .replace("{s}", pick(rng, STRINGS))
        .replace("{d1}", &d1)
        .replace("{d2}", &d2)
        .replace("{country}", pick(rng, COUNTRIES))
        .replace("{lang}", pick(rng, LANGS))
}

/// `per_class` prompts of every class from `split`'s templates (cycled in order, operands
/// drawn from `seed`).
pub fn generate(split: Split, per_class: usize, seed: u64) -> Vec<Labelled> {
    let table = match split {
        Split::Train => TRAIN,
        Split::HeldOut => HELD_OUT,
    };
    let mut rng = Rng::new(seed ^ if split == Split::Train { 0 } else { 0x5eed });
    let mut out = Vec::new();
    for (class, templates) in table {
        for i in 0..per_class {
            let template = i % templates.len();
            out.push(Labelled {
                prompt: fill(templates[template], &mut rng),
                class,
                template,
            });
        }
    }
    out
}

/// The adversarial set, labelled.
pub fn adversarial() -> Vec<Labelled> {
    ADVERSARIAL
        .iter()
        .map(|&(prompt, class)| Labelled {
            prompt: prompt.to_owned(),
            class,
            template: 0,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn train_and_held_out_templates_are_disjoint_and_cover_every_class() {
        for (class, ts) in TRAIN {
            assert!(CLASSES.contains(class));
            let held = HELD_OUT.iter().find(|(c, _)| c == class).unwrap().1;
            for t in *ts {
                assert!(!held.contains(t), "{t} is in both splits");
            }
        }
        assert_eq!(TRAIN.len(), CLASSES.len());
        assert_eq!(HELD_OUT.len(), CLASSES.len());
        for (_, c) in ADVERSARIAL {
            assert!(CLASSES.contains(c));
        }
    }

    #[test]
    fn generation_is_seeded() {
        assert_eq!(generate(Split::Train, 3, 1), generate(Split::Train, 3, 1));
        assert_ne!(generate(Split::Train, 3, 1), generate(Split::Train, 3, 2));
        assert!(
            generate(Split::HeldOut, 2, 1)
                .iter()
                .all(|l| !l.prompt.contains('{'))
        );
    }
}
