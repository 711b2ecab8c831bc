//! `dictmon serve`: the appliance.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use dictmon::config::{self, Config, SourceConfig};
use dictmon::domain::{RateWindow, ValidationLimits};
use dictmon::http::{ApiToken, HttpState};
use dictmon::monitor::cycle::{Monitor, MonitorConfig};
use dictmon::notify::AlertStream;
use dictmon::notify::{self, DeliveryMetrics, FileSinkConfig, NotifyConfig, SinkConfig, SinkKind};
use dictmon::source::Source;
use dictmon::store::{Store, StoreOptions};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{error, info, warn};

use super::Outcome;
use super::source_args::{SourceArgs, WithSource, check_interval, with_source};

/// Run the appliance: poll every policy, keep history, raise alerts, serve metrics.
///
/// With no config file and no --source it runs on the built-in DICT simulator (scenario
/// `steady`, with a near-exhaustion episode every 10 minutes), keeps data in ./dictmon-data and
/// serves HTTP on 127.0.0.1:9464 (and nothing else: the gRPC stream is off unless configured)
/// — try `--interval 5s` and open 127.0.0.1:9464 in a browser. Command-line flags override
/// the file.
/// SIGTERM or Ctrl-C: the cycle in flight finishes, then it exits.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// TOML configuration (commented example: packaging/dictmon.toml).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Data directory [default: dictmon-data, or the config's `data_dir`].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// HTTP listen address: dashboard, /api, /metrics (port 0: any free port, printed in the
    /// first log line) [default: 127.0.0.1:9464, or the config's listen].
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    #[command(flatten)]
    source: SourceArgs,
    /// Poll interval: 5s, 1m, 5m … (at least 10s with --source dict) [default: 5m, or the
    /// config's interval].
    #[arg(long, value_name = "DURATION")]
    interval: Option<String>,
    /// Also append every alert event to this JSON-lines file, one event per line, fsynced
    /// (a sink named "events-file"; more sinks: [notify] in the config).
    #[arg(long, value_name = "FILE")]
    events_file: Option<PathBuf>,
    /// gRPC listen address of the `WatchAlerts` stream of alert events (port 0: any free port;
    /// "off": none) [default: off, or the config's `grpc_listen`; the packaged configuration
    /// says 127.0.0.1:9465].
    #[arg(long, value_name = "ADDR")]
    grpc_listen: Option<String>,
}

fn apply(args: &Args, c: &mut Config) -> anyhow::Result<()> {
    if let Some(d) = &args.data_dir {
        c.data_dir.clone_from(d);
    }
    if let Some(l) = &args.listen {
        c.listen.clone_from(l);
    }
    if let Some(i) = &args.interval {
        c.interval = config::parse_duration(i)
            .and_then(|d| config::check_interval(d).map(|()| d))
            .map_err(anyhow::Error::msg)
            .context("--interval")?;
        config::check_jitter(c.jitter, c.interval)
            .map_err(anyhow::Error::msg)
            .context("--interval is shorter than the configured jitter")?;
    }
    if let Some(g) = &args.grpc_listen {
        c.grpc_listen = if g == "off" { String::new() } else { g.clone() };
    }
    if let Some(path) = &args.events_file {
        let name = "events-file";
        if c.notify.sinks.iter().any(|s| s.name == name) {
            anyhow::bail!("--events-file: the config already has a sink named {name:?}");
        }
        c.notify.sinks.push(SinkConfig {
            name: name.into(),
            kind: SinkKind::File(FileSinkConfig { path: path.clone() }),
        });
    }
    args.source.apply(c)?;
    check_interval(c)
}

pub fn run(args: &Args) -> anyhow::Result<Outcome> {
    let mut config = match &args.config {
        Some(path) => config::load(path)?,
        None => Config::default(),
    };
    apply(args, &mut config)?;
    let traces = match &config.otlp {
        Some(otlp) => {
            let endpoint = dictmon::trace::endpoint(otlp).context("[telemetry.otlp]")?;
            let started = dictmon::trace::Pipeline::start(otlp, endpoint)
                .context("cannot start the trace export thread")?;
            Some(started)
        }
        None => None,
    };
    super::init_logging_and_traces(
        &config.log_level,
        traces.as_ref().map(|(_, tracer)| tracer.clone()),
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let served = runtime.block_on(serve(config));
    if let Some((pipeline, _)) = traces {
        pipeline.shutdown();
    }
    served?;
    Ok(Outcome::Success)
}

async fn serve(config: Config) -> anyhow::Result<()> {
    // Caught from the start: a SIGTERM during the start-up (opening the store, the reload)
    // stops serve cleanly once it is ready, instead of killing it half-way.
    let shutdown = shutdown_signal();
    let listener = TcpListener::bind(&config.listen).await.with_context(|| {
        format!(
            "cannot listen on {}; is another dictmon running? choose another address with --listen",
            config.listen
        )
    })?;
    let http = listener.local_addr().context("listening address")?;
    let api_token = match &config.api_token_file {
        Some(path) => {
            let token = read_api_token(path)?;
            Some(ApiToken::new(&token).map_err(|_| anyhow::anyhow!("no system randomness"))?)
        }
        None => None,
    };
    if !http.ip().is_loopback() && api_token.is_none() {
        warn!(
            "HTTP listens on {http}, beyond loopback, and /api/* has no token: anyone who reaches this port reads every bucket and alert (set api_token_file, or a firewall)"
        );
    }
    let grpc = if config.grpc_listen.is_empty() {
        None
    } else {
        Some(TcpListener::bind(&config.grpc_listen).await.with_context(|| {
            format!(
                "cannot listen on {} for gRPC; is another dictmon running? choose another address with --grpc-listen (or \"off\")",
                config.grpc_listen
            )
        })?)
    };
    let grpc_text = match &grpc {
        Some(l) => format!(
            "gRPC on {}",
            l.local_addr().context("gRPC listening address")?
        ),
        None => "gRPC off".into(),
    };
    let source_text = config.source.describe();
    // The data directory as an absolute path: the log is read far from the working directory.
    let data_dir =
        std::path::absolute(&config.data_dir).unwrap_or_else(|_| config.data_dir.clone());
    info!(
        "dictmon {} polling {source_text} every {}; data in {}; {grpc_text}; HTTP on http://{http} ({})",
        env!("CARGO_PKG_VERSION"),
        dictmon::config::format_duration(config.interval),
        data_dir.display(),
        config
            .from_file
            .as_ref()
            .map_or("no config file: defaults".to_owned(), |f| format!(
                "config {}",
                f.display()
            )),
    );
    let store = Store::open(
        &config.data_dir,
        StoreOptions {
            fsync: config.fsync,
            rate_window: RateWindow {
                span: config.rate_window,
            },
        },
    )?;
    for (path, offset, len) in &store.recovery().torn_tails {
        warn!(
            "recovered {}: cut {len} bytes of an interrupted append at offset {offset} (kept in quarantine/)",
            path.display()
        );
    }
    for (path, rows) in &store.recovery().copied_behind {
        warn!(
            "{}: {rows} rows the catalog counted are not in it — this data directory is a copy taken while a writer ran (the segment was copied before the catalog); counting goes on from what it holds",
            path.display()
        );
    }
    for finding in &store.recovery().findings {
        error!(
            "catalog: {finding} — `dictmon verify` reports it until the data directory is restored from a backup"
        );
    }
    for (path, what) in &store.recovery().damaged {
        error!(
            "{} is damaged ({what}); its readable rows stay readable, it is never written again (new rows go to the month's next file), and it is never rewritten — run `dictmon verify` and keep a copy before any repair",
            path.display()
        );
    }
    let monitor_config = MonitorConfig {
        interval: config.interval,
        jitter: config.jitter,
        timeout: config.timeout,
        thresholds: config.thresholds,
        per_policy: config.per_policy.clone(),
        validation: ValidationLimits {
            max_future_skew: config.max_future_skew,
        },
        rate_window: RateWindow {
            span: config.rate_window,
        },
        keep_months: config.keep_months,
        vanished_after_polls: config.vanished_after_polls,
    };
    if let SourceConfig::Dict(d) = &config.source {
        if let Some(cert) = &d.signing_cert {
            info!(
                signing_cert = %cert.display(),
                "DICT's response signatures are verified: an answer that fails is not used"
            );
        } else {
            warn!(
                "DICT's response signatures are NOT verified: no signing_cert (--dict-signing-cert) is configured (see README, \"DICT source\"); the answers are trusted on the strength of mutual TLS alone"
            );
        }
    }
    for sink in &config.notify.sinks {
        info!(
            sink = sink.name,
            "alert events go to {} {}",
            sink.kind.label(),
            sink.kind.target()
        );
    }
    with_source(
        &config.source,
        Serve {
            store,
            data_dir: config.data_dir.clone(),
            config: monitor_config,
            notify: config.notify.clone(),
            listener,
            api_token,
            grpc,
            traces: config.otlp.is_some(),
            shutdown: Box::pin(shutdown),
        },
    )
    .await
}

struct Serve {
    store: Store,
    data_dir: PathBuf,
    config: MonitorConfig,
    notify: NotifyConfig,
    listener: TcpListener,
    api_token: Option<ApiToken>,
    grpc: Option<TcpListener>,
    /// Traces go to an OTLP collector: its span counters join `/metrics`.
    traces: bool,
    /// SIGTERM or SIGINT, caught since start-up.
    shutdown: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
}

impl WithSource for Serve {
    type Output = ();

    async fn run<S: Source + 'static>(self, source: S) -> anyhow::Result<()> {
        let (thresholds, per_policy) = (self.config.thresholds, self.config.per_policy.clone());
        let (monitor, readers) = Monitor::new(source, self.store, self.config)?;
        let (stop, stopped) = watch::channel(false);
        let metrics = &readers.published.metrics;
        if self.traces {
            let spans = &*dictmon::trace::COUNTERS;
            metrics.register(Box::new(spans.exported.clone()))?;
            metrics.register(Box::new(spans.dropped.clone()))?;
        }
        let workers = notify::spawn(
            &self.notify,
            &readers.catalog,
            &readers.wakeup,
            &DeliveryMetrics {
                backlog: metrics.outbox_backlog.clone(),
                delivered: metrics.events_delivered.clone(),
                failures: metrics.delivery_failures.clone(),
            },
            &stopped,
        )?;
        let grpc = self.grpc.map(|listener| {
            let service = AlertStream::service(
                Arc::clone(&readers.catalog),
                readers.wakeup.clone(),
                stopped.clone(),
            );
            let mut stopping = stopped.clone();
            tokio::spawn(
                tonic::transport::Server::builder()
                    .http2_keepalive_interval(Some(dictmon::notify::GRPC_PING))
                    .http2_keepalive_timeout(Some(dictmon::notify::GRPC_PING))
                    .add_service(service)
                    .serve_with_incoming_shutdown(
                        dictmon::notify::incoming(listener),
                        async move {
                            let _ = stopping.wait_for(|s| *s).await;
                        },
                    ),
            )
        });
        let http = tokio::spawn(dictmon::http::serve(
            self.listener,
            Arc::new(HttpState {
                published: Arc::clone(&readers.published),
                catalog: Arc::clone(&readers.catalog),
                rings: readers.rings.clone(),
                data_dir: self.data_dir,
                thresholds,
                per_policy,
                states_csv: super::query::policy_pg_csv,
                heavy: dictmon::http::Heavy::default(),
                api_token: self.api_token,
            }),
            stopped.clone(),
        ));
        let monitor = tokio::spawn(monitor.run(stopped));
        self.shutdown.await;
        info!("stopping: finishing the cycle in flight");
        let _ = stop.send(true);
        monitor.await.context("the monitor task failed")?;
        http.await.context("the HTTP task failed")?;
        for w in workers {
            w.await.context("a delivery worker failed")?;
        }
        if let Some(g) = grpc {
            // Streams end at shutdown; a connection that lingers is dropped after 5 s.
            if let Ok(joined) = tokio::time::timeout(std::time::Duration::from_secs(5), g).await {
                if let Err(e) = joined.context("the gRPC task failed")? {
                    warn!(error = %e, "the gRPC server stopped with an error");
                }
            } else {
                warn!("gRPC connections still open after 5 s; closing them");
            }
        }
        info!("stopped");
        Ok(())
    }
}

/// The next signal of `signal`; never, without one.
#[cfg(unix)]
async fn received(signal: Option<&mut tokio::signal::unix::Signal>) {
    match signal {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending::<()>().await,
    }
}

/// SIGTERM or SIGINT. The handlers are installed when this is called (not when the future is
/// first polled), so a signal that arrives in between is kept.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).ok();
        let mut interrupt = signal(SignalKind::interrupt()).ok();
        async move {
            tokio::select! {
                () = received(term.as_mut()) => {}
                () = received(interrupt.as_mut()) => {}
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// The bearer token in `api_token_file`: one line of printable ASCII without spaces (also
/// what `config check` checks).
pub fn read_api_token(path: &std::path::Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "api_token_file {}: cannot read the API token",
            path.display()
        )
    })?;
    let token = text.trim();
    anyhow::ensure!(
        !token.is_empty() && token.bytes().all(|b| b.is_ascii_graphic()),
        "api_token_file {}: the token must be one line of printable ASCII without spaces",
        path.display()
    );
    Ok(token.to_owned())
}
