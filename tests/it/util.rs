//! Shared by the integration tests: synthetic records and the real binary.

use std::process::Command;

use chrono::{DateTime, TimeDelta, Utc};
use dictmon::domain::{
    BucketConfig, PolicyName, PspCategory, RateWindow, Sample, StateRecord, enrich,
};

/// A command running the built `dictmon` binary.
pub fn dictmon() -> Command {
    Command::new(env!("CARGO_BIN_EXE_dictmon"))
}

/// A record of `policy` at `at` with `tokens` of 1,000, derived metrics computed from it alone.
pub fn record(policy: &str, at: DateTime<Utc>, tokens: i64) -> StateRecord {
    let sample = Sample {
        at,
        available_tokens: tokens,
        bucket: BucketConfig {
            capacity: 1000,
            refill_tokens: 100,
            refill_period_secs: 60,
        },
        category: PspCategory::C,
    };
    StateRecord {
        policy: PolicyName::new(policy).expect("valid name"),
        sample,
        enrichment: enrich(&[sample], RateWindow::default()).expect("valid bucket"),
        created_at: at + TimeDelta::milliseconds(5),
    }
}

/// 2026-01-01T00:00:00Z.
pub fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_767_225_600, 0).expect("in range")
}
