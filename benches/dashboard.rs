//! The built-in dashboard as `serve` has it after a restart over 13 months of history of 30
//! policies every 5 minutes (the backfill's traffic model; the last day reloaded into the
//! rings): the overview rendered, the overview served over loopback HTTP (target: ≤ 10 ms
//! median), and a policy page per range, whose history is folded from the segments. Prints
//! each page's size.

use std::sync::Arc;
use std::time::Duration;

use chrono::{Months, TimeDelta, Utc};
use criterion::{Criterion, criterion_group, criterion_main};
use dictmon::domain::{PspCategory, RateWindow, ValidationLimits};
use dictmon::http::{HttpState, Range};
use dictmon::monitor::backfill::{BackfillPlan, backfill, serve_defaults};
use dictmon::monitor::cycle::{Monitor, MonitorConfig};
use dictmon::source::simulator::{Scenario, Simulator, SimulatorSource};
use dictmon::store::{Store, StoreOptions};

fn dashboard_benches(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp");
    let to = Utc::now();
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
    println!("dashboard: {} snapshots of 30 policies", report.snapshots);
    let config = MonitorConfig {
        interval: Duration::from_secs(300),
        jitter: Duration::ZERO,
        timeout: Duration::from_secs(10),
        thresholds: dictmon::domain::Thresholds::default(),
        per_policy: std::collections::HashMap::new(),
        validation: ValidationLimits::default(),
        rate_window: RateWindow::default(),
        keep_months: 13,
        vanished_after_polls: 3,
    };
    let source = SimulatorSource::new(Simulator::new(1, Scenario::Steady, PspCategory::C));
    let (_monitor, readers) = Monitor::new(source, store, config.clone()).expect("monitor");
    let state = Arc::new(HttpState {
        published: readers.published,
        catalog: readers.catalog,
        rings: readers.rings,
        data_dir: dir.path().to_owned(),
        thresholds: config.thresholds,
        per_policy: config.per_policy,
        states_csv: |_, _, _, _, _| Err("no CSV in this bench".into()),
        heavy: dictmon::http::Heavy::default(),
        api_token: None,
    });
    let policies = state.published.latest.load().len();
    assert_eq!(policies, 30, "every policy reloaded");

    let page = dictmon::http::overview(&state, Utc::now());
    println!(
        "dashboard: overview of {policies} policies: {} bytes",
        page.len()
    );
    c.bench_function("dashboard/overview_render_30", |b| {
        b.iter(|| dictmon::http::overview(&state, Utc::now()).len());
    });

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let server = runtime.spawn(dictmon::http::serve(listener, Arc::clone(&state), stopped));
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let get = |path: &str| -> usize {
        agent
            .get(&format!("{base}{path}"))
            .call()
            .expect("200")
            .body_mut()
            .read_to_vec()
            .expect("body")
            .len()
    };
    c.bench_function("dashboard/overview_served_30", |b| b.iter(|| get("/")));

    let name = state.published.latest.load()[0].record.policy.clone();
    let mut g = c.benchmark_group("dashboard/policy_page");
    g.sample_size(20);
    for range in Range::ALL {
        let path = format!("/policy/{name}?range={}", range.key());
        println!("dashboard: {path}: {} bytes", get(&path));
        g.bench_function(range.key(), |b| b.iter(|| get(&path)));
    }
    g.finish();
    let _ = stop.send(true);
    runtime.block_on(server).expect("server stopped");
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(5));
    targets = dashboard_benches
}
criterion_main!(benches);
