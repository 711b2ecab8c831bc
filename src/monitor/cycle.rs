//! The poll cycle and its scheduler:
//!
//! ```text
//! source.list (deadline, retries with capped backoff inside the interval)
//!   → validate every sample (typed reason, counted, logged once per reason, never stored)
//!   → ring push → enrich over the ring's window → alert state machine
//!   → store append (fsync) + catalog (policies, alerts, events in one transaction)
//!   → metrics, the readers' view
//! ```
//!
//! Invariants: one cycle at a time (a late cycle delays the next, never overlaps it); records
//! whose write failed stay pending in memory (bounded) and are written with the next cycle;
//! state survives restarts (the last day of samples and the open alerts are loaded from the
//! store), so a replayed response time stores and alerts nothing twice.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use chrono::{DateTime, TimeDelta, Utc};
use tokio::sync::watch;
use tracing::field::Empty;
use tracing::{Instrument as _, debug, error, info, info_span, warn};
use uuid::Uuid;

use crate::domain::forecast::{BucketNow, SeasonalProfile, forecast};
use crate::domain::{
    Alert, AlertCause, AlertEvent, AlertEventType, AlertState, BucketChange, CategoryChange,
    Observation, Policy, PolicyName, PspCategory, RateWindow, RejectReason, Sample, Severity,
    Snapshot, StateRecord, Thresholds, ValidationLimits, enrich, evaluate, validate, withdraw,
};
use crate::notify::Wakeup;
use crate::ring::{DEFAULT_CAPACITY, RingSet, RingSetWriter};
use crate::source::{PolicyList, Source, SourceError};
use crate::store::catalog::{Catalog, CatalogUpdate};
use crate::store::{Filter, Store, StoreReader};
use crate::telemetry::{Metrics, NOTICE_WINDOW, PolicyView, Published};

/// The longest `Retry-After` honoured before the next poll.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);
pub use crate::domain::SELF_POLICY;
/// The policy name of category-change notices ([`crate::domain::CategoryChange`]).
pub const CATEGORY_POLICY: &str = "PSP_CATEGORY";
/// The `dictmon_poll_errors_total` kind of a listing with no policy in it.
pub const EMPTY_LISTING: &str = "empty_listing";
/// Days of history a restart reads back for the seasonal profiles (four of each hour of the
/// week). It costs start-up time in proportion: 1.1 s for 29 policies at 10 s (7 M rows);
/// keeping the profiles in the catalog would make it constant.
const PROFILE_RELOAD_DAYS: i64 = 28;
/// Records kept in memory while the store refuses writes.
const MAX_PENDING: usize = 100_000;
/// Most alert events kept in memory while the catalog refuses writes (the oldest go first).
const MAX_PENDING_EVENTS: usize = 10_000;

/// What one cycle did: the attributes of its trace span.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CycleReport {
    /// `ok`, `empty_listing` (nothing to store), `clock_behind` (every sample refused as
    /// from the future), `store_failed` (kept in memory for the next cycle).
    pub outcome: &'static str,
    /// Samples accepted.
    pub accepted: usize,
    /// Samples refused.
    pub rejected: usize,
    /// Alert events this cycle raised.
    pub alert_events: usize,
    /// Rows written to the store by this cycle's flush (pending ones of earlier cycles included).
    pub rows_written: usize,
}

/// The named sample a source's policy entry stands for (not yet validated against the
/// policy's history: see [`crate::domain::validate`]).
pub fn sample_of(
    raw: &crate::source::RawPolicy,
    category: Result<PspCategory, RejectReason>,
    response_time: DateTime<Utc>,
) -> Result<(PolicyName, Sample), RejectReason> {
    let name = PolicyName::new(&raw.name)?;
    let sample = Sample {
        at: response_time,
        available_tokens: raw.available_tokens,
        bucket: crate::domain::BucketConfig {
            capacity: raw.capacity,
            refill_tokens: raw.refill_tokens,
            refill_period_secs: raw.refill_period_secs,
        },
        category: category?,
    };
    Ok((name, sample))
}

/// How the monitor runs.
#[derive(Clone, Debug)]
pub struct MonitorConfig {
    /// Poll interval.
    pub interval: Duration,
    /// Random delay added to each interval, up to this much.
    pub jitter: Duration,
    /// Deadline of one call to the source.
    pub timeout: Duration,
    /// Thresholds of every policy not listed in `per_policy`.
    pub thresholds: Thresholds,
    /// Thresholds of named policies.
    pub per_policy: HashMap<PolicyName, Thresholds>,
    /// Sample validation limits.
    pub validation: ValidationLimits,
    /// Smoothing of the consumption rate.
    pub rate_window: RateWindow,
    /// Retention, in months (the current one included).
    pub keep_months: u32,
    /// A policy missing from this many accepted listings in a row has left DICT's.
    pub vanished_after_polls: u32,
}

/// What the readers of a running monitor need: the published state, the catalog and the
/// rings. `cli` hands them to `http` and `notify`.
pub struct Readers {
    /// Latest views, health, metrics.
    pub published: Arc<Published>,
    /// The catalog (alerts), for reading.
    pub catalog: Arc<Catalog>,
    /// Rung after each write to the catalog: new events may be in the outbox.
    pub wakeup: Wakeup,
    /// Recent samples of every policy (the dashboard's sparklines).
    pub rings: RingSet,
}

/// The poll loop: fetches from the source on schedule and hands each listing to its
/// [`Cycle`].
pub struct Monitor<S: Source> {
    source: S,
    cycle: Cycle,
}

/// One poll cycle's work, from a listing to stored rows, alerts and published views: the one
/// writer of the store and of the rings. `serve` drives it through [`Monitor`]; the history
/// backfill drives it directly in simulated time ([`Cycle::for_history`]), so what both store
/// comes from the same code.
pub struct Cycle {
    store: Store,
    rings: RingSetWriter,
    shared: Arc<Published>,
    ring_reader: RingSet,
    config: MonitorConfig,
    states: HashMap<PolicyName, AlertState>,
    last_accepted: HashMap<PolicyName, DateTime<Utc>>,
    /// Listings in a row that did not name the policy (known policies only).
    missing: HashMap<PolicyName, u32>,
    latest: BTreeMap<PolicyName, PolicyView>,
    /// What each policy usually consumes at each hour of the week (the forecast's season).
    profiles: HashMap<PolicyName, SeasonalProfile>,
    pending: Vec<StateRecord>,
    /// Catalog changes not written yet, merged ([`CatalogUpdate::absorb`]).
    pending_catalog: CatalogUpdate,
    logged: HashSet<RejectReason>,
    warned_category: bool,
    /// The participant's category in the last listing, to notice DICT moving it.
    category: Option<PspCategory>,
    /// Category changes of the last [`NOTICE_WINDOW`], newest first.
    notices: Vec<Alert>,
    self_alert: Option<Alert>,
    /// Why the last answer was refused whole, until one is accepted.
    refused: Option<String>,
    last_maintenance: Option<Instant>,
    started: Instant,
    wakeup: Wakeup,
    /// History mode: no per-sample metrics, alert transitions logged at debug level.
    history: bool,
    /// Alerts opened by this cycle's alert machine since it was built.
    opened: usize,
}

/// Samples of the rate window, plus the one before it, at this interval.
fn window_len(config: &MonitorConfig) -> usize {
    let per = config.interval.as_secs().max(1);
    let span = u64::try_from(config.rate_window.span.num_seconds()).unwrap_or(0);
    let n = usize::try_from(span.div_ceil(per)).unwrap_or(DEFAULT_CAPACITY);
    n.saturating_add(2).clamp(2, DEFAULT_CAPACITY)
}

impl<S: Source> Monitor<S> {
    /// Builds the monitor over an opened store, reloading recent samples and the open alerts
    /// so that a restart continues where the last run stopped.
    pub fn new(
        source: S,
        mut store: Store,
        config: MonitorConfig,
    ) -> Result<(Self, Readers), crate::store::StoreError> {
        store.start_compactor()?;
        let (cycle, readers) = Cycle::build(store, config, source.describe(), Some(Utc::now()))?;
        Ok((Self { source, cycle }, readers))
    }

    /// Runs cycles until `shutdown` turns true. A cycle in flight finishes processing and
    /// persisting; a fetch in flight is abandoned (nothing of it was received).
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut next = tokio::time::Instant::now();
        loop {
            let started = Instant::now();
            let deadline = started + self.cycle.config.interval.mul_f64(0.8);
            // The source's Retry-After, when it reaches past the next cycle.
            let mut hold = None;
            let span = info_span!(
                "poll_cycle",
                source.kind = self.source.kind(),
                policies = Empty,
                dict.correlation_id = Empty,
                accepted = Empty,
                rejected = Empty,
                alert_events = Empty,
                rows_written = Empty,
                outcome = Empty,
                otel.status_code = Empty,
            );
            tokio::select! {
                result = self.fetch(deadline).instrument(span.clone()) => match result {
                    Ok(list) => {
                        span.record("policies", list.policies.len());
                        span.record("dict.correlation_id", list.correlation_id.as_str());
                        let report = span.in_scope(|| self.cycle.process(&list, Utc::now()));
                        span.record("accepted", report.accepted);
                        span.record("rejected", report.rejected);
                        span.record("alert_events", report.alert_events);
                        span.record("rows_written", report.rows_written);
                        span.record("outcome", report.outcome);
                        if report.outcome != "ok" {
                            span.record("otel.status_code", "error");
                        }
                    }
                    Err(e) => {
                        span.record("outcome", e.kind());
                        span.record("otel.status_code", "error");
                        if let SourceError::BadSignature { .. } = &e {
                            self.cycle.refuse_answer(&e, Utc::now());
                        }
                        // Honoured, but never for longer than MAX_RETRY_AFTER: a nonsense
                        // value must not silence polling for days.
                        hold = e.retry_after().map(|w| w.min(MAX_RETRY_AFTER));
                        if let Some(wait) = hold {
                            error!(error = %e, kind = e.kind(), "poll failed; the source asked to wait {wait:?}: no poll before then");
                        } else {
                            error!(error = %e, kind = e.kind(), "poll failed; retrying at the next cycle");
                        }
                    }
                },
                _ = shutdown.changed() => {}
            }
            let took = started.elapsed().as_secs_f64();
            let metrics = &self.cycle.shared.metrics;
            metrics.duration.with_label_values(&["cycle"]).observe(took);
            metrics.cycle_duration.observe(took);
            self.cycle.check_staleness(Utc::now());
            self.cycle.maintenance();
            // The cycle's span ends here, before the wait for the next one.
            drop(span);
            if *shutdown.borrow() {
                break;
            }
            // Sub-second digits of the clock are random enough to spread polls.
            let spread = f64::from(Utc::now().timestamp_subsec_nanos()) / 1e9;
            let jitter = self.cycle.config.jitter.mul_f64(spread);
            next += self.cycle.config.interval + jitter;
            // A late cycle delays the next one; it never overlaps it.
            next = next.max(tokio::time::Instant::now());
            if let Some(wait) = hold {
                next = next.max(tokio::time::Instant::now() + wait);
            }
            tokio::select! {
                () = tokio::time::sleep_until(next) => {}
                _ = shutdown.changed() => break,
            }
        }
        self.cycle.flush();
        info!("monitor stopped");
    }

    /// One listing, retried with capped exponential backoff while `deadline` allows, waiting at
    /// least what the source asked (`Retry-After`) and its minimum spacing.
    async fn fetch(&mut self, deadline: Instant) -> Result<PolicyList, SourceError> {
        // Never closer than the source allows (DICT's POLICIES_LIST), retries included.
        let spacing = self.source.min_spacing();
        let mut backoff = Duration::from_millis(250).max(spacing);
        let mut attempt = 0_u32;
        loop {
            let started = Instant::now();
            attempt += 1;
            let span = info_span!(
                "source.list",
                source.kind = self.source.kind(),
                attempt,
                policies = Empty,
                dict.correlation_id = Empty,
                outcome = Empty,
                otel.status_code = Empty,
            );
            let call = tokio::time::timeout(self.cycle.config.timeout, self.source.list());
            let result = match call.instrument(span.clone()).await {
                Ok(r) => r,
                Err(_) => Err(SourceError::Timeout {
                    endpoint: self.source.describe(),
                    after: self.cycle.config.timeout,
                }),
            };
            match &result {
                Ok(list) => {
                    span.record("policies", list.policies.len());
                    span.record("dict.correlation_id", list.correlation_id.as_str());
                    span.record("outcome", "ok");
                }
                Err(e) => {
                    span.record("outcome", e.kind());
                    span.record("otel.status_code", "error");
                }
            }
            // The attempt's span ends with the call, not after the backoff below.
            drop(span);
            self.cycle
                .shared
                .metrics
                .duration
                .with_label_values(&["fetch"])
                .observe(started.elapsed().as_secs_f64());
            let error = match result {
                Ok(list) => return Ok(list),
                Err(e) => e,
            };
            self.cycle.shared.metrics.request_error(error.kind());
            if let Some(wait) = error.retry_after() {
                self.cycle
                    .shared
                    .metrics
                    .source_retry_after
                    .set(i64::try_from(wait.as_secs()).unwrap_or(i64::MAX));
            }
            let wait = backoff.max(error.retry_after().unwrap_or_default());
            if !error.retryable() || Instant::now() + wait >= deadline {
                self.cycle.shared.metrics.poll_error(error.kind());
                return Err(error);
            }
            warn!(error = %error, retry_in = ?wait, "poll failed; retrying");
            tokio::time::sleep(wait).await;
            backoff = (backoff * 2).min(Duration::from_secs(30).max(spacing));
        }
    }
}

impl Cycle {
    /// A cycle for history (the backfill): nothing is reloaded from the store, and
    /// [`Self::write_history`] writes what [`Self::ingest`] produced.
    pub fn for_history(
        store: Store,
        config: MonitorConfig,
        source: String,
    ) -> Result<Self, crate::store::StoreError> {
        Self::build(store, config, source, None).map(|(cycle, _)| cycle)
    }

    /// With `reload_before`, the samples the rings can hold up to then and the open alerts are
    /// loaded from the store.
    fn build(
        store: Store,
        config: MonitorConfig,
        source: String,
        reload_before: Option<DateTime<Utc>>,
    ) -> Result<(Self, Readers), crate::store::StoreError> {
        let (mut rings, ring_set) = RingSetWriter::new(DEFAULT_CAPACITY);
        let (last_accepted, mut latest, profiles) = match reload_before {
            Some(now) => reload_recent(&store, now, &mut rings)?,
            None => Default::default(),
        };
        let catalog = store.catalog_handle();
        let mut states: HashMap<PolicyName, AlertState> = HashMap::new();
        let mut self_alert = None;
        let alerts = catalog.alerts()?;
        let notices = recent_notices(&alerts, reload_before);
        // The category of the newest sample reloaded.
        let category = latest
            .values()
            .max_by_key(|v| v.record.sample.at)
            .map(|v| v.record.sample.category);
        for alert in alerts.into_iter().filter(|a| a.resolved_at.is_none()) {
            if alert.policy.as_str() == SELF_POLICY {
                self_alert = Some(alert);
                continue;
            }
            if let Some(view) = latest.get_mut(&alert.policy) {
                view.severity = Some(alert.severity);
            }
            let last = last_accepted.get(&alert.policy).copied();
            states.insert(
                alert.policy.clone(),
                AlertState {
                    last_evaluated: last.or(Some(alert.opened_at)),
                    open: Some(alert),
                },
            );
        }
        let metrics = Arc::new(Metrics::new());
        metrics.register_poll_error_kinds(&SourceError::KINDS);
        metrics.register_poll_error_kinds(&[EMPTY_LISTING]);
        let reloaded: Vec<StateRecord> = latest.values().map(|v| v.record.clone()).collect();
        metrics.observe_cycle(&reloaded, &|p| {
            config.thresholds.for_policy(&config.per_policy, p)
        });
        let shared = Arc::new(Published {
            latest: ArcSwap::from_pointee(latest.values().cloned().collect()),
            open_alerts: ArcSwap::from_pointee(Vec::new()),
            notices: ArcSwap::from_pointee(notices.clone()),
            metrics,
            last_success_ms: AtomicI64::new(0),
            store_ok: AtomicBool::new(true),
            interval: config.interval,
            source,
            clock_behind_ms: AtomicI64::new(0),
        });
        let wakeup = Wakeup::default();
        let readers = Readers {
            published: shared.clone(),
            catalog,
            wakeup: wakeup.clone(),
            rings: ring_set.clone(),
        };
        let cycle = Self {
            store,
            rings,
            shared,
            ring_reader: ring_set,
            config,
            states,
            last_accepted,
            missing: HashMap::new(),
            latest,
            profiles,
            pending: Vec::new(),
            pending_catalog: CatalogUpdate::default(),
            logged: HashSet::new(),
            warned_category: false,
            category,
            notices,
            self_alert,
            refused: None,
            last_maintenance: None,
            started: Instant::now(),
            wakeup,
            history: reload_before.is_none(),
            opened: 0,
        };
        cycle.publish_open_alerts();
        Ok((cycle, readers))
    }

    /// Validates, enriches, evaluates and persists one listing.
    pub fn process(&mut self, list: &PolicyList, now: DateTime<Utc>) -> CycleReport {
        let mut report = self.ingest(list, now);
        let (rows_written, stored) = self.flush();
        report.rows_written = rows_written;
        if !stored {
            report.outcome = "store_failed";
        }
        debug!(policies = self.latest.len(), "cycle done");
        report
    }

    /// Validates, enriches and evaluates one listing received at `now` (the stored
    /// `created_at`): its rows and catalog changes wait in memory for [`Self::process`]'s
    /// flush, or for [`Self::write_history`].
    pub fn ingest(&mut self, list: &PolicyList, now: DateTime<Utc>) -> CycleReport {
        let started = Instant::now();
        self.shared.metrics.source_retry_after.set(0);
        if list.policies.is_empty() {
            // DICT always lists its policies (POLICIES_LIST among them): an empty listing says
            // nothing about any bucket, so it is not a successful poll either.
            self.shared.metrics.poll_error(EMPTY_LISTING);
            warn!(
                correlation_id = %list.correlation_id,
                response_time = %list.response_time,
                "the source answered with no policy at all; nothing stored, and the source is not counted as fresh (dictmon_poll_errors_total{{kind=\"{EMPTY_LISTING}\"}})"
            );
            return CycleReport {
                outcome: EMPTY_LISTING,
                ..CycleReport::default()
            };
        }
        let category = PspCategory::parse(&list.category);
        if let Ok(PspCategory::Unknown(c)) = category
            && !self.warned_category
        {
            warn!(category = %c, "DICT reported a category outside A–H; samples are kept");
            self.warned_category = true;
        }
        let mut update = CatalogUpdate::default();
        if let Ok(to) = category {
            self.notice_category(to, list, &mut update);
        }
        let mut refused_for_clock = 0;
        let mut report = CycleReport {
            outcome: "ok",
            ..CycleReport::default()
        };
        // Validation, enrichment and the alert state machine, sample by sample.
        let span = info_span!(
            "validate",
            policies = list.policies.len(),
            accepted = Empty,
            rejected = Empty,
            alert_events = Empty,
        )
        .entered();
        for raw in &list.policies {
            match self.check(raw, category, list.response_time, now) {
                Ok((policy, sample)) => {
                    let record = self.observe(policy, sample, now, &mut update);
                    report.accepted += 1;
                    self.pending.extend(record);
                }
                Err(reason) => {
                    refused_for_clock += usize::from(reason == RejectReason::TimeInFuture);
                    report.rejected += 1;
                    self.reject(reason, &raw.name, list.response_time, &list.correlation_id);
                }
            }
        }
        report.alert_events = update.events.len();
        span.record("accepted", report.accepted);
        span.record("rejected", report.rejected);
        span.record("alert_events", report.alert_events);
        drop(span);
        // A listing whose every sample is refused because DICT's time is ahead of ours is not
        // a successful poll: readiness goes red and the self-alert names the clock.
        let clock_wrong = refused_for_clock > 0 && refused_for_clock == list.policies.len();
        if clock_wrong {
            report.outcome = "clock_behind";
        }
        let behind = if clock_wrong {
            (list.response_time - now).num_milliseconds().max(1)
        } else {
            0
        };
        self.shared.clock_behind_ms.store(behind, Ordering::Release);
        if !self.history {
            let config = &self.config;
            let thresholds = |p: &PolicyName| config.thresholds.for_policy(&config.per_policy, p);
            self.shared
                .metrics
                .observe_cycle(&update.latest, &thresholds);
        }
        if !clock_wrong {
            self.notice_vanished(list, &mut update);
            self.refused = None;
            self.shared
                .last_success_ms
                .store(now.timestamp_millis(), Ordering::Release);
            self.shared
                .metrics
                .last_success
                .set(now.timestamp_millis() as f64 / 1000.0);
            self.shared.metrics.source_fresh.set(1);
        }
        self.shared
            .metrics
            .duration
            .with_label_values(&["process"])
            .observe(started.elapsed().as_secs_f64());
        self.shared
            .latest
            .store(Arc::new(self.latest.values().cloned().collect()));
        self.publish_open_alerts();
        self.pending_catalog.absorb(update);
        report
    }

    /// Notices a move of the participant to another category: one resolved alert (a notice)
    /// and one `rate_limit.category.changed` event with every policy whose bucket changed.
    fn notice_category(&mut self, to: PspCategory, list: &PolicyList, update: &mut CatalogUpdate) {
        let Some(from) = self.category.replace(to) else {
            return;
        };
        if from == to {
            return;
        }
        let at = list.response_time;
        let policies =
            list.policies
                .iter()
                .filter_map(|raw| {
                    let name = PolicyName::new(&raw.name).ok()?;
                    let old = self.latest.get(&name)?.record.sample.bucket;
                    (old.capacity != raw.capacity || old.refill_tokens != raw.refill_tokens)
                        .then_some(BucketChange {
                            endpoint_id: name,
                            old_capacity: old.capacity,
                            new_capacity: raw.capacity,
                            old_refill_tokens: old.refill_tokens,
                            new_refill_tokens: raw.refill_tokens,
                            refill_period_sec: raw.refill_period_secs,
                        })
                })
                .collect();
        let change = CategoryChange { from, to, policies };
        let severity = change.severity();
        let message = change.message();
        let policy =
            PolicyName::new(CATEGORY_POLICY).unwrap_or_else(|_| unreachable!("valid name"));
        let id = Alert::id_for(&policy, at, severity);
        let alert = Alert {
            id,
            policy,
            severity,
            peak_severity: None,
            cause: AlertCause::Category,
            opened_at: at,
            available_tokens: 0,
            capacity: 0,
            utilization_percent: 0.0,
            psp_category: to,
            message: message.clone(),
            resolved_at: Some(at),
            resolution: Some("a notice: nothing to resolve".into()),
        };
        let event = AlertEvent {
            event_id: AlertEvent::id_for(id, AlertEventType::CategoryChanged),
            event_type: AlertEventType::CategoryChanged,
            timestamp: at,
            endpoint_id: alert.policy.clone(),
            severity,
            available_tokens: 0,
            capacity: 0,
            utilization_percent: 0.0,
            recovery_eta_seconds: None,
            exhaustion_projection_seconds: None,
            psp_category: to,
            message: message.clone(),
            category_change: Some(change),
        };
        if self.history {
            debug!(%severity, "{message}");
        } else {
            self.shared.metrics.alert_event(&event);
            warn!(%severity, correlation_id = %list.correlation_id, "{message}");
        }
        self.notices.insert(0, alert.clone());
        self.notices.retain(|a| a.opened_at >= at - NOTICE_WINDOW);
        self.shared.notices.store(Arc::new(self.notices.clone()));
        update.alerts.push(alert);
        update.events.push(event);
    }

    /// An answer refused whole (DICT's signature failed): counted, and dictmon's own CRITICAL
    /// source alert opens at once naming why (it resolves once an answer is accepted and the
    /// source is fresh again).
    fn refuse_answer(&mut self, error: &SourceError, now: DateTime<Utc>) {
        self.shared.metrics.rejected(RejectReason::BadSignature);
        let reason =
            format!("{SELF_POLICY}: DICT's answer was refused, nothing of it is used: {error}");
        self.refused = Some(reason.clone());
        if self.self_alert.is_none() {
            let mut alert = self_alert(now, &self.shared.source, None);
            alert.message = reason;
            let event = self_event(&alert, AlertEventType::Created, now);
            error!(policy = SELF_POLICY, "{}", alert.message);
            self.self_alert = Some(alert.clone());
            self.record_self_alert(alert, event);
        }
    }

    /// Publishes, counts and writes a change of dictmon's own source alert.
    fn record_self_alert(&mut self, alert: Alert, event: AlertEvent) {
        self.publish_open_alerts();
        self.shared.metrics.alert_event(&event);
        self.pending_catalog.absorb(CatalogUpdate {
            alerts: vec![alert],
            events: vec![event],
            ..CatalogUpdate::default()
        });
        self.flush();
    }

    /// Alerts opened since this cycle was built.
    pub fn alerts_opened(&self) -> usize {
        self.opened
    }

    /// Rows waiting to be written.
    pub fn pending_rows(&self) -> usize {
        self.pending.len()
    }

    /// History mode: writes the waiting rows as sealed blocks ([`Store::append_sealed`]) and
    /// the catalog's policies (first and last sighting of each) and alerts in one transaction;
    /// events are dropped, since history is not news to deliver. Returns the rows written.
    pub fn write_history(&mut self) -> Result<usize, crate::store::StoreError> {
        let rows = self.pending.len();
        self.store.append_sealed(&self.pending)?;
        self.pending.clear();
        let mut merged = std::mem::take(&mut self.pending_catalog);
        merged.events.clear();
        self.store.catalog().apply(&merged)?;
        Ok(rows)
    }

    /// The store, to finish a history load ([`Store::compact`]).
    pub fn into_store(self) -> Store {
        self.store
    }

    /// Turns a raw policy into a valid sample, or says why not.
    fn check(
        &self,
        raw: &crate::source::RawPolicy,
        category: Result<PspCategory, RejectReason>,
        response_time: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<(PolicyName, Sample), RejectReason> {
        let (name, sample) = sample_of(raw, category, response_time)?;
        let previous = self.last_accepted.get(&name).copied();
        validate(&sample, previous, now, self.config.validation)?;
        Ok((name, sample))
    }

    /// Pushes a valid sample through the ring, the bucket math and the alert state machine;
    /// returns the record to store and adds what the catalog must learn to `update`.
    fn observe(
        &mut self,
        policy: PolicyName,
        sample: Sample,
        now: DateTime<Utc>,
        update: &mut CatalogUpdate,
    ) -> Option<StateRecord> {
        self.rings.push(&policy, &sample);
        let window = self
            .ring_reader
            .get(&policy)
            .map(|r| r.window(window_len(&self.config)))
            .unwrap_or_default();
        let enrichment = enrich(&window, self.config.rate_window)?;
        let snapshot = Snapshot {
            policy: policy.clone(),
            sample,
        };
        let thresholds = &self
            .config
            .thresholds
            .for_policy(&self.config.per_policy, &policy);
        let forecast = thresholds.predictive_horizon.and_then(|horizon| {
            forecast(
                self.profiles.get(&policy),
                BucketNow::of(&sample, enrichment.consumption_rate_per_minute),
                horizon.as_seconds_f64() / 60.0,
            )
        });
        // Learnt after the forecast: a sample is not its own season.
        if let (Some(previous), Some(rate)) = (
            self.latest.get(&policy),
            enrichment.consumption_rate_per_minute,
        ) {
            self.profiles.entry(policy.clone()).or_default().learn_pair(
                &previous.record.sample,
                &sample,
                rate,
            );
        }
        let state = self.states.entry(policy.clone()).or_default();
        let t = evaluate(
            state,
            Observation {
                snapshot: &snapshot,
                enrichment: &enrichment,
                forecast: forecast.as_ref(),
            },
            thresholds,
        );
        update.alerts.extend(t.changed_alerts().cloned());
        self.opened += usize::from(t.opened());
        for e in &t.events {
            if self.history {
                debug!(policy = %e.endpoint_id, severity = %e.severity, event = %e.event_type, "{}", e.message);
                continue;
            }
            self.shared.metrics.alert_event(e);
            info!(policy = %e.endpoint_id, severity = %e.severity, event = %e.event_type, "{}", e.message);
        }
        update.events.extend(t.events);
        let severity = t.state.open.as_ref().map(|a| a.severity);
        *state = t.state;
        update.policies.push((
            Policy {
                name: policy.clone(),
                bucket: sample.bucket,
                category: sample.category,
            },
            sample.at,
        ));
        let record = StateRecord {
            policy: policy.clone(),
            sample,
            enrichment,
            created_at: now,
        };
        self.last_accepted.insert(policy.clone(), sample.at);
        update.latest.push(record.clone());
        self.latest.insert(
            policy,
            PolicyView {
                record: record.clone(),
                severity,
            },
        );
        Some(record)
    }

    fn reject(
        &mut self,
        reason: RejectReason,
        name: &str,
        response_time: DateTime<Utc>,
        correlation_id: &str,
    ) {
        self.shared.metrics.rejected(reason);
        if self.logged.insert(reason) {
            warn!(
                policy = name,
                %response_time,
                correlation_id,
                reason = reason.label(),
                "sample rejected: {reason}; not stored (further rejections for this reason are logged at debug level and counted in dictmon_rejected_samples_total)"
            );
        } else {
            debug!(
                policy = name,
                reason = reason.label(),
                "sample rejected: {reason}"
            );
        }
    }

    /// Writes pending records and catalog updates; on failure keeps them (bounded) for the
    /// next cycle.
    /// Returns the rows written and whether everything pending was.
    fn flush(&mut self) -> (usize, bool) {
        let started = Instant::now();
        let mut rows_written = 0;
        let written = tokio::task::block_in_place(|| {
            // Every cycle, written or not, a data directory removed under us is noticed at
            // once: an append checks it itself.
            if self.pending.is_empty() {
                self.store.check_in_place()?;
            } else {
                let span = info_span!(
                    "store.append",
                    rows = self.pending.len(),
                    otel.status_code = Empty,
                )
                .entered();
                let appended = self.store.append(&self.pending);
                if appended.is_err() {
                    span.record("otel.status_code", "error");
                }
                appended?;
                rows_written = self.pending.len();
                self.pending.clear();
            }
            if !self.pending_catalog.is_empty() {
                let update = &self.pending_catalog;
                crate::trace::remember_origin(
                    &tracing::Span::current(),
                    update.events.iter().map(|e| e.event_id),
                );
                let span = info_span!(
                    "catalog.commit",
                    alerts = update.alerts.len(),
                    events = update.events.len(),
                    policies = update.policies.len(),
                    otel.status_code = Empty,
                )
                .entered();
                let applied = self.store.catalog().apply(update);
                if applied.is_err() {
                    span.record("otel.status_code", "error");
                }
                applied?;
                self.pending_catalog = CatalogUpdate::default();
            }
            Ok::<_, crate::store::StoreError>(())
        });
        let ok = match written {
            Ok(()) => true,
            Err(e) => {
                error!(error = %e, pending = self.pending.len(), "cannot write to the store; samples are kept in memory and written when it works again");
                if self.pending.len() > MAX_PENDING {
                    let excess = self.pending.len() - MAX_PENDING;
                    self.pending.drain(..excess);
                    self.shared.metrics.store_dropped.inc_by(excess as u64);
                    error!(
                        dropped = excess,
                        "memory bound reached: oldest unwritten samples dropped"
                    );
                }
                let events = &mut self.pending_catalog.events;
                if events.len() > MAX_PENDING_EVENTS {
                    let excess = events.len() - MAX_PENDING_EVENTS;
                    events.drain(..excess);
                    self.shared
                        .metrics
                        .catalog_dropped_events
                        .inc_by(excess as u64);
                    error!(
                        dropped = excess,
                        "memory bound reached: oldest unwritten alert events dropped"
                    );
                }
                false
            }
        };
        let metrics = &self.shared.metrics;
        metrics
            .store_pending
            .set(i64::try_from(self.pending.len()).unwrap_or(i64::MAX));
        metrics
            .catalog_pending
            .set(i64::try_from(self.pending_catalog.len()).unwrap_or(i64::MAX));
        let io_errors = self.store.catalog().closed_after_io_errors();
        metrics
            .catalog_io_errors
            .inc_by(io_errors.saturating_sub(metrics.catalog_io_errors.get()));
        self.shared.store_ok.store(ok, Ordering::Release);
        self.shared.metrics.store_writable.set(i64::from(ok));
        self.shared
            .metrics
            .duration
            .with_label_values(&["persist"])
            .observe(started.elapsed().as_secs_f64());
        if ok {
            self.wakeup.committed();
        }
        (rows_written, ok)
    }

    /// Publishes the alerts open now.
    fn publish_open_alerts(&self) {
        let open: Vec<Alert> = self
            .states
            .values()
            .filter_map(|s| s.open.clone())
            .chain(self.self_alert.clone())
            .collect();
        if !self.history {
            self.shared.metrics.open_alerts(&open);
        }
        self.shared.open_alerts.store(Arc::new(open));
    }

    /// Counts, for every known policy, the accepted listings in a row that did not name it;
    /// at [`MonitorConfig::vanished_after_polls`] the policy has left DICT's listing: its open
    /// alert resolves with that reason, its series leave `/metrics` and it leaves the published
    /// views. Listed again, it starts afresh.
    fn notice_vanished(&mut self, list: &PolicyList, update: &mut CatalogUpdate) {
        let listed: HashSet<&str> = list.policies.iter().map(|p| p.name.as_str()).collect();
        let mut gone = Vec::new();
        for policy in self.latest.keys() {
            if listed.contains(policy.as_str()) {
                self.missing.remove(policy);
                continue;
            }
            let n = self.missing.entry(policy.clone()).or_default();
            *n += 1;
            if *n >= self.config.vanished_after_polls {
                gone.push(policy.clone());
            }
        }
        for policy in gone {
            self.vanish(&policy, list.response_time, update);
        }
    }

    fn vanish(&mut self, policy: &PolicyName, at: DateTime<Utc>, update: &mut CatalogUpdate) {
        let polls = self.missing.remove(policy).unwrap_or_default();
        let state = self.states.remove(policy).unwrap_or_default();
        if let Some(view) = self.latest.remove(policy) {
            let snapshot = Snapshot {
                policy: policy.clone(),
                sample: view.record.sample,
            };
            let last = Observation {
                snapshot: &snapshot,
                enrichment: &view.record.enrichment,
                forecast: None,
            };
            let t = withdraw(&state, last, at);
            update.alerts.extend(t.changed_alerts().cloned());
            for e in &t.events {
                if !self.history {
                    self.shared.metrics.alert_event(e);
                }
                info!(policy = %e.endpoint_id, severity = %e.severity, event = %e.event_type, "{}", e.message);
            }
            update.events.extend(t.events);
        }
        self.last_accepted.remove(policy);
        self.profiles.remove(policy);
        // The catalog remembers it: `status` and a restart leave it out until it is listed.
        update.left.push((policy.clone(), at));
        if !self.history {
            self.shared.metrics.forget(policy.as_str());
        }
        warn!(
            policy = %policy,
            polls,
            "the policy left DICT's listing: missing from {polls} listings in a row; its series leave /metrics, its open alert is resolved and it leaves the dashboard (it comes back if DICT lists it again)"
        );
    }

    /// Opens or resolves dictmon's own alert on the source's freshness.
    fn check_staleness(&mut self, now: DateTime<Utc>) {
        // A refused answer keeps the source stale whatever the last success was.
        let fresh = self.shared.source_fresh(now) && self.refused.is_none();
        self.shared.metrics.source_fresh.set(i64::from(fresh));
        // Before the first successful poll, the source is stale once two intervals have passed.
        let never_polled = self.shared.last_success_ms.load(Ordering::Acquire) == 0;
        let stale = !fresh && (!never_polled || self.started.elapsed() >= self.config.interval * 2);
        let event = match (&self.self_alert, fresh) {
            (None, false) if stale => {
                let alert = self_alert(now, &self.shared.source, self.shared.clock_problem());
                let event = self_event(&alert, AlertEventType::Created, now);
                self.self_alert = Some(alert.clone());
                error!(policy = SELF_POLICY, "{}", alert.message);
                Some((alert, event))
            }
            (Some(open), true) => {
                let mut alert = open.clone();
                alert.resolved_at = Some(now);
                alert.resolution = Some("the source answers again".into());
                let event = self_event(&alert, AlertEventType::Resolved, now);
                self.self_alert = None;
                info!(
                    policy = SELF_POLICY,
                    "the source answers again; staleness alert resolved"
                );
                Some((alert, event))
            }
            _ => None,
        };
        if let Some((alert, event)) = event {
            self.record_self_alert(alert, event);
        }
    }

    /// Daily: retention; every cycle: store size metrics. (Compaction has a thread of its own:
    /// [`Store::start_compactor`].)
    fn maintenance(&mut self) {
        if let Ok((segments, bytes)) = crate::store::segment_stats(self.store.dir()) {
            let metrics = &self.shared.metrics;
            metrics
                .store_bytes
                .set(i64::try_from(bytes).unwrap_or(i64::MAX));
            metrics
                .store_segments
                .set(i64::try_from(segments).unwrap_or(i64::MAX));
        }
        let metrics = &self.shared.metrics;
        metrics
            .store_live_bytes
            .set(i64::try_from(self.store.live_bytes()).unwrap_or(i64::MAX));
        metrics
            .store_damaged_segments
            .set(i64::try_from(self.store.damaged_segments()).unwrap_or(i64::MAX));
        let stats = self.store.compaction_stats();
        for (outcome, total) in [
            ("merged", stats.merged.load(Ordering::Relaxed)),
            ("failed", stats.failed.load(Ordering::Relaxed)),
        ] {
            let counter = metrics.store_compactions.with_label_values(&[outcome]);
            counter.inc_by(total.saturating_sub(counter.get()));
        }
        if self
            .last_maintenance
            .is_some_and(|t| t.elapsed() < Duration::from_secs(86_400))
        {
            return;
        }
        self.last_maintenance = Some(Instant::now());
        let keep = self.config.keep_months;
        // At most one month a day: more at once means a long stop or a wrong clock, and
        // `dictmon retention --force` is the operator's call.
        let done = tokio::task::block_in_place(|| {
            self.store.apply_retention(Utc::now(), keep, Some(1), false)
        });
        match done {
            Ok(r) if !r.months.is_empty() || r.alerts > 0 || r.events > 0 => {
                let list = |months: &[crate::store::Month]| {
                    months
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                info!(months = %list(&r.months), alerts = r.alerts, events = r.events, reference = %r.reference, "retention: deleted what is older than {keep} months before the newest stored sample");
                if !r.deferred.is_empty() {
                    warn!(deferred = %list(&r.deferred), "retention: more than one month is past the window; one is deleted a day (`dictmon retention --force` deletes them now)");
                }
            }
            Ok(_) => {}
            Err(e) => error!(error = %e, "daily maintenance failed; retried tomorrow"),
        }
    }
}

/// Loads the last [`PROFILE_RELOAD_DAYS`] of samples: each policy's seasonal profile learns
/// them all, and the last day (the dashboard's sparklines; the rings keep their capacity's
/// worth) goes into `rings`. Returns each policy's last accepted time, latest view and profile.
fn reload_recent(
    store: &Store,
    now: DateTime<Utc>,
    rings: &mut RingSetWriter,
) -> Result<Reloaded, crate::store::StoreError> {
    let mut last_accepted: HashMap<PolicyName, DateTime<Utc>> = HashMap::new();
    let mut latest: BTreeMap<PolicyName, PolicyView> = BTreeMap::new();
    let mut profiles: HashMap<PolicyName, SeasonalProfile> = HashMap::new();
    // Rows reach the rings and profiles as they are read, never all at once. Blocks are in
    // time order, so each policy's rows are too; a row not newer than the last one taken
    // (overlapping blocks) is skipped.
    let day_ago = now - TimeDelta::days(1);
    // Four weeks of history may be millions of rows: read them one frame at a time, so the
    // start-up costs a frame's memory, not the parallel reader's queue of decoded frames.
    let filter = Filter {
        since_ns: (now - TimeDelta::days(PROFILE_RELOAD_DAYS)).timestamp_nanos_opt(),
        sequential: true,
        ..Filter::default()
    };
    let mut previous: HashMap<PolicyName, Sample> = HashMap::new();
    // A policy that left DICT's listing stays gone across a restart, until it is listed again.
    let left: HashSet<PolicyName> = store
        .catalog()
        .policies()?
        .into_iter()
        .filter(|p| p.left_at.is_some())
        .map(|p| p.policy.name)
        .collect();
    let problems = StoreReader::open(store.dir())?.scan(&filter, &mut |r| {
        if left.contains(&r.policy) {
            return;
        }
        let before = previous.get(&r.policy);
        if before.is_some_and(|b| b.at >= r.sample.at) {
            return;
        }
        if let (Some(before), Some(rate)) = (before, r.enrichment.consumption_rate_per_minute) {
            profiles
                .entry(r.policy.clone())
                .or_default()
                .learn_pair(before, &r.sample, rate);
        }
        previous.insert(r.policy.clone(), r.sample);
        last_accepted.insert(r.policy.clone(), r.sample.at);
        if r.sample.at < day_ago {
            return;
        }
        rings.push(&r.policy, &r.sample);
        latest.insert(
            r.policy.clone(),
            PolicyView {
                record: r,
                severity: None,
            },
        );
    })?;
    for p in problems {
        warn!("while reloading recent history: {p}");
    }
    // The reading buffers are sized for four weeks' largest frame; serve reads no more here.
    crate::store::release_read_buffers();
    Ok((last_accepted, latest, profiles))
}

/// Each policy's last accepted sample time, its latest view, its seasonal profile.
type Reloaded = (
    HashMap<PolicyName, DateTime<Utc>>,
    BTreeMap<PolicyName, PolicyView>,
    HashMap<PolicyName, SeasonalProfile>,
);

/// The category notices of the [`NOTICE_WINDOW`] before `now`, newest first.
fn recent_notices(alerts: &[Alert], now: Option<DateTime<Utc>>) -> Vec<Alert> {
    let Some(now) = now else {
        return Vec::new();
    };
    let mut notices: Vec<Alert> = alerts
        .iter()
        .filter(|a| a.policy.as_str() == CATEGORY_POLICY && a.opened_at >= now - NOTICE_WINDOW)
        .cloned()
        .collect();
    notices.sort_by_key(|a| std::cmp::Reverse(a.opened_at));
    notices
}

fn self_alert(now: DateTime<Utc>, source: &str, clock: Option<String>) -> Alert {
    let policy = PolicyName::new(SELF_POLICY).unwrap_or_else(|_| unreachable!("valid name"));
    Alert {
        id: Uuid::new_v5(
            &Uuid::NAMESPACE_OID,
            format!("dictmon-self|{}", now.timestamp_nanos_opt().unwrap_or(0)).as_bytes(),
        ),
        policy,
        severity: Severity::Critical,
        peak_severity: None,
        cause: AlertCause::Threshold,
        opened_at: now,
        available_tokens: 0,
        capacity: 0,
        utilization_percent: 0.0,
        psp_category: PspCategory::Unknown('-'),
        message: clock.map_or_else(
            || {
                format!(
                    "{SELF_POLICY}: no successful poll of {source} for two intervals; bucket states are stale"
                )
            },
            |clock| format!("{SELF_POLICY}: bucket states are stale: {clock}"),
        ),
        resolved_at: None,
        resolution: None,
    }
}

fn self_event(alert: &Alert, event_type: AlertEventType, at: DateTime<Utc>) -> AlertEvent {
    AlertEvent {
        event_id: AlertEvent::id_for(alert.id, event_type),
        event_type,
        timestamp: at,
        endpoint_id: alert.policy.clone(),
        severity: alert.severity,
        available_tokens: 0,
        capacity: 0,
        utilization_percent: 0.0,
        recovery_eta_seconds: None,
        exhaustion_projection_seconds: None,
        psp_category: alert.psp_category,
        message: alert
            .resolution
            .clone()
            .map_or_else(|| alert.message.clone(), |r| format!("{SELF_POLICY}: {r}")),
        category_change: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::RawPolicy;
    use crate::store::StoreOptions;

    fn listing(at: DateTime<Utc>, policies: &[(&str, i64)]) -> PolicyList {
        PolicyList {
            response_time: at,
            category: "C".into(),
            correlation_id: String::new(),
            policies: policies
                .iter()
                .map(|&(name, tokens)| RawPolicy {
                    name: name.into(),
                    available_tokens: tokens,
                    capacity: 100,
                    refill_tokens: 1,
                    refill_period_secs: 60,
                })
                .collect(),
        }
    }

    /// A listing of one bucket per (name, tokens, capacity), category `category`.
    fn listing_of(at: DateTime<Utc>, category: &str, policies: &[(&str, i64, i64)]) -> PolicyList {
        let mut list = listing(at, &[]);
        list.category = category.into();
        list.policies = policies
            .iter()
            .map(|&(name, tokens, capacity)| RawPolicy {
                name: name.into(),
                available_tokens: tokens,
                capacity,
                refill_tokens: 1,
                refill_period_secs: 60,
            })
            .collect();
        list
    }

    /// The types of the outbox's events, in order.
    fn event_types(readers: &Readers) -> Vec<String> {
        readers
            .catalog
            .outbox()
            .expect("outbox")
            .into_iter()
            .map(|(_, e)| e.event_type.to_string())
            .collect()
    }

    /// A cycle as `serve` builds it (metrics on), over a store in `dir`.
    fn cycle(dir: &std::path::Path, t0: DateTime<Utc>) -> (Cycle, Readers) {
        let store = Store::open(dir, StoreOptions::default()).expect("store");
        let config = crate::monitor::backfill::serve_defaults(TimeDelta::seconds(10));
        Cycle::build(store, config, "test".into(), Some(t0)).expect("cycle")
    }

    /// Rows the store refuses (the next month's file cannot be created) wait in memory, are
    /// counted, and are written once, in order, by the first cycle the store takes again.
    #[test]
    fn rows_a_store_refuses_wait_in_memory_and_are_written_by_the_next_cycle() {
        let dir = tempfile::tempdir().expect("temp");
        // January's last seconds: the next cycles are February's, whose file does not exist.
        let t0: DateTime<Utc> = "2026-01-31T23:59:50Z".parse().expect("time");
        let (mut cycle, readers) = cycle(dir.path(), t0);
        let at = |i: i64| t0 + TimeDelta::seconds(10 * i);
        let policies = [("ENTRIES_WRITE", 90), ("KEYS_CHECK", 80)];
        let writable = || {
            let text = readers.published.metrics.render().expect("render");
            text.contains("\ndictmon_store_writable 1")
        };
        assert_eq!(
            cycle
                .process(&listing(at(0), &policies), at(0))
                .rows_written,
            2
        );
        assert!(writable());
        // A directory holds the name of February's file.
        let blocked = dir.path().join("segments/2026-02.seg");
        std::fs::create_dir(&blocked).expect("block February");
        for i in 1..=2 {
            let report = cycle.process(&listing(at(i), &policies), at(i));
            assert_eq!((report.rows_written, report.outcome), (0, "store_failed"));
            assert_eq!(cycle.pending_rows(), 2 * usize::try_from(i).expect("small"));
            assert!(!writable());
        }
        std::fs::remove_dir(&blocked).expect("unblock");
        let report = cycle.process(&listing(at(3), &policies), at(3));
        assert_eq!((report.rows_written, report.outcome), (6, "ok"));
        assert_eq!(cycle.pending_rows(), 0);
        assert!(writable());
        // Every row once, each policy's in time order.
        let reader = StoreReader::open(dir.path()).expect("reader");
        let mut rows: Vec<(String, DateTime<Utc>)> = Vec::new();
        let damage = reader
            .scan(&crate::store::Filter::default(), &mut |r| {
                rows.push((r.policy.to_string(), r.sample.at));
            })
            .expect("scan");
        assert!(damage.is_empty(), "{damage:?}");
        rows.sort();
        let expected: Vec<(String, DateTime<Utc>)> = ["ENTRIES_WRITE", "KEYS_CHECK"]
            .iter()
            .flat_map(|p| (0..=3).map(move |i| ((*p).to_owned(), at(i))))
            .collect();
        assert_eq!(rows, expected);
    }

    #[test]
    fn a_policy_missing_from_three_listings_leaves_with_its_alert_resolved() {
        let dir = tempfile::tempdir().expect("temp");
        let t0: DateTime<Utc> = "2026-12-06T10:00:00Z".parse().expect("time");
        let (mut cycle, readers) = cycle(dir.path(), t0);
        let at = |i: i64| t0 + TimeDelta::seconds(10 * i);
        // GONE is low (an alert opens), KEPT is fine.
        cycle.process(&listing(at(0), &[("GONE", 5), ("KEPT", 90)]), at(0));
        let open = |r: &Readers| r.published.open_alerts.load().len();
        assert_eq!(open(&readers), 1);
        let metrics = || readers.published.metrics.render().expect("render");
        assert!(metrics().contains("dictmon_alert_open{endpoint_id=\"GONE\""));
        // Missing twice: still there.
        for i in 1..=2 {
            cycle.process(&listing(at(i), &[("KEPT", 90)]), at(i));
            assert_eq!(readers.published.latest.load().len(), 2, "listing {i}");
        }
        // Listed again, then missing three times: gone.
        cycle.process(&listing(at(3), &[("GONE", 5), ("KEPT", 90)]), at(3));
        for i in 4..=5 {
            cycle.process(&listing(at(i), &[("KEPT", 90)]), at(i));
            assert_eq!(readers.published.latest.load().len(), 2, "listing {i}");
        }
        cycle.process(&listing(at(6), &[("KEPT", 90)]), at(6));
        let latest = readers.published.latest.load();
        let names: Vec<&str> = latest.iter().map(|v| v.record.policy.as_str()).collect();
        assert_eq!(names, ["KEPT"]);
        assert_eq!(open(&readers), 0);
        let text = metrics();
        // Only its counters stay: the history of what happened.
        let series: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("endpoint_id=\"GONE\"") && !l.contains("_total{"))
            .collect();
        assert!(series.is_empty(), "{series:?}");
        assert!(text.contains("dict_rate_limit_available_tokens{endpoint_id=\"KEPT\""));
        // The alert is resolved, saying why, at the listing that settled it.
        let alerts = readers.catalog.alerts().expect("alerts");
        let gone = alerts
            .iter()
            .find(|a| a.policy.as_str() == "GONE")
            .expect("GONE's alert");
        assert_eq!(gone.resolved_at, Some(at(6)));
        assert_eq!(
            gone.resolution.as_deref(),
            Some("the policy left DICT's listing")
        );
        // The catalog knows it left: `status` (what it reads) and a restart leave it out.
        let status = || {
            let view = crate::store::StoreReader::open(dir.path())
                .and_then(|r| Ok(r.catalog()?.status()?))
                .expect("status");
            let latest: Vec<String> = view.latest.iter().map(|r| r.policy.to_string()).collect();
            (view.policy_names, latest)
        };
        assert_eq!(status(), (vec!["KEPT".into()], vec!["KEPT".into()]));
        let catalog = &readers.catalog;
        let record = catalog.policies().expect("policies");
        let gone = record.iter().find(|p| p.policy.name.as_str() == "GONE");
        assert_eq!(gone.and_then(|p| p.left_at), Some(at(6)));
        drop(cycle.into_store());
        drop(readers);
        let (mut cycle, readers) = super::tests::cycle(dir.path(), at(7));
        let names = |r: &Readers| -> Vec<String> {
            let latest = r.published.latest.load();
            latest.iter().map(|v| v.record.policy.to_string()).collect()
        };
        assert_eq!(names(&readers), ["KEPT"], "a restart brought it back");
        // Back in the listing, it is a policy again, in the catalog too.
        cycle.process(&listing(at(7), &[("GONE", 50), ("KEPT", 90)]), at(7));
        assert_eq!(names(&readers), ["GONE", "KEPT"]);
        let text = readers.published.metrics.render().expect("render");
        assert!(text.contains("dict_rate_limit_available_tokens{endpoint_id=\"GONE\""));
        let both: Vec<String> = vec!["GONE".into(), "KEPT".into()];
        assert_eq!(status(), (both.clone(), both));
        let record = readers.catalog.policies().expect("policies");
        assert!(record.iter().all(|p| p.left_at.is_none()), "{record:?}");
    }

    #[test]
    fn alert_counters_exist_at_zero_and_thresholds_are_exported() {
        let dir = tempfile::tempdir().expect("temp");
        let t0: DateTime<Utc> = "2026-12-06T10:00:00Z".parse().expect("time");
        let (mut cycle, readers) = cycle(dir.path(), t0);
        cycle.process(&listing(t0, &[("KEPT", 90)]), t0);
        let text = readers.published.metrics.render().expect("render");
        for line in [
            "dict_rate_limit_alerts_created_total{endpoint_id=\"KEPT\",psp_category=\"C\",severity=\"CRITICAL\"} 0",
            "dict_rate_limit_alerts_resolved_total{endpoint_id=\"KEPT\",psp_category=\"C\",severity=\"WARNING\"} 0",
            "dictmon_alert_threshold_percent{endpoint_id=\"KEPT\",severity=\"warning\"} 20",
            "dictmon_alert_threshold_percent{endpoint_id=\"KEPT\",severity=\"critical\"} 10",
            "dict_rate_limit_refill_tokens{endpoint_id=\"KEPT\",psp_category=\"C\"} 1",
            "dict_rate_limit_refill_period_seconds{endpoint_id=\"KEPT\",psp_category=\"C\"} 60",
            "dict_rate_limit_last_sample_timestamp_seconds{endpoint_id=\"KEPT\",psp_category=\"C\"} 1796551200",
        ] {
            assert!(text.contains(line), "no {line:?} in\n{text}");
        }
    }

    /// A listing of a case: seconds after t0, category, buckets (name, tokens, capacity).
    type Listing = (i64, &'static str, Vec<(&'static str, i64, i64)>);

    /// One case: listings, then what must hold.
    struct Case {
        name: &'static str,
        listings: Vec<Listing>,
        /// The event types of the outbox, in order (`created`, `updated`, …: the suffix).
        events: Vec<&'static str>,
        /// Series of /metrics that must be there (substrings of a line).
        metrics: Vec<&'static str>,
        /// Rows stored.
        rows: usize,
    }

    #[test]
    fn listings_through_the_cycle_give_the_rows_events_and_metrics_expected() {
        let cases = vec![
            Case {
                name: "an incident: WARNING, escalated to CRITICAL, recovered",
                listings: vec![
                    (0, "C", vec![("P", 90, 100)]),
                    (10, "C", vec![("P", 15, 100)]),
                    (20, "C", vec![("P", 5, 100)]),
                    (30, "C", vec![("P", 95, 100)]),
                ],
                events: vec![
                    "rate_limit.alert.created",
                    "rate_limit.alert.updated",
                    "rate_limit.alert.resolved",
                ],
                metrics: vec![
                    "dict_rate_limit_alerts_created_total{endpoint_id=\"P\",psp_category=\"C\",severity=\"WARNING\"} 1",
                    "dict_rate_limit_alerts_updated_total{endpoint_id=\"P\",psp_category=\"C\",severity=\"CRITICAL\"} 1",
                    "dict_rate_limit_alerts_resolved_total{endpoint_id=\"P\",psp_category=\"C\",severity=\"CRITICAL\"} 1",
                ],
                rows: 4,
            },
            Case {
                name: "bad samples are refused, counted and not stored; the good one is",
                listings: vec![(
                    0,
                    "C",
                    vec![("ZERO", 0, 0), ("OVER", 200, 100), ("GOOD", 50, 100)],
                )],
                events: vec![],
                metrics: vec![
                    "dictmon_rejected_samples_total{reason=\"non_positive_capacity\"} 1",
                    "dictmon_rejected_samples_total{reason=\"tokens_above_capacity\"} 1",
                ],
                rows: 1,
            },
            Case {
                name: "a listing replayed (same ResponseTime) stores and alerts nothing twice",
                listings: vec![(0, "C", vec![("P", 5, 100)]), (0, "C", vec![("P", 5, 100)])],
                events: vec!["rate_limit.alert.created"],
                metrics: vec!["dictmon_rejected_samples_total{reason=\"replayed\"} 1"],
                rows: 1,
            },
            Case {
                name: "DICT moves the participant from C to B: one category event",
                listings: vec![
                    (0, "C", vec![("P", 90, 100)]),
                    (10, "B", vec![("P", 90, 100)]),
                ],
                events: vec!["rate_limit.category.changed"],
                metrics: vec![
                    "dict_rate_limit_category_changes_total{psp_category=\"B\",severity=\"INFO\"} 1",
                ],
                rows: 2,
            },
        ];
        let t0: DateTime<Utc> = "2026-12-06T10:00:00Z".parse().expect("time");
        for case in cases {
            let dir = tempfile::tempdir().expect("temp");
            let (mut cycle, readers) = cycle(dir.path(), t0);
            let mut reported = CycleReport::default();
            for (secs, category, buckets) in &case.listings {
                let at = t0 + TimeDelta::seconds(*secs);
                let report = cycle.process(&listing_of(at, category, buckets), at);
                assert_eq!(report.outcome, "ok", "{}", case.name);
                assert_eq!(report.accepted + report.rejected, buckets.len());
                reported.accepted += report.accepted;
                reported.alert_events += report.alert_events;
                reported.rows_written += report.rows_written;
            }
            // What the cycles said they did (their trace spans' attributes) is what they did.
            assert_eq!(reported.accepted, case.rows, "{}", case.name);
            assert_eq!(reported.rows_written, case.rows, "{}", case.name);
            assert_eq!(reported.alert_events, case.events.len(), "{}", case.name);
            assert_eq!(event_types(&readers), case.events, "{}", case.name);
            let text = readers.published.metrics.render().expect("render");
            for m in &case.metrics {
                assert!(text.contains(m), "{}: no {m:?} in\n{text}", case.name);
            }
            let store = cycle.into_store();
            let mut rows = 0;
            crate::store::StoreReader::open(store.dir())
                .expect("reader")
                .scan(&crate::store::Filter::default(), &mut |_| rows += 1)
                .expect("scan");
            assert_eq!(rows, case.rows, "{}", case.name);
        }
    }

    #[test]
    fn a_source_silent_for_two_intervals_opens_the_staleness_alert_and_an_answer_resolves_it() {
        let dir = tempfile::tempdir().expect("temp");
        // Freshness is the local clock's business; DICT's time must not lead it.
        let now = Utc::now();
        let t0 = now - TimeDelta::seconds(60);
        let (mut cycle, readers) = cycle(dir.path(), t0);
        cycle.process(&listing(t0, &[("P", 90)]), now);
        cycle.check_staleness(now);
        assert!(readers.published.open_alerts.load().is_empty());
        // The interval is 10 s: 25 s without an answer is stale.
        let later = now + TimeDelta::seconds(25);
        cycle.check_staleness(later);
        let open = readers.published.open_alerts.load();
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].policy.as_str(), SELF_POLICY);
        assert!(
            readers
                .published
                .metrics
                .render()
                .expect("render")
                .contains("dictmon_source_fresh 0")
        );
        // The next answer resolves it.
        let answer = later + TimeDelta::seconds(1);
        cycle.process(&listing(t0 + TimeDelta::seconds(30), &[("P", 90)]), answer);
        cycle.check_staleness(answer);
        assert!(readers.published.open_alerts.load().is_empty());
        assert_eq!(
            event_types(&readers),
            ["rate_limit.alert.created", "rate_limit.alert.resolved"]
        );
    }
}
