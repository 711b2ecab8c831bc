//! The configuration file (TOML): every option with its default, and validation whose errors
//! name the file, line, column and key. `packaging/dictmon.toml` is the commented example.
//!
//! May use: `domain` (threshold checks), `source` (scenario names), `notify` (sink settings),
//! `trace` (the OTLP settings), serde, toml.
//!
//! Invariants: unknown keys are errors (a typo must not silently fall back to a default);
//! a [`Config`] that was returned passed every check.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::TimeDelta;
use serde::Deserialize;
use toml::Spanned;

use crate::domain::{PolicyName, PspCategory, Thresholds};
use crate::notify::{
    AlertmanagerConfig, FileSinkConfig, NotifyConfig, PulsarConfig, SinkConfig, SinkKind,
    WebhookConfig,
};
use crate::source::simulator::{DICT_POLICIES, Scenario};

/// A configuration error, located; with the other problems found in the same file (every
/// one is reported, not only the first).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The file (or `<command line>`).
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What is wrong and what to do, starting with the key.
    pub message: String,
    /// The other problems of the same file, in file order.
    pub also: Vec<ConfigError>,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.column, self.message
        )?;
        for other in &self.also {
            write!(f, "\n{other}")?;
        }
        Ok(())
    }
}

impl ConfigError {
    /// Every problem, this one first.
    pub fn all(&self) -> impl Iterator<Item = &ConfigError> {
        std::iter::once(self).chain(&self.also)
    }
}

/// The problems found so far while checking a file.
#[derive(Default)]
struct Problems(Vec<ConfigError>);

impl Problems {
    /// Keeps a problem.
    fn push(&mut self, e: ConfigError) {
        self.0.push(e);
    }

    /// The value, or none with its error kept.
    fn keep<T>(&mut self, r: Result<T, ConfigError>) -> Option<T> {
        r.map_err(|e| self.0.push(e)).ok()
    }

    /// `Ok(value)` if no problem was found, else every problem, in file order.
    fn into_result<T>(mut self, value: T) -> Result<T, ConfigError> {
        self.0.sort_by_key(|e| (e.line, e.column));
        let mut all = self.0.into_iter();
        match all.next() {
            None => Ok(value),
            Some(mut first) => {
                first.also.extend(all);
                Err(first)
            }
        }
    }
}

/// Where polls go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceConfig {
    /// The built-in simulator.
    Simulator {
        /// Traffic scenario.
        scenario: Scenario,
        /// Seed of the traffic model.
        seed: u64,
        /// The simulated participant's category.
        category: PspCategory,
        /// Buckets simulated: DICT's table, repeated past its end.
        policies: usize,
    },
    /// A Bridge over gRPC.
    Bridge(crate::source::bridge::BridgeConfig),
    /// DICT's own HTTPS API.
    Dict(crate::source::dict::DictConfig),
}

impl SourceConfig {
    /// For logs: what the source is and where.
    pub fn describe(&self) -> String {
        match self {
            Self::Simulator { scenario, .. } => {
                format!("the built-in simulator (scenario {scenario})")
            }
            Self::Bridge(b) => format!("the Bridge at {}", b.url),
            Self::Dict(d) => format!("DICT at {} as ISPB {}", d.url, d.ispb),
        }
    }

    /// The shortest poll interval the source allows (DICT: `POLICIES_LIST` sustains one
    /// listing per 10 s).
    pub fn min_interval(&self) -> Duration {
        match self {
            Self::Dict(_) => crate::source::dict::POLICIES_LIST_SPACING,
            _ => Duration::from_secs(1),
        }
    }
}

/// The whole configuration, defaults applied.
#[derive(Clone, Debug)]
pub struct Config {
    /// The data directory.
    pub data_dir: PathBuf,
    /// HTTP listen address.
    pub listen: String,
    /// gRPC listen address (`WatchAlerts`); empty: no gRPC endpoint.
    pub grpc_listen: String,
    /// A file holding the bearer token that `/api/*` requires; none: no token.
    pub api_token_file: Option<PathBuf>,
    /// Alert-event sinks.
    pub notify: NotifyConfig,
    /// Poll interval.
    pub interval: Duration,
    /// A policy missing from this many listings in a row has left DICT's (default 3).
    pub vanished_after_polls: u32,
    /// Up to this much random delay per interval.
    pub jitter: Duration,
    /// Deadline of one call to the source.
    pub timeout: Duration,
    /// Smoothing window of the consumption rate.
    pub rate_window: TimeDelta,
    /// fsync after every cycle.
    pub fsync: bool,
    /// The source.
    pub source: SourceConfig,
    /// Default thresholds.
    pub thresholds: Thresholds,
    /// Per-policy thresholds.
    pub per_policy: HashMap<PolicyName, Thresholds>,
    /// Months kept.
    pub keep_months: u32,
    /// Accepted lead of DICT's clock over ours.
    pub max_future_skew: TimeDelta,
    /// Log filter (`info`, `debug`, `dictmon=debug,warn` …).
    pub log_level: String,
    /// Traces over OTLP (`[telemetry.otlp]`); none: off.
    pub otlp: Option<crate::trace::OtlpConfig>,
    /// Whether the file was given (false: all defaults).
    pub from_file: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("dictmon-data"),
            listen: "127.0.0.1:9464".into(),
            // Off unless configured: a demo `serve` needs one free port, not two. The packaged
            // configuration turns it on at 127.0.0.1:9465.
            grpc_listen: String::new(),
            api_token_file: None,
            notify: NotifyConfig {
                sinks: Vec::new(),
                max_backoff: Duration::from_secs(60),
            },
            interval: Duration::from_secs(300),
            vanished_after_polls: 3,
            jitter: Duration::ZERO,
            timeout: Duration::from_secs(10),
            rate_window: TimeDelta::minutes(15),
            fsync: true,
            source: SourceConfig::Simulator {
                scenario: Scenario::Steady,
                seed: 1,
                category: PspCategory::C,
                policies: DICT_POLICIES,
            },
            thresholds: Thresholds::default(),
            per_policy: HashMap::new(),
            keep_months: 13,
            max_future_skew: TimeDelta::minutes(5),
            log_level: "info".into(),
            otlp: None,
            from_file: None,
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    listen: Option<Spanned<String>>,
    grpc_listen: Option<Spanned<String>>,
    api_token_file: Option<PathBuf>,
    interval: Option<Spanned<String>>,
    vanished_after_polls: Option<Spanned<u32>>,
    jitter: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    rate_window: Option<Spanned<String>>,
    fsync: Option<bool>,
    source: Option<SourceSection>,
    thresholds: Option<ThresholdSection>,
    retention: Option<RetentionSection>,
    validation: Option<ValidationSection>,
    log: Option<LogSection>,
    notify: Option<NotifySection>,
    telemetry: Option<TelemetrySection>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TelemetrySection {
    otlp: Option<OtlpSection>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OtlpSection {
    endpoint: Spanned<String>,
    ca_cert: Option<PathBuf>,
    client_cert: Option<PathBuf>,
    client_key: Option<PathBuf>,
    timeout: Option<Spanned<String>>,
    instance: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NotifySection {
    max_backoff: Option<Spanned<String>>,
    alertmanager: Option<Vec<AlertmanagerSection>>,
    webhook: Option<Vec<WebhookSection>>,
    file: Option<Vec<FileSection>>,
    pulsar: Option<Vec<PulsarSection>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PulsarSection {
    name: Option<Spanned<String>>,
    url: Spanned<String>,
    topic: Spanned<String>,
    token_file: Option<PathBuf>,
    ca_cert: Option<PathBuf>,
    client_cert: Option<PathBuf>,
    client_key: Option<PathBuf>,
    timeout: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AlertmanagerSection {
    name: Option<Spanned<String>>,
    url: Spanned<String>,
    ca_cert: Option<PathBuf>,
    resend_interval: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    instance: Option<Spanned<String>>,
    job: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WebhookSection {
    name: Option<Spanned<String>>,
    url: Spanned<String>,
    bearer_token_file: Option<PathBuf>,
    hmac_secret_file: Option<PathBuf>,
    ca_cert: Option<PathBuf>,
    timeout: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSection {
    name: Option<Spanned<String>>,
    path: Spanned<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SourceSection {
    kind: Option<Spanned<String>>,
    simulator: Option<SimulatorSection>,
    bridge: Option<BridgeSection>,
    dict: Option<DictSection>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DictSection {
    url: Option<Spanned<String>>,
    ispb: Option<Spanned<String>>,
    ca_cert: Option<PathBuf>,
    client_cert: Option<PathBuf>,
    client_key: Option<PathBuf>,
    signing_cert: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SimulatorSection {
    scenario: Option<Spanned<String>>,
    seed: Option<u64>,
    category: Option<Spanned<String>>,
    policies: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BridgeSection {
    url: Option<Spanned<String>>,
    ca_cert: Option<PathBuf>,
    client_cert: Option<PathBuf>,
    client_key: Option<PathBuf>,
    ispb: Option<String>,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct ThresholdSection {
    warning_percent: Option<Spanned<f64>>,
    critical_percent: Option<Spanned<f64>>,
    hysteresis_points: Option<Spanned<f64>>,
    predictive_horizon: Option<Spanned<String>>,
    policies: Option<BTreeMap<Spanned<String>, ThresholdSection>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RetentionSection {
    keep_months: Option<Spanned<u32>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ValidationSection {
    max_future_skew: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LogSection {
    level: Option<Spanned<String>>,
}

/// Reads and checks a configuration file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.display().to_string(),
        line: 1,
        column: 1,
        message: format!("cannot read: {e}"),
        also: Vec::new(),
    })?;
    let mut config = parse(&text, &path.display().to_string())?;
    config.from_file = Some(path.to_owned());
    Ok(config)
}

/// Parses and checks configuration text; `file` names it in errors.
pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
    let loc = Locator { text, file };
    let raw: FileConfig = toml::from_str(text).map_err(|e| {
        let offset = e.span().map_or(0, |s| s.start);
        loc.at(offset, e.message().trim().to_owned())
    })?;
    let spanned_err =
        |span: std::ops::Range<usize>, key: &str, what: String| loc.key(span, key, what);
    let duration = |v: &Option<Spanned<String>>, key: &str, default: Duration| {
        v.as_ref().map_or(Ok(default), |s| {
            parse_duration(s.get_ref()).map_err(|e| spanned_err(s.span(), key, e))
        })
    };
    let span_of = |v: &Option<Spanned<String>>| v.as_ref().map_or(0..0, Spanned::span);
    let mut problems = Problems::default();
    let mut c = Config::default();
    if let Some(d) = raw.data_dir {
        c.data_dir = d;
    }
    listen_addresses(
        raw.listen,
        raw.grpc_listen,
        &mut c,
        &mut problems,
        &spanned_err,
    );
    c.api_token_file = raw.api_token_file;
    if let Some(i) = problems.keep(duration(&raw.interval, "interval", c.interval)) {
        c.interval = i;
        let checked = check_interval(c.interval);
        problems.keep(checked.map_err(|e| spanned_err(span_of(&raw.interval), "interval", e)));
    }
    if let Some(n) = at_least_one(
        raw.vanished_after_polls,
        "vanished_after_polls",
        &mut problems,
        &spanned_err,
    ) {
        c.vanished_after_polls = n;
    }
    if let Some(j) = problems.keep(duration(&raw.jitter, "jitter", c.jitter)) {
        c.jitter = j;
        let checked = check_jitter(c.jitter, c.interval);
        problems.keep(checked.map_err(|e| spanned_err(span_of(&raw.jitter), "jitter", e)));
    }
    if let Some(t) = problems.keep(duration(&raw.timeout, "timeout", c.timeout)) {
        c.timeout = t;
    }
    if let Some(w) = problems.keep(duration(
        &raw.rate_window,
        "rate_window",
        Duration::from_secs(900),
    )) {
        c.rate_window = to_delta(w);
    }
    c.fsync = raw.fsync.unwrap_or(c.fsync);
    if let Some(src) = raw.source
        && let Some(source) = problems.keep(source(src, c.timeout, &loc))
    {
        c.source = source;
    }
    let least = c.source.min_interval();
    if c.interval < least {
        problems.push(spanned_err(
            span_of(&raw.interval),
            "interval",
            format!(
                "must be at least {}s with this source: DICT's POLICIES_LIST bucket refills 6 listings a minute, and a shorter poll would drain it",
                least.as_secs()
            ),
        ));
    }
    if let Some(t) = &raw.thresholds {
        all_thresholds(t, &mut c, &mut problems, &spanned_err);
    }
    let keep = raw.retention.and_then(|r| r.keep_months);
    if let Some(n) = at_least_one(keep, "retention.keep_months", &mut problems, &spanned_err) {
        c.keep_months = n;
    }
    if let Some(v) = raw.validation
        && let Some(skew) = problems.keep(duration(
            &v.max_future_skew,
            "validation.max_future_skew",
            Duration::from_secs(300),
        ))
    {
        c.max_future_skew = to_delta(skew);
    }
    log_and_traces(raw.log, raw.telemetry, &mut c, &mut problems, &loc);
    if let Some(n) = raw.notify
        && let Some(notify) = problems.keep(notify(n, c.notify.max_backoff, &c.listen, &loc))
    {
        c.notify = notify;
    }
    problems.into_result(c)
}

/// `[log]` and `[telemetry]`: what dictmon tells of itself.
fn log_and_traces(
    log: Option<LogSection>,
    telemetry: Option<TelemetrySection>,
    c: &mut Config,
    problems: &mut Problems,
    loc: &Locator<'_>,
) {
    if let Some(level) = log.and_then(|l| l.level) {
        match check_log_level(level.get_ref()) {
            Ok(()) => c.log_level = level.into_inner(),
            Err(e) => problems.push(loc.key(level.span(), "log.level", e)),
        }
    }
    let traces = telemetry.and_then(|t| t.otlp);
    c.otlp = traces.and_then(|o| problems.keep(otlp(o, &c.listen, loc)));
}

/// The URL and TLS files of a gRPC server (the Bridge, the OTLP collector), checked as
/// [`crate::source::bridge::grpc_endpoint`] will use them: `http://` or `https://`; https needs
/// `ca_cert`, the CA that signs `server`'s certificate; `client_cert` and `client_key` go
/// together. Errors point at the URL.
fn check_grpc_url(
    url: &Spanned<String>,
    key: &str,
    server: &str,
    [ca_cert, client_cert, client_key]: [&Option<PathBuf>; 3],
    loc: &Locator<'_>,
) -> Result<(), ConfigError> {
    let text = url.get_ref();
    let https = text.starts_with("https://");
    let problem = if !https && !text.starts_with("http://") {
        "must start with http:// or https://".to_owned()
    } else if https && ca_cert.is_none() {
        format!("is https, so ca_cert (the CA that signs the {server}'s certificate) is required")
    } else if client_cert.is_some() != client_key.is_some() {
        "client_cert and client_key go together: set both for mutual TLS, or neither".to_owned()
    } else {
        return Ok(());
    };
    Err(loc.key(url.span(), key, problem))
}

/// `[telemetry.otlp]`: where traces go.
fn otlp(
    o: OtlpSection,
    listen: &str,
    loc: &Locator<'_>,
) -> Result<crate::trace::OtlpConfig, ConfigError> {
    check_grpc_url(
        &o.endpoint,
        "telemetry.otlp.endpoint",
        "collector",
        [&o.ca_cert, &o.client_cert, &o.client_key],
        loc,
    )?;
    let timeout = match &o.timeout {
        Some(t) => parse_duration(t.get_ref())
            .map_err(|e| loc.key(t.span(), "telemetry.otlp.timeout", e))?,
        None => Duration::from_secs(10),
    };
    let instance = match o.instance {
        Some(i) if i.get_ref().trim().is_empty() => {
            return Err(loc.key(i.span(), "telemetry.otlp.instance", "must not be empty"));
        }
        Some(i) => i.into_inner(),
        None => default_instance(listen),
    };
    Ok(crate::trace::OtlpConfig {
        endpoint: o.endpoint.into_inner(),
        ca_cert: o.ca_cert,
        client_cert: o.client_cert,
        client_key: o.client_key,
        timeout,
        instance,
    })
}

/// The `instance` label of dictmon's own alerts when the configuration names none: this
/// machine's name and the port of `listen`, which is what a Prometheus scraping the machine by
/// name calls it.
fn default_instance(listen: &str) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    let port = listen.rsplit_once(':').map_or("9464", |(_, p)| p);
    format!("{host}:{port}")
}

/// A count that must be at least 1, if given; a problem otherwise.
fn at_least_one(
    value: Option<Spanned<u32>>,
    key: &str,
    problems: &mut Problems,
    err: &dyn Fn(std::ops::Range<usize>, &str, String) -> ConfigError,
) -> Option<u32> {
    let v = value?;
    if *v.get_ref() == 0 {
        problems.push(err(v.span(), key, "must be at least 1".into()));
        return None;
    }
    Some(v.into_inner())
}

/// `listen` and `grpc_listen` (which may be `off`): addresses `serve` can bind.
fn listen_addresses(
    listen: Option<Spanned<String>>,
    grpc_listen: Option<Spanned<String>>,
    c: &mut Config,
    problems: &mut Problems,
    err: &dyn Fn(std::ops::Range<usize>, &str, String) -> ConfigError,
) {
    for (value, key, target) in [
        (listen, "listen", &mut c.listen),
        (grpc_listen, "grpc_listen", &mut c.grpc_listen),
    ] {
        if let Some(v) = value {
            let off = key == "grpc_listen" && (v.get_ref().is_empty() || v.get_ref() == "off");
            if !off && let Err(e) = check_address(v.get_ref()) {
                problems.push(err(v.span(), key, e));
            }
            *target = v.into_inner();
        }
    }
}

/// `[thresholds]` and its `[thresholds.policies.NAME]` sections, every problem kept.
fn all_thresholds(
    t: &ThresholdSection,
    c: &mut Config,
    problems: &mut Problems,
    err: &dyn Fn(std::ops::Range<usize>, &str, String) -> ConfigError,
) {
    if let Some(th) = problems.keep(thresholds(t, Thresholds::default(), "thresholds", err)) {
        c.thresholds = th;
    }
    for (name, section) in t.policies.iter().flatten() {
        let policy = problems.keep(PolicyName::new(name.get_ref()).map_err(|e| {
            err(
                name.span(),
                "thresholds.policies",
                format!("{:?}: {e}", name.get_ref()),
            )
        }));
        let key = format!("thresholds.policies.{}", name.get_ref());
        let th = problems.keep(thresholds(section, c.thresholds, &key, err));
        if let (Some(policy), Some(th)) = (policy, th) {
            c.per_policy.insert(policy, th);
        }
    }
}

/// A duration as it is written in a configuration file: `5m`, `1h`, `30s`, `500ms`.
pub fn format_duration(d: Duration) -> String {
    let (s, ms) = (d.as_secs(), d.subsec_millis());
    match (s, ms) {
        (0, ms) => format!("{ms}ms"),
        (s, 0) if s % 3600 == 0 => format!("{}h", s / 3600),
        (s, 0) if s % 60 == 0 => format!("{}m", s / 60),
        (s, 0) => format!("{s}s"),
        _ => format!("{}ms", d.as_millis()),
    }
}

/// A listen address must be `HOST:PORT` that resolves here (`127.0.0.1:9464`, `[::1]:9464`,
/// `localhost:9464`), as `serve` binds it.
pub fn check_address(text: &str) -> Result<(), String> {
    use std::net::ToSocketAddrs;
    match text.to_socket_addrs().map(|mut a| a.next()) {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(format!("{text:?} resolves to no address")),
        Err(e) => Err(format!(
            "{text:?} is not an address to listen on ({e}); write HOST:PORT, e.g. 127.0.0.1:9464"
        )),
    }
}

/// The `[notify]` section and its `[[notify.alertmanager]]`, `[[notify.webhook]]`,
/// `[[notify.file]]` sinks.
fn notify(
    n: NotifySection,
    max_backoff: Duration,
    listen: &str,
    loc: &Locator<'_>,
) -> Result<NotifyConfig, ConfigError> {
    let duration = |v: &Option<Spanned<String>>, key: &str, default: Duration| {
        v.as_ref()
            .map_or(Ok(default), |s| match parse_duration(s.get_ref()) {
                Ok(d) if d >= Duration::from_secs(1) => Ok(d),
                Ok(_) => Err(loc.key(s.span(), key, "must be at least 1s")),
                Err(e) => Err(loc.key(s.span(), key, e)),
            })
    };
    let url = |u: &Spanned<String>, key: &str| {
        let text = u.get_ref();
        if text.starts_with("http://") || text.starts_with("https://") {
            Ok(text.clone())
        } else {
            Err(loc.key(u.span(), key, "must start with http:// or https://"))
        }
    };
    let label = |v: &Option<Spanned<String>>, key: &str| match v {
        Some(s) if s.get_ref().trim().is_empty() => {
            Err(loc.key(s.span(), key, "must not be empty"))
        }
        Some(s) => Ok(Some(s.get_ref().clone())),
        None => Ok(None),
    };
    let timeout = Duration::from_secs(10);
    let mut out = NotifyConfig {
        sinks: Vec::new(),
        max_backoff: duration(&n.max_backoff, "notify.max_backoff", max_backoff)?,
    };
    // (name as written, its span, where the sink is) for the naming checks below.
    let mut named: Vec<(Option<Spanned<String>>, std::ops::Range<usize>)> = Vec::new();
    for a in n.alertmanager.unwrap_or_default() {
        let key = "notify.alertmanager";
        out.sinks.push(SinkConfig {
            name: String::new(),
            kind: SinkKind::Alertmanager(AlertmanagerConfig {
                url: url(&a.url, &format!("{key}.url"))?,
                ca_cert: a.ca_cert,
                resend_interval: duration(
                    &a.resend_interval,
                    &format!("{key}.resend_interval"),
                    Duration::from_secs(60),
                )?,
                timeout: duration(&a.timeout, &format!("{key}.timeout"), timeout)?,
                instance: label(&a.instance, &format!("{key}.instance"))?
                    .unwrap_or_else(|| default_instance(listen)),
                job: label(&a.job, &format!("{key}.job"))?.unwrap_or_else(|| "dictmon".into()),
            }),
        });
        named.push((a.name, a.url.span()));
    }
    for w in n.webhook.unwrap_or_default() {
        let key = "notify.webhook";
        out.sinks.push(SinkConfig {
            name: String::new(),
            kind: SinkKind::Webhook(WebhookConfig {
                url: url(&w.url, &format!("{key}.url"))?,
                bearer_token_file: w.bearer_token_file,
                hmac_secret_file: w.hmac_secret_file,
                ca_cert: w.ca_cert,
                timeout: duration(&w.timeout, &format!("{key}.timeout"), timeout)?,
            }),
        });
        named.push((w.name, w.url.span()));
    }
    for f in n.file.unwrap_or_default() {
        out.sinks.push(SinkConfig {
            name: String::new(),
            kind: SinkKind::File(FileSinkConfig {
                path: f.path.get_ref().clone(),
            }),
        });
        named.push((f.name, f.path.span()));
    }
    for p in n.pulsar.unwrap_or_default() {
        let name = p.name.clone();
        let span = p.url.span();
        out.sinks
            .push(pulsar_sink(p, loc, &|v, key| duration(v, key, timeout))?);
        named.push((name, span));
    }
    name_sinks(&mut out.sinks, named, loc)?;
    Ok(out)
}

/// Reads a duration key of a sink section, its default applied.
type SinkDuration<'a> =
    dyn Fn(&Option<Spanned<String>>, &str) -> Result<Duration, ConfigError> + 'a;

/// A `[[notify.pulsar]]` sink.
fn pulsar_sink(
    p: PulsarSection,
    loc: &Locator<'_>,
    duration: &SinkDuration<'_>,
) -> Result<SinkConfig, ConfigError> {
    let key = "notify.pulsar";
    crate::notify::producer_url(p.url.get_ref(), p.topic.get_ref()).map_err(|e| {
        let span = if e.starts_with(&format!("{:?}", p.url.get_ref())) {
            p.url.span()
        } else {
            p.topic.span()
        };
        loc.key(span, key, e)
    })?;
    if p.client_cert.is_some() != p.client_key.is_some() {
        return Err(loc.key(
            p.url.span(),
            key,
            "client_cert and client_key go together: both, or neither",
        ));
    }
    Ok(SinkConfig {
        name: String::new(),
        kind: SinkKind::Pulsar(PulsarConfig {
            url: p.url.get_ref().clone(),
            topic: p.topic.get_ref().clone(),
            token_file: p.token_file,
            ca_cert: p.ca_cert,
            client_cert: p.client_cert,
            client_key: p.client_key,
            timeout: duration(&p.timeout, &format!("{key}.timeout"))?,
        }),
    })
}

/// Gives every sink its name: the one written, or its kind when it is the only one of its
/// kind. Names must be unique and fit a metric label.
fn name_sinks(
    sinks: &mut [SinkConfig],
    named: Vec<(Option<Spanned<String>>, std::ops::Range<usize>)>,
    loc: &Locator<'_>,
) -> Result<(), ConfigError> {
    let kinds: Vec<&'static str> = sinks.iter().map(|s| s.kind.label()).collect();
    let mut seen = std::collections::HashSet::new();
    for ((sink, (name, span)), kind) in sinks.iter_mut().zip(named).zip(&kinds) {
        let key = format!("notify.{kind}.name");
        let (text, span) = match name {
            Some(n) => (n.get_ref().clone(), n.span()),
            None if kinds.iter().filter(|k| *k == kind).count() == 1 => ((*kind).to_owned(), span),
            None => {
                return Err(loc.key(
                    span,
                    &key,
                    format!("missing: there are several [[notify.{kind}]] sinks, so each needs a name = \"…\" (its progress and metrics are kept under it)"),
                ));
            }
        };
        if text.is_empty()
            || !text
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(loc.key(
                span,
                &key,
                format!("{text:?}: use letters, digits, '-', '_' and '.' only"),
            ));
        }
        if !seen.insert(text.clone()) {
            return Err(loc.key(
                span,
                &key,
                format!("{text:?} names two sinks; names must be unique"),
            ));
        }
        sink.name = text;
    }
    Ok(())
}

/// The `[source.simulator]` section.
fn simulator(
    sim: Option<&SimulatorSection>,
    loc: &Locator<'_>,
) -> Result<SourceConfig, ConfigError> {
    let spanned_err =
        |span: std::ops::Range<usize>, key: &str, what: String| loc.key(span, key, what);
    let scenario = match sim.and_then(|s| s.scenario.as_ref()) {
        Some(s) => s
            .get_ref()
            .parse()
            .map_err(|e: String| spanned_err(s.span(), "source.simulator.scenario", e))?,
        None => Scenario::Steady,
    };
    let category = match sim.and_then(|s| s.category.as_ref()) {
        Some(s) => PspCategory::parse(s.get_ref())
            .ok()
            .filter(|c| c.is_known())
            .ok_or_else(|| {
                spanned_err(
                    s.span(),
                    "source.simulator.category",
                    "one letter, A to H".into(),
                )
            })?,
        None => PspCategory::C,
    };
    let policies = match sim.and_then(|s| s.policies.as_ref()) {
        Some(n) => usize::try_from(*n.get_ref())
            .ok()
            .filter(|n| (1..=100_000).contains(n))
            .ok_or_else(|| {
                spanned_err(
                    n.span(),
                    "source.simulator.policies",
                    "a number of policies from 1 to 100000".into(),
                )
            })?,
        None => DICT_POLICIES,
    };
    Ok(SourceConfig::Simulator {
        scenario,
        seed: sim.and_then(|s| s.seed).unwrap_or(1),
        category,
        policies,
    })
}

/// The `[source]` section.
fn source(
    src: SourceSection,
    timeout: Duration,
    loc: &Locator<'_>,
) -> Result<SourceConfig, ConfigError> {
    let at = |offset: usize, message: String| loc.at(offset, message);
    let spanned_err =
        |span: std::ops::Range<usize>, key: &str, what: String| loc.key(span, key, what);
    // A [source.bridge] or [source.dict] section without `kind` would poll the simulator
    // while the operator believes the real source is configured.
    if src.kind.is_none() {
        for (present, name) in [
            (src.bridge.is_some(), "bridge"),
            (src.dict.is_some(), "dict"),
        ] {
            if present {
                return Err(at(
                    0,
                    format!(
                        "source.kind: missing, so the built-in simulator would be polled although [source.{name}] is configured; add kind = \"{name}\" to [source]"
                    ),
                ));
            }
        }
    }
    let kind = src
        .kind
        .as_ref()
        .map_or("simulator", |k| k.get_ref().as_str());
    Ok(match kind {
        "simulator" => simulator(src.simulator.as_ref(), loc)?,
        "bridge" => {
            let b = src.bridge.ok_or_else(|| {
                let span = src.kind.as_ref().map_or(0..0, Spanned::span);
                spanned_err(
                    span,
                    "source.kind",
                    "is bridge, but there is no [source.bridge] section with its url".into(),
                )
            })?;
            let url = b.url.ok_or_else(|| {
                at(
                    0,
                    "source.bridge.url: missing; e.g. url = \"https://bridge.internal:50051\""
                        .into(),
                )
            })?;
            check_grpc_url(
                &url,
                "source.bridge.url",
                "Bridge",
                [&b.ca_cert, &b.client_cert, &b.client_key],
                loc,
            )?;
            SourceConfig::Bridge(crate::source::bridge::BridgeConfig {
                url: url.into_inner(),
                ca_cert: b.ca_cert,
                client_cert: b.client_cert,
                client_key: b.client_key,
                timeout,
                ispb: b.ispb.unwrap_or_default(),
            })
        }
        "dict" => SourceConfig::Dict(dict_source(src, timeout, loc)?),
        other => {
            let span = src.kind.as_ref().map_or(0..0, Spanned::span);
            return Err(spanned_err(
                span,
                "source.kind",
                format!("{other:?} is not a source; use \"simulator\", \"bridge\" or \"dict\""),
            ));
        }
    })
}

/// The `[source.dict]` section.
fn dict_source(
    src: SourceSection,
    timeout: Duration,
    loc: &Locator<'_>,
) -> Result<crate::source::dict::DictConfig, ConfigError> {
    let kind_span = src.kind.as_ref().map_or(0..0, Spanned::span);
    let d = src.dict.ok_or_else(|| {
        loc.key(
            kind_span.clone(),
            "source.kind",
            "is dict, but there is no [source.dict] section (url, ispb, ca_cert, client_cert, client_key)",
        )
    })?;
    let missing = |key: &str, example: &str| {
        loc.key(
            kind_span.clone(),
            &format!("source.dict.{key}"),
            format!("missing; e.g. {key} = {example}"),
        )
    };
    let url = d
        .url
        .ok_or_else(|| missing("url", "\"https://dict.pi.rsfn.net.br:16422/api/v2/\""))?;
    if !url.get_ref().starts_with("https://") {
        return Err(loc.key(
            url.span(),
            "source.dict.url",
            "must start with https:// (DICT is reached only over mutual TLS)",
        ));
    }
    let ispb = d.ispb.ok_or_else(|| missing("ispb", "\"12345678\""))?;
    if !crate::source::dict::valid_ispb(ispb.get_ref()) {
        return Err(loc.key(
            ispb.span(),
            "source.dict.ispb",
            "must be the participant's 8-character ISPB, e.g. \"12345678\"",
        ));
    }
    Ok(crate::source::dict::DictConfig {
        url: url.into_inner(),
        ispb: ispb.into_inner(),
        ca_cert: d
            .ca_cert
            .ok_or_else(|| missing("ca_cert", "\"/etc/dictmon/dict-ca.pem\""))?,
        client_cert: d
            .client_cert
            .ok_or_else(|| missing("client_cert", "\"/etc/dictmon/client.pem\""))?,
        client_key: d
            .client_key
            .ok_or_else(|| missing("client_key", "\"/etc/dictmon/client-key.pem\""))?,
        signing_cert: d.signing_cert,
        timeout,
    })
}

/// Turns byte offsets into lines and columns of one file.
struct Locator<'a> {
    text: &'a str,
    file: &'a str,
}

impl Locator<'_> {
    fn at(&self, offset: usize, message: String) -> ConfigError {
        let before = self.text.get(..offset).unwrap_or(self.text);
        let line = before.matches('\n').count() + 1;
        let column = before
            .rfind('\n')
            .map_or(before.len(), |nl| before.len() - nl - 1)
            + 1;
        ConfigError {
            file: self.file.to_owned(),
            line,
            column,
            message,
            also: Vec::new(),
        }
    }

    fn key(
        &self,
        span: std::ops::Range<usize>,
        key: &str,
        what: impl std::fmt::Display,
    ) -> ConfigError {
        self.at(span.start, format!("{key}: {what}"))
    }
}

fn thresholds(
    t: &ThresholdSection,
    base: Thresholds,
    key: &str,
    err: &dyn Fn(std::ops::Range<usize>, &str, String) -> ConfigError,
) -> Result<Thresholds, ConfigError> {
    let mut th = base;
    if let Some(v) = &t.warning_percent {
        th.warning_percent = *v.get_ref();
    }
    if let Some(v) = &t.critical_percent {
        th.critical_percent = *v.get_ref();
    }
    if let Some(v) = &t.hysteresis_points {
        th.hysteresis_points = *v.get_ref();
    }
    if let Some(v) = &t.predictive_horizon {
        th.predictive_horizon = if v.get_ref() == "off" {
            None
        } else {
            Some(to_delta(parse_duration(v.get_ref()).map_err(|e| {
                err(v.span(), &format!("{key}.predictive_horizon"), e)
            })?))
        };
    }
    th.check().map_err(|e| {
        let span = t
            .critical_percent
            .as_ref()
            .or(t.warning_percent.as_ref())
            .or(t.hysteresis_points.as_ref())
            .map_or(0..0, Spanned::span);
        err(span, key, e.to_string())
    })?;
    Ok(th)
}

fn to_delta(d: Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

/// The longest duration any setting takes (a year): longer ones are typos, and would overflow
/// the scheduler's clock arithmetic.
pub const MAX_DURATION: Duration = Duration::from_secs(366 * 86_400);

/// A poll interval from 1 s to a day.
pub fn check_interval(interval: Duration) -> Result<(), String> {
    if interval < Duration::from_secs(1) {
        return Err("must be at least 1s".into());
    }
    if interval > Duration::from_secs(86_400) {
        return Err(format!(
            "{interval:?} is longer than a day: buckets refill in seconds to minutes, and a poll a day would miss every exhaustion"
        ));
    }
    Ok(())
}

/// The random delay per interval: at most the interval itself.
pub fn check_jitter(jitter: Duration, interval: Duration) -> Result<(), String> {
    if jitter > interval {
        return Err(format!(
            "{jitter:?} is longer than the poll interval ({interval:?}); polls would stop for that long"
        ));
    }
    Ok(())
}

/// A log filter: a level (`error`, `warn`, `info`, `debug`, `trace`, `off`), or comma-separated
/// `target=level` directives (`info,dictmon::notify=debug`).
pub fn check_log_level(text: &str) -> Result<(), String> {
    const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
    let level_ok = |l: &str| LEVELS.iter().any(|x| x.eq_ignore_ascii_case(l.trim()));
    let target_ok = |t: &str| {
        !t.is_empty()
            && t.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | ':' | '-'))
    };
    let ok = !text.trim().is_empty()
        && text.split(',').all(|d| match d.split_once('=') {
            Some((target, level)) => target_ok(target.trim()) && level_ok(level),
            None => level_ok(d),
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{text:?} is not a log level: use error, warn, info, debug, trace or off, or directives such as info,dictmon::notify=debug"
        ))
    }
}

/// Parses `500ms`, `90s`, `5m`, `12h`, `7d`, `2w` (also `min`), up to [`MAX_DURATION`].
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().map_err(|_| {
        format!("{text:?} is not a duration; write a number and a unit: 500ms, 30s, 5m, 12h, 7d")
    })?;
    let secs = match unit {
        "ms" => 0,
        "s" => 1,
        "m" | "min" => 60,
        "h" => 3_600,
        "d" => 86_400,
        "w" => 604_800,
        _ => {
            return Err(format!(
                "{text:?}: unknown unit {unit:?}; use ms, s, m, h, d or w"
            ));
        }
    };
    let d = if unit == "ms" {
        Duration::from_millis(n)
    } else {
        Duration::from_secs(n.saturating_mul(secs))
    };
    if d > MAX_DURATION {
        return Err(format!(
            "{text:?} is longer than a year; no setting takes that long"
        ));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> ConfigError {
        parse(text, "t.toml").expect_err("should be refused")
    }

    #[test]
    fn no_file_means_the_documented_defaults() {
        let c = parse("", "t.toml").expect("empty is valid");
        assert_eq!(c.interval, Duration::from_secs(300));
        assert_eq!(c.listen, "127.0.0.1:9464");
        assert_eq!(c.keep_months, 13);
        assert!(matches!(
            c.source,
            SourceConfig::Simulator {
                scenario: Scenario::Steady,
                ..
            }
        ));
    }

    #[test]
    fn nonsense_timing_and_log_levels_are_refused_where_they_stand() {
        // Once a panic of the monitor task (overflow) or a poll loop that never polls again.
        let e = err("interval = \"18446744073709551615s\"\n");
        assert_eq!((e.line, e.column), (1, 12), "{e}");
        assert!(e.message.contains("interval"), "{e}");
        let e = err("interval = \"2d\"\n");
        assert!(e.message.contains("longer than a day"), "{e}");
        let e = err("interval = \"10s\"\njitter = \"1w\"\n");
        assert_eq!((e.line, e.column), (2, 10), "{e}");
        assert!(e.message.contains("jitter"), "{e}");
        // Once: all logging silently off.
        let e = err("[log]\nlevel = \"verbose!!\"\n");
        assert_eq!((e.line, e.column), (2, 9), "{e}");
        assert!(e.message.contains("log.level"), "{e}");
        for good in ["info", "DEBUG", "info,dictmon::notify=debug", "off"] {
            let c = parse(&format!("[log]\nlevel = {good:?}\n"), "t.toml").expect(good);
            assert_eq!(c.log_level, good);
        }
        assert!(parse_duration("9999999999999w").is_err());
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
    }

    #[test]
    fn the_simulators_policy_count_is_checked() {
        let c = parse("[source.simulator]\npolicies = 1000\n", "t.toml").expect("valid");
        assert!(matches!(
            c.source,
            SourceConfig::Simulator { policies: 1000, .. }
        ));
        let e = err("[source.simulator]\npolicies = 0\n");
        assert_eq!((e.line, e.column), (2, 12), "{e}");
        assert!(e.message.contains("source.simulator.policies"), "{e}");
    }

    #[test]
    fn traces_are_off_by_default_and_an_otlp_endpoint_is_checked() {
        assert_eq!(parse("", "t.toml").expect("valid").otlp, None);
        let c = parse(
            "[telemetry.otlp]\nendpoint = \"http://127.0.0.1:4317\"\ninstance = \"pix-1\"\n",
            "t.toml",
        )
        .expect("valid");
        let otlp = c.otlp.expect("on");
        assert_eq!(otlp.endpoint, "http://127.0.0.1:4317");
        assert_eq!(otlp.timeout, Duration::from_secs(10));
        assert_eq!(otlp.instance, "pix-1");
        let e = err("[telemetry.otlp]\nendpoint = \"127.0.0.1:4317\"\n");
        assert_eq!((e.line, e.column), (2, 12), "{e}");
        assert!(e.message.contains("http://"), "{e}");
        let e = err("[telemetry.otlp]\nendpoint = \"https://collector:4317\"\n");
        assert!(e.message.contains("ca_cert"), "{e}");
        let e = err("[telemetry.otlp]\nendpoint = \"http://c:4317\"\ntimeout = \"soon\"\n");
        assert_eq!(e.line, 3, "{e}");
    }

    #[test]
    fn unknown_keys_are_located() {
        let e = err("interval = \"5m\"\n\n[thresholds]\nwarnng_percent = 30\n");
        assert_eq!((e.line, e.column), (4, 1));
        assert!(e.message.contains("warnng_percent"), "{e}");
    }

    #[test]
    fn bad_values_name_key_line_and_column() {
        let e = err("interval = \"5 minutes\"\n");
        assert_eq!((e.line, e.column), (1, 12));
        assert!(e.message.starts_with("interval:"), "{e}");
        let e = err("[thresholds]\nwarning_percent = 10\ncritical_percent = 15\n");
        assert_eq!(e.line, 3);
        assert!(
            e.message.contains("critical threshold must be below"),
            "{e}"
        );
        let e = err("[source]\nkind = \"carrier-pigeon\"\n");
        assert_eq!((e.line, e.column), (2, 8));
        let e = err("[source]\nkind = \"bridge\"\n[source.bridge]\nurl = \"https://b:1\"\n");
        assert!(e.message.contains("ca_cert"), "{e}");
        let e = err("[thresholds.policies.entries_write]\nwarning_percent = 30\n");
        assert!(e.message.contains("thresholds.policies"), "{e}");
    }

    #[test]
    fn the_dict_source_is_checked_where_it_is_written() {
        let dict = "[source]\nkind = \"dict\"\n[source.dict]\nurl = \"https://dict:16422/api/v2/\"\nispb = \"12345678\"\nca_cert = \"ca.pem\"\nclient_cert = \"c.pem\"\nclient_key = \"k.pem\"\n";
        let c = parse(dict, "t.toml").expect("valid");
        let SourceConfig::Dict(d) = &c.source else {
            panic!("{:?}", c.source)
        };
        assert_eq!(
            (d.ispb.as_str(), d.signing_cert.as_ref()),
            ("12345678", None)
        );
        // The POLICIES_LIST guard: a 5 s poll would drain DICT's 6-a-minute bucket.
        let e = err(&format!("interval = \"5s\"\n{dict}"));
        assert_eq!((e.line, e.column), (1, 12));
        assert!(e.message.contains("POLICIES_LIST"), "{e}");
        assert!(parse(&format!("interval = \"10s\"\n{dict}"), "t.toml").is_ok());
        let e = err(&dict.replace("12345678", "1234"));
        assert_eq!(e.line, 5);
        assert!(e.message.starts_with("source.dict.ispb"), "{e}");
        let e = err(&dict.replace("https://", "http://"));
        assert!(e.message.contains("https"), "{e}");
        let e = err(&dict.replace("client_key = \"k.pem\"\n", ""));
        assert!(
            e.message.starts_with("source.dict.client_key: missing"),
            "{e}"
        );
        let e = err("[source]\nkind = \"dict\"\n");
        assert!(e.message.contains("[source.dict]"), "{e}");
    }

    #[test]
    fn notify_sinks_are_named_and_checked_where_they_are_written() {
        let c = parse(
            "[notify]\nmax_backoff = \"5s\"\n[[notify.webhook]]\nurl = \"https://h/x\"\nbearer_token_file = \"t\"\n[[notify.alertmanager]]\nname = \"am\"\nurl = \"http://127.0.0.1:9093\"\n[[notify.file]]\npath = \"e.jsonl\"\n",
            "t.toml",
        )
        .expect("valid");
        let names: Vec<&str> = c.notify.sinks.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["am", "webhook", "file"]);
        assert_eq!(c.notify.max_backoff, Duration::from_secs(5));
        let SinkKind::Alertmanager(am) = &c.notify.sinks[0].kind else {
            panic!("{:?}", c.notify.sinks[0])
        };
        assert_eq!(am.resend_interval, Duration::from_secs(60));
        // Two of a kind need names; names are unique and label-safe; URLs are http(s).
        let two =
            "[[notify.webhook]]\nurl = \"http://a\"\n[[notify.webhook]]\nurl = \"http://b\"\n";
        let e = err(two);
        assert_eq!((e.line, e.column), (2, 7));
        assert!(e.message.contains("needs a name"), "{e}");
        let e = err(
            "[[notify.file]]\nname = \"x\"\npath = \"a\"\n[[notify.file]]\nname = \"x\"\npath = \"b\"\n",
        );
        assert_eq!(e.line, 5);
        assert!(e.message.contains("unique"), "{e}");
        let e = err("[[notify.file]]\nname = \"a b\"\npath = \"a\"\n");
        assert!(e.message.starts_with("notify.file.name"), "{e}");
        let e = err("[[notify.alertmanager]]\nurl = \"127.0.0.1:9093\"\n");
        assert_eq!((e.line, e.column), (2, 7));
        assert!(e.message.contains("http://"), "{e}");
        let e = err("[[notify.webhook]]\nurl = \"http://a\"\ntimeout = \"0s\"\n");
        assert!(e.message.starts_with("notify.webhook.timeout"), "{e}");
        let e = err("[[notify.webhook]]\nurl = \"http://a\"\ntoken = \"secret\"\n");
        assert!(e.message.contains("token"), "{e}");
    }

    #[test]
    fn per_policy_thresholds_inherit_the_defaults() {
        let c = parse(
            "[thresholds]\nhysteresis_points = 5\n[thresholds.policies.ENTRIES_WRITE]\nwarning_percent = 40\npredictive_horizon = \"off\"\n",
            "t.toml",
        )
        .expect("valid");
        let name = PolicyName::new("ENTRIES_WRITE").expect("valid");
        let th = c.per_policy[&name];
        assert!((th.warning_percent - 40.0).abs() < 1e-9);
        assert!((th.hysteresis_points - 5.0).abs() < 1e-9);
        assert_eq!(th.predictive_horizon, None);
    }
}
