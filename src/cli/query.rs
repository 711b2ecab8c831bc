//! `dictmon query states|alerts`: history from the segments and the catalog, for people
//! (`table`) or tools (`csv`, `pg-csv`, `json`). Read-only: works while `serve` writes the
//! same directory, and on a read-only copy.

use std::collections::BTreeSet;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use chrono::{DateTime, Utc};
use dictmon::domain::{AlertEvent, PolicyName, Severity};
use dictmon::export::{Format, StatesQuery, StatesWriter, alerts_in, scan_states, write_alerts};
use dictmon::notify::status;
use dictmon::store::StoreReader;
use dictmon::store::catalog::SinkProgress;

use super::duration::{Window, parse_window};
use super::{DEFAULT_DATA_DIR, Outcome};

/// Forensic queries over the retained history.
///
/// Times (`--since`, `--until`) are UTC dates (2026-11-23), dates and times ("2026-11-23
/// 14:00"), RFC 3339 with offset, or spans ago (7d, 13mo). Examples:
/// `dictmon query states --policy ENTRIES_WRITE --since 2026-11-01 --until 2026-11-02`;
/// `dictmon query alerts --open --format json`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    what: What,
}

#[derive(clap::Subcommand, Debug)]
enum What {
    /// Snapshots (`dict_rate_limit_states`), ordered by response time then policy.
    States(StatesArgs),
    /// Alerts (`dict_rate_limit_alerts`), ordered by opening time.
    Alerts(AlertsArgs),
}

#[derive(clap::Args, Debug)]
struct Common {
    /// The data directory (or a copy of it).
    #[arg(long, value_name = "DIR", default_value = DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
    /// From this time (inclusive).
    #[arg(long, value_name = "T")]
    since: Option<String>,
    /// Up to this time (exclusive).
    #[arg(long, value_name = "T")]
    until: Option<String>,
    /// table (aligned, for people), csv, pg-csv (the legacy table's columns, as PostgreSQL's
    /// COPY … CSV HEADER writes them) or json (one object per line).
    #[arg(long, default_value = "table")]
    format: Format,
}

#[derive(clap::Args, Debug)]
struct StatesArgs {
    #[command(flatten)]
    common: Common,
    /// Only this policy (repeatable).
    #[arg(long, value_name = "NAME")]
    policy: Vec<String>,
}

#[derive(clap::Args, Debug)]
struct AlertsArgs {
    #[command(flatten)]
    common: Common,
    /// Only this severity: WARNING or CRITICAL.
    #[arg(long, value_name = "S")]
    severity: Option<String>,
    /// Only alerts still open.
    #[arg(long)]
    open: bool,
}

pub fn run(args: &Args) -> anyhow::Result<Outcome> {
    match &args.what {
        What::States(a) => states(a),
        What::Alerts(a) => alerts(a),
    }
}

fn window(c: &Common) -> anyhow::Result<Window> {
    parse_window(c.since.as_deref(), c.until.as_deref())
}

/// `query states --format pg-csv --policy NAME --since SINCE --until UNTIL` into `out`: the
/// dashboard's CSV download ([`dictmon::http::StatesCsv`]), streamed.
pub fn policy_pg_csv(
    data_dir: &Path,
    policy: &PolicyName,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    out: &mut dyn std::io::Write,
) -> Result<(), String> {
    let reader = StoreReader::open(data_dir).map_err(|e| e.to_string())?;
    let mut writer = StatesWriter::new(out, Format::PgCsv).map_err(|e| e.to_string())?;
    let query = StatesQuery {
        policies: Some(BTreeSet::from([policy.clone()])),
        since: Some(since),
        until: Some(until),
    };
    let problems = scan_states(&reader, &query, &mut |_, _, _| {}, &mut |r| writer.row(r))
        .map_err(|e| e.to_string())?;
    for p in problems {
        tracing::warn!("CSV download of {policy}: skipped damaged block: {p}");
    }
    writer.finish().map(drop).map_err(|e| e.to_string())
}

fn states(a: &StatesArgs) -> anyhow::Result<Outcome> {
    let (since, until) = window(&a.common)?;
    let policies = if a.policy.is_empty() {
        None
    } else {
        Some(
            a.policy
                .iter()
                .map(|p| PolicyName::new(p).map_err(|e| anyhow::anyhow!("--policy {p:?}: {e}")))
                .collect::<anyhow::Result<BTreeSet<_>>>()?,
        )
    };
    let reader = StoreReader::open(&a.common.data_dir)?;
    let stdout = std::io::stdout().lock();
    let mut writer = StatesWriter::new(BufWriter::with_capacity(1 << 16, stdout), a.common.format)?;
    let query = StatesQuery {
        policies,
        since,
        until,
    };
    let result = scan_states(&reader, &query, &mut |_, _, _| {}, &mut |r| writer.row(r));
    let problems = match result {
        Ok(p) => p,
        // `dictmon query … | head`: the reader went away; not an error.
        Err(dictmon::export::ExportError::Write { error, .. })
            if error.kind() == std::io::ErrorKind::BrokenPipe =>
        {
            return Ok(Outcome::Success);
        }
        Err(e) => return Err(e.into()),
    };
    match writer.finish() {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(Outcome::Success),
        Err(e) => return Err(e).context("writing the output"),
    }
    for p in &problems {
        eprintln!("warning: skipped damaged data: {p}");
    }
    Ok(Outcome::Success)
}

fn alerts(a: &AlertsArgs) -> anyhow::Result<Outcome> {
    let (since, until) = window(&a.common)?;
    let severity = match a
        .severity
        .as_deref()
        .map(str::to_ascii_uppercase)
        .as_deref()
    {
        None => None,
        Some("WARNING") => Some(Severity::Warning),
        Some("CRITICAL") => Some(Severity::Critical),
        Some("INFO") => Some(Severity::Info),
        Some(other) => anyhow::bail!("--severity {other:?}: INFO, WARNING or CRITICAL"),
    };
    let reader = StoreReader::open(&a.common.data_dir)?;
    let mut alerts = alerts_in(&reader, since, until)?;
    alerts.retain(|x| {
        // An incident is found by the worst severity it reached.
        severity.is_none_or(|s| x.peak() == s) && (!a.open || x.resolved_at.is_none())
    });
    let catalog = reader.catalog()?;
    let sinks = catalog.sinks()?;
    let outbox = catalog.outbox()?;
    let sequences = status::sequences(&outbox);
    let delivery: Vec<_> = if sinks.is_empty() {
        Vec::new()
    } else {
        alerts
            .iter()
            .map(|x| status::delivery_of(x, &sequences, &sinks))
            .collect()
    };
    let mut out = BufWriter::new(std::io::stdout().lock());
    let written = write_alerts(&mut out, a.common.format, &alerts, &delivery).and_then(|()| {
        if a.common.format == Format::Table {
            write_sinks(&mut out, &sinks, &outbox)?;
        }
        out.flush()
    });
    match written {
        Ok(()) => Ok(Outcome::Success),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(Outcome::Success),
        Err(e) => Err(e).context("writing the output"),
    }
}

/// Under the table: each sink, where it delivers, what it still owes and its last failure.
fn write_sinks(
    out: &mut impl Write,
    sinks: &[(String, SinkProgress)],
    outbox: &[(u64, AlertEvent)],
) -> std::io::Result<()> {
    if sinks.is_empty() {
        return Ok(());
    }
    writeln!(out)?;
    for (name, s) in sinks {
        let pending = outbox.iter().filter(|(seq, _)| *seq >= s.next_seq).count();
        write!(
            out,
            "sink {name} ({} {}): {} delivered, {pending} pending",
            s.kind, s.target, s.delivered
        )?;
        if let Some(t) = s.last_success {
            write!(out, ", last success {}", t.format("%Y-%m-%d %H:%M:%S"))?;
        }
        match &s.last_error {
            Some(e) => writeln!(out, "; failing ({} attempts): {e}", s.failures)?,
            None => writeln!(out)?,
        }
    }
    Ok(())
}
