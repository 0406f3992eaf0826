//! The `nmk` command line.
fn main() {}
