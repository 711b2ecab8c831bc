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
//! | [`domain`] | policies, snapshots, validation, token-bucket math, thresholds, alert state machine; pure | std, chrono, serde, uuid |
//! | [`ring`] | lock-free per-policy ring of recent samples | domain |
//! | `store` | segment files, redb catalog, retention, verify *(issue 3)* | domain |
//! | `source` | DICT HTTPS/XML, Bridge gRPC, simulator *(issues 4, 5)* | domain |
//! | `monitor` | the poll cycle and its scheduler *(issue 4)* | everything above |
//! | `notify`, `telemetry`, `http`, `export`, `config` | *(issues 4–7)* | |
//! | `cli` (binary only) | argument parsing and dispatch | everything |
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
//! One writer task runs the poll cycle and is the only writer of the rings
//! ([`ring::RingSetWriter`]); any number of readers (HTTP handlers, the dashboard) read windows
//! concurrently without blocking it.

pub mod config;
pub mod domain;
pub mod http;
pub mod monitor;
pub mod ring;
pub mod source;
pub mod store;
pub mod telemetry;
