//! `dictmon status`: the latest state of every policy, from the data directory.

use std::collections::BTreeMap;
use std::io::{BufWriter, Write};

use anyhow::Context;
use dictmon::domain::{Severity, StateRecord, human};
use dictmon::source::{PolicyList, Source};
use dictmon::store::{Filter, StoreReader};

use super::Outcome;
use super::data_args::DataArgs;
use super::source_args::{SourceArgs, WithSource, with_source};

/// The latest state of every policy: remaining %, open alert, consumption rate, recovery ETA,
/// exhaustion projection. Reads the data directory only, so it works while `serve` runs and on
/// a copy.
///
/// `--live NAME` asks the source instead, now, for that one policy (DICT: `GET
/// /policies/{NAME}`, which costs a `POLICIES_READ` token, not a `POLICIES_LIST` one), with the
/// source given as to `serve`: `--config FILE` and/or the source flags. Example:
/// `dictmon status --live ENTRIES_READ_PARTICIPANT_ANTISCAN --config /etc/dictmon/dictmon.toml`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    data: DataArgs,
    /// Output format.
    #[arg(long, default_value = "table", value_parser = ["table", "json"])]
    format: String,
    /// Ask the source for this policy now, instead of reading the data directory.
    #[arg(long, value_name = "NAME")]
    live: Option<String>,
    #[command(flatten)]
    source: SourceArgs,
}

pub fn run(args: &Args) -> anyhow::Result<Outcome> {
    if let Some(name) = &args.live {
        return live(args, name);
    }
    let data_dir = args.data.locate()?.data_dir;
    let reader = StoreReader::open(&data_dir)?;
    let catalog = reader.catalog()?;
    // The catalog keeps each policy's newest snapshot, written with the policy itself; the
    // segments are read only for a policy it lacks (a catalog written before it kept them).
    // Policies that left DICT's listing are not shown.
    let view = catalog.status()?;
    let listed: std::collections::HashSet<&str> =
        view.policy_names.iter().map(String::as_str).collect();
    let mut latest: BTreeMap<String, StateRecord> = view
        .latest
        .into_iter()
        .filter(|r| listed.contains(r.policy.as_str()))
        .map(|r| (r.policy.to_string(), r))
        .collect();
    if view.policy_names.iter().any(|n| !latest.contains_key(n)) {
        let policies = catalog.policies()?;
        // Only the days that hold each policy's latest sample are read.
        let since = policies.iter().map(|p| p.last_seen).min();
        let filter = Filter {
            since_ns: since.and_then(|t| t.timestamp_nanos_opt()),
            ..Filter::default()
        };
        let problems = reader.scan(&filter, &mut |r| {
            let key = r.policy.to_string();
            if !listed.contains(key.as_str()) {
                return;
            }
            if latest.get(&key).is_none_or(|l| l.sample.at <= r.sample.at) {
                latest.insert(key, r);
            }
        })?;
        for p in &problems {
            eprintln!("warning: {p}");
        }
    }
    let open_alerts = match view.open_alerts {
        Some(open) => open,
        None => catalog.alerts()?,
    };
    let open: BTreeMap<String, Severity> = open_alerts
        .into_iter()
        .filter(|a| a.resolved_at.is_none())
        .map(|a| (a.policy.to_string(), a.severity))
        .collect();
    let mut out = BufWriter::new(std::io::stdout().lock());
    let written = write_latest(&mut out, &args.format, &latest, &open, &data_dir)
        .and_then(|()| out.flush().map_err(anyhow::Error::from));
    match written {
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            Ok(Outcome::Success)
        }
        Err(e) => Err(e.context("writing the output")),
        Ok(()) => Ok(Outcome::Success),
    }
}

/// The table (or JSON lines) of the latest state of every policy.
fn write_latest(
    out: &mut impl Write,
    format: &str,
    latest: &BTreeMap<String, StateRecord>,
    open: &BTreeMap<String, Severity>,
    data_dir: &std::path::Path,
) -> anyhow::Result<()> {
    if format == "json" {
        for r in latest.values() {
            let severity = open.get(r.policy.as_str());
            // The shape of /api/v1/policies: the row, flat, and its open alert's severity.
            let mut v = serde_json::to_value(dictmon::domain::StateJson::from(r))?;
            if let Some(obj) = v.as_object_mut() {
                obj.insert("severity".into(), serde_json::json!(severity));
            }
            writeln!(out, "{v}")?;
        }
        return Ok(());
    }
    if latest.is_empty() {
        writeln!(out, "no snapshots in {} yet", data_dir.display())?;
        return Ok(());
    }
    writeln!(
        out,
        "{:<38} {:>3} {:>15} {:>9} {:<8} {:>11} {:>10} {:>10}  AS OF (UTC)",
        "POLICY", "CAT", "TOKENS", "REMAIN", "ALERT", "RATE/MIN", "FULL IN", "EMPTY IN"
    )?;
    for r in latest.values() {
        let e = &r.enrichment;
        writeln!(
            out,
            "{:<38} {:>3} {:>15} {:>8}% {:<8} {:>11} {:>10} {:>10}  {}",
            r.policy.as_str(),
            r.sample.category.to_string(),
            format!("{}/{}", r.sample.available_tokens, r.sample.bucket.capacity),
            dictmon::domain::tenths(e.remaining_percent),
            open.get(r.policy.as_str()).map_or("-", |s| s.as_str()),
            e.consumption_rate_per_minute
                .map_or("?".into(), |x| format!("{x:.1}")),
            human(e.recovery_eta_seconds),
            human(e.exhaustion_projection_seconds),
            r.sample.at.format("%Y-%m-%d %H:%M:%S"),
        )?;
    }
    Ok(())
}

/// `--live NAME`: one policy, from the source, now.
fn live(args: &Args, name: &str) -> anyhow::Result<Outcome> {
    // The source of --config, or of the installed configuration when there is one.
    let mut config = args.data.locate()?.config;
    args.source.apply(&mut config)?;
    super::init_logging("warn");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let list = runtime.block_on(with_source(&config.source, Live(name.to_owned())))?;
    for p in &list.policies {
        if args.format == "json" {
            println!(
                "{}",
                serde_json::json!({
                    "endpoint_id": p.name,
                    "available_tokens": p.available_tokens,
                    "capacity": p.capacity,
                    "refill_tokens": p.refill_tokens,
                    "refill_period_sec": p.refill_period_secs,
                    "psp_category": list.category,
                    "response_time": list.response_time,
                    "correlation_id": list.correlation_id,
                })
            );
        } else {
            let percent = if p.capacity > 0 {
                100.0 * p.available_tokens as f64 / p.capacity as f64
            } else {
                0.0
            };
            println!(
                "{}: {}/{} tokens ({}% left), refill {} every {}s; category {}; DICT time {} (correlationId {})",
                p.name,
                p.available_tokens,
                p.capacity,
                dictmon::domain::tenths(percent),
                p.refill_tokens,
                p.refill_period_secs,
                list.category,
                list.response_time.format("%Y-%m-%d %H:%M:%S%.3f UTC"),
                list.correlation_id,
            );
        }
    }
    Ok(Outcome::Success)
}

struct Live(String);

impl WithSource for Live {
    type Output = PolicyList;

    async fn run<S: Source + 'static>(self, mut source: S) -> anyhow::Result<PolicyList> {
        let what = source.describe();
        source
            .get(&self.0)
            .await
            .with_context(|| format!("asking {what} for {}", self.0))
    }
}
