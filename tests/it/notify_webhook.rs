//! Alert events to a webhook and a JSON-lines file: a receiver that is down, then slow, a
//! `serve` SIGKILLed mid-delivery, a wrong token. The outbox in the catalog is the truth every
//! receiver is compared with.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use super::notify_receiver::Receiver;
use super::util::{Serve, dictmon, free_port, metric, outbox, sink_progress, wait_until};

const TOKEN: &str = "right-token";
const SECRET: &str = "shared-hmac-secret";

/// A loopback address nobody listens on (yet).
fn free_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// A config with one webhook sink `hook` to `addr`, sending `token`, retrying at least every
/// second.
fn config(dir: &Path, addr: SocketAddr, token: &str) -> String {
    let token_file = dir.join("token");
    std::fs::write(&token_file, format!("{token}\n")).expect("token");
    let secret_file = dir.join("secret");
    std::fs::write(&secret_file, SECRET).expect("secret");
    let path = dir.join("dictmon.toml");
    std::fs::write(
        &path,
        format!(
            "[notify]\nmax_backoff = \"1s\"\n\n[[notify.webhook]]\nname = \"hook\"\nurl = \"http://{addr}/dictmon/events\"\nbearer_token_file = {:?}\nhmac_secret_file = {:?}\ntimeout = \"10s\"\n",
            token_file.display().to_string(),
            secret_file.display().to_string(),
        ),
    )
    .expect("config");
    path.display().to_string()
}

fn hook_metric(serve: &Serve, series: &str) -> f64 {
    metric(&serve.get("/metrics").1, series).unwrap_or(-1.0)
}

/// The outbox: (sequence, event as JSON), in order; and each sink's acknowledged end.
fn outbox_and_acks(data: &Path) -> (Vec<(u64, serde_json::Value)>, HashMap<String, u64>) {
    let events = outbox(data)
        .into_iter()
        .map(|(seq, e)| (seq, serde_json::to_value(&e).expect("json")))
        .collect();
    let acked = sink_progress(data)
        .into_iter()
        .map(|(name, p)| (name, p.next_seq))
        .collect();
    (events, acked)
}

fn ids_by_policy<'a>(
    events: impl Iterator<Item = &'a serde_json::Value>,
) -> BTreeMap<String, Vec<String>> {
    let mut by: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut seen = HashSet::new();
    for e in events {
        let id = e["event_id"].as_str().expect("id").to_owned();
        if seen.insert(id.clone()) {
            by.entry(e["endpoint_id"].as_str().expect("policy").to_owned())
                .or_default()
                .push(id);
        }
    }
    by
}

/// Per policy, what arrived (first arrivals) is the outbox's events in outbox order: all that
/// the sink acknowledged (sequence below `acked`), maybe some after (sent when serve stopped),
/// nothing else. Events after those stay in the outbox for the next run.
fn assert_complete(outbox: &[(u64, serde_json::Value)], acked: u64, got: &[serde_json::Value]) {
    let all = ids_by_policy(outbox.iter().map(|(_, e)| e));
    let must = ids_by_policy(outbox.iter().filter(|(s, _)| *s < acked).map(|(_, e)| e));
    let got = ids_by_policy(got.iter());
    for (policy, ids) in &all {
        let arrived = got.get(policy).map_or(&[][..], Vec::as_slice);
        let needed = must.get(policy).map_or(0, Vec::len);
        assert!(
            arrived.len() >= needed && arrived == &ids[..arrived.len().min(ids.len())],
            "{policy}: outbox {ids:?}, acknowledged {needed}, arrived {arrived:?}"
        );
    }
    assert!(
        got.keys().all(|p| all.contains_key(p)),
        "events of policies not in the outbox: {got:?}"
    );
}

/// A repeated event is byte-identical to its first delivery.
fn assert_repeats_identical(receiver: &Receiver) {
    let mut first: HashMap<String, &[u8]> = HashMap::new();
    let seen = receiver.seen.lock().expect("seen");
    for body in &seen.accepted {
        let v: serde_json::Value = serde_json::from_slice(body).expect("json");
        let id = v["event_id"].as_str().expect("id").to_owned();
        let before = first.entry(id.clone()).or_insert(body);
        assert_eq!(*before, body.as_slice(), "event {id} was re-sent changed");
    }
}

fn start(dir: &Path, config: &str, events_file: &Path) -> Serve {
    Serve::start(
        &dir.join("data"),
        &[
            "--config",
            config,
            "--scenario",
            "exhaustion",
            "--interval",
            "1s",
            "--events-file",
            &events_file.display().to_string(),
        ],
    )
}

#[test]
fn webhook_down_then_up_and_a_sigkill_mid_delivery_lose_nothing() {
    let dir = tempfile::tempdir().expect("temp");
    let addr = free_addr();
    let mut receiver = Receiver::new(addr, TOKEN, SECRET);
    let config = config(dir.path(), addr, TOKEN);
    let events_file = dir.path().join("events.jsonl");
    let data = dir.path().join("data");

    // The receiver is down: events pile up in the outbox, attempts fail as unreachable.
    let serve = start(dir.path(), &config, &events_file);
    wait_until(
        "3 events waiting for the webhook",
        Duration::from_secs(60),
        || {
            hook_metric(&serve, "dictmon_outbox_backlog{sink=\"hook\"}") >= 3.0
                && hook_metric(
                    &serve,
                    "dictmon_delivery_failures_total{kind=\"unreachable\",sink=\"hook\"}",
                ) >= 1.0
        },
    );

    // It comes back, slow: serve is SIGKILLed while a request is in flight.
    receiver.set_delay(Duration::from_secs(3));
    receiver.up();
    wait_until("a delivery in flight", Duration::from_secs(30), || {
        receiver.seen.lock().expect("seen").arrived >= 1
    });
    serve.kill();

    // Restarted, the backlog drains; the event in flight is sent again (same event_id).
    receiver.set_delay(Duration::ZERO);
    let serve = start(dir.path(), &config, &events_file);
    // Five events at least (the checks below need them): two resolutions can come with only
    // four, when the kill landed early in the scenario's cycle.
    wait_until(
        "the backlog to drain, with resolutions, five events in all",
        Duration::from_secs(90),
        || {
            hook_metric(&serve, "dictmon_outbox_backlog{sink=\"hook\"}") == 0.0
                && receiver
                    .accepted()
                    .iter()
                    .filter(|e| e["event_type"] == "rate_limit.alert.resolved")
                    .count()
                    >= 2
                && outbox_and_acks(&data).0.len() >= 5
        },
    );
    let (status, _) = serve.terminate();
    assert!(status.success());

    let (outbox, acked) = outbox_and_acks(&data);
    assert!(outbox.len() >= 5, "only {} events", outbox.len());
    assert!(
        acked["hook"] + 3 >= outbox.len() as u64,
        "acked {acked:?} of {}",
        outbox.len()
    );
    assert_complete(&outbox, acked["hook"], &receiver.accepted());
    assert_repeats_identical(&receiver);
    let unique: HashSet<_> = receiver
        .accepted()
        .iter()
        .map(|e| e["event_id"].clone())
        .collect();
    let seen = receiver.seen.lock().expect("seen");
    assert!(
        seen.refused.is_empty(),
        "the receiver refused: {:?}",
        seen.refused
    );
    assert!(
        seen.arrived > unique.len(),
        "the request cut by SIGKILL should have been sent again"
    );
    drop(seen);
    check_events_file(&events_file, &outbox, acked["events-file"]);
    check_query_says_delivered(&data, &outbox, &acked);
}

/// The JSON-lines file holds every event, each line whole.
fn check_events_file(path: &Path, outbox: &[(u64, serde_json::Value)], acked: u64) {
    let text = std::fs::read_to_string(path).expect("events file");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("a whole JSON line"))
        .collect();
    assert_complete(outbox, acked, &lines);
    // The legacy event schema, exactly.
    let keys: Vec<&String> = lines[0].as_object().expect("object").keys().collect();
    let mut want = vec![
        "event_id",
        "event_type",
        "timestamp",
        "endpoint_id",
        "severity",
        "available_tokens",
        "capacity",
        "utilization_percent",
        "recovery_eta_seconds",
        "exhaustion_projection_seconds",
        "psp_category",
        "message",
    ];
    want.sort_unstable();
    let mut keys: Vec<&str> = keys.iter().map(|k| k.as_str()).collect();
    keys.sort_unstable();
    assert_eq!(keys, want);
}

/// `query alerts` says "delivered" for every alert whose events both sinks acknowledged.
fn check_query_says_delivered(
    data: &Path,
    outbox: &[(u64, serde_json::Value)],
    acked: &HashMap<String, u64>,
) {
    let seq: HashMap<&str, u64> = outbox
        .iter()
        .map(|(s, e)| (e["event_id"].as_str().expect("id"), *s))
        .collect();
    let out = dictmon()
        .args(["query", "alerts", "--format", "json", "--data-dir"])
        .arg(data)
        .output()
        .expect("query");
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let alerts: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert!(!alerts.is_empty());
    let mut checked = 0;
    for a in &alerts {
        let id: uuid::Uuid = a["id"].as_str().expect("id").parse().expect("uuid");
        let mut kinds = vec![dictmon::domain::AlertEventType::Created];
        if !a["resolved_at"].is_null() {
            kinds.push(dictmon::domain::AlertEventType::Resolved);
        }
        for sink in ["hook", "events-file"] {
            let all_acked = kinds.iter().all(|k| {
                let event = dictmon::domain::AlertEvent::id_for(id, *k).to_string();
                seq.get(event.as_str()).is_some_and(|s| *s < acked[sink])
            });
            if all_acked {
                assert_eq!(a["delivery"][sink], "delivered", "{a}");
                checked += 1;
            } else {
                assert_ne!(a["delivery"][sink], "delivered", "{a}");
            }
        }
    }
    assert!(checked >= 4, "only {checked} delivered alerts seen");
}

#[test]
fn a_wrong_token_is_refused_by_the_receiver_and_shows_in_metrics_and_query() {
    let dir = tempfile::tempdir().expect("temp");
    let addr = free_addr();
    let mut receiver = Receiver::new(addr, TOKEN, SECRET);
    receiver.up();
    let config = config(dir.path(), addr, "wrong-token");
    let serve = start(dir.path(), &config, &dir.path().join("events.jsonl"));
    wait_until("a refused delivery", Duration::from_secs(60), || {
        hook_metric(
            &serve,
            "dictmon_delivery_failures_total{kind=\"rejected\",sink=\"hook\"}",
        ) >= 2.0
    });
    assert!(hook_metric(&serve, "dictmon_outbox_backlog{sink=\"hook\"}") >= 1.0);
    assert!(receiver.accepted().is_empty());
    assert!(
        receiver.seen.lock().expect("seen").refused[0].starts_with("wrong token"),
        "{:?}",
        receiver.seen.lock().expect("seen").refused
    );
    assert!(serve.log().contains("HTTP 401"), "{}", serve.log());
    let out = dictmon()
        .args(["query", "alerts", "--data-dir"])
        .arg(dir.path().join("data"))
        .output()
        .expect("query");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("hook:failing"), "{table}");
    assert!(table.contains("events-file:delivered"), "{table}");
    assert!(
        table.contains("sink hook (webhook http://") && table.contains("HTTP 401"),
        "{table}"
    );
}
