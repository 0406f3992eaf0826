//! `regex_match`: does a whole text match a small regular expression?
//!
//! # Syntax
//!
//! ```text
//! regex  := branch ('|' branch)*          alternation; a branch may be empty
//! branch := piece*
//! piece  := atom ('*' | '+' | '?')?       at most one quantifier per atom
//! atom   := '(' regex ')' | '.' | class | '\' meta | any other character
//! class  := '[' '^'? item+ ']'
//! item   := c ('-' c)?                    a range lo-hi with lo <= hi
//! c      := '\' meta | any character but ']' and '\'
//! meta   := one of  \ . * + ? | ( ) [ ] ^ -
//! ```
//!
//! `.` matches any one character (newlines included); matching is by Unicode scalar value and
//! always of the whole text (there are no anchors, and `^`, `$`, `{`, `}` are ordinary
//! characters outside classes). Inside a class `-` is literal when it cannot make a range (first
//! item before `]`, or last), and `^` is literal except right after `[`. Errors: a quantifier with
//! nothing to repeat or after another quantifier, unbalanced parentheses, a stray `]`, an
//! unterminated or empty class, a reversed range, a trailing `\` or an escape of a non-meta
//! character (so `\d`, `\n` are errors, never silently something else), groups nested deeper
//! than [`MAX_NESTING`].
//!
//! # Cost
//!
//! The primitive compiles to a Thompson NFA and simulates it as a Pike VM: one pass over the
//! text carrying a de-duplicated set of threads, so time is O(pattern × text) whatever the
//! pattern (`(a*)*b` included). Sizes are capped: [`MAX_PATTERN_BYTES`], [`MAX_TEXT_BYTES`], and
//! the product `(pattern bytes + 1) × (text bytes + 1)` at most [`MAX_WORK`].
//!
//! The oracle shares none of this: it tokenises first, parses tokens into its own tree, and
//! computes, with memoisation, the set of positions each node can end at from each start.

use std::collections::{BTreeSet, HashMap};

use super::PrimitiveError;
use super::args::{arity, invalid, str_capped, too_large};
use crate::gate::Rng;
use crate::value::Value;

/// The longest pattern, in bytes.
pub const MAX_PATTERN_BYTES: usize = 1000;
/// The longest text, in bytes.
pub const MAX_TEXT_BYTES: usize = 100_000;
/// The largest `(pattern bytes + 1) × (text bytes + 1)`.
pub const MAX_WORK: usize = 20_000_000;
/// The deepest group nesting.
pub const MAX_NESTING: usize = 100;

const META: [char; 12] = ['\\', '.', '*', '+', '?', '|', '(', ')', '[', ']', '^', '-'];

fn sizes(args: &[Value]) -> Result<(&str, &str), PrimitiveError> {
    arity(args, 2)?;
    let pattern = str_capped(args, 0, "pattern", MAX_PATTERN_BYTES)?;
    let text = str_capped(args, 1, "text", MAX_TEXT_BYTES)?;
    let work = (pattern.len() + 1).saturating_mul(text.len() + 1);
    if work > MAX_WORK {
        return Err(too_large("text", work, MAX_WORK));
    }
    Ok((pattern, text))
}

// ---- Primitive: recursive-descent parser, Thompson compiler, Pike VM. ----

#[derive(Debug)]
enum Node {
    Char(char),
    Any,
    Class(Vec<(char, char)>, bool),
    Concat(Vec<Node>),
    Alt(Vec<Node>),
    Star(Box<Node>),
    Plus(Box<Node>),
    Opt(Box<Node>),
}

struct Parser {
    chars: Vec<char>,
    pos: usize,
}

fn syntax(detail: &str) -> PrimitiveError {
    invalid("pattern", detail)
}

impl Parser {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn peek2(&self) -> Option<char> {
        self.chars.get(self.pos + 1).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek();
        self.pos += 1;
        c
    }

    fn alt(&mut self, depth: usize) -> Result<Node, PrimitiveError> {
        let mut branches = vec![self.concat(depth)?];
        while self.peek() == Some('|') {
            self.pos += 1;
            branches.push(self.concat(depth)?);
        }
        Ok(if branches.len() == 1 {
            branches.pop().unwrap_or(Node::Concat(Vec::new()))
        } else {
            Node::Alt(branches)
        })
    }

    fn concat(&mut self, depth: usize) -> Result<Node, PrimitiveError> {
        let mut pieces = Vec::new();
        while let Some(c) = self.peek() {
            if c == '|' || c == ')' {
                break;
            }
            let atom = self.atom(depth)?;
            let piece = match self.peek() {
                Some('*') => Node::Star(Box::new(atom)),
                Some('+') => Node::Plus(Box::new(atom)),
                Some('?') => Node::Opt(Box::new(atom)),
                _ => {
                    pieces.push(atom);
                    continue;
                }
            };
            self.pos += 1;
            if matches!(self.peek(), Some('*' | '+' | '?')) {
                return Err(syntax("a quantifier cannot follow another quantifier"));
            }
            pieces.push(piece);
        }
        Ok(Node::Concat(pieces))
    }

    fn escaped(&mut self) -> Result<char, PrimitiveError> {
        match self.bump() {
            Some(c) if META.contains(&c) => Ok(c),
            Some(_) => Err(syntax("only metacharacters can be escaped")),
            None => Err(syntax("trailing backslash")),
        }
    }

    fn atom(&mut self, depth: usize) -> Result<Node, PrimitiveError> {
        match self.bump() {
            Some('(') => {
                if depth >= MAX_NESTING {
                    return Err(syntax("groups nested too deeply"));
                }
                let inner = self.alt(depth + 1)?;
                if self.bump() != Some(')') {
                    return Err(syntax("unclosed group"));
                }
                Ok(inner)
            }
            Some('*' | '+' | '?') => Err(syntax("nothing to repeat")),
            Some(']') => Err(syntax("unbalanced ]")),
            Some('[') => self.class(),
            Some('.') => Ok(Node::Any),
            Some('\\') => Ok(Node::Char(self.escaped()?)),
            Some(c) => Ok(Node::Char(c)),
            None => Err(syntax("unexpected end")),
        }
    }

    fn class_char(&mut self) -> Result<char, PrimitiveError> {
        match self.bump() {
            Some('\\') => self.escaped(),
            Some(c) => Ok(c),
            None => Err(syntax("unterminated class")),
        }
    }

    fn class(&mut self) -> Result<Node, PrimitiveError> {
        let negated = self.peek() == Some('^');
        if negated {
            self.pos += 1;
        }
        let mut ranges = Vec::new();
        loop {
            match self.peek() {
                None => return Err(syntax("unterminated class")),
                Some(']') if ranges.is_empty() => return Err(syntax("empty class")),
                Some(']') => {
                    self.pos += 1;
                    return Ok(Node::Class(ranges, negated));
                }
                Some(_) => {
                    let lo = self.class_char()?;
                    let hi =
                        if self.peek() == Some('-') && !matches!(self.peek2(), None | Some(']')) {
                            self.pos += 1;
                            self.class_char()?
                        } else {
                            lo
                        };
                    if lo > hi {
                        return Err(syntax("reversed range in class"));
                    }
                    ranges.push((lo, hi));
                }
            }
        }
    }
}

fn parse(pattern: &str) -> Result<Node, PrimitiveError> {
    let mut p = Parser {
        chars: pattern.chars().collect(),
        pos: 0,
    };
    let node = p.alt(0)?;
    if p.pos < p.chars.len() {
        return Err(syntax("unbalanced )"));
    }
    Ok(node)
}

#[derive(Debug, Clone)]
enum Inst {
    Char(char),
    Any,
    Class(usize),
    Split(usize, usize),
    Jmp(usize),
    Match,
}

struct Program {
    insts: Vec<Inst>,
    classes: Vec<(Vec<(char, char)>, bool)>,
}

impl Program {
    fn emit(&mut self, inst: Inst) -> usize {
        self.insts.push(inst);
        self.insts.len() - 1
    }

    fn patch(&mut self, at: usize, inst: Inst) {
        if let Some(slot) = self.insts.get_mut(at) {
            *slot = inst;
        }
    }

    fn compile(&mut self, node: Node) {
        match node {
            Node::Char(c) => {
                self.emit(Inst::Char(c));
            }
            Node::Any => {
                self.emit(Inst::Any);
            }
            Node::Class(ranges, negated) => {
                self.classes.push((ranges, negated));
                self.emit(Inst::Class(self.classes.len() - 1));
            }
            Node::Concat(parts) => parts.into_iter().for_each(|p| self.compile(p)),
            Node::Alt(branches) => {
                // split L1, next; L1: b1; jmp end; next: split L2, next2; ... last: bn; end:
                let mut jumps = Vec::new();
                let count = branches.len();
                for (i, b) in branches.into_iter().enumerate() {
                    if i + 1 < count {
                        let split = self.emit(Inst::Split(0, 0));
                        self.compile(b);
                        jumps.push(self.emit(Inst::Jmp(0)));
                        let next = self.insts.len();
                        self.patch(split, Inst::Split(split + 1, next));
                    } else {
                        self.compile(b);
                    }
                }
                let end = self.insts.len();
                for j in jumps {
                    self.patch(j, Inst::Jmp(end));
                }
            }
            Node::Star(inner) => {
                let split = self.emit(Inst::Split(0, 0));
                self.compile(*inner);
                self.emit(Inst::Jmp(split));
                let end = self.insts.len();
                self.patch(split, Inst::Split(split + 1, end));
            }
            Node::Plus(inner) => {
                let start = self.insts.len();
                self.compile(*inner);
                let split = self.emit(Inst::Split(start, 0));
                self.patch(split, Inst::Split(start, split + 1));
            }
            Node::Opt(inner) => {
                let split = self.emit(Inst::Split(0, 0));
                self.compile(*inner);
                let end = self.insts.len();
                self.patch(split, Inst::Split(split + 1, end));
            }
        }
    }
}

/// A set of program counters, de-duplicated within one step by a generation stamp.
struct Threads {
    pcs: Vec<usize>,
}

/// Adds `pc` and everything reachable from it by jumps and splits, without recursion.
fn add_thread(
    program: &Program,
    list: &mut Threads,
    marks: &mut [usize],
    stamp: usize,
    pc: usize,
    stack: &mut Vec<usize>,
) {
    stack.push(pc);
    while let Some(pc) = stack.pop() {
        let Some(mark) = marks.get_mut(pc) else {
            continue;
        };
        if *mark == stamp {
            continue;
        }
        *mark = stamp;
        match program.insts.get(pc) {
            Some(Inst::Jmp(to)) => stack.push(*to),
            Some(Inst::Split(a, b)) => {
                stack.push(*b);
                stack.push(*a);
            }
            Some(_) => list.pcs.push(pc),
            None => {}
        }
    }
}

fn class_contains(ranges: &[(char, char)], negated: bool, c: char) -> bool {
    ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != negated
}

fn pike_vm(program: &Program, text: &str) -> bool {
    let n = program.insts.len();
    // Stamps start at 1 so the zeroed marks mean "never added".
    let mut marks = vec![0usize; n];
    let mut stack = Vec::new();
    let mut current = Threads { pcs: Vec::new() };
    let mut next = Threads { pcs: Vec::new() };
    let mut stamp = 1usize;
    add_thread(program, &mut current, &mut marks, stamp, 0, &mut stack);
    for c in text.chars() {
        stamp += 1;
        next.pcs.clear();
        for &pc in &current.pcs {
            let advance = match program.insts.get(pc) {
                Some(Inst::Char(x)) => *x == c,
                Some(Inst::Any) => true,
                Some(Inst::Class(i)) => program
                    .classes
                    .get(*i)
                    .is_some_and(|(ranges, negated)| class_contains(ranges, *negated, c)),
                _ => false,
            };
            if advance {
                add_thread(program, &mut next, &mut marks, stamp, pc + 1, &mut stack);
            }
        }
        std::mem::swap(&mut current, &mut next);
        if current.pcs.is_empty() {
            return false;
        }
    }
    current
        .pcs
        .iter()
        .any(|&pc| matches!(program.insts.get(pc), Some(Inst::Match)))
}

/// `regex_match(pattern: str, text: str) -> bool`: Thompson NFA, Pike VM simulation.
pub fn regex_match(args: &[Value]) -> Result<Value, PrimitiveError> {
    let (pattern, text) = sizes(args)?;
    let node = parse(pattern)?;
    let mut program = Program {
        insts: Vec::new(),
        classes: Vec::new(),
    };
    program.compile(node);
    program.emit(Inst::Match);
    Ok(Value::Bool(pike_vm(&program, text)))
}

// ---- Oracle: tokeniser, token parser, memoised end-position sets. ----

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Lit(char),
    Dot,
    Set(Vec<(char, char)>, bool),
    Open,
    Close,
    Bar,
    Quant(char),
}

fn oracle_tokens(pattern: &str) -> Result<Vec<Tok>, PrimitiveError> {
    let err = |why: &str| invalid("pattern", why);
    let cs: Vec<char> = pattern.chars().collect();
    let escape = |i: usize| -> Result<char, PrimitiveError> {
        match cs.get(i) {
            Some(&c) if "\\.*+?|()[]^-".contains(c) => Ok(c),
            _ => Err(err("bad escape")),
        }
    };
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(&c) = cs.get(i) {
        i += 1;
        let tok = match c {
            '\\' => {
                i += 1;
                Tok::Lit(escape(i - 1)?)
            }
            '.' => Tok::Dot,
            '(' => Tok::Open,
            ')' => Tok::Close,
            '|' => Tok::Bar,
            '*' | '+' | '?' => Tok::Quant(c),
            ']' => return Err(err("stray ]")),
            '[' => {
                let negated = cs.get(i) == Some(&'^');
                if negated {
                    i += 1;
                }
                let mut set = Vec::new();
                loop {
                    let Some(&first) = cs.get(i) else {
                        return Err(err("unterminated class"));
                    };
                    i += 1;
                    if first == ']' {
                        if set.is_empty() {
                            return Err(err("empty class"));
                        }
                        break;
                    }
                    let lo = if first == '\\' {
                        i += 1;
                        escape(i - 1)?
                    } else {
                        first
                    };
                    let ranged =
                        cs.get(i) == Some(&'-') && cs.get(i + 1).is_some_and(|&x| x != ']');
                    let hi = if ranged {
                        let h = cs.get(i + 1).copied().unwrap_or(']');
                        i += 2;
                        if h == '\\' {
                            i += 1;
                            escape(i - 1)?
                        } else {
                            h
                        }
                    } else {
                        lo
                    };
                    if hi < lo {
                        return Err(err("bad range"));
                    }
                    set.push((lo, hi));
                }
                Tok::Set(set, negated)
            }
            other => Tok::Lit(other),
        };
        out.push(tok);
    }
    Ok(out)
}

#[derive(Debug)]
enum Tree {
    Lit(char),
    Dot,
    Set(Vec<(char, char)>, bool),
    Seq(Vec<usize>),
    Either(Vec<usize>),
    Repeat(usize, char),
}

struct TokParser {
    toks: Vec<Tok>,
    at: usize,
    arena: Vec<Tree>,
}

impl TokParser {
    fn add(&mut self, t: Tree) -> usize {
        self.arena.push(t);
        self.arena.len() - 1
    }

    fn either(&mut self, depth: usize) -> Result<usize, PrimitiveError> {
        let mut options = vec![self.seq(depth)?];
        while self.toks.get(self.at) == Some(&Tok::Bar) {
            self.at += 1;
            options.push(self.seq(depth)?);
        }
        Ok(self.add(Tree::Either(options)))
    }

    fn seq(&mut self, depth: usize) -> Result<usize, PrimitiveError> {
        let mut items = Vec::new();
        loop {
            let atom = match self.toks.get(self.at).cloned() {
                None | Some(Tok::Bar) | Some(Tok::Close) => break,
                Some(Tok::Quant(_)) => return Err(invalid("pattern", "dangling quantifier")),
                Some(Tok::Lit(c)) => self.add(Tree::Lit(c)),
                Some(Tok::Dot) => self.add(Tree::Dot),
                Some(Tok::Set(s, neg)) => self.add(Tree::Set(s, neg)),
                Some(Tok::Open) => {
                    if depth + 1 > MAX_NESTING {
                        return Err(invalid("pattern", "nesting"));
                    }
                    self.at += 1;
                    let inner = self.either(depth + 1)?;
                    if self.toks.get(self.at) != Some(&Tok::Close) {
                        return Err(invalid("pattern", "missing )"));
                    }
                    inner
                }
            };
            self.at += 1;
            let item = if let Some(Tok::Quant(q)) = self.toks.get(self.at).cloned() {
                self.at += 1;
                if matches!(self.toks.get(self.at), Some(Tok::Quant(_))) {
                    return Err(invalid("pattern", "double quantifier"));
                }
                self.add(Tree::Repeat(atom, q))
            } else {
                atom
            };
            items.push(item);
        }
        Ok(self.add(Tree::Seq(items)))
    }
}

struct Ends<'a> {
    arena: &'a [Tree],
    text: &'a [char],
    memo: HashMap<(usize, usize), BTreeSet<usize>>,
}

impl Ends<'_> {
    /// Every position at which node `id` can finish when started at `start`.
    fn of(&mut self, id: usize, start: usize) -> BTreeSet<usize> {
        if let Some(known) = self.memo.get(&(id, start)) {
            return known.clone();
        }
        let here = self.text.get(start).copied();
        let step = |ok: bool| -> BTreeSet<usize> {
            if ok {
                BTreeSet::from([start + 1])
            } else {
                BTreeSet::new()
            }
        };
        let result = match self.arena.get(id) {
            None => BTreeSet::new(),
            Some(Tree::Lit(c)) => step(here == Some(*c)),
            Some(Tree::Dot) => step(here.is_some()),
            Some(Tree::Set(set, negated)) => step(here.is_some_and(|h| {
                let inside = set.iter().any(|&(lo, hi)| (lo..=hi).contains(&h));
                inside ^ *negated
            })),
            Some(Tree::Seq(items)) => {
                let mut at = BTreeSet::from([start]);
                for &item in items {
                    let mut after = BTreeSet::new();
                    for p in at {
                        after.extend(self.of(item, p));
                    }
                    at = after;
                }
                at
            }
            Some(Tree::Either(options)) => {
                let mut all = BTreeSet::new();
                for &o in options {
                    all.extend(self.of(o, start));
                }
                all
            }
            Some(Tree::Repeat(inner, q)) => {
                let inner = *inner;
                let once = self.of(inner, start);
                match q {
                    '?' => {
                        let mut r = once;
                        r.insert(start);
                        r
                    }
                    _ => {
                        // Closure under "one more iteration", from the one-iteration ends for
                        // `+`, from the start itself for `*`.
                        let mut reached = once.clone();
                        if *q == '*' {
                            reached.insert(start);
                        }
                        let mut frontier: Vec<usize> = reached.iter().copied().collect();
                        while let Some(p) = frontier.pop() {
                            for e in self.of(inner, p) {
                                if reached.insert(e) {
                                    frontier.push(e);
                                }
                            }
                        }
                        reached
                    }
                }
            }
        };
        self.memo.insert((id, start), result.clone());
        result
    }
}

/// Oracle for `regex_match`: tokenise, parse tokens to a tree, and ask whether the text's length
/// is among the memoised end positions of the root from 0.
pub fn regex_match_oracle(args: &[Value]) -> Result<Value, PrimitiveError> {
    let (pattern, text) = sizes(args)?;
    let mut p = TokParser {
        toks: oracle_tokens(pattern)?,
        at: 0,
        arena: Vec::new(),
    };
    let root = p.either(0)?;
    if p.at != p.toks.len() {
        return Err(invalid("pattern", "unmatched )"));
    }
    let chars: Vec<char> = text.chars().collect();
    let mut ends = Ends {
        arena: &p.arena,
        text: &chars,
        memo: HashMap::new(),
    };
    Ok(Value::Bool(ends.of(root, 0).contains(&chars.len())))
}

// ---- Generator ----

#[derive(Debug, Clone)]
enum Gen {
    Lit(char),
    Dot,
    Class(&'static str, &'static [char]),
    Cat(Vec<Gen>),
    Alt(Vec<Gen>),
    Rep(Box<Gen>, char),
}

const LITERALS: [char; 7] = ['a', 'b', 'c', 'a', 'é', '.', '*'];
const CLASSES: [(&str, &[char]); 5] = [
    ("[a-b]", &['a', 'b']),
    ("[^a]", &['b', 'c', 'é']),
    ("[ac]", &['a', 'c']),
    ("[\\.-]", &['.', '-']),
    ("[a-c]", &['a', 'b', 'c']),
];
const TEXT_CHARS: [char; 6] = ['a', 'b', 'c', '.', '*', 'é'];

fn pick<T: Copy>(rng: &mut Rng, items: &[T], fallback: T) -> T {
    rng.choose(items).copied().unwrap_or(fallback)
}

fn gen_tree(rng: &mut Rng, depth: usize) -> Gen {
    if depth >= 4 || rng.below(3) == 0 {
        return match rng.below(6) {
            0 => Gen::Dot,
            1 => {
                let (src, members) = pick(rng, &CLASSES, ("[a]", &['a']));
                Gen::Class(src, members)
            }
            _ => Gen::Lit(pick(rng, &LITERALS, 'a')),
        };
    }
    match rng.below(3) {
        0 => Gen::Cat(
            (0..rng.below(4))
                .map(|_| gen_tree(rng, depth + 1))
                .collect(),
        ),
        1 => Gen::Alt(
            (0..rng.range_i64(2, 3))
                .map(|_| gen_tree(rng, depth + 1))
                .collect(),
        ),
        _ => Gen::Rep(
            Box::new(gen_tree(rng, depth + 1)),
            pick(rng, &['*', '+', '?'], '*'),
        ),
    }
}

fn render(g: &Gen) -> String {
    match g {
        Gen::Lit(c) if META.contains(c) => format!("\\{c}"),
        Gen::Lit(c) => c.to_string(),
        Gen::Dot => ".".into(),
        Gen::Class(src, _) => (*src).to_owned(),
        Gen::Cat(parts) => parts
            .iter()
            .map(|p| match p {
                Gen::Alt(_) => format!("({})", render(p)),
                _ => render(p),
            })
            .collect(),
        Gen::Alt(options) => options
            .iter()
            .map(|o| match o {
                Gen::Alt(_) => format!("({})", render(o)),
                _ => render(o),
            })
            .collect::<Vec<_>>()
            .join("|"),
        Gen::Rep(inner, q) => match **inner {
            Gen::Lit(_) | Gen::Dot | Gen::Class(..) => format!("{}{q}", render(inner)),
            _ => format!("({}){q}", render(inner)),
        },
    }
}

fn sample(g: &Gen, rng: &mut Rng, out: &mut String) {
    match g {
        Gen::Lit(c) => out.push(*c),
        Gen::Dot => out.push(pick(rng, &TEXT_CHARS, 'a')),
        Gen::Class(_, members) => out.push(pick(rng, members, 'a')),
        Gen::Cat(parts) => parts.iter().for_each(|p| sample(p, rng, out)),
        Gen::Alt(options) => {
            if let Some(o) = rng.choose(options) {
                sample(o, rng, out);
            }
        }
        Gen::Rep(inner, q) => {
            let (lo, hi) = match q {
                '+' => (1, 3),
                '?' => (0, 1),
                _ => (0, 3),
            };
            for _ in 0..rng.range_i64(lo, hi) {
                sample(inner, rng, out);
            }
        }
    }
}

/// Generator for `regex_match`: random patterns over a small alphabet (with escaped
/// metacharacters, classes, `.`, nested quantifiers and empty branches), texts sampled from the
/// pattern (so matches are common) or perturbed by one character or random; one pattern in eight
/// is corrupted by inserting or deleting a character (so both parsers must agree on what is a
/// syntax error); the pathological `(a*)*b` family now and then.
pub fn regex_match_generate(rng: &mut Rng) -> Vec<Value> {
    if rng.below(25) == 0 {
        let k = rng.below(25) as usize;
        let text: String = "a".repeat(k) + if rng.coin() { "b" } else { "" };
        let pattern = pick(rng, &["(a*)*b", "(a|a)*b", "(a+)+", "(a?)*a*b?"], "(a*)*b");
        return vec![Value::str(pattern), Value::str(text)];
    }
    let tree = gen_tree(rng, 0);
    let mut pattern: Vec<char> = render(&tree).chars().collect();
    if rng.below(8) == 0 {
        let at = rng.below(pattern.len() as u64 + 1) as usize;
        if rng.coin() && at < pattern.len() {
            pattern.remove(at);
        } else {
            let junk = pick(
                rng,
                &['(', ')', '[', ']', '*', '+', '?', '|', '\\', '-', '^'],
                '(',
            );
            pattern.insert(at.min(pattern.len()), junk);
        }
    }
    let mut text = String::new();
    match rng.below(3) {
        0 => {
            for _ in 0..rng.below(8) {
                text.push(pick(rng, &TEXT_CHARS, 'a'));
            }
        }
        _ => {
            sample(&tree, rng, &mut text);
            if rng.below(3) == 0 {
                let mut cs: Vec<char> = text.chars().collect();
                let at = rng.below(cs.len() as u64 + 1) as usize;
                if rng.coin() && at < cs.len() {
                    cs.remove(at);
                } else {
                    cs.insert(at.min(cs.len()), pick(rng, &TEXT_CHARS, 'a'));
                }
                text = cs.into_iter().collect();
            }
        }
    }
    vec![
        Value::str(pattern.into_iter().collect::<String>()),
        Value::str(text),
    ]
}
