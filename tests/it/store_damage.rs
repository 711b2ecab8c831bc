//! Damage is called damage (§7, §10.1, §10.2): acknowledged blocks cut off exactly at a block
//! boundary, cut inside, or zeroed — in a closed month or in the current one — are reported by
//! `verify` (exit 1) and never cut by a writer as an interrupted append; an append really
//! interrupted still is. A deleted or replaced `catalog.redb`, and an alert record edited inside
//! it, are reported too; retention leaves nothing to report.

use std::path::Path;

use chrono::{DateTime, TimeDelta, Utc};
use dictmon::domain::{Alert, AlertCause, PolicyName, PspCategory, Severity};
use dictmon::store::catalog::CatalogUpdate;
use dictmon::store::{Store, StoreOptions, verify};

use crate::util::{dictmon, record};

/// 2026-10-31 22:00 UTC: two hours of October, then two of November.
fn start() -> DateTime<Utc> {
    DateTime::from_timestamp(1_793_484_000, 0).expect("in range")
}

/// A data directory with October (closed, compacted into sealed blocks) and November (one
/// sealed block of history, then live blocks of one poll each), and one CRITICAL alert.
fn store_with_two_months(dir: &Path) {
    let mut store = Store::open(dir, StoreOptions::default()).expect("open");
    let policies = ["ENTRIES_WRITE", "ENTRIES_READ_USER_ANTISCAN"];
    let rows = |from: i64, to: i64| {
        (from..to)
            .flat_map(|m| {
                policies
                    .iter()
                    .map(move |p| record(p, start() + TimeDelta::minutes(m), 500))
            })
            .collect::<Vec<_>>()
    };
    store
        .append_sealed(&rows(0, 60))
        .expect("October, first hour");
    store
        .append_sealed(&rows(60, 120))
        .expect("October, second hour");
    store
        .append_sealed(&rows(120, 180))
        .expect("November, history");
    for m in 180..185 {
        store.append(&rows(m, m + 1)).expect("November, live");
    }
    store.compact().expect("compact");
    let alert = Alert {
        id: uuid::Uuid::from_u128(7),
        policy: PolicyName::new("ENTRIES_WRITE").expect("valid"),
        severity: Severity::Critical,
        peak_severity: None,
        cause: AlertCause::Threshold,
        opened_at: start(),
        available_tokens: 10,
        capacity: 1000,
        utilization_percent: 99.0,
        psp_category: PspCategory::C,
        message: "ENTRIES_WRITE at 1 %".into(),
        resolved_at: None,
        resolution: None,
    };
    store
        .catalog()
        .apply(&CatalogUpdate {
            alerts: vec![alert],
            ..Default::default()
        })
        .expect("alert");
}

fn segment(dir: &Path, month: &str) -> std::path::PathBuf {
    dir.join(format!("segments/{month}.seg"))
}

/// Offsets of the blocks of a segment, and the file's length.
fn blocks(path: &Path) -> (Vec<u64>, u64) {
    let bytes = std::fs::read(path).expect("segment");
    let layout = dictmon::store::raw::layout(&bytes);
    assert!(layout.damage.is_empty() && layout.torn_tail.is_none());
    (
        layout.blocks.iter().map(|b| b.offset).collect(),
        bytes.len() as u64,
    )
}

/// `verify`'s problems, and its exit status as the command.
fn verified(dir: &Path) -> (Vec<String>, Option<i32>) {
    let report = verify(dir, &mut |_, _, _| {}).expect("verify runs");
    let status = dictmon()
        .args(["verify", "--data-dir"])
        .arg(dir)
        .output()
        .expect("run")
        .status
        .code();
    (report.problems, status)
}

fn cut(path: &Path, len: u64) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|f| f.set_len(len))
        .expect("truncate");
}

/// A writer opens the directory: nothing is cut, the damage is reported.
fn writer_keeps(dir: &Path, path: &Path) {
    let len = std::fs::metadata(path).expect("segment").len();
    let store = Store::open(dir, StoreOptions::default()).expect("open despite damage");
    assert!(
        store.recovery().torn_tails.is_empty(),
        "{:?}",
        store.recovery()
    );
    assert!(
        store
            .recovery()
            .damaged
            .iter()
            .any(|(p, what)| p == path && what.contains("acknowledged rows are missing")),
        "{:?}",
        store.recovery()
    );
    drop(store);
    assert_eq!(std::fs::metadata(path).expect("segment").len(), len);
    assert!(!dir.join("quarantine").exists());
}

#[test]
fn a_healthy_store_verifies_clean() {
    let tmp = tempfile::tempdir().expect("temp");
    store_with_two_months(tmp.path());
    assert_eq!(verified(tmp.path()), (vec![], Some(0)));
}

#[test]
fn blocks_cut_at_a_block_boundary_are_damage_in_a_closed_month_and_the_current_one() {
    for month in ["2026-10", "2026-11"] {
        let tmp = tempfile::tempdir().expect("temp");
        store_with_two_months(tmp.path());
        let path = segment(tmp.path(), month);
        let (offsets, _) = blocks(&path);
        // Exactly where the last block starts: every block left is whole.
        cut(&path, *offsets.last().expect("a block"));
        let (problems, status) = verified(tmp.path());
        assert_eq!(status, Some(1), "{month}: {problems:?}");
        assert!(
            problems.iter().any(|p| p.contains(&format!("{month}.seg"))
                && p.contains("acknowledged rows are missing")),
            "{month}: {problems:?}"
        );
        writer_keeps(tmp.path(), &path);
        // And it stays reported after the writer appended again.
        assert_eq!(verified(tmp.path()).1, Some(1));
    }
}

#[test]
fn a_block_cut_inside_or_zeroed_is_damage_not_a_torn_tail() {
    for month in ["2026-10", "2026-11"] {
        let tmp = tempfile::tempdir().expect("temp");
        store_with_two_months(tmp.path());
        let path = segment(tmp.path(), month);
        let (offsets, len) = blocks(&path);
        let last = *offsets.last().expect("a block");
        cut(&path, last + (len - last) / 2);
        assert_eq!(verified(tmp.path()).1, Some(1), "{month}: cut inside");
        writer_keeps(tmp.path(), &path);

        let tmp = tempfile::tempdir().expect("temp");
        store_with_two_months(tmp.path());
        let path = segment(tmp.path(), month);
        let mut bytes = std::fs::read(&path).expect("segment");
        let at = usize::try_from(last).expect("small");
        bytes[at..].fill(0);
        std::fs::write(&path, &bytes).expect("zero");
        assert_eq!(verified(tmp.path()).1, Some(1), "{month}: zeroed");
        writer_keeps(tmp.path(), &path);
    }
}

#[test]
fn an_interrupted_append_past_the_acknowledged_rows_is_still_cut() {
    let tmp = tempfile::tempdir().expect("temp");
    store_with_two_months(tmp.path());
    let path = segment(tmp.path(), "2026-11");
    let (_, len) = blocks(&path);
    // Half of a block header: what a crash in the middle of an append leaves.
    let mut bytes = std::fs::read(&path).expect("segment");
    bytes.extend_from_slice(b"DMBK\x10\x00\x00\x00\x01\x02");
    std::fs::write(&path, &bytes).expect("append");
    let store = Store::open(tmp.path(), StoreOptions::default()).expect("open");
    assert_eq!(
        store.recovery().torn_tails,
        vec![(path.clone(), len, 10)],
        "{:?}",
        store.recovery()
    );
    drop(store);
    assert_eq!(verified(tmp.path()), (vec![], Some(0)));
}

#[test]
fn a_deleted_catalog_is_reported_before_and_after_a_writer_makes_a_new_one() {
    let tmp = tempfile::tempdir().expect("temp");
    store_with_two_months(tmp.path());
    std::fs::remove_file(tmp.path().join("catalog.redb")).expect("rm");
    let (problems, status) = verified(tmp.path());
    assert_eq!(status, Some(1));
    assert!(
        problems
            .iter()
            .any(|p| p.contains("catalog.redb: missing while the segments hold rows")),
        "{problems:?}"
    );
    let store = Store::open(tmp.path(), StoreOptions::default()).expect("open");
    assert!(
        store
            .recovery()
            .findings
            .iter()
            .any(|f| f.contains("created afresh")),
        "{:?}",
        store.recovery()
    );
    drop(store);
    let (problems, status) = verified(tmp.path());
    assert_eq!(status, Some(1));
    assert!(
        problems.iter().any(|p| p.contains("created afresh")
            && p.contains("2026-10")
            && p.contains("2026-11")),
        "{problems:?}"
    );
}

#[test]
fn a_catalog_from_another_data_directory_is_reported() {
    let tmp = tempfile::tempdir().expect("temp");
    store_with_two_months(tmp.path());
    let other = tempfile::tempdir().expect("temp");
    let mut store = Store::open(other.path(), StoreOptions::default()).expect("open");
    store
        .append(&[record("ENTRIES_WRITE", start() + TimeDelta::days(40), 500)])
        .expect("December");
    drop(store);
    std::fs::copy(
        other.path().join("catalog.redb"),
        tmp.path().join("catalog.redb"),
    )
    .expect("replace");
    let (problems, status) = verified(tmp.path());
    assert_eq!(status, Some(1));
    assert!(
        problems
            .iter()
            .any(|p| p.contains("2026-10.seg") && p.contains("segment the catalog does not know")),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.contains("2026-12.seg") && p.contains("missing")),
        "{problems:?}"
    );
}

#[test]
fn an_alert_edited_inside_the_catalog_is_reported() {
    let tmp = tempfile::tempdir().expect("temp");
    store_with_two_months(tmp.path());
    // What someone with write access to the file could do: CRITICAL becomes WARNING.
    {
        use redb::ReadableTable;
        const ALERTS: redb::TableDefinition<u128, &[u8]> = redb::TableDefinition::new("alerts");
        let db = redb::Database::open(tmp.path().join("catalog.redb")).expect("redb");
        let tx = db.begin_write().expect("tx");
        {
            let mut alerts = tx.open_table(ALERTS).expect("alerts");
            let value = alerts
                .get(7)
                .expect("get")
                .expect("alert 7")
                .value()
                .to_vec();
            let text = String::from_utf8(value).expect("JSON");
            assert!(text.contains("CRITICAL"), "{text}");
            let edited = text.replace("CRITICAL", "WARNING");
            alerts.insert(7, edited.as_bytes()).expect("edit");
        }
        tx.commit().expect("commit");
    }
    let (problems, status) = verified(tmp.path());
    assert_eq!(status, Some(1));
    assert!(
        problems
            .iter()
            .any(|p| p.contains(&uuid::Uuid::from_u128(7).to_string())
                && p.contains("changed after dictmon wrote it")),
        "{problems:?}"
    );
}

#[test]
fn retention_leaves_nothing_to_report() {
    let tmp = tempfile::tempdir().expect("temp");
    store_with_two_months(tmp.path());
    // October in two files: its first damaged, so a late row went to `2026-10.1.seg`.
    let october = segment(tmp.path(), "2026-10");
    let mut bytes = std::fs::read(&october).expect("segment");
    bytes[100] ^= 1;
    std::fs::write(&october, &bytes).expect("damage");
    let mut store = Store::open(tmp.path(), StoreOptions::default()).expect("open");
    store
        .append(&[record("ENTRIES_WRITE", start() + TimeDelta::minutes(30), 1)])
        .expect("a late October row");
    drop(store);
    assert!(tmp.path().join("segments/2026-10.1.seg").exists());
    let mut store = Store::open(tmp.path(), StoreOptions::default()).expect("open");
    let now = start() + TimeDelta::days(20);
    let report = store
        .apply_retention(now, 1, None, false)
        .expect("retention");
    assert_eq!(report.months.len(), 1, "{report:?}");
    drop(store);
    assert!(!segment(tmp.path(), "2026-10").exists());
    assert!(!tmp.path().join("segments/2026-10.1.seg").exists());
    assert_eq!(verified(tmp.path()), (vec![], Some(0)));
}

/// A backup taken while a writer ran copies a segment before the catalog that counted rows
/// appended after: the copy is not damaged — `verify` notes it, a writer restoring it counts on
/// from what it holds — while the same shortfall in the file the writer counted is damage.
#[test]
fn a_segment_copied_before_its_catalog_is_a_copy_not_damage() {
    let tmp = tempfile::tempdir().expect("temp");
    store_with_two_months(tmp.path());
    let copy = tempfile::tempdir().expect("temp");
    std::fs::create_dir_all(copy.path().join("segments")).expect("mkdir");
    for month in ["2026-10", "2026-11"] {
        std::fs::copy(segment(tmp.path(), month), segment(copy.path(), month)).expect("copy");
    }
    // The writer appends after the segments were copied, then the catalog is copied.
    let mut store = Store::open(tmp.path(), StoreOptions::default()).expect("open");
    store
        .append(&[record("ENTRIES_WRITE", start() + TimeDelta::hours(4), 500)])
        .expect("append");
    drop(store);
    std::fs::copy(
        tmp.path().join("catalog.redb"),
        copy.path().join("catalog.redb"),
    )
    .expect("copy catalog");

    let report = verify(copy.path(), &mut |_, _, _| {}).expect("verify");
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert!(
        report
            .notes
            .iter()
            .any(|n| n.contains("2026-11.seg: 1 rows") && n.contains("not damage")),
        "{:?}",
        report.notes
    );
    let store = Store::open(copy.path(), StoreOptions::default()).expect("restore");
    assert_eq!(
        store.recovery().copied_behind,
        vec![(segment(copy.path(), "2026-11"), 1)]
    );
    assert!(
        store.recovery().findings.is_empty(),
        "{:?}",
        store.recovery()
    );
    drop(store);
    assert_eq!(verified(copy.path()), (vec![], Some(0)));
}

/// A block copied over another of the same length leaves a well-formed segment with as many
/// rows as before: `verify` still finds it, by the repeated block header.
#[test]
fn a_block_copied_over_another_is_damage() {
    let tmp = tempfile::tempdir().expect("temp");
    store_with_two_months(tmp.path());
    let path = segment(tmp.path(), "2026-11");
    let bytes = std::fs::read(&path).expect("segment");
    let layout = dictmon::store::raw::layout(&bytes);
    let (a, c) = layout
        .blocks
        .iter()
        .enumerate()
        .find_map(|(i, a)| {
            layout.blocks[i + 1..]
                .iter()
                .find(|c| c.header.block_len() == a.header.block_len())
                .map(|c| (*a, *c))
        })
        .expect("two blocks of one length (live blocks of one poll each)");
    let (from, to, n) = (
        usize::try_from(a.offset).expect("small"),
        usize::try_from(c.offset).expect("small"),
        usize::try_from(a.header.block_len()).expect("small"),
    );
    let mut damaged = bytes.clone();
    damaged.copy_within(from..from + n, to);
    std::fs::write(&path, &damaged).expect("write");
    let (problems, status) = verified(tmp.path());
    assert_eq!(status, Some(1), "{problems:?}");
    assert!(
        problems
            .iter()
            .any(|p| p.contains("2026-11.seg") && p.contains("repeats block")),
        "{problems:?}"
    );
}

/// Nothing is ever appended behind damage: once the month's file is damaged, new rows go to
/// the month's next file (`YYYY-MM.1.seg`), the damaged one stays byte for byte as found, and
/// readers read both.
#[test]
fn new_rows_never_land_behind_damage_but_in_the_months_next_file() {
    let tmp = tempfile::tempdir().expect("temp");
    store_with_two_months(tmp.path());
    let path = segment(tmp.path(), "2026-11");
    let (offsets, _) = blocks(&path);
    let mut bytes = std::fs::read(&path).expect("segment");
    let inside = usize::try_from(offsets[0]).expect("small") + 60;
    bytes[inside] ^= 0x10;
    std::fs::write(&path, &bytes).expect("damage");

    let later = |minutes: i64| record("ENTRIES_WRITE", start() + TimeDelta::minutes(minutes), 500);
    for m in [300, 301] {
        let mut store = Store::open(tmp.path(), StoreOptions::default()).expect("open");
        store.append(&[later(m)]).expect("append");
    }
    assert_eq!(
        std::fs::read(&path).expect("segment"),
        bytes,
        "the damaged file is untouched"
    );
    let next = tmp.path().join("segments/2026-11.1.seg");
    assert!(next.exists(), "the month's next file");
    assert!(!tmp.path().join("segments/2026-11.2.seg").exists());

    let mut times = Vec::new();
    let filter = dictmon::store::Filter {
        policies: Some([PolicyName::new("ENTRIES_WRITE").expect("valid")].into()),
        ..Default::default()
    };
    dictmon::store::StoreReader::open(tmp.path())
        .expect("reader")
        .scan(&filter, &mut |r| times.push(r.sample.at))
        .expect("scan");
    for m in [300, 301] {
        assert!(
            times.contains(&(start() + TimeDelta::minutes(m))),
            "row at +{m} min"
        );
    }
    let (problems, status) = verified(tmp.path());
    assert_eq!(status, Some(1));
    assert!(
        problems
            .iter()
            .all(|p| p.contains("2026-11.seg") && !p.contains("2026-11.1.seg")),
        "{problems:?}"
    );
}
