//! `serve` end to end, real processes on loopback: the simulator over the Bridge's gRPC, the
//! poll cycle, HTTP, the store.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use dictmon::domain::dict_table::PSP_POLICIES;
use dictmon::domain::{Alert, Severity};
use dictmon::source::simulator::SCRIPTED_POLICY;
use dictmon::store::{Filter, StoreReader};

use crate::util::{Serve, Simulator, metric, wait_until};

const GAUGES: [&str; 6] = [
    "dict_rate_limit_available_tokens",
    "dict_rate_limit_capacity",
    "dict_rate_limit_utilization_percent",
    "dict_rate_limit_consumption_rate_per_minute",
    "dict_rate_limit_recovery_eta_seconds",
    "dict_rate_limit_exhaustion_projection_seconds",
];

fn alerts(serve: &Serve, query: &str) -> Vec<Alert> {
    let (status, body) = serve.get(&format!("/api/v1/alerts{query}"));
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("alerts JSON")
}

/// The whole history read `limit` alerts at a time, each page from the `Link` of the one
/// before.
fn alerts_by_pages(serve: &Serve, limit: usize) -> Vec<Alert> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut url = format!("{}/api/v1/alerts?limit={limit}", serve.base);
    let mut all = Vec::new();
    loop {
        let mut r = agent.get(&url).call().expect("GET a page");
        assert_eq!(r.status().as_u16(), 200, "{url}");
        let next = r
            .headers()
            .get("link")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = r.body_mut().read_to_string().expect("body");
        let page: Vec<Alert> = serde_json::from_str(&body).expect("alerts JSON");
        assert!(page.len() <= limit, "{url}: {} alerts", page.len());
        all.extend(page);
        let Some(link) = next else { return all };
        let Some((path, _)) = link
            .strip_prefix('<')
            .and_then(|l| l.split_once(">; rel=\"next\""))
        else {
            panic!("Link: {link}")
        };
        url = format!("{}{path}", serve.base);
    }
}

fn critical_on_scripted(list: &[Alert]) -> Option<Alert> {
    list.iter()
        .find(|a| a.policy.as_str() == SCRIPTED_POLICY && a.severity == Severity::Critical)
        .cloned()
}

/// The forensic commands read a directory `serve` is writing.
fn forensics_while_serving(dir: &std::path::Path) {
    let out = crate::util::dictmon()
        .args([
            "query",
            "states",
            "--format",
            "pg-csv",
            "--policy",
            SCRIPTED_POLICY,
            "--data-dir",
        ])
        .arg(dir)
        .output()
        .expect("query");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.split(|b| *b == b'\n').count() > 3);
    let exported = tempfile::tempdir().expect("temp");
    let out = crate::util::dictmon()
        .args(["export", "--data-dir"])
        .arg(dir)
        .arg("--out")
        .arg(exported.path())
        .output()
        .expect("export");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn exhaustion_over_the_bridge_opens_critical_before_zero_and_resolves_after_refill() {
    let dir = tempfile::tempdir().expect("temp");
    let sim = Simulator::start("127.0.0.1:0", &["--scenario", "exhaustion"]);
    let serve = Serve::start(
        dir.path(),
        &[
            "--source",
            "bridge",
            "--bridge-url",
            &sim.url,
            "--interval",
            "1s",
        ],
    );

    // Every gauge, for every policy.
    wait_until(
        "every gauge for every policy",
        Duration::from_secs(30),
        || {
            let (_, text) = serve.get("/metrics");
            GAUGES.iter().all(|g| {
                PSP_POLICIES.iter().all(|p| {
                    // The consumption rate needs two samples; the rest appear with the first.
                    text.contains(&format!("{g}{{endpoint_id=\"{}\",", p.name))
                })
            })
        },
    );

    // A CRITICAL alert opens while tokens remain…
    let mut critical = None;
    wait_until(
        "a CRITICAL alert on the scripted bucket",
        Duration::from_secs(60),
        || {
            critical = critical_on_scripted(&alerts(&serve, "?open=true"));
            critical.is_some()
        },
    );
    let critical = critical.expect("found");
    assert!(
        critical.available_tokens > 0,
        "opened only at {} tokens",
        critical.available_tokens
    );
    // …and resolves once the bucket refills.
    wait_until(
        "the CRITICAL alert to resolve",
        Duration::from_secs(60),
        || {
            alerts(&serve, "")
                .iter()
                .any(|a| a.id == critical.id && a.resolved_at.is_some())
        },
    );
    let served = alerts(&serve, "");
    forensics_while_serving(dir.path());
    let (status, elapsed) = serve.terminate();
    assert!(status.success(), "exit {status:?}");
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?} to stop");

    // The API and the store agree on every alert the API showed.
    let stored = StoreReader::open(dir.path())
        .expect("reader")
        .catalog()
        .expect("catalog")
        .alerts()
        .expect("alerts");
    for a in &served {
        let s = stored
            .iter()
            .find(|s| s.id == a.id)
            .expect("alert in the store");
        assert_eq!(
            (s.policy.as_str(), s.severity, s.opened_at),
            (a.policy.as_str(), a.severity, a.opened_at)
        );
        if a.resolved_at.is_some() {
            assert_eq!(s.resolved_at, a.resolved_at);
        }
    }
    // And every stored snapshot of the scripted bucket is a valid one.
    let mut rows = 0;
    StoreReader::open(dir.path())
        .expect("reader")
        .scan(&Filter::default(), &mut |r| {
            rows += 1;
            assert!(r.sample.available_tokens <= r.sample.bucket.capacity);
        })
        .expect("scan");
    assert!(rows >= 29 * 10, "only {rows} snapshots stored");
    drop(sim);
}

#[test]
fn metrics_pass_promtool_check() {
    let dir = tempfile::tempdir().expect("temp");
    // A sink, so that the delivery metrics are there too; an exhaustion, so that an alert is
    // open (dictmon_alert_open).
    let events = dir.path().join("events.jsonl");
    let serve = Serve::start(
        &dir.path().join("data"),
        &[
            "--interval",
            "1s",
            "--scenario",
            "exhaustion",
            "--events-file",
            &events.display().to_string(),
        ],
    );
    let mut text = String::new();
    wait_until(
        "the rate gauges and an open alert",
        Duration::from_secs(60),
        || {
            text = serve.get("/metrics").1;
            text.contains("dict_rate_limit_consumption_rate_per_minute{")
                && text.contains("dictmon_outbox_backlog{sink=\"events-file\"}")
                && text
                    .contains("dictmon_delivery_failures_total{kind=\"io\",sink=\"events-file\"}")
                && text.contains("\ndictmon_alert_open{")
        },
    );
    // What an SRE's dashboards and rules expect, there from the start (counters at zero).
    for series in [
        "process_cpu_seconds_total ",
        "process_resident_memory_bytes ",
        "process_open_fds ",
        "process_start_time_seconds ",
        "dictmon_build_info{revision=\"",
        "dictmon_cycle_duration_seconds_bucket{",
        "dictmon_alert_threshold_percent{endpoint_id=\"ENTRIES_WRITE\",severity=\"warning\"} 20",
        "dict_rate_limit_alerts_created_total{endpoint_id=\"DICTMON_SOURCE\",psp_category=\"-\",severity=\"CRITICAL\"} 0",
        "dict_rate_limit_category_changes_total{psp_category=\"B\",severity=\"WARNING\"} 0",
        "dict_rate_limit_consumption_tokens_per_second{",
        "dict_rate_limit_refill_tokens{",
        "dict_rate_limit_last_sample_timestamp_seconds{",
    ] {
        assert!(text.contains(series), "no {series} in /metrics:\n{text}");
    }
    let build = text
        .lines()
        .find(|l| l.starts_with("dictmon_build_info{"))
        .unwrap_or_default();
    assert!(
        build.contains(concat!("version=\"", env!("CARGO_PKG_VERSION"), "\""))
            && build.contains("rustc=\"1.")
            && build.ends_with(" 1"),
        "{build}"
    );
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool not found: install the Debian package `prometheus` (.ci/run does)");
    promtool
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("feed promtool");
    let out = promtool.wait_with_output().expect("promtool ran");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && report.trim().is_empty(),
        "promtool: {report}"
    );
}

#[test]
fn restart_keeps_the_open_alert_and_creates_no_duplicate() {
    let dir = tempfile::tempdir().expect("temp");
    // Flapping 19 % / 21 %: one WARNING that stays open (hysteresis).
    let serve = Serve::start(dir.path(), &["--scenario", "flapping", "--interval", "1s"]);
    let mut open = None;
    wait_until("the WARNING", Duration::from_secs(30), || {
        open = alerts(&serve, "?open=true")
            .into_iter()
            .find(|a| a.policy.as_str() == SCRIPTED_POLICY);
        open.is_some()
    });
    let open = open.expect("found");
    let (status, _) = serve.terminate();
    assert!(status.success());

    let serve = Serve::start(dir.path(), &["--scenario", "flapping", "--interval", "1s"]);
    // Several cycles after the restart (this process counts its own)…
    wait_until(
        "four cycles of the new process",
        Duration::from_secs(30),
        || {
            let (_, text) = serve.get("/metrics");
            metric(&text, "dictmon_cycle_duration_seconds_count").is_some_and(|n| n >= 4.0)
                && text.contains("dictmon_source_fresh 1")
        },
    );
    let now_open: Vec<Alert> = alerts(&serve, "?open=true")
        .into_iter()
        .filter(|a| a.policy.as_str() == SCRIPTED_POLICY)
        .collect();
    assert_eq!(
        now_open.iter().map(|a| a.id).collect::<Vec<_>>(),
        vec![open.id],
        "{now_open:?}"
    );
    let all = alerts(&serve, "");
    assert_eq!(
        all.iter()
            .filter(|a| a.policy.as_str() == SCRIPTED_POLICY)
            .count(),
        1,
        "{all:?}"
    );
    // The same history a page at a time (serve goes on, so the pages may end later).
    // Two alerts at least, so that a page leads to the next.
    assert!(all.len() >= 2, "{all:?}");
    let paged = alerts_by_pages(&serve, 1);
    assert!(paged.len() >= all.len(), "{paged:?}");
    assert_eq!(
        paged
            .iter()
            .take(all.len())
            .map(|a| a.id)
            .collect::<Vec<_>>(),
        all.iter().map(|a| a.id).collect::<Vec<_>>()
    );
    let (status, why) = serve.get("/api/v1/alerts?limit=5000");
    assert_eq!(status, 400, "{why}");
    assert!(why.contains("1 to 1000"), "{why}");
    let (status, _) = serve.terminate();
    assert!(status.success());
    let outbox = crate::util::outbox(dir.path());
    let created = outbox
        .iter()
        .filter(|(_, e)| e.endpoint_id.as_str() == SCRIPTED_POLICY)
        .count();
    assert_eq!(created, 1, "one event for the one alert: {outbox:?}");
}

#[test]
fn sigterm_exits_zero_within_five_seconds_with_the_last_cycle_on_disk() {
    let dir = tempfile::tempdir().expect("temp");
    let serve = Serve::start(dir.path(), &["--interval", "1s"]);
    let mut latest = String::new();
    wait_until("two cycles", Duration::from_secs(30), || {
        let (_, body) = serve.get("/api/v1/policies");
        let changed = !latest.is_empty() && body != latest && body.len() > 2;
        latest = body;
        changed
    });
    let served: serde_json::Value = serde_json::from_str(&latest).expect("json");
    let last_time: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(served[0]["response_time"].clone()).expect("time");
    let (status, elapsed) = serve.terminate();
    assert_eq!(status.code(), Some(0));
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
    let mut newest = None;
    StoreReader::open(dir.path())
        .expect("reader")
        .scan(&Filter::default(), &mut |r| {
            newest = newest.max(Some(r.sample.at));
        })
        .expect("scan");
    assert!(
        newest >= Some(last_time),
        "newest stored {newest:?}, served {last_time}"
    );
}
