//! Traces over OTLP/gRPC (`[telemetry.otlp]`, off by default): the OpenTelemetry layer that
//! turns dictmon's own `tracing` spans — a poll cycle and its steps, each sink delivery — into
//! OpenTelemetry spans, and the bounded queue and export thread that send them to a collector.
//!
//! May use: `domain` (alert events, to remember which cycle raised them), `source` (the gRPC
//! endpoint with TLS the Bridge uses).
//!
//! Invariants: ending a span never waits on export — it is queued with `try_send`, and with the
//! queue full it is dropped and counted (`dictmon_otlp_spans_dropped_total{reason}`); the
//! collector is called from one thread of its own, on a runtime of its own, never from the
//! monitor's; a batch the collector does not take is dropped and counted too (spans are
//! evidence, not data: nothing retries them). Off, nothing here runs and no metric exists.

mod origin;

use std::sync::LazyLock;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{WithExportConfig, WithTonicConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter, SpanProcessor};
use prometheus::{IntCounter, IntCounterVec, Opts};
use tonic::transport::Endpoint;
use tracing::{info, warn};
use tracing_subscriber::Layer;
use tracing_subscriber::Registry;
use tracing_subscriber::filter::filter_fn;

pub use origin::{delivery_span, remember_origin};

/// Spans waiting for the export thread; beyond this, a span is dropped and counted.
pub const QUEUE_SPANS: usize = 2048;
/// Spans per export call.
const BATCH_SPANS: usize = 512;
/// A span waits at most this long in the queue before its batch is sent.
const BATCH_DELAY: Duration = Duration::from_secs(1);

/// Where and how to send spans.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OtlpConfig {
    /// The collector's OTLP/gRPC endpoint, `http://host:4317` or `https://…`.
    pub endpoint: String,
    /// CA bundle that signs the collector's certificate (required for https).
    pub ca_cert: Option<std::path::PathBuf>,
    /// Client certificate for mutual TLS.
    pub client_cert: Option<std::path::PathBuf>,
    /// Its key.
    pub client_key: Option<std::path::PathBuf>,
    /// Deadline of one export call, connection included.
    pub timeout: Duration,
    /// `service.instance.id` of every span (default: this machine's name).
    pub instance: String,
}

/// The collector's endpoint, its TLS files read: what fails here (a CA file unreadable, a URL
/// that does not parse) stops `serve` at start-up and is what `config check` reports.
pub fn endpoint(config: &OtlpConfig) -> Result<Endpoint, crate::source::bridge::BridgeSetupError> {
    crate::source::bridge::grpc_endpoint(
        "otlp",
        &config.endpoint,
        config.ca_cert.as_deref(),
        (config.client_cert.as_deref(), config.client_key.as_deref()),
        config.timeout,
    )
}

/// The counters of what became of spans, registered in `/metrics` by `serve` when traces are on.
pub struct SpanCounters {
    /// `dictmon_otlp_spans_exported_total`: spans the collector accepted.
    pub exported: IntCounter,
    /// `dictmon_otlp_spans_dropped_total{reason}`: `queue_full` (the export thread behind),
    /// `export_failed` (the collector unreachable or refusing).
    pub dropped: IntCounterVec,
}

/// The process's span counters (one export pipeline per process).
pub static COUNTERS: LazyLock<SpanCounters> = LazyLock::new(|| {
    let made = (
        IntCounter::new(
            "dictmon_otlp_spans_exported_total",
            "Trace spans the OTLP collector accepted.",
        ),
        IntCounterVec::new(
            Opts::new(
                "dictmon_otlp_spans_dropped_total",
                "Trace spans not exported, by reason: queue_full (export behind, the span was not queued), export_failed (the collector did not take the batch).",
            ),
            &["reason"],
        ),
    );
    match made {
        (Ok(exported), Ok(dropped)) => {
            dropped.with_label_values(&[QUEUE_FULL]);
            dropped.with_label_values(&[EXPORT_FAILED]);
            SpanCounters { exported, dropped }
        }
        // Constant names and help texts: only a bug gets here, and every test shows it.
        (Err(e), _) | (_, Err(e)) => unreachable!("{e}"),
    }
});

const QUEUE_FULL: &str = "queue_full";
const EXPORT_FAILED: &str = "export_failed";

/// The running export pipeline; [`Pipeline::shutdown`] sends what is queued (bounded by the
/// export timeout) before the process exits.
pub struct Pipeline {
    provider: SdkTracerProvider,
}

impl Pipeline {
    /// Starts the export thread and returns the pipeline and the tracer for the layer. No
    /// connection is made here; an unreachable collector costs dropped spans, not a start-up.
    pub fn start(
        config: &OtlpConfig,
        endpoint: Endpoint,
    ) -> std::io::Result<(Self, opentelemetry_sdk::trace::Tracer)> {
        let resource = Resource::builder()
            .with_service_name("dictmon")
            .with_attributes([
                opentelemetry::KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
                opentelemetry::KeyValue::new("service.instance.id", config.instance.clone()),
            ])
            .build();
        let (tx, rx) = mpsc::sync_channel(QUEUE_SPANS);
        let target = config.endpoint.clone();
        let thread_resource = resource.clone();
        let timeout = config.timeout;
        std::thread::Builder::new()
            .name("dictmon-otlp".into())
            .spawn(move || export_loop(&rx, &endpoint, &thread_resource, &target, timeout))?;
        let provider = SdkTracerProvider::builder()
            .with_span_processor(QueueProcessor {
                tx,
                timeout: config.timeout,
            })
            .with_resource(resource)
            .build();
        let tracer = provider.tracer("dictmon");
        origin::ENABLED.store(true, std::sync::atomic::Ordering::Relaxed);
        Ok((Self { provider }, tracer))
    }

    /// Sends the spans still queued, waiting at most two export timeouts.
    pub fn shutdown(self) {
        if let Err(e) = self.provider.shutdown() {
            warn!(error = %e, "traces: the last spans were not all exported");
        }
    }
}

/// The `tracing` layer that hands dictmon's own spans and their events (INFO and above,
/// whatever the log level) to `tracer`; other crates' spans are not traced.
pub fn layer(tracer: opentelemetry_sdk::trace::Tracer) -> impl Layer<Registry> + Send + Sync {
    tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_location(false)
        .with_threads(false)
        .with_filter(filter_fn(|m| {
            m.target().starts_with("dictmon") && *m.level() <= tracing::Level::INFO
        }))
}

enum Message {
    Span(Box<SpanData>),
    /// Export what is queued, then answer.
    Flush(SyncSender<()>),
}

/// Queues ended spans for the export thread without ever waiting.
#[derive(Debug)]
struct QueueProcessor {
    tx: SyncSender<Message>,
    timeout: Duration,
}

impl SpanProcessor for QueueProcessor {
    fn on_start(&self, _span: &mut opentelemetry_sdk::trace::Span, _cx: &opentelemetry::Context) {}

    fn on_end(&self, span: SpanData) {
        match self.tx.try_send(Message::Span(Box::new(span))) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                COUNTERS.dropped.with_label_values(&[QUEUE_FULL]).inc();
            }
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.flush(self.timeout * 2)
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.flush(timeout.min(self.timeout * 2))
    }
}

impl QueueProcessor {
    /// Asks the export thread to send what it holds and waits for it, at most `within`.
    fn flush(&self, within: Duration) -> OTelSdkResult {
        let deadline = Instant::now() + within;
        let (ack, done) = mpsc::sync_channel(1);
        let mut message = Message::Flush(ack);
        loop {
            match self.tx.try_send(message) {
                Ok(()) => break,
                Err(TrySendError::Full(m)) if Instant::now() < deadline => {
                    message = m;
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(TrySendError::Full(_)) => return Err(OTelSdkError::Timeout(within)),
                Err(TrySendError::Disconnected(_)) => return Err(OTelSdkError::AlreadyShutdown),
            }
        }
        done.recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .map_err(|_| OTelSdkError::Timeout(within))
    }
}

/// The export thread: batches of up to [`BATCH_SPANS`], sent at most [`BATCH_DELAY`] after
/// their first span, one call at a time.
fn export_loop(
    rx: &Receiver<Message>,
    endpoint: &Endpoint,
    resource: &Resource,
    target: &str,
    timeout: Duration,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            warn!(error = %e, "traces: cannot start the export thread's runtime; spans are dropped and counted");
            return;
        }
    };
    let built = {
        let _entered = runtime.enter();
        opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_channel(endpoint.connect_lazy())
            .with_timeout(timeout)
            .build()
    };
    let mut exporter = match built {
        Ok(e) => e,
        Err(e) => {
            warn!(error = %e, "traces: cannot build the OTLP exporter; spans are dropped and counted");
            return;
        }
    };
    exporter.set_resource(resource);
    let mut batch: Vec<SpanData> = Vec::with_capacity(BATCH_SPANS);
    let mut oldest: Option<Instant> = None;
    let mut failing = false;
    loop {
        let wait = oldest.map_or(Duration::from_secs(3600), |t| {
            BATCH_DELAY.saturating_sub(t.elapsed())
        });
        let mut ack = None;
        let mut closed = false;
        match rx.recv_timeout(wait) {
            Ok(Message::Span(span)) => {
                batch.push(*span);
                oldest.get_or_insert_with(Instant::now);
                if batch.len() < BATCH_SPANS {
                    continue;
                }
            }
            Ok(Message::Flush(a)) => ack = Some(a),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => closed = true,
        }
        if !batch.is_empty() {
            let spans = batch.len() as u64;
            let sent = std::mem::replace(&mut batch, Vec::with_capacity(BATCH_SPANS));
            match runtime.block_on(exporter.export(sent)) {
                Ok(()) => {
                    COUNTERS.exported.inc_by(spans);
                    if std::mem::take(&mut failing) {
                        info!("traces: the OTLP collector at {target} takes spans again");
                    }
                }
                Err(e) => {
                    COUNTERS
                        .dropped
                        .with_label_values(&[EXPORT_FAILED])
                        .inc_by(spans);
                    if !std::mem::replace(&mut failing, true) {
                        warn!(error = %e, "traces: the OTLP collector at {target} did not take {spans} spans; spans are dropped and counted (dictmon_otlp_spans_dropped_total{{reason=\"export_failed\"}}) until it does, and polling goes on");
                    }
                }
            }
            oldest = None;
        }
        if let Some(a) = ack {
            let _ = a.send(());
        }
        if closed {
            let _ = exporter.shutdown();
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::{SpanContext, SpanKind, Status};
    use opentelemetry_sdk::trace::{SpanEvents, SpanLinks};

    use super::*;

    fn span() -> SpanData {
        SpanData {
            span_context: SpanContext::empty_context(),
            parent_span_id: opentelemetry::trace::SpanId::INVALID,
            parent_span_is_remote: false,
            span_kind: SpanKind::Internal,
            name: "poll_cycle".into(),
            start_time: std::time::SystemTime::now(),
            end_time: std::time::SystemTime::now(),
            attributes: Vec::new(),
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: Status::Unset,
            instrumentation_scope: opentelemetry::InstrumentationScope::default(),
        }
    }

    #[test]
    fn a_span_that_finds_the_queue_full_is_dropped_and_counted_without_waiting() {
        let (tx, rx) = mpsc::sync_channel(2);
        let processor = QueueProcessor {
            tx,
            timeout: Duration::from_millis(50),
        };
        let dropped = || COUNTERS.dropped.with_label_values(&[QUEUE_FULL]).get();
        let before = dropped();
        for _ in 0..5 {
            processor.on_end(span());
        }
        // Two queued, three dropped (other tests of this process never fill a queue).
        assert_eq!(rx.try_iter().count(), 2);
        assert_eq!(dropped() - before, 3);
        // Nobody drains the queue: a flush gives up at its deadline instead of hanging.
        for _ in 0..2 {
            processor.on_end(span());
        }
        assert!(matches!(
            processor.force_flush(),
            Err(OTelSdkError::Timeout(_))
        ));
    }
}
