//! The gRPC `WatchAlerts` stream over a loopback socket: a client that disconnects and
//! reconnects with its last `event_id` misses nothing and sees nothing twice; sockets that
//! never speak are capped and timed out, and a watcher that waits long for an event stays.

use std::time::Duration;

use dictmon::notify::proto::alert_service_client::AlertServiceClient;
use dictmon::notify::proto::{AlertEvent, WatchAlertsRequest};
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
        assert_eq!(*got, dictmon::notify::to_proto(*seq, event), "event {seq}");
    }
}

/// Whether the server closed `socket` (EOF or reset), waiting up to `limit`.
fn closed_within(mut socket: &std::net::TcpStream, limit: Duration) -> bool {
    use std::io::Read;
    socket.set_read_timeout(Some(limit)).expect("timeout");
    let mut byte = [0_u8; 1];
    loop {
        match socket.read(&mut byte) {
            Ok(0) => return true,
            // The server's HTTP/2 settings arrive first; read on.
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false;
            }
            Err(_) => return true,
        }
    }
}

#[test]
fn idle_grpc_sockets_are_capped_and_timed_out_while_a_waiting_watcher_stays() {
    use dictmon::notify::{GRPC_IDLE, MAX_GRPC_CONNECTIONS};
    let dir = tempfile::tempdir().expect("temp");
    // Steady: no alert for the watcher to receive, so its stream stays silent. At 15 s
    // dictmon's own listing costs 4 tokens/min of POLICIES_LIST's refill of 6 (at 5 s it would
    // drain that bucket, and the forecast would rightly warn).
    let serve = Serve::start(dir.path(), &["--scenario", "steady", "--interval", "15s"]);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let mut client = runtime.block_on(connect(&serve.grpc));
    let mut watching = runtime
        .block_on(client.watch_alerts(WatchAlertsRequest {
            after_event_id: String::new(),
        }))
        .expect("watch")
        .into_inner();

    // Sockets that never speak: those past the cap are closed at once.
    let idle: Vec<std::net::TcpStream> = (0..MAX_GRPC_CONNECTIONS + 36)
        .map(|_| std::net::TcpStream::connect(&serve.grpc).expect("connect"))
        .collect();
    let refused = idle
        .iter()
        .filter(|s| closed_within(s, Duration::from_millis(150)))
        .count();
    // The watcher holds one of the permits.
    assert_eq!(
        refused,
        36 + 1,
        "connections past the cap of {MAX_GRPC_CONNECTIONS}"
    );
    assert_eq!(serve.get("/healthz").0, 200, "HTTP answers meanwhile");

    // The others are closed once they have said nothing for GRPC_IDLE.
    let limit = GRPC_IDLE + Duration::from_secs(15);
    let timed_out = idle.iter().filter(|s| closed_within(s, limit)).count();
    assert_eq!(
        timed_out,
        MAX_GRPC_CONNECTIONS + 36,
        "every silent socket closed"
    );

    // The watcher answered the server's pings all along: its stream is still open.
    let still_open = runtime
        .block_on(async { tokio::time::timeout(Duration::from_secs(2), watching.message()).await });
    assert!(
        still_open.is_err(),
        "no event and no end of stream: {still_open:?}"
    );
    // And new connections are taken again.
    let mut again = runtime.block_on(connect(&serve.grpc));
    let stream = runtime.block_on(again.watch_alerts(WatchAlertsRequest {
        after_event_id: String::new(),
    }));
    assert!(stream.is_ok(), "{stream:?}");
}
