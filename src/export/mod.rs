//! Forensics over the retained segments: the query engine ([`scan_states`]), the output
//! formats (`table`, `csv`, `pg-csv`, `json`), the PostgreSQL export ([`dump`]) and the legacy
//! CSV import ([`import`]).
//!
//! May use: `domain`, `store`.
//!
//! Invariants: rows come out in one canonical order — by response time, then policy — whatever
//! the block layout that holds them, so two exports of the same history are the same bytes;
//! memory is bounded by one month of rows (each month is read, sorted and written before the
//! next), never by the amount of history; damaged blocks are reported and skipped, never fatal.

mod csv_chunks;
mod dump;
mod forensics;
pub mod import;
pub(crate) mod pg;

pub use dump::dump;
pub use forensics::{write_episodes, write_summary};
pub use pg::parse_timestamp;

use std::collections::BTreeSet;
use std::io::{self, Write};

use chrono::{DateTime, SecondsFormat, Utc};

use crate::domain::{Alert, AlertJson, PolicyName, StateJson, StateRecord, human};
use crate::store::{Corruption, Filter, Month, StoreError, StoreReader};

/// An output format of `dictmon query`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Aligned columns, for people.
    Table,
    /// CSV with a header, RFC 3339 times at full precision.
    Csv,
    /// Exactly the legacy table's columns, as PostgreSQL's `COPY … CSV HEADER` writes them.
    PgCsv,
    /// One JSON object per line.
    Json,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "table" => Ok(Self::Table),
            "csv" => Ok(Self::Csv),
            "pg-csv" => Ok(Self::PgCsv),
            "json" => Ok(Self::Json),
            _ => Err(format!(
                "unknown format {s:?}; one of table, csv, pg-csv, json"
            )),
        }
    }
}

/// Why a query failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    /// The store could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The catalog could not be read.
    #[error(transparent)]
    Catalog(#[from] crate::store::catalog::CatalogError),
    /// Writing the output failed.
    #[error("cannot write {what}: {error}")]
    Write {
        /// What was being written.
        what: String,
        /// The error.
        error: io::Error,
    },
}

/// Which rows of `dict_rate_limit_states`.
#[derive(Clone, Debug, Default)]
pub struct StatesQuery {
    /// Only these policies (all when none).
    pub policies: Option<BTreeSet<PolicyName>>,
    /// Response time at or after.
    pub since: Option<DateTime<Utc>>,
    /// Response time before.
    pub until: Option<DateTime<Utc>>,
}

impl StatesQuery {
    /// The store's filter for it.
    pub fn filter(&self) -> Filter {
        let ns = |t: Option<DateTime<Utc>>| t.and_then(|t| t.timestamp_nanos_opt());
        Filter {
            policies: self.policies.clone(),
            since_ns: ns(self.since),
            until_ns: ns(self.until),
            sequential: false,
        }
    }
}

/// Hands every row of `query` to `sink` in canonical order (response time, then policy),
/// one month at a time; `progress(month, done, total)` is called before each month and once
/// at the end (done = total). Returns
/// the damage met (skipped). A sink error stops the scan.
pub fn scan_states(
    reader: &StoreReader,
    query: &StatesQuery,
    progress: &mut dyn FnMut(Month, usize, usize),
    sink: &mut dyn FnMut(&StateRecord) -> io::Result<()>,
) -> Result<Vec<Corruption>, ExportError> {
    // One month's buffers serve every month: fresh pages cost a fault each.
    for_each_month(reader, query, progress, &mut |rows, order| {
        order
            .iter()
            .filter_map(|&i| rows.get(i as usize))
            .try_for_each(&mut *sink)
    })
}

/// Hands every row of `query` to `sink`, a month at a time, each policy's rows in time order
/// but policies interleaved as the blocks hold them: for readers that follow each policy on
/// its own (`query summary`, `query episodes`), which need not pay for the canonical order.
/// A month whose blocks do not give each policy's rows in order (late rows, overlapping blocks)
/// is sorted by policy and time; a (policy, time) seen twice is handed over once, the first.
pub fn scan_policies(
    reader: &StoreReader,
    query: &StatesQuery,
    sink: &mut dyn FnMut(&StateRecord),
) -> Result<Vec<Corruption>, ExportError> {
    let filter = query.filter();
    let mut problems = Vec::new();
    let mut rows: Vec<StateRecord> = Vec::new();
    for month in reader.months_for(&filter)? {
        rows.clear();
        problems.extend(reader.scan_month(month, &filter, &mut |r| rows.push(r))?);
        if !in_policy_order(&rows) {
            rows.sort_by(|a, b| {
                (a.policy.as_str(), a.sample.at).cmp(&(b.policy.as_str(), b.sample.at))
            });
            rows.dedup_by(|later, first| {
                later.policy == first.policy && later.sample.at == first.sample.at
            });
        }
        rows.iter().for_each(&mut *sink);
    }
    Ok(problems)
}

/// Whether each policy's rows are in strictly increasing time. Rows come in runs of one
/// policy (a block's frame), so the map is consulted once a run.
fn in_policy_order(rows: &[StateRecord]) -> bool {
    let mut last: std::collections::HashMap<&str, DateTime<Utc>> = std::collections::HashMap::new();
    let mut run: Option<(&str, DateTime<Utc>)> = None;
    for r in rows {
        let (p, at) = (r.policy.as_str(), r.sample.at);
        match run {
            Some((q, t)) if q == p => {
                if at <= t {
                    return false;
                }
            }
            _ => {
                if let Some((q, t)) = run {
                    last.insert(q, t);
                }
                if last.get(p).is_some_and(|t| at <= *t) {
                    return false;
                }
            }
        }
        run = Some((p, at));
    }
    true
}

/// One month of rows and their canonical order.
pub struct MonthRows {
    rows: Vec<StateRecord>,
    order: Vec<u32>,
}

impl MonthRows {
    /// The rows in canonical order.
    pub fn iter(&self) -> impl Iterator<Item = &StateRecord> {
        self.order.iter().filter_map(|&i| self.rows.get(i as usize))
    }

    /// The rows in canonical order, split into about `parts` runs.
    pub fn runs(&self, parts: usize) -> Vec<Vec<&StateRecord>> {
        let ordered: Vec<&StateRecord> = self.iter().collect();
        let size = ordered.len().div_ceil(parts.max(1)).max(1);
        ordered.chunks(size).map(<[_]>::to_vec).collect()
    }

    /// How many rows.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

/// [`scan_states`] a month at a time: `sink` owns each month's rows (so it may hand them to
/// another thread while the next month is read).
pub fn scan_state_months(
    reader: &StoreReader,
    query: &StatesQuery,
    progress: &mut dyn FnMut(Month, usize, usize),
    sink: &mut dyn FnMut(MonthRows) -> io::Result<()>,
) -> Result<Vec<Corruption>, ExportError> {
    for_each_month(reader, query, progress, &mut |rows, order| {
        sink(MonthRows {
            rows: std::mem::take(rows),
            order: order.to_vec(),
        })
    })
}

/// What [`for_each_month`] hands each month to: its rows (the buffer may be taken) and their
/// canonical order.
type MonthSink<'a> = dyn FnMut(&mut Vec<StateRecord>, &[u32]) -> io::Result<()> + 'a;

/// One month read and put in canonical order.
struct ReadMonth {
    month: Month,
    kept: MonthBuffers,
    problems: Vec<Corruption>,
}

/// Reads each month of `query` and hands it to `sink` with its canonical order (indices into
/// the rows). A thread of its own reads (and sorts) the next month while `sink` works on this
/// one; two months' buffers go back and forth between them, so memory is two months at most
/// and pages are touched once, not once a month. (Two reading threads were tried for queries
/// of a few policies: no faster, twice the page faults of fresh buffers.)
fn for_each_month(
    reader: &StoreReader,
    query: &StatesQuery,
    progress: &mut dyn FnMut(Month, usize, usize),
    sink: &mut MonthSink<'_>,
) -> Result<Vec<Corruption>, ExportError> {
    // A segment holds its month's rows only, so the query's own bounds serve every month.
    let filter = query.filter();
    let months = reader.months_for(&filter)?;
    let total = months.len();
    let mut problems = Vec::new();
    std::thread::scope(|scope| {
        let (read, to_sink) = std::sync::mpsc::sync_channel::<Result<ReadMonth, ExportError>>(0);
        let (recycle, buffers) = std::sync::mpsc::channel::<MonthBuffers>();
        let filter = &filter;
        scope.spawn(move || {
            for month in months {
                let mut kept = buffers.try_recv().unwrap_or_default();
                kept.rows.clear();
                let result = reader
                    .scan_month(month, filter, &mut |r| kept.rows.push(r))
                    .map_err(ExportError::from)
                    .map(|problems| {
                        canonical_order(&kept.rows, &mut kept.keys, &mut kept.order);
                        ReadMonth {
                            month,
                            kept,
                            problems,
                        }
                    });
                let failed = result.is_err();
                // The sink stopped (an error of its own): nothing more to read.
                if read.send(result).is_err() || failed {
                    return;
                }
            }
        });
        for (i, m) in to_sink.into_iter().enumerate() {
            let ReadMonth {
                month,
                mut kept,
                problems: damage,
            } = m?;
            progress(month, i, total);
            problems.extend(damage);
            sink(&mut kept.rows, &kept.order).map_err(|error| ExportError::Write {
                what: "the output".into(),
                error,
            })?;
            if i + 1 == total {
                progress(month, total, total);
            }
            // The reader may have finished: then the buffers are simply dropped.
            let _ = recycle.send(kept);
        }
        Ok::<_, ExportError>(())
    })?;
    Ok(problems)
}

/// A month's rows and what ordering them takes, kept from one month to the next.
#[derive(Default)]
struct MonthBuffers {
    rows: Vec<StateRecord>,
    /// (time, rank of the policy's name, index) of each row, sorted.
    keys: Vec<(i64, usize, u32)>,
    order: Vec<u32>,
}

/// The canonical order of a month's rows, as indices: by time, then policy name. Sorts small
/// keys, not the rows. A policy's rank among the month's names is looked up once per run of
/// its rows (the blocks give them a frame at a time), not once a row.
fn canonical_order(rows: &[StateRecord], keyed: &mut Vec<(i64, usize, u32)>, order: &mut Vec<u32>) {
    let mut names: Vec<&str> = Vec::new();
    let mut last = "";
    for r in rows {
        let name = r.policy.as_str();
        if name != last {
            if let Err(at) = names.binary_search(&name) {
                names.insert(at, name);
            }
            last = name;
        }
    }
    let (mut last, mut rank) = ("", 0);
    keyed.clear();
    keyed.extend(rows.iter().enumerate().map(|(i, r)| {
        let name = r.policy.as_str();
        if name != last {
            rank = names.binary_search(&name).unwrap_or(0);
            last = name;
        }
        (
            r.sample.at.timestamp_nanos_opt().unwrap_or(i64::MIN),
            rank,
            u32::try_from(i).unwrap_or(u32::MAX),
        )
    }));
    keyed.sort_unstable();
    order.clear();
    order.extend(keyed.iter().map(|&(_, _, i)| i));
}

/// The legacy `dict_rate_limit_states` columns, in order.
pub const STATES_COLUMNS: [&str; 12] = [
    "endpoint_id",
    "available_tokens",
    "capacity",
    "refill_tokens",
    "refill_period_sec",
    "psp_category",
    "utilization_percent",
    "consumption_rate_per_minute",
    "recovery_eta_seconds",
    "exhaustion_projection_seconds",
    "response_time",
    "created_at",
];

/// The `dict_rate_limit_alerts` columns, in order (`cause` is dictmon's, last).
pub const ALERTS_COLUMNS: [&str; 13] = [
    "id",
    "endpoint_id",
    "severity",
    "available_tokens",
    "capacity",
    "utilization_percent",
    "psp_category",
    "message",
    "created_at",
    "resolved",
    "resolved_at",
    "resolution_notes",
    "cause",
];

/// The `dict_rate_limit_policies` columns, in order.
pub const POLICIES_COLUMNS: [&str; 7] = [
    "endpoint_id",
    "capacity",
    "refill_tokens",
    "refill_period_sec",
    "psp_category",
    "created_at",
    "updated_at",
];

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// Appends one states row as a `dict_rate_limit_states` CSV line (PostgreSQL's form).
pub fn push_state_pg(out: &mut Vec<u8>, times: &mut pg::TimestampCache, r: &StateRecord) {
    let e = &r.enrichment;
    let s = &r.sample;
    let mut int = itoa::Buffer::new();
    out.extend_from_slice(r.policy.as_str().as_bytes());
    for n in [
        s.available_tokens,
        s.bucket.capacity,
        s.bucket.refill_tokens,
        s.bucket.refill_period_secs,
    ] {
        out.push(b',');
        out.extend_from_slice(int.format(n).as_bytes());
    }
    out.push(b',');
    let mut letter = [0_u8; 4];
    out.extend_from_slice(s.category.as_char().encode_utf8(&mut letter).as_bytes());
    out.push(b',');
    let [util, rate, eta, projection] = e.text_scales.0;
    pg::push_scaled(out, Some(e.utilization_percent), util);
    out.push(b',');
    pg::push_scaled(out, e.consumption_rate_per_minute, rate);
    out.push(b',');
    pg::push_scaled(out, e.recovery_eta_seconds, eta);
    out.push(b',');
    pg::push_scaled(out, e.exhaustion_projection_seconds, projection);
    out.push(b',');
    times.push(out, 0, s.at);
    out.push(b',');
    times.push(out, 1, r.created_at);
    out.push(b'\n');
}

/// Appends one alert as a `dict_rate_limit_alerts` CSV line (PostgreSQL's form).
pub fn push_alert_pg(out: &mut Vec<u8>, a: &Alert) {
    let _ = write!(
        out,
        "{},{},{},{},{},",
        a.id,
        a.policy.as_str(),
        // The legacy table's one severity: the worst the incident reached.
        a.peak(),
        a.available_tokens,
        a.capacity
    );
    pg::push_numeric(out, a.utilization_percent);
    out.push(b',');
    pg::push_text(out, &a.psp_category.to_string());
    out.push(b',');
    pg::push_text(out, &a.message);
    out.push(b',');
    pg::push_timestamp(out, a.opened_at);
    out.extend_from_slice(if a.resolved_at.is_some() {
        b",t,"
    } else {
        b",f,"
    });
    if let Some(t) = a.resolved_at {
        pg::push_timestamp(out, t);
    }
    out.push(b',');
    if let Some(n) = &a.resolution {
        pg::push_text(out, n);
    }
    out.push(b',');
    out.extend_from_slice(a.cause.as_str().as_bytes());
    out.push(b'\n');
}

/// Writes states rows in one [`Format`], buffering; `finish` flushes.
pub struct StatesWriter<W: Write> {
    out: W,
    format: Format,
    /// One row's bytes (PostgreSQL's form is written as bytes; the others are text).
    line: Vec<u8>,
    rows: u64,
    times: pg::TimestampCache,
}

impl<W: Write> StatesWriter<W> {
    /// A writer; the header (if the format has one) is written now.
    pub fn new(mut out: W, format: Format) -> io::Result<Self> {
        match format {
            Format::PgCsv => writeln!(out, "{}", STATES_COLUMNS.join(","))?,
            Format::Csv => writeln!(out, "{},remaining_percent", STATES_COLUMNS.join(","))?,
            Format::Table => writeln!(
                out,
                "{:<24} {:<38} {:>3} {:>15} {:>8} {:>11} {:>10} {:>10}",
                "RESPONSE TIME (UTC)",
                "POLICY",
                "CAT",
                "TOKENS",
                "REMAIN",
                "RATE/MIN",
                "FULL IN",
                "EMPTY IN"
            )?,
            Format::Json => {}
        }
        Ok(Self {
            out,
            format,
            line: Vec::with_capacity(256),
            rows: 0,
            times: pg::TimestampCache::default(),
        })
    }

    /// Writes one row.
    pub fn row(&mut self, r: &StateRecord) -> io::Result<()> {
        self.line.clear();
        let e = &r.enrichment;
        let s = &r.sample;
        match self.format {
            Format::PgCsv => push_state_pg(&mut self.line, &mut self.times, r),
            Format::Csv => {
                let opt = |x: Option<f64>| x.map_or(String::new(), |x| x.to_string());
                let _ = writeln!(
                    self.line,
                    "{},{},{},{},{},{},{},{},{},{},{},{},{}",
                    r.policy.as_str(),
                    s.available_tokens,
                    s.bucket.capacity,
                    s.bucket.refill_tokens,
                    s.bucket.refill_period_secs,
                    s.category,
                    e.utilization_percent,
                    opt(e.consumption_rate_per_minute),
                    opt(e.recovery_eta_seconds),
                    opt(e.exhaustion_projection_seconds),
                    rfc3339(s.at),
                    rfc3339(r.created_at),
                    e.remaining_percent
                );
            }
            Format::Json => {
                let v = serde_json::to_string(&StateJson::from(r)).map_err(io::Error::other)?;
                let _ = writeln!(self.line, "{v}");
            }
            Format::Table => {
                let _ = writeln!(
                    self.line,
                    "{:<24} {:<38} {:>3} {:>15} {:>7.1}% {:>11} {:>10} {:>10}",
                    s.at.format("%Y-%m-%d %H:%M:%S%.3f"),
                    r.policy.as_str(),
                    s.category.to_string(),
                    format!("{}/{}", s.available_tokens, s.bucket.capacity),
                    e.remaining_percent,
                    e.consumption_rate_per_minute
                        .map_or("?".into(), |x| format!("{x:.1}")),
                    human(e.recovery_eta_seconds),
                    human(e.exhaustion_projection_seconds),
                );
            }
        }
        self.rows += 1;
        self.out.write_all(&self.line)
    }

    /// Flushes; returns the rows written.
    pub fn finish(mut self) -> io::Result<u64> {
        self.out.flush()?;
        Ok(self.rows)
    }
}

/// Per alert, each sink's delivery state as (sink, state); empty when there are no sinks.
pub type Delivery = Vec<(String, String)>;

/// Writes alerts in one [`Format`]. `delivery` (parallel to `alerts`, or empty) adds a
/// `DELIVERY` column to `table` and a `delivery` object to `json`; the CSV forms keep the
/// legacy table's columns.
pub fn write_alerts<W: Write>(
    mut out: W,
    format: Format,
    alerts: &[Alert],
    delivery: &[Delivery],
) -> io::Result<()> {
    let mut line: Vec<u8> = Vec::new();
    let delivery_text: Vec<String> = delivery
        .iter()
        .map(|d| {
            d.iter()
                .map(|(sink, state)| format!("{sink}:{state}"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    let width = delivery_text
        .iter()
        .map(String::len)
        .max()
        .unwrap_or(0)
        .max(8);
    match format {
        Format::PgCsv | Format::Csv => writeln!(out, "{}", ALERTS_COLUMNS.join(","))?,
        Format::Table => {
            write!(
                out,
                "{:<24} {:<38} {:<8} {:>15} {:>7} {:<24} {:<10} ",
                "OPENED (UTC)", "POLICY", "SEVERITY", "TOKENS", "UTIL%", "RESOLVED (UTC)", "CAUSE"
            )?;
            if !delivery_text.is_empty() {
                write!(out, "{:<width$} ", "DELIVERY")?;
            }
            writeln!(out, "MESSAGE")?;
        }
        Format::Json => {}
    }
    for (i, a) in alerts.iter().enumerate() {
        line.clear();
        match format {
            Format::PgCsv | Format::Csv => push_alert_pg(&mut line, a),
            Format::Json => {
                let mut value =
                    serde_json::to_value(AlertJson::from(a)).map_err(io::Error::other)?;
                if let Some(d) = delivery.get(i).filter(|d| !d.is_empty())
                    && let Some(obj) = value.as_object_mut()
                {
                    let states = d
                        .iter()
                        .map(|(sink, state)| (sink.clone(), state.as_str().into()))
                        .collect();
                    obj.insert("delivery".into(), serde_json::Value::Object(states));
                }
                let _ = writeln!(line, "{value}");
            }
            Format::Table => {
                let _ = write!(
                    line,
                    "{:<24} {:<38} {:<8} {:>15} {:>7.1} {:<24} {:<10} ",
                    a.opened_at.format("%Y-%m-%d %H:%M:%S%.3f"),
                    a.policy.as_str(),
                    // Open: its level now; resolved: the worst it reached.
                    if a.resolved_at.is_some() {
                        a.peak()
                    } else {
                        a.severity
                    }
                    .as_str(),
                    format!("{}/{}", a.available_tokens, a.capacity),
                    a.utilization_percent,
                    a.resolved_at.map_or("open".into(), |t| t
                        .format("%Y-%m-%d %H:%M:%S%.3f")
                        .to_string()),
                    a.cause.as_str(),
                );
                if let Some(d) = delivery_text.get(i) {
                    let _ = write!(line, "{d:<width$} ");
                }
                let _ = writeln!(line, "{}", a.message);
            }
        }
        out.write_all(&line)?;
    }
    out.flush()
}

/// The alerts opened in `[since, until)`, in opening order (then policy, then id).
pub fn alerts_in(
    reader: &StoreReader,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
) -> Result<Vec<Alert>, ExportError> {
    let mut alerts: Vec<Alert> = reader
        .catalog()?
        .alerts()?
        .into_iter()
        .filter(|a| since.is_none_or(|s| a.opened_at >= s) && until.is_none_or(|u| a.opened_at < u))
        .collect();
    alerts.sort_by(|a, b| {
        (a.opened_at, a.policy.as_str(), a.id).cmp(&(b.opened_at, b.policy.as_str(), b.id))
    });
    Ok(alerts)
}
