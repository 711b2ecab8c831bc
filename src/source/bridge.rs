//! The Bridge client: a PSP's internal gateway to DICT, over gRPC (tonic), plain or TLS, with
//! mutual TLS from PEM files, a deadline per call, and every failure classified retryable or
//! permanent. The connection is made lazily and re-made after failures, so a Bridge that is
//! down at start-up or restarts later needs no restart of dictmon.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::DateTime;
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use super::proto::rate_limit_service_client::RateLimitServiceClient;
use super::proto::{GetPolicyRequest, ListPoliciesRequest, PolicyState};
use super::tls::{TlsError, TlsFailure, error_chain, read_pem, tls_failure};
use super::{PolicyList, RawPolicy, Source, SourceError};

/// How to reach the Bridge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BridgeConfig {
    /// `http://host:port` or `https://host:port`.
    pub url: String,
    /// CA bundle that signs the Bridge's certificate (needed for `https`).
    pub ca_cert: Option<PathBuf>,
    /// Client certificate chain for mutual TLS.
    pub client_cert: Option<PathBuf>,
    /// Its private key.
    pub client_key: Option<PathBuf>,
    /// Deadline of one call, connection included.
    pub timeout: Duration,
    /// The participant's ISPB, passed on to DICT (may be empty).
    pub ispb: String,
}

/// Why the client could not be built (before any call).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BridgeSetupError {
    /// The URL is not usable.
    #[error("{what} url {url:?}: {detail}")]
    Url {
        /// Which server: "bridge", "otlp".
        what: &'static str,
        /// The URL.
        url: String,
        /// What is wrong.
        detail: String,
    },
    /// A PEM file could not be read.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// A certificate is set without its key, or the other way round.
    #[error("client_cert and client_key go together: set both for mutual TLS, or neither")]
    HalfIdentity,
}

/// The Bridge as a [`Source`].
pub struct BridgeSource {
    client: RateLimitServiceClient<Channel>,
    url: String,
    timeout: Duration,
    ispb: String,
}

/// A gRPC endpoint for `url` (`http://` or `https://host:port`) with a deadline per call and
/// per connection, and TLS from PEM files when the URL is https or a CA is given: `ca_cert`
/// (required for https) and, for mutual TLS, a client certificate and key. Shared by the
/// Bridge's client and the OTLP trace exporter; `what` names the server in errors.
pub fn grpc_endpoint(
    what: &'static str,
    url: &str,
    ca_cert: Option<&Path>,
    identity: (Option<&Path>, Option<&Path>),
    timeout: Duration,
) -> Result<Endpoint, BridgeSetupError> {
    let url_err = |detail: String| BridgeSetupError::Url {
        what,
        url: url.to_owned(),
        detail,
    };
    let mut endpoint = Endpoint::from_shared(url.to_owned())
        .map_err(|e| url_err(e.to_string()))?
        .timeout(timeout)
        .connect_timeout(timeout);
    if url.starts_with("https://") || ca_cert.is_some() {
        let Some(ca) = ca_cert else {
            return Err(url_err(format!(
                "https needs ca_cert: the CA bundle that signs the {what}'s certificate"
            )));
        };
        let mut tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(read_pem(ca, "CA certificate")?));
        match identity {
            (Some(cert), Some(key)) => {
                tls = tls.identity(Identity::from_pem(
                    read_pem(cert, "client certificate")?,
                    read_pem(key, "client key")?,
                ));
            }
            (None, None) => {}
            _ => return Err(BridgeSetupError::HalfIdentity),
        }
        endpoint = endpoint
            .tls_config(tls)
            .map_err(|e| url_err(e.to_string()))?;
    }
    Ok(endpoint)
}

impl BridgeSource {
    /// Builds the client; no connection is made until the first call.
    pub fn new(config: &BridgeConfig) -> Result<Self, BridgeSetupError> {
        let endpoint = grpc_endpoint(
            "bridge",
            &config.url,
            config.ca_cert.as_deref(),
            (config.client_cert.as_deref(), config.client_key.as_deref()),
            config.timeout,
        )?;
        Ok(Self {
            client: RateLimitServiceClient::new(endpoint.connect_lazy()),
            url: config.url.clone(),
            timeout: config.timeout,
            ispb: config.ispb.clone(),
        })
    }

    async fn call(&mut self) -> Result<PolicyList, SourceError> {
        let mut request = tonic::Request::new(ListPoliciesRequest {
            ispb: self.ispb.clone(),
        });
        request.set_timeout(self.timeout);
        let r = self
            .client
            .list_policies(request)
            .await
            .map_err(|s| classify(&self.url, self.timeout, &s))?
            .into_inner();
        self.listing(r.response_time, r.category, r.correlation_id, r.policies)
    }

    async fn call_one(&mut self, name: String) -> Result<PolicyList, SourceError> {
        let mut request = tonic::Request::new(GetPolicyRequest {
            ispb: self.ispb.clone(),
            name,
        });
        request.set_timeout(self.timeout);
        let r = self
            .client
            .get_policy(request)
            .await
            .map_err(|s| classify(&self.url, self.timeout, &s))?
            .into_inner();
        self.listing(
            r.response_time,
            r.category,
            r.correlation_id,
            r.policy.into_iter().collect(),
        )
    }

    fn listing(
        &self,
        time: Option<prost_types::Timestamp>,
        category: String,
        correlation_id: String,
        policies: Vec<PolicyState>,
    ) -> Result<PolicyList, SourceError> {
        policy_list(&self.url, time, category, correlation_id, policies)
    }
}

/// The listing a Bridge answer (from `endpoint`) stands for; a missing or impossible
/// response time is [`SourceError::Malformed`]. Values are checked later, by validation.
pub fn policy_list(
    endpoint: &str,
    time: Option<prost_types::Timestamp>,
    category: String,
    correlation_id: String,
    policies: Vec<PolicyState>,
) -> Result<PolicyList, SourceError> {
    let malformed = |detail: &str| SourceError::Malformed {
        endpoint: endpoint.to_owned(),
        detail: detail.to_owned(),
    };
    let time = time.ok_or_else(|| malformed("no response_time"))?;
    let response_time = u32::try_from(time.nanos)
        .ok()
        .and_then(|n| DateTime::from_timestamp(time.seconds, n))
        .ok_or_else(|| malformed("response_time out of range"))?;
    Ok(PolicyList {
        response_time,
        category,
        correlation_id,
        policies: policies
            .into_iter()
            .map(|p| RawPolicy {
                name: p.name,
                available_tokens: p.available_tokens,
                capacity: p.capacity,
                refill_tokens: p.refill_tokens,
                refill_period_secs: p.refill_period_sec,
            })
            .collect(),
    })
}

impl Source for BridgeSource {
    fn describe(&self) -> String {
        format!("the Bridge at {}", self.url)
    }

    fn kind(&self) -> &'static str {
        "bridge"
    }

    fn list(&mut self) -> impl Future<Output = Result<PolicyList, SourceError>> + Send {
        self.call()
    }

    fn get(&mut self, name: &str) -> impl Future<Output = Result<PolicyList, SourceError>> + Send {
        self.call_one(name.to_owned())
    }
}

use std::future::Future;

/// Maps a gRPC status to what it means for the monitor.
fn classify(url: &str, timeout: Duration, status: &tonic::Status) -> SourceError {
    let endpoint = url.to_owned();
    let detail = error_chain(
        status.message().to_owned(),
        std::error::Error::source(status),
    );
    let lower = detail.to_ascii_lowercase();
    match tls_failure(&detail) {
        Some(TlsFailure::PeerNotTrusted) => {
            return SourceError::Tls {
                endpoint,
                detail: format!(
                    "the Bridge's certificate is not trusted: it is not signed by the CA in ca_cert, or does not name this host ({detail})"
                ),
            };
        }
        Some(TlsFailure::OwnCertificateRejected) => {
            return SourceError::Tls {
                endpoint,
                detail: format!(
                    "the Bridge rejected our client certificate or requires one: check client_cert and client_key, and that the Bridge trusts their CA ({detail})"
                ),
            };
        }
        None => {}
    }
    match status.code() {
        Code::DeadlineExceeded => SourceError::Timeout {
            endpoint,
            after: timeout,
        },
        Code::Cancelled if lower.contains("timeout") || lower.contains("timed out") => {
            SourceError::Timeout {
                endpoint,
                after: timeout,
            }
        }
        Code::ResourceExhausted => SourceError::RateLimited {
            endpoint,
            retry_after: status
                .metadata()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse().ok())
                .map(Duration::from_secs),
            detail,
        },
        Code::PermissionDenied
        | Code::Unauthenticated
        | Code::NotFound
        | Code::Unimplemented
        | Code::InvalidArgument
        | Code::FailedPrecondition => SourceError::Refused { endpoint, detail },
        Code::Internal | Code::DataLoss if !lower.contains("transport") => {
            SourceError::Malformed { endpoint, detail }
        }
        _ => SourceError::Unavailable {
            endpoint,
            retry_after: None,
            detail,
        },
    }
}
