//! Alert events to a real Prometheus Alertmanager (Debian's `prometheus-alertmanager`, started
//! here on a loopback port in a temporary directory): an exhaustion alert appears with its
//! labels, and ends when dictmon de-escalates or resolves it.

use std::time::Duration;

use dictmon::store::StoreReader;

use super::util::{Alertmanager, Serve, wait_until};

const POLICY: &str = "ENTRIES_READ_PARTICIPANT_ANTISCAN";

#[test]
fn an_exhaustion_alert_appears_in_alertmanager_and_ends_after_resolution() {
    let dir = tempfile::tempdir().expect("temp");
    let am = Alertmanager::start(
        dir.path(),
        "route:\n  receiver: \"null\"\nreceivers:\n  - name: \"null\"\n",
    );
    let config = dir.path().join("dictmon.toml");
    // Firing alerts are sent with endsAt four resend intervals (4 min) ahead, so the alert can
    // end within the test only through the endsAt of the resolution.
    std::fs::write(
        &config,
        format!(
            "[notify]\nmax_backoff = \"1s\"\n\n[[notify.alertmanager]]\nurl = \"{}\"\nresend_interval = \"60s\"\ninstance = \"box-1:9464\"\n",
            am.url
        ),
    )
    .expect("config");
    let data = dir.path().join("data");
    let serve = Serve::start(
        &data,
        &[
            "--config",
            &config.display().to_string(),
            "--scenario",
            "exhaustion",
            "--interval",
            "1s",
        ],
    );

    let is_critical = |a: &serde_json::Value| {
        a["labels"]["endpoint_id"] == POLICY && a["labels"]["severity"] == "critical"
    };
    let mut firing = None;
    wait_until(
        "the CRITICAL alert in Alertmanager",
        Duration::from_secs(60),
        || {
            firing = am.alerts().into_iter().find(|a| is_critical(a));
            firing.is_some()
        },
    );
    let firing = firing.expect("found");
    assert_eq!(firing["labels"]["alertname"], dictmon::notify::ALERTNAME);
    assert_eq!(firing["labels"]["psp_category"], "C");
    // The labels Prometheus gives this dictmon's series: its alerts group with them.
    assert_eq!(firing["labels"]["instance"], "box-1:9464");
    assert_eq!(firing["labels"]["job"], "dictmon");
    assert_eq!(firing["status"]["state"], "active");
    assert!(
        firing["annotations"]["summary"]
            .as_str()
            .is_some_and(|s| s.contains("CRITICAL")),
        "{firing}"
    );
    let starts_at = firing["startsAt"].as_str().expect("startsAt").to_owned();

    // dictmon de-escalates or resolves it; Alertmanager ends it (the same labels and start are
    // no longer active).
    wait_until(
        "the alert to end in Alertmanager",
        Duration::from_secs(60),
        || {
            !am.alerts()
                .iter()
                .any(|a| is_critical(a) && a["startsAt"] == starts_at.as_str())
        },
    );
    let (status, _) = serve.terminate();
    assert!(status.success());

    // …because dictmon's alert of that incident left CRITICAL.
    let opened: chrono::DateTime<chrono::Utc> = starts_at.parse().expect("RFC 3339");
    let alerts = StoreReader::open(&data)
        .expect("reader")
        .catalog()
        .expect("catalog")
        .alerts()
        .expect("alerts");
    let ours = alerts
        .iter()
        .find(|a| {
            // One alert per incident: it may have opened as a WARNING before it escalated.
            a.policy.as_str() == POLICY
                && a.peak() == dictmon::domain::Severity::Critical
                && (a.opened_at - opened).num_milliseconds() <= 1
                && a.resolved_at
                    .is_none_or(|r| (opened - r).num_milliseconds() <= 1)
        })
        .expect("the alert Alertmanager showed is in the catalog");
    // Alertmanager's CRITICAL ended because dictmon's alert left CRITICAL: resolved, or
    // de-escalated to WARNING (which Alertmanager shows as the same endpoint's WARNING).
    assert!(
        ours.resolved_at.is_some() || ours.severity == dictmon::domain::Severity::Warning,
        "{ours:?}"
    );
}
