//! Spans of time on the command line: the configuration's durations (`5m`, `12h`, `7d` …,
//! `config::parse_duration`) plus calendar months (`13mo`).

use anyhow::{Context, bail};
use chrono::{DateTime, Months, TimeDelta, Utc};
use dictmon::config::parse_duration;

/// A span of time, fixed or in calendar months.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Span {
    /// A fixed length.
    Fixed(TimeDelta),
    /// Calendar months.
    Months(u32),
}

impl Span {
    /// The instant this span before `t`.
    pub fn before(self, t: DateTime<Utc>) -> anyhow::Result<DateTime<Utc>> {
        match self {
            Self::Fixed(d) => t.checked_sub_signed(d),
            Self::Months(m) => t.checked_sub_months(Months::new(m)),
        }
        .context("that span reaches outside the supported time range")
    }
}

/// Parses a duration, or `<number>mo` for calendar months.
pub fn parse(text: &str) -> anyhow::Result<Span> {
    if let Some(months) = text.strip_suffix("mo") {
        let n = months
            .parse()
            .with_context(|| format!("{text:?}: expected a number of months, e.g. 13mo"))?;
        return Ok(Span::Months(n));
    }
    let fixed = parse_duration(text).map_err(anyhow::Error::msg)?;
    Ok(Span::Fixed(
        TimeDelta::from_std(fixed).context("duration too long")?,
    ))
}

/// Parses a fixed duration longer than zero (no months), for intervals.
pub fn parse_fixed(text: &str) -> anyhow::Result<TimeDelta> {
    match parse(text)? {
        Span::Fixed(d) if d > TimeDelta::zero() => Ok(d),
        Span::Fixed(_) => bail!("{text:?}: must be longer than zero"),
        Span::Months(_) => bail!("{text:?}: months are not a fixed length; use s, m, h, d or w"),
    }
}

/// A point in time on the command line: RFC 3339 (`2026-11-23T14:00:00Z`), a PostgreSQL
/// timestamp with offset, a UTC date (`2026-11-23`) or date and time (`2026-11-23 14:00`), or a
/// span ago (`7d`, `13mo`).
pub fn parse_time(text: &str, now: DateTime<Utc>) -> anyhow::Result<DateTime<Utc>> {
    let t = parse_any_time(text, now)?;
    // Stored times are nanoseconds in an i64: outside that range a bound means nothing.
    if t.timestamp_nanos_opt().is_none() {
        bail!("{text:?} is outside the range of stored times (years 1677–2262)");
    }
    Ok(t)
}

fn parse_any_time(text: &str, now: DateTime<Utc>) -> anyhow::Result<DateTime<Utc>> {
    let t = text.trim();
    if let Ok(x) = dictmon::export::parse_timestamp(t) {
        return Ok(x);
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        return Ok(d.and_time(chrono::NaiveTime::MIN).and_utc());
    }
    for f in [
        "%Y-%m-%d %H:%M",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%dT%H:%M:%S",
    ] {
        if let Ok(x) = chrono::NaiveDateTime::parse_from_str(t, f) {
            return Ok(x.and_utc());
        }
    }
    match parse(t) {
        Ok(span) => span.before(now),
        Err(_) => bail!(
            "{text:?} is not a time: use 2026-11-23, \"2026-11-23 14:00\" (UTC), 2026-11-23T14:00:00-03:00, or a span ago such as 7d or 13mo"
        ),
    }
}

/// A time range from `--since` and `--until`; either end may be open.
pub type Window = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);

/// Parses `--since` and `--until` (see [`parse_time`]); the range must not be empty.
pub fn parse_window(since: Option<&str>, until: Option<&str>) -> anyhow::Result<Window> {
    let now = Utc::now();
    let since = since
        .map(|t| parse_time(t, now))
        .transpose()
        .context("--since")?;
    let until = until
        .map(|t| parse_time(t, now))
        .transpose()
        .context("--until")?;
    if let (Some(s), Some(u)) = (since, until) {
        anyhow::ensure!(s < u, "--since {s} is not before --until {u}");
    }
    Ok((since, until))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_parse() {
        assert_eq!(parse("13mo").ok(), Some(Span::Months(13)));
        assert_eq!(parse("5m").ok(), Some(Span::Fixed(TimeDelta::minutes(5))));
        assert_eq!(parse("7d").ok(), Some(Span::Fixed(TimeDelta::days(7))));
        assert_eq!(parse("2w").ok(), Some(Span::Fixed(TimeDelta::weeks(2))));
        assert!(parse("5").is_err());
        assert!(parse("m5").is_err());
        assert!(parse("3y").is_err());
        assert!(parse_fixed("1mo").is_err());
        assert!(parse_fixed("0s").is_err());
    }

    #[test]
    fn times_are_dates_timestamps_or_spans_ago() {
        let now = DateTime::parse_from_rfc3339("2026-11-23T12:00:00Z")
            .expect("t")
            .with_timezone(&Utc);
        let at = |t: &str| parse_time(t, now).map(|x| x.to_rfc3339());
        assert_eq!(
            at("2026-11-01").ok().as_deref(),
            Some("2026-11-01T00:00:00+00:00")
        );
        assert_eq!(
            at("2026-11-01 14:30").ok().as_deref(),
            Some("2026-11-01T14:30:00+00:00")
        );
        assert_eq!(
            at("2026-11-01T14:30:00-03:00").ok().as_deref(),
            Some("2026-11-01T17:30:00+00:00")
        );
        assert_eq!(
            at("2026-11-01 14:30:00+00").ok().as_deref(),
            Some("2026-11-01T14:30:00+00:00")
        );
        assert_eq!(at("7d").ok().as_deref(), Some("2026-11-16T12:00:00+00:00"));
        assert_eq!(at("1mo").ok().as_deref(), Some("2026-10-23T12:00:00+00:00"));
        assert!(at("last tuesday").is_err());
    }
}
