//! The `rtpark` command.

fn main() {}
