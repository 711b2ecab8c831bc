//! What a request asks for, from its path and query alone: the routing of the HTTP server,
//! pure so that it can be fuzzed (`fuzz/fuzz_targets/http_route.rs`).
//!
//! Invariants: every path and query maps to exactly one [`Route`], without panicking; a
//! policy name or range that does not parse is its own route (answered 404 or 400), never a
//! default.

use super::history::Range;
use super::pages;
use crate::domain::PolicyName;
use crate::store::catalog::AlertCursor;

/// The most alerts one page of `/api/v1/alerts` holds.
pub const MAX_ALERT_PAGE: usize = 1000;
/// A page's size when `after` is given without `limit`.
pub const DEFAULT_ALERT_PAGE: usize = 100;

/// A request's destination.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// `/metrics`.
    Metrics,
    /// `/healthz`.
    Healthz,
    /// `/readyz`.
    Readyz,
    /// `/api/v1/policies`.
    ApiPolicies,
    /// `/api/v1/alerts[?open=true]`, or a page of the history in the order alerts opened:
    /// `?limit=N[&after=CURSOR]`.
    ApiAlerts {
        /// Only the open ones.
        open_only: bool,
        /// A page (its size, and where it starts) rather than the whole history.
        page: Option<(usize, Option<AlertCursor>)>,
    },
    /// An API query parameter that does not parse; the message says what it takes.
    BadApiQuery(String),
    /// `/`: the dashboard's overview.
    Overview,
    /// An embedded asset: content type and body.
    Asset(&'static str, &'static str),
    /// `/policy/NAME[?range=R]` or `/policy/NAME/states.csv[?range=R]`.
    Policy {
        /// The policy.
        name: PolicyName,
        /// The range.
        range: Range,
        /// The CSV of the range rather than the page.
        csv: bool,
    },
    /// `/policy/X` where X is no policy name.
    NoSuchPolicy(String),
    /// A `?range=` that is none of the ranges; the message lists them.
    BadRange(String),
    /// Anything else.
    NotFound,
}

impl Route {
    /// The route of `path` with `query` (the part after `?`, if any).
    pub fn parse(path: &str, query: Option<&str>) -> Self {
        match path {
            "/metrics" => Self::Metrics,
            "/healthz" => Self::Healthz,
            "/readyz" => Self::Readyz,
            "/api/v1/policies" => Self::ApiPolicies,
            "/api/v1/alerts" => match alert_page(query) {
                Ok(page) => Self::ApiAlerts {
                    open_only: matches!(param(query, "open"), Some("true" | "1")),
                    page,
                },
                Err(e) => Self::BadApiQuery(e),
            },
            "/" | "/index.html" => Self::Overview,
            pages::CSS_PATH => Self::Asset("text/css; charset=utf-8", pages::CSS),
            pages::JS_PATH => Self::Asset("text/javascript; charset=utf-8", pages::JS),
            _ => match path.strip_prefix("/policy/") {
                Some(rest) => {
                    let (name, csv) = match rest.strip_suffix("/states.csv") {
                        Some(name) => (name, true),
                        None => (rest, false),
                    };
                    match (PolicyName::new(name), Range::parse(param(query, "range"))) {
                        (Err(_), _) => Self::NoSuchPolicy(name.to_owned()),
                        (_, Err(e)) => Self::BadRange(e),
                        (Ok(name), Ok(range)) => Self::Policy { name, range, csv },
                    }
                }
                None => Self::NotFound,
            },
        }
    }

    /// Whether the route serves the API's data, which `api_token_file` protects.
    pub fn needs_token(&self) -> bool {
        matches!(
            self,
            Self::ApiPolicies
                | Self::ApiAlerts { .. }
                | Self::BadApiQuery(_)
                | Self::Policy { csv: true, .. }
        )
    }
}

/// `limit` and `after` of `/api/v1/alerts`: none for the whole history.
fn alert_page(query: Option<&str>) -> Result<Option<(usize, Option<AlertCursor>)>, String> {
    let limit = param(query, "limit");
    let after = param(query, "after");
    if limit.is_none() && after.is_none() {
        return Ok(None);
    }
    let limit = match limit {
        None => DEFAULT_ALERT_PAGE,
        Some(text) => match text.parse::<usize>() {
            Ok(n @ 1..=MAX_ALERT_PAGE) => n,
            _ => {
                return Err(format!(
                    "limit={text:?}: a page holds 1 to {MAX_ALERT_PAGE} alerts"
                ));
            }
        },
    };
    let after = after.map(str::parse).transpose()?;
    Ok(Some((limit, after)))
}

/// The value of `key` in a query string (the first, undecoded).
fn param<'a>(query: Option<&'a str>, key: &str) -> Option<&'a str> {
    query?
        .split('&')
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_route_to_their_pages_and_bad_parts_to_their_own_answers() {
        assert_eq!(Route::parse("/metrics", Some("x=1")), Route::Metrics);
        assert_eq!(
            Route::parse("/api/v1/alerts", Some("a=b&open=true")),
            Route::ApiAlerts {
                open_only: true,
                page: None
            }
        );
        assert_eq!(
            Route::parse("/api/v1/alerts", Some("opened=true")),
            Route::ApiAlerts {
                open_only: false,
                page: None
            }
        );
        let cursor = "1764979200000000000-0123456789abcdef0123456789abcdef";
        assert_eq!(
            Route::parse("/api/v1/alerts", Some(&format!("limit=5&after={cursor}"))),
            Route::ApiAlerts {
                open_only: false,
                page: Some((5, Some(cursor.parse().expect("cursor"))))
            }
        );
        assert_eq!(
            Route::parse("/api/v1/alerts", Some(&format!("after={cursor}"))),
            Route::ApiAlerts {
                open_only: false,
                page: Some((DEFAULT_ALERT_PAGE, Some(cursor.parse().expect("cursor"))))
            }
        );
        for bad in [
            "limit=0",
            "limit=1001",
            "limit=x",
            "after=12",
            "after=1-xyz",
        ] {
            assert!(
                matches!(
                    Route::parse("/api/v1/alerts", Some(bad)),
                    Route::BadApiQuery(_)
                ),
                "{bad}"
            );
        }
        let name = PolicyName::new("CLAIMS_READ").expect("name");
        assert_eq!(
            Route::parse("/policy/CLAIMS_READ/states.csv", Some("range=7d")),
            Route::Policy {
                name: name.clone(),
                range: Range::Week,
                csv: true
            }
        );
        assert_eq!(
            Route::parse("/policy/CLAIMS_READ", None),
            Route::Policy {
                name,
                range: Range::Day,
                csv: false
            }
        );
        assert_eq!(
            Route::parse("/policy/<b>", None),
            Route::NoSuchPolicy("<b>".into())
        );
        assert!(matches!(
            Route::parse("/policy/CLAIMS_READ", Some("range=1y")),
            Route::BadRange(_)
        ));
        assert_eq!(Route::parse("/api/v2/x", None), Route::NotFound);
        assert!(Route::parse("/api/v1/policies", None).needs_token());
        assert!(!Route::parse("/policy/CLAIMS_READ", None).needs_token());
        assert!(!Route::parse("/metrics", None).needs_token());
    }
}
