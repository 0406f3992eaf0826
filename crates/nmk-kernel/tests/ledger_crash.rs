//! Placeholder: filled in by the ledger crash test.
fn main() {}
