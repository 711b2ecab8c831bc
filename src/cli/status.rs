//! `dictmon status`: the latest state of every policy, from the data directory.

use std::collections::BTreeMap;
use std::path::PathBuf;

use dictmon::domain::{Severity, StateRecord};
use dictmon::store::{Filter, StoreReader};

use super::{DEFAULT_DATA_DIR, Outcome};

/// The latest state of every policy: remaining %, open alert, consumption rate, recovery ETA,
/// exhaustion projection. Reads the data directory only, so it works while `serve` runs and on
/// a copy.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The data directory.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
    /// Output format.
    #[arg(long, default_value = "table", value_parser = ["table", "json"])]
    format: String,
}

pub fn run(args: &Args) -> anyhow::Result<Outcome> {
    let reader = StoreReader::open(&args.data_dir)?;
    let catalog = reader.catalog()?;
    let policies = catalog.policies()?;
    // Only the days that hold each policy's latest sample are read.
    let since = policies.iter().map(|p| p.last_seen).min();
    let filter = Filter {
        since_ns: since.and_then(|t| t.timestamp_nanos_opt()),
        ..Filter::default()
    };
    let mut latest: BTreeMap<String, StateRecord> = BTreeMap::new();
    let problems = reader.scan(&filter, &mut |r| {
        let key = r.policy.to_string();
        if latest.get(&key).is_none_or(|l| l.sample.at <= r.sample.at) {
            latest.insert(key, r);
        }
    })?;
    for p in &problems {
        eprintln!("warning: {p}");
    }
    let open: BTreeMap<String, Severity> = catalog
        .alerts()?
        .into_iter()
        .filter(|a| a.resolved_at.is_none())
        .map(|a| (a.policy.to_string(), a.severity))
        .collect();
    if args.format == "json" {
        for r in latest.values() {
            let severity = open.get(r.policy.as_str());
            println!(
                "{}",
                serde_json::json!({ "record": r, "severity": severity })
            );
        }
        return Ok(Outcome::Success);
    }
    if latest.is_empty() {
        println!("no snapshots in {} yet", args.data_dir.display());
        return Ok(Outcome::Success);
    }
    println!(
        "{:<38} {:>3} {:>15} {:>9} {:<8} {:>11} {:>10} {:>10}  AS OF (UTC)",
        "POLICY", "CAT", "TOKENS", "REMAIN", "ALERT", "RATE/MIN", "FULL IN", "EMPTY IN"
    );
    for r in latest.values() {
        let e = &r.enrichment;
        println!(
            "{:<38} {:>3} {:>15} {:>8.1}% {:<8} {:>11} {:>10} {:>10}  {}",
            r.policy.as_str(),
            r.sample.category.to_string(),
            format!("{}/{}", r.sample.available_tokens, r.sample.bucket.capacity),
            e.remaining_percent,
            open.get(r.policy.as_str()).map_or("-", |s| s.as_str()),
            e.consumption_rate_per_minute
                .map_or("?".into(), |x| format!("{x:.1}")),
            human(e.recovery_eta_seconds),
            human(e.exhaustion_projection_seconds),
            r.sample.at.format("%Y-%m-%d %H:%M:%S"),
        );
    }
    Ok(Outcome::Success)
}

/// Seconds in human units; none is "never".
fn human(secs: Option<f64>) -> String {
    match secs {
        None => "never".into(),
        Some(s) if s < 1.0 => "now".into(),
        Some(s) if s < 120.0 => format!("{s:.0}s"),
        Some(s) if s < 7_200.0 => format!("{:.0}m", s / 60.0),
        Some(s) if s < 172_800.0 => format!("{:.1}h", s / 3_600.0),
        Some(s) => format!("{:.1}d", s / 86_400.0),
    }
}
