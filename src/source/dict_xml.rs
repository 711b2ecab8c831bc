//! DICT's XML bodies: `ListPoliciesResponse` and `GetPolicyResponse` (API spec v2.12.1), and
//! RFC 7807 problems (`application/problem+xml`), read with quick-xml's streaming reader — and
//! written, in the spec's shape and element order, for the simulator.
//!
//! Elements are matched by local name, so namespace prefixes and default namespaces are
//! tolerated; element order is free; unknown elements (and their subtrees) are ignored; the
//! `Signature` element is skipped here (verifying it is the HTTPS client's job). A missing
//! required element is an error that names it.
//!
//! Invariants: no panic on any input; numbers are `i64`, times RFC 3339.

#![deny(clippy::indexing_slicing, clippy::unwrap_used)]

use chrono::{DateTime, Utc};
use quick_xml::Reader;
use quick_xml::events::Event;

use super::{PolicyList, RawPolicy};

/// Why a body could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum XmlError {
    /// Not well-formed XML.
    #[error("not well-formed XML at byte {position}: {message}")]
    Syntax {
        /// Byte offset in the body.
        position: u64,
        /// What the parser said.
        message: String,
    },
    /// The root element is not the one expected.
    #[error("expected a <{expected}> document, found <{found}>")]
    WrongRoot {
        /// The root expected.
        expected: &'static str,
        /// The root found.
        found: String,
    },
    /// A required element is absent.
    #[error("<{element}> is missing{}", within.map_or(String::new(), |w| format!(" in <{w}>")))]
    Missing {
        /// The element.
        element: &'static str,
        /// Its parent, when not the root.
        within: Option<&'static str>,
    },
    /// An element's text is not of its type.
    #[error("<{element}> is {value:?}, not {expected}")]
    BadValue {
        /// The element.
        element: &'static str,
        /// Its text.
        value: String,
        /// What it should be.
        expected: &'static str,
    },
}

/// An RFC 7807 problem as DICT sends it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Problem {
    /// `type`: e.g. `https://dict.pi.rsfn.net.br/api/v2/error/RateLimited`.
    pub kind: String,
    /// `title`.
    pub title: String,
    /// `status`, when present and numeric.
    pub status: Option<u16>,
    /// `detail`.
    pub detail: String,
    /// `correlationId`, for BACEN's support.
    pub correlation_id: String,
}

impl Problem {
    /// The last path segment of `type` (`RateLimited`, `Forbidden` …).
    pub fn short_type(&self) -> &str {
        self.kind.rsplit('/').next().unwrap_or(&self.kind)
    }
}

/// One element of a flat document: its local-name path from the root and its text.
type Leaf = (Vec<String>, String);

/// Reads every leaf element (path, text), skipping `Signature` subtrees; returns the root's
/// local name too.
fn leaves(xml: &[u8]) -> Result<(String, Vec<Leaf>), XmlError> {
    // No trimming here: entity references split text into several events, and trimming each
    // would eat the spaces around them. Values are trimmed whole where they are used.
    let mut reader = Reader::from_reader(xml);
    let mut buf = Vec::new();
    let mut path: Vec<String> = Vec::new();
    let mut root = None;
    let mut text = String::new();
    let mut out = Vec::new();
    let mut skip_depth: Option<usize> = None;
    loop {
        let syntax = |e: &dyn std::fmt::Display, reader: &Reader<&[u8]>| XmlError::Syntax {
            position: reader.error_position(),
            message: e.to_string(),
        };
        let event = reader
            .read_event_into(&mut buf)
            .map_err(|e| syntax(&e, &reader))?;
        match event {
            Event::Start(e) => {
                let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                if root.is_none() {
                    root = Some(name.clone());
                }
                if skip_depth.is_none() && name == "Signature" {
                    skip_depth = Some(path.len());
                }
                path.push(name);
                text.clear();
            }
            Event::Empty(e) => {
                let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                if root.is_none() {
                    root = Some(name.clone());
                }
                if skip_depth.is_none() {
                    let mut p = path.clone();
                    p.push(name);
                    out.push((p, String::new()));
                }
            }
            Event::Text(t) => {
                let decoded = t.xml_content().map_err(|e| syntax(&e, &reader))?;
                text.push_str(&decoded);
            }
            Event::CData(t) => {
                let decoded = t.decode().map_err(|e| syntax(&e, &reader))?;
                text.push_str(&decoded);
            }
            Event::GeneralRef(r) => {
                if let Some(c) = r.resolve_char_ref().map_err(|e| syntax(&e, &reader))? {
                    text.push(c);
                } else {
                    let name = r.decode().map_err(|e| syntax(&e, &reader))?;
                    let resolved = quick_xml::escape::resolve_xml_entity(&name)
                        .ok_or_else(|| syntax(&format!("unknown entity &{name};"), &reader))?;
                    text.push_str(resolved);
                }
            }
            Event::End(_) => {
                if skip_depth.is_none() {
                    out.push((path.clone(), std::mem::take(&mut text)));
                }
                path.pop();
                if skip_depth == Some(path.len()) {
                    skip_depth = None;
                }
            }
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    let root = root.ok_or(XmlError::Syntax {
        position: 0,
        message: "empty document".into(),
    })?;
    Ok((root, out))
}

/// The leaves of a document whose root must be `root`.
fn document(xml: &[u8], root: &'static str) -> Result<Vec<Leaf>, XmlError> {
    let (found, leaves) = leaves(xml)?;
    if found == root {
        Ok(leaves)
    } else {
        Err(XmlError::WrongRoot {
            expected: root,
            found,
        })
    }
}

/// The text of the element at `path` below the root (first occurrence).
fn find<'a>(leaves: &'a [Leaf], path: &[&str]) -> Option<&'a str> {
    leaves
        .iter()
        .find(|(p, _)| {
            p.len() == path.len() + 1
                && p.iter()
                    .skip(1)
                    .map(String::as_str)
                    .eq(path.iter().copied())
        })
        .map(|(_, t)| t.as_str())
}

fn required<'a>(leaves: &'a [Leaf], path: &[&'static str]) -> Result<&'a str, XmlError> {
    find(leaves, path).ok_or(XmlError::Missing {
        element: path.last().copied().unwrap_or("?"),
        within: path.len().checked_sub(2).and_then(|i| path.get(i)).copied(),
    })
}

fn number(element: &'static str, text: &str) -> Result<i64, XmlError> {
    text.trim().parse().map_err(|_| XmlError::BadValue {
        element,
        value: text.to_owned(),
        expected: "a whole number",
    })
}

fn header(leaves: &[Leaf]) -> Result<(DateTime<Utc>, String, String), XmlError> {
    let time = required(leaves, &["ResponseTime"])?;
    let response_time = DateTime::parse_from_rfc3339(time.trim())
        .map_err(|_| XmlError::BadValue {
            element: "ResponseTime",
            value: time.to_owned(),
            expected: "an RFC 3339 date-time",
        })?
        .with_timezone(&Utc);
    let category = required(leaves, &["Category"])?.trim().to_owned();
    let correlation_id = find(leaves, &["CorrelationId"])
        .unwrap_or_default()
        .trim()
        .to_owned();
    Ok((response_time, category, correlation_id))
}

/// The five fields of one `<Policy>`, given the leaves below it (paths relative to it).
fn policy(fields: &[(String, &str)]) -> Result<RawPolicy, XmlError> {
    let get = |name: &'static str| {
        fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| *t)
            .ok_or(XmlError::Missing {
                element: name,
                within: Some("Policy"),
            })
    };
    Ok(RawPolicy {
        name: get("Name")?.trim().to_owned(),
        available_tokens: number("AvailableTokens", get("AvailableTokens")?)?,
        capacity: number("Capacity", get("Capacity")?)?,
        refill_tokens: number("RefillTokens", get("RefillTokens")?)?,
        refill_period_secs: number("RefillPeriodSec", get("RefillPeriodSec")?)?,
    })
}

/// Reads a `ListPoliciesResponse` (the body of `GET /policies/`).
pub fn parse_list(xml: &[u8]) -> Result<PolicyList, XmlError> {
    let leaves = document(xml, "ListPoliciesResponse")?;
    let (response_time, category, correlation_id) = header(&leaves)?;
    // Group the leaves under each <Policies><Policy> by its position: a leaf at depth 4 whose
    // parent is a Policy; the Policy elements close in order, so a new group starts after a
    // leaf whose path is exactly [root, Policies, Policy].
    let mut policies = Vec::new();
    let mut fields: Vec<(String, &str)> = Vec::new();
    for (path, text) in &leaves {
        let in_policy = path.get(1).is_some_and(|p| p == "Policies")
            && path.get(2).is_some_and(|p| p == "Policy");
        match path.len() {
            4 if in_policy => {
                if let Some(name) = path.get(3) {
                    fields.push((name.clone(), text.as_str()));
                }
            }
            3 if in_policy => policies.push(policy(&std::mem::take(&mut fields))?),
            _ => {}
        }
    }
    Ok(PolicyList {
        response_time,
        category,
        correlation_id,
        policies,
    })
}

/// Reads a `GetPolicyResponse` (the body of `GET /policies/{policy}`): a listing of one.
pub fn parse_get(xml: &[u8]) -> Result<PolicyList, XmlError> {
    let leaves = document(xml, "GetPolicyResponse")?;
    let (response_time, category, correlation_id) = header(&leaves)?;
    let fields: Vec<(String, &str)> = leaves
        .iter()
        .filter(|(p, _)| p.len() == 3 && p.get(1).is_some_and(|x| x == "Policy"))
        .filter_map(|(p, t)| Some((p.get(2)?.clone(), t.as_str())))
        .collect();
    if !leaves
        .iter()
        .any(|(p, _)| p.len() == 2 && p.get(1).is_some_and(|x| x == "Policy"))
    {
        return Err(XmlError::Missing {
            element: "Policy",
            within: None,
        });
    }
    Ok(PolicyList {
        response_time,
        category,
        correlation_id,
        policies: vec![policy(&fields)?],
    })
}

/// Reads an RFC 7807 problem (`application/problem+xml`); lenient: absent fields are empty.
pub fn parse_problem(xml: &[u8]) -> Result<Problem, XmlError> {
    let leaves = document(xml, "problem")?;
    let text = |name: &str| find(&leaves, &[name]).unwrap_or_default().trim().to_owned();
    Ok(Problem {
        kind: text("type"),
        title: text("title"),
        status: text("status").parse().ok(),
        detail: text("detail"),
        correlation_id: text("correlationId"),
    })
}

/// Writes a `ListPoliciesResponse` in the spec's element order (with an empty `Signature`, as
/// the spec's examples have).
pub fn write_list(list: &PolicyList) -> String {
    let mut xml = header_xml("ListPoliciesResponse", list);
    xml.push_str("  <Policies>\n");
    for p in &list.policies {
        push_policy(&mut xml, "    ", p);
    }
    xml.push_str("  </Policies>\n</ListPoliciesResponse>\n");
    xml
}

/// Writes a `GetPolicyResponse` for the first policy of `list`.
pub fn write_get(list: &PolicyList) -> String {
    let mut xml = header_xml("GetPolicyResponse", list);
    if let Some(p) = list.policies.first() {
        push_policy(&mut xml, "  ", p);
    }
    xml.push_str("</GetPolicyResponse>\n");
    xml
}

/// Writes an RFC 7807 problem as DICT does (`type` under `https://dict.pi.rsfn.net.br/api/v2/error/`).
pub fn write_problem(
    short_type: &str,
    title: &str,
    status: u16,
    detail: &str,
    correlation_id: &str,
) -> String {
    use quick_xml::escape::escape;
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<problem xmlns=\"urn:ietf:rfc:7807\">\n  <type>https://dict.pi.rsfn.net.br/api/v2/error/{}</type>\n  <title>{}</title>\n  <status>{status}</status>\n  <detail>{}</detail>\n  <correlationId>{}</correlationId>\n</problem>\n",
        escape(short_type),
        escape(title),
        escape(detail),
        escape(correlation_id)
    )
}

fn header_xml(root: &str, list: &PolicyList) -> String {
    use quick_xml::escape::escape;
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<{root}>\n  <Signature></Signature>\n  <CorrelationId>{}</CorrelationId>\n  <ResponseTime>{}</ResponseTime>\n  <Category>{}</Category>\n",
        escape(&list.correlation_id),
        list.response_time
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        escape(&list.category)
    )
}

fn push_policy(xml: &mut String, indent: &str, p: &RawPolicy) {
    use std::fmt::Write;
    let _ = write!(
        xml,
        "{indent}<Policy>\n{indent}  <AvailableTokens>{}</AvailableTokens>\n{indent}  <Capacity>{}</Capacity>\n{indent}  <RefillTokens>{}</RefillTokens>\n{indent}  <RefillPeriodSec>{}</RefillPeriodSec>\n{indent}  <Name>{}</Name>\n{indent}</Policy>\n",
        p.available_tokens,
        p.capacity,
        p.refill_tokens,
        p.refill_period_secs,
        quick_xml::escape::escape(&p.name)
    );
}
