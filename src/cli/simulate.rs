//! `dictmon simulate`: a fake DICT behind the Bridge's gRPC service or DICT's own HTTPS API
//! (`--listen`), or months of realistic history written into a data directory (`--backfill`).

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use chrono::Utc;
use dictmon::domain::PspCategory;
use dictmon::monitor::backfill::{BackfillPlan, backfill, serve_defaults};
use dictmon::source::dict_signature::{ResponseSigner, SIGNING_CERT_FILE};
use dictmon::source::simulator::{Scenario, Simulator, SimulatorService};
use dictmon::source::simulator_dict::{self, Fault, SimulatedDict};
use dictmon::source::tls::{ensure_pki, read_pem};
use dictmon::store::{Month, Store, StoreOptions, segment_bytes};
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

use super::{DEFAULT_DATA_DIR, Outcome, duration};

/// A simulated DICT, for demos and tests.
///
/// `--listen ADDR` serves DICT's policies until stopped, over the Bridge's gRPC service
/// (`--protocol bridge`, mutual TLS when `--tls-dir` is given) or as DICT's own HTTPS API
/// (`--protocol dict`: `GET /api/v2/policies/`, always mutual TLS, 429 when its `POLICIES_LIST`
/// bucket is empty). A throw-away CA, server and client certificate are made in the TLS folder
/// if absent, and the `serve` command that connects is printed. Examples:
/// `dictmon simulate --listen 127.0.0.1:50051 --scenario exhaustion`;
/// `dictmon simulate --listen 127.0.0.1:16422 --protocol dict --tls-dir /tmp/pki`.
///
/// `--backfill DURATION` writes realistic history ending now into a data directory (daily
/// cycle, bursts that drain the anti-scan bucket, a category move halfway), with derived
/// metrics and alerts as `serve` would have stored them. Example:
/// `dictmon simulate --backfill 13mo --data-dir /tmp/demo` fills 13 months in seconds.
#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("mode").required(true).args(["listen", "backfill"])))]
pub struct Args {
    /// Serve the simulator over gRPC on this address (port 0: any free port, printed).
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Protocol: the Bridge's gRPC service, or DICT's own HTTPS API.
    #[arg(long, default_value = "bridge", value_parser = ["bridge", "dict"], requires = "listen")]
    protocol: String,
    /// Folder with ca.pem, server.pem, server-key.pem, client.pem, client-key.pem (made if
    /// absent): serve with mutual TLS. With --protocol dict it defaults to ./dictmon-sim-pki,
    /// and also holds DICT's signing certificate and key (dict-signing.pem,
    /// dict-signing-key.pem), with which every answer is signed.
    #[arg(long, value_name = "DIR", requires = "listen")]
    tls_dir: Option<PathBuf>,
    /// Inject a fault (--protocol dict): STATUS@N answers every N-th request with STATUS, e.g.
    /// 503@4; empty@N answers every N-th listing with no policy (`<Policies/>`);
    /// wrong-name@N answers every N-th single-policy read about another policy; unsigned@N
    /// sends every N-th answer without its signature, tampered@N alters it after signing.
    /// Repeatable.
    #[arg(long, value_name = "FAULT@N", requires = "listen")]
    fault: Vec<Fault>,
    /// Retry-After, in seconds, of injected 503 answers (DICT declares none on 429).
    #[arg(long, value_name = "SECS", default_value_t = 2)]
    retry_after: u64,
    /// Traffic scenario: steady, burst, exhaustion, capacity-change, flapping, malformed.
    #[arg(long, default_value = "steady", requires = "listen")]
    scenario: Scenario,
    /// The simulated participant's category, A to H.
    #[arg(long, default_value = "C")]
    category: char,
    /// How much history to write, ending now: 7d, 12h, 13mo …
    #[arg(long, value_name = "DURATION")]
    backfill: Option<String>,
    /// Data directory to write (created if missing; merged with what it holds).
    #[arg(long, value_name = "DIR", default_value = DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
    /// Seed of the traffic model: the same seed gives the same traffic.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Number of policies (DICT's 29, then repeated with a suffix); backfill only.
    #[arg(long, default_value_t = 29)]
    policies: usize,
    /// Poll interval of the simulated history; backfill only.
    #[arg(long, value_name = "DURATION", default_value = "5m")]
    interval: String,
}

pub fn run(args: &Args) -> anyhow::Result<Outcome> {
    let category = PspCategory::from_char(args.category);
    anyhow::ensure!(category.is_known(), "--category: one letter, A to H");
    match (&args.listen, &args.backfill) {
        (Some(listen), _) if args.protocol == "dict" => listen_dict(args, listen, category),
        (Some(listen), _) => {
            anyhow::ensure!(
                args.fault.is_empty(),
                "--fault works with --protocol dict only"
            );
            listen_grpc(args, listen, category)
        }
        (None, Some(span)) => {
            // `13m` is minutes; a history of minutes is never what was meant.
            if span.ends_with('m') && span.trim_end_matches('m').parse::<u64>().is_ok() {
                anyhow::bail!(
                    "--backfill {span}: \"m\" is minutes; months are \"mo\" (--backfill {span}o), and minutes of history are written \"min\" ({span}in)"
                );
            }
            write_history(args, span)
        }
        (None, None) => anyhow::bail!("give --listen ADDR or --backfill DURATION"),
    }
}

fn listen_grpc(args: &Args, listen: &str, category: PspCategory) -> anyhow::Result<Outcome> {
    super::init_logging("info");
    serve_on(listen, |listener, addr| async move {
        let mut server = Server::builder();
        let scheme = if let Some(dir) = &args.tls_dir {
            let (files, made) = ensure_pki(dir)?;
            let identity = Identity::from_pem(
                read_pem(&files.server_cert, "server certificate")?,
                read_pem(&files.server_key, "server key")?,
            );
            let ca = Certificate::from_pem(read_pem(&files.ca, "CA certificate")?);
            server = server
                .tls_config(ServerTlsConfig::new().identity(identity).client_ca_root(ca))
                .context("TLS configuration")?;
            if made {
                eprintln!("made a throw-away CA and certificates in {}", dir.display());
            }
            eprintln!(
                "connect with: dictmon serve --source bridge --bridge-url https://{addr} --ca-cert {} --client-cert {} --client-key {} --interval 1s",
                files.ca.display(),
                files.client_cert.display(),
                files.client_key.display()
            );
            "https"
        } else {
            eprintln!(
                "connect with: dictmon serve --source bridge --bridge-url http://{addr} --interval 1s"
            );
            "http"
        };
        // The address line goes to stdout, for scripts and tests.
        println!(
            "listening on {scheme}://{addr} (scenario {})",
            args.scenario
        );
        std::io::stdout().flush().ok();
        let sim = Simulator::new(args.seed, args.scenario, category);
        server
            .add_service(SimulatorService::new(sim))
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(listener),
                async {
                    let _ = tokio::signal::ctrl_c().await;
                },
            )
            .await
            .context("gRPC server")?;
        Ok(Outcome::Success)
    })
}

fn listen_dict(args: &Args, listen: &str, category: PspCategory) -> anyhow::Result<Outcome> {
    super::init_logging("info");
    let dir = args
        .tls_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("dictmon-sim-pki"));
    let (files, made) = ensure_pki(&dir)?;
    if made {
        eprintln!("made a throw-away CA and certificates in {}", dir.display());
    }
    let tls = simulator_dict::server_tls(&files)?;
    // Every answer is signed, as DICT signs them.
    let (signer, made) = ResponseSigner::ensure(&dir)?;
    if made {
        eprintln!(
            "made a throw-away DICT signing key and certificate in {}",
            dir.display()
        );
    }
    serve_on(listen, |listener, addr| async move {
        eprintln!(
            "connect with: dictmon serve --source dict --dict-url https://{addr}{} --ispb 12345678 --ca-cert {} --client-cert {} --client-key {} --dict-signing-cert {} --interval 10s",
            simulator_dict::API_PREFIX,
            files.ca.display(),
            files.client_cert.display(),
            files.client_key.display(),
            dir.join(SIGNING_CERT_FILE).display()
        );
        // The address line goes to stdout, for scripts and tests.
        println!(
            "listening on https://{addr}{} (scenario {})",
            simulator_dict::API_PREFIX,
            args.scenario
        );
        std::io::stdout().flush().ok();
        let dict = Arc::new(
            SimulatedDict::new(
                Simulator::new(args.seed, args.scenario, category),
                args.fault.clone(),
                args.retry_after,
            )
            .signed_by(signer),
        );
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let server = tokio::spawn(simulator_dict::serve(listener, tls, dict, stopped));
        let _ = tokio::signal::ctrl_c().await;
        let _ = stop.send(true);
        server.await.context("HTTPS server")?;
        Ok(Outcome::Success)
    })
}

/// Runs `serve` on a new runtime with a listener bound to `listen`.
fn serve_on<F, Fut>(listen: &str, serve: F) -> anyhow::Result<Outcome>
where
    F: FnOnce(tokio::net::TcpListener, std::net::SocketAddr) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Outcome>>,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        let addr = listener.local_addr()?;
        serve(listener, addr).await
    })
}

fn write_history(args: &Args, span: &str) -> anyhow::Result<Outcome> {
    let to = Utc::now();
    let asked = duration::parse(span).context("--backfill")?.before(to)?;
    // History older than retention keeps would be deleted by the first `serve`: it starts at
    // the oldest month kept instead (13 months: this one and the 12 before it).
    let keep = dictmon::config::Config::default().keep_months;
    let oldest_kept = Month::of(to).minus(keep - 1).start().unwrap_or(asked);
    let from = asked.max(oldest_kept);
    if from > asked {
        eprintln!(
            "note: history starts at {} UTC, the first day of the oldest of the {keep} months retention keeps; older history would be deleted by the first `serve`",
            from.format("%Y-%m-%d %H:%M")
        );
    }
    let interval = duration::parse_fixed(&args.interval).context("--interval")?;
    let plan = BackfillPlan {
        from,
        to,
        interval,
        seed: args.seed,
        policies: args.policies,
    };
    let store = Store::open(&args.data_dir, StoreOptions::default())?;
    let started = Instant::now();
    let tty = std::io::stderr().is_terminal();
    let (report, store) = backfill(
        store,
        &plan,
        serve_defaults(interval),
        &mut |month, total| {
            if tty {
                eprintln!("  {month} written ({total} snapshots so far)");
            }
        },
    )?;
    drop(store);
    let bytes = segment_bytes(&args.data_dir)?;
    println!(
        "wrote {} snapshots of {} policies ({} to {}, every {}s) and {} alerts into {} in {:.1} s; segments now {} bytes",
        report.snapshots,
        args.policies,
        from.format("%Y-%m-%d %H:%M"),
        to.format("%Y-%m-%d %H:%M UTC"),
        interval.num_seconds(),
        report.alerts,
        args.data_dir.display(),
        started.elapsed().as_secs_f64(),
        bytes,
    );
    Ok(Outcome::Success)
}
