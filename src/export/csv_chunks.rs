//! Reading a large CSV on every core: one thread cuts the file into chunks at record ends,
//! worker threads parse the chunks, and the parsed rows come back to the caller in file order.
//!
//! Invariants: a chunk holds whole records only — it ends at a line end outside quotes, found
//! with the quoting rules of the `csv` crate's parser (RFC 4180: a quote opens a quoted field
//! only at the start of a field, `""` inside one is a quote), so the workers parse exactly the
//! records a sequential reader would; rows reach the caller in file order with their line;
//! memory is bounded by a few chunks per worker, whatever the file; a record longer than
//! [`MAX_RECORD_BYTES`] (no line ends, an unclosed quote) ends the reading with its line.

use std::io::Read;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

/// Longest CSV record read: a row of the legacy tables is about 200 bytes. Longer is not a
/// row but garbage (a file without line ends, an unclosed quote), which would otherwise be
/// held in memory whole.
pub const MAX_RECORD_BYTES: usize = 64 * 1024;

/// Bytes read at a time; a chunk is about this size.
const CHUNK_BYTES: usize = 1 << 20;

/// A record longer than [`MAX_RECORD_BYTES`]: the line it began on, and the byte offset in
/// the file where it passed the limit.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "a record longer than {MAX_RECORD_BYTES} bytes, passed at byte {offset} (a row is about 200): not a CSV of the legacy table (no line ends, or an unclosed quote); the rest of the file was not read"
)]
pub struct RecordTooLong {
    /// Line the record began on.
    pub line: u64,
    /// Byte offset where it passed the limit.
    pub offset: u64,
}

/// How reading ended early.
#[derive(Debug)]
pub enum ReadError<E> {
    /// The file could not be read.
    Io(std::io::Error),
    /// The caller's `each` returned an error.
    Stopped(E),
}

/// Cuts `reader` into chunks of whole records, numbering their first lines.
struct Splitter<R> {
    reader: R,
    /// Read, not yet sent. `buf[..scanned]` is scanned; its last record ends at `last_end`.
    buf: Vec<u8>,
    scanned: usize,
    last_end: usize,
    /// Inside a quoted field, at `scanned`.
    quoted: bool,
    /// Line ends in `buf[..scanned]` and in `buf[..last_end]`.
    lines_scanned: u64,
    lines_to_end: u64,
    /// Line and byte offset in the file of `buf[0]`.
    line: u64,
    offset: u64,
}

impl<R: Read> Splitter<R> {
    /// The next chunk of whole records and the line it begins on; none at the end.
    fn next_chunk(&mut self) -> Result<Option<(Vec<u8>, u64)>, SplitError> {
        loop {
            // Into the buffer's spare room, without zeroing it first.
            let n = (&mut self.reader)
                .take(CHUNK_BYTES as u64)
                .read_to_end(&mut self.buf)
                .map_err(SplitError::Io)?;
            if n == 0 {
                // The end: what is left is one last record without a line end.
                self.last_end = 0;
                self.scanned = 0;
                return Ok(
                    (!self.buf.is_empty()).then(|| (std::mem::take(&mut self.buf), self.line))
                );
            }
            self.scan()?;
            if self.last_end > 0 {
                // The open record moves to a buffer with room for the next read.
                let mut rest = Vec::with_capacity(2 * CHUNK_BYTES);
                rest.extend_from_slice(self.buf.get(self.last_end..).unwrap_or_default());
                self.buf.truncate(self.last_end);
                let chunk = std::mem::replace(&mut self.buf, rest);
                let line = self.line;
                self.line += self.lines_to_end;
                self.offset += chunk.len() as u64;
                self.scanned -= self.last_end;
                self.lines_scanned -= self.lines_to_end;
                (self.last_end, self.lines_to_end) = (0, 0);
                return Ok(Some((chunk, line)));
            }
        }
    }

    /// Scans `buf[scanned..]` for record ends, checking each record's length.
    fn scan(&mut self) -> Result<(), SplitError> {
        let mut pos = self.scanned;
        while let Some(at) = self
            .buf
            .get(pos..)
            .and_then(|rest| memchr::memchr2(b'"', b'\n', rest))
            .map(|found| pos + found)
        {
            if self.buf.get(at) == Some(&b'\n') {
                self.lines_scanned += 1;
                pos = at + 1;
                if !self.quoted {
                    self.record_end(pos)?;
                }
            } else if self.quoted {
                match self.buf.get(at + 1) {
                    // `""`: a quote inside the field.
                    Some(b'"') => pos = at + 2,
                    Some(_) => {
                        self.quoted = false;
                        pos = at + 1;
                    }
                    // Which one it is, the next read tells.
                    None => {
                        self.scanned = at;
                        return self.check_open_record();
                    }
                }
            } else {
                // A quote opens a quoted field only at the start of a field (a chunk starts
                // at a record's start).
                let previous = at.checked_sub(1).and_then(|p| self.buf.get(p));
                self.quoted = matches!(previous, None | Some(b',' | b'\n' | b'\r'));
                pos = at + 1;
            }
        }
        self.scanned = self.buf.len();
        self.check_open_record()
    }

    /// A record ends at `end` (after its line end).
    fn record_end(&mut self, end: usize) -> Result<(), SplitError> {
        if end - self.last_end > MAX_RECORD_BYTES + 1 {
            return Err(self.too_long());
        }
        self.last_end = end;
        self.lines_to_end = self.lines_scanned;
        Ok(())
    }

    /// The record still open (after the last record end) is not already too long.
    fn check_open_record(&self) -> Result<(), SplitError> {
        if self.buf.len() - self.last_end > MAX_RECORD_BYTES {
            return Err(self.too_long());
        }
        Ok(())
    }

    /// The record after `last_end` passed the limit at its byte `MAX_RECORD_BYTES + 1`.
    fn too_long(&self) -> SplitError {
        SplitError::TooLong {
            complete: self.last_end,
            error: RecordTooLong {
                line: self.line + self.lines_to_end,
                offset: self.offset + (self.last_end + MAX_RECORD_BYTES + 1) as u64,
            },
        }
    }
}

/// Why the splitter stopped.
enum SplitError {
    Io(std::io::Error),
    /// A record too long; the `complete` bytes before it are whole records, still to be read.
    TooLong {
        complete: usize,
        error: RecordTooLong,
    },
}

/// What a worker parses of one chunk: each record's line and parse, in order.
pub type Parsed<T> = Vec<(u64, Result<T, String>)>;

/// Reads the records of `reader` (positioned after the header, at line `first_line`, byte
/// `first_offset`) on worker threads (one per core, at most four): each record is parsed with
/// `parse` (with a state `S` of the worker's own, such as a cache), each chunk's parses are
/// gathered with `gather` (grouped, filtered: work the caller would otherwise do on one
/// thread), and `each` gets the chunks in file order. A record too long reaches `each` as a
/// chunk of its own, one `Err` at its line, after every record before it, and ends the
/// reading. Once `each` fails, reading stops.
pub fn read_records<S: Default, T: Send, C: Send, E>(
    reader: impl Read + Send,
    (first_line, first_offset): (u64, u64),
    parse: impl Fn(&mut S, &csv::ByteRecord) -> Result<T, String> + Sync,
    gather: impl Fn(Parsed<T>) -> C + Sync,
    mut each: impl FnMut(C) -> Result<(), E>,
) -> Result<(), ReadError<E>> {
    let workers = std::thread::available_parallelism()
        .map_or(1, std::num::NonZero::get)
        .clamp(1, 4);
    let mut splitter = Splitter {
        reader,
        buf: Vec::with_capacity(2 * CHUNK_BYTES),
        scanned: 0,
        last_end: 0,
        quoted: false,
        lines_scanned: 0,
        lines_to_end: 0,
        line: first_line,
        offset: first_offset,
    };
    std::thread::scope(|scope| {
        let (parse, gather) = (&parse, &gather);
        let (to_workers, from_workers): (Vec<SyncSender<Job>>, Vec<Receiver<C>>) = (0..workers)
            .map(|_| {
                let (job_tx, job_rx) = sync_channel::<Job>(2);
                let (out_tx, out_rx) = sync_channel::<C>(2);
                scope.spawn(move || {
                    let mut state = S::default();
                    for (chunk, line) in job_rx {
                        let parsed = parse_chunk(&chunk, line, &mut |r| parse(&mut state, r));
                        if out_tx.send(gather(parsed)).is_err() {
                            break;
                        }
                    }
                });
                (job_tx, out_rx)
            })
            .unzip();
        // The splitter runs on its own thread; its end (and how) comes back on `done`.
        let (done_tx, done_rx) = sync_channel::<Option<SplitError>>(1);
        scope.spawn(move || {
            let mut sent = 0;
            let end = loop {
                let (chunk, last) = match splitter.next_chunk() {
                    Ok(Some(chunk)) => (chunk, None),
                    Ok(None) => break None,
                    Err(SplitError::TooLong { complete, error }) => {
                        let line = splitter.line;
                        let head = splitter.buf.get(..complete).unwrap_or_default().to_vec();
                        let end = SplitError::TooLong { complete, error };
                        ((head, line), Some(end))
                    }
                    Err(e) => break Some(e),
                };
                let worker = to_workers.get(sent % workers);
                if worker.is_none_or(|w| w.send(chunk).is_err()) || last.is_some() {
                    break last;
                }
                sent += 1;
            };
            drop(to_workers);
            let _ = done_tx.send(end);
        });
        let mut stopped = None;
        for k in 0.. {
            let Some(Ok(chunk)) = from_workers.get(k % workers).map(Receiver::recv) else {
                break;
            };
            if let Err(e) = each(chunk) {
                stopped = Some(e);
                break;
            }
        }
        // Stops the workers, whose sends now fail, and so the splitter.
        drop(from_workers);
        let end = done_rx.recv().ok().flatten();
        if let Some(e) = stopped {
            return Err(ReadError::Stopped(e));
        }
        match end {
            None => Ok(()),
            Some(SplitError::Io(e)) => Err(ReadError::Io(e)),
            Some(SplitError::TooLong { error, .. }) => {
                each(gather(vec![(error.line, Err(error.to_string()))])).map_err(ReadError::Stopped)
            }
        }
    })
}

/// A chunk of whole records and the line it begins on.
type Job = (Vec<u8>, u64);

fn parse_chunk<T>(
    chunk: &[u8],
    first_line: u64,
    parse: &mut dyn FnMut(&csv::ByteRecord) -> Result<T, String>,
) -> Parsed<T> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(chunk);
    let mut record = csv::ByteRecord::new();
    // About one record per 100 bytes (the legacy's rows are longer): rarely grown.
    let mut out = Vec::with_capacity(chunk.len() / 100);
    loop {
        let line = |p: Option<&csv::Position>| first_line + p.map_or(1, csv::Position::line) - 1;
        match reader.read_byte_record(&mut record) {
            Ok(false) => return out,
            Ok(true) => out.push((line(record.position()), parse(&record))),
            Err(e) => out.push((line(e.position()), Err(format!("not readable as CSV: {e}")))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every record's line and fields, read the chunked way with tiny reads.
    fn chunked(text: &[u8]) -> Vec<(u64, Result<Vec<String>, String>)> {
        let mut out = Vec::new();
        let r: Result<(), ReadError<()>> = read_records(
            text,
            (1, 0),
            |(): &mut (), r| {
                Ok(r.iter()
                    .map(|f| String::from_utf8_lossy(f).into_owned())
                    .collect())
            },
            |parsed| parsed,
            |mut chunk| {
                out.append(&mut chunk);
                Ok(())
            },
        );
        assert!(r.is_ok());
        out
    }

    /// The same, read by the `csv` crate in one go.
    fn sequential(text: &[u8]) -> Vec<(u64, Result<Vec<String>, String>)> {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(text);
        reader
            .byte_records()
            .map(|r| {
                let r = r.expect("record");
                (
                    r.position().map_or(0, csv::Position::line),
                    Ok(r.iter()
                        .map(|f| String::from_utf8_lossy(f).into_owned())
                        .collect()),
                )
            })
            .collect()
    }

    #[test]
    fn chunks_cut_only_at_record_ends() {
        let mut text = Vec::new();
        for i in 0..200_000 {
            match i % 5 {
                0 => text.extend_from_slice(
                    format!("p{i},\"a\nquoted, \"\"line\"\"\",{i}\n").as_bytes(),
                ),
                1 => text.extend_from_slice(format!("p{i},mid\"quote,{i}\r\n").as_bytes()),
                2 => text.extend_from_slice(format!("p{i},\"\",\"\"\"\"\n").as_bytes()),
                _ => text.extend_from_slice(format!("p{i},plain,{i}\n").as_bytes()),
            }
        }
        text.extend_from_slice(b"last,no,line end");
        assert!(text.len() > 3 * CHUNK_BYTES);
        assert_eq!(chunked(&text), sequential(&text));
    }

    #[test]
    fn a_record_too_long_stops_with_its_line_after_the_rows_before_it() {
        let mut text = b"a,b\nc,d\n".to_vec();
        text.extend(std::iter::repeat_n(b'x', 3 * MAX_RECORD_BYTES));
        let rows = chunked(&text);
        assert_eq!(rows.len(), 3);
        assert_eq!(rows.get(1).map(|r| r.0), Some(2));
        let (line, last) = rows.get(2).expect("the error");
        assert_eq!(*line, 3);
        assert!(
            last.as_ref().is_err_and(|e| e.contains("at byte 65545")),
            "{last:?}"
        );
        // An unclosed quote: the same.
        let mut text = b"a,b\n\"open,".to_vec();
        text.extend(std::iter::repeat_n(b'\n', 3 * MAX_RECORD_BYTES));
        let rows = chunked(&text);
        assert_eq!(rows.len(), 2);
        assert!(rows.get(1).is_some_and(|r| r.0 == 2 && r.1.is_err()));
    }
}
