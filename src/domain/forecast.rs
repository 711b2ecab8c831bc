//! Exhaustion forecast: when a bucket will run dry, from its own recent trend and its seasonal
//! profile — what it usually consumes at the same hour of the week, learnt from the history
//! kept — with an uncertainty band.
//!
//! # Model
//!
//! - **Profile** ([`SeasonalProfile`]): per hour of the week (168 bins, UTC), a time-weighted
//!   running mean and variance of the consumption rate (tokens/min, the smoothed rate of
//!   [`super::enrich`]). Each sample weighs its interval, so a 10 s poll and a 5 min poll learn
//!   at the same pace; older weeks fade with a time constant of [`PROFILE_MEMORY_HOURS`] hours
//!   of a bin's own time (about that many weeks). A bin speaks once it has seen
//!   [`PROFILE_MIN_HOURS`] hours (two weeks). Only pairs of samples that show the whole
//!   consumption are learnt ([`SeasonalProfile::learn_pair`]: the bucket had room for a whole
//!   refill step, the "clear" pairs of [`super::enrich`], and no re-configuration): a full
//!   bucket hides whatever it consumes below its refill, and learning that as "little" would
//!   make every afternoon look like a surge.
//! - **Forecast** ([`forecast`]): the consumption over the next minutes is the recent rate
//!   shaped by the profile — `c(t) = c_now · usual(t) / usual(now)`, the ratio bounded to
//!   `[0.5, 2]` — so a bucket draining into its daily peak is seen sooner, and one draining
//!   out of it later. With no recent rate (first sample, or right after DICT re-configured the
//!   bucket, a category move) the usual rate stands in: a downgrade that leaves the usual
//!   traffic above the new refill is forecast at once. The level is stepped minute by minute
//!   with refill, capped at capacity, until it reaches zero or the horizon ends.
//! - **Band**: the same walk at the pessimistic rate `c(t) · (1 + z·s)`, `s` the profile's
//!   relative spread at that hour (at least [`MIN_SPREAD`]) and `z` = 1.28, the one-sided 90 %
//!   quantile of a normal: traffic runs above that one hour in ten. The predictive warning opens
//!   when the pessimistic time to empty is within the horizon ("likely empty within …, 90 %
//!   band"), and the message gives both.
//! - **Evidence**: a forecast needs a drain seen, not guessed: the recent rate must exceed the
//!   refill by at least [`MIN_DRAIN_FRACTION`] of capacity per hour, or (no recent rate) the
//!   usual rate must exceed the refill; and the level must show it: a bucket that has not spent
//!   [`MIN_SPENT_FRACTION`] of its capacity forecasts nothing (at 98 % a short-window rate is
//!   noise, and a warning there is one nobody acts on). A full, idle bucket forecasts nothing.
//!
//! Everything here is pure and deterministic; numbers are finite.

use chrono::{DateTime, Datelike, Timelike, Utc};

use super::snapshot::Sample;

/// A bin speaks once it has seen this many hours (two weeks of that hour).
pub const PROFILE_MIN_HOURS: f64 = 2.0;
/// Time constant of a bin's memory, in hours of its own time (about that many weeks).
pub const PROFILE_MEMORY_HOURS: f64 = 6.0;
/// Least relative spread assumed at any hour.
pub const MIN_SPREAD: f64 = 0.15;
/// Least net drain that counts as evidence: this fraction of capacity per hour.
pub const MIN_DRAIN_FRACTION: f64 = 0.02;
/// A bucket forecasts only once it has spent this fraction of its capacity.
pub const MIN_SPENT_FRACTION: f64 = 0.10;
/// The one-sided 90 % quantile of a normal distribution.
const Z90: f64 = 1.28;

/// One hour of the week's learnt consumption.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Bin {
    /// Hours of samples seen (their intervals summed).
    hours: f64,
    /// Running mean, tokens per minute.
    mean: f64,
    /// Running variance.
    var: f64,
}

/// What a policy usually consumes at each hour of the week.
#[derive(Clone, Debug, PartialEq)]
pub struct SeasonalProfile {
    bins: Box<[Bin; 168]>,
}

impl Default for SeasonalProfile {
    fn default() -> Self {
        Self {
            bins: Box::new([Bin::default(); 168]),
        }
    }
}

/// The hour of the week of `at` (Monday 00:00 UTC is 0).
fn hour_of_week(at: DateTime<Utc>) -> usize {
    at.weekday().num_days_from_monday() as usize * 24 + at.hour() as usize
}

impl SeasonalProfile {
    /// Learns the rate `rate` (tokens/min, the smoothed rate at `current`) from the pair
    /// `previous` → `current`, when the pair shows the whole consumption (see the module
    /// documentation); otherwise learns nothing.
    pub fn learn_pair(&mut self, previous: &Sample, current: &Sample, rate: f64) {
        let room =
            current.bucket.capacity - previous.available_tokens.max(current.available_tokens);
        if previous.bucket != current.bucket || room < current.bucket.refill_tokens {
            return;
        }
        let minutes = (current.at - previous.at).as_seconds_f64() / 60.0;
        self.learn(current.at, rate, minutes);
    }

    /// Learns that the bucket consumed `rate` tokens/min over the `interval_minutes` ending at
    /// `at`.
    pub fn learn(&mut self, at: DateTime<Utc>, rate: f64, interval_minutes: f64) {
        if !(rate.is_finite() && rate >= 0.0 && interval_minutes.is_finite()) {
            return;
        }
        // A gap longer than an hour is not an hour of this bin.
        let hours = (interval_minutes / 60.0).clamp(0.0, 1.0);
        if hours <= 0.0 {
            return;
        }
        let Some(bin) = self.bins.get_mut(hour_of_week(at)) else {
            return;
        };
        // Plain average while young, then an exponential memory of PROFILE_MEMORY_HOURS.
        let weight = (hours / (bin.hours + hours)).max(hours / PROFILE_MEMORY_HOURS);
        let delta = rate - bin.mean;
        bin.mean += weight * delta;
        bin.var = (1.0 - weight) * (bin.var + weight * delta * delta);
        bin.hours += hours;
    }

    /// The usual rate at `at` and its relative spread, once that hour has been seen enough.
    pub fn usual(&self, at: DateTime<Utc>) -> Option<(f64, f64)> {
        let bin = self.bins.get(hour_of_week(at))?;
        (bin.hours >= PROFILE_MIN_HOURS).then(|| {
            let spread = if bin.mean > 0.0 {
                bin.var.sqrt() / bin.mean
            } else {
                0.0
            };
            (bin.mean, spread.max(MIN_SPREAD))
        })
    }
}

/// A bucket now, as the forecast needs it.
#[derive(Clone, Copy, Debug)]
pub struct BucketNow {
    /// DICT's time of the sample.
    pub at: DateTime<Utc>,
    /// Tokens available.
    pub available: f64,
    /// Capacity.
    pub capacity: f64,
    /// Refill, tokens per minute.
    pub refill_per_minute: f64,
    /// The recent consumption rate, tokens per minute, when known.
    pub recent_rate: Option<f64>,
}

impl BucketNow {
    /// The bucket of `sample`, with the recent rate `recent_rate` (tokens/min).
    pub fn of(sample: &Sample, recent_rate: Option<f64>) -> Self {
        Self {
            at: sample.at,
            available: sample.available_tokens as f64,
            capacity: sample.bucket.capacity as f64,
            refill_per_minute: sample.bucket.refill_per_second() * 60.0,
            recent_rate,
        }
    }
}

/// When the bucket would run dry.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Forecast {
    /// Minutes to empty at the forecast rate; none if not within the horizon.
    pub central_minutes: Option<f64>,
    /// Minutes to empty at the pessimistic rate (90 % band); none if not within the horizon.
    pub pessimistic_minutes: Option<f64>,
    /// The consumption rate the forecast starts from, tokens per minute.
    pub rate_now: f64,
    /// This hour's usual rate, when the profile knows it.
    pub usual_now: Option<f64>,
}

impl Forecast {
    /// One line for an alert: "at the current 1,240 tokens/min, 14 % above this hour's usual,
    /// empty in ~38 min (within 31 min at this hour's 90th percentile)".
    pub fn explain(&self) -> String {
        use std::fmt::Write;
        let mut s = format!("at the current {} tokens/min", grouped(self.rate_now));
        match self.usual_now.filter(|u| *u > 0.0) {
            Some(usual) => {
                let pct = (100.0 * (self.rate_now / usual - 1.0)).round();
                if pct.abs() < 5.0 {
                    s.push_str(", about this hour's usual");
                } else {
                    let word = if pct > 0.0 { "above" } else { "below" };
                    let _ = write!(s, ", {:.0} % {word} this hour's usual", pct.abs());
                }
            }
            None => s.push_str(" (no usual rate for this hour yet)"),
        }
        let band = "if traffic runs at this hour's 90th percentile";
        let _ = match (self.central_minutes, self.pessimistic_minutes) {
            (Some(c), Some(p)) if p + 0.5 < c => {
                write!(s, ", empty in ~{c:.0} min (within {p:.0} min {band})")
            }
            (Some(c), _) => write!(s, ", empty in ~{c:.0} min"),
            (None, Some(p)) => write!(s, ", empty within {p:.0} min {band}"),
            (None, None) => Ok(()),
        };
        s
    }
}

/// `1240.3` → `1,240`; small rates keep a decimal.
fn grouped(x: f64) -> String {
    if x < 10.0 {
        return format!("{x:.1}");
    }
    let n = x.round() as i64;
    let digits = n.abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// The forecast for `bucket` over `horizon_minutes`, or none when there is no evidence of a
/// drain (see the module documentation).
pub fn forecast(
    profile: Option<&SeasonalProfile>,
    bucket: BucketNow,
    horizon_minutes: f64,
) -> Option<Forecast> {
    let usual_at = |t: DateTime<Utc>| profile.and_then(|p| p.usual(t));
    let usual_now = usual_at(bucket.at);
    let r = bucket.refill_per_minute.max(0.0);
    let rate_now = match (bucket.recent_rate, usual_now) {
        (Some(c), _) => c,
        (None, Some((u, _))) => u,
        (None, None) => return None,
    };
    let least_drain = MIN_DRAIN_FRACTION * bucket.capacity / 60.0;
    let spent = bucket.capacity - bucket.available;
    if !(rate_now.is_finite()
        && rate_now - r >= least_drain.max(f64::EPSILON)
        && spent >= MIN_SPENT_FRACTION * bucket.capacity)
    {
        return None;
    }
    if bucket.available <= 0.0 {
        return Some(Forecast {
            central_minutes: Some(0.0),
            pessimistic_minutes: Some(0.0),
            rate_now,
            usual_now: usual_now.map(|(u, _)| u),
        });
    }
    // The rate at minute m: the recent rate shaped by the profile.
    let at_minute = |m: f64| -> (f64, f64) {
        let t = bucket.at + chrono::TimeDelta::seconds((m * 60.0) as i64);
        match (usual_now, usual_at(t)) {
            (Some((u0, _)), Some((u, spread))) if u0 > 0.0 => {
                (rate_now * (u / u0).clamp(0.5, 2.0), spread)
            }
            (_, Some((_, spread))) => (rate_now, spread),
            _ => (rate_now, MIN_SPREAD),
        }
    };
    let walk = |pessimistic: bool| -> Option<f64> {
        let mut level = bucket.available;
        // At most a week of minutes; a NaN horizon walks none.
        let steps = horizon_minutes.clamp(0.0, 7.0 * 24.0 * 60.0).ceil();
        for m in (0..10_080_u32).take_while(|m| f64::from(*m) < steps) {
            let m = f64::from(m);
            let (c, spread) = at_minute(m);
            let c = if pessimistic {
                c * (1.0 + Z90 * spread)
            } else {
                c
            };
            let next = (level + r - c).min(bucket.capacity);
            if next <= 0.0 {
                // Within the minute, linearly.
                let fraction = if level - next > 0.0 {
                    level / (level - next)
                } else {
                    1.0
                };
                return Some(m + fraction.clamp(0.0, 1.0));
            }
            level = next;
        }
        None
    };
    Some(Forecast {
        central_minutes: walk(false),
        pessimistic_minutes: walk(true),
        rate_now,
        usual_now: usual_now.map(|(u, _)| u),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(h: i64) -> DateTime<Utc> {
        // 2026-11-02 is a Monday.
        DateTime::from_timestamp(1_793_577_600 + h * 3600, 0).expect("in range")
    }

    fn learnt(weeks: i64, rate_at: impl Fn(i64) -> f64) -> SeasonalProfile {
        let mut p = SeasonalProfile::default();
        for h in 0..weeks * 168 {
            for k in 0..12 {
                p.learn(
                    at(h) + chrono::TimeDelta::minutes(5 * k),
                    rate_at(h % 24),
                    5.0,
                );
            }
        }
        p
    }

    #[test]
    fn the_profile_learns_each_hour_and_speaks_after_two_weeks() {
        let p = learnt(1, |h| h as f64);
        assert_eq!(p.usual(at(5)), None, "one week is not enough");
        let p = learnt(3, |h| h as f64);
        let (u, spread) = p.usual(at(24 * 7 + 5)).expect("known");
        assert!((u - 5.0).abs() < 1e-9, "{u}");
        assert!((spread - MIN_SPREAD).abs() < 1e-9);
    }

    #[test]
    fn a_steady_drain_is_forecast_and_an_idle_bucket_is_not() {
        let bucket = BucketNow {
            at: at(0),
            available: 300.0,
            capacity: 1000.0,
            refill_per_minute: 10.0,
            recent_rate: Some(20.0),
        };
        let f = forecast(None, bucket, 60.0).expect("draining");
        // 300 tokens at a net 10 a minute: 30 minutes.
        assert!(
            (f.central_minutes.expect("within") - 30.0).abs() < 0.01,
            "{f:?}"
        );
        assert!(f.pessimistic_minutes.expect("within") < 30.0);
        assert!(f.explain().contains("empty in ~30 min"), "{}", f.explain());
        let idle = BucketNow {
            recent_rate: Some(10.2),
            ..bucket
        };
        assert_eq!(forecast(None, idle, 60.0), None, "no evidence of a drain");
        let nearly_full = BucketNow {
            available: 950.0,
            ..bucket
        };
        assert_eq!(
            forecast(None, nearly_full, 60.0),
            None,
            "a bucket at 95 % has not shown a drain"
        );
    }

    #[test]
    fn the_profile_sees_a_drain_into_the_peak_sooner() {
        // Usual: 5/min at night, 20/min from 10:00.
        let p = learnt(3, |h| if h >= 10 { 20.0 } else { 5.0 });
        let bucket = BucketNow {
            at: at(24 * 21 + 9) + chrono::TimeDelta::minutes(30),
            available: 500.0,
            capacity: 1000.0,
            refill_per_minute: 10.0,
            recent_rate: Some(12.0),
        };
        let flat = forecast(None, bucket, 120.0).expect("draining");
        let seasonal = forecast(Some(&p), bucket, 120.0).expect("draining");
        assert_eq!(flat.central_minutes, None, "250 min at a net 2/min");
        let c = seasonal.central_minutes.expect("the peak drains it");
        assert!(c < 120.0, "{seasonal:?}");
        assert!(
            seasonal.explain().contains("above this hour's usual"),
            "{}",
            seasonal.explain()
        );
    }

    #[test]
    fn after_a_category_move_the_usual_rate_stands_in() {
        let p = learnt(3, |_| 8.0);
        let bucket = BucketNow {
            at: at(24 * 21 + 12),
            available: 200.0,
            capacity: 400.0,
            refill_per_minute: 4.0,
            recent_rate: None,
        };
        let f = forecast(Some(&p), bucket, 60.0).expect("the usual traffic drains it");
        assert!(
            (f.central_minutes.expect("within") - 50.0).abs() < 0.01,
            "{f:?}"
        );
        assert_eq!(forecast(None, bucket, 60.0), None);
    }
}
