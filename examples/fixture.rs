//! Writes the checked-in fixture of the current format version (`tests/fixtures/segment-vN.seg`):
//! run it only when the format version changes, and keep the old fixtures (every later version
//! must still read them).
//! `cargo run --example fixture -- tests/fixtures`
use chrono::{DateTime, TimeDelta};
use dictmon::domain::{
    BucketConfig, PolicyName, PspCategory, RateWindow, Sample, StateRecord, enrich,
};
use dictmon::store::{Store, StoreOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::path::PathBuf::from(std::env::args().nth(1).ok_or("usage: fixture DIR")?);
    let dir = tempfile::tempdir()?;
    let mut store = Store::open(dir.path(), StoreOptions::default())?;
    let bucket = BucketConfig {
        capacity: 20,
        refill_tokens: 6,
        refill_period_secs: 60,
    };
    let t = |secs: i64| DateTime::from_timestamp(1_795_000_000 + secs, 833_000_000).ok_or("time");
    let mut window = Vec::new();
    for (k, tokens) in [(0, 20), (300, 19), (600, 12)] {
        let sample = Sample {
            at: t(k)?,
            available_tokens: tokens,
            bucket,
            category: PspCategory::A,
        };
        window.push(sample);
        let row = StateRecord {
            policy: PolicyName::new("POLICIES_LIST")?,
            sample,
            enrichment: enrich(&window, RateWindow::default()).ok_or("valid")?,
            created_at: t(k)? + TimeDelta::microseconds(4_120),
        };
        store.append(&[row])?;
    }
    drop(store);
    let seg = std::fs::read_dir(dir.path().join("segments"))?
        .next()
        .ok_or("segment")??
        .path();
    let name = format!("segment-v{}.seg", dictmon::store::format::FORMAT_VERSION);
    std::fs::copy(&seg, out.join(name))?;
    println!("{}", seg.display());
    Ok(())
}
