//! Writes the checked-in fixture of the current format version (`tests/fixtures/segment-vN.seg`):
//! run it only when the format version changes, and keep the old fixtures (every later version
//! must still read them).
//! `cargo run --example fixture -- tests/fixtures`
//!
//! `cargo run --example fixture -- tests/fixtures sealed` writes `segment-vN-sealed.seg`, the
//! worked example of storage-format.md §14: one sealed block of 24 polls whose policy frame
//! is stored compressed, with one poll stored just after a restart (its rate computed from no
//! earlier sample), so that its residuals are not zero.
use chrono::{DateTime, TimeDelta};
use dictmon::domain::{
    BucketConfig, PolicyName, PspCategory, RateWindow, Sample, StateRecord, enrich,
};
use dictmon::store::{Store, StoreOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::path::PathBuf::from(std::env::args().nth(1).ok_or("usage: fixture DIR")?);
    if std::env::args().nth(2).as_deref() == Some("sealed") {
        return sealed(&out);
    }
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
    let name = format!("segment-v{}.seg", dictmon::store::raw::FORMAT_VERSION);
    std::fs::copy(&seg, out.join(name))?;
    println!("{}", seg.display());
    Ok(())
}

/// §14's sealed block: 24 polls of `POLICIES_LIST` 5 minutes apart, draining and refilling;
/// poll 12 is enriched as `serve` does right after a restart, from itself alone.
fn sealed(out: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let mut store = Store::open(dir.path(), StoreOptions::default())?;
    let bucket = BucketConfig {
        capacity: 20,
        refill_tokens: 6,
        refill_period_secs: 60,
    };
    let t = |secs: i64| DateTime::from_timestamp(1_795_000_000 + secs, 833_000_000).ok_or("time");
    let tokens = [
        20, 20, 19, 14, 9, 4, 0, 0, 3, 11, 17, 20, 20, 18, 12, 7, 2, 0, 5, 13, 20, 20, 20, 19,
    ];
    let (mut rows, mut window) = (Vec::new(), Vec::new());
    for (k, available) in (0_i64..).zip(tokens) {
        let sample = Sample {
            at: t(k * 300)?,
            available_tokens: available,
            bucket,
            category: PspCategory::A,
        };
        if k == 12 {
            window.clear(); // a restart: the ring starts empty
        }
        window.push(sample);
        rows.push(StateRecord {
            policy: PolicyName::new("POLICIES_LIST")?,
            sample,
            enrichment: enrich(&window, RateWindow::default()).ok_or("valid")?,
            created_at: t(k * 300)? + TimeDelta::microseconds(4_120),
        });
    }
    store.append_sealed(&rows)?;
    drop(store);
    let seg = std::fs::read_dir(dir.path().join("segments"))?
        .next()
        .ok_or("segment")??
        .path();
    let name = format!(
        "segment-v{}-sealed.seg",
        dictmon::store::raw::FORMAT_VERSION
    );
    std::fs::copy(&seg, out.join(name))?;
    println!("{}", seg.display());
    Ok(())
}
