//! The gRPC `WatchAlerts` stream over a loopback socket: a client that disconnects and
//! reconnects with its last `event_id` misses nothing and sees nothing twice.

use std::time::Duration;

use dictmon::notify::stream::proto::alert_service_client::AlertServiceClient;
use dictmon::notify::stream::proto::{AlertEvent, WatchAlertsRequest};
use tonic::Code;

use super::util::{Serve, outbox, wait_until};

type Client = AlertServiceClient<tonic::transport::Channel>;

async fn connect(addr: &str) -> Client {
    AlertServiceClient::connect(format!("http://{addr}"))
        .await
        .expect("connect to serve's gRPC endpoint")
}

/// Reads `n` events from a stream started after `after`, then drops the stream.
async fn take(client: &mut Client, after: &str, n: usize) -> Vec<AlertEvent> {
    let mut stream = client
        .watch_alerts(WatchAlertsRequest {
            after_event_id: after.to_owned(),
        })
        .await
        .expect("watch")
        .into_inner();
    let mut got = Vec::new();
    while got.len() < n {
        let next = tokio::time::timeout(Duration::from_secs(90), stream.message())
            .await
            .expect("an event within 90 s")
            .expect("stream ok")
            .expect("stream open");
        got.push(next);
    }
    got
}

#[test]
fn watch_alerts_reconnecting_with_the_last_event_id_misses_nothing() {
    let dir = tempfile::tempdir().expect("temp");
    let serve = Serve::start(
        dir.path(),
        &["--scenario", "exhaustion", "--interval", "1s"],
    );
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let mut client = runtime.block_on(connect(&serve.grpc));

    // Live only: the first two events, then the client goes away.
    let first = runtime.block_on(take(&mut client, "", 2));
    drop(client);
    let last = first.last().expect("two").event_id.clone();

    // Events go on while it is away.
    let seen = usize::try_from(first[1].sequence).expect("small") + 1;
    wait_until(
        "3 events committed while the client is away",
        Duration::from_secs(90),
        || outbox(dir.path()).len() >= seen + 3,
    );

    // Reconnected with the last event_id: the missed events first, then live ones.
    let mut client = runtime.block_on(connect(&serve.grpc));
    let second = runtime.block_on(take(&mut client, &last, 4));
    let all: Vec<&AlertEvent> = first.iter().chain(&second).collect();
    for pair in all.windows(2) {
        assert_eq!(
            pair[1].sequence,
            pair[0].sequence + 1,
            "a gap or a repeat between {} and {}",
            pair[0].event_id,
            pair[1].event_id
        );
    }

    // Unknown and malformed ids are refused with the right codes.
    let unknown = runtime.block_on(client.watch_alerts(WatchAlertsRequest {
        after_event_id: uuid::Uuid::nil().to_string(),
    }));
    assert_eq!(unknown.expect_err("unknown id").code(), Code::NotFound);
    let garbage = runtime.block_on(client.watch_alerts(WatchAlertsRequest {
        after_event_id: "yesterday".into(),
    }));
    assert_eq!(
        garbage.expect_err("not a uuid").code(),
        Code::InvalidArgument
    );
    drop(client);

    // The stream carried the outbox's events, field for field.
    let (status, elapsed) = serve.terminate();
    assert!(status.success());
    assert!(
        elapsed < Duration::from_secs(5),
        "stopping took {elapsed:?}"
    );
    let outbox = outbox(dir.path());
    for got in all {
        let (seq, event) = outbox
            .iter()
            .find(|(s, _)| *s == got.sequence)
            .expect("streamed event in the outbox");
        assert_eq!(
            *got,
            dictmon::notify::stream::to_proto(*seq, event),
            "event {seq}"
        );
    }
}
