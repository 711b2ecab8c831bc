//! Shared by the benches: realistic buckets filled with 24 h of simulated traffic.

use chrono::{DateTime, TimeDelta, Utc};
use dictmon::domain::dict_table::nth_policy;
use dictmon::domain::{PolicyName, PspCategory, Sample};

/// Poll interval of the simulated history (the default).
pub const INTERVAL: TimeDelta = TimeDelta::minutes(5);

/// `n` policies cycling through DICT's published table (names suffixed after the first 29),
/// each with `samples` polls of a bucket that wanders between 5 % and 100 %.
///
/// # Panics
///
/// If `samples` exceeds `i32::MAX`.
pub fn history(n: usize, samples: usize) -> Vec<(PolicyName, Vec<Sample>)> {
    let start = DateTime::<Utc>::from_timestamp(1_800_000_000, 0).expect("in range");
    let mut seed = 0x9E37_79B9_7F4A_7C15_u64;
    (0..n)
        .map(|i| {
            let (name, row) = nth_policy(i);
            let bucket = row.bucket(PspCategory::C).expect("known category");
            let mut level = bucket.capacity;
            let samples = (0..i32::try_from(samples).expect("fits"))
                .map(|k: i32| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    let step = (seed % 21).cast_signed() - 10; // −10 … +10 % of capacity
                    level = (level + step * bucket.capacity / 100)
                        .clamp(bucket.capacity / 20, bucket.capacity);
                    Sample {
                        at: start + INTERVAL * k,
                        available_tokens: level,
                        bucket,
                        category: PspCategory::C,
                    }
                })
                .collect();
            (name, samples)
        })
        .collect()
}
