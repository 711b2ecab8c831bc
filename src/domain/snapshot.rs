//! A sample of one bucket as DICT reported it, and the checks a sample must pass before it is
//! used or stored.
//!
//! Invariants: a [`Sample`] that passed [`validate`] has a valid [`BucketConfig`],
//! `-capacity <= available_tokens <= capacity`, a time representable in nanoseconds since the
//! epoch (1677–2262), not further ahead of the local clock than the allowed skew, and strictly
//! after the last sample accepted for the same policy.

use std::fmt;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use super::bucket::Enrichment;
use super::policy::{BucketConfig, PolicyName, PspCategory};

/// One reading of one bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sample {
    /// DICT's `ResponseTime`: the time authority, never the local clock.
    pub at: DateTime<Utc>,
    /// Tokens in the bucket at that moment. Negative after a DICT penalty (legal, and CRITICAL).
    pub available_tokens: i64,
    /// Capacity and refill as reported at that moment.
    pub bucket: BucketConfig,
    /// The participant's category as reported at that moment.
    pub category: PspCategory,
}

/// A [`Sample`] of a named policy: one row of the legacy `dict_rate_limit_states` table before
/// its derived columns are computed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The policy read.
    pub policy: PolicyName,
    /// What DICT said of it.
    pub sample: Sample,
}

/// A snapshot with its derived metrics as computed when it was taken, and the time dictmon
/// stored it: one row of the legacy `dict_rate_limit_states` table, all columns.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StateRecord {
    /// The policy read.
    pub policy: PolicyName,
    /// What DICT said of it.
    pub sample: Sample,
    /// The derived metrics computed at the time (kept, never recomputed on read).
    pub enrichment: Enrichment,
    /// When dictmon stored it (the legacy `created_at`; the local clock).
    pub created_at: DateTime<Utc>,
}

/// A stored row as the API, `status` and `query states --format json` show it: flat, with the
/// legacy `dict_rate_limit_states` columns' names, plus `remaining_percent`.
#[derive(Serialize)]
pub struct StateJson<'a> {
    /// The policy.
    pub endpoint_id: &'a str,
    /// Tokens available.
    pub available_tokens: i64,
    /// Bucket capacity.
    pub capacity: i64,
    /// Tokens per refill step.
    pub refill_tokens: i64,
    /// Seconds per refill step.
    pub refill_period_sec: i64,
    /// The participant's category.
    pub psp_category: PspCategory,
    /// Derived, as computed when stored.
    pub utilization_percent: f64,
    /// Derived.
    pub remaining_percent: f64,
    /// Derived; none before a second sample.
    pub consumption_rate_per_minute: Option<f64>,
    /// Derived; none for never.
    pub recovery_eta_seconds: Option<f64>,
    /// Derived; none for never.
    pub exhaustion_projection_seconds: Option<f64>,
    /// DICT's time of the reading.
    pub response_time: DateTime<Utc>,
    /// When dictmon stored it.
    pub created_at: DateTime<Utc>,
}

impl<'a> From<&'a StateRecord> for StateJson<'a> {
    fn from(r: &'a StateRecord) -> Self {
        let (s, e) = (&r.sample, &r.enrichment);
        Self {
            endpoint_id: r.policy.as_str(),
            available_tokens: s.available_tokens,
            capacity: s.bucket.capacity,
            refill_tokens: s.bucket.refill_tokens,
            refill_period_sec: s.bucket.refill_period_secs,
            psp_category: s.category,
            utilization_percent: e.utilization_percent,
            remaining_percent: e.remaining_percent,
            consumption_rate_per_minute: e.consumption_rate_per_minute,
            recovery_eta_seconds: e.recovery_eta_seconds,
            exhaustion_projection_seconds: e.exhaustion_projection_seconds,
            response_time: s.at,
            created_at: r.created_at,
        }
    }
}

/// Why a sample was refused. Each reason is also a bounded metric label ([`Self::label`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum RejectReason {
    /// The policy name is empty, too long, or has characters other than `A–Z 0–9 _`.
    #[error("policy name is not of the form [A-Z0-9_]{{1,64}}")]
    MalformedPolicyName,
    /// The category is empty or longer than one character.
    #[error("category is not a single letter")]
    MalformedCategory,
    /// Capacity is zero or negative.
    #[error("capacity is zero or negative")]
    NonPositiveCapacity,
    /// Refill tokens are zero or negative.
    #[error("refill tokens are zero or negative")]
    NonPositiveRefillTokens,
    /// Refill period is zero or negative.
    #[error("refill period is zero or negative")]
    NonPositiveRefillPeriod,
    /// More tokens available than the bucket holds.
    #[error("available tokens exceed capacity")]
    TokensAboveCapacity,
    /// A balance below `-capacity`: DICT admits a call only while the balance is positive and
    /// no published penalty exceeds a bucket's capacity, so such a value is nonsense.
    #[error("available tokens are below minus the capacity")]
    TokensImplausiblyNegative,
    /// A time outside what dictmon stores (years 1677–2262).
    #[error("response time is out of the representable range")]
    TimeOutOfRange,
    /// A time further ahead of the local clock than the allowed skew.
    #[error("response time lies too far in the future")]
    TimeInFuture,
    /// A time before the last accepted sample of the same policy.
    #[error("response time went backwards for this policy")]
    TimeWentBackwards,
    /// The same time as the last accepted sample: a retried or replayed cycle. Skipped so that
    /// nothing is stored or alerted twice; not a fault of the source.
    #[error("sample already seen (same response time)")]
    Replayed,
    /// DICT's answer failed signature verification (`signing_cert`): none of its samples is
    /// used. Counted once per answer.
    #[error("DICT's signature on the answer is missing or does not verify")]
    BadSignature,
}

impl RejectReason {
    /// Every reason, for pre-registering metric labels.
    pub const ALL: [Self; 12] = [
        Self::MalformedPolicyName,
        Self::MalformedCategory,
        Self::NonPositiveCapacity,
        Self::NonPositiveRefillTokens,
        Self::NonPositiveRefillPeriod,
        Self::TokensAboveCapacity,
        Self::TokensImplausiblyNegative,
        Self::TimeOutOfRange,
        Self::TimeInFuture,
        Self::TimeWentBackwards,
        Self::Replayed,
        Self::BadSignature,
    ];

    /// The metric label value (`reason="tokens_above_capacity"`).
    pub fn label(self) -> &'static str {
        match self {
            Self::MalformedPolicyName => "malformed_policy_name",
            Self::MalformedCategory => "malformed_category",
            Self::NonPositiveCapacity => "non_positive_capacity",
            Self::NonPositiveRefillTokens => "non_positive_refill_tokens",
            Self::NonPositiveRefillPeriod => "non_positive_refill_period",
            Self::TokensAboveCapacity => "tokens_above_capacity",
            Self::TokensImplausiblyNegative => "tokens_implausibly_negative",
            Self::TimeOutOfRange => "time_out_of_range",
            Self::TimeInFuture => "time_in_future",
            Self::TimeWentBackwards => "time_went_backwards",
            Self::Replayed => "replayed",
            Self::BadSignature => "bad_signature",
        }
    }
}

/// Limits of [`validate`] that an operator may tune.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ValidationLimits {
    /// How far DICT's `ResponseTime` may lie ahead of the local clock (clock skew).
    pub max_future_skew: TimeDelta,
}

impl Default for ValidationLimits {
    /// Five minutes: one default poll interval.
    fn default() -> Self {
        Self {
            max_future_skew: TimeDelta::minutes(5),
        }
    }
}

/// Checks one sample. `last_accepted` is the time of the last sample accepted for the same
/// policy (none for a policy never seen); `now` is the local clock.
pub fn validate(
    sample: &Sample,
    last_accepted: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    limits: ValidationLimits,
) -> Result<(), RejectReason> {
    sample.bucket.check()?;
    if sample.available_tokens > sample.bucket.capacity {
        return Err(RejectReason::TokensAboveCapacity);
    }
    if sample.available_tokens < -sample.bucket.capacity {
        return Err(RejectReason::TokensImplausiblyNegative);
    }
    if sample.at.timestamp_nanos_opt().is_none() {
        return Err(RejectReason::TimeOutOfRange);
    }
    if now
        .checked_add_signed(limits.max_future_skew)
        .is_some_and(|latest| sample.at > latest)
    {
        return Err(RejectReason::TimeInFuture);
    }
    match last_accepted {
        Some(last) if sample.at < last => Err(RejectReason::TimeWentBackwards),
        Some(last) if sample.at == last => Err(RejectReason::Replayed),
        _ => Ok(()),
    }
}

impl fmt::Display for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.sample;
        write!(
            f,
            "{} at {}: {}/{} tokens, refill {}/{}s, category {}",
            self.policy,
            s.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            s.available_tokens,
            s.bucket.capacity,
            s.bucket.refill_tokens,
            s.bucket.refill_period_secs,
            s.category
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).expect("in range")
    }

    fn sample(at: DateTime<Utc>, available: i64) -> Sample {
        Sample {
            at,
            available_tokens: available,
            bucket: BucketConfig {
                capacity: 100,
                refill_tokens: 2,
                refill_period_secs: 60,
            },
            category: PspCategory::H,
        }
    }

    fn check(s: &Sample, last: Option<DateTime<Utc>>) -> Result<(), RejectReason> {
        validate(s, last, t(0), ValidationLimits::default())
    }

    #[test]
    fn a_penalty_below_zero_is_legal() {
        // The manual's worked example: 5 tokens, a 404 costs 20, balance -15.
        assert_eq!(check(&sample(t(0), -15), None), Ok(()));
        assert_eq!(check(&sample(t(0), -100), None), Ok(()));
        assert_eq!(
            check(&sample(t(0), -101), None),
            Err(RejectReason::TokensImplausiblyNegative)
        );
    }

    #[test]
    fn tokens_above_capacity_are_rejected() {
        assert_eq!(check(&sample(t(0), 100), None), Ok(()));
        assert_eq!(
            check(&sample(t(0), 101), None),
            Err(RejectReason::TokensAboveCapacity)
        );
    }

    #[test]
    fn bad_bucket_configuration_is_rejected_before_tokens() {
        let mut s = sample(t(0), 500);
        s.bucket.capacity = 0;
        assert_eq!(check(&s, None), Err(RejectReason::NonPositiveCapacity));
    }

    #[test]
    fn time_must_move_forward_per_policy() {
        let s = sample(t(-10), 50);
        assert_eq!(check(&s, Some(t(-20))), Ok(()));
        assert_eq!(check(&s, Some(t(-10))), Err(RejectReason::Replayed));
        assert_eq!(check(&s, Some(t(-5))), Err(RejectReason::TimeWentBackwards));
    }

    #[test]
    fn time_may_lead_the_local_clock_by_the_allowed_skew_only() {
        assert_eq!(check(&sample(t(300), 50), None), Ok(()));
        assert_eq!(
            check(&sample(t(301), 50), None),
            Err(RejectReason::TimeInFuture)
        );
    }

    #[test]
    fn times_beyond_nanosecond_range_are_rejected() {
        let far = DateTime::from_timestamp(i64::from(i32::MAX) * 10, 0).expect("chrono range");
        let s = sample(far, 1);
        let r = validate(&s, None, far, ValidationLimits::default());
        assert_eq!(r, Err(RejectReason::TimeOutOfRange));
    }

    #[test]
    fn labels_are_distinct_snake_case() {
        let labels: std::collections::HashSet<_> =
            RejectReason::ALL.iter().map(|r| r.label()).collect();
        assert_eq!(labels.len(), RejectReason::ALL.len());
        assert!(
            labels
                .iter()
                .all(|l| l.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
        );
    }
}
