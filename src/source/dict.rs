//! DICT's own policy API (`GET {base}/policies/`, HTTPS with mutual TLS, XML). Today: what an
//! HTTP answer that is not a listing means — the HTTPS client itself comes with the rest of the
//! DICT source.
//!
//! DICT answers errors as RFC 7807 `application/problem+xml` (spec v2.12.1): 403 `Forbidden`,
//! 404 `NotFound`, 410 `Gone`/`DeprecatedResource`, 429 `RateLimited`, 500
//! `InternalServerError`, 503 `ServiceUnavailable` with `Retry-After` (seconds). Each maps to a
//! [`SourceError`] that says whether to retry and when, and carries DICT's `correlationId` for
//! BACEN's support.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::SourceError;
use super::dict_xml::parse_problem;

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

/// What a non-200 answer means. `retry_after_header` is the raw `Retry-After` value, `body`
/// the (decompressed) body, problem+xml or anything else.
pub fn classify(
    endpoint: &str,
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
            detail: format!(
                "{detail}; POLICIES_LIST allows 6 listings a minute (20 in a burst): is the poll interval too short?"
            ),
        },
        403 | 401 => SourceError::Refused {
            endpoint,
            detail: format!(
                "{detail}; check the ISPB (PI-RequestingParticipant) and that the client certificate belongs to it"
            ),
        },
        404 | 410 => SourceError::Refused {
            endpoint,
            detail: format!(
                "{detail}; check dict_url: the policy endpoints live on the main DICT host under /api/v2/"
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
            403,
            None,
            problem("Forbidden", 403).as_bytes(),
            now(),
        );
        assert_eq!((e.kind(), e.retryable()), ("refused", false));
        assert!(e.to_string().contains("ISPB"), "{e}");
        let e = classify("dict", 410, None, b"", now());
        assert_eq!((e.kind(), e.retryable()), ("refused", false));
        assert!(e.to_string().contains("dict_url"), "{e}");
        let e = classify("dict", 500, None, b"<html>oops</html>", now());
        assert_eq!((e.kind(), e.retryable()), ("unavailable", true));
        let e = classify("dict", 302, None, b"", now());
        assert_eq!(e.kind(), "malformed");
    }
}
