//! How the demo shows what happened: a table per pass, the totals side by side, the kernel
//! tour, the ledger check — as text for a person or as one JSON object.
//!
//! Owns layout and field names only; it computes nothing it reports (totals come from
//! `passes::Totals`, verdicts from the kernel and the workload's checks).

use serde_json::{Value as Json, json};

use super::kernel_tour::Tour;
use super::passes::{Row, Totals};

/// What the ledger check found.
#[derive(Debug)]
pub struct LedgerReport {
    /// Where the ledger lives.
    pub path: String,
    /// Whether the whole chain verified.
    pub ok: bool,
    /// Entries in the ledger.
    pub entries: u64,
    /// Entries this demo run added.
    pub added: u64,
    /// The head, `seq:hash`.
    pub head: Option<String>,
    /// Whether changing one byte of an exported copy was detected.
    pub tamper_caught: bool,
}

/// `text` on one line, at most `width` characters (an ellipsis marks a cut).
fn clip(text: &str, width: usize) -> String {
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= width {
        return flat;
    }
    let mut cut: String = flat.chars().take(width.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

fn mark(correct: Option<bool>) -> &'static str {
    match correct {
        Some(true) => "✓",
        Some(false) => "✗",
        None => "—",
    }
}

fn row_json(r: &Row) -> Json {
    json!({
        "request": r.request.text,
        "family": r.request.family,
        "primitive_phrasing": r.request.primitive_phrasing,
        "route": r.route,
        "by_primitive": r.by_primitive,
        "lane_reason": r.lane_reason,
        "verification": r.verification,
        "level": r.level,
        "model_tokens": r.model_tokens,
        "latency_us": r.micros,
        "latency_ms": r.micros as f64 / 1000.0,
        "answer": r.answer,
        "withheld": r.withheld,
        "ledger_seq": r.ledger_seq,
        "expected": r.expected.as_ref().map(ToString::to_string),
        "correct": r.correct,
    })
}

fn totals_json(t: &Totals) -> Json {
    json!({
        "requests": t.requests,
        "checkable": t.checkable,
        "correct": t.correct,
        "model_tokens": t.model_tokens,
        "total_latency_us": t.total_us,
        "total_latency_ms": t.total_us as f64 / 1000.0,
        "median_latency_ms": t.median_ms,
        "answered_by_primitives": t.by_primitive,
    })
}

/// A pass as JSON: its rows and totals.
pub fn pass_json(rows: &[Row]) -> Json {
    json!({
        "rows": rows.iter().map(row_json).collect::<Vec<_>>(),
        "totals": totals_json(&Totals::of(rows)),
    })
}

/// The tour as JSON.
pub fn tour_json(tour: &Tour) -> Json {
    json!({
        "runs": tour.rows.iter().map(|r| json!({
            "scenario": r.scenario, "outcome": r.outcome, "verification": r.verification,
            "ledger_entries": r.entries, "ledger_verified": r.trace_ok,
            "as_expected": r.expected, "micros": r.micros,
        })).collect::<Vec<_>>(),
        "admission_refusals": tour.refusals.iter()
            .map(|(case, why)| json!({ "case": case, "reason": why }))
            .collect::<Vec<_>>(),
        "ok": tour.as_expected(),
    })
}

/// The ledger check as JSON.
pub fn ledger_json(l: &LedgerReport) -> Json {
    json!({
        "path": l.path, "ok": l.ok, "entries": l.entries, "entries_added": l.added,
        "head": l.head,
    })
}

/// Prints the tour compactly: one line per scenario, one per refused plan.
pub fn print_tour(tour: &Tour) {
    println!("the kernel on its own (no model):");
    for r in &tour.rows {
        let ok = if r.expected && r.trace_ok {
            "✓"
        } else {
            "✗"
        };
        println!(
            "  {ok} {:<44} {:<10} {}",
            clip(&r.scenario, 44),
            r.verification,
            clip(&r.outcome, 60)
        );
    }
    let refused: Vec<String> = tour
        .refusals
        .iter()
        .map(|(case, why)| {
            if why.is_empty() {
                format!("{case} (NOT refused)")
            } else {
                (*case).to_owned()
            }
        })
        .collect();
    println!("  plans refused at admission: {}", refused.join(", "));
}

/// Prints the header of a pass table.
pub fn print_pass_header(title: &str) {
    println!("\n{title}");
    println!(
        "  {:>2}  {:<46} {:<20} {:<9} {:>6} {:>8}  ok  answer",
        "#", "request", "route", "verified", "tokens", "ms"
    );
}

/// Prints one row of a pass table (as soon as it is done: a newcomer sees progress).
pub fn print_row(index: usize, r: &Row) {
    let answer = match (&r.answer, &r.withheld) {
        (Some(a), _) => clip(a, 48),
        (None, Some(why)) => format!("withheld ({})", clip(why, 40)),
        (None, None) => "withheld".to_owned(),
    };
    let expected = match (&r.expected, r.correct) {
        (Some(e), Some(false)) => format!("  [expected {e}]"),
        _ => String::new(),
    };
    println!(
        "  {:>2}  {:<46} {:<20} {:<9} {:>6} {:>8.1}  {}   {answer}{expected}",
        index + 1,
        clip(r.request.text, 46),
        r.route,
        r.verification.as_deref().unwrap_or("—"),
        r.model_tokens,
        r.micros as f64 / 1000.0,
        mark(r.correct),
    );
}

/// Prints the two passes' totals side by side.
pub fn print_totals(kernel: &Totals, bare: &Totals) {
    println!("\n  {:<28} {:>14} {:>14}", "totals", "kernel", "bare model");
    let pair = |a: usize, b: usize| format!("{a}/{b}");
    println!(
        "  {:<28} {:>14} {:>14}",
        "correct / checkable",
        pair(kernel.correct, kernel.checkable),
        pair(bare.correct, bare.checkable)
    );
    println!(
        "  {:<28} {:>14} {:>14}",
        "model tokens", kernel.model_tokens, bare.model_tokens
    );
    println!(
        "  {:<28} {:>14.1} {:>14.1}",
        "total latency ms",
        kernel.total_us as f64 / 1000.0,
        bare.total_us as f64 / 1000.0
    );
    println!(
        "  {:<28} {:>14.1} {:>14.1}",
        "median latency ms", kernel.median_ms, bare.median_ms
    );
    println!(
        "  {:<28} {:>14} {:>14}",
        "answered by primitives",
        pair(kernel.by_primitive, kernel.requests),
        pair(bare.by_primitive, bare.requests)
    );
}

/// Prints the ledger check.
pub fn print_ledger(l: &LedgerReport) {
    println!(
        "\nledger {}: {} entries ({} added by this demo) at {}",
        if l.ok { "verified" } else { "BROKEN" },
        l.entries,
        l.added,
        l.path
    );
    println!("  head {}", l.head.as_deref().unwrap_or("(empty)"));
    println!(
        "  one byte of an exported copy changed → {}",
        if l.tamper_caught {
            "detected"
        } else {
            "NOT detected"
        }
    );
}

#[cfg(test)]
mod tests {
    use super::clip;

    #[test]
    fn clip_keeps_short_text_and_marks_a_cut() {
        assert_eq!(clip("a\nb", 10), "a b");
        assert_eq!(clip("abcdef", 4), "abc…");
        assert_eq!(clip("ééééé", 5), "ééééé");
    }
}
