//! The catalog, `catalog.redb` (§10): policies as last seen, alerts (open and history), the
//! alert-event outbox, each delivery sink's progress through it, and store metadata. Values are JSON of the domain types, so fields can
//! be added without a migration.
//!
//! Opened in redb's `SingleWriter` mode: the one writer (`serve`, `import`) and any number of
//! read-only handles in other processes (`status`, `query`, `export`, `verify`) share the file.
//!
//! Invariants: an alert transition, its events and the policies of the same cycle are written
//! in one transaction; outbox sequence numbers only grow, even after retention empties the
//! outbox (`meta.outbox_next_seq`); the schema version in `meta` is checked on every open.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{PoisonError, RwLock, RwLockReadGuard};

use chrono::{DateTime, Utc};
use redb::{
    Builder, ConcurrencyMode, Database, ReadOnlyDatabase, ReadTransaction, ReadableDatabase,
    ReadableTable, TableDefinition,
};
use serde::{Deserialize, Serialize};

use crate::domain::{Alert, AlertEvent, Policy, PolicyName, StateRecord};

const POLICIES: TableDefinition<&str, &[u8]> = TableDefinition::new("policies");
const ALERTS: TableDefinition<u128, &[u8]> = TableDefinition::new("alerts");
const OUTBOX: TableDefinition<u64, &[u8]> = TableDefinition::new("outbox");
const META: TableDefinition<&str, &str> = TableDefinition::new("meta");
const SINKS: TableDefinition<&str, &[u8]> = TableDefinition::new("sinks");
/// §10.1: the ledger, what the catalog knows of each segment (key `YYYY-MM`).
const SEGMENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("segments");
/// §10.2: CRC-32C of each `alerts` and `outbox` value as written (key `alerts/ID`,
/// `outbox/SEQ`).
const CHECKSUMS: TableDefinition<&str, u32> = TableDefinition::new("checksums");
/// Each policy's newest snapshot (`StateRecord`), so `status` reads no segment.
const LATEST: TableDefinition<&str, &[u8]> = TableDefinition::new("latest");
/// The open alerts (`Alert`, keyed as in `alerts`), so `status` decodes no resolved one.
const OPEN_ALERTS: TableDefinition<u128, &[u8]> = TableDefinition::new("open_alerts");
/// `meta` key present once `open_alerts` holds every open alert.
const OPEN_ALERTS_KEPT: &str = "open_alerts";
/// The alert history in the order alerts opened: (`opened_at`, ns since the epoch; id), no
/// value. A page of the history reads its alerts only.
const ALERTS_BY_OPENING: TableDefinition<(i64, u128), ()> =
    TableDefinition::new("alerts_by_opening");
/// `meta` key present once `alerts_by_opening` holds every alert.
const ALERTS_BY_OPENING_KEPT: &str = "alerts_by_opening";
/// `meta` key present once the ledger and checksums cover every segment and record (set when
/// a catalog is created, or when an older one was brought up to date).
const LEDGER: &str = "ledger";
/// `meta` key of the findings list (JSON of `Vec<Finding>`).
const FINDINGS: &str = "findings";
/// `meta` key present once every `alerts` and `outbox` value has its checksum.
const CHECKSUMS_KEPT: &str = "checksums";
/// `meta` key of the next outbox sequence number.
const NEXT_SEQ: &str = "outbox_next_seq";

/// §10: the catalog schema this code writes and reads.
pub const SCHEMA_VERSION: &str = "1";

/// Why the catalog could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CatalogError {
    /// redb reported an error (I/O, corruption, lock).
    #[error("catalog {path}: {error}")]
    Redb {
        /// The catalog file.
        path: String,
        /// redb's error (part of the message).
        error: Box<redb::Error>,
    },
    /// A value could not be written as JSON (nothing was written).
    #[error("catalog {path}: cannot encode a record: {error}")]
    Encode {
        /// The catalog file.
        path: String,
        /// The JSON error (part of the message).
        error: serde_json::Error,
    },
    /// A stored value is not valid JSON of its type.
    #[error("catalog {path}: table {table}, key {key}: {error}")]
    Value {
        /// The catalog file.
        path: String,
        /// The table.
        table: &'static str,
        /// The key, as text.
        key: String,
        /// The JSON error (part of the message).
        error: serde_json::Error,
    },
    /// The file is damaged in a way redb does not report but panics on (redb 4.6 indexes
    /// past a page on some corrupt files); caught at this boundary so that a read-only
    /// command fails with this error rather than crashing.
    #[error(
        "catalog {path} is damaged ({detail}); run `dictmon verify`, and restore the catalog from a backup"
    )]
    Damaged {
        /// The catalog file.
        path: String,
        /// What redb's panic said.
        detail: String,
    },
    /// A schema version this code does not read.
    #[error(
        "catalog {path}: schema version {found} is not supported (this dictmon reads {SCHEMA_VERSION}); use a newer dictmon"
    )]
    Schema {
        /// The catalog file.
        path: String,
        /// The version found.
        found: String,
    },
}

/// A policy as last seen, with when it was first and last seen (DICT time).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PolicyRecord {
    /// Configuration as last seen.
    pub policy: Policy,
    /// First sample time.
    pub first_seen: DateTime<Utc>,
    /// Last sample time.
    pub last_seen: DateTime<Utc>,
    /// The time of the listing at which dictmon concluded the policy had left DICT's listing
    /// (missing from `vanished_after_polls` listings in a row); none while it is listed. Its
    /// `latest` entry goes in the same transaction, and a restart does not bring it back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub left_at: Option<DateTime<Utc>>,
}

/// One delivery sink's progress through the outbox (`notify`), kept so that a restart resumes
/// where delivery stopped and `query alerts` can say what each sink received.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SinkProgress {
    /// `alertmanager`, `webhook`, `pulsar`, `file`.
    pub kind: String,
    /// Where it delivers (URL or path), for people.
    pub target: String,
    /// The first event sequence this sink was responsible for (events before it were in the
    /// outbox before the sink was configured, and are not sent to it).
    pub since_seq: u64,
    /// Every event before this sequence number was acknowledged by the sink.
    pub next_seq: u64,
    /// Events acknowledged, in total.
    pub delivered: u64,
    /// Failed attempts since the last success.
    pub failures: u64,
    /// The last failure, while failing.
    pub last_error: Option<String>,
    /// Local time of the last attempt.
    pub last_attempt: Option<DateTime<Utc>>,
    /// Local time of the last acknowledged delivery.
    pub last_success: Option<DateTime<Utc>>,
}

/// §10.1: what the catalog knows of one segment.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentRecord {
    /// Rows the segment holds at least: every appended block's rows, added once its write
    /// was fsynced, less duplicates a compaction dropped. A segment whose good blocks hold
    /// fewer lost acknowledged rows.
    pub rows: u64,
    /// Retention is deleting the file (§9).
    #[serde(default)]
    pub retiring: bool,
    /// A writer found acknowledged rows missing from it (a finding says which): it is never
    /// cut, since the end that looks torn may be what is left of them.
    #[serde(default)]
    pub damaged: bool,
    /// (device, inode) of the file counted: another file at the segment's path holding fewer
    /// rows may be a copy (see `counted_at`); the same one is damaged.
    #[serde(default)]
    pub file: Option<(u64, u64)>,
    /// Local time of the last count: a segment file last modified before it, holding fewer
    /// rows, is a copy taken before the catalog's (§10.1), not a damaged segment.
    #[serde(default)]
    pub counted_at: Option<DateTime<Utc>>,
}

/// Something a writer found that the files alone no longer show (a catalog made afresh
/// beside existing segments, a segment the catalog did not know), kept for `verify`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// Local time it was found.
    pub at: DateTime<Utc>,
    /// What, for people.
    pub text: String,
}

/// What one cycle changes in the catalog, written in one transaction.
#[derive(Clone, Debug, Default)]
pub struct CatalogUpdate {
    /// Policies seen, with the sample time.
    pub policies: Vec<(Policy, DateTime<Utc>)>,
    /// Alerts opened or resolved (stored by id; a resolved alert overwrites its open form).
    pub alerts: Vec<Alert>,
    /// Events to add to the outbox.
    pub events: Vec<AlertEvent>,
    /// Each policy's newest snapshot of the update (kept only if newer than the catalog's).
    pub latest: Vec<StateRecord>,
    /// Policies that left DICT's listing, with the listing's time: marked so in `policies`
    /// and gone from `latest`, unless seen since.
    pub left: Vec<(PolicyName, DateTime<Utc>)>,
}

impl CatalogUpdate {
    /// Whether it changes nothing.
    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
            && self.alerts.is_empty()
            && self.events.is_empty()
            && self.latest.is_empty()
            && self.left.is_empty()
    }

    /// Policy sightings, alert states and events it holds.
    pub fn len(&self) -> usize {
        self.policies.len() + self.alerts.len() + self.events.len() + self.left.len()
    }

    /// Folds a later update into this one, so that applying the result once writes what
    /// applying both in turn would: per policy, its earliest and latest sighting (in that
    /// order: `apply` keeps the least `first_seen` and the last `last_seen`); per alert, its
    /// latest state; every event, in order. Memory grows with events only.
    pub fn absorb(&mut self, later: CatalogUpdate) {
        for (policy, at) in later.policies {
            let same: Vec<usize> = (0..self.policies.len())
                .filter(|&i| {
                    self.policies
                        .get(i)
                        .is_some_and(|(p, _)| p.name == policy.name)
                })
                .collect();
            let time = |i: usize| self.policies.get(i).map(|(_, t)| *t);
            match same.as_slice() {
                [] => self.policies.push((policy, at)),
                &[only] if time(only).is_some_and(|t| at < t) => {
                    self.policies.insert(only, (policy, at));
                }
                &[only] => self.policies.insert(only + 1, (policy, at)),
                &[earliest, latest, ..] => {
                    if time(earliest).is_some_and(|t| at < t) {
                        self.policies[earliest] = (policy, at);
                    } else if time(latest).is_some_and(|t| at >= t) {
                        self.policies[latest] = (policy, at);
                    }
                }
            }
        }
        for alert in later.alerts {
            match self.alerts.iter_mut().find(|a| a.id == alert.id) {
                Some(kept) => *kept = alert,
                None => self.alerts.push(alert),
            }
        }
        self.events.extend(later.events);
        // Applied after the sightings, each only over a policy not seen since it left.
        self.left.extend(later.left);
        if self.latest.is_empty() {
            self.latest = later.latest;
            return;
        }
        for record in later.latest {
            match self.latest.iter_mut().find(|r| r.policy == record.policy) {
                Some(kept) if kept.sample.at <= record.sample.at => *kept = record,
                Some(_) => {}
                None => self.latest.push(record),
            }
        }
    }
}

/// The writer's handle. After an I/O error (a full disk, EIO) redb refuses every later
/// transaction until the database is closed and opened again: the handle then closes it, and
/// the next call opens it again (redb repairs it from its last commit), so the catalog heals
/// without a restart once the disk does (§10).
pub struct Catalog {
    db: RwLock<Option<Database>>,
    file: PathBuf,
    path: String,
    /// Times it was closed after an I/O error.
    closed_after_io_error: AtomicU64,
}

/// The open database, held for one call.
struct Db<'a>(RwLockReadGuard<'a, Option<Database>>);

impl std::ops::Deref for Db<'_> {
    type Target = Database;
    #[allow(clippy::expect_used)]
    fn deref(&self) -> &Database {
        self.0
            .as_ref()
            .expect("Catalog::db returns only an open database")
    }
}

/// A read-only handle, usable while a writer runs, after a writer was killed, and on a copy
/// (even one taken while the writer ran, or on a read-only medium).
pub struct CatalogReader {
    db: Option<ReaderDb>,
    path: String,
}

/// How a reader holds the catalog (§10).
enum ReaderDb {
    /// The file itself, read-only.
    File(ReadOnlyDatabase),
    /// A file redb would have to repair before reading — its writer still has it open, was
    /// killed, or the file is a copy taken while one ran: copied into memory and repaired
    /// there, so the file is never touched.
    Repaired(Database),
}

fn redb_err(path: &str, e: impl Into<redb::Error>) -> CatalogError {
    CatalogError::Redb {
        path: path.to_owned(),
        error: Box::new(e.into()),
    }
}

fn builder() -> Builder {
    let mut b = Builder::new();
    b.set_concurrency_mode(ConcurrencyMode::SingleWriter);
    b
}

impl Catalog {
    /// Opens (creating if absent) the catalog for writing. A new catalog is made under a
    /// temporary name and renamed into place once initialised (§10), so a reader never opens a
    /// half-made file.
    pub fn open(path: &Path) -> Result<Self, CatalogError> {
        let p = path.display().to_string();
        if !path.exists() {
            let tmp = path.with_extension("redb.tmp");
            let tmp_text = tmp.display().to_string();
            let _ = std::fs::remove_file(&tmp);
            let fresh = Self::with(
                builder().create(&tmp).map_err(|e| redb_err(&tmp_text, e))?,
                &tmp,
            );
            fresh.init(true)?;
            drop(fresh);
            let io = |e: std::io::Error| redb_err(&p, redb::StorageError::Io(e));
            std::fs::rename(&tmp, path).map_err(io)?;
            if let Some(dir) = path.parent() {
                std::fs::File::open(dir)
                    .and_then(|d| d.sync_all())
                    .map_err(io)?;
            }
        }
        // redb panics on some damaged files rather than returning an error (§8): a writer
        // (`serve`, `import`, `retention`) then stops with that error, not a crash. It opens
        // the catalog before any thread of its own is at work, as `guarded` needs.
        guarded(&p, || {
            let db = builder().open(path).map_err(|e| redb_err(&p, e))?;
            let catalog = Self::with(db, path);
            catalog.init(false)?;
            Ok(catalog)
        })
    }

    fn with(db: Database, file: &Path) -> Self {
        Self {
            db: RwLock::new(Some(db)),
            file: file.to_owned(),
            path: file.display().to_string(),
            closed_after_io_error: AtomicU64::new(0),
        }
    }

    /// The open database, opened again if an I/O error closed it.
    fn db(&self) -> Result<Db<'_>, CatalogError> {
        loop {
            let db = self.db.read().unwrap_or_else(PoisonError::into_inner);
            if db.is_some() {
                return Ok(Db(db));
            }
            drop(db);
            let mut slot = self.db.write().unwrap_or_else(PoisonError::into_inner);
            if slot.is_none() {
                let db = builder()
                    .open(&self.file)
                    .map_err(|e| redb_err(&self.path, e))?;
                tracing::info!(catalog = %self.path, "catalog opened again after an I/O error");
                *slot = Some(db);
            }
        }
    }

    /// Runs `call` ([`guarded`]: a panic inside redb on a damaged file is an error); an I/O
    /// error closes the database, for [`Self::db`] to open again.
    fn heal<T>(&self, call: impl FnOnce() -> Result<T, CatalogError>) -> Result<T, CatalogError> {
        let result = guarded(&self.path, call);
        if let Err(CatalogError::Redb { error, .. }) = &result
            && matches!(**error, redb::Error::Io(_) | redb::Error::PreviousIo)
        {
            *self.db.write().unwrap_or_else(PoisonError::into_inner) = None;
            self.closed_after_io_error.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    /// Times the catalog was closed after an I/O error (and opened again at the next call).
    pub fn closed_after_io_errors(&self) -> u64 {
        self.closed_after_io_error.load(Ordering::Relaxed)
    }

    /// Checks the schema version and creates missing tables. A `fresh` catalog keeps the
    /// ledger from the start; an older one gets the checksums of its records here, and its
    /// ledger from the store ([`Self::adopt_segments`]).
    fn init(&self, fresh: bool) -> Result<(), CatalogError> {
        let p = &self.path;
        let tx = self.db()?.begin_write().map_err(|e| redb_err(p, e))?;
        {
            let mut meta = tx.open_table(META).map_err(|e| redb_err(p, e))?;
            let found = meta
                .get("schema_version")
                .map_err(|e| redb_err(p, e))?
                .map(|v| v.value().to_owned());
            match found {
                Some(v) if v != SCHEMA_VERSION => {
                    return Err(CatalogError::Schema {
                        path: p.clone(),
                        found: v,
                    });
                }
                Some(_) => {}
                None => {
                    meta.insert("schema_version", SCHEMA_VERSION)
                        .map_err(|e| redb_err(p, e))?;
                }
            }
            tx.open_table(POLICIES).map_err(|e| redb_err(p, e))?;
            tx.open_table(ALERTS).map_err(|e| redb_err(p, e))?;
            tx.open_table(OUTBOX).map_err(|e| redb_err(p, e))?;
            tx.open_table(SINKS).map_err(|e| redb_err(p, e))?;
            tx.open_table(SEGMENTS).map_err(|e| redb_err(p, e))?;
            tx.open_table(LATEST).map_err(|e| redb_err(p, e))?;
            let mut open = tx.open_table(OPEN_ALERTS).map_err(|e| redb_err(p, e))?;
            if meta
                .get(OPEN_ALERTS_KEPT)
                .map_err(|e| redb_err(p, e))?
                .is_none()
            {
                let alerts = tx.open_table(ALERTS).map_err(|e| redb_err(p, e))?;
                for entry in alerts.iter().map_err(|e| redb_err(p, e))? {
                    let (k, v) = entry.map_err(|e| redb_err(p, e))?;
                    if serde_json::from_slice::<Alert>(v.value())
                        .is_ok_and(|a| a.resolved_at.is_none())
                    {
                        open.insert(k.value(), v.value())
                            .map_err(|e| redb_err(p, e))?;
                    }
                }
                meta.insert(OPEN_ALERTS_KEPT, "1")
                    .map_err(|e| redb_err(p, e))?;
            }
            let mut by_opening = tx
                .open_table(ALERTS_BY_OPENING)
                .map_err(|e| redb_err(p, e))?;
            let alerts = tx.open_table(ALERTS).map_err(|e| redb_err(p, e))?;
            // Built when missing, and built again when it does not index exactly the alerts
            // there are (an older dictmon, which does not keep it, wrote or deleted alerts
            // since): compared by id, keys only, nothing decoded.
            let kept = meta
                .get(ALERTS_BY_OPENING_KEPT)
                .map_err(|e| redb_err(p, e))?
                .is_some();
            if !kept || !indexes_every_alert(&alerts, &by_opening, p)? {
                by_opening
                    .retain(|_, ()| false)
                    .map_err(|e| redb_err(p, e))?;
                for entry in alerts.iter().map_err(|e| redb_err(p, e))? {
                    let (_, v) = entry.map_err(|e| redb_err(p, e))?;
                    // An alert that does not decode is left out here and reported by verify
                    // (its checksum); every other alert is indexed.
                    if let Ok(a) = serde_json::from_slice::<Alert>(v.value()) {
                        by_opening
                            .insert(AlertCursor::of(&a).key(), ())
                            .map_err(|e| redb_err(p, e))?;
                    }
                }
                meta.insert(ALERTS_BY_OPENING_KEPT, "1")
                    .map_err(|e| redb_err(p, e))?;
            }
            drop((alerts, by_opening));
            let mut sums = tx.open_table(CHECKSUMS).map_err(|e| redb_err(p, e))?;
            if meta
                .get(CHECKSUMS_KEPT)
                .map_err(|e| redb_err(p, e))?
                .is_none()
            {
                let alerts = tx.open_table(ALERTS).map_err(|e| redb_err(p, e))?;
                for entry in alerts.iter().map_err(|e| redb_err(p, e))? {
                    let (k, v) = entry.map_err(|e| redb_err(p, e))?;
                    sums.insert(alert_key(k.value()).as_str(), crc(v.value()))
                        .map_err(|e| redb_err(p, e))?;
                }
                let outbox = tx.open_table(OUTBOX).map_err(|e| redb_err(p, e))?;
                for entry in outbox.iter().map_err(|e| redb_err(p, e))? {
                    let (k, v) = entry.map_err(|e| redb_err(p, e))?;
                    sums.insert(event_key(k.value()).as_str(), crc(v.value()))
                        .map_err(|e| redb_err(p, e))?;
                }
                meta.insert(CHECKSUMS_KEPT, "1")
                    .map_err(|e| redb_err(p, e))?;
            }
            if fresh {
                meta.insert(LEDGER, "1").map_err(|e| redb_err(p, e))?;
            }
        }
        tx.commit().map_err(|e| redb_err(p, e))
    }

    /// §10.1: the ledger, by month (`YYYY-MM`); none while it is not kept yet (a catalog
    /// written by a dictmon without it, until the store adopts its segments).
    pub fn ledger(&self) -> Result<Option<Vec<(String, SegmentRecord)>>, CatalogError> {
        self.heal(|| {
            let kept =
                !read_meta(&begin(&*self.db()?, &self.path)?, &self.path, LEDGER)?.is_empty();
            kept.then(|| read_ledger(&begin(&*self.db()?, &self.path)?, &self.path))
                .transpose()
        })
    }

    /// Adds `rows` to a segment's ledger record (created if absent), after the block holding
    /// them was written (and fsynced when `durable`: a lower bound may lag, never lead).
    pub fn add_segment_rows(
        &self,
        month: &str,
        rows: u64,
        file: Option<(u64, u64)>,
        durable: bool,
    ) -> Result<(), CatalogError> {
        self.heal(|| {
            self.update_segments(durable, |table| {
                let mut record = get_record(table, month, &self.path)?.unwrap_or_default();
                record.rows += rows;
                record.counted_at = Some(Utc::now());
                record.file = file.or(record.file);
                Ok(vec![(month.to_owned(), Some(record))])
            })
        })
    }

    /// Records the file now at a segment's path, after a compaction replaced it (non-durable:
    /// it only tells a copy from the original, §10.1).
    pub fn set_segment_file(&self, month: &str, file: (u64, u64)) -> Result<(), CatalogError> {
        self.heal(|| {
            self.update_segments(false, |table| {
                let record = get_record(table, month, &self.path)?.map(|r| SegmentRecord {
                    file: Some(file),
                    ..r
                });
                Ok(record
                    .map(|r| (month.to_owned(), Some(r)))
                    .into_iter()
                    .collect())
            })
        })
    }

    /// Takes `rows` off a segment's record, before a compaction that dropped that many
    /// duplicates replaces the file; durable.
    pub fn lower_segment_rows(&self, month: &str, rows: u64) -> Result<(), CatalogError> {
        self.heal(|| {
            self.update_segments(true, |table| {
                let mut record = get_record(table, month, &self.path)?.unwrap_or_default();
                record.rows = record.rows.saturating_sub(rows);
                Ok(vec![(month.to_owned(), Some(record))])
            })
        })
    }

    /// Marks segments as being deleted by retention (before the files go), or forgets them
    /// (after); durable.
    pub fn retire_segments(&self, months: &[String], forget: bool) -> Result<(), CatalogError> {
        self.heal(|| {
            self.update_segments(true, |table| {
                let mut out = Vec::new();
                for m in months {
                    let record = get_record(table, m, &self.path)?.map(|r| SegmentRecord {
                        retiring: true,
                        ..r
                    });
                    out.push((m.clone(), if forget { None } else { record }));
                }
                Ok(out)
            })
        })
    }

    /// Starts keeping the ledger with these records (segments the catalog did not know, or
    /// counted higher than they hold, counted as they are now), and records `findings` for
    /// `verify`; durable.
    pub fn adopt_segments(
        &self,
        records: &[(String, SegmentRecord)],
        findings: &[String],
    ) -> Result<(), CatalogError> {
        self.heal(|| {
            let p = &self.path;
            let tx = self.db()?.begin_write().map_err(|e| redb_err(p, e))?;
            {
                let mut table = tx.open_table(SEGMENTS).map_err(|e| redb_err(p, e))?;
                for (month, record) in records {
                    table
                        .insert(month.as_str(), json(record, p)?.as_slice())
                        .map_err(|e| redb_err(p, e))?;
                }
                let mut meta = tx.open_table(META).map_err(|e| redb_err(p, e))?;
                meta.insert(LEDGER, "1").map_err(|e| redb_err(p, e))?;
                if !findings.is_empty() {
                    // Unreadable findings stop the write: appending to an empty list would
                    // overwrite what verify has yet to report.
                    let mut kept: Vec<Finding> =
                        match meta.get(FINDINGS).map_err(|e| redb_err(p, e))? {
                            Some(v) => serde_json::from_str(v.value()).map_err(|error| {
                                CatalogError::Value {
                                    path: p.to_owned(),
                                    table: "meta",
                                    key: FINDINGS.to_owned(),
                                    error,
                                }
                            })?,
                            None => Vec::new(),
                        };
                    kept.extend(findings.iter().map(|text| Finding {
                        at: Utc::now(),
                        text: text.clone(),
                    }));
                    let text =
                        serde_json::to_string(&kept).map_err(|error| CatalogError::Encode {
                            path: p.to_owned(),
                            error,
                        })?;
                    meta.insert(FINDINGS, text.as_str())
                        .map_err(|e| redb_err(p, e))?;
                }
            }
            tx.commit().map_err(|e| redb_err(p, e))
        })
    }

    fn update_segments(
        &self,
        durable: bool,
        change: impl FnOnce(
            &redb::Table<'_, &'static str, &'static [u8]>,
        ) -> Result<Vec<(String, Option<SegmentRecord>)>, CatalogError>,
    ) -> Result<(), CatalogError> {
        let p = &self.path;
        let mut tx = self.db()?.begin_write().map_err(|e| redb_err(p, e))?;
        if !durable {
            // Only in this process until the next durable commit (the cycle's): a lower
            // bound that lags after a crash, which is safe (§10.1).
            let _ = tx.set_durability(redb::Durability::None);
        }
        {
            let mut table = tx.open_table(SEGMENTS).map_err(|e| redb_err(p, e))?;
            for (month, record) in change(&table)? {
                match record {
                    Some(r) => table.insert(month.as_str(), json(&r, p)?.as_slice()),
                    None => table.remove(month.as_str()).map(|_| None),
                }
                .map_err(|e| redb_err(p, e))?;
            }
        }
        tx.commit().map_err(|e| redb_err(p, e))
    }

    /// Writes one cycle's policies, alerts and events atomically.
    pub fn apply(&self, update: &CatalogUpdate) -> Result<(), CatalogError> {
        self.heal(|| {
            let p = &self.path;
            let tx = self.db()?.begin_write().map_err(|e| redb_err(p, e))?;
            {
                let mut policies = tx.open_table(POLICIES).map_err(|e| redb_err(p, e))?;
                for (policy, seen) in &update.policies {
                    let name = policy.name.as_str();
                    let kept = match policies.get(name).map_err(|e| redb_err(p, e))? {
                        Some(v) => serde_json::from_slice::<PolicyRecord>(v.value()).ok(),
                        None => None,
                    };
                    let record = PolicyRecord {
                        policy: policy.clone(),
                        first_seen: kept.as_ref().map_or(*seen, |r| r.first_seen.min(*seen)),
                        last_seen: *seen,
                        // A sighting from before its departure (an import of older history)
                        // does not bring it back.
                        left_at: kept.and_then(|r| r.left_at).filter(|left| *left > *seen),
                    };
                    policies
                        .insert(name, json(&record, p)?.as_slice())
                        .map_err(|e| redb_err(p, e))?;
                }
                let mut latest = tx.open_table(LATEST).map_err(|e| redb_err(p, e))?;
                for record in &update.latest {
                    let name = record.policy.as_str();
                    let older = latest
                        .get(name)
                        .map_err(|e| redb_err(p, e))?
                        .and_then(|v| serde_json::from_slice::<StateRecord>(v.value()).ok())
                        .is_none_or(|kept| kept.sample.at <= record.sample.at);
                    if older {
                        latest
                            .insert(name, json(record, p)?.as_slice())
                            .map_err(|e| redb_err(p, e))?;
                    }
                }
                mark_left(&mut policies, &mut latest, &update.left, p)?;
                let mut alerts = tx.open_table(ALERTS).map_err(|e| redb_err(p, e))?;
                let mut open = tx.open_table(OPEN_ALERTS).map_err(|e| redb_err(p, e))?;
                let mut by_opening = tx
                    .open_table(ALERTS_BY_OPENING)
                    .map_err(|e| redb_err(p, e))?;
                let mut sums = tx.open_table(CHECKSUMS).map_err(|e| redb_err(p, e))?;
                for alert in &update.alerts {
                    let value = json(alert, p)?;
                    alerts
                        .insert(alert.id.as_u128(), value.as_slice())
                        .map_err(|e| redb_err(p, e))?;
                    // An alert's opening never changes: inserting it again changes nothing.
                    by_opening
                        .insert(AlertCursor::of(alert).key(), ())
                        .map_err(|e| redb_err(p, e))?;
                    if alert.resolved_at.is_none() {
                        open.insert(alert.id.as_u128(), value.as_slice())
                            .map_err(|e| redb_err(p, e))?;
                    } else {
                        open.remove(alert.id.as_u128())
                            .map_err(|e| redb_err(p, e))?;
                    }
                    sums.insert(alert_key(alert.id.as_u128()).as_str(), crc(&value))
                        .map_err(|e| redb_err(p, e))?;
                }
                if !update.events.is_empty() {
                    let mut outbox = tx.open_table(OUTBOX).map_err(|e| redb_err(p, e))?;
                    let mut meta = tx.open_table(META).map_err(|e| redb_err(p, e))?;
                    let mut next = next_seq(&outbox, &meta, p)?;
                    for event in &update.events {
                        let value = json(event, p)?;
                        outbox
                            .insert(next, value.as_slice())
                            .map_err(|e| redb_err(p, e))?;
                        sums.insert(event_key(next).as_str(), crc(&value))
                            .map_err(|e| redb_err(p, e))?;
                        next += 1;
                    }
                    meta.insert(NEXT_SEQ, next.to_string().as_str())
                        .map_err(|e| redb_err(p, e))?;
                }
            }
            tx.commit().map_err(|e| redb_err(p, e))
        })
    }

    /// Deletes outbox events older than `cutoff` (retention, §9), delivered or not. Returns
    /// how many.
    pub fn delete_events_before(&self, cutoff: DateTime<Utc>) -> Result<usize, CatalogError> {
        self.heal(|| {
            let p = &self.path;
            let old: Vec<u64> = read_outbox(&begin(&*self.db()?, p)?, p)?
                .into_iter()
                .filter(|(_, e)| e.timestamp < cutoff)
                .map(|(seq, _)| seq)
                .collect();
            if old.is_empty() {
                return Ok(0);
            }
            let tx = self.db()?.begin_write().map_err(|e| redb_err(p, e))?;
            {
                let mut outbox = tx.open_table(OUTBOX).map_err(|e| redb_err(p, e))?;
                let mut meta = tx.open_table(META).map_err(|e| redb_err(p, e))?;
                // Keep the sequence counter past the events about to go.
                let next = next_seq(&outbox, &meta, p)?;
                meta.insert(NEXT_SEQ, next.to_string().as_str())
                    .map_err(|e| redb_err(p, e))?;
                let mut sums = tx.open_table(CHECKSUMS).map_err(|e| redb_err(p, e))?;
                for seq in &old {
                    outbox.remove(seq).map_err(|e| redb_err(p, e))?;
                    sums.remove(event_key(*seq).as_str())
                        .map_err(|e| redb_err(p, e))?;
                }
            }
            tx.commit().map_err(|e| redb_err(p, e))?;
            Ok(old.len())
        })
    }

    /// Up to `limit` outbox events from sequence `from` on, in order.
    pub fn events_from(
        &self,
        from: u64,
        limit: usize,
    ) -> Result<Vec<(u64, AlertEvent)>, CatalogError> {
        self.heal(|| {
            let p = &self.path;
            let tx = self.db()?.begin_read().map_err(|e| redb_err(p, e))?;
            let table = tx.open_table(OUTBOX).map_err(|e| redb_err(p, e))?;
            let mut out = Vec::new();
            for entry in table.range(from..).map_err(|e| redb_err(p, e))?.take(limit) {
                let (k, v) = entry.map_err(|e| redb_err(p, e))?;
                let seq = k.value();
                let event =
                    serde_json::from_slice(v.value()).map_err(|error| CatalogError::Value {
                        path: p.clone(),
                        table: "outbox",
                        key: seq.to_string(),
                        error,
                    })?;
                out.push((seq, event));
            }
            Ok(out)
        })
    }

    /// How many outbox events have a sequence from `from` on.
    pub fn events_count_from(&self, from: u64) -> Result<u64, CatalogError> {
        self.heal(|| {
            let p = &self.path;
            let tx = self.db()?.begin_read().map_err(|e| redb_err(p, e))?;
            let table = tx.open_table(OUTBOX).map_err(|e| redb_err(p, e))?;
            let range = table.range(from..).map_err(|e| redb_err(p, e))?;
            Ok(range.count() as u64)
        })
    }

    /// The sequence number the next event will get: one past every event ever written.
    pub fn next_event_seq(&self) -> Result<u64, CatalogError> {
        self.heal(|| {
            let p = &self.path;
            let tx = self.db()?.begin_read().map_err(|e| redb_err(p, e))?;
            let outbox = tx.open_table(OUTBOX).map_err(|e| redb_err(p, e))?;
            let meta = tx.open_table(META).map_err(|e| redb_err(p, e))?;
            next_seq(&outbox, &meta, p)
        })
    }

    /// The outbox sequence of the event `event_id`, if it is still retained.
    pub fn event_seq(&self, event_id: uuid::Uuid) -> Result<Option<u64>, CatalogError> {
        self.heal(|| {
            Ok(read_outbox(&begin(&*self.db()?, &self.path)?, &self.path)?
                .into_iter()
                .find(|(_, e)| e.event_id == event_id)
                .map(|(seq, _)| seq))
        })
    }

    /// Every sink's delivery progress, by sink name.
    pub fn sinks(&self) -> Result<Vec<(String, SinkProgress)>, CatalogError> {
        self.heal(|| read_sinks(&begin(&*self.db()?, &self.path)?, &self.path))
    }

    /// Records a sink's delivery progress.
    pub fn put_sink(&self, name: &str, progress: &SinkProgress) -> Result<(), CatalogError> {
        self.heal(|| {
            let p = &self.path;
            let tx = self.db()?.begin_write().map_err(|e| redb_err(p, e))?;
            {
                let mut sinks = tx.open_table(SINKS).map_err(|e| redb_err(p, e))?;
                sinks
                    .insert(name, json(progress, p)?.as_slice())
                    .map_err(|e| redb_err(p, e))?;
            }
            tx.commit().map_err(|e| redb_err(p, e))
        })
    }

    /// Deletes resolved alerts resolved before `cutoff` (retention, §9). Returns how many.
    pub fn delete_alerts_resolved_before(
        &self,
        cutoff: DateTime<Utc>,
    ) -> Result<usize, CatalogError> {
        self.heal(|| {
            let p = &self.path;
            let old: Vec<AlertCursor> = read_alerts(&begin(&*self.db()?, p)?, p)?
                .iter()
                .filter(|a| a.resolved_at.is_some_and(|t| t < cutoff))
                .map(AlertCursor::of)
                .collect();
            let tx = self.db()?.begin_write().map_err(|e| redb_err(p, e))?;
            {
                let mut alerts = tx.open_table(ALERTS).map_err(|e| redb_err(p, e))?;
                let mut by_opening = tx
                    .open_table(ALERTS_BY_OPENING)
                    .map_err(|e| redb_err(p, e))?;
                let mut sums = tx.open_table(CHECKSUMS).map_err(|e| redb_err(p, e))?;
                for cursor in &old {
                    alerts.remove(cursor.id).map_err(|e| redb_err(p, e))?;
                    by_opening
                        .remove(cursor.key())
                        .map_err(|e| redb_err(p, e))?;
                    sums.remove(alert_key(cursor.id).as_str())
                        .map_err(|e| redb_err(p, e))?;
                }
            }
            tx.commit().map_err(|e| redb_err(p, e))?;
            Ok(old.len())
        })
    }

    /// Every alert, oldest first.
    pub fn alerts(&self) -> Result<Vec<Alert>, CatalogError> {
        self.heal(|| read_alerts(&begin(&*self.db()?, &self.path)?, &self.path))
    }

    /// Up to `limit` alerts of the history in the order they opened, from just after `after`
    /// (from the first without it), and the cursor of the next page if there is one. Reads
    /// only the page's alerts (through `alerts_by_opening`, §10).
    pub fn alert_page(
        &self,
        after: Option<AlertCursor>,
        limit: usize,
    ) -> Result<AlertPage, CatalogError> {
        self.heal(|| read_alert_page(&begin(&*self.db()?, &self.path)?, &self.path, after, limit))
    }

    /// The open alerts, oldest first (the writer keeps them apart from the history, §10).
    pub fn open_alerts(&self) -> Result<Vec<Alert>, CatalogError> {
        self.heal(|| read_open_alerts(&begin(&*self.db()?, &self.path)?, &self.path))
    }

    /// Every policy as last seen.
    pub fn policies(&self) -> Result<Vec<PolicyRecord>, CatalogError> {
        self.heal(|| read_policies(&begin(&*self.db()?, &self.path)?, &self.path))
    }

    /// The outbox, in order.
    pub fn outbox(&self) -> Result<Vec<(u64, AlertEvent)>, CatalogError> {
        self.heal(|| read_outbox(&begin(&*self.db()?, &self.path)?, &self.path))
    }
}

/// Runs `read` on a catalog that may be damaged: a panic inside redb becomes
/// [`CatalogError::Damaged`], whose message carries the panic's, instead of a crash and a
/// backtrace on the terminal. Every catalog call of the writer and the readers goes through
/// it. The process's panic hook is wrapped once, to stay silent for a panic on a thread inside
/// this call (the caller reports it) and to report every other panic as before, so this is
/// safe with any number of threads.
fn guarded<T>(
    path: &str,
    read: impl FnOnce() -> Result<T, CatalogError>,
) -> Result<T, CatalogError> {
    thread_local! {
        static IN_CATALOG: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !IN_CATALOG.with(std::cell::Cell::get) {
                previous(info);
            }
        }));
    });
    let outer = IN_CATALOG.with(|c| c.replace(true));
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(read));
    IN_CATALOG.with(|c| c.set(outer));
    outcome.unwrap_or_else(|panic| {
        Err(CatalogError::Damaged {
            path: path.to_owned(),
            detail: panic_text(&*panic),
        })
    })
}

/// What a caught panic said.
fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("redb panicked")
        .to_owned()
}

/// What `status` reads of the catalog (see [`CatalogReader::status`]).
#[derive(Debug, Default)]
pub struct StatusView {
    /// Each policy's newest snapshot.
    pub latest: Vec<StateRecord>,
    /// The names of the policies seen and not gone from DICT's listing since.
    pub policy_names: Vec<String>,
    /// The open alerts, if the catalog keeps them apart.
    pub open_alerts: Option<Vec<Alert>>,
}

impl CatalogReader {
    /// Opens the catalog read-only; a data directory without one reads as empty. A catalog
    /// that needs redb's repair (an unclean shutdown, a copy of a live file) is read from a
    /// repaired copy in memory (§10).
    pub fn open(path: &Path) -> Result<Self, CatalogError> {
        let p = path.display().to_string();
        if !path.exists() {
            return Ok(Self { db: None, path: p });
        }
        guarded(&p, || {
            let db = match builder().open_read_only(path) {
                Ok(db) => ReaderDb::File(db),
                Err(redb::DatabaseError::RepairAborted) => ReaderDb::Repaired(repaired(path, &p)?),
                Err(e) => return Err(redb_err(&p, e)),
            };
            let reader = Self {
                db: Some(db),
                path: p.clone(),
            };
            reader.check_schema()?;
            Ok(reader)
        })
    }

    /// Whether the file needed a repair, done on a copy in memory (see [`Self::open`]).
    pub fn repaired(&self) -> bool {
        matches!(self.db, Some(ReaderDb::Repaired(_)))
    }

    fn check_schema(&self) -> Result<(), CatalogError> {
        let version = self.read(read_schema_version)?;
        match version.first() {
            Some(v) if v != SCHEMA_VERSION => Err(CatalogError::Schema {
                path: self.path.clone(),
                found: v.clone(),
            }),
            _ => Ok(()),
        }
    }

    /// Runs `read` in one read transaction; without a catalog file, gives the default.
    fn read<T: Default>(
        &self,
        read: impl FnOnce(&ReadTransaction, &str) -> Result<T, CatalogError>,
    ) -> Result<T, CatalogError> {
        let p = &self.path;
        match &self.db {
            Some(ReaderDb::File(db)) => guarded(p, || read(&begin(db, p)?, p)),
            Some(ReaderDb::Repaired(db)) => guarded(p, || read(&begin(db, p)?, p)),
            None => Ok(T::default()),
        }
    }

    /// Every alert, oldest first.
    pub fn alerts(&self) -> Result<Vec<Alert>, CatalogError> {
        self.read(read_alerts)
    }

    /// Every policy as last seen.
    pub fn policies(&self) -> Result<Vec<PolicyRecord>, CatalogError> {
        self.read(read_policies)
    }

    /// A page of the alert history: see [`Catalog::alert_page`].
    pub fn alert_page(
        &self,
        after: Option<AlertCursor>,
        limit: usize,
    ) -> Result<AlertPage, CatalogError> {
        self.read(|tx, p| read_alert_page(tx, p, after, limit))
    }

    /// The outbox, in order.
    pub fn outbox(&self) -> Result<Vec<(u64, AlertEvent)>, CatalogError> {
        self.read(read_outbox)
    }

    /// Every sink's delivery progress, by sink name.
    pub fn sinks(&self) -> Result<Vec<(String, SinkProgress)>, CatalogError> {
        self.read(read_sinks)
    }

    /// Whether there is a catalog file at all.
    pub fn exists(&self) -> bool {
        self.db.is_some()
    }

    /// §10.1: the ledger, by month; none while it is not kept (see [`Catalog::ledger`]).
    pub fn ledger(&self) -> Result<Option<Vec<(String, SegmentRecord)>>, CatalogError> {
        self.read(|tx, p| {
            let kept = !read_meta(tx, p, LEDGER)?.is_empty();
            kept.then(|| read_ledger(tx, p)).transpose()
        })
    }

    /// The names of the policies seen and not gone from DICT's listing since (`left_at`).
    pub fn policy_names(&self) -> Result<Vec<String>, CatalogError> {
        self.read(read_policy_names)
    }

    /// Each policy's newest snapshot, as the writers recorded it (§10). A catalog written
    /// before the table existed has none; `status` then reads the segments.
    pub fn latest(&self) -> Result<Vec<StateRecord>, CatalogError> {
        self.read(read_latest)
    }

    /// The open alerts, oldest first; none when the catalog does not keep them apart yet (an
    /// older catalog no writer has opened since): read [`Self::alerts`] then.
    pub fn open_alerts(&self) -> Result<Option<Vec<Alert>>, CatalogError> {
        self.read(read_open_alerts_if_kept)
    }

    /// What `status` shows, read in one transaction: [`Self::latest`], [`Self::policy_names`]
    /// and [`Self::open_alerts`].
    pub fn status(&self) -> Result<StatusView, CatalogError> {
        self.read(|tx, p| {
            Ok(StatusView {
                latest: read_latest(tx, p)?,
                policy_names: read_policy_names(tx, p)?,
                open_alerts: read_open_alerts_if_kept(tx, p)?,
            })
        })
    }

    /// What writers found and recorded for `verify` (§10.1).
    pub fn findings(&self) -> Result<Vec<Finding>, CatalogError> {
        self.read(read_findings)
    }

    /// §10.2: every `alerts` or `outbox` record whose value no longer matches the checksum
    /// written with it, has none, or whose checksum outlived it.
    pub fn checksum_problems(&self) -> Result<Vec<String>, CatalogError> {
        self.read(|tx, p| {
            let mut problems = read_checksum_problems(tx, p)?;
            problems.extend(read_open_alert_problems(tx, p)?);
            problems.extend(read_alert_index_problems(tx, p)?);
            Ok(problems)
        })
    }
}

fn alert_key(id: u128) -> String {
    format!("alerts/{}", uuid::Uuid::from_u128(id))
}

fn event_key(seq: u64) -> String {
    format!("outbox/{seq}")
}

fn crc(bytes: &[u8]) -> u32 {
    crc32c::crc32c(bytes)
}

fn get_record(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    month: &str,
    p: &str,
) -> Result<Option<SegmentRecord>, CatalogError> {
    // A record that does not parse counts as none: the bound only ever errs low.
    Ok(table
        .get(month)
        .map_err(|e| redb_err(p, e))?
        .and_then(|v| serde_json::from_slice(v.value()).ok()))
}

/// A `meta` value, as a list of none or one.
fn read_meta(tx: &ReadTransaction, p: &str, key: &str) -> Result<Vec<String>, CatalogError> {
    let meta = match tx.open_table(META) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
        Err(e) => return Err(redb_err(p, e)),
    };
    Ok(meta
        .get(key)
        .map_err(|e| redb_err(p, e))?
        .map(|v| v.value().to_owned())
        .into_iter()
        .collect())
}

fn read_ledger(
    tx: &ReadTransaction,
    p: &str,
) -> Result<Vec<(String, SegmentRecord)>, CatalogError> {
    read_all(tx, p, SEGMENTS, "segments", |m: &str, r| (m.to_owned(), r))
}

fn read_findings(tx: &ReadTransaction, p: &str) -> Result<Vec<Finding>, CatalogError> {
    let Some(text) = read_meta(tx, p, FINDINGS)?.pop() else {
        return Ok(Vec::new());
    };
    serde_json::from_str(&text).map_err(|error| CatalogError::Value {
        path: p.to_owned(),
        table: "meta",
        key: FINDINGS.to_owned(),
        error,
    })
}

fn read_checksum_problems(tx: &ReadTransaction, p: &str) -> Result<Vec<String>, CatalogError> {
    if read_meta(tx, p, CHECKSUMS_KEPT)?.is_empty() {
        return Ok(Vec::new());
    }
    let mut sums: BTreeMap<String, u32> = BTreeMap::new();
    let table = tx.open_table(CHECKSUMS).map_err(|e| redb_err(p, e))?;
    for entry in table.iter().map_err(|e| redb_err(p, e))? {
        let (k, v) = entry.map_err(|e| redb_err(p, e))?;
        sums.insert(k.value().to_owned(), v.value());
    }
    let mut problems = Vec::new();
    let mut check = |key: String, value: &[u8], what: &str| match sums.remove(&key) {
        Some(sum) if sum == crc(value) => {}
        Some(_) => problems.push(format!(
            "{what}: changed after dictmon wrote it (its checksum does not match)"
        )),
        None => problems.push(format!("{what}: has no checksum (not written by dictmon)")),
    };
    let alerts = tx.open_table(ALERTS).map_err(|e| redb_err(p, e))?;
    for entry in alerts.iter().map_err(|e| redb_err(p, e))? {
        let (k, v) = entry.map_err(|e| redb_err(p, e))?;
        let id = uuid::Uuid::from_u128(k.value());
        check(alert_key(k.value()), v.value(), &format!("alert {id}"));
    }
    let outbox = tx.open_table(OUTBOX).map_err(|e| redb_err(p, e))?;
    for entry in outbox.iter().map_err(|e| redb_err(p, e))? {
        let (k, v) = entry.map_err(|e| redb_err(p, e))?;
        check(
            event_key(k.value()),
            v.value(),
            &format!("outbox event {}", k.value()),
        );
    }
    problems.extend(
        sums.into_keys()
            .map(|key| format!("{key}: record deleted (its checksum remains)")),
    );
    Ok(problems)
}

/// §10: every open alert of `alerts` is in `open_alerts`, byte for byte, and nothing else is.
fn read_open_alert_problems(tx: &ReadTransaction, p: &str) -> Result<Vec<String>, CatalogError> {
    if read_meta(tx, p, OPEN_ALERTS_KEPT)?.is_empty() {
        return Ok(Vec::new());
    }
    let mut open: BTreeMap<u128, Vec<u8>> = BTreeMap::new();
    let table = tx.open_table(OPEN_ALERTS).map_err(|e| redb_err(p, e))?;
    for entry in table.iter().map_err(|e| redb_err(p, e))? {
        let (k, v) = entry.map_err(|e| redb_err(p, e))?;
        open.insert(k.value(), v.value().to_vec());
    }
    let mut problems = Vec::new();
    let alerts = tx.open_table(ALERTS).map_err(|e| redb_err(p, e))?;
    for entry in alerts.iter().map_err(|e| redb_err(p, e))? {
        let (k, v) = entry.map_err(|e| redb_err(p, e))?;
        let id = uuid::Uuid::from_u128(k.value());
        let is_open =
            serde_json::from_slice::<Alert>(v.value()).is_ok_and(|a| a.resolved_at.is_none());
        let problem = match (open.remove(&k.value()), is_open) {
            (Some(o), true) if o == v.value() => continue,
            (None, false) => continue,
            (Some(_), true) => "its copy in open_alerts differs from the alert",
            (Some(_), false) => "resolved, yet listed in open_alerts",
            (None, true) => "open, yet not in open_alerts",
        };
        problems.push(format!("alert {id}: {problem}"));
    }
    problems.extend(open.into_keys().map(|id| {
        format!(
            "open_alerts: alert {} does not exist",
            uuid::Uuid::from_u128(id)
        )
    }));
    Ok(problems)
}

/// §10: `alerts_by_opening` holds every alert of `alerts` under its opening, and nothing else.
fn read_alert_index_problems(tx: &ReadTransaction, p: &str) -> Result<Vec<String>, CatalogError> {
    if read_meta(tx, p, ALERTS_BY_OPENING_KEPT)?.is_empty() {
        return Ok(Vec::new());
    }
    let mut indexed: BTreeSet<(i64, u128)> = BTreeSet::new();
    let table = tx
        .open_table(ALERTS_BY_OPENING)
        .map_err(|e| redb_err(p, e))?;
    for entry in table.iter().map_err(|e| redb_err(p, e))? {
        let (k, _) = entry.map_err(|e| redb_err(p, e))?;
        indexed.insert(k.value());
    }
    let mut problems = Vec::new();
    let alerts = tx.open_table(ALERTS).map_err(|e| redb_err(p, e))?;
    for entry in alerts.iter().map_err(|e| redb_err(p, e))? {
        let (k, v) = entry.map_err(|e| redb_err(p, e))?;
        // An alert that does not decode is the checksums' to report.
        if let Ok(a) = serde_json::from_slice::<Alert>(v.value())
            && !indexed.remove(&AlertCursor::of(&a).key())
        {
            problems.push(format!(
                "alert {}: missing from alerts_by_opening",
                uuid::Uuid::from_u128(k.value())
            ));
        }
    }
    problems.extend(indexed.into_iter().map(|(_, id)| {
        format!(
            "alerts_by_opening: alert {} does not exist (or opened at another time)",
            uuid::Uuid::from_u128(id)
        )
    }));
    Ok(problems)
}

/// Whether `index` holds an entry for each alert of `alerts` and for nothing else (by id).
fn indexes_every_alert(
    alerts: &impl ReadableTable<u128, &'static [u8]>,
    index: &impl ReadableTable<(i64, u128), ()>,
    p: &str,
) -> Result<bool, CatalogError> {
    let mut ids = BTreeSet::new();
    for entry in alerts.iter().map_err(|e| redb_err(p, e))? {
        ids.insert(entry.map_err(|e| redb_err(p, e))?.0.value());
    }
    for entry in index.iter().map_err(|e| redb_err(p, e))? {
        let (_, id) = entry.map_err(|e| redb_err(p, e))?.0.value();
        if !ids.remove(&id) {
            return Ok(false);
        }
    }
    Ok(ids.is_empty())
}

/// Where a page of the alert history starts or ends: an alert's opening time and id, the order
/// of the history (`alerts_by_opening`). Written `NANOS-UUID` (ns since the epoch, the id's 32
/// hex digits) in the HTTP API's cursors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct AlertCursor {
    /// `opened_at`, ns since the epoch.
    opened_ns: i64,
    /// The alert's id.
    id: u128,
}

impl AlertCursor {
    /// The position of `a` in the history.
    pub fn of(a: &Alert) -> Self {
        let opened_ns = a.opened_at.timestamp_nanos_opt().unwrap_or_else(|| {
            // Outside 1677–2262: first or last of the history, as its time says.
            if a.opened_at.timestamp() < 0 {
                i64::MIN
            } else {
                i64::MAX
            }
        });
        Self {
            opened_ns,
            id: a.id.as_u128(),
        }
    }

    fn key(self) -> (i64, u128) {
        (self.opened_ns, self.id)
    }
}

impl std::fmt::Display for AlertCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{:032x}", self.opened_ns, self.id)
    }
}

impl std::str::FromStr for AlertCursor {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "{s:?} is not a cursor of /api/v1/alerts (NANOS-ID, as its Link header gives it)"
            )
        };
        let (nanos, id) = s.rsplit_once('-').ok_or_else(bad)?;
        if id.len() != 32 {
            return Err(bad());
        }
        Ok(Self {
            opened_ns: nanos.parse().map_err(|_| bad())?,
            id: u128::from_str_radix(id, 16).map_err(|_| bad())?,
        })
    }
}

/// A page of the alert history ([`Catalog::alert_page`]).
#[derive(Debug, Default)]
pub struct AlertPage {
    /// In the order they opened.
    pub alerts: Vec<Alert>,
    /// Where the next page starts, if any alert follows.
    pub next: Option<AlertCursor>,
}

fn read_alert_page(
    tx: &ReadTransaction,
    p: &str,
    after: Option<AlertCursor>,
    limit: usize,
) -> Result<AlertPage, CatalogError> {
    let mut page = AlertPage::default();
    if limit == 0 {
        return Ok(page);
    }
    if read_meta(tx, p, ALERTS_BY_OPENING_KEPT)?.is_empty() {
        // A catalog no writer has opened since the index exists: the whole history, sorted.
        let mut alerts: Vec<Alert> = read_alerts(tx, p)?
            .into_iter()
            .filter(|a| after.is_none_or(|c| AlertCursor::of(a) > c))
            .take(limit + 1)
            .collect();
        if alerts.len() > limit {
            alerts.truncate(limit);
            page.next = alerts.last().map(AlertCursor::of);
        }
        page.alerts = alerts;
        return Ok(page);
    }
    let index = tx
        .open_table(ALERTS_BY_OPENING)
        .map_err(|e| redb_err(p, e))?;
    let alerts = tx.open_table(ALERTS).map_err(|e| redb_err(p, e))?;
    let range = match after {
        Some(c) => index.range((Bound::Excluded(c.key()), Bound::Unbounded)),
        None => index.range::<(i64, u128)>(..),
    }
    .map_err(|e| redb_err(p, e))?;
    for entry in range {
        let (k, _) = entry.map_err(|e| redb_err(p, e))?;
        let key = k.value();
        let Some(v) = alerts.get(key.1).map_err(|e| redb_err(p, e))? else {
            // An entry for no alert: verify reports it; the page goes on.
            continue;
        };
        let alert: Alert =
            serde_json::from_slice(v.value()).map_err(|error| CatalogError::Value {
                path: p.to_owned(),
                table: "alerts",
                key: uuid::Uuid::from_u128(key.1).to_string(),
                error,
            })?;
        // An entry at another time than its alert's opening (verify reports it) would show
        // the alert twice: only the entry at its own time counts.
        if AlertCursor::of(&alert).key() != key {
            continue;
        }
        if page.alerts.len() == limit {
            // Another alert follows the full page: there is a next one.
            page.next = page.alerts.last().map(AlertCursor::of);
            break;
        }
        page.alerts.push(alert);
    }
    Ok(page)
}

/// One past the highest sequence ever used: the larger of the counter in `meta` and the last
/// event's sequence + 1 (catalogs written before the counter existed have only the latter).
fn next_seq(
    outbox: &impl ReadableTable<u64, &'static [u8]>,
    meta: &impl ReadableTable<&'static str, &'static str>,
    p: &str,
) -> Result<u64, CatalogError> {
    let after_last = outbox
        .last()
        .map_err(|e| redb_err(p, e))?
        .map_or(0, |(k, _)| k.value() + 1);
    let counted = meta
        .get(NEXT_SEQ)
        .map_err(|e| redb_err(p, e))?
        .and_then(|v| v.value().parse::<u64>().ok())
        .unwrap_or(0);
    Ok(after_last.max(counted))
}

/// A read transaction: one consistent view for the reads given it.
fn begin(db: &impl ReadableDatabase, p: &str) -> Result<ReadTransaction, CatalogError> {
    db.begin_read().map_err(|e| redb_err(p, e))
}

/// A record's value: its JSON. An error (none of our types can give one today) fails the
/// write transaction rather than store an empty value.
fn json<T: Serialize>(v: &T, p: &str) -> Result<Vec<u8>, CatalogError> {
    serde_json::to_vec(v).map_err(|error| CatalogError::Encode {
        path: p.to_owned(),
        error,
    })
}

/// Every row of a table, values decoded as JSON of `T` and mapped with their key. A table not
/// created yet reads as empty.
fn read_all<K, T, R>(
    tx: &ReadTransaction,
    p: &str,
    def: TableDefinition<K, &[u8]>,
    name: &'static str,
    mut map: impl FnMut(K::SelfType<'_>, T) -> R,
) -> Result<Vec<R>, CatalogError>
where
    K: redb::Key + 'static,
    for<'a> K::SelfType<'a>: std::fmt::Debug,
    T: for<'de> Deserialize<'de>,
{
    let table = match tx.open_table(def) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
        Err(e) => return Err(redb_err(p, e)),
    };
    let mut out = Vec::new();
    for entry in table.iter().map_err(|e| redb_err(p, e))? {
        let (k, v) = entry.map_err(|e| redb_err(p, e))?;
        let key = k.value();
        let value = serde_json::from_slice(v.value()).map_err(|error| CatalogError::Value {
            path: p.to_owned(),
            table: name,
            key: format!("{key:?}"),
            error,
        })?;
        out.push(map(key, value));
    }
    Ok(out)
}

/// The schema version in `meta`, if any (none: a catalog without `meta`).
fn read_schema_version(tx: &ReadTransaction, p: &str) -> Result<Vec<String>, CatalogError> {
    let meta = match tx.open_table(META) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
        Err(e) => return Err(redb_err(p, e)),
    };
    Ok(meta
        .get("schema_version")
        .map_err(|e| redb_err(p, e))?
        .map(|v| v.value().to_owned())
        .into_iter()
        .collect())
}

/// §10: a catalog that needs repair, copied into memory and repaired there.
fn repaired(path: &Path, p: &str) -> Result<Database, CatalogError> {
    use redb::StorageBackend;
    let bytes =
        std::fs::read(path).map_err(|e| redb_err(p, redb::DatabaseError::Storage(e.into())))?;
    let memory = redb::backends::InMemoryBackend::new();
    memory
        .set_len(bytes.len() as u64)
        .and_then(|()| memory.write(0, &bytes))
        .map_err(|e| redb_err(p, redb::DatabaseError::Storage(e.into())))?;
    Builder::new()
        .create_with_backend(memory)
        .map_err(|e| redb_err(p, e))
}

fn read_alerts(tx: &ReadTransaction, p: &str) -> Result<Vec<Alert>, CatalogError> {
    let mut alerts = read_all(tx, p, ALERTS, "alerts", |_, a: Alert| a)?;
    alerts.sort_by(|a, b| a.opened_at.cmp(&b.opened_at).then(a.id.cmp(&b.id)));
    Ok(alerts)
}

fn read_open_alerts(tx: &ReadTransaction, p: &str) -> Result<Vec<Alert>, CatalogError> {
    let mut alerts = read_all(tx, p, OPEN_ALERTS, "open_alerts", |_, a: Alert| a)?;
    alerts.sort_by(|a, b| a.opened_at.cmp(&b.opened_at).then(a.id.cmp(&b.id)));
    Ok(alerts)
}

fn read_open_alerts_if_kept(
    tx: &ReadTransaction,
    p: &str,
) -> Result<Option<Vec<Alert>>, CatalogError> {
    let kept = !read_meta(tx, p, OPEN_ALERTS_KEPT)?.is_empty();
    kept.then(|| read_open_alerts(tx, p)).transpose()
}

fn read_latest(tx: &ReadTransaction, p: &str) -> Result<Vec<StateRecord>, CatalogError> {
    read_all(tx, p, LATEST, "latest", |_, r| r)
}

/// Marks each policy of `left` as having left DICT's listing at its time and deletes its
/// `latest` entry — unless it was seen since (a later sighting of the same update, or of an
/// update written in between).
fn mark_left(
    policies: &mut redb::Table<&str, &[u8]>,
    latest: &mut redb::Table<&str, &[u8]>,
    left: &[(PolicyName, DateTime<Utc>)],
    p: &str,
) -> Result<(), CatalogError> {
    for (policy, at) in left {
        let name = policy.as_str();
        let record = policies
            .get(name)
            .map_err(|e| redb_err(p, e))?
            .and_then(|v| serde_json::from_slice::<PolicyRecord>(v.value()).ok());
        let Some(mut record) = record.filter(|r| r.last_seen < *at) else {
            continue;
        };
        record.left_at = Some(*at);
        policies
            .insert(name, json(&record, p)?.as_slice())
            .map_err(|e| redb_err(p, e))?;
        latest.remove(name).map_err(|e| redb_err(p, e))?;
    }
    Ok(())
}

/// The policies listed now: those of `policies` that have not left DICT's listing.
fn read_policy_names(tx: &ReadTransaction, p: &str) -> Result<Vec<String>, CatalogError> {
    /// The one field this read needs of a `PolicyRecord`.
    #[derive(Deserialize)]
    struct Listed {
        #[serde(default)]
        left_at: Option<DateTime<Utc>>,
    }
    let table = match tx.open_table(POLICIES) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
        Err(e) => return Err(redb_err(p, e)),
    };
    let mut names = Vec::new();
    for entry in table.iter().map_err(|e| redb_err(p, e))? {
        let (k, v) = entry.map_err(|e| redb_err(p, e))?;
        // A record that does not decode is `verify`'s to report; here it counts as listed.
        let left = serde_json::from_slice::<Listed>(v.value()).is_ok_and(|r| r.left_at.is_some());
        if !left {
            names.push(k.value().to_owned());
        }
    }
    Ok(names)
}

fn read_policies(tx: &ReadTransaction, p: &str) -> Result<Vec<PolicyRecord>, CatalogError> {
    read_all(tx, p, POLICIES, "policies", |_, r| r)
}

fn read_outbox(tx: &ReadTransaction, p: &str) -> Result<Vec<(u64, AlertEvent)>, CatalogError> {
    read_all(tx, p, OUTBOX, "outbox", |seq, e| (seq, e))
}

fn read_sinks(tx: &ReadTransaction, p: &str) -> Result<Vec<(String, SinkProgress)>, CatalogError> {
    read_all(tx, p, SINKS, "sinks", |name: &str, s| (name.to_owned(), s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{BucketConfig, PolicyName, PspCategory};

    fn sighting(name: &str, capacity: i64, minute: i64) -> (Policy, DateTime<Utc>) {
        let policy = Policy {
            name: PolicyName::new(name).expect("valid"),
            bucket: BucketConfig {
                capacity,
                refill_tokens: 1,
                refill_period_secs: 60,
            },
            category: PspCategory::C,
        };
        (
            policy,
            DateTime::UNIX_EPOCH + chrono::TimeDelta::minutes(minute),
        )
    }

    fn alert(id: u128, minute: i64, resolved: bool) -> Alert {
        let at = DateTime::UNIX_EPOCH + chrono::TimeDelta::minutes(minute);
        Alert {
            id: uuid::Uuid::from_u128(id),
            policy: PolicyName::new("ENTRIES_WRITE").expect("valid"),
            severity: crate::domain::Severity::Warning,
            peak_severity: None,
            cause: crate::domain::AlertCause::Threshold,
            opened_at: at,
            available_tokens: 10,
            capacity: 100,
            utilization_percent: 90.0,
            psp_category: PspCategory::C,
            message: "low".into(),
            resolved_at: resolved.then_some(at + chrono::TimeDelta::minutes(1)),
            resolution: resolved.then(|| "recovered".into()),
        }
    }

    #[test]
    fn latest_keeps_the_newest_snapshot_and_open_alerts_follow_the_alerts() {
        use crate::store::format::tests::record;
        let dir = tempfile::tempdir().expect("temp");
        let path = dir.path().join("catalog.redb");
        let catalog = Catalog::open(&path).expect("open");
        let update = |latest: Vec<StateRecord>, alerts: Vec<Alert>| CatalogUpdate {
            alerts,
            latest,
            ..CatalogUpdate::default()
        };
        catalog
            .apply(&update(
                vec![
                    record("ENTRIES_WRITE", 600, 5),
                    record("KEYS_CHECK", 600, 7),
                ],
                vec![alert(1, 0, false), alert(2, 0, false)],
            ))
            .expect("apply");
        // Older history (an import) leaves the newest; a resolution leaves open_alerts.
        catalog
            .apply(&update(
                vec![
                    record("ENTRIES_WRITE", 0, 900),
                    record("KEYS_CHECK", 1200, 8),
                ],
                vec![alert(1, 0, true)],
            ))
            .expect("apply");
        drop(catalog);
        let reader = CatalogReader::open(&path).expect("reader");
        let mut latest: Vec<(String, i64)> = reader
            .latest()
            .expect("latest")
            .into_iter()
            .map(|r| (r.policy.to_string(), r.sample.available_tokens))
            .collect();
        latest.sort();
        assert_eq!(
            latest,
            [("ENTRIES_WRITE".into(), 5), ("KEYS_CHECK".into(), 8)]
        );
        let open = reader.open_alerts().expect("read").expect("kept");
        assert_eq!(open.iter().map(|a| a.id.as_u128()).collect::<Vec<_>>(), [2]);
        assert_eq!(
            reader.checksum_problems().expect("check"),
            Vec::<String>::new()
        );

        // A resolved alert left in open_alerts (a hand edit) is reported.
        drop(reader);
        let db = Database::open(&path).expect("db");
        let tx = db.begin_write().expect("tx");
        tx.open_table(OPEN_ALERTS)
            .expect("table")
            .insert(
                1_u128,
                json(&alert(1, 0, true), "test").expect("json").as_slice(),
            )
            .expect("insert");
        tx.commit().expect("commit");
        drop(db);
        let problems = CatalogReader::open(&path)
            .expect("reader")
            .checksum_problems()
            .expect("check");
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("resolved, yet listed"), "{problems:?}");
    }

    /// The ids of the history read by `read` three alerts at a time, each page from the
    /// cursor of the one before.
    fn walk_pages(read: &dyn Fn(Option<AlertCursor>) -> AlertPage) -> Vec<u128> {
        let mut ids = Vec::new();
        let mut after = None;
        loop {
            let page = read(after);
            assert!(page.alerts.len() <= 3);
            // A next page is announced only when an alert follows.
            assert!(after.is_none() || !page.alerts.is_empty(), "an empty page");
            ids.extend(page.alerts.iter().map(|a| a.id.as_u128()));
            match page.next {
                Some(c) => after = Some(c),
                None => return ids,
            }
        }
    }

    /// Writes to the catalog at `path` behind dictmon's back (an older dictmon, a hand edit).
    fn hand_edit(path: &Path, edit: impl FnOnce(&redb::WriteTransaction)) {
        let db = Database::open(path).expect("db");
        let tx = db.begin_write().expect("tx");
        edit(&tx);
        tx.commit().expect("commit");
    }

    /// Pages of the history follow the order alerts opened (ids are not in that order), each
    /// read from just after the last; a catalog without the index is paged by readers and gets
    /// it at the next writer's open, as does one an older dictmon added alerts to; retention
    /// takes entries with their alerts, and verify reports a stray one.
    #[test]
    fn alert_pages_follow_the_openings_through_migration_and_retention() {
        let dir = tempfile::tempdir().expect("temp");
        let path = dir.path().join("catalog.redb");
        // Ids in the reverse order of their openings (minutes 0–5, two at minute 5: by id);
        // the first four resolved.
        let mut alerts: Vec<Alert> = (0..7)
            .map(|i| alert(100 - i, i64::try_from(i.min(5)).expect("small"), i < 4))
            .collect();
        let mut expected: Vec<u128> = vec![100, 99, 98, 97, 96, 94, 95];
        let catalog = Catalog::open(&path).expect("open");
        catalog
            .apply(&CatalogUpdate {
                alerts: alerts.clone(),
                ..CatalogUpdate::default()
            })
            .expect("apply");
        let pages = |c: &Catalog| walk_pages(&|after| c.alert_page(after, 3).expect("page"));
        assert_eq!(pages(&catalog), expected);
        let all: Vec<u128> = catalog
            .alerts()
            .expect("all")
            .iter()
            .map(|a| a.id.as_u128())
            .collect();
        assert_eq!(all, expected);

        drop(catalog);
        hand_edit(&path, |tx| {
            tx.delete_table(ALERTS_BY_OPENING).expect("drop the index");
            let mut meta = tx.open_table(META).expect("meta");
            meta.remove(ALERTS_BY_OPENING_KEPT).expect("forget it");
        });
        let reader = CatalogReader::open(&path).expect("reader");
        let read = walk_pages(&|after| reader.alert_page(after, 3).expect("page"));
        assert_eq!(read, expected);
        drop(reader);
        assert_eq!(pages(&Catalog::open(&path).expect("open")), expected);

        // An older dictmon's alert (with its checksum), not in the index.
        let older = alert(1, 3, true);
        hand_edit(&path, |tx| {
            let (id, value) = (older.id.as_u128(), json(&older, "test").expect("json"));
            let mut table = tx.open_table(ALERTS).expect("alerts");
            table.insert(id, value.as_slice()).expect("insert");
            let mut sums = tx.open_table(CHECKSUMS).expect("sums");
            sums.insert(alert_key(id).as_str(), crc(&value))
                .expect("insert");
        });
        alerts.push(older);
        expected.insert(3, 1);
        let catalog = Catalog::open(&path).expect("open");
        assert_eq!(pages(&catalog), expected);

        let cutoff = DateTime::UNIX_EPOCH + chrono::TimeDelta::hours(1);
        let removed = catalog
            .delete_alerts_resolved_before(cutoff)
            .expect("retention");
        assert_eq!(removed, 5);
        expected.retain(|id| {
            alerts
                .iter()
                .any(|a| a.id.as_u128() == *id && a.resolved_at.is_none())
        });
        assert_eq!(pages(&catalog), expected);
        drop(catalog);
        let reader = CatalogReader::open(&path).expect("reader");
        assert_eq!(
            reader.checksum_problems().expect("check"),
            Vec::<String>::new()
        );
        drop(reader);

        hand_edit(&path, |tx| {
            let mut index = tx.open_table(ALERTS_BY_OPENING).expect("index");
            index.insert((7_i64, 7_u128), ()).expect("insert");
        });
        let reader = CatalogReader::open(&path).expect("reader");
        let problems = reader.checksum_problems().expect("check");
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("alerts_by_opening"), "{problems:?}");
    }

    /// A policy that left DICT's listing is marked and leaves `latest`; a sighting after its
    /// departure (in the same absorbed update or a later one) wins, one before it does not.
    #[test]
    fn a_policy_that_left_is_marked_unless_seen_since() {
        use crate::store::format::tests::record;
        let dir = tempfile::tempdir().expect("temp");
        let path = dir.path().join("catalog.redb");
        let catalog = Catalog::open(&path).expect("open");
        let at = |minute: i64| DateTime::<Utc>::UNIX_EPOCH + chrono::TimeDelta::minutes(minute);
        let name = |n: &str| PolicyName::new(n).expect("name");
        let seen = |n: &str, minute: i64| CatalogUpdate {
            policies: vec![sighting(n, 100, minute)],
            latest: vec![record(n, minute * 60, 5)],
            ..CatalogUpdate::default()
        };
        let left_at = |c: &Catalog, n: &str| {
            let policies = c.policies().expect("policies");
            policies
                .into_iter()
                .find(|p| p.policy.name.as_str() == n)
                .and_then(|p| p.left_at)
        };
        // GONE seen at minute 1 and left at 4; BACK left at 4 and was seen again at 6, both
        // in one update merged while the catalog could not be written.
        let mut pending = seen("GONE", 1);
        pending.absorb(seen("BACK", 1));
        pending.absorb(CatalogUpdate {
            left: vec![(name("GONE"), at(4)), (name("BACK"), at(4))],
            ..CatalogUpdate::default()
        });
        pending.absorb(seen("BACK", 6));
        catalog.apply(&pending).expect("apply");
        assert_eq!(left_at(&catalog, "GONE"), Some(at(4)));
        assert_eq!(left_at(&catalog, "BACK"), None);
        drop(catalog);
        let reader = CatalogReader::open(&path).expect("reader");
        let view = reader.status().expect("status");
        assert_eq!(view.policy_names, ["BACK"]);
        let latest: Vec<String> = view.latest.iter().map(|r| r.policy.to_string()).collect();
        assert_eq!(latest, ["BACK"]);
        drop(reader);
        // Older history imported afterwards does not bring it back; listed again, it is a
        // policy again.
        let catalog = Catalog::open(&path).expect("open");
        catalog.apply(&seen("GONE", 2)).expect("apply");
        assert_eq!(left_at(&catalog, "GONE"), Some(at(4)));
        catalog.apply(&seen("GONE", 8)).expect("apply");
        assert_eq!(left_at(&catalog, "GONE"), None);
        assert_eq!(
            catalog.policies().expect("policies").len(),
            2,
            "first sightings kept"
        );
    }

    #[test]
    fn absorbed_updates_keep_each_policys_earliest_and_latest_sighting_in_order() {
        let mut pending = CatalogUpdate::default();
        for (minute, capacity) in [(5, 100), (3, 90), (9, 120), (7, 110), (1, 80)] {
            pending.absorb(CatalogUpdate {
                policies: vec![
                    sighting("ENTRIES_WRITE", capacity, minute),
                    sighting("POLICIES_LIST", capacity, 0),
                ],
                ..CatalogUpdate::default()
            });
        }
        let kept: Vec<(&str, i64, i64)> = pending
            .policies
            .iter()
            .map(|(p, at)| (p.name.as_str(), p.bucket.capacity, at.timestamp() / 60))
            .collect();
        assert_eq!(
            kept,
            [
                ("ENTRIES_WRITE", 80, 1),
                ("ENTRIES_WRITE", 120, 9),
                ("POLICIES_LIST", 100, 0),
                ("POLICIES_LIST", 80, 0),
            ]
        );
        assert_eq!(pending.len(), 4);
    }
}
