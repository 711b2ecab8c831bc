//! The simulator served as DICT's own HTTPS API (`dictmon simulate --protocol dict`):
//! `GET /api/v2/policies/` and `GET /api/v2/policies/{name}` in DICT's XML, over TLS that
//! requires a client certificate signed by the simulator's CA.
//!
//! It answers as DICT does: 403 without a valid `PI-RequestingParticipant`, 429 when its own
//! `POLICIES_LIST` bucket is empty (6 listings a minute, 20 in a burst) or, for a single
//! policy, `POLICIES_READ` (60 a minute, 200 in a burst) — with no `Retry-After`, which DICT
//! does not declare on 429 — 404 for an unknown policy or path, problems as RFC 7807
//! `application/problem+xml` with 32-hex correlation ids, gzip when asked, and keep-alive.
//! Injected faults ([`Fault`]) answer chosen requests with a chosen status (503 with
//! `Retry-After`), so that outages can be tried on purpose.

use std::convert::Infallible;
use std::io::Write;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{debug, warn};

use super::dict::valid_ispb;
use super::dict_signature::ResponseSigner;
use super::dict_xml::{write_get, write_list, write_problem};
use super::simulator::{Simulator, correlation_id};
use super::tls::{PkiFiles, TlsError, read_pem};

/// The path prefix of DICT's API v2.
pub const API_PREFIX: &str = "/api/v2/";

/// A fault to inject: every `every`-th request is answered with `kind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    /// What the chosen requests get.
    pub kind: FaultKind,
    /// Which requests: the `every`-th, `2·every`-th …
    pub every: u64,
}

/// What a fault answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// An error status (400, 429, 500, 503 …), as a problem.
    Status(u16),
    /// A listing with no policy in it (`<Policies/>`); single reads are not affected.
    EmptyListing,
    /// A single-policy read answered about another policy; listings are not affected.
    WrongName,
    /// An answer sent without its signature.
    Unsigned,
    /// An answer altered after it was signed (a token count, or a problem's title).
    Tampered,
}

impl FromStr for Fault {
    type Err = String;
    /// `STATUS@N` (`503@4`: every 4th request gets a 503), `empty@N`, `wrong-name@N`.
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "{s:?}: write STATUS@N (503@4: every 4th request answers 503), empty@N, wrong-name@N, unsigned@N or tampered@N"
            )
        };
        let (kind, every) = s.split_once('@').ok_or_else(bad)?;
        let kind = match kind {
            "empty" => FaultKind::EmptyListing,
            "wrong-name" => FaultKind::WrongName,
            "unsigned" => FaultKind::Unsigned,
            "tampered" => FaultKind::Tampered,
            status => match status.parse::<u16>() {
                Ok(code) if (400..=599).contains(&code) => FaultKind::Status(code),
                _ => return Err(bad()),
            },
        };
        let every: u64 = every.parse().map_err(|_| bad())?;
        if every == 0 {
            return Err(bad());
        }
        Ok(Self { kind, every })
    }
}

/// One answer of the simulated DICT.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// `Retry-After`, seconds.
    pub retry_after: Option<u64>,
    /// `application/xml` or `application/problem+xml`.
    pub content_type: &'static str,
    /// The body.
    pub body: String,
}

impl Answer {
    fn problem(status: u16, short_type: &str, title: &str, detail: &str, n: u64) -> Self {
        Self {
            status,
            retry_after: None,
            content_type: "application/problem+xml",
            body: write_problem(short_type, title, status, detail, &correlation_id(0xE4, n)),
        }
    }
}

/// The simulated DICT behind the socket: the simulator, the faults, a request counter, and
/// the key that signs every answer (when it has one).
pub struct SimulatedDict {
    sim: Mutex<Simulator>,
    faults: Vec<Fault>,
    retry_after: u64,
    requests: AtomicU64,
    signer: Option<ResponseSigner>,
}

impl SimulatedDict {
    /// DICT answering from `sim`, with `faults` injected; injected 429/503 answers carry
    /// `Retry-After: retry_after`.
    pub fn new(sim: Simulator, faults: Vec<Fault>, retry_after: u64) -> Self {
        Self {
            sim: Mutex::new(sim),
            faults,
            retry_after,
            requests: AtomicU64::new(0),
            signer: None,
        }
    }

    /// Signs every answer with `signer`, as DICT does.
    #[must_use]
    pub fn signed_by(mut self, signer: ResponseSigner) -> Self {
        self.signer = Some(signer);
        self
    }

    /// The answer to `method path` from participant `ispb` (the `PI-RequestingParticipant`
    /// header), now.
    pub fn answer(&self, method: &str, path: &str, ispb: Option<&str>) -> Answer {
        self.answer_at(Utc::now(), method, path, ispb)
    }

    /// The injected error status answering request `n`, if a fault chose it.
    fn injected(&self, n: u64) -> Option<Answer> {
        let status = self.faults.iter().find_map(|f| match f.kind {
            FaultKind::Status(s) if n.is_multiple_of(f.every) => Some(s),
            _ => None,
        })?;
        let (kind, title) = match status {
            429 => ("RateLimited", "Rate limited"),
            503 => ("ServiceUnavailable", "Service Unavailable"),
            500 => ("InternalServerError", "Internal Server Error"),
            403 => ("Forbidden", "Forbidden"),
            400 => ("BadRequest", "Bad request"),
            _ => ("InternalServerError", "Injected fault"),
        };
        let mut a = Answer::problem(status, kind, title, "injected by the simulator", n);
        // DICT declares `Retry-After` on 503 only.
        if status == 503 {
            a.retry_after = Some(self.retry_after);
        }
        Some(a)
    }

    /// The answer at DICT's time `now`, signed when the simulator has a signing key (but for
    /// the `unsigned` and `tampered` faults).
    pub fn answer_at(
        &self,
        now: DateTime<Utc>,
        method: &str,
        path: &str,
        ispb: Option<&str>,
    ) -> Answer {
        let n = self.requests.fetch_add(1, Ordering::Relaxed) + 1;
        let mut answer = self.unsigned_answer(now, n, method, path, ispb);
        let Some(signer) = &self.signer else {
            return answer;
        };
        let fault = |kind: FaultKind| {
            self.faults
                .iter()
                .any(|f| f.kind == kind && n.is_multiple_of(f.every))
        };
        if fault(FaultKind::Unsigned) {
            return answer;
        }
        match signer.sign(&answer.body) {
            Ok(body) => answer.body = body,
            Err(e) => {
                warn!("cannot sign answer {n}: {e}");
                return answer;
            }
        }
        if fault(FaultKind::Tampered) {
            answer.body = if answer.body.contains("<AvailableTokens>") {
                answer
                    .body
                    .replacen("<AvailableTokens>", "<AvailableTokens>1", 1)
            } else {
                answer.body.replacen("<title>", "<title>Tampered: ", 1)
            };
        }
        answer
    }

    fn unsigned_answer(
        &self,
        now: DateTime<Utc>,
        n: u64,
        method: &str,
        path: &str,
        ispb: Option<&str>,
    ) -> Answer {
        let fault = |kind: FaultKind| {
            self.faults
                .iter()
                .any(|f| f.kind == kind && n.is_multiple_of(f.every))
        };
        if let Some(a) = self.injected(n) {
            return a;
        }
        if method != "GET" {
            return Answer::problem(405, "MethodNotAllowed", "Method not allowed", "GET only", n);
        }
        let Some(rest) = path.strip_prefix(API_PREFIX) else {
            return Answer::problem(
                404,
                "NotFound",
                "Not found",
                &format!("the API lives under {API_PREFIX}"),
                n,
            );
        };
        if !ispb.is_some_and(valid_ispb) {
            return Answer::problem(
                403,
                "Forbidden",
                "Forbidden",
                "PI-RequestingParticipant must be the participant's 8-character ISPB",
                n,
            );
        }
        let Ok(mut sim) = self.sim.lock() else {
            return Answer::problem(500, "InternalServerError", "Internal error", "", n);
        };
        match rest {
            "policies/" | "policies" => match sim.list_policies_at(now) {
                Ok(mut list) => Answer {
                    body: {
                        if fault(FaultKind::EmptyListing) {
                            list.policies.clear();
                        }
                        write_list(&list)
                    },
                    status: 200,
                    retry_after: None,
                    content_type: "application/xml",
                },
                // DICT declares no `Retry-After` on 429: the wait is only said in words.
                Err(wait) => Answer::problem(
                    429,
                    "RateLimited",
                    "Rate limited",
                    &format!(
                        "POLICIES_LIST is empty: 6 listings a minute, 20 in a burst; a token in {} s",
                        wait.as_secs()
                    ),
                    n,
                ),
            },
            other => match other.strip_prefix("policies/") {
                Some(name) => match sim.policy_at(now, name) {
                    Ok(Some(mut list)) => Answer {
                        body: {
                            if fault(FaultKind::WrongName)
                                && let Some(p) = list.policies.first_mut()
                            {
                                p.name = if name == "ENTRIES_WRITE" {
                                    "ENTRIES_UPDATE".into()
                                } else {
                                    "ENTRIES_WRITE".into()
                                };
                            }
                            write_get(&list)
                        },
                        status: 200,
                        retry_after: None,
                        content_type: "application/xml",
                    },
                    Err(wait) => Answer::problem(
                        429,
                        "RateLimited",
                        "Rate limited",
                        &format!(
                            "POLICIES_READ is empty: 60 reads a minute, 200 in a burst; a token in {} s",
                            wait.as_secs()
                        ),
                        n,
                    ),
                    Ok(None) => Answer::problem(
                        404,
                        "NotFound",
                        "Not found",
                        &format!("no policy named {name:?}"),
                        n,
                    ),
                },
                None => Answer::problem(404, "NotFound", "Not found", "unknown path", n),
            },
        }
    }
}

/// The server's TLS: its certificate, and client certificates required, signed by the CA.
pub fn server_tls(files: &PkiFiles) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |e: &dyn std::fmt::Display| TlsError::Generate(e.to_string());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&read_pem(&files.ca, "CA certificate")?) {
        roots.add(cert.map_err(|e| bad(&e))?).map_err(|e| bad(&e))?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .map_err(|e| bad(&e))?;
    let chain =
        CertificateDer::pem_slice_iter(&read_pem(&files.server_cert, "server certificate")?)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(&e))?;
    let key = PrivateKeyDer::from_pem_slice(&read_pem(&files.server_key, "server key")?)
        .map_err(|e| bad(&e))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(&e))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| bad(&e))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Serves `dict` on `listener` with `tls` until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    dict: Arc<SimulatedDict>,
    mut shutdown: watch::Receiver<bool>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(x) => x,
                Err(e) => {
                    warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let acceptor = acceptor.clone();
        let dict = Arc::clone(&dict);
        tokio::spawn(async move {
            let stream = match acceptor.accept(tcp).await {
                Ok(s) => s,
                Err(e) => {
                    warn!("TLS handshake with {peer} failed: {e}");
                    return;
                }
            };
            let service = hyper::service::service_fn(move |req| {
                let dict = Arc::clone(&dict);
                async move { Ok::<_, Infallible>(respond(&dict, &req)) }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                debug!("connection with {peer}: {e}");
            }
        });
    }
}

fn respond(dict: &SimulatedDict, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let ispb = req
        .headers()
        .get("PI-RequestingParticipant")
        .and_then(|v| v.to_str().ok());
    let answer = dict.answer(req.method().as_str(), req.uri().path(), ispb);
    let gzip = req
        .headers()
        .get(ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|e| e.trim().starts_with("gzip")));
    let mut builder = Response::builder()
        .status(StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header(CONTENT_TYPE, answer.content_type)
        .header("Keep-Alive", "timeout=60");
    if let Some(s) = answer.retry_after {
        builder = builder.header(RETRY_AFTER, s.to_string());
    }
    let mut body = answer.body.into_bytes();
    if gzip {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        if encoder.write_all(&body).is_ok()
            && let Ok(zipped) = encoder.finish()
        {
            body = zipped;
            builder = builder.header(CONTENT_ENCODING, "gzip");
        }
    }
    builder
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::PspCategory;
    use crate::source::dict_xml::{parse_list, parse_problem};
    use crate::source::simulator::Scenario;

    fn at() -> DateTime<Utc> {
        DateTime::from_timestamp_millis(1_800_000_000_000).expect("in range")
    }

    fn get(d: &SimulatedDict, path: &str, ispb: Option<&str>) -> Answer {
        d.answer_at(at(), "GET", path, ispb)
    }

    fn dict(faults: Vec<Fault>) -> SimulatedDict {
        SimulatedDict::new(
            Simulator::new(1, Scenario::Steady, PspCategory::C),
            faults,
            2,
        )
    }

    #[test]
    fn listings_run_out_after_the_burst_of_twenty() {
        let d = dict(vec![]);
        let answers: Vec<Answer> = (0..22)
            .map(|_| get(&d, "/api/v2/policies/", Some("12345678")))
            .collect();
        assert!(answers[..20].iter().all(|a| a.status == 200));
        let last = parse_list(answers[19].body.as_bytes()).expect("listing");
        let budget = last
            .policies
            .iter()
            .find(|p| p.name == "POLICIES_LIST")
            .expect("listed");
        assert_eq!(budget.available_tokens, 0, "the listing shows its own cost");
        assert_eq!(answers[20].status, 429);
        assert_eq!(
            answers[20].retry_after, None,
            "DICT declares no Retry-After on 429"
        );
        let p = parse_problem(answers[20].body.as_bytes()).expect("problem");
        assert_eq!(p.short_type(), "RateLimited");
        // Reading one policy does not cost a listing.
        let one = get(&d, "/api/v2/policies/KEYS_CHECK", Some("12345678"));
        assert_eq!(one.status, 200);
        let id = parse_problem(answers[20].body.as_bytes())
            .expect("problem")
            .correlation_id;
        assert!(
            id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
            "{id}"
        );
    }

    #[test]
    fn single_reads_are_metered_by_policies_read() {
        let d = dict(vec![]);
        let read = || get(&d, "/api/v2/policies/POLICIES_READ", Some("12345678"));
        let answers: Vec<Answer> = (0..201).map(|_| read()).collect();
        assert!(answers[..200].iter().all(|a| a.status == 200));
        let last = crate::source::dict_xml::parse_get(answers[199].body.as_bytes()).expect("get");
        assert_eq!(
            last.policies[0].available_tokens, 0,
            "the read shows its own cost"
        );
        assert!(
            last.correlation_id.len() == 32
                && last.correlation_id.bytes().all(|b| b.is_ascii_hexdigit()),
            "{}",
            last.correlation_id
        );
        assert_eq!(answers[200].status, 429);
        assert_eq!(answers[200].retry_after, None);
        let p = parse_problem(answers[200].body.as_bytes()).expect("problem");
        assert!(p.detail.contains("POLICIES_READ"), "{}", p.detail);
    }

    #[test]
    fn answers_as_dict_does_to_bad_requests() {
        let d = dict(vec![]);
        assert_eq!(get(&d, "/api/v2/policies/", None).status, 403);
        assert_eq!(get(&d, "/api/v2/policies/", Some("123")).status, 403);
        assert_eq!(get(&d, "/api/v1/policies/", Some("12345678")).status, 404);
        assert_eq!(
            get(&d, "/api/v2/policies/NOPE", Some("12345678")).status,
            404
        );
        assert_eq!(
            d.answer_at(at(), "POST", "/api/v2/policies/", Some("12345678"))
                .status,
            405
        );
    }

    #[test]
    fn faults_hit_the_chosen_requests() {
        let d = dict(vec!["503@3".parse().expect("fault")]);
        let statuses: Vec<(u16, Option<u64>)> = (0..6)
            .map(|_| {
                let a = get(&d, "/api/v2/policies/", Some("12345678"));
                (a.status, a.retry_after)
            })
            .collect();
        assert_eq!(
            statuses,
            [
                (200, None),
                (200, None),
                (503, Some(2)),
                (200, None),
                (200, None),
                (503, Some(2))
            ]
        );
        assert!("503".parse::<Fault>().is_err());
        assert!("200@1".parse::<Fault>().is_err());
        assert!("503@0".parse::<Fault>().is_err());
    }
}
