//! The HTTP server (hyper): `/metrics`, `/healthz`, `/readyz`, `/api/v1/policies`,
//! `/api/v1/alerts[?open=true | ?limit=N[&after=CURSOR]]`, and the built-in dashboard — `/`
//! (every policy at a glance), `/policy/NAME[?range=24h|7d|30d|13mo]` (its history) and `/policy/NAME/states.csv` (that
//! range as `dictmon query states --format pg-csv` writes it). Bound to loopback unless
//! configured otherwise.
//!
//! May use: `domain`, `ring` (the sparklines), `store` (the catalog's alerts, the segments for
//! history), `telemetry` (the published state and the metrics). The CSV writer belongs to
//! `export`, which this module may not use: the binary hands it in as [`StatesCsv`].
//!
//! Invariants: handlers only read (the ring, the latest view, the catalog, the segments);
//! none blocks the poll cycle — reading history runs on the blocking pool, at most
//! `heavy::HEAVY_REQUESTS` at once, and a download is streamed with back-pressure
//! (`heavy`): its memory does not grow with its size or with clients that do not read. No client can hold
//! the server: at most [`MAX_CONNECTIONS`] at once (more are closed at accept), a request head
//! of at most [`MAX_HEAD_BYTES`] and [`MAX_HEADERS`] headers that must arrive within
//! [`HEADER_TIMEOUT`], request bodies never read, and every connection closed gracefully after
//! [`CONNECTION_LIFETIME`] (then dropped if a slow reader still holds it after [`GRACE`]).

pub(crate) mod chart;
pub(crate) mod heavy;
pub(crate) mod history;
pub(crate) mod pages;
mod route;

use std::collections::HashMap;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{CACHE_CONTROL, CONTENT_DISPOSITION, CONTENT_TYPE, HeaderName, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tracing::{debug, warn};

pub use self::heavy::Heavy;
pub use self::history::Range;
use self::pages::{Card, Health};
pub use self::route::Route;
use crate::domain::{AlertJson, PolicyName, Severity, StateJson, Thresholds};
use crate::ring::RingSet;
use crate::store::StoreReader;
use crate::store::catalog::{AlertCursor, Catalog};
use crate::telemetry::{PolicyView, Published};

/// Writes one policy's rows in `[since, until)` as `dictmon query states --format pg-csv`
/// would, from the data directory given, to the writer given; the error is for people.
pub type StatesCsv = fn(
    &Path,
    &PolicyName,
    DateTime<Utc>,
    DateTime<Utc>,
    &mut dyn std::io::Write,
) -> Result<(), String>;

/// Connections served at once; more are closed as soon as they are accepted.
pub const MAX_CONNECTIONS: usize = 256;
/// Bytes of a request's line and headers (hyper's buffer; its least is 8 KiB).
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Headers of a request.
pub const MAX_HEADERS: usize = 64;
/// Time a client has to send a request's head, and to send the next one on a kept-alive
/// connection.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Age at which a connection is closed gracefully (a scraper reconnects).
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(300);
/// Time a connection being closed has to finish its response.
pub const GRACE: Duration = Duration::from_secs(10);

/// What the handlers read.
pub struct HttpState {
    /// Latest views, health, metrics.
    pub published: Arc<Published>,
    /// The catalog (alerts, policies).
    pub catalog: Arc<Catalog>,
    /// Recent samples of every policy.
    pub rings: RingSet,
    /// The data directory (segments for the history pages).
    pub data_dir: PathBuf,
    /// Thresholds of every policy not in `per_policy`.
    pub thresholds: Thresholds,
    /// Per-policy thresholds.
    pub per_policy: HashMap<PolicyName, Thresholds>,
    /// The CSV download.
    pub states_csv: StatesCsv,
    /// The bearer token `/api/*` requires; none: open.
    pub api_token: Option<ApiToken>,
    /// The permits of the history pages and CSV downloads.
    pub heavy: heavy::Heavy,
}

/// The bearer token `/api/*` requires, kept as an HMAC tag under a random key, so that a
/// guess is checked in constant time (`ring::hmac::verify`).
pub struct ApiToken {
    key: ring::hmac::Key,
    tag: ring::hmac::Tag,
}

impl ApiToken {
    /// Keeps `token`; fails only if the system has no randomness.
    pub fn new(token: &str) -> Result<Self, ring::error::Unspecified> {
        let key =
            ring::hmac::Key::generate(ring::hmac::HMAC_SHA256, &ring::rand::SystemRandom::new())?;
        let tag = ring::hmac::sign(&key, token.as_bytes());
        Ok(Self { key, tag })
    }

    fn matches(&self, given: &[u8]) -> bool {
        ring::hmac::verify(&self.key, given, self.tag.as_ref()).is_ok()
    }
}

impl HttpState {
    fn thresholds_for(&self, policy: &PolicyName) -> Thresholds {
        self.thresholds.for_policy(&self.per_policy, policy)
    }

    fn health(&self, now: DateTime<Utc>) -> Health<'_> {
        let p = &self.published;
        let ms = p.last_success_ms.load(Ordering::Acquire);
        Health {
            source: &p.source,
            interval: p.interval,
            last_success: (ms > 0)
                .then(|| DateTime::from_timestamp_millis(ms))
                .flatten(),
            source_fresh: p.source_fresh(now),
            store_ok: p.store_ok.load(Ordering::Acquire),
        }
    }
}

/// Serves until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    state: Arc<HttpState>,
    mut shutdown: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors or similar: back off rather than spin.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            debug!(%peer, "{MAX_CONNECTIONS} connections open: closing a new one");
            continue;
        };
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            let _permit = permit;
            let service = service_fn(move |req| {
                let state = Arc::clone(&state);
                async move { Ok::<_, Infallible>(handle(&req, state).await) }
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .max_buf_size(MAX_HEAD_BYTES)
                .max_headers(MAX_HEADERS);
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            let ended = tokio::select! {
                ended = conn.as_mut() => ended,
                () = tokio::time::sleep(CONNECTION_LIFETIME) => {
                    conn.as_mut().graceful_shutdown();
                    tokio::time::timeout(GRACE, conn.as_mut()).await.unwrap_or(Ok(()))
                }
            };
            if let Err(e) = ended {
                debug!(error = %e, %peer, "connection ended");
            }
        });
    }
}

type Reply = Response<heavy::Body>;

const TEXT: &str = "text/plain; charset=utf-8";
const HTML: &str = "text/html; charset=utf-8";
/// The pages load only their own stylesheet and script, and fetch only themselves.
const PAGE_POLICY: &str = "default-src 'none'; style-src 'self'; script-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn reply(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Reply {
    let mut r = Response::new(
        Full::new(body.into())
            .map_err(|never| match never {})
            .boxed(),
    );
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn html(status: StatusCode, body: String) -> Reply {
    let mut r = reply(status, HTML, body);
    let h = r.headers_mut();
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        HeaderName::from_static("content-security-policy"),
        HeaderValue::from_static(PAGE_POLICY),
    );
    h.insert(
        HeaderName::from_static("x-content-type-options"),
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        HeaderName::from_static("referrer-policy"),
        HeaderValue::from_static("no-referrer"),
    );
    r
}

fn asset(content_type: &'static str, body: &'static str) -> Reply {
    let mut r = reply(StatusCode::OK, content_type, body);
    // Embedded in the binary: they change only with it.
    r.headers_mut().insert(
        CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    r
}

fn json<T: Serialize>(value: &T) -> Reply {
    match serde_json::to_vec(value) {
        Ok(body) => reply(StatusCode::OK, "application/json", body),
        Err(e) => reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            TEXT,
            format!("cannot encode: {e}\n"),
        ),
    }
}

/// Whether the request says it carries a body (GETs do not; none is ever read).
fn has_body(req: &Request<Incoming>) -> bool {
    let h = req.headers();
    h.contains_key(hyper::header::TRANSFER_ENCODING)
        || h.get(hyper::header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0")
}

/// Whether `Authorization` is `Bearer TOKEN`.
fn bearer_matches(req: &Request<Incoming>, token: &ApiToken) -> bool {
    req.headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
        .is_some_and(|given| token.matches(given))
}

async fn handle(req: &Request<Incoming>, state: Arc<HttpState>) -> Reply {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return reply(StatusCode::METHOD_NOT_ALLOWED, TEXT, "only GET\n");
    }
    if has_body(req) {
        return reply(
            StatusCode::PAYLOAD_TOO_LARGE,
            TEXT,
            "dictmon takes no request bodies\n",
        );
    }
    let route = Route::parse(req.uri().path(), req.uri().query());
    if let Some(token) = &state.api_token
        && route.needs_token()
        && !bearer_matches(req, token)
    {
        let mut r = reply(
            StatusCode::UNAUTHORIZED,
            TEXT,
            "this endpoint needs \"Authorization: Bearer TOKEN\" (the token in api_token_file)\n",
        );
        r.headers_mut().insert(
            hyper::header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"dictmon\""),
        );
        return r;
    }
    let shared = &state.published;
    match route {
        Route::Metrics => {
            let heavy = i64::try_from(state.heavy.in_flight()).unwrap_or(i64::MAX);
            shared.metrics.http_heavy_requests.set(heavy);
            match shared.metrics.render() {
                Ok(text) => reply(
                    StatusCode::OK,
                    "text/plain; version=0.0.4; charset=utf-8",
                    text,
                ),
                Err(e) => {
                    tracing::error!("/metrics cannot be rendered: {e}");
                    reply(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        TEXT,
                        format!("the metrics cannot be rendered: {e}\n"),
                    )
                }
            }
        }
        Route::Healthz => reply(StatusCode::OK, TEXT, "ok\n"),
        Route::Readyz => readyz(shared),
        Route::ApiPolicies => json(&policies(shared)),
        Route::ApiAlerts { open_only, page } => api_alerts(open_only, page, &state).await,
        Route::BadApiQuery(e) => reply(StatusCode::BAD_REQUEST, TEXT, format!("{e}\n")),
        Route::Overview => html(StatusCode::OK, overview(&state, Utc::now())),
        Route::Asset(content_type, body) => asset(content_type, body),
        Route::Policy { name, range, csv } => policy_route(name, range, csv, state).await,
        Route::NoSuchPolicy(name) => no_such_policy(&name),
        Route::BadRange(e) => html(StatusCode::BAD_REQUEST, pages::problem("Bad range", &e)),
        Route::NotFound => reply(
            StatusCode::NOT_FOUND,
            TEXT,
            "not found; the dashboard is at /, metrics at /metrics, the API at /api/v1/policies\n",
        ),
    }
}

fn no_such_policy(name: &str) -> Reply {
    html(
        StatusCode::NOT_FOUND,
        pages::problem(
            "No such policy",
            &format!("dictmon has never polled a policy named {name:?}."),
        ),
    )
}

/// Renders the overview page at `now`.
pub fn overview(state: &HttpState, now: DateTime<Utc>) -> String {
    let latest = state.published.latest.load();
    let day_ago = now - TimeDelta::days(1);
    let recent: Vec<Vec<crate::domain::Sample>> = latest
        .iter()
        .map(|v| {
            let mut w = state
                .rings
                .get(&v.record.policy)
                .map(|r| r.window(r.capacity()))
                .unwrap_or_default();
            w.retain(|s| s.at >= day_ago);
            w
        })
        .collect();
    let mut cards: Vec<Card<'_>> = latest
        .iter()
        .zip(&recent)
        .map(|(view, recent)| Card {
            view,
            thresholds: state.thresholds_for(&view.record.policy),
            recent,
        })
        .collect();
    let mut open = Vec::clone(&state.published.open_alerts.load());
    open.sort_by_key(|a| {
        (
            a.severity != Severity::Critical,
            std::cmp::Reverse(a.opened_at),
        )
    });
    let notices = state.published.notices.load();
    pages::overview(&state.health(now), &open, &notices, &mut cards, now)
}

/// `/api/v1/alerts`: the open alerts, a page of the history (`Link: <…>; rel="next"` while
/// more follow), or the whole history (one of the heavy requests: it decodes every alert).
/// Catalog reads block: on the blocking pool.
async fn api_alerts(
    open_only: bool,
    page: Option<(usize, Option<AlertCursor>)>,
    state: &Arc<HttpState>,
) -> Reply {
    let whole_history = !open_only && page.is_none();
    let permit = if whole_history {
        match state.heavy.acquire().await {
            Some(p) => Some(p),
            None => return busy_api(),
        }
    } else {
        None
    };
    let catalog = Arc::clone(&state.catalog);
    let read = tokio::task::spawn_blocking(move || {
        // Held by the reading, which goes on if the client leaves.
        let _permit = permit;
        let (alerts, next) = match (open_only, page) {
            (true, _) => (catalog.open_alerts()?, None),
            (false, Some((limit, after))) => {
                let page = catalog.alert_page(after, limit)?;
                (page.alerts, page.next.map(|c| (limit, c)))
            }
            (false, None) => (catalog.alerts()?, None),
        };
        let body = serde_json::to_vec(&alerts.iter().map(AlertJson::from).collect::<Vec<_>>());
        Ok::<_, crate::store::catalog::CatalogError>((body, next))
    })
    .await;
    match read {
        Ok(Ok((Ok(body), next))) => {
            let mut r = reply(StatusCode::OK, "application/json", body);
            if let Some((limit, cursor)) = next
                && let Ok(link) = HeaderValue::try_from(format!(
                    "</api/v1/alerts?limit={limit}&after={cursor}>; rel=\"next\""
                ))
            {
                r.headers_mut().insert(hyper::header::LINK, link);
            }
            r
        }
        Ok(Ok((Err(e), _))) => reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            TEXT,
            format!("cannot encode: {e}\n"),
        ),
        Ok(Err(e)) => reply(StatusCode::SERVICE_UNAVAILABLE, TEXT, format!("{e}\n")),
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// 503 for an API request that found every heavy-request slot taken.
fn busy_api() -> Reply {
    busy(reply(
        StatusCode::SERVICE_UNAVAILABLE,
        TEXT,
        format!("{} Or read a page (?limit=N).\n", busy_message()),
    ))
}

/// Why a heavy request found every slot taken.
fn busy_message() -> String {
    format!(
        "{} history pages, downloads or whole alert histories are being served; try again in a few seconds.",
        heavy::HEAVY_REQUESTS
    )
}

/// `r` (a 503) with the `Retry-After` of a busy server.
fn busy(mut r: Reply) -> Reply {
    r.headers_mut()
        .insert(hyper::header::RETRY_AFTER, HeaderValue::from_static("5"));
    r
}

async fn policy_route(name: PolicyName, range: Range, csv: bool, state: Arc<HttpState>) -> Reply {
    let latest = state.published.latest.load_full();
    let view = latest.iter().find(|v| v.record.policy == name).cloned();
    let now = Utc::now();
    let Some(permit) = state.heavy.acquire().await else {
        return busy(html(
            StatusCode::SERVICE_UNAVAILABLE,
            pages::problem("Busy", &busy_message()),
        ));
    };
    let known = view.is_some();
    let first_seen = {
        let (state, name) = (Arc::clone(&state), name.clone());
        tokio::task::spawn_blocking(move || -> Result<Option<Option<DateTime<Utc>>>, String> {
            let first_seen = state
                .catalog
                .policies()
                .map_err(|e| e.to_string())?
                .into_iter()
                .find(|p| p.policy.name == name)
                .map(|p| p.first_seen);
            Ok((known || first_seen.is_some()).then_some(first_seen))
        })
        .await
    };
    let first_seen = match first_seen {
        Ok(Ok(Some(first_seen))) => first_seen,
        Ok(Ok(None)) => return no_such_policy(name.as_str()),
        Ok(Err(e)) => return unreadable(StatusCode::SERVICE_UNAVAILABLE, &e),
        Err(e) => return unreadable(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    if csv {
        let since = now - range.span();
        let (data_dir, csv_of, policy) = (state.data_dir.clone(), state.states_csv, name.clone());
        let body = heavy::streamed(permit, move |out| {
            csv_of(&data_dir, &policy, since, now, out)
        });
        let mut r = Response::new(body);
        r.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/csv; charset=utf-8"),
        );
        let file = format!("attachment; filename=\"{name}-{}.csv\"", range.key());
        if let Ok(v) = HeaderValue::from_str(&file) {
            r.headers_mut().insert(CONTENT_DISPOSITION, v);
        }
        return r;
    }
    let page = {
        let (state, name) = (Arc::clone(&state), name.clone());
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let reader = StoreReader::open(&state.data_dir).map_err(|e| e.to_string())?;
            let th = state.thresholds_for(&name);
            history::load(&reader, &state.catalog, &name, first_seen, range, &th, now)
                .map_err(|e| e.to_string())
        })
        .await
    };
    match page {
        Ok(Ok(h)) => html(
            StatusCode::OK,
            pages::policy(
                &state.health(now),
                &name,
                view.as_ref(),
                &h,
                &state.thresholds_for(&name),
                now,
            ),
        ),
        Ok(Err(e)) => unreadable(StatusCode::SERVICE_UNAVAILABLE, &e),
        Err(e) => unreadable(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

fn unreadable(status: StatusCode, e: &str) -> Reply {
    html(status, pages::problem("Cannot read the history", e))
}

fn readyz(shared: &Published) -> Reply {
    let mut problems = Vec::new();
    if !shared.store_ok.load(Ordering::Acquire) {
        problems.push("the store cannot be written (see the log)".to_owned());
    }
    if let Some(clock) = shared.clock_problem() {
        problems.push(clock);
    } else if !shared.source_fresh(Utc::now()) {
        problems.push(format!(
            "no successful poll of {} within two intervals ({:?})",
            shared.source,
            shared.interval * 2
        ));
    }
    if problems.is_empty() {
        reply(StatusCode::OK, "text/plain; charset=utf-8", "ready\n")
    } else {
        reply(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain; charset=utf-8",
            format!("not ready: {}\n", problems.join("; ")),
        )
    }
}

/// A policy in `/api/v1/policies`: its latest row and its open alert's severity.
#[derive(Serialize)]
struct PolicyJson<'a> {
    #[serde(flatten)]
    state: StateJson<'a>,
    severity: Option<Severity>,
}

fn policies(shared: &Published) -> Vec<serde_json::Value> {
    let latest = shared.latest.load();
    latest
        .iter()
        .map(
            |PolicyView {
                 record: r,
                 severity,
             }| {
                serde_json::to_value(PolicyJson {
                    state: StateJson::from(r),
                    severity: *severity,
                })
                .unwrap_or_default()
            },
        )
        .collect()
}
