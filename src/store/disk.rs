//! Reading a segment file off a disk that may fail. A damaged disk block answers `read` with
//! EIO; reading the file whole would then lose every row of the month. Instead, what cannot be
//! read is zero-filled and reported: the blocks over it fail their checksums and the reader
//! resynchronises after them (storage-format.md §8), so only those blocks are lost.
//!
//! Invariants: the bytes returned are as long as the readable file; every byte not read from
//! the disk is zero and lies in a returned [`Unreadable`] region; regions are in file order and
//! do not overlap.

use std::fs::File;
use std::io;

/// Where to read from: a file, or in tests a disk that fails on purpose.
pub trait ReadAt {
    /// Reads into `buf` from `offset`, like `pread(2)`.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
}

impl ReadAt for File {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        std::os::unix::fs::FileExt::read_at(self, buf, offset)
    }
}

/// The granularity at which a failed read is narrowed down: a disk sector of today's drives.
pub const SECTOR: usize = 4096;

/// Bytes read per call when the disk is healthy.
const CHUNK: usize = 64 * 1024;

/// A region of the file the disk would not give back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unreadable {
    /// Byte offset where it starts.
    pub offset: u64,
    /// Bytes it spans.
    pub len: u64,
    /// The error the disk gave.
    pub error: String,
}

/// Reads `len` bytes from the start of `file`, narrowing a failed read down to `sector`-sized
/// pieces and zero-filling those that still fail. Stops early if the file turns out shorter.
pub fn read_tolerant(file: &impl ReadAt, len: u64, sector: usize) -> (Vec<u8>, Vec<Unreadable>) {
    let mut bytes = vec![0_u8; usize::try_from(len).unwrap_or(usize::MAX)];
    let mut unreadable: Vec<Unreadable> = Vec::new();
    let mut pos = 0_usize;
    while pos < bytes.len() {
        let end = (pos + CHUNK).min(bytes.len());
        match fill(file, &mut bytes, pos, end) {
            Ok(n) if n < end => {
                bytes.truncate(n);
                break;
            }
            Ok(_) => {}
            Err(_) => {
                // Narrow down: sector by sector; a sector that still fails stays zero.
                let mut at = pos;
                while at < end {
                    let stop = (at + sector.max(1)).min(end);
                    if let Err(e) = fill(file, &mut bytes, at, stop) {
                        if let Some(b) = bytes.get_mut(at..stop) {
                            b.fill(0);
                        }
                        push(&mut unreadable, at as u64, (stop - at) as u64, &e);
                    }
                    at = stop;
                }
            }
        }
        pos = end;
    }
    (bytes, unreadable)
}

/// Reads `bytes[from..to]` from the same offsets of `file`; returns where the file ended if it
/// ended first.
fn fill(file: &impl ReadAt, bytes: &mut [u8], from: usize, to: usize) -> io::Result<usize> {
    let mut at = from;
    while at < to {
        let Some(buf) = bytes.get_mut(at..to) else {
            break;
        };
        match file.read_at(buf, at as u64) {
            Ok(0) => return Ok(at),
            Ok(n) => at += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(at)
}

/// Adds a failed region, merged with the previous one when they touch.
fn push(out: &mut Vec<Unreadable>, offset: u64, len: u64, error: &io::Error) {
    let error = error.to_string();
    if let Some(last) = out.last_mut()
        && last.offset + last.len == offset
        && last.error == error
    {
        last.len += len;
        return;
    }
    out.push(Unreadable { offset, len, error });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A disk whose bytes in `bad` answer EIO.
    struct FailingDisk {
        bytes: Vec<u8>,
        bad: std::ops::Range<u64>,
    }

    impl ReadAt for FailingDisk {
        fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
            let end = offset + buf.len() as u64;
            if offset < self.bad.end && self.bad.start < end {
                return Err(io::Error::from_raw_os_error(5));
            }
            let from = usize::try_from(offset).unwrap_or(usize::MAX);
            let src = self.bytes.get(from..).unwrap_or_default();
            let n = src.len().min(buf.len());
            buf[..n].copy_from_slice(&src[..n]);
            Ok(n)
        }
    }

    #[test]
    fn only_the_failing_sectors_are_lost_and_they_are_reported() {
        let bytes: Vec<u8> = (0..200_000_u32).map(|i| (i % 251 + 1) as u8).collect();
        let disk = FailingDisk {
            bytes: bytes.clone(),
            bad: 70_000..70_001,
        };
        let (read, unreadable) = read_tolerant(&disk, bytes.len() as u64, 4096);
        assert_eq!(read.len(), bytes.len());
        assert_eq!(unreadable.len(), 1);
        let u = &unreadable[0];
        assert_eq!((u.offset, u.len), (69_632, 4096));
        assert!(u.error.contains("os error 5"), "{u:?}");
        let lost = u.offset as usize..(u.offset + u.len) as usize;
        for (i, (a, b)) in read.iter().zip(&bytes).enumerate() {
            if lost.contains(&i) {
                assert_eq!(*a, 0);
            } else {
                assert_eq!(a, b, "byte {i}");
            }
        }
    }

    #[test]
    fn a_healthy_file_reads_whole_and_a_shorter_one_stops_at_its_end() {
        let bytes: Vec<u8> = (0..100_000_u32).map(|i| i as u8).collect();
        let disk = FailingDisk {
            bytes: bytes.clone(),
            bad: 0..0,
        };
        assert_eq!(read_tolerant(&disk, 100_000, 4096), (bytes.clone(), vec![]));
        let (short, none) = read_tolerant(&disk, 150_000, 4096);
        assert_eq!((short, none), (bytes, vec![]));
    }
}
