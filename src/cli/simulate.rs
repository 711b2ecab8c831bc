//! `dictmon simulate --backfill`: write realistic history into a data directory.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use chrono::Utc;
use dictmon::monitor::backfill::{BackfillPlan, backfill};
use dictmon::store::{Store, StoreOptions, segment_bytes};

use super::{DEFAULT_DATA_DIR, Outcome, duration};

/// Write realistic history: DICT's published policies drained by simulated PIX traffic
/// (daily cycle, bursts that drain the anti-scan bucket, a category move halfway), with derived
/// metrics and alerts, as `serve` would have stored it.
///
/// Example: `dictmon simulate --backfill 13mo --data-dir /tmp/demo` fills 13 months in seconds.
/// The live simulator server (`--listen`) arrives with the serve issue.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// How much history, ending now: 7d, 12h, 13mo …
    #[arg(long, value_name = "DURATION")]
    backfill: String,
    /// Data directory to write (created if missing; merged with what it holds).
    #[arg(long, value_name = "DIR", default_value = DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
    /// Seed of the traffic model: the same seed gives the same history.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Number of policies (DICT's 29, then repeated with a suffix).
    #[arg(long, default_value_t = 29)]
    policies: usize,
    /// Poll interval of the simulated history.
    #[arg(long, value_name = "DURATION", default_value = "5m")]
    interval: String,
}

pub fn run(args: &Args) -> anyhow::Result<Outcome> {
    let to = Utc::now();
    let from = duration::parse(&args.backfill)
        .context("--backfill")?
        .before(to)?;
    let interval = duration::parse_fixed(&args.interval).context("--interval")?;
    let plan = BackfillPlan {
        from,
        to,
        interval,
        seed: args.seed,
        policies: args.policies,
    };
    let mut store = Store::open(&args.data_dir, StoreOptions::default())?;
    let started = Instant::now();
    let tty = std::io::stderr().is_terminal();
    let report = backfill(&mut store, &plan, &mut |month, total| {
        if tty {
            eprintln!("  {month} written ({total} snapshots so far)");
        }
    })?;
    let bytes = segment_bytes(&args.data_dir)?;
    println!(
        "wrote {} snapshots of {} policies ({} to {}, every {}s) and {} alerts into {} in {:.1} s; segments now {} bytes",
        report.snapshots,
        args.policies,
        from.format("%Y-%m-%d %H:%M"),
        to.format("%Y-%m-%d %H:%M UTC"),
        interval.num_seconds(),
        report.alerts,
        args.data_dir.display(),
        started.elapsed().as_secs_f64(),
        bytes,
    );
    Ok(Outcome::Success)
}
