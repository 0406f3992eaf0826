//! Placeholder: filled in by the ledger append benchmark.
fn main() {}
