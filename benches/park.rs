//! Park/retrieve operations benchmark (placeholder until written).
fn main() {}
