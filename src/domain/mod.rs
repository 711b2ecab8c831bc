//! The domain: policies, snapshots, token-bucket math, thresholds and the alert lifecycle.
//!
//! Owns: [`Policy`], [`Snapshot`], [`PspCategory`], [`Severity`], [`Alert`], [`AlertEvent`];
//! sample validation ([`validate`]); the derived metrics ([`enrich`]); the alert state machine
//! ([`evaluate`]).
//!
//! May use: std, chrono, serde, uuid (name-based ids). Nothing else of the crate.
//!
//! Invariants: pure — no I/O, no clock (the caller passes `now`), no async, no global state.
//! Every function here is total: outside values give a typed error, never a panic, NaN or a
//! negative rate.
//!
//! # Example: one policy through one poll
//!
//! ```
//! use chrono::{DateTime, Utc};
//! use dictmon::domain::*;
//!
//! let at = |secs: i64| DateTime::<Utc>::from_timestamp(1_800_000_000 + secs, 0).unwrap();
//! let bucket = BucketConfig { capacity: 20, refill_tokens: 6, refill_period_secs: 60 };
//! let earlier = Sample { at: at(0), available_tokens: 6, bucket, category: PspCategory::A };
//! let latest = Sample { at: at(60), available_tokens: 2, ..earlier };
//!
//! // Validate against the last accepted time of the policy and the local clock.
//! validate(&latest, Some(earlier.at), at(61), ValidationLimits::default())?;
//! assert_eq!(
//!     validate(&latest, Some(latest.at), at(61), ValidationLimits::default()),
//!     Err(RejectReason::Replayed)
//! );
//!
//! // 4 tokens fewer although 6 were refilled: 10 consumed in the minute.
//! let e = enrich(&[earlier, latest], RateWindow::default()).unwrap();
//! assert!((e.consumption_rate_per_minute.unwrap() - 10.0).abs() < 1e-9);
//! assert!((e.exhaustion_projection_seconds.unwrap() - 30.0).abs() < 1e-9);
//!
//! // 10 % remaining: the state machine opens a CRITICAL alert and yields its event.
//! let snapshot = Snapshot { policy: PolicyName::new("POLICIES_LIST")?, sample: latest };
//! let t = evaluate(
//!     &AlertState::default(),
//!     Observation { snapshot: &snapshot, enrichment: &e, forecast: None },
//!     &Thresholds::default(),
//! );
//! assert_eq!(t.state.open.map(|a| a.severity), Some(Severity::Critical));
//! assert_eq!(t.events[0].event_type, AlertEventType::Created);
//! # Ok::<(), RejectReason>(())
//! ```

pub mod dict_table;

mod alert;
mod bucket;
pub mod forecast;
pub(crate) mod forensics;
mod policy;
mod snapshot;

pub use alert::{
    Alert, AlertCause, AlertEvent, AlertEventType, AlertJson, AlertState, BucketChange,
    CategoryChange, Observation, SELF_POLICY, Severity, ThresholdError, Thresholds, Transition,
    evaluate, withdraw,
};
pub use bucket::{
    Enrichment, PrefixScratch, RateWindow, TextScales, enrich, enrich_prefixes, human, tenths,
};
pub use forensics::{Episode, Forensics, ForensicsQuery, Period, Reading, SummaryRow};
pub use policy::{BucketConfig, Policy, PolicyName, PspCategory};
pub use snapshot::{
    RejectReason, Sample, Snapshot, StateJson, StateRecord, ValidationLimits, validate,
};
