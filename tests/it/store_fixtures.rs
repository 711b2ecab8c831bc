//! Checked-in segments of every format version (1 and 2): read exactly, and the corrupt one
//! reported at the right block. These pin the bytes and the derived-value predictor
//! (storage-format.md §4.3, §13).

use std::path::Path;

use chrono::{DateTime, TimeDelta};
use dictmon::domain::{BucketConfig, PspCategory, RateWindow, Sample, enrich};
use dictmon::store::{Filter, StoreReader, verify};

use crate::util::dictmon;

/// The problems `verify` found in the segments: a fixture directory has no catalog, which
/// `verify` reports too (the catalog's records are lost, §10.1).
fn segment_problems(report: &dictmon::store::VerifyReport) -> Vec<&String> {
    let (catalog, segments): (Vec<_>, Vec<_>) = report
        .problems
        .iter()
        .partition(|p| p.contains("catalog.redb: missing while the segments hold rows"));
    assert_eq!(catalog.len(), 1, "{:?}", report.problems);
    segments
}

/// A data directory holding one fixture segment as November 2026, and no catalog.
fn data_dir_with(fixture: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp");
    std::fs::create_dir_all(dir.path().join("segments")).expect("mkdir");
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(fixture);
    std::fs::copy(src, dir.path().join("segments/2026-11.seg")).expect("copy fixture");
    dir
}

#[test]
fn version_1_segment_reads_exactly() {
    fixture_reads_exactly("segment-v1.seg");
}

#[test]
fn version_2_segment_reads_exactly() {
    fixture_reads_exactly("segment-v2.seg");
}

/// storage-format.md §14.1: a sealed block with a zstd-compressed policy frame, and a poll
/// stored just after a restart whose values the block's predictor does not predict.
#[test]
fn version_2_sealed_example_reads_exactly() {
    let dir = data_dir_with("segment-v2-sealed.seg");
    let bytes = std::fs::read(dir.path().join("segments/2026-11.seg")).expect("read");
    // The policy frame at offset 150 is stored compressed: codec 1, a zstd frame.
    assert_eq!(bytes.get(158), Some(&1));
    assert_eq!(bytes.get(179..183), Some(&[0x28, 0xb5, 0x2f, 0xfd][..]));
    let mut rows = Vec::new();
    let problems = StoreReader::open(dir.path())
        .expect("reader")
        .scan(&Filter::default(), &mut |r| rows.push(r))
        .expect("scan");
    assert!(problems.is_empty(), "{problems:?}");
    let bucket = BucketConfig {
        capacity: 20,
        refill_tokens: 6,
        refill_period_secs: 60,
    };
    let tokens = [
        20, 20, 19, 14, 9, 4, 0, 0, 3, 11, 17, 20, 20, 18, 12, 7, 2, 0, 5, 13, 20, 20, 20, 19,
    ];
    assert_eq!(rows.len(), tokens.len());
    let mut window = Vec::new();
    for ((k, row), available) in (0_i64..).zip(&rows).zip(tokens) {
        let at = DateTime::from_timestamp(1_795_000_000 + k * 300, 833_000_000).expect("time");
        let sample = Sample {
            at,
            available_tokens: available,
            bucket,
            category: PspCategory::A,
        };
        if k == 12 {
            window.clear();
        }
        window.push(sample);
        assert_eq!(row.sample, sample);
        assert_eq!(row.created_at, at + TimeDelta::microseconds(4_120));
        assert_eq!(
            Some(row.enrichment),
            enrich(&window, RateWindow::default()),
            "poll {k}"
        );
    }
    // §14.1's worked residual: poll 12 was stored with no rate at all.
    assert_eq!(rows[12].enrichment.consumption_rate_per_minute, None);
}

fn fixture_reads_exactly(fixture: &str) {
    let dir = data_dir_with(fixture);
    let mut rows = Vec::new();
    let problems = StoreReader::open(dir.path())
        .expect("reader")
        .scan(&Filter::default(), &mut |r| rows.push(r))
        .expect("scan");
    assert!(problems.is_empty(), "{problems:?}");
    // What `examples/fixture.rs` wrote: three polls, each enriched over the polls so far.
    let bucket = BucketConfig {
        capacity: 20,
        refill_tokens: 6,
        refill_period_secs: 60,
    };
    let mut window = Vec::new();
    assert_eq!(rows.len(), 3);
    for (row, (secs, tokens)) in rows.iter().zip([(0, 20), (300, 19), (600, 12)]) {
        let at = DateTime::from_timestamp(1_795_000_000 + secs, 833_000_000).expect("time");
        let sample = Sample {
            at,
            available_tokens: tokens,
            bucket,
            category: PspCategory::A,
        };
        window.push(sample);
        assert_eq!(row.policy.as_str(), "POLICIES_LIST");
        assert_eq!(row.sample, sample);
        assert_eq!(row.created_at, at + TimeDelta::microseconds(4_120));
        assert_eq!(Some(row.enrichment), enrich(&window, RateWindow::default()));
    }
    // Third poll, over both pairs of the 15-minute window: 20 → 19 and 19 → 12, each within one
    // refill step (6) of capacity, so only the drops count: 1 + 7 = 8 in 10 minutes, 0.8/min.
    assert_eq!(
        rows[2]
            .enrichment
            .consumption_rate_per_minute
            .map(|r| (r * 10.0).round()),
        Some(8.0)
    );
}

#[test]
fn version_1_corrupt_segment_is_reported_at_block_1() {
    let dir = data_dir_with("segment-v1-corrupt.seg");
    let report = verify(dir.path(), &mut |_, _, _| {}).expect("verify runs");
    let problems = segment_problems(&report);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].contains("2026-11.seg: offset 147 (block 1)"),
        "{problems:?}"
    );
    let mut rows = 0;
    StoreReader::open(dir.path())
        .expect("reader")
        .scan(&Filter::default(), &mut |_| rows += 1)
        .expect("scan");
    assert_eq!(rows, 2, "blocks 0 and 2 still read");
    // The command says so too, with exit status 1.
    let out = dictmon()
        .args(["verify", "--data-dir"])
        .arg(dir.path())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("CORRUPT:") && stdout.contains("offset 147 (block 1)"),
        "{stdout}"
    );
    // The intact fixture: no segment problem, only the catalog it came without.
    let clean = data_dir_with("segment-v1.seg");
    let out = dictmon()
        .args(["verify", "--data-dir"])
        .arg(clean.path())
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        !stdout.contains("offset") && stdout.contains("catalog.redb: missing"),
        "{stdout}"
    );
}

/// Everything under `dir`: relative path → bytes.
fn snapshot_of(dir: &Path) -> std::collections::BTreeMap<std::path::PathBuf, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let bytes = std::fs::read(&path).expect("read");
                out.insert(path.strip_prefix(dir).expect("inside").to_owned(), bytes);
            }
        }
    }
    out
}

#[test]
fn readers_change_nothing_in_a_copied_data_directory() {
    // A data directory as a writer leaves it, with a torn tail a reader must not cut, copied
    // elsewhere for forensics.
    let live = tempfile::tempdir().expect("temp");
    let status = dictmon()
        .args(["simulate", "--backfill", "2d", "--data-dir"])
        .arg(live.path())
        .status()
        .expect("run");
    assert!(status.success());
    let copy = tempfile::tempdir().expect("temp");
    for (rel, bytes) in snapshot_of(live.path()) {
        let target = copy.path().join(&rel);
        std::fs::create_dir_all(target.parent().expect("parent")).expect("mkdir");
        std::fs::write(&target, bytes).expect("copy");
    }
    std::fs::remove_file(copy.path().join("LOCK")).expect("no lock on a copy");
    let segment = StoreReader::open(copy.path())
        .expect("reader")
        .months()
        .expect("months")[0];
    let seg_path = copy.path().join("segments").join(segment.file_name());
    let mut bytes = std::fs::read(&seg_path).expect("segment");
    bytes.extend_from_slice(b"DMBK\x10\x00"); // an append cut short
    std::fs::write(&seg_path, bytes).expect("torn tail");
    let before = snapshot_of(copy.path());

    let report = verify(copy.path(), &mut |_, _, _| {}).expect("verify");
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.torn_tails.len(), 1);
    let reader = StoreReader::open(copy.path()).expect("reader");
    let mut rows = 0;
    reader
        .scan(&Filter::default(), &mut |_| rows += 1)
        .expect("scan");
    assert!(rows > 0);
    assert!(
        !reader
            .catalog()
            .expect("catalog")
            .policies()
            .expect("policies")
            .is_empty()
    );
    let out = dictmon()
        .args(["verify", "--data-dir"])
        .arg(copy.path())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(0));
    // The forensic commands, on the same copy.
    let exported = tempfile::tempdir().expect("temp");
    for args in [
        vec!["query", "states", "--format", "json"],
        vec!["query", "alerts", "--format", "csv"],
        vec!["status"],
        vec!["export", "--out", exported.path().to_str().expect("utf-8")],
    ] {
        let out = dictmon()
            .args(&args)
            .arg("--data-dir")
            .arg(copy.path())
            .output()
            .expect("run");
        assert!(
            out.status.success() && !out.stdout.is_empty(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(exported.path().join("states.csv").exists());

    assert_eq!(
        snapshot_of(copy.path()),
        before,
        "a reader changed the data directory"
    );
}

/// Regression (fuzz `catalog_read`): redb 4.6 panics on this damaged catalog; readers catch it
/// and say the catalog is damaged, and `status` exits 2 with that message instead of crashing.
#[test]
fn a_catalog_redb_panics_on_is_reported_as_damaged() {
    let dir = data_dir_with("segment-v1.seg");
    let catalog = dir.path().join("catalog.redb");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/catalog-redb-panics.redb"),
        &catalog,
    )
    .expect("copy fixture");
    let damaged = |e: &dictmon::store::catalog::CatalogError| {
        matches!(e, dictmon::store::catalog::CatalogError::Damaged { .. })
    };
    let outcome = dictmon::store::catalog::CatalogReader::open(&catalog).map(|c| {
        [
            c.alerts().err(),
            c.policies().err(),
            c.outbox().err(),
            c.sinks().err(),
        ]
    });
    let any_damaged = match &outcome {
        Err(e) => damaged(e),
        Ok(reads) => reads.iter().flatten().any(damaged),
    };
    assert!(any_damaged, "the damage is reported: {outcome:?}");
    let out = dictmon()
        .args(["status", "--data-dir"])
        .arg(dir.path())
        .output()
        .expect("status");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("is damaged"), "{stderr}");
}

/// A damaged catalog stops the writers with an error naming it — never a panic inside redb —
/// and the segments stay exportable.
#[test]
fn writers_refuse_a_damaged_catalog_with_an_error_and_states_still_export() {
    let dir = tempfile::tempdir().expect("temp");
    let data = dir.path().join("data");
    crate::util::backfill(&data, "2d");
    // Zeros over the catalog's first B-tree page: redb 4.6 panics on it ("Invalid page type
    // byte 0") rather than returning an error.
    let catalog = data.join("catalog.redb");
    let mut bytes = std::fs::read(&catalog).expect("catalog");
    bytes[4096..8192].fill(0);
    std::fs::write(&catalog, &bytes).expect("damage the catalog");
    let csv = dir.path().join("states.csv");
    std::fs::write(&csv, "endpoint_id,available_tokens,capacity,refill_tokens,refill_period_sec,psp_category,response_time\n").expect("csv");
    for args in [
        vec![
            "serve",
            "--interval",
            "1s",
            "--listen",
            "127.0.0.1:0",
            "--grpc-listen",
            "off",
        ],
        vec!["import", "--states", csv.to_str().expect("utf-8")],
        vec!["retention"],
    ] {
        let out = crate::util::dictmon()
            .args(&args)
            .arg("--data-dir")
            .arg(&data)
            .output()
            .expect("spawn");
        let said = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {said}");
        assert!(
            said.contains("catalog.redb") && said.contains("damaged") && !said.contains("panicked"),
            "{args:?}: {said}"
        );
    }
    let out = crate::util::dictmon()
        .args(["query", "states", "--format", "csv", "--data-dir"])
        .arg(&data)
        .output()
        .expect("spawn");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).lines().count() > 29 * 500);
    // `export` writes every state, says the catalog's tables are missing, and exits 1.
    let exported = dir.path().join("export");
    let out = crate::util::dictmon()
        .args(["export", "--data-dir"])
        .arg(&data)
        .arg("--out")
        .arg(&exported)
        .output()
        .expect("spawn");
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("not the alerts and policies"), "{said}");
    let states = std::fs::read_to_string(exported.join("states.csv")).expect("states.csv");
    assert!(states.lines().count() > 29 * 500);
    assert_eq!(
        std::fs::read_to_string(exported.join("alerts.csv"))
            .expect("alerts.csv")
            .lines()
            .count(),
        1
    );
}

/// A segment whose 32-byte header fails its checksum is corruption, and its blocks — which
/// check themselves — are still checked and counted by `verify` (it said "0 blocks").
#[test]
fn a_damaged_segment_header_is_reported_and_its_blocks_still_verified() {
    let dir = data_dir_with("segment-v1.seg");
    let path = dir.path().join("segments/2026-11.seg");
    let mut bytes = std::fs::read(&path).expect("segment");
    bytes[20] ^= 0x40; // inside `created`: the header CRC no longer matches
    std::fs::write(&path, &bytes).expect("write");
    let report = verify(dir.path(), &mut |_, _, _| {}).expect("verify runs");
    let problems = segment_problems(&report);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].contains("offset 0") && problems[0].contains("segment header"),
        "{problems:?}"
    );
    assert_eq!((report.blocks, report.rows), (3, 3));
}
