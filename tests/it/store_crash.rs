//! Crash safety with real processes: a child appends fsynced batches and reports each
//! acknowledgement; the test SIGKILLs it at random moments, 200 times, and after each kill
//! checks that reopening recovers, every acknowledged batch is present exactly once, no partial
//! batch is visible, and the next appends work. Batches are six hours apart, so every append
//! closes an hour and the writer's background compactor rewrites the segment (merging the
//! closed hour's live block, then sealed blocks by size tiers) while later batches are
//! appended; the children cross month boundaries (new segments): kills land inside all of it.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::Duration;

use chrono::TimeDelta;
use dictmon::store::{Filter, Store, StoreOptions, StoreReader};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::util::{dictmon, t0};

const KILLS: usize = 200;
const POLICIES: usize = 30;
/// Hours between batches: every append closes the previous batch's hour, due for compaction.
const HOURS: i64 = 6;

fn spawn_writer(dir: &std::path::Path, last: Option<u64>) -> Child {
    let mut cmd = dictmon();
    cmd.args(["debug", "write-batches", "--data-dir"])
        .arg(dir)
        .args(["--policies", &POLICIES.to_string(), "--interval", "6h"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(last) = last {
        cmd.args(["--last", &last.to_string()]);
    }
    cmd.spawn().expect("spawn dictmon")
}

/// Polls the segments folder until a compaction's (or a new segment's) temporary file appears
/// (true) or `limit` passes.
fn wait_for_rewrite(dir: &std::path::Path, limit: Duration) -> bool {
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        let rewriting = std::fs::read_dir(dir.join("segments"))
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().ends_with(".tmp"));
        if rewriting {
            return true;
        }
        std::thread::sleep(Duration::from_micros(50));
    }
    false
}

/// Rows per batch number, checking each row against the writer's formula.
fn batches_on_disk(dir: &std::path::Path) -> BTreeMap<u64, usize> {
    let mut batches = BTreeMap::new();
    let problems = StoreReader::open(dir)
        .expect("data dir")
        .scan(&Filter::default(), &mut |r| {
            let k =
                u64::try_from((r.sample.at - t0()).num_seconds() / HOURS / 3600).expect("after t0");
            let p: u64 = r.policy.as_str()["POLICY_".len()..]
                .parse()
                .expect("synthetic name");
            assert_eq!(
                r.sample.at,
                t0() + TimeDelta::hours(HOURS * i64::try_from(k).expect("small"))
            );
            assert_eq!(
                r.sample.available_tokens,
                i64::try_from((7 * k + 13 * p) % 1000).expect("small")
            );
            *batches.entry(k).or_insert(0) += 1;
        })
        .expect("scan");
    assert!(problems.is_empty(), "corruption after a kill: {problems:?}");
    batches
}

#[test]
fn acknowledged_batches_survive_sigkill_exactly_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut rng = ChaCha8Rng::seed_from_u64(0x5EED);
    let mut acked: Option<u64> = None;
    let mut kills_during_rewrite = 0;
    // Each killed run may leave one batch stored but not acknowledged (written and fsynced,
    // killed before it printed the ack): the next run resumes after it, as from any stored
    // batch. Those are the only batches allowed beyond the acknowledged ones.
    let mut in_flight = std::collections::BTreeSet::new();
    let mut next_batch = 0_u64;
    for kill in 0..KILLS {
        let mut run_acked: Option<u64> = None;
        let mut child = spawn_writer(dir.path(), None);
        let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
        // Let it acknowledge a few batches (sometimes none), then kill at a random moment.
        for _ in 0..rng.random_range(0..4) {
            let Some(Ok(line)) = lines.next() else {
                let out = child.wait_with_output().expect("child output");
                panic!(
                    "writer died on its own: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            };
            let k: u64 = line
                .strip_prefix("ack ")
                .and_then(|k| k.parse().ok())
                .expect("ack line");
            acked = acked.max(Some(k));
            run_acked = run_acked.max(Some(k));
        }
        if kill % 3 == 0 {
            // Aim at the riskiest moment: kill while a compaction is rewriting the segment (its
            // temporary file exists between creation and rename).
            if wait_for_rewrite(dir.path(), Duration::from_millis(500)) {
                kills_during_rewrite += 1;
            }
        } else {
            std::thread::sleep(Duration::from_micros(rng.random_range(0..3_000)));
        }
        child.kill().expect("SIGKILL");
        // Acks printed before the kill still count.
        for line in lines.map_while(Result::ok) {
            if let Some(k) = line.strip_prefix("ack ").and_then(|k| k.parse().ok()) {
                acked = acked.max(Some(k));
                run_acked = run_acked.max(Some(k));
            }
        }
        child.wait().expect("reaped");
        in_flight.insert(run_acked.map_or(next_batch, |k| k + 1));

        // Reopening recovers (the lock of the dead writer is gone, a torn tail is cut).
        drop(Store::open(dir.path(), StoreOptions::default()).expect("reopen after kill"));
        let on_disk = batches_on_disk(dir.path());
        for (k, rows) in &on_disk {
            assert_eq!(
                *rows, POLICIES,
                "kill {kill}: batch {k} is partial or duplicated"
            );
        }
        if let Some(acked) = acked {
            for k in 0..=acked {
                assert!(
                    on_disk.contains_key(&k),
                    "kill {kill}: acknowledged batch {k} lost"
                );
            }
            // Beyond the acknowledged batches, only each run's one in flight.
            assert!(
                on_disk
                    .keys()
                    .all(|&k| k <= acked || in_flight.contains(&k)),
                "kill {kill}: {on_disk:?}, acknowledged up to {acked}, in flight {in_flight:?}"
            );
        }
        next_batch = on_disk.keys().next_back().map_or(0, |k| k + 1);
    }
    assert!(
        kills_during_rewrite >= 10,
        "only {kills_during_rewrite} kills landed inside a rewrite"
    );
    let acked = acked.expect("the writers acknowledged something in 200 runs");
    assert!(
        acked > 4 * 31,
        "only {acked} batches: no month boundary crossed"
    );
    // New appends work after all that: run a writer to completion.
    let target = acked + 30;
    let status = spawn_writer(dir.path(), Some(target))
        .wait()
        .expect("writer ran");
    assert!(status.success());
    let on_disk = batches_on_disk(dir.path());
    assert_eq!(
        on_disk.keys().copied().collect::<Vec<_>>(),
        (0..=target).collect::<Vec<_>>()
    );
}
