//! The side-by-side benchmark (being written).

fn main() {}
