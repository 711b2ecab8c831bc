//! `dictmon query summary` and `dictmon query episodes` against an independent computation over
//! `dictmon query states` output: generated history (three policies, 5-minute polls, three
//! days across a month end) with episodes placed on purpose — one across the month end that
//! reaches zero, one cut by a 40-minute gap in polling, one that a single missed poll does not
//! cut, one exactly at the WARNING threshold, a noisy policy around it, and one still going at
//! the window's end. The check walks every second of the window, which shares no code with the
//! engine's interval arithmetic.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use chrono::{DateTime, Datelike, TimeDelta, Utc};

use crate::util::{dictmon, run_ok};

const START: &str = "2026-01-30T00:00:00Z";
const UNTIL: &str = "2026-02-02T00:05:00Z";
const MAX_GAP: i64 = 15 * 60;
const ALERT_A: &str = "6f1c3f52-3e43-4ad1-9a35-0d1c2a000001";
const ALERT_B: &str = "6f1c3f52-3e43-4ad1-9a35-0d1c2a000002";

fn t(s: &str) -> DateTime<Utc> {
    s.parse().expect("time")
}

/// (policy, capacity, available at `at`, or none when that poll is missing).
fn level(policy: &str, at: DateTime<Utc>, noise: u64) -> Option<i64> {
    let within = |a: &str, b: &str| at >= t(a) && at < t(b);
    match policy {
        // Across the month end, down to zero and below; then a 40-minute gap while low.
        "ENTRIES_WRITE" => {
            if within("2026-02-01T00:30:00Z", "2026-02-01T01:10:00Z") {
                None
            } else if within("2026-01-31T22:00:00Z", "2026-02-01T01:30:00Z") {
                let m = (at - t("2026-01-31T22:00:00Z")).num_minutes();
                Some(if m < 100 { 190 - 2 * m } else { -5 + m % 7 })
            } else {
                Some(600 + (noise % 300).cast_signed())
            }
        }
        // A low stretch with one missed poll inside; a stretch exactly at 20 %.
        "KEYS_CHECK" => {
            if at == t("2026-01-30T10:40:00Z") {
                None
            } else if within("2026-01-30T10:00:00Z", "2026-01-30T11:30:00Z") {
                Some(8 + (noise % 10).cast_signed())
            } else if within("2026-01-31T06:00:00Z", "2026-01-31T06:30:00Z") {
                Some(20)
            } else {
                Some(50 + (noise % 40).cast_signed())
            }
        }
        // Noisy around 20 % of 50 tokens; low at the very end.
        _ => {
            if at >= t("2026-02-01T23:30:00Z") {
                Some(3)
            } else {
                Some(4 + (noise % 14).cast_signed())
            }
        }
    }
}

const POLICIES: [(&str, i64); 3] = [
    ("ENTRIES_WRITE", 1000),
    ("KEYS_CHECK", 100),
    ("CLAIMS_READ", 50),
];

/// The legacy CSV of the generated history.
fn history() -> String {
    let mut csv = String::from(
        "endpoint_id,available_tokens,capacity,refill_tokens,refill_period_sec,psp_category,response_time\n",
    );
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut at = t(START);
    while at < t("2026-02-02T00:00:00Z") {
        for (policy, capacity) in POLICIES {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if let Some(a) = level(policy, at, x >> 8) {
                let _ = writeln!(
                    csv,
                    "{policy},{a},{capacity},10,60,C,{}",
                    at.format("%Y-%m-%d %H:%M:%S+00")
                );
            }
        }
        at += TimeDelta::minutes(5);
    }
    csv
}

const ALERTS: &str = "id,endpoint_id,severity,available_tokens,capacity,utilization_percent,psp_category,message,created_at,resolved,resolved_at,resolution_notes,cause
6f1c3f52-3e43-4ad1-9a35-0d1c2a000001,ENTRIES_WRITE,CRITICAL,150,1000,85,C,low,2026-01-31 22:20:00+00,t,2026-02-01 02:00:00+00,recovered,threshold
6f1c3f52-3e43-4ad1-9a35-0d1c2a000002,KEYS_CHECK,WARNING,15,100,85,C,earlier,2026-01-30 08:00:00+00,t,2026-01-30 08:30:00+00,recovered,threshold
";

#[derive(Debug)]
struct Row {
    at: i64,
    available: i64,
    remaining: f64,
    rate: Option<f64>,
}

fn states(dir: &Path) -> BTreeMap<String, Vec<Row>> {
    let out = run_ok(
        dictmon()
            .args(["query", "states", "--format", "csv", "--data-dir"])
            .arg(dir),
    );
    let mut lines = out.lines();
    let header: Vec<&str> = lines.next().expect("header").split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).expect(name);
    let (p, a, r, rate, at) = (
        col("endpoint_id"),
        col("available_tokens"),
        col("remaining_percent"),
        col("consumption_rate_per_minute"),
        col("response_time"),
    );
    let mut by: BTreeMap<String, Vec<Row>> = BTreeMap::new();
    for line in lines {
        let f: Vec<&str> = line.split(',').collect();
        by.entry(f[p].to_owned()).or_default().push(Row {
            at: t(f[at]).timestamp(),
            available: f[a].parse().expect("available"),
            remaining: f[r].parse().expect("remaining"),
            rate: f[rate].parse().ok(),
        });
    }
    by
}

/// Episodes and per-day times, second by second.
#[derive(Debug, Default)]
struct Expected {
    /// (policy, start, end, ongoing, lowest, samples).
    episodes: Vec<(String, i64, i64, bool, f64, u64)>,
    /// (policy, day) → (observed, ≤ warning, ≤ critical) seconds.
    times: BTreeMap<(String, i64), (i64, i64, i64)>,
}

fn expected(states: &BTreeMap<String, Vec<Row>>, low: &dyn Fn(f64) -> bool) -> Expected {
    let until = t(UNTIL).timestamp();
    let mut e = Expected::default();
    for (policy, rows) in states {
        let mut run: Option<(i64, f64, u64)> = None;
        let first = rows.first().expect("rows").at;
        for s in first..until {
            // The sample in force: the latest at or before s, if it is recent enough.
            let i = rows.partition_point(|r| r.at <= s);
            let row = (i > 0).then(|| &rows[i - 1]).filter(|r| s - r.at < MAX_GAP);
            let day = s - s.rem_euclid(86_400);
            let times = e.times.entry((policy.clone(), day)).or_default();
            if let Some(r) = row {
                times.0 += 1;
                times.1 += i64::from(r.remaining <= 20.0);
                times.2 += i64::from(r.remaining <= 10.0);
            }
            match (row.filter(|r| low(r.remaining)), &mut run) {
                (Some(r), Some((_, lowest, samples))) => {
                    if r.at == s {
                        *lowest = lowest.min(r.remaining);
                        *samples += 1;
                    }
                }
                (Some(r), None) => run = Some((s, r.remaining, 1)),
                (None, Some(_)) => {
                    let (start, lowest, samples) = run.take().expect("run");
                    e.episodes
                        .push((policy.clone(), start, s, false, lowest, samples));
                }
                (None, None) => {}
            }
        }
        if let Some((start, lowest, samples)) = run {
            let last = rows.last().expect("rows").at;
            let ongoing = last + MAX_GAP > until;
            e.episodes
                .push((policy.clone(), start, until, ongoing, lowest, samples));
        }
    }
    e.episodes.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
    e
}

fn csv_of(out: &str) -> Vec<BTreeMap<String, String>> {
    let mut lines = out.lines();
    let header: Vec<String> = lines
        .next()
        .expect("header")
        .split(',')
        .map(str::to_owned)
        .collect();
    lines
        .map(|l| {
            header
                .iter()
                .cloned()
                .zip(l.split(',').map(str::to_owned))
                .collect()
        })
        .collect()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 0.006
}

fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp");
    let states = dir.path().join("states.csv");
    let alerts = dir.path().join("alerts.csv");
    std::fs::write(&states, history()).expect("write");
    std::fs::write(&alerts, ALERTS).expect("write");
    run_ok(
        dictmon()
            .args(["import", "--data-dir"])
            .arg(dir.path().join("d"))
            .arg("--states")
            .arg(&states)
            .arg("--alerts")
            .arg(&alerts),
    );
    dir
}

fn query(dir: &Path, args: &[&str]) -> Vec<BTreeMap<String, String>> {
    csv_of(&run_ok(
        dictmon()
            .arg("query")
            .args(args)
            .args(["--format", "csv", "--until", UNTIL, "--data-dir"])
            .arg(dir),
    ))
}

fn check_episodes(got: &[BTreeMap<String, String>], want: &Expected) {
    let got: Vec<_> = got
        .iter()
        .map(|e| {
            (
                e["endpoint_id"].clone(),
                t(&e["start"]).timestamp(),
                t(&e["end"]).timestamp(),
                e["ongoing"] == "true",
                e["lowest_remaining_percent"]
                    .parse::<f64>()
                    .expect("lowest"),
                e["samples"].parse::<u64>().expect("samples"),
            )
        })
        .collect();
    assert_eq!(got.len(), want.episodes.len(), "{got:#?}\n{want:#?}");
    for (g, w) in got.iter().zip(&want.episodes) {
        assert!(
            g.0 == w.0 && g.1 == w.1 && g.2 == w.2 && g.3 == w.3 && close(g.4, w.4) && g.5 == w.5,
            "got {g:?}, want {w:?}"
        );
    }
}

#[test]
fn episodes_match_a_second_by_second_walk_of_the_states() {
    let work = setup();
    let dir = work.path().join("d");
    let states = states(&dir);

    let want = expected(&states, &|r| r <= 20.0);
    let got = query(&dir, &["episodes"]);
    check_episodes(&got, &want);
    // The placed episodes are there.
    let of = |p: &str| {
        want.episodes
            .iter()
            .filter(|e| e.0 == p)
            .collect::<Vec<_>>()
    };
    let a = of("ENTRIES_WRITE");
    assert_eq!(
        a.len(),
        2,
        "across the month end, then cut by the gap: {a:?}"
    );
    assert_eq!(
        a[0].1,
        t("2026-01-31T22:00:00Z").timestamp(),
        "190 of 1,000 is low"
    );
    assert_eq!(
        a[0].2,
        t("2026-02-01T00:40:00Z").timestamp(),
        "15 min after 00:25"
    );
    assert!(a[0].4 < 0.0, "reached below zero");
    let b = of("KEYS_CHECK");
    assert_eq!(
        b.len(),
        2,
        "one missed poll does not cut; 20 % is low: {b:?}"
    );
    assert_eq!(b[0].1, t("2026-01-30T10:00:00Z").timestamp());
    assert_eq!(b[0].2, t("2026-01-30T11:30:00Z").timestamp());
    let c = of("CLAIMS_READ");
    assert!(c.len() > 20, "a noisy policy: {}", c.len());
    assert!(
        c.last().expect("last").3,
        "low at the window's end: ongoing"
    );
    // The alert that covered the first episode, and not the earlier one.
    let ids: Vec<&String> = got.iter().map(|e| &e["alert_ids"]).collect();
    let first_a = got
        .iter()
        .find(|e| e["endpoint_id"] == "ENTRIES_WRITE")
        .expect("episode");
    assert_eq!(first_a["alert_ids"], ALERT_A);
    assert!(
        !ids.iter().any(|i| i.contains(ALERT_B)),
        "an alert resolved before an episode is not its"
    );

    // Strictly under a threshold.
    let want = expected(&states, &|r| r < 10.0);
    check_episodes(&query(&dir, &["episodes", "--below", "10"]), &want);
}

#[test]
fn summaries_match_a_second_by_second_walk_of_the_states() {
    let work = setup();
    let dir = work.path().join("d");
    let states = states(&dir);
    let want = expected(&states, &|r| r <= 20.0);
    let got = query(&dir, &["summary", "--by", "day", "--below", "10"]);
    let days: BTreeMap<(String, i64), &BTreeMap<String, String>> = got
        .iter()
        .map(|r| {
            (
                (r["endpoint_id"].clone(), t(&r["period_start"]).timestamp()),
                r,
            )
        })
        .collect();
    assert_eq!(
        days.len(),
        3 * 4,
        "three policies, four days (the last one five minutes)"
    );
    let num = |r: &BTreeMap<String, String>, k: &str| r[k].parse::<f64>().expect(k);
    let count = |r: &BTreeMap<String, String>, k: &str| r[k].parse::<usize>().expect(k);
    for ((policy, day), times) in &want.times {
        let row = days[&(policy.clone(), *day)];
        let rows: Vec<&Row> = states[policy]
            .iter()
            .filter(|r| r.at - r.at.rem_euclid(86_400) == *day)
            .collect();
        let what = format!("{policy} {day}: {row:?}");
        assert_eq!(count(row, "samples"), rows.len(), "{what}");
        assert!(
            close(num(row, "observed_seconds"), times.0 as f64),
            "{what} {times:?}"
        );
        assert!(
            close(num(row, "at_or_below_warning_seconds"), times.1 as f64),
            "{what} {times:?}"
        );
        assert!(
            close(num(row, "at_or_below_critical_seconds"), times.2 as f64),
            "{what} {times:?}"
        );
        if rows.is_empty() {
            continue;
        }
        let min = rows.iter().map(|r| r.remaining).fold(f64::MAX, f64::min);
        let max = rows.iter().map(|r| r.remaining).fold(f64::MIN, f64::max);
        let mean = rows.iter().map(|r| r.remaining).sum::<f64>() / rows.len() as f64;
        assert!(close(num(row, "min_remaining_percent"), min), "{what}");
        assert!(close(num(row, "max_remaining_percent"), max), "{what}");
        assert!(close(num(row, "mean_remaining_percent"), mean), "{what}");
        let below = rows.iter().filter(|r| r.remaining < 10.0).count();
        assert_eq!(count(row, "samples_below"), below, "{what}");
        let peak = rows.iter().filter_map(|r| r.rate).fold(f64::MIN, f64::max);
        if peak > f64::MIN {
            assert!(
                close(num(row, "peak_consumption_rate_per_minute"), peak),
                "{what}"
            );
        }
        // An exhaustion: zero or fewer tokens after a sample with some, or after a gap.
        let all = &states[policy];
        let exhaustions = all
            .iter()
            .enumerate()
            .filter(|(_, r)| r.at - r.at.rem_euclid(86_400) == *day && r.available <= 0)
            .filter(|(i, r)| *i == 0 || all[i - 1].available > 0 || r.at - all[i - 1].at > MAX_GAP)
            .count();
        assert_eq!(count(row, "exhaustions"), exhaustions, "{what}");
    }
    let exhausted: f64 = got
        .iter()
        .filter(|r| r["endpoint_id"] == "ENTRIES_WRITE")
        .map(|r| num(r, "exhaustions"))
        .sum();
    assert!(exhausted >= 2.0, "reached zero, and again after the gap");
    // The alert opened on the 31st is counted there.
    let opened = days[&(
        "ENTRIES_WRITE".to_owned(),
        t("2026-01-31T00:00:00Z").timestamp(),
    )];
    assert_eq!(opened["alerts_opened"], "1");
    // By month: January and February, times adding up to the days'.
    let months = query(
        &dir,
        &["summary", "--by", "month", "--policy", "ENTRIES_WRITE"],
    );
    assert_eq!(months.len(), 2, "{months:?}");
    let jan: f64 = want
        .times
        .iter()
        .filter(|((p, d), _)| {
            p == "ENTRIES_WRITE" && DateTime::from_timestamp(*d, 0).expect("day").month() == 1
        })
        .map(|(_, t)| t.1 as f64)
        .sum();
    assert!(close(num(&months[0], "at_or_below_warning_seconds"), jan));
}

#[test]
fn an_unknown_policy_is_an_error_that_suggests_the_closest_name() {
    let work = setup();
    let dir = work.path().join("d");
    for what in ["summary", "episodes", "states"] {
        let out = dictmon()
            .args(["query", what, "--policy", "ENTRIES_WRTE", "--data-dir"])
            .arg(&dir)
            .output()
            .expect("query");
        assert_eq!(out.status.code(), Some(2), "{what}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("did you mean ENTRIES_WRITE?"),
            "{what}: {stderr}"
        );
    }
}
