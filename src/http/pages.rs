//! The dashboard's HTML, rendered on the server (maud escapes every value): the overview of
//! every policy at `/` and a policy's history page at `/policy/NAME`. The stylesheet and
//! script are embedded in the binary and served from `/assets/`, so the pages work offline
//! and under a strict Content-Security-Policy (no inline script or style).
//!
//! Invariants: colour is never the only carrier of meaning — every severity is also written
//! out (badge text, `data-severity`, the bar's and chart's text alternatives); all times are
//! UTC; the pages only read.

use chrono::{DateTime, TimeDelta, Utc};
use maud::{DOCTYPE, Markup, html};

use super::chart::{self, Frame, GAP_STEPS};
use super::history::{History, Range};
use crate::domain::{Alert, PolicyName, Sample, Severity, Thresholds, human};
use crate::telemetry::PolicyView;

/// The stylesheet, served at [`CSS_PATH`].
pub const CSS: &str = include_str!("assets/dashboard.css");
/// The script (refresh in place, relative times), served at [`JS_PATH`].
pub const JS: &str = include_str!("assets/dashboard.js");
/// Where the stylesheet is served.
pub const CSS_PATH: &str = "/assets/dashboard.css";
/// Where the script is served.
pub const JS_PATH: &str = "/assets/dashboard.js";

/// The header's view of the appliance's health.
pub struct Health<'a> {
    /// What is polled.
    pub source: &'a str,
    /// The poll interval.
    pub interval: std::time::Duration,
    /// The last successful poll.
    pub last_success: Option<DateTime<Utc>>,
    /// Whether the source answered within two intervals.
    pub source_fresh: bool,
    /// Whether the last store write succeeded.
    pub store_ok: bool,
}

/// Points of a sparkline at most.
const SPARK_STEPS: usize = 100;

/// Rows of the policy page's alert table.
const ALERT_ROWS: usize = 50;

/// Which facts a card or page lists.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Facts {
    /// A card: the poll time is in the header.
    Card,
    /// The policy page: also the sample's time.
    Page,
}

/// A policy card's inputs.
pub struct Card<'a> {
    /// Latest state.
    pub view: &'a PolicyView,
    /// The thresholds that apply to it.
    pub thresholds: Thresholds,
    /// Samples of the last 24 h from the ring, oldest first.
    pub recent: &'a [Sample],
}

fn severity_key(s: Option<Severity>) -> &'static str {
    match s {
        Some(Severity::Critical) => "critical",
        Some(Severity::Warning) => "warning",
        Some(Severity::Info) => "info",
        None => "ok",
    }
}

fn severity_text(s: Option<Severity>) -> &'static str {
    s.map_or("OK", Severity::as_str)
}

fn utc(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// A time shown absolute; the script adds how long ago.
fn when(t: DateTime<Utc>) -> Markup {
    html! {
        time datetime=(t.to_rfc3339()) data-at=(t.timestamp_millis()) { (utc(t)) }
    }
}

fn percent(x: f64) -> String {
    format!("{} %", crate::domain::tenths(x))
}

fn page(title: &str, refresh_seconds: Option<u64>, body: &Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content="light dark";
                title { (title) }
                link rel="stylesheet" href=(CSS_PATH);
                script src=(JS_PATH) defer {}
                @if let Some(s) = refresh_seconds {
                    noscript { meta http-equiv="refresh" content=(s); }
                }
            }
            body data-refresh-seconds=[refresh_seconds] {
                (body)
                footer {
                    p {
                        "dictmon " (env!("CARGO_PKG_VERSION")) " · "
                        a href="/metrics" { "/metrics" } " · "
                        a href="/api/v1/policies" { "/api/v1/policies" } " · "
                        a href="/api/v1/alerts?open=true" { "/api/v1/alerts?open=true" } " · "
                        a href="/readyz" { "/readyz" }
                    }
                    @if let Some(s) = refresh_seconds {
                        p.muted { "Refreshes itself every " (s) " s." }
                    }
                }
            }
        }
    }
}

fn health_header(h: &Health<'_>, now: DateTime<Utc>) -> Markup {
    let interval = TimeDelta::from_std(h.interval).unwrap_or(TimeDelta::MAX);
    html! {
        header.top {
            h1 { a href="/" { "dictmon" } }
            ul.health aria-label="Appliance health" {
                li { "Source: " (h.source) ", every " (human(Some(interval.as_seconds_f64()))) }
                li data-state=(if h.source_fresh { "ok" } else { "bad" }) {
                    @if h.source_fresh { "Polls: fresh" } @else { "Polls: STALE — no successful poll within two intervals" }
                }
                li {
                    "Last poll: "
                    @match h.last_success {
                        Some(t) => (when(t)),
                        None => "none yet",
                    }
                }
                li data-state=(if h.store_ok { "ok" } else { "bad" }) {
                    @if h.store_ok { "Store: writable" } @else { "Store: NOT WRITABLE — see the log" }
                }
                li #connection role="status" {}
            }
            p.muted { "Page rendered " (when(now)) }
        }
    }
}

/// The open alerts, each with the bucket's remaining % now (`current`, none for a policy no
/// longer polled) beside the one at opening.
/// DICT's category changes of the last day: news an operator must not miss between polls.
fn notice_list(notices: &[Alert]) -> Markup {
    html! {
        @if !notices.is_empty() {
            section #notices aria-labelledby="notices-title" {
                h2 #notices-title { "Category changes (last 24 h)" }
                ul.alerts {
                    @for a in notices {
                        li data-severity=(severity_key(Some(a.severity))) {
                            span.badge { (a.severity.as_str()) }
                            " " (when(a.opened_at)) ": " (a.message)
                        }
                    }
                }
            }
        }
    }
}

fn alert_list(alerts: &[Alert], current: &dyn Fn(&PolicyName) -> Option<f64>) -> Markup {
    html! {
        section #alerts aria-labelledby="alerts-title" {
            h2 #alerts-title { "Open alerts (" (alerts.len()) ")" }
            @if alerts.is_empty() {
                p.muted { "No open alert: every bucket is above its thresholds." }
            } @else {
                ul.alerts {
                    @for a in alerts {
                        li data-severity=(severity_key(Some(a.severity))) {
                            span.badge { (a.severity.as_str()) }
                            " "
                            @if current(&a.policy).is_some() {
                                a href={ "/policy/" (a.policy) } { strong { (a.policy) } }
                            } @else {
                                strong { (a.policy) }
                            }
                            " since " (when(a.opened_at)) ": " (a.message)
                            br;
                            span.values {
                                @if let Some(now) = current(&a.policy) {
                                    "Now " strong { (percent(now)) } " remaining; "
                                }
                                (percent(100.0 - a.utilization_percent)) " when it opened ("
                                (a.available_tokens) "/" (a.capacity) " tokens)."
                            }
                        }
                    }
                }
            }
        }
    }
}

/// A policy name that a narrow card may wrap after each `_` (and only there).
fn breakable(name: &str) -> Markup {
    let mut parts = name.split('_').peekable();
    html! {
        @while let Some(part) = parts.next() {
            (part)
            @if parts.peek().is_some() { "_" wbr; }
        }
    }
}

/// A refill in words: "6 per minute", "40 per day", "5 every 10 minutes".
fn refill(tokens: i64, period_secs: i64) -> String {
    let unit = |n: i64, one: &str| {
        if n == 1 {
            format!("{tokens} per {one}")
        } else {
            format!("{tokens} every {n} {one}s")
        }
    };
    match period_secs {
        p if p > 0 && p % 86_400 == 0 => unit(p / 86_400, "day"),
        p if p > 0 && p % 3_600 == 0 => unit(p / 3_600, "hour"),
        p if p > 0 && p % 60 == 0 => unit(p / 60, "minute"),
        p => unit(p, "second"),
    }
}

fn facts(view: &PolicyView, which: Facts) -> Markup {
    let r = &view.record;
    let e = &r.enrichment;
    // One wording everywhere (`status`, `query`): a full bucket is full "now".
    let recovery = human(e.recovery_eta_seconds);
    html! {
        dl.facts {
            div { dt { "Available" } dd { (r.sample.available_tokens) " / " (r.sample.bucket.capacity) " tokens" } }
            div { dt { "Refill" } dd { (refill(r.sample.bucket.refill_tokens, r.sample.bucket.refill_period_secs)) } }
            div { dt { "Consumption" } dd {
                @match e.consumption_rate_per_minute {
                    Some(x) => { (format!("{x:.1}")) " tokens/min" },
                    None => "unknown yet",
                }
            } }
            div { dt { "Full in" } dd { (recovery) } }
            div { dt { "Empty in" } dd { (human(e.exhaustion_projection_seconds)) } }
            div { dt { "Category" } dd { (r.sample.category) } }
            @if which == Facts::Page {
                div { dt { "As of" } dd { (when(r.sample.at)) } }
            }
        }
    }
}

/// The remaining-% bar: the fill, the two thresholds as ticks, and its text alternative.
fn bar(remaining: f64, severity: Option<Severity>, th: &Thresholds) -> Markup {
    let fill = remaining.clamp(0.0, 100.0);
    html! {
        svg.bar viewBox="0 0 100 6" preserveAspectRatio="none" role="img"
            aria-label=(format!("{} remaining, {}", percent(remaining), severity_text(severity))) {
            rect.track width="100" height="6" {}
            rect.fill width=(format!("{fill:.2}")) height="6" {}
            rect.tick x=(format!("{:.2}", th.warning_percent)) width="0.4" height="6" {}
            rect.tick x=(format!("{:.2}", th.critical_percent)) width="0.4" height="6" {}
        }
    }
}

fn remaining_of(s: &Sample) -> f64 {
    if s.bucket.capacity > 0 {
        100.0 * s.available_tokens as f64 / s.bucket.capacity as f64
    } else {
        0.0
    }
}

fn sparkline(
    recent: &[Sample],
    th: &Thresholds,
    poll: std::time::Duration,
    now: DateTime<Utc>,
) -> Markup {
    let points: Vec<(i64, f64)> = recent
        .iter()
        .map(|s| (s.at.timestamp_millis(), remaining_of(s)))
        .collect();
    // A 200-unit-wide line needs no more than a point every two units: fold a full ring (288
    // samples) into steps, keeping each step's lowest value.
    let (points, step_ms) = match (points.first(), points.last()) {
        (Some(&(first, _)), Some(&(last, _))) if points.len() > SPARK_STEPS => {
            let mut fold = chart::Downsampler::new(first, last + 1, SPARK_STEPS);
            for &(at, v) in &points {
                fold.add(at, v);
            }
            let steps = fold.steps().iter().map(|s| (s.at_ms, s.min)).collect();
            (steps, fold.step_ms())
        }
        _ => (points, 0.0),
    };
    let lowest = points.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let start = points
        .first()
        .map_or(now.timestamp_millis(), |p| p.0)
        .max((now - TimeDelta::days(1)).timestamp_millis());
    let frame = Frame {
        left: 0.0,
        right: 200.0,
        top: 2.0,
        bottom: 38.0,
        t0_ms: start,
        t1_ms: now.timestamp_millis().max(start + 1),
        y_min: chart::axis_floor(lowest),
        y_max: 100.0,
    };
    let gap = max_gap_ms(step_ms, poll);
    let label = if points.is_empty() {
        "No samples in the last 24 h".to_owned()
    } else {
        format!(
            "Remaining over the last {}: lowest {}, latest {}",
            human(Some((frame.t1_ms - frame.t0_ms) as f64 / 1000.0)),
            percent(lowest),
            percent(points.last().map_or(0.0, |p| p.1))
        )
    };
    let span = human(Some((frame.t1_ms - frame.t0_ms) as f64 / 1000.0));
    html! {
        svg.spark viewBox="0 0 200 40" preserveAspectRatio="none" role="img" aria-label=(label) data-points=(points.len()) {
            line.warn x1="0" x2="200" y1=(format!("{:.1}", frame.y(th.warning_percent))) y2=(format!("{:.1}", frame.y(th.warning_percent))) {}
            line.crit x1="0" x2="200" y1=(format!("{:.1}", frame.y(th.critical_percent))) y2=(format!("{:.1}", frame.y(th.critical_percent))) {}
            path.line d=(chart::line_path(&frame, &points, gap)) {}
        }
        p.spark-legend.muted {
            "Last " (span) " · "
            span.warn { "- - WARNING " (percent(th.warning_percent)) }
            " · "
            span.crit { "- - CRITICAL " (percent(th.critical_percent)) }
        }
    }
}

fn card(c: &Card<'_>, poll: std::time::Duration, now: DateTime<Utc>) -> Markup {
    let r = &c.view.record;
    let name = r.policy.as_str();
    let sev = c.view.severity;
    html! {
        article.card id={ "p-" (name) } data-policy=(name) data-severity=(severity_key(sev)) {
            header {
                h3 { a href={ "/policy/" (name) } { (breakable(name)) } }
                span.badge { (severity_text(sev)) }
            }
            p.remaining { strong { (percent(r.enrichment.remaining_percent)) } " remaining" }
            (bar(r.enrichment.remaining_percent, sev, &c.thresholds))
            (sparkline(c.recent, &c.thresholds, poll, now))
            (facts(c.view, Facts::Card))
        }
    }
}

/// How often the pages refresh: the poll interval, between 5 s and 1 min.
pub fn refresh_seconds(interval: std::time::Duration) -> u64 {
    interval.as_secs().clamp(5, 60)
}

/// The overview: health, open alerts (CRITICAL first), then one card per policy — those with
/// an open alert first, the rest by name.
pub fn overview(
    health: &Health<'_>,
    open_alerts: &[Alert],
    notices: &[Alert],
    cards: &mut [Card<'_>],
    now: DateTime<Utc>,
) -> String {
    cards.sort_by(|a, b| {
        let rank = |c: &Card<'_>| match c.view.severity {
            Some(Severity::Critical) => 0,
            Some(Severity::Warning) => 1,
            Some(Severity::Info) | None => 2,
        };
        (rank(a), a.view.record.policy.as_str()).cmp(&(rank(b), b.view.record.policy.as_str()))
    });
    let critical = open_alerts
        .iter()
        .filter(|a| a.severity == Severity::Critical)
        .count();
    let title = match (open_alerts.len(), critical) {
        (0, _) => format!("dictmon — {} policies, all OK", cards.len()),
        (n, 0) => format!("dictmon — {n} open alert(s)"),
        (n, c) => format!("dictmon — {c} CRITICAL, {n} open alert(s)"),
    };
    let current = |p: &PolicyName| {
        cards
            .iter()
            .find(|c| &c.view.record.policy == p)
            .map(|c| c.view.record.enrichment.remaining_percent)
    };
    let body = html! {
        div #live {
            (health_header(health, now))
            main {
                (notice_list(notices))
                (alert_list(open_alerts, &current))
                section #policies aria-labelledby="policies-title" {
                    h2 #policies-title { "Policies (" (cards.len()) ")" }
                    @if cards.is_empty() {
                        p.muted { "No policy polled yet: the first poll cycle has not finished." }
                    }
                    div.cards {
                        @for c in cards.iter() { (card(c, health.interval, now)) }
                    }
                }
            }
        }
    };
    page(&title, Some(refresh_seconds(health.interval)), &body).into_string()
}

/// Ticks of the time axis: five evenly spaced labels, formatted for the range.
fn time_ticks(h: &History) -> Vec<(i64, String)> {
    let (t0, t1) = (h.since.timestamp_millis(), h.until.timestamp_millis());
    let span = t1 - t0;
    let format = if span < 600_000 {
        "%d %b %H:%M:%S"
    } else if span < 7 * 86_400_000 {
        // Ticks less than two days apart: the same date twice would say nothing.
        "%d %b %H:%M"
    } else if span < 60 * 86_400_000 {
        "%d %b"
    } else {
        "%b %Y"
    };
    (0..5)
        .filter_map(|i| {
            let at = t0 + (t1 - t0) * i / 4;
            let text = DateTime::from_timestamp_millis(at)?
                .format(format)
                .to_string();
            // The last tick says the zone of them all.
            Some((at, if i == 4 { format!("{text} UTC") } else { text }))
        })
        .collect()
}

/// The alerts of the range as blocks in the lane above the plot, merged where closer than two
/// units.
fn alert_spans(h: &History, frame: &Frame) -> Vec<chart::Span<Severity>> {
    let spans: Vec<_> = h
        .alerts
        .iter()
        .map(|a| {
            let (from, to) = (a.opened_at, a.resolved_at.unwrap_or(h.until));
            chart::Span {
                x0: frame.x(from.timestamp_millis()),
                x1: frame.x(to.timestamp_millis()),
                key: a.severity,
                from_ms: from.timestamp_millis(),
                to_ms: to.timestamp_millis(),
                count: 1,
            }
        })
        .collect();
    chart::merge_spans(&spans, 2.0)
}

fn span_title(s: &chart::Span<Severity>) -> String {
    let t = |ms| DateTime::from_timestamp_millis(ms).map_or_else(String::new, utc);
    if s.count == 1 {
        format!("{} alert from {} to {}", s.key, t(s.from_ms), t(s.to_ms))
    } else {
        format!(
            "{} {} alerts between {} and {}",
            s.count,
            s.key,
            t(s.from_ms),
            t(s.to_ms)
        )
    }
}

/// The widest gap still drawn as one line: a few chart steps or a few poll intervals, whichever
/// is wider (a dense chart of sparse polls must not fall apart into dots).
fn max_gap_ms(step_ms: f64, poll: std::time::Duration) -> i64 {
    let polls = i64::try_from(poll.as_millis()).unwrap_or(i64::MAX / 4);
    ((step_ms * (GAP_STEPS as f64 + 1.0)) as i64).max(polls.saturating_mul(GAP_STEPS))
}

fn history_chart(h: &History, th: &Thresholds, poll: std::time::Duration) -> Markup {
    let lowest = h.steps.iter().map(|s| s.min).fold(f64::INFINITY, f64::min);
    let frame = Frame {
        left: 44.0,
        right: 790.0,
        top: 16.0,
        bottom: 270.0,
        t0_ms: h.since.timestamp_millis(),
        t1_ms: h.until.timestamp_millis(),
        y_min: chart::axis_floor(lowest),
        y_max: 100.0,
    };
    let gap = max_gap_ms(h.step_ms, poll);
    let line: Vec<(i64, f64)> = h.steps.iter().map(|s| (s.at_ms, s.min)).collect();
    let y_ticks: Vec<f64> = {
        let mut v = vec![100.0, 75.0, 50.0, 25.0, 0.0];
        if frame.y_min < 0.0 {
            v.push(frame.y_min);
        }
        v
    };
    let lowest_step = h
        .steps
        .iter()
        .min_by(|a, b| a.min.total_cmp(&b.min))
        .and_then(|s| DateTime::from_timestamp_millis(s.at_ms).map(|t| (s.min, t)));
    let label = match lowest_step {
        Some((v, t)) => format!(
            "Remaining % of the bucket over the last {}: lowest {} around {}, latest {}",
            h.range.label(),
            percent(v),
            utc(t),
            percent(h.steps.last().map_or(0.0, |s| s.last))
        ),
        None => format!("No samples in the last {}", h.range.label()),
    };
    html! {
        figure.chart {
            svg.history viewBox="0 0 800 300" role="img" aria-labelledby="chart-title chart-desc"
                data-points=(line.len()) {
                title #chart-title { "Remaining % over the last " (h.range.label()) }
                desc #chart-desc { (label) }
                @for s in &alert_spans(h, &frame) {
                    rect class={ "span " (severity_key(Some(s.key))) }
                        x=(format!("{:.1}", s.x0)) y="2" width=(format!("{:.1}", (s.x1 - s.x0).max(2.0))) height="8" {
                        title { (span_title(s)) }
                    }
                }
                @for v in &y_ticks {
                    line.grid x1=(frame.left) x2=(frame.right) y1=(format!("{:.1}", frame.y(*v))) y2=(format!("{:.1}", frame.y(*v))) {}
                    text.axis x=(frame.left - 6.0) y=(format!("{:.1}", frame.y(*v) + 4.0)) text-anchor="end" { (format!("{v:.0}%")) }
                }
                @for (i, (at, text)) in time_ticks(h).into_iter().enumerate() {
                    text.axis x=(format!("{:.1}", frame.x(at))) y="290"
                        text-anchor=(match i { 0 => "start", 4 => "end", _ => "middle" }) { (text) }
                }
                line.warn x1=(frame.left) x2=(frame.right) y1=(format!("{:.1}", frame.y(th.warning_percent))) y2=(format!("{:.1}", frame.y(th.warning_percent))) {}
                text.label.warn x=(frame.right) y=(format!("{:.1}", frame.y(th.warning_percent) - 3.0)) text-anchor="end" { "WARNING " (percent(th.warning_percent)) }
                line.crit x1=(frame.left) x2=(frame.right) y1=(format!("{:.1}", frame.y(th.critical_percent))) y2=(format!("{:.1}", frame.y(th.critical_percent))) {}
                text.label.crit x=(frame.right) y=(format!("{:.1}", frame.y(th.critical_percent) + 11.0)) text-anchor="end" { "CRITICAL " (percent(th.critical_percent)) }
                path.band d=(chart::band_path(&frame, &h.steps, gap)) {}
                path.line d=(chart::line_path(&frame, &line, gap)) {}
            }
            figcaption.muted {
                "Blocks above the plot: alerts — "
                span.crit { "■ CRITICAL" } " · " span.warn { "■ WARNING" }
                " (hover for times). "
                @if h.since > h.until - h.range.span() {
                    "Since the first sample (" (utc(h.since)) "). "
                }
                (h.rows) " samples, drawn as the lowest remaining % of each "
                (if h.step_ms < 1000.0 { format!("{:.0} ms", h.step_ms) } else { human(Some(h.step_ms / 1000.0)) }) " step (the band spans lowest to highest)."
            }
        }
    }
}

/// A policy's page: its latest state, the history chart over `history.range`, the alerts in
/// that range, and the CSV of the range.
pub fn policy(
    health: &Health<'_>,
    name: &PolicyName,
    view: Option<&PolicyView>,
    history: &History,
    th: &Thresholds,
    now: DateTime<Utc>,
) -> String {
    let sev = view.and_then(|v| v.severity);
    let base = format!("/policy/{name}");
    let body = html! {
        div #live {
            (health_header(health, now))
            main {
                p { a href="/" { "← All policies" } }
                section.policy data-policy=(name) data-severity=(severity_key(sev)) {
                    header {
                        h2 { (name) }
                        span.badge { (severity_text(sev)) }
                    }
                    @if let Some(v) = view {
                        p.remaining { strong { (percent(v.record.enrichment.remaining_percent)) } " remaining" }
                        (bar(v.record.enrichment.remaining_percent, sev, th))
                        (facts(v, Facts::Page))
                    } @else {
                        p.muted { "Not in the current poll: the history below is what the store holds." }
                    }
                }
                nav.ranges aria-label="Range" {
                    @for r in Range::ALL {
                        a href={ (base) "?range=" (r.key()) } aria-current=[(r == history.range).then_some("page")] { (r.label()) }
                    }
                    a.download href={ (base) "/states.csv?range=" (history.range.key()) }
                        download={ (name) "-" (history.range.key()) ".csv" } {
                        "Download CSV (" (history.range.label()) ", pg-csv)"
                    }
                }
                (history_chart(history, th, health.interval))
                @if !history.damage.is_empty() {
                    section.damage role="alert" {
                        h3 { "Damaged blocks skipped (" (history.damage.len()) "): run dictmon verify" }
                        ul { @for d in &history.damage { li { code { (d) } } } }
                    }
                }
                section aria-labelledby="range-alerts" {
                    h3 #range-alerts { "Alerts in the last " (history.range.label()) " (" (history.alerts.len()) ")" }
                    @if history.alerts.is_empty() {
                        p.muted { "None." }
                    } @else {
                        div.scroll {
                            table.alerts {
                                thead { tr { th { "Severity" } th { "Opened" } th { "Resolved" } th { "Cause" } th { "Message" } } }
                                tbody {
                                    @for a in history.alerts.iter().rev().take(ALERT_ROWS) {
                                        tr id={ "alert-" (a.id) } data-severity=(severity_key(Some(a.severity))) {
                                            td { span.badge { (a.severity.as_str()) } }
                                            td { (when(a.opened_at)) }
                                            td { @match a.resolved_at { Some(t) => (when(t)), None => "open" } }
                                            td { (a.cause.as_str()) }
                                            td { (a.message) }
                                        }
                                    }
                                }
                            }
                        }
                        @if history.alerts.len() > ALERT_ROWS {
                            p.muted {
                                "The " (ALERT_ROWS) " most recent are shown; all "
                                (history.alerts.len()) ": "
                                code { "dictmon query alerts --since " (history.since.format("%Y-%m-%d")) }
                                "."
                            }
                        }
                    }
                }
                (forensics(history, name, th))
            }
        }
    };
    let refresh = (history.range == Range::Day).then(|| refresh_seconds(health.interval));
    page(&format!("{name} — dictmon"), refresh, &body).into_string()
}

/// A duration for people; zero is "0s", not "now".
fn duration(seconds: f64) -> String {
    if seconds < 1.0 {
        "0s".into()
    } else {
        human(Some(seconds))
    }
}

/// The range's forensics: the episodes at or below WARNING, each linked to the alerts that
/// covered it (when the table above lists them), and the summary by period — what `dictmon
/// query episodes|summary` says of the same range.
fn forensics(history: &History, name: &PolicyName, th: &Thresholds) -> Markup {
    let listed: std::collections::HashSet<uuid::Uuid> = history
        .alerts
        .iter()
        .rev()
        .take(ALERT_ROWS)
        .map(|a| a.id)
        .collect();
    let since = history.since.format("%Y-%m-%d %H:%M");
    html! {
        section aria-labelledby="range-episodes" {
            h3 #range-episodes {
                "Episodes at or below WARNING (" (th.warning_percent) " %) in the last "
                (history.range.label()) " (" (history.episodes.len()) ")"
            }
            @if history.episodes.is_empty() {
                p.muted { "None." }
            } @else {
                div.scroll {
                    table.episodes {
                        thead { tr { th { "Start" } th { "End" } th { "Duration" } th { "Lowest" } th { "Lowest at" } th { "Alerts" } } }
                        tbody {
                            @for e in history.episodes.iter().rev() {
                                tr data-start=(e.start.to_rfc3339()) {
                                    td { (when(e.start)) }
                                    td { @if e.ongoing { "ongoing" } @else { (when(e.end)) } }
                                    td { (duration(e.duration_seconds)) }
                                    td { (percent(e.lowest_remaining_percent)) }
                                    td { (when(e.lowest_at)) }
                                    td {
                                        @if e.alert_ids.is_empty() { "—" }
                                        @for id in &e.alert_ids {
                                            @if listed.contains(id) {
                                                a.alert-link href={ "#alert-" (id) } { (id.to_string().get(..8).unwrap_or_default()) }
                                            } @else {
                                                code title=(id) { (id.to_string().get(..8).unwrap_or_default()) }
                                            }
                                            " "
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            p.muted {
                "The same, and more, from the command line: "
                code { "dictmon query episodes --policy " (name) " --since \"" (since) "\"" }
            }
        }
        section aria-labelledby="range-summary" {
            h3 #range-summary { "Summary by " (period_word(history.range)) }
            @if history.summary.is_empty() {
                p.muted { "No samples in this range." }
            } @else {
                div.scroll {
                    table.summary {
                        thead { tr {
                            th { "Period (UTC)" } th { "Samples" } th { "Min" } th { "Mean" } th { "Max" }
                            th { "≤ WARNING" } th { "≤ CRITICAL" } th { "Exhaustions" } th { "Peak/min" } th { "Alerts" }
                        } }
                        tbody {
                            @for r in history.summary.iter().rev() {
                                tr {
                                    td { (r.period_start.format(period_format(history.range))) }
                                    td { (r.samples) }
                                    td { (r.min_remaining_percent.map_or("—".into(), percent)) }
                                    td { (r.mean_remaining_percent.map_or("—".into(), percent)) }
                                    td { (r.max_remaining_percent.map_or("—".into(), percent)) }
                                    td { (duration(r.at_or_below_warning_seconds)) }
                                    td { (duration(r.at_or_below_critical_seconds)) }
                                    td { (r.exhaustions) }
                                    td { (r.peak_consumption_rate_per_minute.map_or("—".into(), |x| format!("{x:.1}"))) }
                                    td { (r.alerts_opened) }
                                }
                            }
                        }
                    }
                }
            }
            p.muted {
                code { "dictmon query summary --policy " (name) " --by " (period_word(history.range)) " --since \"" (since) "\"" }
            }
        }
    }
}

fn period_word(range: Range) -> &'static str {
    match range.period() {
        crate::domain::forensics::Period::Hour => "hour",
        crate::domain::forensics::Period::Day => "day",
        crate::domain::forensics::Period::Week => "week",
        crate::domain::forensics::Period::Month => "month",
    }
}

fn period_format(range: Range) -> &'static str {
    match range.period() {
        crate::domain::forensics::Period::Hour => "%Y-%m-%d %H:00",
        crate::domain::forensics::Period::Day | crate::domain::forensics::Period::Week => {
            "%Y-%m-%d"
        }
        crate::domain::forensics::Period::Month => "%Y-%m",
    }
}

/// A page saying what went wrong, with a way back.
pub fn problem(title: &str, detail: &str) -> String {
    let body = html! {
        main {
            h1 { (title) }
            p { (detail) }
            p { a href="/" { "← All policies" } }
        }
    };
    page(&format!("{title} — dictmon"), None, &body).into_string()
}

#[cfg(test)]
mod tests {
    use super::refill;

    #[test]
    fn refills_read_in_words() {
        assert_eq!(refill(6, 60), "6 per minute");
        assert_eq!(refill(40, 86_400), "40 per day");
        assert_eq!(refill(1, 1), "1 per second");
        assert_eq!(refill(5, 600), "5 every 10 minutes");
        assert_eq!(refill(2, 90), "2 every 90 seconds");
        assert_eq!(refill(3, 7_200), "3 every 2 hours");
    }
}
