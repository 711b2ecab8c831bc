//! `dictmon query states|alerts|summary|episodes`: history from the segments and the catalog,
//! for people (`table`) or tools (`csv`, `pg-csv`, `json`). Read-only: works while `serve`
//! writes the same directory, and on a read-only copy.

use std::collections::BTreeSet;
use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::Context;
use chrono::{DateTime, TimeDelta, Utc};
use dictmon::domain::{AlertEvent, PolicyName, Severity};
use dictmon::domain::{Forensics, ForensicsQuery, Period};
use dictmon::export::{
    Format, StatesQuery, StatesWriter, alerts_in, scan_policies, scan_states, write_alerts,
};
use dictmon::export::{write_episodes, write_summary};
use dictmon::store::StoreReader;
use dictmon::store::catalog::SinkProgress;

use super::Outcome;
use super::data_args::DataArgs;
use super::duration::{Window, parse_window};

/// Forensic queries over the retained history.
///
/// Times (`--since`, `--until`) are UTC dates (2026-11-23), dates and times ("2026-11-23
/// 14:00"), RFC 3339 with offset, or spans ago (7d, 13mo). Examples:
/// `dictmon query states --policy ENTRIES_WRITE --since 2026-11-01 --until 2026-11-02`;
/// `dictmon query alerts --open --format json`;
/// `dictmon query summary --by month --below 10`;
/// `dictmon query episodes --policy ENTRIES_WRITE --since 30d`.
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
    /// Per policy and period: samples, min/mean/max remaining %, time at or below WARNING and
    /// CRITICAL, exhaustions, peak consumption rate, alerts opened (and, with --below, the
    /// samples under a threshold).
    ///
    /// A sample stands for its policy's state until the next sample, at most --max-gap; longer
    /// silences are gaps, counted nowhere. Thresholds are the configuration's (per policy).
    Summary(SummaryArgs),
    /// The stretches of time each policy stayed low: start, end, duration, lowest remaining %
    /// and when, and the alerts open during it — where an incident review starts.
    ///
    /// Low means at or below the policy's WARNING threshold (the configuration's), or strictly
    /// under --below. An episode ends at the first sample that is not low, or --max-gap after
    /// its last sample when polling stopped; one the window's end cuts is "ongoing".
    Episodes(EpisodesArgs),
}

#[derive(clap::Args, Debug)]
struct Common {
    #[command(flatten)]
    data: DataArgs,
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
struct SummaryArgs {
    #[command(flatten)]
    common: Common,
    /// Only this policy (repeatable).
    #[arg(long, value_name = "NAME")]
    policy: Vec<String>,
    /// One row per policy and hour, day, week or month (UTC; weeks start on Monday).
    #[arg(long, default_value = "day", value_name = "PERIOD")]
    by: Period,
    /// Also count the samples strictly under this remaining % (e.g. 10).
    #[arg(long, value_name = "PCT")]
    below: Option<f64>,
    /// The longest time one sample stands for (three 5-minute polls by default).
    #[arg(long, default_value = "15m", value_name = "SPAN")]
    max_gap: String,
}

#[derive(clap::Args, Debug)]
struct EpisodesArgs {
    #[command(flatten)]
    common: Common,
    /// Only this policy (repeatable).
    #[arg(long, value_name = "NAME")]
    policy: Vec<String>,
    /// Low means strictly under this remaining % [default: at or below each policy's WARNING
    /// threshold].
    #[arg(long, value_name = "PCT")]
    below: Option<f64>,
    /// The longest time one sample stands for (three 5-minute polls by default).
    #[arg(long, default_value = "15m", value_name = "SPAN")]
    max_gap: String,
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
    // A short-lived reader of months of history: reading buffers go from one month to the next.
    dictmon::store::keep_read_buffers();
    match &args.what {
        What::States(a) => states(a),
        What::Alerts(a) => alerts(a),
        What::Summary(a) => forensics(&a.common, &a.policy, a.by, a.below, &a.max_gap, true),
        What::Episodes(a) => forensics(
            &a.common,
            &a.policy,
            Period::Day,
            a.below,
            &a.max_gap,
            false,
        ),
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

/// The policies `--policy` names, each checked against those the data directory knows: an
/// unknown name is an error that suggests the closest known one.
fn known_policies(
    reader: &StoreReader,
    dir: &Path,
    asked: &[String],
) -> anyhow::Result<Option<BTreeSet<PolicyName>>> {
    if asked.is_empty() {
        return Ok(None);
    }
    let known: Vec<String> = reader
        .catalog()?
        .policies()?
        .into_iter()
        .map(|p| p.policy.name.to_string())
        .collect();
    asked
        .iter()
        .map(|p| {
            if known.iter().any(|k| k == p) {
                return PolicyName::new(p).map_err(|e| anyhow::anyhow!("--policy {p:?}: {e}"));
            }
            let upper = p.to_ascii_uppercase();
            let closest = known
                .iter()
                .map(|k| (strsim::jaro_winkler(&upper, k), k))
                .max_by(|a, b| a.0.total_cmp(&b.0));
            match closest {
                Some((score, k)) if score > 0.7 => anyhow::bail!(
                    "--policy {p:?}: no such policy in {}; did you mean {k}?",
                    dir.display()
                ),
                _ if known.is_empty() => {
                    anyhow::bail!("--policy {p:?}: {} holds no policy yet", dir.display())
                }
                _ => anyhow::bail!(
                    "--policy {p:?}: no such policy in {}; it knows {}",
                    dir.display(),
                    known.join(", ")
                ),
            }
        })
        .collect::<anyhow::Result<BTreeSet<_>>>()
        .map(Some)
}

fn states(a: &StatesArgs) -> anyhow::Result<Outcome> {
    let (since, until) = window(&a.common)?;
    let located = a.common.data.locate()?;
    let reader = StoreReader::open(&located.data_dir)?;
    let policies = known_policies(&reader, &located.data_dir, &a.policy)?;
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
    let reader = StoreReader::open(&a.common.data.locate()?.data_dir)?;
    let mut alerts = alerts_in(&reader, since, until)?;
    alerts.retain(|x| {
        // An incident is found by the worst severity it reached.
        severity.is_none_or(|s| x.peak() == s) && (!a.open || x.resolved_at.is_none())
    });
    let catalog = reader.catalog()?;
    let sinks = catalog.sinks()?;
    let outbox = catalog.outbox()?;
    let sequences = dictmon::notify::sequences(&outbox);
    let delivery: Vec<_> = if sinks.is_empty() {
        Vec::new()
    } else {
        alerts
            .iter()
            .map(|x| dictmon::notify::delivery_of(x, &sequences, &sinks))
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

/// `summary` (`summary` true) or `episodes`.
fn forensics(
    common: &Common,
    policy: &[String],
    by: Period,
    below: Option<f64>,
    max_gap: &str,
    summary: bool,
) -> anyhow::Result<Outcome> {
    let (since, until) = window(common)?;
    if let Some(b) = below
        && !(0.0..=100.0).contains(&b)
    {
        anyhow::bail!("--below {b}: a remaining percentage from 0 to 100");
    }
    let max_gap = super::duration::parse_fixed(max_gap).context("--max-gap")?;
    if max_gap <= TimeDelta::zero() {
        anyhow::bail!("--max-gap must be longer than zero");
    }
    let located = common.data.locate()?;
    let reader = StoreReader::open(&located.data_dir)?;
    let policies = known_policies(&reader, &located.data_dir, policy)?;
    let config = &located.config;
    let thresholds = |p: &PolicyName| config.thresholds.for_policy(&config.per_policy, p);
    let query = ForensicsQuery {
        by,
        below,
        max_gap,
        since,
        until: until.unwrap_or_else(Utc::now),
        episodes: !summary,
    };
    let states = StatesQuery {
        policies,
        since,
        until,
    };
    // The blocks give each policy's rows in time order unless rows came late (overlapping
    // blocks): follow them as they come, and only if some policy's rows went back in time
    // read again, sorted.
    let mut engine = Forensics::new(query.clone(), &thresholds);
    let mut problems = reader.scan_readings(&states.filter(), &mut |policy, rows| {
        engine.push_readings(policy, rows);
    })?;
    if engine.late() > 0 {
        engine = Forensics::new(query, &thresholds);
        problems = scan_policies(&reader, &states, &mut |r| {
            engine.push(r);
        })?;
    }
    for p in &problems {
        eprintln!("warning: skipped damaged data: {p}");
    }
    let alerts = reader.catalog()?.alerts()?;
    let (rows, episodes) = engine.finish(&alerts);
    let out = BufWriter::new(std::io::stdout().lock());
    let written = if summary {
        write_summary(out, common.format, &rows, below)
    } else {
        write_episodes(out, common.format, &episodes)
    };
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
