//! What the appliance publishes to its readers (HTTP, dashboard) after every poll cycle: the
//! latest view of every policy and the health flags. Written by the monitor only; read
//! lock-free.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use chrono::{DateTime, Utc};

use super::Metrics;
use crate::domain::{Alert, Severity, StateRecord};

/// A policy as readers see it: its latest stored state and its open alert's severity.
#[derive(Clone, Debug, PartialEq)]
pub struct PolicyView {
    /// Latest snapshot with derived metrics.
    pub record: StateRecord,
    /// Severity of the open alert, if any.
    pub severity: Option<Severity>,
}

/// How long a category change stays on the dashboard's overview.
pub const NOTICE_WINDOW: chrono::TimeDelta = chrono::TimeDelta::days(1);

/// The published state.
pub struct Published {
    /// Latest view of every policy, by name.
    pub latest: ArcSwap<Vec<PolicyView>>,
    /// The alerts open now (dictmon's own staleness alert among them), as the monitor holds
    /// them: readers need not scan the catalog's whole history for them.
    pub open_alerts: ArcSwap<Vec<Alert>>,
    /// Category changes of the last [`NOTICE_WINDOW`], newest first: news for the dashboard
    /// (in the catalog they are resolved as they open).
    pub notices: ArcSwap<Vec<Alert>>,
    /// The metrics.
    pub metrics: Arc<Metrics>,
    /// Unix milliseconds of the last successful poll; 0 before the first.
    pub last_success_ms: AtomicI64,
    /// Whether the last store write succeeded.
    pub store_ok: AtomicBool,
    /// The poll interval (freshness is two of them).
    pub interval: Duration,
    /// What the source is, for the health endpoints.
    pub source: String,
    /// Milliseconds by which DICT's response time was ahead of the local clock when the last
    /// listing had every sample refused for it (`time_in_future`); 0 otherwise.
    pub clock_behind_ms: AtomicI64,
}

impl Published {
    /// Whether the source answered within two intervals.
    pub fn source_fresh(&self, now: DateTime<Utc>) -> bool {
        let last = self.last_success_ms.load(Ordering::Acquire);
        let limit = i64::try_from(2 * self.interval.as_millis()).unwrap_or(i64::MAX);
        last > 0 && now.timestamp_millis() - last <= limit
    }

    /// Why the local clock makes every sample refused, if it does: for `/readyz` and the
    /// self-alert.
    pub fn clock_problem(&self) -> Option<String> {
        let behind = self.clock_behind_ms.load(Ordering::Acquire);
        (behind > 0).then(|| {
            format!(
                "the local clock is {:.0} s behind DICT's response time, past the allowed skew (validation.max_future_skew): every sample is refused as time_in_future — fix the clock (NTP)",
                behind as f64 / 1000.0
            )
        })
    }
}
