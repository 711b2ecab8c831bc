//! DICT's own policy API: `GET {base}/policies/` and `GET {base}/policies/{name}` over HTTPS
//! with mutual TLS, answered in XML ([`super::dict_xml`]).
//!
//! The client ([`DictSource`]) keeps its connection alive between polls (DICT asks for reuse:
//! mutual-TLS handshakes are expensive), sends `Accept-Encoding: gzip` and the
//! `PI-RequestingParticipant` header with the configured ISPB, and bounds each call by a
//! deadline and each body by [`MAX_BODY`].
//!
//! DICT answers errors as RFC 7807 `application/problem+xml` (spec v2.12.1): 403 `Forbidden`,
//! 404 `NotFound`, 410 `Gone`/`DeprecatedResource`, 429 `RateLimited`, 500
//! `InternalServerError`, 503 `ServiceUnavailable` with `Retry-After` (seconds). Each maps to a
//! [`SourceError`] that says whether to retry and when, and carries DICT's `correlationId` for
//! BACEN's support ([`classify`]).
//!
//! The listing is itself metered (`POLICIES_LIST`: 6 a minute, 20 in a burst), so calls are
//! never closer than [`POLICIES_LIST_SPACING`], retries included.
//!
//! Signatures: DICT signs every response (enveloped XML-DSig). With `signing_cert`, every
//! answer — listing, single policy, and problem (a signed 429 or 503 is the only kind whose
//! `Retry-After` is believed) — is verified before it is read ([`super::dict_signature`]); one
//! that fails is [`SourceError::BadSignature`] and nothing of it is used. Error bodies that are
//! not XML at all (a proxy's page) are not DICT's and carry no data. Without `signing_cert`,
//! answers are trusted on the strength of mutual TLS alone, and `serve` says so at start-up.

use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper::header::{ACCEPT, ACCEPT_ENCODING, CONTENT_ENCODING, HeaderValue, RETRY_AFTER};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::dict_signature::{SignatureVerifier, SigningSetupError};
use super::dict_xml::{parse_get, parse_list, parse_problem};
use super::tls::{TlsError, TlsFailure, error_chain, read_pem, tls_failure};
use super::{PolicyList, Source, SourceError};

/// DICT's sustained rate for `GET /policies/` (`POLICIES_LIST`: 6 tokens a minute): no two
/// listings closer than this, and no poll interval shorter.
pub const POLICIES_LIST_SPACING: Duration = Duration::from_secs(10);

/// The largest body accepted, compressed or not (DICT's listing is a few kilobytes).
pub const MAX_BODY: usize = 4 << 20;

/// How to reach DICT.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DictConfig {
    /// Base URL of the API, e.g. `https://dict.pi.rsfn.net.br:16422/api/v2/`.
    pub url: String,
    /// The participant's ISPB, sent as `PI-RequestingParticipant`.
    pub ispb: String,
    /// CA bundle that signs DICT's server certificate (PEM).
    pub ca_cert: PathBuf,
    /// The participant's client certificate chain (PEM).
    pub client_cert: PathBuf,
    /// Its private key (PEM).
    pub client_key: PathBuf,
    /// DICT's signing certificate, to verify response signatures (see the module doc).
    pub signing_cert: Option<PathBuf>,
    /// Deadline of one call, connection and TLS handshake included.
    pub timeout: Duration,
}

/// Why the client could not be built (before any call).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DictSetupError {
    /// The URL is not usable.
    #[error("dict_url {url:?}: {detail}")]
    Url {
        /// The URL.
        url: String,
        /// What is wrong.
        detail: String,
    },
    /// The ISPB is not 8 letters or digits.
    #[error("ispb {0:?}: DICT wants the participant's 8-character ISPB, e.g. 12345678")]
    Ispb(String),
    /// A PEM file could not be read.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// A PEM file holds nothing usable.
    #[error("{what} {path}: {detail}")]
    Pem {
        /// Which file.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// The signing certificate cannot be used.
    #[error("signing_cert: {0}")]
    SigningCert(#[from] SigningSetupError),
}

/// Checks an ISPB: 8 ASCII letters or digits (spec v2.12.1: `^(?i)[a-z0-9]{8}`).
pub fn valid_ispb(ispb: &str) -> bool {
    ispb.len() == 8 && ispb.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Parses PEM certificates, erroring when there are none.
fn certificates(
    path: &std::path::Path,
    what: &'static str,
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, DictSetupError> {
    use rustls::pki_types::pem::PemObject;
    let pem = read_pem(path, what)?;
    let certs = rustls::pki_types::CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| DictSetupError::Pem {
            what,
            path: path.to_owned(),
            detail: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(DictSetupError::Pem {
            what,
            path: path.to_owned(),
            detail: "no CERTIFICATE block in it".into(),
        });
    }
    Ok(certs)
}

/// Reads the client identity and trust anchors into a rustls client configuration.
fn tls_config(config: &DictConfig) -> Result<rustls::ClientConfig, DictSetupError> {
    use rustls::pki_types::PrivateKeyDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in certificates(&config.ca_cert, "CA certificate")? {
        roots.add(cert).map_err(|e| DictSetupError::Pem {
            what: "CA certificate",
            path: config.ca_cert.clone(),
            detail: e.to_string(),
        })?;
    }
    let chain = certificates(&config.client_cert, "client certificate")?;
    let key_pem = read_pem(&config.client_key, "client key")?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| DictSetupError::Pem {
        what: "client key",
        path: config.client_key.clone(),
        detail: format!("no usable private key: {e}"),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let pem_err = |detail: String| DictSetupError::Pem {
        what: "client certificate",
        path: config.client_cert.clone(),
        detail,
    };
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| pem_err(e.to_string()))?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| pem_err(format!("does not go with the client key: {e}")))
}

/// DICT's HTTPS API as a [`Source`].
pub struct DictSource {
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
    base: String,
    ispb: HeaderValue,
    timeout: Duration,
    /// Verifies every answer, when `signing_cert` is configured.
    signatures: Option<SignatureVerifier>,
}

impl DictSource {
    /// Builds the client; no connection is made until the first call.
    pub fn new(config: &DictConfig) -> Result<Self, DictSetupError> {
        let url_err = |detail: &str| DictSetupError::Url {
            url: config.url.clone(),
            detail: detail.to_owned(),
        };
        let uri: hyper::Uri = config
            .url
            .parse()
            .map_err(|e: hyper::http::uri::InvalidUri| url_err(&e.to_string()))?;
        if uri.scheme_str() != Some("https") || uri.host().is_none() {
            return Err(url_err(
                "must be https://host:port/api/v2/ (DICT is reached only over mutual TLS)",
            ));
        }
        if !valid_ispb(&config.ispb) {
            return Err(DictSetupError::Ispb(config.ispb.clone()));
        }
        let signatures = config
            .signing_cert
            .as_deref()
            .map(SignatureVerifier::from_pem_file)
            .transpose()?;
        let ispb = HeaderValue::from_str(&config.ispb)
            .map_err(|_| DictSetupError::Ispb(config.ispb.clone()))?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(config.timeout));
        http.set_nodelay(true);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls_config(config)?)
            .https_only()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(1)
            .build(https);
        let mut base = config.url.clone();
        if !base.ends_with('/') {
            base.push('/');
        }
        Ok(Self {
            client,
            base,
            ispb,
            timeout: config.timeout,
            signatures,
        })
    }

    /// Whether DICT's signatures are verified, and against how many certificates.
    pub fn signature_certificates(&self) -> Option<usize> {
        self.signatures
            .as_ref()
            .map(SignatureVerifier::certificates)
    }

    /// `GET {base}/policies/`: every policy (costs a `POLICIES_LIST` token).
    pub async fn list_policies(&self) -> Result<PolicyList, SourceError> {
        let body = self.get("policies/", Call::List).await?;
        parse_list(&body).map_err(|e| self.malformed(&e.to_string()))
    }

    /// `GET {base}/policies/{name}`: one policy (costs a `POLICIES_READ` token).
    pub async fn get_policy(&self, name: &str) -> Result<PolicyList, SourceError> {
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(SourceError::Refused {
                endpoint: self.base.clone(),
                detail: format!("{name:?} is not a policy name (letters, digits and _)"),
            });
        }
        let body = self.get(&format!("policies/{name}"), Call::Read).await?;
        let list = parse_get(&body).map_err(|e| self.malformed(&e.to_string()))?;
        // An answer about another policy is not an answer to our question.
        match list.policies.first() {
            Some(p) if p.name == name => Ok(list),
            Some(p) => Err(self.malformed(&format!(
                "asked for policy {name:?}, DICT answered about {:?} (correlationId {})",
                p.name, list.correlation_id
            ))),
            None => {
                Err(self.malformed(&format!("asked for policy {name:?}, the answer holds none")))
            }
        }
    }

    fn malformed(&self, detail: &str) -> SourceError {
        SourceError::Malformed {
            endpoint: self.base.clone(),
            detail: detail.to_owned(),
        }
    }

    /// One GET, within the deadline: the (decompressed) body of a 200, or what the error means.
    async fn get(&self, path: &str, call: Call) -> Result<Vec<u8>, SourceError> {
        let url = format!("{}{path}", self.base);
        let request = hyper::Request::get(&url)
            .header(ACCEPT, "application/xml, application/problem+xml")
            .header(ACCEPT_ENCODING, "gzip")
            .header("PI-RequestingParticipant", self.ispb.clone())
            .body(Empty::new())
            .map_err(|e| self.malformed(&format!("cannot build the request {url}: {e}")))?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| transport_error(&self.base, &e))?;
            let (parts, body) = response.into_parts();
            let bytes = Limited::new(body, MAX_BODY)
                .collect()
                .await
                .map_err(|e| SourceError::Unavailable {
                    endpoint: self.base.clone(),
                    retry_after: None,
                    detail: format!("the answer broke off or exceeded {MAX_BODY} bytes: {e}"),
                })?
                .to_bytes();
            Ok::<_, SourceError>((parts, bytes))
        };
        let (parts, bytes) = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| SourceError::Timeout {
                endpoint: self.base.clone(),
                after: self.timeout,
            })??;
        let gzip = parts
            .headers
            .get(CONTENT_ENCODING)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
        let body = if gzip {
            gunzip(&bytes).map_err(|e| self.malformed(&format!("bad gzip body: {e}")))?
        } else {
            bytes.to_vec()
        };
        let xml = parts
            .headers
            .get(hyper::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("xml"));
        if let Some(verifier) = &self.signatures
            && (parts.status.is_success() || xml)
        {
            verifier
                .verify(&body)
                .map_err(|e| SourceError::BadSignature {
                    endpoint: self.base.clone(),
                    detail: format!("HTTP {}: {e}", parts.status.as_u16()),
                })?;
        }
        if parts.status.is_success() {
            return Ok(body);
        }
        let retry_after = parts.headers.get(RETRY_AFTER).and_then(|v| v.to_str().ok());
        Err(classify(
            &self.base,
            call,
            parts.status.as_u16(),
            retry_after,
            &body,
            Utc::now(),
        ))
    }
}

/// Decompresses at most [`MAX_BODY`] bytes.
fn gunzip(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .take(MAX_BODY as u64 + 1)
        .read_to_end(&mut out)?;
    if out.len() > MAX_BODY {
        return Err(std::io::Error::other(format!(
            "more than {MAX_BODY} bytes once decompressed"
        )));
    }
    Ok(out)
}

/// What a failure below HTTP (connect, TLS, broken connection) means.
fn transport_error(endpoint: &str, error: &hyper_util::client::legacy::Error) -> SourceError {
    let endpoint = endpoint.to_owned();
    let detail = error_chain(error.to_string(), std::error::Error::source(error));
    match tls_failure(&detail) {
        Some(TlsFailure::PeerNotTrusted) => SourceError::Tls {
            endpoint,
            detail: format!(
                "DICT's server certificate is not trusted: it is not signed by the CA in ca_cert, or does not name this host ({detail})"
            ),
        },
        Some(TlsFailure::OwnCertificateRejected) => SourceError::Tls {
            endpoint,
            detail: format!(
                "DICT rejected our client certificate: check client_cert and client_key, and that the certificate is registered for this ISPB ({detail})"
            ),
        },
        None => SourceError::Unavailable {
            endpoint,
            retry_after: None,
            detail,
        },
    }
}

impl Source for DictSource {
    fn describe(&self) -> String {
        format!("DICT at {}", self.base)
    }

    fn kind(&self) -> &'static str {
        "dict"
    }

    fn list(&mut self) -> impl Future<Output = Result<PolicyList, SourceError>> + Send {
        self.list_policies()
    }

    fn get(&mut self, name: &str) -> impl Future<Output = Result<PolicyList, SourceError>> + Send {
        let name = name.to_owned();
        async move { self.get_policy(&name).await }
    }

    fn min_spacing(&self) -> Duration {
        POLICIES_LIST_SPACING
    }
}

use std::future::Future;

/// `Retry-After` as DICT may send it: delta-seconds, or an HTTP-date (then relative to `now`).
/// Nonsense is ignored (the caller's own backoff applies).
pub fn retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = DateTime::parse_from_rfc2822(value)
        .ok()?
        .with_timezone(&Utc);
    (at - now).to_std().ok().or(Some(Duration::ZERO))
}

/// Which of DICT's policy calls was made: each is metered by its own bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Call {
    /// `GET /policies/`, metered by `POLICIES_LIST` (6 a minute, 20 in a burst).
    List,
    /// `GET /policies/{name}`, metered by `POLICIES_READ` (60 a minute, 200 in a burst).
    Read,
}

impl Call {
    /// What a 429 to this call means.
    fn budget(self) -> &'static str {
        match self {
            Self::List => {
                "POLICIES_LIST allows 6 listings a minute (20 in a burst): is the poll interval too short?"
            }
            Self::Read => {
                "POLICIES_READ allows 60 single-policy reads a minute (200 in a burst): are `status --live` calls looping?"
            }
        }
    }
}

/// What a non-200 answer to `call` means. `retry_after_header` is the raw `Retry-After` value,
/// `body` the (decompressed) body, problem+xml or anything else.
pub fn classify(
    endpoint: &str,
    call: Call,
    status: u16,
    retry_after_header: Option<&str>,
    body: &[u8],
    now: DateTime<Utc>,
) -> SourceError {
    let problem = parse_problem(body).ok();
    let mut detail = problem.as_ref().map_or_else(
        || format!("HTTP {status}"),
        |p| {
            let mut d = format!("HTTP {status} {}", p.short_type());
            if !p.title.is_empty() {
                d.push_str(": ");
                d.push_str(&p.title);
            }
            if !p.detail.is_empty() {
                d.push_str(" — ");
                d.push_str(&p.detail);
            }
            d
        },
    );
    if let Some(id) = problem
        .as_ref()
        .map(|p| p.correlation_id.as_str())
        .filter(|id| !id.is_empty())
    {
        detail = format!("{detail} (DICT correlationId {id})");
    }
    let wait = retry_after_header.and_then(|v| retry_after(v, now));
    let endpoint = endpoint.to_owned();
    match status {
        429 => SourceError::RateLimited {
            endpoint,
            retry_after: wait,
            detail: format!("{detail}; {}", call.budget()),
        },
        // Our request's fault, not DICT's answer's: the same request would fail the same way.
        400 => SourceError::Refused {
            endpoint,
            detail: format!(
                "{detail}; DICT found dictmon's request malformed (not its own answer): not retried — check for a proxy rewriting requests, and report it to dictmon with the correlationId"
            ),
        },
        403 | 401 => SourceError::Refused {
            endpoint,
            detail: format!(
                "{detail}; check the ISPB (PI-RequestingParticipant) and that the client certificate belongs to it"
            ),
        },
        404 => SourceError::Refused {
            endpoint,
            detail: format!(
                "{detail}; check the policy name, and dict_url: the API lives under /api/v2/ on the main DICT host"
            ),
        },
        410 => SourceError::Refused {
            endpoint,
            detail: format!(
                "{detail}; check dict_url: the policy endpoints moved to the main DICT host, under /api/v2/"
            ),
        },
        500..=599 => SourceError::Unavailable {
            endpoint,
            retry_after: wait,
            detail,
        },
        _ => SourceError::Malformed {
            endpoint,
            detail: format!("unexpected {detail}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-23T14:00:00Z")
            .expect("time")
            .with_timezone(&Utc)
    }

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        assert_eq!(retry_after("30", now()), Some(Duration::from_secs(30)));
        assert_eq!(
            retry_after("Mon, 23 Nov 2026 14:01:30 GMT", now()),
            Some(Duration::from_secs(90))
        );
        assert_eq!(
            retry_after("Mon, 23 Nov 2026 13:00:00 GMT", now()),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after("soon", now()), None);
    }

    #[test]
    fn statuses_map_to_what_to_do() {
        let problem = |kind: &str, status: u16| {
            format!(
                "<problem xmlns=\"urn:ietf:rfc:7807\"><type>https://dict.pi.rsfn.net.br/api/v2/error/{kind}</type><title>t</title><status>{status}</status><correlationId>c0ffee</correlationId></problem>"
            )
        };
        let e = classify(
            "dict",
            Call::List,
            429,
            Some("7"),
            problem("RateLimited", 429).as_bytes(),
            now(),
        );
        assert_eq!(e.kind(), "rate_limited");
        assert!(e.retryable());
        assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
        assert!(e.to_string().contains("c0ffee"), "{e}");
        let e = classify(
            "dict",
            Call::List,
            503,
            Some("20"),
            problem("ServiceUnavailable", 503).as_bytes(),
            now(),
        );
        assert_eq!(
            (e.kind(), e.retryable(), e.retry_after()),
            ("unavailable", true, Some(Duration::from_secs(20)))
        );
        let e = classify(
            "dict",
            Call::List,
            403,
            None,
            problem("Forbidden", 403).as_bytes(),
            now(),
        );
        assert_eq!((e.kind(), e.retryable()), ("refused", false));
        assert!(e.to_string().contains("ISPB"), "{e}");
        let e = classify("dict", Call::List, 410, None, b"", now());
        assert_eq!((e.kind(), e.retryable()), ("refused", false));
        assert!(e.to_string().contains("dict_url"), "{e}");
        let e = classify("dict", Call::List, 500, None, b"<html>oops</html>", now());
        assert_eq!((e.kind(), e.retryable()), ("unavailable", true));
        let e = classify("dict", Call::List, 302, None, b"", now());
        assert_eq!(e.kind(), "malformed");
        // A 400 is our request's fault: not a malformed answer, not retried.
        let e = classify(
            "dict",
            Call::List,
            400,
            None,
            problem("BadRequest", 400).as_bytes(),
            now(),
        );
        assert_eq!((e.kind(), e.retryable()), ("refused", false));
        assert!(e.to_string().contains("dictmon's request"), "{e}");
        // A 429 names the bucket of the call that was refused.
        let e = classify("dict", Call::Read, 429, None, b"", now());
        assert!(e.to_string().contains("POLICIES_READ"), "{e}");
        assert!(!e.to_string().contains("POLICIES_LIST"), "{e}");
    }
}
