//! Alert-event delivery: the outbox in the catalog is the queue, and each configured sink
//! (Prometheus Alertmanager, webhook, Apache Pulsar, JSON-lines file) has one worker that reads it in sequence
//! order, delivers, and records the sink's progress only once the sink acknowledged (HTTP 2xx,
//! fsync). The gRPC `WatchAlerts` stream ([`AlertStream`]) reads the same outbox for its clients.
//!
//! May use: `domain`, `store` (the catalog's outbox and sink progress), `trace` (a delivery's
//! span, parented on the cycle that raised its events). Prometheus handles are
//! passed in ([`DeliveryMetrics`]), so `telemetry` stays the owner of metric definitions.
//!
//! Invariants:
//! - At least once: a sink's progress passes an event only after the sink acknowledged it, and
//!   the progress is in the catalog, so a crash re-sends at most the batch in flight, with the
//!   same `event_id`s.
//! - In order: a sink gets events in outbox order (hence in order per policy); a failed batch is
//!   retried, with capped exponential backoff, before anything after it — forever, never dropped.
//! - A sink configured for the first time starts at the end of the outbox: it is not sent the
//!   history that was there before it.

mod alertmanager;
mod file;
mod grpc_conn;
mod http;
mod pulsar;
mod status;
mod stream;
mod webhook;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use prometheus::{IntCounterVec, IntGaugeVec};
use tokio::sync::watch;
use tracing::{Instrument as _, info, warn};

use crate::domain::AlertEvent;
use crate::store::catalog::{Catalog, CatalogError, SinkProgress};

pub use alertmanager::ALERTNAME;
pub use grpc_conn::{GRPC_IDLE, GRPC_PING, MAX_GRPC_CONNECTIONS, incoming};
pub use http::SetupError;
pub use pulsar::producer_url;
pub use status::{delivery_of, sequences};
pub use stream::{AlertStream, proto, to_proto};
pub use webhook::{EVENT_ID_HEADER, SIGNATURE_HEADER, signature};

/// The first retry waits this long; each failure doubles it up to the sink's maximum.
const MIN_BACKOFF: Duration = Duration::from_secs(1);
/// Even with nothing new, a worker looks at the outbox this often (and Alertmanager resends).
const IDLE_CHECK: Duration = Duration::from_secs(5);

/// Where events go, and how persistently.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NotifyConfig {
    /// The sinks, each with a unique name.
    pub sinks: Vec<SinkConfig>,
    /// The longest wait between two attempts at a failing sink. Default 60 s.
    pub max_backoff: Duration,
}

/// One sink.
#[derive(Clone, Debug, PartialEq)]
pub struct SinkConfig {
    /// Its name: the key of its progress in the catalog and the `sink` label of its metrics.
    /// Renaming a sink makes it a new one (it starts at the end of the outbox).
    pub name: String,
    /// What it is.
    pub kind: SinkKind,
}

/// The kinds of sink.
#[derive(Clone, Debug, PartialEq)]
pub enum SinkKind {
    /// Prometheus Alertmanager, API v2.
    Alertmanager(AlertmanagerConfig),
    /// JSON POST of each event.
    Webhook(WebhookConfig),
    /// JSON lines appended to a file.
    File(FileSinkConfig),
    /// An Apache Pulsar topic, through the broker's WebSocket producer API.
    Pulsar(PulsarConfig),
}

impl SinkKind {
    /// `alertmanager`, `webhook`, `pulsar` or `file`.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Alertmanager(_) => "alertmanager",
            Self::Webhook(_) => "webhook",
            Self::File(_) => "file",
            Self::Pulsar(_) => "pulsar",
        }
    }

    /// The URL or path, for logs and `query alerts`.
    pub fn target(&self) -> String {
        match self {
            Self::Alertmanager(a) => a.url.clone(),
            Self::Webhook(w) => w.url.clone(),
            Self::File(f) => f.path.display().to_string(),
            Self::Pulsar(p) => format!("{} {}", p.url, p.topic),
        }
    }
}

/// `[[notify.alertmanager]]`.
#[derive(Clone, Debug, PartialEq)]
pub struct AlertmanagerConfig {
    /// Alertmanager's base URL, e.g. `http://127.0.0.1:9093`.
    pub url: String,
    /// CA bundle of an https URL (default: the system's).
    pub ca_cert: Option<PathBuf>,
    /// Open alerts are re-sent this often, so Alertmanager keeps them active. Default 60 s.
    pub resend_interval: Duration,
    /// Deadline of one request.
    pub timeout: Duration,
    /// The `instance` label of every alert sent: the name under which Prometheus scrapes this
    /// dictmon, so that its alerts and Prometheus' about it group together. Default: this
    /// machine's name and the port of `listen`.
    pub instance: String,
    /// The `job` label of every alert sent (default `dictmon`): the scrape job's name.
    pub job: String,
}

/// `[[notify.webhook]]`.
#[derive(Clone, Debug, PartialEq)]
pub struct WebhookConfig {
    /// Where to POST.
    pub url: String,
    /// File holding the bearer token sent as `Authorization: Bearer …`.
    pub bearer_token_file: Option<PathBuf>,
    /// File holding the HMAC-SHA256 key of the `X-Dictmon-Signature-256` header.
    pub hmac_secret_file: Option<PathBuf>,
    /// CA bundle of an https URL (default: the system's).
    pub ca_cert: Option<PathBuf>,
    /// Deadline of one request.
    pub timeout: Duration,
}

/// `[[notify.pulsar]]`.
#[derive(Clone, Debug, PartialEq)]
pub struct PulsarConfig {
    /// The broker's web service URL (`ws://`, `wss://`; `http://`, `https://` alike).
    pub url: String,
    /// The topic, `persistent://tenant/namespace/topic`.
    pub topic: String,
    /// File holding the token of Pulsar's token authentication (`Authorization: Bearer …`).
    pub token_file: Option<PathBuf>,
    /// CA bundle of a `wss://` URL (default: the system's).
    pub ca_cert: Option<PathBuf>,
    /// Client certificate chain (PEM) for Pulsar's TLS authentication, with `client_key`.
    pub client_cert: Option<PathBuf>,
    /// The client certificate's key (PEM).
    pub client_key: Option<PathBuf>,
    /// Deadline of one event's round trip (connection included).
    pub timeout: Duration,
}

/// `[[notify.file]]` and `serve --events-file`.
#[derive(Clone, Debug, PartialEq)]
pub struct FileSinkConfig {
    /// The JSON-lines file (created if absent; its directory must exist).
    pub path: PathBuf,
}

/// Why one delivery attempt failed. The kind is the `kind` label of
/// `dictmon_delivery_failures_total`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeliveryError {
    /// No connection (refused, unreachable, DNS).
    #[error("cannot reach {target}: {detail}")]
    Unreachable {
        /// URL.
        target: String,
        /// The transport's error chain.
        detail: String,
    },
    /// No complete answer in time.
    #[error("no answer from {target} within {timeout:?}")]
    Timeout {
        /// URL.
        target: String,
        /// The deadline.
        timeout: Duration,
    },
    /// The TLS handshake failed.
    #[error("TLS with {target} failed: {detail}")]
    Tls {
        /// URL.
        target: String,
        /// The TLS error chain.
        detail: String,
    },
    /// A 4xx answer: the receiver refuses (wrong token, bad signature, wrong path).
    #[error("{target} refused the event: HTTP {status}: {body}")]
    Rejected {
        /// URL.
        target: String,
        /// The status code.
        status: u16,
        /// The start of the answer's body.
        body: String,
    },
    /// Any other non-2xx answer (5xx, redirects).
    #[error("{target} failed: HTTP {status}: {body}")]
    Unavailable {
        /// URL.
        target: String,
        /// The status code.
        status: u16,
        /// The start of the answer's body.
        body: String,
    },
    /// A broker answered the message with an error (Pulsar's `send-error`), or it could not
    /// be put in a message or a request body.
    #[error("{target}: the message was not taken: {detail}")]
    NotTaken {
        /// URL.
        target: String,
        /// The broker's result and message.
        detail: String,
    },
    /// Writing the events file failed.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        error: std::io::Error,
    },
}

impl DeliveryError {
    /// Every kind, for metrics registered at zero.
    pub const KINDS: [&'static str; 6] = [
        "unreachable",
        "timeout",
        "tls",
        "rejected",
        "unavailable",
        "io",
    ];

    /// The metric label.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Unreachable { .. } => "unreachable",
            Self::Timeout { .. } => "timeout",
            Self::Tls { .. } => "tls",
            Self::Rejected { .. } => "rejected",
            Self::Unavailable { .. } | Self::NotTaken { .. } => "unavailable",
            Self::Io { .. } => "io",
        }
    }
}

/// The metrics a worker updates, all labelled by `sink` (failures also by `kind`).
#[derive(Clone)]
pub struct DeliveryMetrics {
    /// Events in the outbox the sink has not acknowledged.
    pub backlog: IntGaugeVec,
    /// Events acknowledged.
    pub delivered: IntCounterVec,
    /// Failed attempts, by kind.
    pub failures: IntCounterVec,
}

/// The signal "events were committed to the outbox", from the monitor to the workers and
/// streams. Cheap to clone and to send.
#[derive(Clone)]
pub struct Wakeup(Arc<watch::Sender<u64>>);

impl Default for Wakeup {
    fn default() -> Self {
        Self(Arc::new(watch::channel(0).0))
    }
}

impl Wakeup {
    /// Tells every waiter to look at the outbox again.
    pub fn committed(&self) {
        self.0.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A receiver that wakes at each [`Wakeup::committed`].
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.0.subscribe()
    }
}

/// A destination of events.
trait Sink: Send {
    /// Events per delivery attempt.
    fn batch_size(&self) -> usize;

    /// Delivers `events` (in outbox order); `Ok` means all were acknowledged.
    fn deliver(
        &mut self,
        events: &[(u64, AlertEvent)],
    ) -> impl Future<Output = Result<(), DeliveryError>> + Send;

    /// Called when the worker is idle; Alertmanager re-sends open alerts here.
    fn idle(&mut self) -> impl Future<Output = Result<(), DeliveryError>> + Send {
        std::future::ready(Ok(()))
    }
}

/// Sets every sink up as [`spawn`] would, delivering nothing, and returns what failed (a CA,
/// token or key file unreadable, a URL that does not parse): what `config check` reports. A
/// file sink's directory must exist.
pub fn check_setup(config: &NotifyConfig) -> Vec<String> {
    let mut problems = Vec::new();
    for sink in &config.sinks {
        let name = &sink.name;
        let checked = match &sink.kind {
            SinkKind::Alertmanager(c) => {
                http::HttpClient::new(name, &c.url, c.ca_cert.as_deref(), c.timeout).map(drop)
            }
            SinkKind::Webhook(c) => webhook::Webhook::new(name, c).map(drop),
            SinkKind::Pulsar(c) => pulsar::Pulsar::new(name, c).map(drop),
            SinkKind::File(c) => {
                let dir = c
                    .path
                    .parent()
                    .filter(|d| !d.as_os_str().is_empty())
                    .unwrap_or(std::path::Path::new("."));
                if !dir.is_dir() {
                    problems.push(format!(
                        "sink {name}: {}: the directory of the events file does not exist",
                        c.path.display()
                    ));
                }
                Ok(())
            }
        };
        if let Err(e) = checked {
            problems.push(e.to_string());
        }
    }
    problems
}

/// Starts one worker per sink. Fails before starting any when a sink cannot be set up (a CA,
/// token or key file unreadable, a URL that does not parse).
pub fn spawn(
    config: &NotifyConfig,
    catalog: &Arc<Catalog>,
    wakeup: &Wakeup,
    metrics: &DeliveryMetrics,
    shutdown: &watch::Receiver<bool>,
) -> Result<Vec<tokio::task::JoinHandle<()>>, SetupError> {
    // Set every sink up first, so a bad one stops start-up before any delivers.
    let mut ready = Vec::new();
    for sink in &config.sinks {
        let name = &sink.name;
        let any = match &sink.kind {
            SinkKind::Alertmanager(c) => {
                AnySink::Alertmanager(alertmanager::Alertmanager::new(name, c, catalog)?)
            }
            SinkKind::Webhook(c) => AnySink::Webhook(webhook::Webhook::new(name, c)?),
            SinkKind::File(c) => AnySink::File(file::EventsFile::new(c)),
            SinkKind::Pulsar(c) => AnySink::Pulsar(pulsar::Pulsar::new(name, c)?),
        };
        let worker = Worker {
            name: name.clone(),
            kind: sink.kind.label(),
            target: sink.kind.target(),
            catalog: catalog.clone(),
            wake: wakeup.subscribe(),
            metrics: metrics.clone(),
            max_backoff: config.max_backoff.max(MIN_BACKOFF),
            shutdown: shutdown.clone(),
        };
        ready.push((worker, any));
    }
    let mut tasks = Vec::new();
    for (worker, sink) in ready {
        for kind in DeliveryError::KINDS {
            metrics.failures.with_label_values(&[&worker.name, kind]);
        }
        metrics.delivered.with_label_values(&[&worker.name]);
        tasks.push(tokio::spawn(async move {
            match sink {
                AnySink::Alertmanager(s) => worker.run(s).await,
                AnySink::Webhook(s) => worker.run(s).await,
                AnySink::File(s) => worker.run(s).await,
                AnySink::Pulsar(s) => worker.run(s).await,
            }
        }));
    }
    Ok(tasks)
}

enum AnySink {
    Alertmanager(alertmanager::Alertmanager),
    Webhook(webhook::Webhook),
    File(file::EventsFile),
    Pulsar(pulsar::Pulsar),
}

/// One sink's delivery loop.
struct Worker {
    name: String,
    kind: &'static str,
    target: String,
    catalog: Arc<Catalog>,
    wake: watch::Receiver<u64>,
    metrics: DeliveryMetrics,
    max_backoff: Duration,
    shutdown: watch::Receiver<bool>,
}

impl Worker {
    async fn run(mut self, mut sink: impl Sink) {
        let mut progress = loop {
            match self.load_progress().await {
                Ok(p) => break p,
                Err(e) => {
                    warn!(sink = self.name, error = %e, "cannot read the sink's progress; retrying");
                    if self.pause(self.max_backoff).await {
                        return;
                    }
                }
            }
        };
        let mut backoff = MIN_BACKOFF;
        loop {
            if *self.shutdown.borrow() {
                return;
            }
            let batch = match self.read(progress.next_seq, sink.batch_size()).await {
                Ok(b) => b,
                Err(e) => {
                    warn!(sink = self.name, error = %e, "cannot read the outbox; retrying");
                    if self.pause(self.max_backoff).await {
                        return;
                    }
                    continue;
                }
            };
            self.update_backlog(progress.next_seq).await;
            let Some(&(last, _)) = batch.last() else {
                if let Err(e) = sink.idle().await {
                    self.count_failure(&e);
                }
                if self.wait_for_events().await {
                    return;
                }
                continue;
            };
            progress.last_attempt = Some(Utc::now());
            let span = crate::trace::delivery_span(&self.name, self.kind, &batch);
            let outcome = tokio::select! {
                r = sink.deliver(&batch).instrument(span.clone()) => r,
                // Abandoned: nothing is acknowledged, the batch is sent again after a restart.
                _ = self.shutdown.changed() => return,
            };
            match &outcome {
                Ok(()) => span.record("outcome", "delivered"),
                Err(e) => span
                    .record("outcome", e.kind())
                    .record("otel.status_code", "error"),
            };
            match outcome {
                Ok(()) => {
                    progress.next_seq = last + 1;
                    progress.delivered += batch.len() as u64;
                    progress.failures = 0;
                    progress.last_error = None;
                    progress.last_success = progress.last_attempt;
                    self.metrics
                        .delivered
                        .with_label_values(&[&self.name])
                        .inc_by(batch.len() as u64);
                    // The backlog gauge follows at the top of the loop.
                    self.save(&progress).await;
                    backoff = MIN_BACKOFF;
                }
                Err(e) => {
                    self.count_failure(&e);
                    progress.failures += 1;
                    progress.last_error = Some(e.to_string());
                    warn!(
                        sink = self.name,
                        kind = e.kind(),
                        attempt = progress.failures,
                        "delivery failed, retrying in {backoff:?}: {e}"
                    );
                    self.save(&progress).await;
                    if self.pause(backoff).await {
                        return;
                    }
                    backoff = (backoff * 2).min(self.max_backoff);
                }
            }
        }
    }

    fn count_failure(&self, e: &DeliveryError) {
        self.metrics
            .failures
            .with_label_values(&[&self.name, e.kind()])
            .inc();
    }

    /// The sink's recorded progress, or a new one starting at the end of the outbox.
    async fn load_progress(&self) -> Result<SinkProgress, CatalogError> {
        let (catalog, name) = (self.catalog.clone(), self.name.clone());
        let (kind, target) = (self.kind, self.target.clone());
        blocking(move || {
            if let Some((_, mut p)) = catalog.sinks()?.into_iter().find(|(n, _)| *n == name) {
                let next = catalog.next_event_seq()?;
                if p.next_seq > next {
                    // A catalog restored from an older copy: the sink's place lies beyond the
                    // log; start at its end rather than skip the events that will be written.
                    warn!(
                        sink = name,
                        "the sink's progress ({}) is past the outbox's end ({next}); resuming at the end",
                        p.next_seq
                    );
                    p.next_seq = next;
                    p.since_seq = p.since_seq.min(next);
                    catalog.put_sink(&name, &p)?;
                }
                if p.kind != kind || p.target != target {
                    info!(
                        sink = name,
                        "sink now delivers to {target} ({kind}); it continues where {} left off",
                        p.target
                    );
                    kind.clone_into(&mut p.kind);
                    p.target = target;
                    catalog.put_sink(&name, &p)?;
                }
                return Ok(p);
            }
            let next = catalog.next_event_seq()?;
            let p = SinkProgress {
                kind: kind.to_owned(),
                target,
                since_seq: next,
                next_seq: next,
                ..SinkProgress::default()
            };
            catalog.put_sink(&name, &p)?;
            info!(
                sink = name,
                "new sink: it receives the events from now on (outbox sequence {next}), not earlier history"
            );
            Ok(p)
        })
        .await
    }

    async fn read(&self, from: u64, limit: usize) -> Result<Vec<(u64, AlertEvent)>, CatalogError> {
        let catalog = self.catalog.clone();
        blocking(move || catalog.events_from(from, limit)).await
    }

    async fn save(&self, progress: &SinkProgress) {
        let (catalog, name, p) = (self.catalog.clone(), self.name.clone(), progress.clone());
        if let Err(e) = blocking(move || catalog.put_sink(&name, &p)).await {
            // Delivery goes on; after a restart the sink may see these events again.
            warn!(sink = self.name, error = %e, "cannot record the sink's progress");
        }
    }

    async fn update_backlog(&self, from: u64) {
        let catalog = self.catalog.clone();
        if let Ok(n) = blocking(move || catalog.events_count_from(from)).await {
            self.metrics
                .backlog
                .with_label_values(&[&self.name])
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// Sleeps `wait` (plus up to 10 % jitter); true when shutting down.
    async fn pause(&mut self, wait: Duration) -> bool {
        let spread = f64::from(Utc::now().timestamp_subsec_nanos()) / 1e10;
        tokio::select! {
            () = tokio::time::sleep(wait.mul_f64(1.0 + spread)) => false,
            _ = self.shutdown.changed() => true,
        }
    }

    /// Waits for new events (or the idle check); true when shutting down.
    async fn wait_for_events(&mut self) -> bool {
        tokio::select! {
            r = self.wake.changed() => {
                if r.is_err() {
                    // The monitor is gone: only the idle check is left.
                    tokio::time::sleep(IDLE_CHECK).await;
                }
                false
            }
            () = tokio::time::sleep(IDLE_CHECK) => false,
            _ = self.shutdown.changed() => true,
        }
    }
}

/// Runs catalog I/O off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, CatalogError> + Send + 'static,
) -> Result<T, CatalogError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}
