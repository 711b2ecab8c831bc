//! `dictmon import`: history from CSV as the legacy system's PostgreSQL writes it
//! (`COPY … TO … WITH (FORMAT csv, HEADER true)`), into a data directory.
//!
//! - The header is required; columns are found by name, in any order; columns dictmon does not
//!   use are ignored with one warning each.
//! - A bad row (a missing column, a number or time that does not parse, a value the monitor
//!   would refuse, such as tokens above capacity) is reported with its line and reason and
//!   skipped; with `strict`, the whole file is checked first and nothing is written if any row
//!   is bad.
//! - A row already present — same policy and response time, in the data directory or earlier
//!   in the file — is skipped and reported, not duplicated; duplicates do not fail `strict`,
//!   so an import can be run again safely.
//! - Derived columns are kept as given (they are the historical record); a missing
//!   `utilization_percent` is computed, a missing `created_at` is the response time.
//!
//! Rows are buffered per month and appended as sealed blocks; compaction merges them at the
//! end, a bounded run at a time (storage-format.md §6.3). Memory is bounded by [`FLUSH_ROWS`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::pg::{parse_bool, parse_integer, parse_numeric, parse_timestamp};
use crate::domain::{
    Alert, AlertCause, BucketConfig, Enrichment, Policy, PolicyName, PspCategory, Sample, Severity,
    StateRecord, TextScales, ValidationLimits, validate,
};
use crate::store::catalog::CatalogUpdate;
use crate::store::{Filter, Month, Store, StoreError, StoreReader};

/// Rows buffered before the months they belong to are written.
pub const FLUSH_ROWS: usize = 400_000;

/// Problems kept for the report (the rest are counted only).
pub const MAX_REPORTED: usize = 10_000;

/// A row that was not imported, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowProblem {
    /// The file.
    pub file: PathBuf,
    /// 1-based line where the row starts.
    pub line: u64,
    /// Why.
    pub reason: String,
    /// Whether it is a duplicate (skipped, not bad).
    pub duplicate: bool,
}

impl std::fmt::Display for RowProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.file.display(), self.line, self.reason)
    }
}

/// What an import did.
#[derive(Clone, Debug, Default)]
pub struct ImportReport {
    /// States rows written.
    pub states: u64,
    /// Alerts written (new or updated).
    pub alerts: u64,
    /// Rows skipped as already present: in the data directory, or earlier in the input.
    pub duplicates: u64,
    /// Of those, rows already in the data directory (counted, not listed in `problems`).
    pub already_stored: u64,
    /// Rows skipped as bad.
    pub bad: u64,
    /// The first [`MAX_REPORTED`] problems, by file and line.
    pub problems: Vec<RowProblem>,
    /// Warnings about the files (ignored columns).
    pub warnings: Vec<String>,
}

impl ImportReport {
    fn problem(&mut self, p: RowProblem) {
        if p.duplicate {
            self.duplicates += 1;
        } else {
            self.bad += 1;
        }
        if self.problems.len() < MAX_REPORTED {
            self.problems.push(p);
        }
    }
}

/// Why an import could not run at all.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    /// A file could not be opened or read.
    #[error("{file}: {detail}")]
    File {
        /// The file.
        file: PathBuf,
        /// What went wrong.
        detail: String,
    },
    /// The header lacks a required column.
    #[error("{file}:1: the header has no {column:?} column (columns found: {found})")]
    MissingColumn {
        /// The file.
        file: PathBuf,
        /// The column.
        column: &'static str,
        /// The header as found.
        found: String,
    },
    /// `strict`: bad rows were found; nothing was written.
    #[error("{bad} bad rows; nothing was written (without --strict they are skipped)")]
    Strict {
        /// How many.
        bad: u64,
        /// The report, with every problem.
        report: Box<ImportReport>,
    },
    /// The store refused a write.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The catalog refused a write.
    #[error(transparent)]
    Catalog(#[from] crate::store::catalog::CatalogError),
}

/// Longest CSV record read: a row of the legacy tables is about 200 bytes. Longer is not a
/// row but garbage (a file without line ends, an unclosed quote), which would otherwise be
/// held in memory whole.
pub const MAX_RECORD_BYTES: u64 = 64 * 1024;

/// A CSV file with its header mapped.
struct Table {
    file: PathBuf,
    reader: csv::Reader<RecordLimit<File>>,
    columns: HashMap<String, usize>,
}

/// Fails a read once a CSV record (RFC 4180: up to a line end outside quotes) passes
/// [`MAX_RECORD_BYTES`], so that memory stays bounded whatever the input.
struct RecordLimit<R> {
    inner: R,
    /// Bytes since the last record end.
    record: u64,
    /// Inside quotes (an odd number of `"` since the record began).
    quoted: bool,
    /// Byte offset in the file.
    offset: u64,
    /// Line of the file being read, and the line the current record began on.
    line: u64,
    record_line: u64,
}

impl<R: std::io::Read> std::io::Read for RecordLimit<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        for &b in buf.get(..n).unwrap_or_default() {
            self.offset += 1;
            match b {
                b'"' => self.quoted = !self.quoted,
                b'\n' => {
                    self.line += 1;
                    if !self.quoted {
                        self.record = 0;
                        self.record_line = self.line;
                        continue;
                    }
                }
                _ => {}
            }
            self.record += 1;
            if self.record > MAX_RECORD_BYTES {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    RecordTooLong {
                        line: self.record_line,
                        offset: self.offset,
                    },
                ));
            }
        }
        Ok(n)
    }
}

/// The error [`RecordLimit`] fails with: the line the record began on, and the byte offset
/// where it passed the limit.
#[derive(Debug, thiserror::Error)]
#[error(
    "a record longer than {MAX_RECORD_BYTES} bytes, passed at byte {offset} (a row is about 200): not a CSV of the legacy table (no line ends, or an unclosed quote); the rest of the file was not read"
)]
struct RecordTooLong {
    line: u64,
    offset: u64,
}

impl Table {
    fn open(
        file: &Path,
        required: &[&'static str],
        known: &[&str],
        warnings: &mut Vec<String>,
    ) -> Result<Self, ImportError> {
        let ferr = |detail: String| ImportError::File {
            file: file.to_owned(),
            detail,
        };
        let handle = File::open(file).map_err(|e| ferr(format!("cannot open: {e}")))?;
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(true)
            .from_reader(RecordLimit {
                inner: handle,
                record: 0,
                quoted: false,
                offset: 0,
                line: 1,
                record_line: 1,
            });
        let header = reader
            .headers()
            .map_err(|e| ferr(format!("cannot read the header: {e}")))?
            .clone();
        let columns: HashMap<String, usize> = header
            .iter()
            .enumerate()
            .map(|(i, c)| (c.trim().to_ascii_lowercase(), i))
            .collect();
        for column in required {
            if !columns.contains_key(*column) {
                return Err(ImportError::MissingColumn {
                    file: file.to_owned(),
                    column,
                    found: header.iter().collect::<Vec<_>>().join(","),
                });
            }
        }
        for c in &header {
            if !known.contains(&c.trim().to_ascii_lowercase().as_str()) {
                warnings.push(format!(
                    "{}:1: column {c:?} is not used; ignored",
                    file.display()
                ));
            }
        }
        Ok(Self {
            file: file.to_owned(),
            reader,
            columns,
        })
    }

    fn open_states(file: &Path, warnings: &mut Vec<String>) -> Result<Self, ImportError> {
        Self::open(file, &STATE_REQUIRED, &super::STATES_COLUMNS, warnings)
    }

    /// Each row: its line and a getter by column name, or why the row could not be read.
    fn rows(
        &mut self,
        mut each: impl FnMut(
            u64,
            Result<&dyn Fn(&str) -> Option<String>, String>,
        ) -> Result<(), ImportError>,
    ) -> Result<(), ImportError> {
        let mut record = csv::StringRecord::new();
        loop {
            match self.reader.read_record(&mut record) {
                Ok(false) => return Ok(()),
                Ok(true) => {
                    let line = record.position().map_or(0, csv::Position::line);
                    let columns = &self.columns;
                    let get = |name: &str| {
                        columns
                            .get(name)
                            .and_then(|&i| record.get(i))
                            .map(str::to_owned)
                    };
                    each(line, Ok(&get))?;
                }
                Err(e) => {
                    let line = e.position().map_or(0, csv::Position::line);
                    if let csv::ErrorKind::Io(io) = e.kind()
                        && let Some(too_long) =
                            io.get_ref().and_then(|i| i.downcast_ref::<RecordTooLong>())
                    {
                        // A bad row, reported with the rows before it imported; reading stops.
                        return each(too_long.line, Err(too_long.to_string()));
                    }
                    if e.is_io_error() {
                        return Err(ImportError::File {
                            file: self.file.clone(),
                            detail: e.to_string(),
                        });
                    }
                    each(line, Err(format!("not readable as CSV: {e}")))?;
                }
            }
        }
    }
}

const STATE_REQUIRED: [&str; 7] = [
    "endpoint_id",
    "available_tokens",
    "capacity",
    "refill_tokens",
    "refill_period_sec",
    "psp_category",
    "response_time",
];

/// One states row from its columns.
fn state_row(
    get: &dyn Fn(&str) -> Option<String>,
    now: DateTime<Utc>,
) -> Result<StateRecord, String> {
    let field = |name: &str| -> Result<String, String> {
        match get(name) {
            None => Err(format!("missing column {name}")),
            Some(v) if v.trim().is_empty() => Err(format!("{name} is empty")),
            Some(v) => Ok(v),
        }
    };
    let int = |name: &str| {
        field(name).and_then(|v| parse_integer(&v).map_err(|e| format!("{name}: {e}")))
    };
    // A value, and the decimals its text was written with (export writes it back the same).
    let optional = |name: &str| -> Result<(Option<f64>, Option<u8>), String> {
        match get(name) {
            Some(v) if !v.trim().is_empty() => parse_numeric(&v)
                .map(|x| (Some(x), TextScales::of(&v, x)))
                .map_err(|e| format!("{name}: {e}")),
            _ => Ok((None, None)),
        }
    };
    let policy =
        PolicyName::new(field("endpoint_id")?.trim()).map_err(|e| format!("endpoint_id: {e}"))?;
    let category =
        PspCategory::parse(&field("psp_category")?).map_err(|e| format!("psp_category: {e}"))?;
    let at =
        parse_timestamp(&field("response_time")?).map_err(|e| format!("response_time: {e}"))?;
    let created_at = match get("created_at") {
        Some(v) if !v.trim().is_empty() => {
            parse_timestamp(&v).map_err(|e| format!("created_at: {e}"))?
        }
        _ => at,
    };
    let sample = Sample {
        at,
        available_tokens: int("available_tokens")?,
        bucket: BucketConfig {
            capacity: int("capacity")?,
            refill_tokens: int("refill_tokens")?,
            refill_period_secs: int("refill_period_sec")?,
        },
        category,
    };
    validate(&sample, None, now, ValidationLimits::default()).map_err(|e| e.to_string())?;
    let capacity = sample.bucket.capacity as f64;
    let available = sample.available_tokens as f64;
    let (utilization, utilization_scale) = optional("utilization_percent")?;
    let (rate, rate_scale) = optional("consumption_rate_per_minute")?;
    let (eta, eta_scale) = optional("recovery_eta_seconds")?;
    let (projection, projection_scale) = optional("exhaustion_projection_seconds")?;
    Ok(StateRecord {
        policy,
        sample,
        enrichment: Enrichment {
            utilization_percent: utilization.unwrap_or(100.0 * (capacity - available) / capacity),
            remaining_percent: 100.0 * available / capacity,
            consumption_rate_per_minute: rate,
            recovery_eta_seconds: eta,
            exhaustion_projection_seconds: projection,
            text_scales: TextScales([utilization_scale, rate_scale, eta_scale, projection_scale]),
        },
        created_at,
    })
}

/// A policy's configuration when seen, and when.
type Sighting = (Policy, DateTime<Utc>);

/// Rows waiting to be written, by month, with their lines.
#[derive(Default)]
struct Pending {
    months: BTreeMap<Month, Vec<(u64, StateRecord)>>,
    rows: usize,
    /// Per policy: configuration and time of the first and the last row written.
    seen: HashMap<PolicyName, (Sighting, Sighting)>,
}

impl Pending {
    fn flush(
        &mut self,
        store: &mut Store,
        file: &Path,
        report: &mut ImportReport,
    ) -> Result<(), ImportError> {
        let reader = StoreReader::open(store.dir())?;
        for (month, mut rows) in std::mem::take(&mut self.months) {
            let mut present: HashSet<(PolicyName, DateTime<Utc>)> = HashSet::new();
            let problems = reader.scan_month(month, &Filter::default(), &mut |r| {
                present.insert((r.policy, r.sample.at));
            })?;
            if let Some(p) = problems.into_iter().next() {
                return Err(StoreError::Damaged(p).into());
            }
            rows.sort_by(|(la, a), (lb, b)| {
                (&a.policy, a.sample.at, la).cmp(&(&b.policy, b.sample.at, lb))
            });
            let mut kept: Vec<StateRecord> = Vec::with_capacity(rows.len());
            let mut previous: Option<(u64, PolicyName, DateTime<Utc>)> = None;
            for (line, r) in rows {
                let again = previous
                    .as_ref()
                    .filter(|(_, p, t)| *p == r.policy && *t == r.sample.at)
                    .map(|(l, _, _)| *l);
                let reason = if let Some(first) = again {
                    Some(format!(
                        "duplicate of line {first} ({} at {}); skipped",
                        r.policy.as_str(),
                        r.sample.at
                    ))
                } else if present.contains(&(r.policy.clone(), r.sample.at)) {
                    // Stored by an earlier import: counted, not listed (a second import of
                    // a whole history would list every row).
                    report.duplicates += 1;
                    report.already_stored += 1;
                    continue;
                } else {
                    None
                };
                if let Some(reason) = reason {
                    report.problem(RowProblem {
                        file: file.to_owned(),
                        line,
                        reason,
                        duplicate: true,
                    });
                    continue;
                }
                previous = Some((line, r.policy.clone(), r.sample.at));
                let policy = Policy {
                    name: r.policy.clone(),
                    bucket: r.sample.bucket,
                    category: r.sample.category,
                };
                let at = r.sample.at;
                self.seen
                    .entry(r.policy.clone())
                    .and_modify(|(first, last)| {
                        if at < first.1 {
                            *first = (policy.clone(), at);
                        }
                        if at > last.1 {
                            *last = (policy.clone(), at);
                        }
                    })
                    .or_insert_with(|| ((policy.clone(), at), (policy, at)));
                kept.push(r);
            }
            report.states += kept.len() as u64;
            store.append_sealed(&kept)?;
        }
        self.rows = 0;
        Ok(())
    }
}

/// Imports a states CSV (and an alerts CSV) into `store`. With `strict`, nothing is written
/// if any row is bad.
pub fn import(
    store: &mut Store,
    states: &Path,
    alerts: Option<&Path>,
    strict: bool,
    now: DateTime<Utc>,
) -> Result<ImportReport, ImportError> {
    if strict {
        let mut check = check(states, alerts, now)?;
        if check.bad > 0 {
            check.problems.retain(|p| !p.duplicate);
            return Err(ImportError::Strict {
                bad: check.bad,
                report: Box::new(check),
            });
        }
    }
    let mut report = ImportReport::default();
    let mut table = Table::open_states(states, &mut report.warnings)?;
    let mut pending = Pending::default();
    table.rows(|line, get| {
        match get.and_then(|get| state_row(get, now)) {
            Ok(r) => {
                pending
                    .months
                    .entry(Month::of(r.sample.at))
                    .or_default()
                    .push((line, r));
                pending.rows += 1;
                if pending.rows >= FLUSH_ROWS {
                    pending.flush(store, states, &mut report)?;
                }
            }
            // Counted; only the first MAX_REPORTED are kept for the report, so memory does
            // not grow with the number of bad lines.
            Err(reason) => report.problem(RowProblem {
                file: states.to_owned(),
                line,
                reason,
                duplicate: false,
            }),
        }
        Ok(())
    })?;
    pending.flush(store, states, &mut report)?;
    if let Err(e) = store.compact() {
        // The rows are stored either way, in the blocks they were appended as.
        report.warnings.push(format!(
            "compaction after the import failed ({e}); every row is stored, in smaller blocks — run `dictmon verify`"
        ));
    }
    // The catalog: each policy's configuration as first and last seen.
    // The catalog keeps the earliest first sighting and takes the last one applied as the
    // latest, so history older than the directory's ends with the directory's own latest.
    let existing: HashMap<PolicyName, Sighting> = store
        .catalog()
        .policies()?
        .into_iter()
        .map(|p| (p.policy.name.clone(), (p.policy, p.last_seen)))
        .collect();
    let mut update = CatalogUpdate::default();
    for (name, (first, last)) in pending.seen {
        update.policies.push(first);
        match existing.get(&name) {
            Some(newer) if newer.1 > last.1 => update.policies.push(newer.clone()),
            _ => update.policies.push(last),
        }
    }
    if let Some(a) = alerts {
        update.alerts = read_alerts(a, &mut report)?;
        report.alerts = update.alerts.len() as u64;
    }
    store.catalog().apply(&update)?;
    report
        .problems
        .sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
    Ok(report)
}

/// Reads and checks every row of a states CSV (and an alerts CSV) as `import` would, and
/// writes nothing: the report counts and locates the bad rows (duplicates of stored rows are
/// not looked for). The strict pre-check of [`import`].
pub fn check(
    states: &Path,
    alerts: Option<&Path>,
    now: DateTime<Utc>,
) -> Result<ImportReport, ImportError> {
    let mut report = ImportReport::default();
    check_states(states, now, &mut report)?;
    if let Some(a) = alerts {
        read_alerts(a, &mut report)?;
    }
    Ok(report)
}

/// The strict pre-check of a states file: every row parsed, nothing kept.
fn check_states(
    states: &Path,
    now: DateTime<Utc>,
    report: &mut ImportReport,
) -> Result<(), ImportError> {
    let mut table = Table::open_states(states, &mut report.warnings)?;
    table.rows(|line, get| {
        if let Err(reason) = get.and_then(|get| state_row(get, now)) {
            report.problem(RowProblem {
                file: states.to_owned(),
                line,
                reason,
                duplicate: false,
            });
        }
        Ok(())
    })?;
    Ok(())
}

const ALERT_REQUIRED: [&str; 6] = [
    "endpoint_id",
    "severity",
    "available_tokens",
    "capacity",
    "psp_category",
    "created_at",
];

/// Reads an alerts CSV; bad rows go to `report`.
fn read_alerts(path: &Path, report: &mut ImportReport) -> Result<Vec<Alert>, ImportError> {
    let mut table = Table::open(
        path,
        &ALERT_REQUIRED,
        &super::ALERTS_COLUMNS,
        &mut report.warnings,
    )?;
    let mut alerts = Vec::new();
    let mut bad = Vec::new();
    table.rows(|line, get| {
        match get.and_then(alert_row) {
            Ok(a) => alerts.push(a),
            Err(reason) => bad.push((line, reason)),
        }
        Ok(())
    })?;
    for (line, reason) in bad {
        report.problem(RowProblem {
            file: path.to_owned(),
            line,
            reason,
            duplicate: false,
        });
    }
    Ok(alerts)
}

fn alert_row(get: &dyn Fn(&str) -> Option<String>) -> Result<Alert, String> {
    let field = |name: &str| -> Result<String, String> {
        match get(name) {
            None => Err(format!("missing column {name}")),
            Some(v) if v.trim().is_empty() => Err(format!("{name} is empty")),
            Some(v) => Ok(v),
        }
    };
    let present = |name: &str| get(name).filter(|v| !v.trim().is_empty());
    let int = |name: &str| {
        field(name).and_then(|v| parse_integer(&v).map_err(|e| format!("{name}: {e}")))
    };
    let policy =
        PolicyName::new(field("endpoint_id")?.trim()).map_err(|e| format!("endpoint_id: {e}"))?;
    let severity = match field("severity")?.trim().to_ascii_uppercase().as_str() {
        "WARNING" => Severity::Warning,
        "CRITICAL" => Severity::Critical,
        other => return Err(format!("severity: {other:?} is not WARNING or CRITICAL")),
    };
    let psp_category =
        PspCategory::parse(&field("psp_category")?).map_err(|e| format!("psp_category: {e}"))?;
    let opened_at =
        parse_timestamp(&field("created_at")?).map_err(|e| format!("created_at: {e}"))?;
    let available_tokens = int("available_tokens")?;
    let capacity = int("capacity")?;
    if capacity <= 0 {
        return Err("capacity is zero or negative".into());
    }
    let utilization_percent = match present("utilization_percent") {
        Some(v) => parse_numeric(&v).map_err(|e| format!("utilization_percent: {e}"))?,
        None => 100.0 * (capacity - available_tokens) as f64 / capacity as f64,
    };
    let resolved_at = match present("resolved_at") {
        Some(v) => Some(parse_timestamp(&v).map_err(|e| format!("resolved_at: {e}"))?),
        None => None,
    };
    if let Some(v) = present("resolved") {
        let resolved = parse_bool(&v).map_err(|e| format!("resolved: {e}"))?;
        if resolved != resolved_at.is_some() {
            return Err(format!(
                "resolved is {v} but resolved_at is {}",
                if resolved_at.is_some() {
                    "set"
                } else {
                    "empty"
                }
            ));
        }
    }
    let cause = match present("cause").as_deref().map(str::trim) {
        None | Some("threshold") => AlertCause::Threshold,
        Some("projection") => AlertCause::Projection,
        Some(other) => return Err(format!("cause: {other:?} is not threshold or projection")),
    };
    let id = match present("id") {
        Some(v) => Uuid::parse_str(v.trim()).map_err(|e| format!("id: {e}"))?,
        None => Alert::id_for(&policy, opened_at, severity),
    };
    Ok(Alert {
        id,
        policy,
        severity,
        cause,
        opened_at,
        available_tokens,
        capacity,
        utilization_percent,
        psp_category,
        message: get("message").unwrap_or_default(),
        resolved_at,
        resolution: present("resolution_notes"),
    })
}
