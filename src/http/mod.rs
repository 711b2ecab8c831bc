//! The HTTP server (hyper): `/metrics`, `/healthz`, `/readyz`, `/api/v1/policies`,
//! `/api/v1/alerts[?open=true]`. Bound to loopback unless configured otherwise.
//!
//! May use: `domain`, `store` (the catalog's alerts), `telemetry` (the published state and the
//! metrics).
//!
//! Invariants: handlers only read (the ring, the latest view, the catalog); none blocks the
//! poll cycle.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use chrono::Utc;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{debug, warn};

use crate::store::catalog::Catalog;
use crate::telemetry::{PolicyView, Published};

/// Serves until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    published: Arc<Published>,
    catalog: Arc<Catalog>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors or similar: back off rather than spin.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let (published, catalog) = (published.clone(), catalog.clone());
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let reply = handle(&req, &published, &catalog);
                async move { Ok::<_, Infallible>(reply) }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                debug!(error = %e, %peer, "connection ended");
            }
        });
    }
}

type Reply = Response<Full<Bytes>>;

fn reply(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Reply {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn json<T: Serialize>(value: &T) -> Reply {
    match serde_json::to_vec(value) {
        Ok(body) => reply(StatusCode::OK, "application/json", body),
        Err(e) => reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain; charset=utf-8",
            format!("cannot encode: {e}\n"),
        ),
    }
}

fn handle(req: &Request<Incoming>, shared: &Published, catalog: &Catalog) -> Reply {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            "only GET\n",
        );
    }
    let text = "text/plain; charset=utf-8";
    match req.uri().path() {
        "/metrics" => reply(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            shared.metrics.render(),
        ),
        "/healthz" => reply(StatusCode::OK, text, "ok\n"),
        "/readyz" => readyz(shared),
        "/api/v1/policies" => json(&policies(shared)),
        "/api/v1/alerts" => {
            let open_only = req
                .uri()
                .query()
                .is_some_and(|q| q.split('&').any(|kv| kv == "open=true" || kv == "open=1"));
            match catalog.alerts() {
                Ok(mut alerts) => {
                    if open_only {
                        alerts.retain(|a| a.resolved_at.is_none());
                    }
                    json(&alerts)
                }
                Err(e) => reply(StatusCode::SERVICE_UNAVAILABLE, text, format!("{e}\n")),
            }
        }
        "/" => reply(
            StatusCode::OK,
            text,
            "dictmon: /metrics (Prometheus), /api/v1/policies, /api/v1/alerts?open=true, /healthz, /readyz\n",
        ),
        _ => reply(
            StatusCode::NOT_FOUND,
            text,
            "not found; try /metrics or /api/v1/policies\n",
        ),
    }
}

fn readyz(shared: &Published) -> Reply {
    let mut problems = Vec::new();
    if !shared.store_ok.load(Ordering::Acquire) {
        problems.push("the store cannot be written (see the log)".to_owned());
    }
    if !shared.source_fresh(Utc::now()) {
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

/// A policy in `/api/v1/policies`.
#[derive(Serialize)]
struct PolicyJson<'a> {
    endpoint_id: &'a str,
    psp_category: String,
    available_tokens: i64,
    capacity: i64,
    refill_tokens: i64,
    refill_period_seconds: i64,
    utilization_percent: f64,
    remaining_percent: f64,
    consumption_rate_per_minute: Option<f64>,
    recovery_eta_seconds: Option<f64>,
    exhaustion_projection_seconds: Option<f64>,
    response_time: chrono::DateTime<Utc>,
    severity: Option<crate::domain::Severity>,
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
                let e = &r.enrichment;
                serde_json::to_value(PolicyJson {
                    endpoint_id: r.policy.as_str(),
                    psp_category: r.sample.category.to_string(),
                    available_tokens: r.sample.available_tokens,
                    capacity: r.sample.bucket.capacity,
                    refill_tokens: r.sample.bucket.refill_tokens,
                    refill_period_seconds: r.sample.bucket.refill_period_secs,
                    utilization_percent: e.utilization_percent,
                    remaining_percent: e.remaining_percent,
                    consumption_rate_per_minute: e.consumption_rate_per_minute,
                    recovery_eta_seconds: e.recovery_eta_seconds,
                    exhaustion_projection_seconds: e.exhaustion_projection_seconds,
                    response_time: r.sample.at,
                    severity: *severity,
                })
                .unwrap_or_default()
            },
        )
        .collect()
}
