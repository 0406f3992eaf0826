//! `nmk chat`: an interactive conversation through the kernel, one line of input per message.
//!
//! Every message is routed by the kernel alone (memory consulted, router, ledger): a proven
//! primitive that owns it answers at once with zero model tokens. That holds even in the middle
//! of a conversation, because a primitive's answer depends on the message only (the gcd of 12
//! and 18 is 6 whatever was said before), unlike `nmk serve`, whose requests carry their own
//! history and go to the model when they have context. Any other message goes to the model
//! with the whole history rendered through the chat template; the text the per-token gate
//! accepts is streamed as it is decoded, and the commit trap then judges the whole answer: a
//! withheld answer is announced as such (the streamed text was not released) and kept out of
//! the history, with its question. History is trimmed, oldest exchange first, to fit the
//! model's context (or `--max-context`) with `--max-tokens` to spare; the system message stays.
//!
//! Output: in text mode everything the user reads goes to stdout (prompt `you> ` only when
//! stdin is a terminal, the answer, then one status line `[route … · verification … · N tokens
//! · T ms · ledger #S hash]`); the model's fetch progress and errors go to stderr. With
//! `--json` stdout holds JSON Lines only, one object per event with a `kind` (`answer`,
//! `history`, `reset`, `help`, `error`), no streamed text and no prompt; notices go to stderr.
//!
//! Ctrl-C during a generation cuts it at the next token: the cut answer is neither judged nor
//! kept (its route decision stays ledgered). Ctrl-C anywhere else ends the process (status 130).
//! This module owns the conversation loop and its presentation; every decision is the kernel's.

mod history;
mod interrupt;

use std::io::{BufRead, IsTerminal, Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use clap::Args;
use nmk_kernel::router::{Answered, MODEL_LANE, Outcome, Routed};
use nmk_neural::engine::SamplingParams;
use nmk_neural::text::PromptMode;
use serde_json::json;

use super::Output;
use super::model::resolve_with_progress;
use super::run::ModelArgs;
use crate::account::{Account, CANCELLED};
use crate::exit::Code;
use crate::model_lane::{Cancelled, LaneRequest, answer_streaming};
use crate::proposer::NeuralProposer;
use crate::route_lane::Front;
use history::{Exchange, History};
use interrupt::Interrupt;

/// Longest input line accepted, in bytes (longer lines are refused whole, not cut).
const MAX_LINE_BYTES: usize = 64 * 1024;

/// Hex digits of a ledger hash shown in a status line.
const SHORT_HASH: usize = 16;

const HELP: &str = "commands: /help (this), /reset (forget the conversation, keep --system), \
/history (print the conversation), /quit (or end of input)";

/// Options of `nmk chat`.
#[derive(Debug, Args)]
pub struct ChatArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// A system message put before the conversation (kept through /reset and trimming).
    #[arg(long, value_name = "TEXT")]
    system: Option<String>,
    /// Most tokens the model may generate per answer.
    #[arg(long, default_value_t = 256)]
    max_tokens: usize,
    /// Sampling temperature (0 = greedy).
    #[arg(long, default_value_t = 0.0)]
    temp: f32,
    /// Seed of the sampler (each answer uses it).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Tokens of context the conversation may fill, prompt plus answer (default and ceiling:
    /// the model's context); older exchanges are dropped to stay inside it.
    #[arg(long, value_name = "TOKENS")]
    max_context: Option<usize>,
}

/// Runs `nmk chat` until `/quit` or the end of input.
pub fn run(home: &Path, out: &Output, args: &ChatArgs) -> Result<Code> {
    if !args.temp.is_finite() || args.temp < 0.0 {
        eprintln!("error: --temp must be a finite number >= 0");
        return Ok(Code::Usage);
    }
    let front = Front::open(home)?;
    for (entry, why) in &front.refused {
        tracing::warn!("learned primitive {entry} not routed: {why}");
    }
    let path = resolve_with_progress(&args.model.model, out.json)?;
    let proposer = NeuralProposer::load(&args.model.model, &path, args.model.threads)?;
    let model_context = proposer.model().model().config().n_ctx_train;
    let context = args
        .max_context
        .map_or(model_context, |c| c.min(model_context));
    if args.max_tokens == 0 || args.max_tokens >= context {
        eprintln!(
            "error: --max-tokens must be between 1 and {} (the context is {context} tokens)",
            context.saturating_sub(1)
        );
        return Ok(Code::Usage);
    }
    let mut chat = Chat {
        out: *out,
        args,
        front,
        proposer,
        history: History::new(args.system.clone()),
        context,
        interrupt: Interrupt::install(),
    };
    let prompt = std::io::stdin().is_terminal() && !out.json;
    if prompt {
        println!("nmk chat with {} — {HELP}", args.model.model);
    }
    let mut input = std::io::stdin().lock();
    loop {
        if prompt {
            print!("you> ");
            std::io::stdout().flush()?;
        }
        let line = match read_line(&mut input)? {
            Line::End => break,
            Line::Text(line) => line,
            Line::Refused(why) => {
                chat.error("", &why);
                continue;
            }
        };
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        match line {
            "/quit" | "/exit" => break,
            "/help" => chat.help(),
            "/reset" => chat.reset(),
            "/history" => chat.show_history(),
            _ if line.starts_with('/') => {
                chat.error(line, "unknown command; /help lists them");
            }
            _ => chat.answer(line)?,
        }
    }
    Ok(Code::Success)
}

/// One input line, or why it was not taken.
enum Line {
    Text(String),
    Refused(String),
    End,
}

/// Reads one line of at most [`MAX_LINE_BYTES`]; a longer one is read to its end and refused.
fn read_line(input: &mut impl BufRead) -> std::io::Result<Line> {
    let limit = MAX_LINE_BYTES as u64 + 1;
    let mut buf = Vec::new();
    if input.by_ref().take(limit).read_until(b'\n', &mut buf)? == 0 {
        return Ok(Line::End);
    }
    let ended = buf.last() == Some(&b'\n');
    if ended {
        buf.pop();
    }
    if buf.len() > MAX_LINE_BYTES {
        if !ended {
            skip_rest_of_line(input)?;
        }
        return Ok(Line::Refused(format!(
            "line longer than {MAX_LINE_BYTES} bytes refused"
        )));
    }
    Ok(match String::from_utf8(buf) {
        Ok(s) => Line::Text(s),
        Err(_) => Line::Refused("line is not UTF-8; refused".into()),
    })
}

fn skip_rest_of_line(input: &mut impl BufRead) -> std::io::Result<()> {
    loop {
        let (consumed, ended) = {
            let chunk = input.fill_buf()?;
            match chunk.iter().position(|&b| b == b'\n') {
                Some(i) => (i + 1, true),
                None => (chunk.len(), chunk.is_empty()),
            }
        };
        input.consume(consumed);
        if ended {
            return Ok(());
        }
    }
}

/// The state of one conversation.
struct Chat<'a> {
    out: Output,
    args: &'a ChatArgs,
    front: Front,
    proposer: NeuralProposer,
    history: History,
    context: usize,
    interrupt: Arc<Interrupt>,
}

/// What the kernel did with one message, for the status line and the JSON line.
struct Answer<'r> {
    request: &'r str,
    account: Account,
    prompt_tokens: usize,
    history_dropped: usize,
    t0: Instant,
}

impl Chat<'_> {
    /// Routes `request` through the kernel and answers it by the primitive that owns it or by
    /// the model lane.
    fn answer(&mut self, request: &str) -> Result<()> {
        let t0 = Instant::now();
        let routed = self.front.route(request, false)?;
        match &routed.outcome {
            Outcome::Answered(a) => {
                self.primitive(request, &routed, a, t0);
                Ok(())
            }
            Outcome::ModelLane { reason } => self.model(request, reason, t0),
        }
    }

    fn primitive(&mut self, request: &str, routed: &Routed, a: &Answered, t0: Instant) {
        if !self.out.json {
            println!("{}", a.text);
        }
        self.history.push(Exchange {
            user: request.to_owned(),
            assistant: a.text.clone(),
            route: a.route.clone(),
        });
        self.report(&Answer {
            request,
            account: Account::primitive(routed, a),
            prompt_tokens: 0,
            history_dropped: 0,
            t0,
        });
    }

    fn model(&mut self, request: &str, route_reason: &str, t0: Instant) -> Result<()> {
        let budget = self.context - self.args.max_tokens;
        let tokenizer = self.proposer.model().tokenizer();
        let fitted = match self
            .history
            .fit(request, budget, |m| tokenizer.encode_chat(m, true))
        {
            Ok(f) => f,
            Err(e) => {
                self.error(request, &e.to_string());
                return Ok(());
            }
        };
        if fitted.dropped > 0 {
            self.notice(&format!(
                "[history: dropped the {} oldest exchange(s) to fit {} prompt tokens + {} new in the context of {}]",
                fitted.dropped,
                fitted.ids.len(),
                self.args.max_tokens,
                self.context
            ));
        }
        let prompt_tokens = fitted.ids.len();
        let gate = crate::token_gate::build_gate(&[], false, None)?;
        let json = self.out.json;
        let mut streamed = false;
        let mut stream = |piece: &str| {
            if !json {
                print!("{piece}");
                // A closed stdout ends the process when the status line is printed.
                let _ = std::io::stdout().flush();
                streamed = true;
            }
        };
        let interrupt = Arc::clone(&self.interrupt);
        interrupt.start_generation();
        let lane = answer_streaming(
            &self.front.ledger,
            &self.proposer,
            &LaneRequest {
                prompt: request,
                mode: PromptMode::Chat,
                sampling: SamplingParams {
                    temperature: self.args.temp,
                    ..SamplingParams::greedy()
                },
                seed: self.args.seed,
                max_tokens: self.args.max_tokens,
                forbid_ids: &[],
                shape_json: false,
            },
            gate,
            None,
            Some(fitted.ids),
            &mut stream,
            &|| interrupt.cut_requested(),
        );
        interrupt.end_generation();
        if streamed {
            println!();
        }
        let lane = match lane {
            Ok(lane) => lane,
            Err(e) if e.downcast_ref::<Cancelled>().is_some() => {
                self.report(&Answer {
                    request,
                    account: Account::cut(route_reason, format!("Ctrl-C: {e}; not kept")),
                    prompt_tokens,
                    history_dropped: fitted.dropped,
                    t0,
                });
                return Ok(());
            }
            Err(e) => return Err(e.context("the model lane failed")),
        };
        let account = Account::model_lane(route_reason, &lane);
        if !account.committed && !json {
            println!(
                "[withheld: the text above was NOT released by the commit trap ({} {}); it is not kept in the history]",
                account.action, account.reason
            );
        }
        if let Some(text) = &account.released {
            self.history.push(Exchange {
                user: request.to_owned(),
                assistant: text.clone(),
                route: MODEL_LANE.to_owned(),
            });
        }
        let answer = Answer {
            request,
            account,
            prompt_tokens,
            history_dropped: fitted.dropped,
            t0,
        };
        self.report(&answer);
        Ok(())
    }

    /// The status line (text) or the JSON line of one answer.
    fn report(&self, a: &Answer<'_>) {
        let latency_ms = a.t0.elapsed().as_secs_f64() * 1e3;
        let acc = &a.account;
        if self.out.json {
            emit(&acc.json_with(json!({
                "kind": "answer",
                "request": a.request,
                "text": acc.released,
                "prompt_tokens": a.prompt_tokens,
                "latency_ms": latency_ms,
                "history_dropped": a.history_dropped,
                // Counted after this answer was kept (or not).
                "history_exchanges": self.history.exchanges().len(),
            })));
            return;
        }
        let ledger = acc.ledger.as_ref().map_or_else(
            || "no commit entry".to_owned(),
            |(seq, hash)| {
                format!(
                    "ledger #{seq} {}…",
                    hash.get(..SHORT_HASH).unwrap_or(hash.as_str())
                )
            },
        );
        let outcome = if acc.committed {
            String::new()
        } else if acc.action == CANCELLED {
            format!(" · cut by {}", acc.reason)
        } else {
            format!(" · withheld: {} {}", acc.action, acc.reason)
        };
        let tokens = acc.tokens.map_or_else(|| "?".to_owned(), |t| t.to_string());
        println!(
            "[route {} · verification {} ({}) · {tokens} tokens · {latency_ms:.0} ms · {ledger}{outcome}]",
            acc.route, acc.verification, acc.level
        );
    }

    fn help(&self) {
        if self.out.json {
            emit(&json!({ "kind": "help", "text": HELP }));
        } else {
            println!("{HELP}");
        }
    }

    fn reset(&mut self) {
        let dropped = self.history.reset();
        if self.out.json {
            emit(&json!({ "kind": "reset", "dropped": dropped }));
        } else {
            println!("[history cleared: {dropped} exchange(s) forgotten]");
        }
    }

    fn show_history(&self) {
        let h = &self.history;
        if self.out.json {
            emit(&json!({
                "kind": "history",
                "system": h.system(),
                "exchanges": h.exchanges().iter().map(|e| json!({
                    "user": e.user, "assistant": e.assistant, "route": e.route,
                })).collect::<Vec<_>>(),
            }));
            return;
        }
        if let Some(s) = h.system() {
            println!("system: {s}");
        }
        if h.exchanges().is_empty() {
            println!("[history is empty]");
        }
        for e in h.exchanges() {
            println!("you: {}", e.user);
            println!("nmk ({}): {}", e.route, e.assistant);
        }
    }

    /// A message that was not answered, and why.
    fn error(&self, request: &str, why: &str) {
        if self.out.json {
            emit(&json!({ "kind": "error", "request": request, "error": why }));
        } else {
            println!("[not answered: {why}]");
        }
    }

    /// A remark about the session: stdout in text mode, stderr with `--json`.
    fn notice(&self, text: &str) {
        if self.out.json {
            eprintln!("{text}");
        } else {
            println!("{text}");
        }
    }
}

/// One JSON Lines record on stdout.
fn emit(value: &serde_json::Value) {
    println!("{value}");
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn lines(input: &[u8]) -> Vec<String> {
        let mut reader = std::io::BufReader::with_capacity(16, input);
        let mut got = Vec::new();
        loop {
            match read_line(&mut reader).unwrap() {
                Line::End => return got,
                Line::Text(s) => got.push(format!("text:{s}")),
                Line::Refused(_) => got.push("refused".into()),
            }
        }
    }

    #[test]
    fn an_overlong_line_is_refused_whole_and_the_next_one_is_read() {
        let mut input = vec![b'x'; MAX_LINE_BYTES + 10];
        input.extend_from_slice(b"\nnext\n");
        assert_eq!(lines(&input), ["refused", "text:next"]);
        // Contrast: a line of exactly the limit is taken.
        let mut input = vec![b'y'; MAX_LINE_BYTES];
        input.extend_from_slice(b"\nnext");
        let got = lines(&input);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].len(), "text:".len() + MAX_LINE_BYTES);
        assert_eq!(got[1], "text:next");
        assert_eq!(lines(b"\xff\xfe\nok\n"), ["refused", "text:ok"]);
    }
}
