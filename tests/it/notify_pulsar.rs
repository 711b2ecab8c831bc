//! Alert events to Apache Pulsar. No Pulsar broker installs from the package registries
//! reachable here, so the far side is a stand-in written from Pulsar's documented WebSocket
//! producer API (`/ws/v2/producer/persistent/{tenant}/{namespace}/{topic}`): it checks the
//! token, decodes each JSON frame (base64 payload, key, context, properties), answers
//! `{"result": "ok", "messageId", "context"}`, and can be restarted on its port. dictmon runs
//! for real on the flapping scenario, and what reached the topic is held against the outbox.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};

use super::util::{Serve, free_port, metric, outbox, sink_progress, wait_until};

const TOKEN: &str = "pulsar-token-for-core-dict";
/// The legacy's Core-Dict topic.
const TOPIC: &str = "persistent://lb-conn/dict/rate-limit-alerts";
const PATH: &str = "/ws/v2/producer/persistent/lb-conn/dict/rate-limit-alerts";

/// A message the stand-in accepted: its key and its payload, decoded.
#[derive(Clone, Debug)]
struct Accepted {
    key: String,
    event: serde_json::Value,
}

/// The broker stand-in.
struct Broker {
    addr: SocketAddr,
    accepted: Arc<Mutex<Vec<Accepted>>>,
    refused: Arc<Mutex<Vec<String>>>,
    runtime: tokio::runtime::Runtime,
    tasks: Option<JoinSet<()>>,
}

impl Broker {
    fn new() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], free_port())),
            accepted: Arc::default(),
            refused: Arc::default(),
            runtime: super::util::stand_in_runtime(),
            tasks: None,
        }
    }

    /// Starts serving (on the same port every time).
    fn up(&mut self) {
        let listener = self
            .runtime
            .block_on(TcpListener::bind(self.addr))
            .expect("bind the broker's port");
        let (accepted, refused) = (self.accepted.clone(), self.refused.clone());
        let mut tasks = JoinSet::new();
        tasks.spawn_on(
            async move {
                let mut connections = JoinSet::new();
                while let Ok((stream, _)) = listener.accept().await {
                    let (accepted, refused) = (accepted.clone(), refused.clone());
                    connections.spawn(producer(stream, accepted, refused));
                }
            },
            self.runtime.handle(),
        );
        self.tasks = Some(tasks);
    }

    /// Stops: the port closes and every connection drops, as a broker restart does.
    fn down(&mut self) {
        if let Some(mut tasks) = self.tasks.take() {
            tasks.abort_all();
            self.runtime
                .block_on(async { while tasks.join_next().await.is_some() {} });
        }
    }

    fn accepted(&self) -> Vec<Accepted> {
        self.accepted.lock().expect("accepted").clone()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.down();
    }
}

/// One producer connection: the handshake (path and token checked), then a frame at a time.
async fn producer(
    stream: tokio::net::TcpStream,
    accepted: Arc<Mutex<Vec<Accepted>>>,
    refused: Arc<Mutex<Vec<String>>>,
) {
    #[expect(
        clippy::result_large_err,
        reason = "the signature of tungstenite's handshake callback"
    )]
    let check = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        let auth = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if req.uri().path() != PATH || auth != format!("Bearer {TOKEN}") {
            refused
                .lock()
                .expect("refused")
                .push(format!("{} {auth:?}", req.uri()));
            let mut no = ErrorResponse::new(Some("unauthorized".into()));
            *no.status_mut() = tokio_tungstenite::tungstenite::http::StatusCode::UNAUTHORIZED;
            return Err(no);
        }
        Ok(resp)
    };
    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, check).await else {
        return;
    };
    let mut id = 0_u64;
    while let Some(Ok(message)) = ws.next().await {
        let Message::Text(text) = message else {
            continue;
        };
        let frame: serde_json::Value = serde_json::from_str(&text).expect("a JSON frame");
        let payload = base64::engine::general_purpose::STANDARD
            .decode(frame["payload"].as_str().expect("payload"))
            .expect("base64 payload");
        let event: serde_json::Value = serde_json::from_slice(&payload).expect("event JSON");
        let key = frame["key"].as_str().expect("key").to_owned();
        assert_eq!(event["event_id"], key.as_str(), "the key is the event_id");
        assert_eq!(frame["properties"]["event_id"], key.as_str());
        accepted
            .lock()
            .expect("accepted")
            .push(Accepted { key, event });
        id += 1;
        let ack = serde_json::json!({
            "result": "ok",
            "messageId": base64::engine::general_purpose::STANDARD.encode(id.to_le_bytes()),
            "context": frame["context"],
        });
        if ws.send(Message::text(ack.to_string())).await.is_err() {
            return;
        }
    }
}

fn config(dir: &Path, addr: SocketAddr, token: &str) -> String {
    let token_file = dir.join("pulsar-token");
    std::fs::write(&token_file, format!("{token}\n")).expect("token");
    let config = dir.join("dictmon.toml");
    std::fs::write(
        &config,
        format!(
            "[notify]\nmax_backoff = \"1s\"\n\n[[notify.pulsar]]\nurl = \"ws://{addr}\"\ntopic = \"{TOPIC}\"\ntoken_file = \"{}\"\ntimeout = \"2s\"\n",
            token_file.display()
        ),
    )
    .expect("config");
    config.display().to_string()
}

/// `serve` on the flapping scenario (an alert event every few seconds) with the Pulsar sink to
/// `broker`, sending `token`.
fn start(dir: &Path, broker: &Broker, token: &str) -> Serve {
    let config = config(dir, broker.addr, token);
    Serve::start(
        &dir.join("data"),
        &[
            "--config",
            &config,
            "--scenario",
            "flapping",
            "--interval",
            "1s",
        ],
    )
}

fn failures(serve: &Serve, kind: &str) -> f64 {
    metric(
        &serve.get("/metrics").1,
        &format!("dictmon_delivery_failures_total{{kind=\"{kind}\",sink=\"pulsar\"}}"),
    )
    .unwrap_or(0.0)
}

#[test]
fn events_reach_the_topic_in_order_through_a_broker_restart() {
    let dir = tempfile::tempdir().expect("temp");
    let mut broker = Broker::new();
    broker.up();
    let data = dir.path().join("data");
    let serve = start(dir.path(), &broker, TOKEN);
    // (The flapping scenario makes an event every few seconds.)
    wait_until("events on the topic", Duration::from_secs(90), || {
        broker.accepted().len() >= 2
    });
    // The broker restarts: down until the sink has met the outage and an event waits for it,
    // then back on the same port, where what waited arrives.
    broker.down();
    let before = broker.accepted().len();
    let backlog = || {
        metric(
            &serve.get("/metrics").1,
            "dictmon_outbox_backlog{sink=\"pulsar\"}",
        )
        .unwrap_or(0.0)
    };
    wait_until(
        "the sink meeting the outage with an event waiting",
        Duration::from_secs(60),
        || failures(&serve, "unreachable") + failures(&serve, "timeout") > 0.0 && backlog() >= 1.0,
    );
    broker.up();
    wait_until("what waited delivered", Duration::from_secs(30), || {
        broker.accepted().len() > before && backlog() == 0.0
    });
    let (status, _) = serve.terminate();
    assert!(status.success());

    // Every event the sink acknowledged is on the topic, as the outbox holds it, in outbox
    // order; an event twice only across the restart.
    let progress = sink_progress(&data)
        .remove("pulsar")
        .expect("the sink's progress");
    let acked: Vec<(u64, dictmon::domain::AlertEvent)> = outbox(&data)
        .into_iter()
        .filter(|(seq, _)| *seq >= progress.since_seq && *seq < progress.next_seq)
        .collect();
    assert!(acked.len() > before, "{} events acknowledged", acked.len());
    let got = broker.accepted();
    let mut first_at: HashMap<String, usize> = HashMap::new();
    for (i, a) in got.iter().enumerate() {
        if let Some(&earlier) = first_at.get(&a.key) {
            assert!(
                earlier < before && i >= before,
                "{} sent twice ({earlier} and {i}), not across the restart at {before}",
                a.key
            );
        } else {
            first_at.insert(a.key.clone(), i);
        }
    }
    let mut last = None;
    for (seq, event) in &acked {
        let key = event.event_id.to_string();
        let at = *first_at
            .get(&key)
            .unwrap_or_else(|| panic!("event {seq} ({key}) acknowledged but not on the topic"));
        assert!(last.is_none_or(|l| at > l), "event {seq} out of order");
        last = Some(at);
        assert_eq!(
            got[at].event,
            serde_json::to_value(event).expect("JSON"),
            "the payload is the event's JSON"
        );
    }
}

#[test]
fn a_wrong_token_is_refused_by_the_broker_and_nothing_is_lost() {
    let dir = tempfile::tempdir().expect("temp");
    let mut broker = Broker::new();
    broker.up();
    let serve = start(dir.path(), &broker, "not-the-token");
    wait_until("the refusal counted", Duration::from_secs(60), || {
        failures(&serve, "rejected") > 0.0
    });
    assert!(broker.accepted().is_empty());
    assert!(!broker.refused.lock().expect("refused").is_empty());
    let backlog = metric(
        &serve.get("/metrics").1,
        "dictmon_outbox_backlog{sink=\"pulsar\"}",
    )
    .unwrap_or(0.0);
    assert!(backlog > 0.0, "the events wait in the outbox");
    let (status, _) = serve.terminate();
    assert!(status.success());
}
