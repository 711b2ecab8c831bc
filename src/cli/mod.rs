//! Command-line parsing and dispatch. Exit codes are decided here only: 0 success, 1 a check
//! failed, 2 usage or I/O error.
//!
//! Subcommands arrive with the issues that build them (`serve`, `simulate`, `status`, `query`,
//! `export`, `import`, `verify`, `retention`, `config check`); until then the binary only
//! describes itself.

use std::process::ExitCode;

use clap::Parser;

/// Monitor for the rate-limit buckets (token buckets) of BACEN's DICT, the PIX key directory.
#[derive(Parser, Debug)]
#[command(name = "dictmon", version, about, arg_required_else_help = true)]
struct Cli {}

/// Parses the command line and runs it.
pub fn run() -> ExitCode {
    match Cli::try_parse() {
        Ok(Cli {}) => ExitCode::SUCCESS,
        Err(e) => {
            // Help and version are successes; anything else is a usage error (exit 2).
            let _ = e.print();
            if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            }
        }
    }
}
