//! Arbitrary bytes into the segment reader: as a whole file, and behind a valid segment
//! header so that the fuzzer reaches block and frame decoding at once. Nothing may panic;
//! every row returned must carry a valid bucket time (the decoders' own checks).
#![no_main]

use std::path::Path;

use dictmon::store::format::SegmentHeader;
use dictmon::store::segment::{self, Filter};
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
    let _ = segment::read_rows(Path::new("fuzz.seg"), &file, &Filter::default(), &mut |r| {
        assert!(r.sample.at.timestamp_nanos_opt().is_some());
    });
});
