//! The alert path the README documents, with the real parts: two `dictmon serve` instances, a
//! real Prometheus (Debian's `prometheus`) scraping both every second with the shipped rules,
//! a real Alertmanager (`prometheus-alertmanager`) fed by Prometheus (appliance rules) and by
//! each dictmon's own sink (bucket alerts), and a webhook receiver behind it. Checked through
//! their HTTP APIs: every rule healthy; an exhaustion on one instance alerts for that instance
//! only; a source outage pages once (dictmon's `DICTMON_SOURCE`; Prometheus' failed-polls
//! alert of the same instance is inhibited); a killed instance alerts within two minutes; each
//! alert reaches the receiver once, firing and resolved.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::notify_receiver::Receiver;
use super::util::{Alertmanager, Serve, Simulator, free_port, http_get, packaging, wait_until};

const TOKEN: &str = "am-webhook-token";
const DRAINED: &str = "ENTRIES_READ_PARTICIPANT_ANTISCAN";

/// A child process killed on drop.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn get_json(url: &str) -> serde_json::Value {
    let (status, body) = http_get(url).unwrap_or_else(|e| panic!("GET {url}: {e}"));
    assert_eq!(status, 200, "GET {url}: {body}");
    serde_json::from_str(&body).expect("JSON")
}

/// Alertmanager as the README configures it (its grouping and inhibit rule; timers shortened,
/// `group_wait` long enough for a source outage's own alert to be there before the failed-polls
/// alert it inhibits), with the webhook receiver.
fn alertmanager(dir: &Path, hook: SocketAddr) -> Alertmanager {
    Alertmanager::start(
        dir,
        &format!(
            r#"route:
  receiver: ops
  group_by: [alertname, instance, endpoint_id]
  group_wait: 2s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: ops
    webhook_configs:
      - url: http://{hook}/
        http_config:
          authorization:
            credentials: {TOKEN}
inhibit_rules:
  - source_matchers: [alertname="DictRateLimit", endpoint_id="DICTMON_SOURCE"]
    target_matchers: [alertname="DictmonPollsFailing"]
    equal: [instance, job]
"#
        ),
    )
}

/// Prometheus as the README configures it (intervals shortened): job `dictmon`, each target
/// named as its dictmon's sink names itself, both rule files loaded, the bucket mirror kept
/// from Alertmanager (dictmon's sink is the path for those).
fn prometheus(dir: &Path, targets: &[(&str, &str)], alertmanager: &str) -> (Daemon, String) {
    let port = free_port();
    let mut static_configs = String::new();
    for (address, instance) in targets {
        let _ = writeln!(
            static_configs,
            "      - targets: ['{address}']\n        labels: {{instance: {instance}}}"
        );
    }
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            r"global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - {appliance}
  - {buckets}
alerting:
  alertmanagers:
    - static_configs:
        - targets: ['{am}']
  alert_relabel_configs:
    - source_labels: [alertname]
      regex: DictRateLimit
      action: drop
scrape_configs:
  - job_name: dictmon
    static_configs:
{static_configs}",
            appliance = packaging("prometheus-rules-appliance.yml"),
            buckets = packaging("prometheus-rules-buckets.yml"),
            am = alertmanager.trim_start_matches("http://"),
        ),
    )
    .expect("config");
    assert!(
        Path::new("/usr/bin/prometheus").exists(),
        "Prometheus is not installed: apt-get install prometheus (.ci/run does)"
    );
    let child = Command::new("/usr/bin/prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("prom-data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start prometheus");
    let url = format!("http://127.0.0.1:{port}");
    wait_until("Prometheus ready", Duration::from_secs(60), || {
        http_get(&format!("{url}/-/ready")).is_ok_and(|(s, _)| s == 200)
    });
    (Daemon(child), url)
}

/// A dictmon named `name` polling `source` (the arguments that choose it) every second.
fn dictmon(dir: &Path, name: &str, source: &[&str], alertmanager: &str) -> Serve {
    let config = dir.join(format!("{name}.toml"));
    std::fs::write(
        &config,
        format!(
            "[notify]\nmax_backoff = \"1s\"\n\n[[notify.alertmanager]]\nurl = \"{alertmanager}\"\ninstance = \"{name}\"\n"
        ),
    )
    .expect("config");
    let config = config.display().to_string();
    let mut args = vec!["--config", &config, "--interval", "1s"];
    args.extend_from_slice(source);
    Serve::start(&dir.join(name), &args)
}

/// Every alert the receiver was told of with `status` (`firing`, `resolved`): (its labels,
/// its start) → notifications.
fn notifications(receiver: &Receiver, status: &str) -> BTreeMap<(String, String), usize> {
    let mut seen = BTreeMap::new();
    for body in receiver.accepted() {
        for a in body["alerts"].as_array().into_iter().flatten() {
            if a["status"] == status {
                let key = (a["labels"].to_string(), a["startsAt"].to_string());
                *seen.entry(key).or_default() += 1;
            }
        }
    }
    seen
}

fn firing_notifications(receiver: &Receiver) -> BTreeMap<(String, String), usize> {
    notifications(receiver, "firing")
}

fn has_label(labels_json: &str, name: &str, value: &str) -> bool {
    labels_json.contains(&format!("\"{name}\":\"{value}\""))
}

/// Both targets up, and every rule (both files) evaluated without error.
fn rules_are_healthy(prom: &str) {
    wait_until("both targets up", Duration::from_secs(60), || {
        let t = get_json(&format!("{prom}/api/v1/targets"));
        let active = t["data"]["activeTargets"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        active.len() == 2 && active.iter().all(|t| t["health"] == "up")
    });
    let mut rules = Vec::new();
    wait_until("every rule evaluated", Duration::from_secs(30), || {
        let r = get_json(&format!("{prom}/api/v1/rules"));
        rules = r["data"]["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .collect();
        rules.len() == 5
            && rules
                .iter()
                .all(|r| r["lastEvaluation"] != "0001-01-01T00:00:00Z")
    });
    for r in &rules {
        assert_eq!(r["health"], "ok", "rule {} is not healthy: {r}", r["name"]);
    }
}

/// The alerts Alertmanager holds now (`/api/v2/alerts`) with `alertname` for `instance`.
fn am_alerts(am: &str, alertname: &str, instance: &str) -> Vec<serde_json::Value> {
    get_json(&format!("{am}/api/v2/alerts"))
        .as_array()
        .into_iter()
        .flatten()
        .filter(|al| al["labels"]["alertname"] == alertname && al["labels"]["instance"] == instance)
        .cloned()
        .collect()
}

/// Whether the receiver was told of an alert named `alertname` for `instance` (and, if given,
/// `endpoint_id`) as firing.
fn told_firing(
    receiver: &Receiver,
    alertname: &str,
    instance: &str,
    endpoint: Option<&str>,
) -> bool {
    firing_notifications(receiver).keys().any(|(labels, _)| {
        has_label(labels, "alertname", alertname)
            && has_label(labels, "instance", instance)
            && endpoint.is_none_or(|e| has_label(labels, "endpoint_id", e))
    })
}

/// `sim`, a's source, goes away: dictmon's own `DICTMON_SOURCE` alert pages, and Prometheus'
/// `DictmonPollsFailing` for a reaches Alertmanager but is inhibited by it (one page).
fn source_outage_pages_once(sim: Simulator, am_url: &str, receiver: &Receiver) {
    sim.kill();
    wait_until(
        "DictmonPollsFailing for a, inhibited, in Alertmanager",
        Duration::from_secs(90),
        || {
            am_alerts(am_url, "DictmonPollsFailing", "dictmon-a")
                .iter()
                .any(|al| {
                    al["status"]["inhibitedBy"]
                        .as_array()
                        .is_some_and(|v| !v.is_empty())
                })
        },
    );
    wait_until(
        "the source outage paged through dictmon's own alert",
        Duration::from_secs(30),
        || {
            told_firing(
                receiver,
                "DictRateLimit",
                "dictmon-a",
                Some("DICTMON_SOURCE"),
            )
        },
    );
}

/// Checks that each alert, as labels and start, was told once firing and at most once resolved:
/// nothing came twice by two paths or by re-sends, and every label set names its instance and
/// job. Returns how many alerts were told.
fn each_alert_told_once(receiver: &Receiver) -> usize {
    // The window a second notification would show in: five of Alertmanager's group intervals
    // (1 s) after the last alert the test waited for, a's sink re-sending its open alerts
    // meanwhile. This sleep synchronises nothing; it is the span the absence is asserted over.
    std::thread::sleep(Duration::from_secs(5));
    let told = firing_notifications(receiver);
    for ((labels, starts), n) in &told {
        assert_eq!(*n, 1, "told {n} times: {labels} from {starts}");
        assert!(labels.contains("\"instance\":\"dictmon-"), "{labels}");
        assert!(has_label(labels, "job", "dictmon"), "{labels}");
    }
    for ((labels, starts), n) in &notifications(receiver, "resolved") {
        assert_eq!(*n, 1, "told resolved {n} times: {labels} from {starts}");
        assert!(
            told.contains_key(&(labels.clone(), starts.clone())),
            "resolved without having fired: {labels} from {starts}"
        );
    }
    told.len()
}

#[test]
fn two_instances_one_alert_path_each_incident_once() {
    let dir = tempfile::tempdir().expect("temp");
    let hook: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let mut receiver = Receiver::new(hook, TOKEN, "");
    receiver.up();
    let am = alertmanager(dir.path(), hook);
    let am_url = am.url.clone();
    // a polls a simulator of its own (killed later: a source outage); b the built-in one.
    let sim = Simulator::start("127.0.0.1:0", &["--scenario", "exhaustion"]);
    let a = dictmon(
        dir.path(),
        "dictmon-a",
        &["--source", "bridge", "--bridge-url", &sim.url],
        &am_url,
    );
    let b = dictmon(dir.path(), "dictmon-b", &["--scenario", "steady"], &am_url);
    let addr = |s: &Serve| s.base.trim_start_matches("http://").to_owned();
    let (a_addr, b_addr) = (addr(&a), addr(&b));
    let (_prom, prom) = prometheus(
        dir.path(),
        &[(&a_addr, "dictmon-a"), (&b_addr, "dictmon-b")],
        &am_url,
    );

    rules_are_healthy(&prom);

    // The exhaustion on a: its alert in Alertmanager (from a's sink) and the mirror in
    // Prometheus, both for a only.
    let drained_in_am = |instance: &str| {
        am_alerts(&am_url, "DictRateLimit", instance)
            .iter()
            .any(|al| al["labels"]["endpoint_id"] == DRAINED)
    };
    wait_until(
        "a's exhaustion alert in Alertmanager",
        Duration::from_secs(60),
        || drained_in_am("dictmon-a"),
    );
    let mirrored = |instance: &str| {
        get_json(&format!("{prom}/api/v1/alerts"))["data"]["alerts"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|al| {
                al["labels"]["alertname"] == "DictRateLimit"
                    && al["labels"]["endpoint_id"] == DRAINED
                    && al["labels"]["instance"] == instance
            })
    };
    wait_until(
        "the mirror of a's alert in Prometheus",
        Duration::from_secs(30),
        || mirrored("dictmon-a"),
    );
    assert!(!drained_in_am("dictmon-b"), "b's bucket is not drained");
    assert!(!mirrored("dictmon-b"), "b's bucket is not drained");
    wait_until(
        "the receiver told of a's alert",
        Duration::from_secs(30),
        || told_firing(&receiver, "DictRateLimit", "dictmon-a", Some(DRAINED)),
    );

    source_outage_pages_once(sim, &am_url, &receiver);

    // b dies: DictmonDown for b within two minutes, for b only.
    b.kill();
    let killed = Instant::now();
    wait_until(
        "DictmonDown for b at the receiver",
        Duration::from_secs(120),
        || told_firing(&receiver, "DictmonDown", "dictmon-b", None),
    );
    let took = killed.elapsed();
    assert!(
        !told_firing(&receiver, "DictmonDown", "dictmon-a", None),
        "a is up"
    );
    assert!(
        !told_firing(&receiver, "DictmonPollsFailing", "dictmon-a", None),
        "a's failed polls were inhibited by its DICTMON_SOURCE alert: {:?}",
        firing_notifications(&receiver).keys()
    );

    let told = each_alert_told_once(&receiver);
    eprintln!(
        "{told} alerts told once each; DictmonDown after {took:?}; a's log tail: {}",
        a.log().lines().last().unwrap_or_default()
    );
}
