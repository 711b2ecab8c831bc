//! The catalog's commit fails with ENOSPC under a running `serve` (a full disk, as the catalog
//! meets it), then the space comes back: the catalog heals without a restart. While it fails,
//! `/readyz` is red, the changes wait in memory (`dictmon_catalog_pending_changes`, merged, so
//! bounded), the error is counted; afterwards every alert event raised meanwhile is in the
//! outbox, the pending count is 0 and `verify` is clean.
//!
//! The failure is staged with an `LD_PRELOAD` shim (`tests/fixtures/faults/failing_catalog.c`)
//! that fails writes, syncs and resizes of `catalog.redb` while a trigger file exists: a tmpfs
//! filled to the brim fails the segment append first, and the append's own failure path (tested
//! in `serve_disk_faults.rs`) then keeps the catalog from being written at all.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::util::{Serve, dictmon, metric, outbox, run_ok, wait_until};

/// Builds the shim with the C compiler that links Rust programs.
fn shim(dir: &Path) -> std::path::PathBuf {
    let source =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/faults/failing_catalog.c");
    let out = dir.join("failing_catalog.so");
    let status = Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&out)
        .arg(&source)
        .arg("-ldl")
        .status()
        .expect("cc (the C compiler Rust links with)");
    assert!(status.success(), "building the shim");
    out
}

fn metrics(serve: &Serve, series: &str) -> Option<f64> {
    let (status, text) = serve.get("/metrics");
    (status == 200).then(|| metric(&text, series)).flatten()
}

/// Alert events raised since start (created + resolved, every label set).
fn events_raised(serve: &Serve) -> f64 {
    let (_, text) = serve.get("/metrics");
    text.lines()
        .filter(|l| {
            l.starts_with("dict_rate_limit_alerts_created_total{")
                || l.starts_with("dict_rate_limit_alerts_updated_total{")
                || l.starts_with("dict_rate_limit_alerts_resolved_total{")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn a_catalog_that_fails_to_commit_heals_without_a_restart() {
    let tmp = tempfile::tempdir().expect("temp");
    let data = tmp.path().join("data");
    let trigger = tmp.path().join("fail-catalog");
    let serve = Serve::start_env(
        &data,
        // A drain to below zero every 35 s: alert events all along.
        &["--scenario", "exhaustion", "--interval", "1s"],
        &[
            ("LD_PRELOAD", shim(tmp.path()).display().to_string()),
            ("DICTMON_TEST_FAIL_CATALOG", trigger.display().to_string()),
        ],
    );
    wait_until("ready", Duration::from_secs(30), || {
        serve.get("/readyz").0 == 200
    });

    std::fs::write(&trigger, b"").expect("trigger");
    wait_until(
        "the catalog's failure seen: counted, /readyz red",
        Duration::from_secs(30),
        || {
            metrics(&serve, "dictmon_catalog_io_errors_total").is_some_and(|n| n >= 1.0)
                && serve.get("/readyz").0 == 503
        },
    );
    let (_, readyz) = serve.get("/readyz");
    assert!(readyz.contains("store"), "/readyz says why: {readyz}");
    // Alert events raised while the catalog cannot take them.
    let raised_before = events_raised(&serve);
    wait_until(
        "alert events raised during the outage, waiting in memory",
        Duration::from_secs(60),
        || {
            events_raised(&serve) >= raised_before + 2.0
                && metrics(&serve, "dictmon_catalog_pending_changes").is_some_and(|n| n > 0.0)
        },
    );
    // Bounded: policy sightings and alert states are merged, only events add up.
    let pending = metrics(&serve, "dictmon_catalog_pending_changes").expect("gauge");
    assert!(
        pending <= 2.0 * 29.0 + 29.0 + events_raised(&serve),
        "pending {pending}"
    );

    std::fs::remove_file(&trigger).expect("the disk is back");
    wait_until(
        "healed: ready, nothing pending",
        Duration::from_secs(30),
        || {
            serve.get("/readyz").0 == 200
                && metrics(&serve, "dictmon_catalog_pending_changes") == Some(0.0)
        },
    );
    let raised = events_raised(&serve);
    let log = serve.log();
    let (status, _) = serve.terminate();
    assert!(status.success(), "serve exit: {status}\n{log}");
    assert!(
        log.contains("catalog opened again after an I/O error"),
        "{log}"
    );
    // Every event raised reached the outbox (at most one more cycle's after the last reading).
    let stored = outbox(&data).len() as f64;
    assert!(
        stored >= raised,
        "{stored} events in the outbox, {raised} raised"
    );
    assert_eq!(
        dictmon::store::verify(&data, &mut |_, _, _| {})
            .expect("verify")
            .problems,
        Vec::<String>::new()
    );
    run_ok(dictmon().arg("verify").arg("--data-dir").arg(&data));
}
