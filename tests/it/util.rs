//! Shared by the integration tests: synthetic records and the real binary.

use std::process::Command;

use chrono::{DateTime, TimeDelta, Utc};
use dictmon::domain::{
    BucketConfig, PolicyName, PspCategory, RateWindow, Sample, StateRecord, enrich,
};

/// A command running the built `dictmon` binary.
pub fn dictmon() -> Command {
    Command::new(env!("CARGO_BIN_EXE_dictmon"))
}

/// Runs `cmd` and returns its standard output; panics with its standard error if it failed.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// `dictmon simulate --backfill SPAN --data-dir DIR`: realistic history up to now.
pub fn backfill(dir: &std::path::Path, span: &str) {
    run_ok(
        dictmon()
            .args(["simulate", "--backfill", span, "--data-dir"])
            .arg(dir),
    );
}

/// A record of `policy` at `at` with `tokens` of 1,000, derived metrics computed from it alone.
pub fn record(policy: &str, at: DateTime<Utc>, tokens: i64) -> StateRecord {
    let sample = Sample {
        at,
        available_tokens: tokens,
        bucket: BucketConfig {
            capacity: 1000,
            refill_tokens: 100,
            refill_period_secs: 60,
        },
        category: PspCategory::C,
    };
    StateRecord {
        policy: PolicyName::new(policy).expect("valid name"),
        sample,
        enrichment: enrich(&[sample], RateWindow::default()).expect("valid bucket"),
        created_at: at + TimeDelta::milliseconds(5),
    }
}

/// 2026-01-01T00:00:00Z.
pub fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_767_225_600, 0).expect("in range")
}

use std::io::{BufRead, BufReader};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// GET over HTTP: status and body, any status.
pub fn http_get(url: &str) -> Result<(u16, String), String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    let mut response = agent.get(url).call().map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .read_to_string()
        .map_err(|e| e.to_string())?;
    Ok((status, body))
}

/// Polls `cond` every 100 ms until it holds; panics with `what` after `limit`.
pub fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Lines a child writes to a pipe, collected by a thread.
pub fn collect(pipe: impl std::io::Read + Send + 'static) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            sink.lock().expect("log lock").push(line);
        }
    });
    lines
}

/// A running `dictmon serve`.
pub struct Serve {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// `127.0.0.1:PORT` of the gRPC endpoint.
    pub grpc: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Serve {
    /// Starts `dictmon serve --data-dir DIR --listen 127.0.0.1:0 --grpc-listen 127.0.0.1:0
    /// ARGS…` and waits for its first log line, which names the HTTP and gRPC addresses.
    pub fn start(dir: &std::path::Path, args: &[&str]) -> Self {
        Self::start_env(dir, args, &[])
    }

    /// [`Self::start`] with these environment variables set (a faked clock, …).
    pub fn start_env(dir: &std::path::Path, args: &[&str], env: &[(&str, String)]) -> Self {
        let mut child = dictmon()
            .envs(env.iter().map(|(k, v)| (k, v)))
            .arg("serve")
            .arg("--data-dir")
            .arg(dir)
            .args(["--listen", "127.0.0.1:0", "--grpc-listen", "127.0.0.1:0"])
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn serve");
        let log = collect(child.stderr.take().expect("piped"));
        let mut first = None;
        wait_until("serve's first log line", Duration::from_secs(30), || {
            first = log.lock().expect("log").iter().find_map(|l| {
                let at = l.find("HTTP on http://")? + "HTTP on ".len();
                let base = l[at..].split_whitespace().next()?.to_owned();
                let at = l.find("gRPC on ")? + "gRPC on ".len();
                let grpc = l[at..].split(';').next()?.to_owned();
                Some((base, grpc))
            });
            first.is_some()
        });
        let (base, grpc) = first.expect("found");
        Self {
            child,
            base,
            grpc,
            log,
        }
    }

    /// SIGKILL, and wait for it to be gone.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// GET a path.
    pub fn get(&self, path: &str) -> (u16, String) {
        http_get(&format!("{}{path}", self.base)).unwrap_or((0, String::new()))
    }

    /// Everything logged so far.
    pub fn log(&self) -> String {
        self.log.lock().expect("log").join("\n")
    }

    /// SIGTERM; waits for the exit; returns its status and how long it took.
    pub fn terminate(mut self) -> (ExitStatus, Duration) {
        let started = Instant::now();
        let pid = self.child.id().to_string();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status();
        assert!(sent.is_ok_and(|s| s.success()), "kill -TERM {pid}");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return (status, started.elapsed());
            }
            assert!(
                Instant::now() < deadline,
                "serve ignored SIGTERM for 20 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running `dictmon simulate --listen`.
pub struct Simulator {
    child: Child,
    /// `http(s)://127.0.0.1:PORT`.
    pub url: String,
}

impl Simulator {
    /// Starts the gRPC simulator on `listen` with `args`, waits for its address line.
    pub fn start(listen: &str, args: &[&str]) -> Self {
        let mut child = dictmon()
            .args(["simulate", "--listen", listen])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn simulate");
        let out = collect(child.stdout.take().expect("piped"));
        let mut url = None;
        wait_until("the simulator's address", Duration::from_secs(30), || {
            url = out.lock().expect("out").iter().find_map(|l| {
                l.strip_prefix("listening on ")?
                    .split_whitespace()
                    .next()
                    .map(str::to_owned)
            });
            url.is_some()
        });
        Self {
            child,
            url: url.expect("found"),
        }
    }

    /// The `host:port` it listens on.
    pub fn addr(&self) -> String {
        self.url.split("://").nth(1).unwrap_or_default().to_owned()
    }

    /// Kills it (SIGKILL) and waits.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of one sample line of a Prometheus exposition (`name{labels}`), if present.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// The runtime of a stand-in server the test runs in its own process (a webhook receiver,
/// a Pulsar broker, an OTLP collector): one worker thread, so it serves while the test waits.
pub fn stand_in_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime")
}

/// A loopback port the kernel says is free (nothing listens on it when this returns).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// The outbox of the catalog in `data`, in sequence order (empty while there is no catalog).
pub fn outbox(data: &std::path::Path) -> Vec<(u64, dictmon::domain::AlertEvent)> {
    dictmon::store::StoreReader::open(data)
        .expect("reader")
        .catalog()
        .expect("catalog")
        .outbox()
        .expect("outbox")
}

/// libfaketime (Debian package `faketime`, which `.ci/run` installs).
pub const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// The environment that starts a process's clock at `start` (UTC, `YYYY-MM-DD HH:MM:SS`) and
/// lets it run from there; monotonic time (timers, deadlines) is left alone.
pub fn faked_clock(start: &str) -> Vec<(&'static str, String)> {
    faketime(&format!("@{start}"))
}

/// The environment that runs a process under libfaketime's `FAKETIME=spec` (`+400d`: the
/// clock 400 days ahead; `@2026-12-31 23:59:00`: starting then); monotonic time is left alone.
pub fn faketime(spec: &str) -> Vec<(&'static str, String)> {
    assert!(
        std::path::Path::new(LIBFAKETIME).exists(),
        "{LIBFAKETIME} is missing: install the Debian package faketime (.ci/run does)"
    );
    vec![
        ("LD_PRELOAD", LIBFAKETIME.to_owned()),
        ("FAKETIME", spec.to_owned()),
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1".to_owned()),
        ("TZ", "UTC".to_owned()),
    ]
}

/// A file of `packaging/`.
pub fn packaging(file: &str) -> String {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("packaging")
        .join(file)
        .display()
        .to_string()
}

/// A running Alertmanager (Debian's `prometheus-alertmanager`) on a loopback port, killed on
/// drop.
pub struct Alertmanager {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
}

impl Alertmanager {
    /// Starts one with configuration `config` (YAML), its files in `dir`; waits until ready.
    pub fn start(dir: &std::path::Path, config: &str) -> Self {
        let binary = ["/usr/bin/prometheus-alertmanager", "/usr/bin/alertmanager"]
            .into_iter()
            .find(|b| std::path::Path::new(b).exists())
            .expect("Alertmanager is not installed: apt-get install prometheus-alertmanager (.ci/run does)");
        let port = free_port();
        let file = dir.join("alertmanager.yml");
        std::fs::write(&file, config).expect("config");
        let child = Command::new(binary)
            .arg(format!("--config.file={}", file.display()))
            .arg(format!("--storage.path={}", dir.join("am-data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            // No clustering: nothing listens beyond the one loopback port.
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start alertmanager");
        let am = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        wait_until("Alertmanager ready", Duration::from_secs(30), || {
            http_get(&format!("{}/-/ready", am.url)).is_ok_and(|(s, _)| s == 200)
        });
        am
    }

    /// The active alerts of `GET /api/v2/alerts`.
    pub fn alerts(&self) -> Vec<serde_json::Value> {
        let (status, body) = http_get(&format!("{}/api/v2/alerts", self.url)).expect("GET");
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).expect("JSON")
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every sink's delivery progress in the catalog of `data`, by sink name.
pub fn sink_progress(
    data: &std::path::Path,
) -> std::collections::HashMap<String, dictmon::store::catalog::SinkProgress> {
    dictmon::store::StoreReader::open(data)
        .expect("reader")
        .catalog()
        .expect("catalog")
        .sinks()
        .expect("sinks")
        .into_iter()
        .collect()
}
