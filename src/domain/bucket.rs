//! Token-bucket math: the derived metrics of a bucket, computed from a window of its samples.
//!
//! # Formulas
//!
//! For a sample: `a` available tokens, `C` capacity, `r = RefillTokens / RefillPeriodSec` refill
//! rate in tokens per second (never assume a minute), `t` DICT's response time in seconds.
//!
//! - utilization % `= 100 · (C − a) / C` — above 100 while a penalty holds the balance below zero.
//! - remaining %   `= 100 · a / C` `= 100 − utilization` — negative below zero.
//!
//! Tokens consumed between two consecutive samples `i−1` and `i`, with `Δt = tᵢ − tᵢ₋₁ > 0`:
//!
//! ```text
//! consumedᵢ = aᵢ₋₁ + r·Δt − aᵢ
//! ```
//!
//! That holds only while no refill was thrown away at capacity, so each pair is classified:
//!
//! - **reset** — `C`, `RefillTokens` or `RefillPeriodSec` differ between the two samples: DICT
//!   re-configured the bucket (a category move). What happened to the balance at that moment is
//!   unknown, so the window restarts after the change, as a Prometheus counter reset does. This is
//!   what keeps a capacity change from showing as a spike or a negative rate.
//! - **clear** — `C − max(aᵢ₋₁, aᵢ) ≥ RefillTokens`: the bucket had room for a whole refill step
//!   throughout, so no refill can have been capped, whether DICT refills continuously or in steps
//!   (it does not say): `consumedᵢ` is as above.
//! - **near full** — otherwise: refill may have been thrown away at capacity at some unknown
//!   moment, so only the observed drop is certain: `consumedᵢ = max(0, aᵢ₋₁ − aᵢ)`, a lower bound.
//!   (Crediting the full `r·Δt` here would report an idle bucket refilled in steps as consuming
//!   its whole refill rate.)
//!
//! The consumption rate is smoothed over the recent window — the pairs whose later sample lies
//! within [`RateWindow::span`] of the latest sample, and always at least the latest pair (after a
//! gap in polling, that pair spans the gap):
//!
//! ```text
//! c = max(0, Σ consumedᵢ / Σ Δtᵢ)   over the pairs of the window   [tokens/s]
//! ```
//!
//! reported per minute (`60 · c`). Over consecutive clear pairs the sum telescopes to
//! `(a_first − a_last) / T + r`: the exact mean rate over the window, whatever the pattern of
//! consumption inside it. If DICT refills in discrete steps rather than continuously, the error
//! is at most `RefillTokens` per window, hence the smoothing. A bucket sitting full hides any
//! consumption below its refill rate: it reports the drops it shows (0 when it never moves).
//! With no usable pair at all (first sample, or right after a reset) the rate is unknown.
//!
//! With the net rate `n = r − c` (positive while filling):
//!
//! - recovery ETA, seconds until full: `0` if `a ≥ C`; `(C − a) / n` if `n > 0`; never (none)
//!   when draining or level.
//! - exhaustion projection, seconds until empty: `0` if `a ≤ 0`; `a / −n` if `n < 0`; none when
//!   not draining.
//!
//! Both assume the current net rate holds, and are unknown when the rate is. Every number
//! returned is finite; a rate is never negative.

use chrono::TimeDelta;
use serde::{Deserialize, Serialize};

use super::snapshot::Sample;

/// How far back the consumption rate is smoothed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateWindow {
    /// Pairs whose later sample is within this span of the latest sample are used.
    pub span: TimeDelta,
}

impl Default for RateWindow {
    /// 15 minutes: three pairs at the default 5-minute poll, matching the default predictive
    /// horizon.
    fn default() -> Self {
        Self {
            span: TimeDelta::minutes(15),
        }
    }
}

/// The derived metrics of a bucket at its latest sample: the derived columns of the legacy
/// `dict_rate_limit_states` table.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Enrichment {
    /// `100 · (C − a) / C`.
    pub utilization_percent: f64,
    /// `100 · a / C`.
    pub remaining_percent: f64,
    /// Smoothed consumption in tokens per minute; none while unknown.
    pub consumption_rate_per_minute: Option<f64>,
    /// Seconds until full at the current net rate; none when draining or unknown.
    pub recovery_eta_seconds: Option<f64>,
    /// Seconds until empty at the current net rate; none when not draining or unknown.
    pub exhaustion_projection_seconds: Option<f64>,
    /// How the legacy columns were written as text, for rows that came from text (an import):
    /// exported the same way, byte for byte. Dictmon's own rows have none.
    #[serde(skip)]
    pub text_scales: TextScales,
}

/// The decimal places each legacy numeric column of a row was written with —
/// `utilization_percent`, `consumption_rate_per_minute`, `recovery_eta_seconds`,
/// `exhaustion_projection_seconds`, in that order — or none for the shortest text that reads
/// back as the same `f64` (dictmon's own form). A `numeric(7,2)` column writes `12.50`: two.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TextScales(pub [Option<u8>; 4]);

impl TextScales {
    /// The most decimals kept: beyond, a value is written in its shortest form.
    pub const MAX: u8 = 15;

    /// The scale of `text` if it is a plain decimal (`-12.50`, `7`) that formatting `value`
    /// with that many decimals writes back exactly; none otherwise.
    pub fn of(text: &str, value: f64) -> Option<u8> {
        Self::read(text)
            .filter(|&(nearest, _)| nearest.to_bits() == value.to_bits())
            .map(|(_, scale)| scale)
    }

    /// A plain decimal of at most 15 significant digits (`-12.50`, `7`): the `f64` nearest
    /// to it (what parsing it gives) and its scale, which writes it back exactly; none for
    /// any other text. No allocation: this runs for every value of an import.
    pub fn read(text: &str) -> Option<(f64, u8)> {
        let text = text.trim().as_bytes();
        let (negative, digits) = match text.split_first() {
            Some((b'-', rest)) => (true, rest),
            _ => (false, text),
        };
        // One pass: k = the digits as an integer, the integer part's length, the scale.
        let (mut k, mut int_len, mut scale) = (0_u64, 0_usize, None::<u8>);
        for &c in digits {
            match (c, &mut scale) {
                (b'0'..=b'9', None) => int_len += 1,
                (b'0'..=b'9', Some(s)) => *s += 1,
                (b'.', None) => {
                    scale = Some(0);
                    continue;
                }
                _ => return None,
            }
            k = k * 10 + u64::from(c - b'0');
            // At most 15 significant digits: k is exact in an f64, k / 10^scale (one
            // correctly rounded division) is the f64 nearest the text, and that f64 written
            // with `scale` decimals is the text again.
            if int_len + usize::from(scale.unwrap_or(0)) > 15 {
                return None;
            }
        }
        let leading_zero = int_len > 1 && digits.first() == Some(&b'0');
        if int_len == 0 || leading_zero || scale == Some(0) {
            return None;
        }
        let scale = scale.unwrap_or(0);
        let magnitude = k as f64 / 10_f64.powi(i32::from(scale));
        Some((if negative { -magnitude } else { magnitude }, scale))
    }
}

/// Computes the derived metrics of the latest sample in `window` (ordered oldest first).
/// Returns none for an empty window or one whose latest sample has an invalid bucket.
pub fn enrich(window: &[Sample], rate_window: RateWindow) -> Option<Enrichment> {
    enrich_timed(window, |s, _| s.at.timestamp_nanos_opt(), rate_window)
}

/// [`enrich`] for a caller that already knows each sample's time in nanoseconds since the
/// epoch: `time_ns(sample, index)` returns it (none outside the nanosecond range). The same
/// arithmetic, hence the same bits, as [`enrich`] — the store's predictor relies on it.
pub fn enrich_timed(
    window: &[Sample],
    time_ns: impl Fn(&Sample, usize) -> Option<i64>,
    rate_window: RateWindow,
) -> Option<Enrichment> {
    let latest = window.last()?;
    latest.bucket.check().ok()?;
    Some(enrichment_of(
        latest,
        consumption_per_second(window, &time_ns, rate_window),
    ))
}

/// `enrich_timed` of every prefix `samples[..=j]`, with `times_ns[j]` the time of sample `j`:
/// the store's predictor (storage-format.md §4.3), which decodes every row of a frame this way.
///
/// Same bits as calling `enrich_timed` on each prefix, at a fraction of the cost: each pair's
/// consumption and `Δt` are computed once; each row's window (the pairs it adds up, with the
/// same stops) is found by a pointer that only moves forward, since times increase; then each
/// row adds up its pairs in the same order, newest first — four rows at a time, so that four
/// independent chains of additions keep the floating-point unit busy. Times that do not
/// strictly increase take the per-prefix path.
pub fn enrich_prefixes(
    samples: &[Sample],
    times_ns: &[i64],
    rate_window: RateWindow,
    scratch: &mut PrefixScratch,
    mut emit: impl FnMut(Option<Enrichment>),
) {
    if times_ns.len() != samples.len() || !times_ns.is_sorted_by(|a, b| a < b) {
        return enrich_each_prefix(samples, times_ns, rate_window, emit);
    }
    // Pair i is (sample i, sample i + 1): its consumption and Δt, and whether it restarts the
    // window (a reset). A Δt beyond i64 nanoseconds (292 years) takes the per-prefix path.
    let PrefixScratch {
        pairs,
        resets,
        windows,
        sums,
    } = scratch;
    pairs.clear();
    resets.clear();
    for (s, t) in samples.windows(2).zip(times_ns.windows(2)) {
        let ([earlier, later], [t0, t1]) = (s, t) else {
            continue;
        };
        let Some(dt) = t1.checked_sub(*t0).map(seconds_f64) else {
            return enrich_each_prefix(samples, times_ns, rate_window, emit);
        };
        pairs.push((pair_consumption(earlier, later, dt), dt));
        resets.push(earlier.bucket != later.bucket || dt <= 0.0);
    }
    // Row j adds up pairs lo..j: the newest pair unless it is a reset, then older ones while
    // they are within the span of row j's time and no reset comes between.
    let span_ns = rate_window.span.num_nanoseconds().unwrap_or(i64::MAX);
    let beyond_span = |j: usize, i: usize| match (times_ns.get(j), times_ns.get(i + 1)) {
        (Some(latest), Some(later)) => latest.checked_sub(*later).is_none_or(|d| d > span_ns),
        _ => true,
    };
    let (mut oldest_in_span, mut after_reset) = (0, 0);
    windows.clear();
    windows.extend((0..samples.len()).map(|j| {
        let newest = j.checked_sub(1)?;
        if resets.get(newest).copied().unwrap_or(true) {
            after_reset = j;
            return None;
        }
        while oldest_in_span < newest && beyond_span(j, oldest_in_span) {
            oldest_in_span += 1;
        }
        Some(oldest_in_span.max(after_reset))
    }));
    window_sums(pairs, windows, sums);
    for (latest, sum) in samples.iter().zip(sums.iter()) {
        emit(latest.bucket.check().ok().map(|()| {
            let consumption = sum.map(|(consumed, seconds)| rate_of(consumed, seconds));
            enrichment_of(latest, consumption)
        }));
    }
}

/// Reusable buffers of [`enrich_prefixes`], so that decoding frame after frame allocates once.
#[derive(Debug, Default)]
pub struct PrefixScratch {
    pairs: Vec<(f64, f64)>,
    resets: Vec<bool>,
    windows: Vec<Option<usize>>,
    sums: Vec<Option<(f64, f64)>>,
}

/// [`enrich_prefixes`] the reference way: [`enrich_timed`] of each prefix.
fn enrich_each_prefix(
    samples: &[Sample],
    times_ns: &[i64],
    rate_window: RateWindow,
    mut emit: impl FnMut(Option<Enrichment>),
) {
    let time = |_: &Sample, i: usize| times_ns.get(i).copied();
    for end in 1..=samples.len() {
        emit(
            samples
                .get(..end)
                .and_then(|prefix| enrich_timed(prefix, time, rate_window)),
        );
    }
}

/// For each row j whose window starts at pair `lo` (`windows[j]`), the sums of consumption and
/// seconds over pairs `lo..j`, added newest first starting from 0.0 — the order of
/// [`consumption_per_second`], so the same bits. Four rows are summed side by side.
fn window_sums(pairs: &[(f64, f64)], windows: &[Option<usize>], out: &mut Vec<Option<(f64, f64)>>) {
    let range = |j: usize| -> &[(f64, f64)] {
        windows
            .get(j)
            .copied()
            .flatten()
            .and_then(|lo| pairs.get(lo..j))
            .unwrap_or_default()
    };
    out.clear();
    for j in (0..windows.len()).step_by(4) {
        let group = [range(j), range(j + 1), range(j + 2), range(j + 3)];
        let common = group.iter().map(|r| r.len()).min().unwrap_or(0);
        let mut acc = [(0.0_f64, 0.0_f64); 4];
        // Newest first: element `len − 1 − d` of each row's range at step d.
        let [r0, r1, r2, r3] = group.map(|r| r.iter().rev().take(common));
        for (((p0, p1), p2), p3) in r0.zip(r1).zip(r2).zip(r3) {
            for (a, p) in acc.iter_mut().zip([p0, p1, p2, p3]) {
                a.0 += p.0;
                a.1 += p.1;
            }
        }
        for (k, (r, (c, s))) in group.iter().zip(acc).enumerate() {
            let Some(window) = windows.get(j + k) else {
                break;
            };
            let rest = r.get(..r.len() - common).unwrap_or_default();
            let (c, s) = rest
                .iter()
                .rev()
                .fold((c, s), |(c, s), &(pc, dt)| (c + pc, s + dt));
            out.push(window.map(|_| (c, s)));
        }
    }
}

/// The derived metrics of `latest` given the window's consumption in tokens per second.
fn enrichment_of(latest: &Sample, consumption: Option<f64>) -> Enrichment {
    let capacity = latest.bucket.capacity as f64;
    let available = latest.available_tokens as f64;
    let refill = latest.bucket.refill_per_second();
    let net = consumption.map(|c| refill - c);
    let recovery_eta = match net {
        _ if available >= capacity => Some(0.0),
        Some(n) if n > 0.0 => finite((capacity - available) / n),
        _ => None,
    };
    let exhaustion_projection = match net {
        _ if available <= 0.0 => Some(0.0),
        Some(n) if n < 0.0 => finite(available / -n),
        _ => None,
    };
    Enrichment {
        utilization_percent: 100.0 * (capacity - available) / capacity,
        remaining_percent: 100.0 * available / capacity,
        consumption_rate_per_minute: consumption.and_then(|c| finite(c * 60.0)),
        recovery_eta_seconds: recovery_eta,
        exhaustion_projection_seconds: exhaustion_projection,
        text_scales: TextScales::default(),
    }
}

/// The smoothed consumption `c` in tokens per second, per the module formulas.
fn consumption_per_second(
    window: &[Sample],
    time_ns: &impl Fn(&Sample, usize) -> Option<i64>,
    rate_window: RateWindow,
) -> Option<f64> {
    let last = window.len().checked_sub(1)?;
    let latest = window.get(last)?;
    // Differences of whole nanoseconds: exact, and much cheaper than calendar arithmetic.
    // Times outside the nanosecond range (refused by validation) fall back to chrono.
    let span_ns = rate_window.span.num_nanoseconds().unwrap_or(i64::MAX);
    let elapsed_ns = |(from, i): (&Sample, usize), (to, j): (&Sample, usize)| {
        match (time_ns(from, i), time_ns(to, j)) {
            (Some(a), Some(b)) => b.checked_sub(a),
            _ => None,
        }
        .ok_or_else(|| to.at - from.at)
    };
    let latest_ns = time_ns(latest, last);
    let (mut consumed, mut seconds, mut any_pair) = (0.0_f64, 0.0_f64, false);
    for (i, pair) in window.windows(2).enumerate().rev() {
        let [earlier, later] = pair else { continue };
        let (e, l) = ((earlier, i), (later, i + 1));
        let beyond_span = match (time_ns(later, i + 1), latest_ns) {
            (Some(t), Some(latest)) => latest.checked_sub(t).is_none_or(|d| d > span_ns),
            _ => latest.at - later.at > rate_window.span,
        };
        if any_pair && beyond_span {
            break;
        }
        let dt = match elapsed_ns(e, l) {
            Ok(ns) => seconds_f64(ns),
            Err(delta) => delta.as_seconds_f64(),
        };
        if earlier.bucket != later.bucket || dt <= 0.0 {
            break; // reset: the window restarts after it
        }
        any_pair = true;
        consumed += pair_consumption(earlier, later, dt);
        seconds += dt;
    }
    any_pair.then(|| rate_of(consumed, seconds))
}

/// Tokens consumed between two consecutive samples `Δt` seconds apart (a pair that is not a
/// reset): the module formulas' clear and near-full cases.
fn pair_consumption(earlier: &Sample, later: &Sample, dt: f64) -> f64 {
    let (a0, a1) = (earlier.available_tokens, later.available_tokens);
    let room = later.bucket.capacity.saturating_sub(a0.max(a1));
    if room >= later.bucket.refill_tokens {
        // Room for a whole refill step: none of the refill can have been capped.
        let refill = later.bucket.refill_per_second();
        a0 as f64 + refill * dt - a1 as f64
    } else {
        // Near full: refill may have been thrown away at capacity; only the observed drop
        // is certain (a lower bound).
        a0.saturating_sub(a1).max(0) as f64
    }
}

/// The window's consumption rate from its sums: `consumed / seconds`, never NaN or negative.
fn rate_of(consumed: f64, seconds: f64) -> f64 {
    let rate = if seconds > 0.0 {
        consumed / seconds
    } else {
        0.0
    };
    // `rate > 0.0` is false for NaN too: no NaN and no negative rate leave this function.
    if rate > 0.0 && rate.is_finite() {
        rate
    } else {
        0.0
    }
}

/// `TimeDelta::nanoseconds(ns).as_seconds_f64()` without building the `TimeDelta`: the same
/// normalisation (whole seconds rounded down, nanoseconds in `0..1e9`) and the same arithmetic,
/// so the same bits — the store's predictor depends on that.
fn seconds_f64(ns: i64) -> f64 {
    const NANOS: i64 = 1_000_000_000;
    ns.div_euclid(NANOS) as f64 + ns.rem_euclid(NANOS) as f64 / NANOS as f64
}

fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

/// A percentage with one decimal, never "-0.0" (a balance a hair below zero rounds to "0.0";
/// one clearly below zero stays negative, as DICT reported it).
pub fn tenths(x: f64) -> String {
    let text = format!("{x:.1}");
    if text == "-0.0" { "0.0".into() } else { text }
}

/// Seconds (an ETA or a projection) in human units; none is "never".
pub fn human(secs: Option<f64>) -> String {
    match secs {
        None => "never".into(),
        Some(s) if s < 1.0 => "now".into(),
        Some(s) if s < 120.0 => format!("{s:.0}s"),
        Some(s) if s < 7_200.0 => format!("{:.0}m", s / 60.0),
        Some(s) if s < 172_800.0 => format!("{:.1}h", s / 3_600.0),
        // A net rate near zero projects absurd times; past a year is "never" in practice.
        Some(s) if s < 31_536_000.0 => format!("{:.1}d", s / 86_400.0),
        Some(_) => "> 1y".into(),
    }
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};

    use super::*;
    use crate::domain::{BucketConfig, PspCategory};

    const LIST: BucketConfig = BucketConfig {
        capacity: 20,
        refill_tokens: 6,
        refill_period_secs: 60,
    };

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).expect("in range")
    }

    fn s(secs: i64, available: i64, bucket: BucketConfig) -> Sample {
        Sample {
            at: at(secs),
            available_tokens: available,
            bucket,
            category: PspCategory::A,
        }
    }

    fn rate(window: &[Sample]) -> Option<f64> {
        enrich(window, RateWindow::default()).and_then(|e| e.consumption_rate_per_minute)
    }

    proptest::proptest! {
        /// The store's predictor relies on this being bit-identical to chrono's conversion.
        #[test]
        fn seconds_f64_matches_chrono_bit_for_bit(ns in proptest::num::i64::ANY) {
            proptest::prop_assert_eq!(
                seconds_f64(ns).to_bits(),
                TimeDelta::nanoseconds(ns).as_seconds_f64().to_bits()
            );
        }

        /// A plain decimal read by hand is the `f64` that parsing it gives, and its scale
        /// writes it back.
        #[test]
        fn text_scales_read_is_parsing(
            int in 0_u64..10_000_000,
            frac in proptest::option::of("[0-9]{0,8}"),
            negative in proptest::bool::ANY,
        ) {
            let text = format!(
                "{}{int}{}",
                if negative { "-" } else { "" },
                frac.as_ref().map(|f| format!(".{f}")).unwrap_or_default()
            );
            let parsed: f64 = text.parse().expect("a number");
            let read = TextScales::read(&text);
            if text.ends_with('.') {
                proptest::prop_assert_eq!(read, None);
            } else {
                let (x, scale) = read.expect("plain");
                proptest::prop_assert_eq!(x.to_bits(), parsed.to_bits());
                proptest::prop_assert_eq!(format!("{x:.*}", usize::from(scale)), text);
            }
        }

        /// The one-pass predictor gives every row the bits of the per-prefix computation:
        /// random drains and refills, jittered times (now and then repeated or out of order), bucket
        /// changes in mid-series, invalid buckets and windows from a second to an hour.
        #[test]
        fn enrich_prefixes_equals_enrich_timed_of_each_prefix(
            rows in proptest::collection::vec(
                (1_i64..20_000_000_000, -50_i64..300, 0_usize..4),
                0..120,
            ),
            span_s in 1_i64..3_600,
            out_of_order in proptest::option::weighted(0.1, (0_usize..120, -3_000_000_000_i64..=0)),
        ) {
            let mut rows = rows;
            if let Some((at, step)) = out_of_order
                && let Some(row) = rows.get_mut(at)
            {
                row.0 = step;
            }
            let buckets = [
                LIST,
                BucketConfig { capacity: 200, refill_tokens: 1, refill_period_secs: 1 },
                BucketConfig { capacity: 50_000, refill_tokens: 25_000, refill_period_secs: 60 },
                BucketConfig { capacity: 0, refill_tokens: 6, refill_period_secs: 60 },
            ];
            let mut t = 1_800_000_000_000_000_000_i64;
            let (samples, times): (Vec<Sample>, Vec<i64>) = rows
                .iter()
                .map(|&(step, available, b)| {
                    t += step;
                    let sample = Sample {
                        at: DateTime::from_timestamp_nanos(t),
                        available_tokens: available,
                        bucket: buckets[b % buckets.len()],
                        category: PspCategory::A,
                    };
                    (sample, t)
                })
                .unzip();
            let window = RateWindow { span: TimeDelta::seconds(span_s) };
            let bits = |e: Option<Enrichment>| e.map(|e| {
                [
                    e.utilization_percent.to_bits(),
                    e.remaining_percent.to_bits(),
                    e.consumption_rate_per_minute.map_or(1, f64::to_bits),
                    e.recovery_eta_seconds.map_or(1, f64::to_bits),
                    e.exhaustion_projection_seconds.map_or(1, f64::to_bits),
                ]
            });
            let mut one_pass = Vec::new();
            enrich_prefixes(&samples, &times, window, &mut PrefixScratch::default(), |e| {
                one_pass.push(bits(e));
            });
            let time = |_: &Sample, i: usize| times.get(i).copied();
            let per_prefix: Vec<_> = (1..=samples.len())
                .map(|end| bits(enrich_timed(&samples[..end], time, window)))
                .collect();
            proptest::prop_assert_eq!(one_pass, per_prefix);
        }
    }

    #[test]
    fn human_units_stop_at_a_year() {
        assert_eq!(human(None), "never");
        assert_eq!(human(Some(0.2)), "now");
        assert_eq!(human(Some(95.0)), "95s");
        assert_eq!(human(Some(600.0)), "10m");
        assert_eq!(human(Some(9_000.0)), "2.5h");
        assert_eq!(human(Some(864_000.0)), "10.0d");
        assert_eq!(human(Some(8.3e17)), "> 1y");
    }

    #[test]
    fn utilization_and_remaining_of_a_single_sample() {
        let e = enrich(&[s(0, 5, LIST)], RateWindow::default()).expect("valid");
        assert!((e.utilization_percent - 75.0).abs() < 1e-9);
        assert!((e.remaining_percent - 25.0).abs() < 1e-9);
        assert_eq!(e.consumption_rate_per_minute, None);
        assert_eq!(e.recovery_eta_seconds, None);
        assert_eq!(e.exhaustion_projection_seconds, None);
    }

    #[test]
    fn rate_accounts_for_refill_between_samples() {
        // 6 tokens/min refill; the balance fell by 4 in one minute, so 10 were consumed.
        let big = BucketConfig {
            capacity: 200,
            ..LIST
        };
        let w = [s(0, 15, big), s(60, 11, big)];
        let e = enrich(&w, RateWindow::default()).expect("valid");
        assert!((e.consumption_rate_per_minute.expect("known") - 10.0).abs() < 1e-9);
        // Draining at 4 tokens/min from 11: empty in 165 s; never full.
        assert!((e.exhaustion_projection_seconds.expect("draining") - 165.0).abs() < 1e-9);
        assert_eq!(e.recovery_eta_seconds, None);
    }

    #[test]
    fn recovery_eta_uses_the_net_rate_and_is_zero_when_full() {
        // Consumed 3 in a minute with a refill of 6: filling at 3/min from 12, full in 160 s.
        let w = [s(0, 9, LIST), s(60, 12, LIST)];
        let e = enrich(&w, RateWindow::default()).expect("valid");
        assert!((e.recovery_eta_seconds.expect("filling") - 160.0).abs() < 1e-9);
        // (Room 8 ≥ one refill step of 6: refill is credited.)
        assert_eq!(e.exhaustion_projection_seconds, None);
        let full = enrich(&[s(0, 9, LIST), s(60, 20, LIST)], RateWindow::default());
        assert_eq!(full.and_then(|e| e.recovery_eta_seconds), Some(0.0));
    }

    #[test]
    fn near_full_pairs_count_only_their_drops() {
        // 9 → 20 in 5 minutes: up to 21 tokens of refill were capped; nothing is known to have
        // been consumed, and 0 is reported rather than a made-up figure.
        assert_eq!(rate(&[s(0, 9, LIST), s(300, 20, LIST)]), Some(0.0));
        // 20 → 14 with no room for a refill step (6): 6 tokens certainly consumed; with the
        // flat minute before, 6 tokens in 2 minutes.
        let w = [s(0, 20, LIST), s(60, 20, LIST), s(120, 14, LIST)];
        assert!((rate(&w).expect("known") - 3.0).abs() < 1e-9);
    }

    #[test]
    fn an_idle_bucket_refilled_in_steps_reports_its_drops_not_its_refill() {
        // ENTRIES_WRITE-like: 1,200 per 60 s in one step, 1 token used per 10 s, polled every
        // 10 s: the level saws between 36,000 and 35,995. Crediting r·Δt would claim 1,200/min.
        let b = BucketConfig {
            capacity: 36_000,
            refill_tokens: 1_200,
            refill_period_secs: 60,
        };
        let w: Vec<Sample> = (0..12).map(|k| s(10 * k, 36_000 - (k % 6), b)).collect();
        let r = rate(&w).expect("known");
        assert!(r > 0.0 && r <= 6.0, "{r} tokens/min");
    }

    #[test]
    fn capacity_change_restarts_the_window_without_a_spike() {
        // Category A → E: capacity 50,000 → 5,000; the balance is clamped by DICT.
        let a = BucketConfig {
            capacity: 50_000,
            refill_tokens: 25_000,
            refill_period_secs: 60,
        };
        let e = BucketConfig {
            capacity: 5_000,
            refill_tokens: 2_500,
            refill_period_secs: 60,
        };
        assert_eq!(rate(&[s(0, 40_000, a), s(300, 5_000, e)]), None);
        // After the change, only pairs inside the new configuration count.
        let w = [
            s(0, 40_000, a),
            s(300, 2_000, e),
            s(360, 1_500, e), // 2,500 refilled, 500 net loss: 3,000 consumed
        ];
        assert!((rate(&w).expect("known") - 3_000.0).abs() < 1e-9);
    }

    #[test]
    fn window_keeps_at_least_the_latest_pair_across_a_gap() {
        let big = BucketConfig {
            capacity: 100,
            ..LIST
        };
        let w = [s(0, 20, big), s(60, 18, big), s(7_260, 10, big)];
        // Only the 2-hour pair: 18 + 720 − 10 = 728 tokens in 120 min.
        let r = rate(&w).expect("known");
        assert!((r - 728.0 / 120.0).abs() < 1e-9, "{r}");
    }

    #[test]
    fn a_negative_balance_is_already_exhausted() {
        let w = [s(0, 3, LIST), s(60, -2, LIST)];
        let e = enrich(&w, RateWindow::default()).expect("valid");
        assert_eq!(e.exhaustion_projection_seconds, Some(0.0));
        assert!(e.remaining_percent < 0.0 && e.utilization_percent > 100.0);
    }

    #[test]
    fn an_invalid_latest_bucket_yields_nothing() {
        let bad = BucketConfig {
            capacity: 0,
            ..LIST
        };
        assert_eq!(enrich(&[s(0, 0, bad)], RateWindow::default()), None);
        assert_eq!(enrich(&[], RateWindow::default()), None);
    }

    #[test]
    fn tenths_never_print_a_negative_zero() {
        assert_eq!(tenths(-0.04), "0.0");
        assert_eq!(tenths(-0.0), "0.0");
        assert_eq!(tenths(-0.06), "-0.1");
        assert_eq!(tenths(12.345), "12.3");
    }
}
