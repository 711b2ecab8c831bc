//! A webhook receiver for the delivery tests: a real HTTP server on a loopback port that checks
//! the bearer token and the HMAC-SHA256 signature on its own (ring), records what it accepted,
//! and can be taken down (nothing listening: connection refused), brought back on the same
//! port, or made slow.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::task::JoinSet;

/// What the receiver saw.
#[derive(Default)]
pub struct Seen {
    /// Accepted bodies, in arrival order.
    pub accepted: Vec<Vec<u8>>,
    /// Requests refused (wrong token or signature), with the reason.
    pub refused: Vec<String>,
    /// Requests that arrived (accepted or not), counted on arrival.
    pub arrived: usize,
}

pub struct Receiver {
    pub addr: SocketAddr,
    token: String,
    key: Vec<u8>,
    pub seen: Arc<Mutex<Seen>>,
    delay: Arc<Mutex<Duration>>,
    runtime: tokio::runtime::Runtime,
    tasks: Option<JoinSet<()>>,
}

fn hex_decode(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Checks the request as a careful receiver would; `Err` says why it is refused.
fn check(headers: &hyper::HeaderMap, body: &[u8], token: &str, key: &[u8]) -> Result<(), String> {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if auth != format!("Bearer {token}") {
        return Err(format!("wrong token: {auth:?}"));
    }
    if key.is_empty() {
        // A receiver for Alertmanager's webhooks: a bearer token, no signature.
        return Ok(());
    }
    let signature = headers
        .get("x-dictmon-signature-256")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("sha256="))
        .and_then(hex_decode)
        .ok_or("no signature header")?;
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    ring::hmac::verify(&key, body, &signature).map_err(|_| "bad signature".to_owned())?;
    let id = headers
        .get("x-dictmon-event-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let parsed: serde_json::Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    if parsed["event_id"] != id {
        return Err(format!("event id header {id:?} differs from the body's"));
    }
    Ok(())
}

impl Receiver {
    /// A receiver for `addr` (not listening yet) expecting `token` and signing key `key` (empty:
    /// no signature, as Alertmanager sends).
    pub fn new(addr: SocketAddr, token: &str, key: &str) -> Self {
        Self {
            addr,
            token: token.to_owned(),
            key: key.as_bytes().to_vec(),
            seen: Arc::default(),
            delay: Arc::new(Mutex::new(Duration::ZERO)),
            runtime: super::util::stand_in_runtime(),
            tasks: None,
        }
    }

    /// Answers each request only after `delay`.
    pub fn set_delay(&self, delay: Duration) {
        *self.delay.lock().expect("delay") = delay;
    }

    /// Starts listening (on the same port every time).
    pub fn up(&mut self) {
        let listener = self
            .runtime
            .block_on(tokio::net::TcpListener::bind(self.addr))
            .expect("bind the receiver's port again");
        let (seen, delay) = (self.seen.clone(), self.delay.clone());
        let (token, key) = (self.token.clone(), self.key.clone());
        let mut tasks = JoinSet::new();
        let _guard = self.runtime.enter();
        tasks.spawn(async move {
            let mut connections = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (seen, delay) = (seen.clone(), delay.clone());
                let (token, key) = (token.clone(), key.clone());
                connections.spawn(async move {
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let (seen, delay) = (seen.clone(), delay.clone());
                        let (token, key) = (token.clone(), key.clone());
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body.collect().await?.to_bytes();
                            seen.lock().expect("seen").arrived += 1;
                            let wait = *delay.lock().expect("delay");
                            tokio::time::sleep(wait).await;
                            let status = match check(&parts.headers, &body, &token, &key) {
                                Ok(()) => {
                                    seen.lock().expect("seen").accepted.push(body.to_vec());
                                    StatusCode::OK
                                }
                                Err(why) => {
                                    seen.lock().expect("seen").refused.push(why);
                                    StatusCode::UNAUTHORIZED
                                }
                            };
                            let mut r = Response::new(Full::new(Bytes::new()));
                            *r.status_mut() = status;
                            Ok::<_, hyper::Error>(r)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        self.tasks = Some(tasks);
    }

    /// Stops listening and drops every connection: the port refuses connections.
    pub fn down(&mut self) {
        if let Some(mut tasks) = self.tasks.take() {
            tasks.abort_all();
            self.runtime
                .block_on(async { while tasks.join_next().await.is_some() {} });
        }
    }

    /// The accepted bodies, parsed.
    pub fn accepted(&self) -> Vec<serde_json::Value> {
        self.seen
            .lock()
            .expect("seen")
            .accepted
            .iter()
            .map(|b| serde_json::from_slice(b).expect("JSON body"))
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.down();
    }
}
