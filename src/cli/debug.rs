//! `dictmon debug …`: hidden tools for tests and diagnosis, not part of the product surface.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use chrono::{DateTime, TimeDelta, Utc};
use dictmon::domain::{
    BucketConfig, PolicyName, PspCategory, RateWindow, Sample, StateRecord, enrich,
};
use dictmon::store::{Filter, Store, StoreOptions, StoreReader};

use super::{Outcome, duration};

/// Hidden test tools.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    command: Tool,
}

#[derive(clap::Subcommand, Debug)]
enum Tool {
    /// Write the man pages (dictmon.1, dictmon-serve.1, …) into a directory (packaging).
    ManPages {
        #[arg(long)]
        out: PathBuf,
    },
    /// Append numbered synthetic batches forever, printing `ack K` after each fsynced batch;
    /// resumes after the newest batch present (the crash test's child).
    WriteBatches {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long, default_value_t = 30)]
        policies: usize,
        #[arg(long, default_value = "1h")]
        interval: String,
        /// Time of batch 0.
        #[arg(long, default_value = "2026-01-01T00:00:00Z")]
        start: DateTime<Utc>,
        /// Stop after this batch (default: never).
        #[arg(long)]
        last: Option<u64>,
    },
}

pub fn run(args: &Args) -> anyhow::Result<Outcome> {
    match &args.command {
        Tool::ManPages { out } => {
            std::fs::create_dir_all(out).with_context(|| format!("{}", out.display()))?;
            clap_mangen::generate_to(super::command(), out)
                .with_context(|| format!("writing man pages into {}", out.display()))?;
            Ok(Outcome::Success)
        }
        Tool::WriteBatches {
            data_dir,
            policies,
            interval,
            start,
            last,
        } => write_batches(data_dir, *policies, interval, *start, *last),
    }
}

fn write_batches(
    data_dir: &std::path::Path,
    policies: usize,
    interval: &str,
    start: DateTime<Utc>,
    last: Option<u64>,
) -> anyhow::Result<Outcome> {
    let interval = duration::parse_fixed(interval)?;
    let mut store = Store::open(data_dir, StoreOptions::default())?;
    // As in `serve`: the background compactor rewrites segments while batches are appended,
    // so a kill can land inside either.
    store.start_compactor()?;
    let mut newest = None;
    StoreReader::open(data_dir)?.scan(&Filter::default(), &mut |r| {
        newest = newest.max(Some(r.sample.at));
    })?;
    let next = newest.map_or(Ok(0), |t| {
        u64::try_from((t - start).num_seconds() / interval.num_seconds() + 1)
    })?;
    let mut out = std::io::stdout().lock();
    for k in next..=last.unwrap_or(u64::MAX) {
        store.append(&synthetic_batch(k, policies, start, interval)?)?;
        writeln!(out, "ack {k}").context("stdout")?;
        out.flush().context("stdout")?;
    }
    Ok(Outcome::Success)
}

/// Batch `k`: every policy `POLICY_p` at `start + k·interval`, with tokens
/// `(7k + 13p) mod 1000` of 1000. The crash test checks rows against this formula.
pub fn synthetic_batch(
    k: u64,
    policies: usize,
    start: DateTime<Utc>,
    interval: TimeDelta,
) -> anyhow::Result<Vec<StateRecord>> {
    let at = start + interval * i32::try_from(k)?;
    (0..policies)
        .map(|p| {
            let p64 = u64::try_from(p)?;
            let sample = Sample {
                at,
                available_tokens: i64::try_from((7 * k + 13 * p64) % 1000)?,
                bucket: BucketConfig {
                    capacity: 1000,
                    refill_tokens: 100,
                    refill_period_secs: 60,
                },
                category: PspCategory::C,
            };
            Ok(StateRecord {
                policy: PolicyName::new(&format!("POLICY_{p}"))?,
                sample,
                enrichment: enrich(&[sample], RateWindow::default()).context("valid bucket")?,
                created_at: at + TimeDelta::milliseconds(5),
            })
        })
        .collect()
}
