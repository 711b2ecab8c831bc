//! Where policy states come from: a Bridge over gRPC ([`bridge`]), the built-in simulator
//! ([`simulator`], also served over gRPC or DICT's HTTPS API by `dictmon simulate --listen`),
//! and DICT's own HTTPS API ([`dict`]).
//!
//! May use: `domain`.
//!
//! A source answers with DICT's listing *as received* ([`PolicyList`]): names, letters and
//! numbers unvalidated, so that the monitor can reject bad values with a reason and count them.
//! Errors say whether retrying can help ([`SourceError::retryable`]) and carry a bounded label
//! for metrics ([`SourceError::kind`]).

pub mod bridge;
pub mod dict;
pub mod dict_signature;
pub mod dict_xml;
pub mod simulator;
pub mod simulator_dict;
pub mod tls;
pub(crate) mod traffic;

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};

/// Code generated from `proto/bridge.proto`.
#[allow(
    missing_docs,
    clippy::pedantic,
    clippy::unwrap_used,
    reason = "generated code"
)]
pub mod proto {
    tonic::include_proto!("dictmon.bridge.v1");
}

/// One policy as DICT reported it, not yet validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawPolicy {
    /// DICT's `Name`.
    pub name: String,
    /// DICT's `AvailableTokens`.
    pub available_tokens: i64,
    /// DICT's `Capacity`.
    pub capacity: i64,
    /// DICT's `RefillTokens`.
    pub refill_tokens: i64,
    /// DICT's `RefillPeriodSec`.
    pub refill_period_secs: i64,
}

/// One answer of a source: every policy at DICT's one response time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyList {
    /// DICT's `ResponseTime`.
    pub response_time: DateTime<Utc>,
    /// DICT's `Category`, as sent.
    pub category: String,
    /// DICT's `CorrelationId` (empty when the source has none).
    pub correlation_id: String,
    /// The policies.
    pub policies: Vec<RawPolicy>,
}

/// Why a source gave no listing.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// Cannot connect, the connection broke, or the service is down for now. Retryable,
    /// after `retry_after` when given (DICT's 503).
    #[error("{endpoint} is unavailable: {detail}")]
    Unavailable {
        /// Where.
        endpoint: String,
        /// Wait at least this long.
        retry_after: Option<Duration>,
        /// What the transport or the service said.
        detail: String,
    },
    /// No answer within the deadline. Retryable.
    #[error("{endpoint} did not answer within {after:?}")]
    Timeout {
        /// Where.
        endpoint: String,
        /// The deadline.
        after: Duration,
    },
    /// The source (or DICT's own `POLICIES_LIST` bucket) refused for now. Retryable, after
    /// `retry_after` when given.
    #[error("{endpoint} is rate limiting us: {detail}")]
    RateLimited {
        /// Where.
        endpoint: String,
        /// Wait at least this long.
        retry_after: Option<Duration>,
        /// What it said.
        detail: String,
    },
    /// A TLS problem: certificates, trust, handshake. Permanent until the configuration
    /// changes.
    #[error("TLS with {endpoint} failed: {detail}")]
    Tls {
        /// Where.
        endpoint: String,
        /// Which side failed and what to do.
        detail: String,
    },
    /// Refused: not authorised, unknown policy, unsupported call. Permanent.
    #[error("{endpoint} refused the request: {detail}")]
    Refused {
        /// Where.
        endpoint: String,
        /// What it said.
        detail: String,
    },
    /// DICT's answer failed signature verification (`signing_cert`): nothing of it is used.
    /// Not retried within the cycle (the same signer would sign the same way); the next cycle
    /// asks again.
    #[error("{endpoint} sent an answer whose signature is refused: {detail}")]
    BadSignature {
        /// Where.
        endpoint: String,
        /// What is wrong with it.
        detail: String,
    },
    /// An answer that is not a listing at all (missing time, bad encoding). Retryable: the
    /// next answer may be fine.
    #[error("{endpoint} sent a malformed answer: {detail}")]
    Malformed {
        /// Where.
        endpoint: String,
        /// What is wrong.
        detail: String,
    },
}

impl SourceError {
    /// Every metric label, for pre-registering.
    pub const KINDS: [&'static str; 7] = [
        "unavailable",
        "timeout",
        "rate_limited",
        "tls",
        "refused",
        "malformed",
        "bad_signature",
    ];

    /// Whether trying again (within the cycle, or at the next one) can help.
    pub fn retryable(&self) -> bool {
        !matches!(
            self,
            Self::Tls { .. } | Self::Refused { .. } | Self::BadSignature { .. }
        )
    }

    /// The bounded metric label (`kind="timeout"`).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Unavailable { .. } => "unavailable",
            Self::Timeout { .. } => "timeout",
            Self::RateLimited { .. } => "rate_limited",
            Self::Tls { .. } => "tls",
            Self::Refused { .. } => "refused",
            Self::Malformed { .. } => "malformed",
            Self::BadSignature { .. } => "bad_signature",
        }
    }

    /// The least time to wait before trying again, when the source said.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after, .. } | Self::Unavailable { retry_after, .. } => {
                *retry_after
            }
            _ => None,
        }
    }
}

/// A source of policy listings.
pub trait Source: Send {
    /// For logs: what this source is and where.
    fn describe(&self) -> String;
    /// For traces and metrics: `dict`, `bridge` or `simulator`.
    fn kind(&self) -> &'static str;
    /// Asks for every policy now.
    fn list(&mut self) -> impl Future<Output = Result<PolicyList, SourceError>> + Send;
    /// Asks for one policy now (`dictmon status --live`); the listing holds it alone.
    /// By default, a listing narrowed to it.
    fn get(&mut self, name: &str) -> impl Future<Output = Result<PolicyList, SourceError>> + Send {
        let name = name.to_owned();
        let endpoint = self.describe();
        let listing = self.list();
        async move {
            let mut list = listing.await?;
            list.policies.retain(|p| p.name == name);
            if list.policies.is_empty() {
                return Err(SourceError::Refused {
                    endpoint,
                    detail: format!("no policy named {name:?}"),
                });
            }
            Ok(list)
        }
    }
    /// The least time between two calls, retries included, so that polling never drains the
    /// source's own rate limit (DICT's `POLICIES_LIST`). The poll interval may not be shorter.
    fn min_spacing(&self) -> Duration {
        Duration::ZERO
    }
}
