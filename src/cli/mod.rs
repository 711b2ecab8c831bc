//! Command-line parsing and dispatch, one file per subcommand. Exit codes are decided here
//! only: 0 success, 1 a check failed (verify found corruption), 2 usage or I/O error.
//! Errors carry their context (file, offset, what to do) and are printed once, here.

mod config_check;
mod data_args;
mod debug;
mod duration;
mod export;
mod query;
mod retention;
mod serve;
mod simulate;
mod source_args;
mod status;
mod verify;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Monitor for the rate-limit buckets (token buckets) of BACEN's DICT, the PIX key directory.
///
/// Start with `dictmon serve` (built-in simulator, HTTP on 127.0.0.1:9464). Data lives in a data
/// directory (default ./dictmon-data): one segment file per month under segments/, and
/// catalog.redb.
#[derive(Parser, Debug)]
#[command(name = "dictmon", version, about, arg_required_else_help = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    Serve(serve::Args),
    Simulate(simulate::Args),
    Status(status::Args),
    Query(query::Args),
    Export(export::ExportArgs),
    Import(export::ImportArgs),
    Verify(verify::Args),
    Retention(retention::Args),
    Config(config_check::Args),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell), e.g.
    /// `dictmon completions bash > ~/.local/share/bash-completion/completions/dictmon`. The
    /// Debian package installs them.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    #[command(hide = true)]
    Debug(debug::Args),
}

/// The whole command line, for generated documentation (man pages, completions).
pub fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}

/// What a command concluded, when it ran to the end.
pub enum Outcome {
    /// Exit 0.
    Success,
    /// Exit 1: the check the command makes failed.
    CheckFailed,
}

/// Parses the command line and runs it.
/// A command whose output goes to a pipe its reader closed (`dictmon status | head`) stops
/// quietly with status 0, as `head`'s writer would expect, instead of panicking in `println!`
/// (Rust ignores SIGPIPE, so a closed pipe is a write error). `serve` keeps the default: it
/// writes no standard output.
fn quiet_on_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let text = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("");
        if text.contains("Broken pipe") {
            std::process::exit(0);
        }
        default(info);
    }));
}

pub fn run() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // Help and version are successes; anything else is a usage error.
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    if !matches!(cli.command, Command::Serve(_)) {
        quiet_on_broken_pipe();
    }
    let result = match cli.command {
        Command::Serve(args) => serve::run(&args),
        Command::Simulate(args) => simulate::run(&args),
        Command::Status(args) => status::run(&args),
        Command::Query(args) => query::run(&args),
        Command::Export(args) => export::export(&args),
        Command::Import(args) => export::import_cmd(&args),
        Command::Config(args) => Ok(config_check::run(&args)),
        Command::Verify(args) => verify::run(&args),
        Command::Retention(args) => retention::run(&args),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut command(), "dictmon", &mut std::io::stdout());
            Ok(Outcome::Success)
        }
        Command::Debug(args) => debug::run(&args),
    };
    match result {
        Ok(Outcome::Success) => ExitCode::SUCCESS,
        Ok(Outcome::CheckFailed) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Logs to stderr; `RUST_LOG` overrides `level`.
pub fn init_logging(level: &str) {
    init_logging_and_traces(level, None);
}

/// Logs to stderr (`RUST_LOG` overrides `level`) and, with `traces`, hands dictmon's spans to
/// the OTLP pipeline, whose layer filters by itself: the log level does not silence traces.
/// Log lines stay as they were without traces: the log layer sees events, not spans.
pub fn init_logging_and_traces(level: &str, traces: Option<opentelemetry_sdk::trace::Tracer>) {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::filter::{FilterExt as _, filter_fn};
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let logs = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        // (A closure, not the method: the method's `Metadata` lifetime is not `'static`.)
        .with_filter(filter.and(filter_fn(
            #[expect(clippy::redundant_closure_for_method_calls, reason = "see above")]
            |m| m.is_event(),
        )));
    let _ = tracing_subscriber::registry()
        .with(traces.map(dictmon::trace::layer))
        .with(logs)
        .try_init();
}

/// The default data directory.
pub const DEFAULT_DATA_DIR: &str = "dictmon-data";
