//! Enrichment of one poll cycle: for every policy, read the rate window from the ring, compute
//! the derived metrics and run the alert state machine. Throughput is in policies: criterion
//! prints policies/s beside the median time of a whole cycle.

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use dictmon::domain::{
    AlertState, Observation, RateWindow, Snapshot, Thresholds, enrich, evaluate,
};
use dictmon::ring::{DEFAULT_CAPACITY, RingSetWriter};

mod common;

fn cycle_benches(c: &mut Criterion) {
    let rate_window = RateWindow::default();
    // Samples within the default 15-minute span at the 5-minute poll, plus the one before.
    let window_len =
        usize::try_from(rate_window.span.num_seconds() / common::INTERVAL.num_seconds())
            .expect("positive")
            + 1;
    let thresholds = Thresholds::default();

    let mut g = c.benchmark_group("enrich_cycle");
    for policies in [30, 1_000] {
        let (mut writer, rings) = RingSetWriter::new(DEFAULT_CAPACITY);
        let history = common::history(policies, DEFAULT_CAPACITY);
        for (name, samples) in &history {
            for s in samples {
                writer.push(name, s);
            }
        }
        let names: Vec<_> = history.into_iter().map(|(name, _)| name).collect();
        let state = AlertState::default();
        let mut window = Vec::with_capacity(window_len);
        g.throughput(Throughput::Elements(policies as u64));
        g.bench_with_input(BenchmarkId::from_parameter(policies), &names, |b, names| {
            b.iter(|| {
                let mut events = 0;
                for name in names {
                    let ring = rings.get(name).expect("pushed");
                    ring.read_latest_into(window_len, &mut window);
                    let latest = *window.last().expect("non-empty");
                    let e = enrich(&window, rate_window).expect("valid");
                    let snapshot = Snapshot {
                        policy: name.clone(),
                        sample: latest,
                    };
                    let t = evaluate(
                        &state,
                        Observation {
                            snapshot: &snapshot,
                            enrichment: &e,
                            forecast: None,
                        },
                        &thresholds,
                    );
                    events += t.events.len();
                }
                events
            });
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = cycle_benches
}
criterion_main!(benches);
