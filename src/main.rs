//! The `connbench` binary: parse, run, map errors to exit codes. Everything else is the library.

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    let cli = connbench::cli::parse();
    match connbench::app::run(cli, argv) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("connbench: error: {e}");
            std::process::exit(e.exit_code());
        }
    }
}
