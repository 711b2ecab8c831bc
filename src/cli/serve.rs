//! `dictmon serve`: the appliance.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use dictmon::config::{self, Config, SourceConfig};
use dictmon::domain::{RateWindow, ValidationLimits};
use dictmon::monitor::cycle::{Monitor, MonitorConfig};
use dictmon::source::Source;
use dictmon::source::bridge::{BridgeConfig, BridgeSource};
use dictmon::source::simulator::{Scenario, Simulator, SimulatorSource};
use dictmon::store::{Store, StoreOptions};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{info, warn};

use super::Outcome;

/// Run the appliance: poll every policy, keep history, raise alerts, serve metrics.
///
/// With no config file and no --source it runs on the built-in DICT simulator (scenario
/// `steady`, with a near-exhaustion episode every 10 minutes), keeps data in ./dictmon-data and
/// serves HTTP on 127.0.0.1:9464 — try `--interval 5s` and open /api/v1/policies and /metrics
/// there. Command-line flags override the file.
/// SIGTERM or Ctrl-C: the cycle in flight finishes, then it exits.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// TOML configuration (commented example: packaging/dictmon.toml).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Data directory.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// HTTP listen address (port 0: any free port, printed in the first log line).
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Where policy states come from.
    #[arg(long, value_parser = ["simulator", "bridge"])]
    source: Option<String>,
    /// The Bridge's gRPC address, http://… or https://… (with --source bridge).
    #[arg(long, value_name = "URL")]
    bridge_url: Option<String>,
    /// CA bundle that signs the Bridge's certificate (PEM).
    #[arg(long, value_name = "PEM")]
    ca_cert: Option<PathBuf>,
    /// Client certificate for mutual TLS (PEM).
    #[arg(long, value_name = "PEM")]
    client_cert: Option<PathBuf>,
    /// Its private key (PEM).
    #[arg(long, value_name = "PEM")]
    client_key: Option<PathBuf>,
    /// Poll interval: 5s, 1m, 5m …
    #[arg(long, value_name = "DURATION")]
    interval: Option<String>,
    /// Simulator scenario (steady, burst, exhaustion, capacity-change, flapping, malformed).
    #[arg(long)]
    scenario: Option<Scenario>,
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
            .map_err(anyhow::Error::msg)
            .context("--interval")?;
        anyhow::ensure!(
            c.interval >= Duration::from_secs(1),
            "--interval must be at least 1s"
        );
    }
    match args.source.as_deref() {
        Some("bridge") => {
            let url = args
                .bridge_url
                .clone()
                .or_else(|| match &c.source {
                    SourceConfig::Bridge(b) => Some(b.url.clone()),
                    SourceConfig::Simulator { .. } => None,
                })
                .context(
                    "--source bridge needs --bridge-url (or [source.bridge] url in the config)",
                )?;
            c.source = SourceConfig::Bridge(BridgeConfig {
                url,
                ca_cert: None,
                client_cert: None,
                client_key: None,
                timeout: c.timeout,
                ispb: String::new(),
            });
        }
        Some("simulator") => {
            c.source = SourceConfig::Simulator {
                scenario: Scenario::Steady,
                seed: 1,
                category: dictmon::domain::PspCategory::C,
            };
        }
        _ => {}
    }
    match &mut c.source {
        SourceConfig::Bridge(b) => {
            if let Some(u) = &args.bridge_url {
                b.url.clone_from(u);
            }
            for (flag, slot) in [
                (&args.ca_cert, &mut b.ca_cert),
                (&args.client_cert, &mut b.client_cert),
                (&args.client_key, &mut b.client_key),
            ] {
                if flag.is_some() {
                    slot.clone_from(flag);
                }
            }
            b.timeout = c.timeout;
        }
        SourceConfig::Simulator { scenario, .. } => {
            if let Some(s) = args.scenario {
                *scenario = s;
            }
        }
    }
    Ok(())
}

pub fn run(args: &Args) -> anyhow::Result<Outcome> {
    let mut config = match &args.config {
        Some(path) => config::load(path)?,
        None => Config::default(),
    };
    apply(args, &mut config)?;
    super::init_logging(&config.log_level);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(config))?;
    Ok(Outcome::Success)
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let listener = TcpListener::bind(&config.listen).await.with_context(|| {
        format!(
            "cannot listen on {}; is another dictmon running? choose another address with --listen",
            config.listen
        )
    })?;
    let http = listener.local_addr().context("listening address")?;
    let source_text = match &config.source {
        SourceConfig::Simulator { scenario, .. } => {
            format!("the built-in simulator (scenario {scenario})")
        }
        SourceConfig::Bridge(b) => format!("the Bridge at {}", b.url),
    };
    info!(
        "dictmon {} polling {source_text} every {:?}; data in {}; HTTP on http://{http} ({})",
        env!("CARGO_PKG_VERSION"),
        config.interval,
        config.data_dir.display(),
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
    };
    match &config.source {
        SourceConfig::Simulator {
            scenario,
            seed,
            category,
        } => {
            let source = SimulatorSource::new(Simulator::new(*seed, *scenario, *category));
            run_with(source, store, monitor_config, listener).await
        }
        SourceConfig::Bridge(b) => {
            let source = BridgeSource::new(b)?;
            run_with(source, store, monitor_config, listener).await
        }
    }
}

async fn run_with<S: Source + 'static>(
    source: S,
    store: Store,
    config: MonitorConfig,
    listener: TcpListener,
) -> anyhow::Result<()> {
    let (monitor, readers) = Monitor::new(source, store, config)?;
    let (stop, stopped) = watch::channel(false);
    let http = tokio::spawn(dictmon::http::serve(
        listener,
        Arc::clone(&readers.published),
        Arc::clone(&readers.catalog),
        stopped.clone(),
    ));
    let monitor = tokio::spawn(monitor.run(stopped));
    shutdown_signal().await;
    info!("stopping: finishing the cycle in flight");
    let _ = stop.send(true);
    monitor.await.context("the monitor task failed")?;
    http.await.context("the HTTP task failed")?;
    info!("stopped");
    Ok(())
}

/// SIGTERM or SIGINT.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            () = async {
                match term.as_mut() {
                    Some(t) => { t.recv().await; }
                    None => std::future::pending::<()>().await,
                }
            } => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
