//! The Apache Pulsar sink: each alert event to a Pulsar topic (the legacy's Core-Dict feed)
//! through Pulsar's WebSocket producer API, which every broker with the WebSocket service on
//! serves (standalone brokers by default):
//! `ws[s]://HOST:PORT/ws/v2/producer/persistent/{tenant}/{namespace}/{topic}`.
//!
//! Each event is one JSON frame `{"payload": base64(event JSON), "key": event_id, "context":
//! outbox sequence, "properties": {event_id, event_type, endpoint_id}}`; the broker answers
//! each with `{"result": "ok", "messageId": …, "context": …}` once the message is persisted, or
//! `{"result": "send-error:N", "errorMsg": …}`. Events go one at a time, each waiting for its
//! answer, so they reach the topic in outbox order; an event counts as delivered only once the
//! broker said `ok`. A connection that breaks, a handshake refused, an error result or no
//! answer within the timeout fails the batch: the worker retries it from the first event not
//! acknowledged by the sink's progress, so an event may be sent twice across a broker restart,
//! never lost; consumers de-duplicate on the message key (`event_id`).
//!
//! Authentication: a token file (`Authorization: Bearer …`, Pulsar's token authentication),
//! TLS with the broker's CA and, optionally, a client certificate (Pulsar's TLS
//! authentication).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};

use super::http::{SetupError, bearer_header, tls_config};
use super::{DeliveryError, PulsarConfig, Sink};
use crate::domain::AlertEvent;

/// A byte stream, plain or TLS.
trait Io: AsyncRead + AsyncWrite + Unpin + Send + Sync {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Sync> Io for T {}

pub struct Pulsar {
    /// The producer URL (for errors and logs).
    target: String,
    host: String,
    port: u16,
    tls: Option<TlsConnector>,
    /// `Authorization: Bearer …`, from the token file.
    token: Option<hyper::header::HeaderValue>,
    timeout: Duration,
    conn: Option<WebSocketStream<Box<dyn Io>>>,
}

/// The producer URL of `topic` (`persistent://tenant/namespace/topic`) on the broker at `url`
/// (`ws://`, `wss://`, or `http://`/`https://` for the same), or why there is none.
pub fn producer_url(url: &str, topic: &str) -> Result<String, String> {
    let base = url.trim_end_matches('/');
    let base = if let Some(rest) = base.strip_prefix("http://") {
        format!("ws://{rest}")
    } else if let Some(rest) = base.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if base.starts_with("ws://") || base.starts_with("wss://") {
        base.to_owned()
    } else {
        return Err(format!(
            "{url:?}: the broker's web service URL, ws://, wss://, http:// or https://"
        ));
    };
    let path = topic
        .strip_prefix("persistent://")
        .filter(|p| {
            let parts: Vec<&str> = p.split('/').collect();
            parts.len() == 3
                && parts.iter().all(|s| {
                    !s.is_empty()
                        && s.chars()
                            .all(|c| c.is_ascii_alphanumeric() || "-_.=:%".contains(c))
                })
        })
        .ok_or_else(|| {
            format!("{topic:?}: a persistent topic, persistent://tenant/namespace/topic")
        })?;
    Ok(format!("{base}/ws/v2/producer/persistent/{path}"))
}

impl Pulsar {
    /// The sink of `c`; reads its token, CA and client certificate files now.
    pub fn new(sink: &str, c: &PulsarConfig) -> Result<Self, SetupError> {
        let bad_url = || SetupError::Url {
            sink: sink.to_owned(),
            url: c.url.clone(),
        };
        let target = producer_url(&c.url, &c.topic).map_err(|_| bad_url())?;
        let uri: hyper::Uri = target.parse().map_err(|_| bad_url())?;
        let secure = uri.scheme_str() == Some("wss");
        let host = uri.host().ok_or_else(bad_url)?.to_owned();
        let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
        let tls = if secure {
            let client = c.client_cert.as_deref().zip(c.client_key.as_deref());
            Some(TlsConnector::from(Arc::new(tls_config(
                sink,
                c.ca_cert.as_deref(),
                client,
            )?)))
        } else {
            None
        };
        let token = c
            .token_file
            .as_deref()
            .map(|path| bearer_header(sink, path))
            .transpose()?;
        Ok(Self {
            target,
            host,
            port,
            tls,
            token,
            timeout: c.timeout,
            conn: None,
        })
    }

    /// Opens the producer: TCP, TLS when `wss://`, then the WebSocket handshake.
    async fn connect(&self) -> Result<WebSocketStream<Box<dyn Io>>, DeliveryError> {
        let unreachable = |detail: String| DeliveryError::Unreachable {
            target: self.target.clone(),
            detail,
        };
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        let stream: Box<dyn Io> = match &self.tls {
            Some(tls) => {
                let name = rustls::pki_types::ServerName::try_from(self.host.clone())
                    .map_err(|e| unreachable(e.to_string()))?;
                Box::new(
                    tls.connect(name, tcp)
                        .await
                        .map_err(|e| DeliveryError::Tls {
                            target: self.target.clone(),
                            detail: e.to_string(),
                        })?,
                )
            }
            None => Box::new(tcp),
        };
        let mut request = self
            .target
            .as_str()
            .into_client_request()
            .map_err(|e| unreachable(e.to_string()))?;
        if let Some(token) = &self.token {
            request
                .headers_mut()
                .insert(hyper::header::AUTHORIZATION, token.clone());
        }
        match tokio_tungstenite::client_async(request, stream).await {
            Ok((ws, _)) => Ok(ws),
            Err(tungstenite::Error::Http(response)) => {
                let status = response.status().as_u16();
                let body = response
                    .body()
                    .as_deref()
                    .map(|b| String::from_utf8_lossy(&b[..b.len().min(200)]).into_owned())
                    .unwrap_or_default();
                let target = self.target.clone();
                Err(if (400..500).contains(&status) {
                    DeliveryError::Rejected {
                        target,
                        status,
                        body,
                    }
                } else {
                    DeliveryError::Unavailable {
                        target,
                        status,
                        body,
                    }
                })
            }
            Err(e) => Err(unreachable(e.to_string())),
        }
    }

    /// Sends one event and waits for the broker's answer to it.
    async fn send(&mut self, seq: u64, event: &AlertEvent) -> Result<(), DeliveryError> {
        if self.conn.is_none() {
            self.conn = Some(self.connect().await?);
        }
        let Some(conn) = &mut self.conn else {
            return Err(DeliveryError::Unreachable {
                target: self.target.clone(),
                detail: "not connected".into(),
            });
        };
        let target = &self.target;
        let broken = |detail: String| DeliveryError::Unreachable {
            target: target.clone(),
            detail,
        };
        let payload = serde_json::to_vec(event).map_err(|e| DeliveryError::NotTaken {
            target: target.clone(),
            detail: e.to_string(),
        })?;
        let context = seq.to_string();
        let frame = json!({
            "payload": base64::engine::general_purpose::STANDARD.encode(payload),
            "key": event.event_id.to_string(),
            "context": context,
            "properties": {
                "event_id": event.event_id.to_string(),
                "event_type": event.event_type.as_str(),
                "endpoint_id": event.endpoint_id.as_str(),
            },
        });
        conn.send(Message::text(frame.to_string()))
            .await
            .map_err(|e| broken(e.to_string()))?;
        while let Some(message) = conn.next().await {
            let text = match message.map_err(|e| broken(e.to_string()))? {
                Message::Text(text) => text,
                Message::Close(_) => break,
                // Pings are answered by the library; nothing else is expected.
                _ => continue,
            };
            let answer: Value = serde_json::from_str(&text).unwrap_or_default();
            if answer["context"] != context.as_str() {
                // The answer to an earlier attempt on this connection.
                continue;
            }
            return match answer["result"].as_str() {
                Some("ok") => Ok(()),
                result => Err(DeliveryError::NotTaken {
                    target: target.clone(),
                    detail: format!(
                        "{}: {}",
                        result.unwrap_or("no result"),
                        answer["errorMsg"].as_str().unwrap_or_default()
                    ),
                }),
            };
        }
        Err(broken("the broker closed the connection".into()))
    }
}

impl Sink for Pulsar {
    fn batch_size(&self) -> usize {
        64
    }

    async fn deliver(&mut self, events: &[(u64, AlertEvent)]) -> Result<(), DeliveryError> {
        for (seq, event) in events {
            let sent = tokio::time::timeout(self.timeout, self.send(*seq, event)).await;
            let result = sent.unwrap_or_else(|_| {
                Err(DeliveryError::Timeout {
                    target: self.target.clone(),
                    timeout: self.timeout,
                })
            });
            if let Err(e) = result {
                // A connection in an unknown state is not used again.
                self.conn = None;
                return Err(e);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::producer_url;

    #[test]
    fn the_producer_url_is_the_documented_path_and_bad_topics_are_refused() {
        assert_eq!(
            producer_url(
                "wss://pulsar.internal:8443/",
                "persistent://dict/core/dict-rate-limit-alerts"
            ),
            Ok(
                "wss://pulsar.internal:8443/ws/v2/producer/persistent/dict/core/dict-rate-limit-alerts"
                    .into()
            )
        );
        assert_eq!(
            producer_url("http://127.0.0.1:8080", "persistent://t/n/x"),
            Ok("ws://127.0.0.1:8080/ws/v2/producer/persistent/t/n/x".into())
        );
        for topic in [
            "non-persistent://t/n/x",
            "persistent://t/n",
            "persistent://t//x",
            "persistent://t/n/x/y",
            "t/n/x",
        ] {
            assert!(producer_url("ws://h:8080", topic).is_err(), "{topic}");
        }
        assert!(producer_url("pulsar://h:6650", "persistent://t/n/x").is_err());
    }
}
