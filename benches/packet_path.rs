//! Criterion benches for the per-packet path.
fn main() {}
