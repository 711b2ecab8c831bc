//! The segment reader on hostile bytes, in the normal suite (the long runs are `fuzz/`):
//! random bytes, and a real segment mutated (bytes changed, cut short, bytes inserted). No
//! panic, and every row read from a mutated segment is one of the rows written.

use std::path::Path;

use dictmon::domain::{Reading, StateRecord};
use dictmon::store::Filter;
use dictmon::store::raw::{self as segment, SegmentHeader};
use proptest::prelude::*;

fn fixture() -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/segment-v1.seg"))
        .expect("fixture")
}

fn rows(bytes: &[u8]) -> Vec<dictmon::domain::StateRecord> {
    let mut out = Vec::new();
    let _ = segment::read_rows(Path::new("x.seg"), bytes, &Filter::default(), &mut |r| {
        out.push(r);
    });
    out
}

/// What forensics reads of the same bytes, with each reading's policy.
fn readings(bytes: &[u8]) -> Vec<(String, Reading)> {
    let mut out = Vec::new();
    let _ = segment::read_readings(
        Path::new("x.seg"),
        bytes,
        &Filter::default(),
        &mut |p, rs| {
            out.extend(rs.iter().map(|r| (p.to_string(), *r)));
        },
    );
    out
}

fn readings_of(rows: &[StateRecord]) -> Vec<(String, Reading)> {
    rows.iter()
        .map(|r| (r.policy.to_string(), Reading::of(r)))
        .collect()
}

#[test]
fn readings_are_what_the_records_hold() {
    let clean = fixture();
    let rows = rows(&clean);
    assert!(!rows.is_empty());
    assert_eq!(readings(&clean), readings_of(&rows));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3_000))]

    #[test]
    fn random_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..2_048)) {
        let _ = segment::layout(&data);
        let _ = rows(&data);
        let mut file = SegmentHeader { year: 2026, month: 11, created_ns: 0 }.encode().to_vec();
        file.extend_from_slice(&data);
        let _ = rows(&file);
    }

    #[test]
    fn a_mutated_segment_yields_only_rows_that_were_written(
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0_u8..3), 1..6),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let clean = fixture();
        let original = rows(&clean);
        let mut bytes = clean.clone();
        for (at, value, kind) in edits {
            let i = at.index(bytes.len());
            match kind {
                0 => bytes[i] = value,
                1 => bytes.insert(i, value),
                _ => { bytes.remove(i); }
            }
        }
        if truncate {
            bytes.truncate(cut.index(bytes.len() + 1));
        }
        for r in rows(&bytes) {
            prop_assert!(original.contains(&r), "a row that was never written: {r:?}");
        }
        let written = readings_of(&original);
        for r in readings(&bytes) {
            prop_assert!(written.contains(&r), "a reading of no row written: {r:?}");
        }
    }
}
