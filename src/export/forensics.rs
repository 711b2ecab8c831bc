//! The forensic queries' output formats: `dictmon query summary` and `dictmon query episodes`
//! as a table, CSV, PostgreSQL's CSV or JSON lines. The computation is
//! [`crate::domain::forensics`].

use std::fmt::Write as _;
use std::io::{self, Write};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Format, pg};
use crate::domain::forensics::{Episode, SummaryRow};

/// The summary's columns, in order.
pub const SUMMARY_COLUMNS: [&str; 13] = [
    "endpoint_id",
    "period_start",
    "samples",
    "min_remaining_percent",
    "mean_remaining_percent",
    "max_remaining_percent",
    "observed_seconds",
    "at_or_below_warning_seconds",
    "at_or_below_critical_seconds",
    "exhaustions",
    "peak_consumption_rate_per_minute",
    "alerts_opened",
    "samples_below",
];

/// The episodes' columns, in order.
pub const EPISODE_COLUMNS: [&str; 10] = [
    "endpoint_id",
    "start",
    "end",
    "duration_seconds",
    "ongoing",
    "threshold_percent",
    "lowest_remaining_percent",
    "lowest_at",
    "samples",
    "alert_ids",
];

fn time(format: Format, t: DateTime<Utc>) -> String {
    match format {
        Format::PgCsv => {
            let mut s = Vec::new();
            pg::push_timestamp(&mut s, t);
            String::from_utf8(s).unwrap_or_default()
        }
        Format::Table => t.format("%Y-%m-%d %H:%M:%S").to_string(),
        Format::Csv | Format::Json => t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
    }
}

fn number(x: Option<f64>) -> String {
    x.map_or(String::new(), |x| {
        // Hundredths are what a person and PostgreSQL's numeric(…, 2) read.
        let s = format!("{:.2}", (x * 100.0).round() / 100.0);
        match s.trim_end_matches('0').trim_end_matches('.') {
            "-0" => "0".to_owned(),
            s => s.to_owned(),
        }
    })
}

/// `3725` → `1h02m05s`.
fn span(seconds: f64) -> String {
    let s = seconds.round() as i64;
    match (s / 3600, s / 60 % 60, s % 60) {
        (0, 0, sec) => format!("{sec}s"),
        (0, m, sec) => format!("{m}m{sec:02}s"),
        (h, m, sec) => format!("{h}h{m:02}m{sec:02}s"),
    }
}

/// Writes the summary in `format`; `below` adds the `samples_below` column.
pub fn write_summary(
    mut out: impl Write,
    format: Format,
    rows: &[SummaryRow],
    below: Option<f64>,
) -> io::Result<()> {
    let columns = if below.is_some() {
        &SUMMARY_COLUMNS[..]
    } else {
        &SUMMARY_COLUMNS[..SUMMARY_COLUMNS.len() - 1]
    };
    match format {
        Format::Csv | Format::PgCsv => writeln!(out, "{}", columns.join(","))?,
        Format::Table => {
            write!(
                out,
                "{:<38} {:<19} {:>7} {:>7} {:>7} {:>7} {:>10} {:>10} {:>6} {:>9} {:>6}",
                "POLICY",
                "PERIOD (UTC)",
                "SAMPLES",
                "MIN%",
                "MEAN%",
                "MAX%",
                "≤WARNING",
                "≤CRITICAL",
                "EMPTY",
                "PEAK/MIN",
                "ALERTS"
            )?;
            match below {
                Some(b) => writeln!(out, " {:>9}", format!("<{}%", number(Some(b))))?,
                None => writeln!(out)?,
            }
        }
        Format::Json => {}
    }
    let mut line = String::new();
    for r in rows {
        line.clear();
        match format {
            Format::Csv | Format::PgCsv => {
                let _ = write!(
                    line,
                    "{},{},{},{},{},{},{},{},{},{},{},{}",
                    r.endpoint_id,
                    time(format, r.period_start),
                    r.samples,
                    number(r.min_remaining_percent),
                    number(r.mean_remaining_percent),
                    number(r.max_remaining_percent),
                    number(Some(r.observed_seconds)),
                    number(Some(r.at_or_below_warning_seconds)),
                    number(Some(r.at_or_below_critical_seconds)),
                    r.exhaustions,
                    number(r.peak_consumption_rate_per_minute),
                    r.alerts_opened,
                );
                if below.is_some() {
                    let _ = write!(line, ",{}", r.samples_below.unwrap_or(0));
                }
                line.push('\n');
            }
            Format::Json => {
                let mut r = r.clone();
                if below.is_some() {
                    r.samples_below.get_or_insert(0);
                }
                let v = serde_json::to_string(&r).map_err(io::Error::other)?;
                let _ = writeln!(line, "{v}");
            }
            Format::Table => {
                let pct = |x: Option<f64>| x.map_or("-".to_owned(), |x| format!("{x:.1}"));
                let _ = write!(
                    line,
                    "{:<38} {:<19} {:>7} {:>7} {:>7} {:>7} {:>10} {:>10} {:>6} {:>9} {:>6}",
                    r.endpoint_id,
                    time(format, r.period_start),
                    r.samples,
                    pct(r.min_remaining_percent),
                    pct(r.mean_remaining_percent),
                    pct(r.max_remaining_percent),
                    span(r.at_or_below_warning_seconds),
                    span(r.at_or_below_critical_seconds),
                    r.exhaustions,
                    r.peak_consumption_rate_per_minute
                        .map_or("-".to_owned(), |x| format!("{x:.1}")),
                    r.alerts_opened,
                );
                if below.is_some() {
                    let _ = write!(line, " {:>9}", r.samples_below.unwrap_or(0));
                }
                line.push('\n');
            }
        }
        out.write_all(line.as_bytes())?;
    }
    out.flush()
}

/// Writes the episodes in `format`.
pub fn write_episodes(mut out: impl Write, format: Format, episodes: &[Episode]) -> io::Result<()> {
    match format {
        Format::Csv | Format::PgCsv => writeln!(out, "{}", EPISODE_COLUMNS.join(","))?,
        Format::Table => writeln!(
            out,
            "{:<38} {:<19} {:<19} {:>10} {:>7} {:<19} {:>7}  ALERTS",
            "POLICY", "START (UTC)", "END (UTC)", "DURATION", "LOWEST%", "LOWEST AT", "SAMPLES"
        )?,
        Format::Json => {}
    }
    let mut line = String::new();
    for e in episodes {
        line.clear();
        let ids = |sep: &str| {
            e.alert_ids
                .iter()
                .map(Uuid::to_string)
                .collect::<Vec<_>>()
                .join(sep)
        };
        match format {
            Format::Csv | Format::PgCsv => {
                let _ = writeln!(
                    line,
                    "{},{},{},{},{},{},{},{},{},{}",
                    e.endpoint_id,
                    time(format, e.start),
                    time(format, e.end),
                    number(Some(e.duration_seconds)),
                    if format == Format::PgCsv {
                        if e.ongoing { "t" } else { "f" }
                    } else if e.ongoing {
                        "true"
                    } else {
                        "false"
                    },
                    number(Some(e.threshold_percent)),
                    number(Some(e.lowest_remaining_percent)),
                    time(format, e.lowest_at),
                    e.samples,
                    // A PostgreSQL array literal reads this as uuid[].
                    if format == Format::PgCsv {
                        format!("\"{{{}}}\"", ids(","))
                    } else {
                        ids(" ")
                    },
                );
            }
            Format::Json => {
                let v = serde_json::to_string(e).map_err(io::Error::other)?;
                let _ = writeln!(line, "{v}");
            }
            Format::Table => {
                let _ = writeln!(
                    line,
                    "{:<38} {:<19} {:<19} {:>10} {:>7.1} {:<19} {:>7}  {}",
                    e.endpoint_id,
                    time(format, e.start),
                    if e.ongoing {
                        "ongoing".to_owned()
                    } else {
                        time(format, e.end)
                    },
                    span(e.duration_seconds),
                    e.lowest_remaining_percent,
                    time(format, e.lowest_at),
                    e.samples,
                    if e.alert_ids.is_empty() {
                        "-".to_owned()
                    } else {
                        ids(" ")
                    },
                );
            }
        }
        out.write_all(line.as_bytes())?;
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_spans_read_well() {
        assert_eq!(span(3725.0), "1h02m05s");
        assert_eq!(number(Some(12.5)), "12.5");
        assert_eq!(number(Some(100.0)), "100");
        assert_eq!(number(Some(0.004)), "0");
    }
}
