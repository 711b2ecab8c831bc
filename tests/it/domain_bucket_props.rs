//! Property tests of the token-bucket math against a reference simulation written here: a fluid
//! bucket stepped through time with refill capped at capacity, observed in whole tokens as DICT
//! reports them.
//!
//! Whole-token observations bound what *any* estimator can know: the mean rate over a window of
//! `T` seconds is known to within `1 / T` tokens/s (the two readings at its ends are each off by
//! less than one token). The generators therefore pick windows over which that bound is inside
//! the tolerance being tested, and say so where they do.

use chrono::{DateTime, TimeDelta, Utc};
use dictmon::domain::{BucketConfig, PspCategory, RateWindow, Sample, enrich};
use proptest::prelude::*;

const T0: i64 = 1_800_000_000;
/// Sub-steps per poll interval in the reference simulation.
const SUBSTEPS: u32 = 16;

/// A reference bucket: continuous refill at `refill` tokens/s, capped at `capacity`.
struct Bucket {
    level: f64,
    capacity: f64,
    refill: f64,
    consumed: f64,
    touched_bound: bool,
}

impl Bucket {
    /// Advances `dt` seconds while consuming at `rate` tokens/s. Both rates are constant over
    /// the step, so the level moves linearly and checking its end for a bound is exact.
    fn step(&mut self, dt: f64, rate: f64) {
        self.level += (self.refill - rate) * dt;
        self.consumed += rate * dt;
        if self.level >= self.capacity {
            self.level = self.capacity;
            self.touched_bound = true;
        }
        if self.level <= 0.0 {
            self.touched_bound = true;
        }
    }
}

/// Small deterministic generator for the consumption pattern inside a case.
struct XorShift(u64);
impl XorShift {
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1_u64 << 53) as f64
    }
}

fn sample(nanos: i64, level: f64, bucket: BucketConfig) -> Sample {
    Sample {
        at: DateTime::<Utc>::from_timestamp_nanos(T0 * 1_000_000_000 + nanos),
        available_tokens: level.floor() as i64,
        bucket,
        category: PspCategory::E,
    }
}

fn whole_window() -> RateWindow {
    RateWindow {
        span: TimeDelta::days(100_000),
    }
}

/// Runs the reference bucket from half full over `n` polls `interval_ns` apart, consuming at
/// `rate(poll, substep)` tokens/s; returns the observed samples and the bucket.
fn simulate(
    bucket_config: BucketConfig,
    n: usize,
    interval_ns: i64,
    mut rate: impl FnMut() -> f64,
) -> (Vec<Sample>, Bucket) {
    let capacity = bucket_config.capacity as f64;
    let mut bucket = Bucket {
        level: capacity / 2.0 + 0.37,
        capacity,
        refill: bucket_config.refill_per_second(),
        consumed: 0.0,
        touched_bound: false,
    };
    let dt = interval_ns as f64 / 1e9 / f64::from(SUBSTEPS);
    let mut samples = vec![sample(0, bucket.level, bucket_config)];
    for poll in 1..i64::try_from(n).expect("small") {
        for _ in 0..SUBSTEPS {
            bucket.step(dt, rate());
        }
        samples.push(sample(poll * interval_ns, bucket.level, bucket_config));
    }
    (samples, bucket)
}

fn periods() -> impl Strategy<Value = i64> {
    prop::sample::select(vec![1_i64, 2, 10, 60, 300, 3_600, 86_400])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    /// Random capacities, refills and consumption that varies inside every poll interval,
    /// never reaching empty or full: the smoothed rate is within 1 % of the true mean rate.
    ///
    /// Window length: at least 101 tokens are consumed in it (consumption ≥ r/4 over
    /// `T ≥ 404 / r`), so the whole-token bound `1 / T` is under 1 % of the rate; and the level
    /// drifts by at most 1.25·r·T ≤ 0.45·C from half full, so it never reaches a bound
    /// (`C ≥ 1,200` makes both fit).
    #[test]
    fn consumption_rate_is_within_one_percent_of_the_true_rate(
        step_share in 0.0_f64..=0.05,
        period in periods(),
        capacity in 1_200_i64..=200_000,
        mean in 0.5_f64..=1.5,
        length in 0.0_f64..=1.0,
        n in 2_usize..=30,
        seed in 1_u64..,
    ) {
        // A refill step is at most 5 % of capacity, so the 5 % of room the level always keeps
        // is room for a whole step: no refill can be capped (the estimator's exact regime).
        let refill_tokens = ((capacity as f64 * step_share) as i64).max(1);
        let config = BucketConfig { capacity, refill_tokens, refill_period_secs: period };
        let r = config.refill_per_second();
        let (t_min, t_max) = (404.0 / r, 0.36 * capacity as f64 / r);
        let t = t_min + length * (t_max - t_min);
        let interval_ns = (t * 1e9 / (n - 1) as f64).round() as i64;
        prop_assume!(interval_ns > 0);
        let mut noise = XorShift(seed);
        let (samples, bucket) = simulate(config, n, interval_ns, || r * mean * (0.5 + noise.unit()));
        prop_assert!(!bucket.touched_bound, "generator let the bucket reach a bound");

        let e = enrich(&samples, whole_window()).expect("valid bucket");
        let seconds = (n - 1) as f64 * interval_ns as f64 / 1e9;
        let truth = bucket.consumed / seconds * 60.0;
        let estimate = e.consumption_rate_per_minute.expect("two samples give a rate");
        prop_assert!(
            (estimate - truth).abs() <= 0.01 * truth,
            "estimate {estimate} vs true {truth} tokens/min"
        );
    }

    /// Constant consumption: recovery ETA (filling) or exhaustion projection (draining) match
    /// the time the reference bucket takes to get there, within one refill period.
    ///
    /// Whole-token readings put the ETA off by up to `1/|n| + ETA·(1/T)/|n|` seconds (`n` the net
    /// rate): the first term is within `P/10` since the bucket moves at least 10 tokens per
    /// refill period (`|n|·P ≥ 10` is asked), the second when `T ≥ 4·C / (n²·P)`, and the level stays
    /// inside 10–90 % during the window when `T ≤ 0.4·C / |n|`: both fit since `|n|·P ≥ 10`.
    #[test]
    fn eta_and_projection_match_the_simulated_times(
        step_share in 0.0_f64..=0.1,
        period in periods(),
        capacity in 100_i64..=200_000,
        draining in any::<bool>(),
        speed in 0.0_f64..=1.0,
        length in 0.0_f64..=1.0,
        n in 2_usize..=20,
    ) {
        // A refill step of at most 10 % of capacity (and at least 10 tokens): the level stays
        // within 10–90 %, so there is always room for a whole step.
        let refill_tokens = ((capacity as f64 * step_share) as i64).max(10);
        let config = BucketConfig { capacity, refill_tokens, refill_period_secs: period };
        let p = period as f64;
        let r = config.refill_per_second();
        let c = capacity as f64;
        // Net movement per refill period g ∈ [10, R] when filling, [10, 10·R + 10] when draining.
        let g = if draining {
            10.0 + speed * 10.0 * refill_tokens as f64
        } else {
            10.0 + speed * (refill_tokens as f64 - 10.0)
        };
        let net = g / p;
        let consumption = if draining { r + net } else { r - net };
        let (t_min, t_max) = (4.0 * c / (net * net * p), 0.4 * c / net);
        let t = t_min + length * (t_max - t_min);
        let interval_ns = (t * 1e9 / (n - 1) as f64).round() as i64;
        prop_assume!(interval_ns > 0);
        let (samples, mut bucket) = simulate(config, n, interval_ns, || consumption);
        prop_assert!(!bucket.touched_bound, "generator let the bucket reach a bound");

        let e = enrich(&samples, whole_window()).expect("valid bucket");
        let estimate = if draining {
            prop_assert_eq!(e.recovery_eta_seconds, None);
            e.exhaustion_projection_seconds.expect("draining")
        } else {
            prop_assert_eq!(e.exhaustion_projection_seconds, None);
            e.recovery_eta_seconds.expect("filling")
        };
        // Run the reference forward until it hits the bound, in steps of P/8: the error budget
        // is P/8 (stepping) + P/10 (whole tokens) + P/4 (rate) < P.
        let dt = p / 8.0;
        let mut elapsed = 0.0;
        bucket.touched_bound = false;
        while !bucket.touched_bound {
            bucket.step(dt, consumption);
            elapsed += dt;
        }
        prop_assert!(
            (estimate - elapsed).abs() <= p,
            "estimated {estimate} s, simulated {elapsed} s, refill period {p} s"
        );
    }

    /// Any samples at all — out of order, nonsense capacities, extreme values, capacity
    /// changes — give finite numbers, no negative rate or time, and no panic.
    #[test]
    fn any_input_gives_finite_non_negative_figures(
        raw in prop::collection::vec(
            (
                -4_000_000_000_i64..=4_000_000_000,
                any::<i64>(),
                prop_oneof![Just(1_i64), 1_i64..=100_000, any::<i64>()],
                prop_oneof![Just(1_i64), any::<i64>()],
                prop_oneof![Just(60_i64), any::<i64>()],
            ),
            0..12,
        ),
        span_secs in 0_i64..=1_000_000,
    ) {
        let samples: Vec<Sample> = raw
            .iter()
            .map(|&(secs, available, capacity, refill_tokens, period)| Sample {
                at: DateTime::from_timestamp(secs, 0).expect("within chrono's range"),
                available_tokens: available,
                bucket: BucketConfig { capacity, refill_tokens, refill_period_secs: period },
                category: PspCategory::A,
            })
            .collect();
        if let Some(e) = enrich(&samples, RateWindow { span: TimeDelta::seconds(span_secs) }) {
            prop_assert!(e.utilization_percent.is_finite());
            prop_assert!(e.remaining_percent.is_finite());
            for x in [e.consumption_rate_per_minute, e.recovery_eta_seconds, e.exhaustion_projection_seconds]
                .into_iter()
                .flatten()
            {
                prop_assert!(x.is_finite() && x >= 0.0, "{e:?}");
            }
        }
    }

    /// A bucket re-configured by DICT between polls (category move) never shows a spike or a
    /// negative rate: the rate is either unknown or comes from pairs of one configuration.
    #[test]
    fn capacity_changes_never_produce_a_rate_from_mixed_pairs(
        before in 100_i64..=50_000,
        after in 100_i64..=50_000,
        tokens_before in 0.0_f64..=1.0,
        tokens_after in 0.0_f64..=1.0,
    ) {
        prop_assume!(before != after);
        let cfg = |capacity: i64| BucketConfig { capacity, refill_tokens: capacity / 2, refill_period_secs: 60 };
        let s = |secs: i64, frac: f64, capacity: i64| Sample {
            at: DateTime::from_timestamp(T0 + secs, 0).expect("in range"),
            available_tokens: (frac * (capacity - 1) as f64) as i64,
            bucket: cfg(capacity),
            category: PspCategory::B,
        };
        let window = [s(0, tokens_before, before), s(300, tokens_after, after)];
        let e = enrich(&window, RateWindow::default()).expect("valid");
        prop_assert_eq!(e.consumption_rate_per_minute, None);
    }
}
