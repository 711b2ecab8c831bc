//! The `dictmon` binary: parses arguments and dispatches to `cli`; nothing else.

mod cli;

fn main() -> std::process::ExitCode {
    cli::run()
}
