//! Incident forensics over a policy history: per-policy summaries by hour, day, week or month
//! (`dictmon query summary`, the dashboard's policy page) and the episodes a bucket spent low
//! (`dictmon query episodes`, the same page). Pure: samples and alerts in, rows out; the
//! output formats are `export`'s.
//!
//! # Time
//!
//! A sample stands for its policy's state from its response time until the policy's next
//! sample, but for at most `max_gap` (default 15 minutes, three 5-minute polls): a longer
//! silence is a gap in polling, counted in no state. The last sample of the window stands until
//! the window's end (`--until`, or now), at most `max_gap`. Time is split at period boundaries
//! (UTC; weeks start on Monday), so the periods' times add up to the whole.
//!
//! # Episodes
//!
//! An episode is a maximal stretch of that time during which the policy's state met the
//! condition: remaining % at or below the policy's WARNING threshold, or, with `below`,
//! strictly under that percentage. It starts at its first sample, ends when the next sample
//! does not meet the condition (at that sample's time) or when its last sample's time runs out
//! (a gap: `max_gap` after it); it is *ongoing* when the end of the window cut it. A summary's
//! time at or below WARNING is the sum of the default episodes' time in its period.
//!
//! Invariants: each policy's samples are taken in time order ([`Forensics::push`] refuses,
//! and counts in [`Forensics::late`], one that goes back in time, so a reader can read again
//! sorted); the engine keeps one small state per policy and a row per policy and period, and
//! holds nothing per sample, so memory does not grow with the history.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Datelike, Months, NaiveDate, TimeDelta, TimeZone, Timelike, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::{Alert, PolicyName, StateRecord, Thresholds};

/// A bucket of time of a summary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Period {
    /// UTC hours.
    Hour,
    /// UTC days.
    Day,
    /// ISO weeks (Monday 00:00 UTC).
    Week,
    /// UTC months.
    Month,
}

impl std::str::FromStr for Period {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "hour" => Ok(Self::Hour),
            "day" => Ok(Self::Day),
            "week" => Ok(Self::Week),
            "month" => Ok(Self::Month),
            _ => Err(format!(
                "unknown period {s:?}; one of hour, day, week, month"
            )),
        }
    }
}

impl Period {
    /// The start of the period holding `t`.
    pub fn start(self, t: DateTime<Utc>) -> DateTime<Utc> {
        let day = t.date_naive();
        let midnight = |d: NaiveDate| Utc.from_utc_datetime(&d.and_time(chrono::NaiveTime::MIN));
        match self {
            Self::Hour => midnight(day) + TimeDelta::hours(i64::from(t.hour())),
            Self::Day => midnight(day),
            Self::Week => {
                midnight(day - TimeDelta::days(i64::from(day.weekday().num_days_from_monday())))
            }
            Self::Month => midnight(day.with_day(1).unwrap_or(day)),
        }
    }

    /// The start of the period after the one starting at `start`.
    pub fn next(self, start: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            Self::Hour => start + TimeDelta::hours(1),
            Self::Day => start + TimeDelta::days(1),
            Self::Week => start + TimeDelta::weeks(1),
            Self::Month => start
                .checked_add_months(Months::new(1))
                .unwrap_or(DateTime::<Utc>::MAX_UTC),
        }
    }
}

/// What to compute, and over which window.
#[derive(Clone, Debug)]
pub struct ForensicsQuery {
    /// Summary periods.
    pub by: Period,
    /// Count samples strictly under this remaining % (summary); the episode condition instead
    /// of the WARNING threshold (episodes).
    pub below: Option<f64>,
    /// The longest time one sample stands for.
    pub max_gap: TimeDelta,
    /// The window's start (inclusive), if any.
    pub since: Option<DateTime<Utc>>,
    /// The window's end (exclusive): the last sample stands until then at most.
    pub until: DateTime<Utc>,
    /// Whether to collect episodes: a summary alone need not.
    pub episodes: bool,
}

/// One policy in one period.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SummaryRow {
    /// The policy (`endpoint_id`).
    pub endpoint_id: String,
    /// The period's start.
    pub period_start: DateTime<Utc>,
    /// Samples whose response time is in the period.
    pub samples: u64,
    /// Lowest remaining %.
    pub min_remaining_percent: Option<f64>,
    /// Mean remaining % over the samples.
    pub mean_remaining_percent: Option<f64>,
    /// Highest remaining %.
    pub max_remaining_percent: Option<f64>,
    /// Seconds of the period some sample stood for.
    pub observed_seconds: f64,
    /// Seconds at or below the WARNING threshold (the CRITICAL time included).
    pub at_or_below_warning_seconds: f64,
    /// Seconds at or below the CRITICAL threshold.
    pub at_or_below_critical_seconds: f64,
    /// Times the bucket reached zero tokens or fewer.
    pub exhaustions: u64,
    /// Highest consumption rate, tokens per minute.
    pub peak_consumption_rate_per_minute: Option<f64>,
    /// Alerts opened in the period.
    pub alerts_opened: u64,
    /// Samples strictly under `below` (with `--below` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub samples_below: Option<u64>,
}

/// A summary row being added up: plain numbers, with infinities for "none yet", so that a
/// sample costs a few additions and comparisons.
#[derive(Debug)]
struct Tally {
    endpoint_id: String,
    period_start: DateTime<Utc>,
    samples: u64,
    sum_remaining: f64,
    min_remaining: f64,
    max_remaining: f64,
    observed_seconds: f64,
    warning_seconds: f64,
    critical_seconds: f64,
    exhaustions: u64,
    peak_rate: f64,
    alerts_opened: u64,
    below: u64,
}

impl Tally {
    fn new(endpoint_id: String, period_start: DateTime<Utc>) -> Self {
        Self {
            endpoint_id,
            period_start,
            samples: 0,
            sum_remaining: 0.0,
            min_remaining: f64::INFINITY,
            max_remaining: f64::NEG_INFINITY,
            observed_seconds: 0.0,
            warning_seconds: 0.0,
            critical_seconds: 0.0,
            exhaustions: 0,
            peak_rate: f64::NEG_INFINITY,
            alerts_opened: 0,
            below: 0,
        }
    }

    fn row(self, below: bool) -> SummaryRow {
        let some = self.samples > 0;
        SummaryRow {
            endpoint_id: self.endpoint_id,
            period_start: self.period_start,
            samples: self.samples,
            min_remaining_percent: some.then_some(self.min_remaining),
            mean_remaining_percent: some.then(|| self.sum_remaining / self.samples as f64),
            max_remaining_percent: some.then_some(self.max_remaining),
            observed_seconds: self.observed_seconds,
            at_or_below_warning_seconds: self.warning_seconds,
            at_or_below_critical_seconds: self.critical_seconds,
            exhaustions: self.exhaustions,
            peak_consumption_rate_per_minute: self.peak_rate.is_finite().then_some(self.peak_rate),
            alerts_opened: self.alerts_opened,
            samples_below: below.then_some(self.below),
        }
    }
}

/// A stretch of time a policy spent low.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Episode {
    /// The policy (`endpoint_id`).
    pub endpoint_id: String,
    /// The first sample that met the condition.
    pub start: DateTime<Utc>,
    /// When it stopped (see the module documentation).
    pub end: DateTime<Utc>,
    /// `end − start`, seconds.
    pub duration_seconds: f64,
    /// The window's end cut it: it may go on.
    pub ongoing: bool,
    /// The threshold: remaining % at or below it (the WARNING threshold), or strictly under
    /// it (`--below`).
    pub threshold_percent: f64,
    /// Lowest remaining % during it.
    pub lowest_remaining_percent: f64,
    /// When it was lowest (the first such sample).
    pub lowest_at: DateTime<Utc>,
    /// Samples during it.
    pub samples: u64,
    /// Alerts of the policy open at some time during it.
    pub alert_ids: Vec<Uuid>,
}

/// What forensics reads of a row: its response time, tokens and the two derived values it
/// looks at, as stored.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Reading {
    /// Response time, ns since the epoch.
    pub at_ns: i64,
    /// Available tokens.
    pub available: i64,
    /// Remaining %.
    pub remaining_percent: f64,
    /// Consumption rate, tokens per minute.
    pub consumption_rate_per_minute: Option<f64>,
}

impl Reading {
    /// The reading of a record.
    pub fn of(r: &StateRecord) -> Self {
        Self {
            at_ns: ns(r.sample.at),
            available: r.sample.available_tokens,
            remaining_percent: r.enrichment.remaining_percent,
            consumption_rate_per_minute: r.enrichment.consumption_rate_per_minute,
        }
    }
}

/// A period's bounds, ns.
#[derive(Clone, Copy, Debug)]
struct Span {
    start: i64,
    end: i64,
    /// Its row in [`Forensics::rows`].
    row: usize,
}

/// One policy's state between samples.
#[derive(Debug)]
struct Track {
    name: String,
    /// The name as last pushed: a reader hands one per frame, so comparing it by address
    /// spares a comparison of strings per sample.
    policy: PolicyName,
    thresholds: Thresholds,
    last: Option<Reading>,
    episode: Option<Episode>,
    /// The period of the latest row touched.
    span: Option<Span>,
    /// Its rows by period start (ns).
    periods: BTreeMap<i64, usize>,
}

/// The engine: fed samples, it yields summaries and episodes. Per sample it does a few
/// comparisons and additions; a period's row is looked up only when a sample leaves the
/// previous one.
pub struct Forensics<'a> {
    query: ForensicsQuery,
    max_gap: i64,
    until: i64,
    thresholds: &'a dyn Fn(&PolicyName) -> Thresholds,
    index: HashMap<PolicyName, usize>,
    tracks: Vec<Track>,
    rows: Vec<Tally>,
    episodes: Vec<Episode>,
    /// The track of the previous sample (samples come in runs of one policy).
    recent: usize,
    /// Samples refused because they were older than their policy's previous one.
    late: u64,
}

fn ns(t: DateTime<Utc>) -> i64 {
    t.timestamp_nanos_opt().unwrap_or(if t.timestamp() < 0 {
        i64::MIN
    } else {
        i64::MAX
    })
}

fn time_of(ns: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_nanos(ns)
}

fn seconds(ns: i64) -> f64 {
    ns as f64 / 1e9
}

impl<'a> Forensics<'a> {
    /// An engine for `query`; `thresholds` gives each policy's thresholds.
    pub fn new(query: ForensicsQuery, thresholds: &'a dyn Fn(&PolicyName) -> Thresholds) -> Self {
        Self {
            max_gap: query.max_gap.num_nanoseconds().unwrap_or(i64::MAX).max(1),
            until: ns(query.until),
            query,
            thresholds,
            index: HashMap::new(),
            tracks: Vec::new(),
            rows: Vec::new(),
            episodes: Vec::new(),
            recent: 0,
            late: 0,
        }
    }

    /// Samples refused so far because they came after a later one of their policy (a
    /// sample at the same time as the previous one, a duplicate, is not counted).
    pub fn late(&self) -> u64 {
        self.late
    }

    fn track_of(&mut self, policy: &PolicyName) -> usize {
        if let Some(t) = self.tracks.get_mut(self.recent) {
            if t.policy.same(policy) {
                return self.recent;
            }
            if t.policy == *policy {
                t.policy = policy.clone();
                return self.recent;
            }
        }
        let i = if let Some(i) = self.index.get(policy) {
            *i
        } else {
            let i = self.tracks.len();
            self.tracks.push(Track {
                name: policy.to_string(),
                policy: policy.clone(),
                thresholds: (self.thresholds)(policy),
                last: None,
                episode: None,
                span: None,
                periods: BTreeMap::new(),
            });
            self.index.insert(policy.clone(), i);
            i
        };
        self.recent = i;
        i
    }

    /// Takes the next sample of its policy. Each policy's samples must come in time order: one
    /// no later than the policy's previous sample is ignored, and `false` returned.
    pub fn push(&mut self, r: &StateRecord) -> bool {
        self.push_reading(&r.policy, &Reading::of(r))
    }

    /// [`Self::push_reading`] of a policy's readings in turn; those refused are counted in
    /// [`Self::late`].
    pub fn push_readings(&mut self, policy: &PolicyName, readings: &[Reading]) {
        for r in readings {
            self.push_reading(policy, r);
        }
    }

    /// [`Self::push`] of what forensics reads of a record.
    pub fn push_reading(&mut self, policy: &PolicyName, point: &Reading) -> bool {
        let t = self.track_of(policy);
        let point = *point;
        let (by, below, max_gap) = (self.query.by, self.query.below, self.max_gap);
        let Some(track) = self.tracks.get_mut(t) else {
            return false;
        };
        let mut was_empty = false;
        if let Some(last) = track.last {
            if point.at_ns <= last.at_ns {
                self.late += u64::from(point.at_ns < last.at_ns);
                return false;
            }
            let gap = point.at_ns.saturating_sub(last.at_ns) > max_gap;
            let end = point.at_ns.min(last.at_ns.saturating_add(max_gap));
            match track.span {
                // Most often the time held and the sample are in the period of the last one.
                Some(s) if end <= s.end && point.at_ns < s.end && s.start <= last.at_ns => {
                    if let Some(row) = self.rows.get_mut(s.row) {
                        add_held(row, track.thresholds, &last, seconds(end - last.at_ns));
                    }
                }
                _ => hold(track, &mut self.rows, by, &last, end),
            }
            if gap && let Some(e) = track.episode.take() {
                self.episodes.push(close(e, end, false));
            }
            was_empty = !gap && last.available <= 0;
        }
        // The sample itself.
        let remaining = point.remaining_percent;
        let row = row_at(track, &mut self.rows, by, point.at_ns);
        row.samples += 1;
        row.sum_remaining += remaining;
        row.min_remaining = row.min_remaining.min(remaining);
        row.max_remaining = row.max_remaining.max(remaining);
        if let Some(rate) = point.consumption_rate_per_minute
            && rate.is_finite()
        {
            row.peak_rate = row.peak_rate.max(rate);
        }
        if let Some(b) = below {
            row.below += u64::from(remaining < b);
        }
        if point.available <= 0 && !was_empty {
            row.exhaustions += 1;
        }
        if self.query.episodes {
            self.episode(t, &point);
        }
        if let Some(track) = self.tracks.get_mut(t) {
            track.last = Some(point);
        }
        true
    }

    /// Follows the episode of track `t` with its next sample.
    fn episode(&mut self, t: usize, point: &Reading) {
        let below = self.query.below;
        let Some(track) = self.tracks.get_mut(t) else {
            return;
        };
        let threshold = below.unwrap_or(track.thresholds.warning_percent);
        let low = match below {
            Some(b) => point.remaining_percent < b,
            None => point.remaining_percent <= threshold,
        };
        match (&mut track.episode, low) {
            (Some(e), true) => {
                e.samples += 1;
                if point.remaining_percent < e.lowest_remaining_percent {
                    e.lowest_remaining_percent = point.remaining_percent;
                    e.lowest_at = time_of(point.at_ns);
                }
            }
            (None, true) => {
                track.episode = Some(Episode {
                    endpoint_id: track.name.clone(),
                    start: time_of(point.at_ns),
                    end: time_of(point.at_ns),
                    duration_seconds: 0.0,
                    ongoing: false,
                    threshold_percent: threshold,
                    lowest_remaining_percent: point.remaining_percent,
                    lowest_at: time_of(point.at_ns),
                    samples: 1,
                    alert_ids: Vec::new(),
                });
            }
            (Some(_), false) => {
                if let Some(e) = track.episode.take() {
                    self.episodes.push(close(e, point.at_ns, false));
                }
            }
            (None, false) => {}
        }
    }

    /// Counts the alerts opened in each period (those of policies and times the query covers)
    /// and names the alerts open during each episode; then the summary rows (by policy, then
    /// period) and the episodes (by start, then policy).
    pub fn finish(mut self, alerts: &[Alert]) -> (Vec<SummaryRow>, Vec<Episode>) {
        let (by, until, max_gap) = (self.query.by, self.until, self.max_gap);
        for track in &mut self.tracks {
            let Some(last) = track.last else { continue };
            let hold_end = last.at_ns.saturating_add(max_gap);
            let end = hold_end.min(until).max(last.at_ns);
            hold(track, &mut self.rows, by, &last, end);
            if let Some(e) = track.episode.take() {
                self.episodes.push(close(e, end, until < hold_end));
            }
        }
        let mut by_policy: HashMap<&str, Vec<&Alert>> = HashMap::new();
        for a in alerts {
            by_policy.entry(a.policy.as_str()).or_default().push(a);
        }
        for e in &mut self.episodes {
            e.alert_ids = by_policy
                .get(e.endpoint_id.as_str())
                .into_iter()
                .flatten()
                .filter(|a| a.opened_at <= e.end && a.resolved_at.is_none_or(|r| r >= e.start))
                .map(|a| a.id)
                .collect();
        }
        let since = self.query.since.map(ns);
        for a in alerts {
            let at = ns(a.opened_at);
            if since.is_none_or(|s| at >= s)
                && at < until
                && let Some(&t) = self.index.get(&a.policy)
                && let Some(track) = self.tracks.get_mut(t)
            {
                row_at(track, &mut self.rows, by, at).alerts_opened += 1;
            }
        }
        let below = self.query.below.is_some();
        let mut rows: Vec<SummaryRow> = self.rows.into_iter().map(|r| r.row(below)).collect();
        rows.sort_by(|a, b| {
            (&a.endpoint_id, a.period_start).cmp(&(&b.endpoint_id, b.period_start))
        });
        self.episodes
            .sort_by(|a, b| (a.start, &a.endpoint_id).cmp(&(b.start, &b.endpoint_id)));
        (rows, self.episodes)
    }
}

fn close(mut e: Episode, end: i64, ongoing: bool) -> Episode {
    e.end = time_of(end).max(e.start);
    e.duration_seconds = (e.end - e.start).as_seconds_f64();
    e.ongoing = ongoing;
    e
}

/// The row of the track's period holding `at`.
fn row_at<'r>(track: &mut Track, rows: &'r mut Vec<Tally>, by: Period, at: i64) -> &'r mut Tally {
    let span = if let Some(s) = track.span.filter(|s| s.start <= at && at < s.end) {
        s
    } else {
        let start = by.start(time_of(at));
        let key = ns(start);
        let row = *track.periods.entry(key).or_insert_with(|| {
            rows.push(Tally::new(track.name.clone(), start));
            rows.len() - 1
        });
        let s = Span {
            start: key,
            end: ns(by.next(start)),
            row,
        };
        track.span = Some(s);
        s
    };
    // The index was pushed above or found in the track's own map.
    let last = rows.len() - 1;
    &mut rows[span.row.min(last)]
}

/// Adds the time `[from.at_ns, end)` that `from` stands for, split at period boundaries.
fn hold(track: &mut Track, rows: &mut Vec<Tally>, by: Period, from: &Reading, end: i64) {
    let mut t = from.at_ns;
    while t < end {
        let row = row_at(track, rows, by, t);
        let next = track.span.map_or(end, |s| s.end).min(end);
        add_held(row, track.thresholds, from, seconds(next - t));
        t = next;
    }
}

/// Adds `d` seconds that `from` stood for to `row`.
fn add_held(row: &mut Tally, th: Thresholds, from: &Reading, d: f64) {
    row.observed_seconds += d;
    if from.remaining_percent <= th.warning_percent {
        row.warning_seconds += d;
    }
    if from.remaining_percent <= th.critical_percent {
        row.critical_seconds += d;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().expect("time")
    }

    #[test]
    fn periods_start_and_follow_in_utc() {
        let at = t("2026-03-18T13:45:10Z");
        assert_eq!(Period::Hour.start(at), t("2026-03-18T13:00:00Z"));
        assert_eq!(Period::Day.start(at), t("2026-03-18T00:00:00Z"));
        assert_eq!(Period::Week.start(at), t("2026-03-16T00:00:00Z"));
        assert_eq!(Period::Month.start(at), t("2026-03-01T00:00:00Z"));
        assert_eq!(
            Period::Month.next(t("2026-12-01T00:00:00Z")),
            t("2027-01-01T00:00:00Z")
        );
    }
}
