//! Arbitrary bytes into DICT's XML parsers (listing, single policy, RFC 7807 problem): nothing
//! may panic.
#![no_main]

use dictmon::source::dict_xml::{parse_get, parse_list, parse_problem};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = parse_list(data);
    let _ = parse_get(data);
    let _ = parse_problem(data);
});
