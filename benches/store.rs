//! The segment store on 13 months of realistic history (30 policies every 5 minutes, the
//! backfill's traffic model): bulk append, full scan, one policy's 13 months, and bytes per
//! snapshot (printed). Throughput is in snapshots.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, Months, TimeDelta};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use dictmon::domain::{PolicyName, StateRecord};
use dictmon::monitor::backfill::{BackfillPlan, backfill, serve_defaults};
use dictmon::store::{Filter, Store, StoreOptions, StoreReader, segment_bytes};

fn store_benches(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp");
    let to = DateTime::from_timestamp(1_795_000_000, 0).expect("time");
    let plan = BackfillPlan {
        from: to.checked_sub_months(Months::new(13)).expect("time"),
        to,
        interval: TimeDelta::minutes(5),
        seed: 1,
        policies: 30,
    };
    let store = Store::open(dir.path(), StoreOptions::default()).expect("open");
    let (report, store) =
        backfill(store, &plan, serve_defaults(plan.interval), &mut |_, _| {}).expect("backfill");
    drop(store);
    let bytes = segment_bytes(dir.path()).expect("size");
    println!(
        "store: {} snapshots, {bytes} bytes of segments: {:.3} bytes/snapshot",
        report.snapshots,
        bytes as f64 / report.snapshots as f64
    );
    let reader = StoreReader::open(dir.path()).expect("reader");
    let months = reader.months().expect("months");

    // One month of rows, to append in bulk into an empty store.
    let mut month_rows: Vec<StateRecord> = Vec::new();
    let one_month = Filter {
        since_ns: months[6].start().and_then(|t| t.timestamp_nanos_opt()),
        until_ns: months[6]
            .next()
            .start()
            .and_then(|t| t.timestamp_nanos_opt()),
        ..Filter::default()
    };
    reader
        .scan(&one_month, &mut |r| month_rows.push(r))
        .expect("scan");

    let mut g = c.benchmark_group("store");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(8))
        .warm_up_time(Duration::from_secs(1));

    g.throughput(Throughput::Elements(month_rows.len() as u64));
    g.bench_function("bulk_append_one_month", |b| {
        b.iter_batched(
            || tempfile::tempdir().expect("temp"),
            |target| {
                let mut store = Store::open(target.path(), StoreOptions::default()).expect("open");
                store.append_sealed(&month_rows).expect("append");
                target
            },
            BatchSize::PerIteration,
        );
    });

    g.throughput(Throughput::Elements(report.snapshots));
    g.bench_function("full_scan_13_months", |b| {
        b.iter(|| {
            let mut n = 0_u64;
            reader
                .scan(&Filter::default(), &mut |_| n += 1)
                .expect("scan");
            assert_eq!(n, report.snapshots);
            n
        });
    });

    let policy = PolicyName::new("ENTRIES_READ_PARTICIPANT_ANTISCAN").expect("valid");
    let one_policy = Filter {
        policies: Some(BTreeSet::from([policy])),
        ..Filter::default()
    };
    g.throughput(Throughput::Elements(report.snapshots / 30));
    g.bench_function("one_policy_13_months", |b| {
        b.iter(|| {
            let mut n = 0_u64;
            reader.scan(&one_policy, &mut |_| n += 1).expect("scan");
            n
        });
    });
    g.finish();
}

criterion_group!(benches, store_benches);
criterion_main!(benches);
