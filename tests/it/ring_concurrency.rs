//! The ring under contention: one writer pushing as fast as it can, four readers reading
//! windows of every size. Every window must be a contiguous, untorn run of pushed samples.
//! (The memory orderings themselves are model-checked by loom in `src/ring/mod.rs`.)

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

use chrono::DateTime;
use dictmon::domain::{BucketConfig, PspCategory, Sample};
use dictmon::ring::{DEFAULT_CAPACITY, RingSetWriter, ring};

const PUSHES: u64 = 1_000_000;
const READERS: usize = 4;

/// Push number `i` as a sample whose every field is a different function of `i`, so a sample
/// mixing two pushes cannot pass [`index_of`].
fn sample(i: u64) -> Sample {
    let n = i.cast_signed();
    Sample {
        at: DateTime::from_timestamp(1_800_000_000 + n, (i % 999_983) as u32).expect("in range"),
        available_tokens: -n,
        bucket: BucketConfig {
            capacity: n.wrapping_mul(7_919) ^ 0x55,
            refill_tokens: n + 1,
            refill_period_secs: !n,
        },
        category: PspCategory::KNOWN[(i % 8) as usize],
    }
}

/// The push number a sample came from, if it is a whole push.
fn index_of(s: &Sample) -> Option<u64> {
    let i = (s.at.timestamp() - 1_800_000_000).cast_unsigned();
    (sample(i) == *s).then_some(i)
}

#[test]
fn windows_are_contiguous_and_untorn_under_a_million_pushes() {
    let (mut writer, reader) = ring(DEFAULT_CAPACITY);
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..READERS)
        .map(|r| {
            let (ring, done) = (reader.clone(), done.clone());
            thread::spawn(move || {
                let (mut windows, mut longest, mut newest_seen) = (0_u64, 0_usize, 0_u64);
                let mut out = Vec::new();
                let mut size = r + 1;
                while !done.load(Ordering::Acquire) {
                    size = size % DEFAULT_CAPACITY + 1;
                    let first = ring.read_latest_into(size, &mut out);
                    let pushed_after = ring.pushes();
                    assert!(out.len() <= size);
                    for (k, s) in out.iter().enumerate() {
                        let expected = first + k as u64;
                        assert_eq!(index_of(s), Some(expected), "torn or out-of-order sample");
                    }
                    if let Some(last) = out.last() {
                        let last = index_of(last).expect("checked above");
                        assert!(last < pushed_after, "read a push not yet made");
                        assert!(last >= newest_seen, "newest sample went backwards");
                        newest_seen = last;
                    }
                    windows += 1;
                    longest = longest.max(out.len());
                }
                (windows, longest)
            })
        })
        .collect();
    for i in 0..PUSHES {
        writer.push(&sample(i));
    }
    done.store(true, Ordering::Release);
    for handle in readers {
        let (windows, longest) = handle.join().expect("reader passed its checks");
        // The readers really ran concurrently with the writer and saw long windows.
        assert!(windows > 100, "only {windows} windows read");
        assert!(longest > 1, "longest window {longest}");
    }
    assert_eq!(reader.pushes(), PUSHES);
    let tail = reader.window(DEFAULT_CAPACITY);
    let expected: Vec<_> = (PUSHES - DEFAULT_CAPACITY as u64..PUSHES)
        .map(sample)
        .collect();
    assert_eq!(tail, expected);
}

#[test]
fn ring_set_readers_keep_reading_while_policies_are_added() {
    let (mut writer, set) = RingSetWriter::new(16);
    let names: Vec<_> = (0..200)
        .map(|i| dictmon::domain::PolicyName::new(&format!("POLICY_{i}")).expect("valid"))
        .collect();
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let (set, done) = (set.clone(), done.clone());
        thread::spawn(move || {
            let mut max_seen = 0;
            while !done.load(Ordering::Acquire) {
                let all = set.all();
                assert!(all.len() >= max_seen, "a policy disappeared");
                max_seen = all.len();
                for (_, ring) in all {
                    assert!(
                        ring.latest().is_some(),
                        "a ring was published before its first sample"
                    );
                }
            }
        })
    };
    for round in 0..50 {
        for name in &names {
            writer.push(name, &sample(round));
        }
    }
    done.store(true, Ordering::Release);
    reader.join().expect("reader passed its checks");
    assert_eq!(set.all().len(), names.len());
    assert_eq!(set.get(&names[0]).map(|r| r.pushes()), Some(50));
}
