//! `serve` when its disk fails: the data directory is a small tmpfs that fills up while `serve`
//! polls every second. The store must say so (`/readyz`, `dictmon_store_writable`), keep the
//! cycles in memory (`dictmon_store_pending_records`), write them once space is back, and never
//! corrupt a segment: afterwards `verify` is clean, no torn tail was quarantined, and every
//! snapshot the API showed during the test is stored exactly once. A read-only data directory
//! stops `serve` at start with a clear error, and the read-only commands still work on it.
//! (Linux refuses to remount a file system read-only while a process has files open on it for
//! writing — `serve` always has — so a read-only remount under a running `serve` is not a case
//! that can be staged; a write that fails with EROFS or EIO takes the same path as ENOSPC.)
//!
//! Mounting needs root (CI runs as root): built by another user, the tests that mount are
//! `#[ignore]`d, so `cargo test` counts them as skipped (`build.rs` sets `dictmon_test_root`).

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use dictmon::domain::PolicyName;
use dictmon::store::{Filter, StoreReader};

use super::util::{Serve, backfill, dictmon, metric, run_ok, wait_until};

/// The policy whose snapshots are followed (any would do).
const FOLLOWED: &str = "ENTRIES_WRITE";

/// A mount made for the test, undone on drop.
struct Mount {
    path: PathBuf,
}

/// Built as root, the mounting tests must run as root: another user gets a clear failure, not
/// a test that passes without testing.
fn assert_root() {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    assert!(
        root,
        "this test binary was built as root and needs root to mount; rebuild as this user (the test is then skipped) or run as root"
    );
}

impl Mount {
    /// A tmpfs of `size` (`16m`) at `path`.
    fn tmpfs(path: &Path, size: &str) -> Self {
        assert_root();
        std::fs::create_dir_all(path).expect("mount point");
        run(
            "mount",
            &["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"],
            path,
        );
        Self {
            path: path.to_owned(),
        }
    }

    /// `source` seen read-only at `path`.
    fn read_only(source: &Path, path: &Path) -> Self {
        assert_root();
        std::fs::create_dir_all(path).expect("mount point");
        run("mount", &["--bind", source.to_str().expect("UTF-8")], path);
        let mount = Self {
            path: path.to_owned(),
        };
        run("mount", &["-o", "remount,bind,ro"], path);
        mount
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

fn run(cmd: &str, args: &[&str], path: &Path) {
    let status = Command::new(cmd)
        .args(args)
        .arg(path)
        .status()
        .expect("spawn");
    assert!(status.success(), "{cmd} {args:?} {} failed", path.display());
}

/// Fills the file system holding `dir` until it refuses a write; returns the filler file.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).expect("filler");
    let chunk = vec![0xA5_u8; 64 * 1024];
    while f.write_all(&chunk).and_then(|()| f.sync_data()).is_ok() {}
    path
}

/// Every response time of `FOLLOWED` the API showed, gathered every 100 ms until stopped.
struct Watcher {
    seen: Arc<Mutex<BTreeSet<DateTime<Utc>>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watcher {
    fn start(base: &str) -> Self {
        let seen = Arc::new(Mutex::new(BTreeSet::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, t, url) = (
            Arc::clone(&seen),
            Arc::clone(&stop),
            format!("{base}/api/v1/policies"),
        );
        let thread = std::thread::spawn(move || {
            while !t.load(Ordering::Relaxed) {
                if let Ok((200, body)) = super::util::http_get(&url) {
                    let list: Vec<serde_json::Value> =
                        serde_json::from_str(&body).unwrap_or_default();
                    for p in list.iter().filter(|p| p["endpoint_id"] == FOLLOWED) {
                        if let Some(at) = p["response_time"]
                            .as_str()
                            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                        {
                            s.lock().expect("seen").insert(at.with_timezone(&Utc));
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        Self {
            seen,
            stop,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> Vec<DateTime<Utc>> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().expect("watcher");
        }
        self.seen.lock().expect("seen").iter().copied().collect()
    }
}

fn metrics(serve: &Serve, series: &str) -> Option<f64> {
    let (status, text) = serve.get("/metrics");
    (status == 200).then(|| metric(&text, series)).flatten()
}

#[test]
#[cfg_attr(
    not(dictmon_test_root),
    ignore = "needs root to mount a tmpfs (CI runs as root)"
)]
fn a_full_disk_keeps_cycles_in_memory_and_writes_them_when_space_returns() {
    let what = "disk full";
    let tmp = tempfile::tempdir().expect("tempdir");
    let fs = Mount::tmpfs(&tmp.path().join("mnt"), "16m");
    let data = fs.path.join("data");
    let serve = Serve::start(&data, &["--interval", "1s"]);
    let watcher = Watcher::start(&serve.base);
    wait_until("three stored cycles", Duration::from_secs(30), || {
        metrics(&serve, "dictmon_store_writable") == Some(1.0) && stored(&data).len() >= 3
    });

    let filler = fill(&fs.path);
    wait_until(
        &format!("{what}: the store reported unwritable"),
        Duration::from_secs(30),
        || metrics(&serve, "dictmon_store_writable") == Some(0.0) && serve.get("/readyz").0 == 503,
    );
    let (_, readyz) = serve.get("/readyz");
    assert!(
        readyz.contains("the store cannot be written"),
        "/readyz says why: {readyz}"
    );
    wait_until(
        &format!("{what}: five cycles kept in memory"),
        Duration::from_secs(30),
        || metrics(&serve, "dictmon_store_pending_records").is_some_and(|n| n >= 5.0 * 29.0),
    );

    std::fs::remove_file(&filler).expect("free the space");
    wait_until(
        &format!("{what}: the kept cycles written"),
        Duration::from_secs(30),
        || {
            metrics(&serve, "dictmon_store_writable") == Some(1.0)
                && metrics(&serve, "dictmon_store_pending_records") == Some(0.0)
                && serve.get("/readyz").0 == 200
        },
    );
    let after = stored(&data).len();
    wait_until("two more cycles", Duration::from_secs(30), || {
        stored(&data).len() >= after + 2
    });
    let seen = watcher.finish();
    assert_eq!(
        metrics(&serve, "dictmon_store_dropped_records_total"),
        Some(0.0)
    );
    let log = serve.log();
    let (status, _) = serve.terminate();
    assert!(status.success(), "serve exit: {status}\n{log}");
    assert!(
        log.contains("cannot write to the store"),
        "the failure is logged:\n{log}"
    );

    run_ok(dictmon().arg("verify").arg("--data-dir").arg(&data));
    let quarantined = std::fs::read_dir(data.join("quarantine")).map_or(0, Iterator::count);
    assert_eq!(quarantined, 0, "{what}: no partial block was left behind");

    let (stored, damage) = stored_and_damage(&data);
    assert!(damage.is_empty(), "{what}: damage: {damage:?}");
    let mut unique = stored.clone();
    unique.dedup();
    assert_eq!(
        unique.len(),
        stored.len(),
        "{what}: a snapshot stored twice"
    );
    let missing: Vec<_> = seen
        .iter()
        .filter(|t| unique.binary_search(t).is_err())
        .collect();
    assert!(
        missing.is_empty(),
        "{what}: snapshots shown by the API but never stored: {missing:?}"
    );
    assert!(
        seen.len() >= 10,
        "the watcher saw the cycles: {}",
        seen.len()
    );
}

/// Response times of `FOLLOWED` in the store, sorted.
fn stored(data: &Path) -> Vec<DateTime<Utc>> {
    stored_and_damage(data).0
}

/// Response times of `FOLLOWED` in the store, sorted, and the damage met reading them.
fn stored_and_damage(data: &Path) -> (Vec<DateTime<Utc>>, Vec<String>) {
    let Ok(reader) = StoreReader::open(data) else {
        return (Vec::new(), Vec::new());
    };
    let filter = Filter {
        policies: Some([PolicyName::new(FOLLOWED).expect("name")].into()),
        ..Filter::default()
    };
    let mut times = Vec::new();
    let damage = reader
        .scan(&filter, &mut |r| times.push(r.sample.at))
        .map_or_else(
            |e| vec![e.to_string()],
            |d| d.iter().map(ToString::to_string).collect(),
        );
    times.sort_unstable();
    (times, damage)
}

#[test]
#[cfg_attr(
    not(dictmon_test_root),
    ignore = "needs root to bind-mount read-only (CI runs as root)"
)]
fn a_read_only_data_directory_stops_serve_at_start_and_still_answers_queries() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    backfill(&data, "1h");
    let before = stored(&data);
    assert!(!before.is_empty(), "an hour of history");
    let ro = tmp.path().join("ro");
    let _mount = Mount::read_only(&data, &ro);
    let out = dictmon()
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--grpc-listen",
            "off",
            "--data-dir",
        ])
        .arg(&ro)
        .output()
        .expect("serve");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "an I/O error: {stderr}");
    assert!(
        stderr.contains(ro.to_str().expect("UTF-8")) && stderr.contains("Read-only file system"),
        "the error names the directory and the cause: {stderr}"
    );
    for args in [
        &["status"][..],
        &["query", "states", "--format", "csv"],
        &["verify"],
    ] {
        run_ok(dictmon().args(args).arg("--data-dir").arg(&ro));
    }
    assert_eq!(stored(&ro), before, "nothing changed");
}

/// `rm -rf` of the data directory under a running `serve` is noticed within a cycle: the store
/// is no longer writable, `/readyz` says why, and nothing more is "stored" into deleted files.
#[test]
fn a_data_directory_removed_under_serve_is_noticed() {
    let dir = tempfile::tempdir().expect("temp");
    let data = dir.path().join("data");
    let serve = crate::util::Serve::start(&data, &["--interval", "1s"]);
    crate::util::wait_until("ready", std::time::Duration::from_secs(30), || {
        serve.get("/readyz").0 == 200
    });
    std::fs::remove_dir_all(&data).expect("rm -rf");
    crate::util::wait_until(
        "/readyz red naming the directory",
        std::time::Duration::from_secs(10),
        || {
            let (status, body) = serve.get("/readyz");
            status == 503 && body.contains("store")
        },
    );
    let text = serve.get("/metrics").1;
    assert_eq!(
        crate::util::metric(&text, "dictmon_store_writable"),
        Some(0.0),
        "{text}"
    );
    crate::util::wait_until(
        "the log says why",
        std::time::Duration::from_secs(10),
        || serve.log().contains("removed or replaced"),
    );
    assert!(
        crate::util::metric(&serve.get("/metrics").1, "dictmon_store_pending_records")
            .is_some_and(|n| n > 0.0),
        "rows wait in memory"
    );
}
