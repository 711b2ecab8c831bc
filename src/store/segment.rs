//! One segment file: walking its blocks (§5), telling a torn tail from corruption (§7, §8), and
//! reading rows with block and frame skipping.
//!
//! Invariants: a block is returned only if its header checksum verifies and its body lies
//! wholly inside the file; a frame's rows are returned only if the frame checksum verifies.
//! Nothing here writes; see `store::Store` for the write protocol.

#![deny(clippy::indexing_slicing, clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::domain::{PolicyName, Reading, StateRecord};

use super::format::{
    self, BLOCK_HEADER_LEN, BLOCK_MAGIC, BlockHeader, BlockKind, FormatError, Frame,
    SEGMENT_HEADER_LEN, SegmentHeader,
};

/// A block found in a segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockRef {
    /// Byte offset of the block header in the file.
    pub offset: u64,
    /// The block's header.
    pub header: BlockHeader,
}

/// A damaged region found while walking a segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Damage {
    /// Byte offset where it starts.
    pub offset: u64,
    /// Bytes it spans (up to the next good block, or the end of the file).
    pub len: u64,
    /// What is wrong.
    pub error: FormatError,
}

/// The result of walking a segment's bytes.
#[derive(Clone, Debug, Default)]
pub struct Layout {
    /// Good blocks, in file order.
    pub blocks: Vec<BlockRef>,
    /// Damaged regions between good blocks.
    pub damage: Vec<Damage>,
    /// A region at the end that holds no good block: an interrupted append (§7).
    pub torn_tail: Option<Damage>,
}

/// Walks the blocks after the segment header. A region that does not parse is searched for the
/// next block header whose checksum verifies; if there is none and the region looks like an
/// interrupted append (`is_torn`), it is the torn tail, else damage up to the end.
pub fn layout(bytes: &[u8]) -> Layout {
    let mut out = Layout::default();
    let len = bytes.len() as u64;
    let mut pos = SEGMENT_HEADER_LEN as u64;
    while pos < len {
        match block_at(bytes, pos) {
            Ok(header) => {
                out.blocks.push(BlockRef {
                    offset: pos,
                    header,
                });
                pos += header.block_len();
            }
            Err(error) => {
                let next = next_block_start(bytes, pos + 1);
                let damage = Damage {
                    offset: pos,
                    len: next.unwrap_or(len) - pos,
                    error,
                };
                match next {
                    Some(next) => {
                        out.damage.push(damage);
                        pos = next;
                    }
                    None if is_torn(bytes, pos, &damage.error) => {
                        out.torn_tail = Some(damage);
                        break;
                    }
                    None => {
                        out.damage.push(damage);
                        break;
                    }
                }
            }
        }
    }
    out
}

/// §7: what an interrupted append leaves at the end of a file — a block header cut short, a
/// block shorter than its (checksummed) header says, or pages never written (zeros). A
/// complete block that fails a checksum is corruption, not a torn tail.
fn is_torn(bytes: &[u8], pos: u64, error: &FormatError) -> bool {
    let rest = usize::try_from(pos)
        .ok()
        .and_then(|p| bytes.get(p..))
        .unwrap_or_default();
    matches!(error, FormatError::Truncated(_)) || rest.iter().all(|&b| b == 0)
}

fn block_at(bytes: &[u8], pos: u64) -> Result<BlockHeader, FormatError> {
    let at = usize::try_from(pos).map_err(|_| FormatError::Truncated("block"))?;
    let rest = bytes
        .get(at..)
        .ok_or(FormatError::Truncated("block header"))?;
    let header = BlockHeader::decode(rest)?;
    if header.block_len() > rest.len() as u64 {
        return Err(FormatError::Truncated("block body"));
    }
    Ok(header)
}

fn next_block_start(bytes: &[u8], from: u64) -> Option<u64> {
    let from = usize::try_from(from).ok()?;
    let hay = bytes.get(from..)?;
    hay.windows(BLOCK_MAGIC.len())
        .enumerate()
        .filter(|(_, w)| *w == BLOCK_MAGIC)
        .map(|(i, _)| (from + i) as u64)
        .find(|&at| block_at(bytes, at).is_ok())
}

/// Rows in `blocks`, by their headers (what the segment ledger counts, §10.1).
pub fn rows_in(blocks: &[BlockRef]) -> u64 {
    blocks.iter().map(|b| u64::from(b.header.rows)).sum()
}

/// The body bytes of a block.
pub fn body<'a>(bytes: &'a [u8], block: &BlockRef) -> &'a [u8] {
    let start = block.offset as usize + BLOCK_HEADER_LEN;
    bytes
        .get(start..start + block.header.body_len as usize)
        .unwrap_or_default()
}

/// What to read.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// Only these policies; all when none.
    pub policies: Option<BTreeSet<PolicyName>>,
    /// Response time at or after this (ns since the epoch).
    pub since_ns: Option<i64>,
    /// Response time before this.
    pub until_ns: Option<i64>,
    /// Decode on the calling thread only, each row handed on as its frame is decoded: memory is
    /// one frame's columns, not the decoded frames that wait for the sink in parallel reading
    /// (a sealed block's frame is up to 2^16 rows on average). For readers that must stay
    /// small more than fast: `serve`'s start-up reload.
    pub sequential: bool,
}

impl Filter {
    fn skips_block(&self, h: &BlockHeader) -> bool {
        self.since_ns.is_some_and(|s| h.max_time_ns < s)
            || self.until_ns.is_some_and(|u| h.min_time_ns >= u)
    }

    fn wants_policy(&self, name: &str) -> bool {
        self.policies
            .as_ref()
            .is_none_or(|set| set.iter().any(|p| p.as_str() == name))
    }

    fn wants_time(&self, ns: i64) -> bool {
        self.since_ns.is_none_or(|s| ns >= s) && self.until_ns.is_none_or(|u| ns < u)
    }
}

/// Whether any two blocks' time ranges overlap.
fn overlapping(blocks: &[BlockRef]) -> bool {
    let mut ranges: Vec<(i64, i64)> = blocks
        .iter()
        .map(|b| (b.header.min_time_ns, b.header.max_time_ns))
        .collect();
    ranges.sort_unstable();
    ranges.windows(2).any(|w| matches!(w, [a, b] if a.1 >= b.0))
}

/// A problem met while reading, located precisely.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{file}: offset {offset} (block {block}): {error}")]
pub struct Corruption {
    /// The segment file.
    pub file: PathBuf,
    /// Byte offset of the block (or damaged region).
    pub offset: u64,
    /// Index of the block in the file (counting good blocks before it).
    pub block: usize,
    /// What is wrong.
    pub error: FormatError,
}

/// What a reader decodes each policy frame's rows into: whole records, or only what
/// forensics reads of them.
pub trait Row: Send + Sized + 'static {
    /// Decodes a policy frame, handing each row to `emit`; nothing is emitted unless the whole
    /// frame decodes.
    fn decode(
        frame: &Frame<'_>,
        cycles: &format::Cycles,
        buf: &mut format::FrameBuffer,
        version: u16,
        emit: &mut dyn FnMut(Self),
    ) -> Result<(), FormatError>;

    /// [`Self::decode`] into `out`, cleared first (empty if the frame does not decode).
    fn decode_into(
        frame: &Frame<'_>,
        cycles: &format::Cycles,
        buf: &mut format::FrameBuffer,
        version: u16,
        out: &mut Vec<Self>,
    ) -> Result<(), FormatError> {
        out.clear();
        Self::decode(frame, cycles, buf, version, &mut |row| out.push(row))
    }

    /// The row's response time, ns since the epoch.
    fn response_ns(&self) -> i64;

    /// Emptied vectors of rows kept from one read to the next ([`keep_read_buffers`]).
    fn spare() -> &'static std::sync::Mutex<Vec<Vec<Self>>>;
}

impl Row for StateRecord {
    fn decode(
        frame: &Frame<'_>,
        cycles: &format::Cycles,
        buf: &mut format::FrameBuffer,
        version: u16,
        emit: &mut dyn FnMut(Self),
    ) -> Result<(), FormatError> {
        format::decode_policy_each(frame, cycles, buf, version, &mut |row, _| emit(row))
    }

    fn response_ns(&self) -> i64 {
        // Stored samples passed validation, which guarantees the nanosecond range.
        self.sample.at.timestamp_nanos_opt().unwrap_or(i64::MAX)
    }

    fn spare() -> &'static std::sync::Mutex<Vec<Vec<Self>>> {
        static SPARE: std::sync::Mutex<Vec<Vec<StateRecord>>> = std::sync::Mutex::new(Vec::new());
        &SPARE
    }
}

impl Row for Reading {
    fn decode(
        frame: &Frame<'_>,
        cycles: &format::Cycles,
        buf: &mut format::FrameBuffer,
        version: u16,
        emit: &mut dyn FnMut(Self),
    ) -> Result<(), FormatError> {
        format::decode_policy_readings_each(frame, cycles, buf, version, &mut |r, _| emit(r))
    }

    fn decode_into(
        frame: &Frame<'_>,
        cycles: &format::Cycles,
        buf: &mut format::FrameBuffer,
        version: u16,
        out: &mut Vec<Self>,
    ) -> Result<(), FormatError> {
        format::decode_policy_readings(frame, cycles, buf, version, out)
    }

    fn response_ns(&self) -> i64 {
        self.at_ns
    }

    fn spare() -> &'static std::sync::Mutex<Vec<Vec<Self>>> {
        static SPARE: std::sync::Mutex<Vec<Vec<Reading>>> = std::sync::Mutex::new(Vec::new());
        &SPARE
    }
}

/// Reads the rows of one segment that pass `filter`, in block order, handing each to `sink`.
/// Damaged blocks and frames are reported and skipped; the torn tail of a segment being
/// written is not a problem (it is an append in progress) and is ignored.
pub fn read_rows(
    path: &Path,
    bytes: &[u8],
    filter: &Filter,
    sink: &mut dyn FnMut(StateRecord),
) -> Vec<Corruption> {
    read_rows_of(
        path,
        bytes,
        filter,
        &mut |_, rows: &mut Vec<StateRecord>| {
            rows.drain(..).for_each(&mut *sink);
        },
    )
}

/// [`read_rows`] of what forensics reads of each row, a policy frame's rows at a time (the
/// sink may take them).
pub fn read_readings(
    path: &Path,
    bytes: &[u8],
    filter: &Filter,
    sink: &mut dyn FnMut(&PolicyName, &mut Vec<Reading>),
) -> Vec<Corruption> {
    read_rows_of(path, bytes, filter, sink)
}

/// [`read_rows`] into rows of type `R`, a policy frame's rows at a time.
pub(crate) fn read_rows_of<R: Row>(
    path: &Path,
    bytes: &[u8],
    filter: &Filter,
    sink: &mut dyn FnMut(&PolicyName, &mut Vec<R>),
) -> Vec<Corruption> {
    let mut problems = Vec::new();
    match SegmentHeader::decode(bytes) {
        Ok(_) => {}
        // A newer format must not be misread.
        Err(error @ FormatError::UnsupportedVersion { .. }) => {
            problems.push(Corruption {
                file: path.to_owned(),
                offset: 0,
                block: 0,
                error,
            });
            return problems;
        }
        // A damaged header: report it; the blocks check themselves and are still read.
        Err(error) => problems.push(Corruption {
            file: path.to_owned(),
            offset: 0,
            block: 0,
            error,
        }),
    }
    let layout = layout(bytes);
    for d in layout.damage {
        let block = layout.blocks.iter().filter(|b| b.offset < d.offset).count();
        problems.push(Corruption {
            file: path.to_owned(),
            offset: d.offset,
            block,
            error: d.error,
        });
    }
    problems.extend(read_blocks_of(path, bytes, &layout.blocks, filter, sink));
    problems
}

/// Reads the rows of the given blocks of a segment (as found by [`layout`]).
///
/// Planning (checksums, cycle tables, which frames are wanted) runs on this thread; the policy
/// frames are then decoded by up to four worker threads — one job per frame of a sealed block,
/// one per live block — and their rows reach `sink` on this thread, in job order, so the
/// output is the same as a sequential read. At most two decoded jobs wait per worker.
pub fn read_blocks(
    path: &Path,
    bytes: &[u8],
    blocks: &[BlockRef],
    filter: &Filter,
    sink: &mut dyn FnMut(StateRecord),
) -> Vec<Corruption> {
    read_blocks_of(path, bytes, blocks, filter, &mut |_,
                                                      rows: &mut Vec<
        StateRecord,
    >| {
        rows.drain(..).for_each(&mut *sink);
    })
}

fn read_blocks_of<R: Row>(
    path: &Path,
    bytes: &[u8],
    blocks: &[BlockRef],
    filter: &Filter,
    sink: &mut dyn FnMut(&PolicyName, &mut Vec<R>),
) -> Vec<Corruption> {
    // This thread's buffers, kept from segment to segment (a reader of 13 months would fault
    // in a decompressor and its columns 13 times).
    let mut buf = FRAME_BUFFER.with_borrow_mut(std::mem::take);
    let problems = read_blocks_with(path, bytes, blocks, filter, sink, &mut buf);
    FRAME_BUFFER.with_borrow_mut(|kept| *kept = buf);
    problems
}

thread_local! {
    static FRAME_BUFFER: std::cell::RefCell<format::FrameBuffer> =
        std::cell::RefCell::new(format::FrameBuffer::default());
}

/// The decoding workers' buffers, handed from one read to the next (each read of a segment
/// starts its workers anew) when [`keep_read_buffers`] asked for it.
static WORKER_BUFFERS: std::sync::Mutex<Vec<format::FrameBuffer>> =
    std::sync::Mutex::new(Vec::new());

/// Whether reads hand their decoding workers' buffers and emptied row vectors on to the next
/// read ([`keep_read_buffers`]).
static KEEP_READ_BUFFERS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Keeps the decoding workers' buffers and the emptied row vectors from one read of a segment
/// to the next, so that a command reading months of history does not fault in fresh memory
/// for each (tens of megabytes held until the process ends). For short-lived readers (`query`,
/// `export`); a long-lived process (`serve`) leaves it off, so that a dashboard page does not
/// hold on to what it read.
pub fn keep_read_buffers() {
    KEEP_READ_BUFFERS.store(true, std::sync::atomic::Ordering::Relaxed);
}

fn keeping() -> bool {
    KEEP_READ_BUFFERS.load(std::sync::atomic::Ordering::Relaxed)
}

/// Frees the buffers kept for reading (up to a frame's columns each: megabytes after a large
/// sealed block): this thread's and the decoding workers'. For a long-lived thread done with
/// reading, such as `serve`'s monitor after its start-up reload; a short-lived reader need not
/// call it.
pub fn release_read_buffers() {
    FRAME_BUFFER.with_borrow_mut(|kept| *kept = format::FrameBuffer::default());
    if let Ok(mut kept) = WORKER_BUFFERS.lock() {
        kept.clear();
    }
    if let Ok(mut spare) = StateRecord::spare().lock() {
        spare.clear();
    }
    if let Ok(mut spare) = Reading::spare().lock() {
        spare.clear();
    }
}

/// The most emptied row vectors kept: as many as can wait between the workers and the reader
/// (two jobs per worker, a few frames each) and then some.
const SPARE_VECTORS: usize = 16;

/// One decoded policy frame of a job: its policy and rows.
type FrameRows<R> = Result<(PolicyName, Vec<R>), FormatError>;

fn read_blocks_with<R: Row>(
    path: &Path,
    bytes: &[u8],
    blocks: &[BlockRef],
    filter: &Filter,
    sink: &mut dyn FnMut(&PolicyName, &mut Vec<R>),
    buf: &mut format::FrameBuffer,
) -> Vec<Corruption> {
    let mut problems = Vec::new();
    let version = format::payload_version(bytes);
    let report = |index: usize, error| Corruption {
        file: path.to_owned(),
        offset: blocks.get(index).map_or(0, |b| b.offset),
        block: index,
        error,
    };
    let (cycle_tables, plan) =
        plan_reads(bytes, blocks, filter, version, buf, &report, &mut problems);
    // §5: a (policy, time) is visible once, first written wins. Only blocks whose time ranges
    // overlap can hold the same one twice, so only then is anything remembered.
    let mut seen = overlapping(blocks).then(std::collections::HashSet::new);
    let mut first = |policy: &PolicyName, row: &R| {
        seen.as_mut()
            .is_none_or(|seen| seen.insert((policy.clone(), row.response_ns())))
    };
    let none = format::Cycles::default();
    let cycles_of = |table: usize| cycle_tables.get(table).unwrap_or(&none);
    let policy_of = |frame: &Frame<'_>| {
        PolicyName::new(frame.name).map_err(|_| FormatError::Malformed("policy name"))
    };
    if filter.sequential || workers(plan.len()) <= 1 {
        // One core: each row goes from its frame to the sink without being collected.
        let mut one = Vec::with_capacity(1);
        for (index, table, frames) in &plan {
            for frame in frames {
                let decoded = policy_of(frame).and_then(|policy| {
                    R::decode(frame, cycles_of(*table), buf, version, &mut |row| {
                        if filter.wants_time(row.response_ns()) && first(&policy, &row) {
                            one.push(row);
                            sink(&policy, &mut one);
                            one.clear();
                        }
                    })
                });
                if let Err(e) = decoded {
                    problems.push(report(*index, e));
                }
            }
        }
        return problems;
    }
    // Emptied row vectors go back to the workers; kept for the next read only if asked.
    let spare: std::sync::Mutex<Vec<Vec<R>>> = std::sync::Mutex::new(if keeping() {
        R::spare()
            .lock()
            .map(|mut kept| std::mem::take(&mut *kept))
            .unwrap_or_default()
    } else {
        Vec::new()
    });
    let bounded = filter.since_ns.is_some() || filter.until_ns.is_some();
    let decode = |(_, table, frames): &(usize, usize, Vec<Frame<'_>>),
                  buf: &mut format::FrameBuffer|
     -> Vec<FrameRows<R>> {
        let cycles = cycles_of(*table);
        frames
            .iter()
            .map(|frame| {
                let policy = policy_of(frame)?;
                let mut rows = spare
                    .lock()
                    .ok()
                    .and_then(|mut s| s.pop())
                    .unwrap_or_default();
                R::decode_into(frame, cycles, buf, version, &mut rows)?;
                if bounded {
                    rows.retain(|row| filter.wants_time(row.response_ns()));
                }
                Ok((policy, rows))
            })
            .collect()
    };
    run_in_order(&plan, decode, |(index, _, _), results| {
        for result in results {
            match result {
                Ok((policy, mut rows)) => {
                    rows.retain(|row| first(&policy, row));
                    sink(&policy, &mut rows);
                    rows.clear();
                    if let Ok(mut spare) = spare.lock()
                        && spare.len() < SPARE_VECTORS
                    {
                        spare.push(rows);
                    }
                }
                Err(e) => problems.push(report(*index, e)),
            }
        }
    });
    if keeping()
        && let (Ok(mut kept), Ok(spare)) = (R::spare().lock(), spare.into_inner())
    {
        *kept = spare;
    }
    problems
}

/// Planning of [`read_blocks`]: the cycle tables of the blocks that hold wanted rows, and the
/// decoding jobs (block index, cycle table, policy frames) — one per frame of a sealed block,
/// one per live block. Damage found on the way is added to `problems`.
#[expect(clippy::type_complexity, reason = "a private plan, named by its doc")]
fn plan_reads<'a>(
    bytes: &'a [u8],
    blocks: &[BlockRef],
    filter: &Filter,
    version: u16,
    buf: &mut format::FrameBuffer,
    report: &dyn Fn(usize, FormatError) -> Corruption,
    problems: &mut Vec<Corruption>,
) -> (Vec<format::Cycles>, Vec<(usize, usize, Vec<Frame<'a>>)>) {
    let mut cycle_tables: Vec<format::Cycles> = Vec::new();
    let mut plan = Vec::new();
    for (index, block) in blocks.iter().enumerate() {
        if filter.skips_block(&block.header) {
            continue;
        }
        let (mut cycles, mut wanted) = (None, Vec::new());
        let (frames, parity) = format::block_frames(body(bytes, block), version);
        if version >= 2 && parity.is_none() {
            // §3.1: the trailer or the parity it points at is damaged (the rows are not).
            problems.push(report(index, FormatError::Malformed("block trailer")));
        }
        for frame in frames {
            match frame {
                Err(e) => problems.push(report(index, e)),
                Ok(f) if f.is_cycles() => {
                    if cycles.is_none() {
                        match format::decode_cycles(&f, buf) {
                            Ok(c) => cycles = Some(c),
                            Err(e) => problems.push(report(index, e)),
                        }
                    }
                }
                Ok(f) if f.is_policy() && filter.wants_policy(f.name) => wanted.push(f),
                Ok(_) => {}
            }
        }
        if wanted.is_empty() {
            continue;
        }
        // §3.1: a damaged cycles frame is rebuilt from its parity when it can be.
        let cycles = cycles
            .or_else(|| parity.and_then(|p| format::recover_cycles(body(bytes, block), &p, buf)));
        let Some(cycles) = cycles else {
            problems.push(report(
                index,
                FormatError::Malformed("block without cycles frame"),
            ));
            continue;
        };
        cycle_tables.push(cycles);
        let table = cycle_tables.len() - 1;
        if block.header.kind == BlockKind::Sealed {
            plan.extend(wanted.into_iter().map(|f| (index, table, vec![f])));
        } else {
            plan.push((index, table, wanted));
        }
    }

    (cycle_tables, plan)
}

/// Decoding threads for `jobs` jobs: one per core, at most four.
fn workers(jobs: usize) -> usize {
    std::thread::available_parallelism()
        .map_or(1, std::num::NonZero::get)
        .min(4)
        .min(jobs)
}

/// Runs `decode` over `jobs` on two or more worker threads and hands the results to `emit` on
/// this thread, in job order.
fn run_in_order<J: Sync, R: Send>(
    jobs: &[J],
    decode: impl Fn(&J, &mut format::FrameBuffer) -> R + Sync,
    mut emit: impl FnMut(&J, R),
) {
    let workers = workers(jobs.len());
    std::thread::scope(|scope| {
        let decode = &decode;
        let receivers: Vec<_> = (0..workers)
            .map(|w| {
                let (tx, rx) = std::sync::mpsc::sync_channel(2);
                scope.spawn(move || {
                    let mut buf = WORKER_BUFFERS
                        .lock()
                        .ok()
                        .and_then(|mut kept| kept.pop())
                        .unwrap_or_default();
                    for job in jobs.iter().skip(w).step_by(workers) {
                        if tx.send(decode(job, &mut buf)).is_err() {
                            break;
                        }
                    }
                    if keeping()
                        && let Ok(mut kept) = WORKER_BUFFERS.lock()
                    {
                        kept.push(buf);
                    }
                });
                rx
            })
            .collect();
        for (k, job) in jobs.iter().enumerate() {
            // A worker only stops early if it panicked; the scope then re-raises it.
            match receivers
                .get(k % workers)
                .map(std::sync::mpsc::Receiver::recv)
            {
                Some(Ok(result)) => emit(job, result),
                _ => break,
            }
        }
    });
}
