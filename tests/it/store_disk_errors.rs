//! A disk that answers EIO for part of a segment (a damaged disk block): the reader loses the
//! blocks over it, reports them, and reads every other block. The disk is a stand-in that fails
//! on purpose (`store::disk::ReadAt`), over the bytes of a real segment written by the store:
//! an EIO cannot be staged on this machine's file systems.

use std::collections::BTreeMap;
use std::io;

use chrono::TimeDelta;
use dictmon::store::raw::{ReadAt, layout, read_rows, read_tolerant};
use dictmon::store::{Filter, Store, StoreOptions, StoreReader};

use super::util::{record, t0};

/// The bytes of a file, with EIO for any read that touches `bad`.
struct FailingDisk {
    bytes: Vec<u8>,
    bad: std::ops::Range<u64>,
}

impl ReadAt for FailingDisk {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        if offset < self.bad.end && self.bad.start < offset + buf.len() as u64 {
            return Err(io::Error::from_raw_os_error(5));
        }
        let src = self
            .bytes
            .get(usize::try_from(offset).unwrap_or(usize::MAX)..)
            .unwrap_or_default();
        let n = src.len().min(buf.len());
        buf[..n].copy_from_slice(&src[..n]);
        Ok(n)
    }
}

#[test]
fn an_eio_in_one_block_loses_that_block_only_and_says_where() {
    let dir = tempfile::tempdir().expect("temp");
    let mut store = Store::open(dir.path(), StoreOptions::default()).expect("open");
    let names: Vec<String> = (0..200).map(|i| format!("POLICY_{i:03}")).collect();
    for cycle in 0..3 {
        let at = t0() + TimeDelta::minutes(5 * cycle);
        let batch: Vec<_> = names.iter().map(|n| record(n, at, 500 + cycle)).collect();
        store.append(&batch).expect("append");
    }
    drop(store);
    let reader = StoreReader::open(dir.path()).expect("reader");
    let first = reader.segments().expect("segments")[0];
    let path = reader.segment_path(first);
    let bytes = std::fs::read(&path).expect("segment");
    let blocks = layout(&bytes).blocks;
    assert_eq!(blocks.len(), 3, "one live block per cycle");

    // The disk fails inside the second block, past its header (a lost block header loses
    // the block: nothing says where its frames are) and its first copy of the cycle table.
    let second = blocks[1].offset;
    let bad = second + 300;
    let disk = FailingDisk {
        bytes: bytes.clone(),
        bad: bad..bad + 1,
    };
    let (read, unreadable) = read_tolerant(&disk, bytes.len() as u64, 64);
    assert_eq!(unreadable.len(), 1, "{unreadable:?}");
    assert!(unreadable[0].offset <= bad && bad < unreadable[0].offset + 64);

    // Rows per cycle: the first and third blocks whole; of the second, all but the policies
    // whose frames (each with its own checksum) lay over the lost sector.
    let mut per_cycle: BTreeMap<_, usize> = BTreeMap::new();
    let problems = read_rows(&path, &read, &Filter::default(), &mut |r| {
        *per_cycle.entry(r.sample.at).or_default() += 1;
    });
    let count = |minutes| {
        per_cycle
            .get(&(t0() + TimeDelta::minutes(minutes)))
            .copied()
    };
    assert_eq!(count(0), Some(names.len()), "{per_cycle:?}");
    assert_eq!(count(10), Some(names.len()), "{per_cycle:?}");
    let second_rows = count(5).unwrap_or(0);
    assert!(
        second_rows < names.len() && second_rows > names.len() / 2,
        "the second block loses the frames over the lost sector only: {second_rows}"
    );
    let third = blocks[2].offset;
    assert!(
        problems.iter().any(|p| (second..third).contains(&p.offset)),
        "the damage is reported inside the second block: {problems:?}"
    );

    // The healthy path of the reader reads everything and reports nothing.
    let mut all = 0;
    let clean = reader
        .scan(&Filter::default(), &mut |_| all += 1)
        .expect("scan");
    assert!(clean.is_empty(), "{clean:?}");
    assert_eq!(all, 3 * names.len());
}
