//! Replay benchmark of the predictive warning: how early, and how falsely, dictmon warns of a
//! bucket running dry. `cargo bench --bench forecast_replay` (a few seconds; prints figures,
//! exits 1 when a goal is missed).
//!
//! The replay set is generated here, deterministically per seed: a bucket of 1,000 tokens
//! refilling 10 a minute, polled every 5 minutes, whose ordinary traffic has a daily cycle
//! (peaking at 1.25× the refill on weekday afternoons, so the bucket dips to about half and
//! recovers: the hard case for false alarms) and a weekly one (weekends at 60 %). Each run is
//! four such weeks, then one event in the fifth, of one of four shapes:
//!
//! - `slow-drain`: consumption settles 12 % above the refill (net −1.2 tokens/min): empty after
//!   about 14 hours, visible for hours;
//! - `burst`: a 15-minute burst at 1.1 × capacity per quarter hour: empty in ~13 minutes;
//! - `penalty`: a scan whose failed look-ups cost 3 tokens each (DICT's 404 penalty on the
//!   participant anti-scan bucket), ramping to 8 a minute over 20 minutes and pushing the
//!   balance below zero;
//! - `downgrade`: BACEN moves the participant down a category (capacity 1,000 → 400, refill 10
//!   → 4 a minute) during the day, then the traffic ramps up by half over an hour.
//!
//! Each alert model sees exactly what dictmon sees (whole tokens at each poll), through the same
//! code as `serve`: `enrich` over the recent samples, the forecast, the alert state machine.
//! Compared in the same run: `linear` (the rule before: the current net rate's projection
//! within 15 minutes, at most half full) and `seasonal` (the default now).
//!
//! Figures: an exhaustion counts when at least two polls before it showed a drain; it is warned
//! when an alert (any cause) opened between the event's start and the exhaustion — "forecast"
//! counts those whose first alert was the predictive warning rather than a threshold; the lead
//! is the time from that alert to the first minute at or below zero. False alarms are predictive
//! warnings opened in the four ordinary weeks, per policy-week.

use chrono::{DateTime, Datelike, TimeDelta, Timelike, Utc};
use dictmon::domain::forecast::{BucketNow, Forecast, SeasonalProfile, forecast};
use dictmon::domain::{
    AlertCause, AlertEventType, AlertState, BucketConfig, Observation, PolicyName, PspCategory,
    RateWindow, Sample, Snapshot, Thresholds, enrich, evaluate,
};

const SEEDS: u64 = 8;
const POLL_MINUTES: i64 = 5;
const WEEKS_BEFORE: i64 = 4;
const CAPACITY: f64 = 1_000.0;
const REFILL: f64 = 10.0;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    SlowDrain,
    Burst,
    Penalty,
    Downgrade,
}

const SHAPES: [Shape; 4] = [
    Shape::SlowDrain,
    Shape::Burst,
    Shape::Penalty,
    Shape::Downgrade,
];

impl Shape {
    fn name(self) -> &'static str {
        match self {
            Self::SlowDrain => "slow-drain",
            Self::Burst => "burst",
            Self::Penalty => "penalty",
            Self::Downgrade => "downgrade",
        }
    }
}

/// A small deterministic generator (xorshift64*), so the replay needs no crate and never
/// changes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Ordinary consumption at `t`, tokens per minute, before noise.
fn ordinary(t: DateTime<Utc>) -> f64 {
    let h = f64::from(t.hour()) + f64::from(t.minute()) / 60.0;
    // Brasília business hours: 12:00–24:00 UTC, peaking at 18:00 UTC.
    let daily = if (12.0..24.0).contains(&h) {
        (std::f64::consts::PI * (h - 12.0) / 12.0).sin()
    } else {
        0.0
    };
    let weekday = if t.weekday().num_days_from_monday() >= 5 {
        0.6
    } else {
        1.0
    };
    REFILL * (0.15 + 1.1 * daily) * weekday
}

/// One run: the minute-by-minute bucket, sampled at each poll.
struct Run {
    samples: Vec<Sample>,
    event_start: DateTime<Utc>,
    /// The first minute at or below zero, if the event exhausted the bucket.
    exhausted: Option<DateTime<Utc>>,
}

fn simulate(seed: u64, shape: Shape) -> Run {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (seed * 4 + shape as u64 + 1));
    // Monday 2026-01-05 00:00 UTC.
    let t0 = DateTime::from_timestamp(1_767_571_200, 0).expect("in range");
    let day = 7 * WEEKS_BEFORE + (rng.next() * 4.0) as i64; // a weekday of the fifth week
    let hour = match shape {
        // A drain of hours starts in the morning; the others during business hours.
        Shape::SlowDrain => 6.0 + rng.next() * 4.0,
        _ => 13.0 + rng.next() * 8.0,
    };
    let event_start = t0 + TimeDelta::days(day) + TimeDelta::seconds((hour * 3600.0) as i64);
    let end = event_start + TimeDelta::hours(20);
    let (mut capacity, mut refill, mut level) = (CAPACITY, REFILL, CAPACITY);
    let mut noise = 1.0;
    let mut samples = Vec::new();
    let mut exhausted = None;
    let mut t = t0;
    while t < end {
        let minutes_in = (t - event_start).num_minutes() as f64;
        if t.minute().is_multiple_of(5) {
            noise = 0.85 + 0.3 * rng.next();
        }
        let base = ordinary(t) * noise;
        let started = minutes_in >= 0.0;
        let consumption = match shape {
            _ if !started => base,
            Shape::SlowDrain => base.max(REFILL * 1.12),
            Shape::Burst if minutes_in < 15.0 => base + 1.1 * CAPACITY / 15.0,
            Shape::Burst => base,
            Shape::Penalty => base + 3.0 * 8.0 * (minutes_in / 20.0).min(1.0),
            Shape::Downgrade => base * (1.0 + 0.5 * (minutes_in / 60.0).min(1.0)),
        };
        if shape == Shape::Downgrade && started && capacity > 400.0 {
            (capacity, refill) = (400.0, 4.0);
            level = level.min(capacity);
        }
        // Penalties push the balance below zero; ordinary calls stop at zero.
        let floor = if shape == Shape::Penalty { -100.0 } else { 0.0 };
        level = (level + refill - consumption).clamp(floor, capacity);
        if started && exhausted.is_none() && level <= 0.0 {
            exhausted = Some(t);
        }
        t += TimeDelta::minutes(1);
        if (t - t0).num_minutes() % POLL_MINUTES == 0 {
            samples.push(Sample {
                at: t,
                available_tokens: level.floor() as i64,
                bucket: BucketConfig {
                    capacity: capacity as i64,
                    refill_tokens: refill as i64,
                    refill_period_secs: 60,
                },
                category: if capacity < CAPACITY {
                    PspCategory::E
                } else {
                    PspCategory::C
                },
            });
        }
        if exhausted.is_some_and(|e| t > e + TimeDelta::hours(1)) {
            break;
        }
    }
    Run {
        samples,
        event_start,
        exhausted,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Model {
    Linear,
    Seasonal,
}

/// Alerts opened in a run: (time, cause).
fn replay(run: &Run, model: Model) -> Vec<(DateTime<Utc>, AlertCause)> {
    let policy = PolicyName::new("ENTRIES_READ_PARTICIPANT_ANTISCAN").expect("valid");
    let thresholds = match model {
        Model::Linear => Thresholds {
            predictive_horizon: Some(TimeDelta::minutes(15)),
            ..Thresholds::default()
        },
        Model::Seasonal => Thresholds::default(),
    };
    let horizon = thresholds
        .predictive_horizon
        .map_or(0.0, |h| h.as_seconds_f64() / 60.0);
    let mut profile = SeasonalProfile::default();
    let mut state = AlertState::default();
    let mut opened = Vec::new();
    for (i, sample) in run.samples.iter().enumerate() {
        let window = &run.samples[i.saturating_sub(4)..=i];
        let Some(e) = enrich(window, RateWindow::default()) else {
            continue;
        };
        let f: Option<Forecast> = match model {
            // The rule before: the current net rate's projection, at most half full.
            Model::Linear => e
                .exhaustion_projection_seconds
                .filter(|_| e.remaining_percent <= 50.0)
                .map(|p| Forecast {
                    central_minutes: Some(p / 60.0),
                    pessimistic_minutes: Some(p / 60.0),
                    rate_now: e.consumption_rate_per_minute.unwrap_or(0.0),
                    usual_now: None,
                }),
            Model::Seasonal => forecast(
                Some(&profile),
                BucketNow::of(sample, e.consumption_rate_per_minute),
                horizon,
            ),
        };
        if let (Some(rate), Some(previous)) = (e.consumption_rate_per_minute, i.checked_sub(1)) {
            profile.learn_pair(&run.samples[previous], sample, rate);
        }
        let snapshot = Snapshot {
            policy: policy.clone(),
            sample: *sample,
        };
        let t = evaluate(
            &state,
            Observation {
                snapshot: &snapshot,
                enrichment: &e,
                forecast: f.as_ref(),
            },
            &thresholds,
        );
        for ev in &t.events {
            if ev.event_type == AlertEventType::Created {
                let cause = t
                    .state
                    .open
                    .as_ref()
                    .map_or(AlertCause::Threshold, |a| a.cause);
                opened.push((ev.timestamp, cause));
            }
        }
        state = t.state;
    }
    opened
}

fn median(mut xs: Vec<f64>) -> Option<f64> {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    (n > 0).then(|| {
        if n % 2 == 1 {
            xs[n / 2]
        } else {
            f64::midpoint(xs[n / 2 - 1], xs[n / 2])
        }
    })
}

struct Figures {
    eligible: usize,
    warned: usize,
    /// Warned first by the forecast (before any threshold).
    predicted: usize,
    leads: Vec<(Shape, f64)>,
    false_alarms: usize,
    policy_weeks: f64,
}

fn measure(runs: &[(Shape, Run)], model: Model) -> Figures {
    let mut f = Figures {
        eligible: 0,
        warned: 0,
        predicted: 0,
        leads: Vec::new(),
        false_alarms: 0,
        policy_weeks: 0.0,
    };
    for (shape, run) in runs {
        let opened = replay(run, model);
        let ordinary_end = run.samples[0].at + TimeDelta::weeks(WEEKS_BEFORE);
        f.policy_weeks += WEEKS_BEFORE as f64;
        f.false_alarms += opened
            .iter()
            .filter(|(at, cause)| *at < ordinary_end && *cause == AlertCause::Projection)
            .count();
        let Some(empty) = run.exhausted else {
            continue;
        };
        // At least two polls before the exhaustion showed a drain.
        let draining = run
            .samples
            .windows(2)
            .filter(|w| {
                w[1].at >= run.event_start
                    && w[1].at <= empty
                    && w[1].available_tokens < w[0].available_tokens
            })
            .count();
        if draining < 2 {
            continue;
        }
        f.eligible += 1;
        if let Some((at, cause)) = opened
            .iter()
            .find(|(at, _)| *at >= run.event_start && *at <= empty)
        {
            f.warned += 1;
            f.predicted += usize::from(*cause == AlertCause::Projection);
            f.leads
                .push((*shape, (empty - *at).as_seconds_f64() / 60.0));
        }
    }
    f
}

fn main() {
    let runs: Vec<(Shape, Run)> = (0..SEEDS)
        .flat_map(|seed| SHAPES.map(|shape| (shape, simulate(seed, shape))))
        .collect();
    println!(
        "replay: {SEEDS} seeds × {} shapes, {POLL_MINUTES}-minute polls, {WEEKS_BEFORE} ordinary weeks before each event ({} policy-weeks)",
        SHAPES.len(),
        SEEDS * SHAPES.len() as u64 * WEEKS_BEFORE as u64
    );
    println!(
        "{:<34} {:>8} {:>17} {:>11}  {:<58} {:>14}",
        "model",
        "eligible",
        "warned (forecast)",
        "median lead",
        "median lead by shape, minutes",
        "false/pol-week"
    );
    let mut ok = true;
    for (model, label) in [
        (Model::Linear, "linear (15 min, at most half full)"),
        (Model::Seasonal, "seasonal (60 min, 90 % band)"),
    ] {
        let f = measure(&runs, model);
        let lead = median(f.leads.iter().map(|(_, l)| *l).collect());
        let by_shape: Vec<String> = SHAPES
            .iter()
            .map(|s| {
                let m = median(
                    f.leads
                        .iter()
                        .filter(|(x, _)| x == s)
                        .map(|(_, l)| *l)
                        .collect(),
                );
                format!(
                    "{} {}",
                    s.name(),
                    m.map_or("–".to_owned(), |m| format!("{m:.0}"))
                )
            })
            .collect();
        let false_rate = f.false_alarms as f64 / f.policy_weeks;
        println!(
            "{label:<34} {:>8} {:>17} {:>11}  {:<58} {:>14.2}",
            f.eligible,
            format!("{} ({})", f.warned, f.predicted),
            lead.map_or("–".to_owned(), |l| format!("{l:.1} min")),
            by_shape.join(", "),
            false_rate
        );
        if model == Model::Seasonal {
            let goals = [
                ("every eligible exhaustion warned", f.warned == f.eligible),
                ("median lead >= 10 min", lead.is_some_and(|l| l >= 10.0)),
                (
                    "<= 1 false predictive alert per policy-week",
                    false_rate <= 1.0,
                ),
            ];
            for (goal, met) in goals {
                println!("  goal: {goal}: {}", if met { "met" } else { "MISSED" });
                ok &= met;
            }
        }
    }
    if !ok {
        std::process::exit(1);
    }
}
