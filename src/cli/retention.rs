//! `dictmon retention`: delete what is older than the retention window.

use std::path::PathBuf;

use chrono::Utc;
use dictmon::store::{Month, Store, StoreOptions, StoreReader, month};

use super::{DEFAULT_DATA_DIR, Outcome};

/// Delete monthly segments older than the retention window, oldest first, and resolved alerts
/// resolved before it. `serve` does this daily by itself; this command is for a stopped
/// appliance or a copy (it takes the writer's lock, except with --dry-run).
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The data directory.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
    /// Months kept, counting the current one (13 keeps this month and the 12 before it).
    #[arg(long, value_name = "N", default_value_t = 13, value_parser = clap::value_parser!(u32).range(1..))]
    keep_months: u32,
    /// Only say what would be deleted.
    #[arg(long)]
    dry_run: bool,
}

pub fn run(args: &Args) -> anyhow::Result<Outcome> {
    let now = Utc::now();
    if args.dry_run {
        let reader = StoreReader::open(&args.data_dir)?;
        let doomed = month::to_delete(&reader.months()?, Month::of(now), args.keep_months);
        print(&doomed, "would delete");
        return Ok(Outcome::Success);
    }
    let mut store = Store::open(&args.data_dir, StoreOptions::default())?;
    let report = store.apply_retention(now, args.keep_months, false)?;
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
