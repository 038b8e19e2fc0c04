//! Integration tests of the earmark binary.

fn main() {}
