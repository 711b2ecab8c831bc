//! The Prometheus registry and every metric dictmon exports.
//!
//! May use: `domain`, prometheus.
//!
//! Names of the `dict_rate_limit_*` metrics are the legacy system's (its dashboards use them):
//! `endpoint_id` is the policy name. dictmon's own health is `dictmon_*`. Label values are
//! bounded: policy names come from DICT, reasons and kinds from fixed enums.
//!
//! Conventions: a recovery ETA or exhaustion projection that is "never" is exported as `+Inf`
//! (leave those series out of an aggregate with `… < +Inf`, e.g.
//! `min(dict_rate_limit_exhaustion_projection_seconds < +Inf)`); an unknown consumption rate
//! (first sample of a policy) is not exported. When a policy's category changes, its series
//! under the old category are removed; when it leaves DICT's listing ([`Metrics::forget`]),
//! all its gauges go. Alert counters exist at zero from a policy's first sample.
//!
//! Every metric is a reading. The legacy's `dict_rate_limit_error_404_rate` is not exported:
//! DICT's policy API does not report look-ups or their 404s, so dictmon has nothing to measure
//! it from, and a constant 0 would read as "healthy" forever. The 404 penalties still show up
//! where they act, as tokens leaving the anti-scan buckets.

mod published;

pub use published::{NOTICE_WINDOW, PolicyView, Published};

use std::collections::HashMap;
use std::sync::Mutex;

use prometheus::core::Collector;
use prometheus::{
    Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::domain::{
    Alert, AlertEvent, AlertEventType, PolicyName, PspCategory, RejectReason, SELF_POLICY,
    Severity, StateRecord, Thresholds,
};

const POLICY_LABELS: [&str; 2] = ["endpoint_id", "psp_category"];
const ALERT_LABELS: [&str; 3] = ["endpoint_id", "severity", "psp_category"];

/// Every metric, registered in one registry.
pub struct Metrics {
    registry: Registry,
    available: GaugeVec,
    capacity: GaugeVec,
    utilization: GaugeVec,
    consumption: GaugeVec,
    recovery_eta: GaugeVec,
    exhaustion: GaugeVec,
    refill_tokens: GaugeVec,
    refill_period: GaugeVec,
    consumption_per_second: GaugeVec,
    last_sample: GaugeVec,
    alert_open: IntGaugeVec,
    thresholds: GaugeVec,
    alerts_created: IntCounterVec,
    alerts_resolved: IntCounterVec,
    alerts_updated: IntCounterVec,
    category_changes: IntCounterVec,
    /// `dict_rate_limit_monitoring_duration_seconds{operation}`: `fetch`, `process`, `persist`,
    /// `cycle`.
    pub duration: HistogramVec,
    /// `dictmon_cycle_duration_seconds`: one whole poll cycle.
    pub cycle_duration: Histogram,
    /// Unix time of the last successful poll.
    pub last_success: Gauge,
    /// 1 while the source answered within two intervals.
    pub source_fresh: IntGauge,
    /// The wait the source last asked for (`Retry-After`), seconds; 0 after a success.
    pub source_retry_after: IntGauge,
    /// 1 while the last store write succeeded.
    pub store_writable: IntGauge,
    /// Records kept in memory while the store refuses writes.
    pub store_pending: IntGauge,
    /// Records dropped from memory because the store refused writes for too long.
    pub store_dropped: IntCounter,
    /// Catalog changes kept in memory while the catalog refuses writes.
    pub catalog_pending: IntGauge,
    /// Alert events dropped from memory because the catalog refused writes for too long.
    pub catalog_dropped_events: IntCounter,
    /// I/O errors after which the catalog was closed, to be opened again.
    pub catalog_io_errors: IntCounter,
    poll_errors: IntCounterVec,
    request_errors: IntCounterVec,
    rejected: IntCounterVec,
    /// Bytes of segment files.
    pub store_bytes: IntGauge,
    /// History pages and CSV downloads being served (read at each scrape).
    pub http_heavy_requests: IntGauge,
    /// Number of segment files.
    pub store_segments: IntGauge,
    /// Bytes of live blocks not yet compacted.
    pub store_live_bytes: IntGauge,
    /// Segments found damaged.
    pub store_damaged_segments: IntGauge,
    /// `dictmon_store_compactions_total{outcome}`: compactions merged or failed.
    pub store_compactions: IntCounterVec,
    /// `dictmon_outbox_backlog{sink}`: events a sink has not acknowledged.
    pub outbox_backlog: IntGaugeVec,
    /// `dictmon_events_delivered_total{sink}`.
    pub events_delivered: IntCounterVec,
    /// `dictmon_delivery_failures_total{sink, kind}`.
    pub delivery_failures: IntCounterVec,
    categories: Mutex<HashMap<String, String>>,
    /// The label values of `dictmon_alert_open` set now.
    open_alerts: Mutex<Vec<[String; 3]>>,
}

/// Registers a collector made from constant names, help texts and labels: neither making nor
/// registering it can fail but through a bug (a malformed or duplicate name), which every
/// test that builds [`Metrics`] would show.
fn registered<C: Collector + Clone + 'static>(
    registry: &Registry,
    made: prometheus::Result<C>,
) -> C {
    let c = made.unwrap_or_else(|e| unreachable!("{e}"));
    registry
        .register(Box::new(c.clone()))
        .unwrap_or_else(|e| unreachable!("{e}"));
    c
}

fn gauge(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    registered(registry, GaugeVec::new(Opts::new(name, help), labels))
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    registered(registry, IntCounterVec::new(Opts::new(name, help), labels))
}

fn int_gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    registered(registry, IntGaugeVec::new(Opts::new(name, help), labels))
}

fn int_counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    registered(registry, IntCounter::new(name, help))
}

fn int_gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    registered(registry, IntGauge::new(name, help))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric. Names and labels are constants, so registration cannot fail.
    #[expect(clippy::too_many_lines, reason = "one declaration per metric")]
    pub fn new() -> Self {
        let r = Registry::new();
        let p = &POLICY_LABELS;
        let buckets = vec![
            0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
        ];
        let duration = registered(
            &r,
            HistogramVec::new(
                HistogramOpts::new(
                    "dict_rate_limit_monitoring_duration_seconds",
                    "Time spent per monitoring operation (fetch, process, persist, cycle); the legacy's name, kept for its dashboards (dictmon_cycle_duration_seconds is the whole cycle).",
                )
                .buckets(buckets.clone()),
                &["operation"],
            ),
        );
        let cycle_duration = registered(
            &r,
            Histogram::with_opts(
                HistogramOpts::new(
                    "dictmon_cycle_duration_seconds",
                    "Time of one poll cycle, from the request to the source to the stored and published result (retries included).",
                )
                .buckets(buckets),
            ),
        );
        let last_success = registered(
            &r,
            Gauge::new(
                "dictmon_last_successful_poll_timestamp_seconds",
                "Unix time of the last poll that returned a listing.",
            ),
        );
        let build_info = registered(
            &r,
            IntGaugeVec::new(
                Opts::new(
                    "dictmon_build_info",
                    "Always 1; the labels say which dictmon this is: version, the source's git revision (unknown when built outside a git checkout) and the compiler.",
                ),
                &["version", "revision", "rustc"],
            ),
        );
        build_info
            .with_label_values(&[
                env!("CARGO_PKG_VERSION"),
                env!("DICTMON_REVISION"),
                env!("DICTMON_RUSTC"),
            ])
            .set(1);
        // process_cpu_seconds_total, process_resident_memory_bytes, process_open_fds,
        // process_start_time_seconds …, read from /proc at each scrape.
        r.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))
        .unwrap_or_else(|e| unreachable!("{e}"));
        let m = Self {
            available: gauge(
                &r,
                "dict_rate_limit_available_tokens",
                "Tokens available in the bucket (negative after a DICT penalty).",
                p,
            ),
            capacity: gauge(
                &r,
                "dict_rate_limit_capacity",
                "Most tokens the bucket holds.",
                p,
            ),
            utilization: gauge(
                &r,
                "dict_rate_limit_utilization_percent",
                "Share of the bucket used: 100 * (capacity - available) / capacity.",
                p,
            ),
            consumption: gauge(
                &r,
                "dict_rate_limit_consumption_rate_per_minute",
                "Tokens consumed per minute, net of refill, smoothed over the rate window.",
                p,
            ),
            recovery_eta: gauge(
                &r,
                "dict_rate_limit_recovery_eta_seconds",
                "Seconds until the bucket is full at the current net rate; +Inf when draining.",
                p,
            ),
            exhaustion: gauge(
                &r,
                "dict_rate_limit_exhaustion_projection_seconds",
                "Seconds until the bucket is empty at the current net rate; +Inf when not draining.",
                p,
            ),
            refill_tokens: gauge(
                &r,
                "dict_rate_limit_refill_tokens",
                "Tokens added to the bucket each refill period.",
                p,
            ),
            refill_period: gauge(
                &r,
                "dict_rate_limit_refill_period_seconds",
                "Seconds between two refills of the bucket.",
                p,
            ),
            consumption_per_second: gauge(
                &r,
                "dict_rate_limit_consumption_tokens_per_second",
                "dict_rate_limit_consumption_rate_per_minute in base units: tokens consumed per second, net of refill, smoothed over the rate window.",
                p,
            ),
            last_sample: gauge(
                &r,
                "dict_rate_limit_last_sample_timestamp_seconds",
                "DICT time (Unix seconds) of the policy's latest accepted sample: how fresh its other series are.",
                p,
            ),
            alert_open: int_gauge_vec(
                &r,
                "dictmon_alert_open",
                "1 while dictmon's alert on the policy is open at this severity (lower case), with its hysteresis and forecast; the series goes when the alert resolves or changes severity. endpoint_id=\"DICTMON_SOURCE\" is the source itself going stale.",
                &ALERT_LABELS,
            ),
            thresholds: gauge(
                &r,
                "dictmon_alert_threshold_percent",
                "The remaining % at or below which dictmon opens an alert of this severity on the policy (the configuration in force).",
                &["endpoint_id", "severity"],
            ),
            alerts_created: counter(
                &r,
                "dict_rate_limit_alerts_created_total",
                "Alerts opened.",
                &ALERT_LABELS,
            ),
            alerts_resolved: counter(
                &r,
                "dict_rate_limit_alerts_resolved_total",
                "Alerts resolved.",
                &ALERT_LABELS,
            ),
            alerts_updated: counter(
                &r,
                "dict_rate_limit_alerts_updated_total",
                "Open alerts whose severity changed (escalated or de-escalated), by the new severity.",
                &ALERT_LABELS,
            ),
            category_changes: counter(
                &r,
                "dict_rate_limit_category_changes_total",
                "Moves of the participant to another category seen in DICT's answers, by the new category (severity WARNING: down, INFO: up).",
                &["severity", "psp_category"],
            ),
            duration,
            cycle_duration,
            last_success,
            source_fresh: int_gauge(
                &r,
                "dictmon_source_fresh",
                "1 while the source answered within two poll intervals, else 0.",
            ),
            source_retry_after: int_gauge(
                &r,
                "dictmon_source_retry_after_seconds",
                "The wait the source last asked for (Retry-After of a 429 or 503), honoured before the next poll; 0 once a poll succeeds.",
            ),
            store_writable: int_gauge(
                &r,
                "dictmon_store_writable",
                "1 while the last write to the store succeeded, else 0.",
            ),
            store_pending: int_gauge(
                &r,
                "dictmon_store_pending_records",
                "Snapshot records kept in memory because the store refused them (disk full, read-only, I/O error); written with the next cycle that succeeds. At most 100000.",
            ),
            store_dropped: int_counter(
                &r,
                "dictmon_store_dropped_records_total",
                "Snapshot records dropped, oldest first, because the store refused writes for longer than memory allows (dictmon_store_pending_records at its bound).",
            ),
            catalog_pending: int_gauge(
                &r,
                "dictmon_catalog_pending_changes",
                "Catalog changes (policy sightings, alert states, alert events) kept in memory because the catalog refused them (disk full, I/O error); written with the next cycle that succeeds. Sightings and states are merged per policy and alert; at most 10000 events.",
            ),
            catalog_dropped_events: int_counter(
                &r,
                "dictmon_catalog_dropped_events_total",
                "Alert events dropped, oldest first, because the catalog refused writes for longer than memory allows (10000 events pending).",
            ),
            catalog_io_errors: int_counter(
                &r,
                "dictmon_catalog_io_errors_total",
                "I/O errors of the catalog (catalog.redb); after each, the catalog is closed and opened again at the next write.",
            ),
            poll_errors: counter(
                &r,
                "dictmon_poll_errors_total",
                "Polls that failed (every retry within the interval failed, or the answer could not be used), by kind of the last error.",
                &["kind"],
            ),
            request_errors: counter(
                &r,
                "dictmon_source_request_errors_total",
                "Failed requests to the source, retries included, by kind of error.",
                &["kind"],
            ),
            rejected: counter(
                &r,
                "dictmon_rejected_samples_total",
                "Samples refused by validation, by reason (never stored).",
                &["reason"],
            ),
            store_bytes: int_gauge(
                &r,
                "dictmon_store_bytes",
                "Bytes of segment files in the data directory.",
            ),
            http_heavy_requests: int_gauge(
                &r,
                "dictmon_http_heavy_requests",
                "History pages, CSV downloads and whole alert histories being served now (at most 2 at once; more wait up to 20 s, then get 503).",
            ),
            store_segments: int_gauge(
                &r,
                "dictmon_store_segments",
                "Segment files in the data directory.",
            ),
            store_live_bytes: int_gauge(
                &r,
                "dictmon_store_live_bytes",
                "Bytes of live blocks (one per poll cycle) that compaction has not merged yet; falls back after each closed hour, or every 65536 rows.",
            ),
            store_damaged_segments: int_gauge(
                &r,
                "dictmon_store_damaged_segments",
                "Segment files found damaged (checksums, unreadable sectors): still read where readable and appended to, never rewritten. Run dictmon verify.",
            ),
            store_compactions: counter(
                &r,
                "dictmon_store_compactions_total",
                "Compactions of the segments by the background compactor: merged (a run of blocks rewritten as one sealed block) or failed (the segment left as it was; see the log).",
                &["outcome"],
            ),
            outbox_backlog: int_gauge_vec(
                &r,
                "dictmon_outbox_backlog",
                "Alert events in the outbox that the sink has not acknowledged.",
                &["sink"],
            ),
            events_delivered: counter(
                &r,
                "dictmon_events_delivered_total",
                "Alert events the sink acknowledged.",
                &["sink"],
            ),
            delivery_failures: counter(
                &r,
                "dictmon_delivery_failures_total",
                "Failed delivery attempts to the sink, by kind (unreachable, timeout, tls, rejected, unavailable, io).",
                &["sink", "kind"],
            ),
            categories: Mutex::new(HashMap::new()),
            open_alerts: Mutex::new(Vec::new()),
            registry: r,
        };
        for reason in RejectReason::ALL {
            m.rejected.with_label_values(&[reason.label()]);
        }
        // dictmon's own source alert: CRITICAL, of no category ("-"), at zero from the start.
        m.alert_counters_of(&[SELF_POLICY, Severity::Critical.as_str(), "-"]);
        // A category change is counted by the new category: every one at zero from the start.
        for category in PspCategory::KNOWN {
            for severity in [Severity::Warning, Severity::Info] {
                m.category_changes
                    .with_label_values(&[severity.as_str(), &category.to_string()]);
            }
        }
        m
    }

    /// Publishes the gauges of a cycle's stored snapshots; `thresholds` gives a policy's
    /// thresholds, exported when it is first seen.
    pub fn observe_cycle(
        &self,
        records: &[StateRecord],
        thresholds: &dyn Fn(&PolicyName) -> Thresholds,
    ) {
        // The monitor alone calls this, once a cycle: the lock is never contended.
        let Ok(mut known) = self.categories.lock() else {
            return;
        };
        for r in records {
            self.observe(&mut known, r, thresholds);
        }
    }

    fn observe(
        &self,
        known: &mut HashMap<String, String>,
        r: &StateRecord,
        thresholds: &dyn Fn(&PolicyName) -> Thresholds,
    ) {
        let name = r.policy.as_str();
        let mut letter = [0_u8; 4];
        let category: &str = r.sample.category.as_char().encode_utf8(&mut letter);
        match known.get_mut(name) {
            Some(old) if old != category => {
                for g in self.policy_gauges() {
                    let _ = g.remove_label_values(&[name, old]);
                }
                self.alert_counters_at_zero(name, category);
                category.clone_into(old);
            }
            Some(_) => {}
            None => {
                // A policy newly seen: its counters at zero, the thresholds in force.
                self.alert_counters_at_zero(name, category);
                self.policy_thresholds(name, &thresholds(&r.policy));
                known.insert(name.to_owned(), category.to_owned());
            }
        }
        let labels = [name, category];
        let e = &r.enrichment;
        self.refill_tokens
            .with_label_values(&labels)
            .set(r.sample.bucket.refill_tokens as f64);
        self.refill_period
            .with_label_values(&labels)
            .set(r.sample.bucket.refill_period_secs as f64);
        self.last_sample
            .with_label_values(&labels)
            .set(r.sample.at.timestamp_millis() as f64 / 1000.0);
        match e.consumption_rate_per_minute {
            Some(rate) => self
                .consumption_per_second
                .with_label_values(&labels)
                .set(rate / 60.0),
            None => {
                let _ = self.consumption_per_second.remove_label_values(&labels);
            }
        }
        self.available
            .with_label_values(&labels)
            .set(r.sample.available_tokens as f64);
        self.capacity
            .with_label_values(&labels)
            .set(r.sample.bucket.capacity as f64);
        self.utilization
            .with_label_values(&labels)
            .set(e.utilization_percent);
        match e.consumption_rate_per_minute {
            Some(rate) => self.consumption.with_label_values(&labels).set(rate),
            None => {
                let _ = self.consumption.remove_label_values(&labels);
            }
        }
        self.recovery_eta
            .with_label_values(&labels)
            .set(e.recovery_eta_seconds.unwrap_or(f64::INFINITY));
        self.exhaustion
            .with_label_values(&labels)
            .set(e.exhaustion_projection_seconds.unwrap_or(f64::INFINITY));
    }

    fn policy_gauges(&self) -> [&GaugeVec; 10] {
        [
            &self.available,
            &self.capacity,
            &self.utilization,
            &self.consumption,
            &self.recovery_eta,
            &self.exhaustion,
            &self.refill_tokens,
            &self.refill_period,
            &self.consumption_per_second,
            &self.last_sample,
        ]
    }

    /// The alert counters of a policy newly seen (or seen in a new category), at zero, so that
    /// `increase()` sees its first alert.
    fn alert_counters_at_zero(&self, name: &str, category: &str) {
        for severity in [Severity::Warning, Severity::Critical] {
            self.alert_counters_of(&[name, severity.as_str(), category]);
        }
    }

    /// The created, resolved and updated counters of `labels` (policy, severity, category).
    fn alert_counters_of(&self, labels: &[&str; 3]) {
        for c in [
            &self.alerts_created,
            &self.alerts_resolved,
            &self.alerts_updated,
        ] {
            c.with_label_values(labels);
        }
    }

    /// The thresholds in force for a policy.
    fn policy_thresholds(&self, name: &str, t: &Thresholds) {
        for (severity, percent) in [
            ("warning", t.warning_percent),
            ("critical", t.critical_percent),
        ] {
            self.thresholds
                .with_label_values(&[name, severity])
                .set(percent);
        }
    }

    /// `dictmon_alert_open`: exactly the alerts in `open`.
    pub fn open_alerts(&self, open: &[Alert]) {
        let now: Vec<[String; 3]> = open
            .iter()
            .map(|a| {
                [
                    a.policy.to_string(),
                    a.severity.as_str().to_ascii_lowercase(),
                    a.psp_category.to_string(),
                ]
            })
            .collect();
        let Ok(mut set) = self.open_alerts.lock() else {
            return;
        };
        for gone in set.iter().filter(|l| !now.contains(l)) {
            let _ = self
                .alert_open
                .remove_label_values(&[&gone[0], &gone[1], &gone[2]]);
        }
        for l in &now {
            self.alert_open
                .with_label_values(&[&l[0], &l[1], &l[2]])
                .set(1);
        }
        *set = now;
    }

    /// A policy that left DICT's listing: its gauges and thresholds go (its counters stay, the
    /// history of what happened).
    pub fn forget(&self, name: &str) {
        let category = self
            .categories
            .lock()
            .ok()
            .and_then(|mut known| known.remove(name));
        if let Some(category) = category {
            for g in self.policy_gauges() {
                let _ = g.remove_label_values(&[name, &category]);
            }
        }
        for severity in ["warning", "critical"] {
            let _ = self.thresholds.remove_label_values(&[name, severity]);
        }
    }

    /// Counts an alert event.
    pub fn alert_event(&self, e: &AlertEvent) {
        let labels = [
            e.endpoint_id.as_str(),
            e.severity.as_str(),
            &e.psp_category.to_string(),
        ];
        match e.event_type {
            AlertEventType::Created => self.alerts_created.with_label_values(&labels).inc(),
            AlertEventType::Updated => self.alerts_updated.with_label_values(&labels).inc(),
            AlertEventType::Resolved => self.alerts_resolved.with_label_values(&labels).inc(),
            AlertEventType::CategoryChanged => self
                .category_changes
                .with_label_values(&[labels[1], labels[2]])
                .inc(),
        }
    }

    /// Exports every poll-error kind at zero, so that rates work before the first error.
    pub fn register_poll_error_kinds(&self, kinds: &[&str]) {
        for kind in kinds {
            self.poll_errors.with_label_values(&[kind]);
            self.request_errors.with_label_values(&[kind]);
        }
    }

    /// Counts a failed poll.
    pub fn poll_error(&self, kind: &str) {
        self.poll_errors.with_label_values(&[kind]).inc();
    }

    /// Counts a failed request to the source (a poll retries several).
    pub fn request_error(&self, kind: &str) {
        self.request_errors.with_label_values(&[kind]).inc();
    }

    /// Counts a refused sample.
    pub fn rejected(&self, reason: RejectReason) {
        self.rejected.with_label_values(&[reason.label()]).inc();
    }

    /// Adds a collector made elsewhere (the OTLP span counters) to `/metrics`.
    pub fn register(&self, collector: Box<dyn Collector>) -> prometheus::Result<()> {
        self.registry.register(collector)
    }

    /// The text exposition format; an error (a family the encoder refuses) instead of a
    /// partial or empty page a scraper would take as every series gone.
    pub fn render(&self) -> prometheus::Result<String> {
        TextEncoder::new().encode_to_string(&self.registry.gather())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::format::tests::record;

    fn lines_of(m: &Metrics, needle: &str) -> Vec<String> {
        m.render()
            .expect("render")
            .lines()
            .filter(|l| !l.starts_with('#') && l.contains(needle))
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn a_category_change_moves_every_series_of_the_policy() {
        let m = Metrics::new();
        let mut r = record("P", 0, 500);
        m.observe_cycle(std::slice::from_ref(&r), &|_| Thresholds::default());
        r.sample.category = crate::domain::PspCategory::B;
        m.observe_cycle(&[r], &|_| Thresholds::default());
        let gauges: Vec<String> = lines_of(&m, "endpoint_id=\"P\",psp_category")
            .into_iter()
            .filter(|l| !l.contains("_total{"))
            .collect();
        assert!(!gauges.is_empty());
        assert!(
            gauges.iter().all(|l| l.contains("psp_category=\"B\"")),
            "{gauges:#?}"
        );
        // The counters exist at zero under both categories (history stays), and dictmon's own
        // source alert's once, as it is counted: CRITICAL, category "-".
        assert_eq!(
            lines_of(&m, "dict_rate_limit_alerts_created_total{endpoint_id=\"P\"").len(),
            4
        );
        assert_eq!(
            lines_of(
                &m,
                "dict_rate_limit_alerts_created_total{endpoint_id=\"DICTMON_SOURCE\""
            ),
            [
                "dict_rate_limit_alerts_created_total{endpoint_id=\"DICTMON_SOURCE\",psp_category=\"-\",severity=\"CRITICAL\"} 0"
            ]
        );
    }

    #[test]
    fn open_alert_series_follow_the_open_alerts_exactly() {
        let m = Metrics::new();
        let alert = |policy: &str, severity: Severity| crate::domain::Alert {
            id: uuid::Uuid::nil(),
            policy: crate::domain::PolicyName::new(policy).expect("name"),
            severity,
            peak_severity: None,
            cause: crate::domain::AlertCause::Threshold,
            opened_at: chrono::DateTime::UNIX_EPOCH,
            available_tokens: 1,
            capacity: 100,
            utilization_percent: 99.0,
            psp_category: crate::domain::PspCategory::C,
            message: String::new(),
            resolved_at: None,
            resolution: None,
        };
        m.open_alerts(&[
            alert("A", Severity::Warning),
            alert("B", Severity::Critical),
        ]);
        assert_eq!(lines_of(&m, "dictmon_alert_open{").len(), 2);
        // A escalates, B resolves.
        m.open_alerts(&[alert("A", Severity::Critical)]);
        assert_eq!(
            lines_of(&m, "dictmon_alert_open{"),
            ["dictmon_alert_open{endpoint_id=\"A\",psp_category=\"C\",severity=\"critical\"} 1"]
        );
        m.open_alerts(&[]);
        assert!(lines_of(&m, "dictmon_alert_open{").is_empty());
    }

    #[test]
    fn a_forgotten_policy_keeps_only_its_counters() {
        let m = Metrics::new();
        m.observe_cycle(&[record("GONE", 0, 500), record("KEPT", 0, 500)], &|_| {
            Thresholds::default()
        });
        assert!(!lines_of(&m, "dictmon_alert_threshold_percent{endpoint_id=\"GONE\"").is_empty());
        m.forget("GONE");
        let left = lines_of(&m, "endpoint_id=\"GONE\"");
        assert!(left.iter().all(|l| l.contains("_total{")), "{left:#?}");
        assert!(!lines_of(&m, "dict_rate_limit_available_tokens{endpoint_id=\"KEPT\"").is_empty());
    }
}
