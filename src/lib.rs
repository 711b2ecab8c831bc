//! # dictmon — a self-contained monitor for DICT's rate-limit buckets
//!
//! BACEN's DICT meters every PIX participant with token buckets ("policies"). dictmon polls
//! them, keeps recent samples in memory, derives consumption rate, recovery ETA and exhaustion
//! projection, raises and resolves alerts, and keeps 13 months of history in its own store.
//!
//! `ARCHITECTURE.md` at the repository's root is the map: the data flow, what each module
//! owns and may use, the tasks and threads of `serve` and who writes what, the invariants, and
//! where to start reading. `storage-format.md` specifies the bytes on disk.
//!
//! | module | owns |
//! |---|---|
//! | [`domain`] | policies, snapshots, validation, token-bucket math, the alert state machine, forensics; pure |
//! | [`ring`] | the lock-free per-policy ring of recent samples |
//! | [`store`] | segment files, their compaction, the redb catalog, retention, verify |
//! | [`source`] | the `Source` trait: DICT's HTTPS API, the Bridge over gRPC, the simulator |
//! | [`monitor`] | the poll cycle and its scheduler; the history backfill |
//! | [`telemetry`] | Prometheus metrics; the state published to readers |
//! | [`trace`] | traces over OTLP: the span layer, its bounded queue and export thread |
//! | [`http`] | `/metrics`, health, `/api/v1/…`, the dashboard |
//! | [`config`] | the TOML configuration and its checks |
//! | [`export`] | queries over segments, CSV/pg-csv/JSON, PostgreSQL export, legacy import |
//! | [`notify`] | alert-event delivery from the outbox; the gRPC `WatchAlerts` stream |

pub mod config;
pub mod domain;
pub mod export;
pub mod http;
pub mod monitor;
pub mod notify;
pub mod ring;
pub mod source;
pub mod store;
pub mod telemetry;
pub mod trace;
