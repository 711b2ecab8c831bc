//! `dictmon simulate --backfill`: months of realistic history written into a store in seconds,
//! for benches, tests and demos. It runs the real cycle — validation, the derived metrics over
//! a window of recent samples, the alert state machine — against the simulator's traffic model
//! in simulated time, and writes each month as sealed blocks.
//!
//! Response times sit on the poll grid plus 20–120 ms of latency (millisecond precision, as
//! DICT's); `created_at` follows 1–15 ms later (microsecond precision, as `PostgreSQL`'s). Halfway
//! through, BACEN moves the participant from category C to B. Alerts go to the catalog's
//! history; no events go to the outbox (history must not be delivered as news).

use std::collections::VecDeque;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};

use crate::domain::{
    AlertState, Observation, Policy, PspCategory, Sample, Snapshot, StateRecord, Thresholds,
    enrich, evaluate,
};
use crate::source::traffic::Traffic;
use crate::store::catalog::CatalogUpdate;
use crate::store::{Month, Store, StoreError};

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

/// Samples kept per policy for the derived metrics (covers the default 15-minute window at
/// any poll interval of a minute or more).
const WINDOW: usize = 17;

/// Generates the plan's history into `store`; `progress` is told after each month.
pub fn backfill(
    store: &mut Store,
    plan: &BackfillPlan,
    progress: &mut dyn FnMut(Month, u64),
) -> Result<BackfillReport, StoreError> {
    let mut traffic = Traffic::new(plan.seed, plan.policies, PspCategory::C);
    let thresholds = Thresholds::default();
    let rate_window = crate::domain::RateWindow::default();
    let n = traffic.buckets().len();
    let mut windows: Vec<VecDeque<Sample>> = vec![VecDeque::with_capacity(WINDOW + 1); n];
    let mut states = vec![AlertState::default(); n];
    let mut report = BackfillReport::default();
    let mut rows: Vec<StateRecord> = Vec::new();
    let mut update = CatalogUpdate::default();
    let midpoint = plan.from + (plan.to - plan.from) / 2;
    let step = plan.interval.as_seconds_f64();
    let mut tick = plan.from.duration_trunc(plan.interval).unwrap_or(plan.from);
    let mut first = true;
    while tick < plan.to {
        if !first {
            traffic.advance(tick - plan.interval, step);
        }
        first = false;
        if traffic.category() == PspCategory::C && tick >= midpoint {
            traffic.set_category(PspCategory::B);
        }
        let at = tick + TimeDelta::milliseconds(i64::from(traffic.draw(20, 120)));
        let created_at = at + TimeDelta::microseconds(i64::from(traffic.draw(1_000, 15_000)));
        if rows
            .first()
            .is_some_and(|r| Month::of(r.sample.at) != Month::of(at))
        {
            report.months += 1;
            flush(store, &mut rows, &mut update, &mut report, progress)?;
        }
        let category = traffic.category();
        for (i, (policy, available, bucket)) in traffic.poll().into_iter().enumerate() {
            let sample = Sample {
                at,
                available_tokens: available,
                bucket,
                category,
            };
            let (Some(window), Some(state)) = (windows.get_mut(i), states.get_mut(i)) else {
                continue;
            };
            window.push_back(sample);
            if window.len() > WINDOW {
                window.pop_front();
            }
            let Some(enrichment) = enrich(window.make_contiguous(), rate_window) else {
                continue;
            };
            let snapshot = Snapshot { policy, sample };
            let t = evaluate(
                state,
                Observation {
                    snapshot: &snapshot,
                    enrichment: &enrichment,
                },
                &thresholds,
            );
            update.alerts.extend(t.changed_alerts().cloned());
            report.alerts += usize::from(t.opened());
            *state = t.state;
            rows.push(StateRecord {
                policy: snapshot.policy,
                sample,
                enrichment,
                created_at,
            });
        }
        tick += plan.interval;
    }
    if !rows.is_empty() {
        report.months += 1;
    }
    flush(store, &mut rows, &mut update, &mut report, progress)?;
    Ok(report)
}

fn flush(
    store: &mut Store,
    rows: &mut Vec<StateRecord>,
    update: &mut CatalogUpdate,
    report: &mut BackfillReport,
    progress: &mut dyn FnMut(Month, u64),
) -> Result<(), StoreError> {
    let Some(last) = rows.last() else {
        return Ok(());
    };
    let month = Month::of(last.sample.at);
    // The first and the latest sighting of each policy in this month (the catalog keeps the
    // earliest first_seen, and the last one applied as last_seen).
    let mut first = std::collections::BTreeMap::new();
    let mut latest = std::collections::BTreeMap::new();
    for r in rows.iter() {
        first.entry(r.policy.clone()).or_insert(r);
        latest.insert(r.policy.clone(), r);
    }
    update.policies = first
        .into_values()
        .chain(latest.into_values())
        .map(|r| {
            let policy = Policy {
                name: r.policy.clone(),
                bucket: r.sample.bucket,
                category: r.sample.category,
            };
            (policy, r.sample.at)
        })
        .collect();
    store.append_sealed(rows)?;
    store.catalog().apply(update)?;
    report.snapshots += rows.len() as u64;
    progress(month, report.snapshots);
    rows.clear();
    *update = CatalogUpdate::default();
    Ok(())
}
