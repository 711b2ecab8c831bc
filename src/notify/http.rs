//! The HTTP(S) client of the Alertmanager and webhook sinks: one kept-alive connection per sink,
//! TLS with the sink's CA bundle or the system's, a deadline per request, and answers sorted
//! into [`DeliveryError`] kinds.

use std::path::{Path, PathBuf};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use hyper::{Method, Request, Uri};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::DeliveryError;

/// Why a sink cannot be set up; `serve` refuses to start with it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SetupError {
    /// A file named in the configuration cannot be read.
    #[error("sink {sink}: cannot read {what} {path}: {error}")]
    Read {
        /// The sink.
        sink: String,
        /// What the file is.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        error: std::io::Error,
    },
    /// A file holds no usable certificate or token.
    #[error("sink {sink}: {path}: {detail}")]
    Invalid {
        /// The sink.
        sink: String,
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// A URL that is not `http://` or `https://` with a host.
    #[error("sink {sink}: {url:?} is not an http:// or https:// URL")]
    Url {
        /// The sink.
        sink: String,
        /// The URL.
        url: String,
    },
}

/// The `Authorization: Bearer …` value of the token in the file at `path`: one line, trimmed,
/// not empty, of characters a header can carry (webhook and Pulsar sinks).
pub(super) fn bearer_header(sink: &str, path: &Path) -> Result<HeaderValue, SetupError> {
    let text = std::fs::read_to_string(path).map_err(|error| SetupError::Read {
        sink: sink.to_owned(),
        what: "bearer token file",
        path: path.to_owned(),
        error,
    })?;
    let invalid = |detail: &str| SetupError::Invalid {
        sink: sink.to_owned(),
        path: path.to_owned(),
        detail: detail.to_owned(),
    };
    let token = text.trim();
    if token.is_empty() || token.contains(['\r', '\n']) {
        return Err(invalid("the token file must hold one line"));
    }
    HeaderValue::try_from(format!("Bearer {token}"))
        .map_err(|_| invalid("the token has characters an HTTP header cannot carry"))
}

/// One sink's HTTP client.
pub struct HttpClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    uri: Uri,
    target: String,
    timeout: Duration,
}

impl HttpClient {
    /// A client for `url`, trusting `ca_cert` (PEM) or, without it, the system's CAs.
    pub fn new(
        sink: &str,
        url: &str,
        ca_cert: Option<&Path>,
        timeout: Duration,
    ) -> Result<Self, SetupError> {
        let uri: Uri = url.parse().map_err(|_| SetupError::Url {
            sink: sink.to_owned(),
            url: url.to_owned(),
        })?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
            return Err(SetupError::Url {
                sink: sink.to_owned(),
                url: url.to_owned(),
            });
        }
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls_config(sink, ca_cert, None)?)
            .https_or_http()
            .enable_http1()
            .build();
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(1)
            .build(https);
        Ok(Self {
            client,
            uri,
            target: url.to_owned(),
            timeout,
        })
    }

    /// `value` as the JSON body of a POST to this receiver. Encoding our own types does not
    /// fail; if it ever did, the delivery fails (the events stay in the outbox) rather than
    /// posting an empty body a receiver might take.
    pub fn encode<T: serde::Serialize + ?Sized>(
        &self,
        value: &T,
    ) -> Result<Vec<u8>, DeliveryError> {
        serde_json::to_vec(value).map_err(|e| DeliveryError::NotTaken {
            target: self.target.clone(),
            detail: format!("the body cannot be encoded as JSON: {e}"),
        })
    }

    /// POSTs `body` as JSON with `headers`; `Ok` on a 2xx answer.
    pub async fn post_json(
        &self,
        body: Vec<u8>,
        headers: &[(HeaderName, HeaderValue)],
    ) -> Result<(), DeliveryError> {
        let mut request = Request::new(Full::new(Bytes::from(body)));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = self.uri.clone();
        let h = request.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        h.insert(
            hyper::header::USER_AGENT,
            HeaderValue::from_static(concat!("dictmon/", env!("CARGO_PKG_VERSION"))),
        );
        for (name, value) in headers {
            h.insert(name, value.clone());
        }
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| self.transport(&e))?;
            let status = response.status();
            // Read the answer whole, so the connection can be kept.
            let body = response
                .into_body()
                .collect()
                .await
                .map(http_body_util::Collected::to_bytes)
                .unwrap_or_default();
            if status.is_success() {
                return Ok(());
            }
            let text = String::from_utf8_lossy(&body[..body.len().min(200)])
                .trim()
                .to_owned();
            let (target, status) = (self.target.clone(), status.as_u16());
            Err(if (400..500).contains(&status) {
                DeliveryError::Rejected {
                    target,
                    status,
                    body: text,
                }
            } else {
                DeliveryError::Unavailable {
                    target,
                    status,
                    body: text,
                }
            })
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .unwrap_or_else(|_| {
                Err(DeliveryError::Timeout {
                    target: self.target.clone(),
                    timeout: self.timeout,
                })
            })
    }

    fn transport(&self, e: &hyper_util::client::legacy::Error) -> DeliveryError {
        let mut detail = e.to_string();
        let mut tls = false;
        let mut source = std::error::Error::source(e);
        while let Some(cause) = source {
            tls |= cause.downcast_ref::<rustls::Error>().is_some();
            let part = cause.to_string();
            if !detail.contains(&part) {
                detail.push_str(": ");
                detail.push_str(&part);
            }
            source = cause.source();
        }
        let target = self.target.clone();
        if tls {
            DeliveryError::Tls { target, detail }
        } else {
            DeliveryError::Unreachable { target, detail }
        }
    }
}

/// A TLS client configuration trusting `ca_cert` (PEM) or the system's CAs, presenting the
/// certificate chain and key of `client` (PEM files) when given.
pub(super) fn tls_config(
    sink: &str,
    ca_cert: Option<&Path>,
    client: Option<(&Path, &Path)>,
) -> Result<rustls::ClientConfig, SetupError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    if let Some(path) = ca_cert {
        let pem = std::fs::read(path).map_err(|error| SetupError::Read {
            sink: sink.to_owned(),
            what: "CA certificate",
            path: path.to_owned(),
            error,
        })?;
        let pem_err = |detail: String| SetupError::Invalid {
            sink: sink.to_owned(),
            path: path.to_owned(),
            detail,
        };
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| pem_err(e.to_string()))?;
            roots.add(cert).map_err(|e| pem_err(e.to_string()))?;
        }
        if roots.is_empty() {
            return Err(pem_err("no CERTIFICATE block in it".into()));
        }
    } else {
        // The system's bundle; an https sink without any trusted CA fails each delivery
        // with a TLS error that says so.
        let found = rustls_native_certs::load_native_certs();
        roots.add_parsable_certificates(found.certs);
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| SetupError::Invalid {
            sink: sink.to_owned(),
            path: PathBuf::new(),
            detail: e.to_string(),
        })?
        .with_root_certificates(roots);
    let Some((cert, key)) = client else {
        return Ok(builder.with_no_client_auth());
    };
    let read = |path: &Path, what: &'static str| {
        std::fs::read(path).map_err(|error| SetupError::Read {
            sink: sink.to_owned(),
            what,
            path: path.to_owned(),
            error,
        })
    };
    let invalid = |path: &Path, detail: String| SetupError::Invalid {
        sink: sink.to_owned(),
        path: path.to_owned(),
        detail,
    };
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(&read(cert, "client certificate")?)
            .collect::<Result<_, _>>()
            .map_err(|e| invalid(cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(invalid(cert, "no CERTIFICATE block in it".into()));
    }
    let key_der = rustls::pki_types::PrivateKeyDer::from_pem_slice(&read(key, "client key")?)
        .map_err(|e| invalid(key, e.to_string()))?;
    builder
        .with_client_auth_cert(chain, key_der)
        .map_err(|e| invalid(key, e.to_string()))
}
