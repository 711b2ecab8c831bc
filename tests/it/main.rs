//! dictmon's integration tests, linked as one binary (`cargo test --test it`).
//!
//! One module per topic, named `<module>_<topic>`.

/// The alert state machine: transitions, hysteresis, prediction, replay, event schema.
mod domain_alerts;
/// Token-bucket math against a reference bucket simulation (proptest).
mod domain_bucket_props;
/// The lock-free ring under a million pushes and concurrent readers.
mod ring_concurrency;
