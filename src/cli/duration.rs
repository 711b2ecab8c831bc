//! Durations as operators write them: `90s`, `5m`, `12h`, `7d`, `2w`, `13mo` (calendar months).

use anyhow::{Context, bail};
use chrono::{DateTime, Months, TimeDelta, Utc};

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

/// Parses `<number><unit>` with unit `s`, `m`, `h`, `d`, `w` or `mo`.
pub fn parse(text: &str) -> anyhow::Result<Span> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u32 = number.parse().with_context(|| {
        format!("{text:?}: expected a number then a unit, e.g. 5m, 12h, 7d, 13mo")
    })?;
    let n64 = i64::from(n);
    Ok(match unit {
        "s" => Span::Fixed(TimeDelta::seconds(n64)),
        "m" | "min" => Span::Fixed(TimeDelta::minutes(n64)),
        "h" => Span::Fixed(TimeDelta::hours(n64)),
        "d" => Span::Fixed(TimeDelta::days(n64)),
        "w" => Span::Fixed(TimeDelta::weeks(n64)),
        "mo" => Span::Months(n),
        _ => bail!("{text:?}: unknown unit {unit:?}; use s, m, h, d, w or mo (months)"),
    })
}

/// Parses a fixed duration (no months), for intervals.
pub fn parse_fixed(text: &str) -> anyhow::Result<TimeDelta> {
    match parse(text)? {
        Span::Fixed(d) if d > TimeDelta::zero() => Ok(d),
        Span::Fixed(_) => bail!("{text:?}: must be longer than zero"),
        Span::Months(_) => bail!("{text:?}: months are not a fixed length; use s, m, h, d or w"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_parse() {
        assert_eq!(parse("13mo").ok(), Some(Span::Months(13)));
        assert_eq!(parse("5m").ok(), Some(Span::Fixed(TimeDelta::minutes(5))));
        assert_eq!(parse("7d").ok(), Some(Span::Fixed(TimeDelta::days(7))));
        assert!(parse("5").is_err());
        assert!(parse("m5").is_err());
        assert!(parse("3y").is_err());
        assert!(parse_fixed("1mo").is_err());
        assert!(parse_fixed("0s").is_err());
    }
}
