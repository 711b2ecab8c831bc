//! The alert state machine: every transition, hysteresis against flapping, the predictive
//! warning, replay idempotency, stable ids, and the event's JSON schema.

use chrono::{DateTime, TimeDelta, Utc};
use dictmon::domain::forecast::Forecast;
use dictmon::domain::{
    AlertCause, AlertEvent, AlertEventType, AlertState, BucketConfig, Enrichment, Observation,
    PolicyName, PspCategory, Sample, Severity, ThresholdError, Thresholds, Transition, evaluate,
};

const CAPACITY: i64 = 1_000;

fn at(step: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000 + step * 300, 0).expect("in range")
}

/// An observation of `ENTRIES_WRITE` at poll `step` with `tokens` of 1,000 left and the given
/// exhaustion projection.
fn obs(step: i64, tokens: i64, projection: Option<f64>) -> (dictmon::domain::Snapshot, Enrichment) {
    let snapshot = dictmon::domain::Snapshot {
        policy: PolicyName::new("ENTRIES_WRITE").expect("valid"),
        sample: Sample {
            at: at(step),
            available_tokens: tokens,
            bucket: BucketConfig {
                capacity: CAPACITY,
                refill_tokens: 100,
                refill_period_secs: 60,
            },
            category: PspCategory::C,
        },
    };
    let remaining = 100.0 * tokens as f64 / CAPACITY as f64;
    let enrichment = Enrichment {
        utilization_percent: 100.0 - remaining,
        remaining_percent: remaining,
        consumption_rate_per_minute: Some(0.0),
        recovery_eta_seconds: None,
        exhaustion_projection_seconds: projection,
        text_scales: dictmon::domain::TextScales::default(),
    };
    (snapshot, enrichment)
}

/// Feeds `(tokens, projection)` readings at consecutive polls starting at `first_step`.
fn run(
    state: &AlertState,
    first_step: i64,
    readings: &[(i64, Option<f64>)],
    th: &Thresholds,
) -> (AlertState, Vec<AlertEvent>) {
    let mut state = state.clone();
    let mut events = Vec::new();
    for (step, &(tokens, projection)) in (first_step..).zip(readings) {
        let (snapshot, enrichment) = obs(step, tokens, projection);
        let forecast = projection.map(forecast_in);
        let t = evaluate(
            &state,
            Observation {
                snapshot: &snapshot,
                enrichment: &enrichment,
                forecast: forecast.as_ref(),
            },
            th,
        );
        state = t.state;
        events.extend(t.events);
    }
    (state, events)
}

/// A forecast of running dry in `seconds` (central and pessimistic alike).
fn forecast_in(seconds: f64) -> Forecast {
    Forecast {
        central_minutes: Some(seconds / 60.0),
        pessimistic_minutes: Some(seconds / 60.0),
        rate_now: 20.0,
        usual_now: Some(16.0),
    }
}

fn kinds(events: &[AlertEvent]) -> Vec<(AlertEventType, Severity)> {
    events.iter().map(|e| (e.event_type, e.severity)).collect()
}

fn tokens(levels: &[i64]) -> Vec<(i64, Option<f64>)> {
    levels.iter().map(|&t| (t, None)).collect()
}

use AlertEventType::{Created, Resolved, Updated};
use Severity::{Critical, Warning};

#[test]
fn healthy_bucket_raises_nothing() {
    let (state, events) = run(
        &AlertState::default(),
        0,
        &tokens(&[1_000, 500, 201]),
        &Thresholds::default(),
    );
    assert!(events.is_empty());
    assert_eq!(state.open, None);
    assert_eq!(state.last_evaluated, Some(at(2)));
}

#[test]
fn warning_opens_at_exactly_twenty_percent() {
    let (state, events) = run(
        &AlertState::default(),
        0,
        &tokens(&[201, 200]),
        &Thresholds::default(),
    );
    assert_eq!(kinds(&events), vec![(Created, Warning)]);
    let alert = state.open.expect("open");
    assert_eq!(
        (alert.severity, alert.cause),
        (Warning, AlertCause::Threshold)
    );
    assert_eq!(alert.opened_at, at(1));
    assert_eq!((alert.available_tokens, alert.capacity), (200, CAPACITY));
}

#[test]
fn critical_opens_directly_from_healthy() {
    let (state, events) = run(
        &AlertState::default(),
        0,
        &tokens(&[900, 100]),
        &Thresholds::default(),
    );
    assert_eq!(kinds(&events), vec![(Created, Critical)]);
    assert_eq!(state.open.map(|a| a.severity), Some(Critical));
}

#[test]
fn a_negative_balance_is_critical() {
    let (_, events) = run(
        &AlertState::default(),
        0,
        &tokens(&[-15]),
        &Thresholds::default(),
    );
    assert_eq!(kinds(&events), vec![(Created, Critical)]);
}

#[test]
fn escalation_updates_the_open_alert() {
    let (state, events) = run(
        &AlertState::default(),
        0,
        &tokens(&[150, 90]),
        &Thresholds::default(),
    );
    assert_eq!(
        kinds(&events),
        vec![(Created, Warning), (Updated, Critical)]
    );
    let alert = state.open.expect("open");
    // One incident: the alert opened as a WARNING is the one now CRITICAL.
    assert_eq!(alert.opened_at, at(0));
    assert_eq!((alert.severity, alert.peak()), (Critical, Critical));
    assert_eq!(events[1].timestamp, at(1));
    assert_ne!(events[1].event_id, events[0].event_id);
    assert!(
        events[1]
            .message
            .contains("escalated from WARNING to CRITICAL: 9.0% remaining"),
        "{}",
        events[1].message
    );
}

#[test]
fn an_incident_that_escalates_and_recovers_is_one_alert_with_its_peak() {
    // WARNING → CRITICAL → WARNING → resolved: four events of one alert.
    let (state, events) = run(
        &AlertState::default(),
        0,
        &tokens(&[150, 90, 130, 300]),
        &Thresholds::default(),
    );
    assert_eq!(
        kinds(&events),
        vec![
            (Created, Warning),
            (Updated, Critical),
            (Updated, Warning),
            (Resolved, Warning)
        ]
    );
    assert_eq!(state.open, None);
    let (mid, _) = run(
        &AlertState::default(),
        0,
        &tokens(&[150, 90, 130]),
        &Thresholds::default(),
    );
    let alert = mid.open.expect("open");
    assert_eq!((alert.severity, alert.peak()), (Warning, Critical));
    assert!(
        events[2]
            .message
            .contains("de-escalated from CRITICAL to WARNING")
    );
}

#[test]
fn the_resolved_alert_is_returned_with_its_resolution() {
    let (state, _) = run(
        &AlertState::default(),
        0,
        &tokens(&[150]),
        &Thresholds::default(),
    );
    let (snapshot, enrichment) = obs(1, 500, None);
    let Transition {
        state: next,
        resolved,
        events,
    } = evaluate(
        &state,
        Observation {
            snapshot: &snapshot,
            enrichment: &enrichment,
            forecast: None,
        },
        &Thresholds::default(),
    );
    let resolved = resolved.expect("resolved");
    assert_eq!(resolved.id, state.open.expect("was open").id);
    assert_eq!(resolved.resolved_at, Some(at(1)));
    assert_eq!(
        resolved.resolution.as_deref(),
        Some("recovered to 50.0% remaining")
    );
    assert_eq!(next.open, None);
    assert_eq!(kinds(&events), vec![(Resolved, Warning)]);
}

#[test]
fn de_escalation_needs_the_hysteresis_margin() {
    // Critical at 9 %; 11 % and 12 % stay within 10 + 2; 12.1 % de-escalates to WARNING.
    let (state, events) = run(
        &AlertState::default(),
        0,
        &tokens(&[90, 110, 120, 121]),
        &Thresholds::default(),
    );
    assert_eq!(
        kinds(&events),
        vec![(Created, Critical), (Updated, Warning)]
    );
    assert_eq!(events[1].timestamp, at(3));
    assert_eq!(state.open.map(|a| a.severity), Some(Warning));
}

#[test]
fn the_hysteresis_is_at_least_one_token() {
    // POLICIES_LIST at a 5 s poll: 20 tokens, one token is 5 points, ticking between 1 and 3
    // tokens. With 2 points of hysteresis alone, 3 tokens (15 %) would leave CRITICAL each
    // time; at least one token (10 + 5 = 15 %) keeps it CRITICAL until 4 tokens (20 %).
    let small = |step: i64, tokens: i64| {
        let (mut snapshot, mut enrichment) = obs(step, tokens, None);
        snapshot.sample.bucket.capacity = 20;
        enrichment.remaining_percent = 100.0 * tokens as f64 / 20.0;
        enrichment.utilization_percent = 100.0 - enrichment.remaining_percent;
        (snapshot, enrichment)
    };
    let mut state = AlertState::default();
    let mut events = Vec::new();
    for (step, tokens) in (0..).zip([2, 3, 1, 3, 2, 3, 1, 3]) {
        let (snapshot, enrichment) = small(step, tokens);
        let t = evaluate(
            &state,
            Observation {
                snapshot: &snapshot,
                enrichment: &enrichment,
                forecast: None,
            },
            &Thresholds::default(),
        );
        state = t.state;
        events.extend(t.events);
    }
    assert_eq!(kinds(&events), vec![(Created, Critical)]);
}

#[test]
fn resolve_needs_the_hysteresis_margin() {
    let (state, events) = run(
        &AlertState::default(),
        0,
        &tokens(&[190, 210, 220, 221]),
        &Thresholds::default(),
    );
    assert_eq!(
        kinds(&events),
        vec![(Created, Warning), (Resolved, Warning)]
    );
    assert_eq!(events[1].timestamp, at(3));
    assert_eq!(state.open, None);
}

#[test]
fn critical_resolves_straight_to_healthy() {
    let (state, events) = run(
        &AlertState::default(),
        0,
        &tokens(&[50, 800]),
        &Thresholds::default(),
    );
    assert_eq!(
        kinds(&events),
        vec![(Created, Critical), (Resolved, Critical)]
    );
    assert_eq!(state.open, None);
}

#[test]
fn flapping_around_a_threshold_raises_one_alert() {
    let warning_flap: Vec<i64> = (0..100)
        .map(|i| if i % 2 == 0 { 190 } else { 210 })
        .collect();
    let critical_flap: Vec<i64> = (0..100)
        .map(|i| if i % 2 == 0 { 95 } else { 105 })
        .collect();
    let th = Thresholds::default();
    let (_, events) = run(&AlertState::default(), 0, &tokens(&warning_flap), &th);
    assert_eq!(kinds(&events), vec![(Created, Warning)]);
    let (_, events) = run(&AlertState::default(), 0, &tokens(&critical_flap), &th);
    assert_eq!(kinds(&events), vec![(Created, Critical)]);
    // Without hysteresis the same readings are a storm: this is what the margin prevents.
    let no_margin = Thresholds {
        hysteresis_points: 0.0,
        ..th
    };
    let (_, storm) = run(
        &AlertState::default(),
        0,
        &tokens(&warning_flap),
        &no_margin,
    );
    assert_eq!(storm.len(), 100);
}

#[test]
fn predictive_warning_opens_above_the_threshold_and_holds_within_twice_the_horizon() {
    let th = Thresholds {
        predictive_horizon: Some(TimeDelta::minutes(15)),
        ..Thresholds::default()
    };
    let readings = [
        (480, Some(1_000.0)), // 16.7 min: nothing
        (450, Some(600.0)),   // 10 min: predictive WARNING (45 % remaining)
        (400, Some(1_700.0)), // 28.3 min: within 2 × 15 min, holds
        (380, Some(1_900.0)), // 31.7 min: resolves
    ];
    let (state, events) = run(&AlertState::default(), 0, &readings, &th);
    assert_eq!(
        kinds(&events),
        vec![(Created, Warning), (Resolved, Warning)]
    );
    assert_eq!(events[0].timestamp, at(1));
    assert_eq!(events[1].timestamp, at(3));
    // The message explains the forecast.
    assert!(
        events[0].message.contains(
            "at the current 20 tokens/min, 25 % above this hour's usual, empty in ~10 min"
        ),
        "{}",
        events[0].message
    );
    assert_eq!(state.open, None);
    let (mid, _) = run(&AlertState::default(), 0, &readings[..2], &th);
    assert_eq!(mid.open.map(|a| a.cause), Some(AlertCause::Projection));
}

#[test]
fn the_default_horizon_is_an_hour_and_no_forecast_is_no_warning() {
    // 50 min to empty: within the default 60 min horizon, even near full (the forecast's own
    // evidence rule, not a fill level, decides whether a drain is real).
    let th = Thresholds::default();
    let (_, events) = run(&AlertState::default(), 0, &[(900, Some(3_000.0))], &th);
    assert_eq!(kinds(&events), vec![(Created, Warning)]);
    let (_, events) = run(&AlertState::default(), 0, &[(900, Some(3_700.0))], &th);
    assert!(events.is_empty(), "{events:?}");
    // No forecast (an idle bucket): nothing, however low the projection of the current rate.
    let (_, events) = run(&AlertState::default(), 0, &[(450, None)], &th);
    assert!(events.is_empty(), "{events:?}");
}

#[test]
fn predictive_warning_can_be_turned_off() {
    let th = Thresholds {
        predictive_horizon: None,
        ..Thresholds::default()
    };
    let (_, events) = run(&AlertState::default(), 0, &[(450, Some(60.0))], &th);
    assert!(events.is_empty());
}

#[test]
fn a_threshold_warning_is_not_reopened_by_a_projection() {
    // Same severity, other cause: the open alert simply stays.
    let (state, events) = run(
        &AlertState::default(),
        0,
        &[(150, None), (300, Some(300.0))],
        &Thresholds::default(),
    );
    assert_eq!(kinds(&events), vec![(Created, Warning)]);
    assert_eq!(state.open.map(|a| a.cause), Some(AlertCause::Threshold));
}

#[test]
fn replaying_samples_yields_no_event() {
    let th = Thresholds::default();
    let levels = tokens(&[900, 150, 90, 300, 950]);
    let (state, events) = run(&AlertState::default(), 0, &levels, &th);
    assert_eq!(events.len(), 3);
    // The same cycles again (a retry, or a replay after restart with the persisted state).
    let (again, replayed) = run(&state, 0, &levels, &th);
    assert!(replayed.is_empty(), "{replayed:?}");
    assert_eq!(again, state);
    // A single late, older sample is ignored as well.
    let (_, late) = run(&state, 2, &tokens(&[10]), &th);
    assert!(late.is_empty());
}

#[test]
fn ids_are_stable_across_runs_and_distinct_across_events() {
    let th = Thresholds::default();
    let levels = tokens(&[150, 90, 300]);
    let (_, first) = run(&AlertState::default(), 0, &levels, &th);
    let (_, second) = run(&AlertState::default(), 0, &levels, &th);
    let ids = |evs: &[AlertEvent]| evs.iter().map(|e| e.event_id).collect::<Vec<_>>();
    assert_eq!(ids(&first), ids(&second));
    let distinct: std::collections::HashSet<_> = ids(&first).into_iter().collect();
    assert_eq!(distinct.len(), first.len());
    // The same levels an interval later are other alerts.
    let (_, later) = run(&AlertState::default(), 1, &levels, &th);
    assert!(ids(&later).iter().all(|id| !distinct.contains(id)));
}

#[test]
fn event_serialises_to_the_legacy_schema() {
    let (_, events) = run(
        &AlertState::default(),
        0,
        &tokens(&[50]),
        &Thresholds::default(),
    );
    let json = serde_json::to_value(&events[0]).expect("serialises");
    let object = json.as_object().expect("object");
    let mut keys: Vec<_> = object.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "available_tokens",
            "capacity",
            "endpoint_id",
            "event_id",
            "event_type",
            "exhaustion_projection_seconds",
            "message",
            "psp_category",
            "recovery_eta_seconds",
            "severity",
            "timestamp",
            "utilization_percent",
        ]
    );
    assert_eq!(json["event_type"], "rate_limit.alert.created");
    assert_eq!(json["severity"], "CRITICAL");
    assert_eq!(json["endpoint_id"], "ENTRIES_WRITE");
    assert_eq!(json["psp_category"], "C");
    assert_eq!(json["available_tokens"], 50);
    assert_eq!(json["recovery_eta_seconds"], serde_json::Value::Null);
    assert_eq!(json["timestamp"], "2027-01-15T08:00:00Z");
    assert_eq!(json["event_id"].as_str().map(str::len), Some(36));
    let back: AlertEvent = serde_json::from_value(json).expect("deserialises");
    assert_eq!(back, events[0]);
}

#[test]
fn thresholds_are_checked() {
    let ok = Thresholds::default();
    assert_eq!(ok.check(), Ok(()));
    let cases = [
        (
            Thresholds {
                critical_percent: 20.0,
                ..ok
            },
            ThresholdError::CriticalNotBelowWarning,
        ),
        (
            Thresholds {
                warning_percent: 120.0,
                ..ok
            },
            ThresholdError::OutOfRange,
        ),
        (
            Thresholds {
                critical_percent: f64::NAN,
                ..ok
            },
            ThresholdError::OutOfRange,
        ),
        (
            Thresholds {
                hysteresis_points: -1.0,
                ..ok
            },
            ThresholdError::NegativeHysteresis,
        ),
        (
            Thresholds {
                predictive_horizon: Some(TimeDelta::zero()),
                ..ok
            },
            ThresholdError::NonPositiveHorizon,
        ),
    ];
    for (th, expected) in cases {
        assert_eq!(th.check(), Err(expected), "{th:?}");
    }
}
