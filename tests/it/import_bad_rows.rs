//! `dictmon import` on a hand-written legacy CSV full of bad rows: every bad line reported with
//! its number and reason, the good rows landed, `--strict` writes nothing.

use std::path::Path;

use crate::util::dictmon;

/// Columns in another order than the legacy table's, plus one dictmon does not know.
const CSV: &str = "\
response_time,endpoint_id,available_tokens,capacity,refill_tokens,refill_period_sec,psp_category,utilization_percent,note
2026-01-01 00:00:00+00,ENTRIES_WRITE,900,1000,100,60,C,10,first
2026-01-01 00:00:00.5-03,KEYS_CHECK,50,100,10,60,C,,\"quoted, with a comma\"
2026-01-01 00:05:00+00,ENTRIES_WRITE,5
yesterday,ENTRIES_WRITE,900,1000,100,60,C,10,
2026-01-01 00:10:00+00,ENTRIES_WRITE,1001,1000,100,60,C,0,
2026-01-01 00:00:00+00,ENTRIES_WRITE,800,1000,100,60,C,20,again
2026-01-01 00:15:00+00,ENTRIES_WRITE,700,1000,100,60,C,30,
2026-01-01 00:20:00+00,ENTRIES_WRITE,12x,1000,100,60,C,30,
2026-01-01 00:20:00+00,entries write,700,1000,100,60,C,30,
2026-01-01 00:25:00+00,ENTRIES_WRITE,-5,1000,100,60,Z,100.5,
";

fn import(dir: &Path, csv: &Path, strict: bool) -> (i32, String, String) {
    let mut cmd = dictmon();
    cmd.args(["import", "--data-dir"])
        .arg(dir)
        .arg("--states")
        .arg(csv);
    if strict {
        cmd.arg("--strict");
    }
    let out = cmd.output().expect("import");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn stored(dir: &Path) -> Vec<String> {
    let out = dictmon()
        .args(["query", "states", "--format", "pg-csv", "--data-dir"])
        .arg(dir)
        .output()
        .expect("query");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .skip(1)
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_bad_line_is_reported_and_the_good_rows_land() {
    let work = tempfile::tempdir().expect("temp");
    let csv = work.path().join("legacy.csv");
    std::fs::write(&csv, CSV).expect("write");
    let data = work.path().join("data");
    let (code, stdout, stderr) = import(&data, &csv, false);
    assert_eq!(code, 1, "bad rows were skipped: exit 1\n{stderr}");
    let name = csv.display().to_string();
    let reported = |line: u32| {
        stderr
            .lines()
            .find(|l| l.starts_with(&format!("{name}:{line}: ")))
            .map(str::to_owned)
    };
    for (line, reason) in [
        (4, "missing column"),
        (5, "response_time"),
        (6, "exceed capacity"),
        (7, "duplicate of line 2"),
        (9, "available_tokens"),
        (10, "endpoint_id"),
    ] {
        let got = reported(line).unwrap_or_else(|| panic!("line {line} not reported:\n{stderr}"));
        assert!(got.contains(reason), "line {line}: {got}");
    }
    for good in [2, 3, 8] {
        assert_eq!(reported(good), None, "good line {good} reported:\n{stderr}");
    }
    // Line 11: psp_category Z is kept as an unknown category, but the balance -5 is legal and
    // 100.5 % utilisation is what the legacy system stored; it is a good row.
    assert_eq!(reported(11), None, "{stderr}");
    assert!(
        stderr.contains("column \"note\" is not used; ignored"),
        "{stderr}"
    );
    assert!(stdout.contains("imported 4 states"), "{stdout}");
    assert!(
        stdout.contains("skipped 1 rows already present and 5 bad rows"),
        "{stdout}"
    );

    let rows = stored(&data);
    assert_eq!(rows.len(), 4, "{rows:#?}");
    assert!(rows.iter().any(|r| r.starts_with("ENTRIES_WRITE,900,1000,100,60,C,10,,,,2026-01-01 00:00:00+00,")));
    assert!(
        rows.iter()
            .any(|r| r.starts_with("KEYS_CHECK,50,100,10,60,C,50,,,,2026-01-01 03:00:00.5+00,"))
    );
    assert!(
        rows.iter()
            .any(|r| r.starts_with("ENTRIES_WRITE,700,1000,100,60,C,30,"))
    );
    assert!(
        rows.iter()
            .any(|r| r.starts_with("ENTRIES_WRITE,-5,1000,100,60,Z,100.5,"))
    );

    // --strict: the same file writes nothing.
    let strict = work.path().join("strict");
    let (code, _, stderr) = import(&strict, &csv, true);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("nothing was written"), "{stderr}");
    assert!(reported(4).is_some());
    assert!(
        !strict.exists(),
        "nothing written, not even the data directory"
    );
}

#[test]
fn older_history_widens_the_catalog_without_moving_its_latest() {
    let work = tempfile::tempdir().expect("temp");
    let data = work.path().join("data");
    let header = "endpoint_id,available_tokens,capacity,refill_tokens,refill_period_sec,psp_category,response_time\n";
    let newer = work.path().join("newer.csv");
    std::fs::write(
        &newer,
        format!("{header}KEYS_CHECK,90,100,10,60,C,2026-01-02 00:00:00+00\n"),
    )
    .expect("write");
    let older = work.path().join("older.csv");
    std::fs::write(
        &older,
        format!("{header}KEYS_CHECK,80,100,10,60,D,2025-12-01 00:00:00+00\n"),
    )
    .expect("write");
    assert_eq!(import(&data, &newer, true).0, 0);
    assert_eq!(import(&data, &older, true).0, 0);
    let policies = dictmon::store::StoreReader::open(&data)
        .expect("reader")
        .catalog()
        .expect("catalog")
        .policies()
        .expect("policies");
    let p = policies.first().expect("one policy");
    assert_eq!(p.first_seen.to_rfc3339(), "2025-12-01T00:00:00+00:00");
    assert_eq!(p.last_seen.to_rfc3339(), "2026-01-02T00:00:00+00:00");
    assert_eq!(
        p.policy.category.to_string(),
        "C",
        "the latest configuration stays"
    );
    assert_eq!(stored(&data).len(), 2);
}

/// Bad lines by the tens of thousands (and one far past the calendar, which once panicked):
/// every one counted, the first 10,000 listed, the rest summed up; the good rows land.
#[test]
fn a_flood_of_bad_lines_is_counted_not_kept() {
    let work = tempfile::tempdir().expect("temp");
    let csv = work.path().join("states.csv");
    let mut text = String::from(
        "endpoint_id,available_tokens,capacity,refill_tokens,refill_period_sec,psp_category,response_time\n\
         ENTRIES_WRITE,900,1000,100,60,C,2026-01-01 00:00:00+00\n\
         ENTRIES_WRITE,900,1000,100,60,C,+262142-12-31 23:59:59-01\n",
    );
    for _ in 0..25_000 {
        text.push_str("ENTRIES_WRITE,lots,1000,100,60,C,2026-01-01 00:05:00+00\n");
    }
    std::fs::write(&csv, text).expect("csv");
    let (code, stdout, stderr) = import(&work.path().join("data"), &csv, false);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stdout.contains("imported 1 states") && stdout.contains("25001 bad rows"),
        "{stdout}"
    );
    assert!(
        stderr.contains("… and 15001 more"),
        "{}",
        &stderr[stderr.len().saturating_sub(300)..]
    );
    assert!(
        stderr.contains("states.csv:3: response_time") && stderr.contains("outside the range"),
        "the far-future line"
    );
    assert_eq!(stored(&work.path().join("data")).len(), 1);
}

/// Garbage that is one endless record — a line with no end, or a quote never closed before
/// millions of short lines — is stopped at 64 KiB: the rows before it land, the bad record is
/// reported at its line, and the rest of the file is not read (once, 1 GB of it aborted the
/// import by exhausting memory).
#[test]
fn an_endless_record_is_stopped_and_the_rows_before_it_land() {
    use std::io::Write;
    let work = tempfile::tempdir().expect("temp");
    let header = "endpoint_id,available_tokens,capacity,refill_tokens,refill_period_sec,psp_category,response_time\n";
    let good = "KEYS_CHECK,90,100,10,60,C,2026-01-02 00:00:00+00\n";
    for (name, garbage) in [
        ("no-line-end.csv", vec![b'a'; 8 << 20]),
        ("open-quote.csv", {
            let mut g = b"\"".to_vec();
            g.extend(b"x,y,z\n".repeat(1 << 20));
            g
        }),
    ] {
        let csv = work.path().join(name);
        let mut f = std::fs::File::create(&csv).expect("create");
        f.write_all(header.as_bytes()).expect("write");
        f.write_all(good.as_bytes()).expect("write");
        f.write_all(&garbage).expect("write");
        drop(f);
        let data = work.path().join(format!("data-{name}"));
        let (code, stdout, stderr) = import(&data, &csv, false);
        assert_eq!(code, 1, "{name}: {stdout}{stderr}");
        assert!(
            stderr.contains(&format!("{name}:3: a record longer than 65536 bytes"))
                && stderr.contains("the rest of the file was not read"),
            "{name}: {stderr}"
        );
        assert!(stdout.contains("imported 1 states"), "{name}: {stdout}");
        assert_eq!(stored(&data).len(), 1, "{name}");
    }
}
