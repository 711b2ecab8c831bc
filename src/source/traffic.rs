//! The simulator's traffic model: DICT's published buckets drained by realistic PIX traffic,
//! reproducible from a seed. Used by `simulate --backfill` (history) and, later, by the live
//! simulator.
//!
//! The model, per bucket: consumption drains the level continuously; refill arrives in steps
//! of `RefillTokens` every `RefillPeriodSec` (DICT does not document continuous or stepped
//! refill; stepped is the harder case for a monitor), capped at capacity, each bucket with its
//! own phase. A sample thus sees a lightly used bucket short of full by what it consumed since
//! its last step. Observations are whole tokens (floored), as DICT reports them.
//!
//! - The participant anti-scan bucket (key look-ups) is busy: up to 90 % of its refill at the
//!   business peak, with bursts of 1.3–2× that can drain it (and a penalty can take it to −2).
//! - `ENTRIES_STATISTICS_READ` follows at about half that.
//! - Write and claim buckets see light traffic (1–10 % of refill); the rest are nearly idle.
//! - `POLICIES_LIST` is charged one token per poll (dictmon's own listing), `POLICIES_READ`
//!   one per single-policy read; nothing else drains them.
//! - Daily cycle on Brasília time (UTC−3): night 10 %, ramping to 100 % over 12:00–18:00.

use chrono::{DateTime, Timelike, Utc};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::domain::dict_table::{PSP_POLICIES, nth_policy};
use crate::domain::{BucketConfig, PolicyName, PspCategory};

#[derive(Clone, Copy, Debug)]
enum Load {
    /// Fraction of the refill rate consumed at the daily peak.
    Daily { peak: f64, bursty: bool },
    /// One token per call (`POLICIES_LIST`, `POLICIES_READ`): drained only by [`Traffic::charge`].
    Poller,
}

/// One simulated bucket.
#[derive(Clone, Debug)]
pub struct SimBucket {
    /// Its policy name.
    pub name: PolicyName,
    /// Its configuration now.
    pub config: BucketConfig,
    row: usize,
    level: f64,
    /// Offset of the refill steps from the epoch, seconds in `0..RefillPeriodSec`.
    phase: f64,
    load: Load,
    /// Remaining seconds and multiplier of a burst in progress.
    burst: Option<(f64, f64)>,
}

impl SimBucket {
    /// Tokens DICT would report now.
    pub fn available(&self) -> i64 {
        self.level.floor() as i64
    }
}

/// Every simulated bucket of one participant.
pub struct Traffic {
    rng: ChaCha8Rng,
    category: PspCategory,
    buckets: Vec<SimBucket>,
}

impl Traffic {
    /// `policies` buckets cycling through DICT's published table (names suffixed after the
    /// first 29), all full, for a participant of `category`.
    pub fn new(seed: u64, policies: usize, category: PspCategory) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let buckets = (0..policies)
            .map(|i| {
                let (name, row) = nth_policy(i);
                let config = row
                    .bucket(category)
                    .or_else(|| row.bucket(PspCategory::H))
                    .unwrap_or(BucketConfig {
                        capacity: 1,
                        refill_tokens: 1,
                        refill_period_secs: 1,
                    });
                let load = match row.name {
                    "ENTRIES_READ_PARTICIPANT_ANTISCAN" => Load::Daily {
                        peak: 0.9,
                        bursty: true,
                    },
                    "ENTRIES_STATISTICS_READ" => Load::Daily {
                        peak: 0.45,
                        bursty: true,
                    },
                    "POLICIES_LIST" | "POLICIES_READ" => Load::Poller,
                    n if n.ends_with("_WRITE") || n.starts_with("CLAIMS") => Load::Daily {
                        peak: rng.random_range(0.01..0.10),
                        bursty: false,
                    },
                    _ => Load::Daily {
                        peak: rng.random_range(0.0..0.01),
                        bursty: false,
                    },
                };
                SimBucket {
                    name,
                    config,
                    row: i % PSP_POLICIES.len(),
                    level: config.capacity as f64,
                    phase: rng.random_range(0.0..config.refill_period_secs as f64),
                    load,
                    burst: None,
                }
            })
            .collect();
        Self {
            rng,
            category,
            buckets,
        }
    }

    /// The participant's category.
    pub fn category(&self) -> PspCategory {
        self.category
    }

    /// BACEN moves the participant to another category: the category-dependent buckets get
    /// their new capacity and refill, their balance capped at the new capacity.
    pub fn set_category(&mut self, category: PspCategory) {
        self.category = category;
        for b in &mut self.buckets {
            if let Some(config) = PSP_POLICIES.get(b.row).and_then(|row| row.bucket(category)) {
                b.config = config;
                b.level = b.level.min(config.capacity as f64);
            }
        }
    }

    /// Advances the model from `now` by `seconds`, in steps of at most a minute.
    pub fn advance(&mut self, now: DateTime<Utc>, seconds: f64) {
        let mut done = 0.0;
        while done < seconds {
            let dt = (seconds - done).min(60.0);
            let at = now + chrono::TimeDelta::milliseconds((done * 1000.0) as i64);
            let daily = daily_factor(at);
            let t0 = at.timestamp_millis() as f64 / 1000.0;
            for b in &mut self.buckets {
                let refill = b.config.refill_per_second();
                let consumption = match b.load {
                    Load::Poller => 0.0,
                    Load::Daily { peak, bursty } => {
                        let mut k = peak * daily * self.rng.random_range(0.5..1.5);
                        if bursty {
                            b.burst = match b.burst {
                                Some((left, m)) if left > dt => Some((left - dt, m)),
                                // About one burst every two days per bursty bucket.
                                None if self.rng.random_bool((dt / 172_800.0).min(1.0)) => Some((
                                    self.rng.random_range(1_800.0..7_200.0),
                                    self.rng.random_range(1.3..2.0),
                                )),
                                _ => None,
                            };
                            k *= b.burst.map_or(1.0, |(_, m)| m);
                        }
                        refill * k
                    }
                };
                let floor = if matches!(b.load, Load::Daily { bursty: true, .. }) {
                    -2.0
                } else {
                    0.0
                };
                // Drain up to each refill step inside this interval, refill, go on.
                let period = b.config.refill_period_secs as f64;
                let (mut t, end) = (t0, t0 + dt);
                loop {
                    let step_at = b.phase + (((t - b.phase) / period).floor() + 1.0) * period;
                    let until = step_at.min(end);
                    b.level = (b.level - consumption * (until - t)).max(floor);
                    if step_at > end {
                        break;
                    }
                    b.level =
                        (b.level + b.config.refill_tokens as f64).min(b.config.capacity as f64);
                    t = step_at;
                }
            }
            done += dt;
        }
    }

    /// One poll: `POLICIES_LIST` pays its token, then every bucket is observed.
    pub fn poll(&mut self) -> Vec<(PolicyName, i64, BucketConfig)> {
        self.charge("POLICIES_LIST");
        self.observe()
    }

    /// One call metered by the bucket `name` pays its token (the balance may go negative, as
    /// a caller that does not ask first can drive it).
    pub fn charge(&mut self, name: &str) {
        for b in self.buckets.iter_mut().filter(|b| b.name.as_str() == name) {
            b.level -= 1.0;
        }
    }

    /// How long until the bucket `name` holds a whole token again, when it holds none now.
    pub fn empty_for(&self, name: &str) -> Option<std::time::Duration> {
        let b = self
            .buckets
            .iter()
            .find(|b| b.name.as_str() == name)
            .filter(|b| b.available() < 1)?;
        let step = b.config.refill_period_secs / b.config.refill_tokens.max(1);
        Some(std::time::Duration::from_secs(step.max(1).unsigned_abs()))
    }

    /// Every bucket as DICT would report it now, charging nothing.
    pub fn observe(&self) -> Vec<(PolicyName, i64, BucketConfig)> {
        self.buckets
            .iter()
            .map(|b| (b.name.clone(), b.available(), b.config))
            .collect()
    }

    /// Sets the level of the bucket `name` to `fraction` of its capacity (scripted scenarios).
    pub fn set_level(&mut self, name: &str, fraction: f64) {
        for b in self.buckets.iter_mut().filter(|b| b.name.as_str() == name) {
            b.level = fraction * b.config.capacity as f64;
        }
    }

    /// A whole number in `low..high` from the model's generator (latencies, jitter).
    pub fn draw(&mut self, low: u32, high: u32) -> u32 {
        self.rng.random_range(low..high)
    }
}

/// Activity of PIX by time of day, on Brasília time (UTC−3): 0.1 at night, 1.0 in the
/// afternoon peak.
fn daily_factor(t: DateTime<Utc>) -> f64 {
    let hour = (f64::from(t.hour()) + f64::from(t.minute()) / 60.0 + 21.0) % 24.0;
    match hour {
        h if h < 6.0 => 0.1,
        h if h < 12.0 => 0.1 + 0.9 * (h - 6.0) / 6.0,
        h if h < 18.0 => 1.0,
        h => 1.0 - 0.9 * (h - 18.0) / 6.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).expect("in range")
    }

    #[test]
    fn the_same_seed_gives_the_same_traffic() {
        let run = |seed| {
            let mut t = Traffic::new(seed, 30, PspCategory::C);
            (0..100)
                .map(|k| {
                    t.advance(start() + chrono::TimeDelta::minutes(5 * k), 300.0);
                    t.poll().iter().map(|p| p.1).sum::<i64>()
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }

    #[test]
    fn levels_stay_within_bounds_and_the_poller_pays_per_poll() {
        let mut t = Traffic::new(1, 29, PspCategory::A);
        for k in 0..2_000 {
            t.advance(start() + chrono::TimeDelta::minutes(5 * k), 300.0);
            for (name, available, config) in t.poll() {
                assert!(available <= config.capacity, "{name}");
                assert!(available >= -2, "{name}");
            }
        }
        let list = t
            .buckets
            .iter()
            .find(|b| b.name.as_str() == "POLICIES_LIST")
            .expect("present");
        assert_eq!(list.available(), 19);
    }

    #[test]
    fn a_category_move_reconfigures_only_the_anti_scan_buckets() {
        let mut t = Traffic::new(1, 29, PspCategory::C);
        let before: Vec<_> = t.buckets.iter().map(|b| b.config).collect();
        t.set_category(PspCategory::E);
        let changed: Vec<_> = t
            .buckets
            .iter()
            .zip(before)
            .filter(|(b, old)| b.config != *old)
            .map(|(b, _)| b.name.to_string())
            .collect();
        assert_eq!(
            changed,
            [
                "ENTRIES_READ_PARTICIPANT_ANTISCAN",
                "ENTRIES_STATISTICS_READ"
            ]
        );
        assert!(t.buckets.iter().all(|b| b.available() <= b.config.capacity));
    }
}
