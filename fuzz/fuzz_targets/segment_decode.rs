//! Arbitrary bytes into the segment reader: as a whole file, and behind a valid segment
//! header so that the fuzzer reaches block and frame decoding at once. Nothing may panic;
//! every row returned must carry a valid bucket time (the decoders' own checks), and what the
//! forensics reader decodes of a frame must be what the whole records hold whenever both
//! decoders accept it.
#![no_main]

use std::path::Path;

use dictmon::domain::Reading;
use dictmon::store::Filter;
use dictmon::store::raw::{self as segment, SegmentHeader};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = segment::layout(data);
    let _ = segment::read_rows(Path::new("fuzz.seg"), data, &Filter::default(), &mut |_| {});
    let mut file = SegmentHeader {
        year: 2026,
        month: 11,
        created_ns: 0,
    }
    .encode()
    .to_vec();
    file.extend_from_slice(data);
    // Compared bit for bit: arbitrary bytes make NaNs.
    let key = |p: &str, r: &Reading| {
        (
            p.to_owned(),
            r.at_ns,
            r.available,
            r.remaining_percent.to_bits(),
            r.consumption_rate_per_minute.map(f64::to_bits),
        )
    };
    let mut records = Vec::new();
    let _ = segment::read_rows(Path::new("fuzz.seg"), &file, &Filter::default(), &mut |r| {
        assert!(r.sample.at.timestamp_nanos_opt().is_some());
        records.push(key(r.policy.as_str(), &Reading::of(&r)));
    });
    // The readings decoder skips the values of columns it does not read, so it may accept a
    // frame the full decoder refuses (a bad category letter); never the other way round, and
    // never with other values.
    let mut readings = Vec::new();
    let _ = segment::read_readings(
        Path::new("fuzz.seg"),
        &file,
        &Filter::default(),
        &mut |p, rs| {
            readings.extend(rs.iter().map(|r| key(p.as_str(), r)));
        },
    );
    for r in &records {
        assert!(
            readings.contains(r),
            "the full decoder read {r:?}, the readings decoder not"
        );
    }
});
