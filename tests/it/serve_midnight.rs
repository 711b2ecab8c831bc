//! `serve` across a UTC midnight that is also a month's and a year's end, at a 1 s poll, on a
//! day of 10 s history: the clock is moved with libfaketime, so the real store code meets the
//! real calendar. Compaction runs on its own thread while the polls go on: no poll may be
//! missed, no staleness self-alert raised, the closed month ends up wholly in sealed blocks,
//! and every row is kept. And a local clock behind DICT's is named, not taken for a dead source.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use dictmon::domain::PolicyName;
use dictmon::store::raw::{self as segment, BlockKind};
use dictmon::store::{Filter, StoreReader};

use crate::util::{Serve, dictmon, faked_clock, run_ok, wait_until};

/// The kinds of a segment's good blocks, in file order.
fn block_kinds(path: &std::path::Path) -> Vec<BlockKind> {
    let bytes = std::fs::read(path).unwrap_or_default();
    if bytes.is_empty() {
        return Vec::new();
    }
    segment::layout(&bytes)
        .blocks
        .iter()
        .map(|b| b.header.kind)
        .collect()
}

fn at(text: &str) -> DateTime<Utc> {
    text.parse().expect("time")
}

#[test]
fn polls_go_on_across_a_month_end_while_the_closed_month_is_compacted() {
    let dir = tempfile::tempdir().expect("temp");
    let data = dir.path().join("data");
    let env = faked_clock("2026-12-31 23:58:00");
    run_ok(
        dictmon()
            .envs(env.iter().map(|(k, v)| (k, v)))
            .args([
                "simulate",
                "--backfill",
                "1d",
                "--interval",
                "10s",
                "--data-dir",
            ])
            .arg(&data),
    );
    let december = data.join("segments/2026-12.seg");
    let january = data.join("segments/2027-01.seg");
    assert!(
        block_kinds(&december)
            .iter()
            .all(|k| *k == BlockKind::Sealed),
        "a backfill writes sealed blocks only"
    );

    let env = faked_clock("2026-12-31 23:59:48");
    let serve = Serve::start_env(&data, &["--interval", "1s"], &env);
    // Polls in December, then past midnight: the closed month is compacted in the background.
    wait_until(
        "January's live blocks and December compacted",
        Duration::from_secs(60),
        || {
            let december = block_kinds(&december);
            block_kinds(&january).len() >= 8
                && !december.is_empty()
                && december.iter().all(|k| *k == BlockKind::Sealed)
        },
    );
    let log = serve.log();
    let (status, _) = serve.terminate();
    assert!(status.success(), "{log}");
    assert!(
        !log.contains("DICTMON_SOURCE"),
        "a staleness self-alert:\n{log}"
    );
    assert!(!log.contains("ERROR"), "{log}");

    // Every poll of the run is stored, one a second: none missed around midnight.
    let policy = PolicyName::new("POLICIES_LIST").expect("name");
    let filter = Filter {
        policies: Some(BTreeSet::from([policy])),
        since_ns: at("2026-12-31T23:59:48Z").timestamp_nanos_opt(),
        ..Filter::default()
    };
    let mut times = Vec::new();
    let problems = StoreReader::open(&data)
        .expect("reader")
        .scan(&filter, &mut |r| times.push(r.sample.at))
        .expect("scan");
    assert!(problems.is_empty(), "{problems:?}");
    assert!(
        times
            .first()
            .is_some_and(|t| *t < at("2027-01-01T00:00:00Z"))
            && times
                .last()
                .is_some_and(|t| *t > at("2027-01-01T00:00:07Z")),
        "the run did not cross midnight: {times:?}"
    );
    let widest = times.windows(2).map(|w| w[1] - w[0]).max().expect("polls");
    assert!(
        widest < chrono::TimeDelta::milliseconds(1_900),
        "a poll was missed: {widest} between two polls; {times:?}"
    );

    // Nothing lost or doubled: the backfill's day and the run, all readable, verify clean.
    let out = run_ok(dictmon().arg("verify").arg("--data-dir").arg(&data));
    assert!(out.contains("clean"), "{out}");
    let mut all = BTreeSet::new();
    let mut rows = 0_usize;
    StoreReader::open(&data)
        .expect("reader")
        .scan(&Filter::default(), &mut |r| {
            rows += 1;
            all.insert((r.policy.to_string(), r.sample.at));
        })
        .expect("scan");
    assert_eq!(rows, all.len(), "a row read twice");
    assert!(rows > 29 * 8_640, "the backfilled day is there: {rows}");
}

/// A local clock an hour behind DICT's (the Bridge simulator runs on the real clock; `serve`
/// under libfaketime `-1h`): every sample is refused as `time_in_future`, so `/readyz` goes red
/// naming the clock, and the staleness self-alert says why.
#[test]
fn a_clock_behind_dicts_turns_readiness_red_and_the_self_alert_names_it() {
    let dir = tempfile::tempdir().expect("temp");
    let bridge = crate::util::Simulator::start("127.0.0.1:0", &[]);
    let env = crate::util::faketime("-1h");
    let serve = Serve::start_env(
        dir.path(),
        &[
            "--interval",
            "1s",
            "--source",
            "bridge",
            "--bridge-url",
            &bridge.url,
        ],
        &env,
    );
    wait_until(
        "/readyz red naming the clock",
        Duration::from_secs(30),
        || {
            let (status, body) = serve.get("/readyz");
            status == 503 && body.contains("clock")
        },
    );
    wait_until(
        "the self-alert names the clock",
        Duration::from_secs(30),
        || {
            let (_, body) = serve.get("/api/v1/alerts?open=true");
            body.contains("DICTMON_SOURCE") && body.contains("clock")
        },
    );
    let text = serve.get("/metrics").1;
    assert!(
        crate::util::metric(
            &text,
            "dictmon_rejected_samples_total{reason=\"time_in_future\"}"
        )
        .is_some_and(|n| n >= 29.0),
        "{text}"
    );
}
