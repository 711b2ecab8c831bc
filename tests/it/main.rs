//! dictmon's integration tests, linked as one binary (`cargo test --test it`).
//!
//! One module per topic, named `<module>_<topic>`.

/// The alert state machine: transitions, hysteresis, prediction, replay, event schema.
mod domain_alerts;
/// Token-bucket math against a reference bucket simulation (proptest).
mod domain_bucket_props;
/// The lock-free ring under a million pushes and concurrent readers.
mod ring_concurrency;
/// Readers and verify while a writer process appends and seals.
mod store_concurrent;
/// Corruption: every single-byte flip reported, the rest readable.
mod store_corruption;
/// Crash safety: SIGKILLed writers, reopened stores.
mod store_crash;
/// The segment reader on random and mutated bytes (the fuzz target's in-suite twin).
mod store_decode_props;
/// Checked-in format fixtures, clean and corrupt.
mod store_fixtures;
/// The store against a BTreeMap model (proptest).
mod store_model;
/// Retention with a fake clock.
mod store_retention;
/// Helpers: synthetic records, the real binary.
mod util;
