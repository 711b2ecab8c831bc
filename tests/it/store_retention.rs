//! Retention with a fake clock: 15 months of data, 13 kept — the two oldest segments go,
//! nothing else; alert history and the outbox follow the same window; a dry run deletes nothing.

use chrono::{DateTime, Months, TimeDelta, Utc};
use dictmon::domain::{
    Alert, AlertCause, AlertEvent, AlertEventType, PolicyName, PspCategory, Severity,
};
use dictmon::store::catalog::CatalogUpdate;
use dictmon::store::{Filter, Month, Store, StoreOptions, StoreReader};

use crate::util::record;

fn alert(opened: DateTime<Utc>, resolved: Option<DateTime<Utc>>) -> Alert {
    Alert {
        id: uuid::Uuid::from_u128(u128::try_from(opened.timestamp()).expect("positive")),
        policy: PolicyName::new("ENTRIES_WRITE").expect("valid"),
        severity: Severity::Warning,
        peak_severity: None,
        cause: AlertCause::Threshold,
        opened_at: opened,
        available_tokens: 150,
        capacity: 1000,
        utilization_percent: 85.0,
        psp_category: PspCategory::C,
        message: "test".into(),
        resolved_at: resolved,
        resolution: resolved.map(|_| "recovered".into()),
    }
}

#[test]
fn fifteen_months_keep_thirteen() {
    let dir = tempfile::tempdir().expect("temp");
    let now = DateTime::from_timestamp(1_794_700_000, 0).expect("in range"); // 2026-11-15
    let first = now.checked_sub_months(Months::new(14)).expect("in range");
    let mut store = Store::open(dir.path(), StoreOptions::default()).expect("open");
    let mut alerts = Vec::new();
    for m in 0..15 {
        let at = first.checked_add_months(Months::new(m)).expect("in range");
        store
            .append_sealed(&[record("ENTRIES_WRITE", at, 500)])
            .expect("append");
        alerts.push(alert(at, Some(at + TimeDelta::hours(1))));
    }
    let still_open = Alert {
        id: uuid::Uuid::from_u128(1),
        ..alert(first, None)
    };
    alerts.push(still_open.clone());
    store
        .catalog()
        .apply(&CatalogUpdate {
            alerts,
            ..Default::default()
        })
        .expect("alerts");

    let months = |dir: &std::path::Path| {
        StoreReader::open(dir)
            .expect("reader")
            .months()
            .expect("months")
    };
    let before = months(dir.path());
    assert_eq!(before.len(), 15);

    let dry = store.apply_retention(now, 13, None, true).expect("dry run");
    let oldest_two = vec![Month::of(first), Month::of(first).next()];
    assert_eq!(dry.months, oldest_two);
    assert_eq!(dry.alerts, 2);
    assert_eq!(months(dir.path()), before, "a dry run deleted something");

    let done = store
        .apply_retention(now, 13, None, false)
        .expect("retention");
    assert_eq!(done.months, oldest_two);
    assert_eq!(done.alerts, 2);
    assert_eq!(months(dir.path()), before[2..].to_vec());
    // The rows of the kept months are all there.
    let mut rows = 0;
    StoreReader::open(dir.path())
        .expect("reader")
        .scan(&Filter::default(), &mut |_| rows += 1)
        .expect("scan");
    assert_eq!(rows, 13);
    // Alert history: the two resolved in the deleted months are gone; the open one stays.
    let kept = store.catalog().alerts().expect("alerts");
    assert_eq!(kept.len(), 14);
    assert!(kept.contains(&still_open));
    // Appending after retention works, and running it again deletes nothing more.
    store
        .append(&[record("ENTRIES_WRITE", now, 400)])
        .expect("append");
    assert!(
        store
            .apply_retention(now, 13, None, false)
            .expect("again")
            .months
            .is_empty()
    );
}

fn event(at: DateTime<Utc>) -> AlertEvent {
    AlertEvent {
        event_id: uuid::Uuid::from_u128(u128::try_from(at.timestamp()).expect("positive")),
        event_type: AlertEventType::Created,
        timestamp: at,
        endpoint_id: PolicyName::new("ENTRIES_WRITE").expect("valid"),
        severity: Severity::Warning,
        available_tokens: 150,
        capacity: 1000,
        utilization_percent: 85.0,
        recovery_eta_seconds: None,
        exhaustion_projection_seconds: None,
        psp_category: PspCategory::C,
        message: "test".into(),
        category_change: None,
    }
}

#[test]
fn outbox_events_follow_the_window_and_sequences_are_never_reused() {
    let dir = tempfile::tempdir().expect("temp");
    let now = DateTime::from_timestamp(1_794_700_000, 0).expect("in range"); // 2026-11-15
    let old = now.checked_sub_months(Months::new(14)).expect("in range");
    let mut store = Store::open(dir.path(), StoreOptions::default()).expect("open");
    let events = |e: Vec<AlertEvent>| CatalogUpdate {
        events: e,
        ..Default::default()
    };
    store
        .catalog()
        .apply(&events(vec![event(old), event(old + TimeDelta::hours(1))]))
        .expect("events");
    assert_eq!(store.catalog().next_event_seq().expect("seq"), 2);
    let done = store
        .apply_retention(now, 13, None, false)
        .expect("retention");
    assert_eq!(done.events, 2);
    assert!(store.catalog().outbox().expect("outbox").is_empty());
    // A sink that acknowledged up to sequence 2 must not mistake a new event for an old one.
    assert_eq!(store.catalog().next_event_seq().expect("seq"), 2);
    store
        .catalog()
        .apply(&events(vec![event(now)]))
        .expect("event");
    drop(store);
    let store = Store::open(dir.path(), StoreOptions::default()).expect("reopen");
    let outbox = store.catalog().outbox().expect("outbox");
    assert_eq!(outbox.len(), 1);
    assert_eq!(outbox[0].0, 2, "sequence reused after retention");
}

#[test]
fn a_second_writer_is_refused_with_the_holder_named() {
    let dir = tempfile::tempdir().expect("temp");
    let store = Store::open(dir.path(), StoreOptions::default()).expect("first writer");
    let started = std::time::Instant::now();
    let out = crate::util::dictmon()
        .args(["simulate", "--backfill", "1d", "--data-dir"])
        .arg(dir.path())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("process {}", std::process::id())),
        "{err}"
    );
    assert!(
        err.contains("only one `serve` or `import` may write a data directory"),
        "{err}"
    );
    // It waited for a holder that might have been on its way out.
    assert!(started.elapsed() >= std::time::Duration::from_secs(2));
    drop(store);
    // Once the holder is gone, the same command writes.
    let out = crate::util::dictmon()
        .args(["simulate", "--backfill", "1d", "--data-dir"])
        .arg(dir.path())
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A local clock 400 days ahead (libfaketime) must not erase history: ages are measured from
/// the newest stored response time, `serve` deletes at most one month a day, and `retention`
/// wants --force for more than one.
#[test]
fn a_clock_running_ahead_cannot_erase_history() {
    use crate::util::{Serve, dictmon, faketime, run_ok, wait_until};
    let dir = tempfile::tempdir().expect("temp");
    let data = dir.path().join("data");
    // 14 calendar months: 13 written with the clock back in the previous month (a backfill
    // starts no earlier than the oldest month retention keeps), then the days since.
    let back = format!("{}d", chrono::Datelike::day(&chrono::Utc::now()) + 1);
    for (span, clock) in [
        ("13mo", faketime(&format!("-{back}"))),
        (back.as_str(), Vec::new()),
    ] {
        run_ok(
            dictmon()
                .envs(clock.iter().map(|(k, v)| (k, v)))
                .args(["simulate", "--backfill", span, "--interval", "1h"])
                .arg("--data-dir")
                .arg(&data),
        );
    }
    let months = || {
        StoreReader::open(&data)
            .expect("reader")
            .months()
            .expect("months")
    };
    let written = months();
    assert_eq!(written.len(), 14, "one month more than retention keeps");

    // DICT's clock is right (the Bridge simulator, a process of its own); ours is 400 days
    // ahead. Retention runs at the first cycle.
    let bridge = crate::util::Simulator::start("127.0.0.1:0", &[]);
    let ahead = faketime("+400d");
    let serve = Serve::start_env(
        &data,
        &[
            "--interval",
            "1s",
            "--source",
            "bridge",
            "--bridge-url",
            &bridge.url,
        ],
        &ahead,
    );
    wait_until("a poll stored", std::time::Duration::from_secs(30), || {
        crate::util::metric(
            &serve.get("/metrics").1,
            "dict_rate_limit_monitoring_duration_seconds_count{operation=\"persist\"}",
        )
        .is_some_and(|n| n >= 2.0)
    });
    serve.kill();
    bridge.kill();
    // Only the month past the 13 of stored history went; the clock's 400 days did nothing.
    assert_eq!(months(), written[1..].to_vec());

    let retention = |args: &[&str]| {
        dictmon()
            .envs(ahead.iter().map(|(k, v)| (k, v)))
            .arg("retention")
            .args(args)
            .arg("--data-dir")
            .arg(&data)
            .output()
            .expect("spawn")
    };
    let out = retention(&[]);
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("nothing to delete"),
        "{out:?}"
    );
    // Ten months at once: refused without --force, and nothing deleted.
    let out = retention(&["--keep-months", "3"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--force"),
        "{out:?}"
    );
    assert_eq!(months().len(), 13);
    let out = retention(&["--keep-months", "3", "--force"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(months().len(), 3);
}
