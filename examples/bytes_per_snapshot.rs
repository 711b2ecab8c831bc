//! Prints the on-disk size per snapshot of realistic history (`simulate --backfill`'s traffic
//! model, through `serve`'s own cycle), every field included: by default 13 months of 30
//! policies polled every 5 minutes.
//!
//! `cargo run --release --example bytes_per_snapshot [-- POLICIES MONTHS INTERVAL_SECONDS]`

use std::time::Instant;

use chrono::{DateTime, Months, TimeDelta};
use dictmon::monitor::backfill::{BackfillPlan, backfill, serve_defaults};
use dictmon::store::{Store, StoreOptions, segment_bytes};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let policies: usize = args.next().map_or(Ok(30), |a| a.parse())?;
    let months: u32 = args.next().map_or(Ok(13), |a| a.parse())?;
    let seconds: i64 = args.next().map_or(Ok(300), |a| a.parse())?;
    let dir = tempfile::tempdir()?;
    let to = DateTime::from_timestamp(1_795_000_000, 0).ok_or("time")?; // 2026-11-18
    let from = to.checked_sub_months(Months::new(months)).ok_or("time")?;
    let plan = BackfillPlan {
        from,
        to,
        interval: TimeDelta::seconds(seconds),
        seed: 1,
        policies,
    };
    let store = Store::open(dir.path(), StoreOptions::default())?;
    let started = Instant::now();
    let (report, store) = backfill(store, &plan, serve_defaults(plan.interval), &mut |_, _| {})?;
    drop(store);
    let elapsed = started.elapsed();
    let bytes = segment_bytes(dir.path())?;
    println!(
        "{} snapshots ({policies} policies, {months} months, {seconds}-s polls) in {} segments: {bytes} bytes on disk, {:.3} bytes/snapshot; {} alerts; generated and written in {:.2} s ({:.0} snapshots/s)",
        report.snapshots,
        report.months,
        bytes as f64 / report.snapshots as f64,
        report.alerts,
        elapsed.as_secs_f64(),
        report.snapshots as f64 / elapsed.as_secs_f64(),
    );
    Ok(())
}
