//! # dictmon — a self-contained monitor for DICT's rate-limit buckets
//!
//! BACEN's DICT meters every PIX participant with token buckets ("policies"). dictmon polls
//! them, keeps recent samples in memory, derives consumption rate, recovery ETA and exhaustion
//! projection, raises and resolves alerts, and keeps 13 months of history in its own store.
//! The product contract is `DESIGN.md` of the shared docs; this note is the map of the code.
//!
//! ## Modules
//!
//! Each module may use only the ones listed after it ("may use"); dependencies point down.
//!
//! | module | owns | may use |
//! |---|---|---|
//! | [`domain`] | policies, snapshots, validation, token-bucket math, thresholds, alert state machine, DICT's published rate table; pure | std, chrono, serde, uuid |
//! | [`ring`] | lock-free per-policy ring of recent samples | domain |
//! | [`store`] | segment files (`storage-format.md`), their compaction, redb catalog, retention, verify | domain |
//! | [`source`] | the `Source` trait; Bridge gRPC client; DICT HTTPS client and its XML; simulator (in-process, gRPC, DICT HTTPS) and traffic model | domain |
//! | [`monitor`] | the poll cycle (`Cycle`) and its scheduler (`Monitor`); history backfill through the same `Cycle` | domain, ring, store, source, notify, telemetry |
//! | [`telemetry`] | Prometheus metrics; the state published to readers | domain |
//! | [`http`] | `/metrics`, `/healthz`, `/readyz`, `/api/v1/…`; the dashboard (`/`, `/policy/NAME`) | domain, ring, store, telemetry |
//! | [`config`] | TOML configuration, defaults, checks with line and column | domain, source |
//! | [`export`] | query engine over segments; table/CSV/pg-csv/JSON writers; PostgreSQL export; legacy CSV import | domain, store |
//! | [`notify`] | alert-event delivery from the outbox: Alertmanager, webhook, JSON-lines file workers; the gRPC `WatchAlerts` stream; per-sink delivery state | domain, store |
//! | `cli` (binary only) | argument parsing and dispatch | everything |
//!
//! One deliberate departure from DESIGN.md's table: `config` uses `domain` and `source` types
//! (thresholds, scenario names, the Bridge's settings), so that each value is checked where it
//! is defined, once, instead of through a parallel set of plain types.
//!
//! ## One poll cycle
//!
//! ```text
//! source → domain::validate → ring push → domain::enrich (window from the ring)
//!        → domain::evaluate (alert state machine) → store append + fsync → metrics, events
//! ```
//!
//! The sample time is DICT's `ResponseTime`, so a replayed cycle is recognised
//! ([`domain::RejectReason::Replayed`]) and stores and alerts nothing twice.
//!
//! ## Tasks and threads
//!
//! `serve` runs a multi-threaded tokio runtime with two long tasks: the monitor (the only writer
//! of the store, the catalog and the rings — [`ring::RingSetWriter`]; store I/O runs in
//! `block_in_place`) and the HTTP server, whose handlers only read what the monitor publishes
//! ([`telemetry::Published`], the catalog). The store's compactor is a thread of its own
//! (`dictmon-compactor`), merging closed hours' blocks while the monitor appends; the two
//! share only the open segments' table, locked for an append or a rename, never for a merge.
//! Full scans of the store decode on up to four worker threads (one core: on the reading
//! thread, without collecting rows). `import` reads a states file on up to four parsing
//! threads fed by one splitting thread, and writes each month on a writing thread of its own
//! while the next months are read.

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
