//! One module per command.

pub mod bench;
pub mod bench_fact_loop;
pub mod bench_mechanisms;
pub mod bench_recurring;
pub mod chat;
pub mod config;
pub mod demo;
pub mod gate;
pub mod job;
pub mod learn;
pub mod learned;
pub mod ledger;
pub mod memory;
pub mod model;
pub mod primitives;
pub mod progress;
pub mod prove;
pub mod run;
pub mod train_head;

/// How a command reports.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    /// JSON instead of text.
    pub json: bool,
}

impl Output {
    /// Prints a JSON value (pretty) to stdout.
    pub fn print_json(&self, value: &serde_json::Value) {
        println!(
            "{}",
            serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
        );
    }
}
