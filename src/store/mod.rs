//! dictmon's own store: one append-only segment file per UTC month for snapshots, and a redb
//! catalog for policies, alerts and the event outbox. The bytes are specified in
//! `storage-format.md`; section numbers (§) below refer to it.
//!
//! May use: `domain`, zstd, crc32c, redb, tracing (the compactor thread logs its failures).
//!
//! - [`Store`] is the one writer of a data directory (a lock file enforces it): appends batches
//!   as live blocks with fsync, applies retention; its compactor (`compact`) merges closed
//!   hours' live blocks, and small sealed blocks, into bounded sealed blocks on a thread of its
//!   own.
//! - [`StoreReader`] reads a data directory without locking, while the writer runs or on a
//!   read-only copy; it sees only complete, checksummed blocks.
//! - [`verify`] checks every block and the catalog.
//!
//! Invariants: an appended batch is acknowledged only after its block is fsynced (§6); a
//! segment is replaced only by rename of a complete, fsynced file (§6); recovery cuts only a
//! torn tail, and keeps its bytes in `quarantine/` (§7); compaction never drops a row, never
//! runs on a segment with damage (§8), and bounds its work and memory whatever the month holds.

pub mod catalog;
mod compact;
pub(crate) mod disk;
pub(crate) mod format;
mod month;
pub(crate) mod segment;
mod verify;

/// A segment file's bytes for those who read them without a [`Store`]: the integration tests
/// (damage, decoding properties, disk errors), the fuzz targets and the fixture generator.
/// Only what they use; the format's encoder and decoder stay private to the store.
pub mod raw {
    pub use super::disk::{ReadAt, Unreadable, read_tolerant};
    pub use super::format::{BlockKind, FORMAT_VERSION, SEGMENT_HEADER_LEN, SegmentHeader};
    pub use super::segment::{
        BlockRef, Damage, Layout, layout, read_blocks, read_readings, read_rows,
    };
}

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};

use chrono::{DateTime, Utc};

use crate::domain::{PolicyName, RateWindow, Reading, StateRecord};

use self::catalog::{Catalog, CatalogError, CatalogReader};
use self::compact::{OpenSegment, Segments};
use self::format::{BlockHeader, BlockKind, FormatError, SegmentHeader};
pub use self::month::{Month, SegmentId, to_delete as months_to_delete};
use self::segment::BlockRef;
pub use self::segment::{Corruption, Filter, keep_read_buffers, release_read_buffers};
pub use self::verify::{VerifyReport, verify};

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
    /// A segment has damage, so it cannot be rewritten (compaction) without loss.
    #[error("{0}; run `dictmon verify` — the segment is left as it is")]
    Damaged(Corruption),
    /// The catalog failed.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// The data directory, its segments folder or a file in it was removed or replaced under
    /// the writer: what it writes would be lost.
    #[error(
        "{0} was removed or replaced while dictmon wrote it; nothing more is written there (rows wait in memory) — restore the data directory from a copy and restart dictmon"
    )]
    Vanished(PathBuf),
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
    /// Leftover temporary files of an interrupted compaction or segment creation, removed.
    pub removed_temp_files: Vec<PathBuf>,
    /// Segments found damaged (§8), with what is wrong: opened anyway, never rewritten; their
    /// readable rows stay readable and new rows go to the month's next file (§7).
    pub damaged: Vec<(PathBuf, String)>,
    /// What the catalog and the segments disagreed on (§10.1), also recorded for `verify`.
    pub findings: Vec<String>,
    /// Segments older than the catalog's count of their rows — a data directory restored from
    /// a copy taken while a writer ran (§10.1) — with the rows counted after the copy.
    pub copied_behind: Vec<(PathBuf, u64)>,
}

/// The one writer of a data directory.
pub struct Store {
    dir: PathBuf,
    options: StoreOptions,
    catalog: Arc<Catalog>,
    /// Open segments, shared with the compactor.
    segments: Arc<Segments>,
    /// The background compactor, once started.
    compactor: Option<Compactor>,
    compaction: Arc<CompactionStats>,
    recovery: Recovery,
    /// (device, inode) of the data directory, `segments/` and `catalog.redb` when opened.
    place: [(PathBuf, (u64, u64)); 3],
    _lock: File,
}

/// What compaction has done since the writer opened (for metrics and logs).
#[derive(Debug, Default)]
pub struct CompactionStats {
    /// Runs merged into a sealed block.
    pub merged: AtomicU64,
    /// Compactions that failed (the segment is left as it was).
    pub failed: AtomicU64,
}

/// A thread that compacts in the background: woken after appends, and once a minute.
struct Compactor {
    wake: Arc<(Mutex<Wake>, Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[derive(Default)]
struct Wake {
    nudged: bool,
    stop: bool,
}

impl Drop for Compactor {
    fn drop(&mut self) {
        let (state, signal) = &*self.wake;
        state.lock().unwrap_or_else(PoisonError::into_inner).stop = true;
        signal.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Store {
    /// Opens a data directory for writing, creating it if needed: takes the lock, removes
    /// temporary files, cuts torn tails (§7), opens the catalog. Compaction runs only when
    /// asked ([`Self::compact`]) until [`Self::start_compactor`].
    pub fn open(dir: &Path, options: StoreOptions) -> Result<Self> {
        let segments_dir = dir.join(SEGMENTS_DIR);
        fs::create_dir_all(&segments_dir).map_err(io_err(&segments_dir))?;
        let lock = take_lock(dir)?;
        let mut recovery = Recovery::default();
        for entry in fs::read_dir(&segments_dir).map_err(io_err(&segments_dir))? {
            let path = entry.map_err(io_err(&segments_dir))?.path();
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
        let catalog_path = dir.join(CATALOG_FILE);
        let catalog_existed = catalog_path.exists();
        let catalog = Arc::new(Catalog::open(&catalog_path)?);
        // None: a catalog written before the ledger existed (§10.1).
        let ledger: Option<BTreeMap<String, catalog::SegmentRecord>> = catalog
            .ledger()?
            .map(|records| records.into_iter().collect());
        let mut open = BTreeMap::new();
        for id in list_segments(&segments_dir)? {
            let acknowledged = ledger
                .as_ref()
                .and_then(|l| l.get(&id.to_string()))
                .filter(|r| !r.retiring);
            open.insert(id, open_segment(dir, id, acknowledged, &mut recovery)?);
        }
        reconcile_ledger(
            dir,
            &catalog,
            ledger.as_ref(),
            catalog_existed,
            &open,
            &mut recovery,
        )?;
        let place = [dir.to_owned(), segments_dir.clone(), dir.join(CATALOG_FILE)].map(|p| {
            let id = identity(&p).unwrap_or_default();
            (p, id)
        });
        Ok(Self {
            catalog,
            place,
            dir: dir.to_owned(),
            options,
            segments: Arc::new(Segments {
                open: Mutex::new(open),
                compaction: Mutex::new(()),
            }),
            compactor: None,
            compaction: Arc::default(),
            recovery,
            _lock: lock,
        })
    }

    /// Starts compacting in the background (§6.3): a thread of its own, woken after every
    /// append and once a minute, that merges whatever is due (§6.3). Appends
    /// never wait for a merge, only for the final rename. Failures are logged, counted in
    /// [`Self::compaction_stats`] and retried at the next wake-up.
    pub fn start_compactor(&mut self) -> Result<()> {
        if self.compactor.is_some() {
            return Ok(());
        }
        let wake: Arc<(Mutex<Wake>, Condvar)> = Arc::default();
        let (segments, catalog, dir, counters, waker) = (
            self.segments.clone(),
            self.catalog.clone(),
            self.dir.clone(),
            self.compaction.clone(),
            wake.clone(),
        );
        let window = self.options.rate_window.span;
        let thread = std::thread::Builder::new()
            .name("dictmon-compactor".into())
            .spawn(move || {
                let (state, signal) = &*waker;
                let stopped = || state.lock().unwrap_or_else(PoisonError::into_inner).stop;
                loop {
                    {
                        let mut w = state.lock().unwrap_or_else(PoisonError::into_inner);
                        if !w.nudged && !w.stop {
                            w = signal
                                .wait_timeout(w, std::time::Duration::from_secs(60))
                                .unwrap_or_else(PoisonError::into_inner)
                                .0;
                        }
                        if w.stop {
                            return;
                        }
                        w.nudged = false;
                    }
                    compact_until_idle(
                        &segments,
                        &catalog,
                        &dir,
                        window,
                        &counters,
                        &stopped,
                        &mut |e| {
                            log_compaction_failure(&e);
                        },
                    );
                }
            })
            .map_err(io_err(&self.dir))?;
        self.compactor = Some(Compactor {
            wake,
            thread: Some(thread),
        });
        Ok(())
    }

    /// What compaction has done.
    pub fn compaction_stats(&self) -> Arc<CompactionStats> {
        self.compaction.clone()
    }

    /// Segments known to be damaged (§8): found so on open, or by a compaction.
    pub fn damaged_segments(&self) -> usize {
        compact::lock(&self.segments)
            .values()
            .filter(|seg| seg.damaged)
            .count()
    }

    /// Bytes of live blocks not yet compacted, in every open segment.
    pub fn live_bytes(&self) -> u64 {
        compact::lock(&self.segments)
            .values()
            .flat_map(|seg| &seg.blocks)
            .filter(|b| b.header.kind == BlockKind::Live)
            .map(|b| b.header.block_len())
            .sum()
    }

    fn nudge(&self) {
        if let Some(c) = &self.compactor {
            let (state, signal) = &*c.wake;
            state.lock().unwrap_or_else(PoisonError::into_inner).nudged = true;
            signal.notify_one();
        }
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
    pub fn catalog_handle(&self) -> Arc<Catalog> {
        self.catalog.clone()
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends one batch (typically one poll cycle): one live block per month it touches,
    /// fsynced before returning (§6.1). Never merges: compaction (§6.3) runs apart.
    pub fn append(&mut self, batch: &[StateRecord]) -> Result<()> {
        for (month, rows) in by_month(batch)? {
            self.write_block(month, BlockKind::Live, &rows)?;
        }
        self.nudge();
        Ok(())
    }

    /// Writes history as sealed blocks (bulk loads: backfill, import), appended like live
    /// blocks, at most 2²⁰ rows each; compaction merges them later. A
    /// `(policy, time)` already stored stays as it was (first occurrence wins, §5).
    pub fn append_sealed(&mut self, rows: &[StateRecord]) -> Result<()> {
        let max = usize::try_from(compact::MAX_BLOCK_ROWS).unwrap_or(usize::MAX);
        let first = rows.first().map(|r| Month::of(r.sample.at));
        if let Some(month) = first.filter(|m| within(rows, *m)) {
            // One month (an import's flush, a backfill's chunk): no copy of the rows.
            for chunk in rows.chunks(max) {
                self.write_block(month, BlockKind::Sealed, chunk)?;
            }
        } else {
            for (month, rows) in by_month(rows)? {
                for chunk in rows.chunks(max) {
                    self.write_block(month, BlockKind::Sealed, chunk)?;
                }
            }
        }
        self.nudge();
        Ok(())
    }

    /// §6.1: `rows` as one block at the end of its month's segment (created if needed, §6.2),
    /// in the segment's format version, fsynced when the options say so. A failed write is cut
    /// back and the segment reopened.
    fn write_block(&mut self, month: Month, kind: BlockKind, rows: &[StateRecord]) -> Result<()> {
        let mut open = compact::lock(&self.segments);
        self.check_place(&open)?;
        // The month's newest file; a damaged one is never appended to (§7): its successor is.
        let newest = open
            .range(
                SegmentId::first(month)..=SegmentId {
                    month,
                    part: u32::MAX,
                },
            )
            .next_back()
            .map(|(id, seg)| (*id, seg.damaged));
        let id = match newest {
            None => SegmentId::first(month),
            Some((id, false)) => id,
            Some((damaged, true)) => {
                let next = damaged.next();
                tracing::warn!(
                    damaged = %compact::segment_path(&self.dir, damaged).display(),
                    next = %compact::segment_path(&self.dir, next).display(),
                    "the month's segment is damaged: nothing is appended behind the damage; new rows go to a fresh file"
                );
                next
            }
        };
        let path = compact::segment_path(&self.dir, id);
        let seg = match open.entry(id) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => {
                if !path.exists() {
                    // §10.1: the ledger knows a segment before the segment exists.
                    self.catalog
                        .add_segment_rows(&id.to_string(), 0, None, true)?;
                }
                e.insert(open_segment(&self.dir, id, None, &mut self.recovery)?)
            }
        };
        let block = format::encode_block(kind, rows, self.options.rate_window.span, seg.version);
        let header = BlockHeader::decode(&block).map_err(|error| StoreError::Segment {
            path: path.clone(),
            error,
        })?;
        let end = seg.len;
        let fsync = self.options.fsync;
        let written = seg
            .file
            .write_all_at(&block, end)
            .and_then(|()| if fsync { seg.file.sync_data() } else { Ok(()) });
        if let Err(e) = written {
            // A full disk (ENOSPC), a read-only remount (EROFS) or EIO: the block may be
            // partly written. Cut it back (§6.1) so that the next append does not land
            // behind garbage, and drop the handle: the next append reopens the segment and
            // re-checks its tail (§7), which also covers a cut that failed.
            let _ = seg.file.set_len(end).and_then(|()| seg.file.sync_data());
            open.remove(&id);
            return Err(io_err(&path)(e));
        }
        seg.len = end + block.len() as u64;
        seg.blocks.push(BlockRef {
            offset: end,
            header,
        });
        // §10.1: counted once on disk. A failure here loses nothing (the rows are stored); the
        // bound only lags until the next count, and is logged.
        let file = file_identity(&seg.file);
        if let Err(e) =
            self.catalog
                .add_segment_rows(&id.to_string(), u64::from(header.rows), file, fsync)
        {
            tracing::warn!(error = %e, "catalog: could not count the rows just stored in the segment ledger; they are stored, and `verify` checks the segment against a lower count");
        }
        Ok(())
    }

    /// Checks that the data directory, `segments/`, the catalog and every open segment are
    /// still the files this writer opened (an `rm -rf` or a restore under a running `serve`
    /// would otherwise swallow every later write without an error).
    fn check_place(&self, open: &BTreeMap<SegmentId, OpenSegment>) -> Result<()> {
        use std::os::unix::fs::MetadataExt;
        for (path, id) in &self.place {
            if identity(path).ok() != Some(*id) {
                return Err(StoreError::Vanished(path.clone()));
            }
        }
        for (id, seg) in open {
            if seg.file.metadata().map_or(0, |m| m.nlink()) == 0 {
                return Err(StoreError::Vanished(compact::segment_path(&self.dir, *id)));
            }
        }
        Ok(())
    }

    /// `check_place`, for the monitor to call once a cycle even when nothing is
    /// written.
    pub fn check_in_place(&self) -> Result<()> {
        self.check_place(&compact::lock(&self.segments))
    }

    /// Merges, here and now, everything compaction would (§6.3), until nothing is due: the end
    /// of a bulk load, tests. A segment with damage is skipped (and reported).
    pub fn compact(&mut self) -> Result<()> {
        let window = self.options.rate_window.span;
        let mut first_error = None;
        compact_until_idle(
            &self.segments,
            &self.catalog,
            &self.dir,
            window,
            &self.compaction,
            &|| false,
            &mut |e| {
                first_error.get_or_insert(e);
            },
        );
        first_error.map_or(Ok(()), Err)
    }

    /// The time ranges `(min, max)`, in ns, of the blocks stored for `month`, from their
    /// headers: a row whose time is in none of them is not stored. None when a file of the
    /// month is damaged, so that only reading its rows can tell.
    pub fn stored_time_ranges(&self, month: Month) -> Option<Vec<(i64, i64)>> {
        let open = compact::lock(&self.segments);
        let mut ranges = Vec::new();
        for (_, seg) in open.range(
            SegmentId::first(month)..=SegmentId {
                month,
                part: u32::MAX,
            },
        ) {
            if seg.damaged {
                return None;
            }
            ranges.extend(
                seg.blocks
                    .iter()
                    .map(|b| (b.header.min_time_ns, b.header.max_time_ns)),
            );
        }
        Some(ranges)
    }

    /// The newest response time stored (from the blocks' headers; none when empty).
    pub fn newest_time(&self) -> Option<DateTime<Utc>> {
        compact::lock(&self.segments)
            .values()
            .flat_map(|seg| &seg.blocks)
            .map(|b| b.header.max_time_ns)
            .max()
            .map(DateTime::from_timestamp_nanos)
    }

    /// Applies retention (§9): deletes segments older than the `keep` months ending with the
    /// month of the reference time — the newest stored response time, or `now` if that is
    /// earlier (a local clock running ahead cannot age history) — oldest first, at most
    /// `max_months` of them (the rest are reported as deferred), and alerts resolved (and
    /// outbox events) before the oldest kept month. With `dry_run`, only reports.
    pub fn apply_retention(
        &mut self,
        now: DateTime<Utc>,
        keep: u32,
        max_months: Option<usize>,
        dry_run: bool,
    ) -> Result<RetentionReport> {
        let segments = self.dir.join(SEGMENTS_DIR);
        let files = list_segments(&segments)?;
        let mut present: Vec<Month> = files.iter().map(|id| id.month).collect();
        present.dedup();
        let reference = self.newest_time().map_or(now, |t| t.min(now));
        let mut doomed = month::to_delete(&present, Month::of(reference), keep);
        let deferred = doomed.split_off(max_months.unwrap_or(usize::MAX).min(doomed.len()));
        // Alerts and events go with the oldest month kept.
        let cutoff = present
            .iter()
            .find(|m| !doomed.contains(m))
            .copied()
            .unwrap_or(Month::of(reference))
            .min(Month::of(reference).minus(keep.max(1) - 1))
            .start();
        let mut report = RetentionReport {
            months: doomed.clone(),
            deferred,
            reference,
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
        {
            // Under the lock: a compaction of a doomed month is abandoned, never renamed back.
            let mut open = compact::lock(&self.segments);
            // Every file of a doomed month (§1: its parts).
            let gone: Vec<SegmentId> = files
                .iter()
                .filter(|id| doomed.contains(&id.month))
                .copied()
                .collect();
            let names: Vec<String> = gone.iter().map(ToString::to_string).collect();
            self.catalog.retire_segments(&names, false)?;
            for id in gone {
                open.remove(&id);
                let path = compact::segment_path(&self.dir, id);
                fs::remove_file(&path).map_err(io_err(&path))?;
            }
            sync_dir(&segments)?;
            self.catalog.retire_segments(&names, true)?;
        }
        if let Some(cutoff) = cutoff {
            report.alerts = self.catalog.delete_alerts_resolved_before(cutoff)?;
            report.events = self.catalog.delete_events_before(cutoff)?;
        }
        Ok(report)
    }
}

/// Runs compactions until nothing is due, `stop` says so, or one fails with anything but
/// damage (disk full… would fail again at once; a damaged segment is marked and skipped from
/// then on). Each failure is counted and handed to `failed`.
fn compact_until_idle(
    segments: &Segments,
    catalog: &Catalog,
    dir: &Path,
    window: chrono::TimeDelta,
    stats: &CompactionStats,
    stop: &dyn Fn() -> bool,
    failed: &mut dyn FnMut(StoreError),
) {
    while !stop() {
        match compact::compact_once(segments, dir, window, stop, catalog) {
            Ok(compact::Outcome::Idle) => return,
            Ok(compact::Outcome::Merged) => {
                stats.merged.fetch_add(1, Ordering::Relaxed);
            }
            Ok(compact::Outcome::Abandoned) => {}
            Err(e) => {
                stats.failed.fetch_add(1, Ordering::Relaxed);
                let damaged = matches!(e, StoreError::Damaged(_));
                failed(e);
                if !damaged {
                    return;
                }
            }
        }
    }
}

/// The compactor thread's report of a failed compaction.
fn log_compaction_failure(e: &StoreError) {
    if matches!(e, StoreError::Damaged(_)) {
        tracing::error!(error = %e, "compaction: the segment has damage; it is left as it is, no longer compacted nor appended to (the month's next rows go to a fresh file) — run `dictmon verify`");
    } else {
        tracing::error!(error = %e, "compaction failed; the segment is left as it was and compaction is retried at the next append");
    }
}

/// Opens (creating, §6.2) a segment and cuts its torn tail (§7). Damage never stops it (§8):
/// a segment with a damaged header, damaged blocks or regions the disk will not read back is
/// opened as damaged — never compacted, never cut — and what is readable stays readable; a
/// file shorter than a header holds no rows and is replaced by a fresh segment, its bytes
/// kept in `quarantine/`. Only a newer format version is refused. `acknowledged` is the
/// ledger's count of rows stored in it (§10.1): good blocks holding fewer is damage, and then
/// nothing at its end is taken for a torn tail.
fn open_segment(
    dir: &Path,
    id: SegmentId,
    acknowledged: Option<&catalog::SegmentRecord>,
    recovery: &mut Recovery,
) -> Result<OpenSegment> {
    let path = compact::segment_path(dir, id);
    if !path.exists() {
        create_segment(&path, id.month)?;
    }
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .map_err(io_err(&path))?;
    let file_len = file.metadata().map_err(io_err(&path))?.len();
    if file_len < format::SEGMENT_HEADER_LEN as u64 {
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io_err(&path))?;
        quarantine(dir, &path, &bytes, 0)?;
        recovery.damaged.push((
            path.clone(),
            format!(
                "{file_len} bytes, shorter than a segment header: no rows; replaced by a fresh segment (the bytes are in quarantine/)"
            ),
        ));
        drop(file);
        create_segment(&path, id.month)?;
        return open_segment(dir, id, None, recovery);
    }
    let (bytes, unreadable) = disk::read_tolerant(&file, file_len, disk::SECTOR);
    let mut problems: Vec<String> = unreadable
        .iter()
        .map(|u| {
            format!(
                "offset {}: {} bytes unreadable: {}",
                u.offset, u.len, u.error
            )
        })
        .collect();
    match SegmentHeader::decode(&bytes) {
        Err(error @ FormatError::UnsupportedVersion { .. }) => {
            return Err(StoreError::Segment { path, error });
        }
        Err(error) => problems.push(format!("offset 0: segment header: {error}")),
        Ok(_) => {}
    }
    let layout = segment::layout(&bytes);
    problems.extend(
        layout
            .damage
            .iter()
            .map(|d| format!("offset {}: {}", d.offset, d.error)),
    );
    // Every frame's checksum too (no decoding: CRCs over bytes already read), so that nothing
    // is appended behind a damaged frame either (§7).
    let version = format::payload_version(&bytes);
    for (index, block) in layout.blocks.iter().enumerate() {
        let (frames, _) = format::block_frames(segment::body(&bytes, block), version);
        if let Some(e) = frames.into_iter().find_map(std::result::Result::err) {
            problems.push(format!("offset {} (block {index}): {e}", block.offset));
        }
    }
    let good_rows = segment::rows_in(&layout.blocks);
    let mut missing = acknowledged.filter(|r| r.damaged).map(|r| r.rows);
    if let Some(record) = acknowledged.filter(|r| r.rows > good_rows) {
        if copied_before_count(&file, record) {
            recovery
                .copied_behind
                .push((path.clone(), record.rows - good_rows));
        } else {
            let what = missing_rows(good_rows, record.rows);
            recovery
                .findings
                .push(format!("{}: {what}, found by a writer", path.display()));
            problems.push(what);
            missing = Some(record.rows);
        }
    }
    let mut len = bytes.len() as u64;
    match &layout.torn_tail {
        // Zero-filled unreadable sectors can look like a torn tail, and so can acknowledged
        // blocks cut or zeroed (§7): never cut those.
        Some(torn) if !unreadable.is_empty() || missing.is_some() => {
            problems.push(format!("offset {}: {}", torn.offset, torn.error));
        }
        Some(torn) => {
            quarantine(dir, &path, &bytes, torn.offset)?;
            file.set_len(torn.offset).map_err(io_err(&path))?;
            file.sync_all().map_err(io_err(&path))?;
            recovery
                .torn_tails
                .push((path.clone(), torn.offset, torn.len));
            len = torn.offset;
        }
        None => {}
    }
    let damaged = !problems.is_empty();
    if damaged {
        recovery.damaged.push((path, problems.join("; ")));
    }
    Ok(OpenSegment {
        file,
        len,
        damaged,
        version: format::payload_version(&bytes),
        blocks: layout.blocks,
    })
}

/// §10.1: whether a segment is a copy taken before the catalog's: another file than the one
/// counted (a copy has its own inode), last modified before the last count (truncating or
/// zeroing the copy would have modified it). The file counted, holding fewer rows, is damaged.
fn copied_before_count(file: &File, record: &catalog::SegmentRecord) -> bool {
    let another_file = record
        .file
        .is_some_and(|counted| Some(counted) != file_identity(file));
    let modified = file
        .metadata()
        .and_then(|m| m.modified())
        .ok()
        .map(DateTime::<Utc>::from);
    another_file
        && modified
            .zip(record.counted_at)
            .is_some_and(|(m, counted)| m < counted)
}

/// §10.1: the problem of a segment whose good blocks hold fewer rows than the ledger counted.
fn missing_rows(good: u64, acknowledged: u64) -> String {
    format!(
        "{} acknowledged rows are missing: its readable blocks hold {good} rows where the catalog counted at least {acknowledged} (blocks cut off, zeroed or overwritten)",
        acknowledged - good
    )
}

/// §10.1, at a writer's open: records for segments the ledger did not know (all of them when
/// an older catalog starts keeping it), recorded as a finding unless that is the only reason;
/// forgets records retention left behind; reports records whose file is gone.
fn reconcile_ledger(
    dir: &Path,
    catalog: &Catalog,
    ledger: Option<&BTreeMap<String, catalog::SegmentRecord>>,
    catalog_existed: bool,
    open: &BTreeMap<SegmentId, OpenSegment>,
    recovery: &mut Recovery,
) -> Result<()> {
    let empty = BTreeMap::new();
    let known = ledger.unwrap_or(&empty);
    let mut adopt = Vec::new();
    let mut unknown = Vec::new();
    for (month, seg) in open {
        let name = month.to_string();
        let rows = segment::rows_in(&seg.blocks);
        let mut damaged = false;
        match known.get(&name) {
            // Counted higher than it holds: damage (a finding, from `open_segment`) or a
            // restored copy (a warning); either way the count starts again from what is there.
            Some(record) if !record.retiring && record.rows > rows => {
                let path = compact::segment_path(dir, *month);
                damaged = !recovery.copied_behind.iter().any(|(p, _)| *p == path);
            }
            Some(_) => continue,
            None if rows > 0 => unknown.push(format!("{name} ({rows} rows)")),
            None => {}
        }
        adopt.push((
            name,
            catalog::SegmentRecord {
                rows,
                retiring: false,
                damaged,
                file: file_identity(&seg.file),
                counted_at: Some(Utc::now()),
            },
        ));
    }
    let finding = if unknown.is_empty() {
        None
    } else if !catalog_existed {
        Some(format!(
            "catalog.redb was created afresh beside segments that hold rows: {}; the alerts, events and policy records written before were lost (catalog deleted or replaced?), the segments were adopted as they are",
            unknown.join(", ")
        ))
    } else if ledger.is_some() {
        Some(format!(
            "segments not known to the catalog: {}; adopted as they are (a catalog from another data directory or an older backup?)",
            unknown.join(", ")
        ))
    } else {
        // An older catalog: the ledger starts here.
        None
    };
    recovery.findings.extend(finding);
    if ledger.is_none() || !adopt.is_empty() || !recovery.findings.is_empty() {
        catalog.adopt_segments(&adopt, &recovery.findings)?;
    }
    let segments = dir.join(SEGMENTS_DIR);
    let mut finished = Vec::new();
    for (name, record) in known {
        let id: Option<SegmentId> = name.parse().ok();
        if id.is_some_and(|id| open.contains_key(&id)) {
            continue;
        }
        if record.retiring || record.rows == 0 {
            finished.push(name.clone());
        } else {
            recovery.damaged.push((
                segments.join(format!("{name}.seg")),
                format!(
                    "missing: the catalog counted {} rows in it (deleted outside retention?)",
                    record.rows
                ),
            ));
        }
    }
    if !finished.is_empty() {
        catalog.retire_segments(&finished, true)?;
    }
    Ok(())
}

fn quarantine(dir: &Path, segment: &Path, bytes: &[u8], from: u64) -> Result<()> {
    let dir = dir.join(QUARANTINE_DIR);
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

/// What retention deleted (or would delete).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetentionReport {
    /// Segments, oldest first.
    pub months: Vec<Month>,
    /// Segments past the window left for a later run (more than `max_months` were due).
    pub deferred: Vec<Month>,
    /// The time ages were measured from: the newest stored response time, or the local clock
    /// if earlier.
    pub reference: DateTime<Utc>,
    /// Resolved alerts.
    pub alerts: usize,
    /// Outbox events (not counted in a dry run).
    pub events: usize,
}

fn by_month(rows: &[StateRecord]) -> Result<BTreeMap<Month, Vec<StateRecord>>> {
    check_times(rows)?;
    let mut out: BTreeMap<Month, Vec<StateRecord>> = BTreeMap::new();
    for r in rows {
        out.entry(Month::of(r.sample.at))
            .or_default()
            .push(r.clone());
    }
    Ok(out)
}

/// Whether every row is of `month`, with times in the nanosecond range the format stores.
fn within(rows: &[StateRecord], month: Month) -> bool {
    // Times compared as times (cheaper than converting each): the month's bounds, and the
    // bounds of the nanosecond range.
    let in_range = |t: &DateTime<Utc>| t.timestamp_nanos_opt().is_some().then_some(*t);
    let (Some(start), Some(end)) = (
        month.start().as_ref().and_then(in_range),
        month.next().start().as_ref().and_then(in_range),
    ) else {
        return false;
    };
    let (first, last) = (
        DateTime::from_timestamp_nanos(i64::MIN),
        DateTime::from_timestamp_nanos(i64::MAX),
    );
    rows.iter()
        .all(|r| (start..end).contains(&r.sample.at) && (first..=last).contains(&r.created_at))
}

/// Every row's times are within the nanosecond range the format stores.
fn check_times(rows: &[StateRecord]) -> Result<()> {
    match rows.iter().find(|r| {
        r.sample.at.timestamp_nanos_opt().is_none() || r.created_at.timestamp_nanos_opt().is_none()
    }) {
        Some(r) => Err(StoreError::TimeOutOfRange(r.sample.at)),
        None => Ok(()),
    }
}

/// A file's (device, inode).
fn identity(path: &Path) -> io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    fs::metadata(path).map(|m| (m.dev(), m.ino()))
}

/// An open file's (device, inode).
pub(super) fn file_identity(file: &File) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    file.metadata().ok().map(|m| (m.dev(), m.ino()))
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

/// The segment files of `segments/` (§1), in order: by month, then part.
fn list_segments(segments: &Path) -> Result<Vec<SegmentId>> {
    if !segments.exists() {
        return Ok(Vec::new());
    }
    let mut ids = Vec::new();
    for entry in fs::read_dir(segments).map_err(io_err(segments))? {
        let path = entry.map_err(io_err(segments))?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if let Some(id) = name.strip_suffix(".seg").and_then(|m| m.parse().ok()) {
            ids.push(id);
        }
    }
    ids.sort_unstable();
    Ok(ids)
}

/// Reads a data directory without locking it.
pub struct StoreReader {
    dir: PathBuf,
}

impl StoreReader {
    /// A reader of `dir`. Fails if it is not a data directory, or one this user may not read.
    pub fn open(dir: &Path) -> Result<Self> {
        let segments = dir.join(SEGMENTS_DIR);
        let refused = |path: PathBuf, what: &str| StoreError::Io {
            path,
            error: io::Error::new(io::ErrorKind::PermissionDenied, what.to_owned()),
        };
        match fs::metadata(&segments) {
            Ok(m) if m.is_dir() => {}
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                return Err(refused(
                    dir.to_owned(),
                    "permission denied: the data directory is readable by its owner and group \
                     only; ask for membership of its group (on a packaged install: usermod -aG \
                     dictmon USER, then log in again)",
                ));
            }
            _ => {
                return Err(StoreError::Io {
                    path: segments,
                    error: io::Error::new(
                        io::ErrorKind::NotFound,
                        "not a dictmon data directory (no segments/ folder); check --data-dir",
                    ),
                });
            }
        }
        Ok(Self {
            dir: dir.to_owned(),
        })
    }

    /// The months present, oldest first.
    pub fn months(&self) -> Result<Vec<Month>> {
        let mut months: Vec<Month> = self.segments()?.into_iter().map(|id| id.month).collect();
        months.dedup();
        Ok(months)
    }

    /// The segment files present (§1: a month's parts), oldest first.
    pub fn segments(&self) -> Result<Vec<SegmentId>> {
        list_segments(&self.dir.join(SEGMENTS_DIR))
    }

    /// The newest response time stored, from the newest segment's block headers (none when
    /// there is none).
    pub fn newest_time(&self) -> Result<Option<DateTime<Utc>>> {
        for id in self.segments()?.into_iter().rev() {
            let Some((bytes, _)) = read_segment(&self.segment_path(id))? else {
                continue;
            };
            let newest = segment::layout(&bytes)
                .blocks
                .iter()
                .map(|b| b.header.max_time_ns)
                .max();
            if let Some(ns) = newest {
                return Ok(Some(DateTime::from_timestamp_nanos(ns)));
            }
        }
        Ok(None)
    }

    /// The path of a segment file.
    pub fn segment_path(&self, id: SegmentId) -> PathBuf {
        compact::segment_path(&self.dir, id)
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
        self.scan_rows(filter, &mut |_, rows| rows.drain(..).for_each(&mut *sink))
    }

    /// [`Self::scan`] of what forensics reads of each row, a policy frame's rows at a time
    /// (the sink may take them): the derived columns it does not read are not decoded.
    pub fn scan_readings(
        &self,
        filter: &Filter,
        sink: &mut dyn FnMut(&PolicyName, &mut Vec<Reading>),
    ) -> Result<Vec<Corruption>> {
        self.scan_rows(filter, sink)
    }

    fn scan_rows<R: segment::Row>(
        &self,
        filter: &Filter,
        sink: &mut dyn FnMut(&PolicyName, &mut Vec<R>),
    ) -> Result<Vec<Corruption>> {
        let mut problems = Vec::new();
        for month in self.months_for(filter)? {
            problems.extend(self.scan_month_rows(month, filter, sink)?);
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

    /// [`Self::scan`] of one month: each of its files in turn (nothing when they are gone).
    pub fn scan_month(
        &self,
        month: Month,
        filter: &Filter,
        sink: &mut dyn FnMut(StateRecord),
    ) -> Result<Vec<Corruption>> {
        self.scan_month_rows(month, filter, &mut |_, rows| {
            rows.drain(..).for_each(&mut *sink);
        })
    }

    fn scan_month_rows<R: segment::Row>(
        &self,
        month: Month,
        filter: &Filter,
        sink: &mut dyn FnMut(&PolicyName, &mut Vec<R>),
    ) -> Result<Vec<Corruption>> {
        let mut problems = Vec::new();
        for id in self.segments()?.into_iter().filter(|id| id.month == month) {
            let path = self.segment_path(id);
            // None: deleted by retention between listing and reading.
            let Some((bytes, unreadable)) = read_segment(&path)? else {
                continue;
            };
            problems.extend(unreadable);
            problems.extend(segment::read_rows_of(&path, &bytes, filter, sink));
        }
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

/// Number and total bytes of the segment files of a data directory (one listing).
pub fn segment_stats(dir: &Path) -> Result<(usize, u64)> {
    let reader = StoreReader::open(dir)?;
    let files = reader.segments()?;
    let mut total = 0;
    for id in &files {
        let path = reader.segment_path(*id);
        total += fs::metadata(&path).map_err(io_err(&path))?.len();
    }
    Ok((files.len(), total))
}

/// Total bytes of the segment files of a data directory.
pub fn segment_bytes(dir: &Path) -> Result<u64> {
    segment_stats(dir).map(|(_, bytes)| bytes)
}
