//! Chart geometry for the dashboard: a policy's history downsampled server-side to a few
//! hundred steps, and the SVG path data of sparklines and history charts.
//!
//! Invariants: every coordinate written is finite and inside the frame (values beyond the
//! axis are clamped to its edge); steps come out in time order; a step's `min ≤ last ≤ max`;
//! a gap of more than [`GAP_STEPS`] empty steps (polling stopped) breaks the line instead of
//! drawing a slope across it.

use std::fmt::Write as _;

/// Empty steps after which the line is broken.
pub const GAP_STEPS: i64 = 3;

/// One step of a downsampled series.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Step {
    /// Middle of the step, Unix milliseconds.
    pub at_ms: i64,
    /// Lowest value in the step.
    pub min: f64,
    /// Highest value in the step.
    pub max: f64,
    /// Value of the latest sample in the step.
    pub last: f64,
    last_at: i64,
    /// Samples in the step.
    pub count: u32,
}

/// Folds samples, in any order, into `steps` equal steps of `[start_ms, end_ms)`: memory is
/// one entry a step whatever the amount of history.
pub struct Downsampler {
    start_ms: i64,
    end_ms: i64,
    steps: Vec<Option<Step>>,
}

impl Downsampler {
    /// `steps` (at least 1) steps over `[start_ms, end_ms)`.
    pub fn new(start_ms: i64, end_ms: i64, steps: usize) -> Self {
        Self {
            start_ms,
            end_ms: end_ms.max(start_ms + 1),
            steps: vec![None; steps.max(1)],
        }
    }

    /// Width of one step, milliseconds.
    pub fn step_ms(&self) -> f64 {
        (self.end_ms - self.start_ms) as f64 / self.steps.len() as f64
    }

    /// Adds a sample; one outside the range or not finite is ignored.
    pub fn add(&mut self, at_ms: i64, value: f64) {
        if at_ms < self.start_ms || at_ms >= self.end_ms || !value.is_finite() {
            return;
        }
        let n = self.steps.len();
        // In 0..n: `at_ms` is inside the range.
        let i = usize::try_from(
            i128::from(at_ms - self.start_ms) * n as i128 / i128::from(self.end_ms - self.start_ms),
        )
        .unwrap_or(0);
        let mid = self.start_ms + ((i as f64 + 0.5) * self.step_ms()) as i64;
        let Some(slot) = self.steps.get_mut(i.min(n - 1)) else {
            return;
        };
        match slot {
            None => {
                *slot = Some(Step {
                    at_ms: mid,
                    min: value,
                    max: value,
                    last: value,
                    last_at: at_ms,
                    count: 1,
                });
            }
            Some(s) => {
                s.min = s.min.min(value);
                s.max = s.max.max(value);
                if at_ms >= s.last_at {
                    s.last = value;
                    s.last_at = at_ms;
                }
                s.count += 1;
            }
        }
    }

    /// The steps that hold samples, oldest first.
    pub fn steps(&self) -> Vec<Step> {
        self.steps.iter().flatten().copied().collect()
    }
}

/// A plotting area: time on x, percent on y.
#[derive(Clone, Copy, Debug)]
pub struct Frame {
    /// Left edge of the plot, SVG units.
    pub left: f64,
    /// Right edge.
    pub right: f64,
    /// Top edge.
    pub top: f64,
    /// Bottom edge.
    pub bottom: f64,
    /// Time at the left edge, Unix ms.
    pub t0_ms: i64,
    /// Time at the right edge.
    pub t1_ms: i64,
    /// Value at the bottom edge.
    pub y_min: f64,
    /// Value at the top edge.
    pub y_max: f64,
}

impl Frame {
    /// The x of a time, clamped to the frame.
    pub fn x(&self, at_ms: i64) -> f64 {
        let span = (self.t1_ms - self.t0_ms).max(1) as f64;
        let f = ((at_ms - self.t0_ms) as f64 / span).clamp(0.0, 1.0);
        self.left + f * (self.right - self.left)
    }

    /// The y of a value, clamped to the frame.
    pub fn y(&self, value: f64) -> f64 {
        let span = (self.y_max - self.y_min).max(f64::EPSILON);
        let f = ((value - self.y_min) / span).clamp(0.0, 1.0);
        let y = self.bottom - f * (self.bottom - self.top);
        if y.is_finite() { y } else { self.bottom }
    }
}

/// The lowest value shown on a percent axis: 0, or lower in steps of 10 to show a negative
/// balance (a DICT penalty), down to −100.
pub fn axis_floor(lowest: f64) -> f64 {
    if lowest >= 0.0 || !lowest.is_finite() {
        0.0
    } else {
        ((lowest / 10.0).floor() * 10.0).max(-100.0)
    }
}

/// Path data (`M … L …`) through `points` (time ms, value), broken where two neighbours are
/// more than `max_gap_ms` apart.
pub fn line_path(frame: &Frame, points: &[(i64, f64)], max_gap_ms: i64) -> String {
    let mut d = String::with_capacity(points.len() * 14);
    let mut previous: Option<i64> = None;
    for &(at, v) in points {
        let cmd = match previous {
            Some(p) if at - p <= max_gap_ms => 'L',
            _ => 'M',
        };
        if !d.is_empty() {
            d.push(' ');
        }
        let _ = write!(d, "{cmd}{:.1},{:.1}", frame.x(at), frame.y(v));
        previous = Some(at);
    }
    d
}

/// Path data of the band between each step's min and max, one closed shape per unbroken run.
pub fn band_path(frame: &Frame, steps: &[Step], max_gap_ms: i64) -> String {
    let mut d = String::new();
    for run in runs(steps, max_gap_ms) {
        for (i, s) in run.iter().enumerate() {
            let cmd = if i == 0 { 'M' } else { 'L' };
            let _ = write!(d, "{cmd}{:.1},{:.1} ", frame.x(s.at_ms), frame.y(s.max));
        }
        for s in run.iter().rev() {
            let _ = write!(d, "L{:.1},{:.1} ", frame.x(s.at_ms), frame.y(s.min));
        }
        d.push_str("Z ");
    }
    d.truncate(d.trim_end().len());
    d
}

/// A stretch of time drawn as one block (an alert, or alerts merged).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Span<K> {
    /// Left edge, SVG units.
    pub x0: f64,
    /// Right edge.
    pub x1: f64,
    /// What it is (a severity).
    pub key: K,
    /// Start of the first merged stretch, Unix ms.
    pub from_ms: i64,
    /// End of the last merged stretch.
    pub to_ms: i64,
    /// How many stretches it merges.
    pub count: usize,
}

/// Merges spans of the same key that overlap or lie within `min_gap` units of each other, so
/// that a year of alerts draws as a few dozen blocks instead of hundreds of slivers. The input
/// is in order of `x0`; so is the output.
pub fn merge_spans<K: Copy + PartialEq>(spans: &[Span<K>], min_gap: f64) -> Vec<Span<K>> {
    let mut out: Vec<Span<K>> = Vec::new();
    for s in spans {
        let last_same = out.iter_mut().rev().find(|o| o.key == s.key);
        match last_same {
            Some(o) if s.x0 <= o.x1 + min_gap => {
                o.x1 = o.x1.max(s.x1);
                o.from_ms = o.from_ms.min(s.from_ms);
                o.to_ms = o.to_ms.max(s.to_ms);
                o.count += s.count;
            }
            _ => out.push(*s),
        }
    }
    out
}

fn runs(steps: &[Step], max_gap_ms: i64) -> Vec<&[Step]> {
    let mut out = Vec::new();
    let mut start = 0;
    for i in 1..=steps.len() {
        let broken = match (steps.get(i - 1), steps.get(i)) {
            (Some(a), Some(b)) => b.at_ms - a.at_ms > max_gap_ms,
            _ => true,
        };
        if broken {
            if let Some(run) = steps.get(start..i) {
                out.push(run);
            }
            start = i;
        }
    }
    out
}

#[cfg(test)]
#[expect(
    clippy::float_cmp,
    reason = "the values compared are exact by construction"
)]
mod tests {
    use super::*;

    const FRAME: Frame = Frame {
        left: 0.0,
        right: 100.0,
        top: 0.0,
        bottom: 50.0,
        t0_ms: 0,
        t1_ms: 1000,
        y_min: 0.0,
        y_max: 100.0,
    };

    #[test]
    fn downsampling_keeps_each_steps_extremes_and_latest_whatever_the_order() {
        let mut d = Downsampler::new(0, 1000, 10);
        for (at, v) in [
            (105, 50.0),
            (101, 80.0),
            (150, 5.0),
            (199, 60.0),
            (120, 99.0),
        ] {
            d.add(at, v);
        }
        d.add(999, 1.0);
        d.add(1000, 7.0); // outside: the range is half-open
        d.add(-1, 7.0);
        d.add(500, f64::NAN);
        let steps = d.steps();
        assert_eq!(steps.len(), 2);
        let first = steps[0];
        assert_eq!(
            (first.min, first.max, first.last, first.count),
            (5.0, 99.0, 60.0, 5)
        );
        assert_eq!(first.at_ms, 150);
        assert_eq!((steps[1].at_ms, steps[1].last), (950, 1.0));
    }

    #[test]
    fn a_year_of_samples_folds_into_the_requested_steps() {
        let year_ms = 365 * 86_400_000_i64;
        let mut d = Downsampler::new(0, year_ms, 300);
        for i in 0..105_120 {
            d.add(i * 300_000, (i % 100) as f64);
        }
        let steps = d.steps();
        assert_eq!(steps.len(), 300);
        assert!(steps.windows(2).all(|w| w[0].at_ms < w[1].at_ms));
        assert!(steps.iter().all(|s| s.min <= s.last && s.last <= s.max));
        assert_eq!(
            steps.iter().map(|s| u64::from(s.count)).sum::<u64>(),
            105_120
        );
    }

    #[test]
    fn the_line_breaks_across_a_gap_and_stays_inside_the_frame() {
        let d = line_path(
            &FRAME,
            &[(0, 100.0), (100, 50.0), (600, -20.0), (700, 250.0)],
            200,
        );
        assert_eq!(d, "M0.0,0.0 L10.0,25.0 M60.0,50.0 L70.0,0.0");
    }

    #[test]
    fn the_band_closes_one_shape_per_unbroken_run() {
        let step = |at_ms, min, max| Step {
            at_ms,
            min,
            max,
            last: min,
            last_at: at_ms,
            count: 1,
        };
        let steps = [
            step(0, 0.0, 100.0),
            step(100, 50.0, 50.0),
            step(900, 0.0, 0.0),
        ];
        let d = band_path(&FRAME, &steps, 200);
        assert_eq!(d.matches('Z').count(), 2);
        assert!(d.starts_with("M0.0,0.0 L10.0,25.0 L10.0,25.0 L0.0,50.0 Z M90.0,50.0"));
    }

    #[test]
    fn spans_merge_only_with_near_spans_of_their_own_kind() {
        let span = |x0, x1, key| Span {
            x0,
            x1,
            key,
            from_ms: (x0 * 10.0) as i64,
            to_ms: (x1 * 10.0) as i64,
            count: 1,
        };
        let merged = merge_spans(
            &[
                span(0.0, 2.0, 'w'),
                span(1.0, 3.0, 'c'),
                span(2.5, 4.0, 'w'),
                span(9.0, 10.0, 'w'),
            ],
            1.0,
        );
        assert_eq!(merged.len(), 3);
        assert_eq!((merged[0].x0, merged[0].x1, merged[0].count), (0.0, 4.0, 2));
        assert_eq!((merged[0].from_ms, merged[0].to_ms), (0, 40));
        assert_eq!((merged[1].key, merged[1].count), ('c', 1));
        assert_eq!((merged[2].x0, merged[2].count), (9.0, 1));
    }

    #[test]
    fn the_axis_goes_below_zero_only_for_a_negative_balance() {
        assert_eq!(axis_floor(3.0), 0.0);
        assert_eq!(axis_floor(-0.5), -10.0);
        assert_eq!(axis_floor(-35.0), -40.0);
        assert_eq!(axis_floor(-1e9), -100.0);
        assert_eq!(axis_floor(f64::NEG_INFINITY), 0.0);
    }
}
