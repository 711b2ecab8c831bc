//! `dictmon export` and `dictmon import`: history to and from PostgreSQL-compatible files.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use chrono::Utc;
use dictmon::export::dump;
use dictmon::export::import::{ImportError, ImportReport, import};
use dictmon::store::{Store, StoreOptions, StoreReader};

use super::data_args::DataArgs;
use super::duration::parse_window;
use super::{DEFAULT_DATA_DIR, Outcome};

/// Export the retained history as PostgreSQL files.
///
/// Writes into --out: schema.sql (the legacy tables; states partitioned by month, one
/// partition per month exported; indexes for "latest per policy" and "open alerts"),
/// policies.csv, states.csv, alerts.csv (PostgreSQL's own CSV form), and load.sql. Load with
/// `cd OUT && psql -d DB -f schema.sql -f load.sql`. Read-only on the data directory: works
/// while `serve` runs and on a copy.
#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    #[command(flatten)]
    data: DataArgs,
    /// Folder to write (created if missing; files in it are replaced).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// From this response time (inclusive): 2026-11-01, "2026-11-01 14:00", 30d …
    #[arg(long, value_name = "T")]
    since: Option<String>,
    /// Up to this response time (exclusive).
    #[arg(long, value_name = "T")]
    until: Option<String>,
}

pub fn export(args: &ExportArgs) -> anyhow::Result<Outcome> {
    dictmon::store::keep_read_buffers();
    let (since, until) = parse_window(args.since.as_deref(), args.until.as_deref())?;
    let reader = StoreReader::open(&args.data.locate()?.data_dir)?;
    let tty = std::io::stderr().is_terminal();
    let started = Instant::now();
    let report = dump(
        &reader,
        &args.out,
        since,
        until,
        &mut |month, done, total| {
            if tty {
                let width = 30;
                let filled = (done * width).checked_div(total).unwrap_or(width);
                eprint!(
                    "\r[{}{}] {done}/{total} months  {month}   ",
                    "#".repeat(filled),
                    " ".repeat(width - filled)
                );
                if done == total {
                    eprintln!();
                }
            }
        },
    )?;
    for p in &report.problems {
        eprintln!("warning: skipped damaged data: {p}");
    }
    println!(
        "exported {} states, {} alerts and {} policies ({} monthly partitions) into {} in {:.2} s; load with: cd {} && psql -d DB -f schema.sql -f load.sql",
        report.states,
        report.alerts,
        report.policies,
        report.partitions.len(),
        args.out.display(),
        started.elapsed().as_secs_f64(),
        args.out.display()
    );
    if let Some(e) = &report.catalog_error {
        eprintln!(
            "error: the states are exported, but not the alerts and policies: {e} (alerts.csv and policies.csv hold their header only)"
        );
        return Ok(Outcome::CheckFailed);
    }
    Ok(Outcome::Success)
}

/// Import history from CSV as PostgreSQL writes it (the legacy system's tables).
///
/// --states is a `COPY dict_rate_limit_states TO … WITH (FORMAT csv, HEADER true)` file (or
/// `dictmon export`'s states.csv); --alerts the same of `dict_rate_limit_alerts`. Columns are
/// found by header name in any order; unknown columns are ignored with a warning. Bad rows are
/// reported with their line and skipped (exit 1), or with --strict nothing is written. Rows
/// already present (same policy and response time) are skipped, so running it twice is safe.
/// Takes the data directory's lock: stop `serve` first, or import into another directory.
#[derive(clap::Args, Debug)]
pub struct ImportArgs {
    /// The data directory to write (created if missing).
    #[arg(long, value_name = "DIR", default_value = DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
    /// States CSV.
    #[arg(long, value_name = "FILE")]
    states: PathBuf,
    /// Alerts CSV.
    #[arg(long, value_name = "FILE")]
    alerts: Option<PathBuf>,
    /// Write nothing if any row is bad.
    #[arg(long)]
    strict: bool,
}

/// Warnings, bad rows and rows repeated within the input, one line each (the first 10,000);
/// rows already in the data directory are only counted, in the summary line.
fn print_report(report: &ImportReport) {
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
    for p in &report.problems {
        eprintln!("{p}");
    }
    let listed = report.problems.len() as u64;
    let unlisted = report.bad + report.duplicates - report.already_stored - listed;
    if unlisted > 0 {
        eprintln!("… and {unlisted} more");
    }
}

pub fn import_cmd(args: &ImportArgs) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    // The input first: a missing file must not leave an empty data directory behind.
    for file in std::iter::once(&args.states).chain(&args.alerts) {
        std::fs::File::open(file).with_context(|| format!("{}: cannot open", file.display()))?;
    }
    let created = !args.data_dir.exists();
    let mut store = Store::open(&args.data_dir, StoreOptions::default())?;
    let outcome = import(
        &mut store,
        &args.states,
        args.alerts.as_deref(),
        args.strict,
        Utc::now(),
    );
    // Nothing written into a directory this import made: it goes again.
    let nothing_written = match &outcome {
        Ok(r) => r.states == 0 && r.alerts == 0,
        Err(_) => true,
    };
    if created && nothing_written {
        drop(store);
        let _ = std::fs::remove_dir_all(&args.data_dir);
    }
    let report = match outcome {
        Ok(r) => r,
        Err(ImportError::Strict { bad, report }) => {
            print_report(&report);
            eprintln!("--strict: {bad} bad rows; nothing was written");
            return Ok(Outcome::CheckFailed);
        }
        Err(e) => return Err(e.into()),
    };
    print_report(&report);
    println!(
        "imported {} states and {} alerts into {} in {:.2} s; skipped {} rows already present and {} bad rows",
        report.states,
        report.alerts,
        args.data_dir.display(),
        started.elapsed().as_secs_f64(),
        report.duplicates,
        report.bad
    );
    Ok(if report.bad > 0 {
        Outcome::CheckFailed
    } else {
        Outcome::Success
    })
}
