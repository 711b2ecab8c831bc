//! A UTC calendar month: the unit of segment files and of retention.
//!
//! Retention is a pure function over months ([`to_delete`]): no clock, no I/O.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};

/// A UTC month, ordered by time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Month {
    /// Year (1677–2262, the range of stored times).
    pub year: i32,
    /// Month, 1–12.
    pub month: u32,
}

impl Month {
    /// The month an instant falls in.
    pub fn of(t: DateTime<Utc>) -> Self {
        Self {
            year: t.year(),
            month: t.month(),
        }
    }

    /// The month `n` months before this one.
    #[must_use]
    pub fn minus(self, n: u32) -> Self {
        let index = i64::from(self.year) * 12 + i64::from(self.month - 1) - i64::from(n);
        Self {
            year: i32::try_from(index.div_euclid(12)).unwrap_or(i32::MIN),
            month: u32::try_from(index.rem_euclid(12)).unwrap_or(0) + 1,
        }
    }

    /// The month after this one.
    #[must_use]
    pub fn next(self) -> Self {
        if self.month == 12 {
            Self {
                year: self.year + 1,
                month: 1,
            }
        } else {
            Self {
                year: self.year,
                month: self.month + 1,
            }
        }
    }

    /// Its first instant, 00:00:00 UTC on the 1st; none outside chrono's range.
    pub fn start(self) -> Option<DateTime<Utc>> {
        NaiveDate::from_ymd_opt(self.year, self.month, 1)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|t| Utc.from_utc_datetime(&t))
    }

    /// The segment file name, `YYYY-MM.seg`.
    pub fn file_name(self) -> String {
        format!("{self}.seg")
    }
}

impl fmt::Display for Month {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

impl FromStr for Month {
    type Err = ();
    /// Parses `YYYY-MM`.
    fn from_str(s: &str) -> Result<Self, ()> {
        let (y, m) = s.split_once('-').ok_or(())?;
        if y.len() != 4 || m.len() != 2 {
            return Err(());
        }
        let year = y.parse().map_err(|_| ())?;
        let month = m.parse().map_err(|_| ())?;
        if (1..=12).contains(&month) {
            Ok(Self { year, month })
        } else {
            Err(())
        }
    }
}

/// One segment file (§1): a month, and which of its files. Part 0 is `YYYY-MM.seg`; a writer
/// that finds the month's file damaged never appends behind the damage, it goes on in a fresh
/// `YYYY-MM.1.seg`, then `YYYY-MM.2.seg`… Readers read every part of a month, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SegmentId {
    /// The month its rows fall in.
    pub month: Month,
    /// 0 for the month's first file.
    pub part: u32,
}

impl SegmentId {
    /// The month's first file.
    pub fn first(month: Month) -> Self {
        Self { month, part: 0 }
    }

    /// The file that follows this one when it is damaged.
    #[must_use]
    pub fn next(self) -> Self {
        Self {
            month: self.month,
            part: self.part + 1,
        }
    }

    /// The file name: `YYYY-MM.seg`, or `YYYY-MM.N.seg` for part N > 0.
    pub fn file_name(self) -> String {
        format!("{self}.seg")
    }
}

impl fmt::Display for SegmentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.part == 0 {
            write!(f, "{}", self.month)
        } else {
            write!(f, "{}.{}", self.month, self.part)
        }
    }
}

impl FromStr for SegmentId {
    type Err = ();
    /// Parses `YYYY-MM` or `YYYY-MM.N` (N > 0, no leading zero).
    fn from_str(s: &str) -> Result<Self, ()> {
        let (month, part) = match s.split_once('.') {
            None => (s, 0),
            Some((m, n)) if !n.starts_with('0') => (m, n.parse().map_err(|_| ())?),
            Some(_) => return Err(()),
        };
        Ok(Self {
            month: month.parse()?,
            part,
        })
    }
}

/// The months to delete so that `keep` months remain: the month of `now` and the `keep − 1`
/// before it. Oldest first. `keep` of 0 is treated as 1 (the current month is never deleted).
pub fn to_delete(present: &[Month], now: Month, keep: u32) -> Vec<Month> {
    let oldest_kept = now.minus(keep.max(1) - 1);
    let mut old: Vec<Month> = present
        .iter()
        .copied()
        .filter(|m| *m < oldest_kept)
        .collect();
    old.sort_unstable();
    old
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(s: &str) -> Month {
        s.parse().expect("valid month")
    }

    #[test]
    fn segment_ids_name_their_files_and_parse_back() {
        for (text, part) in [("2026-11", 0), ("2026-11.1", 1), ("2026-11.12", 12)] {
            let id: SegmentId = text.parse().expect("valid");
            assert_eq!((id.month, id.part), (m("2026-11"), part));
            assert_eq!(id.to_string(), text);
        }
        for bad in [
            "2026-11.0",
            "2026-11.01",
            "2026-11.",
            "2026-11.x",
            "2026-13.1",
        ] {
            assert!(bad.parse::<SegmentId>().is_err(), "{bad}");
        }
        let first = SegmentId::first(m("2026-11"));
        assert_eq!(first.file_name(), "2026-11.seg");
        assert_eq!(first.next().file_name(), "2026-11.1.seg");
        assert!(first < first.next());
    }

    #[test]
    fn month_arithmetic_crosses_years() {
        assert_eq!(m("2026-11").minus(12), m("2025-11"));
        assert_eq!(m("2026-01").minus(1), m("2025-12"));
        assert_eq!(m("2025-12").next(), m("2026-01"));
        assert_eq!(m("2026-03").to_string(), "2026-03");
        assert!("2026-13".parse::<Month>().is_err());
        assert!("26-1".parse::<Month>().is_err());
    }

    #[test]
    fn fifteen_months_lose_the_two_oldest() {
        let present: Vec<Month> = (0..15).map(|k| m("2026-11").minus(k)).collect();
        assert_eq!(
            to_delete(&present, m("2026-11"), 13),
            vec![m("2025-09"), m("2025-10")]
        );
    }

    #[test]
    fn nothing_goes_within_the_window_and_the_current_month_always_stays() {
        let present = [m("2026-11"), m("2026-10")];
        assert!(to_delete(&present, m("2026-11"), 13).is_empty());
        assert_eq!(to_delete(&present, m("2026-11"), 0), vec![m("2026-10")]);
    }
}
