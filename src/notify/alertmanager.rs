//! The Prometheus Alertmanager sink (API v2, `POST /api/v2/alerts`). An alert is identified by
//! its labels `alertname="DictRateLimit"`, `endpoint_id`, `severity` (lower case, as
//! Prometheus rules write it), `psp_category`, and the configured `instance` and `job` (what
//! Prometheus calls this dictmon, so that the bucket rules' mirror of the same alert —
//! `packaging/prometheus-rules-buckets.yml` — has the very same labels); a
//! `created` event posts it firing, a `resolved` event posts it with `endsAt`. An `updated`
//! event (dictmon's alert changed severity) ends the alert under the old `severity` label and
//! fires it under the new one, since Alertmanager's identity of an alert is its labels. A
//! `category.changed` event fires a notice (`endpoint_id="PSP_CATEGORY"`) for
//! [`NOTICE_LIFETIME`], not re-sent. Open alerts are
//! re-sent every `resend_interval` with `endsAt` four intervals ahead (as Prometheus does), so
//! Alertmanager keeps them active while dictmon runs and lets them expire if it stops.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

use super::http::{HttpClient, SetupError};
use super::{AlertmanagerConfig, DeliveryError, Sink};
use crate::domain::{AlertEvent, AlertEventType, PolicyName, PspCategory, Severity};
use crate::store::catalog::Catalog;

/// The `alertname` label of every alert dictmon sends.
pub const ALERTNAME: &str = "DictRateLimit";
/// How long Alertmanager shows a category change: news, not a condition that ends.
pub const NOTICE_LIFETIME: chrono::TimeDelta = chrono::TimeDelta::hours(1);

/// An alert Alertmanager should show as firing.
struct Firing {
    labels: Value,
    annotations: Value,
    starts_at: DateTime<Utc>,
}

pub struct Alertmanager {
    http: HttpClient,
    /// `instance` and `job` labels.
    origin: (String, String),
    resend: Duration,
    /// By policy: one open alert each.
    firing: BTreeMap<String, Firing>,
    last_resend: Instant,
}

impl Firing {
    /// Alertmanager's identity (labels) and description (annotations) of an alert.
    fn new(
        (instance, job): &(String, String),
        (policy, severity, category): (&PolicyName, Severity, PspCategory),
        message: &str,
        (tokens, capacity, utilization): (i64, i64, f64),
        starts_at: DateTime<Utc>,
    ) -> Self {
        Self {
            labels: json!({
                "alertname": ALERTNAME,
                "endpoint_id": policy.as_str(),
                "severity": severity.as_str().to_ascii_lowercase(),
                "psp_category": category.to_string(),
                "instance": instance,
                "job": job,
            }),
            annotations: json!({
                "summary": message,
                "description": format!("{tokens} of {capacity} tokens available ({utilization:.1} % used)"),
            }),
            starts_at,
        }
    }

    /// The alert as of `e`, firing since it.
    fn of_event(origin: &(String, String), e: &AlertEvent) -> Self {
        let figures = (e.available_tokens, e.capacity, e.utilization_percent);
        Self::new(
            origin,
            (&e.endpoint_id, e.severity, e.psp_category),
            &e.message,
            figures,
            e.timestamp,
        )
    }

    /// The posting that says it is active from its start (at the latest `latest_start`) until
    /// `ends`.
    fn posting(&self, latest_start: DateTime<Utc>, ends: DateTime<Utc>) -> Value {
        json!({
            "labels": self.labels,
            "annotations": self.annotations,
            "startsAt": time(self.starts_at.min(latest_start)),
            "endsAt": time(ends),
        })
    }
}

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl Alertmanager {
    pub fn new(
        sink: &str,
        c: &AlertmanagerConfig,
        catalog: &Arc<Catalog>,
    ) -> Result<Self, SetupError> {
        let base = c.url.trim_end_matches('/');
        let url = if base.ends_with("/api/v2/alerts") {
            base.to_owned()
        } else {
            format!("{base}/api/v2/alerts")
        };
        let origin = (c.instance.clone(), c.job.clone());
        // The alerts open now are firing from the start; a catalog that cannot be read only
        // delays them until their next event.
        let firing = catalog
            .alerts()
            .unwrap_or_default()
            .into_iter()
            .filter(|a| a.resolved_at.is_none())
            .map(|a| {
                let figures = (a.available_tokens, a.capacity, a.utilization_percent);
                let f = Firing::new(
                    &origin,
                    (&a.policy, a.severity, a.psp_category),
                    &a.message,
                    figures,
                    a.opened_at,
                );
                (a.policy.as_str().to_owned(), f)
            })
            .collect();
        Ok(Self {
            http: HttpClient::new(sink, &url, c.ca_cert.as_deref(), c.timeout)?,
            origin,
            resend: c.resend_interval,
            firing,
            // The first idle moment re-sends what is open.
            last_resend: Instant::now()
                .checked_sub(c.resend_interval)
                .unwrap_or_else(Instant::now),
        })
    }

    /// Firing: the end lies four re-send intervals ahead.
    fn firing_posting(&self, f: &Firing, now: DateTime<Utc>) -> Value {
        f.posting(now, now + self.resend * 4)
    }

    async fn post(&self, postings: Vec<Value>) -> Result<(), DeliveryError> {
        if postings.is_empty() {
            return Ok(());
        }
        let body = self.http.encode(&postings)?;
        self.http.post_json(body, &[]).await
    }
}

impl Sink for Alertmanager {
    fn batch_size(&self) -> usize {
        64
    }

    async fn deliver(&mut self, events: &[(u64, AlertEvent)]) -> Result<(), DeliveryError> {
        let now = Utc::now();
        let mut postings = Vec::with_capacity(events.len());
        for (_, e) in events {
            let key = e.endpoint_id.as_str().to_owned();
            let mut f = Firing::of_event(&self.origin, e);
            // DICT's clock may lead ours: an end in the future would keep it firing.
            let ends = e.timestamp.min(now);
            match e.event_type {
                AlertEventType::Created => {
                    postings.push(self.firing_posting(&f, now));
                    self.firing.insert(key, f);
                }
                AlertEventType::Updated => {
                    if let Some(old) = self.firing.remove(&key) {
                        postings.push(old.posting(ends, ends));
                    }
                    postings.push(self.firing_posting(&f, now));
                    self.firing.insert(key, f);
                }
                AlertEventType::Resolved => {
                    f.starts_at = self.firing.remove(&key).map_or(ends, |open| open.starts_at);
                    postings.push(f.posting(ends, ends));
                }
                AlertEventType::CategoryChanged => {
                    postings.push(f.posting(ends, ends + NOTICE_LIFETIME));
                }
            }
        }
        self.post(postings).await
    }

    async fn idle(&mut self) -> Result<(), DeliveryError> {
        if self.last_resend.elapsed() < self.resend {
            return Ok(());
        }
        let now = Utc::now();
        let postings = self
            .firing
            .values()
            .map(|f| self.firing_posting(f, now))
            .collect();
        self.post(postings).await?;
        self.last_resend = Instant::now();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::AlertEventType;

    fn event(event_type: AlertEventType, severity: Severity) -> AlertEvent {
        AlertEvent {
            event_id: uuid::Uuid::nil(),
            event_type,
            timestamp: DateTime::UNIX_EPOCH,
            endpoint_id: PolicyName::new("ENTRIES_WRITE").expect("name"),
            severity,
            available_tokens: 5,
            capacity: 100,
            utilization_percent: 95.0,
            recovery_eta_seconds: None,
            exhaustion_projection_seconds: None,
            psp_category: PspCategory::C,
            message: "ENTRIES_WRITE: 5.0% remaining".into(),
            category_change: None,
        }
    }

    #[test]
    fn an_alert_has_the_labels_a_prometheus_rule_on_the_same_instance_would_give_it() {
        let origin = ("dictmon-1:9464".to_owned(), "dictmon".to_owned());
        let f = Firing::of_event(&origin, &event(AlertEventType::Created, Severity::Critical));
        assert_eq!(
            f.labels,
            json!({
                "alertname": "DictRateLimit",
                "endpoint_id": "ENTRIES_WRITE",
                "severity": "critical",
                "psp_category": "C",
                "instance": "dictmon-1:9464",
                "job": "dictmon",
            })
        );
        let now = DateTime::UNIX_EPOCH + chrono::TimeDelta::minutes(1);
        let posting = f.posting(now, now);
        assert_eq!(posting["startsAt"], "1970-01-01T00:00:00.000Z");
        assert_eq!(posting["endsAt"], "1970-01-01T00:01:00.000Z");
    }
}
