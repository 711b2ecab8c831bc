//! dictmon's own store: one append-only segment file per UTC month for snapshots, and a redb
//! catalog for policies, alerts and the event outbox. The bytes are specified in
//! `storage-format.md`; section numbers (§) below refer to it.
//!
//! May use: `domain`, zstd, crc32c, redb.
//!
//! - [`Store`] is the one writer of a data directory (a lock file enforces it): appends batches
//!   as live blocks with fsync, seals closed days into one large block per segment, applies
//!   retention.
//! - [`StoreReader`] reads a data directory without locking, while the writer runs or on a
//!   read-only copy; it sees only complete, checksummed blocks.
//! - [`verify`] checks every block and the catalog.
//!
//! Invariants: an appended batch is acknowledged only after its block is fsynced (§6); a
//! segment is replaced only by rename of a complete, fsynced file (§6); recovery cuts only a
//! torn tail, and keeps its bytes in `quarantine/` (§7); sealing never drops a row and never
//! runs on a segment with damage (§8).

pub mod catalog;
pub mod disk;
pub mod format;
pub mod month;
pub mod segment;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDate, Utc};

use crate::domain::{RateWindow, StateRecord};

use self::catalog::{Catalog, CatalogError, CatalogReader};
use self::format::{BlockKind, FormatError, SegmentHeader};
pub use self::month::Month;
pub use self::segment::{Corruption, Filter};

/// §1: the segments folder inside a data directory.
pub const SEGMENTS_DIR: &str = "segments";
/// §1: the catalog file.
pub const CATALOG_FILE: &str = "catalog.redb";
/// §1: the writer's lock file.
pub const LOCK_FILE: &str = "LOCK";
/// §1: where recovery keeps the bytes of a torn tail.
pub const QUARANTINE_DIR: &str = "quarantine";

/// Why the store could not do what was asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// An I/O error on a named file.
    #[error("{path}: {error}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error (part of the message, not a separate cause).
        error: io::Error,
    },
    /// Another process holds the writer's lock.
    #[error(
        "data directory {dir} is in use by {holder} (lock file {lock}); only one `serve` or `import` may write a data directory — stop it, or use another --data-dir"
    )]
    Locked {
        /// The data directory.
        dir: PathBuf,
        /// Who holds it, as written in the lock file.
        holder: String,
        /// The lock file.
        lock: PathBuf,
    },
    /// A segment's header is unreadable or of another version.
    #[error("{path}: {error}")]
    Segment {
        /// The segment file.
        path: PathBuf,
        /// What is wrong.
        error: FormatError,
    },
    /// A segment has damage, so it cannot be rewritten (sealing) without loss.
    #[error("{0}; run `dictmon verify` — the segment is left as it is")]
    Damaged(Corruption),
    /// The catalog failed.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// A time outside what segments can hold.
    #[error("time {0} is outside the range a segment can hold (1677–2262)")]
    TimeOutOfRange(DateTime<Utc>),
}

type Result<T> = std::result::Result<T, StoreError>;

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |error| StoreError::Io {
        path: path.to_owned(),
        error,
    }
}

/// Writer settings.
#[derive(Clone, Copy, Debug)]
pub struct StoreOptions {
    /// fsync after every append (§6). On by default; off only for bulk loads that are
    /// re-runnable.
    pub fsync: bool,
    /// The rate window the derived metrics are computed with (predictor parameter, §4.3).
    pub rate_window: RateWindow,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            fsync: true,
            rate_window: RateWindow::default(),
        }
    }
}

/// What recovery did when the store was opened.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Torn tails cut: segment, offset, bytes moved to quarantine.
    pub torn_tails: Vec<(PathBuf, u64, u64)>,
    /// Leftover temporary files of an interrupted seal or segment creation, removed.
    pub removed_temp_files: Vec<PathBuf>,
}

/// The one writer of a data directory.
pub struct Store {
    dir: PathBuf,
    options: StoreOptions,
    catalog: std::sync::Arc<Catalog>,
    /// Open segments: file handle and the day of the newest live block.
    open: BTreeMap<Month, OpenSegment>,
    recovery: Recovery,
    _lock: File,
}

struct OpenSegment {
    file: File,
    /// Latest UTC day among the segment's live blocks; none when it has none.
    live_day: Option<NaiveDate>,
    /// Whether some live block belongs to a day before `live_day`.
    closed_live: bool,
}

impl Store {
    /// Opens a data directory for writing, creating it if needed: takes the lock, removes
    /// temporary files, cuts torn tails (§7), opens the catalog.
    pub fn open(dir: &Path, options: StoreOptions) -> Result<Self> {
        let segments = dir.join(SEGMENTS_DIR);
        fs::create_dir_all(&segments).map_err(io_err(&segments))?;
        let lock = take_lock(dir)?;
        let mut recovery = Recovery::default();
        for entry in fs::read_dir(&segments).map_err(io_err(&segments))? {
            let path = entry.map_err(io_err(&segments))?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.starts_with('.')
                && path
                    .extension()
                    .is_some_and(|e| e.eq_ignore_ascii_case("tmp"))
            {
                fs::remove_file(&path).map_err(io_err(&path))?;
                recovery.removed_temp_files.push(path);
            }
        }
        let mut store = Self {
            catalog: std::sync::Arc::new(Catalog::open(&dir.join(CATALOG_FILE))?),
            dir: dir.to_owned(),
            options,
            open: BTreeMap::new(),
            recovery,
            _lock: lock,
        };
        for month in list_segments(&segments)? {
            store.open_segment(month)?;
        }
        Ok(store)
    }

    /// What recovery did on open.
    pub fn recovery(&self) -> &Recovery {
        &self.recovery
    }

    /// The catalog.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// A shared handle to the catalog, for readers in the same process (redb serves reads
    /// concurrently with the writer's transactions).
    pub fn catalog_handle(&self) -> std::sync::Arc<Catalog> {
        self.catalog.clone()
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn segment_path(&self, month: Month) -> PathBuf {
        self.dir.join(SEGMENTS_DIR).join(month.file_name())
    }

    /// Opens (creating, §6) a segment and cuts its torn tail (§7).
    fn open_segment(&mut self, month: Month) -> Result<&mut OpenSegment> {
        if !self.open.contains_key(&month) {
            let path = self.segment_path(month);
            if !path.exists() {
                create_segment(&path, month)?;
            }
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(io_err(&path))?;
            let mut bytes = Vec::new();
            file.read_to_end(&mut bytes).map_err(io_err(&path))?;
            SegmentHeader::decode(&bytes).map_err(|error| StoreError::Segment {
                path: path.clone(),
                error,
            })?;
            let layout = segment::layout(&bytes);
            if let Some(torn) = &layout.torn_tail {
                self.quarantine(&path, &bytes, torn.offset)?;
                file.set_len(torn.offset).map_err(io_err(&path))?;
                file.sync_all().map_err(io_err(&path))?;
                self.recovery
                    .torn_tails
                    .push((path.clone(), torn.offset, torn.len));
            }
            file.seek(SeekFrom::End(0)).map_err(io_err(&path))?;
            let live_days: BTreeSet<NaiveDate> = layout
                .blocks
                .iter()
                .filter(|b| b.header.kind == BlockKind::Live)
                .map(|b| day(b.header.max_time_ns))
                .collect();
            self.open.insert(
                month,
                OpenSegment {
                    file,
                    live_day: live_days.last().copied(),
                    closed_live: live_days.len() > 1,
                },
            );
        }
        self.open
            .get_mut(&month)
            .ok_or_else(|| StoreError::TimeOutOfRange(DateTime::<Utc>::MIN_UTC))
    }

    fn quarantine(&self, segment: &Path, bytes: &[u8], from: u64) -> Result<()> {
        let dir = self.dir.join(QUARANTINE_DIR);
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let name = segment
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("segment");
        let path = dir.join(format!("{name}.{from}.torn"));
        let tail = usize::try_from(from)
            .ok()
            .and_then(|f| bytes.get(f..))
            .unwrap_or_default();
        write_durably(&path, tail)
    }

    /// Appends one batch (typically one poll cycle): one live block per month it touches,
    /// fsynced before returning (§6). Closed days of a segment are sealed first (§6.3).
    pub fn append(&mut self, batch: &[StateRecord]) -> Result<()> {
        for (month, rows) in by_month(batch)? {
            let batch_day = rows
                .iter()
                .map(|r| r.sample.at.date_naive())
                .max()
                .unwrap_or_default();
            let seg = self.open_segment(month)?;
            if seg.closed_live || seg.live_day.is_some_and(|d| d < batch_day) {
                // Keep only the newest day's live blocks; everything before it is closed.
                let newest = seg.live_day.max(Some(batch_day));
                self.seal(month, newest)?;
            }
            let block = format::encode_block(BlockKind::Live, &rows, self.options.rate_window.span);
            let path = self.segment_path(month);
            let fsync = self.options.fsync;
            let seg = self.open_segment(month)?;
            let end = seg.file.stream_position().map_err(io_err(&path))?;
            let written = seg
                .file
                .write_all(&block)
                .and_then(|()| if fsync { seg.file.sync_data() } else { Ok(()) });
            if let Err(e) = written {
                // A full disk (ENOSPC), a read-only remount (EROFS) or EIO: the block may be
                // partly written. Cut it back (§6.1) so that the next append does not land
                // behind garbage, and drop the handle (its offset is past the cut): the next
                // append reopens the segment and re-checks its tail (§7), which also covers
                // a cut that failed.
                let _ = seg.file.set_len(end).and_then(|()| seg.file.sync_data());
                self.open.remove(&month);
                return Err(io_err(&path)(e));
            }
            // A back-dated batch behind a later day's live blocks leaves a closed day behind.
            seg.closed_live |= seg.live_day.is_some_and(|d| d != batch_day);
            seg.live_day = seg.live_day.max(Some(batch_day));
        }
        Ok(())
    }

    /// Writes history straight into sealed blocks (bulk load: backfill, import), merged with
    /// what each month already holds. Each month is one atomic rewrite.
    pub fn append_sealed(&mut self, rows: &[StateRecord]) -> Result<()> {
        for (month, rows) in by_month(rows)? {
            self.rewrite(month, &rows, None)?;
        }
        Ok(())
    }

    /// Seals a segment: every row of its sealed block and of its live blocks of days before
    /// `keep_from` (all live blocks when none) is merged into one sealed block; live blocks of
    /// later days are kept as they are. Atomic (§6.3).
    pub fn seal(&mut self, month: Month, keep_from: Option<NaiveDate>) -> Result<()> {
        self.rewrite(month, &[], keep_from)
    }

    /// Seals every segment that has live blocks of days before the newest day in the store.
    pub fn seal_closed_days(&mut self) -> Result<()> {
        let newest = self.open.values().filter_map(|s| s.live_day).max();
        let months: Vec<Month> = self.open.keys().copied().collect();
        for month in months {
            let seg = self.open_segment(month)?;
            if seg.closed_live || seg.live_day.is_some_and(|d| Some(d) < newest) {
                self.seal(month, newest)?;
            }
        }
        Ok(())
    }

    /// The one rewrite path (§6.3): decode the segment, merge `extra`, write a temporary file
    /// with one sealed block plus the kept live blocks, fsync, rename, fsync the directory.
    fn rewrite(
        &mut self,
        month: Month,
        extra: &[StateRecord],
        keep_from: Option<NaiveDate>,
    ) -> Result<()> {
        self.open_segment(month)?;
        let path = self.segment_path(month);
        let bytes = fs::read(&path).map_err(io_err(&path))?;
        let layout = segment::layout(&bytes);
        if let Some(d) = layout.damage.first() {
            return Err(StoreError::Damaged(Corruption {
                file: path,
                offset: d.offset,
                block: 0,
                error: d.error.clone(),
            }));
        }
        let mut merged: Vec<StateRecord> = Vec::new();
        let mut kept_live: Vec<u8> = Vec::new();
        let mut kept_day = None;
        let mut to_merge = Vec::new();
        for block in &layout.blocks {
            let keep = block.header.kind == BlockKind::Live
                && keep_from.is_some_and(|k| day(block.header.min_time_ns) >= k);
            if keep {
                let start = usize::try_from(block.offset).unwrap_or(usize::MAX);
                let end =
                    start.saturating_add(usize::try_from(block.header.block_len()).unwrap_or(0));
                kept_live.extend_from_slice(bytes.get(start..end).unwrap_or_default());
                kept_day = kept_day.max(Some(day(block.header.max_time_ns)));
                continue;
            }
            to_merge.push(*block);
        }
        let problems =
            segment::read_blocks(&path, &bytes, &to_merge, &Filter::default(), &mut |r| {
                merged.push(r);
            });
        if let Some(p) = problems.into_iter().next() {
            return Err(StoreError::Damaged(p));
        }
        merged.extend_from_slice(extra);
        let mut out = SegmentHeader {
            year: u16::try_from(month.year).unwrap_or(0),
            month: u8::try_from(month.month).unwrap_or(0),
            created_ns: Utc::now().timestamp_nanos_opt().unwrap_or(0),
        }
        .encode()
        .to_vec();
        if !merged.is_empty() {
            out.extend(format::encode_block(
                BlockKind::Sealed,
                &merged,
                self.options.rate_window.span,
            ));
        }
        out.extend_from_slice(&kept_live);
        let tmp = temp_path(&path);
        write_durably(&tmp, &out)?;
        fs::rename(&tmp, &path).map_err(io_err(&path))?;
        sync_dir(path.parent().unwrap_or(Path::new(".")))?;
        // Reopen on the new file.
        self.open.remove(&month);
        let seg = self.open_segment(month)?;
        seg.live_day = kept_day;
        seg.closed_live = false;
        Ok(())
    }

    /// Applies retention (§9): deletes segments older than the `keep` months ending with the
    /// month of `now`, oldest first, and alerts resolved (and outbox events) before the oldest
    /// kept month. With `dry_run`, only reports. Returns the months deleted (or that would be).
    pub fn apply_retention(
        &mut self,
        now: DateTime<Utc>,
        keep: u32,
        dry_run: bool,
    ) -> Result<RetentionReport> {
        let segments = self.dir.join(SEGMENTS_DIR);
        let present = list_segments(&segments)?;
        let now_month = Month::of(now);
        let doomed = month::to_delete(&present, now_month, keep);
        let cutoff = now_month.minus(keep.max(1) - 1).start();
        let mut report = RetentionReport {
            months: doomed.clone(),
            alerts: 0,
            events: 0,
        };
        if dry_run {
            report.alerts = self
                .catalog
                .alerts()?
                .iter()
                .filter(|a| a.resolved_at.zip(cutoff).is_some_and(|(r, c)| r < c))
                .count();
            return Ok(report);
        }
        for m in doomed {
            self.open.remove(&m);
            let path = self.segment_path(m);
            fs::remove_file(&path).map_err(io_err(&path))?;
        }
        sync_dir(&segments)?;
        if let Some(cutoff) = cutoff {
            report.alerts = self.catalog.delete_alerts_resolved_before(cutoff)?;
            report.events = self.catalog.delete_events_before(cutoff)?;
        }
        Ok(report)
    }
}

/// What retention deleted (or would delete).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetentionReport {
    /// Segments, oldest first.
    pub months: Vec<Month>,
    /// Resolved alerts.
    pub alerts: usize,
    /// Outbox events (not counted in a dry run).
    pub events: usize,
}

fn day(ns: i64) -> NaiveDate {
    DateTime::from_timestamp_nanos(ns).date_naive()
}

fn by_month(rows: &[StateRecord]) -> Result<BTreeMap<Month, Vec<StateRecord>>> {
    let mut out: BTreeMap<Month, Vec<StateRecord>> = BTreeMap::new();
    for r in rows {
        if r.sample.at.timestamp_nanos_opt().is_none()
            || r.created_at.timestamp_nanos_opt().is_none()
        {
            return Err(StoreError::TimeOutOfRange(r.sample.at));
        }
        out.entry(Month::of(r.sample.at))
            .or_default()
            .push(r.clone());
    }
    Ok(out)
}

fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("segment");
    path.with_file_name(format!(".{name}.tmp"))
}

/// §6: a new segment is its header written to a temporary file, fsynced, renamed into place,
/// and the directory fsynced.
fn create_segment(path: &Path, month: Month) -> Result<()> {
    let header = SegmentHeader {
        year: u16::try_from(month.year).unwrap_or(0),
        month: u8::try_from(month.month).unwrap_or(0),
        created_ns: Utc::now().timestamp_nanos_opt().unwrap_or(0),
    };
    let tmp = temp_path(path);
    write_durably(&tmp, &header.encode())?;
    fs::rename(&tmp, path).map_err(io_err(path))?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

fn write_durably(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = File::create(path).map_err(io_err(path))?;
    f.write_all(bytes).map_err(io_err(path))?;
    f.sync_all().map_err(io_err(path))
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// How long a writer waits for the lock before saying who holds it.
const LOCK_PATIENCE: std::time::Duration = std::time::Duration::from_secs(2);

/// §1: one writer per data directory. The lock is an OS file lock on `LOCK`, released by the
/// kernel when the process ends (even by SIGKILL); the file names the holder for the error.
fn take_lock(dir: &Path) -> Result<File> {
    let path = dir.join(LOCK_FILE);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io_err(&path))?;
    // A holder on its way out (a writer still exiting while systemd restarts `serve`, or a
    // copy of the descriptor held for an instant by a process being spawned) gets a moment.
    let deadline = std::time::Instant::now() + LOCK_PATIENCE;
    let locked = loop {
        match file.try_lock() {
            Ok(()) => break Ok(()),
            Err(fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Err(e) => break Err(e),
        }
    };
    match locked {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            return Err(StoreError::Locked {
                dir: dir.to_owned(),
                holder: if holder.is_empty() {
                    "another process".to_owned()
                } else {
                    holder.to_owned()
                },
                lock: path,
            });
        }
        Err(fs::TryLockError::Error(e)) => return Err(io_err(&path)(e)),
    }
    let me = format!(
        "process {} ({})",
        std::process::id(),
        std::env::args().collect::<Vec<_>>().join(" ")
    );
    file.set_len(0).map_err(io_err(&path))?;
    file.write_all(me.as_bytes()).map_err(io_err(&path))?;
    file.sync_all().map_err(io_err(&path))?;
    Ok(file)
}

fn list_segments(segments: &Path) -> Result<Vec<Month>> {
    if !segments.exists() {
        return Ok(Vec::new());
    }
    let mut months = Vec::new();
    for entry in fs::read_dir(segments).map_err(io_err(segments))? {
        let path = entry.map_err(io_err(segments))?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if let Some(m) = name.strip_suffix(".seg").and_then(|m| m.parse().ok()) {
            months.push(m);
        }
    }
    months.sort_unstable();
    Ok(months)
}

/// Reads a data directory without locking it.
pub struct StoreReader {
    dir: PathBuf,
}

impl StoreReader {
    /// A reader of `dir`. Fails if it is not a data directory.
    pub fn open(dir: &Path) -> Result<Self> {
        let segments = dir.join(SEGMENTS_DIR);
        if !segments.is_dir() {
            return Err(StoreError::Io {
                path: segments,
                error: io::Error::new(
                    io::ErrorKind::NotFound,
                    "not a dictmon data directory (no segments/ folder); check --data-dir",
                ),
            });
        }
        Ok(Self {
            dir: dir.to_owned(),
        })
    }

    /// The months present, oldest first.
    pub fn months(&self) -> Result<Vec<Month>> {
        list_segments(&self.dir.join(SEGMENTS_DIR))
    }

    /// The path of a month's segment.
    pub fn segment_path(&self, month: Month) -> PathBuf {
        self.dir.join(SEGMENTS_DIR).join(month.file_name())
    }

    /// The catalog, read-only.
    pub fn catalog(&self) -> Result<CatalogReader> {
        Ok(CatalogReader::open(&self.dir.join(CATALOG_FILE))?)
    }

    /// Hands every row passing `filter` to `sink`, month by month (oldest first), skipping
    /// months and blocks outside the time range and frames of other policies. Damage is
    /// reported and skipped; the rest is still read.
    pub fn scan(
        &self,
        filter: &Filter,
        sink: &mut dyn FnMut(StateRecord),
    ) -> Result<Vec<Corruption>> {
        let mut problems = Vec::new();
        for month in self.months_for(filter)? {
            problems.extend(self.scan_month(month, filter, sink)?);
        }
        Ok(problems)
    }

    /// The months present whose time range meets `filter`'s, oldest first.
    pub fn months_for(&self, filter: &Filter) -> Result<Vec<Month>> {
        let ns = |t: Option<DateTime<Utc>>| t.and_then(|t| t.timestamp_nanos_opt());
        Ok(self
            .months()?
            .into_iter()
            .filter(|m| {
                let (start, end) = (ns(m.start()), ns(m.next().start()));
                !(filter.since_ns.zip(end).is_some_and(|(s, e)| e <= s)
                    || filter.until_ns.zip(start).is_some_and(|(u, s)| s >= u))
            })
            .collect())
    }

    /// [`Self::scan`] of one month's segment (nothing when it is gone).
    pub fn scan_month(
        &self,
        month: Month,
        filter: &Filter,
        sink: &mut dyn FnMut(StateRecord),
    ) -> Result<Vec<Corruption>> {
        let path = self.segment_path(month);
        // None: deleted by retention between listing and reading.
        let Some((bytes, mut problems)) = read_segment(&path)? else {
            return Ok(Vec::new());
        };
        problems.extend(segment::read_rows(&path, &bytes, filter, sink));
        Ok(problems)
    }
}

/// A segment's bytes as the disk gives them back, with the regions it would not give as
/// problems (§8); none if the file is gone.
fn read_segment(path: &Path) -> Result<Option<(Vec<u8>, Vec<Corruption>)>> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(path)(e)),
    };
    let len = file.metadata().map_err(io_err(path))?.len();
    let (bytes, unreadable) = disk::read_tolerant(&file, len, disk::SECTOR);
    let problems = unreadable_problems(path, &bytes, unreadable);
    Ok(Some((bytes, problems)))
}

/// Regions the disk would not give back, as problems located like any other damage.
fn unreadable_problems(
    path: &Path,
    bytes: &[u8],
    unreadable: Vec<disk::Unreadable>,
) -> Vec<Corruption> {
    if unreadable.is_empty() {
        return Vec::new();
    }
    let blocks = segment::layout(bytes).blocks;
    unreadable
        .into_iter()
        .map(|u| Corruption {
            file: path.to_owned(),
            offset: u.offset,
            block: blocks.iter().filter(|b| b.offset < u.offset).count(),
            error: FormatError::Unreadable(format!("{} bytes: {}", u.len, u.error)),
        })
        .collect()
}

/// What `verify` found.
#[derive(Clone, Debug, Default)]
pub struct VerifyReport {
    /// Segments checked.
    pub segments: usize,
    /// Good blocks.
    pub blocks: usize,
    /// Rows decoded.
    pub rows: u64,
    /// Bytes of segment files.
    pub bytes: u64,
    /// Every problem, located.
    pub problems: Vec<String>,
    /// Torn tails (an append in progress or interrupted; cut by the next writer).
    pub torn_tails: Vec<String>,
}

/// Checks every block of every segment (headers, checksums, full decode) and reads every
/// catalog table. `progress` is called before each segment with (index, count, path).
pub fn verify(dir: &Path, progress: &mut dyn FnMut(usize, usize, &Path)) -> Result<VerifyReport> {
    let reader = StoreReader::open(dir)?;
    let months = reader.months()?;
    let mut report = VerifyReport::default();
    for (i, month) in months.iter().enumerate() {
        let path = reader.segment_path(*month);
        progress(i, months.len(), &path);
        // None: deleted by retention since the listing.
        let Some((bytes, unreadable)) = read_segment(&path)? else {
            continue;
        };
        report
            .problems
            .extend(unreadable.iter().map(ToString::to_string));
        report.segments += 1;
        report.bytes += bytes.len() as u64;
        match SegmentHeader::decode(&bytes) {
            Ok(h) if (i32::from(h.year), u32::from(h.month)) != (month.year, month.month) => {
                report.problems.push(format!(
                    "{}: offset 0: header says {:04}-{:02}, file name says {month}",
                    path.display(),
                    h.year,
                    h.month
                ));
            }
            Ok(_) => {}
            Err(e) => {
                report
                    .problems
                    .push(format!("{}: offset 0: segment header: {e}", path.display()));
                continue;
            }
        }
        let layout = segment::layout(&bytes);
        report.blocks += layout.blocks.len();
        if let Some(t) = &layout.torn_tail {
            report.torn_tails.push(format!(
                "{}: offset {}: {} bytes of an incomplete append ({})",
                path.display(),
                t.offset,
                t.len,
                t.error
            ));
        }
        let mut rows = 0_u64;
        let problems = segment::read_rows(&path, &bytes, &Filter::default(), &mut |_| rows += 1);
        report.rows += rows;
        report
            .problems
            .extend(problems.iter().map(ToString::to_string));
    }
    let catalog = reader.catalog();
    let checked = catalog.and_then(|c| {
        c.policies()?;
        c.alerts()?;
        c.outbox()?;
        Ok(())
    });
    if let Err(e) = checked {
        report.problems.push(e.to_string());
    }
    Ok(report)
}

/// Number and total bytes of the segment files of a data directory (one listing).
pub fn segment_stats(dir: &Path) -> Result<(usize, u64)> {
    let reader = StoreReader::open(dir)?;
    let months = reader.months()?;
    let mut total = 0;
    for m in &months {
        let path = reader.segment_path(*m);
        total += fs::metadata(&path).map_err(io_err(&path))?.len();
    }
    Ok((months.len(), total))
}

/// Total bytes of the segment files of a data directory.
pub fn segment_bytes(dir: &Path) -> Result<u64> {
    segment_stats(dir).map(|(_, bytes)| bytes)
}
