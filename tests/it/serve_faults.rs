//! `serve` under faults: the Bridge going away and coming back, and nonsense in its answers.

use std::collections::HashMap;
use std::time::Duration;

use dictmon::store::{Filter, StoreReader};

use crate::util::{Serve, Simulator, metric, wait_until};

#[test]
fn bridge_down_turns_readyz_red_and_recovers_without_restart() {
    let dir = tempfile::tempdir().expect("temp");
    let sim = Simulator::start("127.0.0.1:0", &[]);
    let addr = sim.addr();
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
    wait_until("ready", Duration::from_secs(30), || {
        serve.get("/readyz").0 == 200
    });

    sim.kill();
    wait_until("/readyz red", Duration::from_secs(30), || {
        serve.get("/readyz").0 == 503
    });
    let (_, why) = serve.get("/readyz");
    assert!(why.contains("no successful poll"), "{why}");
    assert_eq!(serve.get("/healthz").0, 200, "the process itself is alive");
    let (_, text) = serve.get("/metrics");
    assert!(
        metric(&text, "dictmon_poll_errors_total{kind=\"unavailable\"}").unwrap_or(0.0) >= 1.0,
        "{text}"
    );
    // The freshness gauge is updated at the end of each cycle.
    wait_until("dictmon_source_fresh 0", Duration::from_secs(10), || {
        metric(&serve.get("/metrics").1, "dictmon_source_fresh") == Some(0.0)
    });
    wait_until("the staleness self-alert", Duration::from_secs(30), || {
        serve
            .get("/api/v1/alerts?open=true")
            .1
            .contains("DICTMON_SOURCE")
    });

    // The Bridge comes back on the same address: recovery without a restart.
    let sim = Simulator::start(&addr, &[]);
    wait_until("/readyz green again", Duration::from_secs(30), || {
        serve.get("/readyz").0 == 200
    });
    wait_until("the self-alert resolved", Duration::from_secs(30), || {
        !serve
            .get("/api/v1/alerts?open=true")
            .1
            .contains("DICTMON_SOURCE")
    });
    let (status, _) = serve.terminate();
    assert!(status.success());
    drop(sim);
}

#[test]
fn malformed_values_are_rejected_with_their_reason_and_never_stored() {
    let dir = tempfile::tempdir().expect("temp");
    let serve = Serve::start(dir.path(), &["--scenario", "malformed", "--interval", "1s"]);
    let reasons = [
        "tokens_above_capacity",
        "non_positive_capacity",
        "time_went_backwards",
    ];
    wait_until(
        "every kind of rejection counted",
        Duration::from_secs(40),
        || {
            let (_, text) = serve.get("/metrics");
            reasons.iter().all(|r| {
                metric(
                    &text,
                    &format!("dictmon_rejected_samples_total{{reason=\"{r}\"}}"),
                )
                .unwrap_or(0.0)
                    >= 1.0
            })
        },
    );
    let log = serve.log();
    for r in reasons {
        assert!(
            log.contains(&format!("reason={r}")) || log.contains(&format!("reason=\"{r}\"")),
            "{r} not logged:\n{log}"
        );
    }
    let (status, _) = serve.terminate();
    assert!(status.success());
    // Nothing invalid reached the store, and time only moves forward per policy.
    let mut last: HashMap<String, chrono::DateTime<chrono::Utc>> = HashMap::new();
    let mut per_policy: HashMap<String, usize> = HashMap::new();
    StoreReader::open(dir.path())
        .expect("reader")
        .scan(&Filter::default(), &mut |r| {
            *per_policy.entry(r.policy.to_string()).or_default() += 1;
            assert!(
                r.sample.available_tokens <= r.sample.bucket.capacity,
                "{r:?}"
            );
            assert!(r.sample.bucket.capacity > 0, "{r:?}");
            if let Some(prev) = last.insert(r.policy.to_string(), r.sample.at) {
                assert!(
                    r.sample.at > prev,
                    "time went backwards in the store: {r:?}"
                );
            }
        })
        .expect("scan");
    // The valid samples of the same polls were stored: a policy never corrupted has a row for
    // every poll but the backdated one, more than the corrupted policies.
    let clean = per_policy.get("ENTRIES_WRITE").copied().unwrap_or(0);
    assert!(clean >= 4, "{per_policy:?}");
    for corrupted in ["CLAIMS_READ", "KEYS_CHECK"] {
        assert!(
            per_policy.get(corrupted).copied().unwrap_or(0) < clean,
            "{per_policy:?}"
        );
    }
}
