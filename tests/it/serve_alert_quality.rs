//! Alert quality end to end, over the Bridge's gRPC with real mutual TLS: one incident is one
//! alert (escalation and de-escalation update it), and DICT moving the participant to another
//! category is an event of its own, in the outbox, the API, `query alerts` and the dashboard.

use std::path::Path;
use std::time::Duration;

use dictmon::domain::{AlertEvent, AlertEventType, PspCategory, Severity};
use dictmon::source::simulator::SCRIPTED_POLICY;
use dictmon::source::tls::ensure_pki;

use crate::util::{Serve, Simulator, dictmon, metric, outbox, run_ok, wait_until};

/// `serve` polling a simulator of `scenario` over mutual TLS every second.
fn serve_over_mtls(pki: &Path, data: &Path, scenario: &str) -> (Simulator, Serve) {
    let (files, _) = ensure_pki(pki).expect("certificates");
    let sim = Simulator::start(
        "127.0.0.1:0",
        &[
            "--tls-dir",
            &pki.display().to_string(),
            "--scenario",
            scenario,
        ],
    );
    assert!(sim.url.starts_with("https://"), "{}", sim.url);
    let url = sim.url.replace("127.0.0.1", "localhost");
    let path = |p: &Path| p.display().to_string();
    let args = [
        "--source".to_owned(),
        "bridge".into(),
        "--bridge-url".into(),
        url,
        "--ca-cert".into(),
        path(&files.ca),
        "--client-cert".into(),
        path(&files.client_cert),
        "--client-key".into(),
        path(&files.client_key),
        "--interval".into(),
        "1s".into(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let serve = Serve::start(data, &args);
    (sim, serve)
}

fn events_of(data: &Path, policy: &str) -> Vec<AlertEvent> {
    outbox(data)
        .into_iter()
        .map(|(_, e)| e)
        .filter(|e| e.endpoint_id.as_str() == policy)
        .collect()
}

#[test]
fn an_incident_that_escalates_and_recovers_is_one_alert() {
    let pki = tempfile::tempdir().expect("temp");
    let data = tempfile::tempdir().expect("temp");
    // Every 35 s the scripted bucket drains to 5 %, goes below zero, and refills.
    let (_sim, serve) = serve_over_mtls(pki.path(), data.path(), "exhaustion");
    wait_until(
        "two incidents on the scripted bucket, resolved",
        Duration::from_secs(120),
        || {
            events_of(data.path(), SCRIPTED_POLICY)
                .iter()
                .filter(|e| e.event_type == AlertEventType::Resolved)
                .count()
                >= 2
        },
    );
    let events = events_of(data.path(), SCRIPTED_POLICY);
    // Per policy the events read (created, updated*, resolved)*: never a second created
    // while an alert is open.
    let mut open = false;
    for e in &events {
        match e.event_type {
            AlertEventType::Created => {
                assert!(
                    !open,
                    "a second alert opened during an incident: {events:#?}"
                );
                open = true;
            }
            AlertEventType::Updated | AlertEventType::Resolved => {
                assert!(open, "{:?} with no open alert: {events:#?}", e.event_type);
                open = e.event_type == AlertEventType::Updated;
            }
            AlertEventType::CategoryChanged => panic!("no category change here: {e:?}"),
        }
    }
    let escalations = events
        .iter()
        .filter(|e| e.event_type == AlertEventType::Updated && e.severity == Severity::Critical)
        .count();
    let created = events
        .iter()
        .filter(|e| e.event_type == AlertEventType::Created)
        .count();
    assert!(
        escalations >= 1,
        "no escalation seen (the drain passes WARNING before CRITICAL): {events:#?}"
    );
    // Each drain is one alert, not a WARNING and then a CRITICAL one.
    let alerts: Vec<dictmon::domain::Alert> =
        serde_json::from_str(&serve.get("/api/v1/alerts").1).expect("alerts JSON");
    let scripted: Vec<_> = alerts
        .iter()
        .filter(|a| a.policy.as_str() == SCRIPTED_POLICY)
        .collect();
    assert_eq!(scripted.len(), created, "{scripted:#?}");
    let body = serve.get("/api/v1/alerts").1;
    assert!(body.contains("\"peak_severity\":\"CRITICAL\""), "{body}");
    let (_, text) = serve.get("/metrics");
    let updated = metric(
        &text,
        &format!(
            "dict_rate_limit_alerts_updated_total{{endpoint_id=\"{SCRIPTED_POLICY}\",psp_category=\"C\",severity=\"CRITICAL\"}}"
        ),
    );
    assert!(updated.is_some_and(|n| n >= 1.0), "{text}");
    // `query alerts --severity CRITICAL` finds the incidents by the worst level they reached.
    let out = run_ok(dictmon().args([
        "query",
        "alerts",
        "--data-dir",
        &data.path().display().to_string(),
        "--severity",
        "CRITICAL",
        "--format",
        "json",
    ]));
    assert!(out.contains(SCRIPTED_POLICY), "{out}");
}

#[test]
fn a_category_change_is_an_event_in_every_view() {
    let pki = tempfile::tempdir().expect("temp");
    let data = tempfile::tempdir().expect("temp");
    // The participant moves from C to E and back every 30 s.
    let (_sim, serve) = serve_over_mtls(pki.path(), data.path(), "capacity-change");
    let changes = || {
        events_of(data.path(), "PSP_CATEGORY")
            .into_iter()
            .filter(|e| e.event_type == AlertEventType::CategoryChanged)
            .collect::<Vec<_>>()
    };
    wait_until(
        "a downgrade and an upgrade in the outbox",
        Duration::from_secs(120),
        || {
            let c = changes();
            c.iter().any(|e| e.severity == Severity::Warning)
                && c.iter().any(|e| e.severity == Severity::Info)
        },
    );
    for e in changes() {
        let change = e
            .category_change
            .as_ref()
            .expect("the change is in the event");
        let down = (change.from, change.to) == (PspCategory::C, PspCategory::E);
        let up = (change.from, change.to) == (PspCategory::E, PspCategory::C);
        assert!(down || up, "{change:?}");
        assert_eq!(
            e.severity,
            if down {
                Severity::Warning
            } else {
                Severity::Info
            }
        );
        // The two category buckets change with it, and only they.
        let mut names: Vec<_> = change
            .policies
            .iter()
            .map(|b| b.endpoint_id.as_str())
            .collect();
        names.sort_unstable();
        assert_eq!(
            names,
            [
                "ENTRIES_READ_PARTICIPANT_ANTISCAN",
                "ENTRIES_STATISTICS_READ"
            ],
            "{change:?}"
        );
        for b in &change.policies {
            assert_eq!(down, b.new_capacity < b.old_capacity, "{b:?}");
        }
        assert!(e.message.contains("capacity"), "{}", e.message);
    }
    // The dashboard shows it; `query alerts` lists it.
    let (_, page) = serve.get("/");
    assert!(page.contains("Category changes"), "{page}");
    assert!(page.contains("from category C to E"), "{page}");
    let out = run_ok(dictmon().args([
        "query",
        "alerts",
        "--data-dir",
        &data.path().display().to_string(),
    ]));
    assert!(out.contains("PSP_CATEGORY"), "{out}");
    let (_, text) = serve.get("/metrics");
    let downs = metric(
        &text,
        "dict_rate_limit_category_changes_total{psp_category=\"E\",severity=\"WARNING\"}",
    );
    assert!(downs.is_some_and(|n| n >= 1.0), "{text}");
}
