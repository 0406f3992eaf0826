//! The demo's fixed workload and its own deterministic checks.
//!
//! Owns the requests (counting, gcd, primality, dates, and free-form questions), the answer
//! each checkable request must state — computed here in plain Rust, independently of the
//! kernel's primitives and oracles — and the strict reading of an answer text that decides
//! whether it states it. It may not call the kernel, the router or a model: it only judges
//! text that others produced.

/// A calendar date (proleptic Gregorian), as the workload writes it: `YYYY-MM-DD`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Date {
    /// Year.
    pub year: i32,
    /// Month, 1–12.
    pub month: u32,
    /// Day of the month, 1–31.
    pub day: u32,
}

impl std::fmt::Display for Date {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

fn is_leap(year: i32) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

impl Date {
    const fn new(year: i32, month: u32, day: u32) -> Date {
        Date { year, month, day }
    }

    /// The next calendar day.
    fn succ(self) -> Date {
        if self.day < days_in_month(self.year, self.month) {
            Date::new(self.year, self.month, self.day + 1)
        } else if self.month < 12 {
            Date::new(self.year, self.month + 1, 1)
        } else {
            Date::new(self.year + 1, 1, 1)
        }
    }

    /// The previous calendar day.
    fn pred(self) -> Date {
        if self.day > 1 {
            Date::new(self.year, self.month, self.day - 1)
        } else if self.month > 1 {
            let m = self.month - 1;
            Date::new(self.year, m, days_in_month(self.year, m))
        } else {
            Date::new(self.year - 1, 12, 31)
        }
    }
}

/// Walks the calendar one day at a time: slow but obviously right for the workload's small
/// spans, and shares nothing with the kernel's closed-form date arithmetic.
fn add_days(date: Date, days: i64) -> Date {
    let mut d = date;
    for _ in 0..days.unsigned_abs() {
        d = if days >= 0 { d.succ() } else { d.pred() };
    }
    d
}

/// Days from `from` to `to` (negative when `to` is earlier), by walking the calendar.
fn days_between(from: Date, to: Date) -> i64 {
    let (mut d, end, sign) = if from <= to {
        (from, to, 1)
    } else {
        (to, from, -1)
    };
    let mut n = 0i64;
    while d != end {
        d = d.succ();
        n += 1;
    }
    sign * n
}

/// Euclid's algorithm by repeated subtraction (the kernel's uses remainders).
fn gcd(a: u64, b: u64) -> u64 {
    let (mut a, mut b) = (a, b);
    while a != 0 && b != 0 {
        if a >= b {
            a -= b;
        } else {
            b -= a;
        }
    }
    a.max(b)
}

fn is_prime(n: u64) -> bool {
    n >= 2
        && (2..n)
            .take_while(|d| d * d <= n)
            .all(|d| !n.is_multiple_of(d))
}

/// What the demo computes for a request, independently of the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// How many times `letter` occurs in `word`.
    CountLetter {
        /// The letter.
        letter: char,
        /// The word.
        word: &'static str,
    },
    /// How many letters `word` has.
    WordLength(&'static str),
    /// The greatest common divisor.
    Gcd(u64, u64),
    /// Whether the number is prime.
    Prime(u64),
    /// The sum of two integers.
    Sum(i64, i64),
    /// Days from the first date to the second.
    DaysBetween(Date, Date),
    /// The date this many days after (negative: before) the date.
    AddDays(Date, i64),
}

/// The answer a checkable request must state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expected {
    /// An integer.
    Int(i64),
    /// Yes (true) or no (false) to whether the subject has the property `claim`.
    YesNo {
        /// The verdict.
        answer: bool,
        /// The word naming the property (`prime`).
        claim: &'static str,
    },
    /// A date.
    Date(Date),
}

impl std::fmt::Display for Expected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Expected::Int(n) => write!(f, "{n}"),
            Expected::YesNo { answer: true, .. } => f.write_str("yes"),
            Expected::YesNo { answer: false, .. } => f.write_str("no"),
            Expected::Date(d) => write!(f, "{d}"),
        }
    }
}

impl Check {
    /// The answer, computed here.
    pub fn expected(&self) -> Expected {
        let int = |n: u64| Expected::Int(i64::try_from(n).unwrap_or(i64::MAX));
        match *self {
            Check::CountLetter { letter, word } => {
                int(word.chars().filter(|&c| c == letter).count() as u64)
            }
            Check::WordLength(word) => {
                int(word.chars().filter(|c| c.is_alphabetic()).count() as u64)
            }
            Check::Gcd(a, b) => int(gcd(a, b)),
            Check::Prime(n) => Expected::YesNo {
                answer: is_prime(n),
                claim: "prime",
            },
            Check::Sum(a, b) => Expected::Int(a.saturating_add(b)),
            Check::DaysBetween(a, b) => Expected::Int(days_between(a, b)),
            Check::AddDays(d, n) => Expected::Date(add_days(d, n)),
        }
    }
}

/// One request of the workload.
#[derive(Debug, Clone, Copy)]
pub struct Request {
    /// The text sent, as a user would type it.
    pub text: &'static str,
    /// The family it belongs to (counting, gcd, prime, dates, arithmetic, free-form).
    pub family: &'static str,
    /// Whether its phrasing is one a built-in primitive owns (the kernel should answer it with
    /// zero model tokens); the rest are phrased so that no primitive's strict extraction
    /// reads them, and take the model lane.
    pub primitive_phrasing: bool,
    /// The demo's own check, when the answer is deterministic.
    pub check: Option<Check>,
}

const fn req(
    text: &'static str,
    family: &'static str,
    primitive_phrasing: bool,
    check: Option<Check>,
) -> Request {
    Request {
        text,
        family,
        primitive_phrasing,
        check,
    }
}

/// The fixed workload, in the order it runs.
pub fn workload() -> Vec<Request> {
    use Check::*;
    vec![
        req(
            "how many r's are in strawberry",
            "counting",
            true,
            Some(CountLetter {
                letter: 'r',
                word: "strawberry",
            }),
        ),
        req(
            "how many times does the letter s appear in mississippi",
            "counting",
            true,
            Some(CountLetter {
                letter: 's',
                word: "mississippi",
            }),
        ),
        req(
            "what is the gcd of 1071 and 462",
            "gcd",
            true,
            Some(Gcd(1071, 462)),
        ),
        req(
            "greatest common divisor of 84 and 36",
            "gcd",
            true,
            Some(Gcd(84, 36)),
        ),
        req("is 97 prime", "prime", true, Some(Prime(97))),
        req("is 91 a prime number", "prime", true, Some(Prime(91))),
        req(
            "how many days between 2024-01-01 and 2024-03-01",
            "dates",
            true,
            Some(DaysBetween(Date::new(2024, 1, 1), Date::new(2024, 3, 1))),
        ),
        req(
            "what date is 100 days after 2024-02-10",
            "dates",
            true,
            Some(AddDays(Date::new(2024, 2, 10), 100)),
        ),
        req(
            "what is 2024-12-25 minus 30 days",
            "dates",
            true,
            Some(AddDays(Date::new(2024, 12, 25), -30)),
        ),
        // Same families, phrased so that no primitive owns them: numbers spelled out, a count
        // with no single letter, a sum (no built-in adds).
        req(
            "What is the greatest common divisor of twelve and eighteen?",
            "gcd",
            false,
            Some(Gcd(12, 18)),
        ),
        req(
            "How many letters are in the word banana?",
            "counting",
            false,
            Some(WordLength("banana")),
        ),
        req("What is 2 plus 2?", "arithmetic", false, Some(Sum(2, 2))),
        req("Name the capital city of France.", "free-form", false, None),
        req(
            "Explain in one sentence what a prime number is.",
            "free-form",
            false,
            None,
        ),
        req(
            "Why is the sky blue? Answer briefly.",
            "free-form",
            false,
            None,
        ),
        req(
            "What is the largest planet in the solar system?",
            "free-form",
            false,
            None,
        ),
    ]
}

/// Standalone integers of `text`: a run of ASCII digits, optionally signed by a `-` that does
/// not follow a letter or digit, neither glued to a letter/digit/underscore nor part of a
/// decimal (`1.5`) or an ISO date. Each run that does not parse (too long) is skipped.
fn standalone_integers(text: &str) -> Vec<i64> {
    let chars: Vec<char> = text.chars().collect();
    let date_spans: Vec<(usize, usize)> = iso_dates_with_spans(&chars)
        .into_iter()
        .map(|(_, span)| span)
        .collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if !chars[i].is_ascii_digit() || date_spans.iter().any(|&(s, e)| i >= s && i < e) {
            i += 1;
            continue;
        }
        let start = i;
        while i < chars.len() && chars[i].is_ascii_digit() {
            i += 1;
        }
        let before = start.checked_sub(1).map(|k| chars[k]);
        let after = chars.get(i).copied();
        let glued = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
        let decimal_before = before == Some('.') && start >= 2 && chars[start - 2].is_ascii_digit();
        let decimal_after =
            after == Some('.') && chars.get(i + 1).is_some_and(char::is_ascii_digit);
        if glued(before) || glued(after) || decimal_before || decimal_after {
            continue;
        }
        let negative = before == Some('-') && (start < 2 || !chars[start - 2].is_alphanumeric());
        let digits: String = chars[start..i].iter().collect();
        if let Ok(n) = digits.parse::<i64>() {
            out.push(if negative { -n } else { n });
        }
    }
    out
}

fn iso_dates_with_spans(chars: &[char]) -> Vec<(Date, (usize, usize))> {
    const SHAPE: &[u8; 10] = b"dddd-dd-dd";
    let mut out = Vec::new();
    let mut i = 0;
    while i + SHAPE.len() <= chars.len() {
        let window = &chars[i..i + SHAPE.len()];
        let shaped = window.iter().zip(SHAPE).all(|(c, p)| match p {
            b'd' => c.is_ascii_digit(),
            _ => *c == '-',
        });
        let free_before = i == 0 || !chars[i - 1].is_alphanumeric();
        let free_after = chars
            .get(i + SHAPE.len())
            .is_none_or(|c| !c.is_alphanumeric());
        if shaped && free_before && free_after {
            let s: String = window.iter().collect();
            let (y, m, d) = (s[0..4].parse(), s[5..7].parse(), s[8..10].parse());
            if let (Ok(year), Ok(month), Ok(day)) = (y, m, d)
                && (1..=12).contains(&month)
                && (1..=days_in_month(year, month)).contains(&day)
            {
                out.push((Date::new(year, month, day), (i, i + SHAPE.len())));
            }
            i += SHAPE.len();
        } else {
            i += 1;
        }
    }
    out
}

fn iso_dates(text: &str) -> Vec<Date> {
    let chars: Vec<char> = text.chars().collect();
    iso_dates_with_spans(&chars)
        .into_iter()
        .map(|(d, _)| d)
        .collect()
}

/// The sentences of `text`, each with its terminator: split after `.`, `!`, `?` and line
/// breaks.
fn sentences(text: &str) -> impl Iterator<Item = &str> {
    text.split_inclusive(['.', '!', '?', '\n'])
        .filter(|s| s.chars().any(char::is_alphanumeric))
}

/// Lower-cased runs of letters and digits.
fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// Words that turn a statement into its denial (`isn't` splits into `isn` + `t`).
const NEGATIONS: &[&str] = &["no", "not", "false", "isn", "cannot", "never", "neither"];

/// The verdict `answer` states on whether the request's subject has property `claim`, or none.
fn yes_no(request: &str, answer: &str, claim: &str) -> Option<bool> {
    let denies = |w: &[String]| w.iter().any(|x| NEGATIONS.contains(&x.as_str()));
    // A bare verdict first: `true`, `Yes, …`, `No, …`.
    if let Some(first) = sentences(answer).next() {
        let w = words(first);
        match w.first().map(String::as_str) {
            Some("yes" | "true") if !denies(&w[1..]) => return Some(true),
            Some("no" | "false") => return Some(false),
            _ => {}
        }
    }
    // Else the first statement that names the subject (every integer of the request) and the
    // property: it affirms unless it denies. A question, or the request repeated, states
    // nothing.
    let subject = standalone_integers(request);
    let asked = words(request);
    sentences(answer)
        .find(|s| {
            let said = standalone_integers(s);
            let w = words(s);
            !s.trim_end().ends_with('?')
                && w != asked
                && subject.iter().all(|n| said.contains(n))
                && w.iter().any(|x| x == claim)
        })
        .map(|s| !denies(&words(s)))
}

/// Whether `answer`, given to `request`, states `expected` — read strictly, so that a hedge
/// or a list of candidates does not pass:
/// - an integer: the standalone integers of the answer (digits only: `three` is not read),
///   leaving out those the request itself contains (an echo of the question states nothing),
///   must be exactly one distinct value, the expected one;
/// - a date: likewise with the answer's ISO dates `YYYY-MM-DD`;
/// - yes/no: an answer opening with a bare verdict (`true`, `yes`, `no`, `false`) states it;
///   otherwise the verdict is read from the first sentence naming both the subject (every
///   integer of the request) and the property (`prime`) — it denies when it holds a negation
///   (`no`, `not`, `false`, `isn't`, …), else affirms. A definition that names neither the
///   subject nor the property ("A prime number has no divisors other than…") states nothing.
pub fn states(request: &str, answer: &str, expected: &Expected) -> bool {
    match expected {
        Expected::Int(n) => {
            let echoed = standalone_integers(request);
            let mut said: Vec<i64> = standalone_integers(answer)
                .into_iter()
                .filter(|x| !echoed.contains(x))
                .collect();
            said.sort_unstable();
            said.dedup();
            said == [*n]
        }
        Expected::Date(d) => {
            let echoed = iso_dates(request);
            let mut said: Vec<Date> = iso_dates(answer)
                .into_iter()
                .filter(|x| !echoed.contains(x))
                .collect();
            said.sort_unstable();
            said.dedup();
            said == [*d]
        }
        Expected::YesNo { answer: b, claim } => yes_no(request, answer, claim) == Some(*b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checks_compute_known_answers() {
        assert_eq!(gcd(1071, 462), 21);
        assert_eq!(gcd(84, 36), 12);
        assert_eq!(gcd(0, 5), 5);
        assert!(is_prime(97) && !is_prime(91) && !is_prime(1) && is_prime(2));
        assert_eq!(
            days_between(Date::new(2024, 1, 1), Date::new(2024, 3, 1)),
            60
        );
        assert_eq!(
            days_between(Date::new(2023, 1, 1), Date::new(2023, 3, 1)),
            59
        );
        assert_eq!(
            add_days(Date::new(2024, 2, 10), 100),
            Date::new(2024, 5, 20)
        );
        assert_eq!(
            add_days(Date::new(2024, 12, 25), -30),
            Date::new(2024, 11, 25)
        );
        assert_eq!(add_days(Date::new(2023, 12, 31), 1), Date::new(2024, 1, 1));
    }

    #[test]
    fn every_check_is_written_in_its_request_and_its_answer_is_not_an_echo() {
        for r in workload() {
            let Some(check) = r.check else { continue };
            let params: Vec<String> = match check {
                Check::CountLetter { letter, word } => vec![letter.to_string(), word.into()],
                Check::WordLength(w) => vec![w.into()],
                Check::Gcd(a, b) if r.primitive_phrasing => vec![a.to_string(), b.to_string()],
                Check::Gcd(..) => vec!["twelve".into(), "eighteen".into()],
                Check::Prime(n) => vec![n.to_string()],
                Check::Sum(a, b) => vec![a.to_string(), b.to_string()],
                Check::DaysBetween(a, b) => vec![a.to_string(), b.to_string()],
                Check::AddDays(d, n) => vec![d.to_string(), n.unsigned_abs().to_string()],
            };
            for p in params {
                assert!(r.text.contains(&p), "{:?} lacks {p}", r.text);
            }
            // An answer that only repeated the question must not pass.
            assert!(!states(r.text, r.text, &check.expected()), "{}", r.text);
        }
    }

    #[test]
    fn the_reading_is_strict() {
        let int = Expected::Int(21);
        assert!(states("gcd of 1071 and 462", "21", &int));
        assert!(states(
            "gcd of 1071 and 462",
            "The gcd of 1071 and 462 is 21.",
            &int
        ));
        assert!(!states("gcd of 1071 and 462", "It is 21 or 42.", &int));
        assert!(!states("gcd of 1071 and 462", "twenty-one", &int));
        assert!(!states("gcd of 1071 and 462", "21.5", &int));
        assert!(!states("gcd of 1071 and 462", "x21", &int));
        let date = Expected::Date(Date::new(2024, 5, 20));
        assert!(states("100 days after 2024-02-10", "2024-05-20", &date));
        assert!(!states("100 days after 2024-02-10", "2024-05-21", &date));
        assert!(!states("100 days after 2024-02-10", "May 20, 2024", &date));
        let verdict = |answer| Expected::YesNo {
            answer,
            claim: "prime",
        };
        assert!(states("is 97 prime", "true", &verdict(true)));
        assert!(states(
            "is 97 prime",
            "Yes, 97 is prime. It has no divisors.",
            &verdict(true)
        ));
        assert!(states(
            "is 97 prime",
            "The number 97 is indeed a prime number.",
            &verdict(true)
        ));
        assert!(!states(
            "is 97 prime",
            "No, 97 isn't prime.",
            &verdict(true)
        ));
        assert!(!states("is 97 prime", "Yes, it is not.", &verdict(true)));
        assert!(states("is 91 prime", "91 isn't prime.", &verdict(false)));
        assert!(states("is 91 prime", "false", &verdict(false)));
        // A definition names neither the subject nor the property's verdict on it.
        assert!(!states(
            "is 91 prime",
            "A prime number has no divisors other than 1 and itself.",
            &verdict(false)
        ));
        assert!(!states("is 91 prime", "93 is not prime.", &verdict(false)));
        assert!(!states("is 97 prime", "Is 97 prime?", &verdict(true)));
    }
}
