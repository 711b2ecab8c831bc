//! The sample ring: push, and window reads with and without a concurrent writer.
//! Throughput is in samples: criterion prints samples/s beside each median.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use dictmon::ring::{DEFAULT_CAPACITY, ring};

mod common;

fn ring_benches(c: &mut Criterion) {
    let (_, history) = common::history(1, 2 * DEFAULT_CAPACITY).remove(0);

    let mut g = c.benchmark_group("ring");
    g.throughput(Throughput::Elements(1));
    let (mut writer, reader) = ring(DEFAULT_CAPACITY);
    let mut next = history.iter().cycle();
    g.bench_function("push", |b| {
        b.iter(|| writer.push(next.next().expect("cycle never ends")));
    });

    for n in [4, DEFAULT_CAPACITY] {
        g.throughput(Throughput::Elements(n as u64));
        let mut out = Vec::with_capacity(n);
        g.bench_with_input(BenchmarkId::new("window", n), &n, |b, &n| {
            b.iter(|| reader.read_latest_into(n, &mut out));
        });
    }

    // Reads while another thread pushes without pause: the worst case for a reader.
    let stop = Arc::new(AtomicBool::new(false));
    let hammer = {
        let stop = stop.clone();
        let history = history.clone();
        std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                writer.push(&history[i % history.len()]);
                i += 1;
            }
        })
    };
    // A writer this fast laps the reader, which then returns a shorter (still contiguous)
    // window: no element throughput is claimed here; the mean window length is printed instead.
    let mut out = Vec::with_capacity(DEFAULT_CAPACITY);
    g.throughput(Throughput::Elements(1));
    g.bench_function("window_288_while_writer_pushes", |b| {
        b.iter(|| reader.read_latest_into(DEFAULT_CAPACITY, &mut out));
    });
    let reads = 100_000;
    let returned: usize = (0..reads)
        .map(|_| {
            reader.read_latest_into(DEFAULT_CAPACITY, &mut out);
            out.len()
        })
        .sum();
    println!(
        "ring: under a writer pushing without pause, a 288-sample read returned {:.1} samples on average",
        returned as f64 / f64::from(reads)
    );
    stop.store(true, Ordering::Relaxed);
    hammer.join().expect("writer thread");
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = ring_benches
}
criterion_main!(benches);
