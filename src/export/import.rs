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
//! The states file is parsed on every core (`csv_chunks`); the rows wait by month
//! and policy, and a month is written as sealed blocks by a thread of its own once the next
//! month's rows are coming in (an export lists the months in order), while reading goes on.
//! A month too big to wait whole is written in parts, which compaction merges at the end, a
//! bounded run at a time (storage-format.md §6.3). Memory is bounded by [`FLUSH_ROWS`] rows
//! waiting plus the month being written.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::csv_chunks::{self, MAX_RECORD_BYTES, RecordTooLong};
use super::pg::{parse_bool, parse_integer, parse_numeric, parse_timestamp};
use crate::domain::{
    Alert, AlertCause, BucketConfig, Enrichment, Policy, PolicyName, PspCategory, Sample, Severity,
    StateRecord, TextScales, ValidationLimits, validate,
};
use crate::store::catalog::CatalogUpdate;
use crate::store::{Filter, Month, Store, StoreError, StoreReader};

/// Rows buffered before the months they belong to are written.
pub const FLUSH_ROWS: usize = 300_000;

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
    /// Bad rows of `file`, with their lines and reasons: counted, and the first
    /// [`MAX_REPORTED`] kept, so that memory does not grow with the number of bad lines.
    fn bad_rows(&mut self, file: &Path, bad: Vec<(u64, String)>) {
        for (line, reason) in bad {
            self.problem(RowProblem {
                file: file.to_owned(),
                line,
                reason,
                duplicate: false,
            });
        }
    }

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
    /// The writing thread stopped (its own error is reported instead).
    #[error("the writing thread stopped")]
    WriterStopped,
}

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
            if self.record > MAX_RECORD_BYTES as u64 {
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

/// The states table's columns: where each is in the header.
struct StateColumns {
    endpoint_id: usize,
    available_tokens: usize,
    capacity: usize,
    refill_tokens: usize,
    refill_period_sec: usize,
    psp_category: usize,
    response_time: usize,
    /// The derived columns, in [`TextScales`] order.
    derived: [Option<usize>; 4],
    created_at: Option<usize>,
}

impl StateColumns {
    fn of(table: &Table) -> Result<Self, ImportError> {
        let at = |name: &str| table.columns.get(name).copied();
        let required = |name: &'static str| {
            at(name).ok_or_else(|| ImportError::MissingColumn {
                file: table.file.clone(),
                column: name,
                found: String::new(),
            })
        };
        Ok(Self {
            endpoint_id: required("endpoint_id")?,
            available_tokens: required("available_tokens")?,
            capacity: required("capacity")?,
            refill_tokens: required("refill_tokens")?,
            refill_period_sec: required("refill_period_sec")?,
            psp_category: required("psp_category")?,
            response_time: required("response_time")?,
            derived: [
                at("utilization_percent"),
                at("consumption_rate_per_minute"),
                at("recovery_eta_seconds"),
                at("exhaustion_projection_seconds"),
            ],
            created_at: at("created_at"),
        })
    }
}

/// Reads a states CSV: the header checked (required columns; a warning for each unused one),
/// then every row parsed on every core ([`csv_chunks`]), each chunk's rows gathered there with
/// `gather`, and the chunks handed to `each` in file order.
fn read_states<C: Send>(
    file: &Path,
    now: DateTime<Utc>,
    warnings: &mut Vec<String>,
    gather: impl Fn(csv_chunks::Parsed<StateRecord>) -> C + Sync,
    each: impl FnMut(C) -> Result<(), ImportError>,
) -> Result<(), ImportError> {
    let table = Table::open_states(file, warnings)?;
    let columns = StateColumns::of(&table)?;
    let start = table.reader.position().clone();
    let ferr = |detail: String| ImportError::File {
        file: file.to_owned(),
        detail,
    };
    let mut rows = File::open(file).map_err(|e| ferr(format!("cannot open: {e}")))?;
    std::io::Seek::seek(&mut rows, std::io::SeekFrom::Start(start.byte()))
        .map_err(|e| ferr(format!("cannot read: {e}")))?;
    csv_chunks::read_records(
        rows,
        (start.line(), start.byte()),
        |names: &mut Names, record| state_row(&columns, names, record, now),
        gather,
        each,
    )
    .map_err(|e| match e {
        csv_chunks::ReadError::Io(e) => ferr(format!("cannot read: {e}")),
        csv_chunks::ReadError::Stopped(e) => e,
    })
}

/// Rows of one month and policy, in file order, with their lines.
type Group = (Month, PolicyName, Vec<(u64, StateRecord)>);

/// Policies and times, of rows already stored.
type StoredRows = HashSet<(PolicyName, DateTime<Utc>)>;

/// Each policy's first and last sightings: configuration and time.
type Sightings = HashMap<PolicyName, (Sighting, Sighting)>;

/// A chunk of the states file, parsed: its rows by month and policy (each group in file
/// order), and its bad rows with their lines.
#[derive(Default)]
struct ChunkRows {
    groups: Vec<Group>,
    bad: Vec<(u64, String)>,
}

impl ChunkRows {
    /// Groups a chunk's rows, on the thread that parsed them.
    fn gather(parsed: csv_chunks::Parsed<StateRecord>) -> Self {
        let mut out = Self::default();
        // Rows come a poll cycle at a time, each cycle's policies in one order: the group
        // after the last one used is the likely one.
        let mut next = 0;
        for (line, row) in parsed {
            let r = match row {
                Ok(r) => r,
                Err(reason) => {
                    out.bad.push((line, reason));
                    continue;
                }
            };
            let month = Month::of(r.sample.at);
            let fits =
                |g: &(Month, PolicyName, Vec<(u64, StateRecord)>)| g.0 == month && g.1 == r.policy;
            let found = match out.groups.get(next) {
                Some(g) if fits(g) => Some(next),
                _ => out.groups.iter().position(fits),
            };
            let index = found.unwrap_or_else(|| {
                out.groups.push((month, r.policy.clone(), Vec::new()));
                out.groups.len() - 1
            });
            if let Some(group) = out.groups.get_mut(index) {
                group.2.push((line, r));
            }
            next = (index + 1) % out.groups.len().max(1);
        }
        // Kept until their month is written: no room to spare.
        for group in &mut out.groups {
            group.2.shrink_to_fit();
        }
        out
    }
}

/// The policy names a parsing thread has seen: rows of one policy share its name instead of
/// allocating one each.
#[derive(Default)]
struct Names(HashMap<Box<str>, PolicyName>);

impl Names {
    /// Most names kept (the legacy table has about 30).
    const MAX: usize = 4096;

    fn get(&mut self, text: &str) -> Result<PolicyName, String> {
        if let Some(name) = self.0.get(text) {
            return Ok(name.clone());
        }
        let name = PolicyName::new(text).map_err(|e| format!("endpoint_id: {e}"))?;
        if self.0.len() < Self::MAX {
            self.0.insert(text.into(), name.clone());
        }
        Ok(name)
    }
}

/// One states row from its fields.
fn state_row(
    columns: &StateColumns,
    names: &mut Names,
    record: &csv::ByteRecord,
    now: DateTime<Utc>,
) -> Result<StateRecord, String> {
    // UTF-8 checked once for the record; a field's bounds are char boundaries when every
    // field is text on its own.
    let all = std::str::from_utf8(record.as_slice()).ok();
    let text = |i: usize, name: &str| -> Result<Option<&str>, String> {
        let Some(range) = record.range(i) else {
            return Ok(None);
        };
        match all.and_then(|all| all.get(range)) {
            Some(text) => Ok(Some(text)),
            None => record
                .get(i)
                .map(|b| {
                    std::str::from_utf8(b)
                        .map_err(|e| format!("not readable as CSV: {name} is not UTF-8 ({e})"))
                })
                .transpose(),
        }
    };
    let field = |i: usize, name: &str| -> Result<&str, String> {
        match text(i, name)? {
            None => Err(format!("missing column {name}")),
            Some(v) if v.trim().is_empty() => Err(format!("{name} is empty")),
            Some(v) => Ok(v),
        }
    };
    let int = |i: usize, name: &str| {
        field(i, name).and_then(|v| parse_integer(v).map_err(|e| format!("{name}: {e}")))
    };
    // A value, and the decimals its text was written with (export writes it back the same).
    let optional = |i: Option<usize>, name: &str| -> Result<(Option<f64>, Option<u8>), String> {
        match i.map(|i| text(i, name)).transpose()?.flatten() {
            Some(v) if !v.trim().is_empty() => match TextScales::read(v) {
                Some((x, scale)) => Ok((Some(x), Some(scale))),
                None => parse_numeric(v)
                    .map(|x| (Some(x), TextScales::of(v, x)))
                    .map_err(|e| format!("{name}: {e}")),
            },
            _ => Ok((None, None)),
        }
    };
    let c = columns;
    let policy = names.get(field(c.endpoint_id, "endpoint_id")?.trim())?;
    let category = PspCategory::parse(field(c.psp_category, "psp_category")?)
        .map_err(|e| format!("psp_category: {e}"))?;
    let at = parse_timestamp(field(c.response_time, "response_time")?)
        .map_err(|e| format!("response_time: {e}"))?;
    let created_at = match c
        .created_at
        .map(|i| text(i, "created_at"))
        .transpose()?
        .flatten()
    {
        Some(v) if !v.trim().is_empty() => {
            parse_timestamp(v).map_err(|e| format!("created_at: {e}"))?
        }
        _ => at,
    };
    let sample = Sample {
        at,
        available_tokens: int(c.available_tokens, "available_tokens")?,
        bucket: BucketConfig {
            capacity: int(c.capacity, "capacity")?,
            refill_tokens: int(c.refill_tokens, "refill_tokens")?,
            refill_period_secs: int(c.refill_period_sec, "refill_period_sec")?,
        },
        category,
    };
    validate(&sample, None, now, ValidationLimits::default()).map_err(|e| e.to_string())?;
    let capacity = sample.bucket.capacity as f64;
    let available = sample.available_tokens as f64;
    let [utilization, rate, eta, projection] = c.derived;
    let (utilization, utilization_scale) = optional(utilization, "utilization_percent")?;
    let (rate, rate_scale) = optional(rate, "consumption_rate_per_minute")?;
    let (eta, eta_scale) = optional(eta, "recovery_eta_seconds")?;
    let (projection, projection_scale) = optional(projection, "exhaustion_projection_seconds")?;
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

/// One month's rows by policy, with their lines: in file order, in the pieces they were
/// read in (joining them would grow vectors, and hold up to twice the memory).
type MonthRows = BTreeMap<PolicyName, Vec<Vec<(u64, StateRecord)>>>;

/// Rows read, waiting to be written, by month.
#[derive(Default)]
struct Pending {
    months: BTreeMap<Month, MonthRows>,
    rows: usize,
}

impl Pending {
    fn append(&mut self, month: Month, policy: PolicyName, rows: Vec<(u64, StateRecord)>) {
        self.rows += rows.len();
        let month = self.months.entry(month).or_default();
        match month.get_mut(&policy) {
            Some(pieces) => pieces.push(rows),
            None => {
                month.insert(policy, vec![rows]);
            }
        }
    }

    /// The months to write now. Once [`FLUSH_ROWS`] are waiting: every month but the newest
    /// (an export lists a month's rows before the next month's, so those are complete: each
    /// month is written in one go and compaction has nothing left to merge), and the newest
    /// too if it alone holds half of them (a month of fast polls, written in parts).
    fn due(&mut self) -> Vec<(Month, MonthRows)> {
        let mut due = Vec::new();
        if self.rows < FLUSH_ROWS {
            return due;
        }
        while self.months.len() > 1 {
            due.extend(self.pop_oldest());
        }
        if self.rows >= FLUSH_ROWS / 2 {
            due.extend(self.pop_oldest());
        }
        due
    }

    fn pop_oldest(&mut self) -> Option<(Month, MonthRows)> {
        let (month, rows) = self.months.pop_first()?;
        self.rows -= rows.values().flatten().map(Vec::len).sum::<usize>();
        Some((month, rows))
    }
}

/// The writing side of an import, on a thread of its own: months of rows in, sealed blocks
/// out.
#[derive(Default)]
struct MonthWriter {
    /// States written, duplicates found.
    report: ImportReport,
    /// Per policy: configuration and time of the first and the last row written.
    seen: Sightings,
    /// Per policy: the newest row written.
    latest: HashMap<PolicyName, StateRecord>,
}

impl MonthWriter {
    /// Writes a month: each policy's rows in time order, without the rows repeated in the
    /// file (reported) or already stored (counted).
    fn write(
        &mut self,
        store: &mut Store,
        file: &Path,
        month: Month,
        policies: MonthRows,
    ) -> Result<(), ImportError> {
        let present = stored_rows(store, month, &policies)?;
        let mut kept: Vec<StateRecord> =
            Vec::with_capacity(policies.values().flatten().map(Vec::len).sum());
        for (_, mut pieces) in policies {
            if !pieces
                .iter()
                .flatten()
                .is_sorted_by_key(|(_, r)| r.sample.at)
            {
                // Stable: rows of one time keep their file order, so the first is kept.
                let mut rows: Vec<_> = pieces.into_iter().flatten().collect();
                rows.sort_by_key(|(_, r)| r.sample.at);
                pieces = vec![rows];
            }
            let start = kept.len();
            let mut previous: Option<(u64, DateTime<Utc>)> = None;
            for (line, r) in pieces.into_iter().flatten() {
                if let Some((first, _)) = previous.filter(|(_, t)| *t == r.sample.at) {
                    self.report.problem(RowProblem {
                        file: file.to_owned(),
                        line,
                        reason: format!(
                            "duplicate of line {first} ({} at {}); skipped",
                            r.policy.as_str(),
                            r.sample.at
                        ),
                        duplicate: true,
                    });
                    continue;
                }
                if present
                    .as_ref()
                    .is_some_and(|p| p.contains(&(r.policy.clone(), r.sample.at)))
                {
                    // Stored by an earlier import: counted, not listed (a second import of
                    // a whole history would list every row).
                    self.report.duplicates += 1;
                    self.report.already_stored += 1;
                    continue;
                }
                previous = Some((line, r.sample.at));
                kept.push(r);
            }
            // In time order: the policy's first and last rows of the month.
            if let (Some(first), Some(last)) = (kept.get(start), kept.last()) {
                self.sighted(first);
                self.sighted(last);
                if self
                    .latest
                    .get(&last.policy)
                    .is_none_or(|l| l.sample.at < last.sample.at)
                {
                    self.latest.insert(last.policy.clone(), last.clone());
                }
            }
        }
        self.report.states += kept.len() as u64;
        store.append_sealed(&kept)?;
        Ok(())
    }

    /// Keeps the policy's configuration if this row is its first or last seen.
    fn sighted(&mut self, r: &StateRecord) {
        let at = r.sample.at;
        let policy = || Policy {
            name: r.policy.clone(),
            bucket: r.sample.bucket,
            category: r.sample.category,
        };
        match self.seen.get_mut(&r.policy) {
            Some((first, last)) => {
                if at < first.1 {
                    *first = (policy(), at);
                }
                if at > last.1 {
                    *last = (policy(), at);
                }
            }
            None => {
                self.seen
                    .insert(r.policy.clone(), ((policy(), at), (policy(), at)));
            }
        }
    }
}

/// The rows of `month` already stored that `policies` may repeat; none when no row can be
/// (each row's time is outside every stored block's time range, which the block headers
/// tell without reading a row — the common case, an import into an empty month).
fn stored_rows(
    store: &Store,
    month: Month,
    policies: &MonthRows,
) -> Result<Option<StoredRows>, ImportError> {
    if let Some(ranges) = store.stored_time_ranges(month) {
        if ranges.is_empty() {
            return Ok(None);
        }
        let maybe_stored = |r: &StateRecord| {
            let t = r.sample.at.timestamp_nanos_opt().unwrap_or(i64::MAX);
            ranges.iter().any(|&(lo, hi)| lo <= t && t <= hi)
        };
        if !policies
            .values()
            .flatten()
            .flatten()
            .any(|(_, r)| maybe_stored(r))
        {
            return Ok(None);
        }
    }
    let reader = StoreReader::open(store.dir())?;
    let mut present = HashSet::new();
    let problems = reader.scan_month(month, &Filter::default(), &mut |r| {
        present.insert((r.policy, r.sample.at));
    })?;
    if let Some(p) = problems.into_iter().next() {
        return Err(StoreError::Damaged(p).into());
    }
    Ok(Some(present))
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
    let (mut report, seen, latest) = read_and_write(store, states, now)?;
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
    // The newest rows: the catalog keeps them only if newer than its own (§10).
    let mut update = CatalogUpdate {
        latest,
        ..CatalogUpdate::default()
    };
    for (name, (first, last)) in seen {
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
    report.problems.truncate(MAX_REPORTED);
    Ok(report)
}

/// The states file read (on every core) and written (on a thread of its own, a month at a
/// time, while the next months are read): the report, and each policy's first and last
/// sightings.
fn read_and_write(
    store: &mut Store,
    states: &Path,
    now: DateTime<Utc>,
) -> Result<(ImportReport, Sightings, Vec<StateRecord>), ImportError> {
    std::thread::scope(|scope| {
        // A rendezvous: the reader waits while the writer is busy, so that memory holds one
        // month being written and at most FLUSH_ROWS rows read.
        let (months, to_write) = std::sync::mpsc::sync_channel::<(Month, MonthRows)>(0);
        let writer = scope.spawn(move || {
            let mut writer = MonthWriter::default();
            for (month, rows) in to_write {
                writer.write(store, states, month, rows)?;
            }
            Ok::<_, ImportError>(writer)
        });
        let mut report = ImportReport::default();
        let mut pending = Pending::default();
        let mut warnings = Vec::new();
        let read = read_states(states, now, &mut warnings, ChunkRows::gather, |chunk| {
            for (month, policy, rows) in chunk.groups {
                pending.append(month, policy, rows);
            }
            for month in pending.due() {
                // Refused only when the writer stopped; its error is the one told.
                months.send(month).map_err(|_| ImportError::WriterStopped)?;
            }
            report.bad_rows(states, chunk.bad);
            Ok(())
        });
        let read = read.and_then(|()| {
            while let Some(month) = pending.pop_oldest() {
                months.send(month).map_err(|_| ImportError::WriterStopped)?;
            }
            Ok(())
        });
        drop(months);
        let written = writer
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
        read?;
        report.warnings = warnings;
        let w = written.report;
        report.states = w.states;
        report.duplicates += w.duplicates;
        report.already_stored = w.already_stored;
        report.problems.extend(w.problems);
        Ok((report, written.seen, written.latest.into_values().collect()))
    })
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
    let mut warnings = Vec::new();
    let bad_rows = |parsed: csv_chunks::Parsed<StateRecord>| -> Vec<(u64, String)> {
        parsed
            .into_iter()
            .filter_map(|(line, row)| row.err().map(|reason| (line, reason)))
            .collect()
    };
    read_states(states, now, &mut warnings, bad_rows, |bad| {
        report.bad_rows(states, bad);
        Ok(())
    })?;
    report.warnings.append(&mut warnings);
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
        "INFO" => Severity::Info,
        other => {
            return Err(format!(
                "severity: {other:?} is not INFO, WARNING or CRITICAL"
            ));
        }
    };
    let psp_category =
        PspCategory::parse(&field("psp_category")?).map_err(|e| format!("psp_category: {e}"))?;
    let opened_at =
        parse_timestamp(&field("created_at")?).map_err(|e| format!("created_at: {e}"))?;
    let available_tokens = int("available_tokens")?;
    let capacity = int("capacity")?;
    // A category notice (INFO, or a WARNING on `PSP_CATEGORY`) is about no bucket.
    let notice = severity == Severity::Info || policy.as_str() == "PSP_CATEGORY";
    if capacity <= 0 && !notice {
        return Err("capacity is zero or negative".into());
    }
    let utilization_percent = match present("utilization_percent") {
        Some(v) => parse_numeric(&v).map_err(|e| format!("utilization_percent: {e}"))?,
        None if capacity <= 0 => 0.0,
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
        Some("category") => AlertCause::Category,
        Some(other) => {
            return Err(format!(
                "cause: {other:?} is not threshold, projection or category"
            ));
        }
    };
    let id = match present("id") {
        Some(v) => Uuid::parse_str(v.trim()).map_err(|e| format!("id: {e}"))?,
        None => Alert::id_for(&policy, opened_at, severity),
    };
    Ok(Alert {
        id,
        policy,
        severity,
        peak_severity: None,
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
