//! Compaction (§6.3): which consecutive blocks of a segment to merge next ([`plan`]), and the
//! rewrite that replaces them with one sealed block ([`compact_once`]).
//!
//! Invariants: the work and memory of one compaction are bounded by [`MAX_BLOCK_ROWS`] rows
//! (merged one policy at a time) whatever the month holds; blocks outside the merged run are
//! copied byte for byte, never decoded; the segment is replaced only by the rename of a
//! complete, fsynced file, and the writer's lock is held only for the last step (copying what
//! was appended meanwhile, fsync, rename), so a poll cycle never waits for the merge itself; a
//! segment with damage is never rewritten.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::ops::Range;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::TimeDelta;

use super::catalog::Catalog;
use super::format::{self, BlockHeader, BlockKind};
use super::segment::BlockRef;
use super::{Result, SegmentId, StoreError, io_err, sync_dir, temp_path};

/// Live rows of a segment that are compacted even before their hour closes (at 1,000 policies
/// polled every 10 s, about every 11 minutes).
pub const LIVE_ROWS: u64 = 65_536;
/// Most rows a compaction merges into one sealed block (at 29 policies polled every 10 s, about
/// four days; a whole month at 5 minutes).
pub const MAX_BLOCK_ROWS: u64 = 1 << 20;
/// Most rows per policy (on average) in one sealed block: bounds the memory of a merge, which
/// holds one policy's rows at a time, for stores with few policies polled fast.
pub const MAX_ROWS_PER_POLICY: u64 = 1 << 16;

/// A segment a writer has open.
pub(super) struct OpenSegment {
    /// Read and write handle on the file now at the segment's path.
    pub file: File,
    /// End of the last good block: where the next block goes.
    pub len: u64,
    /// Good blocks, in file order.
    pub blocks: Vec<BlockRef>,
    /// Damage was found in it (§8): it is never rewritten.
    pub damaged: bool,
    /// The format version its blocks are written in (§13): its header's.
    pub version: u16,
}

/// The segments a writer has open, shared by the appender and the compactor.
#[derive(Default)]
pub(super) struct Segments {
    /// The segments, by month; held briefly (an append, a plan, a swap).
    pub open: Mutex<BTreeMap<SegmentId, OpenSegment>>,
    /// Held through a whole compaction: one at a time, whoever asks (the background thread,
    /// [`super::Store::compact`]), since both would write the same temporary file.
    pub compaction: Mutex<()>,
}

fn hour(ns: i64) -> i64 {
    ns.div_euclid(3_600_000_000_000)
}

fn fits(blocks: &[BlockRef]) -> bool {
    let rows = super::segment::rows_in(blocks);
    let policies = blocks
        .iter()
        .map(|b| u64::from(b.header.policies))
        .max()
        .unwrap_or(1);
    fits_totals(rows, policies)
}

/// Whether a block of `rows` rows over `policies` policies is within the caps.
fn fits_totals(rows: u64, policies: u64) -> bool {
    rows <= MAX_BLOCK_ROWS && rows / policies.max(1) <= MAX_ROWS_PER_POLICY
}

/// The next run of consecutive blocks to merge into one sealed block, if any (§6.3):
///
/// 1. Live blocks whose hour has closed (an hour before that of the segment's newest live
///    block; every hour once the month is `closed`), or a run of live blocks holding
///    [`LIVE_ROWS`] rows — up to [`MAX_BLOCK_ROWS`].
/// 2. Two adjacent sealed blocks, newest first, that fit in one block and where the older is
///    at most twice the newer (size tiers: each row is rewritten about log₂ of the block size
///    over an hour's times); once the month is closed, any two that fit.
pub fn plan(blocks: &[BlockRef], closed: bool) -> Option<Range<usize>> {
    let newest_hour = blocks
        .iter()
        .filter(|b| b.header.kind == BlockKind::Live)
        .map(|b| hour(b.header.max_time_ns))
        .max();
    let mut i = 0;
    while i < blocks.len() {
        if blocks
            .get(i)
            .is_some_and(|b| b.header.kind == BlockKind::Live)
        {
            let start = i;
            let mut end = i;
            let (mut rows, mut policies) = (0_u64, 1_u64);
            let mut due_end = i;
            // Cut: followed by a block that is not live, or by the size cap. Nothing will
            // join such a run, so all of it is due. (Totals kept as it grows: a run of an
            // hour at 1 s is 3,600 blocks, planned after every append.)
            let mut cut = false;
            while let Some(b) = blocks.get(end) {
                let more = rows + u64::from(b.header.rows);
                let wider = policies.max(u64::from(b.header.policies));
                if b.header.kind != BlockKind::Live || !fits_totals(more, wider) {
                    cut = true;
                    break;
                }
                (rows, policies) = (more, wider);
                end += 1;
                if closed || Some(hour(b.header.max_time_ns)) < newest_hour {
                    due_end = end;
                }
            }
            if cut || rows >= LIVE_ROWS {
                due_end = end;
            }
            if due_end > start {
                return Some(start..due_end);
            }
            i = end.max(i + 1);
        } else {
            i += 1;
        }
    }
    (1..blocks.len()).rev().find_map(|j| {
        let pair = blocks.get(j - 1..=j)?;
        let [older, newer] = pair else { return None };
        let sealed =
            older.header.kind == BlockKind::Sealed && newer.header.kind == BlockKind::Sealed;
        let tiered = closed || older.header.rows <= newer.header.rows.saturating_mul(2);
        (sealed && tiered && fits(pair)).then_some(j - 1..j + 1)
    })
}

/// Why a compaction stopped short.
pub enum Outcome {
    /// Nothing was due.
    Idle,
    /// One run was merged.
    Merged,
    /// The segment changed under it (deleted, replaced): nothing done, try again.
    Abandoned,
}

/// A due run, as planned under the lock.
struct Job {
    id: SegmentId,
    path: PathBuf,
    /// Block indices of the run, and the blocks themselves (checked again before the swap).
    run: Range<usize>,
    blocks: Vec<BlockRef>,
    /// Bytes of the run in the file.
    start: u64,
    end: u64,
    /// Length of the segment when planned.
    len: u64,
    /// Identity of the file when planned.
    ino: u64,
    /// The segment's format version.
    version: u16,
}

/// Finds the first due run (oldest month first) and merges it: see the module's invariants.
/// `stop` is asked before the final step; a stopped compaction leaves the segment as it was.
pub(super) fn compact_once(
    segments: &Segments,
    dir: &Path,
    rate_window: TimeDelta,
    stop: &dyn Fn() -> bool,
    catalog: &Catalog,
) -> Result<Outcome> {
    let _one = segments
        .compaction
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let Some(job) = next_job(segments, dir)? else {
        return Ok(Outcome::Idle);
    };
    let src = match File::open(&job.path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Outcome::Abandoned),
        Err(e) => return Err(io_err(&job.path)(e)),
    };
    if src.metadata().map_err(io_err(&job.path))?.ino() != job.ino {
        return Ok(Outcome::Abandoned);
    }
    let merged = match merge(&src, &job, rate_window) {
        Ok(merged) => merged,
        Err(e) => {
            if matches!(e, StoreError::Damaged(_))
                && let Some(seg) = lock(segments).get_mut(&job.id)
            {
                seg.damaged = true;
            }
            return Err(e);
        }
    };
    let tmp = temp_path(&job.path);
    let written = (|| {
        let out = File::create(&tmp)?;
        copy_range(&src, 0..job.start, &out, 0)?;
        out.write_all_at(&merged, job.start)?;
        copy_range(
            &src,
            job.end..job.len,
            &out,
            job.start + merged.len() as u64,
        )?;
        out.sync_data()?;
        Ok::<_, io::Error>(out)
    })();
    let out = match written {
        Ok(out) if !stop() => out,
        Ok(_) => {
            let _ = fs::remove_file(&tmp);
            return Ok(Outcome::Abandoned);
        }
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            return Err(io_err(&tmp)(e));
        }
    };
    swap(segments, &job, &src, &out, &tmp, &merged, catalog)
}

/// Plans the next due run, under the lock.
fn next_job(segments: &Segments, dir: &Path) -> Result<Option<Job>> {
    let open = lock(segments);
    let newest = open.keys().next_back().map(|id| id.month);
    let Some((id, run, seg)) = open.iter().find_map(|(m, seg)| {
        // A month is closed once a later one has a segment.
        let closed = Some(m.month) < newest;
        (!seg.damaged)
            .then(|| plan(&seg.blocks, closed))
            .flatten()
            .map(|run| (*m, run, seg))
    }) else {
        return Ok(None);
    };
    let blocks = seg.blocks.get(run.clone()).unwrap_or_default().to_vec();
    let (Some(first), Some(last)) = (blocks.first(), blocks.last()) else {
        return Ok(None);
    };
    let path = segment_path(dir, id);
    let ino = seg.file.metadata().map_err(io_err(&path))?.ino();
    Ok(Some(Job {
        id,
        start: first.offset,
        end: last.offset + last.header.block_len(),
        path,
        run,
        blocks,
        len: seg.len,
        ino,
        version: seg.version,
    }))
}

/// Reads the run's blocks and merges them into one sealed block (memory: the run's bytes and
/// one policy's rows).
fn merge(src: &File, job: &Job, rate_window: TimeDelta) -> Result<Vec<u8>> {
    let mut region = vec![0_u8; usize::try_from(job.end - job.start).unwrap_or(0)];
    src.read_exact_at(&mut region, job.start)
        .map_err(io_err(&job.path))?;
    let inputs: Vec<&[u8]> = job
        .blocks
        .iter()
        .map(|b| {
            let from = usize::try_from(b.offset - job.start).unwrap_or(usize::MAX);
            let to = from.saturating_add(usize::try_from(b.header.block_len()).unwrap_or(0));
            region.get(from..to).unwrap_or_default()
        })
        .collect();
    format::merge_blocks(&inputs, rate_window, job.version).map_err(|error| {
        StoreError::Damaged(super::Corruption {
            file: job.path.clone(),
            offset: job.start,
            block: job.run.start,
            error,
        })
    })
}

/// The last step, under the lock: what was appended since the plan, fsync, rename, reopen,
/// and the segment's block list updated. Abandoned if the segment changed meanwhile.
fn swap(
    segments: &Segments,
    job: &Job,
    src: &File,
    out: &File,
    tmp: &Path,
    merged: &[u8],
    catalog: &Catalog,
) -> Result<Outcome> {
    let mut open = lock(segments);
    let same = open.get(&job.id).is_some_and(|seg| {
        seg.file.metadata().map(|m| m.ino()).ok() == Some(job.ino)
            && seg.len >= job.len
            && seg.blocks.get(job.run.clone()) == Some(job.blocks.as_slice())
    });
    let Some(seg) = open.get_mut(&job.id).filter(|_| same) else {
        let _ = fs::remove_file(tmp);
        return Ok(Outcome::Abandoned);
    };
    // The merged block is usually smaller than the run, but need not be (zstd's own overhead
    // on tiny frames): every later offset moves by the difference, either way.
    let old_len = job.end - job.start;
    let new_len = merged.len() as u64;
    let moved = |offset: u64| offset - old_len + new_len;
    let header = BlockHeader::decode(merged).map_err(|error| StoreError::Segment {
        path: job.path.clone(),
        error,
    })?;
    // §10.1: rows the merge dropped as duplicates leave the ledger's count before they leave
    // the file, so that the count never exceeds what is stored.
    let dropped = job
        .blocks
        .iter()
        .map(|b| u64::from(b.header.rows))
        .sum::<u64>()
        .saturating_sub(u64::from(header.rows));
    if dropped > 0
        && let Err(e) = catalog.lower_segment_rows(&job.id.to_string(), dropped)
    {
        let _ = fs::remove_file(tmp);
        return Err(e.into());
    }
    let swapped = (|| {
        copy_range(src, job.len..seg.len, out, moved(job.len))?;
        out.sync_data()?;
        fs::rename(tmp, &job.path)
    })();
    if let Err(e) = swapped {
        let _ = fs::remove_file(tmp);
        return Err(io_err(&job.path)(e));
    }
    // Renamed: from here the new file is the segment, whatever fails next.
    let synced = sync_dir(job.path.parent().unwrap_or(Path::new(".")));
    let reopened = OpenOptions::new().read(true).write(true).open(&job.path);
    let Ok(file) = reopened else {
        // The next append reopens it (and checks it, §7).
        open.remove(&job.id);
        synced?;
        return reopened.map(|_| Outcome::Merged).map_err(io_err(&job.path));
    };
    if let Some(id) = super::file_identity(&file)
        && let Err(e) = catalog.set_segment_file(&job.id.to_string(), id)
    {
        tracing::warn!(error = %e, "catalog: could not record the compacted segment's file in the ledger");
    }
    seg.file = file;
    seg.len = moved(seg.len);
    let after: Vec<BlockRef> = seg
        .blocks
        .get(job.run.end..)
        .unwrap_or_default()
        .iter()
        .map(|b| BlockRef {
            offset: moved(b.offset),
            header: b.header,
        })
        .collect();
    seg.blocks.truncate(job.run.start);
    seg.blocks.push(BlockRef {
        offset: job.start,
        header,
    });
    seg.blocks.extend(after);
    synced.map(|()| Outcome::Merged)
}

/// Copies bytes `range` of `src` to `dst` at `at`, a mebibyte at a time.
fn copy_range(src: &File, range: Range<u64>, dst: &File, at: u64) -> io::Result<()> {
    let mut buf = vec![0_u8; 1 << 20];
    let mut pos = range.start;
    while pos < range.end {
        let n = usize::try_from(range.end - pos)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let chunk = buf.get_mut(..n).unwrap_or_default();
        src.read_exact_at(chunk, pos)?;
        dst.write_all_at(chunk, at + (pos - range.start))?;
        pos += n as u64;
    }
    Ok(())
}

pub(super) fn lock(
    segments: &Segments,
) -> std::sync::MutexGuard<'_, BTreeMap<SegmentId, OpenSegment>> {
    // A panic while holding the lock leaves the map as consistent as any crash would.
    segments
        .open
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub(super) fn segment_path(dir: &Path, id: SegmentId) -> PathBuf {
    dir.join(super::SEGMENTS_DIR).join(id.file_name())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(kind: BlockKind, hour: i64, rows: u32) -> BlockRef {
        let ns = hour * 3_600_000_000_000 + 1;
        BlockRef {
            offset: 0,
            header: BlockHeader {
                body_len: 0,
                min_time_ns: ns,
                max_time_ns: ns,
                rows,
                policies: 29,
                kind,
            },
        }
    }

    use BlockKind::{Live, Sealed};

    #[test]
    fn live_blocks_wait_for_their_hour_to_close() {
        let blocks = [block(Live, 5, 29), block(Live, 5, 29)];
        assert_eq!(plan(&blocks, false), None);
        assert_eq!(plan(&blocks, true), Some(0..2));
        let blocks = [block(Sealed, 3, 29), block(Live, 5, 29), block(Live, 6, 29)];
        assert_eq!(plan(&blocks, false), Some(1..2));
        // A live run followed by a bulk load's sealed block is closed.
        let blocks = [block(Live, 5, 29), block(Sealed, 5, 29), block(Live, 5, 29)];
        assert_eq!(plan(&blocks, false), Some(0..1));
    }

    #[test]
    fn many_live_rows_are_compacted_before_the_hour_closes() {
        let blocks = vec![block(Live, 5, 1_000); 66];
        assert_eq!(plan(&blocks, false), Some(0..66));
    }

    #[test]
    fn sealed_blocks_merge_by_size_tiers_up_to_the_cap() {
        assert_eq!(
            plan(&[block(Sealed, 1, 100), block(Sealed, 2, 100)], false),
            Some(0..2)
        );
        assert_eq!(
            plan(&[block(Sealed, 1, 300), block(Sealed, 2, 100)], false),
            None
        );
        assert_eq!(
            plan(&[block(Sealed, 1, 300), block(Sealed, 2, 100)], true),
            Some(0..2)
        );
        let big = u32::try_from(MAX_BLOCK_ROWS).unwrap_or(u32::MAX);
        assert_eq!(
            plan(&[block(Sealed, 1, big), block(Sealed, 2, big)], true),
            None
        );
    }
}
