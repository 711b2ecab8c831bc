//! Which poll cycle committed an alert event, so that a sink's delivery span is a child of the
//! cycle span that produced its first event (and links to the cycles of the others). Bounded:
//! the newest [`REMEMBERED`] events; an older one (a backlog delivered after a long outage or
//! a restart) gets a delivery span that starts a trace of its own.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{LazyLock, Mutex};

use opentelemetry::Context;
use opentelemetry::trace::TraceContextExt as _;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use uuid::Uuid;

use crate::domain::AlertEvent;

/// Events whose cycle is remembered.
const REMEMBERED: usize = 4096;

/// Set once the export pipeline runs: until then nothing is remembered.
pub(super) static ENABLED: AtomicBool = AtomicBool::new(false);

/// The cycle of each remembered event, and the events in the order they were remembered.
#[derive(Default)]
struct Origins {
    cycle_of: HashMap<Uuid, Context>,
    order: VecDeque<Uuid>,
}

static ORIGINS: LazyLock<Mutex<Origins>> = LazyLock::new(Mutex::default);

/// Remembers that `span` (a poll cycle's) committed `events`.
pub fn remember_origin(span: &tracing::Span, events: impl IntoIterator<Item = Uuid>) {
    if !ENABLED.load(Ordering::Relaxed) {
        return;
    }
    let cx = span.context();
    if !cx.span().span_context().is_valid() {
        return;
    }
    let mut origins = ORIGINS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for id in events {
        if origins.order.len() == REMEMBERED
            && let Some(oldest) = origins.order.pop_front()
        {
            origins.cycle_of.remove(&oldest);
        }
        origins.order.push_back(id);
        origins.cycle_of.insert(id, cx.clone());
    }
}

/// The span of one delivery attempt of `events` (in outbox order) to a sink; `outcome` is
/// recorded by the caller.
pub fn delivery_span(sink: &str, kind: &str, events: &[(u64, AlertEvent)]) -> tracing::Span {
    let span = tracing::info_span!(
        "sink.deliver",
        sink,
        sink.kind = kind,
        events = events.len(),
        first_event_id = events.first().map(|(_, e)| e.event_id.to_string()),
        outcome = Empty,
        otel.status_code = Empty,
    );
    if !ENABLED.load(Ordering::Relaxed) || events.is_empty() {
        return span;
    }
    let mut cycles: Vec<Context> = Vec::new();
    {
        let origins = ORIGINS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (_, event) in events {
            let Some(cx) = origins.cycle_of.get(&event.event_id) else {
                continue;
            };
            let known = cycles
                .iter()
                .any(|c| c.span().span_context() == cx.span().span_context());
            if !known {
                cycles.push(cx.clone());
            }
        }
    }
    let mut cycles = cycles.into_iter();
    if let Some(parent) = cycles.next() {
        let _ = span.set_parent(parent);
    }
    for other in cycles {
        span.add_link(other.span().span_context().clone());
    }
    span
}
