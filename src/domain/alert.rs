//! Alert lifecycle: thresholds, alerts, the events published for them, and the pure state
//! machine `(state, observation, thresholds) → (state, events)`.
//!
//! # Rules
//!
//! - The level of an observation is CRITICAL when remaining % ≤ critical threshold (default 10),
//!   WARNING when ≤ warning threshold (default 20), else none. A balance below zero is CRITICAL.
//! - **Hysteresis**: a level at or below the one currently open is left only when the bucket is
//!   `hysteresis_points` (default 2) above its threshold, and never less than one token above
//!   it: a bucket of 20 tokens moves 5 points a token, so 2 points would be no hysteresis at
//!   all. Escalation has no hysteresis. So a bucket hovering at 19–21 % raises one WARNING, and
//!   one that ticks between 1 and 3 tokens stays CRITICAL, not a storm of changes.
//! - **Predictive warning** (beyond the legacy design; on by default): when the bucket's
//!   [`Forecast`] (its recent trend shaped by its seasonal profile, [`super::forecast`]) says it
//!   runs dry within the horizon (default 60 min) at the pessimistic edge of its 90 % band, a
//!   WARNING opens even above the warning threshold, its message explaining the forecast. Once
//!   open it holds while that stays within twice the horizon. A forecast exists only on
//!   evidence of a drain (an idle bucket's one-token wobble is none).
//! - **One incident, one alert.** At most one open alert per policy. A change of level while it
//!   is open (escalation WARNING→CRITICAL, de-escalation back) updates that alert's severity
//!   (a `rate_limit.alert.updated` event with the new severity; `peak_severity` keeps the worst
//!   it reached); back to no level resolves it.
//! - **Idempotent**: an observation not newer than the last one evaluated changes nothing, so a
//!   replayed cycle yields no event. Alert and event ids are name-based UUIDs (v5) of the policy,
//!   the DICT time the alert opened and the severity it opened with (an update's event id adds
//!   the DICT time of the update): a replay after a crash produces the same ids, and receivers
//!   can de-duplicate on them.
//! - Event timestamps are DICT's response time of the sample that caused the transition.

use std::fmt;

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::bucket::Enrichment;
use super::forecast::Forecast;
use super::policy::{PolicyName, PspCategory};
use super::snapshot::Snapshot;

/// The policy name of dictmon's own alert on its source (no successful poll for two
/// intervals, or answers refused).
pub const SELF_POLICY: &str = "DICTMON_SOURCE";

/// Namespace of dictmon's name-based (v5) alert and event ids. Never change it: ids already
/// delivered would no longer match.
const ID_NAMESPACE: Uuid = Uuid::from_u128(0x5d1c_7a0e_3b6f_4c2a_9e81_d1c7_0a4e_b6f2);

/// How bad an alert is. Ordered: INFO < WARNING < CRITICAL.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Severity {
    /// News, not danger: a category upgrade ([`CategoryChange`]). A bucket's level is never INFO.
    Info,
    /// Remaining at or below the warning threshold, or exhaustion predicted within the horizon.
    Warning,
    /// Remaining at or below the critical threshold.
    Critical,
}

impl Severity {
    /// `WARNING` or `CRITICAL`, as in the legacy table and events.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Info => "INFO",
            Self::Warning => "WARNING",
            Self::Critical => "CRITICAL",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What made an alert open.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertCause {
    /// Remaining % crossed a threshold.
    Threshold,
    /// The exhaustion projection fell within the predictive horizon.
    Projection,
    /// DICT moved the participant to another category (a notice: [`CategoryChange`]).
    Category,
}

impl AlertCause {
    /// `threshold`, `projection` or `category`, as in the `cause` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Threshold => "threshold",
            Self::Projection => "projection",
            Self::Category => "category",
        }
    }
}

/// A policy's alert thresholds. All in percent points of capacity remaining.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Thresholds {
    /// WARNING at or below this remaining %. Default 20.
    pub warning_percent: f64,
    /// CRITICAL at or below this remaining %. Default 10.
    pub critical_percent: f64,
    /// Points above a threshold the bucket must reach to leave its level. Default 2.
    pub hysteresis_points: f64,
    /// Open a predictive WARNING when the bucket would run dry within this time. Default 60 min;
    /// none turns it off.
    pub predictive_horizon: Option<TimeDelta>,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            warning_percent: 20.0,
            critical_percent: 10.0,
            hysteresis_points: 2.0,
            predictive_horizon: Some(TimeDelta::minutes(60)),
        }
    }
}

/// Why a [`Thresholds`] value is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ThresholdError {
    /// A percentage outside 0–100 or not a number.
    #[error("thresholds must be numbers from 0 to 100")]
    OutOfRange,
    /// The critical threshold is not below the warning threshold.
    #[error("the critical threshold must be below the warning threshold")]
    CriticalNotBelowWarning,
    /// Hysteresis negative or not a number.
    #[error("hysteresis must be a number of points >= 0")]
    NegativeHysteresis,
    /// A predictive horizon of zero or less.
    #[error("the predictive horizon must be longer than zero")]
    NonPositiveHorizon,
}

impl Thresholds {
    /// `policy`'s thresholds: its own in `per_policy`, else these (the defaults).
    #[must_use]
    pub fn for_policy(
        self,
        per_policy: &std::collections::HashMap<PolicyName, Thresholds>,
        policy: &PolicyName,
    ) -> Thresholds {
        per_policy.get(policy).copied().unwrap_or(self)
    }

    /// Checks that the thresholds make sense together.
    pub fn check(&self) -> Result<(), ThresholdError> {
        let pct = |x: f64| (0.0..=100.0).contains(&x);
        if !pct(self.warning_percent) || !pct(self.critical_percent) {
            Err(ThresholdError::OutOfRange)
        } else if self.critical_percent >= self.warning_percent {
            Err(ThresholdError::CriticalNotBelowWarning)
        } else if !(self.hysteresis_points >= 0.0 && self.hysteresis_points.is_finite()) {
            Err(ThresholdError::NegativeHysteresis)
        } else if self
            .predictive_horizon
            .is_some_and(|h| h <= TimeDelta::zero())
        {
            Err(ThresholdError::NonPositiveHorizon)
        } else {
            Ok(())
        }
    }
}

/// An alert: a row of the legacy `dict_rate_limit_alerts` table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Name-based id, stable across replays.
    pub id: Uuid,
    /// The policy (`endpoint_id`; read under that name too, as the API writes it).
    #[serde(alias = "endpoint_id")]
    pub policy: PolicyName,
    /// Its level now (while open) or when it was resolved: escalation and de-escalation change
    /// it.
    pub severity: Severity,
    /// The worst level it reached, when that is not `severity` (none in alerts written before
    /// dictmon kept one alert per incident, whose severity never changed): see [`Self::peak`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_severity: Option<Severity>,
    /// Threshold crossing or projection.
    pub cause: AlertCause,
    /// DICT time of the sample that opened it (`created_at` in the API and the legacy table).
    #[serde(alias = "created_at")]
    pub opened_at: DateTime<Utc>,
    /// Tokens available when it opened.
    pub available_tokens: i64,
    /// Capacity when it opened.
    pub capacity: i64,
    /// Utilization % when it opened.
    pub utilization_percent: f64,
    /// The participant's category when it opened.
    pub psp_category: PspCategory,
    /// Human-readable reason.
    pub message: String,
    /// DICT time of the sample that resolved it; none while open.
    pub resolved_at: Option<DateTime<Utc>>,
    /// Why it was resolved (recovered, escalated, de-escalated); `resolution_notes`.
    #[serde(alias = "resolution_notes")]
    pub resolution: Option<String>,
}

/// An alert as the API and `query alerts --format json` show it: the legacy
/// `dict_rate_limit_alerts` columns' names (`endpoint_id`, `created_at`, `resolved`,
/// `resolution_notes`), as in the alerts CSV and the alert events. (The catalog keeps its own
/// field names, storage-format.md §10.)
#[derive(Serialize)]
pub struct AlertJson<'a> {
    /// Name-based id.
    pub id: Uuid,
    /// The policy.
    pub endpoint_id: &'a str,
    /// WARNING or CRITICAL now (while open) or when resolved; INFO for a category upgrade.
    pub severity: Severity,
    /// The worst severity it reached.
    pub peak_severity: Severity,
    /// `threshold` or `projection`.
    pub cause: AlertCause,
    /// DICT time of the sample that opened it.
    pub created_at: DateTime<Utc>,
    /// Tokens then.
    pub available_tokens: i64,
    /// Capacity then.
    pub capacity: i64,
    /// Utilization then.
    pub utilization_percent: f64,
    /// The participant's category then.
    pub psp_category: PspCategory,
    /// What it said.
    pub message: &'a str,
    /// Whether it is resolved.
    pub resolved: bool,
    /// When.
    pub resolved_at: Option<DateTime<Utc>>,
    /// How.
    pub resolution_notes: Option<&'a str>,
}

impl<'a> From<&'a Alert> for AlertJson<'a> {
    fn from(a: &'a Alert) -> Self {
        Self {
            id: a.id,
            endpoint_id: a.policy.as_str(),
            severity: a.severity,
            peak_severity: a.peak(),
            cause: a.cause,
            created_at: a.opened_at,
            available_tokens: a.available_tokens,
            capacity: a.capacity,
            utilization_percent: a.utilization_percent,
            psp_category: a.psp_category,
            message: &a.message,
            resolved: a.resolved_at.is_some(),
            resolved_at: a.resolved_at,
            resolution_notes: a.resolution.as_deref(),
        }
    }
}

impl Alert {
    /// The worst level the incident reached: what a review of it, `query alerts --severity`
    /// and the legacy table's `severity` column mean.
    pub fn peak(&self) -> Severity {
        self.peak_severity
            .map_or(self.severity, |p| p.max(self.severity))
    }

    /// The name-based id (UUID v5) of the alert of `policy` opened at DICT time `opened_at`
    /// with `severity`: the same whoever computes it, so replays and imports never duplicate.
    pub fn id_for(policy: &PolicyName, opened_at: DateTime<Utc>, severity: Severity) -> Uuid {
        Uuid::new_v5(
            &ID_NAMESPACE,
            format!(
                "{policy}|{}|{severity}",
                opened_at.to_rfc3339_opts(SecondsFormat::Nanos, true)
            )
            .as_bytes(),
        )
    }
}

/// Kind of an [`AlertEvent`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AlertEventType {
    /// An alert opened.
    #[serde(rename = "rate_limit.alert.created")]
    Created,
    /// An open alert changed severity (escalation or de-escalation).
    #[serde(rename = "rate_limit.alert.updated")]
    Updated,
    /// An alert resolved.
    #[serde(rename = "rate_limit.alert.resolved")]
    Resolved,
    /// DICT moved the participant to another category ([`CategoryChange`]).
    #[serde(rename = "rate_limit.category.changed")]
    CategoryChanged,
}

impl AlertEventType {
    fn id_suffix(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Updated => "updated",
            Self::Resolved => "resolved",
            Self::CategoryChanged => "category",
        }
    }

    /// The name events carry: `rate_limit.alert.created`, `…updated`, `…resolved` or
    /// `rate_limit.category.changed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "rate_limit.alert.created",
            Self::Updated => "rate_limit.alert.updated",
            Self::Resolved => "rate_limit.alert.resolved",
            Self::CategoryChanged => "rate_limit.category.changed",
        }
    }
}

impl std::fmt::Display for AlertEventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An alert event as published downstream; field names and values are the legacy schema.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlertEvent {
    /// Stable across retries and replays.
    pub event_id: Uuid,
    /// `rate_limit.alert.created`, `…updated`, `…resolved` or `rate_limit.category.changed`.
    pub event_type: AlertEventType,
    /// DICT time of the sample that caused the transition.
    pub timestamp: DateTime<Utc>,
    /// The policy name.
    pub endpoint_id: PolicyName,
    /// The severity of the alert opened or resolved; the new one for an update.
    pub severity: Severity,
    /// Tokens at the transition.
    pub available_tokens: i64,
    /// Capacity at the transition.
    pub capacity: i64,
    /// Utilization % at the transition.
    pub utilization_percent: f64,
    /// Seconds until full; null when never or unknown.
    pub recovery_eta_seconds: Option<f64>,
    /// Seconds until empty; null when not draining or unknown.
    pub exhaustion_projection_seconds: Option<f64>,
    /// The participant's category.
    pub psp_category: PspCategory,
    /// Human-readable description.
    pub message: String,
    /// `rate_limit.category.changed` only: from which category to which, and each policy's
    /// bucket before and after.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category_change: Option<CategoryChange>,
}

/// DICT moved the participant to another category (the Manual: BACEN may lower it on suspected
/// scraping; a participant may ask to move up). A downgrade is a WARNING, an upgrade INFO.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CategoryChange {
    /// The category before.
    pub from: PspCategory,
    /// The category now.
    pub to: PspCategory,
    /// Each policy whose bucket changed with it.
    pub policies: Vec<BucketChange>,
}

/// One policy's bucket before and after a category change.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BucketChange {
    /// The policy.
    pub endpoint_id: PolicyName,
    /// Capacity before.
    pub old_capacity: i64,
    /// Capacity now.
    pub new_capacity: i64,
    /// Tokens per refill period before.
    pub old_refill_tokens: i64,
    /// Tokens per refill period now.
    pub new_refill_tokens: i64,
    /// Refill period, seconds (now).
    pub refill_period_sec: i64,
}

impl CategoryChange {
    /// WARNING when the participant moved down (to a later letter, fewer tokens), INFO when it
    /// moved up. An unknown letter on either side is a WARNING: nobody can say it is better.
    pub fn severity(&self) -> Severity {
        match (self.from, self.to) {
            (PspCategory::Unknown(_), _) | (_, PspCategory::Unknown(_)) => Severity::Warning,
            (from, to) if to > from => Severity::Warning,
            _ => Severity::Info,
        }
    }

    /// One line for logs, events and the dashboard.
    pub fn message(&self) -> String {
        let direction = match self.severity() {
            Severity::Info => "up",
            _ => "down",
        };
        let mut m = format!(
            "DICT moved this participant {direction} from category {} to {}",
            self.from, self.to
        );
        for b in &self.policies {
            let _ = std::fmt::Write::write_fmt(
                &mut m,
                format_args!(
                    "; {}: capacity {} → {}, refill {} → {} per {} s",
                    b.endpoint_id,
                    b.old_capacity,
                    b.new_capacity,
                    b.old_refill_tokens,
                    b.new_refill_tokens,
                    b.refill_period_sec
                ),
            );
        }
        m
    }
}

impl AlertEvent {
    /// The name-based id (UUID v5) of the `event_type` event of the alert `alert_id`: stable
    /// across retries and replays, and computable from the alert alone. (An alert has one
    /// event of each type but `updated`: see [`Self::update_id_for`].)
    pub fn id_for(alert_id: Uuid, event_type: AlertEventType) -> Uuid {
        Uuid::new_v5(
            &ID_NAMESPACE,
            format!("{alert_id}/{}", event_type.id_suffix()).as_bytes(),
        )
    }

    /// The id of the update of alert `alert_id` caused by the sample of DICT time `at`.
    pub fn update_id_for(alert_id: Uuid, at: DateTime<Utc>) -> Uuid {
        Uuid::new_v5(
            &ID_NAMESPACE,
            format!(
                "{alert_id}/updated/{}",
                at.to_rfc3339_opts(SecondsFormat::Nanos, true)
            )
            .as_bytes(),
        )
    }
}

/// The alert state of one policy between two evaluations.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AlertState {
    /// The open alert, if any.
    pub open: Option<Alert>,
    /// DICT time of the last observation evaluated.
    pub last_evaluated: Option<DateTime<Utc>>,
}

/// One observation: a snapshot, its derived metrics and its exhaustion forecast.
#[derive(Clone, Copy, Debug)]
pub struct Observation<'a> {
    /// The raw snapshot.
    pub snapshot: &'a Snapshot,
    /// Its derived metrics.
    pub enrichment: &'a Enrichment,
    /// When it would run dry, if it is draining ([`super::forecast::forecast`]).
    pub forecast: Option<&'a Forecast>,
}

/// What one evaluation decided.
#[derive(Clone, Debug, PartialEq)]
pub struct Transition {
    /// The policy's state after the observation.
    pub state: AlertState,
    /// The alert this observation resolved, with `resolved_at` set.
    pub resolved: Option<Alert>,
    /// Events to publish: at most one (created, updated or resolved).
    pub events: Vec<AlertEvent>,
}

impl Transition {
    /// The alert this transition wrote (opened, updated or resolved), as it must now be stored.
    pub fn changed_alerts(&self) -> impl Iterator<Item = &Alert> {
        let open = self.state.open.as_ref().filter(|_| !self.events.is_empty());
        self.resolved.iter().chain(open)
    }

    /// Whether it opened an alert.
    pub fn opened(&self) -> bool {
        self.events
            .iter()
            .any(|e| e.event_type == AlertEventType::Created)
    }
}

/// The policy left DICT's listing (its last observation was `last`): an open alert resolves at
/// `at` (DICT time of the listing that settled it) with that reason, its event carrying the
/// last figures. Nothing happens without an open alert.
pub fn withdraw(state: &AlertState, last: Observation<'_>, at: DateTime<Utc>) -> Transition {
    let Some(mut alert) = state.open.clone() else {
        return Transition {
            state: state.clone(),
            resolved: None,
            events: Vec::new(),
        };
    };
    let note = "the policy left DICT's listing".to_owned();
    alert.resolved_at = Some(at);
    alert.resolution = Some(note.clone());
    let mut e = event(
        &alert,
        AlertEventType::Resolved,
        last,
        format!(
            "{}: {} alert resolved, {note}",
            alert.policy, alert.severity
        ),
    );
    e.timestamp = at;
    Transition {
        state: AlertState {
            open: None,
            last_evaluated: state.last_evaluated,
        },
        resolved: Some(alert),
        events: vec![e],
    }
}

/// The state machine: evaluates one observation against a policy's state and thresholds.
pub fn evaluate(state: &AlertState, obs: Observation<'_>, thresholds: &Thresholds) -> Transition {
    let at = obs.snapshot.sample.at;
    if state.last_evaluated.is_some_and(|last| at <= last) {
        return Transition {
            state: state.clone(),
            resolved: None,
            events: Vec::new(),
        };
    }
    let current = state.open.as_ref().map(|a| a.severity);
    let target = level(
        current,
        obs.enrichment,
        obs.forecast,
        obs.snapshot.sample.bucket.capacity,
        thresholds,
    );
    let mut next = AlertState {
        open: state.open.clone(),
        last_evaluated: Some(at),
    };
    let mut events = Vec::new();
    let mut resolved = None;
    if current == target.map(|(severity, _)| severity) {
        return Transition {
            state: next,
            resolved,
            events,
        };
    }
    match (next.open.take(), target) {
        (Some(mut alert), None) => {
            let note = format!(
                "recovered to {}% remaining",
                super::tenths(obs.enrichment.remaining_percent)
            );
            alert.resolved_at = Some(at);
            alert.resolution = Some(note.clone());
            events.push(event(
                &alert,
                AlertEventType::Resolved,
                obs,
                format!(
                    "{}: {} alert resolved, {note}",
                    alert.policy, alert.severity
                ),
            ));
            resolved = Some(alert);
        }
        (Some(mut alert), Some((severity, _))) => {
            let verb = if severity > alert.severity {
                "escalated"
            } else {
                "de-escalated"
            };
            let message = format!(
                "{}: {verb} from {} to {severity}: {}",
                alert.policy,
                alert.severity,
                state_words(obs)
            );
            alert.peak_severity = Some(alert.peak().max(severity));
            alert.severity = severity;
            let mut e = event(&alert, AlertEventType::Updated, obs, message);
            e.event_id = AlertEvent::update_id_for(alert.id, at);
            events.push(e);
            next.open = Some(alert);
        }
        (None, Some((severity, cause))) => {
            let alert = open(obs, severity, cause, thresholds);
            events.push(event(
                &alert,
                AlertEventType::Created,
                obs,
                alert.message.clone(),
            ));
            next.open = Some(alert);
        }
        (None, None) => {}
    }
    Transition {
        state: next,
        resolved,
        events,
    }
}

/// The level an observation calls for, given the level currently open (for hysteresis) and the
/// bucket's capacity (the hysteresis is at least one token).
fn level(
    current: Option<Severity>,
    e: &Enrichment,
    forecast: Option<&Forecast>,
    capacity: i64,
    th: &Thresholds,
) -> Option<(Severity, AlertCause)> {
    let one_token = if capacity > 0 {
        100.0 / capacity as f64
    } else {
        0.0
    };
    let h = th.hysteresis_points.max(one_token);
    let (critical, warning) = match current {
        Some(Severity::Critical) => (th.critical_percent + h, th.warning_percent + h),
        Some(Severity::Warning) => (th.critical_percent, th.warning_percent + h),
        Some(Severity::Info) | None => (th.critical_percent, th.warning_percent),
    };
    let remaining = e.remaining_percent;
    if remaining <= critical {
        return Some((Severity::Critical, AlertCause::Threshold));
    }
    if remaining <= warning {
        return Some((Severity::Warning, AlertCause::Threshold));
    }
    let horizon = th.predictive_horizon?.as_seconds_f64() / 60.0;
    let horizon = if current.is_some() {
        2.0 * horizon
    } else {
        horizon
    };
    forecast
        .and_then(|f| f.pessimistic_minutes)
        .filter(|m| *m <= horizon)
        .map(|_| (Severity::Warning, AlertCause::Projection))
}

fn open(obs: Observation<'_>, severity: Severity, cause: AlertCause, th: &Thresholds) -> Alert {
    let Observation {
        snapshot, forecast, ..
    } = obs;
    let s = &snapshot.sample;
    let id = Alert::id_for(&snapshot.policy, s.at, severity);
    let state = state_words(obs);
    let message = match (cause, severity) {
        (AlertCause::Projection | AlertCause::Category, _) => format!(
            "{}: {state}, {}",
            snapshot.policy,
            forecast.map_or_else(|| "projected to run dry".to_owned(), Forecast::explain)
        ),
        (AlertCause::Threshold, Severity::Critical) => format!(
            "{}: {state}, at or below the CRITICAL threshold of {}%",
            snapshot.policy, th.critical_percent
        ),
        (AlertCause::Threshold, Severity::Warning | Severity::Info) => format!(
            "{}: {state}, at or below the WARNING threshold of {}%",
            snapshot.policy, th.warning_percent
        ),
    };
    Alert {
        id,
        policy: snapshot.policy.clone(),
        severity,
        peak_severity: None,
        cause,
        opened_at: s.at,
        available_tokens: s.available_tokens,
        capacity: s.bucket.capacity,
        utilization_percent: obs.enrichment.utilization_percent,
        psp_category: s.category,
        message,
        resolved_at: None,
        resolution: None,
    }
}

fn event(
    alert: &Alert,
    event_type: AlertEventType,
    obs: Observation<'_>,
    message: String,
) -> AlertEvent {
    let s = &obs.snapshot.sample;
    AlertEvent {
        event_id: AlertEvent::id_for(alert.id, event_type),
        event_type,
        timestamp: s.at,
        endpoint_id: alert.policy.clone(),
        severity: alert.severity,
        available_tokens: s.available_tokens,
        capacity: s.bucket.capacity,
        utilization_percent: obs.enrichment.utilization_percent,
        recovery_eta_seconds: obs.enrichment.recovery_eta_seconds,
        exhaustion_projection_seconds: obs.enrichment.exhaustion_projection_seconds,
        psp_category: s.category,
        message,
        category_change: None,
    }
}

/// `12.5% remaining (25/200 tokens)`.
fn state_words(obs: Observation<'_>) -> String {
    let s = &obs.snapshot.sample;
    format!(
        "{}% remaining ({}/{} tokens)",
        super::tenths(obs.enrichment.remaining_percent),
        s.available_tokens,
        s.bucket.capacity
    )
}
