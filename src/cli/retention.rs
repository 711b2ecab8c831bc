//! `dictmon retention`: delete what is older than the retention window.

use std::path::PathBuf;

use chrono::Utc;
use dictmon::store::{Month, Store, StoreOptions, StoreReader, months_to_delete};

use super::{DEFAULT_DATA_DIR, Outcome};

/// Delete monthly segments older than the retention window, oldest first, and resolved alerts
/// resolved before it. `serve` does this daily by itself, one month a day at most; this command
/// is for a stopped appliance or a copy (it takes the writer's lock, except with --dry-run).
///
/// Ages are measured from the newest stored DICT response time (or the local clock, if that is
/// earlier), so a clock running ahead cannot erase history. More than one month at once
/// happens only after a long stop or with a wrong clock: it needs --force.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The data directory.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
    /// Months kept, counting the newest stored one (13 keeps it and the 12 before it).
    #[arg(long, value_name = "N", default_value_t = 13, value_parser = clap::value_parser!(u32).range(1..))]
    keep_months: u32,
    /// Only say what would be deleted.
    #[arg(long)]
    dry_run: bool,
    /// Delete every month past the window, even more than one.
    #[arg(long)]
    force: bool,
}

pub fn run(args: &Args) -> anyhow::Result<Outcome> {
    let now = Utc::now();
    // A mistyped --data-dir must not become a new, empty data directory.
    let dir = &args.data_dir;
    if !dir.join("segments").is_dir() && !dir.join(dictmon::store::CATALOG_FILE).exists() {
        anyhow::bail!(
            "{}: no data directory there (no segments/, no catalog.redb): nothing to delete; check --data-dir",
            dir.display()
        );
    }
    if args.dry_run {
        // Without the writer's lock: the reference time from the newest segment's blocks.
        let reader = StoreReader::open(&args.data_dir)?;
        let reference = reader.newest_time()?.map_or(now, |t| t.min(now));
        let doomed = months_to_delete(&reader.months()?, Month::of(reference), args.keep_months);
        println!(
            "ages measured from {}",
            reference.format("%Y-%m-%d %H:%M:%S UTC")
        );
        print(&doomed, "would delete");
        return Ok(Outcome::Success);
    }
    let mut store = Store::open(&args.data_dir, StoreOptions::default())?;
    let planned = store.apply_retention(now, args.keep_months, None, true)?;
    if planned.months.len() > 1 && !args.force {
        let months: Vec<String> = planned.months.iter().map(ToString::to_string).collect();
        anyhow::bail!(
            "{} months are past the window ({}), measured from {}: more than one at once happens after a long stop or with a wrong clock. Check both, then run again with --force",
            months.len(),
            months.join(", "),
            planned.reference.format("%Y-%m-%d %H:%M:%S UTC")
        );
    }
    let report = store.apply_retention(now, args.keep_months, None, false)?;
    print(&report.months, "deleted");
    println!("{} resolved alerts deleted", report.alerts);
    Ok(Outcome::Success)
}

fn print(months: &[Month], verb: &str) {
    if months.is_empty() {
        println!("nothing to delete: every segment is within the retention window");
    }
    for m in months {
        println!("{verb} segments/{}", m.file_name());
    }
}
