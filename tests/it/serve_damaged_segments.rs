//! `serve` over damaged segments (storage-format.md §8): an old segment whose header fails its
//! checksum, an old segment truncated to 0 bytes and a damaged block in the current month once
//! made it refuse to start. It must start, keep storing new rows, keep every readable row
//! readable, and say what is damaged (log, `dictmon_store_damaged_segments`, `verify`).

use std::collections::BTreeMap;
use std::time::Duration;

use dictmon::store::{Filter, Month, StoreReader};

use crate::util::{Serve, backfill, dictmon, metric, wait_until};

fn rows_per_month(data: &std::path::Path) -> BTreeMap<Month, usize> {
    let mut rows = BTreeMap::new();
    StoreReader::open(data)
        .expect("reader")
        .scan(&Filter::default(), &mut |r| {
            *rows.entry(Month::of(r.sample.at)).or_insert(0) += 1;
        })
        .expect("scan");
    rows
}

#[test]
fn serve_starts_and_stores_over_damaged_segments() {
    let dir = tempfile::tempdir().expect("temp");
    let data = dir.path().join("data");
    backfill(&data, "70d");
    let months = StoreReader::open(&data)
        .expect("reader")
        .months()
        .expect("months");
    assert!(months.len() >= 3, "{months:?}");
    let path = |m: Month| data.join("segments").join(m.file_name());
    let (oldest, second, current) = (months[0], months[1], months[months.len() - 1]);
    // The oldest: its header's checksum fails. The second: emptied. The current month: the
    // first block's header is hit.
    let mut bytes = std::fs::read(path(oldest)).expect("segment");
    bytes[20] ^= 0x40;
    std::fs::write(path(oldest), &bytes).expect("write");
    std::fs::write(path(second), b"").expect("truncate");
    let mut bytes = std::fs::read(path(current)).expect("segment");
    bytes[32 + 10] ^= 0x01;
    std::fs::write(path(current), &bytes).expect("write");
    let before = rows_per_month(&data);

    let serve = Serve::start(&data, &["--interval", "1s"]);
    wait_until("three cycles stored", Duration::from_secs(60), || {
        metric(
            &serve.get("/metrics").1,
            "dict_rate_limit_monitoring_duration_seconds_count{operation=\"persist\"}",
        )
        .is_some_and(|n| n >= 3.0)
    });
    let text = serve.get("/metrics").1;
    assert_eq!(
        metric(&text, "dictmon_store_damaged_segments"),
        Some(2.0),
        "{text}"
    );
    assert_eq!(metric(&text, "dictmon_store_writable"), Some(1.0));
    assert_eq!(serve.get("/readyz").0, 200);
    let log = serve.log();
    assert!(log.contains("is damaged"), "{log}");
    let (status, _) = serve.terminate();
    assert!(status.success());

    let after = rows_per_month(&data);
    assert_eq!(
        after.get(&oldest),
        before.get(&oldest),
        "the oldest month is still read"
    );
    let grown =
        after.get(&current).copied().unwrap_or(0) - before.get(&current).copied().unwrap_or(0);
    assert!(grown >= 3 * 29, "new rows are stored: {grown}");
    for m in &months[2..months.len() - 1] {
        assert_eq!(after.get(m), before.get(m), "{m} untouched");
    }
    let out = dictmon()
        .args(["verify", "--data-dir"])
        .arg(&data)
        .output()
        .expect("verify");
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "the damage is still reported: {said}"
    );
    assert!(
        said.contains(&oldest.file_name()) && said.contains(&current.file_name()),
        "{said}"
    );
}
