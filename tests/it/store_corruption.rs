//! Corruption: flipping any single byte of a segment is reported by `verify` with the right
//! file and block; scans still return every row of the other blocks, and never a row that was
//! not written; nothing panics.

use std::collections::HashSet;
use std::path::Path;

use chrono::TimeDelta;
use dictmon::domain::StateRecord;
use dictmon::store::raw::{self as segment, SEGMENT_HEADER_LEN};
use dictmon::store::{Filter, Store, StoreOptions, StoreReader, verify};

use crate::util::{record, t0};

const POLICIES: [&str; 6] = [
    "ENTRIES_WRITE",
    "CLAIMS_READ",
    "POLICIES_LIST",
    "KEYS_CHECK",
    "REFUNDS_WRITE",
    "EVENT_LIST",
];

fn rows_at(hours: i64) -> Vec<StateRecord> {
    POLICIES
        .iter()
        .zip(0_i64..)
        .map(|(p, i)| {
            record(
                p,
                t0() + TimeDelta::hours(hours),
                (hours * 37 + i * 101) % 1000,
            )
        })
        .collect()
}

/// One sealed block (two days, every 2 h) and three live blocks (day three).
fn build(dir: &Path) -> Vec<u8> {
    let mut store = Store::open(dir, StoreOptions::default()).expect("open");
    let history: Vec<StateRecord> = (0..24).flat_map(|k| rows_at(2 * k)).collect();
    store.append_sealed(&history).expect("sealed");
    for h in [48, 49, 50] {
        store.append(&rows_at(h)).expect("live");
    }
    drop(store);
    std::fs::read(dir.join("segments/2026-01.seg")).expect("segment")
}

type Key = (String, i64);

fn key(r: &StateRecord) -> Key {
    (r.policy.to_string(), r.sample.at.timestamp())
}

#[test]
fn every_single_byte_flip_is_reported_and_the_rest_stays_readable() {
    let clean_dir = tempfile::tempdir().expect("temp");
    let clean = build(clean_dir.path());
    let layout = segment::layout(&clean);
    assert_eq!(layout.blocks.len(), 4, "one sealed and three live blocks");
    assert!(layout.damage.is_empty() && layout.torn_tail.is_none());
    // The rows of each block, decoded alone.
    let per_block: Vec<Vec<StateRecord>> = layout
        .blocks
        .iter()
        .map(|b| {
            let mut rows = Vec::new();
            let problems = segment::read_blocks(
                Path::new("clean"),
                &clean,
                &[*b],
                &Filter::default(),
                &mut |r| rows.push(r),
            );
            assert!(problems.is_empty());
            rows
        })
        .collect();
    let all: HashSet<Key> = per_block.iter().flatten().map(key).collect();
    assert_eq!(all.len(), 24 * 6 + 3 * 6);

    let dir = tempfile::tempdir().expect("temp");
    std::fs::create_dir_all(dir.path().join("segments")).expect("mkdir");
    let path = dir.path().join("segments/2026-01.seg");
    for offset in 0..clean.len() {
        let mut bytes = clean.clone();
        bytes[offset] ^= 0x5A;
        std::fs::write(&path, &bytes).expect("write");

        let report = verify(dir.path(), &mut |_, _, _| {}).expect("verify runs");
        let hit = layout.blocks.iter().position(|b| {
            (offset as u64) >= b.offset && (offset as u64) < b.offset + b.header.block_len()
        });
        let expected = match hit {
            None => {
                assert!(
                    offset < SEGMENT_HEADER_LEN,
                    "offset {offset} outside every block"
                );
                "offset 0".to_owned()
            }
            Some(i) => format!("(block {i})"),
        };
        assert!(
            report
                .problems
                .iter()
                .any(|p| p.contains("2026-01.seg") && p.contains(&expected)),
            "flip at {offset}: expected a problem naming {expected}, got {:?} (torn tails: {:?})",
            report.problems,
            report.torn_tails
        );

        let mut seen = HashSet::new();
        let mut rows = Vec::new();
        StoreReader::open(dir.path())
            .expect("reader")
            .scan(&Filter::default(), &mut |r| rows.push(r))
            .expect("scan runs");
        for r in &rows {
            assert!(
                per_block.iter().flatten().any(|o| o == r),
                "flip at {offset}: a row that was never written: {r:?}"
            );
            assert!(seen.insert(key(r)), "flip at {offset}: a row twice");
        }
        for (i, block_rows) in per_block.iter().enumerate() {
            if Some(i) != hit {
                for r in block_rows {
                    assert!(
                        seen.contains(&key(r)),
                        "flip at {offset} lost a row of block {i}"
                    );
                }
            }
        }
    }
}
