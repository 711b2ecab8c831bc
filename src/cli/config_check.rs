//! `dictmon config check FILE`.

use std::path::PathBuf;

use dictmon::config::{self, SourceConfig};
use dictmon::notify;
use dictmon::source::bridge::BridgeSource;
use dictmon::source::dict::DictSource;

use super::Outcome;

/// Check configuration files as `serve` would: unknown keys and bad values are reported with
/// file, line and column, every one of them; then the files the configuration names (CA,
/// certificates, keys, tokens, HMAC secrets) are read and parsed. Exit status 0 valid, 1
/// invalid.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    command: Sub,
}

#[derive(clap::Subcommand, Debug)]
enum Sub {
    /// Check one file.
    Check {
        /// The TOML file.
        file: PathBuf,
    },
}

pub fn run(args: &Args) -> Outcome {
    let Sub::Check { file } = &args.command;
    let config = match config::load(file) {
        Ok(c) => c,
        Err(e) => {
            println!("{e}");
            println!(
                "{}: {} (the files it names are read once these are fixed)",
                file.display(),
                problems(e.all().count())
            );
            return Outcome::CheckFailed;
        }
    };
    // The files the configuration names, read and parsed as `serve` reads them.
    let mut found = Vec::new();
    let sources = match &config.source {
        SourceConfig::Simulator { .. } => Ok(()),
        SourceConfig::Bridge(b) => in_runtime(|| {
            BridgeSource::new(b)
                .map(drop)
                .map_err(|e| format!("[source.bridge] {e}"))
        }),
        SourceConfig::Dict(d) => in_runtime(|| {
            DictSource::new(d)
                .map(drop)
                .map_err(|e| format!("[source.dict] {e}"))
        }),
    };
    found.extend(sources.err());
    if let Some(path) = &config.api_token_file
        && let Err(e) = super::serve::read_api_token(path)
    {
        found.push(format!("{e:#}"));
    }
    if let Some(otlp) = &config.otlp
        && let Err(e) = dictmon::trace::endpoint(otlp)
    {
        found.push(format!("[telemetry.otlp] {e}"));
    }
    found.extend(
        notify::check_setup(&config.notify)
            .into_iter()
            .map(|p| format!("[notify] {p}")),
    );
    if found.is_empty() {
        println!("{}: valid — {}", file.display(), summary(&config));
        Outcome::Success
    } else {
        for p in &found {
            println!("{}: {p}", file.display());
        }
        println!("{}: {}", file.display(), problems(found.len()));
        Outcome::CheckFailed
    }
}

fn problems(n: usize) -> String {
    if n == 1 {
        "1 problem".to_owned()
    } else {
        format!("{n} problems")
    }
}

/// Runs `f` inside a Tokio runtime (a gRPC channel is set up on one), on this thread.
fn in_runtime(f: impl FnOnce() -> Result<(), String>) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a runtime: {e}"))?;
    runtime.block_on(async { f() })
}

/// What the configuration makes `serve` do, for people.
fn summary(c: &config::Config) -> String {
    let grpc = if c.grpc_listen.is_empty() || c.grpc_listen == "off" {
        "gRPC off".to_owned()
    } else {
        format!("gRPC on {}", c.grpc_listen)
    };
    let sinks = match c.notify.sinks.len() {
        0 => "no alert sink".to_owned(),
        1 => "1 alert sink".to_owned(),
        n => format!("{n} alert sinks"),
    };
    let traces = c.otlp.as_ref().map_or("traces off".to_owned(), |o| {
        format!("traces to {}", o.endpoint)
    });
    format!(
        "polls {} every {}; data in {}; HTTP on {}; {grpc}; {sinks}; {traces}",
        c.source.describe(),
        config::format_duration(c.interval),
        c.data_dir.display(),
        c.listen
    )
}
