//! `dictmon simulate --backfill`: months of realistic history written into a store in seconds,
//! for benches, tests and demos. It drives `serve`'s own poll cycle ([`Cycle`]: validation,
//! the ring, the derived metrics over the same window, the alert state machine) with the
//! simulator's traffic model in simulated time, and writes sealed blocks as it goes, in
//! bounded memory, compacting at the end.
//!
//! Response times sit on the poll grid plus 20–120 ms of latency (millisecond precision, as
//! DICT's); `created_at` follows 1–15 ms later (microsecond precision, as `PostgreSQL`'s). Halfway
//! through, BACEN moves the participant from category C to B, and three quarters through back
//! to C, the simulator's own: a `serve` on the simulator then continues the history without a
//! move of its own to report. Alerts go to the catalog's history; no events go to the outbox
//! (history must not be delivered as news).

use chrono::{DateTime, DurationRound, TimeDelta, Utc};

use crate::domain::{PspCategory, RateWindow, Thresholds, ValidationLimits};
use crate::source::traffic::Traffic;
use crate::source::{PolicyList, RawPolicy};
use crate::store::{Month, Store, StoreError};

use super::cycle::{Cycle, MonitorConfig};

/// What to generate.
#[derive(Clone, Copy, Debug)]
pub struct BackfillPlan {
    /// First poll (aligned down to the interval).
    pub from: DateTime<Utc>,
    /// Polls stop before this.
    pub to: DateTime<Utc>,
    /// Poll interval.
    pub interval: TimeDelta,
    /// Seed of the traffic model.
    pub seed: u64,
    /// Number of policies.
    pub policies: usize,
}

/// What was written.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BackfillReport {
    /// Snapshots written.
    pub snapshots: u64,
    /// Alerts opened.
    pub alerts: usize,
    /// Months written.
    pub months: usize,
}

/// Rows held before they are written as a sealed block: bounds memory (about 40 MB) whatever
/// the span.
const CHUNK_ROWS: usize = 1 << 18;

/// The configuration `serve` runs with by default, at the plan's interval: the backfill stores
/// what `serve` would have stored for the same samples.
pub fn serve_defaults(interval: TimeDelta) -> MonitorConfig {
    let interval = interval
        .to_std()
        .unwrap_or(std::time::Duration::from_secs(300));
    MonitorConfig {
        interval,
        jitter: std::time::Duration::ZERO,
        timeout: interval,
        thresholds: Thresholds::default(),
        per_policy: std::collections::HashMap::new(),
        validation: ValidationLimits::default(),
        rate_window: RateWindow::default(),
        keep_months: 13,
        vanished_after_polls: 3,
    }
}

/// Generates the plan's history into `store` through the poll cycle of `serve`
/// ([`Cycle::ingest`]) with `config`, writing sealed blocks as it goes, then compacts; gives
/// the store back. `progress` is told after each month.
pub fn backfill(
    store: Store,
    plan: &BackfillPlan,
    config: MonitorConfig,
    progress: &mut dyn FnMut(Month, u64),
) -> Result<(BackfillReport, Store), StoreError> {
    let mut traffic = Traffic::new(plan.seed, plan.policies, PspCategory::C);
    let mut cycle = Cycle::for_history(store, config, "simulated history".to_owned())?;
    let mut report = BackfillReport::default();
    let midpoint = plan.from + (plan.to - plan.from) / 2;
    let three_quarters = plan.from + (plan.to - plan.from) * 3 / 4;
    let start_category = traffic.category();
    let step = plan.interval.as_seconds_f64();
    let mut tick = plan.from.duration_trunc(plan.interval).unwrap_or(plan.from);
    let mut first = true;
    let mut month: Option<Month> = None;
    while tick < plan.to {
        if !first {
            traffic.advance(tick - plan.interval, step);
        }
        first = false;
        if tick >= three_quarters {
            if traffic.category() != start_category {
                traffic.set_category(start_category);
            }
        } else if traffic.category() == PspCategory::C && tick >= midpoint {
            traffic.set_category(PspCategory::B);
        }
        let at = tick + TimeDelta::milliseconds(i64::from(traffic.draw(20, 120)));
        let created_at = at + TimeDelta::microseconds(i64::from(traffic.draw(1_000, 15_000)));
        if month.is_some_and(|m| m != Month::of(at)) {
            report.snapshots += cycle.write_history()? as u64;
            report.months += 1;
            progress(month.unwrap_or(Month::of(at)), report.snapshots);
        }
        month = Some(Month::of(at));
        let list = PolicyList {
            response_time: at,
            category: traffic.category().as_char().to_string(),
            correlation_id: String::new(),
            policies: traffic
                .poll()
                .into_iter()
                .map(|(name, available, bucket)| RawPolicy {
                    name: name.as_str().to_owned(),
                    available_tokens: available,
                    capacity: bucket.capacity,
                    refill_tokens: bucket.refill_tokens,
                    refill_period_secs: bucket.refill_period_secs,
                })
                .collect(),
        };
        cycle.ingest(&list, created_at);
        if cycle.pending_rows() >= CHUNK_ROWS {
            report.snapshots += cycle.write_history()? as u64;
        }
        tick += plan.interval;
    }
    report.snapshots += cycle.write_history()? as u64;
    if let Some(m) = month {
        report.months += 1;
        progress(m, report.snapshots);
    }
    report.alerts = cycle.alerts_opened();
    let mut store = cycle.into_store();
    store.compact()?;
    Ok((report, store))
}
