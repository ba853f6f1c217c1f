//! `cargo bench --bench endpoints`: named endpoints (`connbench-bench.toml`, or the built-in
//! target) measured through connbench's library in interleaved rounds, compared with the first
//! endpoint and with their previous run. Without `--bench` (`cargo test --all-targets`) a
//! smoke run. Everything is in `connbench::bench`; the README section "Benchmarking endpoints
//! with cargo bench" shows a run.

fn main() {
    std::process::exit(connbench::bench::main());
}
