//! Readers while a writer appends: a real `dictmon` process appends batches (its background
//! compactor rewriting the segment after each) while this process scans and verifies the same
//! data directory, catalog included. Every scan must see only whole batches, a prefix that never shrinks, and no
//! problem.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use chrono::DateTime;
use dictmon::store::{Filter, StoreReader, verify};

use crate::util::{dictmon, t0};

const POLICIES: usize = 30;

#[test]
fn readers_see_only_whole_batches_while_a_writer_appends() {
    let dir = tempfile::tempdir().expect("temp");
    let mut writer = dictmon()
        .args(["debug", "write-batches", "--data-dir"])
        .arg(dir.path())
        .args(["--policies", &POLICIES.to_string(), "--interval", "6h"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn writer");
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut scans, mut newest) = (0, 0_usize);
    while scans < 100 || newest < 40 {
        assert!(
            Instant::now() < deadline,
            "{scans} scans, {newest} batches seen by the deadline"
        );
        if !dir.path().join("segments").exists() {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        }
        let mut batches: BTreeMap<i64, usize> = BTreeMap::new();
        let problems = StoreReader::open(dir.path())
            .expect("reader")
            .scan(&Filter::default(), &mut |r| {
                *batches.entry(r.sample.at.timestamp()).or_default() += 1;
            })
            .expect("scan");
        assert!(problems.is_empty(), "scan {scans}: {problems:?}");
        for (at, rows) in &batches {
            let at = DateTime::from_timestamp(*at, 0).expect("time");
            assert_eq!(*rows, POLICIES, "scan {scans}: partial batch at {at}");
        }
        // A contiguous prefix of the batches, never shorter than the previous scan's.
        let expected: Vec<i64> = (0..i64::try_from(batches.len()).expect("small"))
            .map(|k| t0().timestamp() + k * 6 * 3600)
            .collect();
        assert_eq!(
            batches.keys().copied().collect::<Vec<_>>(),
            expected,
            "scan {scans}"
        );
        assert!(batches.len() >= newest, "scan {scans}: batches disappeared");
        newest = batches.len();
        if scans % 10 == 0 {
            let report = verify(dir.path(), &mut |_, _, _| {}).expect("verify while writing");
            assert!(report.problems.is_empty(), "{:?}", report.problems);
        }
        scans += 1;
    }
    writer.kill().expect("stop writer");
    writer.wait().expect("reaped");
}
