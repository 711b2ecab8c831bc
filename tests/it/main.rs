//! dictmon's integration tests, linked as one binary (`cargo test --test it`).
//!
//! One module per topic, named `<module>_<topic>`.

/// Failed commands leave nothing behind; output into a closed pipe stops quietly.
mod cli_hygiene;
/// config check on the shipped example and on bad files.
mod config_check;
/// DICT's XML bodies: spec fixtures and variants.
mod dict_xml;
/// The alert state machine: transitions, hysteresis, prediction, replay, event schema.
mod domain_alerts;
/// Token-bucket math against a reference bucket simulation (proptest).
mod domain_bucket_props;
/// History to and from a real PostgreSQL server, byte for byte.
mod export_postgres;
/// The built-in dashboard in headless Chromium: cards, critical state, history chart, CSV.
mod http_dashboard;
/// HTTP hygiene: head limits, slow and surplus clients, bodies, the API's bearer token.
mod http_limits;
/// import of a legacy CSV full of bad rows.
mod import_bad_rows;
/// Alert events to a real Prometheus Alertmanager.
mod notify_alertmanager;
/// Alert events to Apache Pulsar (a stand-in of its WebSocket producer API), through a restart.
mod notify_pulsar;
/// A webhook receiver that checks tokens and signatures.
mod notify_receiver;
/// The gRPC `WatchAlerts` stream: reconnect with the last `event_id`.
mod notify_stream;
/// Alert events to a webhook and a JSON-lines file: outages, SIGKILL, HMAC, wrong token.
mod notify_webhook;
/// The shipped Grafana dashboard and Prometheus rules against the real metrics and promtool.
mod packaging_files;
/// Two instances, a real Prometheus and Alertmanager: the documented alert path.
mod prometheus_stack;
/// query summary and episodes against a second-by-second walk of query states.
mod query_forensics;
/// The README's commands, followed literally from a fresh directory.
mod readme;
/// The lock-free ring under a million pushes and concurrent readers.
mod ring_concurrency;
/// Alert quality over mutual TLS: one alert per incident, category changes.
mod serve_alert_quality;
/// The catalog's commit fails (ENOSPC) under serve and heals without a restart.
mod serve_catalog_faults;
/// Damaged segments (header, emptied file, block): serve starts and stores, damage reported.
mod serve_damaged_segments;
/// serve over DICT's HTTPS API: mutual TLS, exhaustion, 429/503 with Retry-After.
mod serve_dict;
/// serve when its disk fills up, or its data directory is read-only (tmpfs, bind mounts).
mod serve_disk_faults;
/// serve end to end: gRPC simulator, HTTP, store, promtool, restart, SIGTERM.
mod serve_e2e;
/// serve when the Bridge fails or talks nonsense.
mod serve_faults;
/// Across a UTC midnight, month and year end (libfaketime): no poll missed while the closed
/// month is compacted.
mod serve_midnight;
/// Mutual TLS with the Bridge: right, wrong CA, no client certificate.
mod serve_tls;
/// Readers and verify while a writer process appends and compacts.
mod store_concurrent;
/// Corruption: every single-byte flip reported, the rest readable.
mod store_corruption;
/// Crash safety: SIGKILLed writers, reopened stores.
mod store_crash;
/// Acknowledged blocks cut off or zeroed are damage, never a torn tail; a deleted, replaced or
/// edited catalog is noticed (the segment ledger and record checksums).
mod store_damage;
/// The segment reader on random and mutated bytes (the fuzz target's in-suite twin).
mod store_decode_props;
/// A disk that answers EIO inside a segment: that block lost and reported, the rest read.
mod store_disk_errors;
/// Checked-in format fixtures, clean and corrupt.
mod store_fixtures;
/// The store against a BTreeMap model (proptest).
mod store_model;
/// The read-only commands after a kill of `serve` and on a copy taken while it ran.
mod store_readers_after_crash;
/// Retention with a fake clock; one writer per data directory.
mod store_retention;
/// Traces over OTLP: the span tree a collector receives; cycles keep their pace when it hangs.
mod trace_otlp;
/// Helpers: synthetic records, the real binary.
mod util;
