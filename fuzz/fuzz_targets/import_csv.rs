//! Arbitrary bytes as the legacy CSV files `dictmon import` reads: the states file, and after
//! the first NUL byte the alerts file. Every row is parsed and checked (`import::check`, the
//! strict pre-check, which writes nothing): bad rows must come back as located problems,
//! never as a panic.
#![no_main]

use std::io::Write;

use chrono::DateTime;
use dictmon::export::import::check;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (states, alerts) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], Some(&data[i + 1..])),
        None => (data, None),
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.path().join(name);
        std::fs::File::create(&path)
            .and_then(|mut f| f.write_all(bytes))
            .expect("temp file");
        path
    };
    let states = write("states.csv", states);
    let alerts = alerts.map(|a| write("alerts.csv", a));
    let now = DateTime::from_timestamp(1_800_000_000, 0).expect("time");
    if let Ok(report) = check(&states, alerts.as_deref(), now) {
        assert!(report.problems.iter().all(|p| p.line >= 1));
    }
});
