//! A policy's history for the dashboard's policy page: the retained segments read for one
//! policy over a chosen range and folded into a few hundred steps, the alerts that touch the
//! range, and its forensics — the episodes at or below WARNING and the summary by period
//! ([`crate::domain::forensics`], as `dictmon query episodes|summary` computes them).
//!
//! Invariants: memory is one entry a step, a summary row a period, an episode and the range's
//! alerts, never the rows read;
//! damaged blocks are counted and skipped (the page says so), never fatal.

use chrono::{DateTime, TimeDelta, Utc};

use super::chart::{Downsampler, Step};
use crate::domain::forensics::{Episode, Forensics, ForensicsQuery, Period, SummaryRow};
use crate::domain::{Alert, PolicyName, Thresholds};
use crate::store::catalog::Catalog;
use crate::store::{Filter, StoreError, StoreReader};

/// The longest time one sample stands for in the page's forensics (`--max-gap`'s default).
pub const MAX_GAP: TimeDelta = TimeDelta::minutes(15);

/// Steps a history chart is folded into.
pub const CHART_STEPS: usize = 300;

/// The ranges the policy page offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Range {
    /// The last 24 hours.
    Day,
    /// The last 7 days.
    Week,
    /// The last 30 days.
    Month,
    /// The retained history: 13 months.
    Retained,
}

impl Range {
    /// Every range, shortest first.
    pub const ALL: [Self; 4] = [Self::Day, Self::Week, Self::Month, Self::Retained];

    /// The value of `?range=`.
    pub fn key(self) -> &'static str {
        match self {
            Self::Day => "24h",
            Self::Week => "7d",
            Self::Month => "30d",
            Self::Retained => "13mo",
        }
    }

    /// For people.
    pub fn label(self) -> &'static str {
        match self {
            Self::Day => "24 h",
            Self::Week => "7 days",
            Self::Month => "30 days",
            Self::Retained => "13 months",
        }
    }

    /// The summary's period: about one row a day of the range or fewer.
    pub fn period(self) -> Period {
        match self {
            Self::Day => Period::Hour,
            Self::Week | Self::Month => Period::Day,
            Self::Retained => Period::Month,
        }
    }

    /// How far back from now.
    pub fn span(self) -> TimeDelta {
        match self {
            Self::Day => TimeDelta::days(1),
            Self::Week => TimeDelta::days(7),
            Self::Month => TimeDelta::days(30),
            Self::Retained => TimeDelta::days(396),
        }
    }

    /// The range named by `?range=` (the default, 24 h, when absent).
    pub fn parse(key: Option<&str>) -> Result<Self, String> {
        match key {
            None | Some("") => Ok(Self::Day),
            Some(k) => Self::ALL.into_iter().find(|r| r.key() == k).ok_or_else(|| {
                let keys: Vec<_> = Self::ALL.iter().map(|r| r.key()).collect();
                format!("unknown range {k:?}; one of {}", keys.join(", "))
            }),
        }
    }
}

/// What the policy page draws.
pub struct History {
    /// The range shown.
    pub range: Range,
    /// Start of the chart: the range's start, or the first sample if later.
    pub since: DateTime<Utc>,
    /// End of the range (now).
    pub until: DateTime<Utc>,
    /// Remaining % folded into steps, oldest first.
    pub steps: Vec<Step>,
    /// Width of one step, ms.
    pub step_ms: f64,
    /// Rows read.
    pub rows: u64,
    /// Damaged blocks skipped, located.
    pub damage: Vec<String>,
    /// The policy's alerts open at some time in the range, oldest first.
    pub alerts: Vec<Alert>,
    /// The stretches at or below WARNING in the range, oldest first.
    pub episodes: Vec<Episode>,
    /// The range by [`Range::period`], oldest first.
    pub summary: Vec<SummaryRow>,
}

/// Reads `policy`'s history over `range` ending at `now`. The chart starts at the policy's
/// first sample when that is later than the range's start, so a young history fills it.
pub fn load(
    reader: &StoreReader,
    catalog: &Catalog,
    policy: &PolicyName,
    first_seen: Option<DateTime<Utc>>,
    range: Range,
    thresholds: &Thresholds,
    now: DateTime<Utc>,
) -> Result<History, StoreError> {
    let start = now - range.span();
    let since = first_seen.map_or(start, |f| f.max(start).min(now));
    let mut fold = Downsampler::new(
        since.timestamp_millis(),
        now.timestamp_millis(),
        CHART_STEPS,
    );
    let filter = Filter {
        policies: Some(std::iter::once(policy.clone()).collect()),
        since_ns: since.timestamp_nanos_opt(),
        until_ns: now.timestamp_nanos_opt(),
        sequential: false,
    };
    let th = *thresholds;
    let th_of = move |_: &PolicyName| th;
    let mut forensics = Forensics::new(
        ForensicsQuery {
            by: range.period(),
            below: None,
            max_gap: MAX_GAP,
            since: Some(since),
            until: now,
            episodes: true,
        },
        &th_of,
    );
    let mut rows = 0_u64;
    let damage = reader
        .scan(&filter, &mut |r| {
            rows += 1;
            fold.add(
                r.sample.at.timestamp_millis(),
                r.enrichment.remaining_percent,
            );
            // One policy's blocks give its rows in time order; a late row out of order (rare)
            // is drawn but left out of the forensics rather than held in memory to sort.
            forensics.push(&r);
        })?
        .iter()
        .map(ToString::to_string)
        .collect();
    let mut alerts: Vec<Alert> = catalog
        .alerts()
        .map_err(StoreError::from)?
        .into_iter()
        .filter(|a| &a.policy == policy && a.opened_at < now)
        .filter(|a| a.resolved_at.is_none_or(|r| r >= since))
        .collect();
    alerts.sort_by_key(|a| a.opened_at);
    let (summary, episodes) = forensics.finish(&alerts);
    Ok(History {
        range,
        since,
        until: now,
        step_ms: fold.step_ms(),
        steps: fold.steps(),
        rows,
        damage,
        alerts,
        episodes,
        summary,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_by_key_and_default_to_a_day() {
        for r in Range::ALL {
            assert_eq!(Range::parse(Some(r.key())), Ok(r));
        }
        assert_eq!(Range::parse(None), Ok(Range::Day));
        let e = Range::parse(Some("1y")).expect_err("not a range");
        assert!(e.contains("24h, 7d, 30d, 13mo"), "{e}");
    }
}
