//! The read-only commands after `serve` was killed, and on a copy taken while it ran (the
//! backup the README recommends): `status`, `query alerts`, `export` and `verify` work on both,
//! read-only, and `verify` does not call an unclean shutdown corruption (storage-format.md §10).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::util::{Serve, dictmon, wait_until};

fn copy_dir(from: &Path, to: &Path) {
    let status = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .expect("cp");
    assert!(status.success());
}

/// Every read-only command on `data`: each succeeds, and nothing in `data` changes.
fn readers_work(data: &Path, out: &Path) {
    let before = std::fs::read(data.join("catalog.redb")).expect("catalog");
    for args in [
        vec!["status"],
        vec!["query", "alerts", "--format", "csv"],
        vec!["query", "states", "--format", "csv"],
    ] {
        let o = dictmon()
            .args(&args)
            .arg("--data-dir")
            .arg(data)
            .output()
            .expect("spawn");
        assert!(
            o.status.success(),
            "{args:?} on {}: {}",
            data.display(),
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let o = dictmon()
        .args(["export", "--data-dir"])
        .arg(data)
        .arg("--out")
        .arg(out)
        .output()
        .expect("spawn");
    assert!(
        o.status.success(),
        "export: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let alerts = std::fs::read_to_string(out.join("alerts.csv")).expect("alerts.csv");
    assert!(
        alerts.lines().count() > 1,
        "the alerts are exported: {alerts}"
    );
    let o = dictmon()
        .args(["verify", "--data-dir"])
        .arg(data)
        .output()
        .expect("spawn");
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && text.contains("clean"),
        "verify: {text}"
    );
    assert!(!text.contains("CORRUPT"), "{text}");
    assert_eq!(
        std::fs::read(data.join("catalog.redb")).expect("catalog"),
        before,
        "a reader changed the catalog"
    );
}

#[test]
fn readers_work_after_a_kill_and_on_a_copy_taken_while_serve_ran() {
    let dir = tempfile::tempdir().expect("temp");
    let data = dir.path().join("data");
    let serve = Serve::start(&data, &["--interval", "1s", "--scenario", "exhaustion"]);
    wait_until("an alert in the catalog", Duration::from_secs(60), || {
        serve.get("/api/v1/alerts").1.contains("\"severity\"")
    });
    let copy = dir.path().join("copy");
    copy_dir(&data, &copy);
    serve.kill();
    readers_work(&copy, &dir.path().join("copy-export"));
    readers_work(&data, &dir.path().join("export"));
    // The writer repairs the file itself when it opens it again.
    let serve = Serve::start(&data, &["--interval", "1s"]);
    wait_until("ready again", Duration::from_secs(30), || {
        serve.get("/readyz").0 == 200
    });
}
