//! The webhook sink: each event is sent (`POST`) as its JSON (the legacy event schema,
//! `proto/alerts.proto`), one request per event, in outbox order. Headers:
//! `X-Dictmon-Event-Id`; `Authorization: Bearer …` with a token file;
//! `X-Dictmon-Signature-256: sha256=<hex HMAC-SHA256 of the body>` with a secret file.
//! Acknowledged by any 2xx answer.

use std::fmt::Write;

use hyper::header::{AUTHORIZATION, HeaderName, HeaderValue};

use super::http::{HttpClient, SetupError, bearer_header};
use super::{DeliveryError, Sink, WebhookConfig};
use crate::domain::AlertEvent;

/// The signature header.
pub const SIGNATURE_HEADER: &str = "x-dictmon-signature-256";
/// The event id header.
pub const EVENT_ID_HEADER: &str = "x-dictmon-event-id";

pub struct Webhook {
    http: HttpClient,
    bearer: Option<HeaderValue>,
    key: Option<ring::hmac::Key>,
}

impl Webhook {
    pub fn new(sink: &str, c: &WebhookConfig) -> Result<Self, SetupError> {
        let read = |what: &'static str, path: &std::path::Path| {
            std::fs::read_to_string(path)
                .map(|s| s.trim().to_owned())
                .map_err(|error| SetupError::Read {
                    sink: sink.to_owned(),
                    what,
                    path: path.to_owned(),
                    error,
                })
        };
        let bearer = c
            .bearer_token_file
            .as_deref()
            .map(|path| bearer_header(sink, path))
            .transpose()?;
        let key = match &c.hmac_secret_file {
            Some(path) => Some(ring::hmac::Key::new(
                ring::hmac::HMAC_SHA256,
                read("HMAC secret file", path)?.as_bytes(),
            )),
            None => None,
        };
        Ok(Self {
            http: HttpClient::new(sink, &c.url, c.ca_cert.as_deref(), c.timeout)?,
            bearer,
            key,
        })
    }
}

/// `sha256=<hex>` of `body` under `key`: the signature header's value.
pub fn signature(key: &ring::hmac::Key, body: &[u8]) -> String {
    let tag = ring::hmac::sign(key, body);
    let mut text = String::with_capacity(7 + 64);
    text.push_str("sha256=");
    for b in tag.as_ref() {
        let _ = write!(text, "{b:02x}");
    }
    text
}

impl Sink for Webhook {
    fn batch_size(&self) -> usize {
        1
    }

    async fn deliver(&mut self, events: &[(u64, AlertEvent)]) -> Result<(), DeliveryError> {
        for (_, event) in events {
            let body = self.http.encode(event)?;
            let mut headers = vec![(
                HeaderName::from_static(EVENT_ID_HEADER),
                HeaderValue::try_from(event.event_id.to_string())
                    .unwrap_or(HeaderValue::from_static("")),
            )];
            if let Some(b) = &self.bearer {
                headers.push((AUTHORIZATION, b.clone()));
            }
            if let Some(key) = &self.key
                && let Ok(v) = HeaderValue::try_from(signature(key, &body))
            {
                headers.push((HeaderName::from_static(SIGNATURE_HEADER), v));
            }
            self.http.post_json(body, &headers).await?;
        }
        Ok(())
    }
}
