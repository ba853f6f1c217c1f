//! Placeholder replaced by the http1 codec benches.
fn main() {}
